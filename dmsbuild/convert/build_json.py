"""The build.json contract (docs/CONTRACTS.md §1): written by ``doit build`` (``write_build``), read by the
release (``read_build``, used by ``ship.manifest`` and `doit tune`), in one module.

``write_build`` is the ``build:<target>`` action: it ships the target's artifacts into ``artifacts/<target>/``,
gates them on accuracy, writes ``summary.md``/``summary.json`` and then ``build.json`` (never a stale one
behind a failing gate). ``read_build`` refuses a missing, malformed or foreign-schema file and, before anything
is uploaded, any head name the board's result validation would reject.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..board.release_agent import sha256_of
from ..config import ProjectConfig, TargetProfile, as_dict, static_quant_for
from ..errors import UserError
from .paths import Paths


def _rel(proj: ProjectConfig, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(proj.root.resolve()))
    except ValueError:
        return str(path)


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and \
            sha256_of(dst, follow_symlinks=True) == sha256_of(src, follow_symlinks=True):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def summary_rows(proj: ProjectConfig, prof: TargetProfile, plans: list[Any], evals: dict[str, dict],
                 fp32_size: int) -> list[dict[str, Any]]:
    """One row per artifact: size, compression vs FP32, closeness to FP32, labelled accuracy loss, gate verdict."""
    from .evaluate import accuracy_drops, gate_failures

    rows = []
    for plan in plans:
        ev = evals[plan.name]
        size = plan.path.stat().st_size + sum(f.stat().st_size for f in plan.extra_files)  # a QNN context's .bin counts
        heads = ev["heads"]
        drops = accuracy_drops(ev)
        labelled = [h["labelled"]["accuracy"] for h in heads.values() if "accuracy" in h.get("labelled", {})]
        labelled_fp32 = [h["labelled_fp32"]["accuracy"] for h in heads.values() if "accuracy" in h.get("labelled_fp32", {})]
        rows.append({
            "artifact": plan.name, "precision": plan.precision, "kind": plan.kind, "size": size,
            "compression": fp32_size / size if size else None,
            "min_top1_agreement": ev["min_top1_agreement"],
            "min_cosine": min((h["cosine"] for h in heads.values()), key=lambda c: -2.0 if c is None else c),
            "min_sqnr_db": _min_sqnr(heads.values()),
            "max_abs_diff": max((h["max_abs_diff"] for h in heads.values()), key=lambda d: float("inf") if d is None else d),
            "labelled_accuracy": sum(labelled) / len(labelled) if labelled else None,
            "accuracy_loss": (sum(labelled_fp32) - sum(labelled)) / len(labelled) if labelled else None,
            "max_drop": max((v for d in drops.values() for v in d.values()), default=0.0),
            "gate_failures": gate_failures(proj, prof, ev),
        })
    return rows


def _min_sqnr(heads: Any) -> float | None:
    """The worst head's SQNR in dB; None when every head is identical to FP32 (infinite SQNR)."""
    values = [h["sqnr_db"] for h in heads if h.get("sqnr_db") is not None]
    return min(values) if values else None


def format_summary(target: str, rows: list[dict[str, Any]], floors: dict[str, Any], samples: int) -> str:
    """The source article's tables in one: size per precision with compression ratio, accuracy loss per precision,
    and the accuracy gate's verdict (floors: ``AccuracyFloors.as_dict()``)."""
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def num(v: float | None, fmt: str, none: str = "n/a") -> str:
        return none if v is None else format(v, fmt)

    d = floors["default"]
    per_head = f"; own floors for {', '.join(floors['overridden'])}: see summary.json" if floors.get("overridden") else ""
    lines = [f"### {target}: artifacts vs FP32 ({samples} validation samples; floors: top-1 drop <= {pct(d['max_accuracy_drop'])}, "
             f"cosine >= {d['min_cosine']:g}, SQNR >= {d['min_sqnr_db']:g} dB{per_head})", "",
             "| artifact | precision | size MB | FP32 size / size | top-1 agreement (min head) | cosine (min head) | SQNR dB (min head) | labelled acc (mean) | acc loss | max drop | gate |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        failed = r["gate_failures"]
        verdict = "pass" if not failed else f"FAIL ({len(failed)})"
        lines.append(
            f"| {r['artifact']} | {r['precision']} | {r['size'] / 1e6:.2f} | "
            f"{'n/a' if r['compression'] is None else format(r['compression'], '.2f') + 'x'} | "
            f"{pct(r['min_top1_agreement'])} | {num(r['min_cosine'], '.5f')} | {num(r['min_sqnr_db'], '.1f', 'identical')} | "
            f"{pct(r['labelled_accuracy'])} | {pct(r['accuracy_loss'])} | {pct(r['max_drop'])} | {verdict} |")
    failed = [f"- {r['artifact']}: {line}" for r in rows for line in r["gate_failures"]]
    if failed:
        lines += ["", "Accuracy gate failures:", *failed]
    if any(r["precision"] == "int8-dynamic" for r in rows):
        lines += ["", "Note: dynamic INT8 quantizes activations at run time; on x86 CPUs it measured several times "
                  "slower than FP32 (bench/bench_build.py). Measure it on the board before choosing it."]
    return "\n".join(lines) + "\n"


def write_build(proj: ProjectConfig, prof: TargetProfile, plans: list[Any], out_dir: Path) -> None:
    """Ship the target's artifacts, gate them on accuracy, write summary.md/json and build.json (docs/CONTRACTS.md §1)."""
    from ..core.accuracy import floors_for
    from ..names import head_keys
    from .evaluate import gate

    p = Paths.of(proj)
    build_json = out_dir / "build.json"
    if build_json.exists():
        build_json.unlink()  # never leave a stale build.json behind a failing gate
    from .tuned import check_model, read_tuned, tuned_path

    tuned = read_tuned(proj, prof)
    if tuned is not None:  # a tuned choice holds only for the model it was tuned on
        try:
            check_model(tuned, tuned_path(proj, prof.name), sha256_of(p.fp32, follow_symlinks=True), prof.name)
        except UserError as exc:
            if any(plan.session for plan in plans):
                raise
            print(f"warning: {exc.message} (it kept the default, which ships now)", flush=True)
    evals: dict[str, dict] = {}
    for plan in plans:
        if plan.build is None and plan.path != plan.source:
            _copy_if_changed(plan.source, plan.path)
        evals[plan.name] = json.loads((plan.eval_json or p.eval_json(plan.source)).read_text())
    fp32_size = p.fp32.stat().st_size
    floors = floors_for(proj, prof).as_dict()
    floors["overridden"] = sorted(set(proj.accuracy.heads) | set(prof.gates.heads))  # heads with their own floors
    samples = next(iter(evals.values()))["samples"] if evals else 0
    rows = summary_rows(proj, prof, plans, evals, fp32_size)
    table = format_summary(prof.name, rows, floors, samples)
    (out_dir / "summary.md").write_text(table)
    (out_dir / "summary.json").write_text(json.dumps({"target": prof.name, "max_accuracy_drop": floors["default"]["max_accuracy_drop"],
                                                       "floors": floors, "fp32_size": fp32_size, "rows": rows}, indent=2) + "\n")
    print(table, flush=True)
    gate(proj, prof, {plan.name: evals[plan.name] for plan in plans})
    info = json.loads(p.fp32_info.read_text())
    static = static_quant_for(proj, prof)
    # the artifact keeps the name int8-qdq whatever its format; this says what is inside (docs/CONTRACTS.md §1)
    quantization = {"format": static.quant_format, "nodes_to_exclude": sorted(set(static.nodes_to_exclude)),
                    "activation_type": static.activation_type, "weight_type": static.weight_type,
                    "per_channel": static.per_channel, "method": static.method}
    versions = info.get("versions", {})
    toolchain = {"torch": versions.get("torch"), "onnx": versions.get("onnx"), "onnxruntime": versions.get("onnxruntime"),
                 "exporter": info.get("exporter"), "opset": info.get("opset")}
    doc = {
        "schema": 1, "project": proj.name, "target": prof.name,
        "input": as_dict(proj.input),
        **({"inputs": [as_dict(i) for i in proj.inputs]} if proj.several_inputs else {}),  # every input, in order
        # keys: original tensor name -> safe id used in reference.npz and the board's verify JSON
        "outputs": {**as_dict(proj.outputs), "keys": head_keys(proj.outputs.names)},
        "artifacts": [{
            "name": plan.name, "precision": plan.precision, "kind": plan.kind, "path": _rel(proj, plan.path),
            "extra_files": [_rel(proj, f) for f in plan.extra_files],
            "sha256": sha256_of(plan.path, follow_symlinks=True), "size": plan.path.stat().st_size,
            "runtime": plan.runtime, "providers": plan.providers, "provider_options": plan.provider_options,
            "portable": plan.portable, "eval": evals[plan.name],
            **({"session": plan.session} if plan.session else {}),
            **({"quantization": plan.settings["quantization"]} if "quantization" in plan.settings else
               {"quantization": quantization} if plan.precision == "int8-qdq" else {}),
        } for plan in plans],
        "reference": _rel(proj, p.reference),
        "toolchain": toolchain,
        # the model's identity (the latency gate's lineage, named in every report table): content = the FP32 ONNX
        "model": {"file": Path(proj.model.onnx or proj.model.checkpoint or proj.model.factory or "model").name,
                  "sha256": sha256_of(p.fp32, follow_symlinks=True)},
        # what the import changed in the model (dmsbuild.convert.model_import.normalise), one record per change
        "import": info.get("import", []),
    }
    tmp = build_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, build_json)
    print(f"  build: {_rel(proj, build_json)} ({len(plans)} artifacts)", flush=True)


def read_build(project: ProjectConfig, target: str) -> tuple[Path, dict[str, Any]]:
    path = project.artifacts / target / "build.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; target '{target}' has not been built", hint=f"run: doit build target={target}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON ({exc})", hint=f"rebuild: doit build target={target}") from None
    if data.get("schema") != 1 or not isinstance(data.get("artifacts"), list) or not data["artifacts"]:
        raise UserError(f"{path}: expected schema 1 with a non-empty 'artifacts' list", hint=f"rebuild: doit build target={target}")
    check_board_names(data, path)
    return path, data


def check_board_names(build: dict[str, Any], source: Path) -> None:
    """Before anything is uploaded: every name the board's result validation checks (dmsbuild.core.results,
    CONTRACTS §3) must pass here, so a tensor name like ``gpu_0/softmax_1`` cannot cost a rollback.

    Heads are reported by the safe id in ``outputs.keys`` (dmsbuild.names); artifact names, target and
    project names are validated at config load."""
    from ..names import SAFE_RE

    outputs = build.get("outputs") or {}
    keys = outputs.get("keys") or {}
    for name in outputs.get("names") or []:
        key = keys.get(name, name)
        if not isinstance(key, str) or not SAFE_RE.fullmatch(key):
            raise UserError(f"{source}: output '{name}' would be reported by the board under the key {key!r}, which its "
                            "result validation rejects (letters, digits, '_', '.', '-', at most 64)",
                            hint="rebuild with this dmsbuild (it maps tensor names to safe ids): doit build")


__all__ = ["check_board_names", "format_summary", "read_build", "summary_rows", "write_build"]
