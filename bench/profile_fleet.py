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
    from dmsbuild.ship import fleet_deploy, manifest, release
    from dmsbuild.transport import ssh

    _timed(ssh, "resolve", "ssh -G (route)")
    _timed(fleet_deploy.FleetDeploy, "current_release", "resume check (connect+readlink)")
    _timed(release, "resolve_root", "resolve root")
    _timed(release.BoardLock, "acquire", "lock+prepare+facts (1 board Python)")
    _timed(release.BoardLock, "call", "commit: verify+stage+switch")
    _timed(release.BoardLock, "release", "lock release")
    _timed(manifest, "sha256_file", "controller sha256")
    _timed(release, "deploy_board", "deploy_board (whole)")


def instrument_transport() -> None:
    """Wrap SSHTransport's phases (again after each ``swap_in``)."""
    from dmsbuild.transport import ssh

    _timed(ssh.SSHTransport, "_open_socket", "TCP connect")
    _timed(ssh.SSHTransport, "_handshake", "SSH handshake+auth+host key")
    _timed(ssh.SSHTransport, "_sftp", "SFTP open (cached after 1st)")
    _timed(ssh.SSHTransport, "put", "upload (per file)", size_arg=1)
    _timed(ssh.SSHTransport, "close", "close")


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
        main_prof, profs = profile_threads(args.profile) if args.profile else (None, [])
        results = []
        try:
            boards = [fleet.BoardRef(name=b.name, host=b.addr, port=bench_fleet.PORT, user=sshd.user,
                                     identity_file=str(sshd.key), groups=("bench",)) for b in sshd.boards]
            sshd_pids = {b.proc.pid for b in sshd.boards}
            for i, rev in enumerate(plan):
                swap_in(rev)
                instrument_transport()
                _stats.clear()
                _bytes.clear()
                run_work = work / f"run{i}"
                cpu_b0 = board_cpu(sshd_pids)
                seen: dict[int, tuple[str, float]] = {}
                stop = threading.Event()
                sampler = threading.Thread(target=sample_boards, args=(sshd_pids, stop, seen), daemon=True)
                if args.by_process:
                    sampler.start()
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
                print(f"\n[{label}] {args.boards} boards, {total / 1e6:.1f} MB release, parallel {args.parallel or args.boards}, "
                      f"load {os.getloadavg()[0]:.1f}, cProfile {'on' if args.profile else 'off'}")
                print(f"wall {wall:.2f} s; controller CPU {cpu:.2f} s (user {ru1.ru_utime - ru0.ru_utime:.2f}, "
                      f"sys {ru1.ru_stime - ru0.ru_stime:.2f}); boards' processes CPU {cpu_b:.2f} s "
                      f"(sshd, sftp-server, agent); ok {ok}/{args.boards}")
                print("\n| phase | calls | sum s | mean s | max s | MB/s per call |")
                print("|---|---:|---:|---:|---:|---:|")
                for lab, v in _stats.items():
                    rate = f"{_bytes[lab] / sum(v) / 1e6:.1f}" if _bytes.get(lab) else "-"
                    print(f"| {lab} | {len(v)} | {sum(v):.2f} | {sum(v) / len(v):.3f} | {max(v):.3f} | {rate} |")
                if args.by_process:
                    kinds: dict[str, list[float]] = defaultdict(list)
                    for kind, c in seen.values():
                        kinds[kind].append(c)
                    print("\nboard-side CPU by process (sampled every 50 ms; a process's last 50 ms and short-lived "
                          "ones are missed):\n| process | count | CPU s |\n|---|---:|---:|")
                    for kind, cs in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
                        print(f"| {kind} | {len(cs)} | {sum(cs):.2f} |")
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
