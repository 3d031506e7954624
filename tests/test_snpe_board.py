"""SNPE DLC artifacts benchmarked on a board (bench.py's host-driven dispatch -> backends/snpe_board.py).

The board is this machine through ``LocalTransport`` with the snpe-net-run and
snpe-diagview test doubles on its PATH (dmsbuild/doubles: strict argparse, they
refuse an input list that names a raw file twice or a file of the wrong
size, and replay the real output layout). The release is a hand-made one
holding a DLC in the doubles' format, so no SDK and no build are needed.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.core.accuracy import AccuracyFloors
from dmsbuild.measure.bench import BoardBench, bench_boards
from dmsbuild.core.results import ResultStore, validate_result
from dmsbuild.transport.local import LocalTransport

DOUBLES = Path(__file__).parents[1] / "dmsbuild" / "doubles"
N_REF, ITERATIONS, VERIFY = 3, 5, 2


def _release(tmp_path: Path) -> Path:
    """<root>/releases/r1 with a DLC (the doubles' format), verify/reference.npz and manifest.json."""
    rel = tmp_path / "root" / "releases" / "r1"
    (rel / "models").mkdir(parents=True)
    (rel / "verify").mkdir()
    (rel / "models" / "int8-qdq-dlc.dlc").write_text(json.dumps(
        {"magic": "SNPE-DOUBLE-DLC", "input_name": "image", "input_dims": [1, 4, 4, 3], "quantized": True}))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_REF, 3, 4, 4)).astype(np.float32)
    mean = x.reshape(N_REF, -1).mean(axis=1, keepdims=True)
    # the double's outputs are the input's mean: "gaze" matches it, "state" is off by a known amount
    np.savez(rel / "verify" / "reference.npz", inputs=x, gaze=np.repeat(mean, 2, axis=1),
             state=np.concatenate([mean, mean + 1.0], axis=1))
    entry = {"name": "int8-qdq-dlc", "precision": "int8-qdq", "kind": "dlc", "file": "models/int8-qdq-dlc.dlc",
             "runtime": "snpe", "sha256": "0" * 64, "size": 10, "providers": []}
    manifest = {"target": "q", "input": {"name": "image"}, "outputs": {"classification": ["state"]},
                "bench": {"warmup": 1, "iterations": ITERATIONS, "verify_samples": VERIFY},
                "runtime_settings": {"runtime": "qnn", "backend": {"snpe": {"runtime": "dsp", "perf_profile": "burst"}}},
                "artifacts": [entry]}
    (rel / "manifest.json").write_text(json.dumps(manifest))
    return rel


def _board(tmp_path: Path, tools: tuple[str, ...], **env: str) -> LocalTransport:
    bin_dir = tmp_path / "board-bin"
    bin_dir.mkdir()
    for name in (*tools, "snpe_double.py"):
        shutil.copy2(DOUBLES / name, bin_dir / name)
    path = f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin"
    return LocalTransport("qboard", env={"PATH": path, "SNPE_ROOT": "", "QAIRT_SDK_ROOT": "", **env})


def _bench(tmp_path: Path, board: LocalTransport, rel: Path) -> tuple[list, ResultStore]:
    store = ResultStore(tmp_path / "results.sqlite")
    outcomes = bench_boards([BoardBench("qboard", board, str(rel), python=sys.executable, facts={"arch": "x"})],
                           target="q", store=store, accuracy=AccuracyFloors.uniform(1.0, -1.0, -200.0), max_latency_regression=2.0,
                           progress=lambda _: None)
    return outcomes, store


def test_dlc_artifact_runs_with_snpe_net_run_and_reaches_the_store(tmp_path):
    rel = _release(tmp_path)
    log = tmp_path / "argv.jsonl"
    board = _board(tmp_path, ("snpe-net-run", "snpe-diagview"), SNPE_DOUBLE_ARGV_LOG=str(log),
                   SNPE_DOUBLE_OUTPUTS=json.dumps({"gaze": [1, 2], "state": [1, 2]}))
    [out], store = _bench(tmp_path, board, rel)
    assert out.ok, out.messages()

    work = tmp_path / "root" / "snpe" / "int8-qdq-dlc"  # under the deploy root, outside the release
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        ["snpe-net-run", "--container", str(rel / "models" / "int8-qdq-dlc.dlc"),
         "--input_list", str(work / "input_list.txt"), "--output_dir", str(work / "output"),
         "--use_dsp", "--perf_profile", "burst"],
        ["snpe-diagview", "--input_log", str(work / "output" / "SNPEDiag_0.log"),
         "--output", str(work / "output" / "SNPEDiag_0.csv")],
    ]
    lines = (work / "input_list.txt").read_text().splitlines()
    files = [line.split(":=", 1)[1] for line in lines]
    assert len(files) == ITERATIONS == len(set(files)) and all(line.startswith("image:=") for line in lines)
    ref = np.load(rel / "verify" / "reference.npz")
    for i, f in enumerate(files):  # sample i % n, CHW -> HWC
        assert Path(f).parent == work / "inputs"
        np.testing.assert_array_equal(np.fromfile(f, dtype=np.float32),
                                      ref["inputs"][i % N_REF].transpose(1, 2, 0).ravel())

    [row] = store.rows(board="qboard")
    assert (row["artifact"], row["runtime"], row["error"]) == ("int8-qdq-dlc", "snpe", None)
    assert row["mean_ms"] == pytest.approx(4.321) and row["median_ms"] is None and row["samples"] == []
    assert row["load_ms"] == pytest.approx(112.233) and row["iterations"] == ITERATIONS
    [result] = out.doc["results"]
    assert result["stats_source"].startswith("snpe-diagview Avg_Total_Inference_Time over 5 inferences")
    heads = result["verify"]["heads"]
    assert result["verify"]["samples"] == VERIFY
    assert heads["gaze"]["max_abs_diff"] < 1e-6 and heads["state"]["max_abs_diff"] == pytest.approx(1.0, abs=1e-5)
    assert heads["state"]["top1_agreement"] == 0.0  # the reference's argmax is column 1, the double's ties give 0
    assert not (rel / "input_list.txt").exists() and sorted(p.name for p in rel.iterdir()) == [
        "manifest.json", "models", "verify"]


def test_board_without_snpe_net_run_gets_one_error_per_dlc(tmp_path):
    rel = _release(tmp_path)
    [out], store = _bench(tmp_path, _board(tmp_path, ()), rel)
    assert not out.ok
    [row] = store.rows(board="qboard")
    assert row["runtime"] == "snpe" and row["error"].startswith("snpe-net-run not found on the board")
    assert "backend.snpe.board_bin" in row["error"] and "SNPE_ROOT" in row["error"]


def test_average_only_results_must_say_so():
    base = {"artifact": "a", "precision": "int8", "runtime": "snpe", "error": None, "iterations": 5,
            "latency_ms": dict.fromkeys(("min", "mean", "median", "p90", "p95", "p99", "max", "std")),
            "samples_ms": []}
    base["latency_ms"]["mean"] = 4.3
    with pytest.raises(Exception, match="latency_ms.min"):
        validate_result(dict(base), board="b")  # no stats_source: every statistic is required
    validate_result(dict(base, stats_source="snpe-diagview average"), board="b")
    with pytest.raises(Exception, match="samples_ms"):
        validate_result(dict(base, stats_source="x", samples_ms=[1.0] * 5), board="b")
    with pytest.raises(Exception, match="latency_ms.mean"):
        validate_result(dict(base, stats_source="x", latency_ms=dict(base["latency_ms"], mean=None)), board="b")
