"""Controller-side SSH scale fixes (issue 17): known_hosts parsed once per version of the file (a changed file
is read again); uploads at once capped per process.

Real sshd boards (the session ``boards`` fixture); each test writes its own
known_hosts file."""
from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from dmsbuild.ship.inventory import Board, load_inventory
from dmsbuild.transport.ssh import SSHTransport, TransportError


def _board(state: dict, project: Path, name: str) -> Board:
    return load_inventory(Path(state["inventory"]), project).boards[name]


def _pub(state: dict, name: str) -> str:
    return " ".join(Path(state["dir"], name, "ssh_host_ed25519_key.pub").read_text().split()[:2])


def _connect(b: Board) -> str:
    t = SSHTransport(b)
    try:
        return t.run(["echo", "ok"], timeout=30).stdout.strip()
    finally:
        t.close()


def test_a_changed_known_hosts_is_read_again(boards, project_dir, tmp_path):
    b = _board(boards, project_dir, "emu-01")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{b.host}]:{b.port} {_pub(boards, 'emu-01')}\n")
    b = replace(b, known_hosts=str(kh))
    assert _connect(b) == "ok"
    assert _connect(b) == "ok"  # (served from the parsed copy)
    # the same file, same size (another ed25519 key), now naming emu-02's key: a stale parsed copy would accept
    before = kh.stat()
    kh.write_text(f"[{b.host}]:{b.port} {_pub(boards, 'emu-02')}\n")
    os.utime(kh, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert kh.stat().st_size == before.st_size
    with pytest.raises(TransportError, match="HOST KEY MISMATCH"):
        _connect(b)


def test_hashed_known_hosts_and_other_hosts_lines(boards, project_dir, tmp_path):
    """Hashed names (ssh-keygen -H) still match; another host's line for a different key is not used."""
    b = _board(boards, project_dir, "emu-01")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.250]:{b.port} {_pub(boards, 'emu-02')}\n[{b.host}]:{b.port} {_pub(boards, 'emu-01')}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert "|1|" in kh.read_text()
    assert _connect(replace(b, known_hosts=str(kh))) == "ok"
    # only the other host's line: emu-01 is unknown, refused
    kh.write_text(f"[127.0.0.250]:{b.port} {_pub(boards, 'emu-01')}\n")
    with pytest.raises(TransportError, match="unknown host key"):
        _connect(replace(b, known_hosts=str(kh)))


def test_uploads_at_once_are_capped_per_process(monkeypatch, tmp_path):
    """However many boards are connected, at most $DMSBUILD_UPLOAD_SLOTS files are in flight (issue 17)."""
    import threading
    import time

    from dmsbuild.transport import ssh

    monkeypatch.setenv(ssh.UPLOAD_SLOTS_ENV, "2")
    monkeypatch.setattr(ssh, "_slots", None)
    live, peak, lock = [0], [0], threading.Lock()

    def fake_put(self, local, remote, *, offset, progress):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.2)
        with lock:
            live[0] -= 1

    monkeypatch.setattr(ssh.SSHTransport, "_put", fake_put)
    ts = [ssh.SSHTransport(Board(name=f"b{i}", host="127.0.0.1")) for i in range(6)]
    threads = [threading.Thread(target=t.put, args=(tmp_path / "x", "/r")) for t in ts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert peak[0] == 2


@pytest.mark.parametrize("raw", ["0", "many", "-3"])
def test_bad_upload_slots_setting_is_refused(monkeypatch, raw):
    from dmsbuild.errors import UserError
    from dmsbuild.transport import ssh

    monkeypatch.setenv(ssh.UPLOAD_SLOTS_ENV, raw)
    monkeypatch.setattr(ssh, "_slots", None)
    with pytest.raises(UserError, match=ssh.UPLOAD_SLOTS_ENV):
        ssh.upload_slot()
