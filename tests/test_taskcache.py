"""dodo.py's task cache (dmsbuild/taskcache.py, issue 26 item 4) never serves a stale task list.

Property: for every input the task generators read (the project file, a target
profile, a target appearing or going, a tuned file appearing or going, a data
folder gaining, losing or changing a sample, the model checkpoint, the
factory's module being shadowed, an environment variable they read, a
command-line parameter, doit's option defaults), changing it after a cached
run makes the next run's task list (names, file_dep, targets, task_dep,
uptodate values, actions by function and plain arguments) equal to the one
doit gets with the cache off; and each change is one that does change the
list, so a cache that served the old one would fail here. Plus: a corrupt or
truncated cache file is ignored and rewritten, concurrent writers leave one
whole file, and a cached list that differs from a fresh one when a task runs
fails the run instead of running from it.

doit runs in subprocesses against the repository's dodo.py, with a small
script that writes the tasks doit loaded to JSON. A cache file is written
only when every path read is older than taskcache.RACY_S, so the tests'
project copies are all made first and aged once (the ``aged`` fixture).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

import pytest

from dmsbuild import taskcache
from tests.tinyproject import REPO, make_project

DUMP = r'''
import json, sys
import doit.loader
from doit.doit_cmd import DoitMain

out, args = sys.argv[1], sys.argv[2:]
sys.argv = [sys.argv[0], *args]
real = doit.loader.load_tasks

def plain(v):
    from dmsbuild.taskcache import _plain
    return _plain(v)

def action(a):
    from dmsbuild.taskcache import LazyAction, _Fresh
    fn = getattr(a, "py_callable", None)
    if fn is None:
        return {"cmd": str(getattr(a, "_action", a))}
    if isinstance(fn, LazyAction):  # what the cache recorded of the real action
        d = _Fresh.cache.entry["generators"][fn.generator]["tasks"][fn.task]["actions"][fn.index]
        return {"call": d["call"], "args": d.get("args", []), "kwargs": d.get("kwargs", {})}
    return {"call": f"{fn.__module__}:{fn.__qualname__}", "args": plain(list(a.args)), "kwargs": plain(dict(a.kwargs))}

def load_tasks(*a, **k):
    tasks = real(*a, **k)
    rows = []
    for t in tasks:
        rows.append({"name": t.name, "doc": t.doc, "file_dep": sorted(t.file_dep), "targets": list(t.targets),
                     "task_dep": list(t.task_dep), "uptodate": [repr(u[0]) for u in t.uptodate],
                     "verbosity": t.verbosity, "actions": [action(x) for x in t.actions], "subtask_of": t.subtask_of,
                     "params": sorted(p["name"] for p in (t.creator_params or []))})
    with open(out, "w") as f:
        json.dump(sorted(rows, key=lambda r: r["name"]), f, indent=1)
    return tasks

doit.loader.load_tasks = load_tasks
sys.exit(DoitMain().run(args))
'''


def start(root: Path, tmp: Path, *args: str, cache: bool = True, env: dict[str, str] | None = None,
          out: str = "tasks.json") -> tuple[subprocess.Popen, Path]:
    """``doit <args>`` on ``root`` started through the dump script (the same command line each time: it is keyed)."""
    # its own folder beside the project copies (written with them, so as old): the __main__ module's folder is
    # keyed, the outputs (in tmp) change
    script = root.parent / "bin" / "dump_tasks.py"
    if not script.exists():
        script.parent.mkdir(exist_ok=True)
        script.write_text(DUMP)
    (tmp / out).unlink(missing_ok=True)
    full = {**os.environ, "DMSBUILD_ROOT": str(root), "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore",
            taskcache.ENV: "verbose" if cache else "off", **(env or {})}
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp / out), "-f", str(REPO / "dodo.py"), "-d", str(root),
                             *args], cwd=root, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, tmp / out


def run_full(root: Path, tmp: Path, *args: str, **kwargs: Any) -> tuple[list, str, str, int]:
    """(the tasks doit loaded, stderr, stdout, exit code)."""
    proc, out = start(root, tmp, *args, **kwargs)
    stdout, stderr = proc.communicate(timeout=300)
    assert out.exists(), stdout + stderr
    return json.loads(out.read_text()), stderr, stdout, proc.returncode


def run(root: Path, tmp: Path, *args: str, **kwargs: Any) -> tuple[list, str]:
    """(the tasks doit loaded, stderr) for ``doit <args>`` on ``root``."""
    tasks, stderr, _, _ = run_full(root, tmp, *args, **kwargs)
    return tasks, stderr


def load_entry(f: Path) -> dict:
    """A cache file: its sha256 on the first line, then the JSON entry."""
    return json.loads(f.read_bytes().partition(b"\n")[2])


def save_entry(f: Path, entry: dict) -> None:
    """Write an entry as the cache does (with a matching sha256): for tests that alter what it says."""
    import hashlib

    body = json.dumps(entry).encode()
    f.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def status(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("dmsbuild task cache:")]
    return lines[-1] if lines else ""


def prime(root: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> list:
    """Run until the cache is written and a run is a hit (one wait for the racy window); the cached list."""
    _, err = run(root, tmp, *args, env=env)
    if "written" not in status(err):  # the project's files were written just before (on a loaded machine: not always)
        time.sleep(taskcache.RACY_S + 0.2)
        _, err = run(root, tmp, *args, env=env)
        assert "written" in status(err), err
    tasks, err = run(root, tmp, *args, env=env)
    assert "hit" in status(err), err
    return tasks


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("taskcache") / "proj")


@pytest.fixture(scope="module")
def aged(base: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> list[Path]:
    """One copy of the tiny project per test here that takes ``proj`` (and the dump script beside them), all made
    first and then left to age RACY_S once: a copy's files (their ctime too) are then older than the racy window,
    so the first cached run on it writes the cache, instead of every test waiting RACY_S for its own copy."""
    where = tmp_path_factory.mktemp("taskcache-copies")
    wanted = sum(1 for item in request.session.items
                 if item.module is request.module and "proj" in getattr(item, "fixturenames", ()))
    copies = []
    for i in range(wanted):
        copies.append(where / f"proj{i}")
        shutil.copytree(base, copies[-1], symlinks=True)
    (where / "bin").mkdir()
    (where / "bin" / "dump_tasks.py").write_text(DUMP)
    time.sleep(taskcache.RACY_S + 0.2)
    return copies


@pytest.fixture
def proj(base: Path, aged: list[Path], tmp_path: Path) -> Path:
    """A project of its own, older than the racy window (or, if the pool ran out, a fresh copy: prime waits)."""
    if aged:
        return aged.pop(0)
    root = tmp_path / "fresh" / "proj"
    shutil.copytree(base, root, symlinks=True)
    return root


def _aged(root: Path) -> bool:
    """Every file and folder of the project older than the racy window (mtime and ctime, as the cache judges)."""
    limit = time.time() - taskcache.RACY_S
    return all(max(p.lstat().st_mtime, p.lstat().st_ctime) < limit for p in [root, *root.rglob("*")])


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _add_sample(root: Path) -> None:
    shutil.copy(root / "data" / "calibration" / "000.png", root / "data" / "calibration" / "zzz.png")


def _sample_becomes_folder(root: Path) -> None:
    (root / "data" / "validation" / "005.png").unlink()
    (root / "data" / "validation" / "005.png").mkdir()


def _shadow_factory(root: Path) -> None:
    mod = root / "dmsbuild" / "model"
    mod.mkdir(parents=True)
    (mod / "dms_net.py").write_text("# a module the project's own folder puts first (export's file_dep)\n")


def _tuned_file(root: Path) -> None:
    (root / "targets" / "a.tuned.toml").write_text("schema = 1\n[choice]\nbogus = true\n")


#: name -> (change to make after a cached run, command line); each changes the uncached task list
CHANGES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "project file": (lambda r: _edit(r / "dmsbuild.toml", 'name = "tiny"', 'name = "tiny2"'), ("list", "--all")),
    "project file breaks": (lambda r: _edit(r / "dmsbuild.toml", "[model]", "[model\n"), ("list", "--all")),
    "target profile": (lambda r: _edit(r / "targets" / "c.toml", '"fp32", "fp16"', '"fp32", "fp16", "int8-dynamic"'),
                       ("list", "--all")),
    "target appears": (lambda r: shutil.copy(r / "targets" / "a.toml", r / "targets" / "d.toml"), ("list", "--all")),
    "target goes": (lambda r: (r / "targets" / "b.toml").unlink(), ("list", "--all")),
    "tuned file appears": (_tuned_file, ("list", "--all")),
    "calibration sample added": (_add_sample, ("list", "--all")),
    "validation sample removed": (lambda r: (r / "data" / "validation" / "000.png").unlink(), ("list", "--all")),
    "validation sample becomes a folder": (_sample_becomes_folder, ("list", "--all")),
    "labels file goes": (lambda r: (r / "data" / "validation" / "labels.json").unlink(), ("list", "--all")),
    "checkpoint goes": (lambda r: (r / "models" / "tiny.pt").unlink(), ("list", "--all")),
    "factory module shadowed": (_shadow_factory, ("list", "--all")),
    "build with target=": (lambda r: None, ("list", "--all", "target=a")),
    "build with --target": (lambda r: None, ("list", "--all", "build", "--target=b")),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_to_what_the_generators_read_gives_the_uncached_list(proj: Path, tmp_path: Path, change: str) -> None:
    mutate, args = CHANGES[change]
    before = prime(proj, tmp_path, "list", "--all")
    assert before == run(proj, tmp_path, "list", "--all", cache=False)[0]  # a hit is the uncached list
    mutate(proj)
    cached, err = run(proj, tmp_path, *args)
    uncached, _ = run(proj, tmp_path, *args, cache=False)
    assert "hit" not in status(err), err
    assert cached == uncached
    assert uncached != before, f"{change}: the uncached list did not change, so this case proves nothing"


def test_the_tuned_file_going_gives_the_uncached_list(proj: Path, tmp_path: Path) -> None:
    _tuned_file(proj)
    before = prime(proj, tmp_path, "list", "--all")
    (proj / "targets" / "a.tuned.toml").unlink()
    cached, err = run(proj, tmp_path, "list", "--all")
    assert "hit" not in status(err) and cached == run(proj, tmp_path, "list", "--all", cache=False)[0] != before


def test_a_symlinked_sample_whose_target_goes(proj: Path, tmp_path: Path) -> None:
    """The folder's own stat does not change when a symlinked sample's target (elsewhere) goes: the record has it."""
    elsewhere = proj / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(proj / "data" / "calibration" / "000.png", elsewhere / "x.png")
    (proj / "data" / "calibration" / "link.png").symlink_to(elsewhere / "x.png")
    before = prime(proj, tmp_path, "list", "--all")
    (elsewhere / "x.png").unlink()
    cached, err = run(proj, tmp_path, "list", "--all")
    assert "hit" not in status(err) and cached == run(proj, tmp_path, "list", "--all", cache=False)[0] != before


def test_an_environment_variable_the_generators_read(proj: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A QNN target plans an SNPE DLC when an SDK variable is set (backends/qnn.py): the variable is keyed (hashed)."""
    shutil.copy(REPO / "targets" / "qcs8255.toml", proj / "targets" / "q.toml")
    for var in ("SNPE_ROOT", "QNN_SDK_ROOT", "QAIRT_SDK_ROOT"):
        monkeypatch.delenv(var, raising=False)
    before = prime(proj, tmp_path, "list", "--all")
    entry = load_entry(next((proj / "artifacts" / taskcache.CACHE_NAME).glob("*.json")))
    assert {"DMSBUILD_ROOT", "SNPE_ROOT"} <= set(entry["env"]), entry["env"]
    env = {"SNPE_ROOT": "/opt/snpe-sdk-somewhere"}
    cached, err = run(proj, tmp_path, "list", "--all", env=env)
    assert "hit" not in status(err), err
    assert cached == run(proj, tmp_path, "list", "--all", cache=False, env=env)[0] != before
    assert "/opt/snpe-sdk-somewhere" not in next((proj / "artifacts" / taskcache.CACHE_NAME).glob("*.json")).read_text()


def test_doit_option_defaults_from_pyproject_are_not_served_stale(proj: Path, tmp_path: Path) -> None:
    """doit gives a generator option defaults from pyproject.toml's [tool.doit.tasks.<name>] (not a dmsbuild read)."""
    before = prime(proj, tmp_path, "list", "--all")
    (proj / "pyproject.toml").write_text('[tool.doit.tasks.build]\ntarget = "c"\n')
    cached, _ = run(proj, tmp_path, "list", "--all")
    assert cached == run(proj, tmp_path, "list", "--all", cache=False)[0] != before


def test_the_key_covers_code_dodo_and_every_folder_listed(proj: Path, tmp_path: Path) -> None:
    prime(proj, tmp_path, "list")
    entry = load_entry(next((proj / "artifacts" / taskcache.CACHE_NAME).glob("*.json")))
    paths = {p for p, _, _ in entry["stats"]}
    for f in ("dodo.py", "dmsbuild/tasks/build.py", "dmsbuild/config.py", "dmsbuild/convert/data.py", "dmsbuild/taskcache.py"):
        assert str(REPO / f) in paths, f
    for f in ("dmsbuild.toml", "targets", "targets/a.toml", "data/calibration", "data/validation", "models/tiny.pt"):
        assert str(proj / f) in paths, f
    missing = {p for p, _, st in entry["stats"] if st is None}
    assert str(proj / "targets" / "a.tuned.toml") in missing  # its appearing misses
    assert not any("__pycache__" in p for p in paths)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not json", "other format", "tasks of another shape", "empty",
                                    "a byte changed in a path"])
def test_a_damaged_cache_file_is_ignored_and_rewritten(proj: Path, tmp_path: Path, damage: str) -> None:
    good = prime(proj, tmp_path, "list", "--all")
    f = next((proj / "artifacts" / taskcache.CACHE_NAME).glob("*.json"))
    data = f.read_bytes()
    entry = load_entry(f)
    if damage == "truncated":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        f.write_bytes(os.urandom(4096))
    elif damage == "not json":
        save_entry(f, entry)
        f.write_bytes(f.read_bytes().partition(b"\n")[0] + b"\n[1, 2")
    elif damage == "other format":
        save_entry(f, {**entry, "format": 999})
    elif damage == "tasks of another shape":
        entry["generators"]["build"]["tasks"] = [{"name": "x", "uptodate": [{"config_changed": 3}]}]
        save_entry(f, entry)
    elif damage == "a byte changed in a path":  # still JSON, still a path: only the checksum tells
        at = data.index(b"/data/calibration/") + 1
        f.write_bytes(data[:at] + b"D" + data[at + 1:])
    else:
        f.write_bytes(b"")
    tasks, err = run(proj, tmp_path, "list", "--all")
    assert "hit" not in status(err) and tasks == good, err
    if "written" not in status(err):  # a path read changed within the racy window (a fresh copy): wait, run again
        time.sleep(taskcache.RACY_S + 0.2)
        run(proj, tmp_path, "list", "--all")
    tasks, err = run(proj, tmp_path, "list", "--all")
    assert "hit" in status(err) and tasks == good, err  # rewritten whole


def test_concurrent_writers_leave_one_whole_file(proj: Path, tmp_path: Path) -> None:
    good = prime(proj, tmp_path, "list", "--all")
    shutil.rmtree(proj / "artifacts" / taskcache.CACHE_NAME)
    procs = [start(proj, tmp_path, "list", "--all", out=f"tasks{i}.json")[0] for i in range(6)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert sum("written" in status(e) for e in errs) >= 2, errs  # several wrote the same file at once
    files = list((proj / "artifacts" / taskcache.CACHE_NAME).iterdir())
    assert [f.suffix for f in files] == [".json"], files  # one file, no temporary left behind
    load_entry(files[0])
    tasks, err = run(proj, tmp_path, "list", "--all")
    assert "hit" in status(err) and tasks == good


def test_a_cached_list_that_differs_from_a_fresh_one_runs_nothing(proj: Path, tmp_path: Path) -> None:
    """The net under the key: before a cached task's action runs, the real generators run and must agree."""
    prime(proj, tmp_path, "report")
    f = next((proj / "artifacts" / taskcache.CACHE_NAME).glob("*.json"))
    entry = load_entry(f)
    entry["generators"]["export"]["tasks"][0]["file_dep"].append(str(proj / "stale.txt"))  # as if a read were missed
    save_entry(f, entry)
    _, err, out, rc = run_full(proj, tmp_path, "report")
    assert "hit" in status(err) and rc != 0, out + err
    assert "the export tasks changed after doit read them" in out + err, out + err
    assert ".  report" in out and "report: " not in out  # doit started it; its action did not run
    assert not f.exists()  # deleted: the next run generates


def test_off_bypasses_and_writes_nothing(proj: Path, tmp_path: Path) -> None:
    run(proj, tmp_path, "list", cache=False)
    if not _aged(proj):  # a copy from the pool is: a cache that were on would write on the next run
        time.sleep(taskcache.RACY_S + 0.2)
    _, err = run(proj, tmp_path, "list", cache=False)
    assert status(err) == "" and not (proj / "artifacts" / taskcache.CACHE_NAME).exists()


def test_a_path_changed_just_before_is_not_cached(proj: Path, tmp_path: Path) -> None:
    """Within the racy window a later change could keep the same timestamp: such a run writes nothing."""
    run(proj, tmp_path, "list")
    (proj / "targets" / "a.toml").write_text((proj / "targets" / "a.toml").read_text() + "\n")
    _, err = run(proj, tmp_path, "list")
    assert "changed less than" in status(err), err
