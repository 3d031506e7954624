"""The gates at their thresholds: just inside passes, just outside fails.

Kept apart from tests/test_gates.py so the gate rework (per-head floors, latency baselines) can
re-target them in one place. Each test here kills a mutation in scripts/mutation.py: slack added to a
threshold, a comparison turned around, a gate switched off.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.core.accuracy import AccuracyFloors
from dmsbuild.config import load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.convert.evaluate import gate
from dmsbuild.ship.fleet import BoardOutcome, standard_gate
from dmsbuild.measure.gates import check_accuracy, check_latency
from dmsbuild.core.results import ResultStore
from tests.bench_docs import document, result

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- on the board (dmsbuild/measure/gates.py)
def _top1_only(max_drop: float) -> AccuracyFloors:
    """Floors where only top-1 agreement can fail (cosine and SQNR floors out of reach)."""
    return AccuracyFloors.uniform(max_drop, -1.0, -1e9)


@pytest.mark.parametrize("max_drop", [0.0, 0.01, 0.05, 0.2])
def test_board_accuracy_gate_fails_one_tenth_of_a_point_past_the_limit(max_drop):
    at = document("r2", [result("int8-qdq", 3.5, agreement=round(1.0 - max_drop, 6))])
    past = document("r2", [result("int8-qdq", 3.5, agreement=round(1.0 - max_drop - 0.001, 6))])
    assert check_accuracy(at, board="b", floors=_top1_only(max_drop)) == []
    failures = check_accuracy(past, board="b", floors=_top1_only(max_drop))
    assert failures and {(f.artifact, f.gate) for f in failures} == {("int8-qdq", "accuracy")}
    assert all("top-1 agreement" in f.message for f in failures)


def test_board_accuracy_gate_looks_at_the_worst_head():
    doc = document("r2", [result("int8-qdq", 3.5, agreement=1.0)])
    doc["results"][0]["verify"]["heads"]["activity"]["top1_agreement"] = 0.9  # one head of four
    failures = check_accuracy(doc, board="b", floors=_top1_only(0.05))
    assert len(failures) == 1 and "'activity'" in failures[0].message


# ---------------------------------------------------------------- at build time (dmsbuild/convert/evaluate.py)
def _eval(agreement: float, labelled_drop: float = 0.0) -> dict:
    ok = {"cosine": 0.99, "sqnr_db": 30.0}  # cosine and SQNR well above their floors: only top-1 can fail
    heads = {"eye_state": {"top1_agreement": 1.0, **ok}, "activity": {"top1_agreement": agreement, **ok},
             "head_pose": {"top1_agreement": None, **ok}}
    heads["yawn"] = {"top1_agreement": 1.0, "labelled": {"accuracy": 0.9 - labelled_drop},
                     "labelled_fp32": {"accuracy": 0.9}, **ok}
    return {"samples": 200, "heads": heads, "min_top1_agreement": min(agreement, 1.0)}


@pytest.fixture()
def gated():
    project = load_project(ROOT)
    profile = load_target(ROOT, "local")
    profile.gates.max_accuracy_drop = 0.05
    project.accuracy.max_accuracy_drop = 0.5  # the target's own limit must win over the project's
    return project, profile


def test_build_gate_passes_at_the_limit_and_fails_past_it(gated):
    project, profile = gated
    gate(project, profile, {"int8-qdq": _eval(0.95)})
    with pytest.raises(UserError) as exc:
        gate(project, profile, {"int8-qdq": _eval(0.949)})
    first = str(exc.value).splitlines()[0]
    assert "artifact 'int8-qdq' fails the accuracy gate: head 'activity': top-1 agreement" in first
    assert "allowed 5.0% (targets/local.toml: gates.max_accuracy_drop)" in first


def test_build_gate_checks_labelled_accuracy_too(gated):
    project, profile = gated
    gate(project, profile, {"int8-qdq": _eval(1.0, labelled_drop=0.05)})
    with pytest.raises(UserError, match="head 'yawn': labelled accuracy is 84.9% against FP32's 90.0%"):
        gate(project, profile, {"int8-qdq": _eval(1.0, labelled_drop=0.051)})


def test_build_gate_uses_the_project_limit_when_the_target_sets_none(gated):
    project, profile = gated
    profile.gates.max_accuracy_drop = None
    project.accuracy.max_accuracy_drop = 0.02
    profile.bench.verify_samples = 50  # a 2 % top-1 floor needs 50 samples: fewer cannot resolve it (refused)
    with pytest.raises(UserError, match=r"allowed 2.0% \(dmsbuild.toml: accuracy.max_accuracy_drop\)"):
        gate(project, profile, {"int8-qdq": _eval(0.97)})


# ---------------------------------------------------------------- latency (dmsbuild/measure/gates.py, dmsbuild/ship/fleet.py)
def test_board_latency_gate_at_and_past_the_ratio(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    base = document("r1", [result("fp32", 4.0)])
    store.add(base, board="b", target="t")
    old = base["results"][0]["latency_ms"]["median"]
    for ratio, fails in ((1.25, False), (1.26, True)):
        doc = document("r2", [result("fp32", 4.0)])
        doc["results"][0]["latency_ms"]["median"] = old * ratio
        got = check_latency(doc, board="b", target="t", store=store, max_ratio=1.25)
        assert bool(got) == fails, (ratio, got)


def test_health_gate_latency_at_and_past_the_ratio():
    g = standard_gate(1.25)

    def outcome(ms: float) -> BoardOutcome:
        return BoardOutcome("x", True, verified=True, output_check=True, latency_ms=ms, previous_latency_ms=4.0)

    assert g(None, outcome(5.0)).ok
    assert not g(None, outcome(5.01)).ok


# ---------------------------------------------------------------- the judge's own defaults (dmsbuild/board/runner/judge.py)
@pytest.mark.parametrize("err, fails", [(0.0, False), (0.1, False), (0.1001, True)])
def test_detection_score_error_at_and_past_the_judges_default_floor(err, fails):
    """Floors without a max_score_error (the Mender module's, scripts') get the judge's default 0.1."""
    from dmsbuild.board.runner.judge import kind_failures

    m = {"by_kind": {"kind": "detection", "reference_detections": 5, "detections": 5, "recall": 1.0,
                     "precision": 1.0, "score_error": err}}
    got = kind_failures("boxes", m, AccuracyFloors.uniform(0.05, -1.0, -1e9).default, 8)
    assert got == ([f"head 'boxes': mean score error of matched detections {err:.3f} > allowed 0.1 "
                    "(default max_score_error)"] if fails else [])


@pytest.mark.parametrize("max_drop, need", [(0.05, 20), (0.02, 50), (0.03, 34), (0.25, 4)])
def test_a_sample_count_that_cannot_resolve_the_floor_names_the_count_that_can(max_drop, need):
    from dmsbuild.core.accuracy import check_resolution

    floors = AccuracyFloors.uniform(max_drop, -1.0, -1e9)
    check_resolution(floors, ["h"], need, "t.toml: bench.verify_samples")  # enough: no refusal
    with pytest.raises(UserError) as exc:
        check_resolution(floors, ["h"], need - 1, "t.toml: bench.verify_samples")
    assert f"it needs at least {need} samples" in str(exc.value).splitlines()[0]


@pytest.mark.parametrize("agreement, fails", [(0.9, False), (0.899, True)])
def test_sequence_string_agreement_at_and_past_the_judges_default_floor(agreement, fails):
    from dmsbuild.board.runner.judge import kind_failures

    m = {"by_kind": {"kind": "sequence", "agreement": 1.0, "string_agreement": agreement}}
    got = kind_failures("text", m, AccuracyFloors.uniform(0.05, -1.0, -1e9).default, 8)
    assert got == ([f"head 'text': decoded-string agreement {agreement:.1%} (CTC greedy, 8 samples) < floor 0.9 "
                    "(default min_string_agreement)"] if fails else [])
