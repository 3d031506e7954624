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

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from ..core.accuracy import floors_for
from ..config import (PRECISIONS, ProjectConfig, TargetProfile, as_dict, static_quant_field, static_quant_for,
                      target_names)
from ..convert.paths import Paths, qdq_key as _qdq_key  # re-exported: bench/ and tests use them from here
from ..errors import UserError
from . import params, profile, project, selected_targets, user_error_task


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _inputs_setting(proj) -> dict:
    """Every input's settings where a model has several (a one-input project's signatures stay as they were)."""
    return {"inputs": [as_dict(i) for i in proj.inputs]} if proj.several_inputs else {}


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
    from ..convert.export import factory_source

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
    from ..convert.export import export_model

    settings = {"model": as_dict(m), "input": as_dict(proj.input), "outputs": as_dict(proj.outputs),
                "export": as_dict(proj.export)}
    settings.update(_inputs_setting(proj))
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
    from ..convert.quantize import convert_fp16, quantize_dynamic_int8, quantize_static_qdq, static_settings

    p = Paths.of(proj)
    yield {"name": "fp16", "doc": "FP16 copy of the FP32 model", "actions": [guarded(convert_fp16, p.fp32, p.fp16)],
           "file_dep": [str(p.fp32)], "targets": [str(p.fp16)], "clean": True}
    yield {"name": "int8-dynamic", "doc": "INT8 dynamic quantization (weights INT8, activations at run time)", "actions": [guarded(quantize_dynamic_int8, p.fp32, p.dynamic, proj.quantization.dynamic)],
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
    from ..convert.data import list_samples

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
                    "input": as_dict(proj.input), **_inputs_setting(proj), "loader": proj.data.loader}
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
    from ..convert.qat import report_path, training_files, tuned_fp32_path

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
            "actions": [guarded("dmsbuild.convert.qat:run_qat", proj, p.fp32, out, cfg, calibration)],
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
    from ..convert.data import list_samples

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
                    "input": as_dict(proj.input), **_inputs_setting(proj), "outputs": as_dict(proj.outputs),
                    "max": proj.data.max_validation_samples, "loader": proj.data.loader}
        yield {"name": "reference", "doc": "FP32 outputs on the validation set (the reference every artifact is scored against)",
               "actions": [guarded("dmsbuild.convert.evaluate:write_reference", proj, p.fp32, validation, p.reference, p.validation)],
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
        yield {"name": src.stem, "doc": f"score {src.name} against the FP32 reference",
               "actions": [guarded("dmsbuild.convert.evaluate:evaluate_artifact", proj, src, p.validation, out)],
               "file_dep": [str(src), str(p.validation)], "targets": [str(out)], "clean": True,
               # what the outputs mean decides their metrics: a changed kind or class axis re-evaluates
               "uptodate": [config_changed(json.dumps(as_dict(proj.outputs), sort_keys=True))]}


# --------------------------------------------------------------------------
# build:<target>  (its action, the build.json contract's writer, is dmsbuild.convert.build_json.write_build)
# --------------------------------------------------------------------------
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
                   "doc": f"{plan.name} ({plan.kind}) for target {prof.name} with its backend's host tool",
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
        from ..convert.quantize import static_settings

        settings["quantization"] = static_settings(prof.quantization, for_key=False)
    settings["accuracy"] = as_dict(proj.accuracy)  # the project's floors (the target's are in settings["gates"])
    floors_for(proj, prof)  # a [gates.heads.<head>] naming no head of the model fails here, before any build step
    settings["gate_samples"] = prof.bench.verify_samples  # the gate judges these first samples, host and board alike
    settings["project"] = {"name": proj.name, "input": as_dict(proj.input), **_inputs_setting(proj), "outputs": as_dict(proj.outputs)}
    yield from tuned_deps
    if tuned_deps:
        deps.add(str(_tuned_file(proj, prof)))
    yield {"basename": "build", "name": prof.name, "doc": f"artifacts + build.json for target {prof.name}",
           "actions": [guarded("dmsbuild.convert.build_json:write_build", proj, prof, plans, out_dir)],
           "task_dep": [f"tuned:{prof.name}"] if tuned_deps else [],
           "file_dep": sorted(deps), "targets": targets, "clean": True,
           "uptodate": [config_changed(json.dumps(settings, sort_keys=True, default=str))]}


def _tuned_file(proj: ProjectConfig, prof: TargetProfile) -> Path:
    from ..convert.tuned import tuned_path

    return tuned_path(proj, prof.name)


def _tuned_tasks(proj: ProjectConfig, prof: TargetProfile, plans: list[Any], out_dir: Path) -> Iterator[dict]:
    """With a targets/<name>.tuned.toml: put the chosen artifact first in ``plans`` (the release's default, with
    its session settings) and yield the ``tuned:<name>`` task that rebuilds its file if missing (no tuning)."""
    from ..backends import ArtifactPlan
    from ..convert.tuned import TUNED_NAME, read_tuned, recipe_path, shipped_choice, tuned_recipe
    from ..pipeline.tune.space import space_for

    data = read_tuned(proj, prof)
    choice = shipped_choice(data) if data else None
    if choice is None or not space_for(prof).measured:  # a choice only for a runtime `doit tune` measures
        return
    recipe, settings = tuned_recipe(choice)
    p = Paths.of(proj)
    if recipe.runtime is not None:  # another runtime of the tune space (LiteRT): its backend ships it
        from ..backends import get_backend
        from ..pipeline.tune.space import part_of

        part_of(prof, recipe, str(_tuned_file(proj, prof)))  # a runtime the target does not ship: one line
        backend = get_backend(recipe.runtime, str(prof.source))
        source = backend.tune_path(proj, recipe, str(data["model_sha256"]))  # type: ignore[index]
        plan = backend.tune_plan(TUNED_NAME, recipe, source, out_dir / TUNED_NAME, settings.as_dict())
        plans.insert(0, plan)
        made = [str(source), str(plan.eval_json)]
    else:
        source = recipe_path(proj, recipe, str(data["model_sha256"]))  # type: ignore[index]
        first = plans[0]
        plans.insert(0, ArtifactPlan(name=TUNED_NAME, precision=recipe.precision, kind="onnx", path=out_dir / f"{TUNED_NAME}.onnx",
                                     source=source, runtime=first.runtime, providers=list(first.providers),
                                     provider_options=list(first.provider_options), portable=True,
                                     session=settings.as_dict(), settings=_tuned_quantization(recipe)))
        made = [] if source == p.fp32 else [str(source), str(p.eval_json(source))]
    yield {"basename": "tuned", "name": prof.name, "doc": f"the artifact `doit tune` chose for {prof.name} (no tuning)",
           "actions": [guarded("dmsbuild.pipeline.tune.recipe:build_tuned", proj, prof)],
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
