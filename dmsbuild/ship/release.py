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

This module is the per-board step only: ``deploy_board`` / ``rollback_board``
put a release on (or take it off) one board and return the rollout's one
outcome type (``fleet.BoardOutcome``). Many boards, waves, gates, progress and
reports are ``pipeline/deploy`` (``deploy_target``, ``deploy_fleet``, ...) over
``fleet.rollout``: the one orchestration. ``after_switch`` is the hook where
the on-board benchmark runs, with the board's open transport.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..board import source as board_source
from ..config import TargetProfile
from ..errors import UserError, first_line
from ..untrusted import neutralise
from .fleet import BoardOutcome
from .inventory import Board
from .manifest import Release, service_unit
from ..transport import resolve_root
from ..transport.base import Transport

#: the board side of a deploy, sent as ``python3 -c <source>`` (found by module name, wherever it lives)
AGENT_SOURCE = Path(importlib.util.find_spec("dmsbuild.board.release_agent").origin).read_text()
#: ENV (tests only): named fault points, "POINT[:MODE],..." — host.* points act here (MODE kill|pause=SECONDS),
#: the others ride along in the agent's requests (MODE kill|drop|sshd; see release_agent.fault_point).
#: Unset in production: no request carries a fault and every hook is a no-op.
FAULT_ENV = "DMSBUILD_FAULT_AT"
#: seconds a commit (verify + stage + switch + collect) may take before the board counts as hung
COMMIT_TIMEOUT_S = 600.0
#: bytes read from a release file and handed to the transport at a time when streaming an object to the agent
UPLOAD_CHUNK = 1 << 20
#: the agent's "err" code for a full disk while receiving (release_agent.EXIT_NO_SPACE)
EXIT_NO_SPACE = 6


def _faults() -> dict[str, str]:
    spec = os.environ.get(FAULT_ENV, "")
    out = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        point, _, mode = item.partition(":")
        out[point] = mode or "kill"
    return out


def fault_point(name: str) -> None:
    """Test hook on the controller: SIGKILL (or pause) this process at a named step; no-op unless FAULT_ENV names it."""
    mode = _faults().get(name) if FAULT_ENV in os.environ else None
    if mode is None:
        return
    if mode.startswith("pause="):
        time.sleep(float(mode[6:]))
    else:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _with_fault(request: dict[str, Any]) -> dict[str, Any]:
    """Attach the board-side fault named in FAULT_ENV (if any) to an agent request."""
    if FAULT_ENV in os.environ:
        board_faults = [(p, m) for p, m in _faults().items() if not p.startswith("host.")]
        if board_faults:
            return {**request, "fault": {"point": board_faults[0][0], "mode": board_faults[0][1]}}
    return request


@dataclass
class BoardSession:
    """Handed to the ``after_switch`` hook (the on-board benchmark): the board, its open transport and the release.

    After a deploy ``release`` is what was deployed; for ``doit bench`` (the
    release already ``current`` on the board) it is None and ``release_id`` /
    ``release_dir`` say which release runs."""

    board: Board
    transport: Transport
    root: str
    release: Release | None
    facts: dict[str, Any] | None
    release_id: str = ""
    #: the release folder on the board (default ``<root>/releases/<release id>``)
    release_dir: str = ""

    def __post_init__(self) -> None:
        if not self.release_id and self.release is not None:
            self.release_id = self.release.release_id
        if not self.release_dir:
            self.release_dir = f"{self.root}/releases/{self.release_id}"


#: the hook run on the board right after the switch (a benchmark); what it returns is the health gate's input (or None)
AfterSwitch = Callable[[BoardSession], Any]
#: ``state(name, info)``: the deploy entered a phase ("connecting", "sending" with info {"objects", "bytes",
#: "to_send"}, "verifying", "benchmarking"); the fleet rollout shows it per board
StateCallback = Callable[[str, dict[str, Any]], None]


def holder() -> dict[str, Any]:
    """Who holds a board lock: shown to a second deploy that is blocked."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "user": os.environ.get("USER", ""),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def agent(transport: Transport, python: str, op: str, request: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run one release-agent op on the board; a failure is a UserError naming the board."""
    res = transport.run([python, "-c", AGENT_SOURCE, op], stdin=json.dumps(_with_fault(request)).encode(), timeout=timeout)
    if not res.ok:
        raise UserError(f"board '{transport.name}': {op} failed: {res.stderr_tail(2) or f'exit {res.exit_status}'}")
    try:
        return neutralise(json.loads(res.stdout))  # the board's words (release ids, history) are data
    except json.JSONDecodeError:
        raise UserError(f"board '{transport.name}': {op} printed no JSON: {res.stdout[-200:]!r} {res.stderr_tail(2)}") from None


class BoardLock:
    """The board's deploy lock, held by a board process for as long as our connection lives.

    That process also runs the commit / rollback (``call``): they run under the
    lock and, once started, finish under it even if the connection drops, so a
    second deploy can never interleave with a half-done one."""

    def __init__(self, transport: Transport, python: str, root: str, objects: list[str] | None = None,
                 heartbeat_s: float = 20.0, facts_script: str | None = None, doing: str = "deploy") -> None:
        self.transport, self.python, self.root = transport, python, root
        #: what holds the lock, in the words a blocked deploy shows ("deploy", "doit tune")
        self.doing = doing
        self.objects = objects
        #: the board's facts script, run by the lock process (its answer's "facts")
        self.facts_script = facts_script
        self.proc = None
        #: an empty line this often keeps the board's lock; after 3 silent periods the board drops it
        self.heartbeat_s = heartbeat_s
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        #: the board's state (what ``prepare`` reports), when ``objects`` were given
        self.state: dict[str, Any] = {}
        #: objects the board fetched from relays / a mirror in this deploy, and why others could not be fetched
        self.fetched: list[Any] = []
        self.fetch_failures: dict[str, str] = {}

    def __enter__(self) -> "BoardLock":
        return self.acquire()

    def acquire(self, meanwhile: Callable[[], None] | None = None) -> "BoardLock":
        """Take the lock; ``meanwhile`` runs after the request is sent, while the board's agent starts (round
        trips there cost no wall time: the SFTP channel's opening, say)."""
        self.proc = self.transport.spawn([self.python, "-c", AGENT_SOURCE, "lock"])
        # the request is one line; stdin stays open (that is the lock)
        request: dict[str, Any] = {"root": self.root, "holder": {**holder(), "doing": self.doing},
                                   "idle_timeout": 3 * self.heartbeat_s}
        if self.objects is not None:
            request["objects"] = self.objects
        if self.facts_script is not None:
            request["facts_script"] = self.facts_script
        self.proc.send((json.dumps(_with_fault(request)) + "\n").encode())
        if meanwhile is not None:
            meanwhile()
        answer = self.proc.readline(timeout=60).strip()
        if answer.startswith("locked"):
            self.state = neutralise(json.loads(answer[len("locked"):] or "{}"))
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name=f"lock-heartbeat-{self.transport.name}", daemon=True)
            self._beat.start()
            return self
        res = self.proc.finish()
        self.proc = None
        if answer.startswith("held "):
            try:
                h = json.loads(answer[5:])
            except json.JSONDecodeError:
                h = {}
            raise UserError(
                f"board '{self.transport.name}': another {h.get('doing') or 'deploy'} holds the lock {self.root}/.lock: "
                f"host {h.get('host', '?')} pid {h.get('pid', '?')} user {h.get('user', '?')} since {h.get('time', '?')}",
                hint="wait for it to finish; the lock is released when that deploy ends or its connection drops",
            )
        raise UserError(f"board '{self.transport.name}': cannot take the lock: {res.stderr_tail(2) or answer or 'no answer'}")

    def __exit__(self, *exc: object) -> None:
        self.release()

    def call(self, op: str, request: dict[str, Any], timeout: float = COMMIT_TIMEOUT_S) -> dict[str, Any]:
        """Run ``op`` (commit | rollback) in the lock-holding board process; a failure is a UserError."""
        if self.proc is None:
            raise UserError(f"board '{self.transport.name}': {op} without the board lock")
        self._send((json.dumps(_with_fault({**request, "op": op})) + "\n").encode())
        answer = self.proc.readline(timeout=timeout).rstrip("\n")
        if answer.startswith("ok "):
            return neutralise(json.loads(answer[3:]))
        if answer.startswith("err "):
            raise UserError(f"board '{self.transport.name}': {op} failed: {answer[4:].partition(' ')[2]}")
        self._stop.set()
        with self._send_lock:
            res = self.proc.finish(timeout=5)
            self.proc = None
        why = res.stderr_tail(2) or (f"no answer within {timeout:.0f} s" if not answer else repr(answer[-200:]))
        raise UserError(f"board '{self.transport.name}': {op} failed: connection lost or agent died: {why}",
                        hint="deploy again: the board keeps its previous release until a verified one is switched in")

    def send_object(self, local: Path, sha256: str, size: int, offset: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> None:
        """Stream ``local`` from ``offset`` to the lock process, which writes it to ``objects/.tmp/<sha256>.part``
        and hashes it as the bytes arrive (agent op ``receive``): no SFTP server on the board and no second read
        of the file there. The upload slot is taken before the stream starts (the heartbeat keeps the lock
        meanwhile) and held, like an SFTP upload's, until the board has written the last byte."""
        if self.proc is None:
            raise UserError(f"board '{self.transport.name}': upload without the board lock")
        if os.path.getsize(local) != size:
            raise UserError(f"board '{self.transport.name}': {local} changed since the release was made "
                            f"({os.path.getsize(local)} bytes, the manifest says {size})", hint="make the release again")
        length = size - offset
        header = json.dumps({"op": "receive", "root": self.root, "sha256": sha256, "offset": offset, "length": length})
        gate = self.proc.upload_gate(length)
        count = getattr(gate, "sent", None)
        with gate:
            with self._send_lock, open(local, "rb") as src:
                if self.proc is None:
                    raise UserError(f"board '{self.transport.name}': upload of {Path(local).name}: connection lost")
                src.seek(offset)
                self.proc.send((header + "\n").encode())
                done = offset
                while done < size:
                    chunk = src.read(min(UPLOAD_CHUNK, size - done))
                    if not chunk:  # shorter than its stat said a moment ago: the stream cannot be completed
                        raise UserError(f"board '{self.transport.name}': {local} shrank while it was sent",
                                        hint="make the release again")
                    self.proc.send(chunk)
                    done += len(chunk)
                    if count is not None:
                        count(len(chunk))
                    if progress is not None:
                        progress(done, size)
            answer = self.proc.readline(timeout=3 * self.heartbeat_s + 60).rstrip("\n")
        if answer.startswith("ok "):
            return
        if answer.startswith(f"err {EXIT_NO_SPACE} "):
            raise UserError(f"board '{self.transport.name}': disk full under {self.root} while uploading "
                            f"{sha256}.part; the partial upload was removed, the current release is untouched",
                            hint="free space on the board or lower deploy.keep_releases, then deploy again")
        if answer.startswith("err "):
            raise UserError(f"board '{self.transport.name}': upload of {Path(local).name} failed: "
                            f"{neutralise(answer[4:].partition(' ')[2])}")
        raise UserError(f"board '{self.transport.name}': upload of {Path(local).name} failed: connection lost "
                        f"or agent died{f' ({neutralise(answer[-200:])!r})' if answer else ''}",
                        hint="deploy again: what arrived is kept and the upload resumes from there")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._send(b"\n")
            except UserError:
                return  # the connection is gone; the deploy's own calls report it

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self.proc is not None:
                self.proc.send(data)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        if self.proc is not None:
            self.proc.finish(timeout=10)
            self.proc = None


def push(transport: Transport, board: Board, root: str, release: Release, *, keep: int, project_name: str,
         progress: Callable[[str, int, int], None] | None = None, prepared: dict[str, Any] | None = None,
         full_verify: bool = False, lock: BoardLock | None = None,
         on_state: StateCallback | None = None, sources: list[str] | None = None,
         switch: bool = True) -> tuple[dict[str, Any], int, int]:
    """Send what the board lacks, verify, stage, switch. Returns (commit answer, bytes sent, objects sent).

    ``switch=False`` (`doit tune`'s scratch releases, under ``lock``): the same send and verify, staged as
    ``releases/<id>`` but never made ``current`` nor put in the history (agent op ``stage``; its answer names
    the folder); ``discard`` removes it.

    When the board's verification finds objects missing or corrupt (a flipped
    byte, a bad resume), it removes them and asks for them again: they are
    re-sent once, whole, in the same deploy."""
    py = board.python
    objects = {f.sha256: f for f in release.files}
    state = prepared or agent(transport, py, "prepare", {"root": root, "objects": sorted(objects)})
    need = [f for sha, f in objects.items() if sha not in set(state["have"])]
    if sources and need and lock is not None:
        need = _fetch(lock, root, need, sources, on_state)
        state = {**state, "partial": {}}  # the fetch truncated or removed every partial upload it tried
    if on_state is not None:
        on_state("sending", {"objects": len(need), "bytes": sum(f.size for f in need),
                             "to_send": sum(f.size - min(state["partial"].get(f.sha256, 0), f.size) for f in need)})
    sent, nsent = _upload(transport, board, root, need, state["partial"], state["free_bytes"], progress, lock)
    board_files = {"dms.service": service_unit(project_name, release.target, board.name, root, py)} if switch else {}
    request = {"root": root, "release_id": release.release_id, "files": release.file_list(),
               "keep": keep, "board_files": board_files, "full_verify": full_verify}
    op = "commit" if switch else "stage"
    if on_state is not None:
        on_state("verifying", {})
    for attempt in range(2):
        fault_point("host.commit")
        answer = lock.call(op, request) if lock is not None else agent(transport, py, op, request)
        if "resend" not in answer:
            fault_point("host.committed")
            return answer, sent, nsent
        if attempt:
            break
        again = [objects[sha] for sha in answer["resend"] if sha in objects]
        s2, n2 = _upload(transport, board, root, again, {}, None, progress, lock)
        sent, nsent = sent + s2, nsent + n2
    raise UserError(f"board '{board.name}': verification failed after re-sending: {'; '.join(answer['problems'])}",
                    hint="the board's storage may be failing; check it (dmesg) and deploy again")


#: seconds a board waits on a relay or mirror for each read before it tries the next source
FETCH_TIMEOUT_S = 30.0


def _fetch(lock: BoardLock, root: str, need: list[Any], sources: list[str], on_state: StateCallback | None) -> list[Any]:
    """The board fetches ``need`` from ``sources`` (relay boards, a mirror) itself; returns what it could not get.

    The board checks each object's size and sha256 as it arrives and ``commit``
    checks it again before use, so a bad source costs time, never a wrong
    object; whatever failed is uploaded by the controller as usual."""
    if on_state is not None:
        on_state("fetching", {"objects": len(need), "bytes": sum(f.size for f in need), "sources": list(sources)})
    answer = lock.call("fetch", {"root": root, "sources": sources, "timeout": FETCH_TIMEOUT_S,
                                 "objects": [{"sha256": f.sha256, "size": f.size} for f in need]})
    lock.fetched = [f for f in need if f.sha256 in set(answer["fetched"])]
    lock.fetch_failures = answer["failed"]
    return [f for f in need if f.sha256 not in set(answer["fetched"])]


def _upload(transport: Transport, board: Board, root: str, need: list[Any], partial: dict[str, int],
            free_bytes: int | None, progress: Callable[[str, int, int], None] | None,
            lock: BoardLock | None = None) -> tuple[int, int]:
    """Send ``need`` (resuming partial uploads): under the board lock streamed to the lock process, which hashes
    them as they arrive (``BoardLock.send_object``); without it (a standalone ``push``) by the transport's upload."""
    need_bytes = sum(f.size - min(partial.get(f.sha256, 0), f.size) for f in need)
    if free_bytes is not None and need_bytes + FREE_MARGIN > free_bytes:
        raise UserError(f"board '{board.name}': disk full: {need_bytes / 1e6:.1f} MB to send but only "
                        f"{free_bytes / 1e6:.1f} MB free under {root} (keeping {FREE_MARGIN / 1e6:.1f} MB spare); nothing was sent",
                        hint="free space on the board or lower deploy.keep_releases; the current release is untouched")
    sent = 0
    for i, f in enumerate(need):
        offset = partial.get(f.sha256, 0)
        if offset > f.size:
            offset = 0
        remote = f"{root}/objects/.tmp/{f.sha256}.part"
        if offset < f.size:
            def cb(done: int, total: int, _f: Any = f) -> None:
                if progress is not None:
                    progress(_f.path, done, total)

            if lock is not None:
                lock.send_object(f.local, f.sha256, f.size, offset, progress=cb)
            else:
                try:
                    transport.upload(f.local, remote, offset=offset, progress=cb)
                except UserError as exc:
                    raise _upload_error(transport, board, root, remote, exc) from None
        sent += f.size - offset
        fault_point(f"host.uploaded.{i}")
    return sent, len(need)


def _upload_error(transport: Transport, board: Board, root: str, remote: str, exc: UserError) -> UserError:
    """An upload that failed: when the board's disk is full, say so and remove the partial upload.

    SFTP reports ENOSPC as a bare 'Failure'; the board is asked how much room
    is left. A partial upload on a full disk is removed (it would keep the disk
    full); after a lost connection it stays, and the next deploy resumes it."""
    try:
        res = transport.run([board.python, "-c", _SPACE_SCRIPT, root, remote], timeout=30)
    except UserError:
        return exc  # the connection is gone: keep the partial upload for the resume
    if res.ok and res.stdout.strip().startswith("full"):
        return UserError(f"board '{board.name}': disk full under {root} while uploading {remote.rsplit('/', 1)[-1]}; "
                         "the partial upload was removed, the current release is untouched",
                         hint="free space on the board or lower deploy.keep_releases, then deploy again")
    return exc


#: bytes left free on the board after the upload (history, manifest, service unit, directory blocks)
FREE_MARGIN = 1 << 20
#: board side (``dmsbuild/board/disk_room.py``): "full" (and the partial upload removed) when less than 64 KiB
#: is left under the root
_SPACE_SCRIPT = board_source("disk_room")


class BoardStep:
    """The frame of every per-board step (deploy, rollback, bench): the board's own connection (opened by
    ``open``, always closed), its wall time, and a ``UserError`` turned into a failed outcome with a one-line
    reason, so one board's problem never stops the others."""

    def __init__(self, out: BoardOutcome, board: Board, transport_factory: Callable[[Board], Transport]) -> None:
        self.out, self.board, self.transport_factory = out, board, transport_factory
        self.transport: Transport | None = None
        self._t0 = 0.0

    def __enter__(self) -> "BoardStep":
        self._t0 = time.perf_counter()
        return self

    def open(self) -> Transport:
        self.transport = self.transport_factory(self.board)
        return self.transport

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        try:
            if isinstance(exc, UserError):
                self.out.ok, self.out.action = False, "failed"
                self.out.reason = str(exc).replace("\n", " ")
        finally:
            if self.transport is not None:
                self.transport.close()
            self.out.seconds = time.perf_counter() - self._t0
        return isinstance(exc, UserError)


def deploy_board(board: Board, profile: TargetProfile, release: Release, *, project_name: str,
                 transport_factory: Callable[[Board], Transport], after_switch: AfterSwitch | None = None,
                 progress: Callable[[str, int, int], None] | None = None, full_verify: bool = False,
                 on_state: StateCallback | None = None, sources: list[str] | None = None,
                 judge: Callable[[BoardOutcome], bool | None] | None = None) -> BoardOutcome:
    """Deploy ``release`` to one board; never raises for a board problem (the outcome says it).

    ``judge(outcome)``, when given, is the rollout's health gate run after the
    benchmark, still under the board lock: its verdict (True: passed) is
    recorded in the board's ``verdicts.json``, so a rollback never goes back to
    a release that failed its checks on that board.

    ``sources``: base URLs (relay boards, a mirror) the board fetches missing objects from first.

    ``on_state`` is told each phase as it starts (connecting, sending, verifying, benchmarking)."""
    from . import facts as facts_mod

    out = BoardOutcome(board=board.name, ok=False, action="failed", release_id=release.release_id)
    with BoardStep(out, board, transport_factory) as step:
        if on_state is not None:
            on_state("connecting", {})
        transport = step.open()
        transport.connect()
        endpoint = getattr(transport, "endpoint", None)
        out.route = endpoint.as_json() if endpoint is not None else None
        fault_point("host.connected")
        root = resolve_root(transport, board, profile)
        # the lock process also prepares and gathers the facts: one board-side Python start per deploy (at 100
        # boards a second start per board was a measurable share of the boards' CPU)
        lock = BoardLock(transport, board.python, root, objects=sorted({f.sha256 for f in release.files}),
                         heartbeat_s=board.io_timeout / 3, facts_script=facts_mod.FACTS_SCRIPT)
        try:
            # the objects are streamed to this same agent process (no SFTP channel, no sftp-server on the board)
            lock.acquire()
        except (UserError, OSError):  # (a local board's spawn of a missing Python is an OSError)
            facts_mod.gather(transport, board.python, root)  # a facts error wins: it says more than the lock's
            raise
        facts = lock.state.pop("facts", None)
        try:
            out.facts = {k: facts.get(k) for k in facts_mod.FACT_KEYS} if facts else facts_mod.gather(transport, board.python, root)
        except UserError:
            lock.release()
            raise
        try:
            fault_point("host.locked")
            out.warnings += facts_mod.check_arch(board.name, profile.arch, out.facts, release.manifest["artifacts"])
            if after_switch is not None:  # the release will run: refuse, before sending anything, a board that cannot run it
                _preflight(board, profile, out.facts)
            answer, out.bytes_sent, out.objects_sent = push(
                transport, board, root, release, keep=profile.deploy.keep_releases, project_name=project_name, progress=progress,
                prepared=lock.state, full_verify=full_verify, lock=lock, on_state=on_state, sources=sources)
            out.objects_fetched, out.bytes_fetched = len(lock.fetched), sum(f.size for f in lock.fetched)
            out.warnings += [f"fetch of {sha[:12]} failed, sent by the controller: {why}" for sha, why in lock.fetch_failures.items()]
            out.previous = answer.get("previous")
            if out.previous != release.release_id:
                out.action = "deployed"
            else:  # the same release: untouched, or objects found corrupt and re-sent
                out.action = "repaired" if out.objects_sent or out.objects_fetched else "unchanged"
            out.ok = True
            if after_switch is not None:
                if on_state is not None:
                    on_state("benchmarking", {})
                # HOOK: the on-board benchmark runs here, on the new `current`, with the open connection.
                after_switch(BoardSession(board, transport, root, release, out.facts))
            passed = judge(out) if judge is not None else None
            if passed is not None:
                try:
                    lock.call("verdict", {"root": root, "release_id": release.release_id,
                                          "verdict": "passed" if passed else "failed"})
                    out.verdict = "passed" if passed else "failed"
                except UserError as exc:  # the release stays judged by the rollout; a rollback may not know
                    out.warnings.append(f"the gate's verdict was not recorded on the board: {first_line(exc)}")
        finally:
            lock.release()
    return out


def rollback_board(board: Board, profile: TargetProfile, *, transport_factory: Callable[[Board], Transport],
                   failed: bool = False) -> BoardOutcome:
    """Switch the board's ``current`` back to the last kept release that did not fail its gate (no transfer).

    ``failed``: the current release just failed its gate (the deploy's
    automatic rollback): the board records it so, and with no earlier release
    that passed, ``current`` is removed: the board runs no release (a first
    deploy), never a failing one."""
    out = BoardOutcome(board=board.name, ok=False, action="failed")
    with BoardStep(out, board, transport_factory) as step:
        transport = step.open()
        root = resolve_root(transport, board, profile)
        with BoardLock(transport, board.python, root, heartbeat_s=board.io_timeout / 3) as lock:
            answer = lock.call("rollback", {"root": root, "failed": True} if failed else {"root": root})
        out.ok = True
        out.action = "rolled back" if answer["current"] is not None else "no release"
        out.release_id, out.previous = answer["current"], answer["previous"]
        skipped = answer.get("skipped_failed") or []
        if skipped:
            out.details["skipped_failed"] = list(skipped)
    return out


def _preflight(board: Board, profile: TargetProfile, facts: dict[str, Any]) -> None:
    """`doit doctor`'s checks of what the release needs on the board (python, numpy, onnxruntime, trtexec)."""
    from .doctor import preflight

    blocking = preflight(board.name, facts, profile)
    if blocking:
        what = ", ".join(f"{c.what} {c.found if c.found is not None else 'not installed'}" for c in blocking)
        raise UserError(f"board {board.name}: pre-flight: {what} for {board.python}; the release cannot run there, "
                        "so nothing was sent and the board keeps its current release",
                        hint="; ".join(dict.fromkeys(c.fix for c in blocking)) + f" (check with `doit doctor target={profile.name}`)")


__all__ = ["AfterSwitch", "BoardLock", "BoardSession", "deploy_board", "rollback_board", "BoardStep", "push"]
