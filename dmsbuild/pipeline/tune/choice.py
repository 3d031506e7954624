"""`doit tune`'s choice: which measured candidate may be chosen, the sentence that explains it, and the
choice file it is written to (``targets/<target>.tuned.toml``, format in ``dmsbuild.convert.tuned``).

A candidate is chosen only when the whole CI of its latency ratio against the default is below 1, it passed
the host accuracy gate, its own A/A control did not exclude 1.00, (``run.tune_kind``) the board's own output check
passed, and a second measurement after the search (the confirmation, with its own A/A control) confirmed it.

Why one control per candidate does not refuse the whole run: a tune measures about eight candidates, each with
its A/A control at 95 %; on a quiet board one of eight excludes 1.00 by chance about a third of the time
(1 - 0.95^8), so "any control failed: refuse" refuses most quiet tunes sooner or later. A candidate whose
control excluded 1.00 is dropped (its own measurement was disturbed) and the run's verdict on the board's noise
is the confirmation's control: one test, at the stated confidence and width (docs/tune.md, "Controls").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...convert.tuned import write_tuned
from ...config import TargetProfile
from .board import Baseline
from .space import Candidate

if TYPE_CHECKING:
    from ...config import ProjectConfig
    from ...measure.regression import Control

@dataclass
class Row:
    """One candidate on one board kind: its recipe, settings, host gate and (if measured) its ratio."""

    candidate: Candidate
    cand_id: str
    gate_failures: list[str] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    measurement: dict[str, Any] | None = None
    cached: bool = False
    skipped: str | None = None
    board_check: str | None = None  # None: not run; "pass" or the failure line

    @property
    def ratio(self) -> float | None:
        return self.measurement["ratio"] if self.measurement else None

    @property
    def speedup(self) -> float | None:
        return 1.0 / self.ratio if self.ratio else None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.cand_id, "label": self.candidate.label, "recipe": self.candidate.recipe.as_dict(),
                "runtime": self.candidate.settings.as_dict(), "gate_failures": self.gate_failures,
                "accuracy": self.accuracy, "measurement": self.measurement, "cached": self.cached,
                "skipped": self.skipped, "board_check": self.board_check}


def faster_and_passing(rows: list[Row]) -> list[Row]:
    """The candidates that may be chosen, fastest first: the whole CI of the latency ratio (candidate / default)
    below 1 (so the speed-up's CI lower bound is above 1) and the host accuracy gate passed."""
    ok = [r for r in rows if r.measurement and r.measurement["ci_high"] < 1.0 and not r.gate_failures]
    return sorted(ok, key=lambda r: r.ratio)


#: a candidate is measured longer (2x, then 4x, within the budget) until its speed-up interval is at most this
#: wide relative to its median, and its A/A control holds
TARGET_WIDTH = 0.10


def _needs_more(m: dict[str, Any]) -> bool:
    control = m.get("control") or {}
    return bool(control.get("problem")) or (m["ci_high"] - m["ci_low"]) / m["ratio"] > TARGET_WIDTH


def _control(c: dict[str, Any]) -> "Control":
    from ...measure.regression import Control

    return Control(c["ratio"], c["ci_low"], c["ci_high"], c.get("loadavg"), c["max_width"])


def disturbed(row: Row) -> str | None:
    """Why a measured candidate's own A/A control disqualifies it (its interval excludes 1.00: that measurement
    was biased by something other than the candidate), else None. A control that is only wide does not: the
    candidate's own interval carries that noise, and the confirmation's control judges the board."""
    c = (row.measurement or {}).get("control")
    if c and not c["ci_low"] <= 1.0 <= c["ci_high"]:
        return f"its A/A control came out {c['ratio']:.2f}x, {c['ci_low']:.2f}-{c['ci_high']:.2f}, excluding 1.00"
    return None


def noisy_refusal(rows: list[Row]) -> str | None:
    """The refusal line when no candidate is left to choose and one that would have been (faster with its whole
    CI, accuracy gate passed) was dropped only because its A/A control excluded 1.00: then the board's noise,
    not the candidates, is why the default stays. Else None."""
    if faster_and_passing([r for r in rows if not disturbed(r)]):
        return None
    for r in faster_and_passing(rows):
        return _control(r.measurement["control"]).refusal("choose")  # type: ignore[index]
    return None


def confirmation_refusal(m: dict[str, Any]) -> str | None:
    """The refusal line when the confirmation's A/A control failed (excludes 1.00, or wider than its stated
    width) after measuring longer: the board was too noisy to confirm a choice. Else None."""
    c = m.get("control")
    return _control(c).refusal("choose") if c and c.get("problem") else None


def contenders_of(rows: list[Row]) -> tuple[str | None, list[Row]]:
    """(None, the candidates that may be chosen, fastest first: faster with their whole CI, accuracy gate passed,
    own A/A control not excluding 1.00); (the refusal line, []) when none is left because of their controls."""
    refused = noisy_refusal(rows)
    return refused, ([] if refused else faster_and_passing([r for r in rows if not disturbed(r)]))


def confirm(row: Row, m: dict[str, Any]) -> str | None:
    """Record ``m``, the chosen candidate re-timed against the default after the search, as its measurement
    (the search's stays under ``search``): the choice's figures come from a measurement that did not select it,
    so picking the best of several noisy intervals does not inflate them. The reason it is not chosen, else None."""
    search = {k: v for k, v in (row.measurement or {}).items() if k not in ("search", "head_to_head")}
    row.measurement = {**(row.measurement or {}), **m, "search": search}
    refused = confirmation_refusal(m)
    if refused:
        return refused
    if m["ci_high"] >= 1.0:
        return (f"{row.candidate.label}: not confirmed: re-timed after the search it came out "
                f"{1 / m['ratio']:.2f}x (CI {1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f}), not faster with "
                f"{m['confidence']:.0%} confidence")
    return None


def head_to_head(contenders: list[Row], h: dict[str, Any]) -> list[Row]:
    """The final: ``h`` is the first contender timed against the second (ratio first / second with its CI).
    The runner-up leads when it is faster with its whole CI; the leader's measurement keeps the duel."""
    first, second, rest = contenders[0], contenders[1], contenders[2:]
    if h["ci_low"] > 1.0:
        first, second = second, first
        h = {**h, "ratio": 1 / h["ratio"], "ci_low": 1 / h["ci_high"], "ci_high": 1 / h["ci_low"]}
    first.measurement = {**(first.measurement or {}), "head_to_head": {
        "against": second.candidate.label, "ratio": h["ratio"], "ci_low": h["ci_low"], "ci_high": h["ci_high"]}}
    return [first, second, *rest]


def best_fp32(rows: list[Row]) -> Row | None:
    """The fastest measured FP32 setting (threads, graph level): how much of a speed-up is INT8, how much threads."""
    fp32 = [r for r in rows if r.measurement and r.candidate.recipe.precision == "fp32" and not r.gate_failures]
    return min(fp32, key=lambda r: r.ratio) if fp32 else None


def explain(row: Row | None, baseline: Baseline, cfg_conf: float, rows: list[Row] | None = None,
            refused: str | None = None) -> str:
    """The choice in one sentence: what the interval supports ("at least 1.12x faster, 95 % CI 1.12-1.31,
    median 1.21x") against the default, and against the best FP32 setting. ``refused``: why nothing is chosen
    (the board too noisy, or the leader not confirmed)."""
    if refused:
        return f"{refused}: nothing chosen, the default stays"
    if row is None:
        return f"no candidate was faster than the default {baseline.precision} artifact with {cfg_conf:.0%} confidence " \
               "and passed the accuracy gate: the default stays"
    m = row.measurement or {}
    agreement = row.accuracy.get("min_top1_agreement")
    acc = f"agreement {100 * agreement:.1f}%" if agreement is not None else \
        f"cosine {row.accuracy.get('min_cosine') or 0:.4f}"
    # name the default's threads: on an oversubscribed board most of a "speed-up" can be the thread count alone
    threads = f"{baseline.threads} thread{'s' if baseline.threads != 1 else ''}" if baseline.threads else "default threads"
    conf = f"{m.get('confidence', cfg_conf) * 100:.0f} %"
    text = (f"{row.candidate.label}: at least {1 / m['ci_high']:.2f}x faster than the default ({baseline.precision}, "
            f"{threads}), {conf} CI {1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f}, median {1 / m['ratio']:.2f}x")
    fp32 = best_fp32(rows or [])
    search = m.get("search")
    if fp32 is not None and fp32 is not row:
        # both figures from the search (the chosen one's confirmation would compare a re-timing with a figure
        # that picking the best flattered)
        own = search["ratio"] if search else row.ratio
        text += (f"; {fp32.ratio / own:.2f}x the best FP32 setting ({fp32.candidate.label}, "
                 f"{1 / fp32.ratio:.2f}x the default), median against median in the search")
    if search:
        text += f"; confirmed after the search, which measured {1 / search['ratio']:.2f}x"
    h2h = m.get("head_to_head")
    if h2h:
        text += (f"; head to head against {h2h['against']}: {1 / h2h['ratio']:.2f}x "
                 f"(CI {1 / h2h['ci_high']:.2f}-{1 / h2h['ci_low']:.2f})")
    return f"{text}, {acc}"


@dataclass
class KindResult:
    kind_key: str
    kind_label: str
    board: str
    boards: list[str]
    provenance: str
    facts: dict[str, Any]
    rows: list[Row]
    chosen: Row | None
    sentence: str
    skipped: list[str]
    #: runtimes of the space not searched here, one line each (``space.part_notes``: e.g. the litert extra missing)
    not_searched: list[str] = field(default_factory=list)


def write_choice(proj: "ProjectConfig", prof: TargetProfile, results: list[KindResult], baseline: Baseline,
                 model_sha: str, model_file: str) -> Path:
    """Write the reviewable choice file (one [[choice]] per board kind) atomically (``build.tuned.write_tuned``)."""
    header = [f"Written by `doit tune target={prof.name}`: review, commit, and `doit build`/`doit deploy` ship it.",
              "Re-run `doit tune` after changing the model: a file tuned for another model is refused."]
    choices = []
    for res in results:
        c = res.chosen
        m = c.measurement if c else None
        entry: dict[str, Any] = {"board_kind": res.kind_label, "kind_key": res.kind_key, "boards": res.boards,
                                 "provenance": res.provenance, "sentence": res.sentence, "keep_default": c is None}
        if c is not None and m is not None:
            entry |= {"candidate": c.cand_id, "recipe": c.candidate.recipe.as_dict(),
                      "runtime": c.candidate.settings.as_dict(), "speedup": 1 / m["ratio"],
                      "speedup_ci": [1 / m["ci_high"], 1 / m["ci_low"]], "confidence": m["confidence"],
                      "accuracy": {k: v for k, v in c.accuracy.items() if v is not None},
                      "board_check": c.board_check, "measured_at": m["measured_at"]}
        choices.append(entry)
    return write_tuned(proj, prof.name, header, {"model": model_file, "model_sha256": model_sha,
                                                 "default_artifact": baseline.name}, choices)


__all__ = ["KindResult", "Row", "best_fp32", "confirm", "confirmation_refusal", "contenders_of", "disturbed", "explain",
           "faster_and_passing", "head_to_head", "noisy_refusal", "write_choice"]
