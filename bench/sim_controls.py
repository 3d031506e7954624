"""Simulated A/A controls: how often the tuner's two-level bootstrap interval excludes 1.00 when nothing differs,
by the number of blocks, and how often a tune of several candidates would refuse under each refusal rule.

Generated numbers, not measurements: every side's block is drawn from a model of a board (a process's "luck"
factor per block, as in docs/measurements.md "Session luck", times per-run noise); the interval is the tuner's
own ``dmsbuild.measure.regression.bootstrap_ratio``. docs/tune.md "Controls" shows its table.

    PYTHONPATH=$PWD .venv/bin/python bench/sim_controls.py [--trials 300] [--candidates 8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dmsbuild.measure.regression import MAX_CONTROL_WIDTH, bootstrap_ratio  # noqa: E402

#: (label, share of blocks whose process draws bad luck, how much slower a bad-luck block runs)
BOARDS = [("no luck (quiet, one mode)", 0.0, 1.0), ("rare 2x luck (20 % of processes)", 0.2, 2.0),
          ("frequent 1.3x luck (35 %)", 0.35, 1.3)]


def side(rng: np.random.Generator, blocks: int, runs: int, bad: float, factor: float) -> list[list[float]]:
    luck = np.where(rng.random(blocks) < bad, factor, 1.0)
    return [list(0.15 * f * (1 + 0.03 * rng.standard_normal(runs))) for f in luck]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--candidates", type=int, default=8, help="controls in one tune's search")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per block")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    print(f"generated (simulation, not a measurement): {args.trials} A/A controls per row, {args.runs} runs per block, "
          f"the tuner's bootstrap at 95 %; a tune of {args.candidates} candidates")
    print(f"| board model | blocks | control excludes 1.00 | control wider than {MAX_CONTROL_WIDTH:.2f} | "
          f"a tune refuses: any of {args.candidates} controls fails | a tune refuses: the confirmation's control fails |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, bad, factor in BOARDS:
        for blocks in (6, 12, 24):
            excl = wide = 0
            for t in range(args.trials):
                o, c = side(rng, blocks, args.runs, bad, factor), side(rng, blocks, args.runs, bad, factor)
                _, lo, hi = bootstrap_ratio(o, c, resamples=400, seed=t)
                excl += not lo <= 1.0 <= hi
                wide += (lo <= 1.0 <= hi) and hi - lo > MAX_CONTROL_WIDTH
            p = (excl + wide) / args.trials
            # independent controls: the chance that at least one of the search's fails, against one
            print(f"| {label} | {blocks} | {excl / args.trials:.1%} | {wide / args.trials:.1%} | "
                  f"{1 - (1 - p) ** args.candidates:.0%} | {p:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
