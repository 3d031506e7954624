"""The fault suite's tables under pytest-xdist (scripts/test.sh runs two workers): what a worker's tests record
reaches the controller, which prints the tables once (tests/conftest.py's hooks, driven here by hand)."""
from __future__ import annotations

from types import SimpleNamespace

from tests import conftest
from tests.faults import ledger


class _Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stats: dict = {}

    def section(self, title: str) -> None:
        self.lines.append(f"== {title} ==")

    def write_line(self, line: str, **_kw: object) -> None:
        self.lines.append(line)


def test_a_workers_fault_records_reach_the_controller_and_are_printed_once(monkeypatch):
    monkeypatch.setattr(ledger, "RECORDS", {})
    ledger.record("xdist-probe", "worker side", True, recovery_s=0.5, checked="what a worker asserted")
    worker = SimpleNamespace(config=SimpleNamespace(workeroutput={}))
    conftest.pytest_sessionfinish(worker, 0)  # the worker's session ends: its records go to workeroutput
    sent = worker.config.workeroutput["fault_ledger"]
    assert [r["kind"] for r in sent] == ["xdist-probe"]

    monkeypatch.setattr(ledger, "RECORDS", {})  # the controller's process: nothing recorded by itself
    conftest.pytest_testnodedown(SimpleNamespace(workeroutput=worker.config.workeroutput), None)
    assert ledger.RECORDS["xdist-probe"][0].checked == "what a worker asserted"

    rep = _Reporter()
    for _ in conftest.pytest_terminal_summary(rep, 0, None):  # the hook wrapper: other plugins' summaries would run at its yield
        pass
    assert rep.lines.count("== fault injection summary ==") == 1
    assert any(line.startswith("xdist-probe") for line in rep.lines)
    assert rep.lines[-1] == "skips: none"


def test_without_xdist_a_session_hands_nothing_over(monkeypatch):
    monkeypatch.setattr(ledger, "RECORDS", {})
    ledger.record("plain", "serial run", True)
    session = SimpleNamespace(config=SimpleNamespace())  # no workeroutput: pytest without -n
    conftest.pytest_sessionfinish(session, 0)
    assert not hasattr(session.config, "workeroutput")
