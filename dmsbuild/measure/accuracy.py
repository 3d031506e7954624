"""The accuracy gate's floors and verdicts: which floor applies to which head, and which heads fail.

One judge for both gates: the build-time gate (``evaluate.gate``, metrics of
the host's run) and the on-board gate (``gates.check_accuracy``, the board's
``verify``). Both get their metrics from the one shared implementation,
``dmsbuild/board/runner/metrics.py``, so a head judged on the host and on the board is
judged by the same definitions and the same floors.

A floor is looked up per head, most specific first: the target's
``[gates.heads.<head>]``, the target's ``[gates]``, the project's
``[accuracy.heads.<head>]``, the project's ``[accuracy]`` (docs/accuracy.md).
Standard library only (gates.py imports this on every deploy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ProjectConfig, TargetProfile, check_head_floors

METRICS = ("max_accuracy_drop", "min_cosine", "min_sqnr_db")


@dataclass(frozen=True)
class Floor:
    """One threshold and the config field it came from (shown in every failure line)."""

    value: float
    source: str


@dataclass(frozen=True)
class HeadFloors:
    max_accuracy_drop: Floor
    min_cosine: Floor
    min_sqnr_db: Floor


@dataclass(frozen=True)
class AccuracyFloors:
    """The floors of one target, per head (heads without an override get ``default``)."""

    default: HeadFloors
    heads: dict[str, HeadFloors] = field(default_factory=dict)

    @classmethod
    def uniform(cls, max_accuracy_drop: float, min_cosine: float, min_sqnr_db: float, source: str = "given") -> "AccuracyFloors":
        """The same floors for every head (scripts and tests that have no project)."""
        return cls(HeadFloors(Floor(max_accuracy_drop, f"{source} max_accuracy_drop"), Floor(min_cosine, f"{source} min_cosine"),
                              Floor(min_sqnr_db, f"{source} min_sqnr_db")))

    def for_head(self, head: str) -> HeadFloors:
        return self.heads.get(head, self.default)

    def as_dict(self) -> dict[str, Any]:
        """{"default": {metric: value}, "heads": {head: {metric: value}}} for summary.json."""
        def plain(h: HeadFloors) -> dict[str, float]:
            return {m: getattr(h, m).value for m in METRICS}
        return {"default": plain(self.default), "heads": {k: plain(v) for k, v in self.heads.items()}}


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return str(path)


def floors_for(project: ProjectConfig, profile: TargetProfile) -> AccuracyFloors:
    """The target's floors for every head of the project; a head override naming an unknown head is a UserError."""
    check_head_floors(profile.gates.heads, project.outputs, profile.source, "gates.heads")
    proj_src, prof_src = _rel(project.source, project.root), _rel(profile.source, project.root)
    layers = [  # most specific last, so later ones win
        (project.accuracy, f"{proj_src}: accuracy."),
        (profile.gates, f"{prof_src}: gates."),
    ]

    def resolve(head: str | None) -> HeadFloors:
        chosen: dict[str, Floor] = {}
        for cfg, where in layers:
            for metric in METRICS:
                value = getattr(cfg, metric)
                if value is not None:
                    chosen[metric] = Floor(value, where + metric)
            per_head = cfg.heads.get(head) if head is not None else None
            for metric in METRICS:
                value = getattr(per_head, metric, None)
                if value is not None:
                    chosen[metric] = Floor(value, f"{where}heads.{head}.{metric}")
        return HeadFloors(**chosen)

    return AccuracyFloors(resolve(None), {h: resolve(h) for h in project.outputs.names})


def head_failures(head: str, m: dict[str, Any], floors: HeadFloors, samples: int) -> list[str]:
    """Failure lines of one head's metrics (``runner.metrics.head_metrics`` keys), each naming head and metric."""
    if m.get("degenerate"):
        return [f"head '{head}': degenerate outputs: {m['degenerate']}; no metric of this head can be trusted"]
    out = []
    agreement = m.get("top1_agreement")
    limit = floors.max_accuracy_drop
    if agreement is not None and 1.0 - agreement > limit.value + 1e-9:
        out.append(f"head '{head}': top-1 agreement with FP32 is {agreement:.1%} over {samples} samples, "
                   f"a drop of {1.0 - agreement:.1%} > allowed {limit.value:.1%} ({limit.source})")
    labelled, labelled_fp32 = (m.get("labelled") or {}).get("accuracy"), (m.get("labelled_fp32") or {}).get("accuracy")
    if labelled is not None and labelled_fp32 is not None and labelled_fp32 - labelled > limit.value + 1e-9:
        out.append(f"head '{head}': labelled accuracy is {labelled:.1%} against FP32's {labelled_fp32:.1%}, "
                   f"a drop of {labelled_fp32 - labelled:.1%} > allowed {limit.value:.1%} ({limit.source})")
    cosine, floor = m.get("cosine"), floors.min_cosine
    if cosine is None or cosine < floor.value:
        worst = m.get("cosine_min")
        shown = "missing" if cosine is None else f"{cosine:.4f}"
        detail = f"; worst sample {worst:.4f}" if worst is not None else ""
        out.append(f"head '{head}': cosine {shown} (mean per sample over {samples} samples{detail}) "
                   f"< floor {floor.value:g} ({floor.source})")
    sqnr, floor = m.get("sqnr_db"), floors.min_sqnr_db
    if sqnr is not None and sqnr < floor.value:  # None: identical outputs (infinite SQNR)
        out.append(f"head '{head}': SQNR {sqnr:.1f} dB over {samples} samples < floor {floor.value:g} dB ({floor.source})")
    return out


def failures(heads: dict[str, dict[str, Any]], floors: AccuracyFloors, samples: int) -> list[str]:
    """Every failure line of every head, in head order."""
    return [line for head, m in heads.items() for line in head_failures(head, m, floors.for_head(head), samples)]
