"""`doit tune target=<name> [hosts=...] [budget=MINUTES]`: search recipes and runtime settings on the target's
boards and write the choice to targets/<name>.tuned.toml (dmsbuild/pipeline/tune/, docs/tune.md).

Also ``tuned:<target>``: rebuilds the chosen recipe's file (no tuning) for ``build:<target>``."""
from __future__ import annotations

from typing import Any, Iterator

from ..errors import UserError
from . import cli_path, config_error, doit_var, params, profile, project, selected_targets, user_error_task


def _budget() -> float | None:
    value = doit_var("budget")
    if value is None or value == "":
        return None
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise UserError(f"budget={value}: expected a number of minutes > 0 (e.g. budget=5)")
    return minutes


def _tune(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..pipeline.tune.run import run_tune
    from .deploy import boards_for

    try:
        proj, prof = project(), profile(target)
        budget = _budget()
        boards = boards_for(proj, prof, doit_var("hosts"), cli_path("inventory"), doit_var("groups"))
        run_tune(proj, prof, boards, budget_minutes=budget)
    except UserError as exc:
        return TaskFailed(str(exc))
    return None


@params("target", "hosts", "groups", "inventory", "budget")
def task_tune() -> Iterator[dict]:
    """Per board kind, the fastest artifact that passes the accuracy gate, timed on the boards: targets/<name>.tuned.toml."""
    yield {"basename": "tune", "name": None, "doc": (task_tune.__doc__ or "").strip()}
    err = config_error()
    for target in selected_targets(default_all=False):
        if err is not None:
            yield user_error_task("tune", target, err)
            continue
        try:
            profile(target)
            _budget()  # a bad budget= fails at once, before the build it would wait for
        except UserError as exc:
            yield user_error_task("tune", target, exc)
            continue
        yield {"basename": "tune", "name": target, "doc": f"tune {target}: targets/{target}.tuned.toml", "task_dep": [f"build:{target}"],
               "actions": [(_tune, [target])], "uptodate": [False], "verbosity": 2}
