"""Accuracy and latency-regression gates."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.config import load_project, load_target
from dmsbuild.core.accuracy import AccuracyFloors
from dmsbuild.measure.gates import accuracy_floors, check_accuracy, check_gates, check_latency
from dmsbuild.core.results import ResultStore
from tests.bench_docs import document, result

ROOT = Path(__file__).resolve().parents[1]


FLOORS = AccuracyFloors.uniform(0.05, 0.98, 12.0, source="test")


def test_accuracy_gate_fires_above_the_threshold_and_names_the_numbers():
    doc = document("r2", [result("fp32", 6.7), result("int8-qdq", 3.5, agreement=0.90)])
    failures = check_accuracy(doc, board="rpi5-04", floors=FLOORS)
    assert [(f.board, f.artifact, f.gate) for f in failures] == [("rpi5-04", "int8-qdq", "accuracy")] * 2
    msg = failures[0].message
    assert msg.startswith("board rpi5-04: artifact int8-qdq (int8-qdq) fails the accuracy gate")
    assert "90.0%" in msg and "drop of 10.0% > allowed 5.0%" in msg and "head 'eye_state'" in msg
    assert "head 'activity'" in failures[1].message  # every failing head, not only the worst


def test_accuracy_gate_passes_at_and_below_the_threshold():
    doc = document("r2", [result("int8-qdq", 3.5, agreement=0.95), result("fp16", 4.0, agreement=1.0)])
    assert check_accuracy(doc, board="b", floors=FLOORS) == []


def test_accuracy_floors_profile_overrides_project():
    project = load_project(ROOT)
    profile = load_target(ROOT, "local")
    floors = accuracy_floors(project, profile).for_head("activity")
    assert floors.max_accuracy_drop.value == project.accuracy.max_accuracy_drop
    assert floors.max_accuracy_drop.source == "dmsbuild.toml: accuracy.max_accuracy_drop"
    profile.gates.max_accuracy_drop = 0.01
    profile.bench.verify_samples = 100  # a 1 % top-1 floor needs 100 samples: fewer cannot resolve it (refused)
    assert accuracy_floors(project, profile).for_head("activity").max_accuracy_drop.value == 0.01


def test_latency_gate_compares_with_the_previous_release_on_the_same_board(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.add(document("r1", [result("fp32", 5.0)]), board="orin-01", target="orin")
    store.add(document("r1", [result("fp32", 50.0)]), board="orin-02", target="orin")  # another board: ignored
    slow = document("r2", [result("fp32", 7.0, seed=3)])
    failures = check_latency(slow, board="orin-01", target="orin", store=store, max_ratio=1.25)
    assert [(f.artifact, f.gate) for f in failures] == [("fp32", "latency")]
    msg = failures[0].message
    assert msg.startswith("board orin-01: artifact fp32 (fp32) fails the latency gate")
    assert "release r1" in msg and "allowed 1.25x" in msg and "1.39x" in msg  # ~7/5 (medians of noisy samples)
    # within the allowed ratio: passes; the first release on a board has no baseline: passes
    ok = document("r2", [result("fp32", 5.5, seed=3)])
    assert check_latency(ok, board="orin-01", target="orin", store=store, max_ratio=1.25) == []
    assert check_latency(slow, board="orin-09", target="orin", store=store, max_ratio=1.25) == []


def test_latency_gate_ignores_reruns_of_the_same_release(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.add(document("r1", [result("fp32", 5.0)]), board="b", target="t")
    store.add(document("r2", [result("fp32", 5.1)]), board="b", target="t")
    rerun = document("r2", [result("fp32", 6.0, seed=2)])  # r2 again: compared with r1, not r2
    failures = check_latency(rerun, board="b", target="t", store=store, max_ratio=1.1)
    assert len(failures) == 1 and "release r1" in failures[0].message


def test_check_gates_includes_artifacts_that_did_not_run(tmp_path):
    doc = document("r1", [result("fp32", 5.0), result("qnn-ctx", 0, error="QNNExecutionProvider not available")])
    failures = check_gates(doc, board="qcs-01", target="qcs8255", store=ResultStore(tmp_path / "s.sqlite"),
                           accuracy=FLOORS, max_latency_regression=1.25)
    assert [(f.artifact, f.gate) for f in failures] == [("qnn-ctx", "run")]
    assert "board qcs-01: artifact qnn-ctx did not run: QNNExecutionProvider" in failures[0].message
