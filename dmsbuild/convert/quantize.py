"""FP16 and INT8 (dynamic, static QDQ) variants of the FP32 ONNX model, with ONNX Runtime's tooling.

Static QDQ settings differ per consumer: ORT CPU takes the defaults, TensorRT
wants symmetric int8 activations, QNN wants unsigned 8/16-bit activations and
fixed input shapes. ``settings_key`` names a variant by a hash of its settings
so targets with identical settings share one file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import DynamicQuantConfig, ProjectConfig, StaticQuantConfig, as_dict
from ..errors import UserError


def static_settings(cfg: StaticQuantConfig, for_key: bool = True) -> dict[str, Any]:
    """The settings of a static artifact as JSON-able data: hashed into its key (``for_key``), or fed to doit's
    config_changed (``for_key=False``: every field, as version one recorded them).

    Settings added later (quant_format, nodes_to_exclude, prune.round_to) are left out while they hold their default, so the keys
    (file names) and the recorded settings of existing variants stay as they were: nothing rebuilds after an upgrade."""
    static = as_dict(cfg)
    if for_key and cfg.method == "ptq":  # QAT/pruning settings do not change a PTQ artifact (PTQ keys stay as they were)
        for name in ("method", "qat", "prune"):
            static.pop(name)
    if "prune" in static and (cfg.prune.fraction == 0 or cfg.prune.round_to == 1):
        static["prune"].pop("round_to")  # no pruning, or pruning as before round_to existed: nothing retrains
    if for_key and cfg.quantize_bias:
        static.pop("quantize_bias")
    if cfg.quant_format == "QDQ":
        static.pop("quant_format")
    if not cfg.nodes_to_exclude:
        static.pop("nodes_to_exclude")
    else:  # the set matters, not the order it was written in
        static["nodes_to_exclude"] = sorted(set(cfg.nodes_to_exclude))
    return static


def settings_key(cfg: StaticQuantConfig, max_samples: int) -> str:
    """Short stable hash of the static quantization settings (names the shared QDQ file)."""
    blob = json.dumps({"static": static_settings(cfg), "max_samples": max_samples}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _save_checked(proto: Any, out: Path) -> None:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    onnx.checker.check_model(str(tmp))
    os.replace(tmp, out)


_LOAD_CHECK = """
import sys
import onnxruntime as ort
opts = ort.SessionOptions()
opts.log_severity_level = 3
ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
"""


def _session_check(path: Path, script: str = _LOAD_CHECK) -> None:
    """Make sure ONNX Runtime's CPU provider loads the artifact (catches graphs only the checker likes).

    Loaded in a child process at ORT's default optimisation level, as the board loads it: ONNX Runtime
    1.32 crashes (SIGSEGV) creating a session for some fp16 graphs (seen: a small ViT's fp16 variant, only
    at ORT_ENABLE_ALL), and a crash must become a line naming the artifact, not a dead build."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=600)
    if proc.returncode == 0:
        return
    path.unlink(missing_ok=True)  # never leave an artifact behind that the runtime cannot load
    precision = next((p for p in ("int8-dynamic", "int8-qdq", "fp16", "fp32") if path.stem.startswith(p)), path.stem)
    if proc.returncode < 0:
        raise UserError(f"{path}: ONNX Runtime's CPU provider crashed (signal {-proc.returncode}) loading this artifact; "
                        "boards running ONNX Runtime would crash the same way",
                        hint=f"drop '{precision}' from the precisions of the targets that build this model")
    tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
    raise UserError(f"{path}: ONNX Runtime's CPU provider cannot load this artifact: {tail[:300]}",
                    hint=f"drop '{precision}' from the targets' precisions for this model, or change the model")


def _toposort(graph: Any) -> None:
    """Reorder a graph's nodes topologically, in place (stable: keeps the original order where possible)."""
    known = {v.name for v in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in known for i in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise RuntimeError(f"graph has a cycle or dangling inputs at node {rest[0].name}")  # a converter bug
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def convert_fp16(src: Path, out: Path) -> None:
    """FP16 weights and compute, float32 inputs/outputs (a Cast at each graph edge), so callers feed the same arrays."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    started = time.perf_counter()
    proto = onnx.load(str(src))
    half = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=False)
    _toposort(half.graph)  # the converter appends its IO Casts at the end; the checker wants topological order
    _save_checked(half, out)
    _session_check(out)
    print(f"  fp16: {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)", flush=True)


def quantize_dynamic_int8(src: Path, out: Path, cfg: DynamicQuantConfig) -> None:
    """Weights int8, activations quantized at run time (ORT CPU only; often slower than FP32 on x86 - measured)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    quantize_dynamic(str(src), str(tmp), per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
                     weight_type=getattr(QuantType, cfg.weight_type))
    os.replace(tmp, out)
    _session_check(out)
    print(f"  int8-dynamic: {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s); "
          "warning: dynamic INT8 runs slower than FP32 on many x86 CPUs - check the benchmark", flush=True)


def fix_batch(proto: Any, batch: int = 1, input_shape: list[int] | dict[str, list[int]] | None = None) -> Any:
    """Replace a symbolic batch axis by ``batch`` (QNN takes no nodes of a graph with dynamic shapes).

    With ``input_shape`` (the configured ``input.shape``, or ``{input name: shape}`` for several inputs), every
    dynamic dim of an input takes its configured value too, so a model with dynamic H/W compiles for QNN at the
    size it runs at."""
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    def dims(vi: Any, fixed: list[int] | None = None) -> list[int | str]:
        out: list[int | str] = []
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            dynamic = bool(d.dim_param) or d.dim_value <= 0
            if i == 0 and dynamic:
                out.append(batch)
            elif dynamic and fixed is not None and i < len(fixed):
                out.append(fixed[i])
            else:
                out.append(d.dim_param if d.dim_param else d.dim_value)
        return out

    inits = {i.name for i in proto.graph.initializer}
    per_input = input_shape if isinstance(input_shape, dict) else None
    ins = {v.name: dims(v, per_input.get(v.name) if per_input is not None else input_shape)
           for v in proto.graph.input if v.name not in inits}
    outs = {v.name: dims(v) for v in proto.graph.output}
    proto = update_inputs_outputs_dims(proto, ins, outs)
    # drop stale intermediate shapes so inference recomputes them with the fixed batch
    del proto.graph.value_info[:]
    import onnx

    return onnx.shape_inference.infer_shapes(proto)


def check_excluded_nodes(names: list[str], pre_processed: Path, fp32: Path,
                         where: str = "field 'quantization.nodes_to_exclude'") -> None:
    """Every name in ``nodes_to_exclude`` is a node of the graph ORT quantizes; ORT itself ignores unknown names,
    so a typo (or a name fused away by pre-processing) would silently quantize the node."""
    if not names:
        return
    import onnx

    known = {n.name for n in onnx.load(str(pre_processed), load_external_data=False).graph.node}
    unknown = sorted(set(names) - known)
    if not unknown:
        return
    original = {n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node}
    fused = [n for n in unknown if n in original]
    detail = f" ({', '.join(fused)} fused away by ONNX Runtime's pre-processing)" if fused else ""
    raise UserError(f"{where} names {len(unknown)} node(s) not in the graph being "
                    f"quantized ({fp32.name} after pre-processing): {', '.join(unknown[:8])}"
                    f"{' ...' if len(unknown) > 8 else ''}{detail}",
                    hint="list the quantizable nodes and their names with `python -m dmsbuild.convert.mixed_precision "
                         "target=<name>` (its table's first column), or open the model in Netron")


def divisions_to_multiplications(proto: Any) -> int:
    """Rewrite ``Div(x, c)`` with a float constant ``c`` (an initializer) as ``Mul(x, 1/c)``, in place; returns how
    many. ONNX Runtime's static quantizer quantizes a Mul's constant operand but leaves a Div's divisor in float,
    and a QDQ graph holding such a Div does not finalize on the QNN HTP (QNN_COMMON_ERROR_MEM_ALLOC: seen on
    PaddleOCR's and YOLOv8's hard-swish / decode ``x / 6``, issue 24 item 5). Node names are kept (they are what
    ``nodes_to_exclude`` names); each reciprocal is a new initializer, so a divisor shared with other nodes stays."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    taken = set(inits) | {o for n in proto.graph.node for o in n.output}
    count = 0
    for node in proto.graph.node:
        if node.op_type != "Div" or node.domain not in ("", "ai.onnx") or len(node.input) != 2 or node.input[1] not in inits:
            continue
        c = numpy_helper.to_array(inits[node.input[1]])
        if c.dtype not in (np.float32, np.float16) or not np.all(np.isfinite(c)) or np.any(c == 0):
            continue
        name = f"{node.input[1]}_reciprocal"
        k = 0
        while name in taken:
            k += 1
            name = f"{node.input[1]}_reciprocal_{k}"
        taken.add(name)
        proto.graph.initializer.append(numpy_helper.from_array((1.0 / c.astype(np.float64)).astype(c.dtype), name))
        node.op_type = "Mul"
        node.input[1] = name
        count += 1
    return count


def pre_process(project: ProjectConfig, src: Path, cfg: StaticQuantConfig, folder: Path) -> Path:
    """The graph ORT quantizes: ``src`` (batch fixed when the consumer needs it) after ORT's quantization
    pre-processing (shape inference, fusions), written to ``folder/pre.onnx``. Its node names are the names
    ``nodes_to_exclude`` takes; deterministic, so the mixed-precision search sees the same graph."""
    import onnx
    from onnxruntime.quantization import quant_pre_process

    model_in = folder / "input.onnx"
    proto = onnx.load(str(src))
    if cfg.fixed_shape:
        proto = fix_batch(proto, 1, list(project.input.shape) if not project.several_inputs else
                          {i.name: list(i.shape) for i in project.all_inputs})
    rewritten = divisions_to_multiplications(proto)
    if rewritten:
        print(f"  int8-qdq: {rewritten} Div node(s) by a constant now multiply by its reciprocal (ONNX Runtime's "
              "quantizer leaves a constant divisor in float, and the QNN HTP cannot finalize such a graph: "
              "QNN_COMMON_ERROR_MEM_ALLOC)", flush=True)
    onnx.save(proto, str(model_in))
    pre = folder / "pre.onnx"
    print(f"  int8-qdq: pre-processing {src.name} (shape inference, fusions)", flush=True)
    quant_pre_process(str(model_in), str(pre), skip_symbolic_shape=True)
    return pre


def quantize_static_qdq(project: ProjectConfig, src: Path, out: Path, cfg: StaticQuantConfig, calibration: list[Path],
                        where: str = "field 'quantization.nodes_to_exclude'") -> None:
    """Calibrated INT8/16 model: pre-process, stream the calibration folder, quantize with the consumer's settings.

    QDQ by default; ``quant_format = "QOperator"`` writes fused integer operators under the same file naming
    (ORT CPU only); ``nodes_to_exclude`` keeps those nodes in float (mixed precision)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .data import make_calibration_reader

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dmsbuild-qdq-", dir=out.parent) as tmpdir:
        pre = pre_process(project, src, cfg, Path(tmpdir))
        check_excluded_nodes(cfg.nodes_to_exclude, pre, src, where)
        reader = make_calibration_reader(calibration, project, project.input.name, limit=project.data.max_calibration_samples)
        floats = f", {len(cfg.nodes_to_exclude)} node(s) kept in float" if cfg.nodes_to_exclude else ""
        print(f"  int8-qdq: calibrating with {reader.described}, {cfg.calibration_method}, {cfg.quant_format}, "
              f"activations {cfg.activation_type}{' symmetric' if cfg.symmetric_activations else ''}, "
              f"weights {cfg.weight_type}{' per-channel' if cfg.per_channel else ''}{floats}", flush=True)
        extra: dict[str, Any] = {"ActivationSymmetric": cfg.symmetric_activations, "QuantizeBias": cfg.quantize_bias}
        if cfg.calibration_method == "Percentile":
            extra["CalibPercentile"] = 99.999
        tmp_out = Path(tmpdir) / "qdq.onnx"
        try:
            quantize_static(
                str(pre), str(tmp_out), reader,
                quant_format=getattr(QuantFormat, cfg.quant_format),
                per_channel=cfg.per_channel,
                nodes_to_exclude=list(cfg.nodes_to_exclude),
                activation_type=getattr(QuantType, cfg.activation_type),
                weight_type=getattr(QuantType, cfg.weight_type),
                calibrate_method=getattr(CalibrationMethod, cfg.calibration_method),
                extra_options=extra,
            )
        except ValueError as exc:
            if "bins" not in str(exc):
                raise
            # ORT's histogram calibrators cannot bin a tensor whose values are all equal
            raise UserError(
                f"calibration_method = {cfg.calibration_method!r}: ONNX Runtime's histogram calibration failed "
                f"on {src.name} ({exc}); some activation is constant over the calibration set",
                hint="use calibration_method = \"MinMax\" or a more varied calibration set (data.calibration)",
            ) from None
        if reader.seen == 0 and (reader.total == 0 or project.data.loader is not None):
            raise UserError(f"{project.source}: field 'data.calibration': no calibration samples were read")
        _save_checked(onnx.load(str(tmp_out)), out)
    _session_check(out)
    print(f"  int8-qdq: {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)", flush=True)
