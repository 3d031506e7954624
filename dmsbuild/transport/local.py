"""A 'board' that is a folder on this machine: the embedded default target ``local``."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from .base import CommandResult, Progress, RemoteProcess, Transport


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

    def put(self, local: Path, remote: str, *, offset: int = 0, progress: Progress | None = None) -> None:
        total = os.path.getsize(local)
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        if offset <= 0:
            shutil.copyfile(local, remote)
        else:
            with open(local, "rb") as src, open(remote, "r+b") as dst:
                src.seek(offset)
                dst.seek(offset)
                dst.truncate()
                shutil.copyfileobj(src, dst, 1 << 20)
        if progress is not None:
            progress(total, total)

    def spawn(self, argv: Sequence[str]) -> RemoteProcess:
        proc = subprocess.Popen(
            [str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=None if self.env is None else {**os.environ, **self.env},
        )
        return _LocalProcess(proc, [str(a) for a in argv])

    def get(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(remote, local)

    def close(self) -> None:
        pass


class _LocalProcess(RemoteProcess):
    def __init__(self, proc: subprocess.Popen, argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None  # set by Popen(stdin=PIPE)
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def readline(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None  # set by Popen(stdout=PIPE)
        return self.proc.stdout.readline().decode(errors="replace")

    def finish(self, timeout: float = 30.0) -> CommandResult:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return CommandResult(self.argv, self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
