"""``doit deploy target=<name> [hosts=a,b] [inventory=FILE] [verify=full]`` and ``doit rollback target=<name> [hosts=...]``.

``deploy`` depends on ``build:<target>`` (so what changed is rebuilt), renders
the release, pushes it to the target's boards, verifies, switches, prints one
line per board and fails if any board failed. With no target it deploys the
embedded default target ``local`` into its folder (no SSH). The Python API
behind it (``dmsbuild.release.deploy_target``) is what a benchmark step or a
fleet rollout calls.
"""
from __future__ import annotations

import sys
from typing import Any, Iterator

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
        outcomes = deploy_target(proj, prof, boards, full_verify=verify == "full")
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
