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
