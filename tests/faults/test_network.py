"""Slow, lossy and dead links: boards in network namespaces of our own, and a board that never answers.

`tc qdisc ... netem` is not available in this kernel (``tc qdisc add dev X root netem delay 50ms`` ->
"Error: Specified qdisc kind is unknown."; no sch_netem module, no /lib/modules), and neither iptables
nor nft is installed. What works and is used: ``ip netns`` + veth pairs, and ``tbf`` (token bucket)
on both veth ends: a slow link (rate limit, queueing delay) whose tiny queue tail-drops packets, so
TCP really loses and retransmits. A dead link is a veth set down in the middle of an upload; a board
that accepts TCP and then never sends the SSH banner is a socket of ours on loopback.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dmsbuild.config import load_project, load_target
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.pipeline.deploy import deploy_target
from tests.faults import ledger
from tests.faults.conftest import board_entry, check_board, fabricate, missing_bytes

#: every rollout of this file must come back well within this (a hang fails the test instead of blocking CI)
HANG_GUARD_S = int(os.environ.get("FAULT_HANG_GUARD_S", "120"))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class NetnsBoard:
    """sshd in a network namespace of ours, reached over a veth pair shaped with tbf."""

    def __init__(self, tag: str, index: int, template_cfg: Path, workdir: Path, rate: str) -> None:
        self.ns = f"dmsf{os.getpid() % 100000}{tag}"
        self.host_if, self.board_if = f"{self.ns}h", f"{self.ns}b"
        self.addr = f"10.213.{index}.2"
        ip_host = f"10.213.{index}.1/30"
        _ip("netns", "add", self.ns)
        #: the namespace's identity: every process inside it was started by this test (sshd and its sessions)
        self.net = f"net:[{os.stat(f'/run/netns/{self.ns}').st_ino}]"
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.board_if)
        _ip("link", "set", self.board_if, "netns", self.ns)
        _ip("addr", "add", ip_host, "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.ns, "addr", "add", f"{self.addr}/30", "dev", self.board_if)
        _ip("-n", self.ns, "link", "set", self.board_if, "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        for dev, ns in ((self.host_if, None), (self.board_if, self.ns)):
            cmd = ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "16kb", "limit", "24kb"]
            subprocess.run((["ip", "netns", "exec", ns] if ns else []) + cmd, check=True, capture_output=True)
        self.dir = workdir / self.ns
        self.dir.mkdir(parents=True)
        cfg = [ln for ln in template_cfg.read_text().splitlines() if not ln.startswith(("ListenAddress", "PidFile"))]
        cfg += [f"ListenAddress {self.addr}:22", f"PidFile {self.dir / 'sshd.pid'}"]
        (self.dir / "sshd_config").write_text("\n".join(cfg) + "\n")
        subprocess.run(["ip", "netns", "exec", self.ns, "/usr/sbin/sshd", "-f", str(self.dir / "sshd_config"),
                        "-E", str(self.dir / "sshd.log")], check=True)
        for _ in range(200):
            if (self.dir / "sshd.pid").exists() and (self.dir / "sshd.pid").read_text().strip():
                break
            time.sleep(0.025)
        self.pid = int((self.dir / "sshd.pid").read_text().split()[0])

    def drops(self) -> dict[str, int]:
        """What the link lost: tbf's tail drops on both veth ends (``tc -s qdisc``: "(dropped N, ...")
        and the board's TCP retransmitted segments (``/proc/net/snmp`` inside its namespace)."""
        out = {}
        for dev, ns in ((self.host_if, None), (self.board_if, self.ns)):
            cmd = (["ip", "netns", "exec", ns] if ns else []) + ["tc", "-s", "qdisc", "show", "dev", dev]
            text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            out[f"dropped {'board' if ns else 'host'} side"] = sum(int(n) for n in re.findall(r"dropped (\d+)", text))
        snmp = subprocess.run(["ip", "netns", "exec", self.ns, "cat", "/proc/net/snmp"], capture_output=True, text=True,
                              check=True).stdout.splitlines()
        head, vals = [ln.split() for ln in snmp if ln.startswith("Tcp:")][:2]
        out["board TCP RetransSegs"] = int(vals[head.index("RetransSegs")])
        return out

    def link(self, up: bool) -> None:
        _ip("link", "set", self.host_if, "up" if up else "down")

    def close(self) -> None:
        # our sshd and its sessions: the processes inside our namespace (a session of a dead link would
        # otherwise outlive the test, keeping the namespace alive)
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if os.readlink(d / "ns" / "net") == self.net:
                        os.kill(int(d.name), signal.SIGKILL)
                except OSError:
                    continue
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.ns, check=False)


class StallServer:
    """Accepts TCP connections and never says a word (no SSH banner): a hung board."""

    def __init__(self, addr: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((addr, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                continue

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture()
def netns_boards(fault_boards, tmp_path):
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("network namespaces need root and iproute2 (apt-get install -y iproute2)")
    probe = _ip("netns", "add", f"dmsfprobe{os.getpid() % 100000}", check=False)
    if probe.returncode != 0:
        pytest.skip(f"ip netns add failed here: {probe.stderr.strip()}")
    _ip("netns", "del", f"dmsfprobe{os.getpid() % 100000}", check=False)
    template = Path(board_entry(fault_boards, "emu-01")["config"])
    made = []
    try:
        for i, (tag, rate) in enumerate((("a", "8mbit"), ("b", "4mbit"), ("c", "8mbit"))):
            made.append(NetnsBoard(tag, 200 + i, template, tmp_path / "ns", rate))
        yield made
    finally:
        for b in made:
            b.close()


def _inv_board(state, project, name, **kw):
    b = load_inventory(Path(state["inventory"]), project).boards["emu-01"]
    pub = (Path(board_entry(state, "emu-01")["config"]).parent / "ssh_host_ed25519_key.pub").read_text().split()
    return replace(b, name=name, host_key=f"{pub[0]} {pub[1]}", **kw)


def _bounded(fn):
    """Run fn in a thread; a hang beyond HANG_GUARD_S fails the test rather than blocking the suite."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("out", fn()), daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(HANG_GUARD_S)
    assert not t.is_alive(), f"rollout still running after {HANG_GUARD_S} s: a hang"
    return box["out"], time.monotonic() - t0


def test_slow_lossy_links_and_hung_boards_all_reported(fault_boards, netns_boards, project_dir, tmp_path):
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    prof.deploy.parallel = 8
    fabricate(project_dir, "rpi5", {"model": (1.5, 1)})
    project = load_project(project_dir)
    stall = StallServer("127.0.0.69")
    try:
        a, b, _ = netns_boards
        boards = [
            _inv_board(fault_boards, project_dir, "slow-a", host=a.addr, port=22, root=str(tmp_path / "ra"), io_timeout=20.0),
            _inv_board(fault_boards, project_dir, "slow-b", host=b.addr, port=22, root=str(tmp_path / "rb"), io_timeout=20.0),
            _inv_board(fault_boards, project_dir, "hung", host="127.0.0.69", port=stall.port, root=str(tmp_path / "rh"),
                       connect_timeout=2.0, connect_retries=2),
            _inv_board(fault_boards, project_dir, "nobody", host="10.213.250.2", port=22, root=str(tmp_path / "rn"),
                       connect_timeout=2.0, connect_retries=2),
        ]
        outs, took = _bounded(lambda: deploy_target(project, prof, boards))
    finally:
        stall.close()
    by = {o.board: o for o in outs}
    assert set(by) == {"slow-a", "slow-b", "hung", "nobody"}
    for name, link in (("slow-a", a), ("slow-b", b)):
        lost, bad, cur, probs = check_board(str(tmp_path / ("ra" if name == "slow-a" else "rb")), {by[name].release_id})
        drops = link.drops()
        # the link really lost packets (tbf tail drops) and TCP made up for them: not just a slow link
        ok = by[name].ok and not lost and not bad and drops["dropped host side"] > 0
        probs = probs + [f"link counters: {drops}"]
        ledger.record("slow-lossy-link", "tbf netns", ok, lost, bad, by[name].seconds,
            checked="deploy ok; current complete; tc counted dropped packets on the link")
        assert ok, (by[name].message, probs)
    for name in ("hung", "nobody"):
        o = by[name]
        ok = not o.ok and "unreachable" in o.message
        ledger.record("hung-board", "no banner" if name == "hung" else "no route", ok, 0, 0, o.seconds,
            checked="reported unreachable; rollout did not hang")
        assert ok, o.message


def test_link_dies_mid_upload_times_out_then_resumes(fault_boards, netns_boards, project_dir, tmp_path):
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    c = netns_boards[2]
    root = tmp_path / "rc"
    board = _inv_board(fault_boards, project_dir, "dies", host=c.addr, port=22, root=str(root), io_timeout=3.0)
    fabricate(project_dir, "rpi5", {"model": (0.3, 1)})
    v1 = deploy_target(load_project(project_dir), prof, [board])[0]
    assert v1.ok, v1.message
    fabricate(project_dir, "rpi5", {"model": (3.0, 2)})
    project = load_project(project_dir)
    cut = []

    def progress(path, done, total):
        if done >= 1_000_000 and not cut:
            c.link(False)  # the cable is pulled: no RST, no FIN, just silence
            cut.append(time.monotonic())

    try:
        (out,), took = _bounded(lambda: deploy_target(project, prof, [board], progress=progress))
    finally:
        c.link(True)
    lost, bad, cur, probs = check_board(str(root), {v1.release_id})
    ok = bool(cut) and not out.ok and not lost and not bad
    from dmsbuild.ship.manifest import make_release

    release = make_release(project, prof)
    need = -1
    again = None
    for _ in range(100):  # the board's sshd notices the dead connection (keepalive/EOF) and drops the lock
        # what is missing is measured right before each try: until the old session is gone its sftp
        # server may still be writing the bytes that reached the board before the cut into the .part
        need = missing_bytes(str(root), release)
        again = deploy_target(project, prof, [board], release=release)[0]
        if again.ok or "holds the lock" not in again.message:
            break
        assert again.bytes_sent == 0, again.bytes_sent  # refused at the lock: nothing sent
        time.sleep(0.2)
    ok = ok and again.ok and again.bytes_sent == need
    ledger.record("dead-link", "mid-upload", ok, lost, bad, time.monotonic() - cut[0] if cut else 0.0,
        checked="the cut board fails (no hang); old release intact; resume sends exactly the missing bytes")
    assert ok, (out.message, probs, again.message, again.bytes_sent, need)
