"""One board's verdict on one release: the single judgement every consumer reads.

Measure judges a board's benchmark once (``gates.check_gates``, the
interleaved re-measure of ``regression.confirm``) and ``verdict_of`` turns
what it found into one typed ``Verdict``: each check with its name, the
figures it judged, where they came from (``provenance.SOURCES``) and whether
it passed, plus the overall pass/fail and a one-line reason.

The rollout's health gate (``pipeline/deploy.health_gate``, and
``ship/fleet.standard_gate`` when an outcome carries one), the rollout report
(``details["verdict"]``), ``doit bench``'s lines and the benchmark report read
it and never judge the figures again: a check's ``ok`` is the answer, its
``figures`` are there to be shown. ``tests/test_verdict.py`` fails if a
consumer re-judges (a verdict whose figures would fail a re-judgement is
still honoured, and the other way round).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bench import BenchResult

#: the checks a verdict can hold, in the order a reason names them
CHECKS = ("benchmark", "run", "accuracy", "output", "latency")
#: failed checks that mean "the release's outputs are wrong" (the rollout report's output_check = false)
OUTPUT_CHECKS = ("benchmark", "run", "accuracy")


@dataclass(frozen=True)
class Check:
    """One thing measure judged about one board's release (per artifact where it concerns one)."""

    #: benchmark (it ran and its document was accepted) | run (the artifact ran) | accuracy (the board's output
    #: check vs the host FP32 reference) | output (an output check exists where one is required) | latency
    name: str
    ok: bool
    #: one line for a person: what was found (a failure names the board, the artifact and the numbers)
    message: str
    artifact: str | None = None
    #: what was judged: latency {median_ms, previous_ms, ratio, allowed, previous_release, lineage[, decision]},
    #: accuracy {samples, heads}; shown by consumers, never judged again
    figures: dict[str, Any] = field(default_factory=dict)
    #: where the figures came from (a ``provenance.SOURCES`` key); None: not measured (e.g. the benchmark did not run)
    source: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "artifact": self.artifact, "message": self.message,
                "figures": self.figures, "source": self.source}


@dataclass(frozen=True)
class Verdict:
    """Measure's judgement of one release on one board: the rollout, the reports and the JSON read this."""

    board: str
    release_id: str | None
    checks: tuple[Check, ...]
    #: the results store's run this verdict judged; None: nothing was stored (the benchmark did not run)
    run_id: str | None = None
    #: what the latency gate did not compare (new baseline, power mode changed...) and why
    notes: tuple[str, ...] = ()
    #: the interleaved re-measures (``regression.Decision.as_dict()``), confirmed or within noise
    decisions: tuple[dict, ...] = ()
    #: artifact -> (median | mean, ms) of this run, and artifact -> its figures' source (for the report lines)
    latencies: dict[str, tuple[str, float]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every check passed (the overall verdict)."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def messages(self) -> list[str]:
        """One line per failed check, in the order measure found them."""
        return [c.message for c in self.failed]

    @property
    def reason(self) -> str:
        """One line: the first failed check (and how many more), or what passed."""
        failed = self.failed
        if failed:
            more = f" (+{len(failed) - 1} more in the rollout report)" if len(failed) > 1 else ""
            return failed[0].message + more
        names = ", ".join(dict.fromkeys(c.name for c in self.checks)) or "nothing judged"
        return f"passed: {len(self.checks)} check(s) ({names})"

    @property
    def output_check(self) -> bool | None:
        """False: an artifact did not run or failed the board's output check (or the benchmark did not run);
        True: outputs were checked and passed; None: no output was checked."""
        if any(not c.ok for c in self.checks if c.name in OUTPUT_CHECKS):
            return False
        return True if any(c.name == "accuracy" for c in self.checks) else None

    @property
    def worst_latency(self) -> Check | None:
        """The latency check with the largest ratio to the previous release, leaving out the ones the
        interleaved re-measure judged within noise (their first ratio is not the board's)."""
        pairs = [c for c in self.checks if c.name == "latency" and c.figures.get("ratio") is not None
                 and (c.figures.get("decision") or {}).get("confirmed") is not False]
        return max(pairs, key=lambda c: c.figures["ratio"], default=None)

    def as_json(self) -> dict[str, Any]:
        """What the rollout report and the results JSON carry (``details["verdict"]``)."""
        return {"board": self.board, "release_id": self.release_id, "ok": self.ok, "reason": self.reason,
                "run_id": self.run_id, "checks": [c.as_json() for c in self.checks], "notes": list(self.notes),
                "decisions": list(self.decisions)}


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


def verdict_of(result: "BenchResult", *, release_id: str | None = None, require_output_check: bool = False,
               max_latency_regression: float | None = None) -> Verdict:
    """The one verdict on a board's benchmark (``bench.bench_boards``' result, gates already applied).

    Every failure the gates kept becomes a failed check with its figures; what
    passed becomes a passed check (every artifact that ran, every output check,
    every latency comparison the gates made). ``require_output_check``
    (``bench.verify_samples > 0``): a run where no artifact's outputs were
    checked fails the ``output`` check. ``max_latency_regression`` is recorded
    as the latency checks' ``allowed`` figure.
    """
    board = result.board
    doc = result.doc
    if doc is None:  # the benchmark did not run (or its output was refused)
        why = _first_line(result.error or "") or f"board {board}: the benchmark did not run"
        return Verdict(board, release_id, (Check("benchmark", False, why),), run_id=result.run_id)
    release_id = release_id or doc.get("release_id")
    results = doc["results"]
    by_artifact = {r["artifact"]: r for r in results}
    compared = result.compared or {}
    decisions = {d["artifact"]: d for d in result.decisions}
    checks: list[Check] = []
    failed: set[tuple[str, str]] = set()
    for f in result.failures:  # measure's order: runs, accuracy, latency
        r = by_artifact.get(f.artifact, {})
        figures: dict[str, Any] = {}
        if f.gate == "latency":
            figures = {k: f.detail[k] for k in ("median_ms", "previous_ms", "ratio", "previous_release", "lineage")
                       if k in f.detail}
            if max_latency_regression is not None:
                figures["allowed"] = max_latency_regression
            if f.detail.get("decision") is not None:
                figures["decision"] = f.detail["decision"]
        elif f.gate == "accuracy" and r.get("verify"):
            figures = {"samples": r["verify"].get("samples"), "heads": r["verify"].get("heads")}
        checks.append(Check(f.gate, False, _first_line(f.message), f.artifact, figures,
                            f.detail.get("source") or r.get("source")))
        failed.add((f.gate, f.artifact))
    for r in results:
        a, source = r["artifact"], r.get("source")
        what = f"board {board}: artifact {a} ({r.get('precision')})"
        if r["error"] is None and ("run", a) not in failed:
            checks.append(Check("run", True, f"{what} ran", a, {}, source))
        verify = r.get("verify")
        if r["error"] is None and verify and ("accuracy", a) not in failed:
            checks.append(Check("accuracy", True, f"{what} passes the output check vs the host FP32 reference over "
                                f"{verify.get('samples')} samples", a,
                                {"samples": verify.get("samples"), "heads": verify.get("heads")}, source))
        pair = compared.get(a)
        if pair is not None and ("latency", a) not in failed:
            figures = {"median_ms": pair["median_ms"], "previous_ms": pair["previous_ms"], "ratio": pair["ratio"],
                       "previous_release": pair.get("previous_release")}
            if max_latency_regression is not None:
                figures["allowed"] = max_latency_regression
            if a in decisions:
                figures["decision"] = decisions[a]
            said = f"; {decisions[a]['sentence']}" if a in decisions else ""
            checks.append(Check("latency", True, f"{what}: median {pair['median_ms']:.3f} ms is {pair['ratio']:.2f}x "
                                f"release {pair.get('previous_release')}'s{said}", a, figures, source))
    if require_output_check and not any(c.name in ("run", "accuracy") and not c.ok for c in checks) \
            and not any(c.name == "accuracy" for c in checks):
        checks.append(Check("output", False, f"board {board}: no output check result: no artifact's outputs were "
                            "checked against the host FP32 reference (bench.verify_samples > 0 asks for one)"))
    return Verdict(board, release_id, tuple(checks), run_id=result.run_id, notes=tuple(result.notes),
                   decisions=tuple(result.decisions), latencies=_latencies(results),
                   sources={r["artifact"]: r["source"] for r in results if r.get("source")})


def _latencies(results: list[dict]) -> dict[str, tuple[str, float]]:
    out: dict[str, tuple[str, float]] = {}
    for r in results:
        lat = r.get("latency_ms") or {}
        if r.get("error") is None and lat.get("median") is not None:
            out[r["artifact"]] = ("median", lat["median"])
        elif r.get("error") is None and lat.get("mean") is not None:
            out[r["artifact"]] = ("mean", lat["mean"])
    return out


__all__ = ["CHECKS", "Check", "Verdict", "verdict_of"]
