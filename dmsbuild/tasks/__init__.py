"""doit task generators, one module per concern; ``dodo.py`` imports them.

A generator body runs on every doit invocation, ``doit list`` included: keep
it cheap (read TOML, stat files) and import heavy frameworks only inside the
actions.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

from ..config import ProjectConfig, TargetProfile, find_root, load_project, load_target, target_names
from ..errors import UserError

DEFAULT_TARGET = "local"


def doit_var(name: str, default: str | None = None) -> str | None:
    from doit import get_var

    return get_var(name, default)


@functools.lru_cache(maxsize=None)
def root() -> Path:
    """The project folder (found without parsing dmsbuild.toml, so a malformed file fails only the tasks that read it)."""
    return find_root()


@functools.lru_cache(maxsize=None)
def project() -> ProjectConfig:
    return load_project(root())


def selected_targets(default_all: bool = True) -> list[str]:
    """Targets named by ``target=a,b`` on the doit command line, else all (or the default target)."""
    value = doit_var("target")
    if value:
        return [t.strip() for t in value.split(",") if t.strip()]
    return target_names(root()) if default_all else [DEFAULT_TARGET]


@functools.lru_cache(maxsize=None)
def profile(name: str) -> TargetProfile:
    return load_target(root(), name)


def user_error_task(basename: str, name: str, exc: UserError) -> dict:
    """A task that fails with the user error's message (so other targets still run under --continue)."""

    def fail() -> object:
        from doit.exceptions import TaskFailed

        return TaskFailed(str(exc))

    return {"basename": basename, "name": name, "actions": [fail], "uptodate": [False], "verbosity": 2}


def per_target(basename: str, make: Callable[[str], dict]) -> Iterator[dict]:
    """One sub-task ``basename:<target>`` per target named by ``target=`` (default: the embedded ``local``).

    A target whose profile does not load becomes a task that fails with the
    user error (so other targets still run under --continue)."""
    for target in selected_targets(default_all=False):
        try:
            profile(target)
        except UserError as exc:
            yield user_error_task(basename, target, exc)
            continue
        yield {"basename": basename, "name": target, **make(target)}


def artifacts_dir() -> Path:
    return project().artifacts
