"""Putting a release on boards, atomically, and rolling it back.

Per board: connect, gather facts (arch check), take the board lock (it names
its holder: host, pid, time; it is an flock held by a process that lives as
long as our connection, so a killed deploy never leaves a stale lock), find
which objects the board lacks, upload only those to temporary names (resuming
partial uploads by offset), then one board-side ``commit`` verifies every
object's sha256, stages ``releases/<id>`` as hardlinks, runs ``sync`` and
switches ``current`` with one rename. Old releases beyond ``keep_releases``
and objects no release links are collected. All board-side work is done by
``release_agent.py`` run with the board's Python; every command is an
argument list (``join_argv``), every path stays below the deploy root.

``deploy_target`` deploys to many boards in parallel (one connection per
board); one board failing never stops the others. ``after_switch`` is the hook
where the on-board benchmark runs, with the board's open transport.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import ProjectConfig, TargetProfile
from .errors import UserError
from .inventory import Board
from .manifest import Release, service_unit
from .transport.base import Transport

AGENT_SOURCE = (Path(__file__).resolve().parent / "release_agent.py").read_text()
AGENT_EXIT_LOCKED = 3


@dataclass
class BoardOutcome:
    """What happened on one board (one line of the deploy's output)."""

    board: str
    ok: bool
    action: str  # deployed | unchanged | rolled back | failed
    release_id: str | None = None
    previous: str | None = None
    bytes_sent: int = 0
    objects_sent: int = 0
    seconds: float = 0.0
    message: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        if not self.ok:
            return f"FAIL {self.board}: {self.message}"
        if self.action == "rolled back":
            return f"ok   {self.board}: rolled back {self.previous} -> {self.release_id} ({self.seconds:.2f} s)"
        sent = f"{self.objects_sent} object(s), {self.bytes_sent / 1e6:.1f} MB sent" if self.objects_sent else "nothing sent"
        return f"ok   {self.board}: {self.action} {self.release_id} ({sent}, {self.seconds:.2f} s)"


@dataclass
class BoardSession:
    """Handed to the ``after_switch`` hook: the board, its open transport and what was deployed."""

    board: Board
    transport: Transport
    root: str
    release: Release
    facts: dict[str, Any]

    @property
    def release_dir(self) -> str:
        return f"{self.root}/releases/{self.release.release_id}"


AfterSwitch = Callable[[BoardSession], None]
#: ``state(name, info)``: the deploy entered a phase ("connecting", "sending" with info {"objects", "bytes",
#: "to_send"}, "verifying", "benchmarking"); the fleet rollout shows it per board
StateCallback = Callable[[str, dict[str, Any]], None]


def holder() -> dict[str, Any]:
    """Who holds a board lock: shown to a second deploy that is blocked."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "user": os.environ.get("USER", ""),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def resolve_root(transport: Transport, board: Board, profile: TargetProfile) -> str:
    """The board's deploy root as an absolute path ('~' is the board user's home, asked of the board)."""
    root = board.deploy_root(profile)
    if not root.startswith("~"):
        return root
    res = transport.run([board.python, "-c", "import os, sys; print(os.path.expanduser(sys.argv[1]))", root], timeout=60)
    expanded = res.stdout.strip()
    if not res.ok or not expanded.startswith("/"):
        raise UserError(f"board '{board.name}': cannot expand the deploy root {root}: {res.stderr_tail(2)}",
                        hint="use an absolute deploy root")
    return expanded


def agent(transport: Transport, python: str, op: str, request: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run one release-agent op on the board; a failure is a UserError naming the board."""
    res = transport.run([python, "-c", AGENT_SOURCE, op], stdin=json.dumps(request).encode(), timeout=timeout)
    if not res.ok:
        raise UserError(f"board '{transport.name}': {op} failed: {res.stderr_tail(2) or f'exit {res.exit_status}'}")
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        raise UserError(f"board '{transport.name}': {op} printed no JSON: {res.stdout[-200:]!r} {res.stderr_tail(2)}") from None


class BoardLock:
    """The board's deploy lock, held by a board process for as long as our connection lives."""

    def __init__(self, transport: Transport, python: str, root: str, objects: list[str] | None = None) -> None:
        self.transport, self.python, self.root = transport, python, root
        self.objects = objects
        self.proc = None
        #: the board's state (what ``prepare`` reports), when ``objects`` were given
        self.state: dict[str, Any] = {}

    def __enter__(self) -> "BoardLock":
        return self.acquire()

    def acquire(self) -> "BoardLock":
        self.proc = self.transport.spawn([self.python, "-c", AGENT_SOURCE, "lock"])
        # the request is one line; stdin stays open (that is the lock)
        request: dict[str, Any] = {"root": self.root, "holder": holder()}
        if self.objects is not None:
            request["objects"] = self.objects
        self.proc.send((json.dumps(request) + "\n").encode())
        answer = self.proc.readline(timeout=60).strip()
        if answer.startswith("locked"):
            self.state = json.loads(answer[len("locked"):] or "{}")
            return self
        res = self.proc.finish()
        self.proc = None
        if answer.startswith("held "):
            try:
                h = json.loads(answer[5:])
            except json.JSONDecodeError:
                h = {}
            raise UserError(
                f"board '{self.transport.name}': another deploy holds the lock {self.root}/.lock: "
                f"host {h.get('host', '?')} pid {h.get('pid', '?')} user {h.get('user', '?')} since {h.get('time', '?')}",
                hint="wait for it to finish; the lock is released when that deploy ends or its connection drops",
            )
        raise UserError(f"board '{self.transport.name}': cannot take the lock: {res.stderr_tail(2) or answer or 'no answer'}")

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.proc is not None:
            self.proc.finish(timeout=10)
            self.proc = None


def push(transport: Transport, board: Board, root: str, release: Release, *, keep: int, project_name: str,
         progress: Callable[[str, int, int], None] | None = None, prepared: dict[str, Any] | None = None,
         full_verify: bool = False, on_state: StateCallback | None = None) -> tuple[dict[str, Any], int, int]:
    """Send what the board lacks, verify, stage, switch. Returns (commit answer, bytes sent, objects sent)."""
    py = board.python
    objects = {f.sha256: f for f in release.files}
    state = prepared or agent(transport, py, "prepare", {"root": root, "objects": sorted(objects)})
    need = [f for sha, f in objects.items() if sha not in set(state["have"])]
    need_bytes = sum(f.size - state["partial"].get(f.sha256, 0) for f in need)
    if need_bytes > state["free_bytes"]:
        raise UserError(f"board '{board.name}': {need_bytes / 1e6:.1f} MB to send but only {state['free_bytes'] / 1e6:.1f} MB free under {root}")
    if on_state is not None:
        on_state("sending", {"objects": len(need), "bytes": sum(f.size for f in need), "to_send": need_bytes})
    sent = 0
    for f in need:
        offset = state["partial"].get(f.sha256, 0)
        if offset > f.size:
            offset = 0
        remote = f"{root}/objects/.tmp/{f.sha256}.part"
        if offset < f.size:
            before = sent

            def cb(done: int, total: int, _f: Any = f, _base: int = before, _off: int = offset) -> None:
                if progress is not None:
                    progress(_f.path, done, total)

            transport.put(f.local, remote, offset=offset, progress=cb)
        sent += f.size - offset
    if on_state is not None:
        on_state("verifying", {})
    board_files = {"dms.service": service_unit(project_name, release.target, board.name, root, py)}
    answer = agent(transport, py, "commit", {"root": root, "release_id": release.release_id, "files": release.file_list(),
                                              "keep": keep, "board_files": board_files, "full_verify": full_verify})
    return answer, sent, len(need)


def deploy_board(board: Board, profile: TargetProfile, release: Release, *, project_name: str,
                 transport_factory: Callable[[Board], Transport], after_switch: AfterSwitch | None = None,
                 progress: Callable[[str, int, int], None] | None = None, full_verify: bool = False,
                 on_state: StateCallback | None = None) -> BoardOutcome:
    """Deploy ``release`` to one board; never raises for a board problem (the outcome says it).

    ``on_state`` is told each phase as it starts (connecting, sending, verifying, benchmarking)."""
    from . import facts as facts_mod

    t0 = time.perf_counter()
    out = BoardOutcome(board=board.name, ok=False, action="failed", release_id=release.release_id)
    transport = None
    try:
        if on_state is not None:
            on_state("connecting", {})
        transport = transport_factory(board)
        transport.connect()
        root = resolve_root(transport, board, profile)
        # facts on a second channel while the lock is taken (independent; saves a round trip)
        with ThreadPoolExecutor(1) as pool:
            facts_job = pool.submit(facts_mod.gather, transport, board.python, root)
            lock = BoardLock(transport, board.python, root, objects=sorted({f.sha256 for f in release.files}))
            try:
                lock.acquire()
            finally:
                try:
                    out.facts = facts_job.result()  # a facts error wins: it says more than the lock's
                except UserError:
                    lock.release()
                    raise
        try:
            out.warnings += facts_mod.check_arch(board.name, profile.arch, out.facts, release.manifest["artifacts"])
            answer, out.bytes_sent, out.objects_sent = push(
                transport, board, root, release, keep=profile.deploy.keep_releases, project_name=project_name, progress=progress,
                prepared=lock.state, full_verify=full_verify, on_state=on_state)
            out.previous = answer.get("previous")
            out.action = "unchanged" if out.previous == release.release_id else "deployed"
            out.ok = True
            if after_switch is not None:
                if on_state is not None:
                    on_state("benchmarking", {})
                # HOOK: the on-board benchmark runs here, on the new `current`, with the open connection.
                after_switch(BoardSession(board, transport, root, release, out.facts))
        finally:
            lock.release()
    except UserError as exc:
        out.ok = False
        out.action = "failed"
        out.message = str(exc).replace("\n", " ")
    finally:
        if transport is not None:
            transport.close()
        out.seconds = time.perf_counter() - t0
    return out


def rollback_board(board: Board, profile: TargetProfile, *, transport_factory: Callable[[Board], Transport]) -> BoardOutcome:
    """Switch the board's ``current`` back to the previous kept release (no transfer)."""
    t0 = time.perf_counter()
    out = BoardOutcome(board=board.name, ok=False, action="failed")
    transport = None
    try:
        transport = transport_factory(board)
        root = resolve_root(transport, board, profile)
        with BoardLock(transport, board.python, root):
            answer = agent(transport, board.python, "rollback", {"root": root})
        out.ok, out.action = True, "rolled back"
        out.release_id, out.previous = answer["current"], answer["previous"]
    except UserError as exc:
        out.message = str(exc).replace("\n", " ")
    finally:
        if transport is not None:
            transport.close()
        out.seconds = time.perf_counter() - t0
    return out


def open_transport(board: Board) -> Transport:
    """The transport for a board: SSH for inventory boards, a folder for the local target."""
    if board.transport == "local":
        from .transport.local import LocalTransport

        return LocalTransport(board.name)
    from .transport.ssh import SSHTransport  # paramiko is imported only when a board is reached

    return SSHTransport(board)


def _parallel(boards: list[Board], work: Callable[[Board], BoardOutcome], parallel: int) -> list[BoardOutcome]:
    if len(boards) <= 1 or parallel <= 1:
        return [work(b) for b in boards]
    with ThreadPoolExecutor(max_workers=min(parallel, len(boards))) as pool:
        return list(pool.map(work, boards))


def deploy_target(project: ProjectConfig, profile: TargetProfile, boards: list[Board], *, release: Release | None = None,
                  after_switch: AfterSwitch | None = None,
                  transport_factory: Callable[[Board], Transport] = open_transport,
                  progress: Callable[[str, int, int], None] | None = None,
                  full_verify: bool = False) -> list[BoardOutcome]:
    """Render the target's release (unless given) and deploy it to ``boards`` in parallel.

    ``full_verify``: re-hash every object even when the release is already current and intact."""
    from .manifest import make_release

    release = release or make_release(project, profile)
    return _parallel(boards, lambda b: deploy_board(
        b, profile, release, project_name=release.manifest["project"], transport_factory=transport_factory,
        after_switch=after_switch, progress=progress, full_verify=full_verify), profile.deploy.parallel)


def rollback_target(profile: TargetProfile, boards: list[Board], *,
                    transport_factory: Callable[[Board], Transport] = open_transport) -> list[BoardOutcome]:
    return _parallel(boards, lambda b: rollback_board(b, profile, transport_factory=transport_factory), profile.deploy.parallel)


def report(outcomes: list[BoardOutcome], stream: Any = None) -> bool:
    """Print one line per board (and its warnings); True when every board succeeded."""
    stream = stream or sys.stdout
    for o in outcomes:
        print(o.line(), file=stream)
        for w in o.warnings:
            print(f"     warning: {w}", file=stream)
    return all(o.ok for o in outcomes)


__all__ = ["BoardOutcome", "BoardSession", "deploy_target", "rollback_target", "deploy_board", "rollback_board",
           "open_transport", "report"]
