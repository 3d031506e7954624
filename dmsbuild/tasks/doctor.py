"""The `doctor` doit task: `doit doctor [target=<name>]`.

dodo.py imports ``task_doctor`` from here; nothing heavy is imported until the
action runs. With target=, every board of an SSH target is checked over the route ssh would take.
"""
from __future__ import annotations

from typing import Any

from . import params

def _doctor(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..ship import doctor
    from ..config import find_root
    from ..errors import UserError, first_line

    from . import config_error

    try:
        root = find_root()
        err = config_error()
        if err is not None:
            raise err
        text, ok = doctor.run(root, target or None, None, _board_checks(target) if target else ())
    except UserError as exc:
        return TaskFailed(first_line(exc))
    print(text)
    return True if ok else TaskFailed("doctor: required pieces are missing (see above)")


def _board_checks(target: str) -> list[Any]:
    """Every board of an SSH target, checked in parallel over the route ssh would take (one line each)."""
    from ..ship import doctor
    from ..errors import UserError
    from . import cli_path, doit_var, profile, project
    from .deploy import boards_for

    prof = profile(target)
    if prof.transport != "ssh":
        return []
    try:
        boards = boards_for(project(), prof, doit_var("hosts"), cli_path("inventory"), doit_var("groups"))
    except UserError as exc:
        lines = str(exc).splitlines()
        hint = next((ln.strip()[5:].strip() for ln in lines[1:] if ln.strip().startswith("hint:")), "")
        return [doctor.Check("boards", "inventory", "missing", lines[0], "", hint)]
    return doctor.check_boards(boards, prof, prof.deploy.parallel)


@params("target", "hosts", "groups", "inventory")
def task_doctor() -> dict[str, Any]:
    """What the host and (with target=) every board of the target lack, with install hints."""
    from . import doit_var

    return {
        # positional: doit fills a keyword named like a task parameter with that option's value (None here)
        "actions": [(_doctor, [doit_var("target", "")])],
        "uptodate": [False],
        "verbosity": 2,
    }
