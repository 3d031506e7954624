"""Overhead of the board runner's timing loop against a bare session.run loop (goal: < 1% at the median).

Same model, same session, same process, same input. The two loops run in
alternating rounds (A B A B ...) so clock/thermal drift and the other
processes on this machine hit both alike.

- bare:   one perf_counter_ns pair around a whole round of session.run calls;
          per-inference time = round time / calls (no per-call timing at all)
- runner: dms_bench.timing_loop, a perf_counter_ns pair around every call
          (the raw samples the board reports); per round, the median sample

Run: nice .venv/bin/python bench/bench_runner_overhead.py [--rounds 30] [--calls 20]
Models: the reference DMS model (MobileNetV3-Large, exported with torch) and a
tiny ONNX graph (~20 us per call, where any per-call overhead shows most).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from dmsbuild.board.runner.dms_bench import create_session, timing_loop  # noqa: E402


def export_reference(path: Path) -> None:
    import torch

    from dmsbuild.model.dms_net import OUTPUT_NAMES, build_reference

    model = build_reference().eval()
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), input_names=["image"],
                      output_names=OUTPUT_NAMES, opset_version=17, dynamo=False)


def measure(path: Path, shape: list[int], rounds: int, calls: int, threads: int) -> dict[str, float]:
    sess = create_session(ort, str(path), ["CPUExecutionProvider"], [{}], threads)
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    names = [o.name for o in sess.get_outputs()]
    run = sess.run
    for _ in range(max(5, calls)):
        run(names, feed)
    bare_a, bare_b, runner_wall, samples = [], [], [], []
    clock = time.perf_counter_ns
    orders = ("arb", "rba", "bar", "rab", "abr", "bra")  # every order, so no loop always runs first
    for i in range(rounds):
        for which in orders[i % len(orders)]:
            t0 = clock()
            if which == "r":
                samples += timing_loop(run, names, feed, calls)
                runner_wall.append((clock() - t0) / calls / 1e6)
            else:
                for _ in range(calls):
                    run(names, feed)
                (bare_a if which == "a" else bare_b).append((clock() - t0) / calls / 1e6)
    return {"bare": statistics.median(bare_a + bare_b), "bare_a": statistics.median(bare_a),
            "bare_b": statistics.median(bare_b), "runner_wall": statistics.median(runner_wall),
            "runner_median": statistics.median(samples) / 1e6}


def loop_cost_ns(calls: int = 200_000, rounds: int = 15) -> float:
    """Per-call cost the timing loop adds (two clock reads and a list store), on a call that does nothing."""
    def noop(names, feed):
        return None

    clock = time.perf_counter_ns
    extra = []
    for _ in range(rounds):
        t0 = clock()
        for _ in range(calls):
            noop(None, None)
        bare = clock() - t0
        t0 = clock()
        timing_loop(noop, None, None, calls)
        extra.append((clock() - t0 - bare) / calls)
    return statistics.median(extra)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--calls", type=int, default=5, help="calls per round for the reference model (x20 for the tiny one)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny.onnx"
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.bench_release import SHAPE, tiny_model

        tiny_model(tiny)
        ref = Path(tmp) / "reference.onnx"
        export_reference(ref)
        for name, path, shape, calls in (("DMS reference (MobileNetV3-L) fp32", ref, [1, 3, 224, 224], args.calls),
                                         ("tiny graph (conv+heads)", tiny, SHAPE, args.calls * 20)):
            m = measure(path, shape, args.rounds, calls, args.threads)
            rows.append((name, calls, m))
    loop_ns = loop_cost_ns()
    load = os.getloadavg()[0]
    print(f"ONNX Runtime {ort.__version__}, CPUExecutionProvider, {args.threads} threads, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}")
    print("bare: a session.run loop, round wall time / calls (two copies, A and B, interleaved with the runner);")
    print("runner wall: the same for dms_bench.timing_loop; runner median: median of the per-call samples it reports;")
    print("A/A: bare A vs bare B, the noise floor of this machine right now. Medians over rounds.")
    print(f"{'model':<36} {'calls':>5} {'bare ms':>9} {'A/A':>7} {'runner wall':>11} {'overhead':>9} "
          f"{'runner median':>13} {'vs bare':>8}")
    for name, calls, m in rows:
        noise = (m["bare_b"] - m["bare_a"]) / m["bare_a"] * 100
        over = (m["runner_wall"] - m["bare"]) / m["bare"] * 100
        diff = (m["runner_median"] - m["bare"]) / m["bare"] * 100
        flag = "ok" if abs(over) < 1.0 else ("within noise" if abs(over) <= abs(noise) else "OVER 1%")
        print(f"{name:<36} {calls:>5} {m['bare']:>9.4f} {noise:>+6.2f}% {m['runner_wall']:>11.4f} {over:>+8.2f}% "
              f"{m['runner_median']:>13.4f} {diff:>+7.2f}%  {flag}")
    print(f"\nThe timing loop's own cost, measured on an empty callable: {loop_ns:.0f} ns per call more than a bare loop.")
    for name, _, m in rows:
        print(f"  = {loop_ns / 1e6 / m['runner_median'] * 100:.4f}% of the {name} median ({m['runner_median']:.4f} ms)")


if __name__ == "__main__":
    main()
