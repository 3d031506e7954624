"""`dmsbuild new` and where paths resolve (issue 32, item 2).

The starter project is driven by its own dodo.py (no DMSBUILD_ROOT, no -f): doit
runs in the project's folder, so `data=` and `onnx=` are the user's, and a path
of dmsbuild.toml is the project's: never dmsbuild's own files. The repository
has a data/ folder (the reference project's images): a relative `data=data`
resolved against dmsbuild's checkout or installation would find it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmsbuild
from dmsbuild.convert.scaffold import STARTER_FILES, new_project
from dmsbuild.cli import main as cli_main
from dmsbuild.config import ProjectConfig, load_project, package_dir
from dmsbuild.errors import UserError
from tests.byom import classifier
from tests.tinyproject import REPO, write_images


def project_doit(root: Path, *args: str) -> subprocess.CompletedProcess:
    """doit as a user runs it in the project: its own dodo.py; dmsbuild importable, DMSBUILD_ROOT unset."""
    env = {k: v for k, v in os.environ.items() if k != "DMSBUILD_ROOT"}
    env.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)


def test_new_writes_the_starter_project(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "My Proj"
    assert cli_main(["new", str(root)]) == 0
    for rel in STARTER_FILES:
        assert (root / rel).is_file(), rel
    assert "artifacts/" in (root / ".gitignore").read_text().splitlines()
    assert load_project(root).name == "My-Proj"
    assert dmsbuild.__version__ in (root / "README.md").read_text()
    out = capsys.readouterr().out
    assert "wrote dodo.py" in out and "doit init onnx=" in out


def test_new_in_an_existing_repository_keeps_its_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("ours\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    new_project(tmp_path)
    assert (tmp_path / "README.md").read_text() == "ours\n"
    assert (tmp_path / ".gitignore").read_text().splitlines()[0] == "*.pyc"
    assert "artifacts/" in (tmp_path / ".gitignore").read_text().splitlines()
    before = (tmp_path / "dmsbuild.toml").read_text()
    (tmp_path / "dmsbuild.toml").write_text(before + "# mine\n")
    with pytest.raises(UserError, match=r"already has dodo.py, dmsbuild.toml, .*nothing was written"):
        new_project(tmp_path)
    assert (tmp_path / "dmsbuild.toml").read_text().endswith("# mine\n")


def test_cli_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "f").write_text("")
    assert cli_main(["new", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dmsbuild new: ") and "Traceback" not in err


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("users") / "myproj"
    new_project(root)
    classifier(root / "model.onnx", hw=(32, 32))
    write_images(root / "images", 4, seed=1, size=(40, 40))
    return root


def test_relative_data_never_resolves_to_dmsbuilds_own_data(starter: Path) -> None:
    assert (REPO / "data" / "calibration").is_dir()  # what a wrong resolution would pick up
    assert not (starter / "data").exists()
    run = project_doit(starter, "init", "onnx=model.onnx", "data=data")
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert f"data='data' is not a folder ({starter / 'data'})" in out, out
    assert str(REPO / "data") not in out and "Traceback" not in out, out


def test_init_then_build_resolve_inside_the_project(starter: Path) -> None:
    run = project_doit(starter, "init", "onnx=model.onnx", "data=images/")
    assert run.returncode == 0, run.stdout + run.stderr
    proj = load_project(starter)
    assert proj.model.onnx == "model.onnx" and proj.data.calibration == "images"
    assert proj.path(proj.data.calibration) == starter / "images"
    build = project_doit(starter, "build", "target=local")
    assert build.returncode == 0, build.stdout + build.stderr
    assert (starter / "artifacts" / "local" / "build.json").is_file()
    assert (starter / "artifacts" / ".doit.db").exists()


@pytest.mark.parametrize("field,line", [("data.calibration", 'calibration = "{pkg}/doubles"'),
                                        ("model.onnx", 'onnx = "{rel}/defaults/project/dodo.py"')])
def test_config_path_into_dmsbuild_is_refused(tmp_path: Path, field: str, line: str) -> None:
    root = tmp_path / "p"
    new_project(root)
    rel = os.path.relpath(package_dir(), root)
    key = line.split(" = ")[0]
    text = "\n".join(line.format(pkg=package_dir(), rel=rel) if ln.startswith(key + " = ") else ln
                     for ln in (root / "dmsbuild.toml").read_text().splitlines())
    (root / "dmsbuild.toml").write_text(text + "\n")
    with pytest.raises(UserError) as exc:
        load_project(root)
    assert f"field '{field}'" in exc.value.message and "inside dmsbuild's own installation" in exc.value.message
    run = project_doit(root, "build")
    out = run.stdout + run.stderr
    assert run.returncode == 1 and f"field '{field}'" in out and "Traceback" not in out, out


def test_init_refuses_data_inside_dmsbuild(starter: Path) -> None:
    run = project_doit(starter, "init", "onnx=model.onnx", f"data={package_dir() / 'doubles'}")
    out = run.stdout + run.stderr
    assert run.returncode == 1 and "doit init: data= is" in out and "dmsbuild's own installation" in out, out


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(st.text(alphabet="abcxyz_-.0", min_size=1, max_size=6).filter(lambda s: s not in (".", "..")),
                      min_size=1, max_size=4))
def test_config_paths_resolve_against_the_project_folder(tmp_path_factory: pytest.TempPathFactory, parts: list[str]) -> None:
    """Whatever the working directory (here: dmsbuild's checkout), a relative config path lands in the project."""
    root = tmp_path_factory.mktemp("cfg")
    proj = ProjectConfig()
    proj.root = root
    proj.source = root / "dmsbuild.toml"
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        p = proj.path("/".join(parts), "data.calibration")
    finally:
        os.chdir(cwd)
    assert p is not None and p.resolve().is_relative_to(root.resolve())
