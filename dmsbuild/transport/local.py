"""A 'board' that is a folder on this machine: the embedded default target ``local``."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from .base import CommandResult, Progress, Transport


class LocalTransport(Transport):
    """Runs commands with subprocess (argument lists, no shell) and copies files."""

    def __init__(self, name: str = "local", env: dict[str, str] | None = None) -> None:
        self.name = name
        self.env = env

    def run(self, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None) -> CommandResult:
        argv = [str(a) for a in argv]
        try:
            proc = subprocess.run(
                argv, input=stdin, capture_output=True, timeout=timeout,
                env=None if self.env is None else {**os.environ, **self.env},
            )
        except FileNotFoundError as exc:
            return CommandResult(argv, 127, "", f"{argv[0]}: {exc.strerror}")
        except subprocess.TimeoutExpired as exc:
            err = (exc.stderr or b"").decode(errors="replace")
            return CommandResult(argv, 124, "", err + f"\ntimed out after {timeout} s")
        return CommandResult(argv, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))

    def put(self, local: Path, remote: str, *, progress: Progress | None = None) -> None:
        total = os.path.getsize(local)
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, remote)
        if progress is not None:
            progress(total, total)

    def get(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(remote, local)

    def close(self) -> None:
        pass
