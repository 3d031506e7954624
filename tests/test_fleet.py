"""Rollout planning and execution with fake per-board deploys (no SSH).

The fakes are plain objects passed in (no patching): each records which
boards it was called for, from which thread, and can be told which boards
are down or give a bad output check.
"""
from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsbuild.ship import fleet
from dmsbuild.errors import UserError
from dmsbuild.ship.fleet import BoardOutcome, BoardRef
from dmsbuild.ship.progress import FleetProgress

RELEASE = "a1b2c3d4e5f60718"


def make_boards(n: int, group: str = "rpi5") -> list[BoardRef]:
    return [BoardRef(f"{group}-{i:02d}", f"127.0.0.{i + 2}", 2222, "dms", "~/.ssh/id_ed25519", (group,)) for i in range(1, n + 1)]


class FakeFleet:
    """Boards as dicts of release ids; deploy_one installs RELEASE unless the board is down or bad."""

    def __init__(self, boards, down=(), bad_output=(), slow=0.0, raise_down=False):
        self.installed = {b.name: "old0000000000000" for b in boards}
        self.down = set(down)
        self.bad_output = set(bad_output)
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.slow = slow
        self.raise_down = raise_down
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def deploy_one(self, board: BoardRef, sink) -> BoardOutcome:
        with self._lock:
            self.calls.append(board.name)
            self.threads.add(threading.get_ident())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            sink.update(board.name, "connecting")
            if self.slow:
                time.sleep(self.slow)
            if board.name in self.down:
                if self.raise_down:
                    raise ConnectionRefusedError(111, f"{board.host}:{board.port}: connection refused")
                return BoardOutcome(board.name, False, reason=f"{board.host}:{board.port}: connection refused")
            sink.update(board.name, "sending", sent=12_000_000, total=25_000_000)
            sink.update(board.name, "sending", sent=25_000_000, total=25_000_000)
            sink.update(board.name, "verifying")
            self.installed[board.name] = RELEASE
            sink.update(board.name, "benchmarking")
            return BoardOutcome(
                board.name, True, RELEASE, bytes_sent=25_000_000, timings={"send": 0.5, "bench": 1.0},
                verified=True, output_check=board.name not in self.bad_output, latency_ms=3.5, previous_latency_ms=3.4,
            )
        finally:
            with self._lock:
                self.in_flight -= 1

    def current_release(self, board: BoardRef) -> str | None:
        if board.name in self.down:
            raise ConnectionRefusedError(111, "connection refused")
        return self.installed[board.name]


def run(boards, fake, tmp_path=None, **kw):
    kw.setdefault("health_gate", fleet.standard_gate(1.25))
    return fleet.rollout(
        boards, RELEASE, fake.deploy_one, target="rpi5",
        rollouts_dir=None if tmp_path is None else tmp_path / "rollouts", **kw,
    )


# ---------------------------------------------------------------- faults
def test_ten_boards_two_down_eight_done_two_failed_with_reasons(tmp_path: Path) -> None:
    boards = make_boards(10)
    fake = FakeFleet(boards, down={"rpi5-03", "rpi5-07"})
    res = run(boards, fake, tmp_path, max_fail=2, parallel=4)

    assert sorted(fake.calls) == sorted(b.name for b in boards)
    assert res.summary() == {"done": 8, "current": 0, "failed": 2, "unhealthy": 0, "skipped": 0}
    failed = {b.name: b.reason for b in res.failed}
    assert set(failed) == {"rpi5-03", "rpi5-07"}
    assert "connection refused" in failed["rpi5-03"] and "127.0.0.5:2222" in failed["rpi5-03"]
    assert not res.halted and res.exit_code == 1
    text = res.report_path.read_text()
    data = json.loads(text)
    assert '"dms"' not in text and "id_ed25519" not in text  # no user names or key paths in artifacts
    assert res.report_path.parent == tmp_path / "rollouts"
    assert res.report_path.name.startswith(RELEASE + "-")
    assert data["exit_code"] == 1 and data["summary"]["failed"] == 2
    assert data["bytes_sent"] == 8 * 25_000_000
    by_name = {b["name"]: b for b in data["boards"]}
    assert by_name["rpi5-01"]["status"] == "done" and by_name["rpi5-01"]["timings"] == {"send": 0.5, "bench": 1.0}
    assert by_name["rpi5-07"]["status"] == "failed" and by_name["rpi5-07"]["bytes_sent"] == 0
    table = res.table()
    assert "rpi5-03" in table and "connection refused" in table and "8 done" in table and "2 failed" in table


def test_board_exception_is_a_board_failure_not_a_crash() -> None:
    boards = make_boards(4)
    fake = FakeFleet(boards, down={"rpi5-02"}, raise_down=True)
    res = run(boards, fake, max_fail=1)
    assert res.count("done") == 3
    assert [b.name for b in res.failed] == ["rpi5-02"]
    assert "connection refused" in res.failed[0].reason


def test_bug_in_deploy_stops_rollout_writes_report_and_propagates(tmp_path: Path) -> None:
    boards = make_boards(5)

    def buggy(board, sink):
        if board.name == "rpi5-01":
            raise KeyError("oops")
        return BoardOutcome(board.name, True, RELEASE, verified=True, output_check=True)

    with pytest.raises(KeyError):
        fleet.rollout(boards, RELEASE, buggy, target="rpi5", parallel=1, rollouts_dir=tmp_path)
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["halted"] and "internal error on rpi5-01" in data["halt_reason"]
    assert [b["status"] for b in data["boards"]] == ["failed"] + ["skipped"] * 4


def test_canary_failing_output_check_halts_before_wave_two_others_untouched(tmp_path: Path) -> None:
    boards = make_boards(10)
    fake = FakeFleet(boards, bad_output={"rpi5-01"})
    res = run(boards, fake, tmp_path, waves=[1, "10%", "50%", "100%"], max_fail=3, parallel=4)

    assert fake.calls == ["rpi5-01"]  # nobody else was ever called
    assert res.halted and res.exit_code == 2
    assert "health gate failed on rpi5-01 in wave 1" in res.halt_reason
    canary = res.boards[0]
    assert canary.status == "unhealthy" and "output check" in canary.reason
    assert all(b.status == "skipped" and b.wave is None for b in res.boards[1:])
    assert all(fake.installed[b.name] == "old0000000000000" for b in boards[1:])


def test_max_fail_reached_mid_wave_stops_starting_new_boards() -> None:
    boards = make_boards(10)
    # parallel=1 makes the order deterministic: 01 ok, 02 down, 03 down -> 2 > max_fail=1: halt
    fake = FakeFleet(boards, down={"rpi5-02", "rpi5-03"})
    res = run(boards, fake, max_fail=1, parallel=1)
    assert fake.calls == ["rpi5-01", "rpi5-02", "rpi5-03"]
    assert res.halted and "more than max_fail=1" in res.halt_reason
    assert [b.status for b in res.boards[:3]] == ["done", "failed", "failed"]
    assert all(b.status == "skipped" for b in res.boards[3:])
    assert res.exit_code == 2


def test_in_flight_boards_finish_after_halt() -> None:
    boards = make_boards(8)
    gate_open = threading.Event()

    def deploy(board, sink):
        if board.name == "rpi5-01":
            return BoardOutcome(board.name, False, reason="disk full")
        gate_open.wait(5)  # rpi5-02..04 are in flight when 01 fails
        return BoardOutcome(board.name, True, RELEASE, verified=True, output_check=True)

    def release_later():
        time.sleep(0.2)
        gate_open.set()

    threading.Thread(target=release_later).start()
    res = fleet.rollout(boards, RELEASE, deploy, target="t", parallel=4, max_fail=0)
    assert res.halted
    assert [b.status for b in res.boards[:4]] == ["failed", "done", "done", "done"]
    assert all(b.status == "skipped" for b in res.boards[4:])


def test_max_fail_percent_tolerates_that_share() -> None:
    boards = make_boards(20)
    fake = FakeFleet(boards, down={"rpi5-04", "rpi5-09"})
    res = run(boards, fake, max_fail="10%", parallel=3)  # 10% of 20 = 2 tolerated
    assert not res.halted and res.count("done") == 18 and res.exit_code == 1


def test_rerun_after_fix_touches_only_remaining_boards(tmp_path: Path) -> None:
    boards = make_boards(10)
    fake = FakeFleet(boards, down={"rpi5-03", "rpi5-04"})
    first = run(boards, fake, tmp_path, max_fail=0, parallel=1)
    assert first.halted and first.count("done") == 2 and first.count("failed") == 1 and first.count("skipped") == 7

    fake.down.clear()
    fake.calls.clear()
    second = run(boards, fake, tmp_path, max_fail=0, parallel=3, current_release=fake.current_release)
    assert sorted(fake.calls) == [f"rpi5-{i:02d}" for i in range(3, 11)]
    assert second.exit_code == 0 and not second.halted
    assert {b.name for b in second.boards if b.status == "current"} == {"rpi5-01", "rpi5-02"}
    assert second.count("done") == 8
    assert all(fake.installed[b.name] == RELEASE for b in boards)

    # a third run has nothing to do and sends nothing
    fake.calls.clear()
    third = run(boards, fake, tmp_path, current_release=fake.current_release)
    assert fake.calls == [] and third.count("current") == 10 and third.exit_code == 0
    assert third.wave_sizes == []


def test_parallel_is_bounded_and_workers_are_threads() -> None:
    boards = make_boards(12)
    fake = FakeFleet(boards, slow=0.05)
    res = run(boards, fake, parallel=3)
    assert res.count("done") == 12
    assert fake.max_in_flight <= 3 and fake.max_in_flight >= 2
    assert threading.get_ident() not in fake.threads


def test_waves_are_barriers() -> None:
    boards = make_boards(20)
    order: list[tuple[str, str]] = []
    lock = threading.Lock()

    def deploy(board, sink):
        with lock:
            order.append(("start", board.name))
        time.sleep(0.01)
        with lock:
            order.append(("end", board.name))
        return BoardOutcome(board.name, True, RELEASE, verified=True, output_check=True)

    res = fleet.rollout(boards, RELEASE, deploy, target="t", waves=[1, "10%", "50%", "100%"], parallel=8)
    assert res.wave_sizes == [1, 1, 8, 10]
    wave_of = {b.name: b.wave for b in res.boards}
    for i, (kind, name) in enumerate(order):
        if kind == "start":
            earlier = {n for k, n in order[:i] if k == "end"}
            lower = {b.name for b in boards if wave_of[b.name] < wave_of[name]}
            assert lower <= earlier, f"{name} started before wave {wave_of[name] - 1} finished"


def test_latency_regression_fails_gate() -> None:
    gate = fleet.standard_gate(1.25)
    b = BoardRef("x", "h")
    assert gate(b, BoardOutcome("x", True, verified=True, output_check=True, latency_ms=5.0, previous_latency_ms=4.0)).ok
    bad = gate(b, BoardOutcome("x", True, verified=True, output_check=True, latency_ms=5.1, previous_latency_ms=4.0))
    assert not bad.ok and "1.27x" in bad.reason
    assert not gate(b, BoardOutcome("x", True, verified=False, output_check=True)).ok
    assert not gate(b, BoardOutcome("x", True, verified=True, output_check=None)).ok
    assert fleet.standard_gate(None, require_output_check=False)(b, BoardOutcome("x", True, verified=True)).ok


def test_wrong_release_reported_is_a_failure() -> None:
    boards = make_boards(1)
    res = fleet.rollout(boards, RELEASE, lambda b, s: BoardOutcome(b.name, True, "ffffffffffffffff", verified=True), target="t")
    assert res.boards[0].status == "failed" and "expected " + RELEASE in res.boards[0].reason


def test_duplicate_boards_rejected() -> None:
    b = make_boards(2)
    with pytest.raises(UserError, match="listed twice: rpi5-01"):
        fleet.rollout([b[0], b[1], b[0]], RELEASE, lambda *_: None, target="t")


# ---------------------------------------------------------------- wave math
@pytest.mark.parametrize("n, expected", [(1, [1]), (7, [1, 3, 3]), (20, [1, 1, 8, 10]), (200, [1, 19, 80, 100])])
def test_wave_sizes_canary_10_50_100(n: int, expected: list[int]) -> None:
    assert fleet.wave_sizes([1, "10%", "50%", "100%"], n) == expected


def test_wave_sizes_edge_cases() -> None:
    assert fleet.wave_sizes(["100%"], 0) == []
    assert fleet.wave_sizes([2, "10%"], 20) == [2, 18]  # 10% of 20 = 2: adds nothing, then the implicit rest
    assert fleet.wave_sizes([5], 3) == [3]
    assert fleet.wave_sizes([1, "50%"], 10, already=4) == [1, 5]  # targets 1, 5, 10 minus the 4 already done
    assert fleet.wave_sizes(["33.3%", "100%"], 3) == [1, 2]


@pytest.mark.parametrize("spec, msg", [
    ([], "is empty"), ([0], "at least one board"), (["0%"], "at least one board"), (["150%"], "between 0% and 100%"),
    (["ten"], "expected a board count"), ([True], "expected a board count"), ([-1], "count >= 0"),
])
def test_bad_wave_spec(spec, msg) -> None:
    with pytest.raises(UserError, match=msg):
        fleet.check_waves(spec)


def test_max_fail_count() -> None:
    assert fleet.max_fail_count(0, 10) == 0
    assert fleet.max_fail_count(3, 10) == 3
    assert fleet.max_fail_count("10%", 10) == 1
    assert fleet.max_fail_count("10%", 9) == 0
    assert fleet.max_fail_count("25%", 200) == 50
    with pytest.raises(UserError, match="deploy.max_fail"):
        fleet.max_fail_count("lots", 10)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.integers(1, 500), st.floats(0.01, 100).map(lambda p: f"{p:.2f}%")), min_size=1, max_size=6),
    st.integers(0, 1000),
    st.data(),
)
def test_wave_sizes_properties(spec, n, data) -> None:
    already = data.draw(st.integers(0, n))
    sizes = fleet.wave_sizes(spec, n, already)
    assert sum(sizes) == n - already  # every board exactly once, rollout ends at 100%
    assert all(s >= 1 for s in sizes)
    assert len(sizes) <= len(spec) + 1
    if n and already == 0 and spec[0] == 1:
        assert sizes[0] == 1  # a canary stays a canary


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none(), st.floats()))
def test_bad_max_fail_only_user_errors(value) -> None:
    try:
        fleet.check_max_fail(value)
    except UserError as exc:
        assert str(exc).startswith("deploy.max_fail is ")


# ---------------------------------------------------------------- selection
def test_select_by_hosts_and_groups() -> None:
    boards = make_boards(6, "rpi5") + make_boards(3, "orin")
    assert [b.name for b in fleet.select_boards(boards, groups="orin")] == ["orin-01", "orin-02", "orin-03"]
    assert [b.name for b in fleet.select_boards(boards, hosts="rpi5-[02:04],orin-03")] == ["rpi5-02", "rpi5-03", "rpi5-04", "orin-03"]
    assert [b.name for b in fleet.select_boards(boards, hosts="rpi5-0*", groups="rpi5")][-1] == "rpi5-06"
    assert fleet.select_boards(boards) == boards
    with pytest.raises(UserError, match="hosts=rpi5-09: no selected board matches rpi5-09"):
        fleet.select_boards(boards, hosts="rpi5-09")
    with pytest.raises(UserError, match="no board is in group\\(s\\) jetson"):
        fleet.select_boards(boards, groups="jetson")
    with pytest.raises(UserError, match="no selected board matches orin-01"):
        fleet.select_boards(boards, hosts="orin-01", groups="rpi5")


# ---------------------------------------------------------------- progress
def test_progress_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    prog = FleetProgress(out, title="rollout x")
    assert prog.tty is False  # StringIO is not a terminal
    boards = make_boards(3)
    fake = FakeFleet(boards, down={"rpi5-02"})
    res = run(boards, fake, max_fail=1, parallel=1, progress=prog)
    text = out.getvalue()
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert all(len(line) > 9 and line[2] == ":" and line[5] == ":" and line[8] == " " for line in lines)  # HH:MM:SS
    assert any(line.endswith("rpi5-01: sending 12.0/25.0 MB") for line in lines)
    assert any(line.endswith("rpi5-01: done") for line in lines)
    assert any(line.endswith("rpi5-02: failed (127.0.0.4:2222: connection refused)") for line in lines)
    assert any(line.endswith("rollout x: wave 1/1 (3 boards)") for line in lines)
    assert sum(1 for line in lines if line.endswith("rpi5-01: connecting")) == 1  # no repeats
    assert res.exit_code == 1


def test_progress_tty_redraws_in_place_and_throttles() -> None:
    out = io.StringIO()
    t = [0.0]
    prog = FleetProgress(out, tty=True, max_hz=10, clock=lambda: t[0])
    prog.update("b1", "connecting")
    prog.update("b2", "waiting")
    first = out.getvalue()
    for i in range(50):  # 50 progress updates within 0.05 s: throttled away
        prog.update("b1", "sending", sent=i * 1_000_000, total=50_000_000)
    assert out.getvalue() == first
    t[0] = 1.0
    prog.update("b1", "sending", sent=30_000_000, total=50_000_000)
    assert "\x1b[" in out.getvalue() and "sending 30.0/50.0 MB" in out.getvalue()
    prog.update("b1", "failed", "boom")  # final states are drawn at once
    assert out.getvalue().endswith("\n") and "boom" in out.getvalue().split("\x1b[J")[-1]


def test_progress_rejects_unknown_state() -> None:
    with pytest.raises(ValueError):
        FleetProgress(io.StringIO()).update("b", "flying")


# ---------------------------------------------------------------- config
def test_target_profile_rollout_fields_validated(tmp_path: Path) -> None:
    from dmsbuild.config import TargetProfile, load_dataclass

    prof = load_dataclass(TargetProfile, {"name": "rpi5", "deploy": {"waves": [1, "10%", "100%"], "max_fail": "5%", "parallel": 4}}, "targets/rpi5.toml")
    assert prof.deploy.waves == [1, "10%", "100%"]
    with pytest.raises(UserError, match=r"targets/rpi5.toml: field 'deploy.waves'\[1\] is '10 percent'"):
        load_dataclass(TargetProfile, {"name": "rpi5", "deploy": {"waves": [1, "10 percent"]}}, "targets/rpi5.toml")
    with pytest.raises(UserError, match=r"targets/rpi5.toml: field 'deploy.max_fail' is 'many'"):
        load_dataclass(TargetProfile, {"name": "rpi5", "deploy": {"max_fail": "many"}}, "targets/rpi5.toml")
    with pytest.raises(UserError, match=r"targets/rpi5.toml: field 'deploy.parallel' is 0"):
        load_dataclass(TargetProfile, {"name": "rpi5", "deploy": {"parallel": 0}}, "targets/rpi5.toml")


def test_rollout_target_uses_profile_and_writes_report(tmp_path: Path) -> None:
    from dmsbuild.config import TargetProfile, load_dataclass

    prof = load_dataclass(TargetProfile, {"name": "rpi5", "deploy": {"waves": [1, "50%"], "max_fail": 1, "parallel": 2},
                                          "gates": {"max_latency_regression": 1.01}}, "targets/rpi5.toml")
    boards = make_boards(6) + make_boards(2, "orin")
    fake = FakeFleet(boards, down={"rpi5-04"})
    out = io.StringIO()
    res = fleet.rollout_target(prof, tmp_path, boards, RELEASE, fake.deploy_one, groups="rpi5", stream=out)
    # latency 3.5 vs 3.4 ms is 1.03x > 1.01x: the canary's gate fails and halts the rollout
    assert fake.calls == ["rpi5-01"] and res.halted and "latency 3.50 ms" in res.halt_reason
    assert res.report_path.parent == tmp_path / "rpi5" / "rollouts"
    text = out.getvalue()
    assert "HALTED: health gate failed on rpi5-01" in text and f"rollout report: {res.report_path}" in text
    with pytest.raises(UserError, match="no selected board matches orin-01"):
        fleet.rollout_target(prof, tmp_path, boards, RELEASE, fake.deploy_one, groups="rpi5", hosts="orin-01", stream=out)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_lets_boards_in_flight_finish_and_writes_report(tmp_path: Path) -> None:
    import signal

    boards = make_boards(6)
    main = threading.main_thread().ident

    def deploy(board, sink):
        if board.name == "rpi5-02":
            signal.pthread_kill(main, signal.SIGINT)  # as if the user pressed Ctrl-C now
            time.sleep(0.2)
        return BoardOutcome(board.name, True, RELEASE, verified=True, output_check=True)

    with pytest.raises(KeyboardInterrupt):
        fleet.rollout(boards, RELEASE, deploy, target="t", parallel=2, rollouts_dir=tmp_path)
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["halted"] and data["halt_reason"].startswith("interrupted")
    status = {b["name"]: b["status"] for b in data["boards"]}
    assert status["rpi5-02"] == "done"  # in flight when interrupted: finished, not cut off
    assert list(status.values()).count("skipped") >= 3


def test_fleet_wide_rollback_reaches_every_board_it_can() -> None:
    boards = make_boards(8)
    down = {"rpi5-02", "rpi5-03"}
    called = []

    def rollback_one(board, sink):
        called.append(board.name)
        if board.name in down:
            raise ConnectionRefusedError(111, "connection refused")
        return BoardOutcome(board.name, True, "0ld0000000000000", verified=True)

    res = fleet.rollback(boards, rollback_one, target="rpi5", parallel=3)
    assert sorted(called) == [b.name for b in boards]  # no threshold stops a rollback
    assert res.count("done") == 6 and res.count("failed") == 2 and not res.halted and res.exit_code == 1

    called.clear()
    one = fleet.rollback(fleet.select_boards(boards, hosts="rpi5-05"), rollback_one, target="rpi5")
    assert called == ["rpi5-05"] and one.exit_code == 0


def test_progress_tty_final_frame_after_rollout() -> None:
    out = io.StringIO()
    prog = FleetProgress(out, tty=True, title="rpi5 r")
    boards = make_boards(5)
    fake = FakeFleet(boards, down={"rpi5-04"})
    run(boards, fake, max_fail=1, parallel=2, progress=prog, waves=[1, "100%"])
    prog.finish()
    last = out.getvalue().split("\x1b[J")[-1]
    assert last.startswith("rpi5 r wave 2/2 (4 boards): 4 done, 1 failed")
    assert "rpi5-04" in last and "connection refused" in last
    assert last.count("\n") == 6  # header + 5 boards, drawn over the previous frame


def test_unhealthy_canary_is_reverted_to_its_previous_release(tmp_path: Path) -> None:
    boards = make_boards(4)
    fake = FakeFleet(boards, bad_output={"rpi5-01"})
    reverted: list[str] = []

    def revert(board: BoardRef, sink) -> BoardOutcome:
        reverted.append(board.name)
        fake.installed[board.name] = "old0000000000000"
        return BoardOutcome(board.name, True, "old0000000000000")

    res = fleet.rollout(boards, RELEASE, fake.deploy_one, target="rpi5", waves=[1, "100%"], parallel=2,
                        health_gate=fleet.standard_gate(1.25), revert=revert, rollouts_dir=tmp_path)
    assert reverted == ["rpi5-01"] and fake.calls == ["rpi5-01"]
    canary = res.boards[0]
    assert canary.status == "unhealthy" and canary.reason.endswith("; rolled back to old0000000000000")
    assert canary.details["rolled_back_to"] == "old0000000000000"
    assert fake.installed["rpi5-01"] == "old0000000000000" and res.halted and res.exit_code == 2
    assert json.loads(res.report_path.read_text())["boards"][0]["details"]["rolled_back_to"] == "old0000000000000"


def test_a_failed_revert_is_reported_and_leaves_the_new_release(tmp_path: Path) -> None:
    boards = make_boards(2)
    fake = FakeFleet(boards, bad_output={"rpi5-01"})

    def revert(board: BoardRef, sink) -> BoardOutcome:
        raise ConnectionResetError(104, "connection reset by peer")

    res = fleet.rollout(boards, RELEASE, fake.deploy_one, target="rpi5", waves=[1, "100%"], parallel=1,
                        health_gate=fleet.standard_gate(1.25), revert=revert)
    canary = res.boards[0]
    assert canary.status == "unhealthy" and "rollback failed" in canary.reason and "connection reset" in canary.reason
    assert "rolled_back_to" not in canary.details and fake.installed["rpi5-01"] == RELEASE
    assert res.boards[1].status == "skipped"
