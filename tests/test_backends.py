"""The backend registry and the ONNX Runtime backend's plan."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.backends import REGISTRY, get_backend
from dmsbuild.config import load_dataclass, ProjectConfig, TargetProfile
from dmsbuild.errors import UserError


def _profile(data: dict) -> TargetProfile:
    prof = load_dataclass(TargetProfile, {"name": "t", **data}, "targets/t.toml")
    prof.source = Path("targets/t.toml")
    return prof


def test_unregistered_runtime_names_the_profile_field() -> None:
    with pytest.raises(UserError) as err:
        get_backend("snpe-not-here", "targets/x.toml")
    line = str(err.value).splitlines()[0]
    assert line.startswith("targets/x.toml: field 'runtime' is 'snpe-not-here'") and "onnxruntime" in line


def test_registry_is_lazy_module_paths() -> None:
    assert all(isinstance(v, str) for v in REGISTRY.values())


def test_onnxruntime_plan_one_onnx_per_precision(tmp_path: Path) -> None:
    project = ProjectConfig()
    project.root = tmp_path
    backend = get_backend("onnxruntime")
    sources = {"fp32": tmp_path / "c/fp32.onnx", "int8-qdq": tmp_path / "c/int8-qdq-abc.onnx"}
    prof = _profile({"precisions": ["fp32", "int8-qdq"], "backend": {"providers": ["XnnpackExecutionProvider", "CPUExecutionProvider"],
                                                                    "provider_options": [{"intra_op_num_threads": 4}, {}]}})
    plans = backend.plan(project, prof, sources)
    assert [(p.name, p.kind, p.path.name, p.source) for p in plans] == [
        ("fp32", "onnx", "fp32.onnx", sources["fp32"]), ("int8-qdq", "onnx", "int8-qdq.onnx", sources["int8-qdq"])]
    assert plans[0].providers == ["XnnpackExecutionProvider", "CPUExecutionProvider"] and plans[0].portable
    assert plans[0].path.parent == tmp_path / "artifacts" / "t"


def test_onnxruntime_rejects_unknown_backend_option(tmp_path: Path) -> None:
    project = ProjectConfig()
    project.root = tmp_path
    with pytest.raises(UserError, match=r"targets/t.toml: unknown field 'backend.workspace_mb'"):
        get_backend("onnxruntime").plan(project, _profile({"backend": {"workspace_mb": 1}}), {"fp32": tmp_path / "x.onnx"})


# --------------------------------------------------------------------------
# the Backend interface and the registry (dmsbuild/backends/base.py, dmsbuild/core/runtimes.py)
# --------------------------------------------------------------------------
from dmsbuild.backends import backends  # noqa: E402
from dmsbuild.backends.base import Backend  # noqa: E402
from dmsbuild.core.runtimes import RUNTIMES  # noqa: E402


def test_every_registered_runtime_is_one_backend_under_its_own_name() -> None:
    got = {b.name: b for b in backends()}
    assert set(got) == set(RUNTIMES) == set(REGISTRY)
    for name, b in got.items():
        assert isinstance(b, Backend) and b.info is RUNTIMES[name]
        assert type(b).__module__ == RUNTIMES[name].module


def test_a_host_driven_runtime_names_a_board_driver_that_benches_and_probes() -> None:
    import importlib

    from dmsbuild.core.provenance import SOURCES

    for b in backends():
        assert b.host_driven == (b.measured_by != "runner")
        if b.host_driven:  # the host drives the board's own tool: a driver module with both calls
            driver = importlib.import_module(b.board_driver)
            assert callable(driver.bench_artifacts) and callable(driver.probe), b.name
            assert f"board-{b.measured_by}" in SOURCES, f"{b.name}: its figures need a provenance label"
        else:
            assert b.board_driver is None, b.name


def test_bench_and_provenance_read_the_registry() -> None:
    from dmsbuild.measure.bench import HOST_DRIVEN
    from dmsbuild.core.provenance import classify

    assert set(HOST_DRIVEN) == {n for n, line in RUNTIMES.items() if line.host_driven}
    for name, line in RUNTIMES.items():
        board = classify({"runtime": name, "provider": "CPUExecutionProvider"}, {"arch": "aarch64"})
        emulated = classify({"runtime": name, "provider": "CPUExecutionProvider"}, {"emulated": "yes"})
        assert (board, emulated) == ((f"board-{line.measured_by}", "double") if line.host_driven else
                                     ("board-runner", "emulated")), name


def test_config_accepts_exactly_the_registered_runtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dmsbuild.core import runtimes

    for name in RUNTIMES:
        assert _profile({"runtime": name}).runtime == name
    with pytest.raises(UserError) as err:
        _profile({"runtime": "tflite"})
    line = str(err.value).splitlines()[0]
    assert line.startswith("targets/t.toml: field 'runtime' is 'tflite'; allowed values: 'onnxruntime'")
    # a new registry line is all config needs
    monkeypatch.setitem(runtimes.RUNTIMES, "tflite", runtimes.Runtime("tflite", "somewhere.tflite"))
    assert _profile({"runtime": "tflite"}).runtime == "tflite"


def test_a_module_without_its_backend_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "plain", "dmsbuild.backends.toolchain")  # a module, but no BACKEND
    with pytest.raises(UserError, match=r"dmsbuild.backends.toolchain: defines no BACKEND"):
        get_backend("plain")
    monkeypatch.setitem(REGISTRY, "wrongname", "dmsbuild.backends.onnxruntime")  # BACKEND.name is onnxruntime
    with pytest.raises(UserError, match=r"BACKEND.name is 'onnxruntime'"):
        get_backend("wrongname")


def test_the_tune_space_of_each_runtime_is_its_own() -> None:
    prof = _profile({})
    spaces = {b.name: b.tune_space(prof) for b in backends()}
    assert spaces["onnxruntime"]["graph_optimization_level"] == prof.tune.graph_optimization_level
    assert set(spaces["qnn"]) == {"activation_bits", "per_channel", "htp_performance_mode"}
    assert set(spaces["tensorrt"]) == {"precision", "builder_optimization_level", "sparsity"}
    assert [b.name for b in backends() if b.tune_measured] == ["onnxruntime"]


def test_qdq_only_and_channel_blocks_come_from_the_registry() -> None:
    from dmsbuild.config import PRUNE_CHANNEL_BLOCK, QDQ_ONLY_RUNTIMES

    assert set(QDQ_ONLY_RUNTIMES) == {"tensorrt", "qnn", "snpe"}
    assert PRUNE_CHANNEL_BLOCK == {"onnxruntime": 16, "tensorrt": 32, "qnn": 32, "snpe": 32, "ortformat": 16,
                                   "litert": 16, "edgetpu": 16}
