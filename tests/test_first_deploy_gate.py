"""A failing release never stays current (issue 24, item 6), on real sshd boards.

The rollout's health gate judges each board after its benchmark; the verdict is recorded on the board
(``verdicts.json``, next to ``history.json``); the automatic rollback and ``doit rollback`` go to the
last release that passed its gate there, and a board whose first release fails is left with no release.

The benchmark here is a test double of the bench hook (the real one is tested in test_fleet_ssh.py): it
returns a passing or a failing check per release id. Everything else (agent, lock, switch, rollback) is
the real code on real sshd boards.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from dmsbuild.config import load_project, load_target
from dmsbuild.measure.verdict import Check, Verdict
from dmsbuild.pipeline.deploy import deploy_fleet, rollback_fleet
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.ship.manifest import make_release
from tests.conftest import write_build


def _board(state: dict, project: Path, tmp: Path, name: str):
    b = load_inventory(Path(state["inventory"]), project).boards[name]
    b.root = str(tmp / "board-roots" / name)
    return b


def _current(root: str) -> str | None:
    link = Path(root) / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def _verdicts(root: str) -> dict:
    path = Path(root) / "verdicts.json"
    return json.loads(path.read_text()) if path.exists() else {}


class Bench:
    """The bench hook's double: the releases in ``bad`` fail their output check (a generated failure)."""

    def __init__(self) -> None:
        self.bad: set[str] = set()

    def __call__(self, session) -> Verdict:
        name, rid = session.board.name, session.release_id
        if rid in self.bad:
            return Verdict(name, rid, (Check("accuracy", False, f"board {name}: output check failed (test double, generated)",
                                             "fp32", source="generated"),))
        return Verdict(name, rid, (Check("accuracy", True, f"board {name}: output check passed (test double, generated)",
                                         "fp32", source="generated"),))


def _deploy(project_dir: Path, prof, board, bench: Bench, seed: int, *, bad: bool):
    write_build(project_dir, "rpi5", {"fp32": 0.05}, seed=seed)
    project = load_project(project_dir)
    release = make_release(project, prof)
    if bad:
        bench.bad.add(release.release_id)
    result = deploy_fleet(project, prof, [board], release=release, bench=bench, stream=io.StringIO())
    return release.release_id, result.boards[0]


@pytest.fixture()
def setup(boards, project_dir, tmp_path):
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    return prof, Bench()


def test_a_first_deploy_that_fails_its_gate_leaves_no_release_current(boards, project_dir, tmp_path, setup):
    prof, bench = setup
    board = _board(boards, project_dir, tmp_path, "emu-01")
    v1, rep = _deploy(project_dir, prof, board, bench, seed=1, bad=True)
    assert rep.status == "unhealthy", rep.reason
    assert _current(board.root) is None, "the failing first release stayed current"
    assert "no earlier release passed its gate here" in rep.reason and "runs no release" in rep.reason, rep.reason
    assert rep.details["rolled_back_to"] is None
    assert _verdicts(board.root) == {v1: "failed"}
    assert (Path(board.root) / "releases" / v1 / "manifest.json").exists()  # kept for inspection

    # the next release passes: it becomes current and is recorded as passed
    v2, rep = _deploy(project_dir, prof, board, bench, seed=2, bad=False)
    assert rep.status == "done" and _current(board.root) == v2, rep.reason
    assert _verdicts(board.root) == {v1: "failed", v2: "passed"}


def test_rollbacks_skip_a_release_that_failed_its_checks(boards, project_dir, tmp_path, setup):
    prof, bench = setup
    board = _board(boards, project_dir, tmp_path, "emu-02")
    v1, rep = _deploy(project_dir, prof, board, bench, seed=11, bad=False)
    assert rep.status == "done", rep.reason
    prof.deploy.on_unhealthy = "keep"  # the user keeps a failing release on the board for inspection
    v2, rep = _deploy(project_dir, prof, board, bench, seed=12, bad=True)
    assert rep.status == "unhealthy" and _current(board.root) == v2
    prof.deploy.on_unhealthy = "rollback"
    v3, rep = _deploy(project_dir, prof, board, bench, seed=13, bad=True)
    # automatic rollback: past v2 (failed its checks) to v1, the last that passed
    assert rep.status == "unhealthy" and rep.details["rolled_back_to"] == v1, rep.reason
    assert f"past {v2}" in rep.reason and _current(board.root) == v1
    assert _verdicts(board.root) == {v1: "passed", v2: "failed", v3: "failed"}

    v4, rep = _deploy(project_dir, prof, board, bench, seed=14, bad=False)
    assert rep.status == "done" and _current(board.root) == v4
    # `doit rollback`: from v4 to v1, never v3 or v2
    result = rollback_fleet(prof, load_project(project_dir).artifacts, [board], stream=io.StringIO())
    assert result.boards[0].status == "done", result.boards[0].reason
    assert _current(board.root) == v1
    again = rollback_fleet(prof, load_project(project_dir).artifacts, [board], stream=io.StringIO())
    assert again.boards[0].status == "failed" and "nothing to roll back to" in again.boards[0].reason
    assert _current(board.root) == v1
