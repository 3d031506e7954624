"""Board facts: what a board has (docs/CONTRACTS.md §4), gathered by one remote command (board/runner/probe.py).

Facts are read, never changed (operations live in release.py). A component
that is missing is ``null``. Versions come from package metadata and the tools'
own version output, so gathering stays quick.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..transport.base import Transport

#: the one board probe (dmsbuild/board/runner/probe.py), sent as source: no release is on the board before the
#: first deploy; inside a release it is runner/probe.py, which the runner's ``--facts`` uses
FACTS_SCRIPT = Path(importlib.util.find_spec("dmsbuild.board.runner.probe").origin).read_text(encoding="utf-8")

FACT_KEYS = ("hostname", "arch", "os", "kernel", "python", "numpy", "onnxruntime", "onnxruntime_providers",
             "onnxruntime_qnn", "tensorrt", "trtexec", "snpe", "disk_free_mb", "mem_total_mb", "litert", "edgetpu",
             # set by `python -m dmsbuild.boards up` (sshd SetEnv): this "board" is this machine standing in for one
             "emulated")


def gather(transport: Transport, python: str, root: str) -> dict[str, Any]:
    """Run the facts script on the board (one command) and parse its JSON."""
    res = transport.run([python, "-c", FACTS_SCRIPT, root], timeout=60)
    if not res.ok:
        raise UserError(
            f"board '{transport.name}': gathering facts with {python} failed (exit {res.exit_status}): {res.stderr_tail(3)}",
            hint="the board needs Python 3; set the board's 'python' in the inventory",
        )
    try:
        facts = json.loads(res.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise UserError(f"board '{transport.name}': facts command printed no JSON: {res.stdout[-200:]!r}") from None
    return {k: facts.get(k) for k in FACT_KEYS}


def _arch_family(arch: str) -> str:
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch.lower(), arch.lower())


#: non-portable artifact kinds an emulated board can still run: a QNN context on onnxruntime-qnn's x86_64 HTP simulator,
#: an Edge TPU model (the compiler double's output) on LiteRT's CPU path (runner/litert_runner.py says so per result)
SIMULATED_KINDS = {"qnn-context": "onnxruntime-qnn's HTP simulator", "edgetpu-tflite": "LiteRT's CPU path"}


def check_arch(board: str, expected: str, facts: dict[str, Any], artifacts: list[dict[str, Any]]) -> list[str]:
    """Warnings for portable artifacts on an unexpected arch; UserError for a non-portable one."""
    got = facts.get("arch") or "unknown"
    if expected == "any" or _arch_family(got) == _arch_family(expected):
        return []
    tied = [a["name"] for a in artifacts if not a.get("portable", True)]
    simulated = [a["name"] for a in artifacts if not a.get("portable", True) and a.get("kind") in SIMULATED_KINDS]
    if tied and facts.get("emulated") and simulated == tied:
        where = " / ".join(sorted({SIMULATED_KINDS[a["kind"]] for a in artifacts if a["name"] in simulated}))
        return [f"board '{board}': emulated {expected} board on {got} ({facts['emulated']}); {', '.join(tied)} "
                f"run on {where} of this machine, not on the real hardware"]
    if tied:
        raise UserError(
            f"board '{board}': arch is {got} but the target expects {expected}, and {', '.join(tied)} "
            "is tied to the board's arch/GPU (not portable)",
            hint="deploy this target only to boards of its arch, or rebuild on/for this board",
        )
    return [f"board '{board}': arch is {got}, the target expects {expected}; shipping portable artifacts anyway"]
