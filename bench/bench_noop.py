#!/usr/bin/env python3
"""No-op ``doit build`` against doit's own start-up (issue 26 item 4): median of N paired runs.

Each pair runs ``python -m doit build`` on a project whose build is up to date
and ``python -c "import doit"``, in alternating order (A B, then B A, ...), and
the ratio printed is the median of the per-pair ratios with its range. Like
``bench_fleet.py`` it refuses to measure when the 1-minute load average at the
start is above ``--max-load`` (1) unless ``--allow-load`` labels every figure
"under load, not a performance figure".

Load-independent measures are printed too: how many modules the no-op imports
(``sys.modules`` at exit), how many ``stat``/``open`` calls it makes (counted
with ``strace -f -c`` when strace is installed) and its CPU time.

Both commands run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed
from their environment, one warm-up run first), as on an installed project: a
shell that sets it makes Python compile every dmsbuild module on every start
(~70 ms here), a cost of that shell, not of the build.

    .venv/bin/python bench/bench_noop.py [--root PROJECT] [--pairs 15]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNDER_LOAD = "under load, not a performance figure"


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str, int]:
    """wall s, CPU s (user+sys of the child), output, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stdout + proc.stderr, proc.returncode


def modules_imported(argv: list[str], env: dict[str, str], cwd: Path) -> int | None:
    """How many modules the command has in sys.modules when it exits (python -X importtime lines: one per import)."""
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("import time:") and "|" in line) - 1


def syscalls(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, int] | None:
    """stat-like and open calls of the command (strace -f -c), None without strace."""
    if not shutil.which("strace"):
        return None
    proc = subprocess.run(["strace", "-f", "-c", "-o", "/dev/stdout", *argv], cwd=cwd, env=env, capture_output=True, text=True)
    counts: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        words = line.split()
        if len(words) >= 5 and words[-1].isidentifier() and words[3].isdigit():
            counts[words[-1]] = int(words[3])
        elif len(words) >= 4 and words[-1].isidentifier() and words[2].isdigit() and words[3].isdigit():
            counts[words[-1]] = int(words[3])
    stat = sum(v for k, v in counts.items() if "stat" in k)
    opens = sum(v for k, v in counts.items() if k in ("open", "openat", "openat2"))
    return {"stat": stat, "open": opens, "total": sum(counts.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT), help="a dmsbuild project whose `doit build` is up to date (default: this checkout)")
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--allow-load", action="store_true", help=f"measure anyway; every figure is labelled '{UNDER_LOAD}'")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    build = [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(root), "build"]
    bare = [sys.executable, "-c", "import doit"]
    load0 = os.getloadavg()
    loaded = load0[0] > args.max_load
    if loaded and not args.allow_load:
        print(f"REFUSED: the 1-minute load average is {load0[0]:.2f} (> {args.max_load:g}); no timing taken beside other "
              f"work is a performance figure. Run it on an idle machine, or add --allow-load ('{UNDER_LOAD}').",
              file=sys.stderr)
        return 3
    _, _, out, rc = run(build, env, root)  # warm-up: writes the bytecode caches; must be a no-op already
    executed = [line for line in out.splitlines() if line.startswith(".  ")]
    if rc != 0 or executed:
        print(f"the project's build is not up to date (rc {rc}; ran {', '.join(executed) or '-'}): run `doit build` "
              f"in {root} first", file=sys.stderr)
        return 2
    run(bare, env, root)
    walls: dict[str, list[float]] = {"build": [], "import doit": []}
    cpus: dict[str, list[float]] = {"build": [], "import doit": []}
    ratios = []
    for i in range(args.pairs):
        order = [("build", build), ("import doit", bare)]
        if i % 2:
            order.reverse()
        got = {}
        for name, argv in order:
            wall, cpu, out, rc = run(argv, env, root)
            if rc != 0 or any(line.startswith(".  ") for line in out.splitlines()):
                print(f"pair {i + 1}: {name} was not a no-op (rc {rc}):\n{out[-800:]}", file=sys.stderr)
                return 1
            walls[name].append(wall)
            cpus[name].append(cpu)
            got[name] = wall
        ratios.append(got["build"] / got["import doit"])
    mods = {"build": modules_imported(build, env, root), "import doit": modules_imported(bare, env, root)}
    calls = {"build": syscalls(build, env, root), "import doit": syscalls(bare, env, root)}
    label = f" ({UNDER_LOAD})" if loaded else ""
    print(f"no-op `doit build` vs `python -c \"import doit\"`: {args.pairs} pairs, order alternating; {root}; "
          f"{os.cpu_count()} CPU cores; load average at the start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}"
          f"{label}; bytecode caching on\n")
    print("| command | median wall s | range | median CPU s | modules imported | stat calls | open calls |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("build", "import doit"):
        c = calls[name] or {}
        shown = "doit build (no-op)" if name == "build" else 'python -c "import doit"'
        print(f"| {shown} | "
              f"{statistics.median(walls[name]):.3f} | {min(walls[name]):.3f}-{max(walls[name]):.3f} | "
              f"{statistics.median(cpus[name]):.3f} | {mods[name]} | {c.get('stat', '-')} | {c.get('open', '-')} |")
    print(f"\nratio build / import doit: median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}, "
          f"{len(ratios)} pairs; goal <= 1.3x){label}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
