"""One verdict (issue 23 item 3): measure judges a board's release once; every consumer reads that verdict.

The rollout's health gate (``pipeline/deploy.health_gate``), ``fleet.standard_gate``, the rollout report's
JSON, the board's ``verdicts.json`` and the benchmark report read ``measure/verdict.Verdict`` and never judge
its figures again. These tests fail if a consumer re-judges: a verdict whose checks passed although its
figures would fail any re-judgement (3x slower than allowed) is honoured everywhere, and a verdict whose
checks failed although its figures look fine is honoured everywhere too.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path


from dmsbuild.measure.bench import BenchResult
from dmsbuild.measure.gates import GateFailure
from dmsbuild.measure.verdict import Check, Verdict, verdict_of
from dmsbuild.ship import fleet
from tests.conftest import write_build

SLOW = {"median_ms": 6.0, "previous_ms": 2.0, "ratio": 3.0, "allowed": 1.25, "previous_release": "r1"}
FINE = {"median_ms": 2.0, "previous_ms": 2.0, "ratio": 1.0, "allowed": 1.25, "previous_release": "r1"}


def passed_with_failing_figures(board: str = "b", release_id: str = "r2") -> Verdict:
    """Measure said pass; the figures alone (3x the previous release, allowed 1.25x) would say fail."""
    return Verdict(board, release_id, (
        Check("run", True, f"board {board}: artifact fp32 ran", "fp32", source="generated"),
        Check("accuracy", True, f"board {board}: artifact fp32 passes the output check", "fp32",
              {"samples": 4, "heads": {"out": {"cosine": -1.0, "top1_agreement": 0.0}}}, "generated"),
        Check("latency", True, f"board {board}: artifact fp32 within noise (re-measured)", "fp32", SLOW, "generated"),
    ), latencies={"fp32": ("median", 6.0)}, sources={"fp32": "generated"})


def failed_with_fine_figures(board: str = "b", release_id: str = "r2") -> Verdict:
    """Measure said fail (here: its re-measure confirmed a regression); the figures alone would say pass."""
    return Verdict(board, release_id, (
        Check("run", True, f"board {board}: artifact fp32 ran", "fp32", source="generated"),
        Check("accuracy", True, f"board {board}: artifact fp32 passes the output check", "fp32",
              {"samples": 4, "heads": {}}, "generated"),
        Check("latency", False, f"board {board}: artifact fp32 fails the latency gate: regression confirmed (test)",
              "fp32", FINE, "generated"),
    ), latencies={"fp32": ("median", 2.0)}, sources={"fp32": "generated"})


# ---------------------------------------------------------------------------------------------------------
# the verdict itself
# ---------------------------------------------------------------------------------------------------------
def test_the_verdict_is_its_checks():
    ok, bad = passed_with_failing_figures(), failed_with_fine_figures()
    assert ok.ok and ok.messages == [] and ok.output_check is True
    assert ok.reason == "passed: 3 check(s) (run, accuracy, latency)"
    assert not bad.ok and bad.reason == "board b: artifact fp32 fails the latency gate: regression confirmed (test)"
    assert bad.output_check is True  # a latency failure is not an output failure
    data = json.loads(json.dumps(bad.as_json()))  # JSON-able as the rollout report carries it
    assert data["ok"] is False and data["reason"] == bad.reason and data["release_id"] == "r2"
    assert [(c["name"], c["ok"], c["source"]) for c in data["checks"]] == [
        ("run", True, "generated"), ("accuracy", True, "generated"), ("latency", False, "generated")]
    assert data["checks"][2]["figures"] == FINE


def test_verdict_of_keeps_each_failure_with_its_figures_and_source():
    doc = {"release_id": "r2", "results": [
        {"artifact": "fp32", "precision": "fp32", "error": None, "source": "measured", "latency_ms": {"median": 3.0},
         "verify": {"samples": 4, "heads": {}}},
        {"artifact": "int8", "precision": "int8-qdq", "error": "bad model", "source": "measured", "latency_ms": None,
         "verify": None}]}
    latency = GateFailure("b", "fp32", "latency", "board b: artifact fp32 (fp32) fails the latency gate: 1.50x\nmore",
                          detail={"ratio": 1.5, "median_ms": 3.0, "previous_ms": 2.0, "previous_release": "r1",
                                  "lineage": "abc", "source": "measured"})
    run = GateFailure("b", "int8", "run", "board b: artifact int8 did not run: bad model")
    v = verdict_of(BenchResult("b", False, 1.0, doc=doc, run_id="9", failures=[run, latency],
                               compared={"fp32": {"median_ms": 3.0, "previous_ms": 2.0, "ratio": 1.5,
                                                  "previous_release": "r1"}}), max_latency_regression=1.25)
    assert not v.ok and v.run_id == "9" and v.release_id == "r2" and v.output_check is False
    assert v.messages == ["board b: artifact int8 did not run: bad model",
                          "board b: artifact fp32 (fp32) fails the latency gate: 1.50x"]
    assert "(+1 more in the rollout report)" in v.reason
    [lat] = [c for c in v.checks if c.name == "latency"]
    assert not lat.ok and lat.source == "measured" and lat.figures == {
        "median_ms": 3.0, "previous_ms": 2.0, "ratio": 1.5, "previous_release": "r1", "lineage": "abc", "allowed": 1.25}
    assert v.worst_latency is lat
    assert [(c.name, c.artifact, c.ok) for c in v.checks] == [
        ("run", "int8", False), ("latency", "fp32", False), ("run", "fp32", True), ("accuracy", "fp32", True)]


# ---------------------------------------------------------------------------------------------------------
# the gates read it
# ---------------------------------------------------------------------------------------------------------
def _outcome(v: Verdict) -> fleet.BoardOutcome:
    """An outcome as the deploy fills it from the verdict (its figures copied into the fields)."""
    from dmsbuild.pipeline.deploy import _apply_verdict

    out = fleet.BoardOutcome("b", True, "r2", verified=True)
    _apply_verdict(out, v)
    return out


def test_the_deploy_health_gate_honours_the_verdict_not_the_figures():
    from dmsbuild.pipeline.deploy import health_gate

    gate, ref = health_gate(bench=True), fleet.BoardRef("b", "h")
    slow = _outcome(passed_with_failing_figures())
    assert slow.latency_ms == 6.0 and slow.previous_latency_ms == 2.0  # 3x, allowed 1.25x: a re-judgement fails it
    assert gate(ref, slow).ok
    bad = gate(ref, _outcome(failed_with_fine_figures()))
    assert not bad.ok and bad.reason == failed_with_fine_figures().reason


def test_the_standard_gate_honours_the_verdict_not_the_figures():
    gate, ref = fleet.standard_gate(1.25), fleet.BoardRef("b", "h")
    assert gate(ref, _outcome(passed_with_failing_figures())).ok
    bad = gate(ref, _outcome(failed_with_fine_figures()))
    assert not bad.ok and bad.reason == failed_with_fine_figures().reason
    # the verdict does not vouch for the deploy's own fact: an unverified release still fails
    unverified = _outcome(passed_with_failing_figures())
    unverified.verified = False
    assert not gate(ref, unverified).ok and "sha256" in gate(ref, unverified).reason


# ---------------------------------------------------------------------------------------------------------
# a real rollout (the local target's folder), the board's verdicts.json, the rollout JSON and the report
# ---------------------------------------------------------------------------------------------------------
def _rollout(project_dir: Path, verdict_for, seed: int):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.deploy import deploy_fleet
    from dmsbuild.ship.inventory import local_board
    from dmsbuild.ship.manifest import make_release

    write_build(project_dir, "local", {"fp32": 0.05}, seed=seed)
    project, prof = load_project(project_dir), load_target(project_dir, "local")
    board = local_board(project.root, prof, sys.executable)
    release = make_release(project, prof)
    result = deploy_fleet(project, prof, [board], release=release, stream=io.StringIO(),
                          bench=lambda session: verdict_for(session.board.name, session.release_id))
    data = json.loads(Path(result.report_path).read_text())
    verdicts = json.loads((Path(board.root) / "verdicts.json").read_text())
    return project, release.release_id, result, data["boards"][0], verdicts


def test_a_rollout_its_report_and_the_board_read_the_one_verdict(project_dir):
    from dmsbuild.measure.report import board_releases, verdict_table

    project, v1, result, rep, on_board = _rollout(project_dir, passed_with_failing_figures, seed=1)
    assert result.exit_code == 0 and rep["status"] == "done", rep["reason"]
    assert on_board[v1] == "passed"  # the judge the board records is the same gate on the same verdict
    assert rep["details"]["verdict"] == passed_with_failing_figures(rep["name"], v1).as_json()
    assert rep["latency_ms"] == 6.0 and rep["previous_latency_ms"] == 2.0  # the figures travel, unjudged

    project, v2, result, rep, on_board = _rollout(project_dir, failed_with_fine_figures, seed=2)
    assert result.exit_code == 2 and rep["status"] == "unhealthy"
    assert rep["reason"].startswith("health gate: " + failed_with_fine_figures(rep["name"], v2).reason), rep["reason"]
    assert on_board[v2] == "failed" and rep["details"]["verdict"]["ok"] is False

    # the benchmark report reads the verdicts the rollout reports carry
    table = verdict_table(board_releases(project.artifacts))
    [row] = table.rows
    assert row[:4] == [rep["name"], "local", v2, "FAILED"] and "regression confirmed (test)" in str(row[4].full if
                                                                                                 hasattr(row[4], "full") else row[4])
    assert row[5] == "run 1/1, accuracy 1/1, latency 0/1"


def test_the_report_honours_a_passing_verdict_whose_figures_would_fail(tmp_path):
    from dmsbuild.measure.report import board_releases, verdict_table

    rollouts = tmp_path / "t" / "rollouts"
    rollouts.mkdir(parents=True)
    v = passed_with_failing_figures("b", "r2")
    (rollouts / "r2-1.json").write_text(json.dumps({
        "target": "t", "release_id": "r2", "started_at": "2026-01-01T00:00:00Z",
        "boards": [{"name": "b", "status": "done", "details": {"verdict": v.as_json()}}]}))
    [row] = verdict_table(board_releases(tmp_path)).rows
    assert row[:4] == ["b", "t", "r2", "passed"] and row[5] == "run 1/1, accuracy 1/1, latency 1/1"


def test_two_rollouts_in_one_second_are_ordered_by_when_their_reports_were_written(tmp_path):
    """started_at has whole seconds; by file name the order would be the release hash's (the full suite hit it)."""
    import os

    from dmsbuild.measure.report import board_releases

    rollouts = tmp_path / "t" / "rollouts"
    rollouts.mkdir(parents=True)
    for n, (rid, ok) in enumerate((("ffff", True), ("0000", False))):  # ffff deployed first, 0000 second
        v = (passed_with_failing_figures if ok else failed_with_fine_figures)("b", rid)
        path = rollouts / f"{rid}-1.json"
        path.write_text(json.dumps({"target": "t", "release_id": rid, "started_at": "2026-01-01T00:00:00Z",
                                    "boards": [{"name": "b", "status": "done" if ok else "unhealthy",
                                                "details": {"verdict": v.as_json()}}]}))
        os.utime(path, ns=(10**18 + n, 10**18 + n))
    st = board_releases(tmp_path)[("b", "t")]
    assert st.current == "0000" and st.verdict["release_id"] == "0000" and st.verdict["ok"] is False
