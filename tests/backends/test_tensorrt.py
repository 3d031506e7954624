"""TensorRT backend: exact trtexec argv, parsing of genuine trtexec output, engine cache, the trtexec double."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.backends import tensorrt as trt_backend
from dmsbuild.backends.tensorrt import EngineCache, EngineKey
from dmsbuild.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "dmsbuild" / "doubles" / "fixtures"
DOUBLE = ROOT / "dmsbuild" / "doubles" / "trtexec"


def opts(**kw) -> trt_backend.TensorRTOptions:
    return trt_backend.load_options(kw, "targets/orin.toml")


# ---------------------------------------------------------------- argv
def test_build_argv_fp16_exact():
    assert trt_backend.build_argv("/opt/dmsbuild/releases/r/models/fp16.onnx", "/opt/dmsbuild/engines/fp16.engine", "fp16",
                                  opts(workspace_mb=2048), timing_cache="/opt/dmsbuild/engines/timing.cache") == [
        "/usr/src/tensorrt/bin/trtexec", "--onnx=/opt/dmsbuild/releases/r/models/fp16.onnx",
        "--saveEngine=/opt/dmsbuild/engines/fp16.engine", "--fp16", "--memPoolSize=workspace:2048M",
        "--timingCacheFile=/opt/dmsbuild/engines/timing.cache", "--skipInference"]


def test_build_argv_int8_qdq_no_timing_cache():
    argv = trt_backend.build_argv("m.onnx", "m.engine", "int8-qdq", opts(timing_cache=False, builder_optimization_level=5,
                                                                         trtexec="trtexec"), timing_cache="t.cache")
    assert argv == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--int8", "--fp16",
                    "--memPoolSize=workspace:1024M", "--builderOptimizationLevel=5", "--skipInference"]
    assert not any(a.startswith("--calib") or a == "--workspace" for a in argv)


def test_build_argv_rejects_other_precisions():
    with pytest.raises(UserError, match="precision 'int8-dynamic' is not built by the TensorRT backend"):
        trt_backend.build_argv("m.onnx", "m.engine", "int8-dynamic", opts())


def test_bench_argv_exact():
    assert trt_backend.bench_argv("e.engine", opts(), iterations=100, times_json="t.json", profile_json="p.json") == [
        "/usr/src/tensorrt/bin/trtexec", "--loadEngine=e.engine", "--warmUp=200", "--iterations=100", "--duration=0",
        "--avgRuns=10", "--percentile=90,95,99", "--exportTimes=t.json", "--useSpinWait",
        "--exportProfile=p.json", "--separateProfileRun"]


@pytest.mark.parametrize("table, message", [
    ({"workspace": 1024}, "unknown field 'backend.workspace'"),
    ({"workspace_mb": 0}, "field 'backend.workspace_mb' is 0"),
    ({"builder_optimization_level": 9}, "field 'backend.builder_optimization_level' is 9"),
    ({"percentiles": [90, 101]}, "field 'backend.percentiles'"),
    ({"trtexec": "trtexec; rm -rf /"}, "field 'backend.trtexec'"),
])
def test_options_rejected(table, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        trt_backend.load_options(table, "targets/orin.toml")


def test_orin_profile_options():
    from dmsbuild.config import load_target

    prof = load_target(ROOT, "orin")
    o = trt_backend.load_options(prof.backend, str(prof.source))
    assert (o.workspace_mb, o.timing_cache) == (1024, True)


# ---------------------------------------------------------------- parsing genuine output
def test_parse_tensorrt_10_summary():
    s = trt_backend.parse_trtexec_output((FIX / "tensorrt-4177-summary.log").read_text())
    assert s["throughput_qps"] == 130.298
    assert s["metrics"]["latency"] == {"min": 5.38672, "max": 13.3664, "mean": 7.60628, "median": 7.16092,
                                       "p90": 10.2996, "p95": 10.8698, "p99": 12.9675}
    assert s["metrics"]["compute"]["median"] == 7.14139
    assert s["metrics"]["h2d"]["p95"] == 0.0270996
    assert s["metrics"]["d2h"]["max"] == 0.110596
    assert s["metrics"]["enqueue"]["p99"] == 14.1848
    assert s["host_walltime_s"] == 3.00082 and s["gpu_compute_total_s"] == 2.96536


def test_parse_summary_with_p99_only_and_warnings():
    s = trt_backend.parse_trtexec_output((FIX / "yolov7-329-summary.log").read_text())
    assert s["metrics"]["latency"] == {"min": 1.3476, "max": 1.5657, "mean": 1.38629, "median": 1.38037, "p99": 1.55853}
    assert s["metrics"]["h2d"]["mean"] == 0.0
    assert s["warnings"] == ["GPU compute time is unstable, with coefficient of variance = 2.10486%."]


def test_parse_versions_device_and_pass_fail():
    orin = trt_backend.parse_trtexec_output((FIX / "meta-tegra-2243-orin-device.log").read_text())
    assert (orin["trt_version"], orin["compute_capability"], orin["device"]) == ("10.16.2", "8.7", "Orin")
    hdr = trt_backend.parse_trtexec_output((FIX / "foundationstereo-90-orin-nx-header.log").read_text())
    assert hdr["trt_version"] == "10.3.0" and hdr["passed"] is None
    tail = trt_backend.parse_trtexec_output((FIX / "sdg-pallet-4-tail.log").read_text())
    assert tail["passed"] is True and tail["trt_version"] == "8.5.3"
    assert tail["metrics"]["compute"]["p90"] == 1.69373
    failed = trt_backend.parse_trtexec_output("&&&& FAILED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=x")
    assert failed["passed"] is False


def test_version_tags():
    assert trt_backend.trt_version_from_tag("100300") == "10.3.0"
    assert trt_backend.trt_version_from_tag("101300") == "10.13.0"
    assert trt_backend.trt_version_from_tag("8503") == "8.5.3"
    assert trt_backend.trt_version_from_tag("8601") == "8.6.1"


def test_export_times_drops_warmup():
    t = trt_backend.parse_export_times((FIX / "export-times-sample.json").read_text(), warmup_ms=200)
    assert t["compute"] == [2.0, 2.2, 2.4, 2.1, 2.6]
    assert t["latency"] == pytest.approx([2.05, 2.27, 2.48, 2.15, 2.68])
    assert t["warmup_dropped"] == [2.0]
    assert t["enqueue"] == pytest.approx([0.3] * 5)
    everything = trt_backend.parse_export_times((FIX / "export-times-sample.json").read_text())
    assert len(everything["latency"]) == 7


def test_export_times_bad_json():
    with pytest.raises(UserError, match="not JSON"):
        trt_backend.parse_export_times("[{")


def test_result_from_summary_only():
    res = trt_backend.result_from_trtexec((FIX / "ptlflow-65-summary.log").read_text(), None, artifact="fp16",
                                          precision="fp16", sha256="ab")
    assert res["runtime"] == "tensorrt" and res["error"] is None
    assert res["latency_ms"]["median"] == 30.7585 and res["latency_ms"]["p95"] == 30.8396
    assert res["gpu"]["compute_ms"]["mean"] == 30.3322
    assert res["gpu"]["h2d_ms"]["p99"] == 0.255188 and res["gpu"]["d2h_ms"]["min"] == 0.0695801
    assert res["throughput_ips"] == 32.7261
    assert res["samples_ms"] == []


def test_result_from_export_times_prefers_raw_samples():
    res = trt_backend.result_from_trtexec((FIX / "tensorrt-4177-summary.log").read_text(),
                                          (FIX / "export-times-sample.json").read_text(),
                                          artifact="int8-qdq", precision="int8-qdq", warmup_ms=200)
    assert res["samples_ms"] == pytest.approx([2.05, 2.27, 2.48, 2.15, 2.68])
    assert res["latency_ms"]["median"] == pytest.approx(2.27)
    assert res["latency_ms"]["max"] == pytest.approx(2.68)
    assert res["gpu"]["compute_ms"]["min"] == 2.0
    assert res["iterations"] == 5 and res["warmup"] == 2
    assert set(res["latency_ms"]) == {"min", "mean", "median", "p90", "p95", "p99", "max", "std"}


def test_result_without_summary_is_an_error():
    res = trt_backend.result_from_trtexec("[I] nothing here", None, artifact="fp16", precision="fp16")
    assert res["latency_ms"] is None and res["error"] == "trtexec printed no performance summary"


# ---------------------------------------------------------------- cache
SHA = "a" * 64


def test_cache_key_components():
    base = EngineKey(SHA, "fp16", "10.3.0", "8.7")
    assert base.digest == EngineKey(SHA, "fp16", "10.3.0.30", "8.7").digest  # build number ignored
    others = [EngineKey("b" * 64, "fp16", "10.3.0", "8.7"), EngineKey(SHA, "int8-qdq", "10.3.0", "8.7"),
              EngineKey(SHA, "fp16", "10.4.0", "8.7"), EngineKey(SHA, "fp16", "10.3.0", "8.6")]
    assert len({base.digest, *(k.digest for k in others)}) == 5


def test_cache_roundtrip_and_tamper(tmp_path):
    cache = EngineCache(tmp_path / "cache")
    key = EngineKey(SHA, "fp16", "10.3.0", "8.7")
    assert cache.get(key) is None
    eng = tmp_path / "e.engine"
    eng.write_bytes(b"engine-bytes")
    stored = cache.put(key, eng, board="orin-01")
    assert cache.get(key) == stored and stored.read_bytes() == b"engine-bytes"
    meta = json.loads(stored.with_suffix(".json").read_text())
    assert meta["board"] == "orin-01" and meta["compute_capability"] == "8.7"
    assert cache.get(EngineKey(SHA, "fp16", "10.3.0", "7.2")) is None
    stored.write_bytes(b"corrupted")
    assert cache.get(key) is None


def test_cache_key_rejects_bad_versions():
    with pytest.raises(UserError, match="not understood"):
        EngineKey(SHA, "fp16", "unknown", "8.7")


# ---------------------------------------------------------------- the double, driven by the argv we build
def run_double(argv, tmp_path, **env):
    import os

    e = dict(os.environ, TRTEXEC_DOUBLE_ARGV_LOG=str(tmp_path / "argv.jsonl"), **env)
    return subprocess.run([sys.executable, str(DOUBLE), *argv[1:]], capture_output=True, text=True, env=e)


def test_double_build_then_bench(tmp_path):
    from tests.byom import classifier

    onnx = classifier(tmp_path / "m.onnx")  # a real (static-shape) model: the double parses it, as trtexec does
    engine, cache = tmp_path / "m.engine", tmp_path / "timing.cache"
    argv = trt_backend.build_argv(onnx, engine, "int8-qdq", opts(trtexec="trtexec"), timing_cache=cache)
    p = run_double(argv, tmp_path)
    assert p.returncode == 0, p.stdout
    assert engine.is_file() and cache.is_file()
    built = trt_backend.parse_trtexec_output(p.stdout)
    assert built["passed"] is True and built["trt_version"] == "10.3.0" and built["compute_capability"] == "8.7"
    assert json.loads((tmp_path / "argv.jsonl").read_text().splitlines()[0]) == argv[1:]

    times, prof = tmp_path / "times.json", tmp_path / "profile.json"
    bargv = trt_backend.bench_argv(engine, opts(trtexec="trtexec"), iterations=20, times_json=times, profile_json=prof)
    b = run_double(bargv, tmp_path)
    assert b.returncode == 0, b.stdout
    res = trt_backend.result_from_trtexec(b.stdout, times.read_text(), artifact="int8-qdq", precision="int8-qdq",
                                          warmup_ms=200, iterations=20)
    assert len(res["samples_ms"]) == 20 and res["warmup"] == 2
    # the replayed fixture's GPU compute range bounds the generated trace
    assert 5.34595 <= res["gpu"]["compute_ms"]["min"] <= res["gpu"]["compute_ms"]["max"] <= 13.3388
    assert res["throughput_ips"] == 130.298
    assert json.loads(prof.read_text())[0] == {"count": 20}


@pytest.mark.parametrize("bad, message", [
    (["--onnx=X", "--saveEngine=e", "--workspace=1024"], "--workspace was removed in TensorRT 10"),
    (["--onnx=X", "--saveEngine=e", "--memPoolSize=workspace=1024"], "Invalid memPoolSize spec"),
    (["--onnx=X", "--saveEngine=e", "--calib=c.cache", "--int8"], "Unknown option: --calib"),
    (["--onnx=X", "--fp16=1"], "takes no value"),
    (["--loadEngine=E", "--iterations=-1"], "Invalid value for --iterations"),
    (["--loadEngine=E", "--percentile=90,150"], "Percentile 150 is not in [0,100]"),
    (["--loadEngine=E", "--fp16"], "--fp16 is a build option"),
    (["--onnx=missing.onnx"], "Cannot find model file"),
    (["--onnx=X", "--loadEngine=E"], "Exactly one of --onnx or --loadEngine"),
    (["--onnx=X", "--bogus"], "Unknown option: --bogus"),
    (["--loadEngine=X"], "Error opening engine file"),
])
def test_double_rejects_bad_arguments(bad, message, tmp_path):
    x = tmp_path / "x.onnx"
    x.write_bytes(b"onnx")
    e = tmp_path / "e.engine"
    e.write_bytes(b"TRTEXEC-DOUBLE-ENGINE\n{}")
    argv = ["trtexec"] + [a.replace("=X", f"={x}").replace("=E", f"={e}").replace("--saveEngine=e", f"--saveEngine={tmp_path}/o.engine") for a in bad]
    p = run_double(argv, tmp_path)
    assert p.returncode == 1
    assert message in p.stdout
    assert "&&&& FAILED TensorRT.trtexec" in p.stdout


# ---------------------------------------------------------------- board runner and host API
def test_runner_metrics():
    from dmsbuild.board.runner import trt_runner

    ref = {"eye_state": np.array([[2.0, 1.0], [0.0, 1.0]]), "head_pose": np.array([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])}
    got = {"eye_state": np.array([[1.0, 2.0], [0.0, 1.0]]), "head_pose": ref["head_pose"].copy()}
    v = trt_runner.verify_summary(ref, got, ["eye_state"])
    assert v["samples"] == 2 and v["min_top1_agreement"] == 0.5
    # identical: no noise, so SQNR/PSNR are null (infinite); a regression head has no top-1 (runner/metrics.py)
    assert v["heads"]["head_pose"]["max_abs_diff"] == 0.0 and v["heads"]["head_pose"]["psnr_db"] is None
    assert v["heads"]["head_pose"]["sqnr_db"] is None and v["heads"]["head_pose"]["top1_agreement"] is None
    assert trt_backend.runner_argv("python3", "runner/trt_runner.py", "models/fp16.engine", "verify/reference.npz",
                                   samples=4, classification=["eye_state", "yawn"]) == [
        "python3", "runner/trt_runner.py", "--engine", "models/fp16.engine", "--reference", "verify/reference.npz",
        "--samples", "4", "--classification", "eye_state", "--classification", "yawn"]


def test_host_build_without_tensorrt_is_a_user_error(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="tensorrt: the Python package is not installed"):
            trt_backend.build_engine_on_host(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16", opts())
    else:
        pytest.skip("tensorrt is installed here; the GPU test below covers the host build")


def test_host_build_with_tensorrt(tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT Python package not installed (no NVIDIA GPU on this host)")
    from tests.backends.models import export_tiny

    onnx = export_tiny(tmp_path / "tiny.onnx", dynamic_batch=False)
    info = trt_backend.build_engine_on_host(onnx, tmp_path / "tiny.engine", "fp16", opts(),
                                            timing_cache=tmp_path / "timing.cache")
    assert (tmp_path / "tiny.engine").stat().st_size > 0 and (tmp_path / "timing.cache").is_file()
    assert info["trt_version"] == trt.__version__
    from dmsbuild.board.runner import trt_runner

    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    out = trt_runner.run_engine(str(tmp_path / "tiny.engine"), x)
    assert out["eye_state"].shape == (2, 2)
    assert set(out) == {"eye_state", "yawn", "activity", "head_pose"}
