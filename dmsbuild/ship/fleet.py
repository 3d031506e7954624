"""Fleet rollout: one release to many boards, in waves, with health gates.

This module plans and runs a rollout; it does not know how a board is
reached. The per-board deploy is passed in as ``deploy_one(board, sink) ->
BoardOutcome`` and opens its own connection inside the worker thread that
calls it, so no connection (or any other object) is shared across threads.

Semantics (documented in docs/fleet.md):

* **Waves** are *cumulative* shares of the selected fleet: ``[1, "10%",
  "50%", "100%"]`` on 20 boards means "1 board, then up to 2, then up to 10,
  then all 20", i.e. waves of 1, 1, 8 and 10 boards. A percentage rounds up
  (``ceil``) and is at least 1 board; a count is clamped to the fleet; a wave
  that adds no board is dropped; the rollout always ends at 100% (a final wave
  is added when the spec stops short). Boards already on the release count
  towards the cumulative share but are not touched, so a resumed rollout picks
  up where the earlier one stopped.
* **Waves are barriers**: no board of wave *k+1* starts before every board of
  wave *k* has finished and passed the health gate.
* **max_fail** is how many failed boards the rollout tolerates (a count, or a
  percentage of the boards this rollout deploys, rounded down). One more
  failure halts it: no new board starts, boards in flight finish. ``0`` (the
  default) halts at the first failure.
* **Health gate**: a callable run on every board whose deploy succeeded; it
  judges the *release* (verified, output check passed, latency within the
  allowed regression). Any gate failure halts the rollout regardless of
  ``max_fail`` - a bad canary must stop the rollout, a board that is merely
  down need not.
* Boards never started stay on their previous release and are reported as
  ``skipped``; boards already on the release are reported as ``current``.
* Exit code: 0 when every selected board ended ``done`` or ``current``, 1 when
  some board failed but the rollout ran to the end, 2 when it halted.
"""
from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from ..errors import UserError, first_line
from ..core.rollout_spec import (FAILED_STATES, STATES, check_max_fail, check_waves, expand_host_pattern,  # noqa: F401 (re-exported)
                           parse_share, split_hosts)



# --------------------------------------------------------------------------
# the protocols the deploy side implements
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class BoardRef:
    """What the fleet layer needs to know about a board; immutable, safe to hand to a thread."""

    name: str
    host: str
    #: None: the inventory sets no port (ssh config's Port, else 22, decides when connecting)
    port: int | None = 22
    user: str | None = None
    identity_file: str | None = None
    groups: tuple[str, ...] = ()


class Verdict(Protocol):
    """What the rollout reads of measure's one verdict on a board's release (``measure/verdict.Verdict``;
    ship does not import measure): its pass/fail and one-line reason, never its figures."""

    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class ProgressSink(Protocol):
    """Where a deploy reports what it is doing (``progress.FleetProgress`` implements it; thread-safe)."""

    def update(self, board: str, state: str, detail: str = "", *, sent: int | None = None, total: int | None = None) -> None: ...


@dataclass
class BoardOutcome:
    """What happened on one board in a deploy, rollback or bench: the one outcome type of every rollout.

    ``deploy_one`` (``pipeline/deploy.FleetDeploy.deploy_one`` around
    ``release.deploy_board``; a test's fake) returns it. ``ok`` means the
    release is installed, verified (sha256) and ``current`` points to it (a
    rollback: ``current`` points to the previous release; a bench: it ran). A
    step that could not finish returns ``ok=False`` with a one-line
    ``reason`` (or raises ``UserError`` / ``OSError``).
    """

    board: str
    ok: bool
    release_id: str | None = None
    reason: str | None = None
    #: bytes actually sent (0 when every object was already on the board)
    bytes_sent: int = 0
    #: seconds per phase, e.g. {"connect": 0.1, "send": 2.3, "verify": 0.2, "bench": 4.0}
    timings: dict[str, float] = field(default_factory=dict)
    #: every file's sha256 matched the manifest on the board
    verified: bool = False
    #: the on-board output check vs the host reference; None when not run
    output_check: bool | None = None
    #: median latency of the release's primary artifact on this board (ms); None when not benchmarked
    latency_ms: float | None = None
    #: the same measure for the board's previous release, when known
    previous_latency_ms: float | None = None
    #: free-form, JSON-able facts the deploy wants in the rollout report
    details: dict[str, Any] = field(default_factory=dict)
    #: deployed | unchanged | repaired | rolled back | benchmarked | failed
    action: str = ""
    #: the release ``current`` pointed to before (a rollback: the release it left)
    previous: str | None = None
    objects_sent: int = 0
    #: objects (and their bytes) the board fetched from relay boards or a mirror instead
    objects_fetched: int = 0
    bytes_fetched: int = 0
    #: the whole step's wall time on this board
    seconds: float = 0.0
    #: the board's facts (arch, OS, runtimes) as the deploy gathered them
    facts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the route actually used (address, port, user, jump chain), as OpenSSH resolved it; None for a local folder
    route: dict[str, Any] | None = None
    #: the gate's verdict recorded on the board ("passed" | "failed"); None: not judged there (no gate, or not recorded)
    verdict: str | None = None
    #: measure's one verdict on the benchmark run after the switch (``measure/verdict.Verdict``); the health gate
    #: reads it and never re-judges its figures; None: not benchmarked
    bench_verdict: Verdict | None = None

    @property
    def message(self) -> str:
        """The reason as text ('' when the board succeeded)."""
        return self.reason or ""

    def line(self) -> str:
        """One line for a person: what happened on the board."""
        if not self.ok:
            return f"FAIL {self.board}: {self.message}"
        if self.action == "rolled back":
            return f"ok   {self.board}: rolled back {self.previous} -> {self.release_id} ({self.seconds:.2f} s)"
        if self.action == "benchmarked":
            return f"ok   {self.board}: benchmarked {self.release_id} ({self.seconds:.2f} s)"
        sent = f"{self.objects_sent} object(s), {self.bytes_sent / 1e6:.1f} MB sent" if self.objects_sent else "nothing sent"
        return f"ok   {self.board}: {self.action} {self.release_id} ({sent}, {self.seconds:.2f} s)"


@dataclass(frozen=True)
class GateResult:
    ok: bool
    reason: str | None = None


DeployOne = Callable[[BoardRef, ProgressSink], BoardOutcome]
HealthGate = Callable[[BoardRef, BoardOutcome], GateResult]
CurrentRelease = Callable[[BoardRef], "str | None"]


def standard_gate(max_latency_regression: float | None = 1.25, require_output_check: bool = True) -> HealthGate:
    """The default health gate: verified, output check passed, latency within the allowed regression.

    ``max_latency_regression`` is a ratio (1.25: at most 25 % slower than the
    board's previous release); None switches the latency check off. An outcome
    that carries measure's verdict (``bench_verdict``) is judged by it alone:
    the output and latency rules below are for steps that measured nothing
    themselves (a script's or a test's ``deploy_one`` filling the fields).
    """

    def gate(board: BoardRef, outcome: BoardOutcome) -> GateResult:
        if not outcome.verified:
            return GateResult(False, "release not verified on the board (sha256)")
        if outcome.bench_verdict is not None:  # judged once, by measure: read, never re-judged
            return GateResult(True) if outcome.bench_verdict.ok else GateResult(False, outcome.bench_verdict.reason)
        if outcome.output_check is False:
            return GateResult(False, "output check vs the host reference failed")
        if outcome.output_check is None and require_output_check:
            return GateResult(False, "no output check result")
        if (
            max_latency_regression is not None
            and outcome.latency_ms is not None
            and outcome.previous_latency_ms
            and outcome.latency_ms > outcome.previous_latency_ms * max_latency_regression
        ):
            ratio = outcome.latency_ms / outcome.previous_latency_ms
            return GateResult(
                False,
                f"latency {outcome.latency_ms:.2f} ms is {ratio:.2f}x the previous release's "
                f"{outcome.previous_latency_ms:.2f} ms (allowed {max_latency_regression:.2f}x)",
            )
        return GateResult(True)

    return gate


# --------------------------------------------------------------------------
# wave and max_fail specs
# --------------------------------------------------------------------------
def wave_sizes(waves: Sequence[int | str], n: int, already: int = 0) -> list[int]:
    """Sizes of the waves that deploy ``n - already`` boards out of a fleet of ``n``.

    Cumulative targets are computed over ``n`` (the whole selection); boards
    already on the release fill the first targets. Empty waves are dropped, a
    final wave is added if the spec stops short of the fleet.
    """
    check_waves(waves)
    if n < 0 or already < 0 or already > n:
        raise ValueError(f"bad fleet size n={n}, already={already}")  # a bug in the caller
    sizes: list[int] = []
    reached = already
    for i, w in enumerate(waves):
        kind, v = parse_share(w, f"deploy.waves[{i}]")
        target = min(n, int(v)) if kind == "count" else min(n, max(1, math.ceil(v * n / 100 - 1e-9)))
        if target > reached:
            sizes.append(target - reached)
            reached = target
    if reached < n:
        sizes.append(n - reached)
    return sizes


def max_fail_count(max_fail: int | str, n: int) -> int:
    """How many failed boards a rollout of ``n`` boards tolerates (percent rounds down)."""
    kind, v = parse_share(max_fail, "deploy.max_fail")
    if kind == "count":
        return int(v)
    return math.floor(v * n / 100 + 1e-9)


# --------------------------------------------------------------------------
# selection: hosts= and groups=
# --------------------------------------------------------------------------
def select_boards(boards: Sequence[BoardRef], hosts: str | None = None, groups: str | None = None) -> list[BoardRef]:
    """The boards named by ``hosts=`` (names, globs ``rpi5-0*``, ranges ``rpi5-[01:05]``) and ``groups=``.

    Both are comma-separated; a board must match both when both are given.
    A name or group that matches nothing is a user error (a typo must not
    silently deploy to fewer boards than intended). Inventory order is kept.
    """
    selected = list(boards)
    if groups:
        wanted = [g.strip() for g in groups.split(",") if g.strip()]
        known = sorted({g for b in boards for g in b.groups})
        unknown = [g for g in wanted if g not in known]
        if unknown:
            raise UserError(
                f"groups={groups}: no board is in group(s) {', '.join(unknown)}; known groups: {', '.join(known) or 'none'}",
                hint="check the group names in the inventory",
            )
        selected = [b for b in selected if set(b.groups) & set(wanted)]
    if hosts:
        patterns: list[str] = []
        for part in split_hosts(hosts):
            patterns.extend(expand_host_pattern(part, where=f"hosts={hosts}"))
        names = {b.name for b in selected}
        missing = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if missing:
            shown = ", ".join(sorted(names)[:20]) + (" ..." if len(names) > 20 else "")
            raise UserError(
                f"hosts={hosts}: no selected board matches {', '.join(missing[:10])}; boards: {shown or 'none'}",
                hint="use inventory board names, globs (rpi5-0*) or ranges (rpi5-[01:05])",
            )
        selected = [b for b in selected if any(fnmatch.fnmatchcase(b.name, p) for p in patterns)]
    return selected


# --------------------------------------------------------------------------
# running a rollout
# --------------------------------------------------------------------------
@dataclass
class BoardReport:
    """One board's line in the rollout report."""

    name: str
    host: str
    port: int | None
    groups: list[str]
    status: str = "waiting"
    wave: int | None = None
    reason: str | None = None
    release_before: str | None = None
    bytes_sent: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    started: float | None = None  # seconds since the rollout started
    wall_s: float | None = None
    verified: bool | None = None
    output_check: bool | None = None
    latency_ms: float | None = None
    previous_latency_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutResult:
    target: str
    release_id: str
    started_at: str
    wall_s: float
    parallel: int
    waves_spec: list[int | str]
    wave_sizes: list[int]
    max_fail: int
    halted: bool
    halt_reason: str | None
    boards: list[BoardReport]
    report_path: Path | None = None
    #: board -> what its step returned (the API's answer; the JSON report has the BoardReports)
    outcomes: dict[str, BoardOutcome] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for b in self.boards if b.status == status)

    @property
    def failed(self) -> list[BoardReport]:
        return [b for b in self.boards if b.status in FAILED_STATES]

    @property
    def exit_code(self) -> int:
        if self.halted:
            return 2
        return 1 if self.failed else 0

    def summary(self) -> dict[str, int]:
        return {s: self.count(s) for s in ("done", "current", "failed", "unhealthy", "skipped")}

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "target": self.target,
            "release_id": self.release_id,
            "started_at": self.started_at,
            "wall_s": round(self.wall_s, 3),
            "parallel": self.parallel,
            "waves": self.waves_spec,
            "wave_sizes": self.wave_sizes,
            "max_fail": self.max_fail,
            "halted": self.halted,
            "halt_reason": self.halt_reason,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "bytes_sent": sum(b.bytes_sent for b in self.boards),
            "boards": [asdict(b) for b in self.boards],
        }

    def table(self) -> str:
        """The final table printed after a rollout."""
        rows = [("board", "status", "wave", "MB sent", "time s", "reason")]
        for b in self.boards:
            rows.append((
                b.name, b.status, "-" if b.wave is None else str(b.wave),
                f"{b.bytes_sent / 1e6:.1f}", "-" if b.wall_s is None else f"{b.wall_s:.1f}",
                (b.reason or "")[:80],
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + ("  " + r[5] if r[5] else "") for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        s = self.summary()
        tail = (f"release {self.release_id} on {self.target}: {s['done']} done, {s['current']} already current, "
                f"{s['failed']} failed, {s['unhealthy']} unhealthy, {s['skipped']} skipped; "
                f"{sum(b.bytes_sent for b in self.boards) / 1e6:.1f} MB sent in {self.wall_s:.1f} s")
        if self.halted:
            tail += f"\nHALTED: {self.halt_reason}"
        return "\n".join(lines + [tail])

    def write(self, rollouts_dir: Path) -> Path:
        """Write the JSON report as ``<rollouts_dir>/<release>-<time>.json`` (atomically)."""
        rollouts_dir.mkdir(parents=True, exist_ok=True)
        stamp = self.started_at.replace("-", "").replace(":", "")
        path = rollouts_dir / f"{self.release_id}-{stamp}.json"
        n = 1
        while path.exists():  # two rollouts in the same second
            path = rollouts_dir / f"{self.release_id}-{stamp}-{n}.json"
            n += 1
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        tmp.replace(path)
        self.report_path = path
        return path


class _NullSink:
    def update(self, board: str, state: str, detail: str = "", *, sent: int | None = None, total: int | None = None) -> None:
        pass

    def wave(self, index: int, total: int, size: int) -> None:
        pass


@contextmanager
def _ctrl_c_flag() -> Iterator[threading.Event]:
    """Ctrl-C during a rollout sets a flag the rollout loop acts on; a second Ctrl-C raises at once.

    The default handler raises KeyboardInterrupt wherever the main thread is, and Python ignores an
    exception raised inside a finalizer ("Exception ignored in ... __del__"): a Ctrl-C that landed
    while the garbage collector ran, say, a paramiko client's __del__ was lost and the rollout went
    on. A flag cannot be lost. Installed only from the main thread over the default handler (an
    application's own SIGINT handler is left alone)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield flag
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def rollout(
    boards: Sequence[BoardRef],
    release_id: str,
    deploy_one: DeployOne,
    *,
    target: str,
    waves: Sequence[int | str] = ("100%",),
    max_fail: int | str = 0,
    parallel: int = 8,
    health_gate: HealthGate | None = None,
    current_release: CurrentRelease | None = None,
    progress: ProgressSink | None = None,
    board_errors: tuple[type[BaseException], ...] = (UserError, OSError),
    rollouts_dir: Path | None = None,
    check_release: bool = True,
    clock: Callable[[], float] = time.monotonic,
    revert: DeployOne | None = None,
) -> RolloutResult:
    """Roll ``release_id`` out to ``boards`` in waves; return (and write) the rollout report.

    ``revert(board, sink)``, when given, is called for a board that fails
    its health gate (a rollback to its previous release, no transfer); the
    board stays ``unhealthy`` in the report, with the outcome in its reason
    and ``details["rolled_back_to"]``.

    ``current_release(board)`` is a cheap check of the release a board runs
    (run in the pool before planning; an error there just means "unknown", so
    the board is deployed). ``board_errors`` are the exceptions from
    ``deploy_one`` that mean "this board failed" (the SSH adapter adds its
    library's exception); any other exception is a bug: no new board starts,
    the report is written, and the exception propagates. Ctrl-C does the
    same: boards in flight finish (a deploy is never cut off half-way), the
    report says "interrupted", and KeyboardInterrupt propagates.
    """
    if parallel < 1:
        raise UserError(f"parallel={parallel}: expected at least 1 board at a time")
    check_waves(waves)
    names = [b.name for b in boards]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"rollout of {release_id}: board(s) listed twice: {', '.join(dupes)}", hint="fix the inventory or the hosts= selection")
    sink: Any = progress if progress is not None else _NullSink()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = clock()
    reports = {b.name: BoardReport(b.name, b.host, b.port, list(b.groups)) for b in boards}
    for b in boards:
        sink.update(b.name, "waiting")

    halted = False
    halt_reason: str | None = None
    bug: BaseException | None = None
    outcomes: dict[str, BoardOutcome] = {}

    with _ctrl_c_flag() as ctrl_c, cf.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="board") as pool:
        # 1. which boards already run the release (resume)
        todo: list[BoardRef] = list(boards)
        if current_release is not None:
            checks = {pool.submit(_safe_current, current_release, b, board_errors): b for b in boards}
            for fut in cf.as_completed(checks):
                b = checks[fut]
                reports[b.name].release_before = fut.result()
            todo = [b for b in boards if reports[b.name].release_before != release_id]
            for b in boards:
                if reports[b.name].release_before == release_id:
                    reports[b.name].status = "current"
                    reports[b.name].reason = "already on the release; not touched"
                    sink.update(b.name, "current")
        already = len(boards) - len(todo)
        sizes = wave_sizes(waves, len(boards), already) if boards else []
        tolerated = max_fail_count(max_fail, len(todo))

        # 2. the waves, each a barrier
        state = {"failures": 0}
        running: dict[cf.Future[tuple[BoardOutcome, float]], tuple[BoardRef, int]] = {}

        def record(fut: cf.Future[tuple[BoardOutcome, float]]) -> None:
            """Account for one finished board (main thread only); sets the halt state."""
            nonlocal halted, halt_reason, bug
            b, wi = running[fut]
            rep = reports[b.name]
            try:
                outcome, wall = fut.result()
            except board_errors as exc:
                outcome, wall = BoardOutcome(b.name, False, reason=first_line(exc)), None
            except BaseException as exc:  # a bug in deploy_one: stop starting, report, re-raise
                bug = bug or exc
                halted, halt_reason = True, f"internal error on {b.name}: {type(exc).__name__}: {first_line(exc)}"
                rep.status, rep.reason = "failed", halt_reason
                sink.update(b.name, "failed", rep.reason)
                del running[fut]
                return
            outcomes[b.name] = outcome
            _fill(rep, outcome, wall)
            if check_release and outcome.ok and outcome.release_id not in (None, release_id):
                outcome.ok = False
                outcome.reason = f"deploy reported release {outcome.release_id}, expected {release_id}"
            if not outcome.ok:
                rep.status = "failed"
                rep.reason = outcome.reason or "deploy failed (no reason given)"
                state["failures"] += 1
                sink.update(b.name, "failed", rep.reason)
                if state["failures"] > tolerated and not halted:
                    halted = True
                    halt_reason = f"{state['failures']} board(s) failed, more than max_fail={max_fail} ({tolerated} tolerated)"
            else:
                verdict = health_gate(b, outcome) if health_gate is not None else GateResult(True)
                if verdict.ok:
                    rep.status = "done"
                    sink.update(b.name, "done")
                else:
                    rep.status = "unhealthy"
                    rep.reason = f"health gate: {verdict.reason or 'failed'}"
                    state["failures"] += 1
                    if revert is not None:
                        rep.reason += _revert(revert, b, rep, sink, board_errors)
                    sink.update(b.name, "unhealthy", rep.reason)
                    if not halted:
                        halted = True
                        halt_reason = f"health gate failed on {b.name} in wave {wi}: {verdict.reason or 'failed'}"
            del running[fut]

        try:
            pos = 0
            for wi, size in enumerate(sizes, start=1):
                wave = todo[pos:pos + size]
                pos += size
                if halted:
                    break
                if hasattr(sink, "wave"):
                    sink.wave(wi, len(sizes), len(wave))
                pending = list(wave)
                while pending or running:
                    while pending and not halted and not ctrl_c.is_set() and len(running) < parallel:
                        b = pending.pop(0)
                        rep = reports[b.name]
                        rep.wave, rep.status = wi, "connecting"
                        rep.started = round(clock() - t0, 3)
                        sink.update(b.name, "connecting")
                        running[pool.submit(_timed, deploy_one, b, sink, clock)] = (b, wi)
                    if not running:
                        break
                    done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        record(fut)
                if halted:
                    break
            if ctrl_c.is_set():  # no board started after it; the ones in flight have finished
                raise KeyboardInterrupt
        except KeyboardInterrupt as exc:  # Ctrl-C: start nothing new, let boards in flight finish
            bug = bug or exc
            halted, halt_reason = True, "interrupted (Ctrl-C): boards in flight finished, the rest untouched"
            for fut in cf.as_completed(list(running)):  # a second Ctrl-C leaves at once
                if fut in running:
                    record(fut)

    for rep in reports.values():
        if rep.status == "connecting":  # interrupted between picking the board and starting its deploy
            rep.status = "failed"
            rep.reason = "interrupted while its deploy started; state unknown, rerun to resume"
            sink.update(rep.name, "failed", rep.reason)
        if rep.status == "waiting":
            rep.status = "skipped"
            rep.reason = "not started: rollout halted; board left on its previous release"
            sink.update(rep.name, "skipped")
    result = RolloutResult(
        target=target, release_id=release_id, started_at=started_at, wall_s=clock() - t0,
        parallel=parallel, waves_spec=list(waves), wave_sizes=sizes, max_fail=tolerated,
        halted=halted, halt_reason=halt_reason, boards=[reports[b.name] for b in boards], outcomes=outcomes,
    )
    if rollouts_dir is not None:
        result.write(rollouts_dir)
    if bug is not None:
        raise bug
    return result


def _timed(deploy_one: DeployOne, board: BoardRef, sink: ProgressSink, clock: Callable[[], float]) -> tuple[BoardOutcome, float]:
    t = clock()
    outcome = deploy_one(board, sink)
    return outcome, clock() - t


def _revert(revert: DeployOne, board: BoardRef, rep: BoardReport, sink: ProgressSink,
            errors: tuple[type[BaseException], ...]) -> str:
    """Roll an unhealthy board back (main thread; the rollout halts anyway); the text to add to its reason."""
    sink.update(board.name, "unhealthy", "failed its health gate; rolling back")
    try:
        back = revert(board, sink)
    except errors as exc:
        back = BoardOutcome(board.name, False, reason=first_line(exc))
    if back.ok:
        rep.details["rolled_back_to"] = back.release_id
        skipped = back.details.get("skipped_failed")
        past = f" (past {', '.join(skipped)}, which failed its gate here)" if skipped else ""
        if back.release_id is None:  # a first deploy, or every earlier release failed: none stays current
            return (f"; no earlier release passed its gate here{past}: current removed, the board runs no release "
                    "(a failing release never stays current; the next deploy that passes makes one current)")
        return f"; rolled back to {back.release_id}{past}"
    why = rep.details["rollback_failed"] = back.reason or "no reason given"
    return f"; rollback failed ({why}): the new release stays installed"


def _safe_current(fn: CurrentRelease, board: BoardRef, errors: tuple[type[BaseException], ...]) -> str | None:
    try:
        return fn(board)
    except errors:
        return None  # unknown: the board gets deployed, which is always safe


def _fill(rep: BoardReport, o: BoardOutcome, wall: float | None) -> None:
    rep.bytes_sent = o.bytes_sent
    rep.timings = {k: round(v, 3) for k, v in o.timings.items()}
    rep.wall_s = None if wall is None else round(wall, 3)
    rep.verified = o.verified
    rep.output_check = o.output_check
    rep.latency_ms = o.latency_ms
    rep.previous_latency_ms = o.previous_latency_ms
    rep.details = dict(o.details)
    route = o.details.get("route")
    if route:  # the address and port actually used (an alias resolved by ssh -G), not the inventory's words
        rep.host, rep.port = route["address"], route["port"]


def rollouts_dir(artifacts: Path, target: str) -> Path:
    """``artifacts/<target>/rollouts``: where rollout reports go."""
    return artifacts / target / "rollouts"


def rollout_target(
    profile: Any,
    artifacts: Path,
    boards: Sequence[BoardRef],
    release_id: str,
    deploy_one: DeployOne,
    *,
    hosts: str | None = None,
    groups: str | None = None,
    parallel: int | None = None,
    current_release: CurrentRelease | None = None,
    board_errors: tuple[type[BaseException], ...] = (UserError, OSError),
    stream: Any = None,
    health_gate: HealthGate | None = None,
    revert: DeployOne | None = None,
) -> RolloutResult:
    """A target's rollout as ``doit deploy target=T hosts=... groups=... parallel=N`` runs it.

    Takes waves, max_fail, parallel and the latency gate from the target
    profile (``config.TargetProfile``; ``health_gate`` replaces the standard
    gate built from it), shows live progress on ``stream``
    (stderr by default), writes the report under
    ``artifacts/<target>/rollouts/`` and prints the final table. The caller
    turns ``exit_code`` into the task's failure. ``revert`` is used on a board
    that fails its health gate when the profile's ``deploy.on_unhealthy`` is
    ``"rollback"`` (the default).
    """
    import sys

    from .progress import FleetProgress

    selected = select_boards(boards, hosts, groups)
    if not selected:
        raise UserError(
            f"target {profile.name}: no boards to deploy to",
            hint=f"add boards of group '{profile.deploy.group or profile.name}' to {profile.deploy.inventory}",
        )
    out = stream if stream is not None else sys.stderr
    progress = FleetProgress(out, title=f"{profile.name} {release_id}")
    result = rollout(
        selected, release_id, deploy_one, target=profile.name,
        waves=profile.deploy.waves, max_fail=profile.deploy.max_fail,
        parallel=parallel if parallel is not None else profile.deploy.parallel,
        health_gate=health_gate if health_gate is not None else standard_gate(profile.gates.max_latency_regression),
        current_release=current_release, progress=progress, board_errors=board_errors,
        rollouts_dir=rollouts_dir(artifacts, profile.name),
        revert=revert if profile.deploy.on_unhealthy == "rollback" else None,
    )
    progress.finish()
    warnings = [f"warning: {b.name}: {w}" for b in result.boards for w in b.details.get("warnings", [])]
    out.write("\n".join([result.table(), *warnings]) + f"\nrollout report: {result.report_path}\n")
    out.flush()
    return result


def rollback(
    boards: Sequence[BoardRef],
    rollback_one: DeployOne,
    *,
    target: str,
    parallel: int = 8,
    progress: ProgressSink | None = None,
    board_errors: tuple[type[BaseException], ...] = (UserError, OSError),
    rollouts_dir: Path | None = None,
) -> RolloutResult:
    """``doit rollback``: every selected board back to its previous release, at once.

    A rollback is the way out of a bad release, so it has no waves, no health
    gate and no failure threshold: it reaches every board it can, and reports
    the ones it could not (exit code 1). ``rollback_one`` switches one board's
    ``current`` back (content addressing makes that cost no transfer) and
    returns the outcome with the release it switched to in ``release_id``.
    The report is ``rollback-<time>.json`` next to the rollout reports.
    """
    return rollout(
        boards, "rollback", rollback_one, target=target, waves=["100%"], max_fail="100%", parallel=parallel,
        health_gate=None, progress=progress, board_errors=board_errors, rollouts_dir=rollouts_dir,
        check_release=False,
    )
