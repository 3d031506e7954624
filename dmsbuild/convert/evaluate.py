"""How far each artifact's outputs are from the FP32 reference, on the validation set.

Per output head, with the definitions shared with the board
(``runner/metrics.py``): max/mean absolute difference, per-sample cosine,
SQNR, PSNR, a degenerate-output check and, for classification heads, top-1
agreement with FP32 and (where labels exist) labelled accuracy. ``gate``
applies the target's floors (``accuracy.py``) and fails the build with a line
naming the artifact, the head and the metric (docs/accuracy.md).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
# the metric definitions the board's output check uses too (one implementation; docs/accuracy.md)
from ..board.runner.metrics import head_metrics, reference_problem, verify_summary  # noqa: F401 (head_metrics: public API)
from ..names import head_keys

#: samples kept in reference.npz (docs/CONTRACTS.md §1)
REFERENCE_SAMPLES = 64


def sample_count(inputs: np.ndarray | dict[str, np.ndarray]) -> int:
    """Samples in a batch: one stacked array (one input) or ``{input name: stacked array}`` (several)."""
    return len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)


def take(inputs: np.ndarray | dict[str, np.ndarray], part: slice) -> np.ndarray | dict[str, np.ndarray]:
    """Samples ``part`` of a batch (every input's)."""
    return {n: v[part] for n, v in inputs.items()} if isinstance(inputs, dict) else inputs[part]


def feed_of(input_name: str, inputs: np.ndarray | dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Sample ``i`` of a batch as an ONNX Runtime feed (every input by its name)."""
    if isinstance(inputs, dict):
        return {n: v[i:i + 1] for n, v in inputs.items()}
    return {input_name: inputs[i:i + 1]}


def reference_input_arrays(inputs: np.ndarray | dict[str, np.ndarray], keep: int | None = None) -> dict[str, np.ndarray]:
    """The input members of reference.npz: ``inputs`` (one input, as always); several: ``inputs`` holds the first,
    ``inputs:1``… the others and ``input_names`` their names in order (read back by the board runner's
    ``reference_inputs``)."""
    part = slice(0, keep)
    if not isinstance(inputs, dict):
        return {"inputs": inputs[part]}
    names = list(inputs)
    out = {"inputs" if k == 0 else f"inputs:{k}": inputs[n][part] for k, n in enumerate(names)}
    return {**out, "input_names": np.asarray(names)}


def run_onnx(path: Path, input_name: str, inputs: np.ndarray | dict[str, np.ndarray], output_names: list[str],
             threads: int = 0) -> dict[str, np.ndarray]:
    """Run an ONNX file on ORT CPU one sample at a time (works for fixed and dynamic batch alike); ``inputs``:
    one stacked array fed as ``input_name``, or ``{input name: stacked array}`` for a model with several."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    results: dict[str, list[np.ndarray]] = {n: [] for n in output_names}
    total = sample_count(inputs)
    for i in range(total):
        if i and i % 64 == 0:
            print(f"  {path.name}: {i}/{total} samples", flush=True)
        outs = sess.run(output_names, feed_of(input_name, inputs, i))
        for n, o in zip(output_names, outs):
            results[n].append(np.asarray(o, dtype=np.float32))
    return {n: np.concatenate(v, axis=0) for n, v in results.items()}


def check_reference(outputs: dict[str, np.ndarray], source: str) -> None:
    """FP32 reference outputs that cannot judge an artifact are an error before any artifact is scored.

    NaN/Inf in any head, or every head (nearly) identical on every validation
    sample: the data does not exercise the model, and any artifact - even a
    constant one - would look like it agrees. A single head that does not vary
    while others do (a fixed anchor grid, say) is only reported.
    """
    problems = {h: reference_problem(v) for h, v in outputs.items()}
    for head, why in problems.items():
        if why is not None and why.startswith("NaN"):
            raise UserError(f"{source}: the FP32 model's output '{head}' has {why} on the validation set",
                            hint="check the model and the preprocessing ([preprocess] mean/std/scale); "
                                 "the reference must be finite to judge any artifact")
    constant = [h for h, why in problems.items() if why is not None]
    if constant and len(constant) == len(problems):
        head = constant[0]
        raise UserError(f"{source}: the FP32 outputs are {problems[head]} on every head ({', '.join(constant)}): "
                        "the validation data does not exercise the model",
                        hint="use real, varied validation inputs (data.validation) and check the preprocessing; "
                             "an accuracy gate on such data passes anything")
    for head in constant:
        print(f"  reference: warning: FP32 output '{head}' is {problems[head]}; its cosine/SQNR floors still apply, "
              "its constant-output check does not", flush=True)


def labelled_metrics(out: np.ndarray, labels: np.ndarray, classification: bool) -> dict[str, float]:
    if classification:
        return {"accuracy": float(np.mean(out.reshape(len(out), -1).argmax(-1) == labels.reshape(len(labels)).astype(int)))}
    mae = float(np.mean(np.abs(out.reshape(labels.shape) - labels.astype(np.float64))))
    return {"mae": mae if math.isfinite(mae) else None}


def write_reference(project: ProjectConfig, fp32: Path, validation: list[Path], npz: Path, full: Path) -> None:
    """FP32 outputs on the validation set: ``full`` for host evaluation, ``npz`` (first 64) for the board check."""
    from .data import load_labels, load_samples

    started = time.perf_counter()
    names, inputs = load_samples(validation, project, project.data.max_validation_samples)
    labels = load_labels(project, names)
    outs = run_onnx(fp32, project.input.name, inputs, project.outputs.names)
    count = sample_count(inputs)
    if count < 2:
        print(f"  reference: warning: {count} validation sample; the accuracy gate cannot tell a constant "
              "artifact from a good one - use at least 2 (better 100+)", flush=True)
    check_reference(outs, f"{project.source.name}: data.validation ({count} samples)")
    # tensor names may hold '/', ':' or non-ASCII; npz member names are file names: store by safe id
    keys = head_keys(project.outputs.names)
    outs = {keys[n]: v for n, v in outs.items()}
    npz.parent.mkdir(parents=True, exist_ok=True)
    keep = min(count, REFERENCE_SAMPLES)
    _savez(npz, {**reference_input_arrays(inputs, keep), **{n: v[:keep] for n, v in outs.items()}})
    label_arrays = {f"label:{keys[h]}": v for h, v in (labels or {}).items()}
    _savez(full, {**reference_input_arrays(inputs), "files": np.asarray([p.name for p in names]), **outs, **label_arrays})
    print(f"  reference: FP32 outputs on {count} validation samples ({time.perf_counter() - started:.1f} s)", flush=True)


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to the project (as build outputs name files), or absolute when it lies outside."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def evaluate_artifact(project: ProjectConfig, artifact: Path, full_reference: Path, out_json: Path,
                      run: Any = None) -> dict[str, Any]:
    """Metrics of one ONNX artifact vs FP32 (and vs labels), written as JSON.

    ``run``: a ``run_onnx``-like function for artifacts of another format (a .tflite, dmsbuild.backends.litert)."""
    started = time.perf_counter()
    from ..board.runner.dms_bench import reference_inputs

    ref = np.load(full_reference, allow_pickle=False)
    by_name = reference_inputs(ref)  # {None: array} for one input
    inputs = by_name[None] if None in by_name else by_name
    names = project.outputs.names
    keys = head_keys(names)
    outs = (run or run_onnx)(artifact, project.input.name, inputs, names)
    try:
        summary = verify_summary({n: ref[keys[n]] for n in names}, outs, project.outputs.classification,
                                 kinds=project.outputs.kind_table())
    except ValueError as exc:  # a declared kind that does not fit the output (axis, channel ranges)
        raise UserError(f"{project.source}: [outputs.kinds]: {exc}",
                        hint="fix the output's kind fields (docs/accuracy.md \"Outputs by kind\")") from None
    heads: dict[str, Any] = summary["heads"]
    for n in names:
        key = f"label:{keys[n]}"
        if key in ref.files:
            cls = n in project.outputs.classification
            heads[n]["labelled"] = labelled_metrics(outs[n], ref[key], cls)
            heads[n]["labelled_fp32"] = labelled_metrics(ref[keys[n]], ref[key], cls)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    # the first REFERENCE_SAMPLES samples' outputs (and FP32's, and labels): each target's gate judges its
    # first bench.verify_samples of them, the very samples its boards check (gate_heads)
    keep = min(sample_count(inputs), REFERENCE_SAMPLES)
    gate_npz = out_json.with_name(out_json.stem + ".gate.npz")
    _savez(gate_npz, {**{f"ref:{keys[n]}": ref[keys[n]][:keep] for n in names},
                      **{f"out:{keys[n]}": outs[n][:keep] for n in names},
                      **{k: ref[k][:keep] for k in ref.files if k.startswith("label:")}})
    result = {"artifact": _shown(artifact, project.root),
              "samples": sample_count(inputs), "heads": heads,
              "min_top1_agreement": summary["min_top1_agreement"],
              "gate_outputs": _shown(gate_npz, project.root), "gate_outputs_samples": keep,
              "seconds": round(time.perf_counter() - started, 3)}
    tmp = out_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_json)
    low = result["min_top1_agreement"]
    shown = "n/a" if low is None else f"{low:.3f}"
    cosines = [h["cosine"] for h in heads.values() if h["cosine"] is not None]
    broken = [f"{h} ({m['degenerate']})" for h, m in heads.items() if m["degenerate"]]
    print(f"  evaluate: {artifact.name}: min top-1 agreement {shown}, min cosine "
          f"{'n/a' if not cosines else format(min(cosines), '.4f')} on {sample_count(inputs)} samples"
          + (f"; DEGENERATE: {', '.join(broken)}" if broken else ""), flush=True)
    return result


def accuracy_drops(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per classification head: drop of top-1 agreement (1 - agreement) and of labelled accuracy vs FP32."""
    drops: dict[str, dict[str, float]] = {}
    for head, m in result["heads"].items():
        if m.get("top1_agreement") is None:
            continue
        d = {"agreement": 1.0 - m["top1_agreement"]}
        if "labelled" in m and "accuracy" in m["labelled"]:
            d["labelled"] = m["labelled_fp32"]["accuracy"] - m["labelled"]["accuracy"]
        drops[head] = d
    return drops


def gate_samples(profile: TargetProfile, available: int) -> int:
    """How many validation samples the target's accuracy gate judges: the first ``bench.verify_samples``
    (those its boards check; capped by what the build kept), or every one when the target has no board check."""
    n = profile.bench.verify_samples
    return available if n <= 0 else min(n, available, REFERENCE_SAMPLES)


def gate_heads(project: ProjectConfig, profile: TargetProfile, result: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The per-head metrics the target's gate judges, and on how many samples: the first ``gate_samples`` of
    the validation set, by the board's own metric code, so host and board judge the same samples by one rule.

    A result without its ``.gate.npz`` (built by hand, or by an older dmsbuild) is judged on its own figures."""
    available = int(result["samples"])
    n = gate_samples(profile, available)
    name = result.get("gate_outputs")
    if n == available or not name:
        return result["heads"], available
    path = project.root / name
    if not path.is_file():
        raise UserError(f"{path}: missing (the gate's outputs of {result['artifact']})",
                        hint="rebuild: doit forget evaluate && doit build")
    names, keys = project.outputs.names, head_keys(project.outputs.names)
    with np.load(path, allow_pickle=False) as z:
        summary = verify_summary({n_: z[f"ref:{keys[n_]}"][:n] for n_ in names}, {n_: z[f"out:{keys[n_]}"][:n] for n_ in names},
                                 project.outputs.classification)
        heads: dict[str, Any] = summary["heads"]
        for h in names:
            key = f"label:{keys[h]}"
            if key in z.files:
                cls = h in project.outputs.classification
                heads[h]["labelled"] = labelled_metrics(z[f"out:{keys[h]}"][:n], z[key][:n], cls)
                heads[h]["labelled_fp32"] = labelled_metrics(z[f"ref:{keys[h]}"][:n], z[key][:n], cls)
    return heads, n


def gate_failures(project: ProjectConfig, profile: TargetProfile, result: dict[str, Any]) -> list[str]:
    """Every floor one artifact's host evaluation misses on the target's gate samples (empty: it passes);
    see dmsbuild/core/accuracy.py."""
    from ..core.accuracy import failures, floors_for

    heads, n = gate_heads(project, profile, result)
    return failures(heads, floors_for(project, profile), n)


def gate(project: ProjectConfig, profile: TargetProfile, results: dict[str, dict[str, Any]]) -> None:
    """Fail the target's build when any artifact misses an accuracy floor on any head.

    The first line names the artifact, the head and the metric; every other
    failure follows, one per line.
    """
    lines = [f"target '{profile.name}': artifact '{name}' fails the accuracy gate: {problem}"
             for name, result in results.items() for problem in gate_failures(project, profile, result)]
    if lines:
        raise UserError("\n".join(lines),
                        hint="calibrate with more representative data, change the quantization settings, drop that "
                             "precision, or - if the loss is acceptable - lower that floor (docs/accuracy.md)")
