"""`doit deploy` end to end for the QNN (HTP simulator, real) and TensorRT (trtexec test double) targets.

Tiny model, real sshd boards (the session `boards` fixture: their PATH carries
the trtexec and nvidia-smi test doubles, labelled emulated), real
onnxruntime-qnn. Asserts what reaches artifacts/results.sqlite, that the
second Orin board installs the engine the first one built, and that a
missing SNPE SDK fails only the DLC artifact, with one line.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.tinyproject import TARGET_A, make_project, run_doit

pytest.importorskip("onnxruntime_qnn")

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
verify_samples = 2
"""

TRT_TARGET = """\
runtime = "tensorrt"
arch = "aarch64"
precisions = ["fp16", "int8-qdq"]
[quantization]
activation_type = "QInt8"
symmetric_activations = true
[backend]
workspace_mb = 256
[deploy]
group = "orin"
[bench]
warmup = 2
iterations = 20
verify_samples = 2
"""


def _rows(root: Path, target: str) -> list[dict]:
    con = sqlite3.connect(root / "artifacts" / "results.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM results WHERE target = ? ORDER BY created_at", (target,))]
    finally:
        con.close()


def _builds(boards: dict, names: list[str]) -> list[list[str]]:
    """trtexec engine builds (argv with --onnx=) the emulated boards ran."""
    out = []
    for name in names:
        log = Path(boards["dir"]) / name / "trtexec-argv.log"
        if log.is_file():
            out += [a for a in map(json.loads, log.read_text().splitlines()) if any(x.startswith("--onnx=") for x in a)]
    return out


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


def test_deploy_orin_builds_each_engine_once_and_the_second_board_installs_it(boards, tmp_path):
    root = make_project(tmp_path / "p", {"o": TRT_TARGET})
    hosts = ["emu-01", "emu-02"]
    before = len(_builds(boards, hosts))
    run = run_doit(root, "deploy", "target=o", f"hosts={','.join(hosts)}", f"inventory={boards['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    builds = _builds(boards, hosts)[before:]
    assert len(builds) == 2, builds  # fp16 and int8-qdq, built by the first board only
    assert {"--fp16"} <= set(builds[0]) | set(builds[1]) and any("--int8" in b for b in builds)
    assert run.output.count("engine built on the board, stored in the host cache") == 2
    assert run.output.count("engine installed from the host cache") == 2
    engines = sorted((root / "artifacts" / "cache" / "tensorrt").glob("*.engine"))
    assert len(engines) == 2
    meta = json.loads(engines[0].with_suffix(".json").read_text())
    assert (meta["trt_version"], meta["compute_capability"]) == ("10.3.0", "8.7")
    rows = _rows(root, "o")
    assert sorted((r["board"], r["precision"]) for r in rows) == [(b, p) for b in hosts for p in ("fp16", "int8-qdq")]
    for r in rows:
        assert (r["runtime"], r["provider"], r["error"]) == ("tensorrt", "trtexec", None)
        assert r["iterations"] == 20 and len(json.loads(r["samples_json"])) == 20
        gpu = json.loads(r["gpu_json"])
        assert gpu["compute_ms"]["median"] > 0 and gpu["h2d_ms"] is not None
        # no TensorRT Python on the emulated board: the output check runs through trtexec --loadInputs/--exportOutput,
        # whose outputs the double generates with onnxruntime, and says so
        verify = json.loads(r["verify_json"])
        assert verify["samples"] > 0 and "generated by the trtexec test double" in verify["method"]
        # board state with the run: the orin board's nvpmodel/jetson_clocks/tegrastats doubles, labelled generated
        state = json.loads(r["state_json"])
        assert state["before"]["power_mode"] == "MAXN" and "nvpmodel" in state["before"]["generated"]
        assert state["during"]["power_rail"] == "VDD_IN" and state["during"]["generated"] == ["tegrastats"]
        assert r["source"] == "double" and r["energy_mj"] > 0
    build = json.loads((root / "artifacts" / "o" / "build.json").read_text())
    assert {a["kind"] for a in build["artifacts"]} == {"trt-onnx"}

    # a plain redeploy leaves boards already on the release alone (fleet resume check); verify=full
    # deploys and benchmarks again and finds the engines on the boards: no build, no install
    run = run_doit(root, "deploy", "target=o", f"hosts={','.join(hosts)}", f"inventory={boards['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    assert "engine" not in run.output and len(_builds(boards, hosts)[before:]) == 2
    run = run_doit(root, "deploy", "target=o", f"hosts={','.join(hosts)}", f"inventory={boards['inventory']}",
                   "verify=full")
    assert run.rc == 0, run.output[-3000:]
    assert len(_builds(boards, hosts)[before:]) == 2
    assert run.output.count("engine already on the board") == 4


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


def test_emulated_board_runs_qnn_contexts_but_not_other_tied_artifacts():
    from dmsbuild.errors import UserError
    from dmsbuild.facts import check_arch

    facts = {"arch": "x86_64", "emulated": "sshd-on-loopback"}
    qnn = [{"name": "int8-qdq", "kind": "qnn-context", "portable": False}]
    [warning] = check_arch("emu-01", "aarch64", facts, qnn)
    assert "emulated aarch64 board" in warning and "simulator" in warning
    with pytest.raises(UserError, match="not portable"):
        check_arch("emu-01", "aarch64", facts, qnn + [{"name": "engine", "kind": "trt-engine", "portable": False}])
    with pytest.raises(UserError, match="not portable"):
        check_arch("real-01", "aarch64", {"arch": "x86_64", "emulated": None}, qnn)


def test_trtexec_results_parse_into_the_common_schema():
    from dmsbuild.backends import trt_board  # noqa: F401 - registers the parser
    from dmsbuild.results import parser_for

    fixtures = Path(__file__).parent / "fixtures" / "trtexec"
    log = (fixtures / "tensorrt-4177-summary.log").read_text()
    times = (fixtures / "export-times-sample.json").read_text()
    n = sum(1 for e in json.loads(times) if "computeMs" in e)
    entry = {"name": "fp16", "precision": "fp16", "runtime": "tensorrt", "providers": ["trtexec"], "sha256": "a" * 64}
    res = parser_for("tensorrt").parse(json.dumps({"stdout": log, "times": times, "warmup_ms": None}), board="b",
                                       artifact=entry, warmup=0, iterations=n)
    assert res["error"] is None and len(res["samples_ms"]) == n and res["gpu"]["compute_ms"]["median"] > 0
    failed = log + "\n&&&& FAILED TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=x\n"
    bad = parser_for("tensorrt").parse(json.dumps({"stdout": failed, "times": None}),
                                       board="b", artifact=entry, warmup=0, iterations=n)
    assert bad["error"] == "trtexec reported FAILED" and bad["latency_ms"] is None


def test_with_the_sdk_the_qnn_target_also_ships_a_dlc(tmp_path):
    import shutil

    sdk = tmp_path / "qairt"
    bin_dir = sdk / "bin" / "x86_64-linux-clang"
    bin_dir.mkdir(parents=True)
    for f in (Path(__file__).parent / "doubles").iterdir():
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


def _trt_release(tmp_path: Path) -> tuple[Path, dict, list[dict]]:
    import hashlib

    rel = tmp_path / "root" / "releases" / "r1"
    (rel / "models").mkdir(parents=True)
    onnx = rel / "models" / "fp16.trt.onnx"
    onnx.write_bytes(b"not really onnx, the double only hashes it")
    entry = {"name": "fp16", "precision": "fp16", "kind": "trt-onnx", "file": "models/fp16.trt.onnx",
             "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(), "runtime": "tensorrt", "providers": ["trtexec"]}
    manifest = {"outputs": {"classification": []}, "runtime_settings": {"backend": {"workspace_mb": 64}}}
    return rel, manifest, [entry]


def test_board_without_trtexec_reports_it_per_artifact(tmp_path):
    import sys

    from dmsbuild.backends.trt_board import bench_artifacts
    from dmsbuild.transport.local import LocalTransport

    rel, manifest, entries = _trt_release(tmp_path)
    board = LocalTransport("bare", env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"})
    plan = {"warmup": 1, "iterations": 5, "verify_samples": 0}
    [res] = bench_artifacts(board, str(rel), manifest, entries, python=sys.executable, plan=plan,
                            cache_root=tmp_path / "cache", progress=lambda _: None)
    assert res["error"].startswith("trtexec not found on the board") and "libnvinfer-bin" in res["error"]
    assert res["latency_ms"] is None and not (tmp_path / "cache").exists()


def test_trtexec_engine_cache_changes_with_the_boards_gpu(tmp_path):
    import sys

    from dmsbuild.backends.trt_board import bench_artifacts
    from dmsbuild.transport.local import LocalTransport

    doubles = Path(__file__).parent / "doubles"
    log = tmp_path / "argv.jsonl"
    rel, manifest, entries = _trt_release(tmp_path)
    plan = {"warmup": 1, "iterations": 5, "verify_samples": 0}
    path = f"{doubles}:{Path(sys.executable).parent}:/usr/bin:/bin"
    for cc in ("8.7", "8.7", "7.2"):  # Orin, Orin again (same key: cached), Xavier (another key: rebuilt)
        board = LocalTransport(f"b{cc}", env={"PATH": path, "NVIDIA_SMI_DOUBLE_CC": cc, "TRTEXEC_DOUBLE_ARGV_LOG": str(log)})
        (tmp_path / "root" / "engines").mkdir(exist_ok=True)
        for f in (tmp_path / "root" / "engines").glob("*.engine"):
            f.unlink()  # a fresh board: nothing installed yet
        [res] = bench_artifacts(board, str(rel), manifest, entries, python=sys.executable, plan=plan,
                                cache_root=tmp_path / "cache", progress=lambda _: None)
        assert res["error"] is None and res["engine"]["compute_capability"] == cc
    builds = [a for a in map(json.loads, log.read_text().splitlines()) if any(x.startswith("--onnx=") for x in a)]
    assert len(builds) == 2 and len(list((tmp_path / "cache").glob("*.engine"))) == 2
