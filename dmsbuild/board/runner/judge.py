"""The accuracy gate's verdict on one output check: which heads miss their floors, and why.

Standard library only, so it runs on the board (the Mender update module judges a release's
output check with it, board/mender/dmsbuild_release.py) as well as on the host, where
``measure/accuracy.py`` resolves the floors and re-exports these functions: one judge for the
build-time gate, the deploy's on-board gate and an OTA install. ``floors`` is anything with
``max_accuracy_drop``, ``min_cosine`` and ``min_sqnr_db``, each with ``value`` and ``source``
(``measure.accuracy.HeadFloors`` on the host; the module builds the same from the bundle's floors).
"""
from __future__ import annotations

from typing import Any


def head_failures(head: str, m: dict[str, Any], floors: Any, samples: int) -> list[str]:
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


def failures(heads: dict[str, dict[str, Any]], floors: Any, samples: int) -> list[str]:
    """Every failure line of every head, in head order."""
    return [line for head, m in heads.items() for line in head_failures(head, m, floors.for_head(head), samples)]
