"""`doit build` / `doit deploy` end to end for the QNN target (qcs8255): real onnxruntime-qnn compiles
the context binary, the HTP simulator runs it on an emulated board; the SNPE SDK is absent (one-line
failure of the DLC only) or replaced by its test doubles.

Split from tests/test_targets_e2e.py so a missing onnxruntime-qnn never hides the TensorRT tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_targets_e2e import _rows
from tests.tinyproject import TARGET_A, make_project, run_doit

pytestmark = pytest.mark.usefixtures("onnxruntime_qnn")

QNN_TARGET = """\
runtime = "qnn"
arch = "aarch64"
precisions = ["int8-qdq"]
[quantization]
calibration_method = "MinMax"
per_channel = true
weight_type = "QUInt8"
activation_type = "QUInt16"
fixed_shape = true
[backend]
htp_arch = 73
max_cpu_fallback_nodes = 0
[deploy]
group = "rpi5"
[bench]
warmup = 1
iterations = 2
verify_samples = 3  # one disagreement of 3 (33 %) resolves the tiny project's 34 % floor
"""


def test_deploy_qcs8255_runs_the_context_binary_on_the_htp_simulator(boards, tmp_path):
    root = make_project(tmp_path / "p", {"q": QNN_TARGET})
    run = run_doit(root, "deploy", "target=q", "hosts=emu-01", f"inventory={boards['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    build = json.loads((root / "artifacts" / "q" / "build.json").read_text())
    [art] = build["artifacts"]
    assert (art["kind"], art["runtime"], art["portable"]) == ("qnn-context", "qnn", False)
    assert [Path(f).name for f in art["extra_files"]] == ["int8-qdq_qnn.bin"]
    placement = json.loads((root / "artifacts" / "q" / "int8-qdq.placement.json").read_text())
    assert placement["partitions"] >= 1 and placement["fallback_ops"] == {}
    assert "qnn: int8-qdq.onnx:" in run.output and "snpe: DLC not built: SNPE SDK not found" in run.output
    [row] = _rows(root, "q")
    assert (row["board"], row["runtime"], row["precision"], row["provider"]) == ("emu-01", "qnn", "int8-qdq",
                                                                                 "QNNExecutionProvider")
    assert row["error"] is None and row["iterations"] == 2 and row["median_ms"] > 0
    assert 0.0 <= row["min_top1_agreement"] <= 1.0 and row["min_cosine"] is not None  # checked against FP32 on the board


def test_no_snpe_sdk_fails_only_the_dlc_with_one_line(tmp_path, monkeypatch):
    for var in ("SNPE_ROOT", "QAIRT_SDK_ROOT", "QNN_SDK_ROOT"):
        monkeypatch.delenv(var, raising=False)
    target = QNN_TARGET.replace("[deploy]", "[backend.snpe]\nrequired = true\n[deploy]").replace('group = "rpi5"', "")
    target = target.replace("[deploy]\n", '[deploy]\nroot = "artifacts/boards/q"\n') + 'transport = "local"\n'
    target = 'transport = "local"\n' + target.replace('transport = "local"\n', "")
    root = make_project(tmp_path / "p", {"q": target, "a": TARGET_A})
    run = run_doit(root, "--continue", "build", "target=q,a")
    assert run.rc != 0
    assert "compile:q.int8-qdq" in run.executed and "compile:q.int8-qdq-dlc" in run.executed
    msg = run.failure("compile:q.int8-qdq-dlc")
    assert msg.splitlines()[0].startswith("SNPE SDK not found") and "SNPE_ROOT" in msg.splitlines()[0]
    assert (root / "artifacts" / "q" / "int8-qdq_qnn.bin").is_file()  # the QNN artifact still built
    assert (root / "artifacts" / "a" / "build.json").is_file()  # and the other target
    assert not (root / "artifacts" / "q" / "build.json").exists()


def test_with_the_sdk_the_qnn_target_also_ships_a_dlc(tmp_path):
    import shutil

    sdk = tmp_path / "qairt"
    bin_dir = sdk / "bin" / "x86_64-linux-clang"
    bin_dir.mkdir(parents=True)
    for f in (Path(__file__).parents[1] / "dmsbuild" / "doubles").iterdir():
        if f.name.startswith("snpe"):
            shutil.copy2(f, bin_dir / f.name)
    log = tmp_path / "snpe-argv.jsonl"
    target = 'transport = "local"\n' + QNN_TARGET.replace('group = "rpi5"', 'root = "artifacts/boards/q"').replace(
        'arch = "aarch64"', 'arch = "x86_64"')  # this machine is the (local) board of the deploy below
    root = make_project(tmp_path / "p", {"q": target})
    run = run_doit(root, "build", "target=q", env={"SNPE_ROOT": str(sdk), "SNPE_DOUBLE_ARGV_LOG": str(log)})
    assert run.rc == 0, run.output[-3000:]
    build = json.loads((root / "artifacts" / "q" / "build.json").read_text())
    assert [(a["name"], a["kind"], a["runtime"]) for a in build["artifacts"]] == [
        ("int8-qdq", "qnn-context", "qnn"), ("int8-qdq-dlc", "dlc", "snpe")]
    tools = [json.loads(line)[0] for line in log.read_text().splitlines()]
    assert tools == ["snpe-onnx-to-dlc", "snpe-dlc-quantize", "snpe-dlc-graph-prepare"]
    calib = sorted((root / "artifacts" / "q" / "int8-qdq.work" / "calibration").glob("*.raw"))
    assert len(calib) == 4  # one unique raw file per calibration image of the tiny project

    # deployed to the (local) board, whose PATH carries the snpe-net-run / snpe-diagview doubles,
    # the DLC is benchmarked with snpe-net-run next to the QNN artifact (run by the ORT runner)
    import os

    env = {"SNPE_ROOT": str(sdk), "SNPE_DOUBLE_ARGV_LOG": str(log),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = run_doit(root, "deploy", "target=q", env=env)
    assert run.rc == 0, run.output[-3000:]
    rows = {r["artifact"]: r for r in _rows(root, "q")}
    assert (rows["int8-qdq"]["runtime"], rows["int8-qdq"]["error"]) == ("qnn", None)
    dlc = rows["int8-qdq-dlc"]
    assert (dlc["runtime"], dlc["provider"], dlc["error"], dlc["median_ms"]) == ("snpe", "snpe-net-run", None, None)
    assert dlc["mean_ms"] > 0 and dlc["iterations"] == 2 and json.loads(dlc["samples_json"]) == []
    calls = [c for c in map(json.loads, log.read_text().splitlines()[3:]) if c[1:] != ["--version"]]  # facts probe
    assert [c[0] for c in calls] == ["snpe-net-run", "snpe-diagview", "snpe-throughput-net-run"]
    assert calls[2][calls[2].index("--container") + 1].endswith("/models/int8-qdq.dlc") and "--duration" in calls[2]
    assert dlc["source"] == "double" and json.loads(dlc["profile_json"])["throughput_tool"] == "snpe-throughput-net-run"
    assert calls[0][calls[0].index("--container") + 1].endswith("/models/int8-qdq.dlc") and "--use_dsp" in calls[0]
