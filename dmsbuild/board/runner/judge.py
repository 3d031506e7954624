"""The accuracy gate's verdict on one output check: which heads miss their floors, and why.

Standard library only, so it runs on the board (the Mender update module judges a release's
output check with it, board/mender/dmsbuild_release.py) as well as on the host, where
``core/accuracy.py`` resolves the floors and re-exports these functions: one judge for the
build-time gate, the deploy's on-board gate and an OTA install. ``floors`` is anything with
``max_accuracy_drop``, ``min_cosine`` and ``min_sqnr_db``, each with ``value`` and ``source``
(``core.accuracy.HeadFloors`` on the host; the module builds the same from the bundle's floors).
"""
from __future__ import annotations

from typing import Any


class _Default(object):
    def __init__(self, value: float, name: str) -> None:
        self.value, self.source = value, "default " + name


#: the floors of the kinds' own metrics where a floors object has none (config.AccuracyConfig holds the same)
KIND_FLOORS = {"min_recall": 0.9, "min_precision": 0.9, "max_score_error": 0.1, "min_mask_iou": 0.9,
               "min_string_agreement": 0.9}
#: the one-line fix offered with a collapsed slice (a mixed-scale output quantized with one scale)
COLLAPSE_FIX = ("quantize that slice apart or keep the output head's final nodes in float: "
                "python -m dmsbuild.convert.mixed_precision (or doit tune)")


def _floor(floors: Any, name: str) -> Any:
    got = getattr(floors, name, None)
    return got if got is not None else _Default(KIND_FLOORS[name], name)


def kind_failures(head: str, m: dict[str, Any], floors: Any, samples: int) -> list[str]:
    """Failure lines of what the head means (``by_kind``) and of its declared slices (``slices``).

    A collapsed slice (every value 0 or one constant while FP32's vary) fails whatever the floors say."""
    out = []
    by, slices = m.get("by_kind") or {}, m.get("slices") or {}
    for name, s in slices.items():
        if s.get("collapsed"):
            out.append(f"head '{head}': slice '{name}' ({s.get('where', name)}) collapsed: {s['collapsed']} "
                       f"over {samples} samples; {COLLAPSE_FIX}")
            continue
        cosine, floor = s.get("cosine"), floors.min_cosine
        if cosine is not None and cosine < floor.value:
            out.append(f"head '{head}': slice '{name}' ({s.get('where', name)}) cosine {cosine:.4f} "
                       f"< floor {floor.value:g} ({floor.source})")
        sqnr, floor = s.get("sqnr_db"), floors.min_sqnr_db
        if sqnr is not None and sqnr < floor.value:
            out.append(f"head '{head}': slice '{name}' ({s.get('where', name)}) SQNR {sqnr:.1f} dB "
                       f"< floor {floor.value:g} dB ({floor.source})")
    kind = by.get("kind")
    checks = []
    if kind == "detection":
        if not by.get("reference_detections"):
            out.append(f"head '{head}': FP32 finds no detection on any of {samples} samples (score_threshold too "
                       "high for these samples?): the detector cannot be judged by its detections")
        checks = [("recall", "min_recall", by.get("recall"), "of FP32's %d detections" % (by.get("reference_detections") or 0)),
                  ("precision", "min_precision",
                   0.0 if by.get("reference_detections") and not by.get("detections") else by.get("precision"),
                   "of its %d detections" % (by.get("detections") or 0))]
        err, floor = by.get("score_error"), _floor(floors, "max_score_error")
        if err is not None and err > floor.value + 1e-12:
            out.append(f"head '{head}': mean score error of matched detections {err:.3f} > allowed {floor.value:g} "
                       f"({floor.source})")
    elif kind == "segmentation":
        checks = [("mask IoU", "min_mask_iou", by.get("mask_iou"), "mean per sample")]
    elif kind == "sequence" and by.get("string_agreement") is not None:
        checks = [("decoded-string agreement", "min_string_agreement", by.get("string_agreement"), "CTC greedy")]
    for label, name, value, detail in checks:
        floor = _floor(floors, name)
        if value is not None and value < floor.value - 1e-12:
            out.append(f"head '{head}': {label} {value:.1%} ({detail}, {samples} samples) < floor {floor.value:g} "
                       f"({floor.source})")
    return out


def head_failures(head: str, m: dict[str, Any], floors: Any, samples: int) -> list[str]:
    """Failure lines of one head's metrics (``runner.metrics.head_metrics`` keys), each naming head and metric."""
    if m.get("degenerate"):
        return [f"head '{head}': degenerate outputs: {m['degenerate']}; no metric of this head can be trusted"]
    out = kind_failures(head, m, floors, samples)
    agreement = m.get("top1_agreement")
    limit = floors.max_accuracy_drop
    if agreement is not None and 1.0 - agreement > limit.value + 1e-9:
        what = "per-step agreement" if (m.get("by_kind") or {}).get("kind") == "sequence" else "top-1 agreement"
        out.append(f"head '{head}': {what} with FP32 is {agreement:.1%} over {samples} samples, "
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


def failures(heads: dict[str, dict[str, Any]], floors: Any, samples: int) -> list[str]:
    """Every failure line of every head, in head order."""
    return [line for head, m in heads.items() for line in head_failures(head, m, floors.for_head(head), samples)]
