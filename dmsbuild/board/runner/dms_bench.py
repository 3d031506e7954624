#!/usr/bin/env python3
"""dmsbuild benchmark runner, shipped inside every release as runner/dms_bench.py.

It runs ON THE BOARD, alone: it needs only the Python standard library, numpy
and onnxruntime (plus onnxruntime-qnn for QNN artifacts) and its siblings
runner/metrics.py and runner/probe.py (the board facts), and never imports
dmsbuild. It runs every artifact whose providers are ONNX Runtime execution
providers, whatever its runtime (``runs_here``), and hands a ``.tflite`` file
to its sibling runner/litert_runner.py (``runs_on_litert``: the LiteRT
interpreter, which a .tflite-only board has instead of onnxruntime). For each such artifact of the
release's manifest.json it measures model load time, first-inference time, a separate warm-up, then
``bench.iterations`` runs timed with ``time.perf_counter_ns`` (raw samples
kept), peak resident memory, and checks the outputs on the host's FP32
reference (verify/reference.npz) per head with ``runner/metrics.py`` (shipped
beside it; the host's build-time gate uses the same file).

    python3 runner/dms_bench.py --release <release dir> [--artifact NAME]

prints ONE JSON document on stdout (docs/CONTRACTS.md §3). Each artifact is
measured in its own child process, so its peak RSS is its own and a crash of
one execution provider (even a segfault) becomes that artifact's ``error``
while the others still run.

Exit codes: 0 document printed, at least one artifact measured; 5 document
printed, every artifact failed; 2 unusable release or arguments (stderr says
what); 3 numpy, onnxruntime or (for a .tflite) the LiteRT interpreter missing on the board (stderr has
the install hint); ``--facts`` prints the board facts (CONTRACTS §4) and exits 0.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

# the release folder on the board holds exactly the manifest's files: importing runner/metrics.py must
# not leave a runner/__pycache__ there (it would change the folder a redeploy verifies and a bench reads)
sys.dont_write_bytecode = True

SCHEMA = 1
RUNNER_VERSION = "1"
#: 1 is left to Python itself (an uncaught exception: a crash)
EXIT_OK, EXIT_ALL_FAILED, EXIT_BAD_RELEASE, EXIT_MISSING_DEPENDENCY = 0, 5, 2, 3
ORT_HINT = "pip install onnxruntime"
#: an artifact's child process gets this long (s) before it is reported as hung
CHILD_TIMEOUT = float(os.environ.get("DMS_BENCH_CHILD_TIMEOUT", "3600"))
MAX_ERROR_CHARS = 500
#: artifact files runner/litert_runner.py runs (the LiteRT interpreter, with the Edge TPU delegate for a compiled
#: model), not ONNX Runtime: what the manifest entry's file is, whatever the runtime that built it
LITERT_SUFFIX = ".tflite"


class ReleaseError(Exception):
    """The release folder or its manifest cannot be used (exit 2)."""


class MissingDependency(Exception):
    """numpy or onnxruntime is not importable on this board (exit 3)."""


# --------------------------------------------------------------------------
# statistics (pure Python: dmsbuild.core.results imports these for other runtimes)
# --------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method) of sorted values."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    """min/mean/median/p90/p95/p99/max/std (population) of latency samples in ms."""
    s = sorted(samples_ms)
    return {
        "min": s[0],
        "mean": statistics.fmean(s),
        "median": percentile(s, 50),
        "p90": percentile(s, 90),
        "p95": percentile(s, 95),
        "p99": percentile(s, 99),
        "max": s[-1],
        "std": statistics.pstdev(s) if len(s) > 1 else 0.0,
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM where /proc has it, else getrusage)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024.0 * 1024.0) if sys.platform == "darwin" else kb / 1024.0


# --------------------------------------------------------------------------
# board facts (CONTRACTS §4): runner/probe.py, the same probe the host sends before a release exists
# --------------------------------------------------------------------------
def _probe():
    """runner/probe.py (a sibling file in the release), like ``_metrics``."""
    try:
        from . import probe  # imported as dmsbuild.board.runner.dms_bench (the host)
    except ImportError:
        try:
            import probe  # run as runner/dms_bench.py on the board: runner/ is sys.path[0]
        except ImportError:
            raise ReleaseError("runner/probe.py is missing beside dms_bench.py; redeploy the release") from None
    return probe


def gather_facts() -> dict:
    """What this board has: the probe's facts."""
    return _probe().gather(os.getcwd())


# --------------------------------------------------------------------------
# release
# --------------------------------------------------------------------------
def load_manifest(release: str) -> dict:
    path = os.path.join(release, "manifest.json")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise ReleaseError(f"{path}: not found; is {release} a dmsbuild release folder?") from None
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{path}: unreadable or not JSON ({exc}); redeploy the release") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA or not isinstance(manifest.get("artifacts"), list):
        raise ReleaseError(f"{path}: not a schema-{SCHEMA} dmsbuild manifest; redeploy with a matching dmsbuild")
    return manifest


def release_id(release: str) -> str:
    """The release's id: its folder name under releases/ (``current`` resolved), else the manifest hash."""
    real = os.path.realpath(release)
    if os.path.basename(os.path.dirname(real)) == "releases":
        return os.path.basename(real)
    with open(os.path.join(release, "manifest.json"), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def _bench_plan(manifest: dict, args: argparse.Namespace) -> dict:
    plan = {"warmup": 10, "iterations": 100, "threads": 0, "verify_samples": 16}
    plan.update({k: v for k, v in (manifest.get("bench") or {}).items() if k in plan})
    for key in plan:
        override = getattr(args, key, None)
        if override is not None:
            plan[key] = override
    for key, value in plan.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (key == "iterations" and value < 1):
            raise ReleaseError(f"manifest.json: bench.{key} is {value!r}; expected a whole number (iterations >= 1)")
    return plan


# --------------------------------------------------------------------------
# one artifact (runs in a child process)
# --------------------------------------------------------------------------
def _import_runtime():
    try:
        import numpy as np
    except ImportError:
        raise MissingDependency("numpy is not installed for " + sys.executable + "; install it: pip install numpy") from None
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency(
            "onnxruntime is not installed for " + sys.executable + f"; install it on the board: {ORT_HINT}"
        ) from None
    return np, ort


#: plugin EPs this process registered from a library (selected with add_provider_for_devices)
_PLUGINS_REGISTERED: set[str] = set()


#: manifest ``session`` values (written by `doit tune`, dmsbuild/pipeline/tune/) -> ONNX Runtime enum member names
GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


def session_threads(entry: dict, threads: int) -> int:
    """An artifact's intra-op threads: its manifest ``session.intra_op_threads`` (the tuned setting), else ``threads``."""
    value = (entry.get("session") or {}).get("intra_op_threads")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else threads


#: how an interleaved comparison keeps two multi-threaded sessions from timing each other (DESIGN §9):
#: "gap" (default): one process, every session with its deployed settings (ONNX Runtime's default spinning),
#: and an idle pause of ``GAP_S`` before each side's block, so the previous side's pool has stopped
#: spin-waiting before the next side is timed; each block's first run is untimed (its pool wakes up).
#: "spin-off": spinning off on every session (session.intra_op.allow_spinning = 0) -- biased against
#: multi-threaded sides: a 2-thread session without spinning is up to 1.7x slower than as deployed
#: (docs/measurements.md), so a 1-thread candidate looks faster than it is; "processes": each side in its own
#: process (deployed spinning), the parent alternating them; "none": one process, default spinning, no pause
#: (biased: a side's pool spins into the next side's block). Those three are kept for bench/.
#: "fresh" (`doit tune`): every side's block in a process of its own, started for that block and ended after it
#: (deployed settings, warm-up in it): a session's speed depends on the process and session it lands in
#: (sub-millisecond models on a 2-core VM: the same artifact 0.15 ms in one session and 0.33 ms in the next,
#: docs/measurements.md "Session luck"), so one session per side measured over many blocks is ONE draw of that
#: luck, which no interval over blocks covers; a new process per block samples it, and the interval covers it.
#: Nothing runs beside the block being timed (the previous side's process has exited, its pool with it).
ISOLATIONS = ("gap", "spin-off", "processes", "none", "fresh")
#: seconds of idle before each side's block under "gap": longer than ONNX Runtime's spin-wait after a run
GAP_S = 0.1
SPIN_OFF = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def _session_options(ort, threads: int, session: dict | None = None, spinning: bool = True):
    """Session options; ``session`` (a manifest entry's tuned settings) picks the graph optimisation level
    and the execution mode, otherwise ONNX Runtime's default level and sequential execution. ``spinning``
    False turns the thread pools' spin-waiting off (``SPIN_OFF``): only ``--isolation spin-off`` (bench/)
    does so; what ships, and the default ``gap`` harness, keep ONNX Runtime's spinning."""
    session = session or {}
    so = ort.SessionOptions()
    if not spinning:
        for key, value in SPIN_OFF.items():
            so.add_session_config_entry(key, value)
    if threads > 0:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    mode = EXECUTION_MODES.get(str(session.get("execution_mode", "sequential")))
    level = session.get("graph_optimization_level")
    if mode is None or (level is not None and level not in GRAPH_LEVELS):
        raise RuntimeError(f"manifest session settings {session!r} are not understood by this runner; "
                           f"graph_optimization_level: {', '.join(GRAPH_LEVELS)}; execution_mode: {', '.join(EXECUTION_MODES)}")
    so.execution_mode = getattr(ort.ExecutionMode, mode)
    if level is not None:
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[level])
    so.log_severity_level = 3  # errors only: EP warnings would bury the runner's own stderr
    return so


#: ONNX Runtime plugin EPs this runner can register: provider -> the Python package whose ``get_library_path()``
#: is its library (onnxruntime-qnn 2.x). The host's QNN build (backends/qnn.py) registers through
#: ``plugin_ep_devices`` too: the one QNN session set-up of dmsbuild.
PLUGIN_EPS = {"QNNExecutionProvider": "onnxruntime_qnn"}


def _register_plugin(ort, ep_name: str) -> None:
    """A plugin EP (onnxruntime-qnn 2.x) registers its library once per process.

    An onnxruntime build with the EP compiled in (onnxruntime-qnn 1.x) already
    lists the provider; it is then selected the classic way, by name.
    """
    if ep_name in _PLUGINS_REGISTERED or ep_name in ort.get_available_providers():
        return
    package = PLUGIN_EPS[ep_name]
    try:
        module = __import__(package)
    except ImportError:
        raise RuntimeError(f"{ep_name} is not available: {package.replace('_', '-')} is not installed; "
                           f"pip install {package.replace('_', '-')}") from None
    if not hasattr(ort, "register_execution_provider_library"):
        raise RuntimeError(f"{ep_name}: onnxruntime {ort.__version__} cannot load plugin EPs; upgrade onnxruntime (>= 1.22)")
    ort.register_execution_provider_library(ep_name, module.get_library_path())
    _PLUGINS_REGISTERED.add(ep_name)


def plugin_ep_devices(ort, ep_name: str) -> list:
    """The devices of plugin EP ``ep_name``, its library registered first when needed; RuntimeError when none."""
    get = getattr(ort, "get_ep_devices", None)
    devices = [d for d in get() if d.ep_name == ep_name] if get else []
    if not devices:
        _register_plugin(ort, ep_name)
        devices = [d for d in ort.get_ep_devices() if d.ep_name == ep_name] if get else []
    if not devices:
        raise RuntimeError(f"{ep_name} is registered but offers no device on this board")
    return devices


def create_session(ort, path: str, providers: list[str], provider_options: list[dict], threads: int,
                   session: dict | None = None, spinning: bool = True):
    """An InferenceSession on the manifest's providers; raises RuntimeError naming a missing EP."""
    for p in providers:
        if p in PLUGIN_EPS:
            _register_plugin(ort, p)
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise RuntimeError(f"execution provider(s) {', '.join(missing)} not available on this board (have: {', '.join(available)})")
    options = list(provider_options or [])
    options += [{}] * (len(providers) - len(options))
    options = [{str(k): str(v) for k, v in o.items()} for o in options]
    so = _session_options(ort, threads, session, spinning)
    plugin = [i for i, p in enumerate(providers) if p in _PLUGINS_REGISTERED]
    if not plugin:
        return ort.InferenceSession(path, sess_options=so, providers=providers, provider_options=options)
    # plugin EPs are ignored by providers=[...] (ORT silently runs on CPU): select them by device
    for i in plugin:
        so.add_provider_for_devices(plugin_ep_devices(ort, providers[i]), options[i])
    return ort.InferenceSession(path, sess_options=so)


_NP_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
             "tensor(int8)": "int8", "tensor(double)": "float64"}


def timing_loop(run, output_names, feed, iterations: int) -> list[int]:
    """The measured loop: nothing but session.run between two perf_counter_ns reads."""
    clock = time.perf_counter_ns
    samples = [0] * iterations
    for i in range(iterations):
        t0 = clock()
        run(output_names, feed)
        samples[i] = clock() - t0
    return samples


def reference_inputs(ref) -> dict:
    """The reference inputs of verify/reference.npz by input name: ``{None: inputs}`` for a one-input model (fed
    as the session's input); several inputs: ``inputs`` is the first, ``inputs:1``… the others, ``input_names``
    names them in order (written by the host's convert/evaluate.py ``reference_input_arrays``)."""
    files = ref.files if hasattr(ref, "files") else list(ref)
    if "input_names" not in files:
        return {None: ref["inputs"]}
    names = [str(n) for n in ref["input_names"]]
    missing = [f"inputs:{k}" for k in range(1, len(names)) if f"inputs:{k}" not in files]
    if missing or "inputs" not in files:
        raise RuntimeError(f"verify/reference.npz names inputs {names} but lacks {(missing or ['inputs'])[0]}; redeploy")
    return {name: ref["inputs"] if k == 0 else ref[f"inputs:{k}"] for k, name in enumerate(names)}


def verify_outputs(np, run, input_name, input_dtype, output_names: list[str], ref, n: int,
                   batch: int, classification: list[str], keys: dict | None = None, kinds: dict | None = None) -> dict:
    """Board outputs vs the host FP32 reference, per head, by the shared definitions of runner/metrics.py.

    ``keys`` maps a tensor name to the safe id the host stored its reference under (manifest
    ``outputs.keys``); heads are reported under that id, which the result validation accepts. ``kinds``:
    tensor name -> declared kind (manifest ``outputs.kinds``), so each head is judged by what it means.
    ``input_name``/``input_dtype``: the one input's name and dtype, or for several inputs ``input_dtype`` a
    dict {input name: dtype} (every input of the reference is fed by its name)."""
    keys = keys or {}
    xs = {(input_name if name is None else name): a[:n] for name, a in reference_inputs(ref).items()}
    dtypes = input_dtype if isinstance(input_dtype, dict) else {name: input_dtype for name in xs}
    n = min(int(a.shape[0]) for a in xs.values())
    if n == 0:
        raise RuntimeError("verify/reference.npz holds no inputs")
    chunks: dict[str, list] = {name: [] for name in output_names}
    step = max(batch, 1)
    for start in range(0, n, step):
        parts = {name: a[start:start + step] for name, a in xs.items()}
        got_n = min(int(p.shape[0]) for p in parts.values())
        if got_n < step:  # a fixed-batch model: pad the last chunk
            feed = {name: np.concatenate([p, np.repeat(p[-1:], step - p.shape[0], axis=0)]).astype(dtypes.get(name, "float32"))
                    for name, p in parts.items()}
            outs = run(output_names, feed)
            outs = [o[:got_n] for o in outs]
        else:
            outs = run(output_names, {name: p.astype(dtypes.get(name, "float32")) for name, p in parts.items()})
        for name, o in zip(output_names, outs):
            chunks[name].append(np.asarray(o, dtype=np.float64))
    got = {name: np.concatenate(chunks[name]) for name in output_names if keys.get(name, name) in ref}
    want = {keys.get(name, name): ref[keys.get(name, name)][:n] for name in got}
    for name in got:
        if got[name].size != want[keys.get(name, name)].size:
            raise RuntimeError(f"output {name!r} has shape {got[name].shape}, the reference "
                               f"{want[keys.get(name, name)].shape}")
    return _metrics().verify_summary(want, got, classification, keys, kinds)


def _metrics():
    """runner/metrics.py: the metric definitions the host uses too (a sibling file in the release)."""
    try:
        from . import metrics  # imported as dmsbuild.board.runner.dms_bench (the host)
    except ImportError:
        try:
            import metrics  # run as runner/dms_bench.py on the board: runner/ is sys.path[0]
        except ImportError:
            raise RuntimeError("runner/metrics.py is missing beside dms_bench.py: the output check cannot run; "
                               "redeploy the release") from None
    return metrics


def runs_here(entry: dict) -> bool:
    """This runner runs an artifact whose providers are ONNX Runtime execution providers (any runtime's: the
    host decides which runtimes those are, backends/<runtime>.py); a vendor tool's artifacts (trtexec, the SNPE
    tools) name their tool instead and are run by their backend's board driver."""
    providers = entry.get("providers") or ["CPUExecutionProvider"]
    return isinstance(providers, list) and all(isinstance(p, str) and p.endswith("ExecutionProvider") for p in providers)


def runs_on_litert(entry: dict) -> bool:
    """The artifact is a .tflite file: runner/litert_runner.py runs it (LiteRT, or its Edge TPU delegate)."""
    return str(entry.get("file", "")).endswith(LITERT_SUFFIX)


def empty_result(entry: dict, plan: dict) -> dict:
    providers = entry.get("providers") or []
    return {
        "artifact": str(entry.get("name")), "precision": str(entry.get("precision", "")),
        "runtime": str(entry.get("runtime", "onnxruntime")), "provider": str(providers[0]) if providers else None,
        "sha256": entry.get("sha256"), "size": entry.get("total_size", entry.get("size")),
        "warmup": plan["warmup"], "iterations": plan["iterations"], "threads": plan["threads"],
        "latency_ms": None, "samples_ms": None, "throughput_ips": None, "load_ms": None,
        "first_inference_ms": None, "peak_rss_mb": None, "gpu": None, "verify": None, "error": None,
    }


def open_artifact(np, ort, release: str, manifest: dict, entry: dict, threads: int, spinning: bool = True) -> dict:
    """An artifact's session and the feed the timing loop uses (the benchmark and the interleaved re-measure)."""
    if runs_on_litert(entry):  # bench_artifact and the interleaved harness (_open_side) hand these to litert_runner.py
        raise RuntimeError(f"artifact {entry.get('name')!r} is a .tflite file, run by runner/litert_runner.py: no "
                           "ONNX Runtime session")
    if not runs_here(entry):
        raise RuntimeError(f"runtime {entry.get('runtime')!r} is not run by dms_bench.py (its providers "
                           f"{entry.get('providers')!r} are not ONNX Runtime execution providers: its backend's "
                           "board driver runs it)")
    path = os.path.join(release, str(entry.get("file", "")))
    if not os.path.isfile(path):
        raise RuntimeError(f"model file {entry.get('file')!r} missing from the release")
    providers = list(entry.get("providers") or ["CPUExecutionProvider"])

    t0 = time.perf_counter_ns()
    sess = create_session(ort, path, providers, entry.get("provider_options") or [], session_threads(entry, threads),
                          entry.get("session") or None, spinning)
    load_ns = time.perf_counter_ns() - t0
    used = sess.get_providers()
    if used and used[0] != providers[0]:
        raise RuntimeError(f"ONNX Runtime fell back to {used[0]} instead of {providers[0]}")

    ins = sess.get_inputs()
    inp = ins[0]
    dtypes = {}
    for i in ins:
        dtypes[i.name] = _NP_TYPES.get(i.type)
        if dtypes[i.name] is None:
            raise RuntimeError(f"input {i.name!r} has type {i.type}, which dms_bench.py cannot feed")
    dtype = dtypes[inp.name]
    man_shape = list((manifest.get("input") or {}).get("shape") or [1])
    batch = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else int(man_shape[0])
    output_names = [o.name for o in sess.get_outputs()]
    ref_path = os.path.join(release, "verify", "reference.npz")
    ref = dict(np.load(ref_path)) if os.path.isfile(ref_path) else None
    by_name = reference_inputs(ref) if ref is not None and "inputs" in ref and len(ref["inputs"]) > 0 else {}
    if None in by_name:
        by_name = {inp.name: by_name[None]}
    shapes = {str(i.get("name")): i.get("shape") for i in (manifest.get("inputs") or [manifest.get("input") or {}])}
    feed = {}
    for i in ins:
        if i.name in by_name:
            x = by_name[i.name][:1]
            x = np.repeat(x, batch, axis=0) if batch > 1 else x
        else:  # no reference (or no sample of this input): the configured shape, else the model's with the batch
            shape = [batch if not isinstance(d, int) or d <= 0 else d for d in (shapes.get(i.name) or i.shape)]
            x = np.random.default_rng(0).standard_normal(shape)
        feed[i.name] = np.ascontiguousarray(x.astype(dtypes[i.name]))
    return {"sess": sess, "used": used, "providers": providers, "inp": inp, "dtype": dtype, "batch": batch,
            "dtypes": dtypes, "output_names": output_names, "ref": ref, "feed": feed, "load_ns": load_ns}


def _litert():
    """runner/litert_runner.py: LiteRT (.tflite) and Edge TPU artifacts (a sibling file in the release)."""
    try:
        from . import litert_runner  # the host
    except ImportError:
        try:
            import litert_runner  # on the board
        except ImportError:
            raise RuntimeError("runner/litert_runner.py is missing beside dms_bench.py; redeploy the release") from None
    return litert_runner


def _litert_ready():
    """numpy and the LiteRT runner module with its interpreter importable, or MissingDependency naming what to
    install on the board."""
    try:
        import numpy as np
    except ImportError:
        raise MissingDependency("numpy is not installed for " + sys.executable + "; install it: pip install numpy") from None
    lr = _litert()
    try:
        lr.import_interpreter()
    except lr.MissingLiteRT as exc:
        raise MissingDependency(str(exc)) from None
    return np, lr


def bench_artifact(release: str, manifest: dict, entry: dict, plan: dict) -> dict:
    """Measure one artifact in this process; raises on failure (the caller records it)."""
    if runs_on_litert(entry):  # LiteRT interpreter, not ONNX Runtime
        np, lr = _litert_ready()
        return lr.bench_entry(np, release, manifest, entry, plan, empty_result(entry, plan), latency_stats=latency_stats,
                              timing_loop=timing_loop, verify_outputs=verify_outputs, peak_rss_mb=peak_rss_mb)
    np, ort = _import_runtime()
    result = empty_result(entry, plan)
    a = open_artifact(np, ort, release, manifest, entry, plan["threads"])
    sess, used, providers, inp, dtype, batch = a["sess"], a["used"], a["providers"], a["inp"], a["dtype"], a["batch"]
    output_names, ref, feed, load_ns = a["output_names"], a["ref"], a["feed"], a["load_ns"]

    run = sess.run
    t0 = time.perf_counter_ns()
    run(output_names, feed)
    first_ns = time.perf_counter_ns() - t0
    for _ in range(plan["warmup"]):
        run(output_names, feed)
    samples = timing_loop(run, output_names, feed, plan["iterations"])

    samples_ms = [s / 1e6 for s in samples]
    stats = latency_stats(samples_ms)
    result.update({
        "provider": used[0] if used else providers[0],
        "latency_ms": stats,
        "samples_ms": [round(s, 6) for s in samples_ms],
        "throughput_ips": batch * 1000.0 / stats["mean"] if stats["mean"] > 0 else None,
        "threads": session_threads(entry, plan["threads"]),  # what this artifact ran with (a tuned setting wins)
        "load_ms": load_ns / 1e6,
        "first_inference_ms": first_ns / 1e6,
    })
    if ref is not None and plan["verify_samples"] > 0:
        outputs = manifest.get("outputs") or {}
        classification = list(outputs.get("classification") or [])
        result["verify"] = verify_outputs(np, run, inp.name, a["dtypes"] if len(a["dtypes"]) > 1 else dtype, output_names, ref,
                                          plan["verify_samples"], batch, classification, outputs.get("keys"),
                                          outputs.get("kinds"))
    result["peak_rss_mb"] = peak_rss_mb()
    return result


#: the order of the sides in block i is ORDERS[i % len]: every side runs first, middle and last equally often and
#: after each other side equally often (a neighbour's after-effects hit all sides alike)
ORDERS = {2: (("old", "new"), ("new", "old")),
          3: (("old", "new", "control"), ("new", "control", "old"), ("control", "old", "new"),
              ("old", "control", "new"), ("control", "new", "old"), ("new", "old", "control"))}


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _open_side(folder: str, wanted: str, threads: int, warmup: int, spinning: bool):
    """One side of the interleaved harness: ``timed(n)`` -> n latencies (ms). A .tflite side runs in LiteRT
    (runner/litert_runner.py: its interpreter with its manifest threads), any other in ONNX Runtime; both in this
    process (or a ``--worker``), timed by the same loop, so the harness treats them alike."""
    manifest = load_manifest(folder)
    entry = next((a for a in manifest["artifacts"] if isinstance(a, dict) and a.get("name") == wanted), None)
    if entry is None:
        raise ReleaseError(f"{folder}/manifest.json: no artifact named {wanted!r}")
    if runs_on_litert(entry):
        np, lr = _litert_ready()
        return lr.interleave_side(np, folder, entry, threads, warmup, timing_loop)
    np, ort = _import_runtime()
    a = open_artifact(np, ort, folder, manifest, entry, threads, spinning)
    run, names, feed = a["sess"].run, a["output_names"], a["feed"]
    for _ in range(warmup):
        run(names, feed)
    return lambda n: [round(t / 1e6, 6) for t in timing_loop(run, names, feed, n)]


class _Worker:
    """One side in its own process (``--worker``): it loads its artifact once, then times ``n`` runs per
    request on stdin and answers one JSON line; idle between requests it blocks on the pipe."""

    def __init__(self, folder: str, wanted: str, threads: int, warmup: int) -> None:
        argv = [sys.executable, os.path.abspath(__file__), "--worker", "--release", folder, "--artifact", wanted,
                "--threads", str(threads), "--warmup", str(warmup)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.what = f"{wanted} of {folder}"
        self._answer()  # "ready" after load and warm-up

    def _answer(self):
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()[-2000:] if self.proc.stderr else ""
            raise RuntimeError(f"worker for {self.what} exited: {_one_line(err) or 'no output'}")
        return json.loads(line)

    def __call__(self, n: int) -> list[float]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _FreshSide:
    """A side under ``fresh`` isolation: each call starts a worker process (load, warm-up), times ``n`` runs in
    it and ends it, so every block is a new process and a new session; ``started`` counts them."""

    def __init__(self, folder: str, wanted: str, threads: int, warmup: int) -> None:
        self.args, self.pids = (folder, wanted, threads, warmup), set()

    @property
    def started(self) -> int:
        """How many different processes timed this side."""
        return len(self.pids)

    def __call__(self, n: int) -> list[float]:
        w = _Worker(*self.args)
        self.pids.add(w.proc.pid)
        try:
            return w(n)
        finally:
            w.close()


def worker(release: str, name: str, threads: int, warmup: int) -> int:
    """``--worker``: serve timing requests for one artifact (see ``_Worker``); deployed spinning setting."""
    timed = _open_side(release, name, threads, warmup, spinning=True)
    sys.stdout.write('"ready"\n')
    sys.stdout.flush()
    for line in sys.stdin:
        n = int(line)
        sys.stdout.write(json.dumps(timed(n)) + "\n")
        sys.stdout.flush()
    return EXIT_OK


def interleave(release: str, previous: str, name: str, *, blocks: int, iterations: int, warmup: int,
               threads: int, max_seconds: float, baseline: str | None = None, control: bool = False,
               isolation: str = "gap") -> dict:
    """Time artifact ``name`` of the previous release and of this one in alternating blocks.

    Block i runs the sides in ``ORDERS[i % ...]``, so a load that rises or falls during the re-measure, and
    whatever one side leaves behind for the next, hits every side alike. Stops after the block that crosses
    ``max_seconds`` (at least 2 blocks). The host decides from the samples (``dmsbuild.measure.regression``).
    ``baseline``: the artifact of ``previous`` to compare with (default: the same name); `doit tune` times a
    candidate against the default artifact of one folder this way, each with the session settings of its
    manifest entry. ``control``: a third side, a second session of the baseline (the A/A control: it must
    come out 1.00x against the baseline, or the board is too noisy to judge). ``isolation``: ``ISOLATIONS``.
    """
    if isolation not in ISOLATIONS:
        raise ReleaseError(f"--isolation {isolation!r}: use one of {', '.join(ISOLATIONS)}")
    wanted = {"old": (previous, baseline or name), "new": (release, name)}
    if control:
        wanted["control"] = (previous, baseline or name)
    sides: dict = {}
    workers: list[_Worker] = []
    try:
        if isolation == "processes":
            for side, (folder, art) in wanted.items():
                workers.append(_Worker(folder, art, threads, warmup))
                sides[side] = workers[-1]
        elif isolation == "fresh":
            for side, (folder, art) in wanted.items():
                sides[side] = _FreshSide(folder, art, threads, warmup)
        else:
            for side, (folder, art) in wanted.items():
                sides[side] = _open_side(folder, art, threads, warmup, spinning=isolation != "spin-off")
        out = {"artifact": name, "baseline": baseline or name, "isolation": isolation,
               "old": [], "new": [], "stopped_early": False, "loadavg_start": _loadavg()}
        if control:
            out["control"] = []
        out["orders"] = []  # the sides of each block in the order they were timed (tests check the rotation on it)
        orders = ORDERS[len(sides)]
        start = time.monotonic()
        for i in range(blocks):
            ran = []
            for side in orders[i % len(orders)]:
                if isolation == "gap":
                    time.sleep(GAP_S)  # the previous side's pool stops spin-waiting
                    sides[side](1)  # untimed: this side's pool wakes up
                out[side].append(sides[side](iterations))
                ran.append(side)
            out["orders"].append(ran)
            if i >= 1 and time.monotonic() - start > max_seconds and i < blocks - 1:
                out["stopped_early"] = True
                break
        out["seconds"] = time.monotonic() - start
        out["loadavg_end"] = _loadavg()
        if isolation == "fresh":
            out["processes"] = {side: timed.started for side, timed in sides.items()}
        return out
    finally:
        for w in workers:
            w.close()


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line[:MAX_ERROR_CHARS]


def run_child(release: str, name: str, args: argparse.Namespace) -> dict | None:
    """Measure artifact ``name`` in a fresh interpreter; None if the child crashed (error set by caller)."""
    argv = [sys.executable, os.path.abspath(__file__), "--release", release, "--artifact", name, "--in-process"]
    for key in ("warmup", "iterations", "threads", "verify_samples"):
        value = getattr(args, key)
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"artifact {name!r} hung: no result after {CHILD_TIMEOUT:.0f} s") from None
    if proc.returncode in (EXIT_OK, EXIT_ALL_FAILED):
        try:
            doc = json.loads(proc.stdout)
            return doc["results"][0]
        except (ValueError, KeyError, IndexError):
            pass
    tail = proc.stderr.strip().splitlines()[-3:]
    sys.stderr.write(proc.stderr[-4000:])
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    raise RuntimeError(f"runner child for {name!r} crashed ({how}): " + " | ".join(tail))


def run_release(args: argparse.Namespace) -> tuple[dict, int]:
    release = os.path.abspath(args.release)
    manifest = load_manifest(release)
    plan = _bench_plan(manifest, args)
    entries = [a for a in manifest["artifacts"] if isinstance(a, dict)]
    if args.artifact is not None:
        entries = [a for a in entries if a.get("name") == args.artifact]
        if not entries:
            names = ", ".join(str(a.get("name")) for a in manifest["artifacts"] if isinstance(a, dict))
            raise ReleaseError(f"manifest.json: no artifact named {args.artifact!r}; have: {names}")
    if not args.in_process and not all(runs_on_litert(e) for e in entries):  # a .tflite-only board needs no onnxruntime
        _import_runtime()  # fail fast (exit 3) before any child starts
    results = []
    for entry in entries:
        result = empty_result(entry, plan)
        try:
            if args.in_process:
                result = bench_artifact(release, manifest, entry, plan)
            else:
                result = run_child(release, str(entry.get("name")), args) or result
        except MissingDependency:
            raise
        except Exception as exc:  # noqa: BLE001 - one artifact's failure is reported, the others still run
            result["error"] = _one_line(f"{type(exc).__name__}: {exc}")
            if args.in_process:
                import traceback

                traceback.print_exc(file=sys.stderr)
        results.append(result)
    doc = {
        "schema": SCHEMA,
        "runner": RUNNER_VERSION,
        "project": manifest.get("project"),
        "target": manifest.get("target"),
        "release_id": release_id(release),
        "model": manifest.get("model"),
        "facts": gather_facts(),
        "toolchain": manifest.get("toolchain") or {},
        "bench": plan,
        "results": results,
    }
    ok = any(r["error"] is None for r in results)
    return doc, EXIT_OK if ok else EXIT_ALL_FAILED


def _finite(value):
    """NaN/inf (a broken EP's outputs) become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _flush_c_stdio() -> None:
    """fflush(NULL): the QNN libraries printf() into C's stdout buffer, which exit() would flush into fd 1."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark and verify a dmsbuild release on this board.")
    p.add_argument("--release", help="the release folder (holds manifest.json)")
    p.add_argument("--artifact", help="only this artifact")
    p.add_argument("--facts", action="store_true", help="print this board's facts as JSON and exit")
    p.add_argument("--warmup", type=int, help="override bench.warmup")
    p.add_argument("--iterations", type=int, help="override bench.iterations")
    p.add_argument("--threads", type=int, help="override bench.threads")
    p.add_argument("--verify-samples", dest="verify_samples", type=int, help="override bench.verify_samples")
    p.add_argument("--in-process", action="store_true", help="measure in this process (no child per artifact)")
    p.add_argument("--interleave", metavar="PREVIOUS_RELEASE",
                   help="re-measure --artifact of PREVIOUS_RELEASE and of --release in alternating blocks")
    p.add_argument("--baseline", help="with --interleave: the artifact of PREVIOUS_RELEASE to compare with "
                   "(default: --artifact)")
    p.add_argument("--blocks", type=int, default=8, help="with --interleave: block pairs")
    p.add_argument("--max-seconds", dest="max_seconds", type=float, default=120.0,
                   help="with --interleave: stop after the block pair that crosses this")
    p.add_argument("--control", action="store_true",
                   help="with --interleave: a third side, a second session of the baseline (A/A control)")
    p.add_argument("--isolation", choices=ISOLATIONS, default="gap",
                   help="with --interleave: how the sides are kept from timing each other (default gap)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one side of --isolation processes
    return p


@contextlib.contextmanager
def _stdout_kept_for_the_document():
    """Native libraries (the QNN SDK among them) print to fd 1: send fd 1 to stderr meanwhile, so stdout
    carries only the one JSON document written after this block."""
    sys.stdout.flush()
    doc_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        _flush_c_stdio()  # native libraries' buffered printf output goes to stderr too, not after the document
        os.dup2(doc_fd, 1)
        os.close(doc_fd)


def _main_interleave(args: argparse.Namespace) -> int:
    if not args.artifact or args.blocks < 2 or (args.iterations or 0) < 1:
        sys.stderr.write("dms_bench.py: --interleave needs --artifact, --blocks >= 2 and --iterations >= 1\n")
        return EXIT_BAD_RELEASE
    try:
        with _stdout_kept_for_the_document():
            out = interleave(os.path.abspath(args.release), os.path.abspath(args.interleave), args.artifact,
                             blocks=args.blocks, iterations=args.iterations, warmup=args.warmup or 0,
                             threads=args.threads or 0, max_seconds=args.max_seconds, baseline=args.baseline,
                             control=args.control, isolation=args.isolation)
    except ReleaseError as exc:
        sys.stderr.write(f"dms_bench.py: {exc}\n")
        return EXIT_BAD_RELEASE
    except MissingDependency as exc:
        sys.stderr.write(f"dms_bench.py: {exc}\n")
        return EXIT_MISSING_DEPENDENCY
    except RuntimeError as exc:  # an artifact that cannot run: one line, the host keeps the gate's first verdict
        sys.stderr.write(f"dms_bench.py: {_one_line(str(exc))}\n")
        return EXIT_ALL_FAILED
    sys.stdout.write(json.dumps(out) + "\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.facts:
        try:
            print(json.dumps(gather_facts()))
        except ReleaseError as exc:
            sys.stderr.write(f"dms_bench.py: {exc}\n")
            return EXIT_BAD_RELEASE
        return EXIT_OK
    if not args.release:
        sys.stderr.write("dms_bench.py: --release <dir> is required\n")
        return EXIT_BAD_RELEASE
    if args.worker:
        try:
            return worker(os.path.abspath(args.release), args.artifact, args.threads or 0, args.warmup or 0)
        except (ReleaseError, MissingDependency, RuntimeError) as exc:
            sys.stderr.write(f"dms_bench.py: {_one_line(str(exc))}\n")
            return EXIT_ALL_FAILED
    if args.interleave:
        return _main_interleave(args)
    try:
        with _stdout_kept_for_the_document():
            doc, code = run_release(args)
    except ReleaseError as exc:
        sys.stderr.write(f"dms_bench.py: {exc}\n")
        return EXIT_BAD_RELEASE
    except MissingDependency as exc:
        sys.stderr.write(f"dms_bench.py: {exc}\n")
        return EXIT_MISSING_DEPENDENCY
    sys.stdout.write(json.dumps(_finite(doc), allow_nan=False) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
