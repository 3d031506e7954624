"""The adapter between the fleet rollout and the real deploy (no sshd: the local target, fake bench outcomes)."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from dmsbuild.ship import fleet
from dmsbuild.measure.bench import BenchResult as BenchOutcome
from dmsbuild.errors import UserError
from dmsbuild.pipeline.deploy import FleetDeploy, health_gate
from dmsbuild.measure.gates import GateFailure, check_latency
from dmsbuild.measure.verdict import Check, Verdict, verdict_of
from tests.conftest import write_build


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, int | None, int | None]] = []
        self.lock = threading.Lock()

    def update(self, board: str, state: str, detail: str = "", *, sent: int | None = None, total: int | None = None) -> None:
        with self.lock:
            self.events.append((board, state, detail, sent, total))

    def states(self, board: str) -> list[str]:
        out: list[str] = []
        for b, s, *_ in self.events:
            if b == board and (not out or out[-1] != s):
                out.append(s)
        return out


def _doc(results: list[dict]) -> dict:
    return {"release_id": "r2", "results": results}


def _result(artifact: str, median: float | None, error: str | None = None, verify: bool = True) -> dict:
    return {"artifact": artifact, "precision": "fp32", "error": error,
            "latency_ms": None if median is None else {"median": median},
            "verify": {"samples": 4, "heads": {}, "min_top1_agreement": 1.0} if verify and error is None else None}


def _local(project_dir: Path):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.ship.inventory import local_board

    proj = load_project(project_dir)
    prof = load_target(project_dir, "local")
    return proj, prof, local_board(proj.root, prof, sys.executable)


# ---------------------------------------------------------------------------------------------------------
# the bench outcome as the health gate sees it: measure's one verdict
# ---------------------------------------------------------------------------------------------------------
def _compared(**pairs: tuple[float, float]) -> dict[str, dict]:
    """What ``gates.check_latency`` hands back for each pair it compared."""
    return {a: {"median_ms": new, "previous_ms": old, "ratio": new / old, "previous_release": "r1"}
            for a, (new, old) in pairs.items()}


def test_bench_check_passes_a_clean_run_and_keeps_the_worst_latency_ratio():
    out = BenchOutcome("b", True, 1.0, doc=_doc([_result("fp32", 4.0), _result("int8", 3.0)]), run_id="7",
                       compared=_compared(fp32=(4.0, 4.0), int8=(3.0, 2.0)))
    c = verdict_of(out)
    assert c.ok and c.output_check is True and c.messages == [] and c.run_id == "7"
    worst = c.worst_latency
    assert (worst.artifact, worst.figures["median_ms"], worst.figures["previous_ms"]) == ("int8", 3.0, 2.0)  # 1.5x beats 1.0x


def test_bench_check_an_artifact_that_did_not_run_fails_the_output_check():
    failure = GateFailure("b", "fp32", "run", "board b: artifact fp32 did not run: bad model")
    out = BenchOutcome("b", False, 1.0, doc=_doc([_result("fp32", None, error="bad model")]), failures=[failure])
    c = verdict_of(out)
    assert not c.ok and c.output_check is False and c.messages == ["board b: artifact fp32 did not run: bad model"]
    assert c.worst_latency is None


def test_bench_check_a_benchmark_that_did_not_run():
    out = BenchOutcome("b", False, 0.5, error="board b: onnxruntime is not installed\n  hint: ...")
    c = verdict_of(out)
    assert not c.ok and c.output_check is False and c.messages == ["board b: onnxruntime is not installed"]


def test_bench_check_without_a_reference_has_no_output_check():
    out = BenchOutcome("b", True, 1.0, doc=_doc([_result("fp32", 2.0, verify=False)]))
    assert verdict_of(out).output_check is None
    # where the target asks for one (bench.verify_samples > 0), no output check fails the verdict, once
    required = verdict_of(out, require_output_check=True)
    assert not required.ok and required.output_check is None and required.reason.startswith("board b: no output check result")


def _outcome(**kw) -> fleet.BoardOutcome:
    return fleet.BoardOutcome("b", True, "r2", **{"verified": True, **kw})


class _Previous:
    """A results store that knows one earlier release's median for every artifact (``gates.check_latency``'s view)."""

    def __init__(self, median_ms: float) -> None:
        self.median_ms = median_ms

    def previous(self, **_kw) -> dict:
        return {"median_ms": self.median_ms, "release_id": "r1", "state": None}


def _measured(results: list[dict], *, previous_ms: float, max_ratio: float = 1.25,
              failures: list[GateFailure] = ()) -> Verdict:
    """Measure's verdict on a hand-made run: the real latency gate against ``previous_ms``, then ``verdict_of``."""
    doc = _doc(results)
    compared: dict[str, dict] = {}
    failed = list(failures) + check_latency(doc, board="b", target="t", store=_Previous(previous_ms), max_ratio=max_ratio,
                                            compared=compared)
    return verdict_of(BenchOutcome("b", not failed, 1.0, doc=doc, failures=failed, compared=compared),
                      max_latency_regression=max_ratio)


def test_health_gate_with_the_benchmark():
    gate = health_gate(bench=True)
    ref = fleet.BoardRef("b", "h")
    clean = _measured([_result("fp32", 2.0)], previous_ms=2.0)
    assert gate(ref, _outcome(bench_verdict=clean)).ok
    no_bench = gate(ref, _outcome())
    assert not no_bench.ok and "did not run" in no_bench.reason
    failures = [GateFailure("b", "fp32", "run", "board b: artifact fp32 did not run: x"),
                GateFailure("b", "int8", "accuracy", "y")]
    broken = _measured([_result("fp32", None, error="x"), _result("int8", 2.0)], previous_ms=2.0, failures=failures)
    found = gate(ref, _outcome(bench_verdict=broken))
    assert not found.ok and found.reason.startswith("board b: artifact fp32 did not run: x") and "+1 more" in found.reason
    slow = gate(ref, _outcome(bench_verdict=_measured([_result("fp32", 3.0)], previous_ms=2.0)))
    assert not slow.ok and "1.50x" in slow.reason and "allowed 1.25x" in slow.reason
    unverified = gate(ref, _outcome(verified=False, bench_verdict=clean))
    assert not unverified.ok and "sha256" in unverified.reason


def test_health_gate_without_the_benchmark_judges_the_verification_only():
    gate = health_gate(bench=False)
    ref = fleet.BoardRef("b", "h")
    assert gate(ref, _outcome()).ok
    assert not gate(ref, _outcome(verified=False)).ok


# ---------------------------------------------------------------------------------------------------------
# the real deploy through the adapter, on the local target's folder
# ---------------------------------------------------------------------------------------------------------
def test_deploy_one_reports_each_phase_and_the_resume_check_sees_the_release(project_dir):
    from dmsbuild.ship.manifest import make_release

    write_build(project_dir, "local", {"fp32": 1.5}, seed=3)
    proj, prof, board = _local(project_dir)
    release = make_release(proj, prof)
    seen: list[str] = []

    def bench(session) -> Verdict:
        seen.append(session.release_dir)
        return Verdict("local", session.release_id, (
            Check("accuracy", True, "output check passed (test double)", "fp32", source="generated"),
            Check("latency", True, "1.0 ms, 1.0x (test double)", "fp32",
                  {"median_ms": 1.0, "previous_ms": 1.0, "ratio": 1.0}, "generated")))

    fd = FleetDeploy(prof, [board], release, project_name="dms", bench=bench)
    [ref] = fd.refs()
    assert fd.current_release(ref) is None
    sink = RecordingSink()
    out = fd.deploy_one(ref, sink)
    assert out.ok and out.verified and out.release_id == release.release_id, out.reason
    assert sink.states("local") == ["connecting", "sending", "verifying", "benchmarking"]
    sending = [e for e in sink.events if e[1] == "sending"]
    assert sending[0][4] == release.total_bytes and sending[-1][3] == sending[-1][4]  # 0 .. all of it
    assert set(out.timings) == {"connect", "send", "verify", "bench"} and all(v >= 0 for v in out.timings.values())
    assert out.bytes_sent == release.total_bytes and out.details["action"] == "deployed"
    assert out.output_check is True and out.latency_ms == 1.0 and out.details["verdict"]["ok"] is True
    assert [c["name"] for c in out.details["verdict"]["checks"]] == ["accuracy", "latency"]
    assert seen == [f"{board.root}/releases/{release.release_id}"]
    assert fd.current_release(ref) == release.release_id

    # the same release again: nothing to send, and the sink says so
    sink = RecordingSink()
    again = FleetDeploy(prof, [board], release, project_name="dms").deploy_one(ref, sink)
    assert again.ok and again.bytes_sent == 0 and again.details["action"] == "unchanged"
    assert sink.states("local") == ["connecting", "sending", "verifying"]  # no bench: no benchmarking state
    assert any(e[1] == "sending" and "nothing to send" in e[2] for e in sink.events)


def test_deploy_one_failure_is_an_outcome_not_an_exception(project_dir):
    from dmsbuild.ship.inventory import Board
    from dmsbuild.ship.manifest import make_release

    write_build(project_dir, "local", {"fp32": 0.1}, seed=4)
    proj, prof, board = _local(project_dir)
    broken = Board(name="nopython", groups=["local"], root=board.root, python="/nonexistent/python3")
    broken.transport = "local"
    fd = FleetDeploy(prof, [broken], make_release(proj, prof), project_name="dms")
    out = fd.deploy_one(fd.refs()[0], RecordingSink())
    assert not out.ok and "nopython" in out.reason and not out.verified


# ---------------------------------------------------------------------------------------------------------
# selection: hosts= (names, globs, ranges) and groups=
# ---------------------------------------------------------------------------------------------------------
def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[rpi5]\nrpi5-[01:12] ansible_host=10.0.0.1\n\n[lab_a]\nrpi5-0[1:4]\n\n[orin]\norin-1\n")
    return inv


def test_boards_for_selects_by_range_glob_and_group(project_dir, tmp_path):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.tasks.deploy import boards_for

    proj, prof = load_project(project_dir), load_target(project_dir, "rpi5")
    inv = str(_inventory(tmp_path))
    names = lambda **kw: [b.name for b in boards_for(proj, prof, inventory=inv, **kw)]  # noqa: E731
    assert len(names()) == 12
    assert names(hosts="rpi5-[02:03],rpi5-1*") == ["rpi5-02", "rpi5-03", "rpi5-10", "rpi5-11", "rpi5-12"]
    assert names(groups="lab_a") == ["rpi5-01", "rpi5-02", "rpi5-03", "rpi5-04"]
    assert names(groups="lab_a", hosts="rpi5-0[3:4]") == ["rpi5-03", "rpi5-04"]
    with pytest.raises(UserError, match="board 'rpi5-77': not in the inventory"):
        boards_for(proj, prof, hosts="rpi5-01,rpi5-77", inventory=inv)
    with pytest.raises(UserError, match="board 'orin-1': not in group 'rpi5'"):
        boards_for(proj, prof, hosts="orin-1", inventory=inv)
    with pytest.raises(UserError, match="no selected board matches rpi5-9"):
        boards_for(proj, prof, hosts="rpi5-9*", inventory=inv)
    with pytest.raises(UserError, match="no board is in group"):
        boards_for(proj, prof, groups="lab_b", inventory=inv)


def test_profile_inventory_may_be_an_ansible_yaml_file(project_dir):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.tasks.deploy import boards_for

    (project_dir / "lab").mkdir()
    (project_dir / "lab" / "hosts.yaml").write_text(
        "all:\n  children:\n    rpi5:\n      vars: {ansible_user: pi}\n      hosts:\n        rpi5-[1:3]: {}\n")
    prof_file = project_dir / "targets" / "rpi5.toml"
    prof_file.write_text(prof_file.read_text().replace("[deploy]\n", '[deploy]\ninventory = "lab/hosts.yaml"\n'))
    proj, prof = load_project(project_dir), load_target(project_dir, "rpi5")
    boards = boards_for(proj, prof, hosts="rpi5-[2:3]")
    assert [(b.name, b.user, b.known_hosts) for b in boards] == [("rpi5-2", "pi", None), ("rpi5-3", "pi", None)]


def test_resume_check_tries_once_and_the_deploy_keeps_the_boards_retries(project_dir):
    """An unreachable board must not pay its connect retries twice: the resume check (a failure there only
    means "unknown, deploy it") connects once; the deploy uses the board's own connect_retries."""
    from dmsbuild.ship.manifest import make_release
    from dmsbuild.transport import open_transport

    write_build(project_dir, "local", {"fp32": 0.1}, seed=4)
    proj, prof, board = _local(project_dir)
    board.connect_retries = 4
    seen: list[tuple[int, str]] = []

    def factory(b):
        seen.append((b.connect_retries, b.transport))
        return open_transport(b)

    fd = FleetDeploy(prof, [board], make_release(proj, prof), project_name="dms", transport_factory=factory)
    [ref] = fd.refs()
    fd.current_release(ref)
    assert fd.deploy_one(ref, RecordingSink()).ok
    assert seen == [(1, "local"), (4, "local")] and board.connect_retries == 4
