"""QNN HTP context binaries for Qualcomm boards, built on the host with onnxruntime-qnn.

The QDQ ONNX model (uint8 or uint16 activations, made by the host build) is
compiled by ONNX Runtime's QNN execution provider into an *EPContext* model: a
small ONNX file whose ``EPContext`` node(s) point at a QNN context binary
(``<name>_qnn.bin``) that the board's HTP loads directly. Nodes the EP does not
take stay in the ONNX file and run on the CPU; :class:`PlacementReport` counts
them and :func:`check_placement` fails the build above the profile's threshold.

Facts this module guards against (DESIGN §5):
- a dynamic (symbolic) input axis makes the EP take no nodes, write no context
  file and raise nothing: shapes are fixed (batch axis) or the build is refused;
- the EP refuses to overwrite an existing context file: it writes into a fresh
  temporary folder and the files are renamed into place;
- onnxruntime-qnn 2.x is a plugin EP: registered with
  ``register_execution_provider_library`` and selected per session with
  ``SessionOptions.add_provider_for_devices`` (``providers=[...]`` does not see it).

onnxruntime, onnxruntime_qnn and onnx are imported inside the functions.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from ..config import load_dataclass
from ..errors import UserError
from . import snpe
from .base import Backend, Check, HostEnv, board_onnxruntime, major_minor, profile_names
from .snpe import SnpeOptions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..config import ProjectConfig, TargetProfile
    import onnxruntime

EP_NAME = "QNNExecutionProvider"
#: the runtime name in build.json / manifests
RUNTIME = "qnn"


@dataclass
class QnnOptions:
    """``[backend]`` of a QNN target profile."""

    #: Hexagon HTP architecture version (QCS8255 / SA8255P: v73)
    htp_arch: int = 73
    #: QNN SoC model id (0: let the backend decide from htp_arch)
    soc_model: int = 0
    #: nodes allowed to fall back to the CPU (not counting the model's input Q / output DQ)
    max_cpu_fallback_nodes: int = 0
    #: embed the context binary inside the ONNX file instead of a separate ``_qnn.bin``
    embed_context: bool = False
    #: HTP performance mode used when the context model runs
    performance_mode: Literal[
        "burst", "balanced", "default", "high_performance", "high_power_saver",
        "low_balanced", "low_power_saver", "power_saver", "sustained_high_performance",
    ] = "burst"
    #: QNN graph optimisation level passed to the HTP backend (1-3)
    optimization_level: int = 3
    #: fix a symbolic batch axis to this size (0: refuse models with a dynamic batch axis)
    fixed_batch: int = 1
    #: options of the SNPE DLC artifacts built beside the QNN ones (``[backend.snpe]``)
    snpe: SnpeOptions = field(default_factory=SnpeOptions)

    def validate(self, source: str, prefix: str) -> None:
        where = f"{prefix}." if prefix else ""
        if self.htp_arch not in (68, 69, 73, 75, 79, 81):
            raise UserError(
                f"{source}: field '{where}htp_arch' is {self.htp_arch}; allowed: 68, 69, 73, 75, 79, 81 "
                "(QCS8255 is 73)",
                hint=f"fix '{where}htp_arch' in {source}",
            )
        if self.soc_model < 0 or self.max_cpu_fallback_nodes < 0 or self.fixed_batch < 0:
            raise UserError(
                f"{source}: fields '{where}soc_model', '{where}max_cpu_fallback_nodes' and "
                f"'{where}fixed_batch' must be >= 0",
                hint=f"fix them in {source}",
            )
        if self.optimization_level not in (1, 2, 3):
            raise UserError(
                f"{source}: field '{where}optimization_level' is {self.optimization_level}; allowed: 1, 2, 3",
                hint=f"fix it in {source}",
            )


def load_options(backend: Mapping[str, Any], source: str) -> QnnOptions:
    """Validate a profile's ``backend`` table (``profile.backend``, ``str(profile.source)``)."""
    return load_dataclass(QnnOptions, dict(backend), source, prefix="backend")


def provider_options(options: QnnOptions) -> dict[str, str]:
    """QNN EP provider options for the HTP backend (strings, as ORT wants them)."""
    import onnxruntime_qnn

    return {
        "backend_path": onnxruntime_qnn.get_qnn_htp_path(),
        "htp_arch": str(options.htp_arch),
        "soc_model": str(options.soc_model),
        "htp_performance_mode": options.performance_mode,
        "htp_graph_finalization_optimization_mode": str(options.optimization_level),
    }


def board_provider_options(options: QnnOptions) -> dict[str, str]:
    """Provider options shipped in the manifest: the board resolves its own libQnnHtp.so."""
    return {
        "backend_type": "htp",
        "htp_arch": str(options.htp_arch),
        "soc_model": str(options.soc_model),
        "htp_performance_mode": options.performance_mode,
    }


# --------------------------------------------------------------------------
# the plugin EP
# --------------------------------------------------------------------------
def _register_ep() -> list[Any]:
    """Register onnxruntime-qnn's plugin library once per process; its EP devices."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            "onnxruntime: not installed; the QNN backend needs onnxruntime >= 1.23 and onnxruntime-qnn",
            hint="pip install 'dmsbuild[qnn]'  (or: pip install onnxruntime onnxruntime-qnn)",
        ) from None
    try:
        import onnxruntime_qnn
    except ImportError:
        raise UserError(
            "onnxruntime-qnn: not installed; QNN context binaries (target runtime 'qnn') need it",
            hint="pip install 'dmsbuild[qnn]'  (or: pip install onnxruntime-qnn)",
        ) from None
    from ..board.runner.dms_bench import plugin_ep_devices  # the board's own set-up: written once

    try:
        return plugin_ep_devices(ort, EP_NAME)
    except RuntimeError as exc:
        raise UserError(
            f"onnxruntime-qnn: {exc}",
            hint="check that onnxruntime and onnxruntime-qnn versions match (pip show onnxruntime onnxruntime-qnn)",
        ) from None


def session_options(options: QnnOptions, *, context_out: Path | None = None, embed: bool = False) -> "onnxruntime.SessionOptions":
    """SessionOptions selecting the QNN HTP EP; with ``context_out``, EPContext generation on."""
    import onnxruntime as ort

    devices = _register_ep()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if context_out is not None:
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_file_path", str(context_out))
        so.add_session_config_entry("ep.context_embed_mode", "1" if embed else "0")
    so.add_provider_for_devices(devices, provider_options(options))
    return so


# --------------------------------------------------------------------------
# fixed shapes
# --------------------------------------------------------------------------
def _dims(value_info: Any) -> list[int | str]:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
            for d in value_info.type.tensor_type.shape.dim]


def fix_input_shapes(model_path: Path, out_path: Path, batch: int) -> bool:
    """Write ``model_path`` with its symbolic batch axis fixed to ``batch``; False if already fixed.

    Only axis 0 may be symbolic: any other dynamic axis (or ``batch`` = 0)
    raises a UserError, because the QNN EP would silently take no nodes.
    """
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(model_path))
    except DecodeError as exc:
        raise UserError(f"{model_path}: not a readable ONNX file ({exc})", hint="rebuild the int8-qdq artifact") from None
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise UserError(
            f"{model_path}: not a QDQ model (no QuantizeLinear/DequantizeLinear nodes); the QNN HTP needs "
            "quantized activations",
            hint="build the int8-qdq artifact (static QDQ with QUInt8 or QUInt16 activations) and compile that",
        )
    init_names = {i.name for i in model.graph.initializer}
    batch_params: set[str] = set()
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        dims = _dims(inp)
        for axis, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                continue
            if axis == 0 and isinstance(d, str) and d not in ("", "?") and batch > 0:
                batch_params.add(d)
                continue
            raise UserError(
                f"{model_path}: input '{inp.name}' has the dynamic shape {dims}; the QNN EP needs fixed shapes "
                "(with a dynamic axis it silently takes no nodes)",
                hint="export with export.dynamic_batch = false or set quantization.fixed_shape = true for this "
                "target; only a named batch axis is fixed automatically (backend.fixed_batch)",
            )
    if not batch_params:
        return False
    for name in batch_params:
        make_dim_param_fixed(model.graph, name, batch)
    fix_output_shapes(model)
    onnx.save(model, str(out_path))
    return True


# --------------------------------------------------------------------------
# placement report
# --------------------------------------------------------------------------
@dataclass
class PlacementReport:
    """Where the nodes of a QDQ model run once compiled for the HTP."""

    model: str
    total_nodes: int
    qnn_nodes: int
    cpu_nodes: int
    #: the model's input QuantizeLinear / output DequantizeLinear: float <-> quantized I/O, run on CPU by design
    io_nodes: int
    partitions: int
    #: op type -> count of nodes left on the CPU (I/O Q/DQ excluded)
    fallback_ops: dict[str, int]
    #: names of those nodes
    fallback_nodes: list[str]
    #: files of the artifact: the EPContext ONNX first, then its context binaries
    files: list[str]
    #: activation type at the model input ("uint8", "uint16", ...), from its QuantizeLinear zero point
    activations: str | None = None
    compile_seconds: float = 0.0

    @property
    def qnn_fraction(self) -> float:
        return self.qnn_nodes / self.total_nodes if self.total_nodes else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["qnn_fraction"] = round(self.qnn_fraction, 4)
        return d

    def summary(self) -> str:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.fallback_ops.items())) or "none"
        return (f"{self.qnn_nodes}/{self.total_nodes} nodes in {self.partitions} QNN partition(s), "
                f"{self.cpu_nodes} on CPU ({self.io_nodes} I/O Q/DQ); fallback ops: {ops}")


def placement_of(source_model: Path, context_model: Path, compile_seconds: float = 0.0) -> PlacementReport:
    """Compare a QDQ model with its EPContext model: which nodes went into QNN, which stayed on CPU."""
    import onnx

    src = onnx.load(str(source_model), load_external_data=False)
    ctx = onnx.load(str(context_model), load_external_data=False)
    graph_inputs = {i.name for i in ctx.graph.input}
    graph_outputs = {o.name for o in ctx.graph.output}
    partitions = 0
    bins: list[str] = []
    cpu = io = 0
    fallback: Counter[str] = Counter()
    names: list[str] = []
    for node in ctx.graph.node:
        if node.op_type == "EPContext" and node.domain == "com.microsoft":
            partitions += 1
            for a in node.attribute:
                if a.name == "ep_cache_context" and a.s:
                    embedded = any(b.name == "embed_mode" and b.i == 1 for b in node.attribute)
                    if not embedded:
                        ref = a.s.decode()
                        if ref not in bins:
                            bins.append(ref)
            continue
        cpu += 1
        is_io = (node.op_type == "QuantizeLinear" and node.input[0] in graph_inputs) or (
            node.op_type == "DequantizeLinear" and all(o in graph_outputs for o in node.output)
        )
        if is_io:
            io += 1
        else:
            fallback[node.op_type] += 1
            names.append(node.name or f"<{node.op_type} {node.output[0]}>")
    total = len(src.graph.node)
    files = [context_model.name] + bins
    activations = None
    inits = {i.name: i for i in src.graph.initializer}
    src_inputs = {i.name for i in src.graph.input}
    for node in src.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in src_inputs and len(node.input) > 2:
            zp = inits.get(node.input[2])
            if zp is not None:
                activations = onnx.helper.tensor_dtype_to_np_dtype(zp.data_type).name
            break
    return PlacementReport(
        model=str(source_model), total_nodes=total, qnn_nodes=max(0, total - cpu), cpu_nodes=cpu,
        io_nodes=io, partitions=partitions, fallback_ops=dict(fallback), fallback_nodes=names,
        files=files, compile_seconds=round(compile_seconds, 3), activations=activations,
    )


def check_placement(report: PlacementReport, max_cpu_fallback_nodes: int, where: str) -> None:
    """Fail the build when more nodes than the profile allows fell back to the CPU."""
    if report.partitions == 0:
        raise UserError(
            f"{where}: the QNN EP took no nodes of {report.model}",
            hint="check that the model is a QDQ model with fixed input shapes and supported ops",
        )
    n = sum(report.fallback_ops.values())
    if n > max_cpu_fallback_nodes:
        ops = ", ".join(f"{op} x{c}" for op, c in sorted(report.fallback_ops.items()))
        shown = ", ".join(report.fallback_nodes[:10]) + (" ..." if len(report.fallback_nodes) > 10 else "")
        raise UserError(
            f"{where}: {n} node(s) fall back to the CPU, more than backend.max_cpu_fallback_nodes = "
            f"{max_cpu_fallback_nodes}: {ops} (nodes: {shown})",
            hint="replace those ops in the model, or raise backend.max_cpu_fallback_nodes in the target profile",
        )


# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------
_EP_FAIL_HINT = ("this is the QNN HTP's own refusal, not a Python error: a float op left between Q/DQ pairs is the "
                 "usual cause (see the quantize step's lines; quantization.nodes_to_exclude keeps nodes in float), "
                 "then the input size (input.shape) and backend.optimization_level; the placement of a smaller cut "
                 "shows which node (docs/byom.md, QNN)")


def _ep_fail_reason(text: str) -> str:
    """The useful part of ORT's EP_FAIL message: 'Failed to finalize QNN graph. Error: QNN_..., Code: 1002'."""
    first = text.strip().splitlines()[0] if text.strip() else "EP_FAIL"
    return first.split(" : EP_FAIL : ", 1)[-1][:300]


def build_context_binary(qdq_onnx: Path, out: Path, options: QnnOptions, *, where: str | None = None) -> PlacementReport:
    """Compile a QDQ ONNX model into a QNN HTP EPContext model at ``out`` (+ ``<stem>_qnn.bin``).

    Checks the placement against ``options.max_cpu_fallback_nodes`` (raising
    UserError with the offending ops) only after the files are in place, so a
    failed check leaves them for inspection; the caller (a doit action) then
    fails and doit does not record the target as up to date.
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    # ORT's errors for a model it cannot take (not bugs in dmsbuild)
    model_errors = (ort_state.Fail, ort_state.InvalidGraph, ort_state.InvalidArgument, ort_state.NotImplemented,
                    ort_state.RuntimeException)
    qdq_onnx = Path(qdq_onnx)
    out = Path(out)
    where = where or str(out)
    if not qdq_onnx.is_file():
        raise UserError(f"{qdq_onnx}: QDQ model not found", hint="build the int8-qdq artifact first")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        src = qdq_onnx
        fixed = tmp / "fixed-input.onnx"
        if fix_input_shapes(qdq_onnx, fixed, options.fixed_batch):
            src = fixed
        tmp_out = tmp / out.name  # same file name, so the EPContext's relative .bin reference stays valid
        so = session_options(options, context_out=tmp_out, embed=options.embed_context)
        start = time.perf_counter()
        try:
            ort.InferenceSession(str(src), sess_options=so)
        except model_errors as exc:
            raise UserError(f"{qdq_onnx}: the QNN EP failed to compile it: {str(exc).splitlines()[0]}",
                            hint="check the model's ops and quantization (uint8/uint16 QDQ)") from None
        except getattr(ort_state, "EPFail", ()) as exc:  # the HTP backend refused the graph (finalize, memory...)
            raise UserError(f"{where}: {qdq_onnx.name}: the QNN HTP backend failed to compile it: "
                            f"{_ep_fail_reason(str(exc))}", hint=_EP_FAIL_HINT) from None
        seconds = time.perf_counter() - start
        if not tmp_out.is_file():
            raise UserError(
                f"{qdq_onnx}: the QNN EP took no nodes and wrote no context binary",
                hint="the model needs fixed input shapes and QDQ quantization the HTP supports",
            )
        report = placement_of(src, tmp_out, seconds)
        report.model = str(qdq_onnx)
        for name in report.files:
            os.replace(tmp / name, out.parent / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check_placement(report, options.max_cpu_fallback_nodes, where)
    return report


# --------------------------------------------------------------------------
# run (board, or the HTP simulator on x86_64)
# --------------------------------------------------------------------------
def open_session(context_model: Path, options: QnnOptions) -> "onnxruntime.InferenceSession":
    """An InferenceSession on the HTP (on x86_64: onnxruntime-qnn's HTP simulator)."""
    import onnxruntime as ort

    so = session_options(options)
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "0")
    return ort.InferenceSession(str(context_model), sess_options=so)


@dataclass
class SimulatorRun:
    outputs: list[list["np.ndarray"]]  # per sample, per output
    output_names: list[str]
    load_ms: float
    samples_ms: list[float]


def run_on_simulator(context_model: Path, inputs: Sequence["np.ndarray"], options: QnnOptions,
                     input_name: str | None = None) -> SimulatorRun:
    """Run each input (batch-1 array) through the context model; slow (~1 s per MobileNetV3 inference)."""
    start = time.perf_counter()
    sess = open_session(context_model, options)
    load_ms = (time.perf_counter() - start) * 1e3
    name = input_name or sess.get_inputs()[0].name
    outs: list[list[Any]] = []
    samples: list[float] = []
    for x in inputs:
        t0 = time.perf_counter_ns()
        outs.append(sess.run(None, {name: x}))
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return SimulatorRun(outs, [o.name for o in sess.get_outputs()], load_ms, samples)


def compare_outputs(ref: Sequence[Sequence["np.ndarray"]], got: Sequence[Sequence["np.ndarray"]],
                    names: Sequence[str], classification: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Per head: the shared output-check metrics (``runner/metrics.py``) plus max abs diff relative to the reference's range."""
    import numpy as np

    from ..board.runner.metrics import head_metrics

    heads: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        r = np.stack([np.asarray(s[i], dtype=np.float64) for s in ref])
        g = np.stack([np.asarray(s[i], dtype=np.float64) for s in got])
        m = head_metrics(r, g, name in classification)
        span = float(r.max() - r.min()) or 1.0
        m["max_rel_to_range"] = (m["max_abs_diff"] or 0.0) / span
        heads[name] = m
    return heads


# --------------------------------------------------------------------------
# build.json fields (CONTRACTS §1)
# --------------------------------------------------------------------------
def artifact_fields(out: Path, report: PlacementReport, options: QnnOptions, root: Path) -> dict[str, Any]:
    """The backend-specific part of a build.json artifact entry for a context model at ``out``.

    The context binary is compiled for one HTP architecture: not portable.
    The caller adds name, precision, sha256, size and eval.
    """
    extra = [str((out.parent / f).relative_to(root)) for f in report.files[1:]]
    return {"kind": "qnn-context", "path": str(out.relative_to(root)), "extra_files": extra, "runtime": RUNTIME,
            "providers": [EP_NAME, "CPUExecutionProvider"], "provider_options": [board_provider_options(options), {}],
            "portable": False, "placement": report.to_dict()}



# --------------------------------------------------------------------------
# backend plan (dmsbuild/backends/__init__.py): what a QNN target ships
# --------------------------------------------------------------------------
def placement_path(out: Path) -> Path:
    """Where the build writes the op-placement report of the context model ``out``."""
    return out.with_name(f"{out.stem}.placement.json")


def compile_artifact(qdq_onnx: Path, out: Path, options: QnnOptions, where: str) -> PlacementReport:
    """doit action: build the context binary, write and print its placement report (fails above the threshold)."""
    import json

    report = build_context_binary(qdq_onnx, out, options, where=where)
    placement_path(out).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    print(f"  qnn: {out.name}: {report.summary()} (compiled in {report.compile_seconds:.1f} s)", flush=True)
    if options.snpe.enabled and not options.snpe.required:
        from .snpe import find_sdk

        try:
            find_sdk()
        except UserError as exc:  # DLC artifacts are optional here: say once why there is none
            print(f"  snpe: DLC not built: {str(exc).splitlines()[0]}", flush=True)
    return report


def _sdk_present() -> bool:
    from .snpe import SDK_ENV_VARS

    return any(os.environ.get(v) for v in SDK_ENV_VARS)


def compile_dlc(project: Any, fp32_onnx: Path, out: Path, options: QnnOptions, target: str) -> None:
    """doit action: the SNPE DLC of the target (convert, quantize with unique calibration files, HTP prepare)."""
    from ..convert.data import list_samples, load_samples
    from .snpe import build_dlc, find_sdk

    sdk = find_sdk()  # no SDK: one UserError line saying what to install and how to point the build at it
    files = list_samples(project, "calibration", project.data.max_calibration_samples)
    _, batch = load_samples(files, project, split="calibration")
    if isinstance(batch, dict):  # several inputs: one {input name: sample} per input-list line
        count = len(next(iter(batch.values())))
        samples = [{n: v[i:i + 1] for n, v in batch.items()} for i in range(count)]
    else:
        samples = [batch[i:i + 1] for i in range(len(batch))]
    build_dlc(fp32_onnx, samples, out, options.snpe, input_name=project.input.name, shape=list(project.input.shape),
              log_dir=project.artifacts / target / "logs", sdk=sdk,
              inputs={i.name: list(i.shape) for i in project.all_inputs} if project.several_inputs else None)


def plan(project: Any, profile: Any, sources: dict[str, Path]) -> list[Any]:
    """QNN HTP context binary per int8-qdq precision; SNPE DLC beside it when the SDK is installed (or required)."""
    from . import ArtifactPlan

    options = load_options(profile.backend, str(profile.source))
    wrong = [p for p in profile.precisions if p != "int8-qdq"]
    if wrong:
        raise UserError(
            f"{profile.source}: field 'precisions' has {wrong}; the QNN HTP runs quantized models only: ['int8-qdq']",
            hint=f"set precisions = [\"int8-qdq\"] in {profile.source}",
        )
    out_dir = project.artifacts / profile.name
    plans = []
    src = sources["int8-qdq"]
    out = out_dir / "int8-qdq.onnx"
    bins = [] if options.embed_context else [out.with_name(f"{out.stem}_qnn.bin")]
    where = f"{profile.source}: artifact int8-qdq"
    plans.append(ArtifactPlan(
        name="int8-qdq", precision="int8-qdq", kind="qnn-context", path=out, source=src, runtime=RUNTIME,
        providers=[EP_NAME, "CPUExecutionProvider"], provider_options=[board_provider_options(options), {}],
        portable=False, extra_files=bins,
        build=lambda: compile_artifact(src, out, options, where),
        settings={"backend": dict(profile.backend), "runtime": RUNTIME}))
    if options.snpe.enabled and (options.snpe.required or _sdk_present()):
        from .snpe import RUNTIME as SNPE_RUNTIME

        fp32 = project.artifacts / "common" / "fp32.onnx"
        dlc = out_dir / "int8-qdq.dlc"
        plans.append(ArtifactPlan(
            name="int8-qdq-dlc", precision="int8-qdq", kind="dlc", path=dlc, source=src, runtime=SNPE_RUNTIME,
            providers=[options.snpe.runtime], provider_options=[{}], portable=False,
            build=lambda: compile_dlc(project, fp32, dlc, options, profile.name), file_dep=[fp32],
            settings={"snpe": str(options.snpe), "input": str(project.input),
                      **({"inputs": [str(i) for i in project.all_inputs]} if project.several_inputs else {})}))
    return plans


FIX = {
    "host": "pip install 'dmsbuild[qnn]'  (onnxruntime-qnn >= 2.7; builds QNN HTP context binaries on x86_64)",
    "board": "install onnxruntime-qnn for the board's OS and the QAIRT runtime libraries (libQnnHtp.so, "
             "libQnnHtpV73Skel.so) so ONNX Runtime lists QNNExecutionProvider",
}


def _snpe_enabled(profile: Any) -> bool:
    return (profile.backend.get("snpe") or {}).get("enabled", True) is not False


@dataclass(frozen=True)
class QNNCandidate:
    """One point of [tune.qnn]: the static quantization the context binary is built from, and the HTP
    performance mode it runs with (through the QNN backend's own options and provider options)."""

    activation_bits: int
    per_channel: bool
    htp_performance_mode: str

    @property
    def label(self) -> str:
        return (f"QNN {self.activation_bits}-bit activations {'per-channel' if self.per_channel else 'per-tensor'}, "
                f"HTP {self.htp_performance_mode}")

    def static(self, proj: "ProjectConfig", prof: "TargetProfile") -> Any:
        """The target's static quantization with this width and per-channel (its own key: a shared file per point)."""
        from ..config import static_quant_for

        return dataclasses.replace(static_quant_for(proj, prof), per_channel=self.per_channel,
                                   activation_type="QUInt16" if self.activation_bits == 16 else "QUInt8")

    def board_provider_options(self, prof: "TargetProfile") -> dict[str, str]:
        """The manifest's QNN EP options (backends.qnn.board_provider_options) with this performance mode."""
        options = load_options(prof.backend, str(prof.source))
        return board_provider_options(dataclasses.replace(options, performance_mode=self.htp_performance_mode))


def qnn_candidates(prof: "TargetProfile") -> list[QNNCandidate]:
    """Every point of the profile's [tune.qnn] space (defined and checked here; not yet measured)."""
    q = prof.tune.qnn
    return [QNNCandidate(b, pc, m) for b, pc, m in itertools.product(q.activation_bits, q.per_channel,
                                                                     q.htp_performance_mode)]


class QnnBackend(Backend):
    """QNN EPContext models, run and timed on the board by the release's runner on the QNN EP (and, beside
    them, SNPE DLCs when ``[backend.snpe]`` is enabled: those are the snpe backend's artifacts)."""

    name = RUNTIME

    def validate(self, profile: Any) -> QnnOptions:
        return load_options(profile.backend, str(profile.source))

    def plan(self, project: Any, profile: Any, sources: dict[str, Path]) -> list[Any]:
        return plan(project, profile, sources)

    def host_checks(self, profiles: Sequence[Any], env: HostEnv) -> list[Check]:
        ort, qnn = env.version_of("onnxruntime"), env.version_of("onnxruntime-qnn")
        level = "ok" if qnn and major_minor(qnn) >= (2, 7) else "missing"
        checks = [Check("host", "onnxruntime-qnn", level, qnn, profile_names(profiles), FIX["host"])]
        if qnn and ort and major_minor(ort) < (1, 23):
            checks.append(Check("host", "onnxruntime for the QNN plugin EP", "missing", ort, "onnxruntime-qnn 2.x",
                                "pip install -U 'onnxruntime>=1.23' (plugin EPs need ONNX Runtime's EP device API)"))
        with_dlc = [p for p in profiles if _snpe_enabled(p)]
        if with_dlc:
            checks.append(snpe.sdk_check(with_dlc, env, required=False))
        return checks

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: Any) -> list[Check]:
        need = f"target {profile.name} ({profile.runtime})"
        providers = facts.get("onnxruntime_providers") or []
        qnn = facts.get("onnxruntime_qnn")
        ok = bool(qnn) or EP_NAME in providers
        checks = [board_onnxruntime(board, facts, need),
                  Check(board, "QNN execution provider", "ok" if ok else "missing",
                        qnn or (", ".join(providers) if providers else None), need, FIX["board"])]
        if _snpe_enabled(profile):
            checks.append(snpe.board_check(board, facts, f"{profile.name} DLC artifacts", required=False))
        return checks

    def tune_space(self, profile: Any) -> dict[str, list[Any]]:
        t = profile.tune.qnn
        return {"activation_bits": t.activation_bits, "per_channel": t.per_channel,
                "htp_performance_mode": t.htp_performance_mode}

    def tune_points(self, profile: Any) -> list[Any]:
        return qnn_candidates(profile)


BACKEND = QnnBackend()
