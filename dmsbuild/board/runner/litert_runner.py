"""LiteRT (TensorFlow Lite) artifacts on the board, shipped as runner/litert_runner.py beside dms_bench.py.

Standard library, numpy and the LiteRT interpreter only (``ai_edge_litert``, or
the older ``tflite_runtime`` wheel that Coral's Debian packages install); it
never imports dmsbuild, and the host imports it for its own accuracy gate on
``.tflite`` files (one implementation of "run a TFLite model").

Two runtimes use it (manifest ``runtime``):

- ``litert``: the interpreter on the CPU (XNNPACK delegate for float and int8 kernels, LiteRT's default);
- ``edgetpu``: the interpreter with the Edge TPU delegate (``libedgetpu.so.1``); the model is an
  ``edgetpu_compiler`` output. Without the delegate a real board fails that artifact with the install
  line; an emulated board (``DMSBUILD_EMULATED_BOARD`` set, no Edge TPU here) runs the same file on the
  CPU path and says so in the result's ``provider`` ("cpu (emulated: no Edge TPU)").

A full-integer model has int8/uint8 input and outputs: ``TfliteModel.run`` quantizes the float input
with the input tensor's scale/zero point and dequantizes each output, so the output check compares
float heads with the host's FP32 reference. The timing loop (``invoke``) measures the interpreter on an
already quantized input: the I/O conversion is not counted (as with a quantized model's raw tensors).
"""
from __future__ import annotations

import os
import sys

LITERT_RUNTIMES = ("litert", "edgetpu")
LITERT_HINT = "pip install ai-edge-litert (or, on a Coral board, apt-get install python3-tflite-runtime)"
EDGETPU_HINT = ("install the Edge TPU runtime: apt-get install libedgetpu1-std (Coral apt repository "
                "https://packages.cloud.google.com/apt coral-edgetpu-stable) and plug in / enable the Edge TPU")
#: the delegate library of the Edge TPU runtime on Linux
EDGETPU_LIBRARY = "libedgetpu.so.1"
EMULATED_PROVIDER = "cpu (emulated: no Edge TPU)"


class MissingLiteRT(RuntimeError):
    """No LiteRT interpreter importable here."""


def import_interpreter():
    """(Interpreter class, load_delegate function, version string) of whichever LiteRT wheel is installed."""
    try:
        from ai_edge_litert import interpreter as mod  # the maintained wheel (LiteRT)
        import ai_edge_litert

        return mod.Interpreter, mod.load_delegate, "ai-edge-litert " + str(getattr(ai_edge_litert, "__version__", "?"))
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # Coral's Debian package / older wheel
        import tflite_runtime

        return mod.Interpreter, mod.load_delegate, "tflite-runtime " + str(getattr(tflite_runtime, "__version__", "?"))
    except ImportError:
        raise MissingLiteRT(f"no LiteRT interpreter for {sys.executable}; install it: {LITERT_HINT}") from None


def litert_version() -> str | None:
    """The LiteRT wheel's version, without importing it (board facts); None when neither is installed."""
    try:
        from importlib import metadata

        for dist in ("ai-edge-litert", "tflite-runtime"):
            try:
                return f"{dist} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    return None


def edgetpu_facts() -> dict:
    """Where the Edge TPU runtime and device are visible (best effort, read-only): the delegate library, a
    PCIe/M.2 Edge TPU (``/dev/apex_*``, gasket driver) and a USB accelerator (vendor ids 1a6e: before its
    first use, 18d1: after the runtime loaded its firmware)."""
    import ctypes.util
    import glob

    lib = None
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf",
                   "/usr/lib", "/usr/local/lib"):
        if os.path.exists(os.path.join(folder, EDGETPU_LIBRARY)):
            lib = os.path.join(folder, EDGETPU_LIBRARY)
            break
    if lib is None and ctypes.util.find_library("edgetpu"):
        lib = ctypes.util.find_library("edgetpu")
    usb = []
    for dev in glob.glob("/sys/bus/usb/devices/*"):
        try:
            with open(os.path.join(dev, "idVendor")) as fh:
                vendor = fh.read().strip()
            with open(os.path.join(dev, "idProduct")) as fh:
                product = fh.read().strip()
        except OSError:
            continue
        if (vendor, product) in (("1a6e", "089a"), ("18d1", "9302")):
            usb.append(f"{vendor}:{product}")
    return {"edgetpu_library": lib, "edgetpu_pcie": sorted(glob.glob("/dev/apex_*")) or None,
            "edgetpu_usb": usb or None}


def emulated() -> bool:
    return bool(os.environ.get("DMSBUILD_EMULATED_BOARD"))


def ordered_outputs(interpreter) -> list:
    """The output details in the order of the model's heads (forward()'s return order).

    litert-torch names the outputs ``output_<i>`` in its signature (tensors ``serving_default_output_<i>...``)
    and the interpreter lists them in another order: the signature's numbering wins, then a ``output_<i>`` in
    the tensor name (``edgetpu_compiler`` may drop signatures but keeps tensor names), else the interpreter's
    order."""
    import re

    details = interpreter.get_output_details()
    by_index = {d["index"]: d for d in details}
    try:
        sig = interpreter._get_full_signature_list().get("serving_default", {}).get("outputs") or {}
    except AttributeError:  # an older tflite_runtime
        sig = {}

    def number(text):
        m = re.search(r"output_(\d+)", text)
        return int(m.group(1)) if m else None

    if sig and all(number(n) is not None for n in sig) and all(i in by_index for i in sig.values()):
        return [by_index[sig[n]] for n in sorted(sig, key=number)]
    if all(number(d["name"]) is not None for d in details):
        return sorted(details, key=lambda d: number(d["name"]))
    return details


class TfliteModel:
    """One ``.tflite`` file in a LiteRT interpreter: float in, float out (quantized I/O handled here).

    ``outputs``: the model's output tensor names in the order of the project's heads; empty: by
    :func:`ordered_outputs`."""

    def __init__(self, path: str, *, threads: int = 0, delegate: str | None = None, outputs: list | None = None,
                 allow_cpu_emulation: bool = False) -> None:
        import numpy as np

        self.np = np
        self.threads = int(threads or 0)
        Interpreter, load_delegate, self.version = import_interpreter()
        self.provider = "cpu (XNNPACK)"
        delegates = []
        if delegate:
            try:
                delegates = [load_delegate(delegate)]
                self.provider = f"edgetpu ({delegate})"
            except (ValueError, OSError, RuntimeError) as exc:
                if not (allow_cpu_emulation and emulated()):
                    raise RuntimeError(f"the Edge TPU delegate {delegate} does not load here "
                                       f"({' '.join(str(exc).split())[:160]}); {EDGETPU_HINT}") from None
                self.provider = EMULATED_PROVIDER
        kwargs = {"model_path": path, "experimental_delegates": delegates or None}
        if threads and threads > 0:
            kwargs["num_threads"] = int(threads)
        self.interpreter = Interpreter(**kwargs)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        details = self.interpreter.get_output_details()
        by_name = {d["name"]: d for d in details}
        if outputs:
            missing = [n for n in outputs if n not in by_name]
            if missing:
                raise RuntimeError(f"{os.path.basename(path)}: no output tensor(s) {missing}; has {sorted(by_name)}")
            self.outputs = [by_name[n] for n in outputs]
        else:
            self.outputs = ordered_outputs(self.interpreter)
        self.input_dtype = np.dtype(self.input["dtype"])
        self.batch = int(self.input["shape"][0]) if len(self.input["shape"]) else 1

    def quantize_input(self, x):
        """A float batch as the input tensor wants it (int8/uint8 with the tensor's scale and zero point)."""
        np = self.np
        if self.input_dtype.kind == "f":
            return np.ascontiguousarray(x.astype(self.input_dtype))
        scale, zero = self.input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(np.asarray(x, dtype=np.float32) / (scale or 1.0)) + zero
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(self.input_dtype))

    def dequantize(self, detail, value):
        np = self.np
        if np.dtype(detail["dtype"]).kind == "f":
            return np.asarray(value, dtype=np.float32)
        scale, zero = detail["quantization"]
        return (np.asarray(value, dtype=np.float32) - zero) * scale

    def invoke(self, raw) -> None:
        """One inference on an already quantized input (the timed call)."""
        self.interpreter.set_tensor(self.input["index"], raw)
        self.interpreter.invoke()

    def run(self, x) -> list:
        """Float outputs of one float batch (the model's fixed batch; callers feed it one batch at a time)."""
        self.invoke(self.quantize_input(x))
        return [self.dequantize(d, self.interpreter.get_tensor(d["index"])) for d in self.outputs]

    def run_many(self, inputs) -> list:
        """Float outputs over a stack of samples, one batch at a time (list per output, concatenated)."""
        np = self.np
        step = max(self.batch, 1)
        chunks = [[] for _ in self.outputs]
        for start in range(0, len(inputs), step):
            part = inputs[start:start + step]
            n = part.shape[0]
            if n < step:
                part = np.concatenate([part, np.repeat(part[-1:], step - n, axis=0)])
            for i, o in enumerate(self.run(part)):
                chunks[i].append(o[:n])
        return [np.concatenate(c, axis=0) for c in chunks]


def open_entry(release: str, entry: dict, threads: int) -> TfliteModel:
    """The model of a manifest entry of runtime litert/edgetpu, with its delegate (see module doc)."""
    path = os.path.join(release, str(entry.get("file", "")))
    if not os.path.isfile(path):
        raise RuntimeError(f"model file {entry.get('file')!r} missing from the release")
    opts = (entry.get("provider_options") or [{}])[0] or {}
    delegate = None
    if entry.get("runtime") == "edgetpu":
        delegate = str(opts.get("delegate") or EDGETPU_LIBRARY)
    session = entry.get("session") or {}
    n = threads  # bench.threads, unless the profile's backend.threads or a tuned session says otherwise
    if isinstance(opts.get("threads"), int) and opts["threads"] > 0:
        n = opts["threads"]
    if isinstance(session.get("intra_op_threads"), int) and session["intra_op_threads"] > 0:
        n = session["intra_op_threads"]
    return TfliteModel(path, threads=n or 0, delegate=delegate, outputs=list(opts.get("outputs") or []),
                       allow_cpu_emulation=True)


def timed_input(np, release: str, model: TfliteModel):
    """The input the timing loop feeds (already quantized): the first verify sample, as the ONNX side's feed."""
    ref_path = os.path.join(release, "verify", "reference.npz")
    ref = dict(np.load(ref_path)) if os.path.isfile(ref_path) else None
    if ref is not None and "inputs" in ref and len(ref["inputs"]) > 0:
        x = ref["inputs"][:1]
        x = np.repeat(x, model.batch, axis=0) if model.batch > 1 else x
    else:
        x = np.random.default_rng(0).standard_normal([int(d) for d in model.input["shape"]])
    return model.quantize_input(x)


def interleave_side(np, release: str, entry: dict, threads: int, warmup: int, timing_loop):
    """One side of dms_bench.py's interleaved harness (`doit tune` timing a .tflite against the default artifact):
    the model opened with its manifest settings (a tuned ``session.intra_op_threads`` wins), warmed up; returns
    ``timed(n)`` -> n latencies in ms, as the ONNX Runtime sides (each call one ``invoke`` on the same input)."""
    model = open_entry(release, entry, threads)
    raw = timed_input(np, release, model)

    def run(_names, _feed):
        model.invoke(raw)

    for _ in range(warmup):
        run(None, None)
    return lambda n: [round(t / 1e6, 6) for t in timing_loop(run, None, None, n)]


def bench_entry(np, release: str, manifest: dict, entry: dict, plan: dict, result: dict, *,
                latency_stats, timing_loop, verify_outputs, peak_rss_mb) -> dict:
    """dms_bench.py's measurement of one LiteRT artifact (same fields as an ONNX Runtime one)."""
    import time

    t0 = time.perf_counter_ns()
    model = open_entry(release, entry, plan["threads"])
    load_ns = time.perf_counter_ns() - t0
    ref_path = os.path.join(release, "verify", "reference.npz")
    ref = dict(np.load(ref_path)) if os.path.isfile(ref_path) else None
    raw = timed_input(np, release, model)

    def run(_names, _feed):
        model.invoke(raw)

    t0 = time.perf_counter_ns()
    run(None, None)
    first_ns = time.perf_counter_ns() - t0
    for _ in range(plan["warmup"]):
        run(None, None)
    samples_ms = [s / 1e6 for s in timing_loop(run, None, None, plan["iterations"])]
    stats = latency_stats(samples_ms)
    result.update({
        "provider": model.provider,
        "threads": model.threads,  # what it ran with (0: LiteRT's default)
        "latency_ms": stats,
        "samples_ms": [round(s, 6) for s in samples_ms],
        "throughput_ips": model.batch * 1000.0 / stats["mean"] if stats["mean"] > 0 else None,
        "load_ms": load_ns / 1e6,
        "first_inference_ms": first_ns / 1e6,
    })
    if ref is not None and plan["verify_samples"] > 0:
        outputs = manifest.get("outputs") or {}
        keys = outputs.get("keys") or {}
        heads = list(outputs.get("names") or keys)
        if len(heads) != len(model.outputs):
            raise RuntimeError(f"the model has {len(model.outputs)} outputs, the manifest names {len(heads)} heads")

        def run_float(names, feed):
            return model.run(next(iter(feed.values())))

        result["verify"] = verify_outputs(np, run_float, "input", "float32", heads, ref, plan["verify_samples"],
                                          model.batch, list(outputs.get("classification") or []), keys,
                                          outputs.get("kinds"))
    result["peak_rss_mb"] = peak_rss_mb()
    return result
