"""Outputs judged by what they mean (issue 24 item 1; docs/accuracy.md "Outputs by kind").

The headline case: a YOLO-style output [N, 4+C, A] quantized with one scale over boxes (0..320) and class
scores (0..1) loses every score, yet the whole-tensor cosine and SQNR pass. The detection judge (decode,
NMS, match by IoU) and the per-slice collapse check must fail it, naming the output and the slice.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmsbuild.board.runner import dms_bench, judge, metrics
from dmsbuild.config import as_dict, load_project
from dmsbuild.errors import UserError
from dmsbuild.core import results
from dmsbuild.core.accuracy import AccuracyFloors, failures
from tests.byom import yolo_like_onnx

ROOT = Path(__file__).resolve().parents[1]
FLOORS = AccuracyFloors.uniform(0.05, 0.95, 12.0, source="test")
YOLO = {"kind": "detection", "layout": "yolo"}


def yolo_output(n: int, classes: int, anchors: int, box_scale: float, seed: int = 0) -> np.ndarray:
    """A YOLOv8-style [n, 4+C, A] output: xywh boxes up to ``box_scale``, sigmoid class scores, a few confident."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 4 + classes, anchors))
    out[:, 0:2] = rng.uniform(0, box_scale, (n, 2, anchors))
    out[:, 2:4] = rng.uniform(box_scale / 20, box_scale / 4, (n, 2, anchors))
    out[:, 4:] = 1.0 / (1.0 + np.exp(-rng.normal(-4.0, 1.5, (n, classes, anchors))))
    for i in range(n):  # a few real objects per sample: FP32 always detects something
        hits = rng.choice(anchors, size=min(3, anchors), replace=False)
        out[i, 4 + rng.integers(0, classes, len(hits)), hits] = rng.uniform(0.6, 0.95, len(hits))
    return out


def uint8_one_scale(x: np.ndarray) -> np.ndarray:
    """What one uint8 scale over the whole tensor does (ONNX Runtime's per-tensor QuantizeLinear, zero point 0)."""
    scale = float(x.max()) / 255.0
    return np.clip(np.round(x / scale), 0, 255) * scale


# ---------------------------------------------------------------- the headline bug
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(classes=st.integers(1, 80), anchors=st.integers(8, 400), box_scale=st.floats(64.0, 640.0),
       seed=st.integers(0, 2**16))
def test_zeroed_class_scores_pass_the_whole_tensor_gate_but_fail_the_detection_judge(classes, anchors, box_scale, seed):
    ref = yolo_output(4, classes, anchors, box_scale, seed)
    got = ref.copy()
    got[:, 4:] = 0.0  # every class score lost
    whole = metrics.head_metrics(ref, got, classification=False)  # today's view: one vector per sample
    assert whole["degenerate"] is None and failures({"output0": whole}, FLOORS, 4) == []  # the bug: it "passes"
    m = metrics.head_metrics(ref, got, classification=False, kind=YOLO)
    lines = failures({"output0": m}, FLOORS, 4)
    collapsed = [l for l in lines if "collapsed" in l]
    assert collapsed and collapsed[0].startswith(
        f"head 'output0': slice 'scores' (channels 4:{4 + classes} of axis 1) collapsed: every value is 0 while FP32's vary")
    assert "python -m dmsbuild.convert.mixed_precision" in collapsed[0]  # the fix, in the same line
    assert m["by_kind"]["recall"] == 0.0 and m["slices"]["boxes"]["collapsed"] is None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(classes=st.integers(1, 40), anchors=st.integers(8, 200), seed=st.integers(0, 2**16),
       value=st.floats(0.01, 1.0))
def test_constant_class_scores_are_a_collapsed_slice(classes, anchors, seed, value):
    ref = yolo_output(3, classes, anchors, 320.0, seed)
    got = ref.copy()
    got[:, 4:] = value
    lines = failures({"det": metrics.head_metrics(ref, got, False, YOLO)}, FLOORS, 3)
    assert any(re.match(r"head 'det': slice 'scores' \(channels 4:\d+ of axis 1\) collapsed: every value is ", l)
               for l in lines)


def test_real_uint8_rounding_of_a_yolo_output_fails_by_its_detections():
    """Not every score is rounded to exactly 0 (a few round up to one step, 1.25): no collapse, but the
    decoded detections and their scores are wrong, and the whole-tensor figures still look fine."""
    ref = yolo_output(8, 80, 300, 320.0, seed=1)
    got = uint8_one_scale(ref)
    whole = metrics.head_metrics(ref, got, False)
    assert whole["cosine"] > 0.999 and failures({"output0": whole}, FLOORS, 8) == []
    m = metrics.head_metrics(ref, got, False, YOLO)
    lines = failures({"output0": m}, FLOORS, 8)
    assert any(l.startswith("head 'output0': mean score error of matched detections") for l in lines)
    assert any(l.startswith("head 'output0': slice 'scores' (channels 4:84 of axis 1) collapsed: only 2 distinct "
                            "values (0, 1.2") for l in lines)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(classes=st.integers(1, 40), anchors=st.integers(8, 200), seed=st.integers(0, 2**16))
def test_a_faithful_detector_passes_the_detection_judge(classes, anchors, seed):
    ref = yolo_output(4, classes, anchors, 320.0, seed)
    got = ref + np.random.default_rng(seed).normal(0, 1e-4, ref.shape)
    m = metrics.head_metrics(ref, got, False, YOLO)
    assert failures({"output0": m}, FLOORS, 4) == []
    assert m["by_kind"]["recall"] >= 0.9 and m["by_kind"]["precision"] >= 0.9  # a box at a threshold may flip


def test_detection_matching_counts_boxes_by_class_and_iou():
    ref = np.zeros((1, 6, 3))  # 2 classes, 3 anchors, xyxy
    ref[0, 0:4, 0], ref[0, 4, 0] = [0, 0, 10, 10], 0.9
    ref[0, 0:4, 1], ref[0, 5, 1] = [50, 50, 60, 60], 0.8
    ref[0, 0:4, 2], ref[0, 5, 2] = [0, 0, 10, 10], 0.1  # below the score threshold
    got = ref.copy()
    got[0, 0:4, 1] = [55, 55, 65, 65]  # IoU 25/175 < 0.5: no match
    spec = metrics.kind_spec({**YOLO, "box_format": "xyxy"})
    m = metrics.kind_metrics(ref, got, spec)["by_kind"]
    assert (m["reference_detections"], m["detections"], m["matched"]) == (2, 2, 1)
    assert m["recall"] == 0.5 and m["precision"] == 0.5 and m["score_error"] == 0.0
    got = ref.copy()
    got[0, 4, 0], got[0, 5, 0] = 0.0, 0.9  # the same box, another class: no match
    assert metrics.kind_metrics(ref, got, spec)["by_kind"]["matched"] == 1


def test_ssd_pair_is_judged_from_both_tensors():
    rng = np.random.default_rng(4)
    n, a, c = 4, 50, 6
    xy = rng.uniform(0, 200, (n, a, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, a, 2))], axis=2)
    scores = rng.uniform(0, 0.2, (n, a, c))
    scores[:, :3, 1] = 0.9
    ref = {"boxes": boxes, "scores": scores, "inputs": np.zeros((n, 1))}
    kinds = {"boxes": {"kind": "detection", "layout": "ssd", "box_format": "xyxy", "scores_output": "scores"}}
    good = metrics.verify_summary(ref, {"boxes": boxes, "scores": scores}, [], kinds=kinds)
    assert failures(good["heads"], FLOORS, n) == [] and good["heads"]["boxes"]["by_kind"]["recall"] == 1.0
    bad = metrics.verify_summary(ref, {"boxes": boxes, "scores": np.zeros_like(scores)}, [], kinds=kinds)
    lines = failures(bad["heads"], FLOORS, n)
    assert any(l.startswith("head 'boxes': slice 'scores' (output 'scores') collapsed: every value is 0") for l in lines)


# ---------------------------------------------------------------- sequences and class axes
def _sequence(n=20, t=40, k=50, seed=0):
    ref = np.random.default_rng(seed).standard_normal((n, t, k))
    got = ref.copy()
    for i in range(n):  # one step of each sample changes class: the step that holds the sample's global maximum
        step = int(np.unravel_index(ref[i].argmax(), ref[i].shape)[0])
        got[i, step, ref[i, step].argmax()] = ref[i, step].min() - 1.0
    return ref, got


def test_sequence_is_judged_per_step_not_over_the_flattened_sample():
    ref, got = _sequence()
    flat = metrics.top1_agreement(metrics.as_samples(ref), metrics.as_samples(got))  # the old definition
    assert flat == 0.0
    m = metrics.head_metrics(ref, got, False, {"kind": "sequence"})
    assert m["top1_agreement"] == pytest.approx(39 / 40)
    assert failures({"rec": m}, FLOORS, 20) == []  # a 2.5-point per-step drop is within 5 points
    strict = AccuracyFloors.uniform(0.01, 0.95, 12.0, source="test")
    [line] = failures({"rec": m}, strict, 20)
    assert line.startswith("head 'rec': per-step agreement with FP32 is 97.5% over 20 samples")


def test_sequence_with_ctc_blank_compares_decoded_strings():
    ref, got = _sequence()
    m = metrics.head_metrics(ref, got, False, {"kind": "sequence", "blank": 0})
    assert m["by_kind"]["string_agreement"] < 0.9  # a changed step changes (almost always) the decoded string
    assert any("decoded-string agreement" in l for l in failures({"rec": m}, FLOORS, 20))
    assert metrics.ctc_decode(np.eye(3)[[0, 1, 1, 0, 2, 2, 1]][None], 2, 0) == [(1, 2, 1)]


@settings(max_examples=20, deadline=None)
@given(axis=st.sampled_from([1, 2, -1]), seed=st.integers(0, 2**16))
def test_classification_is_judged_along_its_declared_axis(axis, seed):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((10, 7, 9))
    got = ref.copy()
    ax = axis % 3
    idx = ref.argmax(axis=ax)  # in sample 0, lower the winner at position 0 only: one position of 10 * other-axis
    sl = [0, slice(None), slice(None)]
    sl[3 - ax] = 0
    row = got[tuple(sl)]
    row[idx[0].flat[0]] = row.min() - 1.0
    m = metrics.head_metrics(ref, got, True, {"kind": "classification", "axis": axis})
    positions = ref.size // ref.shape[ax]
    assert m["top1_agreement"] == pytest.approx(1 - 1 / positions)
    assert m["top1_agreement"] == metrics.class_agreement(ref, got, ax)


def test_undeclared_classification_head_keeps_its_old_verdict_for_n_by_c():
    ref = np.random.default_rng(1).standard_normal((30, 5))
    got = ref[::-1].copy()
    assert metrics.head_metrics(ref, got, True)["top1_agreement"] == metrics.top1_agreement(ref, got)


# ---------------------------------------------------------------- segmentation
def test_segmentation_mask_iou():
    ref = np.zeros((2, 1, 10, 10))
    ref[:, 0, 0:4, 0:5] = 0.9  # 20 pixels
    got = np.zeros_like(ref)
    got[:, 0, 0:4, 1:6] = 0.9  # 16 shared of 24
    m = metrics.head_metrics(ref, got, False, {"kind": "segmentation"})
    assert m["by_kind"]["mask_iou"] == pytest.approx(16 / 24)
    [line] = [l for l in failures({"mask": m}, FLOORS, 2) if "mask IoU" in l]
    assert line.startswith("head 'mask': mask IoU 66.7%")
    multi = np.stack([1 - ref[:, 0], ref[:, 0]], axis=1)
    assert metrics.head_metrics(multi, multi, False, {"kind": "segmentation"})["by_kind"]["mask_iou"] == 1.0


# ---------------------------------------------------------------- one judge, host and board
def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_host_and_board_give_the_same_verdict_on_the_same_arrays(tmp_path):
    """Host: evaluate's verify_summary + core.accuracy floors. Board: runner/metrics.py and judge.py loaded as
    the release's files (dms_bench's verify_outputs) and the Mender module's floors from the bundle's JSON."""
    from dmsbuild.board.mender import dmsbuild_release
    from dmsbuild.convert import evaluate
    from dmsbuild.ship.mender import floors_json

    ref_out = yolo_output(6, 10, 120, 320.0, seed=7)
    seq, seq_got = _sequence(6, 12, 9)
    got = {"output0": uint8_one_scale(ref_out), "rec": seq_got}
    ref = {"inputs": np.zeros((6, 3, 4, 4), np.float32), "output0": ref_out, "rec": seq}
    kinds = {"output0": YOLO, "rec": {"kind": "sequence", "blank": 0}}
    host = evaluate.verify_summary({k: ref[k] for k in got}, got, [], kinds=kinds)
    outs = iter([[got["output0"][i:i + 1], got["rec"][i:i + 1]] for i in range(6)])
    board = dms_bench.verify_outputs(np, lambda names, feed: next(outs), "image", np.float32, ["output0", "rec"],
                                     ref, 6, 1, [], None, kinds)
    board_metrics = _load(ROOT / "dmsbuild/board/runner/metrics.py", "board_metrics")
    board_judge = _load(ROOT / "dmsbuild/board/runner/judge.py", "board_judge")
    shipped = json.loads(json.dumps(board_metrics.verify_summary({k: ref[k] for k in got}, got, [], None, kinds)))
    assert json.loads(json.dumps(board)) == json.loads(json.dumps(host)) == shipped

    project = load_project(ROOT)
    from dmsbuild.config import load_target
    from dmsbuild.measure.gates import accuracy_floors

    profile = load_target(ROOT, "rpi5")
    host_lines = failures(host["heads"], accuracy_floors(project, profile), 6)
    bundle = json.loads(json.dumps(floors_json(project, profile)))
    board_lines = board_judge.failures(shipped["heads"], dmsbuild_release._Floors(bundle), 6)
    assert host_lines == board_lines and any("collapsed" in l or "score error" in l for l in host_lines)
    assert any("decoded-string agreement" in l for l in host_lines)


# ---------------------------------------------------------------- config: declared, validated, shipped
def _project(tmp_path: Path, outputs: str) -> Path:
    text = (ROOT / "dmsbuild.toml").read_text()
    text = re.sub(r"\[outputs\]\n(.*\n)*?\n", "[outputs]\n" + outputs + "\n\n", text, count=1)
    (tmp_path / "dmsbuild.toml").write_text(text)
    return tmp_path


def test_kinds_load_and_travel_with_the_outputs(tmp_path):
    root = _project(tmp_path, '''names = ["output0", "rec", "cls"]
[outputs.kinds.output0]
kind = "detection"
layout = "yolo"
boxes = [0, 4]
box_format = "xyxy"
[outputs.kinds.rec]
kind = "sequence"
blank = 0
[outputs.kinds.cls]
kind = "classification"
axis = 1''')
    proj = load_project(root)
    assert proj.outputs.classification == ["cls"]  # a declared classification is a classification head
    table = proj.outputs.kind_table()
    assert table["output0"]["box_format"] == "xyxy" and table["rec"]["blank"] == 0
    assert as_dict(proj.outputs)["kinds"] == table  # what build.json and manifest.json carry (outputs)
    assert metrics.kind_spec(table["output0"])["score_threshold"] == 0.25


@pytest.mark.parametrize("outputs, message", [
    ('names = ["a"]\n[outputs.kinds.b]\nkind = "regression"', r"field 'outputs.kinds.b' names an output that is not"),
    ('names = ["a"]\n[outputs.kinds.a]\nkind = "regression"\nblank = 0', r"field 'outputs.kinds.a.blank' does not apply to a regression"),
    ('names = ["a"]\n[outputs.kinds.a]\nkind = "detection"\nlayout = "ssd"', r"field 'outputs.kinds.a.scores_output' is missing"),
    ('names = ["a"]\n[outputs.kinds.a]\nkind = "detection"\nboxes = [0, 5]', r"field 'outputs.kinds.a.boxes' is \[0, 5\]; a box has 4"),
    ('names = ["a"]\nclassification = ["a"]\n[outputs.kinds.a]\nkind = "sequence"', r"output 'a' is in outputs.classification but"),
    ('names = ["a"]\n[outputs.kinds.a]\nkind = "detector"', r"field 'outputs.kinds.a.kind' is 'detector'; allowed values"),
    ('names = ["a"]\n[outputs.kinds.a]\nkind = "classification"\naxis = 0', r"field 'outputs.kinds.a.axis' is 0, the batch axis"),
    ('names = ["a"]\n[outputs.kinds.a]\nkind = "regression"\n[accuracy.heads.a]\nmin_recall = 0.5',
     r"field 'accuracy.heads.a.min_recall' is set, but 'a' is not declared a detection output"),
])
def test_bad_kinds_are_one_line_errors(tmp_path, outputs, message):
    root = _project(tmp_path, outputs)
    with pytest.raises(UserError, match=message):
        load_project(root)


def test_a_kind_that_does_not_fit_the_output_is_named():
    ref = yolo_output(2, 3, 20, 320.0)
    with pytest.raises(ValueError, match=r"output 'det' \(detection\): declared channels \(boxes 0:4, scores 4:90"):
        metrics.verify_summary({"det": ref}, {"det": ref}, [], kinds={"det": {**YOLO, "scores": [4, 90]}})
    with pytest.raises(ValueError, match=r"output 'rec' \(sequence\): class axis 3 is outside"):
        metrics.verify_summary({"rec": ref}, {"rec": ref}, [], kinds={"rec": {"kind": "sequence", "axis": 3}})


def test_results_validation_accepts_kind_fields_and_rejects_bad_ones():
    from tests.bench_docs import result

    ref = yolo_output(2, 3, 20, 320.0)
    doc = result("int8", 2.0)
    doc["verify"] = {"samples": 2, "min_top1_agreement": None,
                     "heads": {"output0": json.loads(json.dumps(metrics.head_metrics(ref, ref * 0.99, False, YOLO)))}}
    results.validate_result(json.loads(json.dumps(doc)), board="b1")
    doc["verify"]["heads"]["output0"]["by_kind"]["recall"] = 1.5
    with pytest.raises(results.ResultError, match=r"verify.heads.output0.by_kind.recall"):
        results.validate_result(json.loads(json.dumps(doc)), board="b1")
    doc["verify"]["heads"]["output0"]["by_kind"]["recall"] = 1.0
    doc["verify"]["heads"]["output0"]["slices"]["scores"]["collapsed"] = 3
    with pytest.raises(results.ResultError, match=r"verify.heads.output0.slices.scores.collapsed"):
        results.validate_result(json.loads(json.dumps(doc)), board="b1")


# ---------------------------------------------------------------- doit init guesses, doit build judges
@pytest.mark.parametrize("shape, producer, name, kind", [
    ([1, 84, 2100], "Concat", "output0", {"kind": "detection", "layout": "yolo", "channel_axis": 1, "box_format": "xywh"}),
    (["N", 2100, 85], "Concat", "output0", {"kind": "detection", "layout": "yolo", "channel_axis": 2, "box_format": "xywh"}),
    (["N", 40, 6625], "Softmax", "softmax_2.tmp_0", {"kind": "sequence", "axis": -1}),
    (["N", 1, "H", "W"], "Sigmoid", "sigmoid_0.tmp_0", {"kind": "segmentation", "axis": 1}),
    (["N", 5], "Gemm", "activity", {"kind": "classification", "axis": -1}),
    (["N", 128], "Gemm", "embedding", {"kind": "embedding"}),
    (["N", 3], "Gemm", "head_pose", {"kind": "regression"}),
])
def test_init_guesses_each_outputs_kind(shape, producer, name, kind):
    from dmsbuild.convert.scaffold import _looks_like_logits, guess_kinds

    out = {"name": name, "shape": shape}
    cls = [name] if _looks_like_logits(out, {name: producer}) and kind["kind"] == "classification" else []
    assert guess_kinds([out], {name: producer}, cls) == {name: kind}


def test_init_guesses_an_ssd_pair():
    from dmsbuild.convert.scaffold import guess_kinds

    outs = [{"name": "boxes", "shape": [1, 300, 4]}, {"name": "scores", "shape": [1, 300, 21]}]
    got = guess_kinds(outs, {}, [])
    assert got["boxes"] == {"kind": "detection", "layout": "ssd", "box_format": "xyxy", "scores_output": "scores"}
    assert got["scores"] == {"kind": "regression"}


BOARD = """\
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
transport = "local"
[deploy]
root = "artifacts/boards/a"
[bench]
warmup = 1
iterations = 2
threads = 1
verify_samples = 8
"""


def test_doit_build_fails_a_real_int8_yolo_artifact_with_collapsed_scores(tmp_path):
    """A real ONNX Runtime static INT8 (QDQ, one uint8 scale on the Concat) of a YOLO-like head: declared as a
    regression output (what every output was before kinds) it passes the build's gate and the board's; as the
    detection `doit init` guesses, the build fails naming the output and the slice, and the board's runner,
    reading the kind from the release's manifest, fails it with the same lines on the same 8 samples."""
    from tests.tinyproject import run_doit, write_images

    root = tmp_path / "proj"
    yolo_like_onnx(root / "models" / "det.onnx")
    (root / "targets").mkdir(parents=True)
    (root / "targets" / "a.toml").write_text(BOARD)
    write_images(root / "data" / "calibration", 6, seed=1, size=(40, 40))
    write_images(root / "data" / "validation", 8, seed=2, size=(40, 40))
    init = run_doit(root, "init", "onnx=models/det.onnx", "data=data")
    assert init.rc == 0, init.output
    text = (root / "dmsbuild.toml").read_text()
    assert '[outputs.kinds."output0"]  # guess' in text and 'kind = "detection"' in text
    assert "output0: detection" in init.output  # listed under "still to check"
    guessed = text
    (root / "dmsbuild.toml").write_text(re.sub(r'\[outputs\.kinds\."output0"\][^\[]*', "", text))
    whole = run_doit(root, "build", "target=a")
    assert whole.rc == 0, whole.output  # the bug: the whole-tensor gate passes the INT8 detector
    deploy = run_doit(root, "deploy", "target=a")
    assert deploy.rc == 0, deploy.output[-3000:]  # and so does the board's output check
    (root / "dmsbuild.toml").write_text(guessed)
    build = run_doit(root, "build", "target=a")
    assert build.rc != 0
    host = sorted(set(re.findall(r"head 'output0': [^\n]*?over 8 samples", build.output)))
    assert any(l.startswith("head 'output0': slice 'scores' (channels 4:10 of axis 1) collapsed") for l in host), build.output
    assert "python -m dmsbuild.convert.mixed_precision" in build.output
    # the board judges by the kind its release's manifest carries (outputs.kinds): give the deployed release the kind
    manifest = root / "artifacts" / "boards" / "a" / "current" / "manifest.json"
    doc = json.loads(manifest.read_text())
    assert doc["outputs"]["kinds"] == {}  # built when the output was undeclared
    doc["outputs"]["kinds"] = {"output0": metrics.kind_spec({"kind": "detection"})}
    manifest.write_text(json.dumps(doc))
    bench = run_doit(root, "bench", "target=a")
    assert bench.rc != 0
    board = sorted(set(re.findall(r"head 'output0': [^\n]*?over 8 samples", bench.output)))
    assert board == host, (board, host)  # same samples, same rule, same lines
