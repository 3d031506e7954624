"""Running vendor command-line tools (SNPE SDK, trtexec on the host) and shared result helpers.

Every SDK command goes through :func:`run_tool`: an argument list (never a
shell string), its full stdout/stderr logged under ``artifacts/<target>/logs/``,
and a failure raised as a ``UserError`` whose first line names the tool and the
log, followed by the tail of stderr. Standard library only, so backends can
import it at no start-up cost.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import UserError

#: keys of the latency statistics dict (CONTRACTS §3)
STAT_KEYS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")


@dataclass
class ToolResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    log: Path
    seconds: float


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_tool(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_dir: Path,
    step: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> ToolResult:
    """Run one SDK command; log it to ``<log_dir>/<step>.log``; raise UserError on failure.

    ``env`` entries are added to the current environment (an SDK needs its
    ``lib`` folder on LD_LIBRARY_PATH, for example).
    """
    args = [os.fspath(a) for a in argv]
    if not re.fullmatch(r"[\w.-]+", step):
        raise ValueError(f"log step name {step!r} is not a safe file name")  # a bug in the caller
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{step}.log"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    exe = args[0]
    if shutil.which(exe, path=full_env.get("PATH")) is None and not Path(exe).is_file():
        raise UserError(
            f"{exe}: tool not found (step {step})",
            hint="install it or put it on PATH; `doit doctor` lists what each target needs",
        )
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        _write_log(log, args, None, out, err, time.perf_counter() - start)
        raise UserError(
            f"{Path(exe).name}: timed out after {timeout:.0f} s (step {step}); log: {log}",
            hint="raise the timeout or check the tool's input",
        ) from None
    seconds = time.perf_counter() - start
    _write_log(log, args, proc.returncode, proc.stdout, proc.stderr, seconds)
    if proc.returncode != 0:
        tail = _tail(proc.stderr) or _tail(proc.stdout)
        raise UserError(
            f"{Path(exe).name}: failed with exit status {proc.returncode} (step {step}); log: {log}\n{tail}",
            hint="read the log; the command line is its first line",
        )
    return ToolResult(args, proc.returncode, proc.stdout, proc.stderr, log, seconds)


def _write_log(log: Path, argv: list[str], rc: int | None, out: str, err: str, seconds: float) -> None:
    import shlex

    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(shlex.quote(a) for a in argv) + "\n")
        fh.write(f"# exit status: {rc if rc is not None else 'timeout'}; {seconds:.2f} s\n")
        fh.write("## stdout\n" + out + ("" if out.endswith("\n") or not out else "\n"))
        fh.write("## stderr\n" + err + ("" if err.endswith("\n") or not err else "\n"))


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float] | None:
    """min/mean/median/p90/p95/p99/max/std of raw samples (nearest-rank percentiles)."""
    if not samples_ms:
        return None
    xs = sorted(float(s) for s in samples_ms)
    n = len(xs)

    def pct(p: float) -> float:
        return xs[min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))]

    mean = sum(xs) / n
    median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / n)
    return {"min": xs[0], "mean": mean, "median": median, "p90": pct(90), "p95": pct(95),
            "p99": pct(99), "max": xs[-1], "std": std}


def empty_result(artifact: str, precision: str, runtime: str, provider: str, sha256: str = "") -> dict:
    """A CONTRACTS §3 result dict with every measurement unset; parsers fill it in."""
    return {
        "artifact": artifact, "precision": precision, "runtime": runtime, "provider": provider,
        "sha256": sha256, "warmup": None, "iterations": None,
        "latency_ms": None, "samples_ms": [], "throughput_ips": None, "load_ms": None,
        "first_inference_ms": None, "peak_rss_mb": None, "gpu": None, "verify": None, "error": None,
    }
