"""Ctrl-C during a rollout is never lost (the cause of test_fleet.py's Ctrl-C test failing with
"DID NOT RAISE KeyboardInterrupt" once).

With Python's default SIGINT handler the KeyboardInterrupt is raised wherever the main thread
happens to be; when that is a finalizer run by the garbage collector (a paramiko client's or a
Popen's ``__del__``), Python prints "Exception ignored in ... __del__" and drops it, and the rollout
carried on as if nothing had been pressed. The rollout now turns Ctrl-C into a flag it checks.
"""
from __future__ import annotations

import gc
import json
import signal
import threading
from pathlib import Path

import pytest

from dmsbuild.ship import fleet
from dmsbuild.ship.fleet import BoardOutcome, GateResult
from tests.test_fleet import RELEASE, make_boards


class _PressesCtrlC:
    """Garbage whose finalizer receives the Ctrl-C (the handler runs inside __del__)."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


def _deploy(board, sink) -> BoardOutcome:
    return BoardOutcome(board.name, True, RELEASE, verified=True, output_check=True)


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_that_lands_in_a_finalizer_still_stops_the_rollout(tmp_path: Path) -> None:
    assert threading.current_thread() is threading.main_thread()

    def gate(board, outcome) -> GateResult:  # runs in the main thread, between boards
        if board.name == "rpi5-02":
            junk = _PressesCtrlC()
            junk.me = junk  # a cycle: only the collector frees it, in this (the main) thread
            del junk
            gc.collect()
        return GateResult(True)

    with pytest.raises(KeyboardInterrupt):
        fleet.rollout(make_boards(6), RELEASE, _deploy, target="t", parallel=1, health_gate=gate, rollouts_dir=tmp_path)
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["halted"] and data["halt_reason"].startswith("interrupted")
    status = [b["status"] for b in data["boards"]]
    assert status == ["done", "done", "skipped", "skipped", "skipped", "skipped"], status
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the rollout's handler is gone again


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_second_ctrl_c_leaves_at_once(tmp_path: Path) -> None:
    def deploy(board, sink) -> BoardOutcome:
        if board.name == "rpi5-01":
            main = threading.main_thread().ident
            signal.pthread_kill(main, signal.SIGINT)
            signal.pthread_kill(main, signal.SIGINT)
        return _deploy(board, sink)

    with pytest.raises(KeyboardInterrupt):
        fleet.rollout(make_boards(3), RELEASE, deploy, target="t", parallel=1, rollouts_dir=tmp_path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
