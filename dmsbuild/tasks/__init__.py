"""doit task generators, one module per concern; ``dodo.py`` imports them.

A generator body runs on every doit invocation, ``doit list`` included: keep
it cheap (read TOML, stat files) and import heavy frameworks only inside the
actions.

Task parameters are doit task parameters (``@task_params``), so ``doit help
deploy`` lists them with their help; each is given as ``name=value`` (doit's
command-line variables, ``doit deploy target=orin``) or as an option after the
task name (``doit deploy --target=orin``). A ``name=value`` that no dmsbuild
task takes is refused before any task runs (``host=`` for ``hosts=`` would
otherwise be ignored and deploy to the whole fleet).
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..config import ProjectConfig, TargetProfile, find_root, load_project, load_target, target_names
from ..errors import UserError, first_line

DEFAULT_TARGET = "local"

#: every task parameter dmsbuild's tasks take, with the help ``doit help <task>`` shows
PARAMS: dict[str, str] = {
    "target": "target profile(s) from targets/, comma-separated (e.g. target=rpi5,orin)",
    "hosts": "boards of the target: names, globs (emu-0*) or ranges (emu-[01:05]), comma-separated; default all",
    "groups": "inventory groups to narrow the boards to, comma-separated",
    "parallel": "boards handled at once (default: the profile's deploy.parallel)",
    "inventory": "inventory file, relative to the working directory (default: the profile's deploy.inventory)",
    "verify": "changed (default: hash what was sent) or full (re-hash every file on the boards)",
    "bench": "yes (default: benchmark and check outputs on each board) or no",
    "artifact": "benchmark this artifact of the release only (default: all)",
    "budget": "minutes the tuner may measure (default: the profile's tune.budget_minutes)",
    "format": "the output format (each task that takes it says which)",
    "key": "a PEM private key to sign the Mender artifact with (mender-artifact -k)",
    "out": "folder to write the artifact into (default: artifacts/<target>/mender)",
    "onnx": "your ONNX model file, relative to the working directory",
    "factory": "PyTorch model factory, package.module:callable",
    "checkpoint": "state-dict checkpoint for factory=, relative to the project folder",
    "shape": "input shape for factory=, e.g. 1,3,224,224",
    "data": "folder of calibration/validation images or .npy files (or one with calibration/ and validation/)",
}

#: values given as options after a task name (``doit deploy --target=orin``); ``name=value`` lands in doit's vars
_OPTIONS: dict[str, str] = {}
_ARGV_READ = False
#: task (generator) name -> the parameters it takes (filled by @params)
_TASK_PARAMS: dict[str, tuple[str, ...]] = {}


def _vars() -> dict[str, str]:
    from doit import doit_cmd

    return dict(doit_cmd._CMDLINE_VARS or {})  # doit keeps name=value arguments here (doit.get_var reads it)


def _argv_options(argv: list[str]) -> dict[str, str]:
    """``--name=value`` / ``--name value`` of dmsbuild's parameters on the command line.

    doit hands an option after a task name to that task's generator only, and
    generators run in an order of their own (deploy's after tune's): read them
    all here, once, before any generator reads one, so every generator sees the
    same values (as with ``name=value``)."""
    found: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if name in PARAMS:
            if eq:
                found[name] = value
            elif i + 1 < len(argv):
                found[name] = argv[i + 1]
    return found


def _named_tasks(argv: list[str]) -> list[str]:
    """dmsbuild tasks named on the command line (``deploy``, ``build:rpi5``), by their generator's name."""
    names = [a.partition(":")[0] for a in argv if a and not a.startswith("-") and "=" not in a]
    return list(dict.fromkeys(n for n in names if n in _TASK_PARAMS))


def check_vars() -> None:
    """Refuse a ``name=value`` that the tasks named on the command line do not take (any dmsbuild task, when
    none is named): one line naming the ones they take, exit 3 (doit's code for a bad command line), before
    any task is generated or run."""
    global _ARGV_READ
    if not _ARGV_READ:
        _OPTIONS.update(_argv_options(sys.argv[1:]))
        _ARGV_READ = True
    named = _named_tasks(sys.argv[1:])
    known = [n for n in PARAMS if any(n in _TASK_PARAMS[t] for t in named)] if named else list(PARAMS)
    unknown = sorted(set(_vars()) - set(known))
    if unknown:
        given = ", ".join(f"{n}={_vars()[n]}" for n in unknown)
        who = (f"{', '.join(named)} take{'s' if len(named) == 1 else ''}" if named else "dmsbuild's tasks take")
        takes = ", ".join(f"{n}=" for n in known) or "no parameters"
        print(f"ERROR: unknown parameter {given}; {who} {takes} (`doit help <task>` lists them)", file=sys.stderr)
        raise SystemExit(3)


def params(*names: str, **task_help: str) -> Callable[[Callable[[], Any]], Callable[..., Any]]:
    """Declare a task generator's parameters (doit ``@task_params``), read with :func:`doit_var`; ``task_help``
    replaces a parameter's ``PARAMS`` help in this task's ``doit help`` (``format`` means something per task)."""
    from doit import task_params

    assert set(task_help) <= set(names), f"help for parameters not taken: {set(task_help) - set(names)}"
    defs = [{"name": n, "long": n, "type": str, "default": None, "help": f"{task_help.get(n, PARAMS[n])}; or {n}=VALUE"}
            for n in names]

    def wrap(fn: Callable[[], Any]) -> Callable[..., Any]:
        _TASK_PARAMS[fn.__name__.removeprefix("task_")] = names

        @functools.wraps(fn)
        def creator(**given: str | None) -> Any:
            check_vars()
            _OPTIONS.update({k: v for k, v in given.items() if v is not None})
            return fn()

        return task_params(defs)(creator)

    return wrap


def doit_var(name: str, default: str | None = None) -> str | None:
    """A task parameter: ``--name=value`` after the task, else ``name=value`` on the command line, else default."""
    from doit import get_var

    if name not in PARAMS:
        raise ValueError(f"{name!r} is not in tasks.PARAMS")  # a bug: every parameter is declared there
    if name in _OPTIONS:
        return _OPTIONS[name]
    return get_var(name, default)


def doit_config() -> dict[str, Any]:
    """``DOIT_CONFIG`` for a project's ``dodo.py``: doit's dependency database in the project's ``artifacts/``
    (created here: doit opens it before any task runs), ``doit`` alone builds.

    The project is the folder holding ``dmsbuild.toml`` from doit's working
    directory upwards (doit runs in the ``dodo.py``'s folder), or that folder
    itself when there is none yet (``doit init`` writes it)."""
    try:
        project_root = find_root()
    except UserError:
        project_root = Path.cwd()
    (project_root / "artifacts").mkdir(exist_ok=True)
    return {"default_tasks": ["build"], "verbosity": 2, "backend": "sqlite3",
            "dep_file": str(project_root / "artifacts" / ".doit.db")}


def cli_path(name: str) -> str | None:
    """A path parameter (``inventory=``) as typed, made absolute against the working directory doit runs in
    (the project folder, where its dodo.py is), never against dmsbuild's installation."""
    value = doit_var(name)
    if not value:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else Path.cwd() / p)


@functools.lru_cache(maxsize=None)
def root() -> Path:
    """The project folder (found without parsing dmsbuild.toml, so a malformed file fails only the tasks that read it)."""
    return find_root()


@functools.lru_cache(maxsize=None)
def project() -> ProjectConfig:
    return load_project(root())


def config_error() -> UserError | None:
    """What is wrong with the project's ``dmsbuild.toml`` (missing, malformed, an unknown field, a bad value), or None.

    Every task that reads the project fails with this error itself, naming the
    file and field, rather than vanishing (a missing ``build:<target>`` made doit
    say "Task dependency ... does not exist" on every command)."""
    try:
        project()
    except UserError as exc:
        return exc
    return None


def selected_targets(default_all: bool = True) -> list[str]:
    """Targets named by ``target=a,b`` on the doit command line, else all (or the default target)."""
    value = doit_var("target")
    if value:
        return [t.strip() for t in value.split(",") if t.strip()]
    if not default_all:
        return [DEFAULT_TARGET]
    try:
        return target_names(root())
    except UserError:  # no project folder: the tasks report it (config_error)
        return [DEFAULT_TARGET]


@functools.lru_cache(maxsize=None)
def profile(name: str) -> TargetProfile:
    return load_target(root(), name)


def user_error_task(basename: str, name: str, exc: UserError) -> dict:
    """A task that fails with the user error's message (so other targets still run under --continue)."""

    def fail() -> object:
        from doit.exceptions import TaskFailed

        return TaskFailed(str(exc))

    return {"basename": basename, "name": name, "doc": f"fails: {first_line(exc)[:120]}", "actions": [fail],
            "uptodate": [False], "verbosity": 2}


def per_target(basename: str, make: Callable[[str], dict], doc: str) -> Iterator[dict]:
    """One sub-task ``basename:<target>`` per target named by ``target=`` (default: the embedded ``local``),
    listed by ``doit list --all`` with ``doc`` (``{target}`` replaced by the target's name).

    A target whose profile does not load becomes a task that fails with the
    user error (so other targets still run under --continue); so does every
    target when the project's own configuration does not load."""
    err = config_error()
    for target in selected_targets(default_all=False):
        if err is not None:
            yield user_error_task(basename, target, err)
            continue
        try:
            profile(target)
        except UserError as exc:
            yield user_error_task(basename, target, exc)
            continue
        yield {"basename": basename, "name": target, "doc": doc.format(target=target), **make(target)}


def artifacts_dir() -> Path:
    return project().artifacts
