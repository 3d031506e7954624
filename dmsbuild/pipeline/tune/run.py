"""`doit tune`'s run: per board kind, search the space on one board within the budget, choose, write the
choice file and the report (the modules of this package do each step; docs/tune.md)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...convert.tuned import TUNED_NAME, Recipe, write_atomic
from ...config import TargetProfile
from ...errors import UserError, first_line
from .board import (Baseline, BoardBench, board_kind, load_average, measure_ratio, measurement_path, merge_samples,
                    provenance)
from .choice import KindResult, Row, _needs_more, confirm, contenders_of, disturbed, explain, head_to_head, write_choice
from .recipe import accuracy_summary, build_recipe, host_gate
from .report import write_report
from .space import Candidate, check_space, part_notes, part_recipes, recipes, settings_for, space_for

if TYPE_CHECKING:
    from ...config import ProjectConfig
    from ...ship.inventory import Board

def _baseline(proj: "ProjectConfig", prof: TargetProfile, build: dict[str, Any]) -> Baseline:
    entries = [a for a in build["artifacts"] if a.get("name") != TUNED_NAME]
    if not entries:
        raise UserError(f"{proj.artifacts / prof.name / 'build.json'}: no default artifact to compare with",
                        hint=f"rebuild: doit build target={prof.name}")
    a = entries[0]
    return Baseline(a["name"], proj.root / a["path"], a.get("precision") or a["name"], a["sha256"],
                    prof.bench.threads, list(a.get("providers") or ["CPUExecutionProvider"]),
                    list(a.get("provider_options") or [{}]))


#: the confirmation starts with this many times ``[tune] blocks`` (its figures are the ones the choice states, and
#: under per-process luck a narrow interval needs blocks: docs/tune.md "Controls"), and may double them once
CONFIRM_FIRST = 2
#: the least time the confirmation may take to measure longer, when the search has spent the budget (s)
CONFIRM_S = 300.0


def _control_text(m: dict[str, Any]) -> str:
    c = m.get("control")
    if not c:
        return "none (the runner timed no control)"
    return f"{c['ratio']:.2f}x ({c['ci_low']:.2f}-{c['ci_high']:.2f}){', ' + c['problem'] if c.get('problem') else ' held'}"


def _add(bench: BoardBench, name: str, cand: Candidate, path: Path, baseline: Baseline) -> None:
    """Make candidate ``cand`` (its file ``path``) known to the board bench: an ONNX candidate with the default's
    providers, another runtime's (LiteRT) with its backend's entry fields; each with its runtime settings."""
    if cand.recipe.runtime is None:
        bench.add(name, path, cand.recipe.precision, baseline.providers, baseline.provider_options,
                  cand.settings.as_dict())
        return
    from ...backends import get_backend

    entry = get_backend(cand.recipe.runtime, str(bench.prof.source)).tune_entry()
    bench.add(name, path, cand.recipe.precision, entry["providers"], entry["provider_options"],
              {"intra_op_threads": cand.settings.intra_op_threads}, runtime=cand.recipe.runtime, kind=entry["kind"])


def tune_kind(proj: "ProjectConfig", prof: TargetProfile, bench: BoardBench, facts: dict[str, Any],
              baseline: Baseline, model_sha: str, *, deadline: float, started: float, boards: list[str],
              log: Callable[[str], None] = print) -> KindResult:
    """Search one board kind on ``bench``'s board within the deadline; measurements are cached as they land."""
    from ...core.accuracy import failures as head_failures
    from ...measure.gates import accuracy_floors

    cfg = prof.tune
    space = space_for(prof)
    kind_key, kind_label = board_kind(facts, space.kind_facts)
    where = provenance(facts, bench.board.name, space.measured_as or {})
    cores = facts.get("cpu_count")
    recs = recipes(cfg) + part_recipes(space)  # the runtime dimension: other runtimes' candidates (LiteRT) too
    gate_cache: dict[Recipe, tuple[dict[str, Any], list[str], Path | None]] = {}
    rows: dict[Candidate, Row] = {}
    skipped: list[str] = []
    costs: list[float] = []

    # each measurement's own budget for measuring longer: a fair share of the whole, so the first candidates
    # do not spend what the later ones need (stage 1's recipes, stage 2's settings of two, the confirmation)
    settings = len(settings_for(recs[0], cfg, cores))
    planned = (len(recs) * settings if cfg.strategy == "exhaustive" else len(recs) + 2 * (settings - 1)) + 1
    share = max(0.0, deadline - time.monotonic()) / max(1, planned)

    def adaptive(name: str, t0: float, against: Baseline = baseline, until: float | None = None,
                 first: int = 1) -> dict[str, Any]:
        """``name`` timed against ``against`` (``first`` x the blocks); then, while its interval is wider than
        TARGET_WIDTH or its A/A control fails, as many blocks again (up to 4x in all) while ``until`` allows
        (default: its share of the budget, and the deadline). The blocks add up: a disturbed first stretch stays
        in the data (no re-drawing until a control passes)."""
        limit = min(deadline, t0 + share) if until is None else until
        samples = bench.interleave(name, against, cfg, first)
        m, rounds = measure_ratio(samples, cfg), first
        while _needs_more(m) and rounds < 4 and time.monotonic() + (time.monotonic() - t0) * 2 < limit:
            samples = merge_samples(samples, bench.interleave(name, against, cfg, rounds))
            rounds *= 2
            m = measure_ratio(samples, cfg)
        m["rounds"] = rounds
        return m

    def evaluate(cand: Candidate) -> Row:
        row = rows.get(cand)
        if row is not None:
            return row
        row = rows[cand] = Row(cand, cand.id(model_sha))
        cached = measurement_path(proj, prof.name, kind_key, row.cand_id, baseline.key)
        t0 = time.monotonic()
        estimate = sum(costs) / len(costs) if costs else 0.0
        if not cached.is_file() and t0 + estimate > deadline:
            row.skipped = f"budget: {cand.label} (about {estimate:.0f} s more would pass the budget)"
            skipped.append(cand.label)
            return row
        if cand.recipe not in gate_cache:
            try:
                path = build_recipe(proj, prof, cand.recipe, model_sha)
                ev, failed = host_gate(proj, prof, path)
            except UserError as exc:
                ev, failed, path = {}, [f"cannot be built: {first_line(exc)}"], None
            gate_cache[cand.recipe] = (ev, failed, path)
            row.accuracy, row.gate_failures = (accuracy_summary(ev) if ev else {}), failed
            if failed:
                log(f"  {cand.recipe.label}: fails the host accuracy gate, not measured: {failed[0]}")
        else:
            ev, failed, _ = gate_cache[cand.recipe]
            row.accuracy, row.gate_failures = (accuracy_summary(ev) if ev else {}), failed
        if row.gate_failures:
            return row
        if cached.is_file():
            row.measurement, row.cached = json.loads(cached.read_text()), True
            return row
        _, _, path = gate_cache[cand.recipe]
        name = f"c-{row.cand_id}"
        _add(bench, name, cand, path, baseline)  # type: ignore[arg-type]
        m = adaptive(name, t0)
        m.update({"candidate": row.cand_id, "label": cand.label, "artifact_path": str(path), "recipe": cand.recipe.as_dict(),
                  "runtime": cand.settings.as_dict(), "board": bench.board.name, "board_kind": kind_label,
                  "kind_key": kind_key, "provenance": where, "baseline": dataclasses.asdict(baseline) | {"path": str(baseline.path)},
                  "model_sha256": model_sha, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        write_atomic(cached, json.dumps(m, indent=1, sort_keys=True) + "\n")
        row.measurement = m
        costs.append(time.monotonic() - t0)
        log(f"  [{time.monotonic() - started:5.0f} s] {cand.label}: {1 / m['ratio']:.2f}x vs {baseline.precision} "
            f"(CI {1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f}) [{where}]")
        return row

    if cfg.strategy == "exhaustive":
        for rec in recs:
            for st in settings_for(rec, cfg, cores):
                evaluate(Candidate(rec, st))
    else:
        for rec in recs:  # stage 1: every recipe (of every runtime) at the first (full-thread) setting
            evaluate(Candidate(rec, settings_for(rec, cfg, cores)[0]))
        ranked = sorted((r for r in rows.values() if r.measurement and not r.gate_failures), key=lambda r: r.ratio)
        for best in ranked[:2]:  # stage 2: the runtime settings of the two fastest recipes
            for st in settings_for(best.candidate.recipe, cfg, cores)[1:]:
                evaluate(Candidate(best.candidate.recipe, st))

    floors = accuracy_floors(proj, prof)
    chosen = None
    refused, contenders = contenders_of(list(rows.values()))
    for r in rows.values():
        why = disturbed(r)
        if why and r.measurement and r.measurement["ci_high"] < 1.0 and not r.gate_failures:
            log(f"  {r.candidate.label}: not a contender: {why} (something other than the candidate moved its timing)")
    if refused:
        log(f"  {refused}")
    if len(contenders) >= 2 and time.monotonic() < deadline:  # the final: the two best head to head
        first, second = contenders[0], contenders[1]
        for r in (first, second):
            if f"c-{r.cand_id}" not in bench.entries:
                _add(bench, f"c-{r.cand_id}", r.candidate, gate_cache[r.candidate.recipe][2], baseline)  # type: ignore[arg-type]
        against = dataclasses.replace(baseline, name=f"c-{second.cand_id}")
        h = measure_ratio(bench.interleave(f"c-{first.cand_id}", against, cfg), cfg)  # first / second
        contenders = head_to_head(contenders, h)
        lead, h2h = contenders[0], (contenders[0].measurement or {})["head_to_head"]
        log(f"  head to head: {lead.candidate.label} {1 / h2h['ratio']:.2f}x {h2h['against']} "
            f"(CI {1 / h2h['ci_high']:.2f}-{1 / h2h['ci_low']:.2f})")
    for row in contenders:
        name = f"c-{row.cand_id}"
        if name not in bench.entries:  # measured by an earlier tune (cached): known for the output check
            _add(bench, name, row.candidate, gate_cache[row.candidate.recipe][2], baseline)  # type: ignore[arg-type]
        result = bench.output_check(name)
        verify = result.get("verify")
        problems = ([f"did not run: {result['error']}"] if result.get("error") else
                    head_failures(verify["heads"], floors, verify["samples"]) if verify else ["no output check ran"])
        row.board_check = "pass" if not problems else problems[0]
        if problems:
            log(f"  {row.candidate.label}: fails the board's output check, not chosen: {problems[0]}")
            continue
        # the confirmation: the one the search picked, re-timed against the default in a measurement that did not
        # pick it (its figures are what the choice states) with the run's deciding A/A control; it runs even when
        # the budget is spent (an unconfirmed choice is never written)
        t0 = time.monotonic()
        m = adaptive(name, t0, until=max(deadline, t0 + CONFIRM_S), first=CONFIRM_FIRST)
        m["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        refused = confirm(row, m)
        log(f"  [{time.monotonic() - started:5.0f} s] confirmation: {row.candidate.label}: {1 / m['ratio']:.2f}x "
            f"(CI {1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f}); A/A control {_control_text(m)}")
        if refused:
            log(f"  {refused}")
        else:
            chosen = row
        break
    if skipped:
        log(f"  budget reached: {len(skipped)} candidate(s) not measured: {'; '.join(skipped)}")
    return KindResult(kind_key, kind_label, bench.board.name, boards, where, facts, list(rows.values()), chosen,
                      explain(chosen, baseline, cfg.confidence, list(rows.values()), refused), skipped,
                      part_notes(space))


def run_tune(proj: "ProjectConfig", prof: TargetProfile, boards: list["Board"], *, budget_minutes: float | None = None,
             log: Callable[[str], None] = print) -> tuple[Path, list[KindResult]]:
    """Tune ``prof`` on ``boards`` (one board per kind measures); write the choice file and the report."""
    from ...board.release_agent import sha256_of
    from ...ship.manifest import read_build
    from ...transport import open_transport
    from ...convert.paths import Paths

    check_space(proj, prof)
    space = space_for(prof)
    _, build = read_build(proj, prof.name)
    baseline = _baseline(proj, prof, build)
    model_sha = sha256_of(Paths.of(proj).fp32, follow_symlinks=True)
    budget = (budget_minutes if budget_minutes is not None else prof.tune.budget_minutes) * 60.0
    started = time.monotonic()
    deadline = started + budget
    log(f"tune {prof.name}: default artifact {baseline.name}; budget {budget / 60:.1f} min; host load {load_average()}")
    runtimes = [space.runtime, *(p.runtime for p in space.parts if p.missing is None)]
    log(f"tune {prof.name}: runtimes {', '.join(runtimes)}")
    for note in part_notes(space):  # a runtime of the space not searched here: said, never dropped silently
        log(f"tune {prof.name}: {note}")
    results: list[KindResult] = []
    kinds: dict[str, list[str]] = {}
    opened: list[tuple[Any, BoardBench, dict[str, Any]]] = []
    try:
        for board in boards:
            transport = open_transport(board)
            bench = BoardBench(transport, board, prof, proj, build, baseline)
            try:
                transport.connect()
                facts = bench.setup()
            except UserError as exc:
                bench.close()
                transport.close()
                log(f"  board {board.name}: skipped: {first_line(exc)}")
                continue
            key, _ = board_kind(facts, space.kind_facts)
            kinds.setdefault(key, []).append(board.name)
            if len(kinds[key]) == 1:
                opened.append((transport, bench, facts))
            else:
                bench.close()
                transport.close()
        if not opened:
            raise UserError(f"tune {prof.name}: no board could be reached; nothing was measured",
                            hint=f"check the boards (doit doctor target={prof.name})")
        for transport, bench, facts in opened:
            key, label = board_kind(facts, space.kind_facts)
            log(f"tune {prof.name}: board kind {label}: measuring on {bench.board.name} "
                f"(also for {', '.join(kinds[key][1:]) or 'no other board'})")
            results.append(tune_kind(proj, prof, bench, facts, baseline, model_sha, deadline=deadline,
                                     started=started, boards=kinds[key], log=log))
    finally:
        for transport, bench, _ in opened:
            bench.close()
            transport.close()
    model_file = str((build.get("model") or {}).get("file") or "model")
    path = write_choice(proj, prof, results, baseline, model_sha, model_file)
    report = write_report(proj, prof, results, baseline, load_average())
    for res in results:
        log(f"tune {prof.name}: {res.kind_label}: {res.sentence}")
    log(f"tune {prof.name}: choice written to {path} (review and commit it); report {report}; "
        f"{time.monotonic() - started:.0f} s of a {budget / 60:.1f} min budget")
    return path, results


__all__ = ["run_tune", "tune_kind"]
