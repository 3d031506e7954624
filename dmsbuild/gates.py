"""Deploy gates on a board's measured results: accuracy on the board and latency regression.

A gate failure fails that board's deploy (and, for the fleet, stops the next
rollout wave); its message names the board, the artifact and the numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

from .accuracy import AccuracyFloors, floors_for
from .accuracy import failures as head_failures_all
from .config import ProjectConfig, TargetProfile
from .results import ResultStore


@dataclass
class GateFailure:
    board: str
    artifact: str
    gate: str  # "run" | "accuracy" | "latency"
    message: str

    def __str__(self) -> str:
        return self.message


def accuracy_floors(project: ProjectConfig, profile: TargetProfile) -> AccuracyFloors:
    """The target's accuracy floors per head (``[gates]``, else the project's ``[accuracy]``): the build-time gate's."""
    return floors_for(project, profile)


def check_runs(doc: dict, *, board: str) -> list[GateFailure]:
    """An artifact that did not run on the board fails it: the release would ship a model that cannot run."""
    return [
        GateFailure(board, r["artifact"], "run", f"board {board}: artifact {r['artifact']} did not run: {r['error']}")
        for r in doc["results"] if r["error"] is not None
    ]


def check_accuracy(doc: dict, *, board: str, floors: AccuracyFloors) -> list[GateFailure]:
    """Fail where the board's output check misses a floor on any head: degenerate outputs (NaN/Inf, all zero,
    constant), top-1 agreement, mean per-sample cosine or SQNR vs the host FP32 reference (dmsbuild/accuracy.py,
    the build-time gate's judge and floors)."""
    failures = []
    for r in doc["results"]:
        verify = r.get("verify")
        if r["error"] is not None or not verify:
            continue
        for problem in head_failures_all(verify["heads"], floors, verify["samples"]):
            failures.append(GateFailure(
                board, r["artifact"], "accuracy",
                f"board {board}: artifact {r['artifact']} ({r['precision']}) fails the accuracy gate on the board's "
                f"output check vs the host FP32 reference: {problem}",
            ))
    return failures


def check_latency(doc: dict, *, board: str, target: str, store: ResultStore, max_ratio: float) -> list[GateFailure]:
    """Fail where the median latency grew beyond ``max_ratio`` x the previous release's on this board."""
    failures = []
    for r in doc["results"]:
        if r["error"] is not None or r["latency_ms"] is None:
            continue
        prev = store.previous(board=board, target=target, artifact=r["artifact"], release_id=doc["release_id"])
        if prev is None or not prev["median_ms"]:
            continue
        new, old = r["latency_ms"]["median"], prev["median_ms"]
        ratio = new / old
        if ratio > max_ratio:
            failures.append(GateFailure(
                board, r["artifact"], "latency",
                f"board {board}: artifact {r['artifact']} ({r['precision']}) fails the latency gate: median "
                f"{new:.3f} ms in release {doc['release_id']} is {ratio:.2f}x the {old:.3f} ms of release "
                f"{prev['release_id']} (allowed {max_ratio:.2f}x, gates.max_latency_regression)",
            ))
    return failures


def check_gates(doc: dict, *, board: str, target: str, store: ResultStore, accuracy: AccuracyFloors,
                max_latency_regression: float) -> list[GateFailure]:
    """Every gate for one board's results document."""
    return (
        check_runs(doc, board=board)
        + check_accuracy(doc, board=board, floors=accuracy)
        + check_latency(doc, board=board, target=target, store=store, max_ratio=max_latency_regression)
    )
