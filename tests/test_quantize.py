"""The export and each quantized variant have the properties their consumers rely on (tiny model, in-process)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.config import StaticQuantConfig, load_project
from dmsbuild.convert.data import list_samples
from tests.tinyproject import make_project


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    from dmsbuild.convert.export import export_model

    root = make_project(tmp_path_factory.mktemp("quant") / "proj")
    proj = load_project(root)
    out = root / "artifacts" / "common"
    info = export_model(proj, out / "fp32.onnx", out / "fp32.json")
    return proj, out, info


def _onnx(path: Path):
    import onnx

    return onnx.load(str(path))


def _dims(vi) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def test_export_sidecar_and_dynamic_batch(exported) -> None:
    proj, out, info = exported
    side = json.loads((out / "fp32.json").read_text())
    assert side["exporter"] == "torchscript" and side["opset"] == 17
    assert {"torch", "onnx"} <= set(side["versions"])
    assert [o["name"] for o in side["outputs"]] == ["eye_state", "yawn", "activity", "head_pose"]
    model = _onnx(out / "fp32.onnx")
    assert _dims(model.graph.input[0]) == ["batch", 3, 64, 64]
    from dmsbuild.convert.evaluate import run_onnx

    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "fp32.onnx"), providers=["CPUExecutionProvider"])
    res = sess.run(None, {"image": np.zeros((3, 3, 64, 64), np.float32)})
    assert res[0].shape == (3, 2)
    assert run_onnx(out / "fp32.onnx", "image", np.zeros((2, 3, 64, 64), np.float32), ["activity"])["activity"].shape == (2, 5)


def test_fp16_keeps_float32_io_and_halves_weights(exported) -> None:
    from onnx import TensorProto

    from dmsbuild.convert.quantize import convert_fp16

    proj, out, _ = exported
    convert_fp16(out / "fp32.onnx", out / "fp16.onnx")
    model = _onnx(out / "fp16.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in model.graph.output)
    big = [i for i in model.graph.initializer if np.prod(i.dims) > 64]
    assert big and all(i.data_type == TensorProto.FLOAT16 for i in big)
    assert (out / "fp16.onnx").stat().st_size < 0.6 * (out / "fp32.onnx").stat().st_size


def test_static_variants_per_consumer(exported) -> None:
    from dmsbuild.convert.quantize import quantize_static_qdq

    proj, out, _ = exported
    cal = list_samples(proj, "calibration")
    # TensorRT: symmetric int8 activations -> every activation zero point is 0 and int8
    quantize_static_qdq(proj, out / "fp32.onnx", out / "trt.onnx",
                        StaticQuantConfig(activation_type="QInt8", symmetric_activations=True), cal)
    from onnx import TensorProto, numpy_helper

    trt = _onnx(out / "trt.onnx")
    inits = {i.name: i for i in trt.graph.initializer}
    zps = [inits[n.input[2]] for n in trt.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.data_type == TensorProto.INT8 and not numpy_helper.to_array(z).any() for z in zps)
    assert _dims(trt.graph.input[0])[0] == "batch"  # ORT/TRT keep the dynamic batch
    # QNN: uint16 activations and a fixed batch of 1
    quantize_static_qdq(proj, out / "fp32.onnx", out / "qnn.onnx",
                        StaticQuantConfig(activation_type="QUInt16", weight_type="QUInt8", fixed_shape=True), cal)
    qnn = _onnx(out / "qnn.onnx")
    assert _dims(qnn.graph.input[0]) == [1, 3, 64, 64]
    assert all(_dims(o)[0] == 1 for o in qnn.graph.output)
    inits = {i.name: i for i in qnn.graph.initializer}
    act_zp = [inits[n.input[2]] for n in qnn.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image"]
    assert act_zp and act_zp[0].data_type == TensorProto.UINT16


def test_dynamic_int8_options(exported) -> None:
    from dmsbuild.config import DynamicQuantConfig
    from dmsbuild.convert.quantize import quantize_dynamic_int8

    proj, out, _ = exported
    quantize_dynamic_int8(out / "fp32.onnx", out / "dyn.onnx", DynamicQuantConfig(per_channel=True, reduce_range=True))
    ops = {n.op_type for n in _onnx(out / "dyn.onnx").graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def test_metrics_detect_a_wrong_class() -> None:
    from dmsbuild.convert.evaluate import head_metrics

    ref = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    same = head_metrics(ref, ref.copy(), classification=True)
    assert same["top1_agreement"] == 1.0 and same["max_abs_diff"] == 0 and same["psnr_db"] is None
    off = ref.copy()
    off[0] = [0.0, 2.0]
    m = head_metrics(ref, off, classification=True)
    assert m["top1_agreement"] == 0.75 and m["max_abs_diff"] == 2.0 and m["cosine"] < 1.0 and m["psnr_db"] > 0


@pytest.mark.slow
def test_dynamo_exporter_records_opset_18(exported, tmp_path: Path) -> None:
    from dmsbuild.convert.export import export_model

    proj, _, _ = exported
    proj.export.exporter = "dynamo"
    proj.export.opset = 18
    try:
        info = export_model(proj, tmp_path / "fp32.onnx", tmp_path / "fp32.json")
    finally:
        proj.export.exporter = "torchscript"
        proj.export.opset = 17
    side = json.loads((tmp_path / "fp32.json").read_text())
    assert info["exporter"] == side["exporter"] == "dynamo" and side["opset"] == 18
    assert [i["shape"][0] for i in side["inputs"]] == ["batch"]
