"""`doit tune`'s report: ``artifacts/tune/<target>/report.md`` (every candidate, the chosen one marked), a Pareto
plot per board kind, and ``tune.json`` (every row, for `doit report` and tests)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ...convert.tuned import write_atomic
from ...config import TargetProfile
from .board import Baseline, tune_dir
from .choice import KindResult, Row, disturbed

if TYPE_CHECKING:
    from ...config import ProjectConfig

def _acc_metric(row: Row) -> tuple[float | None, str]:
    a = row.accuracy.get("min_top1_agreement")
    if a is not None:
        return 100 * a, "top-1 agreement with FP32, worst head (%)"
    return row.accuracy.get("min_cosine"), "cosine vs FP32, worst head"


def _control_cell(row: Row) -> str:
    """The candidate's A/A control in the table: its interval, and whether it held (a control excluding 1.00
    drops the candidate: ``choice.disturbed``); for the chosen one, the confirmation's."""
    c = (row.measurement or {}).get("control")
    if not c:
        return "-"
    verdict = "excludes 1.00: not a contender" if disturbed(row) else ("held" if not c.get("problem") else "wide")
    return f"{c['ci_low']:.2f}-{c['ci_high']:.2f} {verdict}"


def write_report(proj: "ProjectConfig", prof: TargetProfile, results: list[KindResult], baseline: Baseline,
                 load: str) -> Path:
    """artifacts/tune/<target>/report.md (+ pareto-<kind>.png): every candidate, the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tune_dir(proj, prof.name)
    lines = [f"# doit tune: target {prof.name}", "",
             f"Default artifact: {baseline.name} ({baseline.precision}, {baseline.threads or 'default'} threads). "
             f"Ratios are interleaved with it on the board (alternating blocks, bootstrap CI). Host load: {load}.", ""]
    for res in results:
        measured = sorted((r for r in res.rows if r.measurement), key=lambda r: r.ratio)
        lines += [f"## {res.kind_label}", "", f"Measured on: {res.provenance}; boards of this kind: {', '.join(res.boards)}.",
                  "", f"**Choice:** {res.sentence}.", "",
                  "| # | candidate | runtime | speed-up vs default | CI | A/A control | accuracy | host gate | board check | cached |",
                  "|---:|---|---|---:|---|---|---|---|---|---|"]
        for i, r in enumerate(measured[:10], 1):
            m = r.measurement or {}
            metric, _ = _acc_metric(r)
            retimed = " (re-timed after the search)" if m.get("search") else ""
            lines.append(f"| {i} | {r.candidate.label}{' **(chosen)**' if r is res.chosen else ''}{retimed} | "
                         f"{r.candidate.recipe.runtime or prof.runtime} | {r.speedup:.2f}x | "
                         f"{1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f} | {_control_cell(r)} | "
                         f"{'n/a' if metric is None else format(metric, '.3g')} | "
                         f"{'pass' if not r.gate_failures else 'FAIL'} | {r.board_check or '-'} | {'yes' if r.cached else 'no'} |")
        failed = [r for r in res.rows if r.gate_failures and r.candidate.settings == res.rows[0].candidate.settings]
        if failed:
            lines += ["", "Not measured (host accuracy gate): " + "; ".join(f"{r.candidate.recipe.label}: {r.gate_failures[0]}"
                                                                            for r in failed)]
        if res.skipped:
            lines += ["", f"Not measured (budget): {'; '.join(res.skipped)}"]
        for note in res.not_searched:
            lines += ["", f"Not searched: {note}"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in res.rows:
            metric, name = _acc_metric(r)
            if r.measurement is None or metric is None:
                continue
            ax.scatter([metric], [r.speedup], color="tab:red" if r is res.chosen else "tab:blue",
                       marker="*" if r is res.chosen else "o", s=160 if r is res.chosen else 30, zorder=3)
            m = r.measurement
            ax.plot([metric, metric], [1 / m["ci_high"], 1 / m["ci_low"]], color="grey", lw=0.8)
            ax.annotate(r.candidate.label, (metric, r.speedup), fontsize=6)
        ax.axhline(1.0, color="black", lw=0.6, ls="--")
        ax.set_xlabel(_acc_metric(res.rows[0])[1] if res.rows else "accuracy")
        ax.set_ylabel(f"speed-up vs default {baseline.precision} (interleaved, CI)")
        ax.set_title(f"{prof.name}: {res.kind_label}\n{res.provenance}", fontsize=8)
        fig.tight_layout()
        png = out / f"pareto-{res.kind_key}.png"
        tmp = png.with_name(f".{png.name}.tmp")
        fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        os.replace(tmp, png)
        lines += ["", f"![Pareto plot: {res.kind_label}; {res.provenance}]({png.name})", ""]
    path = out / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    write_atomic(out / "tune.json", json.dumps({"target": prof.name, "load": load, "results": [
        {"kind": r.kind_label, "kind_key": r.kind_key, "board": r.board, "provenance": r.provenance,
         "sentence": r.sentence, "chosen": r.chosen.cand_id if r.chosen else None, "skipped": r.skipped,
         "not_searched": r.not_searched,
         "rows": [x.as_dict() for x in r.rows]} for r in results]}, indent=1) + "\n")
    return path


__all__ = ["write_report"]
