#!/usr/bin/env python3
"""Rollouts through a constrained controller uplink (issue 17): direct push vs relay boards vs a mirror.

Two network namespaces of this script's own: ``lab`` holds the boards (real
sshd on 10.217.1.x, one address each) and the mirror (nginx on 10.217.2.1);
``ctl`` holds the controller. One veth pair joins them, and the controller's
end is shaped with ``tbf`` (``--rate``, default 100mbit): every byte the
controller sends crosses it, as over a lab's uplink. Board-to-board and
board-to-mirror traffic stays inside ``lab`` (the lab network). Needs root
(``ip netns``); ``tc netem`` does not exist here, ``tbf`` does (see
tests/faults/test_network.py).

Per fleet size (``--sizes``, default 20,50,100): parallel scp (reference),
dmsbuild direct, dmsbuild relay (``deploy.relay = "boards"``, waves [4, 100%]),
dmsbuild mirror (``deploy.mirror``; the objects are published once into the
mirror's folder before the rollout; that copy is local here, over a real
uplink it would cost one release's bytes once). Release: random bytes
(``--mb``, default 5 MB so three sizes x four contenders fit in minutes at 100 Mbit/s).

    nice .venv/bin/python bench/bench_uplink.py --sizes 20,50,100
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

import bench_fleet as bf  # noqa: E402

TAG = f"dmsu{os.getpid() % 100000}"
LAB, CTL = f"{TAG}l", f"{TAG}c"
MIRROR = "10.217.2.1"


def _ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    subprocess.run(["ip", *(["-n", ns] if ns else []), *args], check=check, capture_output=True, text=True)


def outer(args: argparse.Namespace) -> int:
    """Make the namespaces and the shaped link, run the bench inside ``lab``, always remove them."""
    try:
        _ip("netns", "add", LAB)
        _ip("netns", "add", CTL)
        _ip("link", "add", f"{TAG}a", "type", "veth", "peer", "name", f"{TAG}b")
        _ip("link", "set", f"{TAG}a", "netns", CTL)
        _ip("link", "set", f"{TAG}b", "netns", LAB)
        _ip("addr", "add", "10.217.0.2/24", "dev", f"{TAG}a", ns=CTL)
        _ip("addr", "add", "10.217.0.1/24", "dev", f"{TAG}b", ns=LAB)
        for ns, dev in ((CTL, f"{TAG}a"), (LAB, f"{TAG}b")):
            _ip("link", "set", dev, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
        _ip("route", "add", "10.217.0.0/16", "via", "10.217.0.1", ns=CTL, check=False)
        # the uplink: what the controller sends is shaped (its ACK path back is not)
        subprocess.run(["ip", "netns", "exec", CTL, "tc", "qdisc", "add", "dev", f"{TAG}a", "root", "tbf", "rate", args.rate,
                        "burst", "64kb", "latency", "50ms"], check=True, capture_output=True)
        env = {**os.environ, "BENCH_UPLINK_CTL": CTL}
        return subprocess.run(["ip", "netns", "exec", LAB, sys.executable, __file__, "_inner", *sys.argv[1:]], env=env).returncode
    finally:
        _ip("netns", "del", CTL, check=False)
        _ip("netns", "del", LAB, check=False)


def inner(args: argparse.Namespace) -> int:
    ctl = ["ip", "netns", "exec", os.environ["BENCH_UPLINK_CTL"]]
    sizes = [int(s) for s in args.sizes.split(",")]
    n_max = max(sizes)
    for i in range(n_max):
        _ip("addr", "add", f"{bf.board_addr('10.217.1.10', i)}/32", "dev", "lo")
    _ip("addr", "add", f"{MIRROR}/32", "dev", "lo")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dms-uplink-") as tmp:
        work = Path(tmp)
        release = work / "release"
        bf.RELEASE_FILES.clear()
        bf.RELEASE_FILES.update({"models/model.onnx": int(args.mb * 1e6) - 24_000, "runner/dms_bench.py": 20_000,
                                 "manifest.json": 4_000})
        size = bf.make_release(release)
        sshd = bf.SshdFleet(work, n_max, first="10.217.1.10").start()
        from tests.test_mirror import Nginx  # the mirror tests' nginx (config, logs, temp dirs in work; stopped by pid)

        nginx = Nginx(work / "nginx", addr=MIRROR)
        env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
        try:
            for n in sizes:
                boards = sshd.boards[:n]

                def add(contender: str, m: bf.Measurement, note: str = "") -> None:
                    rows.append((n, contender, m, note))
                    if m.rc:
                        print(f"--- {contender} n={n} rc={m.rc}\n{m.tail}", file=sys.stderr)

                bf.clean(boards, "scp")
                add("parallel scp", bf.measure([*ctl, *bf.scp_argv(sshd, boards, release)]))
                for kind in ("direct", "relay", "mirror"):
                    bf.clean(boards, "dmsbuild")
                    for p in nginx.root.glob("*"):
                        p.unlink()
                    argv = bf.dmsbuild_argv(sshd, boards, release, work, f"{kind}{n}", relay=kind == "relay",
                                            mirror=nginx.url if kind == "mirror" else None,
                                            publish=str(nginx.root) if kind == "mirror" else None)
                    add(f"dmsbuild {kind}", bf.measure([*ctl, *argv], env=env))
        finally:
            nginx.stop()
            sshd.stop()
    mb = size * 8 / 1e6
    print(f"\nconstrained uplink: controller in its own netns behind tbf {args.rate}; {size / 1e6:.1f} MB release; "
          f"{os.cpu_count()} CPU cores; boards (sshd) and the mirror (nginx) share the lab netns\n")
    print("| boards | contender | wall s | controller CPU s | ok | vs parallel scp | uplink floor s (n x release at rate) |")
    print("|---:|---|---:|---:|---|---:|---:|")
    rate = float(args.rate.rstrip("mbit")) if args.rate.endswith("mbit") else None
    scp = {n: m.wall_s for n, c, m, _ in rows if c == "parallel scp"}
    for n, c, m, note in rows:
        floor = f"{n * mb / rate:.1f}" if rate else "-"
        print(f"| {n} | {c} | {m.wall_s:.2f} | {m.cpu_s:.2f} | {m.rc == 0} | {m.wall_s / scp[n]:.2f}x | {floor} |")
    print("\nscaling (wall s by boards): " + "; ".join(
        f"{c}: " + ", ".join(f"{n}->{m.wall_s:.1f}" for n, cc, m, _ in rows if cc == c)
        for c in ("parallel scp", "dmsbuild direct", "dmsbuild relay", "dmsbuild mirror")))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_inner"])
    ap.add_argument("--sizes", default="20,50,100")
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--mb", type=float, default=5.0)
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip"):
        print("bench_uplink: needs root and iproute2 (ip netns, tc)", file=sys.stderr)
        return 2
    return inner(args) if args.mode == "_inner" else outer(args)


if __name__ == "__main__":
    sys.exit(main())
