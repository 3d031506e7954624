"""The reaper (tests/reaper.py): a leaking test fails the run; an interrupted run's leftovers are stopped by the next
one; a live concurrent session is never touched."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import reaper

pytest_plugins = ["pytester"]

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _spawn(env_ident: str | None = None, arg: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(reaper.MARK, None)
    if env_ident:
        env[reaper.MARK] = env_ident
    return subprocess.Popen(SLEEPER + ([arg] if arg else []), env=env, start_new_session=True)


def _gone(proc: subprocess.Popen, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.05)
    return False


def test_an_interrupted_sessions_leftovers_are_stopped_and_a_live_sessions_are_not(tmp_path, monkeypatch):
    monkeypatch.setattr(reaper, "RECORDS", tmp_path / "records")
    # a dead session: its pid no longer has the recorded start time (the ident below never matches a live process)
    dead = reaper.Record(pid=os.getpid(), ident=f"{os.getpid()}-0", basetemp=str(tmp_path / "pytest-7"))
    marked = _spawn(env_ident=dead.ident)                                   # carries the dead session's identity
    named = _spawn(arg=str(tmp_path / "pytest-7" / "boards0" / "sshd_config"))  # names its basetemp
    other = _spawn(arg=str(tmp_path / "pytest-70" / "x"))                      # a prefix of a path is not a match
    live_proc = _spawn()
    live = reaper.Record(pid=live_proc.pid, ident=reaper.session_id(live_proc.pid), basetemp=str(tmp_path / "pytest-8"))
    live_child = _spawn(env_ident=live.ident)
    try:
        dead.save()
        live.save()
        cleaned = reaper.reap_dead(me=-1)
        assert _gone(marked) and _gone(named), "the dead session's processes must be stopped"
        assert [pid for pid, _ in cleaned] == [dead.pid] and len(cleaned[0][1]) == 2, cleaned
        assert other.poll() is None and live_child.poll() is None, "a live session's processes are left alone"
        assert not dead.path.exists() and live.path.exists()
    finally:
        for p in (marked, named, other, live_proc, live_child):
            p.kill()
            p.wait()


REPO = Path(__file__).resolve().parents[1]


def test_a_test_that_leaks_a_process_fails_the_run(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest("pytest_plugins = ['tests.reaper']\n")
    pytester.makepyfile(test_leak=f"""
        import subprocess, sys
        def test_starts_a_daemon_and_forgets_it():
            subprocess.Popen({SLEEPER!r}, start_new_session=True)
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.stdout.fnmatch_lines(["*reaper: the test session left 1 thing(s) running after its last test*"])
    assert result.ret == 1


def test_a_clean_run_passes_and_says_so(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest("pytest_plugins = ['tests.reaper']\n")
    pytester.makepyfile(test_clean="""
        import subprocess, sys
        def test_waits_for_what_it_starts():
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.stdout.fnmatch_lines(["*reaper: nothing left running*"])
    assert result.ret == 0
