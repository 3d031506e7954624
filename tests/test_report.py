"""doit report's files: tables from the store, escaped board strings, plots, an empty store."""
from __future__ import annotations

import base64
import json
import html.parser
import re

import pytest

from dmsbuild.measure.report import EMPTY_TEXT, write_report
from dmsbuild.core.results import ResultStore
from tests.bench_docs import document, result

EVIL = "rpi5-02<script>alert(1)</script>"


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


@pytest.fixture
def store(tmp_path) -> ResultStore:
    s = ResultStore(tmp_path / "results.sqlite")
    for rel, f in (("1a2b3c4d5e6f7081", 1.0), ("9f8e7d6c5b4a3921", 1.2)):
        for board in ("rpi5-01", "rpi5-02"):
            s.add(document(rel, [result("fp32", 30.0 * f), result("int8-qdq", 15.0 * f, agreement=0.94, seed=3),
                                 result("int8-dynamic", 120.0 * f, agreement=0.97, seed=4),
                                 result("qnn", 1, error=f"QNN missing <img src=x onerror=alert(2)> on {board}")],
                           hostname=EVIL if board == "rpi5-02" else board), board=board, target="rpi5")
    return s


def test_empty_store_report_says_so(tmp_path):
    html_path, md_path = write_report(ResultStore(tmp_path / "none.sqlite"), tmp_path / "report")
    assert EMPTY_TEXT in md_path.read_text()
    assert "No benchmark results yet" in html_path.read_text() and "<table" not in html_path.read_text()


def test_report_tables_hold_the_measured_numbers(store, tmp_path):
    html_path, md_path = write_report(store, tmp_path / "report")
    md = md_path.read_text()
    rows = store.rows()
    latest_fp32 = [r for r in rows if r["board"] == "rpi5-01" and r["artifact"] == "fp32"][-1]
    assert latest_fp32["release_id"] == "9f8e7d6c5b4a3921"
    line = next(l for l in md.splitlines() if l.startswith("| rpi5-01 | rpi5 | model unknown | 9f8e7d6c5b4a3921 | fp32 |"))
    assert f"{latest_fp32['median_ms']:,.3f}" in line and f"{latest_fp32['throughput_ips']:,.1f}" in line
    # measured, not assumed; the speed-up names its baseline
    assert re.search(r"\| rpi5-01 \| rpi5 \| int8-dynamic \| [\d.,]+ \| [\d.,]+ \| 0\.2\dx SLOWER \| fp32 \|", md)
    assert "| rpi5 | model unknown | int8-qdq | int8-qdq | 6.00 | 3.65x |" in md  # 21.9 MB / 6.0 MB
    assert re.search(r"\| rpi5-01 \| rpi5 \| model unknown \| int8-qdq \| int8-qdq \| board \(measured by the "
                     r"dms_bench runner\) \| 16 \| 94\.0% \| 6\.0 pts \|", md)
    assert "QNN missing" in md  # the artifact that did not run is listed
    for name in ("latency_0", "latency_1", "latency_vs_accuracy", "history_0", "history_1"):
        assert (tmp_path / "report" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name}.png)" in md


def test_html_is_self_contained_and_escapes_board_strings(store, tmp_path):
    html_path, _ = write_report(store, tmp_path / "report")
    text = html_path.read_text()
    tags = _Tags()
    tags.feed(text)
    assert "script" not in tags.tags  # neither the hostname nor the error became markup
    assert tags.tags.count("img") == 5
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    for src in tags.images:  # plots are embedded, nothing is fetched
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert "http://" not in text and "https://" not in text


def test_markdown_escapes_board_strings(store, tmp_path):
    _, md_path = write_report(store, tmp_path / "report")
    md = md_path.read_text()
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;" in md


def test_markdown_has_no_html_entities_for_quotes():
    """Quotes are plain text in Markdown: report.md once read `this machine&#x27;s CPU`."""
    from dmsbuild.measure.report import Table, render_markdown

    table = Table("t", "n", ["source", "board"], [["emulated board (this machine's CPU)", 'say "<b>"']])
    md = render_markdown([table], [], "now", "s")
    assert "| emulated board (this machine's CPU) | say \"&lt;b&gt;\" |" in md


def test_emulated_boards_and_replayed_trtexec_figures_are_labelled(tmp_path):
    """A reader must not mistake the trtexec test double's replayed latencies for a Jetson's."""
    s = ResultStore(tmp_path / "results.sqlite")
    trt = result("fp16", 7.15)
    trt["runtime"] = "tensorrt"
    doc = document("1a2b3c4d5e6f7081", [trt], target="orin")
    doc["facts"]["emulated"] = "sshd on 127.0.0.11"
    s.add(doc, board="emu-01", target="orin")
    s.add(document("1a2b3c4d5e6f7081", [result("fp32", 9.0)], target="rpi5"), board="pi-real", target="rpi5")
    write_report(s, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    latency = [line for line in md.splitlines() if "| 1a2b3c4d5e6f7081 |" in line]  # the latency table's rows
    [emu_row] = [line for line in latency if line.startswith("| emu-01")]
    assert "emu-01 (emulated)" in emu_row and "| test double (generated, not measured) |" in emu_row
    [real_row] = [line for line in latency if line.startswith("| pi-real")]
    assert "(emulated)" not in real_row and "test double" not in real_row


# ---------------------------------------------------------------------------------------------------------
# baselines, the board's current release, the summary (issue 31, item 5)
# ---------------------------------------------------------------------------------------------------------
def _md_row(md: str, *starts: str) -> str:
    return next(l for l in md.splitlines() if l.startswith("| " + " | ".join(starts) + " |"))


def _with_model(doc: dict, sha: str = "a" * 64) -> dict:
    doc["model"] = {"file": "model.onnx", "sha256": sha}
    return doc


def test_vs_fp32_uses_the_fp32_artifact_not_a_tuned_fp32_artifact(tmp_path):
    """A `tuned` artifact of fp32 precision stored after fp32 must not become the baseline."""
    s = ResultStore(tmp_path / "results.sqlite")
    tuned = result("fp32", 12.0, seed=5)
    tuned["artifact"] = "tuned"
    s.add(_with_model(document("1a2b3c4d5e6f7081", [result("fp32", 30.0), result("int8-qdq", 15.0, seed=3), tuned])),
          board="pi", target="rpi5")
    _, md_path = write_report(s, tmp_path / "report")
    md = md_path.read_text()
    rows = {r["artifact"]: r for r in s.rows()}
    want = rows["fp32"]["median_ms"] / rows["int8-qdq"]["median_ms"]
    assert 1.5 < want < 2.5
    int8 = _md_row(md, "pi", "rpi5", "int8-qdq")
    assert f"| {want:.2f}x | fp32 |" in int8
    assert "FP32 artifact, same release 1a2b3c4d5e6f7081" in _md_row(md, "pi", "rpi5", "model.onnx @aaaaaaaaaaaa",
                                                                       "1a2b3c4d5e6f7081", "int8-qdq")
    tuned_row = _md_row(md, "pi", "rpi5", "tuned (fp32)")
    assert f"| {rows['fp32']['median_ms'] / rows['tuned']['median_ms']:.2f}x | fp32 |" in tuned_row


def _rollout(artifacts, target: str, release: str, started: str, boards: list[dict]) -> None:
    d = artifacts / target / "rollouts"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{release}-{started.replace(':', '')}.json").write_text(
        json.dumps({"schema": 1, "target": target, "release_id": release, "started_at": started, "boards": boards}))


@pytest.mark.parametrize("how", ["health gate", "doit rollback"])
def test_a_rolled_back_release_is_marked_and_the_current_one_is_shown(tmp_path, how):
    s = ResultStore(tmp_path / "results.sqlite")
    old, new = "1a2b3c4d5e6f7081", "9f8e7d6c5b4a3921"
    s.add(_with_model(document(old, [result("fp32", 30.0), result("int8-qdq", 15.0, seed=3)])), board="pi", target="rpi5")
    s.add(_with_model(document(new, [result("fp32", 30.0), result("int8-qdq", 45.0, seed=3)])), board="pi", target="rpi5")
    _rollout(tmp_path, "rpi5", old, "2026-01-01T00:00:00", [{"name": "pi", "status": "done", "details": {}}])
    if how == "health gate":
        _rollout(tmp_path, "rpi5", new, "2026-01-02T00:00:00",
                 [{"name": "pi", "status": "unhealthy", "details": {"rolled_back_to": old}}])
    else:
        _rollout(tmp_path, "rpi5", new, "2026-01-02T00:00:00", [{"name": "pi", "status": "done", "details": {}}])
        _rollout(tmp_path, "rpi5", "rollback", "2026-01-03T00:00:00",
                 [{"name": "pi", "status": "done", "details": {"from_release": new, "to_release": old}}])
    _, md_path = write_report(s, tmp_path / "report")
    md = md_path.read_text()
    latency = md.split("## Latency per board")[1].split("## ")[0]
    assert "| 1a2b3c4d… | board |" in _md_row(latency, "pi", "rpi5", "int8-qdq")  # what the board runs
    assert "9f8e7d6c" not in latency
    gone = md.split("## Rolled-back releases (not on the board)")[1]
    assert _md_row(gone, "pi", "rpi5", f"{new} (rolled back)", "int8-qdq")
    summary = md.split("## Per target")[1].split("## ")[0]
    assert _md_row(summary, "rpi5", "pi").endswith("| 1a2b3c4d… |")


def test_without_rollout_reports_the_newest_runs_stand(tmp_path):
    s = ResultStore(tmp_path / "results.sqlite")
    for rel in ("1a2b3c4d5e6f7081", "9f8e7d6c5b4a3921"):
        s.add(document(rel, [result("fp32", 30.0)]), board="pi", target="rpi5")
    md = write_report(s, tmp_path / "report")[1].read_text()
    assert "9f8e7d6c…" in _md_row(md, "pi", "rpi5", "fp32") and "rolled back" not in md


def _accelerated_board(s: ResultStore, *, cpu_fp32: bool) -> None:
    trt = [result("fp16", 4.0), result("int8-qdq", 2.5, seed=3)]
    for r in trt:
        r["runtime"], r["provider"] = "tensorrt", "trtexec"
    qnn = result("int8-qdq", 1.5, seed=4)
    qnn["runtime"], qnn["provider"] = "qnn", "QNNExecutionProvider"
    s.add(_with_model(document("0000000000000001", trt, target="orin")), board="b", target="orin")
    s.add(_with_model(document("0000000000000002", [qnn], target="qcs8255")), board="b", target="qcs8255")
    if cpu_fp32:
        s.add(_with_model(document("0000000000000003", [result("fp32", 30.0)])), board="b", target="rpi5")


def test_targets_without_an_fp32_artifact_get_a_named_baseline(tmp_path):
    """orin and qcs8255 ship no FP32 artifact: their speed-up is against ONNX Runtime FP32 on the same board's CPU
    (another target), else TensorRT's FP16 artifact; with neither the report says what to do."""
    s = ResultStore(tmp_path / "with.sqlite")
    _accelerated_board(s, cpu_fp32=True)
    md = write_report(s, tmp_path / "with")[1].read_text()
    rows = {(r["target"], r["artifact"]): r["median_ms"] for r in s.rows()}
    cpu = rows[("rpi5", "fp32")]
    for target in ("orin", "qcs8255"):
        line = _md_row(md, "b", target, "int8-qdq")
        assert f"| {cpu / rows[(target, 'int8-qdq')]:.2f}x | fp32 CPU (rpi5) |" in line, line
    summary = md.split("## Per target")[1].split("## ")[0]
    assert f"{cpu / rows[('qcs8255', 'int8-qdq')]:.2f}x | fp32 CPU (rpi5)" in summary

    s2 = ResultStore(tmp_path / "without.sqlite")
    _accelerated_board(s2, cpu_fp32=False)
    md2 = write_report(s2, tmp_path / "without")[1].read_text()
    rows2 = {(r["target"], r["artifact"]): r["median_ms"] for r in s2.rows()}
    assert f"| {rows2[('orin', 'fp16')] / rows2[('orin', 'int8-qdq')]:.2f}x | fp16 |" in _md_row(md2, "b", "orin", "int8-qdq")
    assert "| – no baseline | – |" in _md_row(md2, "b", "qcs8255", "int8-qdq")


def test_the_report_opens_with_the_per_target_summary(store, tmp_path):
    md = write_report(store, tmp_path / "report")[1].read_text()
    assert md.split("\n## ")[1].startswith("Per target: what ships and how fast")
    line = _md_row(md.split("## Per target")[1], "rpi5", "rpi5-01")
    rows = {r["artifact"]: r for r in store.rows() if r["board"] == "rpi5-01" and r["release_id"] == "9f8e7d6c5b4a3921"}
    best = rows["int8-qdq"]
    assert (f"| rpi5 | rpi5-01 | int8-qdq | {best['median_ms']:,.3f} | "
            f"{rows['fp32']['median_ms'] / best['median_ms']:.2f}x | fp32 | 6.0 pts | 6.00 |") in line


@pytest.mark.parametrize("source, base_source, mark", [
    ("double", "emulated", " (generated)"), ("double+mender", "emulated", " (generated)"),
    ("emulated", "double", " (generated)"), ("simulator", "emulated", " (simulator)"),
    ("simulator+mender", "emulated", " (simulator)"), ("emulated", "emulated", ""), ("board-runner", "board-runner", ""),
])
def test_a_speedup_says_when_a_side_is_generated_or_simulated(source, base_source, mark):
    """A ratio against or from a test double's or the HTP simulator's figure is never read as a board's gain,
    whatever route the result came by (``+mender``)."""
    from dmsbuild.measure.report import Baseline, speedup

    base = Baseline(row={"artifact": "fp32", "release_id": "r1", "target": "rpi5", "median_ms": 4.0,
                         "source": base_source}, name="fp32", full="fp32")
    _ratio, text = speedup({"artifact": "int8", "release_id": "r2", "target": "qcs8255", "median_ms": 2.0,
                            "source": source}, base)
    assert text == "2.00x" + mark
