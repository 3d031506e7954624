"""Kill the board's SSH session (or its sshd) at named points of a deploy, many times.

Each round deploys a new release over the current one and kills the
connection at one phase: during the upload (at a seeded byte offset), after
the lock, during verification, staging, right before and after the switch,
after the history, during garbage collection. Modes: ``kill`` (session and
board agent die there: a crash), ``drop`` (only the connection dies; the
agent finishes under the board lock), ``sshd`` (the board's sshd dies too and
is restarted). After each: ``current`` is a complete release (the old or the
new one), and the next deploy succeeds sending only what is missing.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from dmsbuild.config import load_project, load_target
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.ship.manifest import make_release
from dmsbuild.pipeline.deploy import deploy_target
from dmsbuild.ship.release import FAULT_ENV
from tests.faults import ledger
from tests.faults.conftest import (ROUNDS, check_board, fabricate, kill_sessions, missing_bytes, restart_sshd,
                                   sshd_alive)

#: board-side points (release_agent.fault_point) in deploy order
AGENT_POINTS = ["lock.locked", "commit.verify", "commit.stage", "commit.synced", "commit.switch", "commit.switched",
                "commit.history", "gc.releases", "gc.objects"]
PHASE = {"lock.locked": "lock", "commit.verify": "verify", "commit.stage": "stage", "commit.synced": "switch",
         "commit.switch": "switch", "commit.switched": "switch", "commit.history": "switch", "gc.releases": "gc",
         "gc.objects": "gc", "upload": "upload"}


def _plan(seed: int) -> list[tuple[str, str]]:
    """(point, mode) for every round: each point in each mode once, uploads at several offsets, shuffled (seeded)."""
    plan = [(p, m) for p in AGENT_POINTS for m in ("kill", "drop", "kill")]
    plan += [(p, "sshd") for p in ("lock.locked", "commit.verify", "commit.stage", "commit.switch", "gc.objects")]
    plan += [("upload", m) for m in ("kill",) * 12 + ("sshd",) * 3]
    random.Random(seed).shuffle(plan)
    return plan


def _board(state: dict, project: Path, name: str, root: Path):
    b = load_inventory(Path(state["inventory"]), project).boards[name]
    b.root = str(root)
    b.connect_retries, b.connect_timeout = 3, 5.0
    return b


def _recover(project, prof, board, state, name):
    """Deploy again until it succeeds (a dropped agent may still hold the lock for a moment): bounded."""
    deadline = time.monotonic() + 60
    while True:
        if not sshd_alive(state, name):
            restart_sshd(state, name)
        out = deploy_target(project, prof, [board])[0]
        if out.ok or time.monotonic() > deadline or "holds the lock" not in out.message:
            return out
        time.sleep(0.1)


@pytest.mark.parametrize("seed", list(range(ROUNDS)))
def test_kill_at_every_phase(fault_boards, project_dir, tmp_path, monkeypatch, seed):
    name = "emu-01"
    rng = random.Random(1000 + seed)
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    prof.deploy.keep_releases = 1  # every commit collects the previous release: the gc phases always run
    board = _board(fault_boards, project_dir, name, tmp_path / "root")
    # v0: "shared" stays the same in every release (never re-sent), "model" changes every round
    fabricate(project_dir, "rpi5", {"shared": (0.4, 0), "model": (2.5, 0)})
    first = deploy_target(load_project(project_dir), prof, [board])[0]
    assert first.ok, first.message
    previous = first.release_id
    failures = []
    for rnd, (point, mode) in enumerate(_plan(seed), start=1):
        fabricate(project_dir, "rpi5", {"shared": (0.4, 0), "model": (2.5, 1000 * seed + rnd)})
        project = load_project(project_dir)
        release = make_release(project, prof)
        progress = None
        if point == "upload":
            cut_at = rng.randint(1, 3)  # the k-th 1 MiB chunk of the changed model
            calls = []

            def progress(path, done, total, _k=cut_at, _m=mode):
                calls.append(done)
                if len(calls) == _k:
                    kill_sessions(fault_boards, name) if _m == "kill" else _kill_sshd(fault_boards, name)
        else:
            monkeypatch.setenv(FAULT_ENV, f"{point}:{mode}")
        try:
            out = deploy_target(project, prof, [board], release=release, progress=progress)[0]
        finally:
            monkeypatch.delenv(FAULT_ENV, raising=False)
        injected = time.monotonic()
        # a dropped connection: the agent finishes under the lock; wait for it (bounded) before looking
        _wait_unlocked(board.root)
        lost, corrupted, cur, problems = check_board(board.root, {previous, release.release_id})
        if not sshd_alive(fault_boards, name):
            restart_sshd(fault_boards, name)
        need = missing_bytes(board.root, release)
        again = _recover(project, prof, board, fault_boards, name)
        recovery = time.monotonic() - injected
        ok_after = again.ok and again.release_id == release.release_id and again.bytes_sent == need
        l2, c2, cur2, p2 = check_board(board.root, {release.release_id})
        # the fault really cut the deploy; a dropped agent past the lock finished the switch under the lock
        fired = not out.ok
        finished = cur == release.release_id if mode == "drop" and point != "lock.locked" else True
        survived = fired and finished and not lost and not corrupted and ok_after and not l2 and not c2
        ledger.record("kill-" + mode, PHASE[point], survived, lost + l2, corrupted + c2, recovery,
            checked="deploy cut; current old or new and complete; redeploy sends exactly the missing bytes")
        if not survived:
            failures.append(f"round {rnd} {point}:{mode}: first={out.ok}/{out.message[:120]!r} current={cur} "
                            f"problems={problems + p2} again={again.ok}/{again.message[:200]!r} sent={again.bytes_sent} need={need}")
        previous = release.release_id
    assert not failures, "\n".join(failures)


def _kill_sshd(state: dict, name: str) -> None:
    import os
    import signal

    from tests.faults.conftest import board_entry

    kill_sessions(state, name)
    os.kill(int(board_entry(state, name)["pid"]), signal.SIGKILL)


def _wait_unlocked(root: str, timeout: float = 30.0) -> None:
    """Wait until no board process holds the deploy lock (a dropped agent finishing its commit)."""
    import fcntl
    import os

    lock = Path(root, ".lock")
    if not lock.exists():
        return
    deadline = time.monotonic() + timeout
    fd = os.open(lock, os.O_RDONLY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{root}/.lock still held after {timeout} s") from None
                time.sleep(0.05)
    finally:
        os.close(fd)


def test_dropped_commit_never_interleaves_with_the_next_deploy(fault_boards, project_dir, tmp_path, monkeypatch):
    """The connection of deploy A drops while its board agent is still busy; deploy B starts at once.

    B must be refused naming the lock holder until A's commit has finished, so
    the board ends at B's release, whole (before the fix A's orphaned commit
    ran outside the lock and switched `current` back to A after B)."""
    name = "emu-01"
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    prof.deploy.keep_releases = 2
    board = _board(fault_boards, project_dir, name, tmp_path / "root")
    fabricate(project_dir, "rpi5", {"model": (0.3, 1)})
    assert deploy_target(load_project(project_dir), prof, [board])[0].ok
    fabricate(project_dir, "rpi5", {"model": (0.3, 2)})
    monkeypatch.setenv(FAULT_ENV, "commit.verify:dropslow")
    a = deploy_target(load_project(project_dir), prof, [board])[0]
    monkeypatch.delenv(FAULT_ENV)
    fabricate(project_dir, "rpi5", {"model": (0.3, 3)})
    project_b = load_project(project_dir)
    rel_b = make_release(project_b, prof)
    refused = 0
    t0 = time.monotonic()
    while True:
        b = deploy_target(project_b, prof, [board], release=rel_b)[0]
        if b.ok or "holds the lock" not in b.message or time.monotonic() - t0 > 60:
            break
        refused += 1
        time.sleep(0.1)
    _wait_unlocked(board.root)
    lost, corrupted, cur, problems = check_board(board.root, {rel_b.release_id})
    ok = not a.ok and b.ok and refused >= 1 and cur == rel_b.release_id and not lost and not corrupted
    ledger.record("kill-drop", "interleave", ok, lost, corrupted, time.monotonic() - t0,
        checked="B refused naming the holder until A commits; B lands")
    assert ok, (a.message, b.message, refused, cur, problems)
