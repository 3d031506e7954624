"""The small board scripts the host sends as ``python3 -c <source>`` (dmsbuild/board/: disk_room, home_path;
state_probe is run in tests/test_measurements.py), run as the board runs them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dmsbuild.board import disk_room, source


def _run(name: str, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run([sys.executable, "-c", source(name), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=True)
    return proc.stdout.strip()


def test_home_path_expands_the_board_users_home(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    assert _run("home_path", "~/dms", env=env) == f"{tmp_path}/dms"
    assert _run("home_path", "/opt/dms", env=env) == "/opt/dms"


def _part(root: Path) -> Path:
    part = root / "objects" / ".tmp" / f"{'a' * 64}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 10)
    return part


def test_disk_room_with_room_touches_nothing(tmp_path: Path) -> None:
    part = _part(tmp_path)
    assert _run("disk_room", str(tmp_path), str(part)) == "room"
    assert part.exists()


@pytest.mark.parametrize("where, removed", [("upload", True), ("outside", False), ("link", False)])
def test_a_full_disk_removes_only_the_partial_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     where: str, removed: bool) -> None:
    part = _part(tmp_path)
    other = tmp_path / "keep.part"
    other.write_bytes(b"y")
    if where == "link":
        part.unlink()
        part.symlink_to(other)
    monkeypatch.setattr(disk_room.os, "statvfs", lambda _p: os.statvfs_result((4096, 4096, 100, 0, 15, 0, 0, 0, 0, 255)))
    target = other if where == "outside" else part
    assert disk_room.main(str(tmp_path), str(target)) == "full"
    assert target.is_symlink() or target.exists() is not removed
    assert other.exists()
