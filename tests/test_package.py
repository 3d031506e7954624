"""dmsbuild as an installable package (issue 32, item 1): package data, one version, the defaults the
repository's own project keeps in step with, and the emulated boards' remembered placement."""
from __future__ import annotations

import ast
import json
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dmsbuild
from dmsbuild import boards
from dmsbuild.convert.scaffold import STARTER_FILES, defaults_dir
from dmsbuild.ship import manifest
from tests.tinyproject import REPO


def test_version_is_changelogs_top_entry() -> None:
    top = re.search(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert top is not None and top.group(1) == dmsbuild.__version__
    for cmd in ([sys.executable, "-m", "dmsbuild", "--version"],):
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == f"dmsbuild {dmsbuild.__version__}", out


@pytest.mark.parametrize("folder", ["templates", "targets"])
def test_repository_files_equal_the_package_defaults(folder: str) -> None:
    """The repository's top-level templates/ and targets/ are its project's own files; the package carries the
    canonical defaults (an installed dmsbuild has no repository). Edit both, or this fails: no silent drift."""
    ours = {p.name: p.read_bytes() for p in (REPO / folder).iterdir() if p.is_file() and not p.name.endswith(".tuned.toml")}
    theirs = {p.name: p.read_bytes() for p in (defaults_dir() / folder).iterdir() if p.is_file()}
    assert ours == theirs, f"{folder}/ and dmsbuild/defaults/{folder}/ differ: copy the change to both"


def _task_names(dodo: Path) -> set[str]:
    """The task_* names a dodo.py takes from dmsbuild: imported from dmsbuild.tasks.*, or ``_tasks.creator(...)``."""
    tree = ast.parse(dodo.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dmsbuild.tasks.")
                for a in n.names if a.name.startswith("task_")}
    cached = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
              and isinstance(n.value.func, ast.Attribute) and n.value.func.attr == "creator"
              for t in n.targets if isinstance(t, ast.Name) and t.id == f"task_{n.value.args[0].value}"}
    return imported | cached


def test_dodo_takes_every_generator_the_task_cache_knows() -> None:
    """dodo.py's task_* lines and dmsbuild/taskcache.py's GENERATORS name the same generators, each from its module."""
    import importlib

    from dmsbuild.taskcache import GENERATORS

    assert _task_names(REPO / "dodo.py") == {f"task_{g}" for g in GENERATORS}
    for name, module in GENERATORS.items():
        assert callable(getattr(importlib.import_module(module), f"task_{name}"))


def test_starter_dodo_imports_every_task_of_the_repository_dodo() -> None:
    repo, starter = _task_names(REPO / "dodo.py"), _task_names(defaults_dir() / "project" / "dodo.py")
    assert "task_deploy" in repo and repo == starter, f"add {repo ^ starter} to dmsbuild/defaults/project/dodo.py too"


def test_runtime_files_are_found_in_the_package() -> None:
    pkg = Path(dmsbuild.__file__).resolve().parent
    assert manifest.TEMPLATES.resolve().is_relative_to(pkg) and (manifest.TEMPLATES / "manifest.json.j2").is_file()
    assert boards.DOUBLES.resolve().is_relative_to(pkg)
    for tools in boards.EMULATED_TOOLS.values():
        for tool in tools:
            assert (boards.DOUBLES / tool).is_file(), tool
    for data in STARTER_FILES.values():
        assert (defaults_dir() / data).is_file(), data


def test_no_module_reaches_outside_the_package() -> None:
    """A path built above the package folder (parents[1] / "templates", "tests/doubles") works in a checkout only."""
    pkg = Path(dmsbuild.__file__).resolve().parent
    bad = []
    for f in pkg.rglob("*.py"):
        if "doubles" in f.parts or "defaults" in f.parts:
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"parents\[[1-9]\]|parent\.parent|PACKAGE_DIR\.parent|\"tests\" /|tests/doubles", line):
                bad.append(f"{f.relative_to(pkg.parent)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"  # a copy: setuptools writes build/ and *.egg-info next to the sources, and reuses them
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    shutil.copytree(REPO / "dmsbuild", src / "dmsbuild", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                           str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [whl] = out.glob("dmsbuild-*.whl")
    return whl


def test_wheel_carries_what_dmsbuild_loads(wheel: Path) -> None:
    assert wheel.name.startswith(f"dmsbuild-{dmsbuild.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    pkg = Path(dmsbuild.__file__).resolve().parent
    wanted = [p for sub in ("defaults", "doubles", "board") for p in (pkg / sub).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts]
    missing = [str(p.relative_to(pkg.parent)) for p in wanted if str(p.relative_to(pkg.parent)) not in names]
    assert not missing, missing
    assert not any(n.startswith(("tests/", "templates/", "targets/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "dmsbuild = dmsbuild.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def _busy(addr: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((addr, port))
    s.listen()
    return s


def test_boards_placement_is_chosen_once_and_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DMSBUILD_BOARDS_NET", raising=False)
    monkeypatch.delenv("DMSBUILD_BOARDS_PORT", raising=False)
    net, first = "127.0.0", 231
    taken = _busy(f"{net}.{first}", boards.DEFAULT_PORT)  # someone else's boards hold 2222 there
    try:
        chosen = boards.placement(tmp_path, None, first, None, count=2)
    finally:
        taken.close()
    assert chosen[:2] == (net, first) and chosen[2] != boards.DEFAULT_PORT
    (tmp_path / boards.STATE).write_text(json.dumps({"net": "127.0.1", "first": 40, "port": 40123, "boards": []}))
    assert boards.placement(tmp_path) == ("127.0.1", 40, 40123)  # a bare `up` returns where the boards were
    assert boards.placement(tmp_path, port=40999) == ("127.0.1", 40, 40999)  # an explicit one wins
    monkeypatch.setenv("DMSBUILD_BOARDS_PORT", "40555")
    assert boards.placement(tmp_path / "fresh", "127.0.2", 12) == ("127.0.2", 12, 40555)


def test_boards_up_then_bare_up_keeps_the_placement(tmp_path: Path) -> None:
    from tests.conftest import _free_port

    port = _free_port("127.0.0.61")
    cmd = [sys.executable, "-m", "dmsbuild", "boards"]
    try:
        first = subprocess.run([*cmd, "up", "--count", "1", "--dir", str(tmp_path), "--port", str(port), "--first", "61",
                                "--groups", "rpi5"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        again = subprocess.run([*cmd, "up", "--count", "1", "--dir", str(tmp_path), "--groups", "rpi5"], cwd=REPO,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        assert f"@127.0.0.61:{port} " in again.stdout, again.stdout
        state = json.loads((tmp_path / boards.STATE).read_text())
        assert (state["net"], state["first"], state["port"]) == ("127.0.0", 61, port)
    finally:
        subprocess.run([*cmd, "down", "--dir", str(tmp_path)], cwd=REPO, capture_output=True, timeout=60)
