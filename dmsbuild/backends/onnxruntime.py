"""ONNX Runtime backend: the target ships the host-built ONNX files themselves (Raspberry Pi 5, this machine).

Every precision is an ``.onnx`` copied into ``artifacts/<target>/``; it runs
with the CPU execution provider unless the profile's ``[backend]`` names
others. Profile ``[backend]`` options:

- ``providers``: list of execution providers, default ``["CPUExecutionProvider"]``
- ``provider_options``: list of option tables, one per provider
- ``tflite``: precisions also shipped as LiteRT ``.tflite`` files beside the ONNX ones (fp32, fp16, int8-qdq as full integer; needs the litert extra; docs/targets.md "LiteRT")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
from . import ArtifactPlan, litert
from .base import Backend, Check, HostEnv, TunePart, board_onnxruntime, ort_tune_space

NAME = "onnxruntime"
OPTIONS = {"providers": list, "provider_options": list, "tflite": list}


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
    tflite = profile.backend.get("tflite", [])
    wrong = [p for p in tflite if p not in ("fp32", "fp16", "int8-qdq") or p not in profile.precisions]
    if wrong:
        raise UserError(f"{profile.source}: field 'backend.tflite' has {wrong}; allowed: the profile's precisions "
                        "among fp32, fp16, int8-qdq", hint=f"fix it in {profile.source}")
    return {"providers": providers, "provider_options": options, "tflite": tflite}


def plan(project: ProjectConfig, profile: TargetProfile, sources: dict[str, Path], *, kind: str = "onnx",
         suffix: str = ".onnx", runtime: str = NAME) -> list[ArtifactPlan]:
    """One ONNX artifact per precision of the profile (``kind``/``suffix``/``runtime``: a runtime that ships
    another form of the same files, ortformat.py)."""
    opts = _options(profile)
    out = project.artifacts / profile.name
    plans = [
        ArtifactPlan(name=precision, precision=precision, kind=kind, path=out / f"{precision}{suffix}",
                     source=sources[precision], runtime=runtime, providers=list(opts["providers"]),
                     provider_options=list(opts["provider_options"]), portable=True)
        for precision in profile.precisions
    ]
    if opts["tflite"]:  # LiteRT next to ONNX Runtime on the same board (docs/targets.md "LiteRT")
        plans += litert.plan(project, _tflite_profile(profile, opts["tflite"]), sources)
    return plans


def _tflite_profile(profile: TargetProfile, precisions: list[str]) -> Any:
    """The profile as litert.plan sees it: its ``[backend] tflite`` precisions, LiteRT's default options."""
    from types import SimpleNamespace

    return SimpleNamespace(name=profile.name, source=profile.source, backend={}, precisions=list(precisions))


class OnnxRuntimeBackend(Backend):
    """The host-built ONNX files, run and timed on the board by the release's runner (runner/dms_bench.py);
    with ``[backend] tflite``, LiteRT .tflite files of the same precisions beside them (runner/litert_runner.py)."""

    name = NAME
    state_tools = ("vcgencmd",)  # a Raspberry Pi's clocks and throttling
    tune_measured = True
    tune_measured_as = {"runtime": NAME, "provider": "CPUExecutionProvider"}
    tune_kind_facts = ("onnxruntime",)

    def validate(self, profile: TargetProfile) -> dict[str, Any]:
        return _options(profile)

    def plan(self, project: ProjectConfig, profile: TargetProfile, sources: dict[str, Path]) -> list[ArtifactPlan]:
        return plan(project, profile, sources)

    def host_checks(self, profiles: Sequence[TargetProfile], env: HostEnv) -> list[Check]:
        with_tflite = [p for p in profiles if p.backend.get("tflite")]
        return litert.converter_checks(with_tflite, env) if with_tflite else []

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: TargetProfile) -> list[Check]:
        need = f"target {profile.name} ({profile.runtime})"
        checks = [board_onnxruntime(board, facts, need)]
        if profile.backend.get("tflite"):
            checks.append(litert.interpreter_check(board, facts, f"{need}, backend.tflite"))
        return checks

    def tune_space(self, profile: TargetProfile) -> dict[str, list[Any]]:
        space = ort_tune_space(profile)
        parts = [p for p in self.tune_parts(profile) if p.missing is None]
        if parts:  # the runtime dimension (docs/tune.md, "LiteRT candidates")
            space = {"runtime": [NAME, *(p.runtime for p in parts)], **space,
                     **{f"{p.runtime}_precision": list(p.precisions) for p in parts}}
        return space

    def tune_parts(self, profile: TargetProfile) -> list[TunePart]:
        """LiteRT, when the target ships ``[backend] tflite`` (its boards run LiteRT): LiteRT's precisions that [tune]
        precision names, at 1..cores interpreter threads, timed against the same default ONNX artifact."""
        enable = f'add [backend] tflite = ["fp32", "int8-qdq"] to {profile.source} (docs/targets.md "LiteRT")'
        tflite = [p for p in (getattr(profile, "backend", {}).get("tflite") or []) if p in litert.FILES]
        if not tflite:
            return [TunePart(litert.NAME, (), f"LiteRT candidates not searched: {profile.source} ships no .tflite; "
                                              f"to search them, {enable}", enable)]
        return [litert.BACKEND.tune_part(profile, enable)]


BACKEND = OnnxRuntimeBackend()
