"""The tuned choice file ``targets/<target>.tuned.toml``: what `doit tune` chose, and how the build ships it.

`doit tune` (dmsbuild/pipeline/tune/) writes the file; ``doit build`` reads it here to put the chosen
artifact first in the release, with its ONNX Runtime session settings. A recipe (how the artifact is made
from the FP32 model) and its session settings are named here because both sides need them: the tuner to
build and time candidates, the build to rebuild the chosen one (``recipe_path``) and ship it.

A file tuned for other model content is refused in one line (``check_model``), never silently replaced.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import TargetProfile
from ..errors import UserError

if TYPE_CHECKING:
    from ..config import ProjectConfig

SCHEMA = 1
#: the artifact name of the tuned choice in build.json and the manifest
TUNED_NAME = "tuned"


def short_hash(obj: Any, n: int = 16) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj`` as sorted JSON (cache keys, file names)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Recipe:
    """How the artifact is made from the FP32 model (one point of the recipe dimensions)."""

    precision: str
    per_channel: bool | None = None
    activation_type: str | None = None
    weight_type: str | None = None
    calibration_method: str | None = None
    mixed_precision: bool = False
    #: None: the target's own runtime (an ONNX file); else another runtime of the tune space's runtime dimension
    #: whose backend builds it (``Backend.tune_build``: LiteRT's .tflite beside an onnxruntime target's ONNX)
    runtime: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def key(self, model_sha: str, calibration: int) -> str:
        """Names the built file: same model, recipe and calibration budget -> same bytes, built once."""
        return short_hash({"model": model_sha, "recipe": self.as_dict(), "calibration": calibration}, 12)

    @property
    def label(self) -> str:
        if self.runtime is not None:  # built by that runtime's backend as it builds the target's own artifacts
            return f"{self.runtime} " + ("int8 full-integer" if self.precision == "int8-qdq" else self.precision)
        if self.precision in ("fp32", "fp16"):
            return self.precision
        if self.precision == "int8-dynamic":
            return f"int8 dynamic {'per-channel' if self.per_channel else 'per-tensor'} {self.weight_type}"
        fmt = "QOperator" if self.precision == "int8-qoperator" else "QDQ"
        types = f"{_short(self.activation_type)}{_short(self.weight_type)}"
        mixed = ", mixed precision" if self.mixed_precision else ""
        return (f"int8 {fmt} {'per-channel' if self.per_channel else 'per-tensor'} {types} "
                f"{self.calibration_method}{mixed}")


def _short(qtype: str | None) -> str:
    return {"QUInt8": "u8", "QInt8": "s8", "QUInt16": "u16", "QInt16": "s16"}.get(qtype or "", "?")


@dataclass(frozen=True)
class Settings:
    """ONNX Runtime session settings (the manifest entry's ``session``, read by runner/dms_bench.py)."""

    intra_op_threads: int
    graph_optimization_level: str = "all"
    execution_mode: str = "sequential"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        extra = "" if self.graph_optimization_level == "all" else f", graph opt {self.graph_optimization_level}"
        extra += "" if self.execution_mode == "sequential" else f", {self.execution_mode} execution"
        return f"{self.intra_op_threads} thread{'s' if self.intra_op_threads != 1 else ''}{extra}"


def recipe_path(proj: "ProjectConfig", recipe: Recipe, model_sha: str) -> Path:
    """``artifacts/common/tune-<key>.onnx`` (FP32 is the exported model itself). A recipe of another runtime
    (``recipe.runtime``) is named by its backend (``Backend.tune_build``), not here."""
    from .paths import Paths

    if recipe.runtime is not None:
        raise ValueError(f"recipe_path: a {recipe.runtime} recipe's file is its backend's (Backend.tune_build)")
    if recipe.precision == "fp32":
        return Paths.of(proj).fp32
    return Paths.of(proj).common / f"tune-{recipe.key(model_sha, proj.data.max_calibration_samples)}.onnx"


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary name and rename: an interrupted tune never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def tuned_path(proj: "ProjectConfig", target: str) -> Path:
    from ..config import TARGETS_DIR

    return proj.root / TARGETS_DIR / f"{target}.tuned.toml"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(round(v, 6)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (same escapes)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def write_tuned(proj: "ProjectConfig", target: str, header: list[str], fields: dict[str, Any],
                choices: list[dict[str, Any]]) -> Path:
    """Write the choice file atomically: comment ``header`` lines, the top-level ``fields`` (after ``schema``
    and ``target``), then one ``[[choice]]`` table per entry of ``choices`` (None values left out)."""
    lines = [f"# {h}" for h in header] + [f"schema = {SCHEMA}", f"target = {_toml_value(target)}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()] + [""]
    for choice in choices:
        lines += ["[[choice]]", *(f"{k} = {_toml_value(v)}" for k, v in choice.items() if v is not None), ""]
    path = tuned_path(proj, target)
    write_atomic(path, "\n".join(lines))
    return path


def read_tuned(proj: "ProjectConfig", prof: TargetProfile) -> dict[str, Any] | None:
    """The target's choice file, checked (None when there is none)."""
    from ..config import read_toml

    path = tuned_path(proj, prof.name)
    if not path.is_file():
        return None
    data = read_toml(path)
    if data.get("schema") != SCHEMA or data.get("target") != prof.name or not isinstance(data.get("choice"), list):
        raise UserError(f"{path}: not a schema-{SCHEMA} choice file of target '{prof.name}'",
                        hint=f"re-run `doit tune target={prof.name}`, or delete the file to ship the untuned artifacts")
    for i, c in enumerate(data["choice"]):
        if not c.get("keep_default") and not isinstance(c.get("recipe"), dict):
            raise UserError(f"{path}: choice[{i}] has no recipe", hint=f"re-run `doit tune target={prof.name}`")
    return data


def shipped_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    """The choice a target's release ships as its default: the one for most boards (a release is one per
    target; docs/tune.md says so). None: every board kind keeps the default."""
    picks = [c for c in data["choice"] if not c.get("keep_default")]
    return max(picks, key=lambda c: len(c.get("boards") or []), default=None)


def check_model(data: dict[str, Any], path: Path, model_sha: str, target: str) -> None:
    """A choice tuned for other model content is refused in one line, never silently replaced by the default."""
    if data.get("model_sha256") != model_sha:
        raise UserError(f"{path}: tuned for model sha256 {str(data.get('model_sha256'))[:12]}, but the model is now "
                        f"{model_sha[:12]}; re-run `doit tune target={target}` (or delete {path.name} to ship untuned)")


def tuned_recipe(choice: dict[str, Any]) -> tuple[Recipe, Settings]:
    r, s = choice["recipe"], choice["runtime"]
    return Recipe(**r), Settings(**s)


__all__ = ["Recipe", "SCHEMA", "Settings", "TUNED_NAME", "check_model", "read_tuned", "recipe_path",
           "short_hash", "shipped_choice", "tuned_path", "tuned_recipe", "write_atomic", "write_tuned"]
