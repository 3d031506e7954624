"""``doit deploy target=<name> [hosts=...] [groups=...] [parallel=N] [inventory=FILE] [verify=full] [bench=no]``
and ``doit rollback target=<name> [hosts=...] [groups=...]``.

``deploy`` depends on ``build:<target>`` (so what changed is rebuilt), renders
the release and rolls it out to the target's boards through the fleet layer
(``pipeline/deploy.deploy_fleet``: waves, max_fail, health gate from the on-board
benchmark, resume, live progress, final table, rollout report JSON); it fails
when any board failed or the rollout halted. With no target it deploys the
embedded default target ``local`` into its folder (no SSH). Scripts and
benchmarks use the same rollout through ``pipeline/deploy.deploy_target``.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Iterator

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
from . import cli_path, doit_var, params, per_target, profile, project

if TYPE_CHECKING:  # the inventory module is imported when a deploy runs, not by every `doit` start-up (issue 26)
    from ..ship.inventory import Board


def _plain_names(hosts: str | None) -> list[str]:
    """The entries of ``hosts=`` that are plain board names (no glob or range)."""
    from ..core.rollout_spec import split_hosts

    return [h for h in split_hosts(hosts or "") if not any(c in h for c in "*?[]")]


def boards_for(proj: ProjectConfig, prof: TargetProfile, hosts: str | None = None, inventory: str | None = None,
               groups: str | None = None) -> list[Board]:
    """The boards a deploy of ``prof`` reaches: the local folder, or the inventory's group narrowed by
    ``hosts`` (names, globs ``emu-0*``, ranges ``emu-[01:05]``) and ``groups``."""
    from ..ship.inventory import inventory_path, load_inventory, local_board

    if prof.transport == "local":
        names = _plain_names(hosts)
        if (hosts and names != [prof.name]) or groups:
            raise UserError(f"target '{prof.name}' deploys to this machine only (transport = \"local\"); hosts=/groups= do not apply",
                            hint="drop hosts=, or pick a target whose boards are in the inventory")
        return [local_board(proj.root, prof, sys.executable)]
    inv = load_inventory(inventory_path(proj.root, prof, inventory), proj.root)
    for note in inv.notes:  # once per deploy: what the inventory said that dmsbuild does not do, and why
        print(f"warning: {note}", file=sys.stderr)
    # boards outside the selection are not judged: their problems are one line each (a selected one's stops here)
    boards, skipped = inv.choose(prof.deploy.group or prof.name, hosts, groups, commands=prof.deploy.inventory_commands)
    for line in skipped:
        print(f"warning: {line}", file=sys.stderr)
    return boards


def _int_var(name: str) -> int | None:
    value = doit_var(name)
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{name}={value}: expected a whole number of boards >= 1")
    return int(value)


def _selection(target: str) -> tuple[Any, Any, list[Any], str | None, str | None]:
    """Project, profile and the boards that hosts=/groups=/inventory= select for ``target`` (UserError if bad)."""
    prof = profile(target)
    proj = project()
    hosts, groups = doit_var("hosts"), doit_var("groups")
    return proj, prof, boards_for(proj, prof, hosts, cli_path("inventory"), groups), hosts, groups


def _deploy(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..pipeline.deploy import bench_hook, deploy_fleet

    try:
        proj, prof, boards, hosts, groups = _selection(target)
        verify = doit_var("verify", "changed")
        if verify not in ("changed", "full"):
            raise UserError(f"verify={verify}: expected verify=changed (default) or verify=full (re-hash everything on the boards)")
        bench = doit_var("bench", "yes")
        if bench not in ("yes", "no"):
            raise UserError(f"bench={bench}: expected bench=yes (default: benchmark and verify on each board) or bench=no")
        result = deploy_fleet(proj, prof, boards, hosts=hosts, groups=groups, parallel=_int_var("parallel"),
                              bench=bench_hook(proj, prof) if bench == "yes" else None, full_verify=verify == "full")
    except UserError as exc:
        return TaskFailed(str(exc))
    return _verdict(f"deploy {target}", result)


def _verdict(what: str, result: Any) -> Any:
    """None when every board is done/current; else a failure whose doit exit code is the report's:
    1 (TaskFailed) when boards failed but the rollout ran to the end, 2 (TaskError) when it halted."""
    from doit.exceptions import TaskError, TaskFailed

    if result.exit_code == 0:
        return None
    s = result.summary()
    bad = s["failed"] + s["unhealthy"]
    text = f"{what}: {bad} of {len(result.boards)} board(s) failed"
    if result.halted:
        text += f"; rollout halted ({result.halt_reason}), {s['skipped']} board(s) left on their previous release"
    text += f"; report {result.report_path}"
    unhealthy = [b for b in result.boards if b.status == "unhealthy"]
    back = [b.name for b in unhealthy if "rolled_back_to" in b.details]
    kept = [b.name for b in unhealthy if "rolled_back_to" not in b.details]
    if back:
        text += (f"\n{', '.join(back)}: the new release failed its checks and was rolled back "
                 f"to the previous one; fix the artifact or the gate and deploy again")
    if kept:
        text += (f"\n{', '.join(kept)}: the new release is installed but failed its checks; "
                 f"fix the artifact or the gate, or `doit rollback target={result.target} hosts={','.join(kept)}`")
    return TaskError(text) if result.halted else TaskFailed(text)


def _rollback(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..pipeline.deploy import rollback_fleet

    try:
        proj, prof, boards, hosts, groups = _selection(target)
        result = rollback_fleet(prof, proj.artifacts, boards, hosts=hosts, groups=groups, parallel=_int_var("parallel"))
    except UserError as exc:
        return TaskFailed(str(exc))
    return _verdict(f"rollback {target}", result)


@params("target", "hosts", "groups", "parallel", "inventory", "verify", "bench")
def task_deploy() -> Iterator[dict]:
    """Build what changed, roll the release out to the target's boards in waves, benchmark and check it there."""
    yield from per_target("deploy", lambda target: {
        "task_dep": [f"build:{target}"],
        "actions": [(_deploy, [target])],
        "uptodate": [False],  # always ask the boards; an unchanged release costs no transfer
        "verbosity": 2,
    }, doc="build what changed, roll it out to {target}'s boards, benchmark and check it there")


@params("target", "hosts", "groups", "parallel", "inventory")
def task_rollback() -> Iterator[dict]:
    """Switch the target's boards back to their previous release (nothing is sent)."""
    yield from per_target("rollback", lambda target: {"actions": [(_rollback, [target])], "uptodate": [False], "verbosity": 2},
                          doc="switch {target}'s boards back to their previous release")
