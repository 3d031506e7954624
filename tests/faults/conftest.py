"""Fault-suite fixtures: its own emulated boards (their sshd gets killed and restarted), fabricated builds,
the board invariant check, and the summary table printed after the run.

``FAULT_ROUNDS`` (default 1) multiplies the rounds of the kill tests for a longer soak.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, _free_port, descendants, write_reference
from tests.faults import ledger

ROUNDS = max(1, int(os.environ.get("FAULT_ROUNDS", "1")))


@pytest.fixture(scope="session")
def fault_boards(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three emulated boards of the fault suite's own (127.0.0.61..), stopped by pid at the end."""
    where = tmp_path_factory.mktemp("fault-boards")
    port = _free_port("127.0.0.61")
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "up", "--count", "3", "--dir", str(where), "--port", str(port),
                    "--first", "61", "--groups", "rpi5"], check=True, cwd=REPO, capture_output=True)
    state = json.loads((where / "boards.json").read_text())
    state["dir"] = where
    yield state
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "down", "--dir", str(where)], cwd=REPO, check=True, capture_output=True)


def board_entry(state: dict, name: str) -> dict:
    return next(b for b in state["boards"] if b["name"] == name)


def sshd_alive(state: dict, name: str) -> bool:
    from dmsbuild.boards import _pid_alive

    b = board_entry(state, name)
    return _pid_alive(int(b["pid"]), Path(b["config"]))


def restart_sshd(state: dict, name: str) -> None:
    """Start a killed board's sshd again with its own config (and record the new pid for `boards down`)."""
    from dmsbuild.boards import _wait_listening

    b = board_entry(state, name)
    if sshd_alive(state, name):
        return
    bdir = Path(b["config"]).parent
    (bdir / "sshd.pid").unlink(missing_ok=True)
    subprocess.run(["/usr/sbin/sshd", "-f", b["config"], "-E", str(bdir / "sshd.log")], check=True)
    assert _wait_listening(b["host"], b["port"]), f"{name}: sshd did not come back"
    for _ in range(200):
        if (bdir / "sshd.pid").exists() and (bdir / "sshd.pid").read_text().strip():
            break
        time.sleep(0.025)
    b["pid"] = int((bdir / "sshd.pid").read_text().split()[0])
    (Path(state["dir"]) / "boards.json").write_text(json.dumps({k: v for k, v in state.items() if k != "dir"}, indent=2))




def kill_sessions(state: dict, name: str) -> int:
    """SIGKILL the board's sshd session processes (every connection to it dies); the listener stays."""
    n = 0
    for pid in descendants(int(board_entry(state, name)["pid"])):
        try:
            os.kill(pid, signal.SIGKILL)
            n += 1
        except ProcessLookupError:
            pass
    return n


def fabricate(root: Path, target: str, artifacts: dict[str, tuple[float, int]]) -> None:
    """artifacts/<target>/build.json with artifacts name -> (MB, content seed): equal seeds give equal bytes."""
    adir = root / "artifacts" / target
    adir.mkdir(parents=True, exist_ok=True)
    arts = []
    for name, (mb, seed) in artifacts.items():
        data = random.Random(f"{name}-{seed}").randbytes(int(mb * 1e6))
        (adir / f"{name}.onnx").write_bytes(data)
        arts.append({"name": name, "precision": "fp32", "kind": "onnx", "path": f"artifacts/{target}/{name}.onnx",
                     "extra_files": [], "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                     "runtime": "onnxruntime", "providers": ["CPUExecutionProvider"], "provider_options": [{}],
                     "portable": True, "eval": {}})
    common = root / "artifacts" / "common"
    common.mkdir(parents=True, exist_ok=True)
    write_reference(common / "reference.npz", random.Random("ref"))
    build = {"schema": 1, "project": "dms", "target": target,
             "input": {"name": "image", "shape": [1, 3, 224, 224], "dtype": "float32", "layout": "NCHW"},
             "outputs": {"names": ["eye_state"], "classification": ["eye_state"]},
             "artifacts": arts, "reference": "artifacts/common/reference.npz",
             "toolchain": {"onnxruntime": "1.32.0", "opset": 17}}
    (adir / "build.json").write_text(json.dumps(build, indent=1))


def release_problems(rdir: Path) -> list[str]:
    """Why a release folder is not complete (empty list: every file matches the manifest's sha256)."""
    try:
        manifest = json.loads((rdir / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"{rdir.name}: manifest unreadable: {exc}"]
    bad = []
    for entry in manifest["artifacts"] + manifest["files"]:
        p = rdir / entry["file"]
        if p.is_symlink() or not p.is_file():
            bad.append(f"{rdir.name}/{entry['file']}: missing")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != entry["sha256"]:
            bad.append(f"{rdir.name}/{entry['file']}: sha256 mismatch")
    return bad


def check_board(root: str, expect_current: set[str] | None = None) -> tuple[int, int, str | None, list[str]]:
    """The invariant: (lost, corrupted, current id, problems).

    lost: ``current`` does not resolve to a release folder (or is not one of ``expect_current``),
    or the history names a release whose folder is gone; corrupted: ``current`` or a release the
    history keeps has a file that does not match its manifest."""
    rootp = Path(root)
    link = rootp / "current"
    problems, lost, corrupted = [], 0, 0
    cur = None
    if not link.is_symlink():
        return 1, 0, None, ["current is missing"]
    cur = os.path.basename(os.readlink(link))
    if not (rootp / "releases" / cur).is_dir():
        lost += 1
        problems.append(f"current -> {cur}: folder missing")
    elif expect_current is not None and cur not in expect_current:
        lost += 1
        problems.append(f"current -> {cur}, expected one of {sorted(expect_current)}")
    else:
        bad = release_problems(rootp / "releases" / cur)
        corrupted += bool(bad)
        problems += bad
    try:
        hist = json.loads((rootp / "history.json").read_text())
    except FileNotFoundError:
        hist = []
    except (OSError, ValueError) as exc:  # an unreadable history is corruption, never "empty"
        return lost, corrupted + 1, cur, problems + [f"history.json unreadable: {exc}"]
    for rid in hist:
        if rid == cur:
            continue
        rdir = rootp / "releases" / rid
        if not rdir.is_dir():
            lost += 1
            problems.append(f"history lists {rid}, its folder is gone")
            continue
        bad = release_problems(rdir)
        corrupted += bool(bad)
        problems += bad
    return lost, corrupted, cur, problems


def missing_bytes(root: str, release) -> int:
    """What a resumed deploy must still send: objects absent on the board, minus the partial uploads."""
    objects, tmpdir = Path(root, "objects"), Path(root, "objects", ".tmp")
    total, seen = 0, set()
    for f in release.files:
        if f.sha256 in seen or (objects / f.sha256).is_file():
            continue
        seen.add(f.sha256)
        part = tmpdir / f"{f.sha256}.part"
        have = part.stat().st_size if part.is_file() else 0
        total += f.size - (have if have <= f.size else 0)  # an overlong part is sent again from 0
    return total
