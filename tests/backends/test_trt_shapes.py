"""Dynamic input shapes for TensorRT (issue 24 item 3): the host decides the optimization profile, trtexec's
command lines carry it (--minShapes/--optShapes/--maxShapes to build, --shapes to benchmark and check), the
engine cache key includes it, and the trtexec double checks the flags as trtexec does (TensorRT 10 help,
samples/common/sampleOptions.cpp; sampleEngines.cpp for the static-model and no-shapes cases)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.backends import tensorrt as trt
from dmsbuild.backends import trt_shapes
from dmsbuild.errors import UserError
from tests.byom import classifier

DOUBLE = Path(__file__).resolve().parents[2] / "dmsbuild" / "doubles" / "trtexec"
OPTS = trt.TensorRTOptions(trtexec="trtexec")
DYN = {"x": ["N", 3, "H", "W"]}


def _static(path: Path) -> Path:
    """The model with its batch axis fixed at 1: no dynamic dim left."""
    import onnx

    m = onnx.load(str(path))
    for v in [*m.graph.input, *m.graph.output]:
        v.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(m, str(path))
    return path


def run_double(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DOUBLE), *argv[1:]], capture_output=True, text=True)


def test_profile_of_a_dynamic_model_is_the_configured_shape():
    prof = trt_shapes.profile_for(DYN, {"x": [1, 3, 64, 96]})
    assert prof == {"x": {"min": [1, 3, 64, 96], "opt": [1, 3, 64, 96], "max": [1, 3, 64, 96]}}
    assert trt_shapes.profile_for({"x": [1, 3, 32, 32]}, {"x": [1, 3, 32, 32]}) == {}  # static: no shapes at all


def test_a_range_and_its_errors():
    prof = trt_shapes.profile_for(DYN, {"x": [1, 3, 64, 96]}, min_shape=[1, 3, 32, 32], max_shape=[4, 3, 128, 128])
    assert prof["x"]["min"] == [1, 3, 32, 32] and prof["x"]["max"] == [4, 3, 128, 128]
    with pytest.raises(UserError, match=r"dim 1 of input 'x' is fixed at 3"):
        trt_shapes.profile_for(DYN, {"x": [1, 3, 64, 96]}, max_shape=[1, 4, 64, 96])
    with pytest.raises(UserError, match=r"min \[1, 3, 128, 128\] <= opt \[1, 3, 64, 96\]"):
        trt_shapes.profile_for(DYN, {"x": [1, 3, 64, 96]}, min_shape=[1, 3, 128, 128])
    with pytest.raises(UserError, match=r"'backend.max_shape' is set, but the model has no dynamic dims"):
        trt_shapes.profile_for({"x": [1, 3, 64, 96]}, {"x": [1, 3, 64, 96]}, max_shape=[1, 3, 64, 96])


def test_a_dynamic_input_without_a_configured_shape_is_refused_in_one_line():
    with pytest.raises(UserError) as e:
        trt_shapes.profile_for({**DYN, "state": [1, "T", 128]}, {"x": [1, 3, 64, 64]}, where="targets/orin.toml",
                               artifact="fp16")
    assert e.value.message.startswith("targets/orin.toml: artifact fp16: the model's input 'state' has dynamic dims ['T']")
    assert "\n" not in e.value.message


def test_argv_carry_the_profile():
    prof = trt_shapes.profile_for({"data:0": ["N", 3, "H", "W"]}, {"data:0": [1, 3, 48, 80]})
    b = trt.build_argv("m.onnx", "m.engine", "fp16", OPTS, shapes=prof)
    assert [a for a in b if "Shapes" in a] == ["--minShapes='data:0':1x3x48x80", "--optShapes='data:0':1x3x48x80",
                                                "--maxShapes='data:0':1x3x48x80"]
    assert "--shapes='data:0':1x3x48x80" in trt.bench_argv("m.engine", OPTS, iterations=5, times_json="t.json", shapes=prof)
    assert "--shapes='data:0':1x3x48x80" in trt.output_argv("m.engine", OPTS, inputs={"data:0": "in.raw"},
                                                             output_json="o.json", shapes=prof)
    static = trt.build_argv("m.onnx", "m.engine", "fp16", OPTS, shapes={})
    assert not any("Shapes" in a or "--shapes" in a for a in static)


def test_the_engine_cache_key_includes_the_profile():
    base = dict(onnx_sha256="a" * 64, precision="fp16", trt_version="10.3.0", compute_capability="8.7")
    small = trt.EngineKey(**base, shapes=trt_shapes.key(trt_shapes.profile_for(DYN, {"x": [1, 3, 64, 64]})))
    large = trt.EngineKey(**base, shapes=trt_shapes.key(trt_shapes.profile_for(DYN, {"x": [1, 3, 96, 96]})))
    assert small.digest != large.digest != trt.EngineKey(**base).digest


def test_double_builds_benchmarks_and_checks_at_the_configured_shape(tmp_path):
    onnx = classifier(tmp_path / "m.onnx", hw=None)  # [N, 3, H, W]
    engine = tmp_path / "m.engine"
    prof = trt_shapes.profile_for(trt_shapes.model_inputs(onnx), {"x": [1, 3, 40, 24]})
    p = run_double(trt.build_argv(onnx, engine, "fp32", OPTS, shapes=prof))
    assert p.returncode == 0, p.stdout
    assert "Set shape of input tensor x for optimization profile 0 to: MIN=[1, 3, 40, 24]" in p.stdout
    x = np.random.default_rng(0).normal(size=(1, 3, 40, 24)).astype(np.float32)
    (tmp_path / "in.raw").write_bytes(x.tobytes())
    out = tmp_path / "out.json"
    r = run_double(trt.output_argv(engine, OPTS, inputs={"x": str(tmp_path / "in.raw")}, output_json=out, shapes=prof))
    assert r.returncode == 0, r.stdout
    import onnxruntime as ort

    want = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = trt.parse_export_output(out.read_text())["logits"]
    assert np.allclose(got, want, atol=1e-6)
    # a shape outside the engine's profile, and a file that does not hold the configured shape, fail like trtexec
    other = trt_shapes.profile_for(trt_shapes.model_inputs(onnx), {"x": [1, 3, 48, 24]})
    r = run_double(trt.output_argv(engine, OPTS, inputs={"x": str(tmp_path / "in.raw")}, output_json=out, shapes=other))
    assert r.returncode == 1 and "out of the engine's profile" in r.stdout
    b = run_double(trt.bench_argv(engine, OPTS, iterations=3, times_json=tmp_path / "t.json", shapes=prof))
    assert b.returncode == 0, b.stdout


def test_double_without_shapes_does_what_trtexec_does(tmp_path):
    dyn = classifier(tmp_path / "dyn.onnx", hw=None)
    p = run_double(trt.build_argv(dyn, tmp_path / "d.engine", "fp32", OPTS))
    assert p.returncode == 0
    assert "Dynamic dimensions required for input: x, but no shapes were provided. Automatically overriding shape to: 1x3x1x1" in p.stdout
    static = _static(classifier(tmp_path / "static.onnx"))
    prof = {"x": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [1, 3, 32, 32]}}
    s = run_double(trt.build_argv(static, tmp_path / "s.engine", "fp32", OPTS, shapes=prof))
    assert s.returncode == 1 and "Static model does not take explicit shapes" in s.stdout


@pytest.mark.parametrize("flags, message", [
    (["--minShapes=x:1x3x8x8"], "All three of min, opt and max shapes"),
    (["--optShapes=x:1x3x8"], "does not fit the network's input"),
    (["--optShapes=y:1x3x8x8"], "Cannot find input tensor with name y"),
    (["--optShapes=x:1x3xAx8"], "Invalid --optShapes spec"),
    (["--minShapes=x:1x3x9x9", "--optShapes=x:1x3x8x8", "--maxShapes=x:1x3x9x9"], "Required optimization profile is invalid"),
])
def test_double_checks_the_shape_flags(flags, message, tmp_path):
    onnx = classifier(tmp_path / "m.onnx", hw=None)
    p = run_double(["trtexec", f"--onnx={onnx}", f"--saveEngine={tmp_path / 'e.engine'}", *flags, "--skipInference"])
    assert p.returncode == 1 and message in p.stdout, p.stdout


def test_sidecar_roundtrip(tmp_path):
    prof = trt_shapes.profile_for(DYN, {"x": [1, 3, 64, 64]})
    trt_shapes.write_sidecar(tmp_path / "fp16.trt.shapes.json", tmp_path / "fp16.trt.onnx", prof)
    assert trt_shapes.parse_sidecar((tmp_path / "fp16.trt.shapes.json").read_text(), "x") == prof
    assert trt_shapes.parse_sidecar(None, "x") == {}
    with pytest.raises(UserError, match="not a TensorRT shapes file"):
        trt_shapes.parse_sidecar(json.dumps({"profile": [1]}), "board: artifact 'fp16'")
