"""The one orchestration: every deploy, rollback and bench, one board or a fleet, is a ``fleet.rollout``
driving the real per-board step (``release.deploy_board`` / ``rollback_board``, the bench hook).

``fleet`` plans waves, gates and resume without knowing how a board is
reached; ``release`` puts one release on one board. This module joins them:

* ``FleetDeploy.deploy_one`` runs in a rollout worker thread: it opens the
  board's own connection there (``transport_factory``; nothing is shared
  across threads), deploys, and turns the deploy's phases into the progress
  states connecting / sending n MB / verifying / benchmarking.
* The health gate reads measure's one ``Verdict`` on the on-board benchmark
  that runs right after the switch (``bench``: ``bench_hook``, the deploy
  task's bench step; ``measure/verdict.py``): every artifact ran, the output
  check against the host FP32 reference passed, the latency is within the
  target's allowed regression of the board's previous release, each judged
  once by measure. The gate adds only the deploy's own fact: the release was
  verified (sha256, board side).
* ``FleetDeploy.current_release`` is the cheap resume check: one connection
  and one ``readlink <root>/current`` per board.
* ``deploy_fleet`` / ``rollback_fleet`` are what ``doit deploy`` and
  ``doit rollback`` run (waves, gate, live progress, rollout report);
  ``bench_target`` is what ``doit bench`` runs.
* ``deploy_target`` / ``rollback_target`` are the same rollout for scripts,
  benchmarks and tests: every given board in one wave, no gate, no halt, no
  display or report file; they return each board's ``fleet.BoardOutcome``
  (the one outcome type), and ``report`` prints them one line each.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import posixpath
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TextIO

from ..ship import fleet
from ..errors import UserError

if TYPE_CHECKING:
    from ..measure.verdict import Verdict
    from ..config import ProjectConfig, TargetProfile
    from ..ship.inventory import Board
    from ..ship.manifest import Release
    from ..ship.release import BoardSession
    from ..core.results import ResultStore
    from ..transport.base import Transport


#: the bench step the deploy task builds: benchmark the release on the open connection, store, and return
#: measure's one ``Verdict`` on it (a script's own ``after_switch`` hook may return None: nothing for the gate)
BenchFn = Callable[["BoardSession"], "Verdict | None"]


def board_ref(board: "Board") -> fleet.BoardRef:
    """The immutable view of an inventory board that the rollout plans with (no key paths in reports)."""
    return fleet.BoardRef(board.name, board.address, board.port or 22, board.user, board.identity_file, tuple(board.groups))


def health_gate(bench: bool) -> fleet.HealthGate:
    """The deploy's health gate: the release was verified (sha256, the deploy's own fact), and with the
    benchmark, measure's ``Verdict`` on it passed.

    The gate reads the verdict and never judges its figures again: every artifact
    ran, the output check vs the host FP32 reference passed (required where
    ``bench.verify_samples > 0``), the latency is within
    ``gates.max_latency_regression`` of the board's previous release were judged
    once, by measure (``measure/verdict.verdict_of``). Without the benchmark
    (``bench=no``) only the sha256 verification is judged.
    """

    def gate(board: fleet.BoardRef, outcome: fleet.BoardOutcome) -> fleet.GateResult:
        if not outcome.verified:
            return fleet.GateResult(False, "release not verified on the board (sha256)")
        if not bench:
            return fleet.GateResult(True)
        verdict = outcome.bench_verdict
        if verdict is None:
            return fleet.GateResult(False, "the benchmark did not run after the switch")
        return fleet.GateResult(True) if verdict.ok else fleet.GateResult(False, verdict.reason)

    return gate


#: at most this many resume-check connections are kept open for the deploys (each holds a socket and a thread);
#: boards beyond it connect again for their deploy
MAX_KEPT = 512
#: a relay stops serving after this long even if the rollout never told it to (a controller killed mid-rollout)
RELAY_LIFETIME_S = 3600


class FleetDeploy:
    """One target's boards and release, as ``fleet.rollout`` callbacks (each call opens its own connection)."""

    def __init__(self, profile: "TargetProfile", boards: Sequence["Board"], release: "Release | None" = None, *,
                 project_name: str = "dms", transport_factory: Callable[["Board"], "Transport"] | None = None,
                 bench: BenchFn | None = None, full_verify: bool = False,
                 progress: Callable[[str, int, int], None] | None = None, gate: fleet.HealthGate | None = None) -> None:
        from ..transport import open_transport

        self.profile = profile
        self.boards = {b.name: b for b in boards}
        self.release = release
        self.project_name = project_name
        self.transport_factory = transport_factory or open_transport
        self.bench = bench
        self.full_verify = full_verify
        #: the rollout's health gate, also run on the board's outcome under its lock to record the verdict there
        self.gate = gate
        #: ``progress(path, bytes done, total)`` per object sent, besides the rollout's display (scripts, tests)
        self.progress = progress
        #: connections the resume check opened to boards that need the release, handed to their deploy
        self._kept: dict[str, "Transport"] = {}
        self._kept_lock = threading.Lock()
        #: boards the resume check found no server for: (attempts it made, its error), for their deploy
        self._unreached: dict[str, tuple[int, UserError]] = {}
        #: relay boards serving the release's objects: base URLs, and (transport, serving process) to stop them
        self.relays: list[str] = []
        self._servers: list[tuple["Transport", Any]] = []

    def refs(self) -> list[fleet.BoardRef]:
        return [board_ref(b) for b in self.boards.values()]

    # -- resume: which release does a board run? ------------------------------
    def current_release(self, ref: fleet.BoardRef) -> str | None:
        """The release id ``<root>/current`` points to (None: no release), by one ``readlink``.

        A root under ``~/`` is read relative to the login directory (sshd runs
        commands there), so no board-side Python has to start for the check.
        """
        from ..transport import resolve_root

        board = self.boards[ref.name]
        root = board.deploy_root(self.profile)
        # one connection attempt: a failure here only means "unknown, deploy it", and the deploy itself
        # retries with backoff, so an unreachable board does not pay the retries twice
        once = copy.copy(board)  # (dataclasses.replace would reset the init=False fields: transport, source)
        once.connect_retries = 1
        transport = self.transport_factory(once)
        keep = False
        try:
            if root == "~" or (root.startswith("~") and not root.startswith("~/")):
                root = resolve_root(transport, board, self.profile)
            link = posixpath.join(root[2:] if root.startswith("~/") else root, "current")
            res = transport.run(["readlink", "--", link], timeout=(board.connect_timeout or 10.0) * 3)
            current = (posixpath.basename(res.stdout.strip().rstrip("/")) or None) if res.ok else None
            # the board will be deployed: its deploy reuses this connection (one SSH handshake per board, not
            # two; at 100 boards the second handshakes were ~1/4 of the controller's CPU)
            keep = self.release is not None and current != self.release.release_id and transport.is_open()
            if keep:
                with self._kept_lock:
                    keep = len(self._kept) < MAX_KEPT
                    if keep:
                        self._kept[ref.name] = transport
        except UserError as exc:
            if getattr(transport, "unreached_attempts", 0):  # the deploy's connect goes on from here instead of starting over
                with self._kept_lock:
                    self._unreached[ref.name] = (transport.unreached_attempts, exc)
            raise
        finally:
            if not keep:
                transport.close()
        return current  # None: no `current` yet

    def _transport_for(self, board: "Board") -> "Transport":
        """The resume check's connection to ``board`` when it is still up, else a new one (for ``deploy_board``).

        Where the resume check found no server, its attempt counts: the deploy makes only the attempts left of
        ``connect_retries`` (none left: the check's error is the board's), so a frozen board costs what
        docs/ssh.md says, connect_retries x connect_timeout, not one attempt more."""
        with self._kept_lock:
            kept = self._kept.pop(board.name, None)
            spent, error = self._unreached.pop(board.name, (0, None))
        if spent:
            if board.connect_retries <= spent and error is not None:
                raise error
            board = copy.copy(board)
            board.connect_retries -= spent
            board.prior_attempts = spent
        if kept is not None:
            if kept.is_open():
                return kept
            kept.close()
        return self.transport_factory(board)

    def publish(self, folder: str | Path) -> int:
        """Copy the release's objects into the mirror's folder as ``<sha256>`` (once; present ones are kept).

        Written to a temporary name and renamed, so a board never fetches a
        half-written object (it would refuse it by its sha256 anyway). Returns
        the bytes written."""
        if self.release is None:
            raise ValueError("FleetDeploy.publish needs a release")
        dest = Path(folder)
        try:
            dest.mkdir(parents=True, exist_ok=True)
            written = 0
            for f in {f.sha256: f for f in self.release.files}.values():
                target = dest / f.sha256
                if target.is_file() and target.stat().st_size == f.size:
                    continue
                tmp = dest / f".{f.sha256}.{os.getpid()}.tmp"
                shutil.copyfile(f.local, tmp)
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
                written += f.size
        except OSError as exc:
            raise UserError(f"deploy.mirror_publish: cannot publish into {dest}: {exc.strerror or exc}",
                            hint="check that the folder exists and is writable (or unset mirror_publish and fill the mirror yourself)") from None
        return written

    def _start_relay(self, board: "Board") -> None:
        """Make ``board`` (its release just verified) serve its objects to later boards, up to ``relay_boards`` relays.

        The server listens on the board's own address (the one we reach it by),
        serves ``objects/<sha256>`` only and stops when this rollout ends (its
        stdin closes) or after RELAY_LIFETIME_S. A board that cannot serve is
        just not a relay: the rollout carries on."""
        from ..ship.release import AGENT_SOURCE
        from ..transport import resolve_root

        with self._kept_lock:
            if len(self._servers) >= self.profile.deploy.relay_boards:
                return
            self._servers.append((None, None))  # reserve the slot
        transport = None
        try:
            transport = self.transport_factory(board)
            transport.connect()
            host = getattr(getattr(transport, "endpoint", None), "host", None) or board.host
            root = resolve_root(transport, board, self.profile)
            proc = transport.spawn([board.python, "-c", AGENT_SOURCE, "serve"])
            proc.send((json.dumps({"root": root, "bind": host, "lifetime": RELAY_LIFETIME_S}) + "\n").encode())
            answer = proc.readline(timeout=30).strip()
            if not answer.startswith("serving "):
                raise UserError(f"board '{board.name}': relay did not start: {answer or proc.finish(timeout=5).stderr_tail(2)}")
            url = f"http://{'[' + host + ']' if ':' in host else host}:{int(answer.split()[1])}/"
        except UserError:
            with self._kept_lock:
                self._servers.remove((None, None))
            if transport is not None:
                transport.close()
            return
        with self._kept_lock:
            self._servers.remove((None, None))
            self._servers.append((transport, proc))
            self.relays.append(url)

    def close(self) -> None:
        """Close the kept connections no deploy used (a halted rollout, a board skipped) and stop the relays."""
        with self._kept_lock:
            kept, self._kept = list(self._kept.values()), {}
            servers, self._servers, self.relays = self._servers, [], []
        for t in kept:
            t.close()
        for transport, proc in servers:
            try:
                proc.finish(timeout=10)
            except UserError:
                pass  # the relay board went away; its server stopped with the connection
            transport.close()

    # -- one board's deploy ---------------------------------------------------------
    def deploy_one(self, ref: fleet.BoardRef, sink: fleet.ProgressSink) -> fleet.BoardOutcome:
        from ..ship.release import deploy_board

        if self.release is None:
            raise ValueError("FleetDeploy.deploy_one needs a release")  # a bug in the caller
        board = self.boards[ref.name]
        marks: dict[str, float] = {}
        sending = {"total": 0, "done": {}}
        last_draw = [0.0]

        def on_state(state: str, info: dict[str, Any]) -> None:
            marks[state] = time.perf_counter()
            if state == "sending":
                sending["total"] = info["bytes"]
                detail = "" if info["objects"] else "nothing to send: every object is on the board"
                sink.update(board.name, "sending", detail, sent=0, total=info["bytes"])
            else:
                sink.update(board.name, state)

        def on_bytes(path: str, done: int, total: int) -> None:
            if self.progress is not None:
                self.progress(path, done, total)
            sending["done"][path] = done
            now = time.perf_counter()
            if now - last_draw[0] < 0.1 and done < total:  # the sink throttles too; this saves the lock
                return
            last_draw[0] = now
            sink.update(board.name, "sending", sent=sum(sending["done"].values()), total=sending["total"])

        verdicts: list[Verdict] = []

        def after_switch(session: "BoardSession") -> None:
            if self.bench is not None:
                verdict = self.bench(session)
                if verdict is not None:
                    verdicts.append(verdict)

        def judge(o: fleet.BoardOutcome) -> bool | None:
            """The rollout's gate on what the rollout will see (the same function, the same verdict)."""
            if self.gate is None:
                return None
            probe = copy.copy(o)
            probe.verified, probe.details = o.ok, {}
            if verdicts:
                _apply_verdict(probe, verdicts[0])
            return self.gate(ref, probe).ok

        t0 = time.perf_counter()
        with self._kept_lock:
            sources = list(self.relays)
        if sources:  # spread the boards over the relays: each starts at a different one, the rest are fall-backs
            k = sum(map(ord, board.name)) % len(sources)
            sources = sources[k:] + sources[:k]
        if self.profile.deploy.mirror:  # the mirror first: it is what the user runs to take the load
            sources.insert(0, self.profile.deploy.mirror.rstrip("/") + "/")
        out = deploy_board(board, self.profile, self.release, project_name=self.project_name,
                           transport_factory=self._transport_for,
                           after_switch=after_switch if self.bench is not None else None,
                           progress=on_bytes, full_verify=self.full_verify, on_state=on_state, sources=sources,
                           judge=judge)
        if out.ok and self.profile.deploy.relay == "boards":
            self._start_relay(board)
        end = t0 + out.seconds
        order = [("connect", "connecting"), ("fetch", "fetching"), ("send", "sending"), ("verify", "verifying"), ("bench", "benchmarking")]
        timings: dict[str, float] = {}
        for i, (name, state) in enumerate(order):
            if state in marks:
                nxt = next((marks[s] for _, s in order[i + 1:] if s in marks), end)
                timings[name] = max(0.0, nxt - marks[state])
        details: dict[str, Any] = {"action": out.action, "objects_sent": out.objects_sent}
        if out.objects_fetched:
            details.update(objects_fetched=out.objects_fetched, bytes_fetched=out.bytes_fetched, fetched_from=sources)
        if out.previous is not None:
            details["previous_release"] = out.previous
        if out.warnings:
            details["warnings"] = list(out.warnings)
        if out.route is not None:
            details["route"] = out.route
        if out.verdict is not None:
            details["verdict_recorded"] = out.verdict
        out.timings, out.verified, out.details = timings, out.ok, details
        if verdicts:
            _apply_verdict(out, verdicts[0])
        return out

    # -- one board's rollback ----------------------------------------------------------
    def rollback_one(self, ref: fleet.BoardRef, sink: fleet.ProgressSink, *, failed: bool = False) -> fleet.BoardOutcome:
        """``doit rollback``: back to the last kept release that did not fail its gate on the board."""
        from ..ship.release import rollback_board

        out = rollback_board(self.boards[ref.name], self.profile, transport_factory=self.transport_factory, failed=failed)
        out.timings, out.verified = {"rollback": out.seconds}, out.ok
        if out.ok:
            out.details = {"action": out.action, "from_release": out.previous, "to_release": out.release_id,
                           **out.details}
        else:
            out.details = {}
        return out

    def revert_one(self, ref: fleet.BoardRef, sink: fleet.ProgressSink) -> fleet.BoardOutcome:
        """The automatic rollback of a board whose new release failed its gate: the release is recorded as
        failed there, and with no earlier release that passed, the board is left with no release."""
        return self.rollback_one(ref, sink, failed=True)

    # -- one board's benchmark of the release it runs ---------------------------------------
    def bench_one(self, ref: fleet.BoardRef, sink: fleet.ProgressSink) -> fleet.BoardOutcome:
        """Run the bench hook on the release ``current`` on the board (``doit bench``); nothing is sent."""
        from ..ship.release import BoardSession, BoardStep
        from ..transport import resolve_root

        if self.bench is None:
            raise ValueError("FleetDeploy.bench_one needs a bench hook")  # a bug in the caller
        board = self.boards[ref.name]
        out = fleet.BoardOutcome(board.name, False, action="failed")
        with BoardStep(out, board, self.transport_factory) as step:
            sink.update(board.name, "connecting")
            transport = step.open()
            transport.connect()
            root = resolve_root(transport, board, self.profile)
            current = posixpath.join(root, "current")
            res = transport.run(["readlink", "-e", "--", current], timeout=60)
            if not res.ok or not res.stdout.strip():
                raise UserError(f"board {board.name}: no release deployed at {current}",
                                hint=f"run `doit deploy target={self.profile.name} hosts={board.name}` first")
            release_dir = res.stdout.strip()
            out.release_id = posixpath.basename(release_dir.rstrip("/"))
            sink.update(board.name, "benchmarking")
            verdict = self.bench(BoardSession(board, transport, root, None, None, release_id=out.release_id,
                                              release_dir=release_dir))
            out.action, out.details = "benchmarked", {"action": "benchmarked"}
            out.ok = True if verdict is None else verdict.ok
            if verdict is not None:
                _apply_verdict(out, verdict)
                out.reason = None if verdict.ok else "; ".join(verdict.messages) or "the benchmark failed"
        out.timings = {"bench": out.seconds}
        return out


def _apply_verdict(out: fleet.BoardOutcome, v: "Verdict") -> None:
    """Measure's verdict into the board's outcome: the gate reads ``bench_verdict``; the rollout report carries
    it whole (``details["verdict"]``) and the figures it judged, each with its source, for the lines after the
    table. Nothing here judges: the fields are copied from the verdict."""
    details = out.details
    out.bench_verdict = v
    worst = v.worst_latency
    out.output_check = v.output_check
    out.latency_ms = None if worst is None else worst.figures["median_ms"]
    out.previous_latency_ms = None if worst is None else worst.figures["previous_ms"]
    details["verdict"] = v.as_json()
    if v.sources:
        details["sources"] = v.sources  # where each artifact's figures came from (provenance.SOURCES)
    if v.latencies:
        details["latencies"] = {a: {"stat": stat, "ms": ms} for a, (stat, ms) in v.latencies.items()}
    if v.notes:
        details["latency_notes"] = list(v.notes)
    if v.decisions:
        details["latency_decisions"] = list(v.decisions)
    if worst is not None:
        details["latency_artifact"] = worst.artifact
        details["latency_source"] = v.sources.get(worst.artifact)
    if v.run_id:
        details["bench_run_id"] = v.run_id


def unhealthy_in_reports(directory: Any, release_id: str) -> set[str]:
    """Boards whose latest rollout report of ``release_id`` left them ``unhealthy``.

    They run the release but failed its checks, so a rerun must not count
    them as ``current``: they are deployed again (nothing is sent) and
    re-benchmarked, and the gate judges them again.
    """
    import json
    from pathlib import Path

    last: dict[str, str] = {}
    for path in sorted(Path(directory).glob(f"{release_id}-*.json")):  # names sort by time
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: unreadable rollout report ({exc})", hint="delete or fix that file") from None
        for b in data.get("boards", []):
            if b.get("status") in ("done", "current", "unhealthy", "failed"):
                last[b.get("name")] = b["status"]
    return {name for name, status in last.items() if status == "unhealthy"}


def _progress(stream: TextIO | None, title: str) -> Any:
    from ..ship.progress import FleetProgress

    return FleetProgress(stream if stream is not None else sys.stderr, title=title)


def deploy_fleet(project: "ProjectConfig", profile: "TargetProfile", boards: Sequence["Board"], *,
                 release: "Release | None" = None, hosts: str | None = None, groups: str | None = None,
                 parallel: int | None = None, bench: BenchFn | None = None, full_verify: bool = False,
                 transport_factory: Callable[["Board"], "Transport"] | None = None,
                 stream: TextIO | None = None) -> fleet.RolloutResult:
    """``doit deploy target=T``: the target's release to its boards in waves (``fleet.rollout_target``).

    Boards the last rollout of this release left ``unhealthy`` are not taken
    as ``current`` (see ``unhealthy_in_reports``). ``verify=full`` (``full_verify``) skips the resume check: every board is
    deployed and re-hashes its objects, even boards already on the release.
    """
    from ..ship.manifest import make_release

    release = release or make_release(project, profile)
    regate = unhealthy_in_reports(fleet.rollouts_dir(project.artifacts, profile.name), release.release_id)
    gate = health_gate(bench is not None)
    fd = FleetDeploy(profile, boards, release, project_name=release.manifest["project"],
                     transport_factory=transport_factory, bench=bench, full_verify=full_verify, gate=gate)

    def current(ref: fleet.BoardRef) -> str | None:
        return None if ref.name in regate else fd.current_release(ref)

    try:
        if profile.deploy.mirror and profile.deploy.mirror_publish:
            fd.publish(project.root / profile.deploy.mirror_publish)
        result = fleet.rollout_target(
            profile, project.artifacts, fd.refs(), release.release_id, fd.deploy_one, hosts=hosts, groups=groups,
            parallel=parallel, current_release=None if full_verify else current,
            health_gate=gate, stream=stream, revert=fd.revert_one)
    finally:
        fd.close()
    lines = measurement_lines(result)
    if lines:
        out = stream if stream is not None else sys.stderr
        out.write("\n".join(lines) + "\n")
        out.flush()
    return result


#: a gate note that starts a new latency baseline; said once for all boards and artifacts it concerns
_BASELINE = re.compile(r"^artifact (?P<artifact>\S+) \([^)]*\) of (?P<model>.+?): new baseline \(lineage [^:)]*[:)]")


def _boards(names: list[str]) -> str:
    """Board names for a collapsed line: all of up to four, else the first two and a count."""
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]} and {len(names) - 2} more ({len(names)} boards)"


def measurement_lines(result: fleet.RolloutResult) -> list[str]:
    """After the rollout table: one line per benchmarked board (its verdict, each artifact's latency with where the
    figure came from, the output check), then the latency gate's notes, each said once for all the boards it
    concerns (a new baseline used to be one line per artifact per board: 30 lines for 10 boards)."""
    from ..core.provenance import label

    lines: list[str] = []
    notes: dict[str, list[str]] = {}
    baselines: dict[str, tuple[list[str], list[str]]] = {}  # model -> (artifacts, boards)
    for b in result.boards:
        d = b.details
        lat, sources = d.get("latencies") or {}, d.get("sources") or {}
        if lat or sources:
            figures = []
            for artifact in dict.fromkeys([*lat, *sources]):
                x = lat.get(artifact)
                value = f"{x['ms']:.2f} ms" + (" (mean)" if x["stat"] == "mean" else "") if x else "no latency"
                figures.append(f"{artifact} {value} [{label(sources.get(artifact), short=True)}]")
            check = {True: "; output check passed", False: "; output check FAILED"}.get(getattr(b, "output_check", None), "")
            status = getattr(b, "status", None)
            lines.append(f"{b.name}: {status + ': ' if status else ''}{', '.join(figures)}{check}")
        for n in d.get("latency_notes", []):
            n = n.removeprefix(f"board {b.name}: ")
            m = _BASELINE.match(n)
            if m:
                arts, names = baselines.setdefault(m["model"], ([], []))
                if m["artifact"] not in arts:
                    arts.append(m["artifact"])
                if b.name not in names:
                    names.append(b.name)
            elif "not compared" in n:
                notes.setdefault(n, []).append(b.name)
        lines += [f"{b.name}: {x['artifact']}: {x['sentence']}" for x in d.get("latency_decisions", [])]
    for model, (arts, names) in baselines.items():
        lines.append(f"{_boards(names)}: new latency baseline for {', '.join(arts)} of {model} (no earlier release of "
                     "this model, precision and recipe there; lineages in the rollout report): the gate compares from the next deploy")
    lines += [f"{_boards(names)}: {text}" for text, names in notes.items()]
    return lines


def rollback_fleet(profile: "TargetProfile", artifacts: Any, boards: Sequence["Board"], *, hosts: str | None = None,
                   groups: str | None = None, parallel: int | None = None,
                   transport_factory: Callable[["Board"], "Transport"] | None = None,
                   stream: TextIO | None = None) -> fleet.RolloutResult:
    """``doit rollback target=T [hosts=...]``: the selected boards back to their previous release, all at once."""
    fd = FleetDeploy(profile, boards, transport_factory=transport_factory)
    selected = fleet.select_boards(fd.refs(), hosts, groups)
    out = stream if stream is not None else sys.stderr
    progress = _progress(out, f"{profile.name} rollback")
    result = fleet.rollback(selected, fd.rollback_one, target=profile.name,
                            parallel=parallel if parallel is not None else profile.deploy.parallel,
                            progress=progress, rollouts_dir=fleet.rollouts_dir(artifacts, profile.name))
    progress.finish()
    lines = [result.table()]
    for b in result.boards:
        if b.status == "done":
            lines.append(f"{b.name}: rolled back {b.details.get('from_release')} -> {b.details.get('to_release')}")
    out.write("\n".join(lines) + f"\nrollback report: {result.report_path}\n")
    out.flush()
    return result

# --------------------------------------------------------------------------
# the bench step (the deploy's health-gate input, and `doit bench`)
# --------------------------------------------------------------------------
def _shares_this_machine(board: "Board") -> bool:
    return board.transport == "local" or board.host in ("localhost", "::1") or (board.host or "").startswith("127.")


def bench_hook(project: "ProjectConfig", profile: "TargetProfile", *, quiet: bool = True,
               artifact: str | None = None, store: "ResultStore | None" = None) -> BenchFn:
    """The on-board benchmark as a rollout step: run it on the session's release, store the results, apply
    the target's gates, and return measure's one ``Verdict`` (``measure/verdict.verdict_of``) instead of
    failing the board: a board whose release is installed but fails its checks is ``unhealthy`` and halts
    the rollout. ``doit bench`` and the deploy's gate read the same verdict.

    Boards on this machine (the local target, emulated boards on loopback) are benchmarked one at a
    time: run together they would share its cores and measure each other. Real boards run in parallel.
    ``quiet=False`` prints the benchmark's progress lines (``doit bench``); ``store`` defaults to the
    project's ``artifacts/results.sqlite``."""
    from ..measure.bench import BoardBench, bench_boards, store_path
    from ..measure.gates import accuracy_floors
    from ..core.results import ResultStore
    from ..measure.verdict import verdict_of

    one_at_a_time = threading.Lock()
    store = store or ResultStore(store_path(project))

    def check(session: "BoardSession") -> "Verdict":
        board = session.board
        with one_at_a_time if _shares_this_machine(board) else contextlib.nullcontext():
            [result] = bench_boards(
                [BoardBench(board.name, session.transport, session.release_dir, board.python, session.facts)],
                target=profile.name, store=store, accuracy=accuracy_floors(project, profile), artifact=artifact,
                max_latency_regression=profile.gates.max_latency_regression, confirm=profile.gates.confirm,
                **({"progress": lambda _msg: None} if quiet else {}))
        # an output check is required wherever one can run: the release ships verification inputs (every runtime
        # has one: the runner, trtexec --loadInputs/--exportOutput, snpe-net-run's outputs)
        return verdict_of(result, release_id=session.release_id,
                          require_output_check=profile.bench.verify_samples > 0,
                          max_latency_regression=profile.gates.max_latency_regression)

    return check


# --------------------------------------------------------------------------
# the API for scripts, benchmarks and tests: the same rollout, every board in one wave
# --------------------------------------------------------------------------
def _all_at_once(fd: FleetDeploy, release_id: str, step: fleet.DeployOne, parallel: int,
                 check_release: bool = True) -> list[fleet.BoardOutcome]:
    """``fleet.rollout`` with one wave, no gate, no halt, no display and no report file; outcomes in board order."""
    refs = fd.refs()
    try:
        result = fleet.rollout(refs, release_id, step, target=fd.profile.name, waves=["100%"], max_fail="100%",
                               parallel=parallel, health_gate=None, check_release=check_release)
    finally:
        fd.close()
    return [result.outcomes[r.name] for r in refs]


def deploy_target(project: "ProjectConfig", profile: "TargetProfile", boards: Sequence["Board"], *,
                  release: "Release | None" = None, after_switch: BenchFn | None = None,
                  transport_factory: Callable[["Board"], "Transport"] | None = None,
                  progress: Callable[[str, int, int], None] | None = None,
                  full_verify: bool = False) -> list[fleet.BoardOutcome]:
    """Render the target's release (unless given) and deploy it to ``boards`` (``profile.deploy.parallel`` at a time).

    One board failing never stops the others; each board's outcome says what
    happened. ``after_switch`` runs on each board right after its switch (a
    ``UserError`` from it fails that board); ``progress(path, done, total)``
    sees every object sent; ``full_verify`` re-hashes every object even when
    the release is already current and intact."""
    from ..ship.manifest import make_release

    release = release or make_release(project, profile)
    fd = FleetDeploy(profile, boards, release, project_name=release.manifest["project"], transport_factory=transport_factory,
                     bench=after_switch, full_verify=full_verify, progress=progress)
    return _all_at_once(fd, release.release_id, fd.deploy_one, profile.deploy.parallel)


def rollback_target(profile: "TargetProfile", boards: Sequence["Board"], *,
                    transport_factory: Callable[["Board"], "Transport"] | None = None) -> list[fleet.BoardOutcome]:
    """Switch each board back to its previous kept release (no transfer)."""
    fd = FleetDeploy(profile, boards, transport_factory=transport_factory)
    return _all_at_once(fd, "rollback", fd.rollback_one, profile.deploy.parallel, check_release=False)


def bench_target(project: "ProjectConfig", profile: "TargetProfile", boards: Sequence["Board"], *,
                 artifact: str | None = None, store: "ResultStore | None" = None,
                 transport_factory: Callable[["Board"], "Transport"] | None = None) -> list[fleet.BoardOutcome]:
    """``doit bench``: benchmark the release current on each board, store the results, apply the gates.

    Nothing is sent and no board's release changes; the step per board is
    the deploy's own bench step (``bench_hook``), printing its progress."""
    fd = FleetDeploy(profile, boards, transport_factory=transport_factory,
                     bench=bench_hook(project, profile, quiet=False, artifact=artifact, store=store))
    return _all_at_once(fd, "bench", fd.bench_one, profile.deploy.parallel, check_release=False)


def report(outcomes: Sequence[fleet.BoardOutcome], stream: TextIO | None = None) -> bool:
    """Print one line per board (and its warnings); True when every board succeeded."""
    stream = stream or sys.stdout
    for o in outcomes:
        print(o.line(), file=stream)
        for w in o.warnings:
            print(f"     warning: {w}", file=stream)
    return all(o.ok for o in outcomes)


__all__ = ["BenchFn", "FleetDeploy", "bench_hook", "bench_target", "board_ref", "deploy_fleet",
           "deploy_target", "health_gate", "report", "rollback_fleet", "rollback_target"]
