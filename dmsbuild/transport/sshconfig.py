"""Where and how to connect to a board: OpenSSH's own answer (``ssh -G``).

dmsbuild never re-implements ``ssh_config``: for a board (and for every jump
host on its way) it runs ``ssh -G [-F FILE] [options] HOST`` and applies what
OpenSSH prints, so ``Include``, ``Match``, ``%`` tokens, ``Host`` patterns and
first-value-wins come from the real client (``man ssh_config``: "for each
parameter, the first obtained value will be used"; ``man ssh``: ``-G`` "print
its configuration after evaluating Host and Match blocks and exit").

Resolution order, the same as ``ssh [options] HOST`` (first wins):

1. the inventory's fields, given to ``ssh -G`` as command-line options, exactly
   as on an ``ssh`` command line: ``port`` -> ``-p``, ``user`` -> ``-l``,
   ``identity_file`` -> ``-i``, ``proxy_jump`` -> ``-J``, ``known_hosts`` ->
   ``-o UserKnownHostsFile=``, ``ssh_args`` (e.g. an Ansible inventory's
   ``ansible_ssh_common_args``) verbatim; a TOML ``[defaults]`` value is an
   inventory field too;
2. the ssh config (``$DMSBUILD_SSH_CONFIG`` as ``-F``, else the user's
   ``~/.ssh/config`` and ``/etc/ssh/ssh_config`` as ``ssh`` reads them);
3. OpenSSH's defaults (port 22, the local user, ``~/.ssh/id_*``).

``connect_timeout`` is the exception: the inventory's value, else the config's
``ConnectTimeout``, else 10 s (dmsbuild never waits without a bound).

What is applied: HostName, Port, User, IdentityFile, IdentitiesOnly,
IdentityAgent (``none``, ``SSH_AUTH_SOCK``, ``$VAR`` or a socket path), UserKnownHostsFile,
GlobalKnownHostsFile, HostKeyAlias, ProxyJump (any number of hops, each hop
resolved by ``ssh -G`` too, as ``ssh -J`` does), ProxyCommand (run by the
shell, ``%h %p %r %n %u %d %k %%`` expanded), ConnectTimeout,
ServerAliveInterval, AddressFamily, BindAddress, and the algorithm lists
Ciphers, MACs, KexAlgorithms, HostKeyAlgorithms, PubkeyAcceptedAlgorithms
(``ssh -G`` always prints them: OpenSSH's defaults when the user set none;
``transport/ssh.py`` lets paramiko offer only their intersection with what it
implements, and refuses an empty one). What would change the route
or the authentication and cannot be honoured (BindInterface, ProxyUseFdpass,
CertificateFile other than ``KEY-cert.pub``) is an
error, never a silently different connection. Host keys stay strict whatever
``StrictHostKeyChecking`` says (trust-on-first-use is the inventory's
``trust_on_first_use``).

This module is standard library only (doctor and reports use it without
paramiko); where ``ssh`` is not installed, ``transport/ssh.py`` supplies a
fallback built on paramiko's own parser.
"""
from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UserError

#: ENV: another ssh config file instead of ~/.ssh/config (like ``ssh -F``)
SSH_CONFIG_ENV = "DMSBUILD_SSH_CONFIG"
#: ENV: the OpenSSH client to ask (``none``: use paramiko's parser, as where ssh is absent)
SSH_CLIENT_ENV = "DMSBUILD_SSH"
DEFAULT_TIMEOUT = 10.0
#: the ssh_config options dmsbuild accepts in an inventory's ``ssh_args`` (``-o Key=Value``)
ROUTE_OPTIONS = {
    "hostname", "port", "user", "identityfile", "identitiesonly", "userknownhostsfile", "globalknownhostsfile",
    "hostkeyalias", "proxyjump", "proxycommand", "connecttimeout", "serveraliveinterval", "serveralivecountmax",
    "addressfamily", "bindaddress", "certificatefile", "identityagent",
    "ciphers", "macs", "kexalgorithms", "hostkeyalgorithms", "pubkeyacceptedalgorithms",
}
#: the algorithm lists ``ssh -G`` prints, each a comma-separated list in the user's order of preference
ALGORITHM_OPTIONS = ("ciphers", "macs", "kexalgorithms", "hostkeyalgorithms", "pubkeyacceptedalgorithms")
#: ``ssh_args`` options that do not change where or as whom dmsbuild connects: accepted, reported as ignored
IGNORED_OPTIONS = {
    "stricthostkeychecking": "host keys stay strict (use the inventory's trust_on_first_use)",
    "controlmaster": "dmsbuild keeps its own connection per board", "controlpath": "dmsbuild keeps its own connection per board",
    "controlpersist": "dmsbuild keeps its own connection per board", "forwardagent": "dmsbuild never forwards the agent",
    "forwardx11": "no X11 forwarding", "compression": "not used", "loglevel": "paramiko's log is routed to a file",
    "requesttty": "commands run without a tty", "pubkeyauthentication": "dmsbuild authenticates with keys only",
    "passwordauthentication": "dmsbuild never uses passwords", "kbdinteractiveauthentication": "dmsbuild never uses passwords",
    "preferredauthentications": "dmsbuild authenticates with keys only", "hashknownhosts": "known_hosts is only read",
    "updatehostkeys": "known_hosts is only read", "checkhostip": "not used", "sendenv": "no environment is sent",
    "setenv": "no environment is sent",
}
#: ssh_config options that run a command on this machine: ProxyCommand is honoured (and shown at each deploy when an
#: inventory sets it: ``inventory.Inventory.choose``); the others are refused in an inventory's ssh options
LOCAL_COMMAND_OPTIONS = {"proxycommand": "", "localcommand": "dmsbuild never runs LocalCommand",
                         "permitlocalcommand": "dmsbuild never runs LocalCommand",
                         "knownhostscommand": "dmsbuild reads known_hosts files only",
                         "match": "Match blocks (Match exec runs a command) belong in the ssh config"}
#: options whose non-default value changes the route or the authentication in a way paramiko cannot follow
_CANNOT = {
    "bindinterface": ("", "bind the connection to an interface"),
    "proxyusefdpass": ("no", "pass a descriptor from ProxyCommand"),
}
_JUMP_RE = re.compile(r"^(?:ssh://)?(?:(?P<user>[^@:/\s]+)@)?(?P<host>\[[^\]]+\]|[^@:/\s]+)(?::(?P<port>\d{1,5}))?/?$")


@dataclass
class Endpoint:
    """One SSH server on the way to a board (the board itself, or a jump host), as ``ssh -G`` resolved it."""

    label: str
    alias: str
    hostname: str
    port: int
    user: str
    key_files: list[str]
    known_hosts: list[str]
    global_known_hosts: list[str]
    pinned: str | None
    tofu_file: str | None
    timeout: float
    retries: int
    identities_only: bool = False
    use_agent: bool = True
    #: the ssh-agent socket asked for keys (IdentityAgent as ``ssh -G`` prints it; None: no agent)
    agent_socket: str | None = None
    #: IdentityAgent as ``ssh -G`` printed it (None: not set)
    identity_agent: str | None = None
    host_key_alias: str | None = None
    #: the jump host this endpoint is reached through (ProxyJump), resolved the same way
    via: "Endpoint | None" = None
    #: ProxyCommand, tokens expanded (run with ``$SHELL -c 'exec CMD'`` like ssh)
    proxy_command: str | None = None
    keepalive: int = 0
    address_family: int = socket.AF_UNSPEC
    bind_address: str | None = None
    config_file: str | None = None
    resolver: str = "ssh -G"
    #: ALGORITHM_OPTIONS -> the algorithms the user's ssh would offer, in its order (absent: not set, paramiko fallback)
    algorithms: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    def chain(self) -> list["Endpoint"]:
        """The jump hosts, first hop first."""
        hops: list[Endpoint] = []
        ep = self.via
        while ep is not None:
            hops.insert(0, ep)
            ep = ep.via
        return hops

    def describe(self) -> str:
        """One line: the route actually used (for the console, doctor and rollout reports)."""
        out = self.where
        hops = self.chain()
        if hops:
            out += " via " + " -> ".join(h.where for h in hops)
        first = hops[0] if hops else self
        if first.proxy_command:
            out += f" (ProxyCommand {first.proxy_command})"
        return out

    def as_json(self) -> dict[str, Any]:
        hops = self.chain()
        first = hops[0] if hops else self
        return {"address": self.hostname, "port": self.port, "user": self.user,
                "jump": [h.where for h in hops], "proxy_command": first.proxy_command, "resolver": self.resolver}


#: (alias, command-line options) -> ssh -G style options (lower-case key -> values)
Lookup = Callable[[str, list[str]], "tuple[dict[str, list[str]], str | None]"]


def config_args() -> tuple[list[str], str | None]:
    """The ``-F`` argument ``ssh -G`` gets, and the file it names (for messages).

    OpenSSH finds ``~`` in the password database, not ``$HOME``; when ``HOME`` was
    redirected (tests, CI sandboxes) the redirected ``~/.ssh/config`` is given
    with ``-F`` (``-F none`` when it does not exist) so nothing outside it is read.
    """
    env = os.environ.get(SSH_CONFIG_ENV)
    if env:
        return ["-F", env], env
    user_cfg = os.path.expanduser("~/.ssh/config")
    if _home_redirected():
        return (["-F", user_cfg], user_cfg) if os.path.isfile(user_cfg) else (["-F", "none"], None)
    return [], user_cfg if os.path.isfile(user_cfg) else None


def _home_redirected() -> bool:
    home = os.environ.get("HOME")
    try:
        pw_home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return False
    return bool(home) and os.path.realpath(home) != os.path.realpath(pw_home)


def _home_path(path: str) -> str:
    """Expand ``~`` as Python does; a path under the passwd home maps to ``$HOME`` when HOME was redirected."""
    path = os.path.expanduser(path)
    if _home_redirected():
        pw_home = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/")
        if path.startswith(pw_home + "/"):
            path = os.path.join(os.path.expanduser("~"), path[len(pw_home) + 1:])
    return path


def ssh_client() -> str | None:
    """The OpenSSH client dmsbuild asks, or None (paramiko's parser is the fallback)."""
    env = os.environ.get(SSH_CLIENT_ENV)
    if env == "none":
        return None
    return env or shutil.which("ssh")


def ssh_g(alias: str, cli: list[str]) -> tuple[dict[str, list[str]], str | None]:
    """``ssh -G [-F file] CLI -- ALIAS``: OpenSSH's resolved settings for one host."""
    client = ssh_client()
    if client is None:
        raise UserError("ssh -G: no OpenSSH client")  # callers choose the fallback before
    fargs, cfg_file = config_args()
    argv = [client, "-G", *fargs, *cli, "--", alias]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{shlex.join(argv)}: cannot run the OpenSSH client: {exc}", hint=f"check {client} (or set {SSH_CLIENT_ENV})") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("Pseudo-terminal")]
        raise UserError(f"{cfg_file or 'ssh config'}: `ssh -G {alias}` failed: {lines[0] if lines else 'exit ' + str(proc.returncode)}",
                        hint="fix the ssh config (try: ssh -G " + shlex.quote(alias) + ")")
    opts: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key:
            opts.setdefault(key.lower(), []).append(value)
    return opts, cfg_file


def identity_agent(value: str | None) -> str | None:
    """The agent socket ``ssh`` would ask (``man ssh_config``, IdentityAgent): unset or ``SSH_AUTH_SOCK``:
    ``$SSH_AUTH_SOCK``; ``none``: no agent; ``$VAR``: that variable's socket; a path: that socket (``~`` and
    ``${VAR}`` expanded as ssh does)."""
    if value is None or value == "SSH_AUTH_SOCK":
        return os.environ.get("SSH_AUTH_SOCK") or None
    if value == "none":
        return None
    if re.fullmatch(r"\$\w+", value):
        return os.environ.get(value[1:]) or None
    return _home_path(os.path.expandvars(value))


def split_jump(spec: str, where: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` or ``ssh://[user@]host[:port]`` (one ProxyJump hop)."""
    m = _JUMP_RE.match(spec.strip())
    if not m:
        raise UserError(f"{where}: ProxyJump hop {spec!r} is not [user@]host[:port]", hint="fix ProxyJump")
    host = m["host"].strip("[]")
    return m["user"], host, int(m["port"]) if m["port"] else None


def _one(opts: dict[str, list[str]], key: str, default: str | None = None) -> str | None:
    vals = opts.get(key)
    return vals[0] if vals else default


def _expand_tokens(cmd: str, ep: Endpoint, where: str) -> str:
    """ProxyCommand's ``%`` tokens (``man ssh_config``, TOKENS) that dmsbuild can fill."""
    def sub(m: re.Match[str]) -> str:
        t = m.group(1)
        values = {"h": ep.hostname, "p": str(ep.port), "r": ep.user, "n": ep.alias, "%": "%",
                  "u": pwd.getpwuid(os.getuid()).pw_name, "d": os.path.expanduser("~"), "k": ep.host_key_alias or ep.alias}
        if t not in values:
            raise UserError(f"{where}: ProxyCommand uses the token %{t}, which dmsbuild cannot expand",
                            hint="use %h, %p, %r, %n, %u, %d, %k or %% in ProxyCommand")
        return values[t]
    return re.sub(r"%(.)", sub, cmd)


def endpoint(alias: str, cli: list[str], *, label: str, lookup: Lookup, timeout: float | None, retries: int,
             pinned: str | None = None, tofu: bool = False, extra_cli: list[str] | None = None, depth: int = 0) -> Endpoint:
    """Resolve ``alias`` (and, recursively, its jump hosts) into an Endpoint.

    ``cli`` are the options for this host only; ``extra_cli`` (identity file and
    known_hosts from the inventory) also go to its jump hosts.
    """
    if depth > 8:
        raise UserError(f"{label}: more than 8 ProxyJump hops (a loop?)", hint="check ProxyJump in the ssh config and inventory")
    opts, cfg_file = lookup(alias, [*cli, *(extra_cli or [])])
    where = f"{label} ({cfg_file or 'no ssh config'})"
    for key, (default, what) in _CANNOT.items():
        value = _one(opts, key, default)
        if value not in (default, None, "none"):
            raise UserError(f"{where}: {key} {value} would {what}, which dmsbuild cannot do",
                            hint=f"remove {key} for this host, or connect another way")
    canon = _one(opts, "canonicalizehostname", "false")
    if canon not in ("false", "no", None):
        raise UserError(f"{where}: CanonicalizeHostname {canon} is not supported", hint="set HostName to the full name instead")
    user_known = [_home_path(p) for v in opts.get("userknownhostsfile", ["~/.ssh/known_hosts"]) for p in v.split()]
    global_known = [_home_path(p) for v in opts.get("globalknownhostsfile", []) for p in v.split()]
    keys = [_home_path(k) for k in opts.get("identityfile", [])]
    certs = [_home_path(c) for c in opts.get("certificatefile", [])]
    for cert in certs:
        if cert[:-len("-cert.pub")] not in keys or not cert.endswith("-cert.pub"):
            raise UserError(f"{where}: CertificateFile {cert} is not IDENTITY-cert.pub of an IdentityFile; "
                            "dmsbuild (paramiko) only loads certificates named after their key",
                            hint="name the certificate KEY-cert.pub next to its key, or drop CertificateFile")
    agent_socket = identity_agent(_one(opts, "identityagent"))
    if "pubkeyacceptedkeytypes" in opts:  # the name before OpenSSH 8.5
        opts.setdefault("pubkeyacceptedalgorithms", opts["pubkeyacceptedkeytypes"])
    ct = _one(opts, "connecttimeout", "none")
    fam = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}.get(_one(opts, "addressfamily", "any") or "any", socket.AF_UNSPEC)
    ep = Endpoint(
        label=label, alias=alias, hostname=_one(opts, "hostname", alias) or alias, port=int(_one(opts, "port", "22") or 22),
        user=_one(opts, "user") or pwd.getpwuid(os.getuid()).pw_name, key_files=keys, known_hosts=user_known,
        global_known_hosts=global_known, pinned=pinned, tofu_file=user_known[0] if tofu and user_known else None,
        timeout=timeout if timeout is not None else (float(ct) if ct and ct != "none" else DEFAULT_TIMEOUT),
        retries=retries, identities_only=_one(opts, "identitiesonly", "no") == "yes", use_agent=agent_socket is not None,
        agent_socket=agent_socket, identity_agent=_one(opts, "identityagent"),
        host_key_alias=_one(opts, "hostkeyalias"), keepalive=int(_one(opts, "serveraliveinterval", "0") or 0),
        address_family=fam, bind_address=_one(opts, "bindaddress"), config_file=cfg_file,
        resolver="ssh -G" if lookup is ssh_g else "paramiko SSHConfig",
        algorithms={k: (_one(opts, k) or "").split(",") for k in ALGORITHM_OPTIONS if _one(opts, k)},
    )
    jump = _one(opts, "proxyjump")
    command = _one(opts, "proxycommand")
    if jump and jump != "none":
        hops = jump.split(",")
        user, host, port = split_jump(hops[-1], where)
        hop_cli = [*(["-l", user] if user else []), *(["-p", str(port)] if port else [])]
        if len(hops) > 1:
            hop_cli += ["-J", ",".join(hops[:-1])]  # as `ssh -J a,b` runs `ssh -J a -W %h:%p b`
        ep.via = endpoint(host, hop_cli, label=f"{label.split(' (')[0]} (jump host {host})", lookup=lookup, timeout=timeout,
                          retries=retries, tofu=tofu, extra_cli=extra_cli, depth=depth + 1)
    elif command and command != "none":
        ep.proxy_command = _expand_tokens(command, ep, where)
    return ep


def local_commands(ssh_args: list[str]) -> list[str]:
    """The options of (parsed) ssh arguments that run a command on this machine, as ``Key=Value``."""
    return [v for flag, v in zip(ssh_args, ssh_args[1:]) if flag == "-o"
            and v.partition("=")[0].strip().lower() in LOCAL_COMMAND_OPTIONS]


def parse_ssh_args(text: str | list[str], where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Split ssh command-line options (an Ansible ``ansible_ssh_common_args``) into the ones that
    decide the route, given to ``ssh -G`` as they are, and the ones dmsbuild ignores, with why.

    Accepted: ``-o Key=Value`` / ``-oKey=Value`` / ``-o "Key Value"`` for the options in
    ROUTE_OPTIONS, ``-J``, ``-p``, ``-l``, ``-i``, ``-F`` (refused: it would replace the ssh config
    for every board), and the harmless flags ``-4 -6 -A -a -C -q -T -t -v -x``. Anything else is an
    error: an unknown option might change the route.
    """
    words = shlex.split(text) if isinstance(text, str) else list(text)
    keep: list[str] = []
    ignored: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-o", "-J", "-p", "-l", "-i", "-F") or (w[:2] in ("-o", "-J", "-p", "-l", "-i") and len(w) > 2):
            flag, value = (w, words[i + 1] if i + 1 < len(words) else None) if len(w) == 2 else (w[:2], w[2:])
            i += 2 if len(w) == 2 else 1
            if value is None:
                raise UserError(f"{where}: ssh option {flag} has no value", hint="fix the ssh arguments")
            if flag == "-F":
                raise UserError(f"{where}: ssh option -F {value} is not supported per host",
                                hint=f"set {SSH_CONFIG_ENV}={value} for the whole deploy instead")
            if flag != "-o":
                keep += [flag, value]
                continue
            key, sep, val = value.partition("=")
            if not sep:
                key, _, val = value.partition(" ")
            lkey = key.strip().lower()
            if LOCAL_COMMAND_OPTIONS.get(lkey):
                raise UserError(f"{where}: ssh option -o {value} runs a command on this machine; "
                                f"{LOCAL_COMMAND_OPTIONS[lkey]}", hint="remove it from the inventory")
            if lkey in ROUTE_OPTIONS:
                if lkey == "userknownhostsfile" and val.strip() == "/dev/null":
                    ignored.append((value, "host keys stay strict: the board's key must be in a known_hosts file"))
                    continue
                keep += ["-o", f"{key.strip()}={val.strip()}"]
            elif lkey in IGNORED_OPTIONS:
                ignored.append((value, IGNORED_OPTIONS[lkey]))
            else:
                raise UserError(f"{where}: ssh option -o {value} is not one dmsbuild knows to be harmless",
                                hint="remove it, or set it in ~/.ssh/config where `ssh -G` resolves it")
            continue
        if w in ("-4", "-6"):
            keep.append(w)
        elif w in ("-A", "-a", "-C", "-q", "-T", "-t", "-v", "-vv", "-vvv", "-x"):
            ignored.append((w, "does not change the route"))
        else:
            raise UserError(f"{where}: ssh argument {w!r} is not supported", hint="use -o Key=Value, -J, -p, -l or -i")
        i += 1
    return keep, ignored
