"""QNN backend: real onnxruntime-qnn compiles, real placement counts, the HTP simulator runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnx
from onnx import TensorProto, helper

from dmsbuild.backends import qnn
from dmsbuild.errors import UserError

from tests.backends.models import calibration_inputs

pytestmark = pytest.mark.usefixtures("onnxruntime_qnn")  # tests/conftest.py: fails where it could be installed


def opts(**kw) -> qnn.QnnOptions:
    return qnn.load_options(kw, "targets/test.toml")


def test_context_binary_uint16_all_nodes_on_htp(tiny_models, tmp_path):
    out = tmp_path / "int8-qdq.qnn.onnx"
    report = qnn.build_context_binary(tiny_models["qdq16"], out, opts())
    src_nodes = len(onnx.load(str(tiny_models["qdq16"])).graph.node)
    assert report.files == ["int8-qdq.qnn.onnx", "int8-qdq.qnn_qnn.bin"]
    assert all((tmp_path / f).is_file() for f in report.files)
    assert (tmp_path / report.files[1]).stat().st_size > 10_000
    assert report.partitions == 1
    assert report.fallback_ops == {} and report.fallback_nodes == []
    assert report.total_nodes == src_nodes
    # input Q and the three classification heads' output DQ stay on CPU by design
    assert report.io_nodes == report.cpu_nodes == 4
    assert report.qnn_nodes == src_nodes - 4
    assert report.activations == "uint16"
    ctx = onnx.load(str(out))
    assert sum(n.op_type == "EPContext" for n in ctx.graph.node) == 1
    # no temporary folder left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(report.files)


def test_rebuild_over_existing_files(tiny_models, tmp_path):
    """The EP refuses to overwrite a context file; the build writes elsewhere and renames."""
    out = tmp_path / "m.onnx"
    first = qnn.build_context_binary(tiny_models["qdq16"], out, opts())
    bin_path = tmp_path / first.files[1]
    bin_path.write_bytes(b"stale")
    second = qnn.build_context_binary(tiny_models["qdq16"], out, opts())
    assert second.files == first.files
    assert bin_path.stat().st_size > 10_000


def test_dynamic_batch_is_fixed_before_compiling(tiny_models, tmp_path):
    src = onnx.load(str(tiny_models["qdq8-dynamic"]))
    assert src.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    report = qnn.build_context_binary(tiny_models["qdq8-dynamic"], tmp_path / "u8.onnx", opts())
    assert report.partitions == 1 and report.qnn_nodes > 100
    assert report.activations == "uint8"
    ctx = onnx.load(str(tmp_path / "u8.onnx"))
    assert [d.dim_value for d in ctx.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 224, 224]


def test_dynamic_batch_refused_when_fixing_is_off(tiny_models, tmp_path):
    with pytest.raises(UserError) as exc:
        qnn.build_context_binary(tiny_models["qdq8-dynamic"], tmp_path / "u8.onnx", opts(fixed_batch=0))
    first = str(exc.value).splitlines()[0]
    assert str(tiny_models["qdq8-dynamic"]) in first and "dynamic shape" in first
    assert not (tmp_path / "u8.onnx").exists()


def test_dynamic_spatial_axis_refused(tmp_path):
    model = _qdq_graph("Relu", tmp_path / "m.onnx", shape=[1, 4, "h", 8])
    with pytest.raises(UserError, match=r"input 'x' has the dynamic shape \[1, 4, 'h', 8\]"):
        qnn.build_context_binary(model, tmp_path / "ctx.onnx", opts())


def _qdq_graph(op: str, path: Path, shape=(1, 4, 8, 8)) -> Path:
    """x -> Q/DQ -> Relu -> Q/DQ -> <op> -> Q/DQ -> Relu -> Q/DQ -> y (uint8 activations)."""
    def qdq(tag, inp, out):
        return [helper.make_node("QuantizeLinear", [inp, "s", "z"], [tag + "_q"], name=tag + "_Q"),
                helper.make_node("DequantizeLinear", [tag + "_q", "s", "z"], [out], name=tag + "_DQ")]
    nodes = (qdq("a", "x", "xa") + [helper.make_node("Relu", ["xa"], ["r"], name="relu")] + qdq("b", "r", "rb")
             + [helper.make_node(op, ["rb"], ["y0"], name="odd")] + qdq("c", "y0", "y1")
             + [helper.make_node("Relu", ["y1"], ["y2"], name="relu2")] + qdq("d", "y2", "y"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("s", TensorProto.FLOAT, [], [0.01]),
                     helper.make_tensor("z", TensorProto.UINT8, [], [128])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_cpu_fallback_over_threshold_fails_with_the_ops(tmp_path):
    model = _qdq_graph("Hardmax", tmp_path / "hardmax.onnx")
    with pytest.raises(UserError) as exc:
        qnn.build_context_binary(model, tmp_path / "ctx.onnx", opts(max_cpu_fallback_nodes=0), where="qcs8255/int8-qdq")
    first = str(exc.value).splitlines()[0]
    assert first.startswith("qcs8255/int8-qdq: 1 node(s) fall back to the CPU")
    assert "Hardmax x1" in first and "odd" in first


def test_cpu_fallback_within_threshold_is_reported(tmp_path):
    model = _qdq_graph("Hardmax", tmp_path / "hardmax.onnx")
    report = qnn.build_context_binary(model, tmp_path / "ctx.onnx", opts(max_cpu_fallback_nodes=1))
    assert report.fallback_ops == {"Hardmax": 1}
    assert report.fallback_nodes == ["odd"]
    assert report.partitions == 2
    assert report.total_nodes == 11 and report.cpu_nodes == 3 and report.io_nodes == 2
    assert report.qnn_nodes == 8
    assert "Hardmax x1" in report.summary()
    assert report.to_dict()["qnn_fraction"] == pytest.approx(8 / 11, abs=1e-4)


def test_float_model_refused(tiny_models, tmp_path):
    with pytest.raises(UserError, match="not a QDQ model"):
        qnn.build_context_binary(tiny_models["fp32"], tmp_path / "o.onnx", opts())


def test_corrupt_model_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff")
    with pytest.raises(UserError, match="not a readable ONNX file"):
        qnn.build_context_binary(bad, tmp_path / "o.onnx", opts())


def test_missing_input_model(tmp_path):
    with pytest.raises(UserError, match="QDQ model not found"):
        qnn.build_context_binary(tmp_path / "nope.onnx", tmp_path / "o.onnx", opts())


@pytest.mark.parametrize("table, message", [
    ({"htp_arch": 72}, "field 'backend.htp_arch' is 72"),
    ({"nodes": 3}, "unknown field 'backend.nodes'"),
    ({"max_cpu_fallback_nodes": "3"}, "field 'backend.max_cpu_fallback_nodes' is '3'"),
    ({"performance_mode": "turbo"}, "field 'backend.performance_mode' is 'turbo'"),
    ({"snpe": {"htp_soc": "x"}}, "unknown field 'backend.snpe.htp_soc'"),
])
def test_options_rejected(table, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        qnn.load_options(table, "targets/qcs8255.toml")


def test_profile_options_of_the_qcs8255_target():
    from dmsbuild.config import load_target

    prof = load_target(Path(__file__).resolve().parents[2], "qcs8255")
    o = qnn.load_options(prof.backend, str(prof.source))
    assert (o.htp_arch, o.soc_model, o.max_cpu_fallback_nodes) == (73, 0, 0)
    po = qnn.provider_options(o)
    assert po["htp_arch"] == "73" and po["backend_path"].endswith("libQnnHtp.so")
    assert qnn.board_provider_options(o)["backend_type"] == "htp"


def test_simulator_matches_cpu_qdq(tiny_models, tmp_path):
    """One inference on the HTP simulator (~1 s) agrees with ORT CPU running the same QDQ model."""
    import onnxruntime as ort

    out = tmp_path / "ctx.onnx"
    qnn.build_context_binary(tiny_models["qdq16"], out, opts())
    xs = calibration_inputs(1, seed=7)
    run = qnn.run_on_simulator(out, xs, opts())
    assert run.output_names == ["eye_state", "yawn", "activity", "head_pose"]
    cpu = ort.InferenceSession(str(tiny_models["qdq16"]), providers=["CPUExecutionProvider"])
    ref = [cpu.run(None, {"image": x}) for x in xs]
    heads = qnn.compare_outputs(ref, run.outputs, run.output_names, ["eye_state", "yawn", "activity"])
    for name, m in heads.items():
        assert m["cosine"] > 0.99, (name, m)
        assert m["max_rel_to_range"] < 0.05, (name, m)
    assert len(run.samples_ms) == 1 and run.samples_ms[0] > 0


def test_compare_outputs_detects_disagreement():
    ref = [[np.array([[2.0, 1.0]])], [[np.array([[0.0, 1.0]])][0]]]
    got = [[np.array([[1.0, 2.0]])], [np.array([[0.0, 1.0]])]]
    heads = qnn.compare_outputs(ref, got, ["eye_state"], ["eye_state"])
    assert heads["eye_state"]["top1_agreement"] == 0.5
    assert heads["eye_state"]["max_abs_diff"] == 1.0


def test_board_session_and_artifact_fields(tiny_models, tmp_path):
    """The board's runner opens the context model with the manifest's providers and provider options (the
    same plugin-EP set-up the host build uses, dms_bench.plugin_ep_devices)."""
    import onnxruntime as ort

    from dmsbuild.board.runner.dms_bench import create_session

    out = tmp_path / "models" / "int8-qdq.qnn.onnx"
    report = qnn.build_context_binary(tiny_models["qdq16"], out, opts())
    fields = qnn.artifact_fields(out, report, opts(), tmp_path)
    assert fields["kind"] == "qnn-context" and fields["portable"] is False
    assert fields["path"] == "models/int8-qdq.qnn.onnx" and fields["extra_files"] == ["models/int8-qdq.qnn_qnn.bin"]
    sess = create_session(ort, str(out), ["QNNExecutionProvider", "CPUExecutionProvider"],
                          [fields["provider_options"][0], {}], 1)
    assert sess.get_providers()[0] == "QNNExecutionProvider"
    assert [o.name for o in sess.get_outputs()] == ["eye_state", "yawn", "activity", "head_pose"]
