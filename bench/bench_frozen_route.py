"""How long a frozen (SIGSTOPped) bastion or board takes to fail, against connect_timeout (issue 15).

Starts two emulated boards on 127.0.4.21-22 (a bastion and a board), freezes one,
and times SSHTransport.connect() until its one-line TransportError. Prints a table:
seconds to fail, attempts, and the ratio to (attempts x connect_timeout); the goal is
about 1x-2x per attempt (plus the retry backoff of 0.5 s, 1 s, ...).

    PYTHONPATH=. python bench/bench_frozen_route.py
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmsbuild import boards as emu  # noqa: E402
from dmsbuild.ship.inventory import Board  # noqa: E402
from dmsbuild.transport.ssh import SSHTransport, TransportError  # noqa: E402


def main() -> int:
    where = Path(tempfile.mkdtemp(prefix="frozen-route-"))
    os.environ["HOME"] = str(where / "home")
    (where / "home" / ".ssh").mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.4.21", 0))
        port = s.getsockname()[1]
    state = emu.up(2, where / "boards", port=port, first=21, groups=("rpi5",), name_prefix="fz", net="127.0.4")
    bast, board = state["boards"]
    common = f"  User {state['user']}\n  IdentityFile {state['identity_file']}\n  UserKnownHostsFile {state['known_hosts']}\n"
    (where / "home" / ".ssh" / "config").write_text(
        f"Host gw\n  HostName {bast['host']}\n  Port {port}\n{common}"
        f"Host pi\n  HostName {board['host']}\n  Port {port}\n  ProxyJump gw\n{common}"
        f"Host pi-direct\n  HostName {board['host']}\n  Port {port}\n{common}")
    rows = []
    try:
        for frozen, alias in ((bast, "pi"), (board, "pi-direct")):
            for timeout, retries in ((2.0, 1), (2.0, 3), (5.0, 1)):
                os.kill(frozen["pid"], signal.SIGSTOP)
                t = SSHTransport(Board(name="b", host=alias, connect_timeout=timeout, connect_retries=retries))
                t0 = time.perf_counter()
                try:
                    t.connect()
                    msg = "connected?!"
                except TransportError as exc:
                    msg = str(exc).splitlines()[0]
                wall = time.perf_counter() - t0
                t.close()
                os.kill(frozen["pid"], signal.SIGCONT)
                what = "bastion" if frozen is bast else "board"
                rows.append((what, timeout, retries, wall, wall / (timeout * retries), msg))
    finally:
        emu.down(where / "boards", quiet=True)
    print(f"{'frozen':8} {'timeout s':>9} {'attempts':>8} {'fail after s':>12} {'ratio':>6}  message")
    for what, timeout, retries, wall, ratio, msg in rows:
        print(f"{what:8} {timeout:9.1f} {retries:8d} {wall:12.2f} {ratio:6.2f}  {msg[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
