"""Issue 24 item 5: the QNN HTP's graph-finalization failure is one line, and its cause here is fixed.

PaddleOCR's, YOLOv8's and other exported hard-swish / decode graphs divide by a float constant (``x / 6``).
ONNX Runtime's static quantizer leaves a Div's constant divisor in float, and onnxruntime-qnn's HTP (the
simulator here) then fails with ``Failed to finalize QNN graph ... QNN_COMMON_ERROR_MEM_ALLOC``, which reached
the user as a Python traceback. The quantize step now multiplies by the reciprocal (dmsbuild/convert/quantize.py
``divisions_to_multiplications``) and the compile step turns any EP failure into one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from dmsbuild.backends import qnn
from dmsbuild.convert.quantize import divisions_to_multiplications
from dmsbuild.errors import UserError

pytestmark = pytest.mark.usefixtures("onnxruntime_qnn")


def _hard_swish_net(path: Path) -> Path:
    """Conv -> hard swish written as x * clip(x + 3, 0, 6) / 6 (one shared constant 6) -> 1x1 Conv."""
    import onnx

    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), "w1"),
             nh.from_array(rng.normal(0, 0.4, (8, 8, 1, 1)).astype(np.float32), "w2"),
             nh.from_array(np.array(3.0, np.float32), "three"), nh.from_array(np.array(0.0, np.float32), "zero"),
             nh.from_array(np.array(6.0, np.float32), "six")]
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("Add", ["c1", "three"], ["a"], name="add"),
             h.make_node("Clip", ["a", "zero", "six"], ["cl"], name="clip"),
             h.make_node("Mul", ["c1", "cl"], ["m"], name="mul"),
             h.make_node("Div", ["m", "six"], ["hs"], name="div"),
             h.make_node("Conv", ["hs", "w2"], ["y"], name="conv2")]
    g = h.make_graph(nodes, "hs", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 8, 16, 16])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _qdq(src: Path, out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": np.random.default_rng(i).normal(size=(1, 3, 16, 16)).astype(np.float32)}
                            for i in range(4)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QUInt8)
    return out


def test_the_rewrite_keeps_names_and_values(tmp_path):
    import onnx
    import onnxruntime as ort

    src = _hard_swish_net(tmp_path / "m.onnx")
    proto = onnx.load(str(src))
    assert divisions_to_multiplications(proto) == 1
    div = next(n for n in proto.graph.node if n.name == "div")
    assert div.op_type == "Mul" and div.input[1] == "six_reciprocal"
    assert "six" in {i.name for i in proto.graph.initializer}  # still Clip's max
    onnx.save(proto, str(tmp_path / "r.onnx"))
    x = {"x": np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32)}
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, x)[0]
    b = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert np.allclose(a, b, rtol=1e-6, atol=1e-6)
    assert divisions_to_multiplications(proto) == 0  # nothing left to rewrite


def test_a_float_divisor_fails_finalization_in_one_line_and_the_rewrite_compiles(tmp_path):
    import onnx

    src = _hard_swish_net(tmp_path / "m.onnx")
    with pytest.raises(UserError) as e:
        qnn.build_context_binary(_qdq(src, tmp_path / "q.onnx"), tmp_path / "ctx" / "m.onnx", qnn.QnnOptions(),
                                 where="targets/qcs8255.toml: artifact int8-qdq")
    msg = e.value.message
    assert msg.startswith("targets/qcs8255.toml: artifact int8-qdq: q.onnx: the QNN HTP backend failed to compile it: ")
    assert "QNN_COMMON_ERROR_MEM_ALLOC" in msg and "\n" not in msg and "Traceback" not in msg
    assert "nodes_to_exclude" in e.value.hint

    proto = onnx.load(str(src))
    divisions_to_multiplications(proto)
    onnx.save(proto, str(tmp_path / "r.onnx"))
    report = qnn.build_context_binary(_qdq(tmp_path / "r.onnx", tmp_path / "rq.onnx"), tmp_path / "ok" / "m.onnx",
                                      qnn.QnnOptions())
    assert report.qnn_nodes == report.total_nodes - 2  # all but the model's input Q and output DQ
