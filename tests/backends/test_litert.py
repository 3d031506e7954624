"""LiteRT and Edge TPU backends: plans, the edgetpu_compiler report and placement gate, the compiler double,
and (with the `litert` extra) a real conversion, full-integer quantization and the board runner on .tflite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.backends import edgetpu, get_backend, litert
from dmsbuild.board.runner import litert_runner
from dmsbuild.config import ProjectConfig, TargetProfile, load_dataclass
from dmsbuild.errors import UserError

DOUBLE = Path(__file__).resolve().parents[2] / "dmsbuild" / "doubles" / "edgetpu_compiler"
HAVE_LITERT = all(__import__("importlib").util.find_spec(m) for m in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"))
needs_extra = pytest.mark.skipif(not HAVE_LITERT, reason="the litert extra is not installed (pip install 'dmsbuild[litert]')")

# the layout of `edgetpu_compiler -s` (compiler 16), written for these tests after published outputs
REPORT = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 812 ms.

Input model: int8.tflite
Input size: 1.10MiB
Output model: int8_edgetpu.tflite
Output size: 1.31MiB
On-chip memory used for caching model parameters: 1.05MiB
On-chip memory remaining for caching model parameters: 6.70MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 40
Operation log: int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 36
Number of operations that will run on CPU: 4

Operator                       Count      Status

CONV_2D                        30         Mapped to Edge TPU
MEAN                           6          Mapped to Edge TPU
TRANSPOSE                      1          Operation not supported
FULLY_CONNECTED                3          More than one subgraph is not supported
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def _profile(data: dict) -> TargetProfile:
    prof = load_dataclass(TargetProfile, {"name": "coral", **data}, "targets/coral.toml")
    prof.source = Path("targets/coral.toml")
    return prof


def _project(tmp_path: Path) -> ProjectConfig:
    project = ProjectConfig()
    project.root = tmp_path
    return project


# --------------------------------------------------------------------------
# plans and options (no converter needed)
# --------------------------------------------------------------------------
def test_registry_names_both_runtimes() -> None:
    assert get_backend("litert") is litert.BACKEND and get_backend("edgetpu") is edgetpu.BACKEND
    assert not litert.BACKEND.host_driven and not edgetpu.BACKEND.host_driven  # the release's runner runs them
    # a litert target itself is not tuned (docs/tune.md, "LiteRT candidates": LiteRT is searched beside ONNX Runtime)
    prof = _profile({"runtime": "litert", "precisions": ["fp32"]})
    assert litert.BACKEND.tune_space(prof) == {} and not litert.BACKEND.tune_measured
    assert not edgetpu.BACKEND.tune_measured


def test_litert_plan_one_tflite_per_precision_evaluated_itself(tmp_path: Path) -> None:
    sources = {"fp32": tmp_path / "c/fp32.onnx", "int8-qdq": tmp_path / "c/int8-qdq-k.onnx"}
    sources["fp16"] = tmp_path / "c/fp16.onnx"
    plans = litert.plan(_project(tmp_path), _profile({"runtime": "litert", "precisions": ["fp32", "fp16", "int8-qdq"]}),
                        sources)
    assert [(p.name, p.kind, p.path.name, p.runtime) for p in plans] == [
        ("fp32-tflite", "tflite", "fp32.tflite", "litert"), ("fp16-tflite", "tflite", "fp16.tflite", "litert"),
        ("int8-qdq-tflite", "tflite", "int8.tflite", "litert")]
    plans = plans[::2]
    # the gate reads the .tflite's own evaluation, not the ONNX proxy's
    assert plans[1].eval_json == plans[1].path.parent / "eval" / "int8.json" and plans[1].build is not None


def test_edgetpu_plan_compiles_the_full_integer_model(tmp_path: Path) -> None:
    sources = {"int8-qdq": tmp_path / "c/int8-qdq-k.onnx"}
    tpu, cpu = edgetpu.plan(_project(tmp_path), _profile({"runtime": "edgetpu", "precisions": ["int8-qdq"],
                                                           "backend": {"max_cpu_ops": 3}}), sources)
    assert (tpu.name, tpu.kind, tpu.path.name, tpu.runtime, tpu.portable) == (
        "int8-edgetpu", "edgetpu-tflite", "int8_edgetpu.tflite", "edgetpu", False)
    assert tpu.file_dep == [cpu.path] and cpu.name == "int8-qdq-tflite"
    assert tpu.eval_json == cpu.eval_json  # the host cannot run the compiled model: its proxy is the int8 .tflite
    assert tpu.provider_options == [{"delegate": "libedgetpu.so.1"}]


def test_onnxruntime_target_ships_tflite_next_to_onnx(tmp_path: Path) -> None:
    sources = {"fp32": tmp_path / "c/fp32.onnx", "int8-qdq": tmp_path / "c/int8-qdq-k.onnx"}
    prof = _profile({"precisions": ["fp32", "int8-qdq"], "backend": {"tflite": ["int8-qdq"]}})
    plans = get_backend("onnxruntime").plan(_project(tmp_path), prof, sources)
    assert [(p.name, p.runtime) for p in plans] == [("fp32", "onnxruntime"), ("int8-qdq", "onnxruntime"),
                                                    ("int8-qdq-tflite", "litert")]
    with pytest.raises(UserError, match=r"field 'backend.tflite' has \['fp16'\]"):
        get_backend("onnxruntime").plan(_project(tmp_path), _profile({"precisions": ["fp32"], "backend": {"tflite": ["fp16"]}}),
                                        sources)


def test_brought_onnx_without_onnx2torch_stops_in_one_line(tmp_path: Path, monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_onnx2torch(name, *a, **k):
        if name == "onnx2torch":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_onnx2torch)
    monkeypatch.setattr("importlib.import_module", lambda n: no_onnx2torch(n))
    project = _project(tmp_path)
    project.model.onnx = "models/mine.onnx"
    with pytest.raises(UserError) as err:
        litert._torch_module(project)
    assert len(str(err.value).splitlines()) == 1 and "pip install onnx2torch" in str(err.value)


@pytest.mark.parametrize("data, match", [
    ({"precisions": ["fp16"]}, r"targets/coral.toml: field 'precisions' has \['fp16'\]"),
    ({"backend": {"workspace_mb": 1}}, r"unknown field 'backend.workspace_mb' for runtime 'edgetpu'"),
    ({"backend": {"max_cpu_ops": -1}}, r"'backend.max_cpu_ops' must be >= 0"),
    ({"backend": {"max_cpu_ops": True}}, r"'backend.max_cpu_ops' must be int"),
])
def test_edgetpu_profile_errors_name_the_field(tmp_path: Path, data: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        edgetpu.plan(_project(tmp_path), _profile({"runtime": "edgetpu", "precisions": ["int8-qdq"], **data}),
                     {"int8-qdq": tmp_path / "x.onnx", "fp16": tmp_path / "y.onnx"})


# --------------------------------------------------------------------------
# the compiler: discovery, command line, report, placement gate
# --------------------------------------------------------------------------
def test_missing_compiler_is_one_line_saying_what_to_install(monkeypatch) -> None:
    monkeypatch.delenv(edgetpu.COMPILER_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError) as err:
        edgetpu.find_compiler(edgetpu.load_options({}, "targets/coral.toml"))
    text = str(err.value)
    assert len(text.splitlines()) == 1 and "apt-get install edgetpu-compiler" in text and "not on PATH" in text


def test_compiler_env_overrides_profile(monkeypatch) -> None:
    monkeypatch.setenv(edgetpu.COMPILER_ENV, str(DOUBLE))
    assert edgetpu.find_compiler(edgetpu.load_options({"compiler": "nope"}, "t")) == str(DOUBLE)
    assert edgetpu.is_double(str(DOUBLE))


def test_compile_argv() -> None:
    opts = edgetpu.load_options({"min_runtime_version": 14, "timeout_s": 60}, "t")
    assert edgetpu.compile_argv("edgetpu_compiler", Path("a/int8.tflite"), Path("o"), opts) == [
        "edgetpu_compiler", "-s", "-o", "o", "-t", "60", "-m", "14", "a/int8.tflite"]
    assert "-m" not in edgetpu.compile_argv("c", Path("m"), Path("o"), edgetpu.load_options({}, "t"))


def test_parse_report_counts_table_and_memory() -> None:
    rep = edgetpu.parse_report(REPORT)
    assert (rep.compiler_version, rep.edgetpu_ops, rep.cpu_ops, rep.total_ops, rep.subgraphs, rep.double) == (
        "16.0.384591198", 36, 4, 40, 1, False)
    assert rep.table[2] == ("TRANSPOSE", 1, "Operation not supported")
    assert [o for o, _, _ in rep.fallback] == ["TRANSPOSE", "FULLY_CONNECTED"]
    assert rep.memory["Off-chip memory used for streaming uncached model parameters"] == "0.00B"
    assert rep.to_dict()["source"] == "edgetpu_compiler"


def test_parse_report_all_mapped_has_no_count_lines() -> None:
    text = "\n".join(line for line in REPORT.splitlines()
                     if not line.startswith(("Number of operations", "TRANSPOSE", "FULLY_CONNECTED", "Model successfully")))
    rep = edgetpu.parse_report(text)
    assert (rep.edgetpu_ops, rep.cpu_ops, rep.total_ops) == (36, 0, 40)  # total from its own line, counts from the table


def test_parse_report_refuses_other_output() -> None:
    with pytest.raises(UserError, match="no 'Edge TPU Compiler version' line"):
        edgetpu.parse_report("Segmentation fault\n")


def test_placement_gate_names_the_operators_left_on_the_cpu() -> None:
    rep = edgetpu.parse_report(REPORT)
    edgetpu.check_placement(rep, 4, "targets/coral.toml: artifact int8-edgetpu")
    with pytest.raises(UserError) as err:
        edgetpu.check_placement(rep, 3, "targets/coral.toml: artifact int8-edgetpu")
    line = str(err.value).splitlines()[0]
    assert line.startswith("targets/coral.toml: artifact int8-edgetpu: 4 operations run on the CPU")
    assert "TRANSPOSE x1 (Operation not supported)" in line and "FULLY_CONNECTED x3" in line
    assert "[test double" not in line


def test_double_refuses_unknown_options_and_non_tflite(tmp_path: Path) -> None:
    run = lambda *a: subprocess.run([sys.executable, str(DOUBLE), *a], capture_output=True, text=True)  # noqa: E731
    bad = run("--fp16", "m.tflite")
    assert bad.returncode == 1 and "unknown option --fp16" in bad.stderr
    assert run("-t", "soon", "m.tflite").returncode == 1
    notflite = tmp_path / "m.tflite"
    notflite.write_bytes(b"\0" * 64)
    out = run("-s", "-o", str(tmp_path), str(notflite))
    assert out.returncode == 1 and "not a TFLite flatbuffer" in out.stdout


# --------------------------------------------------------------------------
# with the litert extra: a real conversion of the tiny model
# --------------------------------------------------------------------------
SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> dict:
    if not HAVE_LITERT:
        pytest.skip("the litert extra is not installed (pip install 'dmsbuild[litert]')")
    import litert_torch
    import torch
    from ai_edge_quantizer import quantizer, recipe

    from dmsbuild.model.dms_net import build_tiny
    from tests.backends.models import calibration_inputs, settle

    d = tmp_path_factory.mktemp("tflite")
    torch.manual_seed(0)  # the conv weights too (settle seeds only the heads): one net, not a new one per run
    model = settle(build_tiny(), SHAPE)
    fp32 = d / "fp32.tflite"
    litert_torch.convert(model, (torch.zeros(SHAPE),)).export(str(fp32))
    qt = quantizer.Quantizer(str(fp32))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    data = [{"args_0": x} for x in calibration_inputs(16, seed=3, shape=SHAPE)]
    int8 = d / "int8.tflite"
    qt.quantize(qt.calibrate({"serving_default": data}, num_threads=1)).export_model(str(int8), overwrite=True)
    x = np.stack([c[0] for c in calibration_inputs(8, seed=5, shape=SHAPE)])
    with torch.no_grad():
        outs = [model(torch.from_numpy(x[i:i + 1])) for i in range(len(x))]
    heads = [np.concatenate([o[h].numpy() for o in outs]) for h in range(len(outs[0]))]
    return {"dir": d, "fp32": fp32, "int8": int8, "x": x, "heads": heads}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@needs_extra
def test_fp32_tflite_matches_torch_head_by_head(tiny_tflite) -> None:
    model = litert_runner.TfliteModel(str(tiny_tflite["fp32"]))
    got = model.run_many(tiny_tflite["x"])
    assert [g.shape for g in got] == [h.shape for h in tiny_tflite["heads"]]  # heads in forward()'s order
    for g, h in zip(got, tiny_tflite["heads"]):
        assert np.abs(g - h).max() < 1e-3


@needs_extra
def test_full_integer_model_has_int8_io_and_tracks_fp32(tiny_tflite) -> None:
    model = litert_runner.TfliteModel(str(tiny_tflite["int8"]))
    assert model.input_dtype == np.int8 and all(np.dtype(o["dtype"]) == np.int8 for o in model.outputs)
    got = model.run_many(tiny_tflite["x"])
    assert [g.shape for g in got] == [h.shape for h in tiny_tflite["heads"]]
    # a tiny random-init net (torch seed 0) calibrated on 16 random images: its INT8 heads are >= 0.50 cosine
    # from FP32, mean 0.57 (measured here; unseeded nets ranged from -0.01 to 0.96 per head); loose bounds that
    # still catch garbage (wrong scale / zero point: ~0) or a swapped head
    cosines = [_cos(g.ravel(), h.ravel()) for g, h in zip(got, tiny_tflite["heads"])]
    assert min(cosines) > 0.3 and sum(cosines) / len(cosines) > 0.5, cosines


@needs_extra
def test_double_compiles_a_full_integer_model_and_labels_its_report(tiny_tflite, tmp_path, monkeypatch) -> None:
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("EDGETPU_DOUBLE_ARGV_LOG", str(log))
    out = tmp_path / "int8_edgetpu.tflite"
    rep = edgetpu.compile_edgetpu(None, tiny_tflite["int8"], out, edgetpu.load_options(
        {"compiler": str(DOUBLE), "max_cpu_ops": 99}, "t"), "targets/coral.toml: artifact int8-edgetpu")
    assert rep.double and rep.to_dict()["source"] == "test double (generated)"
    assert rep.total_ops == rep.edgetpu_ops + rep.cpu_ops and rep.edgetpu_ops > 0
    assert sum(c for _, c, _ in rep.table) == rep.total_ops
    assert all(s == "Operation not supported" for o, _, s in rep.table if o == "TRANSPOSE")  # not in the published list
    assert out.read_bytes() == tiny_tflite["int8"].read_bytes()  # the double's "compiled" model is a copy
    placement = json.loads(edgetpu.placement_path(out).read_text())
    assert placement["source"] == "test double (generated)" and placement["edgetpu_ops"] == rep.edgetpu_ops
    argv = json.loads(log.read_text().splitlines()[0])
    assert argv[:3] == ["edgetpu_compiler", "-s", "-o"] and argv[-1] == str(tiny_tflite["int8"])
    if rep.cpu_ops:  # the placement gate on a generated report says it is one
        with pytest.raises(UserError, match=r"operations run on the CPU.*\[test double: generated\]"):
            edgetpu.compile_edgetpu(None, tiny_tflite["int8"], out, edgetpu.load_options(
                {"compiler": str(DOUBLE), "max_cpu_ops": 0}, "t"), "w")


@needs_extra
def test_fp16_weights_model_is_half_the_size_and_tracks_fp32(tiny_tflite, tmp_path) -> None:
    out = tmp_path / "fp16.tflite"
    info = litert.cast_fp16(tiny_tflite["fp32"], out)
    assert info["format"] == "tflite-float16-weights"
    assert out.stat().st_size < 0.7 * tiny_tflite["fp32"].stat().st_size
    model = litert_runner.TfliteModel(str(out))
    assert model.input_dtype == np.float32
    for g, h in zip(model.run_many(tiny_tflite["x"]), tiny_tflite["heads"]):
        assert _cos(g.ravel(), h.ravel()) > 0.999


@needs_extra
def test_double_refuses_a_float_model(tiny_tflite) -> None:
    out = subprocess.run([sys.executable, str(DOUBLE), "-s", "-o", str(tiny_tflite["dir"]), str(tiny_tflite["fp32"])],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "Model not quantized" in out.stdout


def _release(tmp_path: Path, tflite: Path, runtime: str, x: np.ndarray, heads: list[np.ndarray]) -> tuple[str, dict]:
    rel = tmp_path / "rel"
    (rel / "models").mkdir(parents=True)
    (rel / "verify").mkdir()
    (rel / "models" / tflite.name).write_bytes(tflite.read_bytes())
    names = ["eye_state", "yawn", "activity", "head_pose"]
    np.savez(rel / "verify" / "reference.npz", inputs=x, **dict(zip(names, heads)))
    manifest = {"outputs": {"names": names, "classification": names[:3]}}
    entry = {"name": "int8", "file": f"models/{tflite.name}", "runtime": runtime,
             "provider_options": [{"delegate": "libedgetpu.so.1"}] if runtime == "edgetpu" else [{}]}
    return str(rel), {"manifest": manifest, "entry": entry}


@needs_extra
@pytest.mark.parametrize("runtime", ["litert", "edgetpu"])
def test_board_runner_benchmarks_and_checks_a_tflite(tiny_tflite, tmp_path, monkeypatch, runtime) -> None:
    from dmsbuild.board.runner import dms_bench

    monkeypatch.setenv("DMSBUILD_EMULATED_BOARD", "test")
    rel, m = _release(tmp_path, tiny_tflite["int8"], runtime, tiny_tflite["x"], tiny_tflite["heads"])
    plan = {"warmup": 1, "iterations": 5, "threads": 1, "verify_samples": 8}
    r = dms_bench.bench_artifact(rel, m["manifest"], m["entry"], plan)
    assert len(r["samples_ms"]) == 5 and r["latency_ms"]["median"] > 0
    assert r["provider"] == ("cpu (XNNPACK)" if runtime == "litert" else litert_runner.EMULATED_PROVIDER)
    assert set(r["verify"]["heads"]) == {"eye_state", "yawn", "activity", "head_pose"}
    assert min(h["cosine"] for h in r["verify"]["heads"].values()) > 0.3  # see the test above


@needs_extra
@pytest.mark.parametrize("isolation", ["gap", "processes"])
def test_the_interleaved_harness_times_a_tflite_side_with_its_tuned_threads(tiny_tflite, tmp_path, monkeypatch,
                                                                             isolation) -> None:
    """`doit tune`'s harness (dms_bench --interleave --baseline --control) with a LiteRT candidate: the .tflite side
    opens in runner/litert_runner.py with its manifest session's thread count, in this process (gap) or in its own
    worker process (processes), and is timed in the same rotated blocks as the default and the A/A control."""
    from dmsbuild.board.runner import dms_bench

    rel, m = _release(tmp_path, tiny_tflite["int8"], "litert", tiny_tflite["x"], tiny_tflite["heads"])
    (Path(rel) / "models" / "fp32.tflite").write_bytes(tiny_tflite["fp32"].read_bytes())
    entries = [{"name": "fp32", "file": "models/fp32.tflite", "runtime": "litert", "provider_options": [{}]},
               {**m["entry"], "session": {"intra_op_threads": 2}}]
    (Path(rel) / "manifest.json").write_text(json.dumps({"schema": 1, **m["manifest"], "artifacts": entries}))
    opened = []
    real = litert_runner.open_entry
    monkeypatch.setattr(litert_runner, "open_entry", lambda r, e, t: opened.append((e["name"], t)) or real(r, e, t))
    out = dms_bench.interleave(rel, rel, "int8", blocks=2, iterations=3, warmup=1, threads=1, max_seconds=60,
                               baseline="fp32", control=True, isolation=isolation)
    assert [len(out[side]) for side in ("old", "new", "control")] == [2, 2, 2]
    assert all(len(b) == 3 and min(b) > 0 for side in ("old", "new", "control") for b in out[side])
    assert out["orders"] == [list(o) for o in dms_bench.ORDERS[3][:2]]
    if isolation == "gap":  # in this process: each side opened once, the candidate with its tuned threads
        assert sorted(opened) == [("fp32", 1), ("fp32", 1), ("int8", 1)]
        model = real(rel, entries[1], 1)
        assert model.threads == 2  # the session's intra_op_threads wins over --threads


@needs_extra
def test_real_board_without_the_delegate_fails_with_the_install_line(tiny_tflite, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DMSBUILD_EMULATED_BOARD", raising=False)
    rel, m = _release(tmp_path, tiny_tflite["int8"], "edgetpu", tiny_tflite["x"], tiny_tflite["heads"])
    with pytest.raises(RuntimeError, match="libedgetpu1-std"):
        litert_runner.open_entry(rel, m["entry"], 1)


def test_runner_dispatch_does_not_need_onnxruntime_for_tflite_entries() -> None:
    from dmsbuild.board.runner import dms_bench

    # the runner dispatches on what the manifest entry is (a .tflite file), never on a runtime name
    assert dms_bench.runs_on_litert({"file": "models/int8_edgetpu.tflite", "runtime": "edgetpu"})
    assert dms_bench.runs_on_litert({"file": "models/fp32.tflite", "runtime": "onnxruntime"})
    assert not dms_bench.runs_on_litert({"file": "models/fp32.onnx", "runtime": "onnxruntime"})
    assert os.path.basename(litert_runner.__file__) == "litert_runner.py"


# --------------------------------------------------------------------------
# doctor: host converters and compiler, board interpreter, delegate and device
# --------------------------------------------------------------------------
def test_doctor_host_names_the_extra_and_the_compiler(tmp_path: Path) -> None:
    from dmsbuild.ship.doctor import check_host

    prof = _profile({"runtime": "edgetpu", "precisions": ["int8-qdq"]})
    checks = check_host([prof], tmp_path, version_of=lambda d: None, which=lambda n: None, environ={},
                        disk_free_mb=lambda p: 1e6)
    by = {c.what: c for c in checks}
    assert by["litert-torch"].level == "missing" and "dmsbuild[litert]" in by["litert-torch"].line()
    assert by["edgetpu_compiler"].level == "missing" and "apt-get install edgetpu-compiler" in by["edgetpu_compiler"].line()
    checks = check_host([prof], tmp_path, version_of=lambda d: "1.0", which=lambda n: None,
                        environ={edgetpu.COMPILER_ENV: str(DOUBLE)}, disk_free_mb=lambda p: 1e6)
    line = {c.what: c for c in checks}["edgetpu_compiler"].line()
    assert "(test double)" in line


@pytest.mark.parametrize("emulated, level", [(None, "missing"), ("sshd-on-loopback", "warning")])
def test_doctor_board_edgetpu_delegate_and_device(emulated, level) -> None:
    from dmsbuild.ship.doctor import check_board

    prof = _profile({"runtime": "edgetpu", "precisions": ["int8-qdq"], "arch": "any"})
    facts = {"python": "3.11", "numpy": "2", "litert": "ai-edge-litert 2.3.0", "edgetpu": None, "emulated": emulated,
             "disk_free_mb": 9999}
    by = {c.what: c for c in check_board("coral-01", facts, prof)}
    assert by["LiteRT interpreter"].level == "ok" and "onnxruntime" not in by
    assert by["Edge TPU delegate (libedgetpu.so.1)"].level == level
    assert by["Edge TPU device (USB or PCIe)"].level == level
    facts["edgetpu"] = {"library": "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1", "usb": ["18d1:9302"], "pcie": []}
    by = {c.what: c for c in check_board("coral-01", facts, prof)}
    assert by["Edge TPU delegate (libedgetpu.so.1)"].level == "ok" and by["Edge TPU device (USB or PCIe)"].level == "ok"


def test_report_names_the_litert_runtime_beside_the_artifact() -> None:
    from dmsbuild.measure.report import _artifact, name_runtimes

    rows = name_runtimes([
        {"target": "coral", "artifact": "int8-qdq-tflite", "precision": "int8-qdq", "runtime": "litert"},
        {"target": "coral", "artifact": "int8-edgetpu", "precision": "int8-qdq", "runtime": "edgetpu"},
        {"target": "rpi5", "artifact": "fp32", "precision": "fp32", "runtime": "onnxruntime"},
        {"target": "rpi5", "artifact": "fp32-tflite", "precision": "fp32", "runtime": "litert"},
        {"target": "x86", "artifact": "fp32", "precision": "fp32", "runtime": "onnxruntime"}])
    assert [_artifact(r) for r in rows] == ["int8-qdq-tflite (int8-qdq, litert)", "int8-edgetpu (int8-qdq, edgetpu)",
                                            "fp32 (onnxruntime)", "fp32-tflite (fp32, litert)", "fp32"]
