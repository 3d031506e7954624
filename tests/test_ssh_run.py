"""Commands on a board over SSH (``SSHTransport.run``): what comes back, and a command that outlives its timeout.
Real sshd boards (the session ``boards`` fixture)."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from dmsbuild.ship.inventory import load_inventory
from dmsbuild.transport.ssh import SSHTransport


def _transport(boards: dict, project: Path, name: str) -> SSHTransport:
    return SSHTransport(load_inventory(Path(boards["inventory"]), project).boards[name])


def test_a_command_past_its_timeout_is_stopped_with_status_124_and_says_so(boards, project_dir):
    """Like coreutils ``timeout``: exit status 124, what it printed so far kept, and the reason as the last line
    of stderr (the deploy shows the stderr tail)."""
    t = _transport(boards, project_dir, "emu-01")
    try:
        t0 = time.monotonic()
        res = t.run(["sh", "-c", "echo out; echo err >&2; sleep 30"], timeout=1.5)
        assert time.monotonic() - t0 < 20
        assert res.exit_status == 124 and not res.ok
        assert res.stdout == "out\n"
        assert res.stderr.startswith("err\n") and res.stderr.endswith("\ntimed out after 1.5 s"), res.stderr
        assert res.stderr_tail(1) == "timed out after 1.5 s"
        ok = t.run(["sh", "-c", "echo fine; echo warn >&2; exit 3"], timeout=30)  # the connection still works
        assert (ok.exit_status, ok.stdout, ok.stderr) == (3, "fine\n", "warn\n")
    finally:
        t.close()


def test_unacknowledged_data_is_bounded_by_the_boards_io_timeout(boards, project_dir):
    """A pulled cable (no RST, no FIN) must not hang a deploy for TCP's ~15 minutes of retransmissions: the
    connection's TCP_USER_TIMEOUT is the board's ``io_timeout`` (Linux; tests/faults/test_network.py pulls the cable)."""
    opt = getattr(socket, "TCP_USER_TIMEOUT", None)
    if opt is None:
        pytest.skip("no TCP_USER_TIMEOUT on this platform")
    t = _transport(boards, project_dir, "emu-02")
    t.board.io_timeout = 7.5
    try:
        sock = t.connect().get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, opt) == 7500
    finally:
        t.close()
