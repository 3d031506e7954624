"""A backend whose artifacts are compiled (not the ONNX itself) gets compile:<target>.<artifact> tasks
wired into build:<target> and build.json; its settings rebuild only its own artifacts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.tinyproject import REPO, DoitRun, make_project

TARGET_S = """\
runtime = "snpe"
precisions = ["fp32", "fp16"]
transport = "local"
[deploy]
root = "artifacts/boards/s"
[backend]
level = 1
"""

RUNNER = """
import sys
sys.path.insert(0, {repo!r})
from dmsbuild.backends import REGISTRY
REGISTRY["snpe"] = "tests.fixtures.fake_backend"   # stand-in for the SNPE backend another part adds
from doit.doit_cmd import DoitMain
from doit.cmd_base import ModuleTaskLoader
import importlib.util
spec = importlib.util.spec_from_file_location("dodo", {dodo!r})
dodo = importlib.util.module_from_spec(spec); spec.loader.exec_module(dodo)
sys.exit(DoitMain(ModuleTaskLoader(dodo)).run(sys.argv[1:]))
"""


def run(root: Path, *args: str) -> DoitRun:
    code = RUNNER.format(repo=str(REPO), dodo=str(REPO / "dodo.py"))
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "DMSBUILD_ROOT": str(root), "PYTHONWARNINGS": "ignore"}, timeout=600)
    return DoitRun(proc.returncode, proc.stdout + proc.stderr)


def test_compiled_artifacts_flow_into_build_json(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", {"s": TARGET_S})
    first = run(root, "build")
    assert first.rc == 0, first.output
    assert {"compile:s.fp32", "compile:s.fp16", "build:s"} <= first.executed
    doc = json.loads((root / "artifacts" / "s" / "build.json").read_text())
    arts = {a["name"]: a for a in doc["artifacts"]}
    assert arts["fp16"]["kind"] == "dlc" and arts["fp16"]["path"] == "artifacts/s/fp16.bin"
    assert arts["fp16"]["extra_files"] == ["artifacts/s/fp16.meta"] and arts["fp16"]["portable"] is False
    assert (root / "artifacts" / "s" / "fp16.bin").read_bytes().startswith(b"COMPILED1")
    assert arts["fp16"]["eval"]["artifact"] == "artifacts/common/fp16.onnx"  # host accuracy proxy
    assert run(root, "build").executed == set()
    prof = root / "targets" / "s.toml"
    prof.write_text(prof.read_text().replace("level = 1", "level = 2"))
    again = run(root, "build")
    assert again.rc == 0, again.output
    assert again.executed == {"compile:s.fp32", "compile:s.fp16", "build:s"}
    assert (root / "artifacts" / "s" / "fp32.bin").read_bytes().startswith(b"COMPILED2")
