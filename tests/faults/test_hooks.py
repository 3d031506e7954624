"""The fault hooks are inert unless asked for, and the board refuses mutating ops outside the lock."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.config import load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.ship.manifest import make_release
from dmsbuild.ship.release import FAULT_ENV, BoardLock, _with_fault, agent, fault_point
from dmsbuild.transport.ssh import SSHTransport
from tests.faults.conftest import fabricate


def test_hooks_inert_without_the_variable(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    assert _with_fault({"root": "/x"}) == {"root": "/x"}
    fault_point("host.locked")  # returns: no kill, no pause
    monkeypatch.setenv(FAULT_ENV, "host.locked:pause=0,commit.switch:drop")
    assert _with_fault({"root": "/x"}) == {"root": "/x", "fault": {"point": "commit.switch", "mode": "drop"}}


@pytest.mark.parametrize("mode", ["pause=0.3", "kill"])
def test_the_controllers_fault_hook_pauses_or_kills_at_its_point(mode):
    """``host.<point>:pause=S`` sleeps S seconds there and carries on; ``kill`` SIGKILLs the controller there (a
    crash); another point is untouched. In a child process (the hook kills the process it runs in)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("from dmsbuild.ship.release import fault_point\nfault_point('host.other')\nprint('before', flush=True)\n"
            "fault_point('host.locked')\nprint('after')\n")
    env = {**os.environ, FAULT_ENV: f"host.locked:{mode}"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if mode == "kill":
        assert proc.returncode == -signal.SIGKILL and proc.stdout == "before\n", (proc.returncode, proc.stderr)
    else:
        assert proc.returncode == 0 and proc.stdout == "before\nafter\n", (proc.returncode, proc.stderr)
        assert time.monotonic() - t0 >= 0.3


def test_standalone_commit_refused_while_another_deploy_holds_the_lock(fault_boards, project_dir, tmp_path):
    """The defect behind the dropped-connection faults: a commit outside the lock could interleave."""
    b = load_inventory(Path(fault_boards["inventory"]), project_dir).boards["emu-01"]
    b.root = str(tmp_path / "root")
    fabricate(project_dir, "rpi5", {"model": (0.05, 1)})
    prof = load_target(project_dir, "rpi5")
    release = make_release(load_project(project_dir), prof)
    holder, other = SSHTransport(b), SSHTransport(b)
    try:
        with BoardLock(holder, b.python, b.root), pytest.raises(UserError) as exc:
            agent(other, b.python, "commit", {"root": b.root, "release_id": release.release_id,
                                               "files": release.file_list(), "keep": 2})
        assert "another deploy holds the lock" in str(exc.value), exc.value
        assert not Path(b.root, "current").exists()
    finally:
        holder.close()
        other.close()
