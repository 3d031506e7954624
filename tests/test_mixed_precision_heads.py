"""Issue 24 item 7: a collapsed slice names the output whose final node the mixed-precision search keeps in
float first (the YOLO-style Concat of boxes and class scores); ranking by SQNR alone never finds it, because
the boxes dominate every whole-tensor figure (docs/mixed-precision.md)."""
from __future__ import annotations

import onnx

from dmsbuild.convert.mixed_precision import collapsed_head_candidates
from tests.byom import yolo_like_onnx

COLLAPSED = ("head 'output0': slice 'scores' (channels 4:10 of axis 1) collapsed: every value is 0 while FP32's vary "
             "(FP32 0.01..0.9) over 16 samples; quantize that slice apart or keep the output head's final nodes in float: "
             "python -m dmsbuild.convert.mixed_precision (or doit tune)")


def _named(path):
    yolo_like_onnx(path)
    m = onnx.load(str(path))
    for k, n in enumerate(m.graph.node):
        n.name = f"/head/{n.op_type}_{k}"
    onnx.save(m, str(path))
    return path


def test_the_collapsed_output_s_final_node_is_the_first_candidate(tmp_path):
    path = _named(tmp_path / "yolo.onnx")
    assert collapsed_head_candidates(path, [COLLAPSED]) == [("output0", "scores", ["/head/Concat_6"])]


def test_other_failures_name_no_head_candidate(tmp_path):
    path = _named(tmp_path / "yolo.onnx")
    other = "head 'output0': mean score error of matched detections 0.188 > allowed 0.1 (dmsbuild.toml: accuracy.max_score_error)"
    assert collapsed_head_candidates(path, [other]) == []
    assert collapsed_head_candidates(path, [COLLAPSED.replace("output0", "missing")]) == []
