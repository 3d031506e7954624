"""The transport interface every board connection implements.

Remote commands are argument lists; implementations join them with
``shlex.quote`` (never a shell string built by formatting). Paths are POSIX
paths on the board.
"""
from __future__ import annotations

import abc
import contextlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from ..config import TargetProfile


@dataclass
class CommandResult:
    argv: list[str]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def stderr_tail(self, lines: int = 15) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])


def join_argv(argv: Sequence[str]) -> str:
    """The one way a remote command line is built."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class BoardAddress(Protocol):
    """What a transport reads of a board: ``ship.inventory.Board`` is one. Named here, not imported from ship,
    because the transport sits below ship (docs/architecture.md "Layers"): ship hands its boards down."""

    name: str
    port: int | None
    user: str | None
    identity_file: str | None
    known_hosts: str | None
    host_key: str | None
    trust_on_first_use: bool
    python: str
    proxy_jump: str | None
    ssh_args: list[str]
    connect_timeout: float | None
    connect_retries: int
    io_timeout: float
    transport: str
    source: str
    prior_attempts: int

    @property
    def address(self) -> str: ...

    def deploy_root(self, profile: TargetProfile) -> str: ...


#: progress callback: (bytes sent so far, bytes in total)
Progress = Callable[[int, int], None]


class RemoteProcess(abc.ABC):
    """A command left running on the board; it ends when its stdin closes."""

    @abc.abstractmethod
    def send(self, data: bytes) -> None:
        """Write to the command's stdin."""

    @abc.abstractmethod
    def readline(self, timeout: float = 30.0) -> str:
        """The next line of stdout ('' at end of output)."""

    @abc.abstractmethod
    def finish(self, timeout: float = 30.0) -> CommandResult:
        """Close stdin and wait for the exit status."""

    def upload_gate(self, nbytes: int) -> contextlib.AbstractContextManager[Any]:
        """Held while ``nbytes`` of a file stream to the command's stdin (a deploy sending an object to its board
        agent): a transport that limits how many uploads pump bytes at once (SSH) gives its upload slot here; the
        object it yields may have ``sent(n)``, told of every ``n`` bytes that went out."""
        return contextlib.nullcontext()


class Transport(abc.ABC):
    """A connection to one board. Not shared across threads."""

    name: str  # the board's name, for messages
    #: connection attempts that found no server, when the last connect gave up on them (0: none, or connected)
    unreached_attempts: int = 0

    def connect(self) -> object:
        """Open the connection now (otherwise the first command opens it)."""
        return None

    @abc.abstractmethod
    def run(self, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None) -> CommandResult:
        """Run a command on the board; never raises for a non-zero exit."""

    @abc.abstractmethod
    def put(self, local: Path, remote: str, *, offset: int = 0, progress: Progress | None = None) -> None:
        """Copy a local file to ``remote`` (the caller picks a temporary name and renames).

        ``offset`` > 0 resumes an interrupted upload: the first ``offset`` bytes
        are already in ``remote`` and only the rest is sent (the caller verifies
        the sha256 of the whole file afterwards).
        """

    def upload(self, local: Path, remote: str, *, offset: int = 0, progress: Progress | None = None) -> None:
        """``put`` as a deploy sends its files one after another; a transport may do it cheaper (SSH: fewer
        round trips, the upload slot held only while bytes flow). Same contract as ``put``."""
        self.put(local, remote, offset=offset, progress=progress)

    def prepare_upload(self) -> None:
        """Get ready to upload (SSH: open the SFTP channel) while the board is busy with something else."""

    @abc.abstractmethod
    def spawn(self, argv: Sequence[str]) -> "RemoteProcess":
        """Start a long-running command whose stdin stays open (the board lock holder)."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy a board file to this machine."""

    def is_open(self) -> bool:
        """True when a connection is up and can be reused (a transport without connections says False)."""
        return False

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
