"""doit report's files: tables from the store, escaped board strings, plots, an empty store."""
from __future__ import annotations

import base64
import html.parser
import re

import pytest

from dmsbuild.measure.report import EMPTY_TEXT, write_report
from dmsbuild.measure.results import ResultStore
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
    assert re.search(r"\| int8-dynamic \| int8-dynamic \| .*SLOWER than FP32", md)  # measured, not assumed
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
