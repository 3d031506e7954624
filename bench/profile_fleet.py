#!/usr/bin/env python3
"""Where the time of one dmsbuild rollout goes (issue 17): per-phase wall times and a cProfile of every thread.

Starts N emulated boards (real ``sshd``, ``bench_fleet.SshdFleet``) and runs
one cold rollout in this process through the same plug-in the bench uses
(``bench_fleet.make_dmsbuild_deploy``), with:

* phase timers: each phase of the per-board deploy wrapped (``ssh -G``, TCP +
  handshake + auth + host-key check, the resume ``readlink``, lock + prepare
  + facts, each SFTP upload, the board's commit/verify/switch, lock release);
  printed as calls, summed wall seconds over all boards, mean and max per call,
  and MB/s per connection for the uploads;
* controller CPU (user+sys of this process) and the CPU spent by the boards'
  processes (every process under the sshd pids, sampled before the run ends);
* ``--profile FILE``: cProfile of all threads (every worker and paramiko
  transport thread), merged, written as pstats and the top entries printed.
  cProfile slows Python code down, so run the timings without it first.

    PYTHONPATH=$PWD nice .venv/bin/python bench/profile_fleet.py --boards 100 --scale 0.25
    PYTHONPATH=$PWD nice .venv/bin/python bench/profile_fleet.py --boards 100 --scale 0.25 --profile /tmp/p.pstats
    PYTHONPATH=$PWD nice .venv/bin/python bench/profile_fleet.py --boards 20 --scale 0.1 --count

``--count`` (issue 26): measures that do not depend on the machine's load,
per board and per phase of the deploy (resume check, lock, upload, commit,
unlock): SSH packets each way, channel opens, exec/subsystem requests, SFTP
requests by kind (writes are pipelined; every other SFTP request waits for
its answer), lock-process exchanges, bytes, waits for an upload slot, and
the synchronous round trips they add up to, plus the order of one board's
round trips from connect to switch (its critical path).
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_fleet  # noqa: E402
from dmsbuild.ship import fleet  # noqa: E402

_stats: dict[str, list[float]] = defaultdict(list)
_bytes: dict[str, int] = defaultdict(int)
_lock = threading.Lock()


def _timed(owner: object, attr: str, label: str, size_arg: int | None = None) -> None:
    """Wrap ``owner.attr`` so every call's wall time is recorded under ``label``."""
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            dt = time.perf_counter() - t0
            with _lock:
                _stats[label].append(dt)
                if size_arg is not None:
                    _bytes[label] += os.path.getsize(a[size_arg])

    setattr(owner, attr, wrapper)


def instrument() -> None:
    """Wrap the deploy's phases (module functions and other classes: once)."""
    from dmsbuild.pipeline import deploy as fleet_deploy
    from dmsbuild.ship import manifest, release
    from dmsbuild.transport import ssh

    _timed(ssh, "resolve", "ssh -G (route)")
    _timed(fleet_deploy.FleetDeploy, "current_release", "resume check (connect+readlink)")
    _timed(release, "resolve_root", "resolve root")
    _timed(release.BoardLock, "acquire", "lock+prepare+facts (1 board Python)")
    _timed(release.BoardLock, "call", "commit: verify+stage+switch")
    if hasattr(release.BoardLock, "send_object"):  # since issue 26 item 3: objects stream to the lock process
        _timed(release.BoardLock, "send_object", "upload (per file, to the agent's stdin)", size_arg=1)
    _timed(release.BoardLock, "release", "lock release")
    _timed(manifest, "sha256_of", "controller sha256")
    _timed(release, "deploy_board", "deploy_board (whole)")


def instrument_transport() -> None:
    """Wrap SSHTransport's phases (again after each ``swap_in``)."""
    from dmsbuild.transport import ssh

    _timed(ssh.SSHTransport, "_open_socket", "TCP connect")
    _timed(ssh.SSHTransport, "_handshake", "SSH handshake+auth+host key")
    _timed(ssh.SSHTransport, "_sftp", "SFTP open (cached after 1st)")
    _timed(ssh.SSHTransport, "put", "upload (per file)", size_arg=1)
    if "upload" in vars(ssh.SSHTransport):
        _timed(ssh.SSHTransport, "upload", "upload (per file)", size_arg=1)
    _timed(ssh.SSHTransport, "close", "close")


# --------------------------------------------------------------------------
# load-independent counts (--count)
# --------------------------------------------------------------------------
from collections import Counter  # noqa: E402

#: board -> phase -> Counter(measure)
_counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
#: board -> the phase its worker is in now
_phase: dict[str, str] = {}
#: id(paramiko object) -> board
_owner: dict[int, str] = {}
_tl = threading.local()
#: one board's synchronous exchanges in order: (phase, what)
_path: dict[str, list[tuple[str, str]]] = defaultdict(list)

#: what counts as one synchronous round trip (the worker waits for an answer before it goes on)
ROUND_TRIPS = ("TCP connect", "SSH handshake (x4: version+KEXINIT, KEX, NEWKEYS+service, auth)", "channel open",
               "exec request", "subsystem request", "SFTP version exchange", "SFTP open", "SFTP close", "SFTP stat",
               "SFTP fstat", "SFTP other (waits)", "lock answer", "command completion", "upload drain")


def _count(board: str | None, what: str, n: int = 1, path: bool = False) -> None:
    if board is None:
        return
    phase = _phase.get(board, "?")
    with _lock:
        _counts[board][phase][what] += n
        if path:
            _path[board].append((phase, what))


def _set_phase(board: str, phase: str) -> str | None:
    prev = _phase.get(board)
    _phase[board] = phase
    return prev


def _phased(owner: object, attr: str, phase: str, board_of) -> None:
    """Calls of ``owner.attr`` run in ``phase`` for the board ``board_of(args)`` names (the phase before is restored)."""
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        board = board_of(a, kw)
        prev = _set_phase(board, phase)
        try:
            return fn(*a, **kw)
        finally:
            if prev is not None:
                _phase[board] = prev

    setattr(owner, attr, wrapper)


def instrument_counts_transport() -> None:
    """SSHTransport's own counters (again after each ``swap_in``): which board a connection is, TCP, handshakes."""
    from dmsbuild.transport import ssh

    connect = ssh.SSHTransport.connect

    def connect_w(self):
        _tl.board = self.name
        return connect(self)

    ssh.SSHTransport.connect = connect_w
    for name, label in (("_open_socket", "TCP connect"),
                        ("_handshake", "SSH handshake (x4: version+KEXINIT, KEX, NEWKEYS+service, auth)")):
        fn = getattr(ssh.SSHTransport, name)

        def w(self, *a, _fn=fn, _label=label, **kw):
            _count(self.name, _label, path=True)
            return _fn(self, *a, **kw)

        setattr(ssh.SSHTransport, name, w)


def instrument_counts() -> None:
    """Count, per board and phase, what crosses the connection (paramiko and the deploy's steps wrapped)."""
    import paramiko
    from paramiko import sftp as sftp_mod
    from paramiko.packet import Packetizer

    from dmsbuild.pipeline import deploy as fleet_deploy
    from dmsbuild.ship import release
    from dmsbuild.transport import ssh

    _phased(fleet_deploy.FleetDeploy, "current_release", "1 resume check", lambda a, kw: a[1].name)
    _phased(release, "deploy_board", "2 deploy (root, close)", lambda a, kw: a[0].name)
    _phased(release.BoardLock, "acquire", "3 lock+prepare+facts", lambda a, kw: a[0].transport.name)
    _phased(release, "push", "4 upload", lambda a, kw: a[1].name)
    _phased(release.BoardLock, "call", "5 commit/verify/switch", lambda a, kw: a[0].transport.name)
    _phased(release.BoardLock, "release", "6 unlock", lambda a, kw: a[0].transport.name)

    init = paramiko.Transport.__init__

    def transport_init(self, *a, **kw):
        init(self, *a, **kw)
        board = getattr(_tl, "board", None)
        _owner[id(self)] = _owner[id(self.packetizer)] = board

    paramiko.Transport.__init__ = transport_init
    send, read = Packetizer.send_message, Packetizer.read_message

    def send_w(self, data):
        _count(_owner.get(id(self)), "SSH packets sent")
        return send(self, data)

    def read_w(self):
        out = read(self)
        _count(_owner.get(id(self)), "SSH packets received")
        return out

    Packetizer.send_message, Packetizer.read_message = send_w, read_w
    open_channel = paramiko.Transport.open_channel

    def open_channel_w(self, kind, *a, **kw):
        _count(_owner.get(id(self)), "channel open", path=True)
        return open_channel(self, kind, *a, **kw)

    paramiko.Transport.open_channel = open_channel_w
    for name, label in (("exec_command", "exec request"), ("invoke_subsystem", "subsystem request")):
        fn = getattr(paramiko.Channel, name)

        def cw(self, *a, _fn=fn, _label=label, **kw):
            _count(_owner.get(id(self.transport)), _label, path=True)
            return _fn(self, *a, **kw)

        setattr(paramiko.Channel, name, cw)
    from_transport = paramiko.SFTPClient.from_transport.__func__

    def from_transport_w(cls, t, *a, **kw):
        out = from_transport(cls, t, *a, **kw)
        _count(_owner.get(id(t)), "SFTP version exchange", path=True)
        return out

    paramiko.SFTPClient.from_transport = classmethod(from_transport_w)
    async_request = paramiko.SFTPClient._async_request
    names = {sftp_mod.CMD_OPEN: "SFTP open", sftp_mod.CMD_CLOSE: "SFTP close", sftp_mod.CMD_STAT: "SFTP stat",
             sftp_mod.CMD_FSTAT: "SFTP fstat"}

    close = paramiko.SFTPFile._close

    def close_w(self, async_=False):
        _tl.async_close = async_
        try:
            return close(self, async_)
        finally:
            _tl.async_close = False

    paramiko.SFTPFile._close = close_w

    def async_request_w(self, fileobj, t, *a):
        board = _owner.get(id(self.sock.transport))
        if t == sftp_mod.CMD_CLOSE and getattr(_tl, "async_close", False):
            _count(board, "SFTP close (not waited for)")
        elif t == sftp_mod.CMD_WRITE:
            _count(board, "SFTP write (pipelined)")
            _count(board, "bytes sent (SFTP payload)", len(a[2]))
        else:
            _count(board, names.get(t, "SFTP other (waits)"), path=True)
        return async_request(self, fileobj, t, *a)

    paramiko.SFTPClient._async_request = async_request_w
    readline = ssh._SSHProcess.readline

    def readline_w(self, timeout=30.0):
        _count(self.board, "lock answer", path=True)
        return readline(self, timeout)

    ssh._SSHProcess.readline = readline_w
    drain = ssh._drain

    def drain_w(chan, timeout):
        _count(_owner.get(id(chan.transport)), "command completion", path=True)
        return drain(chan, timeout)

    ssh._drain = drain_w
    lock_send = release.BoardLock._send

    def lock_send_w(self, data):
        _count(self.transport.name, "lock heartbeats" if data == b"\n" else "lock requests")
        return lock_send(self, data)

    release.BoardLock._send = lock_send_w
    if hasattr(release.BoardLock, "send_object"):
        send_object = release.BoardLock.send_object

        def send_object_w(self, local, sha256, size, offset=0, progress=None):
            _count(self.transport.name, "objects streamed to the agent")
            _count(self.transport.name, "bytes sent (to the agent's stdin)", size - offset)
            return send_object(self, local, sha256, size, offset, progress)

        release.BoardLock.send_object = send_object_w
    slot = ssh.upload_slot

    def slot_w():
        sem = slot()
        return _CountingSlot(sem)

    ssh.upload_slot = slot_w


class _CountingSlot:
    """The upload slot, counting the acquisitions that had to wait."""

    def __init__(self, sem) -> None:
        self.sem = sem

    def __enter__(self):
        board = getattr(_tl, "board", None)
        _count(board, "upload slot taken")
        if not self.sem.acquire(blocking=False):
            _count(board, "upload slot waits", path=True)
            self.sem.acquire()
        return self

    def __exit__(self, *exc):
        self.sem.release()

    def __getattr__(self, name):
        return getattr(self.sem, name)


def print_counts(nboards: int) -> None:
    """Per board (mean over boards; max where it differs), by phase; then one board's round trips in order."""
    phases = sorted({ph for b in _counts.values() for ph in b})
    measures: list[str] = []
    for b in _counts.values():
        for c in b.values():
            measures += [m for m in c if m not in measures]
    order = [m for m in ROUND_TRIPS if m in measures] + sorted(m for m in measures if m not in ROUND_TRIPS)
    print(f"\nper board (mean over {nboards} boards; [max] where a board differs), by phase of the deploy; "
          "counts, independent of the machine's load:\n")
    print("| measure | " + " | ".join(phases) + " | all phases |")
    print("|---|" + "---:|" * (len(phases) + 1))
    for m in order:
        cells = []
        for ph in [*phases, None]:
            vals = [sum(c[m] for p, c in b.items() if ph is None or p == ph) for b in _counts.values()]
            vals += [0] * (nboards - len(vals))
            mean, top = sum(vals) / nboards, max(vals)
            text = f"{mean:.1f}".rstrip("0").rstrip(".") if mean else "0"
            cells.append(text + (f" [{top}]" if top != round(mean) and mean else ""))
        print(f"| {m} | " + " | ".join(cells) + " |")
    rts = [sum(c[m] * (4 if m.startswith("SSH handshake") else 1) for c in b.values() for m in ROUND_TRIPS)
           for b in _counts.values()]
    print(f"\nsynchronous round trips per board (a handshake counted as 4): mean {sum(rts) / max(1, len(rts)):.1f}, "
          f"min {min(rts, default=0)}, max {max(rts, default=0)}")
    if _path:
        board = sorted(_path)[0]
        steps = _path[board]
        print(f"\none board's exchanges in order ({board}, {len(steps)} events; 'upload slot waits' is not a round trip):")
        last = None
        for ph, what in steps:
            if ph != last:
                print(f"  [{ph}]")
                last = ph
            print(f"    {what}")


def profile_threads(out: str) -> tuple[cProfile.Profile, list[cProfile.Profile]]:
    """cProfile in every thread started from now on (threading.Thread.run wrapped), plus the main thread."""
    profs: list[cProfile.Profile] = []
    run = threading.Thread.run

    def profiled_run(self):
        p = cProfile.Profile()
        with _lock:
            profs.append(p)
        p.enable()
        try:
            run(self)
        finally:
            p.disable()

    threading.Thread.run = profiled_run
    main = cProfile.Profile()
    return main, profs


def board_cpu(pids: set[int]) -> float:
    """CPU seconds of the boards' sshd masters and everything below them, reaped children included (cutime)."""
    procs = bench_fleet._procs()
    tree: set[int] = set()
    for pid in pids:
        tree |= bench_fleet._tree(procs, pid, None)
    total = 0.0
    for p in tree:
        try:
            rest = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in rest[11:15]) / bench_fleet._TICK
    return total


def sample_boards(pids: set[int], stop: threading.Event, seen: dict[int, tuple[str, float]]) -> None:
    """Every 50 ms: each board-side process's own CPU (utime+stime) and name, kept at its last value."""
    while not stop.is_set():
        procs = bench_fleet._procs()
        tree: set[int] = set()
        for pid in pids:
            tree |= bench_fleet._tree(procs, pid, None)
        for p in tree - pids:
            if p in procs:
                cmd = procs[p][3]
                kind = ("agent (python)" if "python" in cmd else "sftp-server" if "sftp-server" in cmd
                        else "sshd session" if cmd.startswith("sshd") else cmd.split(" ")[0][:30] or "?")
                seen[p] = (kind, procs[p][1])
        stop.wait(0.05)


def _cpu_ticks() -> tuple[int, int, int]:
    """(idle ticks, iowait ticks, all ticks) of the whole machine, from /proc/stat's first line."""
    vals = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return vals[3], vals[4], sum(vals)


def sample_cpu(stop: threading.Event, out: list[tuple[float, int, int, int]]) -> None:
    """Every 100 ms: (time, idle ticks, iowait ticks, all ticks) of the machine (``--timeline``)."""
    while not stop.is_set():
        out.append((time.perf_counter(), *_cpu_ticks()))
        stop.wait(0.1)
    out.append((time.perf_counter(), *_cpu_ticks()))


def print_timeline(samples: list[tuple[float, int, int, int]], t0: float, wall: float, slices: int = 10) -> None:
    """The machine's idle share in each tenth of the rollout, and the idle CPU-seconds in all: where the wall
    time exceeds (controller + boards' CPU) / cores, either the CPU sat idle (waiting: round trips, a barrier,
    the tail) or work outside both (the kernel's loopback networking, other processes) took it."""
    tick = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    rows, idle_total, wait_total = [], 0.0, 0.0
    for k in range(slices):
        lo, hi = t0 + wall * k / slices, t0 + wall * (k + 1) / slices
        inside = [s for s in samples if lo <= s[0] <= hi]
        if len(inside) < 2:
            continue
        idle = (inside[-1][1] - inside[0][1]) / tick
        iowait = (inside[-1][2] - inside[0][2]) / tick
        span = inside[-1][0] - inside[0][0]
        idle_total += idle
        wait_total += iowait
        rows.append(f"| {lo - t0:.1f}-{hi - t0:.1f} s | {100 * idle / (span * cores):.0f} % | "
                    f"{100 * iowait / (span * cores):.0f} % |")
    print(f"\nmachine CPU over the rollout ({cores} cores, /proc/stat every 0.1 s; the gaps between slices are not "
          f"counted): {idle_total:.2f} CPU-s idle and {wait_total:.2f} waiting for the disk (iowait), of {wall * cores:.2f}")
    print("| part of the rollout | idle | iowait |\n|---|---:|---:|\n" + "\n".join(rows))


def swap_in(rev: str | None) -> None:
    """SSHTransport's methods as of git revision ``rev`` (None: this worktree's), for a before/after in one run."""
    import importlib.util
    import subprocess

    from dmsbuild.transport import ssh

    global _ORIGINAL
    if "_ORIGINAL" not in globals():
        _ORIGINAL = {k: v for k, v in vars(ssh.SSHTransport).items() if callable(v)}
    methods = dict(_ORIGINAL)
    if rev:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:dmsbuild/transport/ssh.py"], check=True,
                             capture_output=True, text=True).stdout
        spec = importlib.util.spec_from_loader(f"dmsbuild.transport._ssh_{rev}", loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "dmsbuild.transport"
        exec(compile(src, f"{rev}:dmsbuild/transport/ssh.py", "exec"), mod.__dict__)
        methods = {k: v for k, v in vars(mod.SSHTransport).items() if callable(v)}
    for k in _ORIGINAL:
        if k not in methods and k in vars(ssh.SSHTransport):  # a method REV lacks: the base class's default
            delattr(ssh.SSHTransport, k)
    for k, v in methods.items():
        setattr(ssh.SSHTransport, k, v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=100)
    ap.add_argument("--first", default="127.0.170.1")
    ap.add_argument("--scale", type=float, default=1.0, help="release size factor (1.0 = the bench's 25.1 MB)")
    ap.add_argument("--parallel", type=int, default=0, help="boards in flight (default: all)")
    ap.add_argument("--profile", help="write a merged cProfile of all threads here")
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--compare", metavar="REV", help="also run with SSHTransport as of git REV (before/after, one run)")
    ap.add_argument("--rounds", type=int, default=1, help="with --compare: REV, now, now, REV, ... (2 = ABBA)")
    ap.add_argument("--by-process", action="store_true", help="board-side CPU by process kind (sampled)")
    ap.add_argument("--count", action="store_true", help="load-independent counts per board and phase (see above)")
    ap.add_argument("--timeline", action="store_true", help="the machine's CPU idle share per tenth of the rollout")
    args = ap.parse_args()
    os.environ["DMSBUILD_SSH_CONFIG"] = "/dev/null"
    plan: list[str | None] = [None]
    if args.compare:
        plan = [args.compare, None, None, args.compare][: 2 * args.rounds] if args.rounds <= 2 else \
            [args.compare, None] * args.rounds
    with tempfile.TemporaryDirectory(prefix="dms-fleet-prof-") as tmp:
        work = Path(tmp)
        rel = work / "release"
        total = 0
        for name, size in bench_fleet.RELEASE_FILES.items():
            p = rel / name
            p.parent.mkdir(parents=True, exist_ok=True)
            n = max(1000, int(size * args.scale))
            p.write_bytes(os.urandom(n))
            total += n
        sshd = bench_fleet.SshdFleet(work, args.boards, first=args.first).start()
        instrument()
        if args.count:
            instrument_counts()
        main_prof, profs = profile_threads(args.profile) if args.profile else (None, [])
        results = []
        try:
            boards = [fleet.BoardRef(name=b.name, host=b.addr, port=bench_fleet.PORT, user=sshd.user,
                                     identity_file=str(sshd.key), groups=("bench",)) for b in sshd.boards]
            sshd_pids = {b.proc.pid for b in sshd.boards}
            for i, rev in enumerate(plan):
                swap_in(rev)
                instrument_transport()
                if args.count:
                    instrument_counts_transport()
                _stats.clear()
                _bytes.clear()
                _counts.clear()
                _path.clear()
                run_work = work / f"run{i}"
                cpu_b0 = board_cpu(sshd_pids)
                seen: dict[int, tuple[str, float]] = {}
                stop = threading.Event()
                sampler = threading.Thread(target=sample_boards, args=(sshd_pids, stop, seen), daemon=True)
                if args.by_process:
                    sampler.start()
                cpu_samples: list[tuple[float, int, int, int]] = []
                cpu_sampler = threading.Thread(target=sample_cpu, args=(stop, cpu_samples), daemon=True)
                if args.timeline:
                    cpu_sampler.start()
                ru0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                if main_prof:
                    main_prof.enable()
                deploy, current = bench_fleet.make_dmsbuild_deploy(rel, run_work, sshd.key, sshd.known_hosts, boards,
                                                                   "prof000000000000")
                try:
                    res = fleet.rollout(boards, "prof000000000000", deploy, target="bench",
                                        parallel=args.parallel or len(boards), max_fail=len(boards), current_release=current)
                finally:
                    for fd in bench_fleet._DEPLOYERS:
                        fd.close()
                    bench_fleet._DEPLOYERS.clear()
                if main_prof:
                    main_prof.disable()
                wall = time.perf_counter() - t0
                ru1 = resource.getrusage(resource.RUSAGE_SELF)
                stop.set()
                time.sleep(1.0)  # the boards' sessions end and are reaped into their sshd's cutime
                cpu_b = board_cpu(sshd_pids) - cpu_b0
                cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
                label = f"SSHTransport as of {rev}" if rev else "this worktree"
                ok = res.count("done")
                load = os.getloadavg()[0]
                print(f"\n[{label}] {args.boards} boards, {total / 1e6:.1f} MB release, parallel {args.parallel or args.boards}, "
                      f"load {load:.1f}{' (above 1: the times below are under load, not performance figures)' if load > 1 else ''}, "
                      f"cProfile {'on' if args.profile else 'off'}")
                print(f"wall {wall:.2f} s; controller CPU {cpu:.2f} s (user {ru1.ru_utime - ru0.ru_utime:.2f}, "
                      f"sys {ru1.ru_stime - ru0.ru_stime:.2f}); boards' processes CPU {cpu_b:.2f} s "
                      f"(sshd, sftp-server, agent); ok {ok}/{args.boards}; controller context switches "
                      f"{ru1.ru_nvcsw - ru0.ru_nvcsw} voluntary (a thread blocked: I/O, the GIL, a timed wait), "
                      f"{ru1.ru_nivcsw - ru0.ru_nivcsw} involuntary")
                print("\n| phase | calls | sum s | mean s | max s | MB/s per call |")
                print("|---|---:|---:|---:|---:|---:|")
                for lab, v in _stats.items():
                    rate = f"{_bytes[lab] / sum(v) / 1e6:.1f}" if _bytes.get(lab) else "-"
                    print(f"| {lab} | {len(v)} | {sum(v):.2f} | {sum(v) / len(v):.3f} | {max(v):.3f} | {rate} |")
                if args.timeline:
                    cpu_sampler.join()
                    print_timeline(cpu_samples, t0, wall)
                if args.by_process:
                    kinds: dict[str, list[float]] = defaultdict(list)
                    for kind, c in seen.values():
                        kinds[kind].append(c)
                    print("\nboard-side CPU by process (sampled every 50 ms; a process's last 50 ms and short-lived "
                          "ones are missed):\n| process | count | CPU s |\n|---|---:|---:|")
                    for kind, cs in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
                        print(f"| {kind} | {len(cs)} | {sum(cs):.2f} |")
                from dmsbuild.transport import ssh as _ssh

                slots = _ssh._slots
                if slots is not None and hasattr(slots, "history"):
                    lims = [lim for lim, _rate in slots.history] + [slots.limit]
                    print(f"adaptive upload limit: {len(slots.history)} period(s) judged, limit from {lims[0]} "
                          f"(min {min(lims)}, max {max(lims)}) to {slots.limit}")
                elif slots is not None:
                    print(f"upload slots fixed by ${_ssh.UPLOAD_SLOTS_ENV}")
                _ssh._slots = None  # the next run starts afresh
                if args.count:
                    print_counts(args.boards)
                results.append((label, wall, cpu, cpu_b, ok))
                sys.stdout.flush()
        finally:
            sshd.stop()
    if len(results) > 1:
        print("\n| code | wall s | controller CPU s | boards CPU s | ok |\n|---|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]} |")
    if args.profile:
        st = pstats.Stats(main_prof)
        for p in profs:
            try:
                st.add(p)
            except TypeError:
                pass  # a thread that never ran profiled code
        st.dump_stats(args.profile)
        print(f"\ncProfile of {len(profs) + 1} threads (merged), by own time:")
        st.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
