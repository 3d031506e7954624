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
from typing import Any

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
from . import ArtifactPlan

NAME = "onnxruntime"
OPTIONS = {"providers": list, "provider_options": list, "tflite": list}


def _options(profile: TargetProfile) -> dict[str, Any]:
    for key, value in profile.backend.items():
        if key not in OPTIONS:
            raise UserError(
                f"{profile.source}: unknown field 'backend.{key}' for runtime 'onnxruntime'; allowed: {', '.join(OPTIONS)}",
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


def plan(project: ProjectConfig, profile: TargetProfile, sources: dict[str, Path]) -> list[ArtifactPlan]:
    """One ONNX artifact per precision of the profile."""
    opts = _options(profile)
    out = project.artifacts / profile.name
    plans = [
        ArtifactPlan(name=precision, precision=precision, kind="onnx", path=out / f"{precision}.onnx",
                     source=sources[precision], runtime=NAME, providers=list(opts["providers"]),
                     provider_options=list(opts["provider_options"]), portable=True)
        for precision in profile.precisions
    ]
    if opts["tflite"]:  # LiteRT next to ONNX Runtime on the same board (docs/targets.md "LiteRT")
        from types import SimpleNamespace

        from . import litert

        lite = SimpleNamespace(name=profile.name, source=profile.source, backend={}, precisions=list(opts["tflite"]))
        plans += litert.plan(project, lite, sources)
    return plans
