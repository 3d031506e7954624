#!/usr/bin/env python3
"""`doit tune` on an emulated rpi5 board: tuned speed-up over the default FP32 artifact, distance to the best
candidate of an exhaustive sweep of the same space, and the tuning time (issue 16 item 6).

One real OpenSSH sshd board on 127.0.16.21 (``dmsbuild.boards up``), reached over SSH like any board. For each
model (the reference DMS model at its 128x128 input, and two corpus models, tests/corpus.py, at 96x96):

1. ``doit build target=rpi5e`` (the rpi5 profile's precisions, ONNX Runtime CPU, arch any: the board is this
   machine's CPU);
2. ``doit tune`` with the default staged strategy (every recipe at full threads, then the threads of the two
   fastest recipes), timed;
3. the same space with ``strategy = "exhaustive"``: every recipe x every thread count. It reuses the staged
   run's cached measurements (same candidates, same board kind) and measures the rest, so both choices come
   from the same numbers where they overlap; its time column is the staged time plus the extra measuring.

Every ratio is interleaved with the default FP32 artifact on the board (alternating block pairs, rotated
order, bootstrap CI), which keeps ratios usable on this shared, loaded machine; the load average is printed.

    PYTHONPATH=$PWD nice .venv/bin/python bench/bench_tune.py [--only reference mobilenetv2] [--budget 15] [--check]
                                                              [--runtimes]

``--runtimes``: the target also ships ``[backend] tflite = ["fp32"]`` (targets/rpi5.toml's LiteRT line, fp32 only:
the reference model's int8.tflite fails the build's gate), so the space has both runtimes (issue 28 item 4): ONNX Runtime's recipes x threads and
LiteRT's FP32 / full-integer INT8 x interpreter threads, every one interleaved with the same default FP32 ONNX
artifact. Besides the table above it prints every measured candidate of the exhaustive sweep with its runtime
and thread count (needs the litert extra; the reference model only: the corpus projects bring ONNX files, whose
``.tflite`` route needs onnx2torch).

``--check`` re-times each staged choice with ``bench/check_tune.py`` (separate processes, alternated rounds,
no tuner code), once idle and once beside two CPU hogs, and prints whether the tuner's interval contains it
(issue 31 item 4; it waits up to 5 minutes for the load average to fall under 1, else it refuses).
``--hog-tune`` (with ``--check``): besides re-timing the idle choice beside two hogs, ``doit tune`` runs again
beside the same two hogs (its cached idle measurements removed first) and that choice is re-timed beside them, so
each condition's check is also held against the interval the tuner measured in that condition.
``--default-threads N`` gives the default FP32 artifact N threads (``[bench] threads``; default 0 = every core).
``--default-threads 4`` is the committed rpi5 profile's setting (a 4-core Pi 5), oversubscribed on this 2-core
emulated board: a case where a candidate (fewer threads) really wins, so the check has a speed-up to reproduce.
``--no-exhaustive`` skips the exhaustive sweep (the check concerns the staged choice) and prints a short table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NET, FIRST = "127.0.16", 21
SPACE = """\
[tune]
precision = ["fp32", "fp16", "int8-qdq", "int8-qoperator"]
per_channel = [true, false]
iterations = 20
warmup = 5
"""
TARGET = """\
description = "emulated Raspberry Pi 5: the rpi5 profile's precisions on this machine's CPU"
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
[deploy]
group = "rpi5e"
[bench]
warmup = 5
iterations = 50
threads = {threads}
verify_samples = 20  # a 5 % top-1 floor needs 20 (issue 24: host and board judge the same samples)
"""


def reference_project(folder: Path) -> Path:
    """The repository's reference project (model, checkpoint, data), with the emulated target only."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "dmsbuild.toml", folder / "dmsbuild.toml")
    shutil.copytree(ROOT / "models", folder / "models")
    shutil.copytree(ROOT / "data", folder / "data")
    (folder / "targets").mkdir()
    return folder


def corpus_project(name: str, folder: Path) -> Path:
    from tests import corpus

    base = next(e for e in corpus.ENTRIES if e.name == name)
    arch = {"mobilenetv2": "mobilenetv2", "resnet18-like": "resnet"}[name]
    entry = corpus._torch_entry(name, arch, base.opset, shape=[1, 3, 96, 96])
    root = corpus.make_project(entry, folder)
    for t in corpus.TARGETS:
        (root / "targets" / f"{t}.toml").unlink()
    return root


#: rounds of each independent check (check_tune.py's default is 40): its interval should be narrower than the
#: tuner's, so that a miss says something about the tuner's interval rather than the check's own noise
CHECK_ROUNDS = 60


def check(root: Path, hogs: int, *explicit: str) -> list[str]:
    """bench/check_tune.py on the staged choice (built as `tuned` first), or on ``explicit`` arguments
    (--candidate ... --baseline ...): its output lines, or its refusal."""
    what = list(explicit) or ["--project", str(root), "--target", "rpi5e"]
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "check_tune.py"), *what, "--hogs", str(hogs),
                          "--rounds", str(CHECK_ROUNDS), "--wait-idle", "300"], capture_output=True, text=True,
                         cwd=ROOT, timeout=3600)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]


def check_kept(root: Path, hogs: int) -> list[str]:
    """The tuner kept the default: re-time independently, beside the same hogs, the candidate it got furthest
    with (the leader it confirmed, with the confirmation's interval; else the search's fastest, host gate
    passed, with its search interval) and say whether that interval contains the check's speed-up, as for a
    choice: the tuner claimed nothing, so the question is whether its last figure for it was right."""
    doc = json.loads((root / "artifacts" / "tune" / "rpi5e" / "tune.json").read_text())
    rows = [r for res in doc["results"] for r in res["rows"] if r.get("measurement") and not r.get("gate_failures")
            and r["measurement"].get("artifact_path")]
    if not rows:
        return ["nothing measured to re-time"]
    confirmed = [r for r in rows if r["measurement"].get("search")]
    best = confirmed[0] if confirmed else min(rows, key=lambda r: r["measurement"]["ratio"])
    m = best["measurement"]
    lo, hi = 1 / m["ci_high"], 1 / m["ci_low"]
    what = "confirmation" if confirmed else "search"
    who = "the leader, not confirmed" if confirmed else "the search's fastest"
    lines = [f"{who}: {best['label']}: "
             f"{1 / m['ratio']:.2f}x (CI {lo:.2f}-{hi:.2f}, its {what})"]
    return lines + check(root, hogs, "--candidate", m["artifact_path"], "--candidate-threads",
                         str(best["runtime"]["intra_op_threads"]), "--baseline", m["baseline"]["path"],
                         "--baseline-threads", str(m["baseline"]["threads"]), "--tuner-ci", f"{lo:.6f}", f"{hi:.6f}")


#: the rpi5 profile's LiteRT line, uncommented (--runtimes), with fp32 only: the reference model's full-integer
#: int8.tflite fails the build's SQNR floor on head_pose (8.8 dB < 12 dB over the 20 gate samples); the tune still
#: builds and gates LiteRT INT8 as a candidate (the table lists it as failing the host gate)
TFLITE = """\
[backend]
tflite = ["fp32"]
"""


class Hogs:
    """``n`` busy-looping processes while the block runs (check_tune.py's "CPU hogs", here around a tune)."""

    def __init__(self, n: int) -> None:
        self.n, self.procs = n, []

    def __enter__(self) -> "Hogs":
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def wait_idle(limit_s: float = 300.0) -> float:
    """Wait (up to ``limit_s``) for the 1-minute load average to fall under 1; the load average then."""
    t0 = time.monotonic()
    while os.getloadavg()[0] > 1.0 and time.monotonic() - t0 < limit_s:
        time.sleep(5)
    return os.getloadavg()[0]


def _choice_line(choice: dict) -> str:
    if choice.get("keep_default"):
        return "tuner kept the default: " + choice["sentence"]
    lo, hi = choice["speedup_ci"]
    return f"tuner chose {_what(choice)}: {choice['speedup']:.2f}x (CI {lo:.2f}-{hi:.2f})"


def one(name: str, root: Path, inventory: str, budget: float, checks: bool = False, runtimes: bool = False,
        default_threads: int = 0, hog_tune: bool = False, exhaustive: bool = True) -> dict:
    from tests.tinyproject import run_doit

    target = root / "targets" / "rpi5e.toml"
    profile = TARGET.format(threads=default_threads) + (TFLITE if runtimes else "")
    target.write_text(profile + SPACE)
    run = run_doit(root, "build", "target=rpi5e")
    if run.rc != 0:
        raise SystemExit(f"{name}: build failed:\n{run.output[-2000:]}")
    load_tune = wait_idle() if checks else os.getloadavg()[0]
    t0 = time.perf_counter()
    run = run_doit(root, "tune", "target=rpi5e", f"inventory={inventory}", f"budget={budget}")
    staged_s = time.perf_counter() - t0
    if run.rc != 0:
        raise SystemExit(f"{name}: tune failed:\n{run.output[-3000:]}")
    staged = tomllib.loads((root / "targets" / "rpi5e.tuned.toml").read_text())["choice"][0]
    staged_n = len(re.findall(r"^  \[\s*\d+ s\]", run.output, re.M))
    independent: dict[str, list[str]] = {}
    tune_json = json.loads((root / "artifacts" / "tune" / "rpi5e" / "tune.json").read_text())
    if checks:  # the independent re-timing, idle and beside two hogs
        head = f"tune idle (load {load_tune:.2f} before it): {_choice_line(staged)}"
        if staged.get("keep_default"):
            independent["idle"] = [head] + check_kept(root, 0)
        else:
            run = run_doit(root, "build", "target=rpi5e")  # builds the choice as `tuned`
            if run.rc != 0:
                raise SystemExit(f"{name}: build of the tuned artifact failed:\n{run.output[-2000:]}")
            independent["idle"] = [head] + check(root, 0)
            independent["2 CPU hogs (the idle tune's choice)"] = [head] + check(root, 2)
        if hog_tune:
            shutil.rmtree(root / "artifacts" / "tune" / "rpi5e" / "measurements", ignore_errors=True)
            load_hogs = wait_idle()
            with Hogs(2):
                run = run_doit(root, "tune", "target=rpi5e", f"inventory={inventory}", f"budget={budget}")
            if run.rc != 0:
                raise SystemExit(f"{name}: tune beside 2 hogs failed:\n{run.output[-3000:]}")
            hog_choice = tomllib.loads((root / "targets" / "rpi5e.tuned.toml").read_text())["choice"][0]
            head = f"tune beside 2 CPU hogs (load {load_hogs:.2f} before the hogs): {_choice_line(hog_choice)}"
            if hog_choice.get("keep_default"):
                independent["2 CPU hogs"] = [head] + check_kept(root, 2)
            else:
                run = run_doit(root, "build", "target=rpi5e")
                if run.rc != 0:
                    raise SystemExit(f"{name}: build of the tuned artifact failed:\n{run.output[-2000:]}")
                independent["2 CPU hogs"] = [head] + check(root, 2)
    if not exhaustive:
        return {"model": name, "staged": staged, "staged_s": staged_s, "provenance": staged["provenance"],
                "kind": staged["board_kind"], "load": tune_json["load"], "independent": independent}
    target.write_text(profile + SPACE + 'strategy = "exhaustive"\n')
    t0 = time.perf_counter()
    run = run_doit(root, "tune", "target=rpi5e", f"inventory={inventory}", f"budget={budget}")
    extra_s = time.perf_counter() - t0
    if run.rc != 0:
        raise SystemExit(f"{name}: exhaustive tune failed:\n{run.output[-3000:]}")
    exhaustive = tomllib.loads((root / "targets" / "rpi5e.tuned.toml").read_text())["choice"][0]
    rows = json.loads((root / "artifacts" / "tune" / "rpi5e" / "tune.json").read_text())["results"][0]["rows"]
    measured = [r for r in rows if r["measurement"]]
    passing = [r for r in measured if not r["gate_failures"]]
    point = min(passing, key=lambda r: r["measurement"]["ratio"], default=None)
    gated = [r for r in rows if r["gate_failures"]]
    return {"model": name, "staged": staged, "exhaustive": exhaustive, "staged_s": staged_s,
            "exhaustive_s": staged_s + extra_s, "staged_n": staged_n, "exhaustive_n": len(measured),
            "point": point, "gated": len({json.dumps(r["recipe"], sort_keys=True) for r in gated}),
            "provenance": staged["provenance"], "kind": staged["board_kind"],
            "load": tune_json["load"], "independent": independent, "rows": measured, "gated_rows": gated}


def _speed(choice: dict) -> tuple[float, str]:
    if choice.get("keep_default"):
        return 1.0, "default fp32 kept"
    lo, hi = choice["speedup_ci"]
    return choice["speedup"], f"{choice['speedup']:.2f}x ({lo:.2f}-{hi:.2f})"


def _what(choice: dict) -> str:
    if choice.get("keep_default"):
        return "default (fp32)"
    return choice["sentence"].split(":")[0]


def _point(row: dict | None) -> str:
    if row is None:
        return "-"
    m = row["measurement"]
    return f"{row['label']}: {1 / m['ratio']:.2f}x ({1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f})"


def table(rows: list[dict]) -> str:
    lines = ["| model | tuned choice (staged) | tuned speed-up vs FP32 (CI) | exhaustive best | exhaustive speed-up "
             "(CI) | tuned / exhaustive best | measured staged / exhaustive | recipes failing the host gate "
             "| fastest point estimate of the sweep (CI; not chosen unless its CI is above 1) "
             "| tuning time staged | exhaustive |",
             "|---|---|---:|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        s, s_txt = _speed(r["staged"])
        e, e_txt = _speed(r["exhaustive"])
        lines.append(f"| {r['model']} | {_what(r['staged'])} | {s_txt} | {_what(r['exhaustive'])} | {e_txt} | "
                     f"{100 * s / e:.0f}% | {r['staged_n']} / {r['exhaustive_n']} | {r['gated']} | {_point(r['point'])} | "
                     f"{r['staged_s']:.0f} s | {r['exhaustive_s']:.0f} s |")
    return "\n".join(lines)


def candidates_table(rows: list[dict]) -> str:
    """Every measured candidate of each model's exhaustive sweep: runtime, threads, speed-up vs the default FP32
    ONNX artifact with its CI, the host gate; the staged and exhaustive choices marked (--runtimes)."""
    lines = ["| model | candidate | runtime | threads | speed-up vs default fp32 (CI) | host gate | chosen |",
             "|---|---|---|---:|---:|---|---|"]
    for r in rows:
        picks = {k: r[k].get("candidate") for k in ("staged", "exhaustive")}
        for row in sorted(r["rows"], key=lambda x: x["measurement"]["ratio"]):
            m = row["measurement"]
            chosen = ", ".join(k for k, v in picks.items() if v == row["id"]) or "-"
            lines.append(f"| {r['model']} | {row['label']} | {row['recipe'].get('runtime') or 'onnxruntime'} | "
                         f"{row['runtime']['intra_op_threads']} | {1 / m['ratio']:.2f}x ({1 / m['ci_high']:.2f}-"
                         f"{1 / m['ci_low']:.2f}) | {'pass' if not row['gate_failures'] else 'FAIL'} | {chosen} |")
        seen = set()
        for row in r["gated_rows"]:  # recipes the host gate stopped: never measured
            key = json.dumps(row["recipe"], sort_keys=True)
            if key not in seen:
                seen.add(key)
                lines.append(f"| {r['model']} | {row['label'].rsplit(', ', 1)[0]} | "
                             f"{row['recipe'].get('runtime') or 'onnxruntime'} | - | not measured | FAIL: "
                             f"{row['gate_failures'][0]} | - |")
    return "\n".join(lines)


def main() -> int:
    from dmsbuild.config import TuneConfig
    from dmsbuild.pipeline.tune.run import CONFIRM_FIRST

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--budget", type=float, default=15.0, help="minutes per tune")
    ap.add_argument("--runtimes", action="store_true",
                    help="the target ships [backend] tflite too: ONNX Runtime and LiteRT candidates, and a table of every one")
    ap.add_argument("--check", action="store_true",
                    help="re-time each staged choice with bench/check_tune.py, idle and beside 2 CPU hogs")
    ap.add_argument("--hog-tune", action="store_true",
                    help="with --check: the hog check re-times a choice tuned beside the same 2 hogs")
    ap.add_argument("--default-threads", type=int, default=0, metavar="N",
                    help="threads of the default FP32 artifact ([bench] threads; 0 = every core, 4 = the rpi5 profile)")
    ap.add_argument("--no-exhaustive", action="store_true", help="skip the exhaustive sweep (short table)")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="work in DIR and keep the projects (their artifacts/tune/*/tune.json) for a closer look")
    args = ap.parse_args()
    from tests.conftest import _free_port

    models = [m for m in ("reference", "mobilenetv2", "resnet18-like") if not args.only or m in args.only]
    if args.runtimes:  # the corpus projects bring ONNX files: their .tflite needs onnx2torch (docs/targets.md)
        corpus = [m for m in models if m != "reference"]
        if corpus and args.only:
            raise SystemExit(f"--runtimes: {', '.join(corpus)} bring ONNX models, whose .tflite needs onnx2torch "
                             "(not installed here, docs/targets.md 'LiteRT'); use --only reference")
        models = ["reference"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dmsbuild-bench-tune-") as tmp:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        where = Path(tmp) / "boards"
        port = _free_port(f"{NET}.{FIRST}")
        subprocess.run([sys.executable, "-m", "dmsbuild.boards", "up", "--count", "1", "--dir", str(where), "--port",
                        str(port), "--first", str(FIRST), "--net", NET, "--groups", "rpi5e"], check=True, cwd=ROOT,
                       capture_output=True)
        inventory = str(where / "inventory.toml")
        try:
            for m in models:
                started = time.perf_counter()
                folder = Path(tmp) / m
                root = reference_project(folder) if m == "reference" else corpus_project(m, folder)
                rows.append(one(m, root, inventory, args.budget, args.check, args.runtimes, args.default_threads,
                                args.hog_tune, not args.no_exhaustive))
                print(f"{m}: {time.perf_counter() - started:.0f} s (load {rows[-1]['load']})", file=sys.stderr, flush=True)
        finally:
            subprocess.run([sys.executable, "-m", "dmsbuild.boards", "down", "--dir", str(where)], cwd=ROOT,
                           capture_output=True)
    import onnxruntime

    lite = ""
    if args.runtimes:
        from importlib import metadata

        lite = (f"; LiteRT {metadata.version('ai-edge-litert')} (XNNPACK): fp32 / full-integer int8 .tflite x "
                "1..cores interpreter threads")

    print(f"doit tune on one emulated rpi5 board ({rows[0]['provenance'] if rows else ''}; {rows[0]['kind'] if rows else ''}); "
          f"ONNX Runtime {onnxruntime.__version__}; space: precision fp32/fp16/int8 QDQ/int8 QOperator x per-channel/per-tensor x "
          f"1..cores threads{lite}; every ratio interleaved with the default FP32 artifact ({TuneConfig().blocks} block "
          f"rotations x 20 in the search, the choice confirmed with {TuneConfig().blocks * CONFIRM_FIRST} or more; each "
          f"block in a fresh process on the board, with an A/A control; 95% bootstrap CI); independent checks: "
          f"{CHECK_ROUNDS} rounds; default FP32 threads: {args.default_threads or 'every core'}; load average at the end: "
          f"{os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} / {os.getloadavg()[2]:.2f} on {os.cpu_count()} CPUs\n")
    if args.no_exhaustive:
        print("| model | tuned choice (staged) | tuned speed-up vs FP32 (CI) | tuning time |\n|---|---|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {_what(r['staged'])} | {_speed(r['staged'])[1]} | {r['staged_s']:.0f} s |")
    else:
        print(table(rows))
    if args.runtimes:
        print("\nEvery measured candidate (exhaustive sweep), both runtimes:\n")
        print(candidates_table(rows))
    for r in rows:
        for cond, lines in (r.get("independent") or {}).items():
            print(f"\n{r['model']}, {cond}:")
            print("\n".join(f"    {line}" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
