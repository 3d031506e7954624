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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..board.runner.judge import failures, head_failures  # the judge itself runs on boards too (board/runner/judge.py)
from ..errors import UserError
from ..names import head_keys

METRICS = ("max_accuracy_drop", "min_cosine", "min_sqnr_db")
#: the floors of what a head means (detection, segmentation, sequence; docs/accuracy.md "Outputs by kind")
KIND_METRICS = ("min_recall", "min_precision", "max_score_error", "min_mask_iou", "min_string_agreement")


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
    #: unset (scripts and tests without a project): the judge's defaults (board/runner/judge.py KIND_FLOORS)
    min_recall: Floor | None = None
    min_precision: Floor | None = None
    max_score_error: Floor | None = None
    min_mask_iou: Floor | None = None
    min_string_agreement: Floor | None = None


@dataclass(frozen=True)
class AccuracyFloors:
    """The floors of one target, per head (heads without an override get ``default``)."""

    default: HeadFloors
    heads: dict[str, HeadFloors] = field(default_factory=dict)
    #: tensor name -> safe id (``names.head_keys``): the board reports heads by safe id; floors stay keyed by
    #: the user's tensor names, and this is the one place that maps one to the other
    keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def uniform(cls, max_accuracy_drop: float, min_cosine: float, min_sqnr_db: float, source: str = "given") -> "AccuracyFloors":
        """The same floors for every head (scripts and tests that have no project)."""
        return cls(HeadFloors(Floor(max_accuracy_drop, f"{source} max_accuracy_drop"), Floor(min_cosine, f"{source} min_cosine"),
                              Floor(min_sqnr_db, f"{source} min_sqnr_db")))

    def for_head(self, head: str) -> HeadFloors:
        """The floors of ``head``, given by its tensor name or by the safe id the board reports it under."""
        return self.heads.get(self.name_of(head), self.default)

    def name_of(self, key: str) -> str:
        """The user's tensor name behind a head key (a safe id from the board, or the name itself)."""
        if key in self.heads or key in self.keys:
            return key
        return next((name for name, k in self.keys.items() if k == key), key)

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


def check_head_floors(heads: dict[str, Any], outputs: Any, source: str | Path, where: str) -> None:
    """Per-head floors name real heads; a top-1 drop only for a classification head.

    ``heads``: {head: config.HeadFloorsConfig}, ``outputs``: a config.OutputsConfig (config imports this
    module to validate ``accuracy.heads`` at load, so the types are not imported here)."""
    for head, floors in heads.items():
        if head not in outputs.names:
            raise UserError(f"{source}: field '{where}.{head}' names a head that is not in outputs.names {outputs.names}",
                            hint=f"use one of {outputs.names}, or remove [{where}.{head}]")
        kind = outputs.kinds[head].kind if head in outputs.kinds else None
        for metric, wanted in (("min_recall", "detection"), ("min_precision", "detection"),
                               ("max_score_error", "detection"), ("min_mask_iou", "segmentation"),
                               ("min_string_agreement", "sequence")):
            if getattr(floors, metric, None) is not None and kind != wanted:
                raise UserError(f"{source}: field '{where}.{head}.{metric}' is set, but '{head}' is not declared a "
                                f"{wanted} output (outputs.kinds.{head}.kind is {kind or 'unset'})",
                                hint=f"remove it, or declare [outputs.kinds.{head}] kind = \"{wanted}\"")
        seq = kind == "sequence"
        if floors.max_accuracy_drop is not None and head not in outputs.classification and not seq:
            raise UserError(f"{source}: field '{where}.{head}.max_accuracy_drop' is set, but '{head}' is not a "
                            f"classification head (outputs.classification {outputs.classification}): it has no top-1",
                            hint=f"remove it, or set min_cosine / min_sqnr_db for '{head}'")


def floors_for(project: Any, profile: Any) -> AccuracyFloors:
    """The target's floors for every head of the project; a head override naming an unknown head is a UserError.

    ``project``: a config.ProjectConfig, ``profile``: a config.TargetProfile (read by attribute: core sits
    below config, docs/architecture.md "Layers")."""
    check_head_floors(profile.gates.heads, project.outputs, profile.source, "gates.heads")
    proj_src, prof_src = _rel(project.source, project.root), _rel(profile.source, project.root)
    layers = [  # most specific last, so later ones win
        (project.accuracy, f"{proj_src}: accuracy."),
        (profile.gates, f"{prof_src}: gates."),
    ]

    def resolve(head: str | None) -> HeadFloors:
        chosen: dict[str, Floor] = {}
        for cfg, where in layers:
            for metric in METRICS + KIND_METRICS:
                value = getattr(cfg, metric)
                if value is not None:
                    chosen[metric] = Floor(value, where + metric)
            per_head = cfg.heads.get(head) if head is not None else None
            for metric in METRICS + KIND_METRICS:
                value = getattr(per_head, metric, None)
                if value is not None:
                    chosen[metric] = Floor(value, f"{where}heads.{head}.{metric}")
        return HeadFloors(**chosen)

    floors = AccuracyFloors(resolve(None), {h: resolve(h) for h in project.outputs.names},
                            head_keys(project.outputs.names))
    check_resolution(floors, project.outputs.classification, profile.bench.verify_samples,
                     f"{prof_src}: bench.verify_samples")
    return floors


def samples_needed(max_drop: float) -> int:
    """The fewest samples on which one disagreement (1/n) does not already exceed ``max_drop``."""
    return math.ceil(1.0 / max_drop - 1e-9)


def check_resolution(floors: AccuracyFloors, classification: list[str], samples: int, where: str) -> None:
    """Refuse a sample count that cannot resolve a top-1 floor: one disagreement of ``samples`` already exceeds it.

    The gate judges the same ``samples`` on the host and on the board; with 16
    samples one flipped answer is a 6.2 % drop, so a 5 % floor would fail any
    artifact that differs at all on the board while the host, scoring more
    samples, passed it. A floor of 0 (exact agreement) is resolvable by any count."""
    if samples <= 0:
        return  # no board check; the host judges every validation sample
    for head in classification:
        limit = floors.for_head(head).max_accuracy_drop
        if 0 < limit.value < 1.0 / samples - 1e-9:
            need = samples_needed(limit.value)
            raise UserError(f"{where} = {samples} cannot judge {limit.source} = {limit.value:.1%} on head '{head}': "
                            f"one disagreement of {samples} samples is already {1.0 / samples:.1%}; "
                            f"it needs at least {need} samples",
                            hint=f"set bench.verify_samples = {need} or more (the host and the board judge the same "
                                 "first samples of data.validation), or raise that floor (docs/accuracy.md)")
