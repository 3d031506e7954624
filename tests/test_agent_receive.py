"""The board agent receives a deploy's objects on its own stdin (issue 26, item 3): written and hashed in one pass,
no SFTP server on the board, and ``commit`` still refuses an upload that is not what arrived."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from dmsbuild.board import release_agent as agent
from dmsbuild.config import load_project, load_target
from dmsbuild.pipeline.deploy import deploy_target
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.transport import ssh
from tests.conftest import write_build


def _stream(requests: list[tuple[dict, bytes]], tail: bytes = b"") -> agent.Stdin:
    """An agent ``Stdin`` on a pipe holding each request line followed by its bytes (then ``tail``, then EOF)."""
    r, w = os.pipe()
    data = b"".join(json.dumps(req).encode() + b"\n" + body for req, body in requests) + tail

    def write() -> None:
        with os.fdopen(w, "wb") as fh:
            fh.write(data)

    threading.Thread(target=write, daemon=True).start()
    agent.STDIN_REST[0] = b""
    return agent.Stdin(5.0, fd=r)


def _req(root: Path, data: bytes, offset: int = 0) -> dict:
    return {"op": "receive", "root": str(root), "sha256": hashlib.sha256(data).hexdigest(), "offset": offset,
            "length": len(data) - offset}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(agent, "RECEIVED", {})
    r = tmp_path / "root"
    agent.prepare({"root": str(r)})
    return r


def _run(stdin: agent.Stdin) -> list[str | None]:
    """What the lock loop does with the stream: each ``receive`` line answered, until the stream ends."""
    out = []
    for line in stdin.lines():
        out.append(agent.receive(json.loads(line), stdin))
        if out[-1] is None:
            break
    return out


def test_received_bytes_are_hashed_once_and_committed(root, monkeypatch):
    a, b = os.urandom(3_000_000), os.urandom(1000)
    answers = _run(_stream([(_req(root, a), a), (_req(root, b), b)]))
    assert [x.split(" ", 1)[0] for x in answers] == ["ok", "ok"]
    for d in (a, b):
        assert (root / "objects" / ".tmp" / f"{hashlib.sha256(d).hexdigest()}.part").read_bytes() == d
    reads = []
    monkeypatch.setattr(agent, "sha256_of", lambda p, **kw: reads.append(p) or "0" * 64)
    files = [{"file": "m/a.bin", "sha256": hashlib.sha256(a).hexdigest(), "size": len(a)},
             {"file": "b.bin", "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}]
    out = agent.commit({"root": str(root), "release_id": "r1", "files": files, "keep": 2})
    assert out["current"] == "r1", out
    assert reads == []  # the hashes taken while the bytes arrived: no second read of either upload
    assert (root / "releases" / "r1" / "m" / "a.bin").read_bytes() == a


def test_an_upload_changed_after_it_arrived_is_hashed_again_and_refused(root):
    """The hash taken on arrival stands only for the file as it was written: a byte flipped afterwards (same size)
    changes its mtime/ctime, so ``commit`` reads it again, finds the mismatch and asks for it again."""
    data = os.urandom(500_000)
    assert _run(_stream([(_req(root, data), data)]))[0].startswith("ok ")
    part = root / "objects" / ".tmp" / f"{hashlib.sha256(data).hexdigest()}.part"
    with open(part, "r+b") as fh:
        fh.seek(1234)
        fh.write(bytes([data[1234] ^ 0xFF]))
    files = [{"file": "a.bin", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}]
    out = agent.commit({"root": str(root), "release_id": "r1", "files": files, "keep": 2})
    assert out.get("resend") == [files[0]["sha256"]] and "arrived corrupted" in out["problems"][0], out
    assert not part.exists() and not (root / "current").exists()


def test_a_resume_hashes_what_was_there_and_a_garbage_prefix_is_refused(root):
    data = os.urandom(2_000_000)
    sha = hashlib.sha256(data).hexdigest()
    part = root / "objects" / ".tmp" / f"{sha}.part"
    part.write_bytes(data[:700_000] + b"leftover past the offset")
    assert _run(_stream([(_req(root, data, 700_000), data[700_000:])]))[0].startswith("ok ")
    assert part.read_bytes() == data and agent.RECEIVED[sha][1] == sha
    # a prefix that is not the object's: the whole upload's hash says so, and commit refuses it
    part.write_bytes(b"\0" * 1000)
    assert _run(_stream([(_req(root, data, 1000), data[1000:])]))[0].startswith("ok ")
    assert agent.RECEIVED[sha][1] != sha
    out = agent.commit({"root": str(root), "release_id": "r1", "files": [{"file": "a", "sha256": sha, "size": len(data)}]})
    assert out.get("resend") == [sha], out


def test_the_stream_stays_in_step_after_a_refusal_and_a_cut_keeps_what_arrived(root):
    good, bad, cut = os.urandom(300_000), os.urandom(200_000), os.urandom(400_000)
    refused = {**_req(root, bad), "sha256": "../../x"}  # not a sha256: refused, its bytes still consumed
    stdin = _stream([(refused, bad), (_req(root, good), good), (_req(root, cut), cut[:150_000])])
    answers = _run(stdin)
    assert answers[0].startswith("err 5 receive: not a sha256"), answers[0]
    assert answers[1].startswith("ok ") and json.loads(answers[1][3:])["received"] == len(good)
    assert answers[2] is None  # the connection ended mid-object
    assert (root / "objects" / ".tmp" / f"{hashlib.sha256(cut).hexdigest()}.part").read_bytes() == cut[:150_000]
    assert not list(root.parent.glob("x*"))


def test_a_symlink_in_place_of_the_upload_is_replaced_never_followed(root, tmp_path):
    data = os.urandom(10_000)
    victim = tmp_path / "victim"
    victim.write_bytes(b"theirs")
    part = root / "objects" / ".tmp" / f"{hashlib.sha256(data).hexdigest()}.part"
    part.symlink_to(victim)
    assert _run(_stream([(_req(root, data), data)]))[0].startswith("ok ")
    assert victim.read_bytes() == b"theirs" and not part.is_symlink() and part.read_bytes() == data


def test_a_deploy_over_ssh_opens_no_sftp_channel(boards, project_dir, tmp_path, monkeypatch):
    """One board process per deploy: the objects go to the lock process's stdin (no sftp-server on the board)."""
    write_build(project_dir, "rpi5", {"fp32": 1.5, "int8-qdq": 0.5}, seed=3)
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    board = load_inventory(Path(boards["inventory"]), project_dir).boards["emu-03"]
    board.root = str(tmp_path / "root")

    def no_sftp(self):
        raise AssertionError("a deploy opened an SFTP channel")

    monkeypatch.setattr(ssh.SSHTransport, "_sftp", no_sftp)
    out = deploy_target(load_project(project_dir), prof, [board])[0]
    assert out.ok and out.action == "deployed" and out.bytes_sent > 2_000_000, out.message
    manifest = json.loads(Path(board.root, "current", "manifest.json").read_text())
    for e in manifest["artifacts"] + manifest["files"]:
        assert hashlib.sha256(Path(board.root, "current", e["file"]).read_bytes()).hexdigest() == e["sha256"]


def test_streams_to_the_agent_hold_the_upload_slot_while_bytes_flow(boards, project_dir, tmp_path, monkeypatch):
    """The process-wide upload limit holds for objects streamed to the lock process as it did for SFTP uploads:
    with one slot, three boards' streams never pump bytes at the same time."""
    from dmsbuild.ship.release import BoardLock

    monkeypatch.setenv(ssh.UPLOAD_SLOTS_ENV, "1")
    monkeypatch.setattr(ssh, "_slots", None)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4_000_000))
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    inv = load_inventory(Path(boards["inventory"]), project_dir)
    ts = [ssh.SSHTransport(inv.boards[f"emu-0{i}"]) for i in (1, 2, 3)]
    locks = [BoardLock(t, inv.boards[t.name].python, str(tmp_path / f"root-{t.name}"), objects=[sha]) for t in ts]
    live, peak, guard = set(), [0], threading.Lock()

    def progress(name):
        def cb(done, total):  # called only while the file's bytes are being sent
            with guard:
                live.add(name) if done < total else live.discard(name)
                peak[0] = max(peak[0], len(live))
        return cb

    try:
        for lock in locks:
            lock.acquire()
        threads = [threading.Thread(target=lock.send_object, args=(big, sha, big.stat().st_size),
                                    kwargs={"progress": progress(lock.transport.name)}) for lock in locks]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert peak[0] == 1
        for lock in locks:
            part = Path(lock.root, "objects", ".tmp", f"{sha}.part")
            assert part.read_bytes() == big.read_bytes()
    finally:
        for lock in locks:
            lock.release()
        for t in ts:
            t.close()
