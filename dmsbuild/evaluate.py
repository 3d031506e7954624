"""How far each artifact's outputs are from the FP32 reference, on the validation set.

Per output head: max/mean absolute difference, cosine similarity, PSNR, and
for classification heads top-1 agreement with FP32 and (where labels exist)
labelled accuracy. ``gate`` turns a target's ``max_accuracy_drop`` into a
pass/fail with a message naming the artifact, the head and the numbers.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import ProjectConfig, TargetProfile
from .errors import UserError
from .names import head_keys

#: samples kept in reference.npz (docs/CONTRACTS.md §1)
REFERENCE_SAMPLES = 64


def run_onnx(path: Path, input_name: str, inputs: np.ndarray, output_names: list[str], threads: int = 0) -> dict[str, np.ndarray]:
    """Run an ONNX file on ORT CPU one sample at a time (works for fixed and dynamic batch alike)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    results: dict[str, list[np.ndarray]] = {n: [] for n in output_names}
    for i in range(len(inputs)):
        if i and i % 64 == 0:
            print(f"  {path.name}: {i}/{len(inputs)} samples", flush=True)
        outs = sess.run(output_names, {input_name: inputs[i:i + 1]})
        for n, o in zip(output_names, outs):
            results[n].append(np.asarray(o, dtype=np.float32))
    return {n: np.concatenate(v, axis=0) for n, v in results.items()}


def head_metrics(ref: np.ndarray, out: np.ndarray, classification: bool) -> dict[str, Any]:
    """Closeness of one head's outputs to the reference."""
    ref = ref.astype(np.float64)
    out = out.astype(np.float64)
    diff = np.abs(ref - out)
    a, b = ref.ravel(), out.ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom > 0 else (1.0 if np.array_equal(a, b) else 0.0)
    mse = float(np.mean((ref - out) ** 2))
    peak = float(np.max(ref) - np.min(ref)) or float(np.max(np.abs(ref))) or 1.0
    psnr = math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)
    m: dict[str, Any] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                         "cosine": cosine, "psnr_db": psnr if math.isfinite(psnr) else None}
    if classification:
        m["top1_agreement"] = float(np.mean(ref.reshape(len(ref), -1).argmax(-1) == out.reshape(len(out), -1).argmax(-1)))
    return m


def labelled_metrics(out: np.ndarray, labels: np.ndarray, classification: bool) -> dict[str, float]:
    if classification:
        return {"accuracy": float(np.mean(out.reshape(len(out), -1).argmax(-1) == labels.reshape(len(labels)).astype(int)))}
    return {"mae": float(np.mean(np.abs(out.reshape(labels.shape) - labels.astype(np.float64))))}


def write_reference(project: ProjectConfig, fp32: Path, validation: list[Path], npz: Path, full: Path) -> None:
    """FP32 outputs on the validation set: ``full`` for host evaluation, ``npz`` (first 64) for the board check."""
    from .data import load_labels, load_samples

    started = time.perf_counter()
    names, inputs = load_samples(validation, project, project.data.max_validation_samples)
    labels = load_labels(project, names)
    outs = run_onnx(fp32, project.input.name, inputs, project.outputs.names)
    # tensor names may hold '/', ':' or non-ASCII; npz member names are file names: store by safe id
    keys = head_keys(project.outputs.names)
    outs = {keys[n]: v for n, v in outs.items()}
    npz.parent.mkdir(parents=True, exist_ok=True)
    keep = min(len(inputs), REFERENCE_SAMPLES)
    _savez(npz, {"inputs": inputs[:keep], **{n: v[:keep] for n, v in outs.items()}})
    label_arrays = {f"label:{keys[h]}": v for h, v in (labels or {}).items()}
    _savez(full, {"inputs": inputs, "files": np.asarray([p.name for p in names]), **outs, **label_arrays})
    print(f"  reference: FP32 outputs on {len(inputs)} validation samples ({time.perf_counter() - started:.1f} s)", flush=True)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def evaluate_artifact(project: ProjectConfig, artifact: Path, full_reference: Path, out_json: Path) -> dict[str, Any]:
    """Metrics of one ONNX artifact vs FP32 (and vs labels), written as JSON."""
    started = time.perf_counter()
    ref = np.load(full_reference, allow_pickle=False)
    inputs = ref["inputs"]
    names = project.outputs.names
    keys = head_keys(names)
    outs = run_onnx(artifact, project.input.name, inputs, names)
    heads: dict[str, Any] = {}
    for n in names:
        cls = n in project.outputs.classification
        m = head_metrics(ref[keys[n]], outs[n], cls)
        key = f"label:{keys[n]}"
        if key in ref.files:
            m["labelled"] = labelled_metrics(outs[n], ref[key], cls)
            m["labelled_fp32"] = labelled_metrics(ref[keys[n]], ref[key], cls)
        heads[n] = m
    agreements = [h["top1_agreement"] for h in heads.values() if "top1_agreement" in h]
    result = {"artifact": str(artifact.relative_to(project.root)) if artifact.is_relative_to(project.root) else str(artifact),
              "samples": int(len(inputs)), "heads": heads,
              "min_top1_agreement": min(agreements) if agreements else None,
              "seconds": round(time.perf_counter() - started, 3)}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_json)
    low = result["min_top1_agreement"]
    shown = "n/a" if low is None else f"{low:.3f}"
    print(f"  evaluate: {artifact.name}: min top-1 agreement {shown} on {len(inputs)} samples", flush=True)
    return result


def max_drop_for(project: ProjectConfig, profile: TargetProfile) -> tuple[float, str]:
    """The target's allowed accuracy drop and where it was set."""
    if profile.gates.max_accuracy_drop is not None:
        return profile.gates.max_accuracy_drop, f"{profile.source}: gates.max_accuracy_drop"
    return project.accuracy.max_accuracy_drop, f"{project.source}: accuracy.max_accuracy_drop"


def accuracy_drops(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per classification head: drop of top-1 agreement (1 - agreement) and of labelled accuracy vs FP32."""
    drops: dict[str, dict[str, float]] = {}
    for head, m in result["heads"].items():
        if "top1_agreement" not in m:
            continue
        d = {"agreement": 1.0 - m["top1_agreement"]}
        if "labelled" in m and "accuracy" in m["labelled"]:
            d["labelled"] = m["labelled_fp32"]["accuracy"] - m["labelled"]["accuracy"]
        drops[head] = d
    return drops


def gate(project: ProjectConfig, profile: TargetProfile, artifact_name: str, result: dict[str, Any]) -> None:
    """Fail the target's build when an artifact drops accuracy by more than allowed."""
    limit, where = max_drop_for(project, profile)
    for head, d in accuracy_drops(result).items():
        for kind, value in d.items():
            if value > limit + 1e-9:
                what = "top-1 agreement with FP32" if kind == "agreement" else "labelled accuracy vs FP32"
                raise UserError(
                    f"target '{profile.name}': artifact '{artifact_name}' head '{head}' drops {what} by "
                    f"{value:.3f} ({result['samples']} validation samples), more than {where} = {limit}",
                    hint="calibrate with more representative data, change the quantization settings, drop that precision, "
                         "or raise the limit if the loss is acceptable",
                )
