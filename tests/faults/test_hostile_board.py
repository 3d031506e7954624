"""A hostile or broken board: symlinks out of its deploy root, garbage results, trtexec printing garbage;
shell metacharacters in host paths; secrets kept out of everything a deploy writes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dmsbuild.backends.tensorrt import result_from_trtexec
from dmsbuild.config import load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.ship.manifest import make_release
from dmsbuild.pipeline.deploy import deploy_target
from dmsbuild.core.results import ResultError, parse_document, validate_result
from tests.faults import ledger
from tests.faults.conftest import check_board, fabricate

FUZZ = settings(max_examples=int(os.environ.get("FAULT_FUZZ_EXAMPLES", "120")) * int(os.environ.get("FAULT_ROUNDS", "1")),
                deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _profile(project_dir: Path):
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    prof.deploy.keep_releases = 2
    return prof


def _board(state: dict, project: Path, name: str, root: Path):
    b = load_inventory(Path(state["inventory"]), project).boards[name]
    b.root = str(root)
    return b


def _tree(path: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(path.rglob("*")):
        st_ = p.lstat()
        out[str(p.relative_to(path))] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return out


@pytest.mark.parametrize("plant", ["objects", "objects/.tmp", "releases", ".lock", "history.json", "dms.service",
                                   "current", "part", "object", "release", "release-subdir"])
def test_symlinks_in_the_deploy_root_never_lead_outside(fault_boards, project_dir, tmp_path, plant):
    prof = _profile(project_dir)
    root = tmp_path / "root"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious").write_text("do not touch")
    (outside / "models").mkdir()
    board = _board(fault_boards, project_dir, "emu-02", root)
    fabricate(project_dir, "rpi5", {"model": (0.2, 1)})
    v1 = deploy_target(load_project(project_dir), prof, [board])[0]
    assert v1.ok, v1.message
    fabricate(project_dir, "rpi5", {"model": (0.2, 2)})
    release = make_release(load_project(project_dir), prof)
    model = next(f for f in release.files if f.path == "models/model.onnx")
    where = {"part": f"objects/.tmp/{model.sha256}.part", "object": f"objects/{model.sha256}",
             "release": f"releases/{release.release_id}", "release-subdir": f"releases/{release.release_id}"}.get(plant, plant)
    target = root / where
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    if plant == "release-subdir":  # a half-built release folder whose models/ leads outside
        target.mkdir()
        (target / "models").symlink_to(outside / "models")
    elif plant in ("object", "part", ".lock", "history.json", "dms.service"):
        target.symlink_to(outside / "precious")
    else:
        target.symlink_to(outside)
    before = _tree(outside)
    out = deploy_target(load_project(project_dir), prof, [board], release=release)[0]
    after = _tree(outside)
    untouched = before == after and (outside / "precious").read_text() == "do not touch"
    if plant in ("objects", "objects/.tmp", "releases", ".lock", "history.json", "dms.service", "current"):
        # the root's own folders/files: refused, naming the symlink
        expect = (not out.ok and "symlink" in out.message and str(root) in out.message) if plant != "current" else (
            not out.ok and "current" in out.message)
    else:  # inside the layout: the symlink is removed (never followed) and the deploy goes on
        lost, bad, cur, probs = check_board(str(root), {release.release_id})
        expect = out.ok and not lost and not bad
    ledger.record("hostile-board", f"symlink {plant}", untouched and expect,
        checked="nothing outside the root changed; refused naming the symlink / removed and deployed")
    assert untouched, (plant, before, after)
    assert expect, (plant, out.ok, out.message)


def _valid_doc() -> dict:
    from tests.bench_docs import document, result

    return document("aaaa000000000001", [result("fp32", 6.7), result("int8-qdq", 3.5, agreement=0.94, seed=1)])


#: (JSON path in the valid document, values that are wrong there): each must be refused naming that field
BAD_FIELDS = [
    (("schema",), [2, "1", None]),
    (("release_id",), ["../../x", "", 7, "a b"]),
    (("facts",), [[], "x", None]),
    (("results",), [[], {}, "x", None]),
    (("results", 0, "artifact"), ["a b;rm", "", None, "../x"]),
    (("results", 0, "runtime"), ["", 3, "x y"]),
    (("results", 0, "sha256"), ["xyz", "A" * 64, 5]),
    (("results", 0, "latency_ms", "median"), ["fast", True, -1.0, None, 1e999]),
    (("results", 0, "latency_ms", "p99"), [True, "1", -0.5]),
    (("results", 0, "latency_ms", "min"), [1e6]),  # min above the median
    (("results", 0, "samples_ms"), [[1.0, 2.0], "x", [-1.0] * 30, [None] * 30]),
    (("results", 0, "iterations"), [-1, 1.5, "30"]),
    (("results", 0, "error"), [5, ["x"]]),
    (("results", 1, "verify", "heads", "eye_state", "top1_agreement"), [1.5, -0.1, "x"]),
    (("results", 1, "verify", "heads", "eye_state", "cosine"), [2.0, "x"]),
    (("results", 1, "verify", "samples"), [0, -3, "16"]),
    (("facts", "hostname"), ["x" * 5000]),
]


@st.composite
def broken_document(draw) -> tuple[str, str]:
    """(text, the field the error must name): one field of a valid document made wrong, a required key
    removed, or the valid text cut short."""
    doc = _valid_doc()
    how = draw(st.sampled_from(["field", "delete", "truncate"]))
    if how == "truncate":
        text = json.dumps(doc)
        return text[:draw(st.integers(0, len(text) - 1))], ""
    if how == "delete":
        path = draw(st.sampled_from([("schema",), ("release_id",), ("facts",), ("results",), ("results", 0, "artifact"),
                                     ("results", 0, "latency_ms"), ("results", 0, "samples_ms"), ("results", 1, "error"),
                                     ("results", 0, "latency_ms", "p95"), ("results", 1, "verify", "heads")]))
        value = None
    else:
        path, values = draw(st.sampled_from(BAD_FIELDS))
        value = draw(st.sampled_from(values))
    node = doc
    for k in path[:-1]:
        node = node[k]
    if how == "delete":
        del node[path[-1]]
    else:
        node[path[-1]] = value
    # json.dumps writes 1e999 as Infinity: then the text itself is malformed (no field to name)
    return json.dumps(doc), "" if isinstance(value, float) and value == float("inf") else str(path[-1])


RESULT_CHECKED = "refused (ResultError) naming the board and the broken field; the valid document accepted"


@FUZZ
@given(case=st.one_of(
    broken_document(),
    st.tuples(st.one_of(st.text(max_size=300), st.sampled_from([
        "[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000, "NaN", '{"schema": 1, "results": "x"}', "\0",
        '{"schema": 1, "runner": "1", "release_id": "../../x", "facts": {}, "toolchain": {}, "bench": {}, "results": []}'])),
        st.just(""))))
def test_malformed_result_json_is_refused_cleanly(case):
    """No text here is a valid results document: each must be refused, by the board's name and the field."""
    text, field = case
    with ledger.example("hostile-board", "malformed result JSON", RESULT_CHECKED):
        with pytest.raises(ResultError) as exc:
            parse_document(text, board="emu-01")
        first = str(exc.value).splitlines()[0]
        assert first.startswith("board emu-01: ") and "nothing was stored" in first, first
        if field:
            assert f"{field}'" in first or f".{field}" in first, (field, first)


def test_the_valid_document_of_the_fuzzer_is_accepted():
    """The other side of the fuzzer's oracle: the unbroken document parses to itself."""
    doc = _valid_doc()
    assert parse_document(json.dumps(doc), board="emu-01") == doc


def test_huge_result_json_refused_unread():
    try:
        parse_document('{"x": "' + "a" * (9 << 20) + '"}', board="emu-01")
        first = "accepted"
    except UserError as exc:
        first = str(exc).splitlines()[0]
    ok = "limit" in first and first.startswith("board emu-01: ")
    ledger.record("hostile-board", "huge result JSON", ok, checked="refused unread naming the board and the size limit")
    assert ok, first


TRT_LINES = st.sampled_from([
    "&&&& PASSED TensorRT.trtexec [TensorRT v100300]", "&&&& FAILED", "[I] Latency: min = 1 ms, max = x ms, mean = 2 ms",
    "[I] GPU Compute Time: min = nan ms, max = inf ms", "[I] Throughput: -1 qps", "[I] Throughput: 1e999 qps",
    "[I] Timing trace has 0 queries over 0 s", "[I] === Performance summary ===", "[I] H2D Latency: min = ms",
    "[W] * GPU compute time is unstable", "garbage \x1b[31m <script>", ""])
TIMES = st.one_of(st.none(), st.text(max_size=100), st.sampled_from([
    "[]", "{}", '[{"computeMs": "fast"}]', '[{"computeMs": 1, "latencyMs": null}]', '[{"computeMs": 1, "latencyMs": {"a": 1}}]',
    '[{"computeMs": 1, "latencyMs": NaN}]', '[{"computeMs": 1, "latencyMs": -5}]', "[" * 5000 + "]" * 5000,
    '[{"computeMs": 1, "latencyMs": 1e400, "startComputeMs": "x"}]']))


def _latencies(times: str | None) -> list | None:
    """The oracle, independent of the parser: the latencyMs values an --exportTimes text really holds
    (None: not a JSON list of records)."""
    try:
        trace = json.loads(times) if times is not None else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(trace, list):
        return None
    return [e["latencyMs"] for e in trace if isinstance(e, dict) and "computeMs" in e and "latencyMs" in e]


TRT_CHECKED = ("UserError, or an error result, or a valid result whose samples are the exportTimes "
               "latencies; no summary and no times -> an error")
TRT_ARTIFACT = {"name": "trt-fp16", "precision": "fp16", "runtime": "tensorrt", "sha256": "0" * 64, "size": 10,
                "providers": []}


@FUZZ
@given(lines=st.lists(st.one_of(TRT_LINES, st.text(max_size=60)), max_size=12), times=TIMES)
def test_trtexec_printing_garbage(lines, times):
    """Whatever trtexec prints: a UserError, an error result, or a result backed by real numbers."""
    from dmsbuild.backends.trt_board import TrtexecResultParser

    stdout = "\n".join(lines)
    measured = _latencies(times)
    with ledger.example("hostile-board", "trtexec garbage", TRT_CHECKED):
        try:
            res = result_from_trtexec(stdout, times, artifact="trt-fp16", precision="fp16", sha256="0" * 64,
                                      iterations=None)
        except UserError:
            res = None
        if res is not None and res["error"] is None:
            # accepted: there must have been something to measure (a latency line or per-inference times)
            assert measured or any("Latency:" in ln for ln in lines), ("garbage accepted", stdout, times, res)
            assert res["latency_ms"] is not None
        # the board's real path: the parser the results store uses (size check + CONTRACTS §3 validation)
        output = json.dumps({"stdout": stdout, "times": times, "warmup_ms": None})
        try:
            parsed = TrtexecResultParser().parse(output, board="emu-01", artifact=TRT_ARTIFACT, warmup=1, iterations=0)
        except UserError as exc:
            assert str(exc).splitlines()[0].strip()
            return
        if parsed["error"] is None:
            assert measured, ("a result without per-inference times", stdout, times, parsed)
            assert parsed["samples_ms"] == [float(x) for x in measured]
            validate_result(parsed, board="emu-01")


def test_shell_metacharacters_in_host_paths_end_to_end(fault_boards, project_dir, tmp_path):
    """The project lives under a path full of shell syntax; nothing on either side runs it."""
    canary = tmp_path / "pwned"
    weird = tmp_path / f"my proj;touch {canary};$(touch {canary})`touch {canary}`'\"&|"
    shutil.copytree(project_dir, weird)
    prof = _profile(weird)
    fabricate(weird, "rpi5", {"model": (0.1, 1)})
    board = _board(fault_boards, weird, "emu-01", tmp_path / "root")
    out = deploy_target(load_project(weird), prof, [board])[0]
    # a deploy root with shell syntax is refused before anything runs
    evil = replace(board, root=str(tmp_path / "r;touch x"))
    with pytest.raises(UserError):
        evil.validate("inventory.toml", "boards[0]")
    bad = deploy_target(load_project(weird), prof, [replace(board, root=f"{tmp_path}/r$(touch {canary})")])[0]
    ok = out.ok and not canary.exists() and not bad.ok and "paths may hold" in bad.message
    ledger.record("hostile-input", "shell metacharacters", ok,
        checked="deploy ok; canary file never created; bad root refused")
    assert ok, (out.message, bad.message, canary.exists())


def test_secrets_never_reach_board_files_or_reports(fault_boards, project_dir, tmp_path, monkeypatch):
    secrets = {"AWS_SECRET_ACCESS_KEY": "AKIAsecretSECRETsecret123", "GITHUB_TOKEN": "ghp_tokenTOKENtoken456",
               "DMS_API_TOKEN": "tok-789-secret"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    prof = _profile(project_dir)
    fabricate(project_dir, "rpi5", {"model": (0.1, 1)})
    root = tmp_path / "root"
    board = _board(fault_boards, project_dir, "emu-03", root)
    import io

    from dmsbuild.pipeline.deploy import report

    out = deploy_target(load_project(project_dir), prof, [board])
    buf = io.StringIO()
    report(out, buf)
    # a passphrase-protected key: refused cleanly, never prompting, the passphrase nowhere
    key = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass-phrase-xyz", "-f", str(key)], check=True)
    locked = deploy_target(load_project(project_dir), prof, [replace(board, identity_file=str(key))])
    report(locked, buf)
    texts = [buf.getvalue(), json.dumps([o.message for o in out + locked])]
    for p in list(root.rglob("*")) + list((project_dir / "artifacts").rglob("*")):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 5_000_000:
            texts.append(p.read_bytes().decode(errors="replace"))
    leaked = [k for k, v in {**secrets, "passphrase": "pass-phrase-xyz"}.items() if any(v in t for t in texts)]
    ok = out[0].ok and not locked[0].ok and not leaked
    ledger.record("secrets", "env tokens + key passphrase", ok,
        checked="no secret in board files, artifacts, report; locked key refused")
    assert ok, (out[0].message, locked[0].message, leaked)
