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
