#!/usr/bin/env python3
"""Fleet rollout benchmark (issue 6): dmsbuild vs Ansible's copy module vs parallel scp.

All in one run on this machine, against real OpenSSH ``sshd`` boards that this
script starts on loopback addresses 127.0.7.10... (``--first``; each its own address, host
key and folder; started as non-daemon processes, stopped by pid):

* cold rollout of the same ~25 MB release to 20 boards (1 / 5 / 20 for scaling);
* no-change rollout (the release is already there) vs Ansible's no-change run;
* controller CPU (user+sys of every controller process, ssh clients and
  ControlPersist masters included) and peak memory (summed PSS of the
  controller's process tree, so pages shared by forks count once, sampled
  at 10 Hz).

Fairness: same files, same cipher and MAC (aes128-ctr / hmac-sha2-256, forced
by the servers), compression off, Ansible with forks=20, gather_facts off,
pipelining on and ControlPersist on (its fastest documented settings); each
contender runs as its own process tree so CPU and memory are measured the
same way. ``~/.ssh/config`` is never read (``-F /dev/null``).

The dmsbuild contender plugs in through ONE function, ``make_dmsbuild_deploy``
below: it returns the real per-board deploy (``pipeline/deploy.FleetDeploy``:
``release.deploy_board`` over paramiko) and its resume check, which the
rollout runs with one worker per board.

    nice .venv/bin/python bench/bench_fleet.py                 # everything
    nice .venv/bin/python bench/bench_fleet.py --sizes 1,5 --skip-ansible

ansible-core comes from PyPI into its own venv (``--ansible-venv``, default
artifacts/bench-venv: ``python3 -m venv artifacts/bench-venv &&
artifacts/bench-venv/bin/pip install ansible-core``), so it never touches the
project's venv.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmsbuild.ship import fleet  # noqa: E402  (standard library only)

PORT = 2222
CIPHER, MAC = "aes128-ctr", "hmac-sha2-256"
#: a release of the size the issue names: the model files of one target plus runner, reference and manifest
RELEASE_FILES = {
    "models/fp32.onnx": 18_900_000,
    "models/int8-qdq.onnx": 6_000_000,
    "verify/reference.npz": 200_000,
    "runner/dms_bench.py": 20_000,
    "manifest.json": 4_000,
}


# --------------------------------------------------------------------------
# the dmsbuild side: the one plug-in point
# --------------------------------------------------------------------------
def make_dmsbuild_deploy(release_dir: Path, work: Path, key: Path, known_hosts: Path,
                         boards: list[fleet.BoardRef] | None = None, release_id: str = "bench000000000000",
                         relay: bool = False, mirror: str | None = None, publish: str | None = None,
                         ) -> tuple[fleet.DeployOne, fleet.CurrentRelease]:
    """dmsbuild's real per-board deploy of ``release_dir`` over SSH, for ``fleet.rollout``.

    Returns ``(deploy_one, current_release)`` of ``pipeline/deploy.FleetDeploy``:
    ``release.deploy_board`` per board (paramiko, one connection per board
    opened in its worker; host keys checked against ``known_hosts``; content-
    addressed objects under ``work/boards/<board>/dmsbuild``; board-side sha256
    verify, hardlinked release, ``current`` switched by rename) and the
    resume check (one ``readlink`` per board) that makes a no-change rollout
    touch nothing. No on-board benchmark (the files are random bytes; the
    other contenders do not benchmark either).
    """
    from dmsbuild.config import TargetProfile
    from dmsbuild.pipeline.deploy import FleetDeploy
    from dmsbuild.ship.inventory import Board
    from dmsbuild.ship.manifest import Release, ReleaseFile, sha256_file

    files = [ReleaseFile(p.relative_to(release_dir).as_posix(), p, sha256_file(p), p.stat().st_size)
             for p in sorted(release_dir.rglob("*")) if p.is_file()]
    release = Release(target="bench", release_id=release_id, manifest={"project": "bench", "artifacts": []},
                      manifest_bytes=b"", files=files, staging=release_dir)
    profile = TargetProfile(name="bench")
    if relay:  # boards that finished serve the objects to the later waves (docs/fleet-scale.md)
        profile.deploy.relay = "boards"
    inv = [Board(name=b.name, groups=list(b.groups), host=b.host, port=b.port, user=b.user, identity_file=str(key),
                 known_hosts=str(known_hosts), root=str(work / "boards" / b.name / "dmsbuild"),
                 python="/usr/bin/python3")  # the board's system Python, as Ansible's interpreter_python
           for b in boards or []]
    profile.deploy.mirror = mirror
    fd = FleetDeploy(profile, inv, release, project_name="bench")
    if mirror and publish:
        fd.publish(publish)  # once, before any board starts (as `doit deploy` does with deploy.mirror_publish)
    _DEPLOYERS.append(fd)
    return fd.deploy_one, fd.current_release


#: the FleetDeploys made here: closed (kept connections, relay servers) when the rollout ends
_DEPLOYERS: list = []


def _run_dmsbuild(args: argparse.Namespace) -> int:
    """Child process: one dmsbuild rollout (progress as plain lines, like `doit deploy` in a log), measured
    like the other contenders."""
    from dmsbuild.ship.progress import FleetProgress

    os.environ["DMSBUILD_SSH_CONFIG"] = "/dev/null"  # like the others' -F /dev/null
    spec = json.loads(Path(args.spec).read_text())
    boards = [fleet.BoardRef(**{**b, "groups": tuple(b["groups"])}) for b in spec["boards"]]
    relay = spec.get("relay", False)
    deploy, current = make_dmsbuild_deploy(Path(spec["release"]), Path(spec["work"]), Path(spec["key"]),
                                           Path(spec["known_hosts"]), boards, spec["release_id"], relay=relay,
                                           mirror=spec.get("mirror"), publish=spec.get("publish"))
    # relay: the first wave (as many boards as serve as relays) is pushed, the rest fetch from them
    waves = [4, "100%"] if relay and len(boards) > 4 else ["100%"]
    try:
        res = fleet.rollout(boards, spec["release_id"], deploy, target="bench", parallel=len(boards), max_fail=len(boards),
                            current_release=current, progress=FleetProgress(sys.stderr, tty=False), waves=waves)
    finally:
        for fd in _DEPLOYERS:
            fd.close()
    print(res.table())
    print(json.dumps(res.summary()))
    return res.exit_code


def _run_fleet_scp(args: argparse.Namespace) -> int:
    """Child process: fleet.rollout driving one scp per board.

    Not dmsbuild's deploy (no content addressing, no verify): it isolates
    the cost of the rollout layer itself (thread pool, progress, report)
    against the bash-driven parallel scp row.
    """
    from dmsbuild.ship.progress import FleetProgress

    spec = json.loads(Path(args.spec).read_text())
    boards = [fleet.BoardRef(**{**b, "groups": tuple(b["groups"])}) for b in spec["boards"]]
    release, opts = spec["release"], spec["ssh_opts"]
    size = sum(p.stat().st_size for p in Path(release).rglob("*") if p.is_file())

    def deploy_one(board: fleet.BoardRef, sink: fleet.ProgressSink) -> fleet.BoardOutcome:
        sink.update(board.name, "sending", sent=0, total=size)
        dest = f"{board.user}@{board.host}:{Path(spec['work']) / 'boards' / board.name / 'fleetscp'}"
        proc = subprocess.run(["scp", "-q", "-r", *opts, "-i", board.identity_file, "-P", str(board.port), release, dest],
                              capture_output=True, text=True)
        if proc.returncode:
            return fleet.BoardOutcome(board.name, False, reason=(proc.stderr.strip().splitlines() or ["scp failed"])[-1])
        sink.update(board.name, "sending", sent=size, total=size)
        return fleet.BoardOutcome(board.name, True, spec["release_id"], bytes_sent=size)

    res = fleet.rollout(boards, spec["release_id"], deploy_one, target="bench", parallel=len(boards),
                        max_fail=len(boards), progress=FleetProgress(sys.stderr))
    print(res.table())
    return res.exit_code


# --------------------------------------------------------------------------
# emulated boards: real sshd on loopback
def board_addr(first: str, i: int) -> str:
    """The i-th loopback address from ``first`` (127.0.7.250 + 10 -> 127.0.8.4: hosts .1-.254 of each /24)."""
    a, b, c, d = (int(x) for x in first.split("."))
    n = (c * 254 + (d - 1)) + i
    return f"{a}.{b}.{n // 254}.{n % 254 + 1}"



# --------------------------------------------------------------------------
@dataclass
class Board:
    name: str
    addr: str
    root: Path
    proc: subprocess.Popen | None = None


@dataclass
class SshdFleet:
    work: Path
    n: int
    #: the first loopback address (a.b.c.d); board i gets the i-th address after it, across /24s
    first: str = "127.0.7.10"
    #: run sshd under this (e.g. ``ip netns exec NS``)
    prefix: list[str] = field(default_factory=list)
    user: str = field(default_factory=lambda: os.environ.get("USER") or "root")
    boards: list[Board] = field(default_factory=list)

    @property
    def key(self) -> Path:
        return self.work / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.work / "known_hosts"

    def start(self) -> "SshdFleet":
        import pwd

        self.user = pwd.getpwuid(os.getuid()).pw_name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        auth = self.work / "authorized_keys"
        shutil.copy(self.key.with_suffix(".pub"), auth)
        os.chmod(auth, 0o600)
        kh = []
        for i in range(self.n):
            name, addr = f"board-{i + 1:02d}", board_addr(self.first, i)
            d = self.work / "sshd" / name
            d.mkdir(parents=True)
            hk = d / "host_ed25519"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hk)], check=True)
            kh.append(f"[{addr}]:{PORT} " + " ".join(hk.with_suffix(".pub").read_text().split()[:2]))
            cfg = d / "sshd_config"
            cfg.write_text("\n".join([
                f"ListenAddress {addr}:{PORT}", f"HostKey {hk}", f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {auth}", "PubkeyAuthentication yes", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password",
                f"AllowUsers {self.user}", f"Ciphers {CIPHER}", f"MACs {MAC}", "Compression no",
                "MaxStartups 200:30:400", "MaxSessions 100", "LogLevel ERROR",
                # like `dmsbuild.boards`: a plain PATH, and SHLVL=1 so bash skips ~/.bashrc for ssh commands. This
                # machine's root .bashrc runs `pyenv init` (~0.3-0.5 s per remote command, and `python3` becomes a
                # pyenv shim): a cost real boards do not have, paid per command by every contender (most by Ansible)
                "SetEnv PATH=/usr/local/bin:/usr/bin:/bin SHLVL=1",
                "Subsystem sftp /usr/lib/openssh/sftp-server", "",
            ]))
            root = self.work / "boards" / name
            root.mkdir(parents=True)
            proc = subprocess.Popen([*self.prefix, "/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=open(d / "log", "wb"))
            self.boards.append(Board(name, addr, root, proc))
        self.known_hosts.write_text("\n".join(kh) + "\n")
        deadline = time.monotonic() + 30
        for b in self.boards:
            while True:
                if b.proc.poll() is not None:
                    raise RuntimeError(f"sshd for {b.name} exited: {(self.work / 'sshd' / b.name / 'log').read_text()[-500:]}")
                try:
                    socket.create_connection((b.addr, PORT), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd for {b.name} did not listen on {b.addr}:{PORT}")
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        for b in self.boards:
            if b.proc is not None and b.proc.poll() is None:
                b.proc.send_signal(signal.SIGTERM)
        for b in self.boards:
            if b.proc is not None:
                try:
                    b.proc.wait(10)
                except subprocess.TimeoutExpired:
                    b.proc.kill()
                    b.proc.wait()

    def ssh_opts(self, control_dir: Path | None = None) -> list[str]:
        opts = ["-F", "/dev/null", "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", "-o", "Compression=no", "-o", f"Ciphers={CIPHER}", "-o", f"MACs={MAC}",
                "-o", "BatchMode=yes"]
        if control_dir is not None:
            opts += ["-o", "ControlMaster=auto", "-o", "ControlPersist=120s", "-o", f"ControlPath={control_dir}/%C"]
        return opts


# --------------------------------------------------------------------------
# measuring a process tree
# --------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _procs() -> dict[int, tuple[int, float, int, str]]:
    """pid -> (ppid, cpu seconds, rss bytes, cmdline) for every process we can read."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        out[int(d)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK, int(rest[21]) * _PAGE, cmd)
    return out


def _pss(pid: int, rss: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them (forks!); RSS if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss


def _tree(procs, root: int, extra_marker: str | None) -> set[int]:
    kids: dict[int, list[int]] = {}
    for pid, (ppid, *_r) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, stack = set(), [root]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        stack.extend(kids.get(p, []))
    if extra_marker:
        seen |= {pid for pid, (_, _, _, cmd) in procs.items() if extra_marker in cmd}
    return seen


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    peak_mb: float
    rc: int
    tail: str = ""
    #: the machine's 1-minute load average: (at the start, highest seen while it ran)
    load: tuple[float, float] = (0.0, 0.0)


def measure(argv: list[str], env: dict[str, str] | None = None, marker: str | None = None, timeout: float = 600) -> Measurement:
    """Run ``argv``; wall time, CPU of it and its children (+ detached processes whose cmdline has ``marker``), peak RSS."""
    before = sum(cpu for _, cpu, _, cmd in _procs().values() if marker and marker in cmd)
    peak = 0
    load0 = load_max = os.getloadavg()[0]
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()

    def sample() -> None:
        nonlocal peak, load_max
        while not stop.is_set():
            load_max = max(load_max, os.getloadavg()[0])
            ps = _procs()
            peak = max(peak, sum(_pss(p, ps[p][2]) for p in _tree(ps, proc.pid, marker) if p in ps))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    after = sum(cpu for _, cpu, _, cmd in _procs().values() if marker and marker in cmd)
    text = b"".join(out).decode(errors="replace")
    return Measurement(wall, ru.ru_utime + ru.ru_stime + max(0.0, after - before), peak / 1e6, proc.returncode, text[-1500:],
                       (load0, load_max))


# --------------------------------------------------------------------------
# contenders
# --------------------------------------------------------------------------
def make_release(path: Path) -> int:
    total = 0
    for rel, size in RELEASE_FILES.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))  # incompressible, like weights
        total += size
    return total


def scp_argv(sshd: SshdFleet, boards: list[Board], release: Path) -> list[str]:
    opts = " ".join(sshd.ssh_opts())
    lines = ["pids=()"]
    for b in boards:
        lines.append(f"scp -q -r {opts} -i {sshd.key} -P {PORT} {release} {sshd.user}@{b.addr}:{b.root}/scp & pids+=($!)")
    lines.append('rc=0; for p in "${pids[@]}"; do wait $p || rc=1; done; exit $rc')
    return ["bash", "-c", "\n".join(lines)]


def ansible_setup(sshd: SshdFleet, boards: list[Board], release: Path, work: Path, tag: str) -> tuple[list[str], dict[str, str], str]:
    d = work / f"ansible-{tag}"
    d.mkdir(parents=True, exist_ok=True)
    cp = d / "cp"
    cp.mkdir(exist_ok=True)
    inv = ["[boards]"] + [
        f"{b.name} ansible_host={b.addr} ansible_port={PORT} ansible_user={sshd.user} "
        f"ansible_ssh_private_key_file={sshd.key} board_root={b.root}" for b in boards
    ]
    (d / "hosts.ini").write_text("\n".join(inv) + "\n")
    ssh_args = " ".join(sshd.ssh_opts()[2:]) + f" -o ControlMaster=auto -o ControlPersist=120s"
    (d / "ansible.cfg").write_text("\n".join([
        "[defaults]", "forks = 20", "gathering = explicit", "host_key_checking = True",
        "interpreter_python = /usr/bin/python3", "retry_files_enabled = False", f"local_tmp = {d / 'tmp'}", "",
        "[ssh_connection]", f"ssh_args = -F /dev/null {ssh_args}", f"control_path_dir = {cp}",
        "control_path = %(directory)s/%%C", "pipelining = True", "",
    ]))
    (d / "play.yml").write_text(
        "- hosts: boards\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.copy:\n        src: {release}/\n        dest: \"{{{{ board_root }}}}/ansible/\"\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(d / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return [str(Path(args_global.ansible_venv) / "bin" / "ansible-playbook"), "-i", str(d / "hosts.ini"), str(d / "play.yml")], env, str(cp)


def dmsbuild_argv(sshd: SshdFleet, boards: list[Board], release: Path, work: Path, tag: str, relay: bool = False,
                  mirror: str | None = None, publish: str | None = None) -> list[str]:
    spec = work / f"dmsbuild-{tag}.json"
    spec.write_text(json.dumps({
        "boards": [{"name": b.name, "host": b.addr, "port": PORT, "user": sshd.user, "identity_file": str(sshd.key), "groups": ["bench"]} for b in boards],
        "release": str(release), "release_id": "bench000000000000", "work": str(work), "key": str(sshd.key),
        "known_hosts": str(sshd.known_hosts), "relay": relay, "mirror": mirror, "publish": publish,
    }))
    return [sys.executable, __file__, "_run-dmsbuild", "--spec", str(spec)]


def fleet_scp_argv(sshd: SshdFleet, boards: list[Board], release: Path, work: Path, tag: str) -> list[str]:
    spec = work / f"fleetscp-{tag}.json"
    spec.write_text(json.dumps({
        "boards": [{"name": b.name, "host": b.addr, "port": PORT, "user": sshd.user, "identity_file": str(sshd.key), "groups": ["bench"]} for b in boards],
        "release": str(release), "release_id": "bench000000000000", "work": str(work), "ssh_opts": sshd.ssh_opts(),
    }))
    return [sys.executable, __file__, "_run-fleet-scp", "--spec", str(spec)]


def clean(boards: list[Board], sub: str) -> None:
    for b in boards:
        shutil.rmtree(b.root / sub, ignore_errors=True)


# --------------------------------------------------------------------------
def main() -> int:
    global args_global
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_run-dmsbuild", "_run-fleet-scp"])
    ap.add_argument("--spec")
    ap.add_argument("--sizes", default="1,5,20")
    ap.add_argument("--ansible-venv", default=str(ROOT / "artifacts" / "bench-venv"))
    ap.add_argument("--skip-ansible", action="store_true")
    ap.add_argument("--ansible-max", type=int, default=20, help="run Ansible only up to this many boards (default 20)")
    ap.add_argument("--relay", action="store_true", help="also a relay rollout (deploy.relay = \"boards\")")
    ap.add_argument("--first", default="127.0.170.1", help="first board address (default 127.0.170.1, clear of the tests' ranges; 200 boards reach 127.0.170.200, 300 reach 127.0.171.x)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = args_global = ap.parse_args()
    if args.mode == "_run-dmsbuild":
        return _run_dmsbuild(args)
    if args.mode == "_run-fleet-scp":
        return _run_fleet_scp(args)

    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    have_ansible = not args.skip_ansible and (Path(args.ansible_venv) / "bin" / "ansible-playbook").exists()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dms-fleet-bench-") as tmp:
        work = Path(tmp)
        release = work / "release"
        size = make_release(release)
        sshd = SshdFleet(work, max(sizes), first=args.first).start()
        try:
            for n in sizes:
                boards = sshd.boards[:n]

                def add(contender: str, case: str, m: Measurement | None, note: str = "") -> None:
                    rows.append({"boards": n, "contender": contender, "case": case,
                                 "wall_s": None if m is None else round(m.wall_s, 2),
                                 "cpu_s": None if m is None else round(m.cpu_s, 2),
                                 "peak_mb": None if m is None else round(m.peak_mb, 1),
                                 "ok": None if m is None else m.rc == 0, "note": note,
                                 "load": None if m is None else f"{m.load[0]:.0f}-{m.load[1]:.0f}"})
                    if m is not None and m.rc != 0:
                        print(f"--- {contender} {case} n={n} rc={m.rc}\n{m.tail}", file=sys.stderr)

                clean(boards, "scp")
                add("parallel scp", "cold", measure(scp_argv(sshd, boards, release)))
                clean(boards, "fleetscp")
                add("fleet.rollout + scp", "cold", measure(fleet_scp_argv(sshd, boards, release, work, f"n{n}")),
                    "rollout layer driving scp (overhead check, not dmsbuild's deploy)")
                if have_ansible and n <= args.ansible_max:
                    argv, env, cp = ansible_setup(sshd, boards, release, work, f"n{n}")
                    clean(boards, "ansible")
                    add("ansible copy", "cold", measure(argv, env, marker=cp))
                    add("ansible copy", "no change", measure(argv, env, marker=cp))
                elif n <= args.ansible_max:
                    add("ansible copy", "cold", None, "ansible-core not installed")
                clean(boards, "dmsbuild")
                argv = dmsbuild_argv(sshd, boards, release, work, f"n{n}")
                add("dmsbuild", "cold", measure(argv))
                add("dmsbuild", "no change", measure(argv))
                if args.relay and n > 4:
                    clean(boards, "dmsbuild")
                    add("dmsbuild relay", "cold", measure(dmsbuild_argv(sshd, boards, release, work, f"r{n}", relay=True)),
                        "4 boards pushed, the rest fetch from them over HTTP (sha256-checked)")
        finally:
            sshd.stop()

    print(f"\nfleet rollout benchmark: {size / 1e6:.1f} MB release, {os.cpu_count()} CPU cores, "
          f"cipher {CIPHER}, compression off; sshd boards from {args.first}; load average before the run "
          f"{load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f} (the load column is the 1-minute load at the "
          f"start and the highest during each row, the row's own processes included)\n")
    print(f"| boards | contender | case | wall s | controller CPU s | peak MB | ok | vs scp cold (wall) | load avg |")
    print("|---:|---|---|---:|---:|---:|---|---:|---:|")
    scp = {r["boards"]: r["wall_s"] for r in rows if r["contender"] == "parallel scp"}
    for r in rows:
        ratio = f"{r['wall_s'] / scp[r['boards']]:.2f}x" if r["wall_s"] and scp.get(r["boards"]) else "-"
        cells = ["-" if r[k] is None else str(r[k]) for k in ("wall_s", "cpu_s", "peak_mb", "ok")]
        print(f"| {r['boards']} | {r['contender']} | {r['case']} | " + " | ".join(cells) + f" | {ratio} | {r['load'] or '-'} |"
              + (f" {r['note']}" if r["note"] else ""))
    goals = []
    for n in sizes:
        get = {(r["contender"], r["case"]): r["wall_s"] for r in rows if r["boards"] == n}
        d_cold, d_nc = get.get(("dmsbuild", "cold")), get.get(("dmsbuild", "no change"))
        a_cold, a_nc, s_cold = get.get(("ansible copy", "cold")), get.get(("ansible copy", "no change")), get.get(("parallel scp", "cold"))
        if d_cold and a_cold:
            goals.append(f"n={n}: ansible cold / dmsbuild cold = {a_cold / d_cold:.2f}x (goal >= 3x); "
                         f"ansible no-change / dmsbuild no-change = {a_nc / d_nc:.2f}x (goal >= 10x); "
                         f"dmsbuild cold / scp = {d_cold / s_cold:.2f}x (goal <= 1.5x)")
        elif a_cold and s_cold:
            goals.append(f"n={n}: ansible cold / scp cold = {a_cold / s_cold:.2f}x; ansible no-change = {a_nc:.2f} s "
                         f"(the dmsbuild rows are missing: see the errors above)")
        elif d_cold and s_cold:
            r_cold = get.get(("dmsbuild relay", "cold"))
            goals.append(f"n={n}: dmsbuild cold / scp = {d_cold / s_cold:.2f}x (goal <= 1.3x at 100)"
                         + (f"; dmsbuild relay cold / scp = {r_cold / s_cold:.2f}x" if r_cold else ""))
    print("\n" + "\n".join(goals))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


args_global: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
