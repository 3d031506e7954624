"""``doit bundle target=<name> format=mender [key=PEM] [out=DIR]`` and ``doit ota_pull target=<name> [hosts=...]``.

``bundle`` hands the target's release (the one ``doit deploy`` would push) to a fleet's OTA system:
a Mender artifact for the Update Module ``dmsbuild-release`` (``ship/mender.py``, docs/ota.md).
``ota_pull`` brings what that module left on the boards (output check results, verdicts) into
results.sqlite, labelled with the route they came by, and applies the gates. Like ``doit deploy``,
``bundle`` builds what changed first (``build:<target>``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from . import cli_path, doit_var, params, per_target, profile, project, user_error_task
from ..errors import UserError

FORMATS = ("mender",)


def _bundle(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..ship.mender import write_bundle

    try:
        key, out = cli_path("key"), cli_path("out")
        bundle = write_bundle(project(), profile(target), out_dir=Path(out) if out else None,
                              key=Path(key) if key else None)
    except UserError as exc:
        return TaskFailed(str(exc))
    print(f"bundle {target}: {bundle.path} (release {bundle.release_id}, device types {', '.join(bundle.device_types)}, "
          f"checked with mender-artifact read)")
    print(f"  install the Update Module once on each board: {bundle.module} -> /usr/share/mender/modules/v3/dmsbuild-release")
    print("  then deploy the artifact with your Mender server, or on a board: mender install <artifact>; mender commit")
    return None


def _pull(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..measure.bench import store_path
    from ..core.results import ResultStore
    from ..pipeline.ota import pull_results
    from .deploy import boards_for

    try:
        proj, prof = project(), profile(target)
        boards = boards_for(proj, prof, doit_var("hosts"), cli_path("inventory"), doit_var("groups"))
        runs = pull_results(proj, prof, boards, store=ResultStore(store_path(proj)))
    except UserError as exc:
        return TaskFailed(str(exc))
    bad = [r for r in runs if r.error or not r.ok or r.gate_failures]
    print(f"ota_pull {target}: {len(runs)} new results file(s) from {len(boards)} board(s), {len(bad)} failed; "
          f"`doit report` for the report")
    if any(r.error or r.gate_failures for r in runs):
        return TaskFailed(f"ota_pull {target}: " + "; ".join(r.line() for r in runs if r.error or r.gate_failures))
    return None


@params("target", "format", "key", "out", format="mender (default; the only bundle format so far)")
def task_bundle() -> Iterator[dict]:
    """Write an OTA bundle of a target's release (target=NAME format=mender [key=PEM] [out=DIR]); builds what changed."""
    fmt = doit_var("format") or "mender"
    if fmt not in FORMATS:  # refused before anything is built
        exc = UserError(f"format={fmt}: no such bundle format; available: {', '.join(FORMATS)}",
                        hint="RAUC and SWUpdate are not written yet (docs/fleet-scale.md says what they need)")
        yield from per_target("bundle", lambda target: user_error_task("bundle", target, exc), doc="")
        return
    # like deploy: build what changed first, so the bundle is of the current sources
    yield from per_target("bundle", lambda target: {"task_dep": [f"build:{target}"], "actions": [(_bundle, [target])],
                                                    "uptodate": [False], "verbosity": 2},
                          doc=f"write a {fmt} bundle of {{target}}'s release")


@params("target", "hosts", "groups", "inventory")
def task_ota_pull() -> Iterator[dict]:
    """Collect the results an OTA install left on a target's boards into results.sqlite (target=NAME [hosts=...])."""
    yield from per_target("ota_pull", lambda target: {"actions": [(_pull, [target])], "uptodate": [False], "verbosity": 2},
                          doc="collect the OTA results on {target}'s boards into results.sqlite")
