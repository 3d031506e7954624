"""How dmsbuild reaches a board: an interface (``base.Transport``) with two
implementations, ``ssh`` (paramiko; the only module that imports it) and
``local`` (a folder on this machine, for the embedded default target)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..board import source as board_source
from ..errors import UserError

if TYPE_CHECKING:
    from ..config import TargetProfile
    from .base import BoardAddress as Board, Transport


def open_transport(board: Board) -> "Transport":
    """The transport for a board: SSH for inventory boards, a folder for the local target."""
    if board.transport == "local":
        from .local import LocalTransport

        return LocalTransport(board.name)
    from .ssh import SSHTransport  # paramiko is imported only when a board is reached

    return SSHTransport(board)


def resolve_root(transport: "Transport", board: "Board", profile: "TargetProfile") -> str:
    """The board's deploy root as an absolute path ('~' is the board user's home, asked of the board)."""
    root = board.deploy_root(profile)
    if not root.startswith("~"):
        return root
    res = transport.run([board.python, "-c", board_source("home_path"), root], timeout=60)
    expanded = res.stdout.strip()
    if not res.ok or not expanded.startswith("/"):
        raise UserError(f"board '{board.name}': cannot expand the deploy root {root}: {res.stderr_tail(2)}",
                        hint="use an absolute deploy root")
    return expanded
