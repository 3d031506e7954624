"""Brought-model test helpers: small ONNX classifiers written with onnx.helper (no torch, fast) and a project
around a brought ONNX file, run through the repository's dodo.py like tests/tinyproject.py does.

The models reproduce what users bring (issue 14): output names with '/', old opsets, weights computed by
ConstantOfShape, fixed input sizes different from the configuration, custom-domain ops, external data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.tinyproject import write_images

LOCAL_TARGET = """\
runtime = "onnxruntime"
precisions = ["fp32", "fp16", "int8-dynamic", "int8-qdq"]
transport = "local"
[deploy]
root = "artifacts/boards/a"
"""


def classifier(path: Path, *, opset: int = 17, inp: str = "x", out: str = "logits", hw: tuple[int, int] | None = (32, 32),
               const_weights: bool = False, custom_op: bool = False, external: bool = False, fp16_weights: bool = False,
               seed: int = 0) -> Path:
    """Conv-ReLU-GAP-Gemm-Softmax on [N, 3, H, W]; ``hw=None`` makes H and W dynamic."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    if const_weights:
        # weights computed at run time: ConstantOfShape(shape) + a stored delta (valid ONNX that ORT runs)
        inits += [nh.from_array(np.array(w.shape, np.int64), "conv1_w_0_SHAPE"), nh.from_array(w - 0.1, "conv1_w_delta")]
        nodes += [h.make_node("ConstantOfShape", ["conv1_w_0_SHAPE"], ["conv1_w_base"],
                              value=nh.from_array(np.array([0.1], np.float32))),
                  h.make_node("Add", ["conv1_w_base", "conv1_w_delta"], ["conv1_w_0"])]
    elif fp16_weights:
        inits.append(nh.from_array(w.astype(np.float16), "conv1_w_fp16"))
        nodes.append(h.make_node("Cast", ["conv1_w_fp16"], ["conv1_w_0"], to=T.FLOAT))
    else:
        inits.append(nh.from_array(w, "conv1_w_0"))
    inits += [nh.from_array(rng.normal(0, 0.5, (10, 8)).astype(np.float32), "fc_w"),
              nh.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "fc_b")]
    nodes += [h.make_node("Conv", [inp, "conv1_w_0"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
              h.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    last = "r1"
    if custom_op:
        nodes.append(h.make_node("FancyNorm", ["r1"], ["n1"], domain="com.example", name="fancy_norm"))
        last = "n1"
    nodes += [h.make_node("GlobalAveragePool", [last], ["g"], name="gap"),
              h.make_node("Flatten", ["g"], ["f"], axis=1, name="flatten"),
              h.make_node("Gemm", ["f", "fc_w", "fc_b"], ["l"], transB=1, name="fc"),
              h.make_node("Softmax", ["l"], [out], axis=1, name="softmax")]
    dims = ["N", 3, *(hw if hw else ("H", "W"))]
    graph = h.make_graph(nodes, "classifier", [h.make_tensor_value_info(inp, T.FLOAT, dims)],
                         [h.make_tensor_value_info(out, T.FLOAT, ["N", 10])], inits)
    imports = [h.make_opsetid("", opset)] + ([h.make_opsetid("com.example", 1)] if custom_op else [])
    model = h.make_model(graph, opset_imports=imports, producer_name="dmsbuild-tests")
    model.ir_version = min(model.ir_version, 7 if opset < 15 else 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def project_toml(*, onnx_rel: str = "models/model.onnx", inp: str = "x", shape: list[int] | None = None,
                 outputs: list[str] | None = None, classification: list[str] | None = None, layout: str = "NCHW",
                 labels: str | None = None, extra: str = "") -> str:
    outputs = outputs if outputs is not None else ["logits"]
    classification = outputs if classification is None else classification
    return (f'name = "byom"\n\n[model]\nonnx = {json.dumps(onnx_rel)}\n\n'
            f'[input]\nname = {json.dumps(inp)}\nshape = {json.dumps(shape or [1, 3, 32, 32])}\nlayout = "{layout}"\n\n'
            f'[outputs]\nnames = {json.dumps(outputs, ensure_ascii=False)}\n'
            f'classification = {json.dumps(classification, ensure_ascii=False)}\n\n'
            f'[data]\ncalibration = "data/calibration"\nvalidation = "data/validation"\n'
            + (f"labels = {json.dumps(labels)}\n" if labels else "")
            + '\n[accuracy]\nmax_accuracy_drop = 1.0\n' + extra)


def make_byom_project(root: Path, toml: str, targets: dict[str, str] | None = None,
                      image_size: tuple[int, int] = (40, 48)) -> Path:
    """A project folder with ``dmsbuild.toml``, target profiles and 4 + 6 random images (the model is written by the caller)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dmsbuild.toml").write_text(toml)
    tdir = root / "targets"
    tdir.mkdir(exist_ok=True)
    for name, text in (targets or {"a": LOCAL_TARGET}).items():
        (tdir / f"{name}.toml").write_text(text)
    write_images(root / "data" / "calibration", 4, seed=1, size=image_size)
    write_images(root / "data" / "validation", 6, seed=2, size=image_size)
    return root


def yolo_like_onnx(path: Path, classes: int = 6) -> None:
    """A tiny YOLOv8-like head: Conv -> [N, 4+C, 64]; boxes = 320 * sigmoid, scores = sigmoid; Concat on axis 1."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (4 + classes, 3, 4, 4)).astype(np.float32)
    b = np.zeros(4 + classes, np.float32)
    b[4:] = -2.0
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[4, 4], strides=[4, 4]),
             h.make_node("Reshape", ["c", "shape"], ["r"]),
             h.make_node("Split", ["r", "split"], ["bx", "sc"], axis=1),
             h.make_node("Sigmoid", ["bx"], ["bs"]), h.make_node("Mul", ["bs", "k320"], ["boxes"]),
             h.make_node("Sigmoid", ["sc"], ["scores"]),
             h.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1)]
    inits = [nh.from_array(w, "w"), nh.from_array(b, "b"),
             nh.from_array(np.array([0, 4 + classes, 64], np.int64), "shape"),
             nh.from_array(np.array([4, classes], np.int64), "split"), nh.from_array(np.array(320.0, np.float32), "k320")]
    g = h.make_graph(nodes, "yolo_like", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 32, 32])],
                     [h.make_tensor_value_info("output0", T.FLOAT, ["N", 4 + classes, 64])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, path)
