#!/usr/bin/env python3
"""Does the interleaved harness time a multi-threaded session by itself, or by its neighbour? (issue 31, item 1)

DESIGN §9: two multi-threaded ONNX Runtime sessions in one process disturb each other: after each run a
session's intra-op pool spin-waits, so whichever session ran just before steals cores from the one being timed
(the same 2-thread INT8 graph measured 6.3 ms next to some sessions and 3.2 ms next to others). This script
measures that bias for each isolation of ``runner/dms_bench.py --interleave`` and decides which one the
harness should use:

* ``none``      one process, ONNX Runtime's default spinning (the old harness);
* ``spin-off``  one process, ``session.intra_op.allow_spinning = 0`` on every session;
* ``gap``       one process, deployed settings, an idle pause before each side's block (the default now);
* ``processes`` each side in its own process, the parent alternating them.

For each isolation it runs the real runner on a release folder holding a light artifact L (``--light`` convs)
and a heavy one H (``--heavy`` convs), both at ``--threads`` intra-op threads, and records:

1. the A/A control: L against a second session of L (``--control``): an unbiased harness gives 1.00x;
2. L's median when its neighbour is H vs when its neighbour is L (``L|H`` vs ``L|L``): the neighbour
   dependence the issue saw (6.3 vs 3.2 ms); unbiased: 1.00x;
3. the ratio H / L and its 95 % CI.

It prints one table and a verdict per isolation: "unbiased" when the A/A interval holds 1.00 and is at most
``regression.MAX_CONTROL_WIDTH`` wide and the neighbour effect is within 5 %. The load average is printed at
start and end; above 1.0 at the start (on this 2-core machine) the script refuses to call anything a
performance result (``--force`` runs anyway and labels every line NOT A PERFORMANCE RESULT).

    PYTHONPATH=$PWD .venv/bin/python bench/bench_harness_bias.py [--threads 2] [--blocks 12] [--iterations 30]

Numbers from this script belong in docs/measurements.md only when taken at a load average under 1 on an idle
machine, with the load average stated.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _release(root: Path, light: int, heavy: int, width: int) -> Path:
    """One release folder with artifacts L (light) and H (heavy): the real runner and manifest layout."""
    from tests.bench_release import make_release
    from tests.slow_models import deep_model

    rel = make_release(root, [{"name": "L"}, {"name": "H"}], release_id="b1a5b1a5b1a5b1a5",
                       bench={"warmup": 3, "iterations": 10, "threads": 2, "verify_samples": 0})
    manifest = json.loads((rel / "manifest.json").read_text())
    for a, depth in zip(manifest["artifacts"], (light, heavy)):
        deep_model(rel / a["file"], depth, width)
        a.pop("sha256", None)
    (rel / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (rel / "verify" / "reference.npz").unlink(missing_ok=True)
    return rel


def _interleave(rel: Path, name: str, baseline: str, *, isolation: str, threads: int, blocks: int,
                iterations: int, control: bool) -> dict:
    argv = [sys.executable, str(rel / "runner" / "dms_bench.py"), "--release", str(rel), "--interleave", str(rel),
            "--artifact", name, "--baseline", baseline, "--blocks", str(blocks), "--iterations", str(iterations),
            "--warmup", "5", "--threads", str(threads), "--max-seconds", "600", "--isolation", isolation]
    if control:
        argv.append("--control")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise SystemExit(f"runner failed ({isolation}): {res.stderr.strip()[-500:]}")
    return json.loads(res.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--light", type=int, default=2, help="convolutions of L")
    ap.add_argument("--heavy", type=int, default=8, help="convolutions of H")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--force", action="store_true", help="run above a load average of 1 (results labelled)")
    args = ap.parse_args()

    import numpy as np

    from dmsbuild.measure.regression import MAX_CONTROL_WIDTH, bootstrap_ratio

    load0 = os.getloadavg()[0]
    label = ""
    if load0 > 1.0:
        if not args.force:
            print(f"load average {load0:.2f} > 1.0 at start on {os.cpu_count()} cores: not measuring "
                  "(--force to run anyway; its figures are then NOT performance results)")
            return 2
        label = "  [NOT A PERFORMANCE RESULT: load average above 1 at start]"
    print(f"load average at start {load0:.2f} ({os.cpu_count()} cores); {args.threads} intra-op threads, "
          f"{args.blocks} blocks x {args.iterations} runs")
    work = Path(tempfile.mkdtemp(prefix="dms-bias-"))
    try:
        rel = _release(work, args.light, args.heavy, args.width)
        rows = []
        for isolation in ("none", "spin-off", "processes", "gap"):
            aa = _interleave(rel, "H", "L", isolation=isolation, threads=args.threads, blocks=args.blocks,
                             iterations=args.iterations, control=True)
            ll = _interleave(rel, "L", "L", isolation=isolation, threads=args.threads, blocks=args.blocks,
                             iterations=args.iterations, control=False)
            c, lo_c, hi_c = bootstrap_ratio(aa["old"], aa["control"])   # L vs L (A/A, H in the rotation)
            r, lo, hi = bootstrap_ratio(aa["old"], aa["new"])            # H / L
            next_to_h = float(np.median([s for b in aa["old"] for s in b]))
            next_to_l = float(np.median([s for b in ll["old"] for s in b]))
            neighbour = next_to_h / next_to_l
            unbiased = lo_c <= 1.0 <= hi_c and hi_c - lo_c <= MAX_CONTROL_WIDTH and abs(neighbour - 1) <= 0.05
            rows.append((isolation, c, lo_c, hi_c, next_to_l, next_to_h, neighbour, r, lo, hi,
                         "unbiased" if unbiased else "BIASED or too noisy"))
        print(f"{'isolation':10s} {'A/A (L vs L)':>22s} {'L|L ms':>8s} {'L|H ms':>8s} {'neighbour':>9s} "
              f"{'H / L (95% CI)':>22s}  verdict")
        for iso, c, lo_c, hi_c, ll_ms, lh_ms, nb, r, lo, hi, verdict in rows:
            print(f"{iso:10s} {c:6.3f} ({lo_c:.3f}-{hi_c:.3f}) {ll_ms:8.3f} {lh_ms:8.3f} {nb:8.3f}x "
                  f"{r:6.3f} ({lo:.3f}-{hi:.3f})  {verdict}{label}")
        print(f"load average at end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
