"""``doit deploy target=<name> [hosts=a,b] [inventory=FILE] [verify=full] [bench=no]`` and ``doit rollback target=<name> [hosts=...]``.

``deploy`` depends on ``build:<target>`` (so what changed is rebuilt), renders
the release, pushes it to the target's boards, verifies, switches, prints one
line per board and fails if any board failed. With no target it deploys the
embedded default target ``local`` into its folder (no SSH). The Python API
behind it (``dmsbuild.release.deploy_target``) is what a benchmark step or a
fleet rollout calls.
"""
from __future__ import annotations

import sys
import threading
from contextlib import nullcontext
from typing import Any, Callable, Iterator

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
from ..inventory import Board, inventory_path, load_inventory, local_board
from . import doit_var, profile, project, selected_targets, user_error_task


def boards_for(proj: ProjectConfig, prof: TargetProfile, hosts: str | None = None, inventory: str | None = None) -> list[Board]:
    """The boards a deploy of ``prof`` reaches: the local folder, or the inventory's group (or ``hosts``)."""
    names = [h.strip() for h in (hosts or "").split(",") if h.strip()]
    if prof.transport == "local":
        if names and names != [prof.name]:
            raise UserError(f"target '{prof.name}' deploys to this machine only (transport = \"local\"); hosts= does not apply",
                            hint="drop hosts=, or pick a target whose boards are in the inventory")
        return [local_board(proj.root, prof, sys.executable)]
    inv = load_inventory(inventory_path(proj.root, prof, inventory), proj.root)
    return inv.select(prof.deploy.group or prof.name, names or None)


def _shares_this_machine(board: Board) -> bool:
    return board.transport == "local" or board.host in ("localhost", "::1") or board.host.startswith("127.")


def bench_after_switch(proj: ProjectConfig, prof: TargetProfile) -> Callable[[Any], None]:
    """The deploy hook that benchmarks and verifies the new release on each board, stores the
    results and applies the target's gates; a failed gate fails that board's deploy.

    Boards on this machine (the local target, emulated boards on loopback) are benchmarked one at a
    time: run together they would share two cores and measure each other. Real boards run in parallel.
    """
    from ..bench import BoardBench, bench_boards, store_path
    from ..gates import accuracy_threshold
    from ..results import ResultStore

    one_at_a_time = threading.Lock()
    store = ResultStore(store_path(proj))

    def after_switch(session: Any) -> None:
        board = session.board
        with one_at_a_time if _shares_this_machine(board) else nullcontext():
            [outcome] = bench_boards(
                [BoardBench(board.name, session.transport, session.release_dir, board.python, session.facts)],
                target=prof.name, store=store, max_accuracy_drop=accuracy_threshold(proj, prof),
                max_latency_regression=prof.gates.max_latency_regression)
        if not outcome.ok:
            raise UserError(f"board {board.name}: release {session.release.release_id} is installed but failed its checks: "
                            + "; ".join(m.splitlines()[0] for m in outcome.messages()),
                            hint=f"fix the artifact or the gate, or `doit rollback target={prof.name} hosts={board.name}`")

    return after_switch


def _deploy(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..release import deploy_target, report

    try:
        prof = profile(target)
        proj = project()
        boards = boards_for(proj, prof, doit_var("hosts"), doit_var("inventory"))
        verify = doit_var("verify", "changed")
        if verify not in ("changed", "full"):
            raise UserError(f"verify={verify}: expected verify=changed (default) or verify=full (re-hash everything on the boards)")
        bench = doit_var("bench", "yes")
        if bench not in ("yes", "no"):
            raise UserError(f"bench={bench}: expected bench=yes (default: benchmark and verify on each board) or bench=no")
        hook = bench_after_switch(proj, prof) if bench == "yes" else None
        outcomes = deploy_target(proj, prof, boards, full_verify=verify == "full", after_switch=hook)
    except UserError as exc:
        return TaskFailed(str(exc))
    if not report(outcomes):
        failed = sum(not o.ok for o in outcomes)
        return TaskFailed(f"deploy {target}: {failed} of {len(outcomes)} board(s) failed")
    return None


def _rollback(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..release import report, rollback_target

    try:
        prof = profile(target)
        boards = boards_for(project(), prof, doit_var("hosts"), doit_var("inventory"))
        outcomes = rollback_target(prof, boards)
    except UserError as exc:
        return TaskFailed(str(exc))
    if not report(outcomes):
        failed = sum(not o.ok for o in outcomes)
        return TaskFailed(f"rollback {target}: {failed} of {len(outcomes)} board(s) failed")
    return None


def task_deploy() -> Iterator[dict]:
    """Push the target's release to its boards: doit deploy target=rpi5 [hosts=a,b] [inventory=FILE]."""
    yield {"basename": "deploy", "name": None, "doc": "deploy target=<name> [hosts=a,b]: build, push, verify, switch"}
    for target in selected_targets(default_all=False):
        try:
            profile(target)
        except UserError as exc:
            yield user_error_task("deploy", target, exc)
            continue
        yield {
            "basename": "deploy", "name": target,
            "task_dep": [f"build:{target}"],
            "actions": [(_deploy, [target])],
            "uptodate": [False],  # always ask the boards; an unchanged release costs no transfer
            "verbosity": 2,
        }


def task_rollback() -> Iterator[dict]:
    """Switch the target's boards back to their previous release (no transfer)."""
    yield {"basename": "rollback", "name": None, "doc": "rollback target=<name> [hosts=a,b]: previous release, no transfer"}
    for target in selected_targets(default_all=False):
        try:
            profile(target)
        except UserError as exc:
            yield user_error_task("rollback", target, exc)
            continue
        yield {"basename": "rollback", "name": target, "actions": [(_rollback, [target])], "uptodate": [False], "verbosity": 2}
