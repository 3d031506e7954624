"""TensorRT engines for NVIDIA Jetson boards.

Engines are tied to the GPU architecture and the TensorRT version, so the
release carries the ONNX model and the engine is built ON the board by
``trtexec`` (:func:`build_argv`); the engine comes back to a host cache keyed by
(ONNX sha256, precision, TensorRT version, GPU compute capability)
(:class:`EngineCache`), one folder per board: an engine is reinstalled only on
the board that built it (engines never cross boards, docs/targets.md). INT8 uses explicit quantization: the ONNX is a QDQ model with
symmetric int8 activations (INT8 calibrators are deprecated since TensorRT 10.1).

Benchmarks run ``trtexec --loadEngine`` (:func:`bench_argv`); its stdout
(:func:`parse_trtexec_output`) and ``--exportTimes`` JSON
(:func:`parse_export_times`) become the common result dict (CONTRACTS §3) with
GPU compute and H2D/D2H times (:func:`result_from_trtexec`).

On a host with an NVIDIA GPU and the ``tensorrt`` package,
:func:`build_engine_on_host` builds with the TensorRT 10+ Python API
(``build_serialized_network``, ``set_memory_pool_limit``); the same cache key
applies. ``tensorrt`` is imported only there.
"""
from __future__ import annotations

import dataclasses
import itertools
import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..board.release_agent import sha256_of
from ..config import load_dataclass
from ..errors import UserError
from .base import Backend, Check, HostEnv, major_minor, profile_names
from .toolchain import empty_result, latency_stats

if TYPE_CHECKING:  # pragma: no cover
    from ..config import TargetProfile

RUNTIME = "tensorrt"
#: precisions this backend builds, and the trtexec flags each one needs
PRECISION_FLAGS: dict[str, list[str]] = {
    "fp32": [],
    "fp16": ["--fp16"],
    # explicit quantization: QDQ ONNX; --fp16 lets the layers outside Q/DQ pairs run in half precision
    "int8-qdq": ["--int8", "--fp16"],
}


@dataclass
class TensorRTOptions:
    """``[backend]`` of a TensorRT target profile."""

    #: builder workspace memory pool (``--memPoolSize=workspace:<N>M``)
    workspace_mb: int = 1024
    #: keep a timing cache beside the engine (``--timingCacheFile``): faster rebuilds
    timing_cache: bool = True
    #: trtexec on the board (JetPack installs it at /usr/src/tensorrt/bin/trtexec, not on PATH)
    trtexec: str = "/usr/src/tensorrt/bin/trtexec"
    #: ``--builderOptimizationLevel`` (0-5); None: TensorRT's default (3)
    builder_optimization_level: int | None = None
    #: trtexec warm-up before timing, in milliseconds (trtexec warms up by time, not by count)
    warmup_ms: int = 200
    #: ``--avgRuns``: runs averaged per line of trtexec's trace report
    avg_runs: int = 10
    #: ``--percentile``; the result dict needs 90, 95, 99
    percentiles: list[int] = field(default_factory=lambda: [90, 95, 99])
    #: per-layer profile in a separate run (``--exportProfile`` + ``--separateProfileRun``)
    export_profile: bool = True
    #: ``--useCudaGraph``
    use_cuda_graph: bool = False
    #: ``--useSpinWait``: steadier timings at the cost of a busy CPU core
    use_spin_wait: bool = True
    #: host engine cache, a folder below the project's artifacts/ (one folder per board inside: engines never cross boards)
    engine_cache: str = "artifacts/cache/tensorrt"
    #: the optimization profile's smallest input shape for a model with dynamic dims (``--minShapes``; its opt
    #: shape is input.shape, what the benchmark and the output check run); unset: input.shape
    min_shape: list[int] | None = None
    #: the optimization profile's largest input shape (``--maxShapes``); unset: input.shape
    max_shape: list[int] | None = None

    def validate(self, source: str, prefix: str) -> None:
        where = f"{prefix}." if prefix else ""
        if self.workspace_mb <= 0:
            raise UserError(f"{source}: field '{where}workspace_mb' is {self.workspace_mb}; expected a positive number of MiB",
                            hint=f"fix it in {source}")
        if self.builder_optimization_level is not None and not 0 <= self.builder_optimization_level <= 5:
            raise UserError(f"{source}: field '{where}builder_optimization_level' is {self.builder_optimization_level}; allowed: 0-5",
                            hint=f"fix it in {source}")
        if any(not 0 <= p <= 100 for p in self.percentiles):
            raise UserError(f"{source}: field '{where}percentiles' is {self.percentiles}; each must be 0-100",
                            hint=f"fix it in {source}")
        if self.warmup_ms < 0 or self.avg_runs <= 0:
            raise UserError(f"{source}: fields '{where}warmup_ms' (>= 0) and '{where}avg_runs' (> 0) are out of range",
                            hint=f"fix them in {source}")
        parts = PurePosixPath(self.engine_cache).parts
        if not parts or parts[0] != "artifacts" or len(parts) < 2 or ".." in parts:
            raise UserError(f"{source}: field '{where}engine_cache' is {self.engine_cache!r}; expected a folder below "
                            "artifacts/ (e.g. artifacts/cache/tensorrt)", hint=f"fix it in {source}")
        if not re.fullmatch(r"[\w./~-]+", self.trtexec):
            raise UserError(f"{source}: field '{where}trtexec' is {self.trtexec!r}; expected a plain path",
                            hint=f"fix it in {source}")


def load_options(backend: Mapping[str, Any], source: str) -> TensorRTOptions:
    """Validate a profile's ``backend`` table (``profile.backend``, ``str(profile.source)``)."""
    return load_dataclass(TensorRTOptions, dict(backend), source, prefix="backend")


# --------------------------------------------------------------------------
# trtexec command lines (argument lists; the transport quotes them)
# --------------------------------------------------------------------------
def _flags_for(precision: str) -> list[str]:
    try:
        return PRECISION_FLAGS[precision]
    except KeyError:
        raise UserError(
            f"precision '{precision}' is not built by the TensorRT backend; allowed: {', '.join(PRECISION_FLAGS)}",
            hint="fix 'precisions' in the target profile",
        ) from None


def build_argv(onnx: str | PurePosixPath, engine: str | PurePosixPath, precision: str, options: TensorRTOptions,
               *, timing_cache: str | PurePosixPath | None = None, verbose: bool = False,
               shapes: Mapping[str, Mapping[str, Sequence[int]]] | None = None) -> list[str]:
    """trtexec command that builds ``engine`` from ``onnx`` on the board and runs no inference.

    ``shapes``: the optimization profile of the dynamic inputs (``trt_shapes.profile_for``): ``--minShapes``,
    ``--optShapes``, ``--maxShapes``."""
    from . import trt_shapes

    argv = [options.trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", *_flags_for(precision),
            f"--memPoolSize=workspace:{options.workspace_mb}M", *trt_shapes.build_flags(shapes or {})]
    if options.timing_cache and timing_cache is not None:
        argv.append(f"--timingCacheFile={timing_cache}")
    if options.builder_optimization_level is not None:
        argv.append(f"--builderOptimizationLevel={options.builder_optimization_level}")
    argv.append("--skipInference")
    if verbose:
        argv.append("--verbose")
    return argv


def bench_argv(engine: str | PurePosixPath, options: TensorRTOptions, *, iterations: int,
               times_json: str | PurePosixPath, profile_json: str | PurePosixPath | None = None,
               shapes: Mapping[str, Mapping[str, Sequence[int]]] | None = None) -> list[str]:
    """trtexec command that times ``iterations`` inferences of a built engine.

    ``--duration=0`` makes ``--iterations`` the exact count (trtexec otherwise
    runs for at least 3 s).
    """
    if iterations <= 0:
        raise UserError(f"bench.iterations is {iterations}; expected a positive count", hint="fix [bench] in the target profile")
    argv = [options.trtexec, f"--loadEngine={engine}", f"--warmUp={options.warmup_ms}",
            f"--iterations={iterations}", "--duration=0", f"--avgRuns={options.avg_runs}",
            "--percentile=" + ",".join(str(p) for p in options.percentiles),
            f"--exportTimes={times_json}"]
    from . import trt_shapes

    argv += trt_shapes.run_flags(shapes or {})  # the configured shape, not trtexec's opt-shape default
    if options.use_cuda_graph:
        argv.append("--useCudaGraph")
    if options.use_spin_wait:
        argv.append("--useSpinWait")
    if options.export_profile and profile_json is not None:
        argv += [f"--exportProfile={profile_json}", "--separateProfileRun"]
    return argv


# --------------------------------------------------------------------------
# parsing trtexec's report
# --------------------------------------------------------------------------
_LINE_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)*")  # "[10/03/2024-10:47:59] [I] " and similar
_METRIC = re.compile(r"^(Latency|End-to-End Host Latency|Enqueue Time|H2D Latency|GPU Compute Time|D2H Latency):\s*(.*)$")
_PAIR = re.compile(r"(min|max|mean|median|percentile\(([\d.]+)%\))\s*=?\s*([-+\d.eE]+|inf|nan)\s*ms")
_METRIC_KEYS = {"Latency": "latency", "End-to-End Host Latency": "end_to_end", "Enqueue Time": "enqueue",
                "H2D Latency": "h2d", "GPU Compute Time": "compute", "D2H Latency": "d2h"}


def trt_version_from_tag(tag: str) -> str:
    """'100300' -> '10.3.0'; '8503' -> '8.5.3' (the number in ``[TensorRT v100300]``)."""
    n = int(tag)
    if n >= 100000:  # TensorRT >= 10: major*10000 + minor*100 + patch
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"


def _num(text: str) -> float | None:
    """A finite number from trtexec's text, else None (a garbled line counts as missing, never a crash)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _stats_from_pairs(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, pct, value in _PAIR.findall(text):
        name = f"p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}" if pct else key
        if (v := _num(value)) is not None:
            out[name] = v
    return out


def parse_trtexec_output(text: str) -> dict[str, Any]:
    """Parse a trtexec log: the performance summary, versions, device; tolerant of missing parts.

    Returns ``{"passed", "trt_version", "compute_capability", "device", "throughput_qps",
    "metrics": {"latency"|"end_to_end"|"enqueue"|"h2d"|"compute"|"d2h": {min, max, mean, median, pNN…}},
    "host_walltime_s", "gpu_compute_total_s", "warmup_queries", "timed_queries", "warnings"}``.
    """
    res: dict[str, Any] = {"passed": None, "trt_version": None, "compute_capability": None, "device": None,
                           "throughput_qps": None, "metrics": {}, "host_walltime_s": None,
                           "gpu_compute_total_s": None, "warmup_queries": None, "timed_queries": None,
                           "warnings": []}
    in_summary = False
    for raw in text.splitlines():
        amp = re.match(r"^&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\]", raw.strip())
        if amp:
            res["trt_version"] = res["trt_version"] or trt_version_from_tag(amp.group(2))
            if amp.group(1) != "RUNNING":
                res["passed"] = amp.group(1) == "PASSED"
            continue
        is_warning = "[W]" in raw[:40]
        line = _LINE_PREFIX.sub("", raw.strip()).strip()
        if m := re.match(r"^TensorRT version:\s*([\d.]+)", line):
            res["trt_version"] = m.group(1)
        elif m := re.match(r"^Compute Capability:\s*([\d.]+)", line):
            res["compute_capability"] = m.group(1)
        elif m := re.match(r"^Selected Device:\s*(.+)$", line):
            res["device"] = m.group(1).strip()
        elif m := re.match(r"^Warmup completed (\d+) queries", line):
            res["warmup_queries"] = int(m.group(1))
        elif m := re.match(r"^Timing trace has (\d+) queries", line):
            res["timed_queries"] = int(m.group(1))
        elif line == "=== Performance summary ===":
            in_summary = True
        elif in_summary and (m := re.match(r"^Throughput:\s*([\d.eE+-]+)\s*qps", line)):
            res["throughput_qps"] = _num(m.group(1))
        elif (m := _METRIC.match(line)):
            res["metrics"][_METRIC_KEYS[m.group(1)]] = _stats_from_pairs(m.group(2))
        elif (m := re.match(r"^Total Host Walltime:\s*([\d.eE+-]+)\s*s", line)):
            res["host_walltime_s"] = _num(m.group(1))
        elif (m := re.match(r"^Total GPU Compute Time:\s*([\d.eE+-]+)\s*s", line)):
            res["gpu_compute_total_s"] = _num(m.group(1))
        elif is_warning and line.startswith("* "):
            res["warnings"].append(line.lstrip("* ").strip())
    return res


def parse_export_times(text: str, warmup_ms: float | None = None) -> dict[str, list[float]]:
    """Per-inference times from ``--exportTimes`` JSON: latency, compute, h2d, d2h, enqueue, end-to-end (ms).

    trtexec writes the warm-up queries too; with ``warmup_ms`` those whose
    compute starts before it are dropped (trtexec's own rule for its summary).
    """
    try:
        trace = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"trtexec --exportTimes output is not JSON ({str(exc)[:200]})", hint="check the trtexec log on the board") from None
    if not isinstance(trace, list):
        raise UserError("trtexec --exportTimes output is not a JSON list", hint="check the trtexec version on the board")
    keys = {"latency": "latencyMs", "compute": "computeMs", "h2d": "h2dMs", "d2h": "d2hMs", "end_to_end": "endToEndMs"}
    out: dict[str, list[float]] = {k: [] for k in (*keys, "enqueue")}
    warm = 0
    for entry in trace:
        if not isinstance(entry, dict) or "computeMs" not in entry:
            continue  # newer trtexec versions may add header records
        if warmup_ms is not None and _time(entry, "startComputeMs", warmup_ms) < warmup_ms:
            warm += 1
            continue
        for k, j in keys.items():
            if j in entry:
                out[k].append(_time(entry, j))
        if "startEnqMs" in entry and "endEnqMs" in entry:
            out["enqueue"].append(_time(entry, "endEnqMs") - _time(entry, "startEnqMs"))
    out["warmup_dropped"] = [float(warm)]
    return out


def _time(entry: Mapping[str, Any], key: str, default: float | None = None) -> float:
    """One time of an --exportTimes record: a finite number >= 0, else a UserError naming the field."""
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"trtexec --exportTimes: field '{key}' is {str(value)[:40]!r}, not a time in ms",
                        hint="check the trtexec version and its log on the board")
    return float(value)


def _summary_stats(metric: Mapping[str, float] | None) -> dict[str, float | None] | None:
    if not metric:
        return None
    return {k: metric.get(k) for k in ("min", "mean", "median", "p90", "p95", "p99", "max")} | {"std": None}


def result_from_trtexec(stdout: str, times_json: str | None, *, artifact: str, precision: str, sha256: str = "",
                        warmup_ms: float | None = None, iterations: int | None = None) -> dict[str, Any]:
    """The common result dict (CONTRACTS §3) from a trtexec benchmark run.

    Raw samples and their statistics come from the exportTimes JSON when
    present (the summary's percentiles otherwise); ``gpu`` holds GPU compute and
    H2D/D2H statistics.
    """
    summary = parse_trtexec_output(stdout)
    res = empty_result(artifact, precision, RUNTIME, "trtexec", sha256)
    res["warmup"] = summary["warmup_queries"]
    res["iterations"] = iterations if iterations is not None else summary["timed_queries"]
    res["throughput_ips"] = summary["throughput_qps"]
    res["trtexec"] = {k: summary[k] for k in ("trt_version", "compute_capability", "device", "host_walltime_s",
                                              "gpu_compute_total_s", "warnings")}
    if summary["passed"] is False:
        res["error"] = "trtexec reported FAILED"
    times = parse_export_times(times_json, warmup_ms) if times_json else None
    if times and times["latency"]:
        res["samples_ms"] = times["latency"]
        res["latency_ms"] = latency_stats(times["latency"])
        res["gpu"] = {"compute_ms": latency_stats(times["compute"]), "h2d_ms": latency_stats(times["h2d"]),
                      "d2h_ms": latency_stats(times["d2h"])}
        res["iterations"] = iterations if iterations is not None else len(times["latency"])
        if summary["warmup_queries"] is None:
            res["warmup"] = int(times["warmup_dropped"][0])
    else:
        m = summary["metrics"]
        res["latency_ms"] = _summary_stats(m.get("latency"))
        if m.get("compute"):
            res["gpu"] = {"compute_ms": _summary_stats(m.get("compute")), "h2d_ms": _summary_stats(m.get("h2d")),
                          "d2h_ms": _summary_stats(m.get("d2h"))}
    if res["latency_ms"] is None and res["error"] is None:
        res["error"] = "trtexec printed no performance summary"
    return res


# --------------------------------------------------------------------------
# engine cache
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineKey:
    """What makes an engine reusable: same model bytes, precision, TensorRT version and GPU architecture."""

    onnx_sha256: str
    precision: str
    trt_version: str
    compute_capability: str
    #: the optimization profile of a dynamic-shape model (trt_shapes.key); '' for a static model
    shapes: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise ValueError(f"onnx_sha256 {self.onnx_sha256!r} is not a sha256 hex digest")  # a bug in the caller
        if not re.fullmatch(r"\d+(\.\d+)*", self.trt_version) or not re.fullmatch(r"\d+\.\d+", self.compute_capability):
            raise UserError(
                f"TensorRT version {self.trt_version!r} / compute capability {self.compute_capability!r} not understood",
                hint="check the board facts (tensorrt, gpu compute capability)",
            )

    @property
    def digest(self) -> str:
        # only major.minor.patch of TensorRT matter (10.3.0.30 and 10.3.0 engines are interchangeable)
        version = ".".join(self.trt_version.split(".")[:3])
        fields = [self.onnx_sha256, self.precision, version, self.compute_capability]
        blob = json.dumps(fields + [self.shapes] if self.shapes else fields)  # static keys stay as they were
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


class EngineCache:
    """Host folder of engines built on one board (``<engine_cache>/<board>/``), keyed by :class:`EngineKey`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest}.engine"

    def get(self, key: EngineKey) -> Path | None:
        """The cached engine, or None; an entry whose bytes changed since it was stored is ignored."""
        p = self.path(key)
        meta = p.with_suffix(".json")
        if not p.is_file() or not meta.is_file():
            return None
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError:
            return None
        return p if info.get("engine_sha256") == sha256_of(p, follow_symlinks=True) else None

    def _meta(self, key: EngineKey) -> dict[str, Any]:
        try:
            info = json.loads(self.path(key).with_suffix(".json").read_text())
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def built_by(self, key: EngineKey) -> str | None:
        """The board whose trtexec built the cached engine (None: unknown)."""
        return self._meta(key).get("board")

    def recorded_sha256(self, key: EngineKey) -> str | None:
        """The engine's sha256 recorded when it entered the cache."""
        return self._meta(key).get("engine_sha256")

    def put(self, key: EngineKey, engine: Path, **extra: Any) -> Path:
        """Copy ``engine`` into the cache (atomically: temporary file, then rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.path(key)
        data = Path(engine).read_bytes()
        if not data:
            raise UserError(f"{engine}: engine file is empty", hint="rebuild the engine; check the trtexec log")
        for target, payload in ((dest, data), (dest.with_suffix(".json"), None)):
            if payload is None:
                payload = json.dumps({"onnx_sha256": key.onnx_sha256, "precision": key.precision,
                                      "trt_version": key.trt_version, "compute_capability": key.compute_capability,
                                      "engine_sha256": hashlib.sha256(data).hexdigest(), **extra},
                                     indent=1, sort_keys=True).encode()
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=self.root)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, target)
        return dest


# --------------------------------------------------------------------------
# host build with the TensorRT 10+ Python API
# --------------------------------------------------------------------------
def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(
            "tensorrt: the Python package is not installed on this host; engines are built on the Jetson by trtexec",
            hint="on a host with an NVIDIA GPU: pip install 'dmsbuild[tensorrt]' (tensorrt>=10, cuda-python)",
        ) from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise UserError(f"tensorrt {trt.__version__}: dmsbuild needs TensorRT 10 or newer", hint="pip install -U 'tensorrt>=10'")
    return trt


def host_compute_capability() -> str:
    """The host GPU's compute capability ("8.6"), via cuda-python or pycuda."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            cudart = None
    if cudart is not None:
        err, major = cudart.cudaDeviceGetAttribute(cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, 0)
        err2, minor = cudart.cudaDeviceGetAttribute(cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, 0)
        if int(err) == 0 and int(err2) == 0:
            return f"{major}.{minor}"
        raise UserError(f"CUDA: no usable GPU on this host ({err})", hint="check nvidia-smi")
    try:
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as drv
    except ImportError:
        raise UserError("cuda-python / pycuda: neither is installed", hint="pip install cuda-python") from None
    major, minor = drv.Device(0).compute_capability()
    return f"{major}.{minor}"


def build_engine_on_host(onnx: Path, engine_out: Path, precision: str, options: TensorRTOptions,
                         *, timing_cache: Path | None = None) -> dict[str, Any]:
    """Build a serialized engine with the TensorRT 10 Python API; returns the cache key fields."""
    trt = _import_tensorrt()
    flags = _flags_for(precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx}: TensorRT's ONNX parser rejected it: {errors}", hint="check the model's ops and opset")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if "--fp16" in flags:
        config.set_flag(trt.BuilderFlag.FP16)
    if "--int8" in flags:
        config.set_flag(trt.BuilderFlag.INT8)  # QDQ model: explicit quantization, no calibrator
    if options.builder_optimization_level is not None:
        config.builder_optimization_level = options.builder_optimization_level
    cache = None
    if options.timing_cache and timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx}: TensorRT failed to build a {precision} engine", hint="rerun with a verbose logger")
    engine_out.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_out.with_name(f".{engine_out.name}.tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_out)
    if cache is not None and timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"onnx_sha256": sha256_of(onnx, follow_symlinks=True), "precision": precision, "trt_version": trt.__version__,
            "compute_capability": host_compute_capability()}


def output_argv(engine: str | PurePosixPath, options: TensorRTOptions, *, inputs: dict[str, str],
                output_json: str | PurePosixPath,
                shapes: Mapping[str, Mapping[str, Sequence[int]]] | None = None) -> list[str]:
    """trtexec command running ONE inference on given inputs and writing its outputs (the output check
    without Python TensorRT).

    ``--loadInputs=spec`` with spec ``'name':file[,'name':file]`` (raw tensor bytes; names in single quotes,
    as trtexec's help allows, so names with ':' work) and ``--exportOutput=<file>`` (JSON written by
    exportJSONOutput in samples/common/sampleReporting.cpp: ``[{"name", "dimensions": "1x5", "values": [...]}]``).
    """
    from . import trt_shapes

    spec = ",".join(f"'{name}':{path}" for name, path in inputs.items())
    return [options.trtexec, f"--loadEngine={engine}", f"--loadInputs={spec}", f"--exportOutput={output_json}",
            "--iterations=1", "--warmUp=0", "--duration=0", *trt_shapes.run_flags(shapes or {})]


def parse_export_output(text: str) -> dict[str, Any]:
    """``--exportOutput`` JSON -> {output name: numpy array shaped by its "dimensions"}."""
    import numpy as np

    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("exportOutput JSON is not a list")
    out = {}
    for d in data:
        dims = [int(x) for x in str(d["dimensions"]).split("x") if x]
        out[str(d["name"])] = np.asarray(d["values"], dtype=np.float64).reshape(dims)
    return out


def runner_argv(python: str, script: str | PurePosixPath, engine: str | PurePosixPath, reference: str | PurePosixPath,
                *, samples: int, classification: Sequence[str], keys: dict[str, str] | None = None,
                kinds: dict[str, Any] | None = None) -> list[str]:
    """Board command running the output check; prints the CONTRACTS §3 ``verify`` JSON.

    ``keys`` (tensor name -> safe id, manifest ``outputs.keys``) travels as one JSON word; the
    transport shlex-quotes every word, so any tensor name is a safe argument."""
    argv = [python, str(script), "--engine", str(engine), "--reference", str(reference), "--samples", str(samples)]
    for name in classification:
        argv += ["--classification", name]
    if keys:
        argv += ["--keys", json.dumps(keys, sort_keys=True)]
    if kinds:  # each output judged by what it means (docs/accuracy.md "Outputs by kind")
        argv += ["--kinds", json.dumps(kinds, sort_keys=True)]
    return argv


# --------------------------------------------------------------------------
# backend plan (dmsbuild/backends/__init__.py): what a TensorRT target ships
# --------------------------------------------------------------------------
def _copy_onnx(src: Path, dst: Path) -> None:
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _copy_onnx_with_shapes(project: Any, profile: Any, options: TensorRTOptions, src: Path, dst: Path, shapes_file: Path,
                           precision: str) -> None:
    """The ONNX the board's trtexec builds from, and beside it the optimization profile of its dynamic inputs
    (trt_shapes: one line naming an input whose dynamic dims have no configured shape)."""
    from . import trt_shapes

    if project.several_inputs and (options.min_shape is not None or options.max_shape is not None):
        raise UserError(f"{profile.source}: field 'backend.min_shape'/'backend.max_shape' widens the profile of one input; "
                        f"this model has {len(project.all_inputs)} inputs, each built and run at its configured shape",
                        hint="remove backend.min_shape / backend.max_shape for this model")
    prof = trt_shapes.profile_for(trt_shapes.model_inputs(src), {i.name: list(i.shape) for i in project.all_inputs},
                                  min_shape=options.min_shape, max_shape=options.max_shape,
                                  where=str(profile.source), artifact=precision)
    _copy_onnx(src, dst)
    trt_shapes.write_sidecar(shapes_file, dst, prof)


def plan(project: Any, profile: Any, sources: dict[str, Path]) -> list[Any]:
    """The ONNX each engine is built from on the board (kind ``trt-onnx``).

    fp16: the FP32 ONNX (trtexec ``--fp16`` picks half precision per layer; the
    host's FP16 ONNX is only its accuracy proxy). int8-qdq: the QDQ model with
    symmetric int8 activations (explicit quantization). The engines themselves
    are built on the board at benchmark time (dmsbuild/backends/trt_board.py).
    """
    from . import ArtifactPlan

    options = load_options(profile.backend, str(profile.source))
    out_dir = project.artifacts / profile.name
    fp32 = project.artifacts / "common" / "fp32.onnx"
    plans = []
    for precision in profile.precisions:
        _flags_for(precision)
        src = sources[precision]
        out = out_dir / f"{precision}.trt.onnx"
        from_onnx = fp32 if precision in ("fp16", "fp32") else src
        shapes_file = out.with_name(out.name[:-len(".onnx")] + ".shapes.json")
        plans.append(ArtifactPlan(
            name=precision, precision=precision, kind="trt-onnx", path=out, source=src, runtime=RUNTIME,
            providers=["trtexec"], provider_options=[{"flags": " ".join(PRECISION_FLAGS[precision])}],
            portable=True, file_dep=[from_onnx] if from_onnx != src else [], extra_files=[shapes_file],
            build=lambda a=from_onnx, b=out, s=shapes_file, p=precision: _copy_onnx_with_shapes(project, profile, options, a, b, s, p),
            settings={"from": str(from_onnx), "workspace_mb": options.workspace_mb, "input_shape": list(project.input.shape),
                      "min_shape": options.min_shape, "max_shape": options.max_shape,
                      **({"input_shapes": {i.name: list(i.shape) for i in project.all_inputs}}
                         if project.several_inputs else {})}))
    return plans


FIX = {
    "host-tensorrt": "optional: on a host with an NVIDIA GPU, pip install 'dmsbuild[tensorrt]' to build engines "
                     "locally; otherwise engines are built on the Jetson",
    "host-trtexec": "optional: install TensorRT (tar or deb from developer.nvidia.com/tensorrt) and put its bin/ on PATH",
    "board-tensorrt": "flash or upgrade JetPack (6.x ships TensorRT 10): sudo apt install nvidia-jetpack; "
                      "the Python bindings come as python3-libnvinfer",
    "board-trtexec": "trtexec comes with JetPack's TensorRT at /usr/src/tensorrt/bin/trtexec "
                     "(sudo apt install libnvinfer-bin); set backend.trtexec if it is elsewhere",
}


#: [tune.tensorrt] precision -> (the backend precision whose ONNX and flags it builds from, extra trtexec flags)
TRT_PRECISIONS = {"fp16": ("fp16", []), "int8": ("int8-qdq", []), "best": ("int8-qdq", ["--best"])}


@dataclass(frozen=True)
class TensorRTCandidate:
    """One point of [tune.tensorrt]: engines built on the Jetson by trtexec (candidates share the engine cache,
    which keys engines by their trtexec flags)."""

    precision: str
    builder_optimization_level: int
    sparsity: bool

    @property
    def label(self) -> str:
        return (f"TensorRT {self.precision}, builder level {self.builder_optimization_level}"
                + (", sparsity" if self.sparsity else ""))

    def build_argv(self, onnx: str, engine: str, options: Any, timing_cache: str | None = None,
                   shapes: Any = None) -> list[str]:
        """The trtexec build command, through the backend's own ``build_argv`` (its workspace, timing cache,
        trtexec path); ``--best`` and ``--sparsity=enable`` (trtexec --help: spec ::= disable|enable|force) added."""
        base, extra = TRT_PRECISIONS[self.precision]
        opts = dataclasses.replace(options, builder_optimization_level=self.builder_optimization_level)
        argv = build_argv(onnx, engine, base, opts, timing_cache=timing_cache, shapes=shapes)  # dynamic dims: the profile
        at = argv.index("--skipInference")
        return argv[:at] + extra + (["--sparsity=enable"] if self.sparsity else []) + argv[at:]


def tensorrt_candidates(prof: "TargetProfile") -> "list[TensorRTCandidate]":
    """Every point of the profile's [tune.tensorrt] space (defined and checked here; not yet measured)."""
    t = prof.tune.tensorrt
    return [TensorRTCandidate(p, lvl, sp) for p, lvl, sp in itertools.product(t.precision, t.builder_optimization_level,
                                                                              t.sparsity)]


class TensorRTBackend(Backend):
    """The ONNX ships; trtexec builds the engine on the Jetson and times it, driven by the host (trt_board.py)."""

    name = RUNTIME
    board_driver = "dmsbuild.backends.trt_board"
    arch_bound = True
    state_tools = ("nvpmodel", "jetson_clocks", "tegrastats")

    def validate(self, profile: Any) -> TensorRTOptions:
        return load_options(profile.backend, str(profile.source))

    def plan(self, project: Any, profile: Any, sources: dict[str, Path]) -> list[Any]:
        return plan(project, profile, sources)

    def host_checks(self, profiles: Sequence[Any], env: HostEnv) -> list[Check]:
        trt = env.version_of("tensorrt") or env.version_of("tensorrt-cu12")
        trtexec = env.which("trtexec")
        names = profile_names(profiles)
        checks = [Check("host", "tensorrt (Python, optional)", "ok" if trt else "warning", trt, names, FIX["host-tensorrt"]),
                  Check("host", "trtexec (optional)", "ok" if trtexec else "warning", trtexec, names, FIX["host-trtexec"])]
        if trt and major_minor(trt) < (10,):
            checks.append(Check("host", "tensorrt >= 10", "missing", trt, "host engine builds",
                                "pip install -U 'tensorrt>=10' (the TensorRT 8 API is not supported)"))
        return checks

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: Any) -> list[Check]:
        need = f"target {profile.name} ({profile.runtime})"
        trt = facts.get("tensorrt")
        level = "ok" if trt and major_minor(str(trt)) >= (10,) else "missing"
        return [Check(board, "TensorRT >= 10", level, trt, need, FIX["board-tensorrt"]),
                Check(board, "trtexec", "ok" if facts.get("trtexec") else "missing", facts.get("trtexec"), need,
                      FIX["board-trtexec"])]

    def facts_probe(self, transport: Any, python: str, backend_table: Mapping[str, Any]) -> dict[str, Any]:
        return self.driver().probe(transport, python, load_options(backend_table, "manifest.json runtime_settings"))

    def tune_space(self, profile: Any) -> dict[str, list[Any]]:
        t = profile.tune.tensorrt
        return {"precision": t.precision, "builder_optimization_level": t.builder_optimization_level,
                "sparsity": t.sparsity}

    def tune_points(self, profile: Any) -> list[Any]:
        return tensorrt_candidates(profile)


BACKEND = TensorRTBackend()
