"""Promise class: every configuration field that affects an artifact rebuilds exactly what it affects (issue 25).

Generated from the configuration dataclasses (``dmsbuild/config.py``): every leaf field of ``ProjectConfig``
and ``TargetProfile`` (nested sections included) is changed, one at a time, to another valid value of its
type, and the build graph's task generators (``dmsbuild/tasks/build.py``) are asked again. A task "rebuilds"
when what doit decides on changes: its ``config_changed`` settings, its targets or its file dependencies (a
new static-QDQ variant key is a new file). ``AFFECTS`` says, per field, which tasks may rebuild; the test
fails when a field rebuilds anything else, when a declared field rebuilds nothing, and when a field appears
that ``AFFECTS`` does not name (a new field is covered by default: it must be declared, as affecting some
artifacts or none). No build runs: doit's own up-to-date inputs are compared, so the test takes seconds.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

from dmsbuild import config as C
from dmsbuild.errors import UserError

TARGETS = ("a", "b", "c")  # tests/tinyproject.py: a = every precision, b = own static settings, c = fp32 + fp16
#: what each group of tasks is called below (after the variant keys are replaced by the targets that use them)
EXPORT, FP16, DYN, REF = "export", "quantize:fp16", "quantize:int8-dynamic", "evaluate:reference"
QDQ_A, QDQ_B = "quantize:int8-qdq@a", "quantize:int8-qdq@b"
BUILD = {t: f"build:{t}" for t in TARGETS}
ALL_BUILDS = set(BUILD.values())
#: changing the project's static settings makes a new variant for target a (its own name, its own file), whose
#: evaluation is a new task too
NEW_QDQ_A = {QDQ_A, "evaluate:int8-qdq@a", BUILD["a"]}
NEW_QDQ_B = {QDQ_B, "evaluate:int8-qdq@b", BUILD["b"]}
QDQ_BOTH = {QDQ_A, QDQ_B}
EVALUATIONS = {"evaluate:fp32", "evaluate:fp16", "evaluate:int8-dynamic", "evaluate:int8-qdq@a", "evaluate:int8-qdq@b"}

#: field -> the tasks whose inputs it is (the project's fields: dmsbuild.toml; "target." ones: a target profile,
#: changed in target b's file, which sets its own [quantization]). A prefix covers every field below it.
AFFECTS: dict[str, set[str]] = {
    "model": {EXPORT},
    "input": {EXPORT, QDQ_A, QDQ_B, REF} | ALL_BUILDS,
    # several inputs (issue 24 item 4): each one's name, shape, dtype and layout, like [input]
    "inputs": {EXPORT, QDQ_A, QDQ_B, REF} | ALL_BUILDS,
    # every artifact is judged by its outputs' kinds and names: the evaluations run again (convert/evaluate.py)
    "outputs": {EXPORT, REF} | ALL_BUILDS | EVALUATIONS,
    "preprocess": {QDQ_A, QDQ_B, REF},
    "export": {EXPORT},
    "data.calibration": QDQ_BOTH,
    "data.validation": {REF},
    "data.labels": {REF},
    "data.loader": {QDQ_A, QDQ_B, REF},
    "data.max_calibration_samples": NEW_QDQ_A | NEW_QDQ_B,  # part of the variant key
    "data.max_validation_samples": {REF},
    "quantization.dynamic": {DYN},
    "quantization.static": NEW_QDQ_A,
    # QAT/pruning settings of a PTQ variant: its key (file name) ignores them, but doit's recorded settings keep
    # every field (convert/quantize.static_settings, for_key=False, "as version one recorded them"), so the PTQ
    # artifact is re-quantized (seconds; same settings, same file) when one changes: an extra rebuild, never a
    # stale artifact. No pruning (fraction 0): round_to changes nothing.
    "quantization.static.qat": {QDQ_A},
    "quantization.static.prune": {QDQ_A},
    "quantization.static.prune.round_to": set(),
    "accuracy": ALL_BUILDS,
    "name": ALL_BUILDS,  # build.json names the project
    # ---- a target profile (target b)
    "target.description": set(),
    "target.deploy": set(),
    "target.bench": set(),
    "target.bench.verify_samples": {BUILD["b"]},  # the build gate judges the samples the board checks
    "target.tune": set(),
    "target.transport": set(),
    "target.arch": {BUILD["b"]},
    "target.precisions": {BUILD["b"]},  # fp16 is built and evaluated for target a already
    "target.quantization": NEW_QDQ_B,
    "target.quantization.qat": {QDQ_B, BUILD["b"]},  # as above; build:b records its profile's settings too
    "target.quantization.prune": {QDQ_B, BUILD["b"]},
    "target.quantization.prune.round_to": set(),
    "target.backend": {BUILD["b"]},
    "target.gates": {BUILD["b"]},
    "target.runtime": {BUILD["b"], "compile:b.fp32", "compile:b.int8-qdq"},  # tensorrt: engines to compile
}
#: fields not varied, and why (each must still be named: a new field is never skipped silently)
NOT_VARIED = {
    "target.name": "the target's identity (its file name), not a setting",
    "model.onnx": "the other branch of [model] (exactly one of factory / onnx): tests/test_model_import.py builds it",
}

# ---------------------------------------------------------------- the fields, from the dataclasses


def leaves(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, type) of every init field of ``cls``, recursing into nested config dataclasses."""
    hints = typing.get_type_hints(cls, include_extras=False)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        t = hints[f.name]
        inner = _dataclass_of(t)
        path = f"{prefix}{f.name}"
        if inner is not None:
            out += leaves(inner, path + ".")
        else:
            out.append((path, t))
    return out


def _dataclass_of(t: Any) -> type | None:
    if dataclasses.is_dataclass(t):
        return t
    if get_origin(t) is typing.Union or type(t).__name__ == "UnionType":
        found = [a for a in get_args(t) if dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return None


#: a valid other value for fields whose type alone does not say one
SPECIAL: dict[str, Any] = {
    "model.factory": "dmsbuild.model.dms_net:build_reference",
    "model.checkpoint": "models/other.pt",
    "model.sources": ["models/other.pt"],
    "input.name": "pixels",
    "input.shape": [1, 3, 72, 72],
    "inputs": [C.InputConfig(name="image", shape=[1, 3, 64, 64]), C.InputConfig(name="state", shape=[1, 8])],
    "outputs.names": ["eye_state", "yawn", "activity", "head_pose", "extra"],
    "outputs.classification": ["eye_state", "yawn"],
    "outputs.kinds": {"head_pose": C.OutputKindConfig(kind="regression")},
    "accuracy.max_score_error": 0.2,  # 0.1 * 0.9 + 0.01 is 0.1 again
    "data.calibration": "data/validation",
    "data.validation": "data/calibration",
    "data.labels": None,
    "data.loader": "tests.tinyproject:samples",
    "accuracy.heads": {"yawn": C.HeadFloorsConfig(min_cosine=0.1)},
    "target.gates.heads": {"yawn": C.HeadFloorsConfig(min_cosine=0.1)},
    "target.precisions": ["fp32", "fp16", "int8-qdq"],
    "target.backend": {"providers": ["CPUExecutionProvider"], "provider_options": [{"arena_extend_strategy": "1"}]},
    "target.deploy.waves": [1, "100%"],
    "target.runtime": "tensorrt",
    "data.max_calibration_samples": 2,  # below the tiny project's 4 images: the list of files changes
    "data.max_validation_samples": 2,
    "quantization.static.prune.round_to": 8,
    "target.quantization.prune.round_to": 8,
    "target.deploy.root": "artifacts/boards/b2",
    "target.quantization.nodes_to_exclude": ["/some/node"],
    "quantization.static.nodes_to_exclude": ["/some/node"],
    "target.quantization.method": "qat",
    "quantization.static.method": "qat",
}


def other_value(path: str, t: Any, value: Any) -> Any:
    """A valid value of type ``t`` different from ``value``."""
    if path in SPECIAL:
        return copy.deepcopy(SPECIAL[path])
    origin, args = get_origin(t), get_args(t)
    if origin is Literal:
        return next(a for a in args if a != value)
    if origin is typing.Union or type(t).__name__ == "UnionType":
        if value is None:
            inner = next(a for a in args if a is not type(None))
            return {str: "x", float: 0.5, int: 1}.get(inner) if inner in (str, float, int) else other_value(path, inner, None)
        return other_value(path, next(a for a in args if a is not type(None)), value)
    if t is bool:
        return not value
    if t is int:
        return (value or 0) + 1
    if t is float:
        return round(value * 0.9 + 0.01, 6) if value else 0.5
    if t is str:
        return f"{value}2" if value else "x2"
    if origin is list and args == (float,):
        return [v + 0.01 for v in value]
    if origin is list and args == (int,):
        return [*value[:-1], value[-1] + 1] if value else [1]
    if origin is list and args == (str,):
        return [*value, "x2"]
    if origin is list and (args == (bool,) or get_origin(args[0]) is Literal):
        choices = [True, False] if args == (bool,) else list(get_args(args[0]))
        if len(value) > 1:
            return value[:-1]
        return [c for c in choices if c not in value][:1]
    if origin is dict:
        return {**value, "x2": 1}
    raise AssertionError(f"no generic other value for {path} ({t}): add one to SPECIAL")


def _get(obj: Any, path: list[str]) -> Any:
    for p in path:
        obj = getattr(obj, p)
    return obj


def _set(obj: Any, path: list[str], value: Any) -> None:
    for p in path[:-1]:
        nxt = getattr(obj, p)
        if nxt is None:  # an optional section left out: its defaults
            field_type = _dataclass_of(typing.get_type_hints(type(obj))[p])
            nxt = field_type()
            setattr(obj, p, nxt)
        obj = nxt
    setattr(obj, path[-1], value)


# ---------------------------------------------------------------- what doit decides on


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tests.tinyproject import make_project

    root = make_project(tmp_path_factory.mktemp("promise-config") / "proj")
    (root / "models" / "other.pt").write_bytes((root / "models" / "tiny.pt").read_bytes())
    return root


def snapshot(monkeypatch, root: Path, proj: C.ProjectConfig, profiles: dict[str, C.TargetProfile]) -> dict[str, Any]:
    """Task name -> (settings of its config_changed checks, targets, file_dep) of export, quantize, evaluate and
    build, variant keys replaced by the targets that use them."""
    from dmsbuild import tasks as T
    from dmsbuild.tasks import build as B

    monkeypatch.setenv("DMSBUILD_ROOT", str(root))
    T.root.cache_clear()
    monkeypatch.setattr(B, "project", lambda: proj)
    monkeypatch.setattr(B, "profile", lambda name: profiles[name])
    monkeypatch.setattr(B, "selected_targets", lambda default_all=True: list(TARGETS))
    names: dict[str, list[str]] = {}
    for t, prof in profiles.items():
        if "int8-qdq" in prof.precisions:
            try:
                names.setdefault(B._qdq_key(proj, prof), []).append(t)
            except UserError:
                pass

    def norm(text: str) -> str:
        for key, used in names.items():
            text = text.replace(f"int8-qdq-{key}", f"int8-qdq@{','.join(used)}#{key}")
        return text.replace(str(root), "<root>")

    tasks: list[dict] = [{"basename": "export", **B.task_export()}]
    for gen, base in ((B.task_quantize, "quantize"), (B.task_evaluate, "evaluate"), (B.task_build, None)):
        for t in gen():
            if t.get("name") is None:
                continue
            tasks.append({"basename": t.get("basename", base), **t})
    out = {}
    for t in tasks:
        name = norm(f"{t['basename']}:{t['name']}" if t.get("name") else t["basename"])
        checks = [u.config if hasattr(u, "config") else repr(u) for u in t.get("uptodate", [])]
        out[name] = (norm(json.dumps(checks, sort_keys=True, default=str)),
                     tuple(sorted(norm(str(x)) for x in t.get("targets", []))),
                     tuple(sorted(norm(str(x)) for x in t.get("file_dep", []))),
                     norm(repr([getattr(a, "__name__", a) for a in t.get("actions", [])])) if "fail" in repr(t.get("actions")) else "")
    return out


def rebuilt(before: dict, after: dict) -> set[str]:
    """Tasks whose inputs changed, or that are new (a new variant key: a new file to build); named without keys."""
    return {k.split("#")[0] for k in set(before) | set(after) if before.get(k) != after.get(k)}


def declared(path: str) -> set[str] | None:
    hits = [k for k in AFFECTS if path == k or path.startswith(k + ".")]
    return AFFECTS[max(hits, key=len)] if hits else None


def all_fields() -> list[tuple[str, Any]]:
    return leaves(C.ProjectConfig) + [("target." + p, t) for p, t in leaves(C.TargetProfile)]


def test_every_field_is_declared():
    missing = [p for p, _ in all_fields() if declared(p) is None and p not in NOT_VARIED]
    assert not missing, f"fields without a rebuild rule: {missing}; add each to AFFECTS (what it rebuilds, or set())"


FIELDS = [p for p, _ in all_fields() if p not in NOT_VARIED]


@pytest.mark.parametrize("path", FIELDS)
def test_a_field_rebuilds_exactly_what_it_affects(tiny, monkeypatch, path):
    proj = C.load_project(tiny)
    profiles = {t: C.load_target(tiny, t) for t in TARGETS}
    before = snapshot(monkeypatch, tiny, proj, profiles)
    assert not [k for k, v in before.items() if v[3]], "the tiny project's tasks must not be error tasks"
    t = dict(all_fields())[path]
    proj2, profiles2 = copy.deepcopy(proj), copy.deepcopy(profiles)
    if path.startswith("target."):
        obj, parts = profiles2["b"], path.split(".")[1:]
    else:
        obj, parts = proj2, path.split(".")
    try:
        old = _get(obj, parts)
    except AttributeError:
        old = None  # inside an optional section the profile leaves out
    new = other_value(path, t, old)
    assert new != old, f"{path}: pick another value in SPECIAL"
    _set(obj, parts, new)
    after = snapshot(monkeypatch, tiny, proj2, profiles2)
    errors = [k for k, v in after.items() if v[3]]
    assert not errors, f"{path} = {new!r} made error tasks {errors}: pick a valid value in SPECIAL"
    got, want = rebuilt(before, after), declared(path)
    assert got == want, f"{path}: {old!r} -> {new!r} rebuilds {sorted(got)}, declared {sorted(want)}"


@pytest.mark.parametrize("method", ["ptq", "qat"])
def test_reordering_a_table_of_the_configuration_rebuilds_nothing(tiny, monkeypatch, method):
    """Two [outputs.kinds.<name>] tables written in the other order are the same configuration: doit's recorded
    settings are sorted JSON, so nothing rebuilds (the export, and the QAT variant that records the outputs too)."""
    proj = C.load_project(tiny)
    proj.quantization.static.method = method
    proj.outputs.kinds = {"head_pose": C.OutputKindConfig(kind="regression"),
                          "eye_state": C.OutputKindConfig(kind="classification", axis=-1)}
    profiles = {t: C.load_target(tiny, t) for t in TARGETS}
    before = snapshot(monkeypatch, tiny, proj, profiles)
    assert not [k for k, v in before.items() if v[3]], "the tiny project's tasks must not be error tasks"
    [qdq] = [k for k in before if k.startswith(QDQ_A)]
    assert ("qat_files" in before[qdq][0]) == (method == "qat")  # target a's variant is a QAT one when asked
    proj2 = copy.deepcopy(proj)
    proj2.outputs.kinds = dict(reversed(list(proj.outputs.kinds.items())))
    assert rebuilt(before, snapshot(monkeypatch, tiny, proj2, profiles)) == set()


@pytest.mark.parametrize("fraction, doc", [(0.0, "QAT (200 steps, distillation) then QDQ"),
                                           (0.5, "prune 50% + QAT (200 steps, distillation) then QDQ")])
def test_doit_list_says_when_a_variant_is_pruned(tiny, monkeypatch, fraction, doc):
    from dmsbuild.tasks import build as B

    proj = C.load_project(tiny)
    proj.quantization.static.method = "qat"
    proj.quantization.static.prune.fraction = fraction
    profiles = {t: C.load_target(tiny, t) for t in TARGETS}
    snapshot(monkeypatch, tiny, proj, profiles)  # (points the task generators at this configuration)
    key = B._qdq_key(proj, profiles["a"])
    [task] = [t for t in B.task_quantize() if t.get("name") == f"int8-qdq-{key}"]
    assert task["doc"].startswith(doc + ":"), task["doc"]


@pytest.mark.parametrize("runtime", [None, "tensorrt"])
def test_doit_list_shows_a_task_group_only_when_it_has_tasks(tiny, monkeypatch, runtime):
    """`compile` (and `tuned`) get their own line in `doit list` when a target has such tasks, never empty."""
    from dmsbuild.tasks import build as B

    proj = C.load_project(tiny)
    profiles = {t: C.load_target(tiny, t) for t in TARGETS}
    if runtime:
        profiles["b"].runtime = runtime
    snapshot(monkeypatch, tiny, proj, profiles)
    tasks = list(B.task_build())
    groups = {t["basename"]: t["doc"] for t in tasks if t.get("basename") and t.get("name") is None}
    compiles = [t for t in tasks if t.get("basename") == "compile" and t.get("name")]
    assert bool(compiles) == (runtime == "tensorrt")
    assert set(groups) == ({"compile"} if compiles else set()), groups
    if compiles:
        assert groups["compile"] == B.GROUP_DOCS["compile"]



@pytest.mark.parametrize("method", ["ptq", "qat"])
def test_the_order_of_a_tables_keys_in_the_toml_rebuilds_nothing(tiny, monkeypatch, method):
    """The same settings written in another order ([outputs.kinds.x] before or after [outputs.kinds.y]) are the
    same settings: neither the export nor a (QAT) quantization runs again."""
    proj = C.load_project(tiny)
    proj.quantization.static.method = method
    profiles = {t: C.load_target(tiny, t) for t in TARGETS}
    proj.outputs.kinds = {"head_pose": C.OutputKindConfig(kind="regression"),
                          "activity": C.OutputKindConfig(kind="classification")}
    before = snapshot(monkeypatch, tiny, proj, profiles)
    assert not [k for k, v in before.items() if v[3]]
    assert method == "ptq" or any("QAT" in k or "qat" in json.dumps(v[0]) for k, v in before.items())
    proj2 = copy.deepcopy(proj)
    proj2.outputs.kinds = dict(reversed(list(proj.outputs.kinds.items())))
    assert list(proj2.outputs.kinds) != list(proj.outputs.kinds)
    assert rebuilt(before, snapshot(monkeypatch, tiny, proj2, profiles)) == set()


@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_doit_lists_a_pruned_qat_variant_as_pruned(tiny, monkeypatch, fraction):
    """`doit list` says what a QAT variant does: "prune 30% + QAT (...)" with pruning, "QAT (...)" without."""
    from dmsbuild import tasks as T
    from dmsbuild.tasks import build as B

    proj = C.load_project(tiny)
    proj.quantization.static.method = "qat"
    proj.quantization.static.prune.fraction = fraction
    profiles = {t: C.load_target(tiny, t) for t in TARGETS}
    snapshot(monkeypatch, tiny, proj, profiles)  # the same set-up: this project, these profiles
    docs = [t.get("doc", "") for t in B.task_quantize() if "QAT" in t.get("doc", "")]
    assert docs
    assert all(d.startswith("prune 30% + QAT (") if fraction else d.startswith("QAT (") for d in docs), docs
