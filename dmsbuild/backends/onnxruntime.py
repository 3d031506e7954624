"""ONNX Runtime backend: the target ships the host-built ONNX files themselves (Raspberry Pi 5, this machine).

Every precision is an ``.onnx`` copied into ``artifacts/<target>/``; it runs
with the CPU execution provider unless the profile's ``[backend]`` names
others. Profile ``[backend]`` options:

- ``providers``: list of execution providers, default ``["CPUExecutionProvider"]``
- ``provider_options``: list of option tables, one per provider
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
from . import ArtifactPlan
from .base import Backend, Check, board_onnxruntime, ort_tune_space

NAME = "onnxruntime"
OPTIONS = {"providers": list, "provider_options": list}


def _options(profile: TargetProfile) -> dict[str, Any]:
    for key, value in profile.backend.items():
        if key not in OPTIONS:
            raise UserError(
                f"{profile.source}: unknown field 'backend.{key}' for runtime '{NAME}'; allowed: {', '.join(OPTIONS)}",
                hint=f"remove 'backend.{key}' from {profile.source}",
            )
        if not isinstance(value, OPTIONS[key]):
            raise UserError(f"{profile.source}: field 'backend.{key}' must be a list")
    providers = profile.backend.get("providers", ["CPUExecutionProvider"])
    options = profile.backend.get("provider_options", [{} for _ in providers])
    if len(options) != len(providers) or not all(isinstance(p, str) for p in providers):
        raise UserError(
            f"{profile.source}: field 'backend.provider_options' needs one table per entry of 'backend.providers'"
        )
    return {"providers": providers, "provider_options": options}


def plan(project: ProjectConfig, profile: TargetProfile, sources: dict[str, Path], *, kind: str = "onnx",
         suffix: str = ".onnx", runtime: str = NAME) -> list[ArtifactPlan]:
    """One ONNX artifact per precision of the profile (``kind``/``suffix``/``runtime``: a runtime that ships
    another form of the same files, ortformat.py)."""
    opts = _options(profile)
    out = project.artifacts / profile.name
    return [
        ArtifactPlan(name=precision, precision=precision, kind=kind, path=out / f"{precision}{suffix}",
                     source=sources[precision], runtime=runtime, providers=list(opts["providers"]),
                     provider_options=list(opts["provider_options"]), portable=True)
        for precision in profile.precisions
    ]


class OnnxRuntimeBackend(Backend):
    """The host-built ONNX files, run and timed on the board by the release's runner (runner/dms_bench.py)."""

    name = NAME
    state_tools = ("vcgencmd",)  # a Raspberry Pi's clocks and throttling
    tune_measured = True
    tune_measured_as = {"runtime": NAME, "provider": "CPUExecutionProvider"}
    tune_kind_facts = ("onnxruntime",)

    def validate(self, profile: TargetProfile) -> dict[str, Any]:
        return _options(profile)

    def plan(self, project: ProjectConfig, profile: TargetProfile, sources: dict[str, Path]) -> list[ArtifactPlan]:
        return plan(project, profile, sources)

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: TargetProfile) -> list[Check]:
        return [board_onnxruntime(board, facts, f"target {profile.name} ({profile.runtime})")]

    def tune_space(self, profile: TargetProfile) -> dict[str, list[Any]]:
        return ort_tune_space(profile)


BACKEND = OnnxRuntimeBackend()
