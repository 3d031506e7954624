"""ONNX Runtime's ORT format: the model files a reduced-size ONNX Runtime build loads (docs/runtimes/ortformat.md).

The host converts each precision's ONNX into an ``.ort`` file (FlatBuffers) the
way ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does: an
InferenceSession on the CPU execution provider with
``session.save_model_format = ORT`` and ``optimized_model_filepath`` set, the
graph optimised at ``[backend] optimization_level`` before it is saved. The
board runs the file with its own onnxruntime through the release's runner
(runner/dms_bench.py: the providers are ONNX Runtime execution providers), so
its figures are the runner's (``measured_by = "runner"`` in the registry) and
its outputs are checked on the board against the FP32 reference like any
ONNX artifact's. Full ONNX Runtime builds load ``.ort`` files too; reduced
builds (mobile, small boards) load only them.

Profile ``[backend]`` options:

- ``optimization_level``: "basic" (default) or "extended". Basic optimisations
  are semantics-preserving and hardware-independent, and are what the
  conversion script bakes in by default (onnxruntime.ai, "ORT Format Model
  Runtime Optimization"); "all" adds layout optimisations for the host's own
  CPU, which the board's may not have, so it is refused.

onnxruntime is imported inside the build only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from . import ArtifactPlan
from .base import Backend, Check, board_onnxruntime, major_minor

NAME = "ortformat"
LEVELS = ("basic", "extended")
#: the oldest onnxruntime that reads the ORT format version this host's onnxruntime writes (v5: 1.13 and later,
#: onnxruntime.ai "ORT model format", Backwards Compatibility)
MIN_BOARD_ORT = (1, 13)


def options(profile: Any) -> dict[str, str]:
    """The profile's ``[backend]`` table checked: ``optimization_level`` only."""
    unknown = [k for k in profile.backend if k != "optimization_level"]
    if unknown:
        raise UserError(f"{profile.source}: unknown field 'backend.{unknown[0]}' for runtime '{NAME}'; "
                        "allowed: optimization_level", hint=f"remove 'backend.{unknown[0]}' from {profile.source}")
    level = profile.backend.get("optimization_level", "basic")
    if level not in LEVELS:
        raise UserError(f"{profile.source}: field 'backend.optimization_level' is {level!r}; allowed values: "
                        + ", ".join(repr(v) for v in LEVELS),
                        hint="'all' would bake in layout optimisations for this host's CPU, not the board's")
    return {"optimization_level": level}


def convert(onnx: Path, out: Path, level: str) -> None:
    """Write ``out`` (.ort) from ``onnx``: ONNX Runtime optimises the graph at ``level`` and saves it in ORT format."""
    import onnxruntime as ort

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.ort")
    so = ort.SessionOptions()
    so.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[level]
    so.optimized_model_filepath = str(tmp)
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(onnx), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; one line says which file
        tmp.unlink(missing_ok=True)
        raise UserError(f"{onnx}: ONNX Runtime could not convert it to ORT format: {str(exc).splitlines()[0]}",
                        hint="does the model load with onnxruntime on this machine? (python -c \"import "
                             "onnxruntime as o; o.InferenceSession('<file>')\")") from None
    if not tmp.is_file():
        raise UserError(f"{onnx}: ONNX Runtime wrote no ORT file ({tmp})", hint="check the onnxruntime version")
    tmp.replace(out)


class OrtFormatBackend(Backend):
    """ORT-format files, converted on the host, run and timed on the board by the release's runner."""

    name = NAME

    def validate(self, profile: Any) -> dict[str, str]:
        return options(profile)

    def plan(self, project: Any, profile: Any, sources: dict[str, Path]) -> list[ArtifactPlan]:
        level = options(profile)["optimization_level"]
        out = project.artifacts / profile.name
        plans = []
        for precision in profile.precisions:
            src, path = sources[precision], out / f"{precision}.ort"
            plans.append(ArtifactPlan(
                name=precision, precision=precision, kind="ort", path=path, source=src, runtime=NAME,
                providers=["CPUExecutionProvider"], provider_options=[{}], portable=True,
                build=lambda s=src, p=path: convert(s, p, level), settings={"optimization_level": level}))
        return plans

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: Any) -> list[Check]:
        need = f"target {profile.name} ({profile.runtime})"
        checks = [board_onnxruntime(board, facts, need)]
        ort = facts.get("onnxruntime")
        if ort and major_minor(str(ort)) < MIN_BOARD_ORT:
            checks.append(Check(board, "onnxruntime reads ORT format v5", "missing", ort, need,
                                "pip install -U 'onnxruntime>=1.13' on the board (older versions read older ORT formats)"))
        return checks


BACKEND = OrtFormatBackend()
