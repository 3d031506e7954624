"""The task list of dmsbuild's doit generators, cached for a no-op ``doit`` (issue 26 item 4).

A ``doit`` run calls every task generator before it can tell that nothing
needs doing: dmsbuild's read dmsbuild.toml and the target profiles, list the
data folders and import some 50 modules. This module lets ``dodo.py`` skip
that when nothing the generators read has changed since a previous run:

* on a **miss** it imports the real generators (``dmsbuild.tasks.*``) and runs
  them as doit asks, while recording everything they read: every file opened
  (imports included), every folder listed, every ``stat``/``lstat``/``access``/
  ``readlink`` (a missing file counts: creating it later misses), every environment
  variable looked up (iterating the whole environment keys on all of it), plus
  the file of every module loaded. When all generators ran and nothing read
  changed meanwhile, it writes their output (the task dicts, actions by
  position) with that record to ``artifacts/.doit-tasks/<hash of the command line>.json``.
  A folder listed is keyed on its full stat (its mtime changes with its
  entries); a folder only stat'ed on which one it is (inode, device, mode);
  a symlink in a listed folder on its target's stat;
* on a **hit** (the command line, doit's ``name=value`` variables, the working
  folder, the Python, ``sys.path``, the recorded environment variables and the
  ``os.stat`` of every recorded path all equal) ``dodo.py`` gets the task dicts
  from the file without importing dmsbuild's generators; doit still checks each
  task's ``file_dep``, targets and ``config_changed`` values itself, as always.
  A task's actions are stand-ins (:class:`LazyAction`): the first one that runs
  imports the real generators, generates again and refuses to run anything if
  the result differs from what doit was given (the file is deleted; run again).

Nothing is guessed: what is not understood makes a miss, never a hit. Not
written are outputs with something that is not plain data (an ``uptodate``
callable, a ``clean`` list, a ``params``, ``setup`` ...), runs where a
generator started a process, opened a socket or a database, set an
environment variable, or where a path read changed while generating, and
runs where a path read was changed less than :data:`RACY_S` seconds before
(a change within the file system's timestamp granularity would go unseen).
A cache file whose sha256 (its first line) does not match the rest, that does
not parse or has another format is ignored (and rewritten); it is written to a
temporary file and renamed into place.

``DMSBUILD_TASK_CACHE=off`` (or ``0``/``no``) bypasses it; deleting its folder
clears it; ``DMSBUILD_TASK_CACHE=verbose`` says on stderr whether it was a
hit, and on a miss why nothing was written (if so). Standard library and doit
only at module level: this is what a hit imports of dmsbuild, with
``dmsbuild/__init__.py``. Design and counts: docs/fleet-scale.md, "No-op
``doit build``: the task list cache"; tests: tests/test_taskcache.py.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import locate_root

#: the environment variable that turns the cache off (``off``, ``0``, ``no``, ``false``)
ENV = "DMSBUILD_TASK_CACHE"
#: the cache folder, in the project's artifacts/ folder (beside doit's .doit.db): one file per command line
CACHE_NAME = ".doit-tasks"
FORMAT = 1
#: files kept (one per command line: `doit list` and `doit build` do not evict each other)
MAX_ENTRIES = 8
#: a path changed less than this before the cache would be written makes it not written
RACY_S = 2.0

#: dmsbuild's task generators, in dodo.py's order: name -> module
GENERATORS: dict[str, str] = {
    "export": "dmsbuild.tasks.build", "quantize": "dmsbuild.tasks.build", "evaluate": "dmsbuild.tasks.build",
    "build": "dmsbuild.tasks.build", "deploy": "dmsbuild.tasks.deploy", "rollback": "dmsbuild.tasks.deploy",
    "bench": "dmsbuild.tasks.bench", "report": "dmsbuild.tasks.report", "results_export": "dmsbuild.tasks.report",
    "doctor": "dmsbuild.tasks.doctor", "init": "dmsbuild.tasks.init", "tune": "dmsbuild.tasks.tune",
    "bundle": "dmsbuild.tasks.bundle", "ota_pull": "dmsbuild.tasks.bundle",
}

#: task dict fields the cache carries (anything else: not written)
_FIELDS = {"basename", "name", "doc", "actions", "file_dep", "targets", "task_dep", "uptodate", "clean", "verbosity"}
#: audit events of a generator that the key cannot cover: the run is not cached
_UNSAFE_EVENTS = ("subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "socket.",
                  "sqlite3.connect", "ctypes.", "os.putenv", "os.unsetenv", "urllib.", "http.", "ftplib.", "os.chdir")


class Unsupported(Exception):
    """Something in a generator's output the cache cannot carry as data."""


def disabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("off", "0", "no", "false")


# --------------------------------------------------------------------------
# stat: what the key compares
# --------------------------------------------------------------------------
def _stat(path: str, follow: bool) -> list[int] | None:
    """(mtime_ns, ctime_ns, size, inode, device, mode) of ``path``, None when missing; OSError otherwise."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev, st.st_mode]


def _identity(st: list[int]) -> list[int]:
    """A stat keyed on which object it is and its type only (mtime, ctime and size left out as -1)."""
    return [-1, -1, -1, *st[3:]]


def _same(recorded: list[int] | None, now: list[int] | None) -> bool:
    if recorded is not None and now is not None and recorded[0] == -1:
        return _identity(now) == recorded
    return recorded == now


def _digest(value: str | None) -> str | None:
    """Environment values are keyed by their hash (a token read by a generator is not written to disk)."""
    return None if value is None else hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def _environ_digest() -> str:
    return hashlib.sha256(json.dumps(sorted(os.environ.items())).encode("utf-8", "surrogateescape")).hexdigest()


def _head(doit_vars: dict[str, str]) -> dict[str, Any]:
    """What the generators see besides files and the environment: the command line and the interpreter."""
    return {"argv": list(sys.argv), "vars": doit_vars, "cwd": os.getcwd(), "python": sys.version,
            "executable": sys.executable, "path": list(sys.path)}


def _doit_vars() -> dict[str, str]:
    from doit import doit_cmd

    return dict(doit_cmd._CMDLINE_VARS or {})


# --------------------------------------------------------------------------
# recording what the generators read (a miss)
# --------------------------------------------------------------------------
class _Recorder:
    """Paths stat'ed/opened/listed and environment variables read while ``active``; ``unsafe`` names why not to cache."""

    def __init__(self) -> None:
        self.active = False
        self.paths: dict[tuple[str, bool], list[int] | None] = {}  # (path, follow) -> its stat when first read
        self.listed: set[str] = set()
        self.env: dict[str, str | None] = {}
        self.env_all = False
        self.unsafe: str | None = None
        self._hooked = False

    # -- paths
    def note(self, path: Any, follow: bool = True) -> None:
        if not self.active or isinstance(path, int):
            return
        try:
            p = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            self.unsafe = self.unsafe or f"a read of {path!r}"
            return
        key = (p, follow)
        if key in self.paths or f"{os.sep}__pycache__{os.sep}" in p:  # bytecode: Python checks it against its .py
            return
        self.active = False  # our own stat is not a read to record
        try:
            self.paths[key] = _stat(p, follow)
        except OSError as exc:
            self.unsafe = self.unsafe or f"{p}: {exc.strerror}"
        finally:
            self.active = True

    def _audit(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            self.note(args[0])
        elif event in ("os.listdir", "os.scandir"):
            path = args[0] if args and args[0] is not None else "."
            if isinstance(path, int):
                self.unsafe = self.unsafe or "a folder listed by descriptor"
                return
            self.note(path)
            self.listed.add(os.path.abspath(os.fsdecode(path)))
        elif event.startswith(_UNSAFE_EVENTS):
            self.unsafe = self.unsafe or f"a generator's {event}"

    # -- hooks
    def start(self) -> None:
        if not self._hooked:
            sys.addaudithook(self._audit)  # cannot be removed: idle (one attribute test) while not active
            self._hooked = True
        self._saved = (os.stat, os.lstat, os.access, os.readlink)
        rec = self
        real_stat, real_lstat, real_access, real_readlink = self._saved

        def relative_to_fd(kwargs: dict[str, Any]) -> None:
            if kwargs.get("dir_fd") is not None and rec.active:
                rec.unsafe = rec.unsafe or "a path read relative to a folder descriptor"

        def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
            relative_to_fd(kwargs)
            rec.note(path, kwargs.get("follow_symlinks", True))
            return real_stat(path, *args, **kwargs)

        def lstat(path: Any, *args: Any, **kwargs: Any) -> Any:
            relative_to_fd(kwargs)
            rec.note(path, False)
            return real_lstat(path, *args, **kwargs)

        def access(path: Any, *args: Any, **kwargs: Any) -> Any:
            relative_to_fd(kwargs)
            rec.note(path, kwargs.get("follow_symlinks", True))
            return real_access(path, *args, **kwargs)

        def readlink(path: Any, *args: Any, **kwargs: Any) -> Any:
            relative_to_fd(kwargs)
            rec.note(path, False)  # the link itself: replacing it changes its inode and times
            return real_readlink(path, *args, **kwargs)

        os.stat, os.lstat, os.access, os.readlink = stat, lstat, access, readlink
        self._environ_class = os.environ.__class__
        os.environ.__class__ = _recording_environ(self._environ_class, self)
        self.active = True

    def stop(self) -> None:
        self.active = False
        os.stat, os.lstat, os.access, os.readlink = self._saved
        os.environ.__class__ = self._environ_class

    def stats(self) -> list[list[Any]]:
        """The record as written: [path, follow, stat]; symlinks in a listed folder add their target's stat
        (a generator's DirEntry.is_file() follows them without a stat call seen here).

        A folder that was stat'ed but not listed is keyed on what such a stat can tell (that it is a folder, which
        one: inode, device, mode), not on its times: its entries are seen only by listing it (keyed in full) or by
        reading them (keyed each). Else a file created beside the project (realpath lstat's every parent) would
        miss the cache."""
        out = {k: (_identity(v) if v is not None and stat.S_ISDIR(v[5]) and k[0] not in self.listed else v)
               for k, v in self.paths.items()}
        for folder in sorted(self.listed):
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        if entry.is_symlink():
                            out.setdefault((entry.path, True), _stat(entry.path, True))
            except OSError:
                continue  # the folder's own stat (recorded) differs or is missing: the key covers it
        return [[p, follow, st] for (p, follow), st in sorted(out.items())]


def _recording_environ(base: type, rec: _Recorder) -> type:
    class RecordingEnviron(base):  # type: ignore[misc, valid-type]
        def __getitem__(self, key: str) -> str:
            try:
                value = super().__getitem__(key)
            except KeyError:
                if rec.active:
                    rec.env.setdefault(key, None)
                raise
            if rec.active:
                rec.env.setdefault(key, value)
            return value

        def __contains__(self, key: object) -> bool:
            try:
                self[key]  # type: ignore[index]
            except KeyError:
                return False
            return True

        def __iter__(self) -> Iterator[str]:
            if rec.active:
                rec.env_all = True
            return super().__iter__()

        def __len__(self) -> int:
            if rec.active:
                rec.env_all = True
            return super().__len__()

        def __setitem__(self, key: str, value: str) -> None:
            if rec.active:
                rec.unsafe = rec.unsafe or f"a generator set {key}"
            super().__setitem__(key, value)

        def __delitem__(self, key: str) -> None:
            if rec.active:
                rec.unsafe = rec.unsafe or f"a generator unset {key}"
            super().__delitem__(key)

    return RecordingEnviron


# --------------------------------------------------------------------------
# task dicts <-> data
# --------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON value standing for an action's argument (a path as its text; anything else by its type's name)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def describe_action(action: Any) -> Any:
    """What an action is, as data (its function and plain arguments): compared between a cached and a fresh run."""
    if isinstance(action, str):
        return {"cmd": action}
    if isinstance(action, (list, tuple)) and action and callable(action[0]):
        fn = action[0]
        return {"call": f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}",
                "args": _plain(list(action[1]) if len(action) > 1 else []),
                "kwargs": _plain(dict(action[2]) if len(action) > 2 else {})}
    if callable(action):
        return {"call": f"{getattr(action, '__module__', '?')}:{getattr(action, '__qualname__', repr(action))}",
                "name": getattr(action, "__name__", None)}
    raise Unsupported(f"action {action!r}")


def _strs(value: Any, field: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise Unsupported(field)
    out = []
    for v in value:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, os.PathLike):
            out.append(os.fspath(v))
        else:
            raise Unsupported(f"{field} item {v!r}")
    return out


def encode_task(task: dict) -> dict:
    """A generator's task dict as JSON data; Unsupported if any part of it is not plain data."""
    from doit.tools import config_changed

    extra = set(task) - _FIELDS
    if extra:
        raise Unsupported(f"field(s) {sorted(extra)}")
    out: dict[str, Any] = {}
    for k in ("basename", "name", "doc"):
        if k in task:
            if task[k] is not None and not isinstance(task[k], str):
                raise Unsupported(k)
            out[k] = task[k]
    for k in ("file_dep", "targets", "task_dep"):
        if k in task:
            out[k] = _strs(task[k], k)
    if "actions" in task:
        if not isinstance(task["actions"], (list, tuple)):
            raise Unsupported("actions")
        out["actions"] = [describe_action(a) for a in task["actions"]]
    if "uptodate" in task:
        ups = []
        for u in task["uptodate"]:
            if u is None or isinstance(u, bool):
                ups.append(u)
            elif type(u) is config_changed and isinstance(u.config, str) and u.encoder is None:
                ups.append({"config_changed": u.config})
            else:
                raise Unsupported(f"uptodate {u!r}")
        out["uptodate"] = ups
    if "clean" in task:
        if not isinstance(task["clean"], bool):
            raise Unsupported("clean")
        out["clean"] = task["clean"]
    if "verbosity" in task:
        if type(task["verbosity"]) is not int:
            raise Unsupported("verbosity")
        out["verbosity"] = task["verbosity"]
    return out


def _decode_task(data: dict, generator: str, index: int) -> dict:
    from doit.tools import config_changed

    task = {k: v for k, v in data.items() if k not in ("actions", "uptodate")}
    if "actions" in data:
        task["actions"] = [LazyAction(generator, index, i) for i in range(len(data["actions"]))]
    if "uptodate" in data:
        task["uptodate"] = [config_changed(u["config_changed"]) if isinstance(u, dict) else u for u in data["uptodate"]]
    return task


def encode_params(defs: Any) -> list[dict] | None:
    if defs is None:
        return None
    out = []
    for d in defs:
        if set(d) - {"name", "long", "short", "type", "default", "help"} or d.get("type", str) is not str:
            raise Unsupported(f"parameter {d!r}")
        out.append({k: v for k, v in d.items() if k != "type"})
    return out


# --------------------------------------------------------------------------
# the stand-in action of a cache hit
# --------------------------------------------------------------------------
class _Fresh:
    """The real generators' output in this process, generated once when a cached task's action first runs."""

    outputs: dict[str, list[dict]] = {}
    cache: TaskCache | None = None
    done = False
    problem: str | None = None
    lock = threading.Lock()  # doit -n N -P thread: one generation, the others wait for it


class LazyAction:
    """Action ``index`` of task ``task`` of ``generator``, as cached: runs the freshly generated action.

    Before the first one runs, every dmsbuild generator that doit called from
    the cache is run for real (as doit called it) and its output compared with
    the cached one; any difference fails the task (and deletes the cache file)
    instead of running an action of a task list doit did not check."""

    def __init__(self, generator: str, task: int, index: int) -> None:
        self.generator, self.task, self.index = generator, task, index

    def __repr__(self) -> str:
        return f"<dmsbuild cached action {self.generator}[{self.task}].actions[{self.index}]>"

    def __call__(self, task: Any) -> Any:
        from doit.action import create_action
        from doit.exceptions import TaskError

        cache = _Fresh.cache
        if cache is None:  # pragma: no cover - only a TaskCache makes these
            return TaskError("dmsbuild: a cached action without its task cache")
        problem = cache.regenerate()
        if problem:
            return TaskError(problem)
        raw = _Fresh.outputs[self.generator][self.task]["actions"][self.index]
        inner = create_action(raw, task, "actions")
        failure = inner.execute(out=None, err=None)
        if task.io.capture:  # doit's own action captured it; hand it to the stand-in's capture
            sys.stdout.write(inner.out or "")
            sys.stderr.write(inner.err or "")
        if failure is not None:
            return failure
        if inner.values:
            return dict(inner.values)
        return inner.result if isinstance(inner.result, str) else None


# --------------------------------------------------------------------------
# the cache
# --------------------------------------------------------------------------
class TaskCache:
    """One ``dodo.py``'s view of the cache: :meth:`creator` gives doit each dmsbuild generator, cached or real."""

    def __init__(self, root: Path | None, enabled: bool = True) -> None:
        self.root = root
        self.folder = root / "artifacts" / CACHE_NAME if root is not None else None
        self.path: Path | None = None  # this command line's file (set by open)
        self.enabled = enabled and self.folder is not None
        self.entry: dict | None = None  # the matching cached entry (a hit)
        self.status = "off" if not self.enabled else "miss"
        self.why = ""  # why the cache was not written (for tests and debugging)
        self._rec: _Recorder | None = None
        self._given: dict[str, dict] = {}  # generator -> what doit called it with (served from the cache)
        self.dodo = ""  # the dodo.py's path (set by open)
        self._head_at_open: dict[str, Any] | None = None
        self._live = False  # a hit turned into live generation (doit's option defaults changed)
        self._outputs: dict[str, dict] = {}
        self._real: dict[str, Callable[..., Any]] = {}
        self._start_ns = 0

    # -- opening
    @classmethod
    def open(cls, dodo_file: str) -> TaskCache:
        """The cache of the project doit runs in (found like ``config.find_root``), looked up now."""
        root = locate_root()
        cache = cls(root, enabled=not disabled())
        _Fresh.cache = cache
        if cache.enabled:
            cache.dodo = os.path.abspath(dodo_file)
            cache.entry = cache._lookup()
            cache.status = "hit" if cache.entry is not None else "miss"
            if cache.entry is not None and os.environ.get(ENV, "").strip().lower() == "verbose":
                print(f"dmsbuild task cache: hit ({cache.path})", file=sys.stderr)
        if cache.entry is None:
            cache._import_real()
        return cache

    def _head(self) -> dict[str, Any]:
        """The command line and interpreter as they were when dodo.py opened the cache (the lookup's and the write's)."""
        if self._head_at_open is None:
            self._head_at_open = _head(_doit_vars())
            self._head_at_open["dodo"] = self.dodo
        return self._head_at_open

    def _lookup(self) -> dict | None:
        assert self.folder is not None
        head = self._head()
        name = hashlib.sha256(json.dumps(head, sort_keys=True).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        self.path = self.folder / f"{name}.json"
        try:
            with open(self.path, "rb") as f:
                digest, _, body = f.read().partition(b"\n")
            if hashlib.sha256(body).hexdigest().encode() != digest:  # truncated, or changed by anything but us
                return None
            entry = json.loads(body)
            if entry["format"] != FORMAT or entry["head"] != head or not self._valid(entry):
                return None
            self._check_shape(entry)
        except (OSError, KeyError, TypeError, ValueError, AttributeError, Unsupported):
            return None  # none yet, or a file of another shape (edited, truncated): a miss, rewritten
        return entry

    @staticmethod
    def _valid(entry: dict) -> bool:
        env = entry["env"]
        if env.get("*") is not None and env["*"] != _environ_digest():
            return False
        for name, digest in env.items():
            if name != "*" and _digest(os.environ.get(name)) != digest:
                return False
        for path, follow, st in entry["stats"]:
            try:
                if not _same(st, _stat(path, follow)):
                    return False
            except OSError:
                return False
        return True

    @staticmethod
    def _check_shape(entry: dict) -> None:
        gens = entry["generators"]
        if set(gens) != set(GENERATORS):
            raise Unsupported("generators")
        for g in gens.values():
            if not (g["doc"] is None or isinstance(g["doc"], str)) or not (g["params"] is None or isinstance(g["params"], list)) \
                    or not isinstance(g["given"], dict):
                raise Unsupported("doc")
            if g["kind"] not in ("dict", "iter", "none") or not isinstance(g["tasks"], list):
                raise Unsupported("kind")
            for t in g["tasks"]:
                if set(t) - _FIELDS or not isinstance(t.get("actions", []), list):
                    raise Unsupported("task")
                for u in t.get("uptodate", []):
                    if not (u is None or isinstance(u, bool) or isinstance(u.get("config_changed"), str)):
                        raise Unsupported("uptodate")

    def _import_real(self) -> None:
        if self.enabled:
            self._rec = _Recorder()
            self._start_ns = time.time_ns()
            self._rec.start()
        try:
            for name, module in GENERATORS.items():
                self._real[name] = getattr(importlib.import_module(module), f"task_{name}")
        finally:
            if self._rec is not None:
                self._rec.stop()

    # -- what doit calls
    def doit_config(self) -> dict[str, Any]:
        """``DOIT_CONFIG``: doit's dependency database in the project's ``artifacts/`` (created here), ``doit`` alone builds.

        The project is the folder holding ``dmsbuild.toml`` from doit's working
        directory upwards (doit runs in the ``dodo.py``'s folder), or that folder
        itself when there is none yet (``doit init`` writes it)."""
        project_root = self.root or Path.cwd()
        (project_root / "artifacts").mkdir(exist_ok=True)
        return {"default_tasks": ["build"], "verbosity": 2, "backend": "sqlite3",
                "dep_file": str(project_root / "artifacts" / ".doit.db")}

    def creator(self, name: str) -> Callable[..., Any]:
        """doit's ``task_<name>``: the cached output on a hit, else the real generator (recorded for the cache)."""
        def task_creator(**given: Any) -> Any: return self._serve(name, given)  # noqa: E704 - one line: doit reads every creator's source block (inspect.getsourcelines), on each run

        if self.entry is not None:
            gen = self.entry["generators"][name]
            task_creator.__doc__ = gen["doc"]
            if gen["params"] is not None:
                task_creator._task_creator_params = [{**d, "type": str} for d in gen["params"]]  # type: ignore[attr-defined]
        else:
            real = self._real[name]
            task_creator.__doc__ = real.__doc__
            if hasattr(real, "_task_creator_params"):
                task_creator._task_creator_params = real._task_creator_params  # type: ignore[attr-defined]
        task_creator.__name__ = task_creator.__qualname__ = f"task_{name}"
        return task_creator

    def _serve(self, name: str, given: dict[str, Any]) -> Any:
        """What doit gets from ``task_<name>(**given)``: the cached tasks (actions as :class:`LazyAction`) or the real
        generator's (recorded on a miss)."""
        if self.entry is None:
            return self._generate(name, self._real[name], given)
        gen = self.entry["generators"][name]
        if not self._live and _plain(given) != gen["given"]:
            # doit's option defaults (doit.cfg, pyproject.toml) changed, which the key does not cover. The generators
            # share state (an option given to one is seen by those after it): the ones served so far run for real now,
            # in order, and must agree with what doit got (regenerate); this one and all after it are generated live.
            self._live = True
            self.forget()
            self.regenerate()
        if self._live:
            return getattr(importlib.import_module(GENERATORS[name]), f"task_{name}")(**given)
        self._given[name] = given
        tasks = [_decode_task(t, name, i) for i, t in enumerate(gen["tasks"])]
        return tasks[0] if gen["kind"] == "dict" else None if gen["kind"] == "none" else (t for t in tasks)

    def _generate(self, name: str, real: Callable[..., Any], given: dict) -> Any:
        rec = self._rec
        if rec is None:
            return real(**given)
        rec.start()
        try:
            ret = real(**given)
            tasks = [ret] if isinstance(ret, dict) else [] if ret is None else list(ret)  # doit reads it all anyway
        finally:
            rec.stop()
        try:
            if not all(isinstance(t, dict) for t in tasks):
                raise Unsupported("a generator yielded something other than a dict")
            self._outputs[name] = {"kind": "dict" if isinstance(ret, dict) else "none" if ret is None else "iter",
                                   "tasks": [encode_task(t) for t in tasks], "doc": real.__doc__, "given": _plain(given),
                                   "params": encode_params(getattr(real, "_task_creator_params", None))}
        except Unsupported as exc:
            rec.unsafe = rec.unsafe or f"{name}: {exc}"
            self._outputs[name] = {}
        if set(self._outputs) == set(GENERATORS):
            self._write()
            if os.environ.get(ENV, "").strip().lower() == "verbose":
                print(f"dmsbuild task cache: miss; {self.why}", file=sys.stderr)
        return ret if isinstance(ret, dict) or ret is None else (t for t in tasks)  # doit takes a generator, not an iterator

    # -- writing
    def _write(self) -> None:
        rec = self._rec
        assert rec is not None and self.path is not None
        if rec.unsafe:
            self.why = f"not cached: {rec.unsafe}"
            return
        # the code that ran: every module loaded (before the recording too), and its folder in full (Python looked
        # it up there, maybe from a listing made before the recording: a module or package added beside it misses)
        files = {os.path.abspath(f) for f in (getattr(m, "__file__", None) for m in list(sys.modules.values()))
                 if isinstance(f, str)} | {self.dodo}
        folders = {os.path.dirname(f) for f in files}
        rec.listed |= folders
        code = files | folders
        stats = rec.stats()
        for f in sorted(code):
            if (f, True) not in rec.paths:
                try:
                    stats.append([f, True, _stat(f, True)])
                except OSError:
                    self.why = f"not cached: {f} cannot be stat'ed"
                    return
        seen: dict[tuple[str, bool], Any] = {}
        for path, follow, st in stats:
            seen.setdefault((path, follow), st)
        racy_after = self._start_ns - int(RACY_S * 1e9)
        for (path, follow), st in seen.items():
            try:
                now = _stat(path, follow)
            except OSError:
                now = "error"
            if now == "error" or not _same(st, now):  # type: ignore[arg-type]
                self.why = f"not cached: {path} changed while the tasks were generated"
                return
            if st is not None and st[0] != -1 and max(st[0], st[1]) >= racy_after:
                self.why = f"not cached: {path} changed less than {RACY_S:g} s ago"
                return
        head = self._head()
        env = {k: _digest(v) for k, v in sorted(rec.env.items())}
        env["*"] = _environ_digest() if rec.env_all else None
        entry = {"format": FORMAT, "head": head, "env": env,
                 "stats": [[p, f, st] for (p, f), st in sorted(seen.items())], "generators": self._outputs}
        body = json.dumps(entry, separators=(",", ":")).encode("utf-8", "surrogateescape")
        if self._atomic_write(hashlib.sha256(body).hexdigest().encode() + b"\n" + body):
            self.why = "written"
            self._evict()

    def _atomic_write(self, data: bytes) -> bool:
        assert self.path is not None and self.folder is not None
        try:
            self.folder.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.folder)
        except OSError as exc:
            self.why = f"not cached: {exc}"  # a read-only project: no cache, nothing else changes
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one
        except OSError as exc:
            self.why = f"not cached: {exc}"
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        return True

    def _evict(self) -> None:
        """Keep the :data:`MAX_ENTRIES` newest files (one per command line)."""
        assert self.folder is not None
        try:
            files = sorted((f.stat().st_mtime_ns, f) for f in self.folder.glob("*.json"))
            for _, f in files[:-MAX_ENTRIES]:
                f.unlink()
        except OSError:
            pass

    def forget(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    # -- a cached action runs: generate for real, once, and compare
    def regenerate(self) -> str | None:
        """Run the real generators as doit called the cached ones (once); an error text when the output differs."""
        with _Fresh.lock:
            if not _Fresh.done:
                _Fresh.done = True
                _Fresh.problem = self._regenerate()
            return _Fresh.problem

    def _regenerate(self) -> str | None:
        assert self.entry is not None
        for name, given in list(self._given.items()):  # in the order doit called them (they share option state)
            real = getattr(importlib.import_module(GENERATORS[name]), f"task_{name}")
            ret = real(**given)
            tasks = [ret] if isinstance(ret, dict) else [] if ret is None else list(ret)
            _Fresh.outputs[name] = tasks
            if json.loads(json.dumps([encode_task(t) for t in tasks])) != self.entry["generators"][name]["tasks"]:
                self.forget()
                return (f"dmsbuild: the {name} tasks changed after doit read them from {self.path} (an input changed "
                        f"while doit ran, or one the cache's key missed); no dmsbuild task runs from that list and the "
                        f"file is deleted: run the command again")
        return None
