"""Keys offered as OpenSSH offers them (issue 27): a passphrase key in a real ssh-agent, IdentitiesOnly yes/no.

One real sshd board on 127.0.18.11 that accepts only a passphrase-protected key; a real ``ssh-agent`` started
by each test on a private socket (killed afterwards); the test's HOME is a temporary folder (conftest), so the
developer's own ~/.ssh and agent are never read. Each case is checked against the real ``ssh`` client too:
dmsbuild connects exactly when ``ssh -o BatchMode=yes`` does.
"""
from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
from pathlib import Path

import paramiko
import pytest

from dmsbuild import boards as emu
from dmsbuild.ship.inventory import Board
from dmsbuild.transport.ssh import SSHTransport, TransportError, identities, public_blob

NET = "127.0.18"
PASSPHRASE = "correct horse"


def _keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    where = tmp_path_factory.mktemp("identity-lab")
    with socket.socket() as s:
        s.bind((f"{NET}.11", 0))
        port = s.getsockname()[1]
    state = emu.up(1, where, port=port, first=11, groups=("rpi5",), name_prefix="id27", net=NET)
    keys = where / "keys"
    keys.mkdir()
    state["locked"] = _keygen(keys / "board_key", PASSPHRASE)  # the only key the board accepts
    state["decoy"] = _keygen(keys / "decoy_key")  # readable, no passphrase, not authorized
    board = state["boards"][0]
    (Path(board["config"]).parent / "authorized_keys").write_text((keys / "board_key.pub").read_text())
    yield state
    emu.down(where, quiet=True)


@pytest.fixture()
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real ssh-agent on a private socket; ``add(key)`` loads a key (the passphrase through SSH_ASKPASS)."""
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True).stdout
    pid = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    askpass.chmod(0o700)

    def add(key: Path) -> None:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
               "DISPLAY": ":0"}
        subprocess.run(["ssh-add", str(key)], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)

    try:
        yield {"socket": str(sock), "add": add}
    finally:
        os.kill(pid, signal.SIGTERM)


def _config(lab: dict, extra: str) -> Path:
    b = lab["boards"][0]
    ssh = Path(os.environ["HOME"], ".ssh")
    ssh.mkdir(exist_ok=True)
    cfg = ssh / "config"
    cfg.write_text(f"Host lab-board\n  HostName {b['host']}\n  Port {b['port']}\n  User {lab['user']}\n"
                   f"  UserKnownHostsFile {lab['known_hosts']}\n{extra}")
    return cfg


def _ssh_says(cfg: Path, sock: str | None) -> bool:
    """Whether the real OpenSSH client gets in with this config and agent (no prompts)."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    if sock:
        env["SSH_AUTH_SOCK"] = sock
    proc = subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "lab-board", "true"], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    return proc.returncode == 0


def _who() -> str:
    t = SSHTransport(Board(name="pi", host="lab-board"))
    try:
        res = t.run(["id", "-un"])
        assert res.ok, res.stderr
        return res.stdout.strip()
    finally:
        t.close()


@pytest.mark.parametrize("only", ["yes", "no"])
def test_a_passphrase_key_in_the_agent_deploys_with_identities_only(lab, agent, monkeypatch, only):
    """The issue's hardened config: IdentitiesOnly + IdentityFile = a passphrase key that ssh-agent holds."""
    monkeypatch.setenv("SSH_AUTH_SOCK", agent["socket"])
    agent["add"](lab["decoy"])  # a second agent key: with IdentitiesOnly yes it must not be offered
    agent["add"](lab["locked"])
    cfg = _config(lab, f"  IdentityFile {lab['locked']}\n  IdentitiesOnly {only}\n")
    assert _ssh_says(cfg, agent["socket"])
    assert _who() == lab["user"]


@pytest.mark.parametrize("only", ["yes", "no"])
def test_a_passphrase_key_not_in_the_agent_gets_the_hint_naming_it(lab, agent, monkeypatch, only):
    monkeypatch.setenv("SSH_AUTH_SOCK", agent["socket"])
    agent["add"](lab["decoy"])
    cfg = _config(lab, f"  IdentityFile {lab['locked']}\n  IdentitiesOnly {only}\n")
    assert not _ssh_says(cfg, agent["socket"])
    with pytest.raises(TransportError) as err:
        _who()
    text = str(err.value)
    assert f"{lab['locked']} (passphrase-protected, not in the agent)" in text
    assert f"ssh-add {lab['locked']}" in err.value.hint
    # IdentitiesOnly yes: the agent's other key is not offered; without it, it is (and refused)
    assert ("agent key" in text) == (only == "no")


def test_identity_agent_names_the_socket_and_none_disables_it(lab, agent, monkeypatch):
    """IdentityAgent as configured: a socket path is asked though SSH_AUTH_SOCK is unset; `none` asks no agent."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    agent["add"](lab["locked"])
    cfg = _config(lab, f"  IdentityFile {lab['locked']}\n  IdentitiesOnly yes\n  IdentityAgent {agent['socket']}\n")
    assert _ssh_says(cfg, None)
    assert _who() == lab["user"]
    monkeypatch.setenv("SSH_AUTH_SOCK", agent["socket"])
    cfg = _config(lab, f"  IdentityFile {lab['locked']}\n  IdentityAgent none\n")
    assert not _ssh_says(cfg, agent["socket"])
    with pytest.raises(TransportError, match=r"no ssh-agent \(IdentityAgent none\)"):
        _who()


def test_a_readable_identity_file_is_offered_without_an_agent(lab, monkeypatch, tmp_path):
    """No agent at all: a key file without a passphrase that the board accepts works (files follow agent keys)."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    plain = tmp_path / "plain_key"
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", PASSPHRASE, "-N", "", "-f", str(_copy(lab["locked"], plain))],
                   check=True)
    cfg = _config(lab, f"  IdentityFile {lab['decoy']}\n  IdentityFile {plain}\n  IdentitiesOnly yes\n")
    assert _ssh_says(cfg, None)
    assert _who() == lab["user"]


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    dst.chmod(0o600)
    (dst.parent / (dst.name + ".pub")).write_bytes(Path(str(src) + ".pub").read_bytes())
    return dst


def test_public_half_is_found_as_ssh_finds_it(lab, tmp_path):
    """FILE.pub first; without it, the OpenSSH private key's unencrypted header (no passphrase needed)."""
    expected = paramiko.PublicBlob.from_file(str(lab["locked"]) + ".pub").key_blob
    assert public_blob(str(lab["locked"])) == expected
    alone = tmp_path / "alone"
    alone.write_bytes(lab["locked"].read_bytes())
    assert public_blob(str(alone)) == expected
    assert public_blob(str(tmp_path / "missing")) is None


def test_invalid_base64_in_a_key_file_is_ignored(tmp_path):
    """A public-key line whose key is not valid base64 is not a public half: the next candidate
    (``FILE.pub``) is read instead, and with none, no public half; never a traceback."""
    key = tmp_path / "key"
    key.write_text("ssh-ed25519 not*base64! me@host\n")
    assert public_blob(str(key)) is None
    (tmp_path / "key.pub").write_text("ssh-ed25519 " + base64.b64encode(b"the blob").decode() + " me@host\n")
    assert public_blob(str(key)) == b"the blob"
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAA=B== me@host\n")  # padding in the middle
    assert public_blob(str(key)) is None


@pytest.mark.parametrize("only", [True, False])
@pytest.mark.parametrize("agent_order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_offer_order_is_openssh_pubkey_prepare(tmp_path, only, agent_order):
    """Agent keys matching an IdentityFile (agent order), then other agent keys (not with IdentitiesOnly),
    then the IdentityFiles no agent key matched (config order)."""
    files = [str(_keygen(tmp_path / f"k{i}")) for i in range(3)]
    keys = [paramiko.Ed25519Key.from_private_key_file(f) for f in files]
    stranger = paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path / "stranger")))
    configured = [files[0], files[2], str(tmp_path / "absent")]  # k1 is in the agent only; 'absent' does not exist
    agent_keys = [keys[i] for i in agent_order] + [stranger]
    offer = identities(configured, agent_keys, only)
    got = [(i.path, i.agent_key is not None) for i in offer]
    matched = [(files[i], True) for i in agent_order if i in (0, 2)]
    others = [] if only else [(None, True), (None, True)]  # k1 and the stranger, agent order
    assert got == matched + others
    assert [(i.path, i.agent_key) for i in identities(configured, [], only)] == [(files[0], None), (files[2], None)]
