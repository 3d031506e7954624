"""doit tasks of the host build: export -> fp16 / int8-dynamic / int8-qdq -> evaluate -> build:<target>.

Shared artifacts live in ``artifacts/common/``; a static QDQ variant is named
by a hash of its settings (``int8-qdq-<key>.onnx``), so targets whose
consumers want the same settings share one file and changing one target's
settings rebuilds only that target's variant. Up-to-date checks are doit's
``file_dep`` (md5 of content, so a ``touch`` rebuilds nothing) and
``config_changed`` on the settings each step reads.

Generators only read TOML and list folders; the actions import torch, onnx
and onnxruntime when they run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from ..measure.accuracy import floors_for
from ..config import (PRECISIONS, ProjectConfig, TargetProfile, as_dict, static_quant_field, static_quant_for,
                      target_names)
from ..build.paths import Paths, qdq_key as _qdq_key  # re-exported: bench/ and tests use them from here
from ..errors import UserError
from . import params, profile, project, selected_targets, user_error_task


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def guarded(fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """A doit action running ``fn``; a UserError becomes TaskFailed with its message (no traceback).

    ``fn`` may be ``"module:function"``, imported only when the action runs
    (keeps numpy & co. out of ``doit list``).
    """

    def action() -> Any:
        target = fn
        if isinstance(target, str):
            import importlib

            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
        try:
            target(*args, **kwargs)
        except UserError as exc:
            from doit.exceptions import TaskFailed

            return TaskFailed(str(exc))
        return None

    action.__name__ = fn.rpartition(":")[2] if isinstance(fn, str) else getattr(fn, "__name__", "action")
    return action


def _fail_task(basename: str, exc: UserError, targets: list[Path] | None = None) -> dict:
    task = user_error_task(basename, "", exc)
    task.pop("name")
    if targets:
        task["targets"] = [str(t) for t in targets]
    return task


def sources_for(proj: ProjectConfig, prof: TargetProfile) -> dict[str, Path]:
    """The host-built ONNX file of each precision, as this target's consumer wants it."""
    p = Paths.of(proj)
    table = {"fp32": p.fp32, "fp16": p.fp16, "int8-dynamic": p.dynamic, "int8-qdq": p.qdq(_qdq_key(proj, prof))}
    return {k: table[k] for k in PRECISIONS if k in prof.precisions}


def _loadable_profiles(proj: ProjectConfig) -> list[TargetProfile]:
    out = []
    for name in target_names(proj.root):
        try:
            out.append(profile(name))
        except UserError:
            continue  # reported by its build:<name> task
    return out


def _project_or_none() -> tuple[ProjectConfig | None, UserError | None]:
    try:
        return project(), None
    except UserError as exc:
        return None, exc


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------
@params()
def task_export() -> dict:
    """FP32 ONNX from the PyTorch factory + checkpoint (or your ONNX), checked, with a sidecar JSON."""
    proj, err = _project_or_none()
    if proj is None:
        return _fail_task("export", err)  # type: ignore[arg-type]
    from ..build.export import factory_source

    p = Paths.of(proj)
    m = proj.model
    deps: list[Path] = []
    try:
        if m.onnx is not None:
            deps.append(proj.existing_file(m.onnx, proj.source, "model.onnx", hint="put your ONNX file there or fix model.onnx"))
        else:
            mod = factory_source(proj)
            if mod is not None:
                deps.append(mod)
            if m.checkpoint is not None:
                deps.append(proj.existing_file(m.checkpoint, proj.source, "model.checkpoint", show_path=True,
                                               hint="train or copy the checkpoint there, or fix model.checkpoint"))
        for extra in m.sources:
            f = proj.path(extra)
            if f is None or not f.is_file():
                raise UserError(f"{proj.source}: field 'model.sources' names {extra!r}, which does not exist")
            deps.append(f)
    except UserError as exc:
        return _fail_task("export", exc, [p.fp32, p.fp32_info])
    from ..build.export import export_model

    settings = {"model": as_dict(m), "input": as_dict(proj.input), "outputs": as_dict(proj.outputs),
                "export": as_dict(proj.export)}
    return {
        "actions": [guarded(export_model, proj, p.fp32, p.fp32_info)],
        "file_dep": [str(d) for d in deps],
        "targets": [str(p.fp32), str(p.fp32_info)],
        "uptodate": [config_changed(json.dumps(settings, sort_keys=True))],
        "clean": True,
    }


# --------------------------------------------------------------------------
# quantize
# --------------------------------------------------------------------------
@params()
def task_quantize() -> Iterator[dict]:
    """FP16, INT8 dynamic and one static INT8 QDQ variant per distinct set of target settings."""
    proj, err = _project_or_none()
    if proj is None:
        yield user_error_task("quantize", "config", err)  # type: ignore[arg-type]
        return
    from ..build.quantize import convert_fp16, quantize_dynamic_int8, quantize_static_qdq, static_settings

    p = Paths.of(proj)
    yield {"name": "fp16", "actions": [guarded(convert_fp16, p.fp32, p.fp16)],
           "file_dep": [str(p.fp32)], "targets": [str(p.fp16)], "clean": True}
    yield {"name": "int8-dynamic", "actions": [guarded(quantize_dynamic_int8, p.fp32, p.dynamic, proj.quantization.dynamic)],
           "file_dep": [str(p.fp32)], "targets": [str(p.dynamic)], "clean": True,
           "uptodate": [config_changed(json.dumps(as_dict(proj.quantization.dynamic), sort_keys=True))]}

    variants: dict[str, Any] = {}
    fields: dict[str, list[str]] = {}  # key -> where its nodes_to_exclude is set (named in a bad-name error)
    for prof in _loadable_profiles(proj):
        if "int8-qdq" in prof.precisions:
            try:
                key = _qdq_key(proj, prof)
                variants.setdefault(key, static_quant_for(proj, prof))
            except UserError:
                continue  # a format the target's consumer cannot take: reported by its build:<name> task
            where = static_quant_field(proj, prof, "nodes_to_exclude")
            if where not in fields.setdefault(key, []):
                fields[key].append(where)
    if not variants:
        return
    from ..build.data import list_samples

    try:
        calibration = list_samples(proj, "calibration", proj.data.max_calibration_samples)
    except UserError as exc:
        for key in variants:
            task = user_error_task("quantize", f"int8-qdq-{key}", exc)
            task["targets"] = [str(p.qdq(key))]
            yield task
        return
    names = [f.name for f in calibration]
    for key, cfg in sorted(variants.items()):
        settings = {"static": static_settings(cfg, for_key=False), "files": names, "preprocess": as_dict(proj.preprocess),
                    "input": as_dict(proj.input), "loader": proj.data.loader}
        if cfg.method == "qat":
            yield _qat_task(proj, p, key, cfg, calibration, settings)
            continue
        yield {"name": f"int8-qdq-{key}",
               "doc": f"static QDQ: {cfg.activation_type} activations, {cfg.calibration_method}",
               "actions": [guarded(quantize_static_qdq, proj, p.fp32, p.qdq(key), cfg, calibration, "; ".join(fields[key]))],
               "file_dep": [str(p.fp32), *map(str, calibration)],
               "targets": [str(p.qdq(key))], "clean": True,
               "uptodate": [config_changed(json.dumps(settings, sort_keys=True))]}


def _qat_task(proj: ProjectConfig, p: Paths, key: str, cfg: Any, calibration: list[Path], settings: dict) -> dict:
    """QAT (and pruning) for one variant: cached by the FP32 model, the training data and every setting (docs/qat.md)."""
    from ..build.qat import report_path, training_files, tuned_fp32_path

    out = p.qdq(key)
    try:
        train = training_files(proj, cfg.qat)
    except UserError as exc:
        task = user_error_task("quantize", f"int8-qdq-{key}", exc)
        task["targets"] = [str(out)]
        return task
    settings = {**settings, "qat_files": [f.name for f in train], "outputs": as_dict(proj.outputs),
                "export": as_dict(proj.export)}
    what = f"prune {cfg.prune.fraction:.0%} + " if cfg.prune.fraction > 0 else ""
    return {"name": f"int8-qdq-{key}",
            "doc": f"{what}QAT ({cfg.qat.steps} steps, distillation) then QDQ: {cfg.activation_type} activations",
            "actions": [guarded("dmsbuild.build.qat:run_qat", proj, p.fp32, out, cfg, calibration)],
            "file_dep": [str(p.fp32), *map(str, calibration), *map(str, train)],
            "targets": [str(out), str(report_path(out)), str(tuned_fp32_path(out))], "clean": True,
            "uptodate": [config_changed(json.dumps(settings, sort_keys=True))]}


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------
@params()
def task_evaluate() -> Iterator[dict]:
    """FP32 reference outputs on the validation set, then every shared ONNX artifact scored against them."""
    proj, err = _project_or_none()
    if proj is None:
        yield user_error_task("evaluate", "config", err)  # type: ignore[arg-type]
        return
    from ..build.data import list_samples

    p = Paths.of(proj)
    try:
        validation = list_samples(proj, "validation", proj.data.max_validation_samples)
        deps = [p.fp32, *validation]
        if proj.data.labels is not None:
            labels = proj.path(proj.data.labels)
            if labels is None or not labels.is_file():
                raise UserError(f"{proj.source}: field 'data.labels' is {proj.data.labels!r}, which does not exist",
                                hint="create that JSON file or remove data.labels")
            deps.append(labels)
    except UserError as exc:
        task = user_error_task("evaluate", "reference", exc)
        task["targets"] = [str(p.reference), str(p.validation)]
        yield task
    else:
        settings = {"files": [f.name for f in validation], "preprocess": as_dict(proj.preprocess),
                    "input": as_dict(proj.input), "outputs": as_dict(proj.outputs),
                    "max": proj.data.max_validation_samples, "loader": proj.data.loader}
        yield {"name": "reference", "actions": [guarded("dmsbuild.build.evaluate:write_reference", proj, p.fp32, validation, p.reference, p.validation)],
               "file_dep": [str(d) for d in deps], "targets": [str(p.reference), str(p.validation)], "clean": True,
               "uptodate": [config_changed(json.dumps(settings, sort_keys=True))]}

    onnx_files: dict[Path, None] = {}
    for prof in _loadable_profiles(proj):
        try:
            sources = sources_for(proj, prof)
        except UserError:
            continue  # reported by its build:<name> task
        for src in sources.values():
            onnx_files[src] = None
    for src in onnx_files:
        out = p.eval_json(src)
        yield {"name": src.stem, "actions": [guarded("dmsbuild.build.evaluate:evaluate_artifact", proj, src, p.validation, out)],
               "file_dep": [str(src), str(p.validation)], "targets": [str(out)], "clean": True,
               # what the outputs mean decides their metrics: a changed kind or class axis re-evaluates
               "uptodate": [config_changed(json.dumps(as_dict(proj.outputs), sort_keys=True))]}


# --------------------------------------------------------------------------
# build:<target>
# --------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rel(proj: ProjectConfig, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(proj.root.resolve()))
    except ValueError:
        return str(path)


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and _sha256(dst) == _sha256(src):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def summary_rows(proj: ProjectConfig, prof: TargetProfile, plans: list[Any], evals: dict[str, dict],
                 fp32_size: int) -> list[dict[str, Any]]:
    """One row per artifact: size, compression vs FP32, closeness to FP32, labelled accuracy loss, gate verdict."""
    from ..build.evaluate import accuracy_drops, gate_failures

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
    from ..build.evaluate import gate
    from ..names import head_keys

    p = Paths.of(proj)
    build_json = out_dir / "build.json"
    if build_json.exists():
        build_json.unlink()  # never leave a stale build.json behind a failing gate
    from ..measure.tune import check_model, read_tuned, tuned_path

    tuned = read_tuned(proj, prof)
    if tuned is not None:  # a tuned choice holds only for the model it was tuned on
        try:
            check_model(tuned, tuned_path(proj, prof.name), _sha256(p.fp32), prof.name)
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
        # keys: original tensor name -> safe id used in reference.npz and the board's verify JSON
        "outputs": {**as_dict(proj.outputs), "keys": head_keys(proj.outputs.names)},
        "artifacts": [{
            "name": plan.name, "precision": plan.precision, "kind": plan.kind, "path": _rel(proj, plan.path),
            "extra_files": [_rel(proj, f) for f in plan.extra_files],
            "sha256": _sha256(plan.path), "size": plan.path.stat().st_size,
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
                  "sha256": _sha256(p.fp32)},
        # what the import changed in the model (dmsbuild.build.model_import.normalise), one record per change
        "import": info.get("import", []),
    }
    tmp = build_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, build_json)
    print(f"  build: {_rel(proj, build_json)} ({len(plans)} artifacts)", flush=True)


def _target_tasks(proj: ProjectConfig, name: str) -> Iterator[dict]:
    from ..backends import get_backend

    prof = profile(name)
    backend = get_backend(prof.runtime, f"{prof.source}")
    plans = backend.plan(proj, prof, sources_for(proj, prof))
    p = Paths.of(proj)
    out_dir = proj.artifacts / prof.name
    tuned_deps = list(_tuned_tasks(proj, prof, plans, out_dir))  # `doit tune`'s choice leads the release
    deps = {str(p.reference), str(p.fp32), str(p.fp32_info)}
    targets = [str(out_dir / "summary.md"), str(out_dir / "summary.json"), str(out_dir / "build.json")]
    for plan in plans:
        deps.add(str(p.eval_json(plan.source)))
        if plan.build is not None:
            yield {"basename": "compile", "name": f"{prof.name}.{plan.name}",
                   "actions": [guarded(plan.build)],
                   "file_dep": [str(plan.source), *map(str, plan.file_dep)],
                   "targets": [str(plan.path), *map(str, plan.extra_files)], "clean": True,
                   "uptodate": [config_changed(json.dumps(plan.settings, sort_keys=True, default=str))]}
            deps.add(str(plan.path))
            deps.update(map(str, plan.extra_files))
        else:
            deps.add(str(plan.source))
            if plan.path != plan.source:
                targets.append(str(plan.path))
    settings = {k: v for k, v in as_dict(prof).items() if k not in ("deploy", "bench", "description", "transport", "tune")}
    if prof.quantization is not None:  # new fields at their defaults leave the recorded settings as they were
        from ..build.quantize import static_settings

        settings["quantization"] = static_settings(prof.quantization, for_key=False)
    settings["accuracy"] = as_dict(proj.accuracy)  # the project's floors (the target's are in settings["gates"])
    floors_for(proj, prof)  # a [gates.heads.<head>] naming no head of the model fails here, before any build step
    settings["gate_samples"] = prof.bench.verify_samples  # the gate judges these first samples, host and board alike
    settings["project"] = {"name": proj.name, "input": as_dict(proj.input), "outputs": as_dict(proj.outputs)}
    yield from tuned_deps
    if tuned_deps:
        deps.add(str(_tuned_file(proj, prof)))
    yield {"basename": "build", "name": prof.name, "doc": f"artifacts + build.json for target {prof.name}",
           "actions": [guarded("dmsbuild.tasks.build:write_build", proj, prof, plans, out_dir)],
           "task_dep": [f"tuned:{prof.name}"] if tuned_deps else [],
           "file_dep": sorted(deps), "targets": targets, "clean": True,
           "uptodate": [config_changed(json.dumps(settings, sort_keys=True, default=str))]}


def _tuned_file(proj: ProjectConfig, prof: TargetProfile) -> Path:
    from ..measure.tune import tuned_path

    return tuned_path(proj, prof.name)


def _tuned_tasks(proj: ProjectConfig, prof: TargetProfile, plans: list[Any], out_dir: Path) -> Iterator[dict]:
    """With a targets/<name>.tuned.toml: put the chosen artifact first in ``plans`` (the release's default, with
    its session settings) and yield the ``tuned:<name>`` task that rebuilds its file if missing (no tuning)."""
    from ..backends import ArtifactPlan
    from ..measure.tune import TUNED_NAME, read_tuned, recipe_path, shipped_choice, tuned_recipe

    data = read_tuned(proj, prof)
    choice = shipped_choice(data) if data else None
    if choice is None or prof.runtime != "onnxruntime":
        return
    recipe, settings = tuned_recipe(choice)
    p = Paths.of(proj)
    source = recipe_path(proj, recipe, str(data["model_sha256"]))  # type: ignore[index]
    first = plans[0]
    plans.insert(0, ArtifactPlan(name=TUNED_NAME, precision=recipe.precision, kind="onnx", path=out_dir / f"{TUNED_NAME}.onnx",
                                 source=source, runtime=first.runtime, providers=list(first.providers),
                                 provider_options=list(first.provider_options), portable=True,
                                 session=settings.as_dict(), settings=_tuned_quantization(recipe)))
    made = [] if source == p.fp32 else [str(source), str(p.eval_json(source))]
    yield {"basename": "tuned", "name": prof.name, "doc": f"the artifact `doit tune` chose for {prof.name} (no tuning)",
           "actions": [guarded("dmsbuild.measure.tune:build_tuned", proj, prof)],
           "file_dep": [str(p.fp32), str(p.validation), str(_tuned_file(proj, prof))], "targets": made,
           "uptodate": [config_changed(json.dumps(choice, sort_keys=True, default=str))]}


def _tuned_quantization(recipe: Any) -> dict[str, Any]:
    """What the tuned INT8 artifact is (build.json's ``quantization``): its own recipe, not the target's settings."""
    if recipe.precision not in ("int8-qdq", "int8-qoperator"):
        return {}
    return {"quantization": {"format": "QOperator" if recipe.precision == "int8-qoperator" else "QDQ",
                             "mixed_precision": recipe.mixed_precision, "activation_type": recipe.activation_type,
                             "weight_type": recipe.weight_type, "per_channel": recipe.per_channel, "method": "ptq",
                             "calibration_method": recipe.calibration_method}}


#: what ``doit list`` says of the tasks ``build`` generates under their own names
GROUP_DOCS = {
    "compile": "Compile an artifact with its backend's host tool (QNN context binary, TensorRT engine, SNPE DLC).",
    "tuned": "Rebuild the artifact `doit tune` chose (targets/<name>.tuned.toml) if it is missing; no tuning.",
}


@params("target")
def task_build() -> Iterator[dict]:
    """Every artifact of the selected targets (all without target=), checked against FP32 by the accuracy gate."""
    yield {"name": None, "doc": (task_build.__doc__ or "").strip()}
    proj, err = _project_or_none()
    if proj is None:
        yield user_error_task("build", "config", err)  # type: ignore[arg-type]
        return
    tasks: list[dict] = []
    for name in selected_targets():
        try:
            tasks += list(_target_tasks(proj, name))
        except UserError as exc:
            tasks.append(user_error_task("build", name, exc))
    for basename, doc in GROUP_DOCS.items():  # else doit lists them with build's docstring
        if any(t.get("basename") == basename for t in tasks):
            yield {"basename": basename, "name": None, "doc": doc}
    yield from tasks
