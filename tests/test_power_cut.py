"""A power cut at every step of a deploy: the board shows the old release or the new one, never half (issue 25, item 3).

The real release agent deploys in-process while ``tests/powercut.py`` records, in order, every directory change,
file write and fsync it makes; for a crash after each operation the model builds the disks a POSIX file system may
come back with (see its docstring: content durable only at its file's fsync, an entry only at its folder's fsync,
the rest surviving in any prefix or, for the entries that decide ``current``, any subset) and checks:

- ``current`` resolves to the complete old release (or, on a first deploy, is absent) or the complete new one:
  every file present with its sha256; never a half release, a dangling link or a torn ``history.json``;
- once the agent answered the commit, every image shows the new release (a cut right after success keeps it);
- from the images with none and with all of the pending changes, the next deploy of the new release succeeds
  and leaves it complete on the real disk (the leftovers of a cut never wedge the board).

Killed by the named mutations ``durability-object-not-fsynced``, ``durability-current-dir-not-fsynced``,
``durability-release-not-synced`` and ``durability-state-file-not-fsynced`` (scripts/mutation_promises.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmsbuild.board import release_agent as agent
from tests.powercut import ROOT_NAME, images, materialise, recording, shown


@dataclass
class Rel:
    rid: str
    files: list[dict[str, Any]]  # the commit request's entries: file, sha256, size
    data: dict[str, bytes]  # sha256 -> bytes


def release(rid: str, contents: dict[str, bytes]) -> Rel:
    """A release as the host ships it: its files and a manifest.json listing them (a rollback reads it)."""
    entries = [{"file": name, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for name, b in contents.items()]
    manifest = json.dumps({"release_id": rid, "artifacts": [e for e in entries if e["file"].startswith("models/")],
                           "files": [e for e in entries if not e["file"].startswith("models/")]}).encode()
    data = dict(contents, **{"manifest.json": manifest})
    files = [{"file": n, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in data.items()]
    return Rel(rid, files, {f["sha256"]: data[f["file"]] for f in files})


OLD = release("r1-0001", {"models/fp32.onnx": b"old model " * 40, "config/labels.txt": b"face\neyes\n",
                          "runner.py": b"print('r1')\n"})
# the upgrade shares config/labels.txt (an object the board has), changes the model and the runner, adds a model
NEW = release("r2-0002", {"models/fp32.onnx": b"new model " * 40, "models/int8.onnx": b"int8 " * 30,
                          "config/labels.txt": b"face\neyes\n", "runner.py": b"print('r2')\n"})


def upload(root: str, sha: str, data: bytes) -> None:
    """What the host's upload does: write ``objects/.tmp/<sha>.part`` and close it, no fsync (sftp does none)."""
    fd = agent.os.open(os.path.join(root, "objects", ".tmp", sha + ".part"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with agent.os.fdopen(fd, "wb") as fh:
        fh.write(data)


def deploy(root: str, rel: Rel) -> dict[str, Any]:
    """A deploy as the lock op runs it (lock, prepare, uploads, commit; a resend once), in this process."""
    fd = agent.open_lock(root)
    assert agent.try_lock(fd) is None
    agent.os.ftruncate(fd, 0)
    agent.os.pwrite(fd, b'{"doing": "deploy"}', 0)
    try:
        state = agent.prepare({"root": root, "objects": sorted(rel.data)})
        for sha in sorted(set(rel.data) - set(state["have"])):
            upload(root, sha, rel.data[sha])
        request = {"root": root, "release_id": rel.rid, "files": rel.files, "keep": 3,
                   "board_files": {"dms.service": "[Service]\nExecStart=/usr/bin/python3 runner.py\n"}}
        answer = agent.commit(request)
        if "resend" in answer:
            for sha in answer["resend"]:
                upload(root, sha, rel.data[sha])
            answer = agent.commit(request)
        return answer
    finally:
        agent.os.close(fd)


def on_disk(root: Path) -> str | None:
    """The release ``current`` shows on the real disk, checked file by file (AssertionError if half)."""
    if not os.path.lexists(root / "current"):
        return None
    rid = os.readlink(root / "current").split("/")[-1]
    rel = {OLD.rid: OLD, NEW.rid: NEW}[rid]
    for f in rel.files:
        assert agent.sha256_of(str(root / "current" / f["file"]), follow_symlinks=True) == f["sha256"], f["file"]
    return rid


def power_cuts(tmp_path: Path, old: Rel | None, new: Rel) -> dict[str, Any]:
    """Record ``new``'s deploy (over ``old`` when given), then check every crash image; what was seen."""
    anchor = tmp_path / "disk"
    anchor.mkdir()
    root = str(anchor / ROOT_NAME)
    if old is not None:
        assert deploy(root, old)["current"] == old.rid  # not recorded: on disk and synced before the upgrade
    with recording(str(anchor)) as rec:
        answer = deploy(root, new)
    assert answer["current"] == new.rid, answer
    assert on_disk(Path(root)) == new.rid
    known = {new.rid: new.files, **({old.rid: old.files} if old else {})}
    return {**check_cuts(rec, known, old.rid if old else None, new.rid), "root": root}


def check_cuts(rec: Any, known: dict[str, Any], before: str | None, after: str) -> dict[str, Any]:
    """Every crash image of ``rec``: ``current`` shows ``before`` or ``after`` complete, ``after`` once it answered."""
    seen: dict[Any, int] = {}
    bad: list[str] = []
    n = 0
    for k in range(len(rec.ops) + 1):
        for img in images(rec, k):
            n += 1
            rid, why = shown(img, known)
            allowed = {after} if k == len(rec.ops) else {before, after}
            if why or rid not in allowed:
                last = rec.ops[k - 1] if k else "nothing yet"
                said = why or (f"current shows {rid or 'no release'}"
                               + (" after the agent answered success" if k == len(rec.ops) else ""))
                bad.append(f"cut after op {k} ({last}), {img.variant}: {said}")
            seen[rid] = seen.get(rid, 0) + 1
    return {"rec": rec, "seen": seen, "bad": bad, "images": n}


def recovers(tmp_path: Path, rec: Any, new: Rel) -> list[str]:
    """The next deploy of ``new`` from the images where none / all pending changes survived: it must succeed."""
    bad = []
    for k in range(len(rec.ops) + 1):
        prefixes = [i for i in images(rec, k) if i.variant.startswith("first ")]
        for img in prefixes[:1] + prefixes[1:][-1:]:  # none, all (one image when nothing is pending)
            dest = str(tmp_path / "reboot" / f"{k}-{'none' if img is prefixes[0] else 'all'}")
            root = materialise(img, dest)
            try:
                answer = deploy(root, new)
                assert answer.get("current") == new.rid, answer
                assert on_disk(Path(root)) == new.rid
            except (agent.AgentFail, AssertionError, OSError) as exc:
                bad.append(f"redeploy after a cut after op {k} ({rec.ops[k - 1] if k else '-'}), {img.variant}: "
                           f"{getattr(exc, 'msg', None) or exc!r}")
    return bad


def _report(bad: list[str]) -> str:
    return f"{len(bad)} crash images break the promise; the first ones:\n" + "\n".join(bad[:8])


@pytest.mark.parametrize("case", ["first-deploy", "upgrade"])
def test_a_power_cut_at_any_step_leaves_the_old_release_or_the_new_never_half(tmp_path, case):
    old = OLD if case == "upgrade" else None
    got = power_cuts(tmp_path, old, NEW)
    assert not got["bad"], _report(got["bad"])
    rec = got["rec"]
    # not vacuous: the deploy made many cut points, and the cuts show both outcomes
    assert len(rec.ops) > 40 and got["images"] > len(rec.ops)
    assert got["seen"].get(NEW.rid) and got["seen"].get(old.rid if old else None), got["seen"]
    assert sum(1 for line in rec.ops if line.startswith("fsync")) >= 8


@pytest.mark.parametrize("case", ["first-deploy", "upgrade"])
def test_the_next_deploy_repairs_whatever_a_power_cut_left(tmp_path, case):
    got = power_cuts(tmp_path, OLD if case == "upgrade" else None, NEW)
    bad = recovers(tmp_path, got["rec"], NEW)
    assert not bad, _report(bad)


def test_a_power_cut_during_a_rollback_leaves_one_release_or_the_other(tmp_path):
    """``rollback`` (the deploy gate's, or `doit rollback`): the same sync, switch and state writes, under the model."""
    anchor = tmp_path / "disk"
    anchor.mkdir()
    root = str(anchor / ROOT_NAME)
    for rel in (OLD, NEW):
        assert deploy(root, rel)["current"] == rel.rid
    with recording(str(anchor)) as rec:
        answer = agent.locked(agent.rollback)({"root": root})
    assert (answer["previous"], answer["current"]) == (NEW.rid, OLD.rid)
    got = check_cuts(rec, {OLD.rid: OLD.files, NEW.rid: NEW.files}, NEW.rid, OLD.rid)
    assert not got["bad"], _report(got["bad"])
    assert got["seen"].get(OLD.rid) and got["seen"].get(NEW.rid), got["seen"]


def test_the_model_sees_a_lost_fsync(tmp_path, monkeypatch):
    """The model's own check: an agent whose object fsync is a no-op makes half releases the model reports."""
    real = agent.fsync_path
    monkeypatch.setattr(agent, "fsync_path", lambda p: None if os.path.isfile(p) else real(p))
    got = power_cuts(tmp_path, OLD, NEW)
    assert any("torn (a half release)" in b for b in got["bad"]), got["bad"][:3]


def test_the_recorder_spells_out_every_change(tmp_path):
    """What one write_atomic and one switch look like in the log (the model reads nothing else)."""
    anchor = tmp_path / "disk"
    (anchor / ROOT_NAME / "releases" / "r1").mkdir(parents=True)
    root = str(anchor / ROOT_NAME)
    with recording(str(anchor)) as rec:
        agent.write_atomic(os.path.join(root, "history.json"), "[]")
        agent.switch(root, "r1")
    pid = os.getpid()
    assert rec.ops == [f"create dms/history.json.tmp.{pid}", f"open for writing dms/history.json.tmp.{pid}",
                       f"write dms/history.json.tmp.{pid}", f"fsync dms/history.json.tmp.{pid}",
                       f"rename dms/history.json.tmp.{pid} -> dms/history.json",
                       f"symlink dms/.current.tmp.{pid} -> releases/r1",
                       f"rename dms/.current.tmp.{pid} -> dms/current", "fsync dms"]
    assert stat.S_ISLNK(os.lstat(os.path.join(root, "current")).st_mode)
