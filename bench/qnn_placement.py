"""QNN op placement, HTP-simulator latency and output agreement for a DMS model.

    nice .venv/bin/python bench/qnn_placement.py [--model reference|tiny] [--samples 8]

Exports the model (random init, settled: default Linear init and BatchNorm
statistics from random images, since the trained checkpoint is not here yet),
quantizes it to QDQ with uint8 and uint16 activations (fixed shape), compiles
each to a QNN HTP v73 context binary and runs ``--samples`` inputs on the HTP
simulator. Prints placement and a table of agreement against the ORT CPU run of
the same QDQ model and against FP32. The latency column compares the simulator
with ORT CPU on the same QDQ model in the same run (the simulator emulates the
HTP instruction by instruction; its time says nothing about the board).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["reference", "tiny"], default="tiny")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--calibration", type=int, default=16)
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep the built files in")
    args = ap.parse_args()

    import onnxruntime as ort

    from dmsbuild.backends import qnn
    from dmsbuild.model import dms_net
    from tests.backends.models import calibration_inputs, export_dms, quantize_qdq, settle

    work = args.keep or Path(tempfile.mkdtemp(prefix="qnn-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    factory = dms_net.build_reference if args.model == "reference" else dms_net.build_tiny
    t = time.perf_counter()
    fp32 = export_dms(settle(factory()), work / "fp32.onnx", dynamic_batch=False)
    print(f"export: {time.perf_counter() - t:.1f} s", flush=True)
    xs = calibration_inputs(args.samples, seed=123)
    fp = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    ref32 = [fp.run(None, {"image": x}) for x in xs]
    names = [o.name for o in fp.get_outputs()]
    cls = ["eye_state", "yawn", "activity"]
    rows = []
    for act in ("QUInt8", "QUInt16"):
        t = time.perf_counter()
        qdq = quantize_qdq(fp32, work / f"qdq-{act}.onnx", act, samples=args.calibration)
        qt = time.perf_counter() - t
        ctx = work / f"qnn-{act}.onnx"
        rep = qnn.build_context_binary(qdq, ctx, qnn.QnnOptions(max_cpu_fallback_nodes=1000))
        print(f"{args.model} {act}: quantize {qt:.1f} s, compile {rep.compile_seconds:.1f} s; {rep.summary()}", flush=True)
        cpu = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
        cpu_ms, refq = [], []
        for x in xs:
            t0 = time.perf_counter_ns()
            refq.append(cpu.run(None, {"image": x}))
            cpu_ms.append((time.perf_counter_ns() - t0) / 1e6)
        run = qnn.run_on_simulator(ctx, xs, qnn.QnnOptions())
        vs_q = qnn.compare_outputs(refq, run.outputs, names, cls)
        vs_f = qnn.compare_outputs(ref32, run.outputs, names, cls)
        cpu_vs_f = qnn.compare_outputs(ref32, refq, names, cls)
        rows.append((act, rep, statistics.median(run.samples_ms), statistics.median(cpu_ms), vs_q, vs_f, cpu_vs_f))

    print(f"\n## {args.model}: QNN HTP v73 context binary, {args.samples} random inputs\n")
    print("| activations | nodes in QNN | on CPU (I/O Q/DQ) | fallback ops | sim median ms | ORT CPU QDQ median ms | sim/CPU |")
    print("|---|---|---|---|---|---|---|")
    for act, rep, sim, cpu, *_ in rows:
        ops = ", ".join(f"{k} x{v}" for k, v in rep.fallback_ops.items()) or "none"
        print(f"| {act} | {rep.qnn_nodes}/{rep.total_nodes} | {rep.cpu_nodes} ({rep.io_nodes}) | {ops} | {sim:.1f} | {cpu:.2f} | {sim / cpu:.0f}x |")
    print("\n| activations | head | sim vs CPU-QDQ cosine | max abs (rel. to range) | top-1 | sim vs FP32 cosine | max abs (rel.) | top-1 | CPU-QDQ vs FP32 cosine | top-1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for act, _, _, _, vs_q, vs_f, cvf in rows:
        for h in names:
            a, b, c = vs_q[h], vs_f[h], cvf[h]
            t1 = lambda m: f"{m['top1_agreement']:.2f}" if m.get("top1_agreement") is not None else "-"  # noqa: E731
            print(f"| {act} | {h} | {a['cosine']:.6f} | {a['max_abs_diff']:.3g} ({a['max_rel_to_range']:.2%}) | {t1(a)} "
                  f"| {b['cosine']:.6f} | {b['max_abs_diff']:.3g} ({b['max_rel_to_range']:.2%}) | {t1(b)} | {c['cosine']:.6f} | {t1(c)} |")


if __name__ == "__main__":
    main()
