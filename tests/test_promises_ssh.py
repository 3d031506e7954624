"""Promise class: every precedence rule of the SSH settings, with and without OpenSSH (issue 25, item 1).

``dmsbuild/transport/sshconfig.py`` promises the order ``ssh [options] HOST`` uses, first value wins:
1. the inventory's fields (command-line options: ``port`` -p, ``user`` -l, ``identity_file`` -i, ``ssh_args``);
2. the ssh config, in file order (the board's own ``Host`` block before a later ``Host *``);
3. OpenSSH's defaults (port 22, the local user, alias as host name);
and ``connect_timeout``: the inventory's, else the config's ``ConnectTimeout``, else 10 s. Where the OpenSSH
client is absent, paramiko's parser stands in (``transport/ssh.paramiko_lookup``) and must keep the same order.

Generated: hypothesis decides, per setting, whether the inventory, the board's Host block and a later
``Host *`` block set it (and to what); the expected value follows from the rule above and is compared with
the route ``transport.ssh.resolve`` computes, once through ``ssh -G`` and once through the paramiko fallback
(``DMSBUILD_SSH=none``, as on a machine without openssh-client). Ansible's variables are drawn the same way:
host over child group over parent group over ``[all:vars]``, and the ``ansible_ssh_*`` spelling wins.
"""
from __future__ import annotations

import getpass
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dmsbuild.ship.inventory import Board
from dmsbuild.transport.sshconfig import DEFAULT_TIMEOUT, SSH_CLIENT_ENV, SSH_CONFIG_ENV

ALIAS = "myboard"
RESOLVERS = ["ssh -G", "paramiko SSHConfig"]

ports = st.integers(1024, 65000)
users = st.sampled_from(["alice", "bob", "carol", "dave"])
hosts = st.sampled_from(["10.0.0.5", "board-a.lan", "10.1.2.3", "board-b.lan"])
timeouts = st.integers(1, 90)
maybe = lambda s: st.none() | s  # noqa: E731


@st.composite
def layered(draw):
    """Each setting at each layer: None (not set) or a value."""
    out = {}
    for name, values in (("port", ports), ("user", users), ("hostname", hosts), ("timeout", timeouts),
                         ("key", st.sampled_from(["k1", "k2", "k3"]))):
        out[name] = {layer: draw(maybe(values), label=f"{name} {layer}") for layer in ("inventory", "block", "star")}
    return out


def _config(s: dict, keydir: str) -> str:
    lines = [f"Host {ALIAS}"]
    star = ["Host *"]
    for target, layer in ((lines, "block"), (star, "star")):
        for name, key in (("port", "Port"), ("user", "User"), ("hostname", "HostName"), ("timeout", "ConnectTimeout")):
            if s[name][layer] is not None:
                target.append(f"  {key} {s[name][layer]}")
        if s["key"][layer] is not None:
            target.append(f"  IdentityFile {keydir}/{layer}-{s['key'][layer]}")
    return "\n".join(lines + star) + "\n"


def _first(*values):
    return next((v for v in values if v is not None), None)


@pytest.fixture(params=RESOLVERS)
def resolver(request, monkeypatch):
    if request.param == "ssh -G":
        if not shutil.which("ssh"):
            pytest.fail("openssh-client is not installed (scripts/setup.sh installs it)")
        monkeypatch.delenv(SSH_CLIENT_ENV, raising=False)
    else:
        monkeypatch.setenv(SSH_CLIENT_ENV, "none")  # as where no OpenSSH client is installed
    return request.param


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=layered())
def test_the_first_value_wins_inventory_then_config_then_defaults(resolver, s):
    from dmsbuild.transport.ssh import resolve

    with tempfile.TemporaryDirectory() as keydir:
        cfg = os.path.join(keydir, "config")
        for layer in ("inventory", "block", "star"):  # ssh drops an -i file that does not exist
            for k in ("k1", "k2", "k3"):
                open(os.path.join(keydir, f"{layer}-{k}"), "w").close()
        with open(cfg, "w") as fh:
            fh.write(_config(s, keydir))
        old = os.environ.get(SSH_CONFIG_ENV)
        os.environ[SSH_CONFIG_ENV] = cfg
        try:
            inv = {k: v["inventory"] for k, v in s.items()}
            board = Board(name="b", host=ALIAS, port=inv["port"], user=inv["user"], connect_timeout=inv["timeout"],
                          identity_file=f"{keydir}/inventory-{inv['key']}" if inv["key"] else None,
                          ssh_args=["-o", f"HostName={inv['hostname']}"] if inv["hostname"] else [])
            ep = resolve(board)
        finally:
            if old is None:
                del os.environ[SSH_CONFIG_ENV]
            else:
                os.environ[SSH_CONFIG_ENV] = old
        order = ("inventory", "block", "star")
        assert ep.resolver == resolver
        assert ep.port == (_first(*(s["port"][x] for x in order)) or 22), (s["port"], ep.port)
        assert ep.user == (_first(*(s["user"][x] for x in order)) or getpass.getuser()), (s["user"], ep.user)
        assert ep.hostname == (_first(*(s["hostname"][x] for x in order)) or ALIAS), (s["hostname"], ep.hostname)
        want_timeout = _first(s["timeout"]["inventory"], s["timeout"]["block"], s["timeout"]["star"])
        assert ep.timeout == float(want_timeout if want_timeout is not None else DEFAULT_TIMEOUT), (s["timeout"], ep.timeout)
        # identity files add up (ssh tries each), in the order: command line, then the config's in file order
        given_keys = [f"{keydir}/{x}-{s['key'][x]}" for x in order if s["key"][x] is not None]
        if given_keys:
            assert ep.key_files == given_keys, (given_keys, ep.key_files)
        else:  # OpenSSH's default identities
            assert ep.key_files and all(os.path.basename(k).startswith("id_") for k in ep.key_files), ep.key_files


def test_both_resolvers_are_exercised():
    """The fallback must be the paramiko parser, not ssh -G under another name (DMSBUILD_SSH=none)."""
    from dmsbuild.transport import ssh as T
    from dmsbuild.transport.sshconfig import ssh_client

    old = os.environ.get(SSH_CLIENT_ENV)
    os.environ[SSH_CLIENT_ENV] = "none"
    try:
        assert ssh_client() is None
        assert T.resolve(Board(name="b", host="10.0.0.9", port=2201)).resolver == "paramiko SSHConfig"
    finally:
        if old is None:
            del os.environ[SSH_CLIENT_ENV]
        else:
            os.environ[SSH_CLIENT_ENV] = old


# ---------------------------------------------------------------- Ansible's settings (the same inventory fields)
LEVELS = ("all", "parent", "child", "host")  # Ansible's precedence, lowest first: all < parent group < child < host
ANSIBLE_FIELDS = {"host": ("ansible_host", "ansible_ssh_host", hosts), "port": ("ansible_port", "ansible_ssh_port", ports),
                  "user": ("ansible_user", "ansible_ssh_user", users)}


@st.composite
def ansible_layers(draw):
    """For each field and each spelling, the value each level sets (None: not set)."""
    return {(f, spelling): {lvl: draw(maybe(values), label=f"{spelling} at {lvl}") for lvl in LEVELS}
            for f, (plain, ssh, values) in ANSIBLE_FIELDS.items() for spelling in (plain, ssh)}


def _ini(layers) -> str:
    at = {lvl: [f"{var}={v[lvl]}" for (_, var), v in layers.items() if v[lvl] is not None] for lvl in LEVELS}
    return ("[parent:children]\nchild\n[child]\nb1 " + " ".join(at["host"]) + "\n"
            + "".join(f"[{lvl}:vars]\n" + "".join(f"{kv}\n" for kv in at[lvl]) for lvl in ("all", "parent", "child")))


@settings(max_examples=60, deadline=None)
@given(layers=ansible_layers())
def test_ansible_variables_follow_ansibles_precedence_and_the_ssh_spelling_wins(layers):
    """Per variable, the most specific level wins (host, child group, parent group, all); between the two
    spellings of one setting, ``ansible_ssh_*`` wins wherever it is set (Ansible's ssh plugin lists it later)."""
    from pathlib import Path

    from dmsbuild.ship.ansible import parse_ini

    board = parse_ini(_ini(layers), Path("hosts.ini")).boards["b1"]
    for f, (plain, ssh, _) in ANSIBLE_FIELDS.items():
        def winner(var):
            return _first(*(layers[(f, var)][lvl] for lvl in reversed(LEVELS)))
        want = _first(winner(ssh), winner(plain))
        got = getattr(board, f)
        if f == "host" and want is None:
            want = "b1"  # no ansible_host: the inventory name is the address, as in Ansible
        assert got == want, (f, layers, got)
