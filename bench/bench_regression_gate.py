#!/usr/bin/env python3
"""The noise-aware latency gate (issue 18 item 1) on an emulated board under injected CPU load.

One real OpenSSH ``sshd`` board on 127.0.5.11 (``dmsbuild.boards.up``), reached
over SSH (paramiko) exactly as ``doit deploy`` reaches boards. Each "deploy"
places a new release folder in the board's deploy root (what
``release.deploy_board`` leaves there: ``releases/<id>`` + ``current``; the
previous release stays), then runs the deploy step's benchmark and gates
(``bench.bench_boards``): the first run's ratio against the previous release
of the same lineage, and, when that ratio is past ``max_latency_regression``,
the interleaved re-measure with its bootstrap CI (``regression.confirm``).

* unchanged: ``--deploys`` (>= 20) deploys of the same model (the same source
  model, the same artifact);
* slower: ``--slow`` pairs: a release of the model, then a release whose
  artifact is a genuinely slower build of the same source model (twice the
  convolutions: more compute, not a sleep).

Injected load: ``--busy`` busy-looping processes (started and stopped by this
script, by pid) that a load thread switches on and off at random intervals
(SIGCONT/SIGSTOP), so a run and the baseline it is compared with see
different load. Debian's ``stress-ng`` (0.15, in the apt archive) would do
the same; plain Python busy loops need no package. The baseline of each
scenario is measured without load, then the load pattern starts.

Prints one row per deploy (first-run ratio and what a one-run gate would
have done; the re-measure's ratio, CI and decision) and the totals: false
rollbacks of the unchanged model (must be 0) and slow builds caught (must be
all), each against the one-run gate measured in the same run.

    PYTHONPATH=$PWD nice .venv/bin/python bench/bench_regression_gate.py [--deploys 20 --slow 5]
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Load:
    """``n`` busy processes toggled on/off at random (0.3-2 s) by a thread; stopped by pid in ``stop()``."""

    def __init__(self, n: int, seed: int) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
        for p in self.procs:
            os.kill(p.pid, signal.SIGSTOP)
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.on_seconds = 0.0
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        on = False
        while not self.stop_event.is_set():
            on = not on
            for p in self.procs:
                os.kill(p.pid, signal.SIGCONT if on else signal.SIGSTOP)
            span = self.rng.uniform(0.3, 2.0)
            if on:
                self.on_seconds += span
            self.stop_event.wait(span)

    def pause(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join()
        for p in self.procs:
            os.kill(p.pid, signal.SIGSTOP)
        self.stop_event = threading.Event()

    def stop(self) -> None:
        self.pause()
        for p in self.procs:
            os.kill(p.pid, signal.SIGCONT)
            p.terminate()
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=20, help="deploys of the unchanged model (>= 20)")
    ap.add_argument("--slow", type=int, default=5, help="deploys of a genuinely slower build")
    ap.add_argument("--busy", type=int, default=2, help="busy processes of the injected load")
    ap.add_argument("--depth", type=int, default=4, help="convolutions of the model (slow build: twice as many)")
    ap.add_argument("--iterations", type=int, default=40, help="inferences of each deploy's benchmark")
    ap.add_argument("--port", type=int, default=2322)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()

    os.environ["HOME"] = tempfile.mkdtemp(prefix="bench-home-")  # never the user's ~/.ssh
    os.environ.pop("SSH_AUTH_SOCK", None)
    from dmsbuild.core.accuracy import AccuracyFloors
    from dmsbuild.measure.bench import BoardBench, bench_boards
    from dmsbuild.boards import down, up
    from dmsbuild.config import ConfirmConfig
    from dmsbuild.ship.inventory import load_inventory
    from dmsbuild.transport import open_transport
    from dmsbuild.core.results import ResultStore
    from tests.slow_models import release_with_depth

    work = Path(tempfile.mkdtemp(prefix="bench-regression-"))
    state = up(1, work / "boards", port=args.port, first=11, groups=("rpi5",), name_prefix="gate", net="127.0.5")
    board = load_inventory(Path(state["inventory"]), ROOT).boards["gate-01"]
    root = Path(state["boards"][0]["root"]) / "bench"
    cfg = ConfirmConfig()  # the defaults a board gets: 8 block pairs x 25 inferences, 95 % CI
    allowed = 1.25
    load = Load(args.busy, args.seed)
    rows: list[dict] = []
    transport = open_transport(board)
    n = [0]

    def deploy(store: ResultStore, depth: int, kind: str) -> dict:
        n[0] += 1
        rid = f"{n[0]:016x}"
        release_with_depth(root, rid, depth, iterations=args.iterations)
        t0 = time.monotonic()
        [out] = bench_boards([BoardBench(board.name, transport, str(root / "current"), board.python or "python3")],
                             target="bench", store=store, accuracy=AccuracyFloors.uniform(1.0, -1.0, -1e9), max_latency_regression=allowed,
                             progress=lambda _m: None, confirm=cfg)
        # the one-run gate's verdict, from the same first run: the ratio bench_boards compared
        first = (out.compared or {}).get("fp32") or {}
        d = out.decisions[0] if out.decisions else None
        row = {"deploy": n[0], "kind": kind, "median": out.doc["results"][0]["latency_ms"]["median"],
               "ratio1": first.get("ratio"), "one_run_fails": (first.get("ratio") or 0) > allowed,
               "decision": d, "rolled_back": not out.ok, "seconds": time.monotonic() - t0,
               "source": out.doc["results"][0].get("source")}
        rows.append(row)
        r1 = f"{row['ratio1']:.2f}x" if row["ratio1"] else "baseline"
        verdict = "CONFIRMED" if d and d["confirmed"] else ("NOT JUDGED" if d and d.get("refused") else "noise")
        ctrl = (d or {}).get("control") or {}
        dec = (f"{d['ratio']:.2f}x CI {d['ci_low']:.2f}-{d['ci_high']:.2f} {verdict}; A/A "
               f"{ctrl.get('ci_low', float('nan')):.2f}-{ctrl.get('ci_high', float('nan')):.2f}; detects >= "
               f"{d['detectable']:.2f}x; load {ctrl.get('loadavg')}" if d else "–")
        print(f"{row['deploy']:>3} {kind:<9} {row['median']:7.3f} ms  first run {r1:>9} "
              f"{'FAIL' if row['one_run_fails'] else 'pass':<4}  re-measure {dec:<34} "
              f"{'ROLLED BACK' if row['rolled_back'] else 'kept':<11} {row['seconds']:5.1f} s", flush=True)
        return row

    print(f"board {board.name} (sshd on {board.host}:{board.port}, emulated: this machine's CPU); "
          f"model depth {args.depth} vs slow build depth {2 * args.depth}; gate {allowed}x; "
          f"re-measure {cfg.blocks} block pairs x {cfg.iterations} inferences, {cfg.confidence:.0%} CI; "
          f"load: {args.busy} busy processes toggled at random")
    print("  # kind      median      first run (1-run gate)  re-measure (ratio, CI, decision)    verdict")
    try:
        same = ResultStore(work / "unchanged.sqlite")
        deploy(same, args.depth, "baseline")  # without load
        load.start()
        for _ in range(args.deploys):
            deploy(same, args.depth, "unchanged")
        load.pause()
        slow = ResultStore(work / "slow.sqlite")
        for _ in range(args.slow):
            deploy(slow, args.depth, "baseline")  # the previous release, measured without load
            load.start()
            deploy(slow, 2 * args.depth, "slower")
            load.pause()
    finally:
        load.stop()
        transport.close()
        down(work / "boards", quiet=True)

    unchanged = [r for r in rows if r["kind"] == "unchanged"]
    slower = [r for r in rows if r["kind"] == "slower"]
    fr = sum(r["rolled_back"] for r in unchanged)
    fr1 = sum(r["one_run_fails"] for r in unchanged)
    caught = sum(r["rolled_back"] for r in slower)
    caught1 = sum(r["one_run_fails"] for r in slower)
    times = [r["seconds"] for r in rows if r["decision"]]
    print()
    print("| scenario | deploys | noise-aware gate | one-run gate (same runs) |")
    print("|---|---:|---|---|")
    print(f"| unchanged model under load | {len(unchanged)} | {fr} false rollbacks | {fr1} false rollbacks |")
    print(f"| slower build (same model) | {len(slower)} | {caught}/{len(slower)} caught | {caught1}/{len(slower)} caught |")
    ratios = [r["median"] / b["median"] for r, b in zip(slower, [r for r in rows if r["kind"] == "baseline"][1:])]
    print(f"slow build / baseline median (first runs): {min(ratios):.2f}x-{max(ratios):.2f}x; re-measures took "
          f"{min(times, default=0):.1f}-{max(times, default=0):.1f} s per deploy; figures' source: "
          f"{sorted({r['source'] for r in rows})}")
    judged = [r["decision"] for r in rows if r["decision"]]
    if judged:  # the gate's power at this noise (issue 31 item 7): the smallest slowdown each re-measure could confirm
        power = sorted(d["detectable"] for d in judged)
        print(f"the gate's power: these re-measures could detect a slowdown of {power[0]:.2f}x-{power[-1]:.2f}x or "
              f"more (median {power[len(power) // 2]:.2f}x); {sum(bool(d.get('refused')) for d in judged)} of "
              f"{len(judged)} not judged (A/A control too wide or excluding 1.00); load average now "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    ok = fr == 0 and caught == len(slower)
    print("RESULT:", "PASS" if ok else "FAIL", "(0 false rollbacks, every slow build caught)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
