"""The shared accuracy metrics (dmsbuild/board/runner/metrics.py), the floors (dmsbuild/core/accuracy.py) and the gates that use them.

Fast unit tests; the doit build and board runner cases are in test_accuracy_gate.py.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.core import results
from dmsbuild.core.accuracy import AccuracyFloors, failures, floors_for
from dmsbuild.config import HeadFloorsConfig, load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.measure.gates import check_accuracy
from dmsbuild.board.runner import dms_bench, metrics
from tests.bench_docs import document, result

ROOT = Path(__file__).resolve().parents[1]
FLOORS = AccuracyFloors.uniform(0.05, 0.98, 12.0, source="test")


def _logits(n: int = 16, k: int = 5, seed: int = 0) -> np.ndarray:
    """Varied logits whose argmax is class 0 for every sample (the case argmax ties used to fool)."""
    x = np.random.default_rng(seed).standard_normal((n, k))
    x[:, 0] = np.abs(x).max(axis=1) + 1.0
    return x


# ---------------------------------------------------------------- degenerate candidates
def test_all_zero_outputs_are_degenerate_and_agree_with_nothing():
    ref = _logits()
    m = metrics.head_metrics(ref, np.zeros_like(ref), classification=True)
    assert m["degenerate"] == "every output is exactly 0 (16 samples)"
    # argmax of all-zero rows is 0, the reference's class on every sample: a tie must not count as agreement
    assert m["top1_agreement"] == 0.0
    assert m["cosine"] == 0.0 and m["cosine_min"] == 0.0 and m["sqnr_db"] == pytest.approx(0.0)
    [line] = failures({"activity": m}, FLOORS, 16)
    assert line.startswith("head 'activity': degenerate outputs: every output is exactly 0")


def test_nan_and_inf_outputs_are_degenerate_and_json_clean():
    ref = _logits()
    got = ref.copy()
    got[3, 1] = np.nan
    got[5, 0] = np.inf
    m = metrics.head_metrics(ref, got, classification=True)
    assert m["degenerate"] == "NaN or Inf in 2 of 16 samples"
    json.dumps(m, allow_nan=False)  # no NaN/Infinity reaches a result document
    assert m["cosine"] is None and m["max_abs_diff"] is None
    [line] = failures({"eye_state": m}, FLOORS, 16)
    assert "head 'eye_state': degenerate outputs: NaN or Inf in 2 of 16 samples" in line


def test_constant_outputs_are_degenerate_even_where_cosine_and_top1_look_fine():
    ref = _logits() + 20.0 * np.array([1.0, 0, 0, 0, 0])  # a large common part: a constant guess is "close"
    constant = np.repeat(ref.mean(axis=0, keepdims=True), len(ref), axis=0)
    m = metrics.head_metrics(ref, constant, classification=True)
    assert m["cosine"] > 0.98 and m["top1_agreement"] == 1.0  # what a cosine/top-1 gate alone would pass
    assert m["degenerate"].startswith("the same output for every one of 16 samples")
    assert failures({"activity": m}, FLOORS, 16)[0].startswith("head 'activity': degenerate outputs")


def test_a_constant_head_whose_reference_is_constant_too_is_not_degenerate():
    ref = np.repeat(np.array([[1.0, 2.0, 3.0]]), 8, axis=0)  # e.g. an anchor grid output
    assert metrics.head_metrics(ref, ref.copy(), classification=False)["degenerate"] is None


def test_a_good_candidate_passes_and_a_noisy_one_fails_by_cosine_and_sqnr():
    ref = _logits()
    rng = np.random.default_rng(1)
    good = ref + 0.01 * rng.standard_normal(ref.shape)
    m = metrics.head_metrics(ref, good, classification=True)
    assert m["degenerate"] is None and m["top1_agreement"] == 1.0 and m["cosine"] > 0.999 and m["sqnr_db"] > 30
    assert failures({"activity": m}, FLOORS, 16) == []
    bad = ref + 1.5 * rng.standard_normal(ref.shape)
    lines = failures({"activity": metrics.head_metrics(ref, bad, classification=True)}, FLOORS, 16)
    assert any(line.startswith("head 'activity': cosine ") and "< floor 0.98 (test min_cosine)" in line for line in lines)
    assert any(line.startswith("head 'activity': SQNR ") and "< floor 12 dB (test min_sqnr_db)" in line for line in lines)


def test_sqnr_catches_a_scaled_output_that_cosine_cannot():
    ref = _logits()
    m = metrics.head_metrics(ref, 0.5 * ref, classification=True)  # same direction, half the size
    assert m["cosine"] == pytest.approx(1.0) and m["top1_agreement"] == 1.0
    assert m["sqnr_db"] == pytest.approx(10 * math.log10(4.0))  # noise = (0.5 r)^2: 6.02 dB
    [line] = failures({"activity": m}, FLOORS, 16)
    assert line.startswith("head 'activity': SQNR 6.0 dB")


# ---------------------------------------------------------------- definitions
def test_zero_vectors_count_as_agreeing_only_when_both_are_zero():
    ref = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]])  # e.g. a ReLU head silent on some samples
    got = np.array([[0.0, 0.0], [1.0, 2.0], [0.5, 0.0]])
    assert metrics.cosines(ref, got).tolist() == [1.0, pytest.approx(1.0), 0.0]


def test_top1_drop_beyond_the_floor_fails_naming_head_and_floor():
    ref = _logits(10)
    got = ref.copy()
    got[:2, 1] = ref[:2, 0] + 1.0  # two of ten samples change class: a 20-point drop
    m = metrics.head_metrics(ref, got, classification=True)
    assert m["top1_agreement"] == pytest.approx(0.8)
    assert failures({"activity": m}, FLOORS, 10)[0] == (
        "head 'activity': top-1 agreement with FP32 is 80.0% over 10 samples, a drop of 20.0% > allowed 5.0% "
        "(test max_accuracy_drop)")
    assert failures({"activity": m}, AccuracyFloors.uniform(0.2, -1.0, -200.0), 10) == []  # at the floor: passes


def test_cosine_is_per_sample_not_over_the_flattened_head():
    ref = np.array([[100.0, 0.0], [0.0, 1.0]])
    got = np.array([[100.0, 0.0], [1.0, 0.0]])  # sample 2 is orthogonal; sample 1 dominates the flattened norm
    flat = float(ref.ravel() @ got.ravel() / np.linalg.norm(ref) / np.linalg.norm(got))
    m = metrics.head_metrics(ref, got, classification=False)
    assert flat > 0.99
    assert m["cosine"] == pytest.approx(0.5) and m["cosine_min"] == pytest.approx(0.0)


def test_psnr_peak_is_the_reference_range_and_sqnr_is_energy_over_noise():
    ref = np.array([[-2.0, 4.0], [1.0, 1.0]])
    got = ref + np.array([[1.0, 0.0], [0.0, -1.0]])
    m = metrics.head_metrics(ref, got, classification=False)
    mse = 2.0 / 4
    assert m["psnr_db"] == pytest.approx(10 * math.log10(6.0 ** 2 / mse))  # peak = max - min = 6, not max|ref| = 4
    assert m["sqnr_db"] == pytest.approx(10 * math.log10((4 + 16 + 1 + 1) / 2.0))
    same = metrics.head_metrics(ref, ref.copy(), classification=False)
    assert same["psnr_db"] is None and same["sqnr_db"] is None and same["cosine"] == pytest.approx(1.0)  # identical


def test_host_and_board_compute_the_same_verify():
    """evaluate (host), dms_bench.verify_outputs (board, ORT) and trt_runner (board, TensorRT) share one implementation."""
    from dmsbuild.convert import evaluate
    from dmsbuild.board.runner import trt_runner

    rng = np.random.default_rng(3)
    ref = {"inputs": rng.standard_normal((6, 3, 4, 4)).astype(np.float32), "eye_state": _logits(6, 2), "head_pose": rng.standard_normal((6, 3))}
    got = {"eye_state": ref["eye_state"] * 0.9 + 0.05, "head_pose": np.zeros_like(ref["head_pose"])}  # one degenerate head
    outs = iter([[got["eye_state"][i:i + 1], got["head_pose"][i:i + 1]] for i in range(6)])
    board = dms_bench.verify_outputs(np, lambda names, feed: next(outs), "image", np.float32,
                                     ["eye_state", "head_pose"], ref, 6, 1, ["eye_state"])
    host = {h: evaluate.head_metrics(ref[h], got[h], h == "eye_state") for h in got}
    assert board["heads"] == host == trt_runner.verify_summary(ref, got, ["eye_state"])["heads"]
    assert board["heads"]["head_pose"]["degenerate"] == "every output is exactly 0 (6 samples)"
    assert board["min_top1_agreement"] == host["eye_state"]["top1_agreement"] == 1.0
    assert set(board["heads"]["eye_state"]) == set(metrics.HEAD_KEYS) | set(metrics.KIND_KEYS)
    assert set(metrics.HEAD_KEYS) == set(results.VERIFY_KEYS)


# ---------------------------------------------------------------- FP32 reference
def test_reference_that_does_not_vary_is_named():
    assert metrics.reference_problem(np.ones((8, 5))) == "identical on all 8 validation samples"
    nearly = np.ones((8, 5)) + 1e-7 * np.random.default_rng(0).standard_normal((8, 5))
    assert metrics.reference_problem(nearly).startswith("nearly identical on all 8 validation samples")
    assert metrics.reference_problem(_logits()) is None
    nan = _logits()
    nan[0, 0] = np.nan
    assert metrics.reference_problem(nan) == "NaN or Inf in 1 of 16 samples"


def test_check_reference_errors_only_when_no_head_varies(capsys):
    from dmsbuild.convert.evaluate import check_reference

    with pytest.raises(UserError, match=r"^dmsbuild.toml: data.validation \(8 samples\): the FP32 outputs are identical "
                                        r"on all 8 validation samples on every head \(a, b\): the validation data does "
                                        r"not exercise the model"):
        check_reference({"a": np.ones((8, 2)), "b": np.zeros((8, 3))}, "dmsbuild.toml: data.validation (8 samples)")
    check_reference({"a": np.ones((8, 2)), "b": _logits(8)}, "x")  # one varying head: a warning, not an error
    assert "FP32 output 'a' is identical on all 8 validation samples" in capsys.readouterr().out
    with pytest.raises(UserError, match="output 'b' has NaN or Inf in 1 of 16 samples"):
        bad = _logits()
        bad[2, 2] = np.inf
        check_reference({"a": _logits(), "b": bad}, "x")


# ---------------------------------------------------------------- floors: config and resolution
def test_floors_resolve_most_specific_first_and_name_their_source():
    project = load_project(ROOT)
    profile = load_target(ROOT, "rpi5")
    project.accuracy.heads = {"head_pose": HeadFloorsConfig(min_sqnr_db=9.0)}
    profile.gates.min_cosine = 0.97
    profile.gates.heads = {"yawn": HeadFloorsConfig(max_accuracy_drop=0.1)}
    f = floors_for(project, profile)
    assert f.for_head("activity").min_cosine.value == 0.97
    assert f.for_head("activity").min_cosine.source == "targets/rpi5.toml: gates.min_cosine"
    assert f.for_head("activity").min_sqnr_db.source == "dmsbuild.toml: accuracy.min_sqnr_db"
    assert f.for_head("head_pose").min_sqnr_db.value == 9.0
    assert f.for_head("head_pose").min_sqnr_db.source == "dmsbuild.toml: accuracy.heads.head_pose.min_sqnr_db"
    assert f.for_head("yawn").max_accuracy_drop.value == 0.1
    assert f.for_head("yawn").max_accuracy_drop.source == "targets/rpi5.toml: gates.heads.yawn.max_accuracy_drop"
    assert f.for_head("eye_state").max_accuracy_drop.value == 0.05  # targets/rpi5.toml's own gates.max_accuracy_drop


@pytest.mark.parametrize(("toml", "message"), [
    ("[accuracy]\nmin_cosine = 1.5\n", "field 'accuracy.min_cosine' is 1.5; expected a number in [-1, 1]"),
    ("[accuracy]\nmin_sqnr_db = nan\n", "field 'accuracy.min_sqnr_db' is nan; expected a number in [-200, 200]"),
    ("[accuracy]\nmax_accuracy_drop = -0.1\n", "field 'accuracy.max_accuracy_drop' is -0.1; expected a number in [0, 1]"),
    ("[accuracy]\nmin_psnr_db = 30\n", "unknown field 'accuracy.min_psnr_db'"),
    ("[accuracy.heads.gaze]\nmin_cosine = 0.9\n", "field 'accuracy.heads.gaze' names a head that is not in outputs.names"),
    ("[accuracy.heads.head_pose]\nmax_accuracy_drop = 0.1\n", "'head_pose' is not a classification head"),
    ("[accuracy.heads.yawn]\nmin_cosine = 2\n", "field 'accuracy.heads.yawn.min_cosine' is 2.0; expected a number in [-1, 1]"),
])
def test_project_floors_are_validated_at_load(tmp_path, toml, message):
    text = (ROOT / "dmsbuild.toml").read_text().replace("[accuracy]\nmax_accuracy_drop = 0.05\n", "")
    (tmp_path / "dmsbuild.toml").write_text(text + toml)
    with pytest.raises(UserError, match=re.escape(message)):
        load_project(tmp_path)


def test_target_floors_are_validated(tmp_path):
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "t.toml").write_text("[gates]\nmin_cosine = -3\n")
    with pytest.raises(UserError, match=re.escape("t.toml: field 'gates.min_cosine' is -3.0; expected a number in [-1, 1]")):
        load_target(tmp_path, "t")
    (tmp_path / "targets" / "t.toml").write_text("[gates.heads.gaze]\nmin_cosine = 0.9\n")
    profile = load_target(tmp_path, "t")  # head names are checked against the project's outputs
    with pytest.raises(UserError, match=re.escape("t.toml: field 'gates.heads.gaze' names a head that is not in outputs.names")):
        floors_for(load_project(ROOT), profile)


# ---------------------------------------------------------------- the on-board gate
def test_board_gate_fails_a_degenerate_head_and_a_low_cosine():
    bad = result("int8-qdq", 3.5)
    bad["verify"]["heads"]["head_pose"].update(degenerate="every output is exactly 0 (16 samples)", cosine=0.0)
    low = result("fp16", 3.0)
    low["verify"]["heads"]["yawn"]["cosine"] = 0.9
    doc = document("r2", [result("fp32", 6.7), bad, low])
    results.validate_document(doc, board="rpi5-04")
    out = check_accuracy(doc, board="rpi5-04", floors=FLOORS)
    assert [(f.artifact, f.gate) for f in out] == [("int8-qdq", "accuracy"), ("fp16", "accuracy")]
    assert out[0].message.startswith("board rpi5-04: artifact int8-qdq (int8-qdq) fails the accuracy gate")
    assert "head 'head_pose': degenerate outputs: every output is exactly 0" in out[0].message
    assert "head 'yawn': cosine 0.9000" in out[1].message and "< floor 0.98" in out[1].message


def test_result_validation_checks_the_new_fields():
    doc = document("r1", [result("int8-qdq", 3.0)])
    heads = doc["results"][0]["verify"]["heads"]
    for field, value, expected in (("cosine_min", 1.5, "cosine_min"), ("sqnr_db", "x", "sqnr_db"),
                                   ("degenerate", 3, "degenerate"), ("cosine", None, "null only with 'degenerate' set")):
        saved = heads["yawn"][field]
        heads["yawn"][field] = value
        with pytest.raises(results.ResultError, match=re.escape(expected)):
            results.validate_document(doc, board="b")
        heads["yawn"][field] = saved
    del heads["yawn"]["sqnr_db"]
    with pytest.raises(results.ResultError, match="sqnr_db"):
        results.validate_document(doc, board="b")


def test_board_scripts_find_the_shared_metrics_beside_them(tmp_path):
    """On the board runner/ holds dms_bench.py, trt_runner.py and metrics.py; without metrics.py they say so."""
    import shutil
    import subprocess
    import sys

    runner = tmp_path / "runner"
    runner.mkdir()
    shutil.copyfile(ROOT / "dmsbuild/board/runner/trt_runner.py", runner / "trt_runner.py")
    shutil.copyfile(ROOT / "dmsbuild/board/runner/metrics.py", runner / "metrics.py")
    ok = subprocess.run([sys.executable, str(runner / "trt_runner.py"), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--engine" in ok.stdout
    (runner / "metrics.py").unlink()
    bad = subprocess.run([sys.executable, str(runner / "trt_runner.py"), "--help"], capture_output=True, text=True)
    assert bad.returncode != 0 and "runner/metrics.py is missing beside trt_runner.py; redeploy the release" in bad.stderr


def test_board_runner_without_the_metrics_file_reports_why_the_check_failed(tmp_path):
    import sys

    from dmsbuild.measure.bench import benchmark_release
    from dmsbuild.transport.local import LocalTransport
    from tests.bench_release import make_release

    rel = make_release(tmp_path, bench={"warmup": 0, "iterations": 1, "threads": 1, "verify_samples": 4})
    (rel / "runner" / "metrics.py").unlink()
    doc = benchmark_release(LocalTransport("b"), str(tmp_path / "current"), python=sys.executable)
    [r] = doc["results"]
    assert "runner/metrics.py is missing beside dms_bench.py" in r["error"]


def test_build_summary_shows_the_floors_the_verdict_and_every_failure():
    from dmsbuild.convert.build_json import format_summary

    floors = {"default": {"max_accuracy_drop": 0.05, "min_cosine": 0.95, "min_sqnr_db": 12.0}, "heads": {},
              "overridden": ["head_pose"]}
    row = {"artifact": "int8-qdq", "precision": "int8-qdq", "size": 4_700_000, "compression": 3.57,
           "min_top1_agreement": 0.992, "min_cosine": 0.98, "min_sqnr_db": 5.7, "labelled_accuracy": None,
           "accuracy_loss": None, "max_drop": 0.008,
           "gate_failures": ["head 'eye_state': SQNR 5.7 dB over 128 samples < floor 12 dB (dmsbuild.toml: accuracy.min_sqnr_db)"]}
    good = dict(row, artifact="fp32", precision="fp32", min_sqnr_db=None, gate_failures=[])
    text = format_summary("rpi5", [good, row], floors, 128)
    assert "floors: top-1 drop <= 5.0%, cosine >= 0.95, SQNR >= 12 dB; own floors for head_pose" in text
    assert "| fp32 | fp32 |" in text and "| identical |" in text and text.count("| pass |") == 1
    assert "| 5.7 |" in text and "| FAIL (1) |" in text
    assert "- int8-qdq: head 'eye_state': SQNR 5.7 dB over 128 samples < floor 12 dB" in text


# ---------------------------------------------------------------- the board's judge with default floors
def test_the_judges_default_floors_pass_a_good_detector_and_fail_a_poor_sequence_head():
    """No floors given for the kinds' own metrics: the defaults (recall, precision 0.9; score error 0.1; string
    agreement 0.9) pass a detector within them and fail a sequence head that decodes half its strings differently."""
    from dmsbuild.board.runner.judge import kind_failures

    det = {"by_kind": {"kind": "detection", "reference_detections": 40, "detections": 40, "recall": 0.95,
                       "precision": 0.95, "score_error": 0.05}}
    assert kind_failures("boxes", det, None, 8) == []
    worse = {"by_kind": {**det["by_kind"], "score_error": 0.15}}
    [line] = kind_failures("boxes", worse, None, 8)
    assert line.startswith("head 'boxes': mean score error of matched detections 0.150 > allowed 0.1 "), line
    seq = {"by_kind": {"kind": "sequence", "string_agreement": 0.5}}
    [line] = kind_failures("text", seq, None, 8)
    assert line.startswith("head 'text': decoded-string agreement 50.0% (CTC greedy, 8 samples) < floor 0.9"), line
    assert kind_failures("text", {"by_kind": {"kind": "sequence", "string_agreement": 0.95}}, None, 8) == []


@pytest.mark.parametrize("max_drop, need", [(0.01, 100), (0.02, 50), (0.03, 34), (0.25, 4), (1.0, 1)])
def test_samples_needed_is_the_fewest_on_which_one_disagreement_stays_within_the_drop(max_drop, need):
    from dmsbuild.core.accuracy import samples_needed

    assert samples_needed(max_drop) == need
    assert 1 / need <= max_drop + 1e-12 and (need == 1 or 1 / (need - 1) > max_drop)
