"""Boards reached exactly as `ssh` would (issue 15): real sshd on 127.0.4.11-13, routes proven by logs.

127.0.4.11 and .12 are bastions whose sshd logs at DEBUG1, so every
``direct-tcpip`` request (a ProxyJump hop) leaves a line naming its target;
127.0.4.13 is the board. Tests prove the route from those logs or from a
ProxyCommand wrapper's mark, not only that a command ran.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dmsbuild import boards as emu
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import Board
from dmsbuild.transport.ssh import SSHTransport, TransportError, resolve
from dmsbuild.transport.sshconfig import parse_ssh_args
from tests import reaper

NET = "127.0.4"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    where = tmp_path_factory.mktemp("route-lab")
    with socket.socket() as s:
        s.bind((f"{NET}.11", 0))
        port = s.getsockname()[1]
    state = emu.up(3, where, port=port, first=11, groups=("rpi5",), name_prefix="r15", net=NET)
    for b in state["boards"]:
        cfg = Path(b["config"])
        text = cfg.read_text()
        if b is state["boards"][2]:  # the board: a non-root user's own ~/.ssh/authorized_keys works too
            text = text.replace("AuthorizedKeysFile ", "AuthorizedKeysFile .ssh/authorized_keys ")
        else:  # the bastions log each forwarded connection's target
            text += "LogLevel DEBUG1\n"
        cfg.write_text(text)
        os.kill(b["pid"], signal.SIGHUP)  # sshd re-executes itself with the new config, same pid
        time.sleep(0.3)
        assert emu._wait_listening(b["host"], b["port"])
    state["dir"] = where
    yield state
    emu.down(where, quiet=True)


def _log(lab: dict, i: int) -> str:
    return (Path(lab["boards"][i]["config"]).parent / "sshd.log").read_text()


def _forwarded_to(lab: dict, i: int, target: int) -> int:
    """How many direct-tcpip requests bastion ``i`` served towards board ``target`` so far."""
    t = lab["boards"][target]
    return _log(lab, i).count(f"target {t['host']} port {t['port']}")


def _config(lab: dict, text: str) -> None:
    """Write the test's ~/.ssh/config (HOME is a temporary folder: tests/conftest.py)."""
    ssh = Path(os.environ["HOME"], ".ssh")
    ssh.mkdir(exist_ok=True)
    common = (f"  User {lab['user']}\n  IdentityFile {lab['identity_file']}\n"
              f"  UserKnownHostsFile {lab['known_hosts']}\n")
    hosts = "".join(f"Host bast{'AB'[i]}\n  HostName {b['host']}\n  Port {b['port']}\n{common}"
                    for i, b in enumerate(lab["boards"][:2]))
    (ssh / "config").write_text(text.replace("{COMMON}", common) + hosts)


def _who(board: Board) -> tuple[str, SSHTransport]:
    t = SSHTransport(board)
    try:
        res = t.run(["id", "-un"])
        assert res.ok, res.stderr
        return res.stdout.strip(), t
    finally:
        t.close()


def test_include_match_host_and_port_from_ssh_config(lab):
    """An alias defined in an Included file; User/IdentityFile from a `Match host` block; the non-default Port
    comes from the config only (the inventory sets no port)."""
    b = lab["boards"][2]
    conf_d = Path(os.environ["HOME"], ".ssh", "config.d")
    conf_d.mkdir(parents=True, exist_ok=True)
    (conf_d / "lab.conf").write_text(f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n")
    _config(lab, f"Include {conf_d}/*.conf\nMatch host {b['host']}\n{{COMMON}}")
    board = Board(name="pi", host="lab-pi5")
    user, t = _who(board)
    assert user == lab["user"]
    assert (t.endpoint.hostname, t.endpoint.port, t.endpoint.via) == (b["host"], b["port"], None)
    assert b["port"] != 22 and board.port is None
    # the inventory's port is like `ssh -p`: it wins over the config's Port
    assert resolve(Board(name="pi", host="lab-pi5", port=2200)).port == 2200


def test_proxycommand_is_run_and_goes_through_the_bastion(lab, tmp_path):
    """`ProxyCommand ssh -W %h:%p bastA` (the issue's silent bypass): the wrapper leaves a mark, the bastion logs the hop."""
    b = lab["boards"][2]
    mark = tmp_path / "proxy.mark"
    wrapper = tmp_path / "proxy.sh"
    cfg = Path(os.environ["HOME"], ".ssh", "config")
    wrapper.write_text(f'#!/bin/sh\necho "$1:$2 $3" >> {mark}\nexec ssh -F {cfg} -o BatchMode=yes -W "$1:$2" bastA\n')
    wrapper.chmod(0o755)
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n  ProxyCommand {wrapper} %h %p %r\n{{COMMON}}")
    before = _forwarded_to(lab, 0, 2)
    user, t = _who(Board(name="pi", host="lab-pi5"))
    assert user == lab["user"]
    assert mark.read_text().split() == [f"{b['host']}:{b['port']}", lab["user"]]
    assert _forwarded_to(lab, 0, 2) == before + 1
    assert t.endpoint.proxy_command is not None and "ProxyCommand" in t.endpoint.describe()


def test_proxyjump_two_hops_each_bastion_forwards_once(lab):
    b = lab["boards"][2]
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n  ProxyJump bastA,bastB\n{{COMMON}}")
    a_to_b, b_to_board, a_to_board = _forwarded_to(lab, 0, 1), _forwarded_to(lab, 1, 2), _forwarded_to(lab, 0, 2)
    user, t = _who(Board(name="pi", host="lab-pi5"))
    assert user == lab["user"]
    # bastA forwarded to bastB, bastB to the board, and bastA never straight to the board
    assert (_forwarded_to(lab, 0, 1), _forwarded_to(lab, 1, 2), _forwarded_to(lab, 0, 2)) == (a_to_b + 1, b_to_board + 1, a_to_board)
    hops = [h.hostname for h in t.endpoint.chain()]
    assert hops == [lab["boards"][0]["host"], lab["boards"][1]["host"]]
    assert t.endpoint.as_json()["jump"] == [f"{lab['user']}@{h['host']}:{h['port']}" for h in lab["boards"][:2]]


def test_inventory_ssh_args_proxyjump_is_honoured(lab):
    """`ansible_ssh_common_args='-o ProxyJump=bastA'` reaches ssh -G as a command-line option."""
    b = lab["boards"][2]
    _config(lab, "")
    args, ignored = parse_ssh_args("-o ProxyJump=bastA -o StrictHostKeyChecking=no", "inv")
    assert args == ["-o", "ProxyJump=bastA"] and ignored[0][0] == "StrictHostKeyChecking=no"
    board = Board(name="pi", host=b["host"], port=b["port"], user=lab["user"], identity_file=lab["identity_file"],
                  known_hosts=lab["known_hosts"], ssh_args=args)
    before = _forwarded_to(lab, 0, 2)
    _who(board)
    assert _forwarded_to(lab, 0, 2) == before + 1


def test_frozen_bastion_fails_in_one_line_without_tracebacks(lab, capfd):
    b, bast = lab["boards"][2], lab["boards"][0]
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n  ProxyJump bastA\n{{COMMON}}")
    os.kill(bast["pid"], signal.SIGSTOP)
    try:
        t = SSHTransport(Board(name="pi", host="lab-pi5", connect_timeout=1.5, connect_retries=1))
        with pytest.raises(TransportError) as err:
            t.connect()
        t.close()
    finally:
        os.kill(bast["pid"], signal.SIGCONT)
    msg = str(err.value)
    assert f"no SSH banner from {bast['host']}:{bast['port']} within 1.5 s" in msg and "jump host bastA" in msg
    out, errout = capfd.readouterr()
    assert "Traceback" not in out + errout and "paramiko" not in out + errout


def test_unhonourable_settings_are_refused(lab, monkeypatch):
    b = lab["boards"][2]
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  BindInterface lo\n{{COMMON}}")
    with pytest.raises(UserError, match="bindinterface lo"):
        resolve(Board(name="pi", host="lab-pi5"))
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  CertificateFile /nowhere/cert.pub\n{{COMMON}}")
    with pytest.raises(UserError, match="CertificateFile"):
        resolve(Board(name="pi", host="lab-pi5"))
    with pytest.raises(UserError, match="not one dmsbuild knows"):
        parse_ssh_args("-o LocalForward=8080:x:80", "inv")


@pytest.mark.parametrize("state", ["closed", "not active"])
def test_a_hop_through_a_jump_host_whose_connection_closed_says_so(state):
    """The jump host's connection is gone (closed: paramiko has no transport; dropped: it is not active): one line
    naming the jump host, not an AttributeError or a channel error from a dead session."""
    import types

    import paramiko

    jump = paramiko.SSHClient()  # closed (never opened): get_transport() is None
    if state == "not active":
        a, b = socket.socketpair()
        dead = paramiko.Transport(a)  # never started: is_active() is False
        jump.get_transport = lambda: dead
    ep = types.SimpleNamespace(label="board 'pi'", via=types.SimpleNamespace(where="gw.lab:22"), hostname="10.0.0.5",
                               port=22, timeout=5.0)
    t = SSHTransport(Board(name="pi", host="10.0.0.5"))
    try:
        with pytest.raises(TransportError) as exc:
            t._open_socket(ep, jump)
        assert str(exc.value).splitlines()[0] == "board 'pi': the connection to jump host gw.lab:22 closed"
    finally:
        if state == "not active":
            dead.close()
            b.close()


def test_joined_ssh_options_read_as_the_separate_ones():
    """``-oKey=Value``, ``-p2222``, ``-lme``, ``-Jhost`` (as ssh takes them, no space) mean what their two-word forms mean."""
    joined = parse_ssh_args("-oProxyJump=bastA -p2222 -lme -i/k/id -oPort=22", "inv")
    assert joined == parse_ssh_args("-o ProxyJump=bastA -p 2222 -l me -i /k/id -o Port=22", "inv")
    assert joined[0][:4] == ["-o", "ProxyJump=bastA", "-p", "2222"]
    assert parse_ssh_args("-JbastA", "inv") == (["-J", "bastA"], [])


@pytest.mark.parametrize("args", ["-p", "-C -o", "-v -J", "-o ProxyJump=bastA -l"])
def test_a_flag_without_a_value_at_the_end_of_ssh_args_is_one_line(args):
    """The last word is an option that takes a value (at an even or an odd place): one line naming it, no
    IndexError from looking past the end."""
    flag = args.split()[-1]
    with pytest.raises(UserError) as exc:
        parse_ssh_args(args, "inventory.yml: pi")
    assert exc.value.message == f"inventory.yml: pi: ssh option {flag} has no value"
    assert exc.value.hint == "fix the ssh arguments"


def test_an_ssh_config_that_ssh_refuses_is_one_line_with_the_command_to_try(tmp_path, monkeypatch):
    """`ssh -G` exits non-zero (a bad line in the config): its first stderr line, the config file, and the
    command to run by hand as the hint (no traceback, no fallback to another parser)."""
    if not shutil.which("ssh"):
        pytest.skip("no OpenSSH client")
    cfg = tmp_path / "config"
    cfg.write_text("Host lab-pi5\n  NoSuchKeyword yes\n")
    monkeypatch.setenv("DMSBUILD_SSH_CONFIG", str(cfg))
    with pytest.raises(UserError) as exc:
        resolve(Board(name="pi", host="lab-pi5"))
    assert exc.value.message.startswith(f"{cfg}: `ssh -G lab-pi5` failed: "), exc.value.message
    assert "nosuchkeyword" in exc.value.message.lower() and "\n" not in exc.value.message
    assert exc.value.hint == "fix the ssh config (try: ssh -G lab-pi5)"


def test_without_openssh_paramikos_parser_refuses_include(lab, monkeypatch):
    b = lab["boards"][2]
    monkeypatch.setenv("DMSBUILD_SSH", "none")
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n{{COMMON}}")
    ep = resolve(Board(name="pi", host="lab-pi5"))
    assert (ep.hostname, ep.port, ep.resolver) == (b["host"], b["port"], "paramiko SSHConfig")
    _config(lab, f"Include /nowhere/*.conf\nHost lab-pi5\n  HostName {b['host']}\n")
    with pytest.raises(UserError, match="'Include' cannot be honoured without the OpenSSH client"):
        resolve(Board(name="pi", host="lab-pi5"))


def test_non_root_board_user(lab):
    """A board user other than the one running dmsbuild (created here when running as root)."""
    name = "dmsb15"
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", name], check=True, capture_output=True)
        reaper.created_user(name)
    home = Path(pwd.getpwnam(name).pw_dir, ".ssh")
    home.mkdir(parents=True, exist_ok=True)
    (home / "authorized_keys").write_text(Path(lab["identity_file"] + ".pub").read_text())
    subprocess.run(["chown", "-R", f"{name}:", str(home)], check=True)
    b = lab["boards"][2]
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n  User {name}\n"
                 f"  IdentityFile {lab['identity_file']}\n  UserKnownHostsFile {lab['known_hosts']}\n")
    user, t = _who(Board(name="pi", host="lab-pi5"))
    assert user == name and t.endpoint.user == name


@pytest.mark.parametrize("fmt", ["ini", "yaml"])
def test_ansible_inventory_with_group_vars_deploys_through_the_bastion(lab, project_dir, tmp_path, fmt):
    """The issue's silent bypass: `ansible_ssh_common_args='-o ProxyJump=...'` (here from group_vars/) is honoured,
    the port comes from the inventory, and the deploy's outcome records the route it used."""
    from dmsbuild.config import load_project, load_target
    from dmsbuild.ship.inventory import load_inventory
    from dmsbuild.pipeline.deploy import deploy_target
    from tests.conftest import write_build

    b, bast = lab["boards"][2], lab["boards"][0]
    _config(lab, "")
    inv_dir = tmp_path / "ansible"
    (inv_dir / "group_vars").mkdir(parents=True)
    (inv_dir / "group_vars" / "rpi5.yml").write_text(
        f"ansible_user: {lab['user']}\nansible_ssh_private_key_file: {lab['identity_file']}\n"
        f"ansible_ssh_common_args: -o ProxyJump=bastA -o StrictHostKeyChecking=no\n"
        f"dmsbuild_root: {tmp_path / 'root'}\nansible_python_interpreter: {lab['python']}\n")
    if fmt == "ini":
        (inv_dir / "hosts").write_text(f"[rpi5]\npi-1 ansible_host={b['host']} ansible_port={b['port']}\n")
    else:
        (inv_dir / "hosts").write_text(f"all:\n  children:\n    rpi5:\n      hosts:\n        pi-1:\n"
                                       f"          ansible_host: {b['host']}\n          ansible_port: {b['port']}\n")
    inv = load_inventory(inv_dir / "hosts", project_dir)
    board = inv.boards["pi-1"]
    board.known_hosts = lab["known_hosts"]
    assert any("StrictHostKeyChecking=no ignored" in n for n in inv.notes)
    write_build(project_dir, "rpi5", {"fp32": 0.1})
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    before = _forwarded_to(lab, 0, 2)
    [out] = deploy_target(load_project(project_dir), prof, [board])
    assert out.ok, out.message
    assert _forwarded_to(lab, 0, 2) == before + 1
    assert out.route == {"address": b["host"], "port": b["port"], "user": lab["user"],
                         "jump": [f"{lab['user']}@{bast['host']}:{bast['port']}"], "proxy_command": None, "resolver": "ssh -G"}


def test_bench_over_ssh_benchmarks_the_current_release_without_sending(lab, tmp_path):
    """`doit bench target=rpi5` on SSH boards: the release current on the board runs again, results stored;
    an unreachable board fails alone."""
    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.deploy import bench_target
    from dmsbuild.core.results import ResultStore
    from dmsbuild.tasks.deploy import boards_for
    from tests.bench_release import make_release
    from tests.conftest import REPO

    b = lab["boards"][2]
    _config(lab, "")
    make_release(tmp_path / "pi-root" / "rpi5", n_ref=2)
    inv = tmp_path / "inventory.toml"
    inv.write_text(
        f'[defaults]\ngroups = ["rpi5"]\nuser = "{lab["user"]}"\nidentity_file = "{lab["identity_file"]}"\n'
        f'known_hosts = "{lab["known_hosts"]}"\npython = "{lab["python"]}"\nroot = "{tmp_path}/pi-root/{{target}}"\n'
        f'[[boards]]\nname = "pi-1"\nhost = "{b["host"]}"\nport = {b["port"]}\n'
        f'[[boards]]\nname = "gone"\nhost = "127.0.4.99"\nport = 9\nconnect_retries = 1\nconnect_timeout = 2.0\n')
    project, prof = load_project(REPO), load_target(REPO, "rpi5")
    prof.arch = "any"
    before = sorted(p.name for p in (tmp_path / "pi-root").rglob("*"))
    store = ResultStore(tmp_path / "results.sqlite")
    outcomes = bench_target(project, prof, boards_for(project, prof, inventory=str(inv)), store=store)
    by = {o.board: o for o in outcomes}
    assert by["pi-1"].ok and by["pi-1"].release_id == "0123456789abcdef", by["pi-1"].line()
    assert not by["gone"].ok and "unreachable at" in by["gone"].reason
    assert {(r["board"], r["release_id"]) for r in store.rows()} == {("pi-1", "0123456789abcdef")}
    assert sorted(p.name for p in (tmp_path / "pi-root").rglob("*")) == before  # nothing sent, nothing changed


def _dmsb15(lab: dict) -> str:
    """The non-root board user (see test_non_root_board_user), created once."""
    name = "dmsb15"
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", name], check=True, capture_output=True)
        reaper.created_user(name)
    home = Path(pwd.getpwnam(name).pw_dir, ".ssh")
    home.mkdir(parents=True, exist_ok=True)
    (home / "authorized_keys").write_text(Path(lab["identity_file"] + ".pub").read_text())
    subprocess.run(["chown", "-R", f"{name}:", str(home)], check=True)
    return name


def test_doctor_checks_every_board_one_line_each(lab, tmp_path):
    """Route (via the bastion), runtimes, writability, unreachable: one summarized line per board with the fix."""
    import tempfile

    from dmsbuild.ship import doctor
    from dmsbuild.config import load_target
    from tests.conftest import REPO

    b = lab["boards"][2]
    user = _dmsb15(lab)
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n  ProxyJump bastA\n{{COMMON}}")
    prof = load_target(REPO, "rpi5")
    prof.arch = "any"
    shared = tempfile.mkdtemp(prefix="dmsb15-", dir="/tmp")  # reachable by the non-root user (pytest's tmp is 0700)
    try:
        os.chmod(shared, 0o755)
        os.makedirs(os.path.join(shared, "top"), mode=0o555)
        os.chmod(os.path.join(shared, "top"), 0o555)
        common = dict(host="lab-pi5", known_hosts=lab["known_hosts"], identity_file=lab["identity_file"])
        boards = [
            Board(name="good", python=lab["python"], root=str(tmp_path / "good"), **common),
            Board(name="no-ort", python="/usr/bin/python3", root=str(tmp_path / "no-ort"), **common),
            Board(name="ro", user=user, python="/usr/bin/python3", root=os.path.join(shared, "top", "rpi5"), **common),
            Board(name="gone", host="127.0.4.99", port=9, connect_retries=1, connect_timeout=2.0),
        ]
        good, no_ort, ro, gone = doctor.check_boards(boards, prof)
    finally:
        subprocess.run(["rm", "-rf", shared], check=True)
    assert good.level == "ok" and f"via {lab['user']}@{lab['boards'][0]['host']}" in good.found, good.line()
    assert no_ort.level == "missing" and "onnxruntime not found" in no_ort.found and "pip install onnxruntime" in no_ort.fix
    assert ro.level == "missing" and f"not writable: {shared}/top" in ro.found and "chown" in ro.fix, ro.line()
    assert gone.level == "missing" and "unreachable at" in gone.found and len(gone.line().splitlines()) == 2


def test_deploy_preflight_refuses_a_board_without_onnxruntime_before_sending(lab, project_dir, tmp_path):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.deploy import deploy_target
    from tests.conftest import write_build

    b = lab["boards"][2]
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n{{COMMON}}")
    board = Board(name="pi", host="lab-pi5", python=lab["python"], root=str(tmp_path / "root"))
    project = load_project(project_dir)
    write_build(project_dir, "rpi5", {"fp32": 0.1}, seed=1)
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    [first] = deploy_target(project, prof, [board])
    assert first.ok, first.message
    objects = sorted(os.listdir(tmp_path / "root" / "objects"))
    write_build(project_dir, "rpi5", {"fp32": 0.1}, seed=2)
    board.python = "/usr/bin/python3"  # no numpy, no onnxruntime
    [out] = deploy_target(project, prof, [board], after_switch=lambda session: None)
    assert not out.ok and "pre-flight" in out.message and "onnxruntime not installed" in out.message
    assert "pip install onnxruntime" in out.message and "keeps its current release" in out.message
    assert os.path.basename(os.readlink(tmp_path / "root" / "current")) == first.release_id
    assert sorted(os.listdir(tmp_path / "root" / "objects")) == objects and out.bytes_sent == 0


def test_permission_error_names_the_folder_that_refused(lab, project_dir, tmp_path):
    """chmod 555 on the deploy root's parent: the error names that folder, for a non-root board user."""
    import tempfile

    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.deploy import deploy_target
    from tests.conftest import write_build

    user = _dmsb15(lab)
    b = lab["boards"][2]
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n  User {user}\n"
                 f"  IdentityFile {lab['identity_file']}\n  UserKnownHostsFile {lab['known_hosts']}\n")
    shared = tempfile.mkdtemp(prefix="dmsb15-", dir="/tmp")
    try:
        os.chmod(shared, 0o755)
        top = os.path.join(shared, "top")
        os.makedirs(top)
        os.chmod(top, 0o555)
        write_build(project_dir, "rpi5", {"fp32": 0.1})
        prof = load_target(project_dir, "rpi5")
        prof.arch = "any"
        board = Board(name="pi", host="lab-pi5", python="/usr/bin/python3", root=os.path.join(top, "rpi5"))
        [out] = deploy_target(load_project(project_dir), prof, [board])
    finally:
        subprocess.run(["rm", "-rf", shared], check=True)
    assert not out.ok and f"folder {top} refused user {user}" in out.message, out.message


def test_rollout_report_records_the_route_actually_used(lab, project_dir, tmp_path):
    """An alias board behind a bastion: the report says the address, port, user and jump chain used, not 'lab-pi5:22'."""
    import io
    import json

    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.deploy import deploy_fleet
    from tests.conftest import write_build

    b, bast = lab["boards"][2], lab["boards"][0]
    _config(lab, f"Host lab-pi5\n  HostName {b['host']}\n  Port {b['port']}\n  ProxyJump bastA\n{{COMMON}}")
    write_build(project_dir, "rpi5", {"fp32": 0.1}, seed=3)
    prof = load_target(project_dir, "rpi5")
    prof.arch = "x86_64-but-not-this"  # portable ONNX: a warning, which must reach the console
    board = Board(name="pi", groups=["rpi5"], host="lab-pi5", python=lab["python"], root=str(tmp_path / "root"))
    out = io.StringIO()
    result = deploy_fleet(load_project(project_dir), prof, [board], stream=out)
    rep = result.boards[0]
    assert rep.status == "done", rep.reason
    assert (rep.host, rep.port) == (b["host"], b["port"])
    data = json.loads(result.report_path.read_text())["boards"][0]
    assert data["details"]["route"]["jump"] == [f"{lab['user']}@{bast['host']}:{bast['port']}"]
    assert data["host"] == b["host"]
    assert "warning: pi:" in out.getvalue() and "x86_64-but-not-this" in out.getvalue()
