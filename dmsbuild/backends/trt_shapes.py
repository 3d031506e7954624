"""Input shapes for TensorRT engines of models with dynamic dimensions (issue 24 item 3).

TensorRT builds an engine for an optimization profile: for every input with a dynamic dimension, trtexec takes
``--minShapes/--optShapes/--maxShapes=spec`` at build time and ``--shapes=spec`` at inference, with
``spec ::= name:DxDxD[,spec]`` (input names may be wrapped in single quotes, e.g. ``'Input:0'``): trtexec
``--help``, TensorRT 10 (samples/common/sampleOptions.cpp, BuildOptions::help and InferenceOptions::help).
Without them trtexec turns every dynamic dimension into 1 ("Dynamic dimensions required for input: x, but no
shapes were provided. Automatically overriding shape to: 1x3x1x1", sampleEngines.cpp), so engine, benchmark
and output check would run a shape nobody configured; and a model without dynamic inputs must get no shapes
("Static model does not take explicit shapes ...").

The host decides the profile when it builds the target (``<precision>.trt.shapes.json`` beside the ONNX, shipped
with it): opt = ``input.shape`` (what the benchmark and the output check feed), min/max = the TensorRT profile's
``backend.min_shape`` / ``backend.max_shape`` when set, else opt. A dynamic input without a configured shape is
refused there in one line naming it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

SIDECAR_SUFFIX = ".shapes.json"


def model_inputs(onnx_path: Path) -> dict[str, list[int | str]]:
    """{input name: dims} of the model's graph inputs (initializers excluded); a dynamic dim is its name or '?'."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, list[int | str]] = {}
    for i in model.graph.input:
        if i.name in inits:
            continue
        out[i.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                       for d in i.type.tensor_type.shape.dim]
    return out


def profile_for(inputs: Mapping[str, Sequence[int | str]], configured: Mapping[str, Sequence[int]], *,
                min_shape: Sequence[int] | None = None, max_shape: Sequence[int] | None = None,
                where: str = "dmsbuild.toml", artifact: str = "") -> dict[str, dict[str, list[int]]]:
    """{input: {min, opt, max}} for every input with a dynamic dim ({} for a static model).

    ``configured``: the shape each input runs at (``input.shape`` for the model's input). ``min_shape`` and
    ``max_shape`` (the single image input's range) widen the profile; fixed dims must stay as the model has them."""
    profile: dict[str, dict[str, list[int]]] = {}
    for name, dims in inputs.items():
        dynamic = [k for k, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
        if not dynamic:
            continue
        opt = configured.get(name)
        if opt is None:
            raise UserError(
                f"{where}: artifact {artifact or '?'}: the model's input {name!r} has dynamic dims "
                f"{[dims[k] for k in dynamic]} (axes {dynamic}) and no shape is configured for it; TensorRT would build "
                "and run it at 1 for each",
                hint="configure that input's shape (input.shape names the model's one image input)")
        opt = [int(d) for d in opt]
        if len(opt) != len(dims):
            raise UserError(f"{where}: artifact {artifact or '?'}: the shape {opt} configured for input {name!r} has "
                            f"{len(opt)} dims; the model's input has {len(dims)} ({dims})",
                            hint="fix input.shape")
        ranges = {"min": list(min_shape) if min_shape is not None else opt, "opt": opt,
                  "max": list(max_shape) if max_shape is not None else opt}
        for which, shape in ranges.items():
            field = f"backend.{which}_shape"
            if len(shape) != len(dims) or any(int(v) <= 0 for v in shape):
                raise UserError(f"{where}: field '{field}' is {shape}; expected {len(dims)} positive dims like "
                                f"input.shape {opt}", hint=f"fix {field} or remove it (it defaults to input.shape)")
            fixed = [k for k, d in enumerate(dims) if isinstance(d, int) and d > 0 and int(shape[k]) != d]
            if fixed:
                raise UserError(f"{where}: field '{field}' is {shape}; dim {fixed[0]} of input {name!r} is fixed at "
                                f"{dims[fixed[0]]} in the model", hint=f"set {field}[{fixed[0]}] = {dims[fixed[0]]}")
        if any(int(a) > int(b) for a, b in zip(ranges["min"], opt)) or any(int(a) < int(b) for a, b in zip(ranges["max"], opt)):
            raise UserError(f"{where}: TensorRT profile for input {name!r}: min {ranges['min']} <= opt {opt} <= "
                            f"max {ranges['max']} does not hold per dim (opt is input.shape)",
                            hint="fix backend.min_shape / backend.max_shape")
        profile[name] = {k: [int(v) for v in s] for k, s in ranges.items()}
    if not profile and (min_shape is not None or max_shape is not None):
        raise UserError(f"{where}: field 'backend.{'min' if min_shape is not None else 'max'}_shape' is set, but the "
                        f"model has no dynamic dims (inputs {dict(inputs)}): TensorRT takes no shape range for it",
                        hint="remove backend.min_shape / backend.max_shape")
    return profile


def spec(shapes: Mapping[str, Sequence[int]]) -> str:
    """trtexec's shapes spec: ``'name':1x3x64x64[,...]`` (names single-quoted, as trtexec's help allows)."""
    for name in shapes:
        if "'" in name or "," in name:
            raise UserError(f"input name {name!r} cannot be passed to trtexec's --shapes (it holds a quote or a comma)",
                            hint="rename the model's input")
    return ",".join(f"'{name}':{'x'.join(str(int(d)) for d in dims)}" for name, dims in shapes.items())


def build_flags(profile: Mapping[str, Mapping[str, Sequence[int]]]) -> list[str]:
    """``--minShapes/--optShapes/--maxShapes`` for a build (none for a static model)."""
    if not profile:
        return []
    return [f"--{which}Shapes={spec({n: r[which] for n, r in profile.items()})}" for which in ("min", "opt", "max")]


def run_flags(profile: Mapping[str, Mapping[str, Sequence[int]]]) -> list[str]:
    """``--shapes`` for an inference run at the configured (opt) shape (none for a static model)."""
    return [f"--shapes={spec({n: r['opt'] for n, r in profile.items()})}"] if profile else []


def key(profile: Mapping[str, Mapping[str, Sequence[int]]]) -> str:
    """The profile as a stable string for the engine cache key ('' for a static model)."""
    return json.dumps(profile, sort_keys=True) if profile else ""


def write_sidecar(path: Path, onnx_path: Path, profile: Mapping[str, Any]) -> None:
    path.write_text(json.dumps({"onnx": onnx_path.name, "profile": profile}, indent=1, sort_keys=True) + "\n")


def parse_sidecar(text: str | None, where: str) -> dict[str, dict[str, list[int]]]:
    """The profile of a shipped ``*.trt.shapes.json`` ({} when absent: a release built before this file)."""
    if text is None:
        return {}
    try:
        profile = json.loads(text)["profile"]
        return {str(n): {w: [int(v) for v in r[w]] for w in ("min", "opt", "max")} for n, r in profile.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{where}: not a TensorRT shapes file ({exc})", hint="rebuild and redeploy the target") from None
