"""Fleet rollouts against real sshd boards (issue 6's faults): ten emulated boards on 127.0.0.71-80.

The boards are read from an Ansible INI inventory (each with its own deploy
root under the test's tmp dir, so tests do not see each other's releases).
Releases are fabricated (random-byte artifacts): `bench=no` unless a test
wants the on-board benchmark to fail. Bounded and loopback only.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write_build

DODO = f'''
import sys
sys.path.insert(0, {str(REPO)!r})
from dmsbuild.tasks.deploy import task_deploy, task_rollback  # noqa: F401
DOIT_CONFIG = {{"verbosity": 2, "dep_file": "artifacts/.doit.db", "backend": "sqlite3"}}

def task_build():
    """stand-in for dmsbuild.tasks.build: build.json is fabricated by the test"""
    yield {{"name": "rpi5", "actions": []}}
'''
N = 10


def _free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fleet_boards(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Ten sshd boards (a set of their own: the session's `boards` has four)."""
    where = tmp_path_factory.mktemp("fleet-boards")
    port = _free_port("127.0.0.71")
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "up", "--count", str(N), "--dir", str(where), "--port",
                    str(port), "--first", "71", "--groups", "rpi5"], check=True, cwd=REPO, capture_output=True)
    state = json.loads((where / "boards.json").read_text())
    state["dir"] = where
    yield state
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "down", "--dir", str(where)], cwd=REPO, check=True,
                   capture_output=True)


def _stop(state: dict, name: str) -> None:
    """Stop one board's sshd (the pid `boards up` started, checked to be that sshd)."""
    b = next(b for b in state["boards"] if b["name"] == name)
    cmd = Path(f"/proc/{b['pid']}/cmdline").read_bytes()
    assert b["config"].encode() in cmd, "not our sshd"
    os.kill(b["pid"], signal.SIGTERM)
    for _ in range(200):
        try:
            socket.create_connection((b["host"], b["port"]), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.025)
    raise AssertionError(f"{name} still listening")


def _start(state: dict, name: str) -> None:
    """Start a stopped board's sshd again and record its pid so `boards down` stops it."""
    b = next(b for b in state["boards"] if b["name"] == name)
    bdir = Path(b["config"]).parent
    pidfile = bdir / "sshd.pid"
    pidfile.unlink(missing_ok=True)
    subprocess.run(["/usr/sbin/sshd", "-f", b["config"], "-E", str(bdir / "sshd.log")], check=True)
    for _ in range(400):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.025)
    b["pid"] = int(pidfile.read_text().split()[0])
    path = state["dir"] / "boards.json"
    saved = json.loads(path.read_text())
    for sb in saved["boards"]:
        if sb["name"] == name:
            sb["pid"] = b["pid"]
    path.write_text(json.dumps(saved, indent=2))
    for _ in range(400):
        try:
            socket.create_connection((b["host"], b["port"]), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    raise AssertionError(f"{name} did not come back")


def _ansible_inventory(state: dict, roots: Path, path: Path) -> Path:
    """The ten boards as an Ansible INI inventory with per-board deploy roots below ``roots``."""
    lines = ["[rpi5]"]
    for b in state["boards"]:
        lines.append(f"{b['name']} ansible_host={b['host']} ansible_port={b['port']} "
                     f"dmsbuild_root={roots / b['name']}/{{target}}")
    lines += ["", "[rpi5:vars]", f"ansible_user={state['user']}", f"ansible_ssh_private_key_file={state['identity_file']}",
              f"ansible_python_interpreter={state['python']}", "ansible_ssh_pass=never-read", ""]
    path.write_text("\n".join(lines))
    return path


def _project(project_dir: Path, **deploy: object) -> None:
    (project_dir / "dodo.py").write_text(DODO)
    (project_dir / "artifacts").mkdir(exist_ok=True)
    prof = project_dir / "targets" / "rpi5.toml"
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in deploy.items())
    prof.write_text(prof.read_text().replace("[deploy]\n", "[deploy]\n" + extra))


def _doit(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DMSBUILD_ROOT": str(project)}
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)


def _current(roots: Path, name: str) -> str | None:
    link = roots / name / "rpi5" / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def _stamp(roots: Path, name: str) -> tuple:
    """What a deploy that touches the board changes: `current` and the history file."""
    root = roots / name / "rpi5"
    cur = root / "current"
    hist = root / "history.json"
    return (os.lstat(cur).st_mtime_ns if cur.is_symlink() else None, hist.read_text() if hist.exists() else None)


def _report(project: Path) -> dict:
    reports = sorted((project / "artifacts" / "rpi5" / "rollouts").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(reports[-1].read_text())


def _by_name(report: dict) -> dict[str, dict]:
    return {b["name"]: b for b in report["boards"]}


def test_two_boards_down_then_rerun_updates_only_the_rest(fleet_boards, project_dir, tmp_path):
    """Ten boards, two with sshd stopped: eight updated, two failed with the reason, exit non-zero;
    after the two come back a rerun deploys to those two only. Then a fleet-wide rollback."""
    roots = tmp_path / "roots"
    # a pure Ansible inventory: host keys come from the default ~/.ssh/known_hosts (strict checking stays on)
    inv = _ansible_inventory(fleet_boards, roots, tmp_path / "hosts.ini")
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    (ssh_dir / "known_hosts").write_text(Path(fleet_boards["known_hosts"]).read_text())
    _project(project_dir, parallel=4, max_fail=2, waves=[1, "100%"])
    write_build(project_dir, "rpi5", {"fp32": 0.2}, seed=11)
    down = ["emu-04", "emu-09"]
    for name in down:
        _stop(fleet_boards, name)
    try:
        res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no")
    finally:
        for name in down:
            _start(fleet_boards, name)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out  # failed boards, rollout ran to the end
    assert "2 of 10 board(s) failed" in out and "Traceback" not in out
    rep = _report(project_dir)
    boards = _by_name(rep)
    release = rep["release_id"]
    assert rep["summary"] == {"done": 8, "current": 0, "failed": 2, "unhealthy": 0, "skipped": 0}, out
    assert not rep["halted"] and rep["exit_code"] == 1
    for name in down:
        assert boards[name]["status"] == "failed" and "unreachable" in boards[name]["reason"], boards[name]
        addr = next(f"{b['host']}:{b['port']}" for b in fleet_boards["boards"] if b["name"] == name)
        assert addr in boards[name]["reason"]
        assert _current(roots, name) is None
    up = [b["name"] for b in fleet_boards["boards"] if b["name"] not in down]
    for name in up:
        assert boards[name]["status"] == "done" and boards[name]["bytes_sent"] > 200_000
        assert _current(roots, name) == release
    assert "never-read" not in json.dumps(rep)  # the Ansible password variable is never copied anywhere

    # the two boards are back: the rerun deploys to them only; the eight are checked, not touched
    before = {name: _stamp(roots, name) for name in up}
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    rep2 = _report(project_dir)
    assert rep2["summary"] == {"done": 2, "current": 8, "failed": 0, "unhealthy": 0, "skipped": 0}, out
    boards2 = _by_name(rep2)
    assert {n for n, b in boards2.items() if b["status"] == "done"} == set(down)
    assert all(boards2[n]["bytes_sent"] == 0 and boards2[n]["release_before"] == release for n in up)
    assert {name: _stamp(roots, name) for name in up} == before
    assert all(_current(roots, b["name"]) == release for b in fleet_boards["boards"])

    # a second release everywhere, then a fleet-wide rollback puts all ten back on the first
    write_build(project_dir, "rpi5", {"fp32": 0.2}, seed=12)
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no")
    assert res.returncode == 0, res.stdout + res.stderr
    second = _report(project_dir)["release_id"]
    assert second != release and all(_current(roots, b["name"]) == second for b in fleet_boards["boards"])
    res = _doit(project_dir, "rollback", "target=rpi5", f"inventory={inv}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert all(_current(roots, b["name"]) == release for b in fleet_boards["boards"])
    assert f"emu-07: rolled back {second} -> {release}" in out


def test_canary_failing_its_output_check_halts_before_wave_two(fleet_boards, project_dir, tmp_path):
    """The canary's on-board benchmark fails (the fabricated fp32 artifact cannot run): the rollout
    halts after wave one and the canary is rolled back to its previous release; every other board keeps
    its previous release, untouched. With on_unhealthy = "keep" the canary stays on the new release."""
    roots = tmp_path / "roots"
    ini = _ansible_inventory(fleet_boards, roots, tmp_path / "hosts.ini")
    # a TOML inventory including the Ansible one: its [defaults] give the imported boards their known_hosts
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'include = [{str(ini)!r}]\n\n[defaults]\nknown_hosts = {fleet_boards["known_hosts"]!r}\n')
    _project(project_dir, parallel=4, max_fail="50%", waves=[1, "50%", "100%"])
    write_build(project_dir, "rpi5", {"fp32": 0.2}, seed=21)
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no")
    assert res.returncode == 0, res.stdout + res.stderr
    good = _report(project_dir)["release_id"]
    before = {b["name"]: _stamp(roots, b["name"]) for b in fleet_boards["boards"]}

    write_build(project_dir, "rpi5", {"fp32": 0.2}, seed=22)
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}")  # bench=yes: the gate is real
    out = res.stdout + res.stderr
    assert res.returncode == 2, out  # halted
    rep = _report(project_dir)
    bad = rep["release_id"]
    assert rep["halted"] and rep["exit_code"] == 2 and rep["wave_sizes"] == [1, 4, 5]
    assert "health gate failed on emu-01 in wave 1" in rep["halt_reason"]
    boards = _by_name(rep)
    canary = boards["emu-01"]
    assert canary["status"] == "unhealthy" and "artifact fp32 did not run" in canary["reason"], canary
    assert canary["verified"] is True and canary["output_check"] is False
    assert canary["details"]["rolled_back_to"] == good and f"rolled back to {good}" in canary["reason"]
    assert _current(roots, "emu-01") == good  # back on its last good release
    assert "emu-01: the new release failed its checks and was rolled back" in out, out
    for b in fleet_boards["boards"][1:]:
        name = b["name"]
        assert boards[name]["status"] == "skipped" and boards[name]["wave"] is None, boards[name]
        assert _stamp(roots, name) == before[name] and _current(roots, name) == good

    # a rerun of the same release judges the canary again: nothing to send, unhealthy, rolled back again
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}")
    assert res.returncode != 0
    rep = _report(project_dir)
    canary = _by_name(rep)["emu-01"]
    assert rep["halted"] and canary["status"] == "unhealthy" and canary["bytes_sent"] == 0, canary
    assert _current(roots, "emu-01") == good
    assert all(_stamp(roots, b["name"]) == before[b["name"]] for b in fleet_boards["boards"][1:])

    # on_unhealthy = "keep": the canary stays on the new release for inspection; rollback is offered
    _project(project_dir, on_unhealthy="keep")
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    canary = _by_name(_report(project_dir))["emu-01"]
    assert canary["status"] == "unhealthy" and "rolled_back_to" not in canary["details"], canary
    assert _current(roots, "emu-01") == bad
    assert "doit rollback target=rpi5 hosts=emu-01" in out
    res = _doit(project_dir, "rollback", "target=rpi5", "hosts=emu-01", f"inventory={inv}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _current(roots, "emu-01") == good


def test_max_fail_reached_mid_wave_stops_starting_boards(fleet_boards, project, tmp_path):
    """Python API: two boards on a closed port at the head of a ten-board wave, max_fail=1, two at a time:
    the second failure halts the wave; the boards not yet started stay untouched."""
    from dmsbuild.ship import fleet
    from dmsbuild.pipeline.deploy import FleetDeploy
    from dmsbuild.ship.inventory import load_inventory
    from dmsbuild.ship.manifest import make_release

    proj, prof = project
    roots = tmp_path / "roots"
    ini = _ansible_inventory(fleet_boards, roots, tmp_path / "hosts.ini")
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'include = [{str(ini)!r}]\n\n[defaults]\nknown_hosts = {fleet_boards["known_hosts"]!r}\n'
                   "connect_retries = 1\n")
    boards = load_inventory(inv, proj.root).select("rpi5")
    closed = _free_port("127.0.0.71")
    for b in boards[:2]:
        b.port = closed  # nothing listens there: connection refused
    release = make_release(proj, prof)
    fd = FleetDeploy(prof, boards, release, project_name="dms")
    res = fleet.rollout(fd.refs(), release.release_id, fd.deploy_one, target="rpi5", waves=["100%"], max_fail=1,
                        parallel=2, current_release=fd.current_release, rollouts_dir=tmp_path / "rollouts")
    by = {b.name: b for b in res.boards}
    assert res.halted and res.exit_code == 2 and "2 board(s) failed" in res.halt_reason
    assert by["emu-01"].status == by["emu-02"].status == "failed"
    started = [b for b in res.boards if b.status != "skipped"]
    skipped = [b for b in res.boards if b.status == "skipped"]
    # the two failures come within milliseconds of each other; at most one more board was in flight
    assert len(started) <= 3 and len(skipped) >= 7, res.table()
    for b in skipped:
        assert _current(roots, b.name) is None and not (roots / b.name).exists()
    for b in started[2:]:
        assert b.status == "done" and _current(roots, b.name) == release.release_id  # in flight: finished, not cut off


@pytest.fixture()
def project(project_dir: Path):
    from dmsbuild.config import load_project, load_target

    write_build(project_dir, "rpi5", {"fp32": 0.2}, seed=31)
    proj = load_project(project_dir)
    return proj, load_target(project_dir, "rpi5")


def test_problem_hosts_outside_the_deploy_are_warnings_inside_it_one_line(fleet_boards, project_dir, tmp_path):
    """Issue 27: a `connection=local` host and templated hosts the deploy does not select never stop it (one warning
    each, with file and line); the same problem on a selected host stops it in one line, before any board is touched;
    a selected host's template is evaluated by Ansible (it names a real board's address here)."""
    roots = tmp_path / "roots"
    inv = _ansible_inventory(fleet_boards, roots, tmp_path / "hosts.ini")
    b3 = fleet_boards["boards"][2]
    text = inv.read_text().replace(f"ansible_host={b3['host']} ", 'ansible_host="{{ lab_net }}.%s" ' % b3["host"].rsplit(".", 1)[1])
    text += ("\n[tools]\nlocalhost ansible_connection=local\ngw ansible_user=\"{{ nobody_defined_this }}\"\n"
             "\n[all:vars]\nlab_net=%s\n" % b3["host"].rsplit(".", 1)[0])
    inv.write_text(text)
    lines = text.splitlines()
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    (ssh_dir / "known_hosts").write_text(Path(fleet_boards["known_hosts"]).read_text())
    _project(project_dir)
    write_build(project_dir, "rpi5", {"fp32": 0.05}, seed=27)
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no", "hosts=emu-0[1:2]")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    skipped = [ln for ln in out.splitlines() if "is not in this deploy: skipped" in ln]
    assert len(skipped) == 3, out
    for name, needle in (("emu-03", "lab_net"), ("localhost", "ansible_connection=local"), ("gw", "nobody_defined_this")):
        line_no = next(i for i, ln in enumerate(lines, 1) if ln.startswith(name + " "))
        assert any(f"{inv}:{line_no}: " in ln and needle in ln and f"board '{name}'" in ln for ln in skipped), (name, out)
    release = _report(project_dir)["release_id"]
    assert _current(roots, "emu-01") == _current(roots, "emu-02") == release

    # the templated board selected: Ansible evaluates its address, and it deploys
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no", "hosts=emu-03")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "templated values of emu-03 evaluated by Ansible" in out and _current(roots, "emu-03") == release

    # localhost selected (in the target's group): one line naming the file and line; no board touched
    inv.write_text(text.replace("[tools]\nlocalhost", "[tools]\n[rpi5:children]\ntools\n[tools]\nlocalhost"))
    before = _stamp(roots, "emu-01")
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no", "hosts=emu-01,localhost")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "Traceback" not in out
    line_no = next(i for i, ln in enumerate(inv.read_text().splitlines(), 1) if ln.startswith("localhost "))
    assert f"{inv}:{line_no}: host 'localhost' has ansible_connection=local" in out, out
    assert _stamp(roots, "emu-01") == before


RELAY = '''#!{python}
"""ProxyCommand stand-in for `nc %h %p`: marks that it ran, then relays stdin/stdout to the board's sshd."""
import os, socket, sys, threading
open({mark!r}, "a").write("ran\\n")
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while data := os.read(0, 65536):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := s.recv(65536):
    os.write(1, data)
'''


@pytest.mark.parametrize("policy", ["warn", "refuse"])
def test_an_inventory_proxycommand_is_shown_once_or_refused(fleet_boards, project_dir, tmp_path, policy):
    """Issue 30 item 7: a ProxyCommand from an inventory (ansible_ssh_common_args) runs a command on this machine.
    "warn" (the default) shows it once per deploy, naming the inventory and the board, and the board deploys
    through it; deploy.inventory_commands = "refuse" stops the deploy in one line before the command ever runs."""
    roots = tmp_path / "roots"
    mark = tmp_path / "relay.ran"
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY.format(python=sys.executable, mark=str(mark)))
    relay.chmod(0o755)
    inv = _ansible_inventory(fleet_boards, roots, tmp_path / "hosts.ini")
    b = fleet_boards["boards"][4]
    text = inv.read_text().replace(f"{b['name']} ansible_host={b['host']} ",
                                   f"{b['name']} ansible_host={b['host']} ansible_ssh_common_args='-o \"ProxyCommand={relay} %h %p\"' ")
    inv.write_text(text)
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    (ssh_dir / "known_hosts").write_text(Path(fleet_boards["known_hosts"]).read_text())
    if policy == "refuse":
        _project(project_dir, inventory_commands="refuse")
    else:
        _project(project_dir)
    write_build(project_dir, "rpi5", {"fp32": 0.05}, seed=30)
    res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no", f"hosts=emu-04,{b['name']}")
    out = res.stdout + res.stderr
    notice = f"inventory {inv} runs a local command for board '{b['name']}'"
    assert out.count(notice) == 1, out
    assert f"ProxyCommand={relay} %h %p" in out
    if policy == "warn":
        assert res.returncode == 0, out
        assert mark.read_text() == "ran\n"  # the board was reached through it, once
        assert _current(roots, b["name"]) == _report(project_dir)["release_id"]
    else:
        assert res.returncode != 0 and "Traceback" not in out
        assert 'deploy.inventory_commands = "refuse"' in out
        assert not mark.exists() and _current(roots, b["name"]) is None and _current(roots, "emu-04") is None


@pytest.mark.parametrize("retries", [1, 2])
def test_a_frozen_board_costs_connect_retries_attempts_resume_check_included(fleet_boards, project_dir, tmp_path, retries):
    """Issue 27: the resume check's connection attempt is the deploy's first, not an extra one. The board's sshd is
    frozen (SIGSTOP: TCP connects, no banner); every attempt runs the inventory's ProxyCommand once, which counts."""
    b = fleet_boards["boards"][5]
    mark = tmp_path / "relay.ran"
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY.format(python=sys.executable, mark=str(mark)))
    relay.chmod(0o755)
    inv = tmp_path / "inv.toml"
    inv.write_text(
        f'[[boards]]\nname = "{b["name"]}"\ngroups = ["rpi5"]\nhost = "{b["host"]}"\nport = {b["port"]}\n'
        f'user = "{fleet_boards["user"]}"\nidentity_file = "{fleet_boards["identity_file"]}"\n'
        f'known_hosts = "{fleet_boards["known_hosts"]}"\npython = "{fleet_boards["python"]}"\n'
        f'root = "{tmp_path / "roots" / b["name"]}/{{target}}"\nconnect_timeout = 1\nconnect_retries = {retries}\n'
        f'ssh_args = ["-o", "ProxyCommand={relay} %h %p"]\n')
    _project(project_dir)
    write_build(project_dir, "rpi5", {"fp32": 0.05}, seed=31)
    os.kill(b["pid"], signal.SIGSTOP)
    try:
        res = _doit(project_dir, "deploy", "target=rpi5", f"inventory={inv}", "bench=no")
    finally:
        os.kill(b["pid"], signal.SIGCONT)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out  # the one board failed: max_fail=0 halts
    assert mark.read_text().count("ran") == retries, out
    reason = _by_name(_report(project_dir))[b["name"]]["reason"]
    assert f"after {retries} attempt(s)" in reason and "no SSH banner" in reason, reason
