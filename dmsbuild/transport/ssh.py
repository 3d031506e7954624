"""SSH to a board with paramiko: the only module of dmsbuild that imports it.

Where to connect is OpenSSH's answer, not ours: ``sshconfig.endpoint`` runs
``ssh -G`` for the board and every jump host (see ``docs/ssh.md`` and
``sshconfig.py`` for what is honoured and the resolution order). This module
opens that route: a direct TCP socket (AddressFamily, BindAddress,
ConnectTimeout), a ProxyCommand process (``paramiko.ProxyCommand``), or a
``direct-tcpip`` channel through each ProxyJump host in turn. Where no
``ssh`` client is installed, paramiko's own ``SSHConfig`` parser stands in and
a config using what it cannot honour (``Include``, ``Match``) is refused.

Keys: offered in OpenSSH's order (``pubkey_prepare`` in sshconnect2.c, see
``identities``): the agent's keys (the socket IdentityAgent names; ``none``: no
agent), those whose public half matches an IdentityFile first, the others only
without ``IdentitiesOnly yes``; then the remaining IdentityFiles (the
inventory's ``identity_file`` first) in the resolved order. A key the agent
holds is signed by the agent, so a passphrase-protected key works once it is
in the agent; one that is not gets a hint naming it. Never a password. Host keys: the resolved UserKnownHostsFile and
GlobalKnownHostsFile (looked up under HostKeyAlias when set) and the
inventory's pinned ``host_key``. An unknown key is refused (paramiko
``RejectPolicy`` semantics) unless the board says ``trust_on_first_use = true``,
in which case it is recorded in the first UserKnownHostsFile. A changed key is
always refused, with both fingerprints and the file to fix.
``StrictHostKeyChecking`` is deliberately not honoured.

Algorithms: paramiko offers only what the resolved Ciphers, MACs,
KexAlgorithms, HostKeyAlgorithms and PubkeyAcceptedAlgorithms allow (see
``algorithms``); where none of a list is implemented by paramiko the board
fails before anything is sent.

paramiko's own log (tracebacks of failed handshakes included) never reaches
the console: it goes to ``$DMSBUILD_SSH_LOG`` when set, else nowhere; every
failure is raised as one ``TransportError`` line.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import select
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import paramiko
import paramiko.agent

from ..errors import UserError
from .base import BoardAddress as Board  # ship.inventory.Board, as the transport sees it (base.py)
from .base import CommandResult, Progress, RemoteProcess, Transport, join_argv
from .sshconfig import SSH_CONFIG_ENV, Endpoint, config_args, endpoint, ssh_client, ssh_g  # noqa: F401 (SSH_CONFIG_ENV: re-exported)

#: ENV: a file that receives paramiko's log (debugging a connection)
SSH_LOG_ENV = "DMSBUILD_SSH_LOG"
KEEPALIVE_S = 15
#: SFTP channel window: large, so pipelined writes are not throttled by acks
SFTP_WINDOW = 1 << 27
CHUNK = 1 << 20
#: bytes of an SSH packet left for the SFTP write header (length, type, id, handle, offset) and channel framing
WRITE_HEADROOM = 192
#: ENV: how many uploads this process runs at once (a fixed number; unset: the adaptive limit, ``AdaptiveSlots``)
UPLOAD_SLOTS_ENV = "DMSBUILD_UPLOAD_SLOTS"
#: uploads at once per controller process to start from. paramiko moves every 32 KiB packet in Python under the
#: GIL; with 100 uploads pumping at once the threads mostly hand the GIL to each other (futex waits, context
#: switches): measured at 100 boards (docs/fleet-scale.md) the controller spent ~3x the CPU per MB of 16 at once.
#: 16 connections keep a LAN (or a 50 ms WAN: 16 x 2 MiB window / RTT) fuller than one GIL can feed; the
#: adaptive limit moves from here to what the controller and the link sustain (between 2 and UPLOAD_SLOTS_MAX).
UPLOAD_SLOTS = 16
#: the adaptive limit's ceiling: measured at 100 boards, 32 at once cost 18.0 controller CPU-s against 15.6 at 16
#: and 46 at 100 (docs/fleet-scale.md); 32 x 2 MiB windows fill 1.3 GB/s at 50 ms RTT
UPLOAD_SLOTS_MAX = 32
#: a file (or the rest of a resumed one) smaller than this is sent without an upload slot: a few packets
SMALL_UPLOAD = 256 << 10
#: seconds a connection's paramiko thread sleeps in its socket read before it checks whether it was closed
#: (paramiko's own 0.1 s woke every idle connection 10 times a second); keepalives and data wake it at once
IDLE_WAKE_S = 1.0
#: the largest SFTP write sent even where the board's server allows more (OpenSSH's allows 261120 bytes)
MAX_WRITE = 1 << 20


def _route_paramiko_log() -> None:
    """paramiko logs handshake failures with tracebacks at ERROR; Python's last-resort handler would print
    them on stderr. They go to $DMSBUILD_SSH_LOG (or nowhere): dmsbuild raises one line instead."""
    log = logging.getLogger("paramiko")
    log.propagate = False
    if not log.handlers:
        path = os.environ.get(SSH_LOG_ENV)
        handler: logging.Handler = logging.FileHandler(path) if path else logging.NullHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)


_route_paramiko_log()


class AdaptiveSlots:
    """How many uploads of this process pump bytes at once: a limit that follows the throughput they reach.

    Every ``period`` seconds with uploads waiting for a slot, the bytes sent
    (and the process's CPU per byte) over the period are compared with the
    period before: after a raise that paid (>= 5 % more bytes/s for less than
    15 % more CPU per byte) it raises again (x1.25, at least +1); a raise that
    lost throughput or cost >= 25 % more CPU per byte (the GIL hand-off
    symptom) is undone and the limit holds for ``hold`` periods; a cut that
    lost no throughput cuts again (fewer threads, less CPU), one that lost
    throughput is undone. Between ``low`` and ``high``; with no upload waiting
    the limit stays where it is (more slots cannot help then)."""

    def __init__(self, start: int = UPLOAD_SLOTS, low: int = 2, high: int = UPLOAD_SLOTS_MAX, period: float = 0.5,
                 hold: int = 6, clock: Any = time.monotonic, cpu: Any = time.process_time) -> None:
        self.limit, self.low, self.high, self.period, self.hold = start, low, high, period, hold
        self._clock, self._cpu = clock, cpu
        self._cond = threading.Condition()
        self.active = 0
        self.waiting = 0
        self._bytes = 0
        self._t0, self._c0 = clock(), cpu()
        self._last: tuple[float, float] | None = None  # (bytes/s, CPU s per byte) of the last period judged
        self._moved = 0  # +1 raised, -1 cut, 0 holding
        self._held = 0
        self._before = start  # the limit before the last move (what an undo goes back to)
        #: (limit, bytes/s) of every period judged: what the limit did (tests, profile_fleet)
        self.history: list[tuple[int, float]] = []

    def acquire(self, blocking: bool = True) -> bool:
        with self._cond:
            if self.active >= self.limit and not blocking:
                return False
            self.waiting += 1
            try:
                while self.active >= self.limit:
                    self._cond.wait()
            finally:
                self.waiting -= 1
            self.active += 1
            return True

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify()

    def __enter__(self) -> "AdaptiveSlots":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def sent(self, n: int) -> None:
        """``n`` more bytes went out (called by the uploads); judges the limit once per period."""
        with self._cond:
            self._bytes += n
            now = self._clock()
            if now - self._t0 < self.period:
                return
            cpu = self._cpu()
            rate = self._bytes / (now - self._t0)
            per_byte = (cpu - self._c0) / max(1, self._bytes)
            self._bytes, self._t0, self._c0 = 0, now, cpu
            if self.waiting == 0 and self._moved == 0:
                self._last = None  # demand below the limit: nothing to learn from this period
                return
            before = self.limit
            self._judge(rate, per_byte)
            self.history.append((before, rate))
            self._cond.notify_all()

    def _judge(self, rate: float, per_byte: float) -> None:
        last, self._last = self._last, (rate, per_byte)
        if last is None:  # the first period with demand: probe upwards
            self._move(+1)
            return
        dearer = per_byte >= last[1] * 1.25
        # a gain bought with much more CPU per byte is the GIL hand-off, not the link: not a gain
        gained = rate >= last[0] * 1.05 and per_byte < last[1] * 1.15
        lost = rate <= last[0] * 0.95
        if self._moved > 0:
            if gained:
                self._move(+1)
            elif lost or dearer:
                self._undo()
            else:
                self._stay()
        elif self._moved < 0:
            if lost:
                self._undo()
            else:
                self._move(-1)
        else:
            self._held += 1
            if self._held >= self.hold and self.waiting:
                self._move(+1)

    def _move(self, way: int) -> None:
        step = max(1, round(self.limit * 0.25))
        new = max(self.low, min(self.high, self.limit + way * step))
        self._moved = way if new != self.limit else 0
        self._held = 0
        self._before, self.limit = self.limit, new

    def _undo(self) -> None:
        """Back to the limit before the last move, then hold."""
        self.limit = self._before
        self._moved, self._held = 0, 0

    def _stay(self) -> None:
        self._moved, self._held = 0, 0


def _upload_slots() -> "threading.BoundedSemaphore | AdaptiveSlots":
    raw = os.environ.get(UPLOAD_SLOTS_ENV, "")
    if not raw:
        return AdaptiveSlots()
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"${UPLOAD_SLOTS_ENV} is {raw!r}; expected a whole number of uploads at once, at least 1",
                        hint=f"unset it (an adaptive limit, from {UPLOAD_SLOTS}) or set e.g. {UPLOAD_SLOTS_ENV}=32")
    return threading.BoundedSemaphore(int(raw))


_slots: "threading.BoundedSemaphore | AdaptiveSlots | None" = None
_slots_lock = threading.Lock()


def upload_slot() -> "threading.BoundedSemaphore | AdaptiveSlots":
    """The process-wide gate every upload holds while it sends bytes (a fixed $DMSBUILD_UPLOAD_SLOTS, else adaptive)."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = _upload_slots()
        return _slots


class TransportError(UserError):
    """The board could not be reached or the connection broke (the deploy of THAT board fails)."""


class _Retry(Exception):
    """One connection attempt failed in a way another attempt may not (its text is the one-line reason)."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


#: what paramiko's SSHConfig cannot honour (used only where no ssh client is installed)
_FALLBACK_REFUSED = re.compile(r"^\s*(include|match|canonicalizehostname|bindinterface|proxyusefdpass)\b", re.I | re.M)


def paramiko_lookup(alias: str, cli: list[str]) -> tuple[dict[str, list[str]], str | None]:
    """``ssh -G`` stand-in where OpenSSH is absent: paramiko's parser, refusing what it cannot honour."""
    _, cfg_file = config_args()  # the user's file only: paramiko's parser does not read /etc/ssh/ssh_config
    opts: dict[str, list[str]] = {}
    words = list(cli)
    i = 0
    while i < len(words):  # the command-line options first: the first value wins, as in ssh
        if words[i] in ("-4", "-6"):
            opts.setdefault("addressfamily", ["inet" if words[i] == "-4" else "inet6"])
            i += 1
            continue
        flag, value = words[i], words[i + 1]
        i += 2
        key = {"-p": "port", "-l": "user", "-i": "identityfile", "-J": "proxyjump"}.get(flag)
        if flag == "-o":
            k, _, value = value.partition("=")
            key = k.lower()
        if key:
            opts.setdefault(key, []).append(value)
    if cfg_file and os.path.isfile(cfg_file):
        text = Path(cfg_file).read_text(errors="replace")
        bad = _FALLBACK_REFUSED.search(text)
        if bad:
            raise UserError(f"{cfg_file}: '{bad.group(1)}' cannot be honoured without the OpenSSH client "
                            "(paramiko's parser does not implement it)",
                            hint="install openssh-client (dmsbuild then asks `ssh -G`) or remove that line")
        try:
            found = paramiko.SSHConfig.from_text(text).lookup(alias)
        except (paramiko.SSHException, ValueError) as exc:
            raise UserError(f"{cfg_file}: cannot parse the ssh config: {exc}", hint="fix that file") from None
        for key, value in found.items():
            if key == "identityfile":
                opts.setdefault(key, []).extend(value)
            elif key not in opts:
                opts[key] = [value] if isinstance(value, str) else list(value)
    opts.setdefault("hostname", [alias])
    if "identityfile" not in opts:
        opts["identityfile"] = [f"~/.ssh/id_{t}" for t in ("rsa", "ecdsa", "ed25519")]
    return opts, cfg_file


def board_cli(board: Board) -> tuple[list[str], list[str]]:
    """The board's inventory fields as ssh command-line options: (board only, board and its jump hosts)."""
    own: list[str] = []
    if board.port:
        own += ["-p", str(board.port)]
    if board.user:
        own += ["-l", board.user]
    if board.proxy_jump:
        own += ["-J", board.proxy_jump]
    own += list(board.ssh_args)
    shared: list[str] = []
    if board.identity_file:
        shared += ["-i", os.path.expanduser(board.identity_file)]
    if board.known_hosts:
        shared += ["-o", f"UserKnownHostsFile={board.known_hosts}"]
    return own, shared


def resolve(board: Board) -> Endpoint:
    """The board's route as the user's ``ssh`` would take it (``ssh -G``; paramiko's parser where ssh is absent)."""
    own, shared = board_cli(board)
    return endpoint(board.address, own, label=f"board '{board.name}'", lookup=ssh_g if ssh_client() else paramiko_lookup,
                    timeout=board.connect_timeout, retries=board.connect_retries, pinned=board.host_key,
                    tofu=board.trust_on_first_use, extra_cli=shared)


#: ssh_config option -> (paramiko's category: ``Transport._preferred_<category>``, SecurityOptions field or None)
_ALGORITHMS = {
    "ciphers": ("Ciphers", "ciphers", "ciphers"), "macs": ("MACs", "macs", "digests"),
    "kexalgorithms": ("KexAlgorithms", "kex", "kex"), "hostkeyalgorithms": ("HostKeyAlgorithms", "keys", "key_types"),
    "pubkeyacceptedalgorithms": ("PubkeyAcceptedAlgorithms", "pubkeys", None),
}
#: OpenSSH names paramiko knows under another name (the same algorithm: RFC 8731 renamed the libssh.org one)
_ALIASES = {"curve25519-sha256": "curve25519-sha256@libssh.org"}


def algorithms(ep: Endpoint) -> tuple[dict[str, list[str]], dict[str, tuple[str, ...]]]:
    """What paramiko may offer ``ep``: (``disabled_algorithms``, SecurityOptions field -> preference order).

    ``disabled_algorithms`` (paramiko's documented way to restrict a Transport:
    its docstring and the note above ``Transport._preferred_ciphers``) removes
    every algorithm of paramiko's that the user's list lacks; the order puts the
    allowed ones in the user's order first (SecurityOptions setters through
    ``SSHClient.connect(transport_factory=...)``, as a paramiko maintainer shows
    in paramiko/paramiko#2310). Host key certificates follow their key type
    (paramiko derives ``X-cert-v01@openssh.com`` from ``X``). An empty
    intersection is the user's ``ssh`` connecting where dmsbuild cannot: refused.
    """
    disabled: dict[str, list[str]] = {}
    order: dict[str, tuple[str, ...]] = {}
    for option, wanted in ep.algorithms.items():
        name, kind, field_ = _ALGORITHMS[option]
        if any(w[:1] in "+-^" for w in wanted):  # only paramiko's parser leaves these (ssh -G resolves them)
            raise UserError(f"{ep.label}: {name} {','.join(wanted)}: a +/-/^ list needs the OpenSSH client to resolve",
                            hint=f"install openssh-client, or list the {name} in full")
        ours = getattr(paramiko.Transport, f"_preferred_{kind}")
        allowed = list(dict.fromkeys(_ALIASES.get(w, w) for w in wanted if _ALIASES.get(w, w) in ours))
        if not allowed:
            raise UserError(
                f"{ep.label} ({ep.config_file or 'no ssh config'}): {name} allows only {','.join(wanted)}; "
                f"paramiko {paramiko.__version__} implements none of them (it has {','.join(ours)})",
                hint=f"add one of paramiko's to {name} for this host (see ssh -G {shlex.quote(ep.alias)}), "
                "or deploy to this board with another tool")
        disabled[kind] = [a for a in ours if a not in allowed]
        if field_:
            order[field_] = (*allowed, *disabled[kind])
    return disabled, order


def host_key_name(ep: Endpoint) -> str:
    """The known_hosts name ssh looks the key up under: HostKeyAlias, else [HostName]:Port."""
    return ep.host_key_alias if ep.host_key_alias else known_name(ep.hostname, ep.port)


_known_hosts_cache: dict[str, tuple[tuple[int, int, int], paramiko.HostKeys]] = {}
_known_hosts_lock = threading.Lock()


def known_hosts(path: str) -> paramiko.HostKeys:
    """``path`` parsed by paramiko, once per version of the file (inode, size, mtime), shared by all connections.

    paramiko's ``HostKeys.load`` parses every line into a key object and checks
    each against all earlier ones: with one line per board, loading the file
    for every connection made a rollout's host-key work grow with boards
    squared (measured: 11 ms per load at 100 lines, 27 ms at 200, i.e. 1.1 and
    5.3 CPU-s per rollout). The connection then takes only the entries for the
    name it checks (``HostKeys.lookup``, paramiko's own matching, hashed names
    included); a changed file (a TOFU append, an edit) is parsed again."""
    try:
        st = os.stat(path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with _known_hosts_lock:
            hit = _known_hosts_cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        keys = paramiko.HostKeys()
        keys.load(path)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise UserError(f"{path}: unreadable known_hosts file: {exc}", hint="fix or remove that file") from None
    with _known_hosts_lock:
        _known_hosts_cache[path] = (stamp, keys)
    return keys


#: the magic of OpenSSH's own private key format ("openssh-key-v1"; PROTOCOL.key in OpenSSH's sources)
_OPENSSH_KEY_MAGIC = b"openssh-key-v1\x00"


def public_blob(path: str) -> bytes | None:
    """The public half of an identity file, found as ``ssh`` finds it (``sshkey_load_public`` in authfile.c):
    the file itself read as a public key, then ``FILE.pub``, then the public key in an OpenSSH-format private
    key's header (stored unencrypted, so a passphrase key needs no passphrase here). None: no public half."""
    for candidate in (path, path + ".pub"):
        try:
            with open(candidate, encoding="ascii", errors="replace") as fh:
                lines = fh.read(1 << 16).splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-----BEGIN"):
                break
            words = line.split()
            if len(words) >= 2:
                try:
                    return base64.b64decode(words[1], validate=True)
                except ValueError:
                    pass
            break
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    m = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END OPENSSH PRIVATE KEY-----", text, re.S)
    if not m:
        return None
    try:
        data = base64.b64decode("".join(m.group(1).split()))
        if not data.startswith(_OPENSSH_KEY_MAGIC):
            return None
        msg = paramiko.Message(data[len(_OPENSSH_KEY_MAGIC):])
        for _ in range(3):  # ciphername, kdfname, kdfoptions
            msg.get_binary()
        if msg.get_int() < 1:
            return None
        return msg.get_binary() or None
    except (ValueError, paramiko.SSHException, IndexError):
        return None


class _SocketAgent(paramiko.agent.AgentSSH):
    """The ssh-agent at one socket (paramiko's ``Agent`` asks only ``$SSH_AUTH_SOCK``; IdentityAgent may name another)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(path)
            self._connect(sock)
        except (OSError, paramiko.SSHException):
            sock.close()
            raise

    def close(self) -> None:
        self._close()


class Identity:
    """One key ``ssh`` would offer: an agent key (``agent_key``; ``path`` when it matches an IdentityFile) or a file."""

    def __init__(self, path: str | None, agent_key: paramiko.PKey | None = None, comment: str = "") -> None:
        self.path = path
        self.agent_key = agent_key
        self.comment = comment

    def describe(self) -> str:
        if self.agent_key is None:
            return str(self.path)
        return f"agent key {fingerprint(self.agent_key)} ({self.path or self.comment or 'no comment'})"


def identities(key_files: Sequence[str], agent_keys: Sequence[paramiko.PKey], identities_only: bool) -> list[Identity]:
    """The keys in the order OpenSSH offers them (``pubkey_prepare``, sshconnect2.c): each agent key in the
    agent's order, taken as the IdentityFile whose public half it is when there is one, the others only
    without IdentitiesOnly; then the IdentityFiles no agent key matched, in the resolved order."""
    files = [(f, public_blob(f)) for f in dict.fromkeys(key_files)]
    matched: list[Identity] = []
    others: list[Identity] = []
    for key in agent_keys:
        blob = key.asbytes()
        hit = next((i for i, (_, pub) in enumerate(files) if pub is not None and pub == blob), None)
        if hit is not None:
            matched.append(Identity(files.pop(hit)[0], key))
        elif not identities_only:
            others.append(Identity(None, key, getattr(key, "comment", "") or ""))
    return [*matched, *others, *(Identity(f) for f, _ in files if os.path.isfile(f))]


def load_key_file(path: str) -> paramiko.PKey:
    """A private key file without a passphrase (a passphrase key raises ``PasswordRequiredException``)."""
    last: Exception | None = None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key = cls.from_private_key_file(path, password=None)
        except paramiko.PasswordRequiredException:
            raise
        except (paramiko.SSHException, ValueError, TypeError) as exc:
            last = exc
            continue
        if os.path.isfile(path + "-cert.pub"):  # CertificateFile KEY-cert.pub (sshconfig refuses others)
            key.load_certificate(path + "-cert.pub")
        return key
    raise paramiko.SSHException(f"not a private key paramiko reads ({last})")


class _Client(paramiko.SSHClient):
    """paramiko's client, authenticating with ``offer`` in order (OpenSSH's), keys only; ``tried`` says what happened."""

    def __init__(self, offer: list[Identity]) -> None:
        super().__init__()
        self.offer = offer
        self.tried: list[str] = []
        self.locked: list[str] = []

    def _auth(self, username: str, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002 - paramiko's signature
        if self._transport is None:
            raise paramiko.SSHException("no transport to authenticate on")
        for ident in self.offer:
            key = ident.agent_key
            if key is None:
                try:
                    key = load_key_file(str(ident.path))
                except paramiko.PasswordRequiredException:
                    self.locked.append(str(ident.path))
                    self.tried.append(f"{ident.path} (passphrase-protected, not in the agent)")
                    continue
                except (paramiko.SSHException, OSError) as exc:
                    self.tried.append(f"{ident.path} (unreadable: {exc})")
                    continue
            try:
                more = self._transport.auth_publickey(username, key)
            except paramiko.AuthenticationException:
                self.tried.append(f"{ident.describe()} (refused)")
                continue
            if not more:
                return
            self.tried.append(f"{ident.describe()} (accepted, but the board also wants {', '.join(more)})")
        raise paramiko.AuthenticationException("no key was accepted")


class _CheckPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown key (recording its fingerprint for the message), or trust it on first use."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.offered: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.offered = key
        if self.ep.tofu_file is None:
            raise paramiko.SSHException(f"unknown host key {fingerprint(key)}")
        name = host_key_name(self.ep)
        client.get_host_keys().add(name, key.get_name(), key)
        path = Path(self.ep.tofu_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")


class SSHTransport(Transport):
    """A lazily opened SSH connection to one board (one per board; not shared across threads)."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.name = board.name
        self._client: paramiko.SSHClient | None = None
        self._jumps: list[paramiko.SSHClient] = []
        self._sftp_client: paramiko.SFTPClient | None = None
        #: bytes per SFTP write on this connection (set when the SFTP channel opens)
        self.write_size = 0
        self.endpoint: Endpoint | None = None

    # -- connection ------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        if self._client is not None:
            return self._client
        ep = resolve(self.board)
        for hop in [*ep.chain(), ep]:
            algorithms(hop)  # a list paramiko cannot follow fails here, before any hop is connected
        self.endpoint = ep
        self._client = self._connect(ep)
        return self._client

    def _connect(self, ep: Endpoint) -> paramiko.SSHClient:
        """Connect to ``ep``: first its jump host (recursively), then ``ep`` through it; retried per attempt."""
        jump = self._connect(ep.via) if ep.via is not None else None
        if jump is not None:
            self._jumps.append(jump)
        last = "no answer"
        for attempt in range(ep.retries):
            if attempt:
                time.sleep(min(0.25 * 2 ** attempt, 4.0))
            try:
                sock = self._open_socket(ep, jump)
            except _Retry as exc:
                last = str(exc)
                continue
            try:
                return self._handshake(ep, sock)
            except _Retry as exc:
                last = str(exc)
        via = f" via {ep.via.where}" if ep.via is not None else ""
        # a deploy's resume check may have made the first attempts (Board.prior_attempts): counted, not repeated
        self.unreached_attempts = ep.retries + self.board.prior_attempts
        raise TransportError(
            f"{ep.label}: unreachable at {ep.where}{via} after {self.unreached_attempts} attempt(s): {last}",
            hint="check that the board is up and the host/port in the inventory (or ~/.ssh/config; try ssh -G "
            f"{shlex.quote(ep.alias)})",
        )

    def _open_socket(self, ep: Endpoint, jump: paramiko.SSHClient | None) -> Any:
        """A fresh byte stream to ep's SSH server: a jump host's direct-tcpip channel, a ProxyCommand, or TCP."""
        if jump is not None:
            transport = jump.get_transport()
            if transport is None or not transport.is_active():
                raise TransportError(f"{ep.label}: the connection to jump host {ep.via.where if ep.via else '?'} closed")
            try:
                return transport.open_channel("direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0), timeout=ep.timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise _Retry(f"jump host {ep.via.where if ep.via else '?'} could not open a channel to "
                             f"{ep.hostname}:{ep.port}: {exc or 'timed out'} (does it allow TCP forwarding?)") from None
        if ep.proxy_command:
            shell = os.environ.get("SHELL") or "/bin/sh"
            try:  # like ssh: `exec $SHELL -c "exec CMD"`; paramiko.ProxyCommand splits its string with shlex
                return paramiko.ProxyCommand(shlex.join([shell, "-c", "exec " + ep.proxy_command]))
            except (paramiko.SSHException, OSError) as exc:
                raise TransportError(f"{ep.label}: ProxyCommand {ep.proxy_command!r} failed to start: {exc}",
                                     hint="fix ProxyCommand in the ssh config") from None
        try:
            addrs = socket.getaddrinfo(ep.hostname, ep.port, ep.address_family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise TransportError(f"{ep.label}: cannot resolve {ep.hostname!r}: {exc.strerror}",
                                 hint="check the host name (HostName in ~/.ssh/config, host in the inventory)") from None
        err: OSError | None = None
        for family, kind, proto, _, addr in addrs:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(ep.timeout)
            try:
                if ep.bind_address:
                    sock.bind((ep.bind_address, 0))
                sock.connect(addr)
                return sock
            except OSError as exc:
                sock.close()
                err = exc
        if isinstance(err, socket.timeout):
            raise _Retry(f"no TCP connection to {ep.hostname}:{ep.port} within {ep.timeout:g} s")
        raise _Retry(f"{ep.hostname}:{ep.port}: {err.strerror if err and err.strerror else err}")

    def _handshake(self, ep: Endpoint, sock: Any) -> paramiko.SSHClient:
        disabled, order = algorithms(ep)

        def transport(*args: Any, **kwargs: Any) -> paramiko.Transport:
            t = paramiko.Transport(*args, **kwargs)
            # the connection's thread wakes up this often when nothing arrives (paramiko: every 0.1 s, to see
            # whether it was closed); a rollout holds one connection per board, most of them waiting (for the
            # resume checks, an upload slot, the board's agent), and 200 threads waking 10 times a second
            # each took the GIL 2,000 times a second for nothing (issue 26)
            t._active_check_timeout = IDLE_WAKE_S
            t.sock.settimeout(IDLE_WAKE_S)
            opts = t.get_security_options()
            for field_, names in order.items():
                setattr(opts, field_, names)
            return t

        agent, agent_note = _open_agent(ep)
        client = _Client(identities(ep.key_files, agent.get_keys() if agent is not None else (), ep.identities_only))
        try:
            return self._authenticated(ep, sock, client, disabled, transport, agent_note)
        finally:
            if agent is not None:
                agent.close()

    def _authenticated(self, ep: Endpoint, sock: Any, client: "_Client", disabled: dict[str, list[str]],
                       transport: Any, agent_note: str) -> paramiko.SSHClient:
        keys = client.get_host_keys()
        name = host_key_name(ep)
        for f in [*ep.known_hosts, *ep.global_known_hosts]:
            if os.path.isfile(f):
                found = known_hosts(f).lookup(name)
                for ktype in found.keys() if found is not None else []:
                    if keys.lookup(name) is None or ktype not in keys.lookup(name):  # the first file's key wins
                        keys.add(name, ktype, found[ktype])
        if ep.pinned:
            ktype, data = ep.pinned.split()[:2]
            keys.add(name, ktype, paramiko.PKey.from_type_string(ktype, base64.b64decode(data)))
        policy = _CheckPolicy(ep)
        client.set_missing_host_key_policy(policy)
        lookup_host, lookup_port = (ep.host_key_alias, 22) if ep.host_key_alias else (ep.hostname, ep.port)
        try:
            client.connect(
                lookup_host, port=lookup_port, username=ep.user, key_filename=None,
                allow_agent=False, look_for_keys=False, timeout=ep.timeout, banner_timeout=ep.timeout,
                auth_timeout=ep.timeout, channel_timeout=ep.timeout, sock=sock, password=None, passphrase=None,
                disabled_algorithms=disabled, transport_factory=transport,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            file_hint = (
                f"the pinned host_key of board '{self.board.name}' in {self.board.source}" if ep.pinned
                else " or ".join(f for f in [*ep.known_hosts, *ep.global_known_hosts] if os.path.isfile(f))
            )
            raise TransportError(
                f"{ep.label}: HOST KEY MISMATCH for {name}: the board offered {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"but {file_hint} expects {fingerprint(exc.expected_key)}; refusing to connect",
                hint=f"if the board was re-installed, verify the new fingerprint out of band, then fix the entry for {name} "
                f"in {file_hint} (e.g. ssh-keygen -R '{name}' -f FILE)",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            tried = "; ".join(client.tried) or "no key: no IdentityFile exists and the agent offered none"
            if client.locked:
                hint = (f"add the key to the agent: ssh-add {shlex.quote(client.locked[0])}"
                        + (f" (dmsbuild asks the agent at {ep.agent_socket})" if ep.agent_socket
                           else "; dmsbuild asks no agent here: " + agent_note))
            else:
                hint = ("check the user and identity_file (inventory or ~/.ssh/config) and the board's authorized_keys; "
                        "`ssh-add -l` lists the agent's keys")
            raise TransportError(
                f"{ep.label}: authentication refused for {ep.where} ({exc}); offered: {tried}; {agent_note}",
                hint=hint,
            ) from None
        except paramiko.IncompatiblePeer as exc:  # as `ssh`: "no matching cipher found" fails at once, no retry
            client.close()
            raise TransportError(
                f"{ep.label}: {ep.where} accepts none of the algorithms the ssh config allows ({exc})",
                hint=f"compare `ssh -G {shlex.quote(ep.alias)}` (Ciphers, MACs, KexAlgorithms, HostKeyAlgorithms) with the "
                "board's sshd_config; `ssh -v` shows the board's offer",
            ) from None
        except paramiko.SSHException as exc:
            handshake = client.get_transport()
            banner = bool(handshake is not None and handshake.remote_version)
            client.close()
            if policy.offered is not None and ep.tofu_file is None:
                files = ", ".join([*ep.known_hosts, *ep.global_known_hosts])
                raise TransportError(
                    f"{ep.label}: unknown host key for {name} ({policy.offered.get_name()} {fingerprint(policy.offered)}); "
                    f"not in {files} and trust_on_first_use is off",
                    hint=f"verify the fingerprint, then add it: ssh-keyscan -p {ep.port} {ep.hostname} >> {ep.known_hosts[0]} "
                    "(or pin it as host_key in the inventory)",
                ) from None
            text = str(exc)
            if not banner or "protocol banner" in text:
                proxy = f" (through {ep.via.where})" if ep.via is not None else \
                    (" (through ProxyCommand)" if ep.proxy_command else "")
                raise _Retry(f"no SSH banner from {ep.hostname}:{ep.port}{proxy} within {ep.timeout:g} s") from None
            raise _Retry(text.splitlines()[0] if text else type(exc).__name__) from None
        except (OSError, EOFError) as exc:  # reset, timeout (socket.timeout is an OSError)
            handshake = client.get_transport()
            banner = bool(handshake is not None and handshake.remote_version)
            client.close()
            if not banner:
                raise _Retry(f"no SSH banner from {ep.hostname}:{ep.port} within {ep.timeout:g} s ({exc or type(exc).__name__})") from None
            raise _Retry(f"{ep.hostname}:{ep.port}: {exc or type(exc).__name__}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(ep.keepalive or KEEPALIVE_S)
            _bound_unacked(transport.sock, self.board.io_timeout)
        return client

    def _timeout(self) -> float:
        return self.endpoint.timeout if self.endpoint is not None else (self.board.connect_timeout or 10.0)

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
            self.write_size = write_size(self._sftp_client)
        return self._sftp_client

    def is_open(self) -> bool:
        """True while the connection is up (a kept connection is reused only then)."""
        t = self._client.get_transport() if self._client is not None else None
        return t is not None and t.is_active()

    # -- Transport -------------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None) -> CommandResult:
        argv = [str(a) for a in argv]
        try:
            chan = self._transport().open_session(timeout=self._timeout())
            chan.exec_command(join_argv(argv))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err, status = _drain(chan, timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.name}': connection failed while running {argv[0]}: {exc}") from None
        return CommandResult(argv, status, out.decode(errors="replace"), err.decode(errors="replace"))

    def put(self, local: Path, remote: str, *, offset: int = 0, progress: Progress | None = None) -> None:
        """Upload ``local`` to ``remote`` (from ``offset``: a resume), holding one of the process's upload slots:
        at most UPLOAD_SLOTS files are in flight at once, however many boards are connected."""
        with upload_slot():
            self._put(local, remote, offset=offset, progress=progress)

    def upload(self, local: Path, remote: str, *, offset: int = 0, progress: Progress | None = None) -> None:
        """``put`` as a deploy sends its files: the upload slot is held only while bytes flow (not while the
        remote file opens), and a file smaller than SMALL_UPLOAD takes none (issue 26)."""
        self._put(local, remote, offset=offset, progress=progress, slot=upload_slot())

    def prepare_upload(self) -> None:
        """Open the SFTP channel now (three round trips), e.g. while the board's agent starts; a failure here
        is left for the upload itself to report."""
        try:
            self._sftp()
        except TransportError:
            pass

    def _put(self, local: Path, remote: str, *, offset: int, progress: Progress | None, slot: Any = None) -> None:
        total = os.path.getsize(local)
        gate = slot if slot is not None and total - offset >= SMALL_UPLOAD else contextlib.nullcontext()
        count = getattr(gate, "sent", None)
        try:
            sftp = self._sftp()
            with open(local, "rb") as src:
                dst = sftp.open(remote, "r+b" if offset else "wb")  # one round trip: the board's handle
                try:
                    dst.set_pipelined(True)
                    dst.MAX_REQUEST_SIZE = self.write_size or write_size(sftp, limits=False)
                    if offset:
                        dst.truncate(offset)
                        dst.seek(offset)
                        src.seek(offset)
                    with gate:
                        sent = offset
                        while chunk := src.read(CHUNK):
                            dst.write(chunk)
                            sent += len(chunk)
                            if count is not None:
                                count(len(chunk))
                            if progress is not None:
                                progress(sent, total)
                        dst.flush()
                        _await_writes(sftp, dst)
                except BaseException:
                    try:
                        dst.close()
                    except (paramiko.SSHException, OSError, EOFError):
                        pass  # the connection is gone: the error being raised says more
                    raise
                if slot is None:  # put(): the caller may run the file next (a file open for writing cannot be exec'd)
                    dst.close()
                else:
                    # a deploy's upload (an object under objects/.tmp that the commit hashes and renames): every
                    # write was answered (a refusal raised above), so the close need not be waited for; it would
                    # cost one more round trip per file (its answer is read, and dropped, later)
                    dst._close(async_=True)  # paramiko's own non-waiting close (SFTPFile.__del__ uses it)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.name}': upload of {Path(local).name} to {remote} failed: {exc or 'connection closed by the board'}") from None

    def get(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._sftp().get(remote, str(local))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"board '{self.name}': download of {remote} failed: {exc or 'connection closed by the board'}") from None

    def spawn(self, argv: Sequence[str]) -> RemoteProcess:
        argv = [str(a) for a in argv]
        try:
            chan = self._transport().open_session(timeout=self._timeout())
            chan.exec_command(join_argv(argv))
            # a dead link would block a send forever (a deploy streams objects to the agent's stdin): give up
            # after io_timeout without progress, as the SFTP channel does
            chan.settimeout(self.board.io_timeout)
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


def _open_agent(ep: Endpoint) -> tuple[_SocketAgent | None, str]:
    """The agent ``ssh`` would ask for ``ep`` (IdentityAgent, else $SSH_AUTH_SOCK), and one phrase saying which."""
    if ep.agent_socket is None:
        return None, "no ssh-agent (IdentityAgent none)" if ep.identity_agent == "none" else \
            f"no ssh-agent ({ep.identity_agent or 'SSH_AUTH_SOCK'} unset)"
    try:
        agent = _SocketAgent(ep.agent_socket)
    except (OSError, paramiko.SSHException) as exc:
        return None, f"ssh-agent at {ep.agent_socket} not reachable ({exc})"
    only = ", IdentitiesOnly: only keys matching an IdentityFile" if ep.identities_only else ""
    return agent, f"ssh-agent at {ep.agent_socket} holds {len(agent.get_keys())} key(s){only}"


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


def write_size(sftp: paramiko.SFTPClient, limits: bool = True) -> int:
    """Bytes per SFTP write: as many full SSH packets as the board's server takes in one write.

    Every write is answered by a STATUS packet that the board encrypts and the
    controller decrypts and parses in Python, so fewer, larger writes mean
    fewer answers: OpenSSH's sftp-server says how large a write it takes
    (``limits@openssh.com``, 261120 bytes: 7 packets of 32 KiB per answer
    instead of 1). A server that does not answer that request gets writes of
    one packet (the SFTP v3 minimum every server takes). Either way a write
    fills whole channel packets: paramiko's own 32 KiB write plus its header
    overflowed the server's 32 KiB packet, so every write went out as a full
    packet and a ~100-byte one, doubling the per-packet work."""
    packet = sftp.get_channel().out_max_packet_size - 64  # paramiko's channel data per packet (Channel._wait_for_send_window)
    one = max(4096, packet + 64 - WRITE_HEADROOM)
    if not limits:
        return one
    try:
        kind, msg = sftp._request(paramiko.sftp.CMD_EXTENDED, "limits@openssh.com")
        if kind != paramiko.sftp.CMD_EXTENDED_REPLY:
            return one
        _max_packet, _max_read, max_write = msg.get_int64(), msg.get_int64(), msg.get_int64()
    except (OSError, EOFError, paramiko.SSHException):  # an error STATUS: the server has no such extension
        return one
    packets = (min(max_write, MAX_WRITE) + WRITE_HEADROOM) // packet
    return max(one, packets * packet - WRITE_HEADROOM) if packets > 1 else one


def _await_writes(sftp: paramiko.SFTPClient, dst: paramiko.SFTPFile) -> None:
    """Read the answer to every pipelined write still unanswered, oldest first; one the board refused (ENOSPC,
    EIO) raises here. paramiko reads these answers only while more than 100 writes are in flight and drops the
    rest at close, so without this a refused write went unnoticed (the size was then checked by a ``stat``, one
    more round trip per file). The server answers in order, so waiting for the oldest never skips one."""
    reqs = dst._reqs  # paramiko's queue of this file's unanswered pipelined requests
    while reqs:
        t, _msg = sftp._read_response(reqs.popleft())  # raises IOError for an error status
        if t != paramiko.sftp.CMD_STATUS:
            raise paramiko.SSHException(f"unexpected SFTP answer {t} to a write")


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

    def upload_gate(self, nbytes: int) -> Any:
        """The process-wide upload slot while a file's bytes stream to this command (none for a small file), as
        ``upload`` holds it for SFTP: at most the limit of uploads pump bytes at once, however many boards."""
        return upload_slot() if nbytes >= SMALL_UPLOAD else contextlib.nullcontext()

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
