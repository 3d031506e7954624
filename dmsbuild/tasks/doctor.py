"""The `doctor` doit task: `doit doctor [target=<name>]`.

dodo.py imports ``task_doctor`` from here; nothing heavy is imported until the
action runs. Board facts are checked when a facts provider is registered with
:func:`set_facts_provider` (the deploy part gathers them over SSH).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

#: returns {board: (target, facts)} for a target name (or all targets with None)
FactsProvider = Callable[[str | None], Mapping[str, tuple[str, Mapping[str, Any]]]]
_facts_provider: FactsProvider | None = None


def set_facts_provider(provider: FactsProvider | None) -> None:
    """Let the deploy part supply board facts to `doit doctor`."""
    global _facts_provider
    _facts_provider = provider


def _doctor(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from .. import doctor
    from ..config import find_root
    from ..errors import UserError, first_line

    try:
        root = find_root()
        facts = _facts_provider(target or None) if _facts_provider else None
        text, ok = doctor.run(root, target or None, facts)
    except UserError as exc:
        return TaskFailed(first_line(exc))
    print(text)
    return True if ok else TaskFailed("doctor: required pieces are missing (see above)")


def task_doctor() -> dict[str, Any]:
    """Check host toolchains and boards for what each target needs; say what to install."""
    from doit import get_var

    return {
        "actions": [(_doctor, [], {"target": get_var("target", "")})],
        "uptodate": [False],
        "verbosity": 2,
    }
