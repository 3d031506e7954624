"""Deploy gates on a board's measured results: accuracy on the board and latency regression.

A gate failure names the board, the artifact and the numbers; ``verdict.verdict_of``
turns the failures (and what passed) into the board's one ``Verdict``, which the
rollout's health gate, the reports and the JSON read without judging again: a
failed verdict fails that board's deploy (and, for the fleet, stops the next wave).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.accuracy import AccuracyFloors, floors_for
from ..core.accuracy import failures as head_failures_all
from ..config import ProjectConfig, TargetProfile
from ..core.provenance import label, lineage, model_label
from ..core.results import ResultStore


@dataclass
class GateFailure:
    board: str
    artifact: str
    gate: str  # "run" | "accuracy" | "latency"
    message: str
    #: latency: {"ratio", "median_ms", "previous_ms", "previous_release", "lineage", "source"}
    detail: dict[str, Any] = field(default_factory=dict)

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
    constant), top-1 agreement, mean per-sample cosine or SQNR vs the host FP32 reference (dmsbuild/core/accuracy.py,
    the build-time gate's judge and floors)."""
    failures = []
    for r in doc["results"]:
        verify = r.get("verify")
        if r["error"] is not None or not verify:
            continue
        # the board reports heads by safe id; floors and messages use the user's tensor names (floors.name_of)
        heads = {floors.name_of(key): m for key, m in verify["heads"].items()}
        for problem in head_failures_all(heads, floors, verify["samples"]):
            failures.append(GateFailure(
                board, r["artifact"], "accuracy",
                f"board {board}: artifact {r['artifact']} ({r['precision']}) fails the accuracy gate on the board's "
                f"output check vs the host FP32 reference: {problem}",
            ))
    return failures


def check_latency(doc: dict, *, board: str, target: str, store: ResultStore, max_ratio: float,
                  notes: list[str] | None = None, compared: dict[str, dict] | None = None) -> list[GateFailure]:
    """Fail where the median latency grew beyond ``max_ratio`` x the previous release's of the same lineage.

    Only earlier results of the same lineage count (board, target, model
    content, precision, recipe: ``provenance.lineage``): a new model, or a
    new recipe, starts a new baseline and ``notes`` says so instead of
    comparing it with another model's numbers. Runs taken in a different
    power mode or under throttling (``board_state.incomparable``) are not
    compared either, and ``notes`` says why. A failure here is a candidate:
    ``regression.confirm`` re-measures it before a release is rolled back.
    ``compared`` gets artifact -> {median_ms, previous_ms, ratio, previous_release}
    for every pair that was compared.
    """
    from .board_state import incomparable

    failures = []
    model = doc.get("model")
    for r in doc["results"]:
        if r["error"] is not None or r["latency_ms"] is None or r["latency_ms"].get("median") is None:
            continue
        lin = lineage(board=board, target=target, model_sha256=(model or {}).get("sha256"), result=r)
        prev = store.previous(board=board, target=target, artifact=r["artifact"], release_id=doc["release_id"],
                              lineage=lin)
        what = f"board {board}: artifact {r['artifact']} ({r['precision']})"
        if prev is None or not prev["median_ms"]:
            if notes is not None:
                notes.append(f"{what} of {model_label(model)}: new baseline (lineage {lin}: no earlier release of this model, precision "
                             "and recipe on this board); the latency gate starts comparing from this run")
            continue
        why_not = incomparable(prev.get("state"), doc.get("state"))
        if why_not:
            if notes is not None:
                notes.append(f"{what}: latency not compared with release {prev['release_id']}: {why_not}")
            continue
        new, old = r["latency_ms"]["median"], prev["median_ms"]
        ratio = new / old
        if compared is not None:
            compared[r["artifact"]] = {"median_ms": new, "previous_ms": old, "ratio": ratio,
                                       "previous_release": prev["release_id"]}
        if ratio > max_ratio:
            source = f" [{label(r['source'], short=True)}]" if r.get("source") else ""
            failures.append(GateFailure(
                board, r["artifact"], "latency",
                f"{what} fails the latency gate: median {new:.3f} ms{source} in release {doc['release_id']} is "
                f"{ratio:.2f}x the {old:.3f} ms of release {prev['release_id']} (allowed {max_ratio:.2f}x, "
                f"gates.max_latency_regression; same lineage: {model_label(model)}, precision and recipe)",
                detail={"ratio": ratio, "median_ms": new, "previous_ms": old, "previous_release": prev["release_id"],
                        "lineage": lin, "source": r.get("source")},
            ))
    return failures


def check_gates(doc: dict, *, board: str, target: str, store: ResultStore, accuracy: AccuracyFloors,
                max_latency_regression: float, notes: list[str] | None = None,
                compared: dict[str, dict] | None = None) -> list[GateFailure]:
    """Every gate for one board's results document (``notes``: what the latency gate did not compare, and why)."""
    return (
        check_runs(doc, board=board)
        + check_accuracy(doc, board=board, floors=accuracy)
        + check_latency(doc, board=board, target=target, store=store, max_ratio=max_latency_regression, notes=notes,
                        compared=compared)
    )
