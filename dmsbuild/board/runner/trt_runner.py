#!/usr/bin/env python3
"""Output check of a TensorRT engine on the board (shipped in the release, run by the board's python3).

    python3 trt_runner.py --engine models/fp16.engine --reference verify/reference.npz \
        --samples 16 --classification eye_state --classification yawn --classification activity

Deserializes the engine ONCE, runs each reference input through it with the
TensorRT 10 API (tensor-name IO: ``num_io_tensors``, ``get_tensor_name``,
``set_tensor_address``, ``execute_async_v3``) and prints the CONTRACTS §3
``verify`` JSON comparing the outputs with the host FP32 reference, by the
definitions every output check uses (runner/metrics.py, shipped beside it).
Needs numpy, tensorrt >= 10 and cuda-python (or pycuda). Standard library +
numpy at import time, so ``--help`` and the metric functions work anywhere.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

if __name__ == "__main__":
    sys.dont_write_bytecode = True  # no __pycache__ in the board's release folder (runner/metrics.py is imported)
    # run as a script from dmsbuild/backends/, whose tensorrt.py would shadow NVIDIA's package
    _here = __import__("os").path.dirname(__import__("os").path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if __import__("os").path.abspath(p or ".") != _here]

import numpy as np



def _shared_metrics() -> Any:
    """runner/metrics.py: the one implementation of the output-check metrics (host and board alike)."""
    try:
        from . import metrics  # imported as dmsbuild.board.runner.trt_runner (the host, tests)
        return metrics
    except ImportError:  # a script: runner/trt_runner.py on the board, or dmsbuild/backends/ in a checkout
        import importlib.util
        import os

        here = os.path.dirname(os.path.abspath(__file__))
        for path in (os.path.join(here, "metrics.py"), os.path.join(here, os.pardir, "runner", "metrics.py")):
            if os.path.isfile(path):
                spec = importlib.util.spec_from_file_location("dms_runner_metrics", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module
        raise SystemExit(f"{here}: runner/metrics.py is missing beside trt_runner.py; redeploy the release") from None


verify_summary = _shared_metrics().verify_summary

__all__ = ["verify_summary", "run_engine", "main"]


class _Cuda:
    """The few CUDA runtime calls the runner needs, from cuda-python or pycuda."""

    def __init__(self) -> None:
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart  # type: ignore[no-redef]
            self.cudart, self.pycuda = cudart, None
        except ImportError:
            import pycuda.autoinit  # noqa: F401
            import pycuda.driver as drv
            self.cudart, self.pycuda = None, drv
        self.stream = self._call(self.cudart.cudaStreamCreate()) if self.cudart else self.pycuda.Stream()

    @staticmethod
    def _call(ret: Any) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> Any:
        return self._call(self.cudart.cudaMalloc(nbytes)) if self.cudart else self.pycuda.mem_alloc(nbytes)

    def ptr(self, mem: Any) -> int:
        return int(mem)

    def h2d(self, dev: Any, host: np.ndarray) -> None:
        if self.cudart:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._call(self.cudart.cudaMemcpyAsync(dev, host.ctypes.data, host.nbytes, kind, self.stream))
        else:
            self.pycuda.memcpy_htod_async(dev, host, self.stream)

    def d2h(self, host: np.ndarray, dev: Any) -> None:
        if self.cudart:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._call(self.cudart.cudaMemcpyAsync(host.ctypes.data, dev, host.nbytes, kind, self.stream))
        else:
            self.pycuda.memcpy_dtoh_async(host, dev, self.stream)

    def handle(self) -> int:
        return int(self.stream) if self.cudart else self.stream.handle

    def sync(self) -> None:
        if self.cudart:
            self._call(self.cudart.cudaStreamSynchronize(self.stream))
        else:
            self.stream.synchronize()


def run_engine(engine_path: str, inputs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of the engine for each batch-1 input, by output tensor name (``inputs``: the one input's samples,
    or ``{input name: samples}`` for an engine with several inputs)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    with open(engine_path, "rb") as fh:
        engine = trt.Runtime(logger).deserialize_cuda_engine(fh.read())
    if engine is None:
        raise SystemExit(f"{engine_path}: TensorRT could not deserialize the engine (built for another GPU or TensorRT version?)")
    context = engine.create_execution_context()
    cuda = _Cuda()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    in_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    out_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if not isinstance(inputs, dict):
        if len(in_names) != 1:
            raise SystemExit(f"{engine_path}: expected one input tensor, found {in_names}")
        inputs = {in_names[0]: inputs}
    if set(inputs) != set(in_names):
        raise SystemExit(f"{engine_path}: the engine's inputs are {in_names}, the reference holds {sorted(inputs)}")
    count = min(len(v) for v in inputs.values())
    for n in in_names:
        context.set_input_shape(n, (1, *inputs[n].shape[1:]))  # inputs: (N, ...), run one at a time
    host: dict[str, np.ndarray] = {}
    dev: dict[str, Any] = {}
    for n in names:
        shape = tuple(context.get_tensor_shape(n))
        host[n] = np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(n)))
        dev[n] = cuda.malloc(host[n].nbytes)
        context.set_tensor_address(n, cuda.ptr(dev[n]))
    results: dict[str, list[np.ndarray]] = {n: [] for n in out_names}
    for k in range(count):
        for n in in_names:
            host[n][...] = inputs[n][k].reshape(host[n].shape)
            cuda.h2d(dev[n], host[n])
        if not context.execute_async_v3(cuda.handle()):
            raise SystemExit(f"{engine_path}: execute_async_v3 failed")
        for n in out_names:
            cuda.d2h(host[n], dev[n])
        cuda.sync()
        for n in out_names:
            results[n].append(host[n].astype(np.float32).copy())
    return {n: np.concatenate(v) for n, v in results.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True)
    ap.add_argument("--reference", required=True, help="npz with 'inputs' and one array per output name")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--classification", action="append", default=[])
    ap.add_argument("--keys", default="{}", help="JSON {tensor name: safe id the reference stores it under}")
    ap.add_argument("--kinds", default="{}", help="JSON {tensor name: declared kind} (manifest outputs.kinds)")
    args = ap.parse_args(argv)
    keys = json.loads(args.keys)
    ref = np.load(args.reference)
    if "input_names" in ref.files:  # several inputs: inputs, inputs:1, ... named in order (convert/evaluate.py)
        names = [str(n) for n in ref["input_names"]]
        inputs = {n: ref["inputs" if k == 0 else f"inputs:{k}"][: args.samples].astype(np.float32)
                  for k, n in enumerate(names)}
        count = min(len(v) for v in inputs.values())
    else:
        inputs = ref["inputs"][: args.samples].astype(np.float32)
        count = len(inputs)
    got = run_engine(args.engine, inputs)
    missing = [n for n in got if keys.get(n, n) not in ref.files]
    if missing:
        print(json.dumps({"error": f"reference has no arrays for outputs {missing}"}))
        return 1
    summary = verify_summary({keys.get(n, n): ref[keys.get(n, n)][:count] for n in got}, got,
                             args.classification, keys, json.loads(args.kinds))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
