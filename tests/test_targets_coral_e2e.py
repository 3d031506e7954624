"""`doit deploy` end to end for a Coral (Edge TPU) target and a LiteRT target, on emulated boards.

Tiny model, real sshd boards (the session `boards` fixture). The full-integer .tflite is built with
litert-torch + ai-edge-quantizer, compiled by the edgetpu_compiler test double (EDGETPU_COMPILER), shipped,
run on the boards' LiteRT CPU path (an emulated board has no Edge TPU: the provider says so), output-checked
and stored. Needs the `litert` extra: skipped, saying so, only when it is absent.
"""
from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest

from dmsbuild.board.runner.litert_runner import EMULATED_PROVIDER
from tests.tinyproject import REPO, DoitRun, make_project, run_doit

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")),
    reason="the litert extra is not installed (pip install 'dmsbuild[litert]')")

DOUBLE = REPO / "dmsbuild" / "doubles" / "edgetpu_compiler"

CORAL_TARGET = """\
runtime = "edgetpu"
arch = "aarch64"
precisions = ["int8-qdq"]
[backend]
max_cpu_ops = 200   # the tiny net's placement is printed and stored; the gate's own tests are in tests/backends
[deploy]
group = "rpi5"
[bench]
warmup = 1
iterations = 5
verify_samples = 3
"""

# an rpi5-like target shipping TFLite next to its ONNX files
LITERT_TARGET = """\
runtime = "onnxruntime"
arch = "aarch64"
precisions = ["fp32", "int8-qdq"]
[backend]
tflite = ["fp32", "int8-qdq"]
[deploy]
group = "rpi5"
[bench]
warmup = 1
iterations = 5
verify_samples = 3
"""


def _rows(root: Path, target: str) -> list[dict]:
    con = sqlite3.connect(root / "artifacts" / "results.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM results WHERE target = ? ORDER BY created_at", (target,))]
    finally:
        con.close()


def _settled_project(root: Path, targets: dict[str, str]) -> Path:
    """The tiny project with BatchNorm statistics settled on random images: the committed tiny checkpoint's
    outputs barely depend on the input, and full-integer INT8 rounds them to one constant (the gate then
    fails it as degenerate, rightly; tests/backends/test_litert.py shows the same net settled tracks FP32)."""
    import torch

    from dmsbuild.model.dms_net import build_tiny
    from tests.backends.models import settle

    root = make_project(root, targets)
    torch.save(settle(build_tiny(), (1, 3, 64, 64)).state_dict(), root / "models" / "tiny.pt")
    return root


@pytest.fixture(scope="module")
def without_compiler(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DoitRun, dict[str, bool]]:
    """The settled project built for the Coral target where no edgetpu_compiler is found: it stops after the
    int8 model. Both tests start here: the deploy one then finds the compiler (as after installing it), so the
    export, calibration and full-integer conversion are built once for the two. Also which files the stopped
    build left (looked at at once: the deploy test, which may run first, adds the compiled one)."""
    root = _settled_project(tmp_path_factory.mktemp("coral") / "p", {"c": CORAL_TARGET, "l": LITERT_TARGET})
    run = run_doit(root, "build", "target=c", env={"EDGETPU_COMPILER": "", "PATH": "/usr/bin:/bin"})
    left = {name: (root / "artifacts" / "c" / name).exists() for name in ("int8.tflite", "int8_edgetpu.tflite")}
    return root, run, left


def test_deploy_coral_compiles_ships_and_checks_on_emulated_boards(boards, without_compiler):
    root = without_compiler[0]
    run = run_doit(root, "deploy", "target=c", "hosts=emu-03", f"inventory={boards['inventory']}",
                   env={"EDGETPU_COMPILER": str(DOUBLE)})
    assert run.rc == 0, run.output[-3000:]
    assert "[test double: generated]" in run.output and "Number of operations" not in run.output
    placement = json.loads((root / "artifacts" / "c" / "int8_edgetpu.placement.json").read_text())
    assert placement["source"] == "test double (generated)" and placement["edgetpu_ops"] > 0
    rows = {r["artifact"]: r for r in _rows(root, "c")}
    assert set(rows) == {"int8-edgetpu", "int8-qdq-tflite"}
    assert (rows["int8-edgetpu"]["runtime"], rows["int8-edgetpu"]["provider"]) == ("edgetpu", EMULATED_PROVIDER)
    assert (rows["int8-qdq-tflite"]["runtime"], rows["int8-qdq-tflite"]["provider"]) == ("litert", "cpu (XNNPACK)")
    for r in rows.values():
        assert r["error"] is None and r["board"] == "emu-03" and len(json.loads(r["samples_json"])) == 5
        verify = json.loads(r["verify_json"])
        assert set(verify["heads"]) == {"eye_state", "yawn", "activity", "head_pose"}

    # LiteRT next to ONNX Runtime: the same boards run the ONNX files and FP32 / full-integer .tflite files
    run = run_doit(root, "deploy", "target=l", "hosts=emu-03", f"inventory={boards['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    rows = {r["artifact"]: r for r in _rows(root, "l")}
    assert set(rows) == {"fp32", "int8-qdq", "fp32-tflite", "int8-qdq-tflite"}
    assert all(r["error"] is None for r in rows.values())
    assert {n: r["runtime"] for n, r in rows.items()} == {"fp32": "onnxruntime", "int8-qdq": "onnxruntime",
                                                           "fp32-tflite": "litert", "int8-qdq-tflite": "litert"}
    fp32 = json.loads(rows["fp32-tflite"]["verify_json"])["heads"]
    assert min(h["cosine"] for h in fp32.values()) > 0.999  # FP32 .tflite == FP32 ONNX within float error


def test_without_the_compiler_the_build_stops_in_one_line_after_the_int8_model(without_compiler):
    _, run, left = without_compiler
    assert run.rc != 0
    assert left["int8.tflite"]  # everything before the compiler step was built
    assert not left["int8_edgetpu.tflite"]
    lines = [line for line in run.output.splitlines() if "edgetpu_compiler not found" in line]
    assert lines and "apt-get install edgetpu-compiler" in lines[0]
    assert "Traceback" not in run.output
