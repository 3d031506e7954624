"""`doit deploy` end to end for the TensorRT target (trtexec test double) and what needs no onnxruntime-qnn.

Tiny model, real sshd boards (the session `boards` fixture: their PATH carries
the trtexec and nvidia-smi test doubles, labelled emulated). Asserts what
reaches artifacts/results.sqlite and that the second Orin board installs the
engine the first one built. The QNN/SNPE targets, which need onnxruntime-qnn
to compile, are in tests/test_targets_qnn_e2e.py.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.tinyproject import make_project, run_doit

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
        assert r["verify_json"] in (None, "null")  # no TensorRT Python on the emulated board: not faked
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
