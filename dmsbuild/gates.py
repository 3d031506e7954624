"""Deploy gates on a board's measured results: accuracy on the board and latency regression.

A gate failure fails that board's deploy (and, for the fleet, stops the next
rollout wave); its message names the board, the artifact and the numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def accuracy_threshold(project: ProjectConfig, profile: TargetProfile) -> float:
    """The target's own gates.max_accuracy_drop, else the project's accuracy.max_accuracy_drop."""
    if profile.gates.max_accuracy_drop is not None:
        return profile.gates.max_accuracy_drop
    return project.accuracy.max_accuracy_drop


def check_runs(doc: dict, *, board: str) -> list[GateFailure]:
    """An artifact that did not run on the board fails it: the release would ship a model that cannot run."""
    return [
        GateFailure(board, r["artifact"], "run", f"board {board}: artifact {r['artifact']} did not run: {r['error']}")
        for r in doc["results"] if r["error"] is not None
    ]


def check_accuracy(doc: dict, *, board: str, max_drop: float) -> list[GateFailure]:
    """Fail where the board's top-1 agreement with the host FP32 reference dropped more than allowed."""
    failures = []
    for r in doc["results"]:
        verify = r.get("verify")
        if r["error"] is not None or not verify or verify.get("min_top1_agreement") is None:
            continue
        heads = {h: m["top1_agreement"] for h, m in verify["heads"].items() if m.get("top1_agreement") is not None}
        worst = min(heads, key=heads.get)
        drop = 1.0 - heads[worst]
        if drop > max_drop + 1e-9:
            failures.append(GateFailure(
                board, r["artifact"], "accuracy",
                f"board {board}: artifact {r['artifact']} ({r['precision']}) fails the accuracy gate: "
                f"top-1 agreement with the host FP32 reference on head '{worst}' is {heads[worst]:.1%} "
                f"over {verify['samples']} samples, a drop of {drop:.1%} > allowed {max_drop:.1%} "
                "(gates.max_accuracy_drop, else accuracy.max_accuracy_drop)",
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


def check_gates(doc: dict, *, board: str, target: str, store: ResultStore, max_accuracy_drop: float,
                max_latency_regression: float) -> list[GateFailure]:
    """Every gate for one board's results document."""
    return (
        check_runs(doc, board=board)
        + check_accuracy(doc, board=board, max_drop=max_accuracy_drop)
        + check_latency(doc, board=board, target=target, store=store, max_ratio=max_latency_regression)
    )
