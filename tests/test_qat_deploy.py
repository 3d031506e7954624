"""A QAT artifact end to end (issue 12, "Done when"): `doit deploy` of a `method = "qat"` profile to emulated rpi5
and qcs8255 boards (real sshd on 127.0.12.x; qcs8255: a real QNN HTP context binary from onnxruntime-qnn, run
on the HTP simulator), each passing its on-board output check against FP32.

The subject is the tiny project of tests/tinyproject.py with lr 1e-12, as in tests/test_qat.py (why: the
comment there): these tests check the path of a QAT artifact through build, compile and deploy, not what
training gains (bench/bench_qat.py measures that on the reference model). A tiny subject with measured
BatchNorm statistics, default Linear init and synthetic images was tried: its logits are of order 0.1, but
post-training INT8 of it already misses the tiny project's floors (SQNR 0.4 dB on 'activity', 12 samples), so
it cannot show a gated deploy either.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.test_targets_e2e import _rows
from tests.test_targets_qnn_e2e import QNN_TARGET
from tests.tinyproject import make_project, run_doit

NET = "127.0.12"  # this file's own loopback range (parallel test runs keep apart)

QAT_SETTINGS = """\
[quantization.qat]
steps = 4
batch = 4
lr = 1e-12
seed = 5
"""

# the rpi5 profile's scheme (the project's static settings: uint8 activations, int8 per-channel weights), QAT
RPI5_QAT = """\
description = "rpi5 with QAT"
arch = "aarch64"
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
[deploy]
group = "rpi5"
[bench]
warmup = 1
iterations = 3
verify_samples = 3
[quantization]
method = "qat"
""" + QAT_SETTINGS

# the qcs8255 e2e profile (targets/qcs8255.toml's scheme: 16-bit activations, uint8 weights, fixed shapes, no CPU
# fallback), with QAT
QCS8255_QAT = (QNN_TARGET.replace("[quantization]\n", '[quantization]\nmethod = "qat"\n')
               .replace('group = "rpi5"', 'group = "qcs8255"') + QAT_SETTINGS)


@pytest.fixture(scope="module")
def qat_boards(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two emulated boards in groups rpi5 and qcs8255, on 127.0.12.1-2."""
    from dmsbuild.boards import down, up

    where = tmp_path_factory.mktemp("qat-boards")
    with socket.socket() as s:
        s.bind((f"{NET}.1", 0))
        port = s.getsockname()[1]
    state = up(2, where, port=port, first=1, groups=("rpi5", "qcs8255"), net=NET)
    state["dir"] = where
    yield state
    down(where, quiet=True)


@pytest.fixture(scope="module")
def qat_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("qatdeploy") / "p", {"r": RPI5_QAT, "q": QCS8255_QAT})


def _key(root: Path, target: str) -> str:
    from dmsbuild.config import load_project, load_target, static_quant_for
    from dmsbuild.convert.quantize import settings_key

    proj = load_project(root)
    return settings_key(static_quant_for(proj, load_target(root, target)), proj.data.max_calibration_samples)


def _trained(root: Path, key: str) -> dict:
    """The QAT report, after checking the stage really trained: the fine-tuned weights differ from FP32's."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    common = root / "artifacts" / "common"
    report = json.loads((common / f"int8-qdq-{key}.qat.json").read_text())
    assert report["settings"]["method"] == "qat" and report["qat"]["steps"] == 4
    fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(common / "fp32.onnx")).graph.initializer}
    tuned = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(common / f"int8-qdq-{key}.fp32.onnx")).graph.initializer}
    moved = [n for n in fp32 if n in tuned and fp32[n].shape == tuned[n].shape and not np.array_equal(fp32[n], tuned[n])]
    assert moved, "QAT left every weight as it was"
    return report


def _last_rollout(root: Path, target: str) -> dict:
    [report] = sorted((root / "artifacts" / target / "rollouts").glob("*.json"))[-1:]
    [board] = json.loads(report.read_text())["boards"]
    return board


def test_qat_artifact_deploys_to_rpi5_and_passes_the_output_check(qat_boards: dict, qat_project: Path) -> None:
    root = qat_project
    run = run_doit(root, "deploy", "target=r", "hosts=emu-01", f"inventory={qat_boards['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    key = _key(root, "r")
    assert f"quantize:int8-qdq-{key}" in run.executed and "qat: step 4/4 loss" in run.output
    _trained(root, key)
    build = json.loads((root / "artifacts" / "r" / "build.json").read_text())
    qdq = next(a for a in build["artifacts"] if a["precision"] == "int8-qdq")
    assert Path(qdq["path"]).name.startswith("int8-qdq") and qdq["eval"]["samples"] == 6
    # the QAT artifact itself is what shipped (byte for byte)
    trained = (root / "artifacts" / "common" / f"int8-qdq-{key}.onnx").read_bytes()
    shipped = Path(qat_boards["boards"][0]["root"]) / "r" / "current" / "models" / Path(qdq["path"]).name
    assert shipped.read_bytes() == trained
    board = _last_rollout(root, "r")
    assert board["status"] == "done" and board["verified"] and board["output_check"] is True
    rows = [r for r in _rows(root, "r") if r["precision"] == "int8-qdq"]
    assert rows and all(r["board"] == "emu-01" and r["error"] is None and r["min_cosine"] is not None for r in rows)


def test_qat_artifact_deploys_to_qcs8255_htp_simulator_and_passes_the_output_check(
        onnxruntime_qnn: None, qat_boards: dict, qat_project: Path) -> None:
    root = qat_project
    run = run_doit(root, "deploy", "target=q", "hosts=emu-02", f"inventory={qat_boards['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    key = _key(root, "q")
    assert key != _key(root, "r")  # the qcs8255 scheme is its own QAT variant
    assert f"quantize:int8-qdq-{key}" in run.executed
    report = _trained(root, key)
    assert report["settings"]["activation_type"] == "QUInt16"
    build = json.loads((root / "artifacts" / "q" / "build.json").read_text())
    [art] = build["artifacts"]
    assert (art["kind"], art["runtime"]) == ("qnn-context", "qnn")
    placement = json.loads((root / "artifacts" / "q" / "int8-qdq.placement.json").read_text())
    assert placement["partitions"] >= 1 and placement["fallback_ops"] == {}
    board = _last_rollout(root, "q")
    assert board["status"] == "done" and board["verified"] and board["output_check"] is True
    [row] = _rows(root, "q")
    assert (row["board"], row["provider"]) == ("emu-02", "QNNExecutionProvider")
    assert row["error"] is None and row["min_cosine"] is not None and 0.0 <= row["min_top1_agreement"] <= 1.0
