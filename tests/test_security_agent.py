"""The board agent against a hostile board's files and a careless inventory's deploy root (issue 30, items 3-4).

Every attack here ran against the agent before the fix: the marked ones then reached outside the deploy
root (docs/security.md lists them). The agent's functions run in this process on real folders; the same
code runs on the boards over SSH (tests/faults/test_hostile_board.py drives it end to end).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dmsbuild.board import release_agent as agent


def _tree(path: Path) -> dict[str, tuple]:
    """Everything below ``path`` with its kind, size, mtime and content digest (a change anywhere shows)."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        body = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
        out[str(p.relative_to(path))] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return out


def _release(root: Path, rid: str, seed: int) -> dict:
    """Deploy release ``rid`` (a model, a runner, its manifest) through the agent's own commit."""
    model, runner = f"model {seed}".encode() * 100, f"print({seed})".encode()
    entries = {"models/m.onnx": model, "runner/r.py": runner}
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in entries.items()}
    manifest = json.dumps({"artifacts": [{"file": "models/m.onnx", "sha256": sha["models/m.onnx"]}],
                           "files": [{"file": "runner/r.py", "sha256": sha["runner/r.py"]}]}).encode()
    entries["manifest.json"] = manifest
    return {"files": commit_entries(root, rid, entries), "model": model}


def commit_entries(root: Path, rid: str, entries: dict[str, bytes]) -> list[dict]:
    """Release ``rid`` of ``entries`` (path -> bytes, a manifest.json among them) through the agent's own
    prepare and commit, its objects placed as an upload would; the commit's file list."""
    agent.prepare({"root": str(root)})
    files = []
    for rel, data in entries.items():
        h = hashlib.sha256(data).hexdigest()
        (root / "objects" / h).write_bytes(data)
        files.append({"file": rel, "sha256": h, "size": len(data)})
    out = agent.commit({"root": str(root), "release_id": rid, "files": files, "keep": 3})
    assert out["current"] == rid, out
    return files


@pytest.fixture()
def deployed(tmp_path):
    """A deploy root with releases v1 then v2 (current), and a folder outside it holding precious files."""
    root = tmp_path / "root"
    v1 = _release(root, "v1", 1)
    _release(root, "v2", 2)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("do not touch")
    return root, outside, v1


def _current(root: Path) -> str:
    return os.path.basename(os.readlink(root / "current"))


def _copy_of_release(root: Path, rid: str, dest: Path) -> None:
    """A perfect copy of a release's files (right bytes, right sha256) outside the root: following a symlink
    to it is the only way a rollback could accept it."""
    for p in (root / "releases" / rid).rglob("*"):
        if p.is_file():
            q = dest / p.relative_to(root / "releases" / rid)
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(p.read_bytes())


# ------------------------------------------------------------------ item 3: symlinks at every level
#: where the symlink is planted in the previous release (v1), and what it leads to outside the root
LEVELS = ["release", "release-subdir-copy", "release-subdir-folder", "manifest", "file"]


@pytest.mark.parametrize("level", LEVELS)
def test_a_rollback_never_follows_a_symlink_in_the_previous_release(deployed, level):
    """Before: a symlinked ``releases/v1`` or ``releases/v1/models`` to a copy outside was read and switched to;
    one leading to a folder named like the model file made the rollback remove that folder (``regular``)."""
    root, outside, _v1 = deployed
    rel = root / "releases" / "v1"
    if level == "release":  # the whole release folder
        _copy_of_release(root, "v1", outside / "copy")
        os.rename(rel, root / "releases" / ".moved")
        rel.symlink_to(outside / "copy")
    elif level == "release-subdir-copy":  # one folder inside it, to a perfect copy
        _copy_of_release(root, "v1", outside / "copy")
        for p in (rel / "models").iterdir():
            p.unlink()
        (rel / "models").rmdir()
        (rel / "models").symlink_to(outside / "copy" / "models")
    elif level == "release-subdir-folder":  # one folder inside it, to a folder whose m.onnx is a folder
        (outside / "victim" / "m.onnx").mkdir(parents=True)
        (outside / "victim" / "m.onnx" / "data").write_text("someone else's data")
        for p in (rel / "models").iterdir():
            p.unlink()
        (rel / "models").rmdir()
        (rel / "models").symlink_to(outside / "victim")
    elif level == "manifest":
        _copy_of_release(root, "v1", outside / "copy")
        (rel / "manifest.json").unlink()
        (rel / "manifest.json").symlink_to(outside / "copy" / "manifest.json")
    else:  # the model file itself
        _copy_of_release(root, "v1", outside / "copy")
        (rel / "models" / "m.onnx").unlink()
        (rel / "models" / "m.onnx").symlink_to(outside / "copy" / "models" / "m.onnx")
    before = _tree(outside)
    with pytest.raises(agent.AgentFail) as exc:
        agent.rollback({"root": str(root)})
    assert "previous release v1 is damaged" in exc.value.msg, exc.value.msg
    assert _current(root) == "v2"  # never switched into something outside
    assert _tree(outside) == before  # nothing outside read-and-used, changed or removed


@pytest.mark.parametrize("plant", ["object", "part", "release", "release-subdir", "release-file"])
def test_a_commit_never_writes_through_a_symlink(deployed, plant):
    """A new release whose object, upload, release folder, folder inside it or file is a planted symlink:
    the symlink is removed (never followed) and the release lands whole, inside the root."""
    root, outside, v1 = deployed
    data = b"release three" * 50
    sha = hashlib.sha256(data).hexdigest()
    files = [{"file": "models/m.onnx", "sha256": sha, "size": len(data)}]
    (outside / "m.onnx").write_bytes(data)
    (outside / "models").mkdir()
    if plant == "object":
        (root / "objects" / sha).symlink_to(outside / "m.onnx")
        (root / "objects" / ".tmp" / f"{sha}.part").write_bytes(data)
    elif plant == "part":
        (root / "objects" / ".tmp" / f"{sha}.part").symlink_to(outside / "m.onnx")
        (root / "objects" / sha).write_bytes(data)
    else:
        (root / "objects" / sha).write_bytes(data)
        rel = root / "releases" / "v3"
        if plant == "release":
            rel.symlink_to(outside)
        elif plant == "release-subdir":
            rel.mkdir()
            (rel / "models").symlink_to(outside / "models")
        else:
            (rel / "models").mkdir(parents=True)
            (rel / "models" / "m.onnx").symlink_to(outside / "m.onnx")
    before = _tree(outside)
    out = agent.commit({"root": str(root), "release_id": "v3", "files": files, "keep": 3})
    if plant == "object":  # the symlinked object is dropped; the upload is promoted in its place
        assert out.get("current") == "v3", out
    assert _tree(outside) == before
    if out.get("current") == "v3":
        got = root / "releases" / "v3" / "models" / "m.onnx"
        assert not got.is_symlink() and got.stat().st_ino == (root / "objects" / sha).stat().st_ino


def test_the_path_checks_look_at_every_component(tmp_path):
    """``real_parents``: a symlink or a file at any level below the base is refused; missing levels are fine."""
    base = tmp_path / "b"
    (base / "a" / "b").mkdir(parents=True)
    assert agent.real_parents(str(base), "a/b/c")
    assert agent.real_parents(str(base), "a/x/y/z")
    (base / "a" / "l").symlink_to(tmp_path)
    assert not agent.real_parents(str(base), "a/l/c")
    assert not agent.real_parents(str(base), "a/l/b/c/d")
    (base / "a" / "f").write_text("x")
    assert not agent.real_parents(str(base), "a/f/c")


# ------------------------------------------------------------------ item 4: a deploy root is ours only when we made it
def test_a_folder_that_already_holds_files_is_refused_and_left_alone(tmp_path):
    """Before: a deploy root pointed at an existing folder got objects/, releases/ ... written into it, and its
    own releases/ and objects/ contents were garbage-collected."""
    root = tmp_path / "data"
    (root / "releases" / "2024-q1").mkdir(parents=True)
    (root / "releases" / "2024-q1" / "report.pdf").write_text("theirs")
    (root / "objects").mkdir()
    (root / "objects" / "photo.jpg").write_text("theirs")
    (root / "notes.txt").write_text("theirs")
    before = _tree(root)
    with pytest.raises(agent.AgentFail) as exc:
        agent.prepare({"root": str(root)})
    assert exc.value.msg.startswith(f"refusing deploy root {root}: it already holds files")
    assert agent.MARKER in exc.value.msg and "\n" not in exc.value.msg
    with pytest.raises(agent.AgentFail):
        agent.open_lock(str(root))
    assert _tree(root) == before


def test_a_new_or_empty_folder_becomes_ours_with_the_marker(tmp_path):
    for root in (tmp_path / "new", tmp_path / "empty"):
        if root.name == "empty":
            root.mkdir()
        agent.prepare({"root": str(root)})
        assert json.loads((root / agent.MARKER).read_text())["made_by"] == "dmsbuild"


def test_a_root_an_older_dmsbuild_made_is_adopted(deployed):
    """Roots deployed before the marker existed carry on: current -> releases/<id> and a valid history."""
    root, _outside, _v1 = deployed
    (root / agent.MARKER).unlink()
    agent.prepare({"root": str(root)})
    assert set(json.loads((root / agent.MARKER).read_text())["releases"]) == {"v1", "v2"}


def test_garbage_collection_removes_only_what_the_marker_says_we_made(deployed):
    """Before: every releases/* not in the history and every single-link file in objects/ was removed."""
    root, _outside, _v1 = deployed
    (root / "releases" / "theirs").mkdir()
    (root / "releases" / "theirs" / "keep.txt").write_text("theirs")
    (root / "objects" / "README").write_text("theirs")
    for seed, rid in ((3, "v3"), (4, "v4"), (5, "v5")):  # keep=3: v1 and v2 are collected on the way
        _release(root, rid, seed)
    names = set(os.listdir(root / "releases"))
    assert {"v3", "v4", "v5", "theirs"} <= names and not {"v1", "v2"} & names, names
    assert (root / "releases" / "theirs" / "keep.txt").read_text() == "theirs"
    assert (root / "objects" / "README").read_text() == "theirs"
    assert set(json.loads((root / agent.MARKER).read_text())["releases"]) == {"v3", "v4", "v5"}


@pytest.mark.parametrize("which", ["/", "/etc", "/usr", "/home", "/var/lib", "home", "above-home"])
def test_system_folders_and_the_home_folder_are_never_a_deploy_root(tmp_path, monkeypatch, which):
    """Before: a deploy wrote objects/, releases/, current, history.json, seal.json and .lock into ``/`` and
    into the home folder. (``/`` itself is only ever checked: the refusal comes before any write.)"""
    home = tmp_path / "users" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    root = {"home": home, "above-home": tmp_path / "users"}.get(which, Path(which))
    before = _tree(home) if which in ("home", "above-home") else None
    with pytest.raises(agent.AgentFail) as exc:
        agent.refuse_system_root(str(root))
    assert exc.value.msg.startswith(f"refusing deploy root {root}: it is ")
    if before is not None:  # the whole deploy path, on a folder that would otherwise be accepted
        with pytest.raises(agent.AgentFail):
            agent.prepare({"root": str(root)})
        with pytest.raises(agent.AgentFail):
            agent.open_lock(str(root))
        assert _tree(home) == before


def test_a_symlink_to_the_home_folder_is_refused_in_one_line_naming_both_paths(tmp_path, monkeypatch):
    """A deploy root that only looks like a folder of its own (``/opt/dms -> ~``): refused, and the message names
    the root as written and the folder it really is, on one line (no traceback)."""
    home = tmp_path / "users" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    root = tmp_path / "dms"
    root.symlink_to(home)
    with pytest.raises(agent.AgentFail) as exc:
        agent.prepare({"root": str(root)})
    msg = exc.value.msg
    assert msg.startswith(f"refusing deploy root {root}: it is the home folder ({home.resolve()});"), msg
    assert "\n" not in msg and exc.value.code == agent.EXIT_BAD
    assert os.listdir(home) == []


def test_a_folder_below_home_is_a_fine_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    agent.prepare({"root": str(tmp_path / "dms")})
    assert (tmp_path / "dms" / agent.MARKER).is_file()


def test_the_state_op_never_reads_a_symlinked_history(deployed):
    """``state`` runs without the layout check: a history.json symlinked to a file outside is not read."""
    root, outside, _v1 = deployed
    (outside / "list.json").write_text(json.dumps(["secret-looking-id"]))
    (root / "history.json").unlink()
    (root / "history.json").symlink_to(outside / "list.json")
    with pytest.raises(agent.AgentFail) as exc:
        agent.op_state({"root": str(root)})
    assert "history.json is corrupt" in exc.value.msg and "secret-looking-id" not in exc.value.msg


def test_a_root_with_only_the_tuners_scratch_folder_is_fresh(tmp_path):
    """`doit tune` runs before the first deploy and leaves <root>/tune/: still a root dmsbuild made."""
    root = tmp_path / "root"
    (root / "tune").mkdir(parents=True)
    agent.prepare({"root": str(root)})
    assert (root / agent.MARKER).is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "tune").write_text("a file, not the tuner's folder")
    with pytest.raises(agent.AgentFail):
        agent.prepare({"root": str(other)})
