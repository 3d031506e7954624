"""The deploy's upload path (issue 26): large writes where the server takes them, the upload slot held only while
bytes flow, small files without one; real sshd boards (the session ``boards`` fixture)."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from dmsbuild.ship.inventory import load_inventory
from dmsbuild.transport import ssh
from dmsbuild.transport.ssh import SSHTransport


def _transport(boards: dict, project: Path, name: str) -> SSHTransport:
    return SSHTransport(load_inventory(Path(boards["inventory"]), project).boards[name])


def _remote_sha(t: SSHTransport, path: str) -> str:
    return t.run(["sha256sum", path], timeout=30).stdout.split()[0]


def test_upload_arrives_whole_in_large_writes(boards, project_dir, tmp_path):
    t = _transport(boards, project_dir, "emu-01")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3_000_000 + 17))
    remote = f"/tmp/dms-upload-{os.getpid()}.bin"
    try:
        t.upload(src, remote)
        assert t.write_size > 32768, "OpenSSH's sftp-server takes 261120-byte writes (limits@openssh.com)"
        assert _remote_sha(t, remote) == hashlib.sha256(src.read_bytes()).hexdigest()
        # a resume from an offset sends only the rest, and the whole file is right afterwards
        t.run(["truncate", "-s", "1000000", remote], timeout=30)
        t.upload(src, remote, offset=1_000_000)
        assert _remote_sha(t, remote) == hashlib.sha256(src.read_bytes()).hexdigest()
    finally:
        t.run(["rm", "-f", remote], timeout=30)
        t.close()


def test_a_refused_write_is_an_error(boards, project_dir, tmp_path):
    """A write the board refuses is read from the writes' answers (there is no stat afterwards any more)."""
    t = _transport(boards, project_dir, "emu-01")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(1_000_000))
    try:
        with pytest.raises(ssh.TransportError, match="upload of big.bin"):
            t.upload(src, "/proc/version")  # opens for writing, refuses the writes
    finally:
        t.close()


def test_the_slot_is_held_while_bytes_flow_and_small_files_take_none(boards, project_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(ssh.UPLOAD_SLOTS_ENV, "1")
    monkeypatch.setattr(ssh, "_slots", None)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4_000_000))
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(ssh.SMALL_UPLOAD - 1))
    ts = [_transport(boards, project_dir, f"emu-0{i}") for i in (1, 2, 3)]
    live, peak, lock = set(), [0], threading.Lock()

    def progress(name):
        def cb(done, total):  # called only while the file's bytes are being sent
            with lock:
                live.add(name) if done < total else live.discard(name)
                peak[0] = max(peak[0], len(live))
        return cb

    remote = f"/tmp/dms-slot-{os.getpid()}"
    try:
        threads = [threading.Thread(target=t.upload, args=(big, f"{remote}-{t.name}"), kwargs={"progress": progress(t.name)})
                   for t in ts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert peak[0] == 1
        # with the only slot taken, a small file still goes
        slot = ssh.upload_slot()
        slot.acquire()
        try:
            done = threading.Event()
            th = threading.Thread(target=lambda: (ts[0].upload(small, f"{remote}-small"), done.set()))
            th.start()
            assert done.wait(60), "a small file waited for an upload slot"
            th.join()
        finally:
            slot.release()
    finally:
        for t in ts:
            t.run(["rm", "-f", f"{remote}-{t.name}", f"{remote}-small"], timeout=30)
            t.close()


def test_an_interrupt_during_an_upload_stays_an_interrupt_when_the_connection_is_gone(tmp_path):
    """Ctrl-C (or a fleet stop) lands while a file is sent and the board's connection has died: closing the remote
    file then raises EOFError (paramiko reads the pipelined writes' answers first), and that must not replace the
    interrupt with an upload error (the rollout would report a failed board instead of stopping)."""
    from dmsbuild.ship.inventory import Board

    class DeadFile:
        MAX_REQUEST_SIZE = 0

        def set_pipelined(self, on):
            pass

        def write(self, chunk):
            pass

        def close(self):
            raise EOFError()  # SFTPFile._close -> _finish_responses on a connection the board closed

    class DeadSftp:
        def open(self, remote, mode):
            return DeadFile()

    t = SSHTransport(Board(name="pi", host="nowhere.invalid"))
    t.write_size = 32768
    t._sftp = DeadSftp
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(ssh.SMALL_UPLOAD * 2))

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        t.upload(src, "/tmp/x", progress=stop)
    with pytest.raises(KeyboardInterrupt):
        t.put(src, "/tmp/x", progress=stop)
