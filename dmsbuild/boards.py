"""Emulated boards: real OpenSSH ``sshd`` processes on loopback addresses.

    dmsbuild boards up --count 3     # start emu-01..emu-03 on 127.0.0.11.. (a free port, 2222 if free)
    dmsbuild boards status
    dmsbuild boards down             # stop exactly those sshd processes (by pid)

(``python -m dmsbuild.boards`` is the same command.) The address block and port
are chosen once, on the first ``up`` (``--net``/``--first``/``--port`` or the
environment variables DMSBUILD_BOARDS_NET / DMSBUILD_BOARDS_PORT; else
127.0.0.11.. and port 2222 when it is free, another free port when not) and
remembered in ``<dir>/boards.json``: a later bare ``up`` restarts the boards
where they were, so the inventory and known_hosts stay valid.

Each board has its own 127.0.0.x address, host key, deploy root and
authorized key (one generated ed25519 client key for all). The command writes
``<dir>/inventory.toml`` (boards in groups rpi5, orin, qcs8255 and coral; deploy root
``<dir>/<board>/root/<target>``, so the targets keep separate releases on one
emulated board) and ``<dir>/known_hosts`` with their host keys: the committed
``targets/inventory.toml`` includes that inventory, so ``doit deploy
target=rpi5`` works against them unchanged. The boards' Python is this
project's venv Python (inventory field ``python`` and the sessions' PATH), so
onnxruntime exists on them. What is emulated: the hardware (an emulated board
reports this machine's real facts, x86_64); what is real: sshd, SSH, SFTP,
the file system operations.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from .errors import UserError, first_line

DEFAULT_GROUPS = ("rpi5", "orin", "qcs8255", "coral")
DEFAULT_PORT = 2222
DEFAULT_FIRST = 11  # 127.0.0.11
SSHD = "/usr/sbin/sshd"
STATE = "boards.json"


def default_dir() -> Path:
    from .config import find_root

    return find_root() / "artifacts" / "boards"


def _sshd() -> str:
    path = shutil.which("sshd") or (SSHD if os.path.exists(SSHD) else None)
    if path is None:
        raise UserError(
            "sshd: OpenSSH server not installed; the emulated boards need it",
            hint="install it: apt-get install -y openssh-server (or your distribution's package)",
        )
    return path


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


def _pid_alive(pid: int, config: Path) -> bool:
    """True when ``pid`` is OUR sshd (its command line names our config file)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # sshd rewrites its title to "sshd: /usr/sbin/sshd -f CONFIG ... [listener]": match the config path in it
    return b"sshd" in cmd and str(config).encode() in cmd


def _wait_listening(addr: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((addr, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def board_python() -> str:
    """This project's venv Python (unresolved, so the venv stays active)."""
    cand = Path(sys.prefix) / "bin" / "python"
    return str(cand if cand.exists() else Path(sys.executable))


#: the vendor-tool doubles, package data of dmsbuild (dmsbuild/doubles/), found through importlib.resources
DOUBLES = Path(str(resources.files("dmsbuild") / "doubles"))
#: test doubles an emulated board of these groups carries on its PATH (labelled EMULATED in the wrapper)
EMULATED_TOOLS = {"rpi5": ("vcgencmd",), "orin": ("trtexec", "nvidia-smi", "nvpmodel", "jetson_clocks", "tegrastats"),
                  "qcs8255": ("snpe-net-run", "snpe-diagview", "snpe-throughput-net-run")}
#: the environment variable each double appends its argv to
_ARGV_LOG_VARS = {"snpe-net-run": "SNPE_DOUBLE_ARGV_LOG", "snpe-diagview": "SNPE_DOUBLE_ARGV_LOG",
                  "snpe-throughput-net-run": "SNPE_DOUBLE_ARGV_LOG"}


def _emulated_tools(bdir: Path, python: str, groups: tuple[str, ...]) -> Path | None:
    """``<board>/bin`` with wrappers running the repository's test doubles of vendor tools (trtexec for orin,
    snpe-net-run for qcs8255)."""
    tools = [t for g in groups for t in EMULATED_TOOLS.get(g, ())]
    if not tools:
        return None
    bin_dir = bdir / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        double = DOUBLES / tool
        if not double.is_file():
            raise UserError(f"{double}: test double missing from dmsbuild's package data; emulated {tool} needs it",
                            hint="reinstall dmsbuild (the wheel carries dmsbuild/doubles/)")
        wrapper = bin_dir / tool
        var = _ARGV_LOG_VARS.get(tool, "TRTEXEC_DOUBLE_ARGV_LOG")
        wrapper.write_text(
            "#!/bin/sh\n"
            f"# EMULATED {tool}: the test double {double} (no vendor accelerator or SDK on this machine).\n"
            f"# Every call's argv is appended to {bdir / (tool + '-argv.log')} (count builds there).\n"
            f"{var}=\"${{{var}:-{bdir / (tool + '-argv.log')}}}\"\n"
            f"export {var}\n"
            f"exec {shlex.quote(python)} {shlex.quote(str(double))} \"$@\"\n")
        wrapper.chmod(0o755)
    (bin_dir / "README").write_text(
        "EMULATED vendor tools of this emulated board (written by `python -m dmsbuild.boards up`).\n"
        "They are the repository's test doubles: they check their arguments and print the real tools' output\n"
        "formats; nothing here runs on a GPU or DSP and every timing they print is GENERATED, not measured\n"
        "(they print a DMSBUILD TEST DOUBLE line, so dmsbuild labels their figures 'test double (generated)').\n")
    return bin_dir


def up(count: int, where: Path, port: int = DEFAULT_PORT, first: int = DEFAULT_FIRST,
       groups: tuple[str, ...] = DEFAULT_GROUPS, name_prefix: str = "emu", net: str = "127.0.0") -> dict:
    """Start ``count`` boards (restarting any of ours still running) and write inventory + known_hosts.

    ``net``: the first three octets of the boards' loopback addresses (``<net>.<first + i>``), so
    parallel users of one machine (tests, benches) keep apart."""
    if not 1 <= count <= 200 or first + count > 255:
        raise UserError(f"boards up: --count {count} out of range (1..{255 - first})")
    sshd = _sshd()
    down(where, quiet=True)
    where = where.resolve()
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    client_key = where / "client_ed25519"
    _keygen(client_key, "dmsbuild-emulated-boards")
    pub = (where / "client_ed25519.pub").read_text()
    user = getpass.getuser()
    python = board_python()
    path_env = f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin"
    boards, known, started = [], [], []
    try:
        for i in range(count):
            name = f"{name_prefix}-{i + 1:02d}"
            addr = f"{net}.{first + i}"
            bdir = where / name
            (bdir / "root").mkdir(parents=True, exist_ok=True)
            hostkey = bdir / "ssh_host_ed25519_key"
            _keygen(hostkey, name)
            (bdir / "authorized_keys").write_text(pub)
            bin_dir = _emulated_tools(bdir, python, groups)
            board_path = f"{bin_dir}:{path_env}" if bin_dir else path_env
            config = bdir / "sshd_config"
            config.write_text("\n".join([
                f"# emulated board {name}, generated by python -m dmsbuild.boards up",
                f"ListenAddress {addr}:{port}",
                f"HostKey {hostkey}",
                f"PidFile {bdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {bdir / 'authorized_keys'}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "MaxStartups 64",
                "MaxSessions 64",
                # a client that vanished without FIN (dead link) is dropped after ~60 s, not TCP's 2 h keepalive
                "ClientAliveInterval 15",
                "ClientAliveCountMax 4",
                "Subsystem sftp internal-sftp",
                # SHLVL=1: bash then skips ~/.bashrc for ssh commands (a slow rc would distort timings)
                # DMSBUILD_EMULATED_BOARD: board facts say "emulated" (arch checks then warn, not refuse)
                f"SetEnv PATH={board_path} SHLVL=1 DMSBUILD_EMULATED_BOARD=sshd-on-loopback",
                "",
            ]))
            pidfile = bdir / "sshd.pid"
            pidfile.unlink(missing_ok=True)
            proc = subprocess.run([sshd, "-f", str(config), "-E", str(bdir / "sshd.log")], capture_output=True, text=True)
            if proc.returncode != 0:
                raise UserError(f"board '{name}': sshd failed to start: {proc.stderr.strip() or proc.stdout.strip()}",
                                hint=f"see {bdir / 'sshd.log'}; is {addr}:{port} already in use?")
            listening = _wait_listening(addr, port)
            for _ in range(200):  # the daemon writes its pid file just after it starts listening
                if pidfile.exists() and pidfile.read_text().strip():
                    break
                time.sleep(0.025)
            if not listening or not pidfile.exists():
                log = (bdir / "sshd.log").read_text() if (bdir / "sshd.log").exists() else ""
                raise UserError(f"board '{name}': sshd is not listening on {addr}:{port}: {log.strip()[-400:]}",
                                hint="is that address/port already in use? try --port")
            pid = int(pidfile.read_text().split()[0])
            started.append({"name": name, "pid": pid, "config": str(config)})
            (where / STATE).write_text(json.dumps({"net": net, "first": first, "port": port, "boards": started}))  # `down` finds them if a later one fails
            key_type, key_b64 = hostkey.with_suffix(".pub").read_text().split()[:2]
            known.append(f"[{addr}]:{port} {key_type} {key_b64}")
            boards.append({"name": name, "host": addr, "port": port, "pid": pid, "config": str(config),
                           "root": str(bdir / "root")})
    except BaseException:
        down(where, quiet=True)
        raise
    (where / "known_hosts").write_text("\n".join(known) + "\n")
    inv = [
        "# Emulated boards, generated by `python -m dmsbuild.boards up`; rewritten on every `up`.",
        "[defaults]",
        f"groups = {json.dumps(list(groups))}",
        f"user = {json.dumps(user)}",
        f"identity_file = {json.dumps(str(client_key))}",
        f"known_hosts = {json.dumps(str(where / 'known_hosts'))}",
        f"python = {json.dumps(python)}",
        "",
    ]
    for b in boards:
        inv += ["[[boards]]", f"name = {json.dumps(b['name'])}", f"host = {json.dumps(b['host'])}",
                f"port = {b['port']}", f"root = {json.dumps(b['root'] + '/{target}')}", ""]
    (where / "inventory.toml").write_text("\n".join(inv))
    state = {"net": net, "first": first, "port": port, "boards": boards, "inventory": str(where / "inventory.toml"), "known_hosts": str(where / "known_hosts"),
             "identity_file": str(client_key), "user": user, "python": python}
    (where / STATE).write_text(json.dumps(state, indent=2) + "\n")
    return state


def _port_free(net: str, first: int, count: int, port: int) -> bool:
    for i in range(count):
        with socket.socket() as s:
            try:
                s.bind((f"{net}.{first + i}", port))
            except OSError:
                return False
    return True


def remembered(where: Path) -> dict:
    """The net/first/port the boards of ``where`` were started with (boards.json), or {}."""
    try:
        state = json.loads((where / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: state[k] for k in ("net", "first", "port") if k in state}


def placement(where: Path, net: str | None = None, first: int | None = None, port: int | None = None,
              count: int = 3) -> tuple[str, int, int]:
    """(net, first, port) for ``up``: what was asked, else what ``where`` remembers, else the environment's
    DMSBUILD_BOARDS_NET / DMSBUILD_BOARDS_PORT, else 127.0.0 / 11 / 2222 (or a free port if 2222 is taken)."""
    mem = remembered(where)
    net = net or mem.get("net") or os.environ.get("DMSBUILD_BOARDS_NET") or "127.0.0"
    first = first if first is not None else mem.get("first", DEFAULT_FIRST)
    if port is None:
        port = mem.get("port") or int(os.environ.get("DMSBUILD_BOARDS_PORT") or 0) or None
    if port is None:
        port = DEFAULT_PORT
        if not _port_free(net, first, count, port):
            with socket.socket() as s:  # chosen once: remembered from now on
                s.bind((f"{net}.{first}", 0))
                port = s.getsockname()[1]
    return net, first, port


def down(where: Path, quiet: bool = False) -> list[str]:
    """Stop the sshd processes that ``up`` started here (by pid, after checking it is ours)."""
    state_file = where / STATE
    if not state_file.is_file():
        return []
    state = json.loads(state_file.read_text())
    stopped = []
    for b in state.get("boards", []):
        pid, config = int(b["pid"]), Path(b["config"])
        if _pid_alive(pid, config):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _pid_alive(pid, config):
                    break
                time.sleep(0.02)
            stopped.append(b["name"])
    state["boards"] = []
    state_file.write_text(json.dumps(state, indent=2) + "\n")
    if not quiet:
        print(f"stopped {len(stopped)} emulated board(s)" + (f": {', '.join(stopped)}" if stopped else ""))
    return stopped


def status(where: Path) -> list[tuple[str, bool]]:
    state_file = where / STATE
    if not state_file.is_file():
        return []
    state = json.loads(state_file.read_text())
    return [(b["name"], _pid_alive(int(b["pid"]), Path(b["config"]))) for b in state.get("boards", [])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dmsbuild boards", description="Emulated boards: real sshd on 127.0.0.x")
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="state folder (default: artifacts/boards)")
    ap.add_argument("--port", type=int, default=None, help="sshd port (default: remembered, else 2222 if free)")
    ap.add_argument("--first", type=int, default=None, help="last octet of the first board's address (default: remembered, else 11)")
    ap.add_argument("--net", default=None, help="the first three octets of the boards' loopback addresses (default: remembered, else 127.0.0)")
    ap.add_argument("--groups", default=",".join(DEFAULT_GROUPS), help="inventory groups (targets) of the boards")
    args = ap.parse_args(argv)
    try:
        where = args.dir or default_dir()
        if args.command == "up":
            net, first, port = placement(where, args.net, args.first, args.port, args.count)
            state = up(args.count, where, port=port, first=first, net=net,
                       groups=tuple(g for g in args.groups.split(",") if g))
            for b in state["boards"]:
                print(f"{b['name']}: {state['user']}@{b['host']}:{b['port']} pid {b['pid']} root {b['root']}")
            print(f"inventory: {state['inventory']}")
        elif args.command == "down":
            down(where)
        else:
            for name, alive in status(where):
                print(f"{name}: {'up' if alive else 'down'}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
