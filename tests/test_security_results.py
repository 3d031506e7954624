"""Numbers and strings a board sends home are data within bounds (issue 30, items 5-6).

Before the fix: ``warmup = 10**4000`` passed validation and raised OverflowError in the sqlite insert (a traceback,
no later board benchmarked); ANSI escapes in board errors and release ids reached the terminal and the report;
``^...$`` patterns with ``re.match`` let ``fp32\\n`` pass as a name; report.md kept links and remote images
from board text.
"""
from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from dmsbuild.errors import UserError
from dmsbuild.core.accuracy import AccuracyFloors
from dmsbuild.measure.bench import BoardBench, bench_boards
from dmsbuild.measure.report import write_report
from dmsbuild.core.results import MAX_INT, ResultError, ResultStore, parse_document, validate_document
from dmsbuild.names import is_safe, safe_id
from dmsbuild.ship.progress import FleetProgress
from dmsbuild.transport.local import LocalTransport
from dmsbuild.untrusted import md_text, neutralise, shown
from tests.bench_docs import document, result

HUGE = 10**4000
#: every whole-number field of a result (path below results[0]) and every number field
INT_FIELDS = [("warmup",), ("iterations",), ("threads",), ("size",)]
NUM_FIELDS = [("throughput_ips",), ("load_ms",), ("first_inference_ms",), ("peak_rss_mb",), ("latency_ms", "mean"),
              ("latency_ms", "std"), ("verify", "heads", "eye_state", "sqnr_db"), ("verify", "heads", "eye_state", "psnr_db")]
ESCAPES = "\x1b]0;owned title\x07\x1b[2J\x1b[1;1H\x9b31m\u202e"


def _doc() -> dict:
    return document("aaaa000000000001", [result("fp32", 6.7)])


def _set(doc: dict, path: tuple, value) -> dict:
    node = doc["results"][0]
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


# ------------------------------------------------------------------ item 5: bounds on every number
@pytest.mark.parametrize("path", INT_FIELDS + NUM_FIELDS)
@pytest.mark.parametrize("value", [HUGE, -HUGE, MAX_INT + 1, 1e300, -1e300])
def test_an_out_of_range_number_is_one_refused_result(tmp_path, path, value):
    doc = _set(_doc(), path, value)
    store = ResultStore(tmp_path / "r.sqlite")
    with pytest.raises(ResultError) as exc:
        store.add(doc, board="evil")
    first = str(exc.value).splitlines()[0]
    assert first.startswith("board evil: result field ") and path[-1] in first and "nothing was stored" in first
    assert store.rows() == []


@settings(max_examples=150, deadline=None, database=None)
@given(path=st.sampled_from(INT_FIELDS + NUM_FIELDS + [("latency_ms", "median")]),
       value=st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=False, allow_infinity=False)))
def test_any_number_is_stored_or_refused_never_a_crash(tmp_path_factory, path, value):
    """The store takes whatever validation accepted (no OverflowError, no sqlite error), or validation refused it."""
    doc = _set(_doc(), path, value)
    store = ResultStore(tmp_path_factory.mktemp("s") / "r.sqlite")
    try:
        store.add(json.loads(json.dumps(doc)), board="b")
    except ResultError:
        return
    [row] = [r for r in store.rows() if r["artifact"] == "fp32"]
    assert row["board"] == "b"


def test_one_hostile_board_is_refused_and_the_next_board_is_benchmarked(tmp_path):
    """The whole bench step: board 'evil' prints warmup = 10**4000, board 'good' a valid document."""
    boards = []
    for name, doc in (("evil", _set(_doc(), ("warmup",), HUGE)), ("good", _doc())):
        rel = tmp_path / name / "releases" / "aaaa000000000001"
        (rel / "runner").mkdir(parents=True)
        (rel / "manifest.json").write_text(json.dumps({"artifacts": [{"name": "fp32", "runtime": "onnxruntime"}]}))
        (rel / "doc.json").write_text(json.dumps(doc))
        (rel / "runner" / "dms_bench.py").write_text(
            "import json, pathlib, sys\n"
            "if '--facts' in sys.argv: print(json.dumps({'onnxruntime': '1.32.0', 'arch': 'x86_64'}))\n"
            "else: print((pathlib.Path(__file__).parents[1] / 'doc.json').read_text())\n")
        boards.append(BoardBench(name, LocalTransport(name), str(rel), sys.executable))
    lines: list[str] = []
    store = ResultStore(tmp_path / "r.sqlite")
    evil, good = bench_boards(boards, target="t", store=store, accuracy=AccuracyFloors.uniform(1.0, -1.0, -1e9),
                              max_latency_regression=1.25, progress=lines.append)
    assert not evil.ok and evil.error.startswith("board evil: result field 'results[0].warmup'"), evil.error
    assert good.ok, good.messages()
    assert {r["board"] for r in store.rows()} == {"good"}
    assert any(line.startswith("[bench 1/2] evil: FAILED") for line in lines)


# ------------------------------------------------------------------ item 6: names with fullmatch
@pytest.mark.parametrize("field, value", [("artifact", "fp32\n"), ("runtime", "onnxruntime\n"), ("sha256", "a" * 64 + "\n")])
def test_a_trailing_newline_is_not_a_name(field, value):
    """Before: ``fp32\\n`` passed ``^...$`` with re.match and started a new lineage (a reset latency baseline)."""
    doc = _set(_doc(), (field,), value)
    with pytest.raises(ResultError) as exc:
        validate_document(doc, board="evil")
    assert field in str(exc.value).splitlines()[0]
    release = _doc()
    release["release_id"] = "aaaa000000000001\n"
    with pytest.raises(ResultError):
        validate_document(release, board="evil")


@pytest.mark.parametrize("name", ["fp32\n", "fp32\r", "a\nb", "x" * 65, "../x", ""])
def test_names_module_checks_the_whole_string(name):
    assert not is_safe(name) and safe_id(name) != name and is_safe(safe_id(name))


# ------------------------------------------------------------------ item 6: escape sequences are shown, never sent
def test_board_text_is_stored_with_its_escapes_shown(tmp_path):
    doc = _set(_doc(), ("error",), f"crashed {ESCAPES} here")
    doc["results"][0].update(latency_ms=None, samples_ms=None)
    doc["facts"]["hostname"] = f"board{ESCAPES}"
    doc["facts"][f"key{ESCAPES}"] = "v"
    parsed = parse_document(json.dumps(doc), board="b")
    store = ResultStore(tmp_path / "r.sqlite")
    store.add(parsed, board="b")
    text = json.dumps(store.rows(), ensure_ascii=False)
    for ch in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert ch not in text
    assert "\\x1b]0;owned title\\x07" in parsed["results"][0]["error"]  # visible, not dropped


def test_a_clean_document_is_unchanged_by_the_escaping():
    doc = _doc()
    assert parse_document(json.dumps(doc), board="b") == doc
    assert neutralise(copy.deepcopy(doc)) == doc


def test_errors_and_progress_lines_never_carry_escape_sequences():
    """Agent refusals, stderr tails and release ids reach the terminal through UserError and the progress view."""
    exc = UserError(f"board 'b': commit failed: {ESCAPES}", hint=f"look {ESCAPES}")
    assert not any(ch in str(exc) for ch in "\x1b\x07\x9b\u202e") and "\\x1b[2J" in str(exc)
    out = io.StringIO()
    view = FleetProgress(out, tty=False, title="deploy")
    view.update("b", "failed", f"release {ESCAPES}")
    assert "\x1b" not in out.getvalue() and "\\x1b]0;owned title" in out.getvalue()


def test_the_agents_answers_are_data(tmp_path):
    """A board whose history.json holds an escape sequence as a release id: the controller sees it escaped."""
    from dmsbuild.ship.release import agent

    root = tmp_path / "root"
    root.mkdir()
    (root / "history.json").write_text(json.dumps([f"r1{ESCAPES}"]))
    state = agent(LocalTransport("b"), sys.executable, "state", {"root": str(root)})
    assert state["history"] == [shown(f"r1{ESCAPES}", lines=True)] and "\x1b" not in state["history"][0]


def test_report_md_neutralises_links_and_images_from_board_text(tmp_path):
    """Before: report.md kept ``[..](javascript:..)`` links and remote images from board facts and errors."""
    store = ResultStore(tmp_path / "r.sqlite")
    bad = "[click me](javascript:alert(1)) ![pixel](https://tracker.example/p.png) <http://x.example>"
    doc = document("aaaa000000000001", [result("fp32", 6.7), result("fp16", 1.0, error=bad)],
                   hostname=f"host ![x](https://tracker.example/h.png){ESCAPES}")
    store.add(doc, board="b")
    _, md_path = write_report(store, tmp_path / "report")
    md = md_path.read_text()
    assert "](javascript:" not in md.replace("\\](javascript:", "")
    assert "![" not in md.replace("!\\[", "").split("## Plots")[0]
    assert "<http" not in md and "\x1b" not in md and "\\[click me\\]" in md


def test_md_text_is_literal():
    assert md_text("[a](b) ![c](d) `e` | <f>") == "\\[a\\](b) !\\[c\\](d) \\`e\\` \\| &lt;f&gt;"
    assert md_text("line\none") == "line one"
