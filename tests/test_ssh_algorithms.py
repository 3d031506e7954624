"""The ssh config's Ciphers/MACs/KexAlgorithms/HostKeyAlgorithms bind paramiko too: real sshd on 127.0.15.11-12.

127.0.15.11 runs sshd with OpenSSH's defaults, 127.0.15.12 allows only the
aes128-ctr cipher. Both log at VERBOSE, so a connection that reached the board
leaves a "Connection from" line. Negotiated algorithms are read from paramiko's
Transport (``local_cipher`` / ``remote_cipher``), not assumed.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dmsbuild import boards as emu
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import Board
from dmsbuild.transport.ssh import SSHTransport, TransportError
from dmsbuild.transport.sshconfig import parse_ssh_args

NET = "127.0.15"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    where = tmp_path_factory.mktemp("algo-lab")
    with socket.socket() as s:
        s.bind((f"{NET}.11", 0))
        port = s.getsockname()[1]
    state = emu.up(2, where, port=port, first=11, groups=("rpi5",), name_prefix="a15", net=NET)
    for i, b in enumerate(state["boards"]):
        cfg = Path(b["config"])
        extra = "LogLevel VERBOSE\n" + ("Ciphers aes128-ctr\n" if i == 1 else "")
        cfg.write_text(extra + cfg.read_text())  # first value wins in sshd_config too
        os.kill(b["pid"], signal.SIGHUP)  # sshd re-executes itself with the new config, same pid
        time.sleep(0.3)
        assert emu._wait_listening(b["host"], b["port"])
    yield state
    emu.down(where, quiet=True)


def _config(lab: dict, options: str) -> Path:
    """The test's ~/.ssh/config (HOME is a temporary folder: tests/conftest.py): hosts algo-a and algo-b."""
    ssh = Path(os.environ["HOME"], ".ssh")
    ssh.mkdir(exist_ok=True)
    common = (f"  User {lab['user']}\n  IdentityFile {lab['identity_file']}\n"
              f"  UserKnownHostsFile {lab['known_hosts']}\n")
    text = "".join(f"Host algo-{'ab'[i]}\n  HostName {b['host']}\n  Port {b['port']}\n{common}{options}"
                   for i, b in enumerate(lab["boards"]))
    (ssh / "config").write_text(text)
    return ssh / "config"


def _connections(lab: dict, i: int) -> int:
    return (Path(lab["boards"][i]["config"]).parent / "sshd.log").read_text().count("Connection from")


def _negotiated(alias: str, kex: list | None = None) -> tuple[str, str, str]:
    """(local cipher, remote cipher, local MAC) of a connection that ran a command; ``kex`` receives the kex list offered."""
    t = SSHTransport(Board(name="pi", host=alias, connect_retries=1))
    try:
        assert t.run(["true"]).ok
        tr = t.connect().get_transport()
        assert tr is not None
        if kex is not None:
            kex.extend(tr.preferred_kex)
        return tr.local_cipher, tr.remote_cipher, tr.local_mac
    finally:
        t.close()


def test_ssh_config_cipher_is_the_one_negotiated(lab):
    """`Ciphers aes256-ctr`: paramiko's default first choice (aes128-ctr) is not offered."""
    _config(lab, "  Ciphers aes256-ctr\n")
    assert _negotiated("algo-a")[:2] == ("aes256-ctr", "aes256-ctr")


def test_inventory_ssh_args_and_paramiko_parser_restrict_too(lab, monkeypatch):
    """`-o Ciphers=...` in the inventory's ssh_args (an Ansible inventory's ansible_ssh_common_args) is honoured,
    and so is the config's Ciphers where paramiko's parser stands in for a missing `ssh`."""
    _config(lab, "")
    args, _ = parse_ssh_args("-o Ciphers=aes192-ctr", "inv")
    t = SSHTransport(Board(name="pi", host="algo-a", ssh_args=args))
    try:
        tr = t.connect().get_transport()
        assert tr is not None and tr.local_cipher == "aes192-ctr"
    finally:
        t.close()
    monkeypatch.setenv("DMSBUILD_SSH", "none")
    _config(lab, "  Ciphers aes256-gcm@openssh.com\n")
    assert _negotiated("algo-a")[:2] == ("aes256-gcm@openssh.com",) * 2
    _config(lab, "  Ciphers +aes256-cbc\n")
    with pytest.raises(UserError, match="needs the OpenSSH client"):
        SSHTransport(Board(name="pi", host="algo-a")).connect()


def test_the_users_order_of_preference_is_kept(lab):
    """The user prefers aes256-gcm over aes128-ctr (paramiko's own order is the reverse); MACs likewise."""
    _config(lab, "  Ciphers aes256-gcm@openssh.com,aes128-ctr\n  MACs hmac-sha2-512,hmac-sha2-256\n")
    assert _negotiated("algo-a")[:2] == ("aes256-gcm@openssh.com",) * 2
    _config(lab, "  Ciphers aes192-ctr,aes128-ctr\n  MACs hmac-sha2-512,hmac-sha2-256\n")
    assert _negotiated("algo-a") == ("aes192-ctr", "aes192-ctr", "hmac-sha2-512")


def test_openssh_defaults_still_connect(lab):
    """No algorithm set: OpenSSH's default lists (as `ssh -G` prints them) leave paramiko enough to connect."""
    _config(lab, "")
    kex: list = []
    assert _negotiated("algo-a", kex)[:2] == ("aes128-ctr",) * 2  # OpenSSH's first cipher that paramiko has
    if "mlkem768x25519-sha256" not in subprocess.run(["ssh", "-Q", "kex"], capture_output=True, text=True).stdout:
        # paramiko's own first choice (mlkem768x25519) is not offered where `ssh` does not know it
        assert kex[0] == "curve25519-sha256@libssh.org" and "mlkem768x25519-sha256" not in kex


def test_an_algorithm_paramiko_lacks_fails_before_connecting(lab):
    import paramiko

    assert "chacha20-poly1305@openssh.com" not in paramiko.Transport._preferred_ciphers
    _config(lab, "  Ciphers chacha20-poly1305@openssh.com\n")
    before = _connections(lab, 0)
    t = SSHTransport(Board(name="lab-pi", host="algo-a", connect_retries=1))
    with pytest.raises(UserError) as err:
        t.connect()
    t.close()
    line = str(err.value).splitlines()[0]
    assert "board 'lab-pi'" in line and "Ciphers allows only chacha20-poly1305@openssh.com" in line
    assert "aes256-ctr" in line and "hint: add one of paramiko's to Ciphers" in str(err.value)
    time.sleep(0.3)
    assert _connections(lab, 0) == before  # nothing reached the board
    # an empty intersection in any list counts, not only Ciphers
    _config(lab, "  KexAlgorithms sntrup761x25519-sha512@openssh.com\n")
    with pytest.raises(UserError, match="KexAlgorithms allows only sntrup761x25519"):
        SSHTransport(Board(name="lab-pi", host="algo-a")).connect()


def test_board_and_config_sharing_no_cipher_fail_like_ssh(lab):
    """sshd allows only aes128-ctr; the config excludes it: `ssh` refuses, so does dmsbuild (at once, one line)."""
    cfg = _config(lab, "  Ciphers aes256-ctr,aes128-gcm@openssh.com\n")
    ssh = subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "algo-b", "true"], capture_output=True,
                         text=True, timeout=30)
    assert ssh.returncode == 255 and "no matching cipher" in ssh.stderr
    t = SSHTransport(Board(name="lab-pi", host="algo-b", connect_retries=3))
    with pytest.raises(TransportError) as err:
        t.connect()
    t.close()
    line = str(err.value).splitlines()[0]
    assert "board 'lab-pi'" in line and "accepts none of the algorithms the ssh config allows" in line
    # the control: once the config allows the board's cipher, the same board answers
    _config(lab, "  Ciphers aes256-ctr,aes128-ctr\n")
    assert _negotiated("algo-b")[:2] == ("aes128-ctr", "aes128-ctr")
