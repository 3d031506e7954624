"""No leaks: what a test session starts is gone when it ends, even when a test fails or the run is killed.

A pytest plugin (``tests/conftest.py`` loads it). Each session gets an identity (pytest's pid and its start
time in clock ticks, so a reused pid is not mistaken for it) that it puts in its own environment as
``DMSBUILD_TEST_SESSION``: every process a test starts inherits it, daemons that re-parent to init (the
emulated boards' ``sshd``, nginx, ssh-agent, ...) included. The session's record
(``$TMPDIR/dmsbuild-test-sessions/<pid>.json``: identity, pytest's basetemp, network-namespace prefix,
users created) is written when the session starts.

- At the start of every session, the records of sessions that are no longer running (killed, interrupted,
  machine restarted) are read, and what they left is stopped: processes carrying their identity or naming
  their basetemp on their command line, their network namespaces, tmpfs mounts below their basetemp, and
  the users they created. One line says what was cleaned.
- At the end of the session, anything of its own still there after a grace period is listed, stopped,
  and fails the run (exit status 1): a test that leaks is a failing test.

Concurrent sessions (two developers' runs on one machine) are told apart by their identities: a live
session's processes are never touched.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MARK = "DMSBUILD_TEST_SESSION"
RECORDS = Path(tempfile.gettempdir()) / "dmsbuild-test-sessions"
#: seconds a session's own processes get to exit by themselves after its last test before they count as leaked
GRACE_S = 5.0


def start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def session_id(pid: int) -> str | None:
    ticks = start_ticks(pid)
    return None if ticks is None else f"{pid}-{ticks}"


def netns_prefix(pid: int) -> str:
    """The network-namespace names a session's tests use (tests/faults/test_network.py: dmsf<pid % 100000><tag>)."""
    return f"dmsf{pid % 100000}"


@dataclass
class Record:
    pid: int
    ident: str
    basetemp: str
    users: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return RECORDS / f"{self.pid}.json"

    def save(self) -> None:
        RECORDS.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        os.replace(tmp, self.path)

    def alive(self) -> bool:
        return session_id(self.pid) == self.ident

    @classmethod
    def load(cls, path: Path) -> Record | None:
        try:
            d = json.loads(path.read_text())
            return cls(pid=int(d["pid"]), ident=str(d["ident"]), basetemp=str(d["basetemp"]),
                       users=[str(u) for u in d.get("users", [])])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def processes(ident: str, basetemp: str, exclude: set[int] = frozenset()) -> list[tuple[int, str]]:
    """Every process carrying the session's identity in its environment or naming its basetemp."""
    mark = f"{MARK}={ident}".encode()
    under = (basetemp.rstrip("/") + "/").encode() if basetemp else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        pid = int(entry)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":  # a zombie is already dead; its parent reaps it
            continue
        if mark in env.split(b"\0") or (under is not None and under in cmd):
            found.append((pid, cmd.replace(b"\0", b" ").decode(errors="replace").strip()[:200]))
    return found


def namespaces(prefix: str) -> list[str]:
    """Network namespaces named by the session's prefix followed by a letter (the tests' tags)."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return []
    pattern = re.compile(re.escape(prefix) + r"[a-z]")
    return sorted(n for n in names if pattern.match(n))


def mounts(basetemp: str) -> list[str]:
    """Mount points below the session's basetemp (the disk-full test's tmpfs)."""
    if not basetemp:
        return []
    under = basetemp.rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p.startswith(under)), key=len, reverse=True)


def stop(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is still there after a second."""
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 0.5)):
        live = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                live.append(pid)
            except ProcessLookupError:
                pass
            except PermissionError:
                pass
        if not live:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(start_ticks(p) is not None for p in live):
            time.sleep(0.05)
        pids = [p for p in live if start_ticks(p) is not None]


def clean(rec: Record, exclude: set[int], users: bool) -> list[str]:
    """Stop what ``rec``'s session left; returns one description per thing stopped."""
    done = []
    procs = processes(rec.ident, rec.basetemp, exclude)
    for ns in namespaces(netns_prefix(rec.pid)):
        try:  # processes inside the namespace (sshd started by `ip netns exec`) go with it
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        except OSError:
            pids = []
        procs += [(int(p), f"in netns {ns}") for p in pids if p.isdigit() and int(p) not in exclude]
        done.append(f"network namespace {ns}")
    stop([p for p, _ in procs])
    done[:0] = [f"pid {p}: {cmd}" for p, cmd in procs]
    for ns in namespaces(netns_prefix(rec.pid)):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for point in mounts(rec.basetemp):
        subprocess.run(["umount", "-l", point], capture_output=True)
        done.append(f"mount {point}")
    if users:
        done += remove_users(rec.users)
    return done


def remove_users(names: list[str]) -> list[str]:
    return [f"user {u}" for u in names if subprocess.run(["userdel", "-r", u], capture_output=True).returncode == 0]


_current: Record | None = None


def created_user(name: str) -> None:
    """A test created a system user: the session removes it when it ends (or the next session, if it dies)."""
    if _current is not None and name not in _current.users:
        _current.users.append(name)
        _current.save()


def _live_records() -> list[Record]:
    recs = [Record.load(p) for p in sorted(RECORDS.glob("*.json"))] if RECORDS.is_dir() else []
    return [r for r in recs if r is not None and r.alive()]


def reap_dead(me: int) -> list[tuple[int, list[str]]]:
    """Stop what every finished-but-not-cleaned session left (its record says what); live sessions are left alone."""
    cleaned = []
    if not RECORDS.is_dir():
        return cleaned
    for path in sorted(RECORDS.glob("*.json")):
        rec = Record.load(path)
        if rec is None:
            path.unlink(missing_ok=True)
            continue
        if rec.pid != me and rec.alive():
            continue
        others_live = any(r.pid not in (rec.pid, me) for r in _live_records())
        done = clean(rec, exclude={me}, users=not others_live)
        if done:
            cleaned.append((rec.pid, done))
        path.unlink(missing_ok=True)
    return cleaned


def pytest_sessionstart(session: pytest.Session) -> None:
    global _current
    me = os.getpid()
    for pid, done in reap_dead(me):
        print(f"\nreaper: an earlier test run (pid {pid}) did not finish; stopped what it left: " + "; ".join(done))
    ident = session_id(me)
    basetemp = str(session.config._tmp_path_factory.getbasetemp())  # noqa: SLF001 - pytest's own basetemp
    os.environ[MARK] = ident
    _current = Record(pid=me, ident=ident, basetemp=basetemp)
    _current.save()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001 - hook signature
    rec = _current
    if rec is None:
        return
    me = {os.getpid()}
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and (processes(rec.ident, rec.basetemp, me) or namespaces(netns_prefix(rec.pid))
                                          or mounts(rec.basetemp)):
        time.sleep(0.1)
    leaked = clean(rec, exclude=me, users=False)
    removed = remove_users(rec.users)
    rec.path.unlink(missing_ok=True)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and getattr(reporter._tw, "width_of_current_line", 0):  # noqa: SLF001
        reporter._tw.line()  # noqa: SLF001 - end pytest's progress line first
    if leaked:
        msg = (f"reaper: the test session left {len(leaked)} thing(s) running after its last test (stopped now): "
               + "; ".join(leaked))
        if reporter is not None:
            reporter.write_line(msg, red=True)
        else:
            print(msg)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        gone = f" (removed {', '.join(removed)})" if removed else ""
        reporter.write_line(f"reaper: nothing left running{gone}")
