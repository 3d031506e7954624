"""Import of a brought (or exported) ONNX model: normalise it, then check the configuration against it.

Models users bring are valid ONNX that the quantizers and compilers still choke
on: weights computed by ``ConstantOfShape``/``Cast`` subgraphs instead of stored
as initializers, opsets older than per-channel QDQ needs (13), weights in
external files, no intermediate shapes. ``normalise`` repairs what can be
repaired, returns one record per change (they go to ``fp32.json`` and
``build.json`` and are printed one line each), and refuses what cannot be
repaired with one line naming the node/op/tensor and what to do.

Constant folding uses ONNX Runtime's own offline graph optimisation at the
*basic* level (constant folding, redundant-node elimination; only standard ONNX
ops in the result). Chosen over onnxslim and onnxsim because it is already a
dependency (no new package), is maintained with the runtime that quantizes and
runs the model, and folds exactly what that runtime can evaluate; onnxsim needs
a native build and onnxslim rewrites more than folding. See ONNX Runtime's
"Graph optimizations" page (offline mode: ``SessionOptions.optimized_model_filepath``).

``check_signature`` compares ``[input]``/``[outputs]`` with the model before
any downstream step runs, one line per mismatch naming the field and the
model's actual value.

onnx and onnxruntime are imported inside the functions (task generators import
nothing heavy).
"""
from __future__ import annotations

import collections
import tempfile
from pathlib import Path
from typing import Any

from ..config import ProjectConfig
from ..errors import UserError

#: per-channel QDQ (DequantizeLinear with ``axis``) needs opset 13
MIN_OPSET = 13
#: operator domains every target runs (the ONNX standard set)
STANDARD_DOMAINS = ("", "ai.onnx")
_NP_NAMES = {"float32": 1, "uint8": 2, "float16": 10}


def opset_of(proto: Any) -> int | None:
    return next((o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS), None)


def _first(exc: BaseException) -> str:
    text = " ".join(str(exc).strip().split())
    return (text or type(exc).__name__)[:300]


def _all_nodes(graph: Any):
    """Nodes of a graph and of its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _check_external_data(src: Path, proto: Any, changes: list[dict]) -> None:
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    external = [t for t in proto.graph.initializer if uses_external_data(t)]
    if not external:
        return
    files = collections.OrderedDict()
    for t in external:
        loc = ExternalDataInfo(t).location
        target = (src.parent / loc).resolve()
        if ".." in Path(loc).parts or not target.is_relative_to(src.parent.resolve()):
            raise UserError(f"{src}: initializer '{t.name}' points at external data '{loc}' outside the model's folder",
                            hint="keep external data files next to the .onnx file")
        if not target.is_file():
            raise UserError(f"{src}: initializer '{t.name}' keeps its data in the external file '{loc}', which is missing "
                            f"next to the model ({target})",
                            hint="copy that file next to the .onnx file (it is part of the model), or re-save the model "
                                 "with onnx.save(model, path, save_as_external_data=False)")
        files[loc] = None
    from onnx.external_data_helper import load_external_data_for_model

    load_external_data_for_model(proto, str(src.parent))
    changes.append({"step": "external-data", "detail": f"read {len(external)} weight tensors from external file(s) "
                    f"{', '.join(files)} into one self-contained model"})


def _check_domains(src: Path, proto: Any) -> None:
    for node in _all_nodes(proto.graph):
        if node.domain not in STANDARD_DOMAINS:
            raise UserError(
                f"{src}: node '{node.name or node.output[0]}' uses the custom-domain op '{node.domain}::{node.op_type}', "
                "which none of the targets (ONNX Runtime CPU, QNN, TensorRT) can run",
                hint="re-export the model with standard ONNX ops only (replace or decompose that layer), "
                     "or run it outside the model")


def _fold_constants(src: Path, proto: Any, changes: list[dict], workdir: Path) -> Any:
    """ONNX Runtime basic-level offline optimisation: constant subgraphs become initializers."""
    import onnx
    import onnxruntime as ort

    before = collections.Counter(n.op_type for n in proto.graph.node)
    domains = {o.domain: o.version for o in proto.opset_import}
    model_in = workdir / "in.onnx"
    model_out = workdir / "folded.onnx"
    onnx.save(proto, str(model_in))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(model_out)
    try:
        ort.InferenceSession(str(model_in), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types (Fail, InvalidGraph, NotImplemented, ...)
        raise UserError(f"{src}: ONNX Runtime cannot load the model: {_first(exc)}",
                        hint="the message names the node; fix or replace it in the model (ONNX Runtime's CPU provider "
                             "must run the FP32 model to calibrate and check every artifact)") from None
    folded = onnx.load(str(model_out))
    # ORT lists every domain it knows; keep the model's own
    used = {n.domain for n in _all_nodes(folded.graph)} | set(domains)
    keep = [o for o in folded.opset_import if o.domain in used]
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    after = collections.Counter(n.op_type for n in folded.graph.node)
    gone = before - after
    if gone:
        ops = ", ".join(f"{op} x{k}" for op, k in sorted(gone.items()))
        changes.append({"step": "fold-constants", "detail": f"folded constant subgraphs into initializers / removed "
                        f"redundant nodes: {sum(gone.values())} nodes ({ops}); "
                        f"{len(proto.graph.node)} -> {len(folded.graph.node)} nodes (ONNX Runtime basic optimisation)",
                        "removed": dict(gone)})
    return folded


def _upgrade_opset(src: Path, proto: Any, changes: list[dict]) -> Any:
    from onnx import version_converter

    old = opset_of(proto)
    if old is None or old >= MIN_OPSET:
        return proto
    try:
        new = version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:  # noqa: BLE001 - the converter raises plain RuntimeError/ValueError/C++ errors
        raise UserError(f"{src}: opset {old} is below {MIN_OPSET} (what per-channel INT8 quantization needs) and "
                        f"onnx.version_converter cannot upgrade it: {_first(exc)}",
                        hint=f"re-export the model at opset {MIN_OPSET} or newer") from None
    changes.append({"step": "opset", "detail": f"upgraded opset {old} -> {MIN_OPSET} with onnx.version_converter "
                    f"(INT8 QDQ with per-channel weights needs opset >= {MIN_OPSET})", "from": old, "to": MIN_OPSET})
    return new


def _infer_shapes(src: Path, proto: Any, changes: list[dict]) -> Any:
    import onnx

    known = len(proto.graph.value_info)
    try:
        out = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise UserError(f"{src}: fails ONNX shape inference / checker after import: {_first(exc)}",
                        hint="the message names the node; fix it in the model (`python -m onnx.checker` shows details)") from None
    added = len(out.graph.value_info) - known
    if added > 0:
        changes.append({"step": "shape-inference", "detail": f"shape inference recorded the shapes of {added} intermediate tensors"})
    return out


def normalise(src: Path, out: Path, what: str) -> list[dict[str, Any]]:
    """Write a normalised copy of ``src`` to ``out``; return one record per change (printed, one line each).

    ``what`` names the config field the model came from (for messages)."""
    import onnx

    changes: list[dict[str, Any]] = []
    try:
        proto = onnx.load(str(src), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise UserError(f"{src}: cannot read it as ONNX ({what}): {_first(exc)}", hint="fix the file or re-export it") from None
    _check_external_data(src, proto, changes)
    _check_domains(src, proto)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise UserError(f"{src}: fails onnx.checker ({what}): {_first(exc)}",
                        hint="re-export the model or fix the file; `python -m onnx.checker` shows the details") from None
    with tempfile.TemporaryDirectory(prefix="dmsbuild-import-") as tmp:
        proto = _fold_constants(src, proto, changes, Path(tmp))
    proto = _upgrade_opset(src, proto, changes)
    proto = _infer_shapes(src, proto, changes)
    onnx.save(proto, str(out))
    for c in changes:
        print(f"  import: {c['detail']}", flush=True)
    return changes


def signature(proto: Any) -> dict[str, list[dict[str, Any]]]:
    """The model's graph inputs (initializers excluded) and outputs: name, shape (int or dim name), dtype."""
    import onnx

    def entry(vi: Any) -> dict[str, Any]:
        tt = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?") for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "unknown"
        return {"name": vi.name, "shape": shape, "dtype": dtype}

    inits = {i.name for i in proto.graph.initializer}
    return {"inputs": [entry(v) for v in proto.graph.input if v.name not in inits],
            "outputs": [entry(v) for v in proto.graph.output]}


def _check_one_input(problems: list[str], src: Any, field: str, inp: Any, inputs: dict[str, dict[str, Any]]) -> None:
    """One configured input (``field``: ``input`` or ``inputs[k]``) against the model's inputs by name."""
    spec = inputs.get(inp.name)
    if spec is None:
        problems.append(f"{src}: field '{field}.name' is {inp.name!r}; the model's inputs are {list(inputs)}")
        return
    dims = spec["shape"]
    if len(dims) != len(inp.shape):
        problems.append(f"{src}: field '{field}.shape' is {inp.shape} ({len(inp.shape)} dims); the model's input "
                        f"'{inp.name}' has {len(dims)} dims: {dims}")
    else:
        bad = [i for i, (d, c) in enumerate(zip(dims, inp.shape)) if isinstance(d, int) and d > 0 and d != c]
        if bad:
            fixed = "[" + ", ".join(str(d) if isinstance(d, int) else f"{d}(dynamic)" for d in dims) + "]"
            extra = ""
            if len(inp.shape) == 4:
                other = "NHWC" if inp.layout == "NCHW" else "NCHW"
                perm = [0, 2, 3, 1] if inp.layout == "NCHW" else [0, 3, 1, 2]
                swapped = [inp.shape[p] for p in perm]
                looks = all(not isinstance(d, int) or d <= 0 or d == s for d, s in zip(dims, swapped))
                extra = f"; it looks like {other}: set {field}.layout = \"{other}\" and {field}.shape = {swapped}" if looks else ""
            problems.append(f"{src}: field '{field}.shape' is {inp.shape}; the model's input '{inp.name}' has shape "
                            f"{fixed} (dim {bad[0]} is fixed at {dims[bad[0]]}, configured {inp.shape[bad[0]]}){extra}")
    if spec["dtype"] != inp.dtype:
        problems.append(f"{src}: field '{field}.dtype' is {inp.dtype!r}; the model's input '{inp.name}' is {spec['dtype']!r}")


def check_signature(project: ProjectConfig, proto: Any, model: Path) -> None:
    """``[input]``/``[outputs]`` against the model: one line per mismatch, field first, the model's value given."""
    from ..names import head_keys

    sig = signature(proto)
    src = project.source
    problems: list[str] = []
    inputs = {i["name"]: i for i in sig["inputs"]}
    configured = project.all_inputs
    if len(inputs) != len(configured):
        listing = ", ".join(f"'{n}' {i['shape']}" for n, i in inputs.items())
        if len(configured) == 1:
            problems.append(f"{src}: the model {model.name} has {len(inputs)} inputs ({listing}); [input] describes "
                            "one: describe each in an [[inputs]] table instead (docs/byom.md \"Several inputs\")")
        else:
            problems.append(f"{src}: the model {model.name} has {len(inputs)} inputs ({listing}); [[inputs]] lists "
                            f"{len(configured)} ({', '.join(i.name for i in configured)})")
    for k, inp in enumerate(configured):
        field = "input" if not project.inputs else f"inputs[{k}]"
        _check_one_input(problems, src, field, inp, inputs)
    outs = [o["name"] for o in sig["outputs"]]
    if not project.outputs.names:
        problems.append(f"{src}: field 'outputs.names' is empty; the model's outputs are {outs}")
    missing = [n for n in project.outputs.names if n not in outs]
    if missing:
        problems.append(f"{src}: field 'outputs.names' lists {missing}, which the model does not produce; its outputs are {outs}")
    if problems:
        raise UserError("\n".join(problems),
                        hint=f"make [input]/[outputs] in {src.name} match the model ({model.name}); "
                             "`doit init onnx=PATH` writes them from the model")
    head_keys(list(project.outputs.names), f"{src}: field 'outputs.names'")
