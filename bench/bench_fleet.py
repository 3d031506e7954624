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

Fair by construction (issue 26): each size runs ``--pairs`` rounds (default
3), every contender once per round, the order alternating between rounds
(scp, rollout+scp, dmsbuild; then the reverse), so that no contender always
inherits what the one before it left running; before each row the bench waits
for the boards' sessions to end and the CPU to be idle again, and records the
1-minute load average and the CPU idle share then. Ratios are per round
(against that round's scp) and printed as the median and range over the
rounds. When the 1-minute load average at the start is above ``--max-load``
(1, on this 2-core machine) the bench refuses to measure: no timing taken
beside other work is a performance figure. ``--allow-load`` runs anyway and
labels every row and ratio "under load, not a performance figure".

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
    from dmsbuild.board.release_agent import sha256_of
    from dmsbuild.ship.manifest import Release, ReleaseFile

    files = [ReleaseFile(p.relative_to(release_dir).as_posix(), p, sha256_of(p, follow_symlinks=True), p.stat().st_size)
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
        if os.getuid() == 0:  # sshd's privilege separation folder (a fresh container lacks it; as dmsbuild.boards does)
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
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
def make_release(path: Path, scale: float = 1.0) -> int:
    """The bench's release under ``path`` (random bytes: incompressible, like weights); ``scale`` shrinks every file."""
    total = 0
    for rel, size in RELEASE_FILES.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        n = max(1000, int(size * scale))
        p.write_bytes(os.urandom(n))
        total += n
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
# --------------------------------------------------------------------------
# fairness: an idle machine, alternated order, several pairs, medians
# --------------------------------------------------------------------------
#: refuse to print a ratio when the 1-minute load average at the start is above this (a 2-core machine)
MAX_LOAD = 1.0
UNDER_LOAD = "under load, not a performance figure"


def cpu_idle(seconds: float = 1.0) -> float:
    """Share of the machine's CPU time that was idle over the next ``seconds`` (/proc/stat; 0..1)."""
    def snap() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


def boards_cpu(sshd_pids: set[int]) -> float:
    """CPU seconds of the boards' sshd listeners and everything below them, reaped children included (cutime):
    the work the boards did (decrypting, writing, hashing, the agent's Python), comparable across contenders."""
    procs = _procs()
    tree: set[int] = set()
    for pid in sshd_pids:
        tree |= _tree(procs, pid, None)
    total = 0.0
    for p in tree:
        try:
            rest = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in rest[11:15]) / _TICK
    return total


def sessions_gone(sshd_pids: set[int], timeout: float = 15.0) -> None:
    """Wait (at most ``timeout``) until the boards' sshd have reaped every session, so their CPU is in cutime."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(ppid in sshd_pids for ppid, *_r in _procs().values()):
            return
        time.sleep(0.1)


def timed_sync() -> float:
    """Seconds a `sync` (every dirty page of the machine to disk) takes now."""
    t0 = time.perf_counter()
    os.sync()
    return time.perf_counter() - t0


def settle(sshd_pids: set[int], timeout: float = 30.0) -> float:
    """Wait until the boards' sshd have no session left (the last row's processes are gone) and the CPU is
    mostly idle again (>= 90 % over 1 s), at most ``timeout`` s; returns the idle share measured last.

    It first writes out the page cache (`sync`): a row that leaves 1-2.5 GB dirty (scp at 100-200 boards does
    not fsync) would otherwise hand its writeback to the next row (the flusher starts after 30 s, or at once past
    `vm.dirty_background_ratio`), and an fsync in that row (dmsbuild's) would wait behind it."""
    os.sync()
    deadline = time.monotonic() + timeout
    idle = 0.0
    while time.monotonic() < deadline:
        procs = _procs()
        sessions = sum(1 for pid, (ppid, *_r) in procs.items() if ppid in sshd_pids)
        idle = cpu_idle(1.0)
        if sessions == 0 and idle >= 0.9:
            break
    return idle


@dataclass
class Row:
    boards: int
    contender: str
    case: str
    pair: int
    order: int
    m: Measurement | None
    #: 1-minute load average and the CPU idle share over the second before the row started
    load_before: float = 0.0
    idle_before: float = 0.0
    note: str = ""
    #: CPU seconds the boards' processes spent during the row
    boards_cpu_s: float | None = None
    #: seconds a `sync` right after the row took: writing out what the row left only in the page cache (scp
    #: does not fsync; dmsbuild fsyncs every object and folder before the switch, so its bytes are on disk already)
    sync_s: float | None = None

    def as_json(self) -> dict:
        m = self.m
        return {"boards": self.boards, "contender": self.contender, "case": self.case, "pair": self.pair,
                "order": self.order, "wall_s": None if m is None else round(m.wall_s, 3),
                "cpu_s": None if m is None else round(m.cpu_s, 2), "peak_mb": None if m is None else round(m.peak_mb, 1),
                "ok": None if m is None else m.rc == 0,
                "boards_cpu_s": None if self.boards_cpu_s is None else round(self.boards_cpu_s, 2), "load_before": round(self.load_before, 2),
                "load_max": None if m is None else round(m.load[1], 1), "idle_before": round(self.idle_before, 2),
                "sync_s": None if self.sync_s is None else round(self.sync_s, 3), "note": self.note}


def pair_orders(contenders: list[str], pairs: int) -> list[list[str]]:
    """Each pair runs every contender once; the order alternates (A B C, then C B A, ...) so that no contender
    always inherits the load the one before it left (the old bench always ran scp first)."""
    return [list(contenders) if p % 2 == 0 else list(reversed(contenders)) for p in range(pairs)]


def ratios(rows: list[Row], n: int, contender: str, case: str = "cold", base: str = "parallel scp",
           durable: bool = False) -> list[float]:
    """contender / base wall time, one per pair in which both ran and succeeded; ``durable``: each side's wall time
    plus the `sync` after it (until the bytes are on disk, which dmsbuild's deploy waits for and scp does not)."""
    out = []
    for p in sorted({r.pair for r in rows if r.boards == n}):
        a = [r for r in rows if r.boards == n and r.pair == p and r.contender == contender and r.case == case]
        b = [r for r in rows if r.boards == n and r.pair == p and r.contender == base and r.case == "cold"]
        if a and b and a[0].m and b[0].m and a[0].m.rc == 0 and b[0].m.rc == 0:
            if durable:
                if a[0].sync_s is not None and b[0].sync_s is not None:
                    out.append((a[0].m.wall_s + a[0].sync_s) / (b[0].m.wall_s + b[0].sync_s))
            else:
                out.append(a[0].m.wall_s / b[0].m.wall_s)
    return out


def ratio_text(rs: list[float], loaded: bool) -> str:
    if not rs:
        return "-"
    import statistics

    text = f"{statistics.median(rs):.2f}x (range {min(rs):.2f}-{max(rs):.2f}, {len(rs)} pair{'s' if len(rs) > 1 else ''})"
    return f"{text}, {UNDER_LOAD}" if loaded else text


CONTENDERS = ("scp", "fleet-scp", "dmsbuild")
NAMES = {"scp": "parallel scp", "fleet-scp": "fleet.rollout + scp", "dmsbuild": "dmsbuild"}


def main() -> int:
    global args_global
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_run-dmsbuild", "_run-fleet-scp"])
    ap.add_argument("--spec")
    ap.add_argument("--sizes", default="1,5,20")
    ap.add_argument("--pairs", type=int, default=3, help="rounds per size; each runs every contender once, the order "
                    "alternating between rounds (default 3; the ratio printed is the median over them)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS),
                    help=f"which of {','.join(CONTENDERS)} to run (default all; Ansible and relay have their own flags)")
    ap.add_argument("--scale", type=float, default=1.0, help="release size factor (1.0 = 25.1 MB)")
    ap.add_argument("--max-load", type=float, default=MAX_LOAD,
                    help=f"refuse to measure when the 1-minute load average at the start is above this (default {MAX_LOAD})")
    ap.add_argument("--allow-load", action="store_true",
                    help=f"measure anyway (a dry run): every row and ratio is labelled '{UNDER_LOAD}'")
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
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in chosen if c not in CONTENDERS]
    if bad or "scp" not in chosen:
        print(f"--contenders: {','.join(bad) or 'scp missing'}: expected a list of {','.join(CONTENDERS)} "
              "including scp (every ratio is against parallel scp)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    loaded = load_before[0] > args.max_load
    if loaded and not args.allow_load:
        print(f"REFUSED: the 1-minute load average is {load_before[0]:.2f} (> {args.max_load:g}): other work is running "
              f"on this {os.cpu_count()}-core machine, so no timing taken now is a performance figure. Run it on an idle "
              f"machine, or add --allow-load for a dry run whose every row is labelled '{UNDER_LOAD}'.", file=sys.stderr)
        return 3
    have_ansible = not args.skip_ansible and (Path(args.ansible_venv) / "bin" / "ansible-playbook").exists()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dms-fleet-bench-") as tmp:
        work = Path(tmp)
        release = work / "release"
        size = make_release(release, args.scale)
        sshd = SshdFleet(work, max(sizes), first=args.first).start()
        sshd_pids = {b.proc.pid for b in sshd.boards}
        try:
            for n in sizes:
                boards = sshd.boards[:n]

                def run(contender: str, case: str, pair: int, order: int, argv: list[str] | None,
                        env: dict[str, str] | None = None, marker: str | None = None, note: str = "") -> Row:
                    idle = settle(sshd_pids) if argv is not None else 0.0
                    load = os.getloadavg()[0]
                    cpu_b0 = boards_cpu(sshd_pids)
                    m = measure(argv, env, marker=marker) if argv is not None else None
                    synced = timed_sync() if m is not None else None
                    sessions_gone(sshd_pids)
                    row = Row(n, contender, case, pair, order, m, load, idle, note,
                              boards_cpu(sshd_pids) - cpu_b0 if m is not None else None, synced)
                    rows.append(row)
                    if m is not None and m.rc != 0:
                        print(f"--- {contender} {case} n={n} pair {pair} rc={m.rc}\n{m.tail}", file=sys.stderr)
                    if m is not None:
                        print(f"  n={n} pair {pair + 1}/{args.pairs} #{order + 1} {contender} {case}: {m.wall_s:.2f} s "
                              f"(+ sync {synced:.2f} s), load {load:.2f} before, idle {idle:.0%}", file=sys.stderr, flush=True)
                    return row

                for pair, order in enumerate(pair_orders(chosen, args.pairs)):
                    for i, c in enumerate(order):
                        if c == "scp":
                            clean(boards, "scp")
                            run(NAMES[c], "cold", pair, i, scp_argv(sshd, boards, release))
                        elif c == "fleet-scp":
                            clean(boards, "fleetscp")
                            run(NAMES[c], "cold", pair, i, fleet_scp_argv(sshd, boards, release, work, f"n{n}"),
                                note="rollout layer driving scp (overhead check, not dmsbuild's deploy)")
                        else:
                            clean(boards, "dmsbuild")
                            argv = dmsbuild_argv(sshd, boards, release, work, f"n{n}")
                            run("dmsbuild", "cold", pair, i, argv)
                            run("dmsbuild", "no change", pair, i, argv)
                if have_ansible and n <= args.ansible_max:  # slow (minutes): once per size, after the pairs
                    argv, env, cp = ansible_setup(sshd, boards, release, work, f"n{n}")
                    clean(boards, "ansible")
                    run("ansible copy", "cold", 0, len(chosen), argv, env, marker=cp)
                    run("ansible copy", "no change", 0, len(chosen), argv, env, marker=cp)
                elif n <= args.ansible_max and not args.skip_ansible:
                    run("ansible copy", "cold", 0, len(chosen), None, note="ansible-core not installed")
                if args.relay and n > 4:
                    clean(boards, "dmsbuild")
                    run("dmsbuild relay", "cold", 0, len(chosen), dmsbuild_argv(sshd, boards, release, work, f"r{n}", relay=True),
                        note="4 boards pushed, the rest fetch from them over HTTP (sha256-checked)")
        finally:
            sshd.stop()

    load_after = os.getloadavg()
    print(f"\nfleet rollout benchmark: {size / 1e6:.1f} MB release, {os.cpu_count()} CPU cores, "
          f"cipher {CIPHER}, compression off; sshd boards from {args.first}; {args.pairs} pair(s) per size, order "
          f"alternating ({' / '.join(' '.join(o) for o in pair_orders(chosen, min(2, args.pairs)))}); "
          f"load average at the start {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}"
          + (f" (above {args.max_load:g}: EVERY FIGURE BELOW IS {UNDER_LOAD.upper()})" if loaded else "")
          + ". Before each row the bench waits (up to 30 s) for the boards' sessions to end and the CPU to be >= 90 % idle; "
          "'load before' is the 1-minute load average then (it still carries the previous rows' processes), "
          "'idle before' the CPU idle share over the second before the row; "
          "'boards CPU s' is what the boards' processes (sshd, sftp-server or scp, the agent) spent: with the "
          "controller's CPU, the load-independent part of the comparison. Every row starts after a `sync` (no row "
          "inherits another's writeback); 'sync s after' is a `sync` right after the row: the time to put on disk "
          "what the row left only in the page cache (dmsbuild fsyncs before its switch; scp does not).\n")
    print("| boards | pair | # | contender | case | wall s | sync s after | controller CPU s | boards CPU s | peak MB | ok | load before | idle before | load max |")
    print("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        j = r.as_json()
        cells = ["-" if j[k] is None else str(j[k]) for k in ("wall_s", "sync_s", "cpu_s", "boards_cpu_s", "peak_mb", "ok")]
        print(f"| {r.boards} | {r.pair + 1} | {r.order + 1} | {r.contender} | {r.case} | " + " | ".join(cells)
              + f" | {r.load_before:.2f} | {r.idle_before:.0%} | {j['load_max'] if j['load_max'] is not None else '-'} |"
              + (f" {r.note}" if r.note else "") + (f" ({UNDER_LOAD})" if loaded else ""))
    print("\nratios, median of the pairs (range), wall time against parallel scp cold of the same pair:")
    for n in sizes:
        parts = []
        for contender, case, goal in (("dmsbuild", "cold", "goal <= 1.2x"), ("fleet.rollout + scp", "cold", "goal <= 1.1x"),
                                      ("dmsbuild", "no change", "")):
            rs = ratios(rows, n, contender, case)
            if rs:
                parts.append(f"{contender} {case} / scp = {ratio_text(rs, loaded)}" + (f" ({goal})" if goal else ""))
            rs = ratios(rows, n, contender, case, durable=True) if case == "cold" else []
            if rs:
                parts.append(f"{contender} {case} / scp, each until its bytes are on disk (+ the sync after) = "
                             f"{ratio_text(rs, loaded)}")
        one = {(r.contender, r.case): r.m.wall_s for r in rows if r.boards == n and r.m is not None and r.m.rc == 0
               and r.contender in ("ansible copy", "dmsbuild relay")}
        scp_walls = [r.m.wall_s for r in rows if r.boards == n and r.contender == "parallel scp" and r.m and r.m.rc == 0]
        if one and scp_walls:
            import statistics

            for (c, case), w in one.items():
                parts.append(f"{c} {case} / median scp = {w / statistics.median(scp_walls):.2f}x (one run"
                             + (f", {UNDER_LOAD})" if loaded else ")"))
        print(f"n={n}: " + ("; ".join(parts) if parts else "no ratio (a contender failed: see the errors above)"))
    print(f"\nload average at the end {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"release_mb": round(size / 1e6, 2), "pairs": args.pairs,
                                               "load_start": load_before, "under_load": loaded,
                                               "rows": [r.as_json() for r in rows]}, indent=2))
    return 0


args_global: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
