"""`doit tune`'s host side: build a recipe's ONNX file once, and gate it on accuracy before any board time.

A recipe that fails the host accuracy gate is never measured. ``build_tuned`` is the ``tuned:<target>``
action: it rebuilds the chosen recipe's file for ``doit build`` (no tuning).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...convert.tuned import (Recipe, check_model, read_tuned, recipe_path, shipped_choice, tuned_path, tuned_recipe,
                            write_atomic)
from ...config import TargetProfile
from ...errors import UserError

if TYPE_CHECKING:
    from ...config import ProjectConfig

def build_recipe(proj: "ProjectConfig", prof: TargetProfile, recipe: Recipe, model_sha: str) -> Path:
    """The recipe's ONNX file, built once (each quantizer writes to a temporary name and renames); a recipe of
    another runtime of the space (``recipe.runtime``: LiteRT) is built by that runtime's backend, its host
    evaluation beside (``Backend.tune_build``)."""
    from ...config import DynamicQuantConfig, static_quant_for
    from ...convert.quantize import convert_fp16, quantize_dynamic_int8, quantize_static_qdq
    from ...convert.paths import Paths

    if recipe.runtime is not None:
        from ...backends import get_backend

        return get_backend(recipe.runtime, str(prof.source)).tune_build(proj, prof, recipe, model_sha)
    out = recipe_path(proj, recipe, model_sha)
    if out.is_file():
        return out
    fp32 = Paths.of(proj).fp32
    if recipe.precision == "fp16":
        convert_fp16(fp32, out)
    elif recipe.precision == "int8-dynamic":
        quantize_dynamic_int8(fp32, out, DynamicQuantConfig(per_channel=bool(recipe.per_channel),
                                                            weight_type=recipe.weight_type or "QInt8"))
    else:
        from ...convert.data import list_samples

        base = static_quant_for(proj, prof)
        changes: dict[str, Any] = {"per_channel": recipe.per_channel, "activation_type": recipe.activation_type,
                                   "weight_type": recipe.weight_type, "calibration_method": recipe.calibration_method,
                                   "method": "ptq"}
        names = {f.name for f in dataclasses.fields(base)}
        if "quant_format" in names:
            changes["quant_format"] = "QOperator" if recipe.precision == "int8-qoperator" else "QDQ"
        cfg = dataclasses.replace(base, **changes)
        calibration = list_samples(proj, "calibration", proj.data.max_calibration_samples)
        if recipe.mixed_precision:
            _build_mixed(proj, prof, recipe, model_sha, cfg, calibration, out)
        else:
            quantize_static_qdq(proj, fp32, out, cfg, calibration)
    return out


def _build_mixed(proj: "ProjectConfig", prof: TargetProfile, recipe: Recipe, model_sha: str, cfg: Any,
                 calibration: list[Path], out: Path) -> None:
    """The recipe with the fewest nodes kept in float that passes the host gate (dmsbuild.convert.mixed_precision ranks
    the nodes by the accuracy their quantization costs; node sets of the top 1, 2, 4, 8 are tried smallest
    first). None passing: the largest set is kept, and the gate reports it. The nodes go to ``<out>.nodes.json``."""
    from ...convert.quantize import quantize_static_qdq
    from ...convert.paths import Paths

    from ...convert import mixed_precision as api

    fp32 = Paths.of(proj).fp32
    plain = build_recipe(proj, prof, dataclasses.replace(recipe, mixed_precision=False, precision="int8-qdq"), model_sha)
    sets = api.fallback_candidates(api.rank_nodes(proj, prof, fp32, plain))
    if not sets:
        raise UserError(f"{plain}: no quantized node to keep in float; the mixed-precision candidate is the plain one")
    tmp = out.with_name(f".{out.stem}.mixed.onnx")
    for nodes in sorted(sets, key=len):
        quantize_static_qdq(proj, fp32, tmp, dataclasses.replace(cfg, nodes_to_exclude=sorted(set(nodes))), calibration)
        _, failed = host_gate(proj, prof, tmp)
        if not failed:
            break
    write_atomic(out.with_suffix(".nodes.json"), json.dumps({"nodes_to_exclude": sorted(set(nodes))}) + "\n")
    Paths.of(proj).eval_json(tmp).unlink(missing_ok=True)  # the kept file is evaluated under its own name
    os.replace(tmp, out)


def host_gate(proj: "ProjectConfig", prof: TargetProfile, path: Path) -> tuple[dict[str, Any], list[str]]:
    """(host evaluation vs FP32, the accuracy gate's failures): cached beside the shared artifacts' evaluations."""
    from ...convert.evaluate import evaluate_artifact, gate_failures
    from ...convert.paths import Paths

    p = Paths.of(proj)
    out = p.eval_json(path)
    if out.is_file() and out.stat().st_mtime >= path.stat().st_mtime:
        ev = json.loads(out.read_text())
    else:
        ev = evaluate_artifact(proj, path, p.validation, out)
    return ev, gate_failures(proj, prof, ev)


def accuracy_summary(ev: dict[str, Any]) -> dict[str, Any]:
    """The accuracy figures a choice is explained with: worst-head top-1 agreement and cosine vs FP32."""
    cos = [h["cosine"] for h in ev["heads"].values() if h.get("cosine") is not None]
    return {"min_top1_agreement": ev.get("min_top1_agreement"), "min_cosine": min(cos) if cos else None,
            "samples": ev.get("samples")}


def build_tuned(proj: "ProjectConfig", prof: TargetProfile) -> None:
    """The `tuned:<target>` action: (re)build the chosen recipe's file and its host evaluation; no tuning."""
    from ...board.release_agent import sha256_of
    from ...convert.paths import Paths

    data = read_tuned(proj, prof)
    choice = shipped_choice(data) if data else None
    if choice is None:
        return
    p = Paths.of(proj)
    sha = sha256_of(p.fp32, follow_symlinks=True)
    check_model(data, tuned_path(proj, prof.name), sha, prof.name)  # type: ignore[arg-type]
    recipe, _ = tuned_recipe(choice)
    if recipe.runtime is not None:
        from .space import part_of

        part_of(prof, recipe, str(tuned_path(proj, prof.name)))
    path = build_recipe(proj, prof, recipe, sha)
    host_gate(proj, prof, path)


__all__ = ["accuracy_summary", "build_recipe", "build_tuned", "host_gate", "recipe_path"]
