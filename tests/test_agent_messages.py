"""The board agent's failures are one line naming what failed, never a traceback (issue 25 item 2's survivors).

The agent's functions run in this process on real folders, or the agent itself runs as a process the way
the controller starts it over SSH (``python3 release_agent.py <op> < request``).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dmsbuild.board import release_agent as agent
from tests.test_security_agent import commit_entries

AGENT = Path(agent.__file__)


def _files(root: Path) -> tuple[list[dict], dict[str, bytes]]:
    entries = {"models/m.onnx": b"model bytes " * 200, "runner/r.py": b"print(1)\n",
               "manifest.json": json.dumps({"artifacts": [], "files": []}).encode()}
    files = [{"file": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for rel, data in entries.items()]
    return files, {f["sha256"]: entries[f["file"]] for f in files}


def test_a_corrupted_upload_is_reported_naming_the_file_and_sent_again(tmp_path):
    """An upload whose bytes do not hash to its sha256 is never promoted: commit asks for it again, saying which
    file arrived corrupted; the corrupt part is removed and the next commit (with the right bytes) lands."""
    root = tmp_path / "root"
    agent.prepare({"root": str(root)})
    files, data = _files(root)
    model = files[0]
    for f in files[1:]:
        (root / "objects" / f["sha256"]).write_bytes(data[f["sha256"]])
    part = root / "objects" / ".tmp" / (model["sha256"] + ".part")
    bad = b"X" + data[model["sha256"]][1:]
    part.write_bytes(bad)
    out = agent.commit({"root": str(root), "release_id": "r1", "files": files, "keep": 3})
    assert out["resend"] == [model["sha256"]]
    assert out["problems"] == [f"upload of models/m.onnx arrived corrupted (sha256 {hashlib.sha256(bad).hexdigest()})"]
    assert not part.exists() and not (root / "objects" / model["sha256"]).exists()
    assert not (root / "current").exists()
    part.write_bytes(data[model["sha256"]])
    out = agent.commit({"root": str(root), "release_id": "r1", "files": files, "keep": 3})
    assert out["current"] == "r1", out


@pytest.mark.parametrize("filename", ["objects/.tmp/x.part", None])
def test_a_file_system_refusal_under_the_lock_is_one_err_line_naming_op_root_and_file(tmp_path, monkeypatch, filename):
    """ENOSPC, EROFS, EIO inside a locked op: the lock session answers ``err 5 <op> failed under <root>: <why> (<file>)``
    and carries on with the next op (no traceback, the lock session stays usable)."""
    root = tmp_path / "root"
    agent.prepare({"root": str(root)})
    path = str(root / filename) if filename else None

    def full(req):
        raise OSError(errno.ENOSPC, "No space left on device", *([path] if path else []))

    monkeypatch.setitem(agent.LOCKED_OPS, "discard", full)
    class TwoDiscards:  # the lock session's stdin (agent.Stdin): two request lines, then EOF
        def __init__(self, idle, fd=0):
            pass

        def lines(self):
            return iter([json.dumps({"op": "discard", "release_ids": []})] * 2)

    monkeypatch.setattr(agent, "Stdin", TwoDiscards)
    said: list[str] = []
    monkeypatch.setattr(agent, "say", lambda line: said.append(line) or True)
    agent.op_lock({"root": str(root), "holder": {"host": "test"}})
    assert said[0].startswith("locked ")
    want = f"err {agent.EXIT_BAD} discard failed under {root}: No space left on device" + (f" ({path})" if path else "")
    assert said[1] == want
    assert said[2] == want and len(said) == 3  # the next op was still answered


def test_a_relay_that_cannot_listen_says_so_in_one_line(tmp_path):
    """``serve`` on an address already in use: exit status 5 and one line naming the address, no traceback."""
    root = tmp_path / "root"
    agent.prepare({"root": str(root)})
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        req = {"root": str(root), "bind": "127.0.0.1", "port": taken.getsockname()[1], "lifetime": 5}
        proc = subprocess.run([sys.executable, str(AGENT), "serve"], input=json.dumps(req) + "\n",
                              capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert proc.returncode == agent.EXIT_BAD, proc.stderr
    assert proc.stderr.startswith("serve: cannot listen on 127.0.0.1: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_verdict_that_is_not_passed_or_failed_is_one_line(tmp_path):
    root = tmp_path / "root"
    agent.prepare({"root": str(root)})
    with pytest.raises(agent.AgentFail) as exc:
        agent.verdict({"root": str(root), "release_id": "v1", "verdict": "maybe"})
    assert exc.value.msg == "verdict 'maybe' for v1: expected one of passed, failed"


@pytest.mark.parametrize("rel", ["objects", "history.json"])
def test_a_symlink_in_the_roots_layout_is_refused_naming_it_and_its_target(tmp_path, rel):
    """The root's own folders and files must be real: a symlink there (objects/ -> elsewhere) stops the deploy
    with one line naming the link and where it leads, before anything is written through it."""
    root = tmp_path / "root"
    agent.prepare({"root": str(root)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = root / rel
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(elsewhere)
    with pytest.raises(agent.AgentFail) as exc:
        agent.prepare({"root": str(root)})
    assert exc.value.msg == (f"refusing to deploy: {link} is a symlink (to {elsewhere}); the deploy root must hold "
                             "real folders and files, remove it")
    assert list(elsewhere.iterdir()) == []


def test_the_home_check_works_where_python_has_no_pwd_module(tmp_path, monkeypatch):
    """The agent is stdlib-only and runs on the board's Python: one built without ``pwd`` still refuses $HOME
    (and accepts a folder below it)."""
    home = tmp_path / "me"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setitem(sys.modules, "pwd", None)  # `import pwd` raises ImportError
    with pytest.raises(agent.AgentFail) as exc:
        agent.refuse_system_root(str(home))
    assert exc.value.msg.startswith(f"refusing deploy root {home}: it is the home folder;")
    agent.refuse_system_root(str(home / "dms"))


def test_a_board_fetches_an_object_from_a_relay_and_checks_its_sha256(tmp_path):
    """A later-wave board fetches from a relay (another board's ``serve``): the object lands in
    ``objects/.tmp/<sha>.part`` whole; one the relay does not hold is reported as failed, with the reason."""
    relay, board = tmp_path / "relay", tmp_path / "board"
    for r in (relay, board):
        agent.prepare({"root": str(r)})
    data = b"an object " * 5000
    sha = hashlib.sha256(data).hexdigest()
    (relay / "objects" / sha).write_bytes(data)
    missing = hashlib.sha256(b"not on the relay").hexdigest()
    req = {"root": str(relay), "bind": "127.0.0.1", "port": 0, "lifetime": 60}
    proc = subprocess.Popen([sys.executable, str(AGENT), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line.startswith("serving "), line
        base = f"http://127.0.0.1:{line.split()[1]}/"
        out = agent.fetch({"root": str(board), "sources": [base], "timeout": 30,
                           "objects": [{"sha256": sha, "size": len(data)}, {"sha256": missing, "size": 16}]})
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert out["fetched"] == [sha]
    assert (board / "objects" / ".tmp" / f"{sha}.part").read_bytes() == data
    assert list(out["failed"]) == [missing] and out["failed"][missing].startswith(base)
    assert not (board / "objects" / ".tmp" / f"{missing}.part").exists()


def _deploy(root: Path, rid: str, seed: int) -> dict[str, bytes]:
    """Release ``rid`` (a model and its manifest) through the agent's own prepare and commit."""
    model = f"model {seed}".encode() * 100
    sha = hashlib.sha256(model).hexdigest()
    entries = {"models/m.onnx": model,
               "manifest.json": json.dumps({"artifacts": [{"file": "models/m.onnx", "sha256": sha}], "files": []}).encode()}
    commit_entries(root, rid, entries)
    return entries


def test_a_rollback_with_nothing_deployed_is_one_line(tmp_path):
    root = tmp_path / "root"
    agent.prepare({"root": str(root)})
    with pytest.raises(agent.AgentFail) as exc:
        agent.rollback({"root": str(root)})
    assert exc.value.msg == f"no release is deployed under {root}; nothing to roll back"


@pytest.mark.parametrize("order", ["below", "above"])
def test_a_rollback_refuses_a_previous_release_whose_file_changed(tmp_path, order):
    """Any other content (its sha256 sorting below or above the manifest's) makes the previous release damaged:
    no switch to it."""
    root = tmp_path / "root"
    model = _deploy(root, "v1", 1)["models/m.onnx"]
    _deploy(root, "v2", 2)
    want = hashlib.sha256(model).hexdigest()
    n = next(n for n in range(1000) if (hashlib.sha256(b"%d" % n).hexdigest() < want) == (order == "below"))
    path = root / "releases" / "v1" / "models" / "m.onnx"
    path.unlink()  # (a hard link to the object: replaced, not written through)
    path.write_bytes(b"%d" % n)
    with pytest.raises(agent.AgentFail) as exc:
        agent.rollback({"root": str(root)})
    assert exc.value.msg == "previous release v1 is damaged (models/m.onnx); not switching"
    assert os.readlink(root / "current") == "releases/v2"
