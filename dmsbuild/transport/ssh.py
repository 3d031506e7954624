"""SSH to a board with paramiko: the only module of dmsbuild that imports it.

What a user of OpenSSH expects, applied explicitly because paramiko parses
``~/.ssh/config`` but does not apply it: ``HostName``, ``User``, ``Port``,
``IdentityFile``, ``UserKnownHostsFile`` and ``ProxyJump`` of the matching
``Host`` blocks are used unless the inventory sets the field (the inventory
is like the ``ssh`` command line: it wins). Keys: the inventory's
``identity_file``, the config's IdentityFile entries, ssh-agent (when
``SSH_AUTH_SOCK`` is set), then the default ``~/.ssh/id_*`` files. Never a
password.

Host keys: known_hosts files (the inventory's, else the config's
UserKnownHostsFile, else ``~/.ssh/known_hosts``; plus ``/etc/ssh/ssh_known_hosts``)
and the inventory's pinned ``host_key``. An unknown key is refused (paramiko
``RejectPolicy`` semantics) unless the board says ``trust_on_first_use = true``,
in which case it is recorded in the board's known_hosts file. A changed key is
always refused, with both fingerprints and the file to fix.
``StrictHostKeyChecking`` from ~/.ssh/config is deliberately not honoured:
trust-on-first-use is decided by the inventory only.
"""
from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import paramiko

from ..errors import UserError
from ..inventory import Board
from .base import CommandResult, Progress, RemoteProcess, Transport, join_argv

#: ENV: another ssh config file instead of ~/.ssh/config (tests, CI)
SSH_CONFIG_ENV = "DMSBUILD_SSH_CONFIG"
KEEPALIVE_S = 15
#: SFTP channel window: large, so pipelined writes are not throttled by acks
SFTP_WINDOW = 1 << 27
CHUNK = 1 << 20


class TransportError(UserError):
    """The board could not be reached or the connection broke (the deploy of THAT board fails)."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


@dataclass
class Endpoint:
    """Where and how to connect, after ~/.ssh/config was applied."""

    label: str
    hostname: str
    port: int
    user: str
    key_files: list[str]
    known_hosts: list[str]
    pinned: str | None
    tofu_file: str | None
    proxy_jump: str | None
    timeout: float
    retries: int
    config_file: str | None = None
    notes: list[str] = field(default_factory=list)


def ssh_config_path() -> Path:
    return Path(os.environ.get(SSH_CONFIG_ENV) or os.path.expanduser("~/.ssh/config"))


def lookup_ssh_config(alias: str) -> tuple[dict[str, Any], str | None]:
    path = ssh_config_path()
    if not path.is_file():
        return {"hostname": alias}, None
    try:
        cfg = paramiko.SSHConfig.from_path(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise UserError(f"{path}: cannot parse the ssh config: {exc}", hint="fix that file or set DMSBUILD_SSH_CONFIG") from None
    return dict(cfg.lookup(alias)), str(path)


def resolve(board: Board, alias: str | None = None, port: int | None = None, user: str | None = None) -> Endpoint:
    """Apply the inventory, then ~/.ssh/config, then OpenSSH defaults."""
    alias = alias or board.address
    opts, cfg_file = lookup_ssh_config(alias)
    hostname = opts.get("hostname", alias)
    the_port = port or (board.port if alias == board.address else None) or int(opts.get("port", 22))
    the_user = user or (board.user if alias == board.address else None) or opts.get("user") or _local_user()
    keys: list[str] = []
    if board.identity_file:
        keys.append(os.path.expanduser(board.identity_file))
    keys += [os.path.expanduser(k) for k in opts.get("identityfile", [])]
    if board.known_hosts:
        known = [board.known_hosts]
    elif "userknownhostsfile" in opts:
        known = [os.path.expanduser(p) for p in opts["userknownhostsfile"].split()]
    else:
        known = [os.path.expanduser("~/.ssh/known_hosts")]
    known.append("/etc/ssh/ssh_known_hosts")
    jump = board.proxy_jump if alias == board.address else None
    if jump is None:
        jump = opts.get("proxyjump")
        if jump and jump.lower() == "none":
            jump = None
    return Endpoint(
        label=f"board '{board.name}'" if alias == board.address else f"board '{board.name}' (jump host {alias})",
        hostname=hostname, port=int(the_port), user=the_user, key_files=keys, known_hosts=known,
        pinned=board.host_key if alias == board.address else None,
        tofu_file=known[0] if board.trust_on_first_use else None,
        proxy_jump=jump, timeout=board.connect_timeout, retries=board.connect_retries, config_file=cfg_file,
    )


def _local_user() -> str:
    import getpass

    return getpass.getuser()


class _CheckPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown key (recording its fingerprint for the message), or trust it on first use."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.offered: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.offered = key
        if self.ep.tofu_file is None:
            raise paramiko.SSHException(f"unknown host key {fingerprint(key)}")
        name = known_name(self.ep.hostname, self.ep.port)
        client.get_host_keys().add(name, key.get_name(), key)
        path = Path(self.ep.tofu_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")


def _split_jump(spec: str) -> tuple[str | None, str, int | None]:
    user = None
    if "@" in spec:
        user, spec = spec.split("@", 1)
    port = None
    if ":" in spec:
        spec, p = spec.rsplit(":", 1)
        port = int(p)
    return user, spec, port


class SSHTransport(Transport):
    """A lazily opened SSH connection to one board (one per board; not shared across threads)."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.name = board.name
        self._client: paramiko.SSHClient | None = None
        self._jumps: list[paramiko.SSHClient] = []
        self._sftp_client: paramiko.SFTPClient | None = None
        self.endpoint: Endpoint | None = None

    # -- connection ------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        if self._client is not None:
            return self._client
        ep = resolve(self.board)
        self.endpoint = ep
        sock = None
        if ep.proxy_jump:
            sock = self._open_jumps(ep)
        self._client = self._connect_endpoint(ep, sock)
        return self._client

    def _open_jumps(self, ep: Endpoint) -> paramiko.Channel:
        """ProxyJump: connect hop by hop, each through a direct-tcpip channel of the previous one."""
        sock = None
        hops = ep.proxy_jump.split(",") if ep.proxy_jump else []
        for i, hop in enumerate(hops):
            user, host, port = _split_jump(hop)
            hop_ep = resolve(self.board, alias=host, port=port, user=user)
            hop_ep.proxy_jump = None
            client = self._connect_endpoint(hop_ep, sock)
            self._jumps.append(client)
            nxt_host, nxt_port = (ep.hostname, ep.port)
            if i + 1 < len(hops):
                _, h, p = _split_jump(hops[i + 1])
                nxt = resolve(self.board, alias=h, port=p)
                nxt_host, nxt_port = nxt.hostname, nxt.port
            transport = client.get_transport()
            if transport is None:
                raise TransportError(f"{hop_ep.label}: connection closed")
            try:
                sock = transport.open_channel("direct-tcpip", (nxt_host, nxt_port), ("127.0.0.1", 0), timeout=ep.timeout)
            except (paramiko.SSHException, OSError) as exc:
                raise TransportError(
                    f"{ep.label}: jump host {host} could not reach {nxt_host}:{nxt_port}: {exc}",
                    hint="check ProxyJump and that the jump host allows TCP forwarding",
                ) from None
        assert sock is not None  # hops is non-empty when called
        return sock

    def _connect_endpoint(self, ep: Endpoint, sock: Any) -> paramiko.SSHClient:
        where = f"{ep.user}@{ep.hostname}:{ep.port}"
        last: BaseException | None = None
        for attempt in range(ep.retries):
            if attempt:
                time.sleep(min(0.25 * 2 ** attempt, 4.0))
            client = paramiko.SSHClient()
            keys = client.get_host_keys()
            for f in ep.known_hosts:
                if os.path.isfile(f):
                    try:
                        keys.load(f)
                    except (OSError, paramiko.SSHException) as exc:
                        raise UserError(f"{f}: unreadable known_hosts file: {exc}", hint="fix or remove that file") from None
            name = known_name(ep.hostname, ep.port)
            if ep.pinned:
                ktype, data = ep.pinned.split()[:2]
                keys.add(name, ktype, paramiko.PKey.from_type_string(ktype, base64.b64decode(data)))
            policy = _CheckPolicy(ep)
            client.set_missing_host_key_policy(policy)
            try:
                client.connect(
                    ep.hostname, port=ep.port, username=ep.user, key_filename=[k for k in ep.key_files if os.path.isfile(k)] or None,
                    allow_agent=True, look_for_keys=not ep.key_files, timeout=ep.timeout, banner_timeout=ep.timeout,
                    auth_timeout=ep.timeout, sock=sock, password=None, passphrase=None,
                )
            except paramiko.BadHostKeyException as exc:
                client.close()
                file_hint = (
                    f"the pinned host_key of board '{self.board.name}' in {self.board.source}" if ep.pinned
                    else " or ".join(f for f in ep.known_hosts if os.path.isfile(f))
                )
                raise TransportError(
                    f"{ep.label}: HOST KEY MISMATCH for {name}: the board offered {exc.key.get_name()} {fingerprint(exc.key)}, "
                    f"but {file_hint} expects {fingerprint(exc.expected_key)}; refusing to connect",
                    hint=f"if the board was re-installed, verify the new fingerprint out of band, then fix the entry for {name} "
                    f"in {file_hint} (e.g. ssh-keygen -R '{name}' -f FILE)",
                ) from None
            except paramiko.AuthenticationException as exc:
                client.close()
                tried = [k for k in ep.key_files if os.path.isfile(k)] or ["~/.ssh/id_*"]
                agent = "ssh-agent" if os.environ.get("SSH_AUTH_SOCK") else "no ssh-agent"
                raise TransportError(
                    f"{ep.label}: authentication refused for {where} ({exc}); tried keys: {', '.join(tried)}; {agent}",
                    hint="check the board's user and identity_file in the inventory and the board's authorized_keys",
                ) from None
            except paramiko.SSHException as exc:
                client.close()
                if policy.offered is not None and ep.tofu_file is None:
                    files = ", ".join(f for f in ep.known_hosts[:-1])
                    raise TransportError(
                        f"{ep.label}: unknown host key for {name} ({policy.offered.get_name()} {fingerprint(policy.offered)}); "
                        f"not in {files} and trust_on_first_use is off",
                        hint=f"verify the fingerprint, then add it: ssh-keyscan -p {ep.port} {ep.hostname} >> {ep.known_hosts[0]} "
                        "(or pin it as host_key in the inventory)",
                    ) from None
                last = exc
            except (OSError, EOFError) as exc:  # refused, unreachable, timeout (socket.timeout is an OSError)
                client.close()
                last = exc
            else:
                transport = client.get_transport()
                if transport is not None:
                    transport.set_keepalive(KEEPALIVE_S)
                    _bound_unacked(transport.sock, self.board.io_timeout)
                return client
            if sock is not None:  # a jump channel cannot be reused for another attempt
                break
        raise TransportError(
            f"{ep.label}: unreachable at {where} after {attempt + 1} attempt(s): {last or 'no answer'}",
            hint="check that the board is up and the host/port in the inventory (or ~/.ssh/config)",
        )

    def _transport(self) -> paramiko.Transport:
        t = self.connect().get_transport()
        if t is None or not t.is_active():
            raise TransportError(f"board '{self.name}': connection lost")
        return t

    def _sftp(self) -> paramiko.SFTPClient:
        if self._sftp_client is None:
            try:
                self._sftp_client = paramiko.SFTPClient.from_transport(self._transport(), window_size=SFTP_WINDOW)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise TransportError(f"board '{self.name}': cannot open SFTP: {exc}") from None
            if self._sftp_client is None:
                raise TransportError(f"board '{self.name}': the board refused the SFTP subsystem")
            # a dead link would block a write forever (TCP retries for ~15 min): give up after io_timeout without progress
            self._sftp_client.get_channel().settimeout(self.board.io_timeout)
        return self._sftp_client

    # -- Transport -------------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None) -> CommandResult:
        argv = [str(a) for a in argv]
        try:
            chan = self._transport().open_session(timeout=self.board.connect_timeout)
            chan.exec_command(join_argv(argv))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err, status = _drain(chan, timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.name}': connection failed while running {argv[0]}: {exc}") from None
        return CommandResult(argv, status, out.decode(errors="replace"), err.decode(errors="replace"))

    def put(self, local: Path, remote: str, *, offset: int = 0, progress: Progress | None = None) -> None:
        total = os.path.getsize(local)
        try:
            sftp = self._sftp()
            with open(local, "rb") as src, sftp.open(remote, "r+b" if offset else "wb") as dst:
                dst.set_pipelined(True)
                if offset:
                    dst.truncate(offset)
                    dst.seek(offset)
                    src.seek(offset)
                sent = offset
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, total)
            # pipelined writes: a write the board refused (ENOSPC, EIO) is only saved on the file object
            # and lost at close, so the size that arrived is checked instead
            arrived = sftp.stat(remote).st_size
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.name}': upload of {Path(local).name} to {remote} failed: {exc}") from None
        if arrived != total:
            raise TransportError(f"board '{self.name}': upload of {Path(local).name} to {remote} incomplete: "
                                 f"{arrived} of {total} bytes arrived (the board refused writes: disk full?)")

    def get(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._sftp().get(remote, str(local))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.name}': download of {remote} failed: {exc}") from None

    def spawn(self, argv: Sequence[str]) -> RemoteProcess:
        argv = [str(a) for a in argv]
        try:
            chan = self._transport().open_session(timeout=self.board.connect_timeout)
            chan.exec_command(join_argv(argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.name}': connection failed while starting {argv[0]}: {exc}") from None
        return _SSHProcess(self.name, chan, argv)

    def close(self) -> None:
        for obj in (self._sftp_client, self._client, *reversed(self._jumps)):
            if obj is not None:
                try:
                    obj.close()
                except (paramiko.SSHException, OSError, EOFError):
                    pass  # the connection is already gone (a killed deploy): nothing left to close
        self._sftp_client = None
        self._client = None
        self._jumps = []


def _bound_unacked(sock: Any, seconds: float) -> None:
    """Let the kernel drop the connection when sent data stays unacknowledged for ``seconds``.

    paramiko retries a blocked socket write forever, so a dead link (a pulled
    cable: no RST, no FIN) would hang the deploy for TCP's ~15 minutes of
    retransmissions; TCP_USER_TIMEOUT (Linux) turns that into an error. The
    keepalive sends data too, so an idle dead connection is caught as well."""
    opt = getattr(socket, "TCP_USER_TIMEOUT", None)
    if opt is not None and isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, opt, int(seconds * 1000))
        except OSError:
            pass  # not TCP (a unix socket): nothing to bound


def _drain(chan: paramiko.Channel, timeout: float | None) -> tuple[bytes, bytes, int]:
    out, err = bytearray(), bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if chan.recv_ready():
            out += chan.recv(1 << 16)
            continue
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(1 << 16)
            continue
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            if chan.closed or chan.eof_received:
                break
        if deadline is not None and time.monotonic() > deadline:
            chan.close()
            return bytes(out), bytes(err) + f"\ntimed out after {timeout} s".encode(), 124
        if chan.closed and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        select.select([chan], [], [], 0.2)
    return bytes(out), bytes(err), chan.recv_exit_status()


class _SSHProcess(RemoteProcess):
    def __init__(self, board: str, chan: paramiko.Channel, argv: list[str]) -> None:
        self.board = board
        self.chan = chan
        self.argv = argv
        self._buf = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self.chan.sendall(data)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.board}': connection lost: {exc}") from None

    def readline(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            if self.chan.recv_ready():
                self._buf += self.chan.recv(4096)
                continue
            if self.chan.closed or self.chan.eof_received or time.monotonic() > deadline:
                break
            select.select([self.chan], [], [], 0.2)
        line, sep, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return (line + sep).decode(errors="replace")

    def finish(self, timeout: float = 30.0) -> CommandResult:
        try:
            self.chan.shutdown_write()
            out, err, status = _drain(self.chan, timeout)
        except (paramiko.SSHException, OSError, EOFError, socket.error) as exc:
            return CommandResult(self.argv, 255, "", f"connection lost: {exc}")
        return CommandResult(self.argv, status, bytes(self._buf + out).decode(errors="replace"), err.decode(errors="replace"))
