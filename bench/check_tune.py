#!/usr/bin/env python3
"""An independent check of `doit tune`'s choice: re-time the tuned artifact against the default FP32 artifact
WITHOUT the tuner's measuring code, and say whether the tuner's interval contains the result (issue 31, item 4).

What is independent here: no ``dms_bench.py``, no ``regression.bootstrap_ratio``, no interleave. Each side runs
in a Python process of its own (plain ``onnxruntime.InferenceSession`` with the side's thread count and the
tuned session settings, ONNX Runtime's default spinning: what ships); the parent alternates them round by round
in ABBA order (A B, B A, A B, ...), each round timing ``--iterations`` runs per side after the side's own
warm-up, and only one side runs at a time. By default every round starts a NEW process for each side (and ends
it after): how fast a session runs depends on the process and session it lands in (on this 2-core VM the same
2-thread FP32 model ran at 0.15 ms in one session and 0.33 ms in the next), so one long-lived process per side
is one draw of that luck and its interval over rounds does not cover it (docs/measurements.md "Session luck").
``--long-lived`` keeps one process per side for all rounds (the old way, for comparison). The speed-up is the
ratio of the two sides' typical latencies: the median over rounds of the baseline's round medians divided by the
candidate's (the quantity the tuner states: its ratio of medians); its 95 % interval is a percentile bootstrap
over rounds, written here. The median over rounds of each round's own ratio is printed too: with independent
process luck on both sides it is a different quantity (on 2026-12-08 it read 0.96-1.14x the ratio of medians idle,
0.87-1.46x beside two hogs, e.g. 1.59x against 1.39x), which is why the check no longer compares it with the
tuner's interval.

    # after `doit build target=T` with a targets/T.tuned.toml (the choice `doit tune` wrote):
    PYTHONPATH=$PWD .venv/bin/python bench/check_tune.py --target T [--rounds 40] [--iterations 20] [--hogs 2]
    # or any two ONNX files:
    PYTHONPATH=$PWD .venv/bin/python bench/check_tune.py --candidate tuned.onnx --candidate-threads 2 \
        --baseline fp32.onnx --baseline-threads 2 --tuner-ci 1.12 1.31

``--hogs N`` starts N busy-looping processes beside the measurement (the "two CPU hogs" condition) and stops
them after. The load average is checked at the start, BEFORE any hog starts: above 1.0 (on a 2-core machine
other work is running) the script prints the load and refuses to print a ratio (exit 2). ``--force`` prints it
anyway, labelled NOT A PERFORMANCE RESULT. The docs' tuning tables come from this script's output lines.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the side's process: load the model once, then time N runs per request line; the default spinning setting
WORKER = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
path, threads, level, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
so = ort.SessionOptions()
if threads > 0:
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                               "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                               "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                               "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}[inp.type]
feed = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(dtype)}
names = [o.name for o in sess.get_outputs()]
print("ready", flush=True)
for line in sys.stdin:
    warm, n = (int(x) for x in line.split())
    for _ in range(warm):
        sess.run(names, feed)
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        sess.run(names, feed)
        out.append((time.perf_counter_ns() - t) / 1e6)
    print(json.dumps(out), flush=True)
"""


class Side:
    def __init__(self, label: str, path: Path, threads: int, level: str = "all", mode: str = "sequential") -> None:
        self.label = label
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(threads), level, mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{label}: the worker did not start ({path})")

    def time(self, warmup: int, n: int) -> list[float]:
        self.proc.stdin.write(f"{warmup} {n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def rounds_interval_of_medians_ratio(base: list[float], cand: list[float], resamples: int = 5000,
                               seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of median(base) / median(cand), rounds resampled with replacement (both sides of
    a round together: they ran next to each other)."""
    rng = random.Random(seed)
    n = len(base)
    ratios = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        ratios.append(statistics.median(base[i] for i in idx) / statistics.median(cand[i] for i in idx))
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def bootstrap_median(values: list[float], resamples: int = 5000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the median of ``values`` (rounds resampled with replacement)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def from_target(target: str, project: Path = ROOT) -> dict:
    """The tuned artifact, the default FP32 artifact, their threads and the tuner's interval, from the files
    `doit tune` and `doit build` wrote in ``project`` (no tuner code runs)."""
    build = json.loads((project / "artifacts" / target / "build.json").read_text())
    tuned_file = project / "targets" / f"{target}.tuned.toml"
    choice = tomllib.loads(tuned_file.read_text())
    [kind] = [c for c in choice["choice"] if not c.get("keep_default")][:1] or [None]
    if kind is None:
        raise SystemExit(f"{tuned_file}: `doit tune` kept the default; nothing to check")
    arts = {a["name"]: a for a in build["artifacts"]}
    if "tuned" not in arts or choice["default_artifact"] not in arts:
        raise SystemExit(f"artifacts/{target}/build.json: no 'tuned' or '{choice['default_artifact']}' artifact; "
                         f"run `doit build target={target}` first")
    if not str(arts["tuned"]["path"]).endswith(".onnx"):  # a LiteRT choice: this check has no LiteRT side yet
        raise SystemExit(f"artifacts/{target}/build.json: the tuned artifact is {arts['tuned']['path']} "
                         f"({arts['tuned'].get('runtime')}); check_tune.py re-times ONNX Runtime artifacts only")
    profile = tomllib.loads((project / "targets" / f"{target}.toml").read_text())
    runtime = kind.get("runtime") or {}
    return {"candidate": project / arts["tuned"]["path"], "candidate_threads": int(runtime.get("intra_op_threads", 0)),
            "level": runtime.get("graph_optimization_level", "all"), "mode": runtime.get("execution_mode", "sequential"),
            "baseline": project / arts[choice["default_artifact"]]["path"],
            "baseline_threads": int((profile.get("bench") or {}).get("threads", 0)),
            "tuner_ci": tuple(kind["speedup_ci"]), "tuner_speedup": kind.get("speedup"), "label": kind.get("sentence")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target")
    ap.add_argument("--project", type=Path, default=ROOT, help="the project folder of --target (default: this repo)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to this long for the load average to fall under 1 before deciding")
    ap.add_argument("--candidate", type=Path)
    ap.add_argument("--candidate-threads", type=int, default=0)
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--baseline-threads", type=int, default=0)
    ap.add_argument("--tuner-ci", type=float, nargs=2, metavar=("LOW", "HIGH"))
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs of each side before each round")
    ap.add_argument("--hogs", type=int, default=0, help="busy-looping processes beside the measurement")
    ap.add_argument("--force", action="store_true", help="measure above a load average of 1 (labelled)")
    ap.add_argument("--long-lived", action="store_true",
                    help="one process per side for all rounds (default: a new process per side and round)")
    args = ap.parse_args()

    if args.target:
        spec = from_target(args.target, args.project)
    elif args.candidate and args.baseline:
        spec = {"candidate": args.candidate, "candidate_threads": args.candidate_threads, "level": "all",
                "mode": "sequential", "baseline": args.baseline, "baseline_threads": args.baseline_threads,
                "tuner_ci": tuple(args.tuner_ci) if args.tuner_ci else None, "tuner_speedup": None, "label": None}
    else:
        ap.error("--target, or --candidate and --baseline")
    waited = time.monotonic()
    while os.getloadavg()[0] > 1.0 and time.monotonic() - waited < args.wait_idle:
        time.sleep(5)
    load0 = os.getloadavg()[0]
    note = ""
    if load0 > 1.0:
        if not args.force:
            print(f"load average {load0:.2f} > 1.0 at start ({os.cpu_count()} cores): other work is running, "
                  "so no ratio is printed (stop it and rerun; --force prints one labelled NOT A PERFORMANCE RESULT)")
            return 2
        note = " [NOT A PERFORMANCE RESULT: load average above 1 at start]"
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    sides: list[Side] = []
    make = {"baseline": lambda: Side("baseline", spec["baseline"], spec["baseline_threads"]),
            "candidate": lambda: Side("candidate", spec["candidate"], spec["candidate_threads"], spec["level"],
                                      spec["mode"])}

    def timed(label: str) -> float:
        """The median of one round's runs of side ``label``: in its long-lived process, or a new one."""
        if args.long_lived:
            return statistics.median(kept[label].time(args.warmup, args.iterations))
        side = make[label]()
        sides.append(side)
        try:
            return statistics.median(side.time(args.warmup, args.iterations))
        finally:
            side.close()
            sides.remove(side)

    try:
        kept = {label: make[label]() for label in make} if args.long_lived else {}
        sides.extend(kept.values())
        ratios, bmeds, cmeds = [], [], []
        t0 = time.monotonic()
        for i in range(args.rounds):
            order = ("baseline", "candidate") if i % 2 == 0 else ("candidate", "baseline")  # ABBA
            got = {label: timed(label) for label in order}
            bmeds.append(got["baseline"])
            cmeds.append(got["candidate"])
            ratios.append(got["baseline"] / got["candidate"])
        seconds = time.monotonic() - t0
    finally:
        for s in sides:
            s.close()
        for h in hogs:
            h.kill()
            h.wait()
    per_round = statistics.median(ratios)
    per_round_ci = bootstrap_median(ratios)
    speedup = statistics.median(bmeds) / statistics.median(cmeds)
    low, high = rounds_interval_of_medians_ratio(bmeds, cmeds)
    load1 = os.getloadavg()[0]
    print(f"independent check: candidate {spec['candidate'].name} ({spec['candidate_threads']} threads) vs baseline "
          f"{spec['baseline'].name} ({spec['baseline_threads']} threads), {args.rounds} alternated rounds x "
          f"{args.iterations} runs, {'one long-lived process per side' if args.long_lived else 'a new process per side and round'}, "
          f"{seconds:.0f} s, {args.hogs} CPU hog(s); load average "
          f"{load0:.2f} at start (before the hogs), {load1:.2f} at end{note}")
    print(f"  medians: baseline {statistics.median(bmeds):.3f} ms, candidate {statistics.median(cmeds):.3f} ms")
    print(f"  speed-up {speedup:.2f}x (95 % CI {low:.2f}-{high:.2f}), ratio of the medians{note}")
    print(f"  (median of the rounds' own ratios {per_round:.2f}x, CI {per_round_ci[0]:.2f}-{per_round_ci[1]:.2f}: "
          f"another quantity, not compared){note}")
    if spec["tuner_ci"]:
        lo_t, hi_t = spec["tuner_ci"]
        inside = lo_t <= speedup <= hi_t
        print(f"  tuner's interval {lo_t:.2f}-{hi_t:.2f}: {'CONTAINS' if inside else 'DOES NOT CONTAIN'} the "
              f"independent speed-up {speedup:.2f}x{note}")
        print(f"  {difference(lo_t, hi_t, speedup, low, high)}{note}")
        return 0 if inside else 1
    return 0


def difference(lo_t: float, hi_t: float, speedup: float, low: float, high: float) -> str:
    """The two figures against each other, each with its own noise: the log-ratio of the check's speed-up to
    the tuner's interval centre, with a 95 % interval from both intervals' widths (normal approximation on the
    log scale). "Containing" asks the check's point to fall inside the tuner's interval, which an unbiased
    tuner misses more than 5 % of the time when the check is about as noisy; this line says whether the two
    differ by more than their combined noise."""
    import math

    centre = math.sqrt(lo_t * hi_t)
    se = math.hypot(math.log(hi_t / lo_t), math.log(high / low)) / (2 * 1.96)
    d = math.log(speedup / centre)
    z = d / se if se > 0 else float("inf")
    return (f"check / tuner: {math.exp(d):.2f}x (95 % CI {math.exp(d - 1.96 * se):.2f}-{math.exp(d + 1.96 * se):.2f}): "
            f"{'CONSISTENT' if abs(z) <= 1.96 else 'INCONSISTENT'} within their combined noise (z = {z:.2f})")


if __name__ == "__main__":
    raise SystemExit(main())
