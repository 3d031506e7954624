"""Controller crashes, two deploying processes, a changed host key, corrupted objects, a full disk."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmsbuild.config import load_project, load_target
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.ship.manifest import make_release
from dmsbuild.pipeline.deploy import deploy_target
from dmsbuild.ship.release import FAULT_ENV
from tests.conftest import REPO
from tests.faults import ledger
from tests.faults.conftest import (board_entry, check_board, fabricate, missing_bytes, restart_sshd)


def _profile(project_dir: Path, keep: int = 2):
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    prof.deploy.keep_releases = keep
    return prof


def _board(state: dict, project: Path, name: str, root: Path):
    b = load_inventory(Path(state["inventory"]), project).boards[name]
    b.root = str(root)
    return b


def _deployer(project_dir: Path, state: dict, name: str, root: Path, keep: int = 2, fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-m", "tests.faults.deployer", str(project_dir), state["inventory"], name,
                             str(root), str(keep)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


#: the controller's named steps (release.fault_point): SIGKILL of the deploying process there
HOST_POINTS = ["host.connected", "host.locked", "host.uploaded.0", "host.uploaded.1", "host.commit", "host.committed"]


def test_controller_killed_between_steps_then_rerun_converges(fault_boards, project_dir, tmp_path):
    prof = _profile(project_dir)
    root = tmp_path / "root"
    board = _board(fault_boards, project_dir, "emu-02", root)
    fabricate(project_dir, "rpi5", {"shared": (0.3, 0), "model": (1.2, 0)})
    assert deploy_target(load_project(project_dir), prof, [board])[0].ok
    previous = None
    failures = []
    for i, point in enumerate(HOST_POINTS, start=1):
        previous = json.loads(Path(root, "history.json").read_text())[-1]
        fabricate(project_dir, "rpi5", {"shared": (0.3, 0), "model": (1.2, 100 + i)})
        release = make_release(load_project(project_dir), prof)
        proc = _deployer(project_dir, fault_boards, "emu-02", root, fault=f"{point}:kill")
        proc.communicate(timeout=120)
        injected = time.monotonic()
        lost, corrupted, cur, problems = check_board(str(root), {previous, release.release_id})
        need = missing_bytes(str(root), release)
        again = None
        for _ in range(100):  # the board notices the dead connection and drops the lock: bounded wait
            again = deploy_target(load_project(project_dir), prof, [board], release=release)[0]
            if again.ok or "holds the lock" not in again.message:
                break
            time.sleep(0.1)
        recovery = time.monotonic() - injected
        l2, c2, _, p2 = check_board(str(root), {release.release_id})
        survived = (proc.returncode == -signal.SIGKILL and again.ok and again.bytes_sent == need and not (lost or corrupted or l2 or c2))
        ledger.record("controller-sigkill", point.removeprefix("host."), survived, lost + l2, corrupted + c2, recovery,
            checked="rerun converges; sends exactly the missing bytes; board complete")
        if not survived:
            failures.append(f"{point}: rc={proc.returncode} current={cur} {problems + p2} again={again.ok}/{again.message!r} "
                            f"sent={again.bytes_sent} need={need}")
    assert not failures, "\n".join(failures)


def _lock_holder_pid(root: Path) -> int | None:
    try:
        return json.loads(Path(root, ".lock").read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def test_two_processes_deploy_to_one_board(fault_boards, project_dir, tmp_path):
    """A holds the lock (paused after taking it); B is refused naming A; A's release lands whole."""
    root = tmp_path / "root"
    other = tmp_path / "other-project"
    shutil.copytree(project_dir, other)
    fabricate(project_dir, "rpi5", {"model": (0.8, 1)})
    fabricate(other, "rpi5", {"model": (0.8, 2)})
    prof_a, prof_b = _profile(project_dir), _profile(other)
    rel_a = make_release(load_project(project_dir), prof_a).release_id
    t0 = time.monotonic()
    a = _deployer(project_dir, fault_boards, "emu-03", root, fault="host.locked:pause=4")
    while _lock_holder_pid(root) != a.pid:
        assert a.poll() is None, a.communicate()
        assert time.monotonic() - t0 < 60, "deployer A never took the lock"
        time.sleep(0.05)
    b_out = deploy_target(load_project(other), prof_b, [_board(fault_boards, other, "emu-03", root)])[0]
    a_stdout, a_err = a.communicate(timeout=120)
    a_out = json.loads(a_stdout.strip().splitlines()[-1])
    lost, corrupted, cur, problems = check_board(str(root), {rel_a})
    ok = (a_out["ok"] and not b_out.ok and "another deploy holds the lock" in b_out.message and f"pid {a.pid}" in b_out.message
          and cur == rel_a and not lost and not corrupted)
    ledger.record("concurrent-deploy", "paused holder", ok, lost, corrupted,
        checked="second deploy refused naming the holder; one whole release")
    assert ok, (a_out, b_out.message, problems)

    # racing without a pause: each ends ok or refused naming the holder; the board holds one whole release
    for rnd in range(3):
        fabricate(project_dir, "rpi5", {"model": (0.8, 10 + rnd)})
        fabricate(other, "rpi5", {"model": (0.8, 20 + rnd)})
        procs = [_deployer(project_dir, fault_boards, "emu-03", root), _deployer(other, fault_boards, "emu-03", root)]
        outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
        ids = {o["release_id"] for o in outs if o["ok"]}
        lost, corrupted, cur, problems = check_board(str(root), ids)
        fine = all(o["ok"] or "another deploy holds the lock" in o["message"] for o in outs) and ids and cur in ids
        ok = bool(fine) and not lost and not corrupted
        ledger.record("concurrent-deploy", "race", ok, lost, corrupted,
            checked="exactly one wins; the other names the holder; one whole release")
        assert ok, (outs, problems)


def test_changed_host_key_refused_others_continue(fault_boards, project_dir, tmp_path):
    prof = _profile(project_dir)
    fabricate(project_dir, "rpi5", {"model": (0.3, 5)})
    b2 = _board(fault_boards, project_dir, "emu-02", tmp_path / "r2")
    b3 = _board(fault_boards, project_dir, "emu-03", tmp_path / "r3")
    entry = board_entry(fault_boards, "emu-02")
    bdir = Path(entry["config"]).parent
    key = bdir / "ssh_host_ed25519_key"
    saved = tmp_path / "saved-key"
    shutil.copy(key, saved)
    shutil.copy(key.with_suffix(".pub"), saved.with_suffix(".pub"))
    try:
        os.kill(int(entry["pid"]), signal.SIGTERM)  # the board is re-installed: new host key
        for _ in range(100):
            if not Path(f"/proc/{entry['pid']}").exists():
                break
            time.sleep(0.02)
        key.unlink()
        key.with_suffix(".pub").unlink()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        restart_sshd(fault_boards, "emu-02")
        out = deploy_target(load_project(project_dir), prof, [b2, b3])
        ok = (not out[0].ok and "HOST KEY MISMATCH" in out[0].message and out[1].ok
              and not Path(b2.root, "current").exists())
        ledger.record("host-key-changed", "", ok,
            checked="HOST KEY MISMATCH with both fingerprints; other board deployed")
        assert ok, [o.message for o in out]
    finally:
        os.kill(int(board_entry(fault_boards, "emu-02")["pid"]), signal.SIGTERM)
        time.sleep(0.2)
        shutil.copy(saved, key)
        shutil.copy(saved.with_suffix(".pub"), key.with_suffix(".pub"))
        restart_sshd(fault_boards, "emu-02")


def _flip(path: Path, at: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(at)
        b = fh.read(1)
        fh.seek(at)
        fh.write(bytes([b[0] ^ 0x01]))


def test_corrupted_objects_detected_and_repaired(fault_boards, project_dir, tmp_path):
    prof = _profile(project_dir)
    root = tmp_path / "root"
    board = _board(fault_boards, project_dir, "emu-01", root)
    fabricate(project_dir, "rpi5", {"shared": (0.5, 0), "model": (0.5, 1)})
    first = deploy_target(load_project(project_dir), prof, [board])[0]
    assert first.ok
    rel = make_release(load_project(project_dir), prof)
    shared = next(f for f in rel.files if f.path == "models/shared.onnx")
    cases = []
    # 1. a flipped byte in an object of the current release: the next (default) deploy re-hashes and repairs it
    _flip(root / "objects" / shared.sha256, 1234)
    t = time.monotonic()
    out = deploy_target(load_project(project_dir), prof, [board])[0]
    lost, bad, cur, probs = check_board(str(root), {first.release_id})
    cases.append(("current object", out.ok and out.action == "repaired" and out.bytes_sent == shared.size and not (lost or bad),
                  lost, bad, time.monotonic() - t, out.message, probs))
    # 2. a flipped byte in an object a NEW release reuses: caught by that deploy's verification, re-sent in it
    _flip(root / "objects" / shared.sha256, 99)
    fabricate(project_dir, "rpi5", {"shared": (0.5, 0), "model": (0.5, 2)})
    rel2 = make_release(load_project(project_dir), prof)
    model2 = next(f for f in rel2.files if f.path == "models/model.onnx")
    need = missing_bytes(str(root), rel2)
    t = time.monotonic()
    out = deploy_target(load_project(project_dir), prof, [board], release=rel2)[0]
    lost, bad, cur, probs = check_board(str(root), {rel2.release_id})  # the kept older release is healed too
    cases.append(("reused object", out.ok and out.action == "deployed" and out.bytes_sent == need + shared.size
                  and not (lost or bad), lost, bad, time.monotonic() - t, out.message, probs))
    # 3. a corrupt partial upload (garbage where the resume continues): the whole object is sent again
    fabricate(project_dir, "rpi5", {"shared": (0.5, 0), "model": (0.5, 3)})
    rel3 = make_release(load_project(project_dir), prof)
    model3 = next(f for f in rel3.files if f.path == "models/model.onnx")
    part = root / "objects" / ".tmp" / f"{model3.sha256}.part"
    part.write_bytes(b"\0" * 1000)
    need = missing_bytes(str(root), rel3)
    t = time.monotonic()
    out = deploy_target(load_project(project_dir), prof, [board], release=rel3)[0]
    lost, bad, cur, probs = check_board(str(root), {rel3.release_id})
    cases.append(("corrupt partial upload", out.ok and out.bytes_sent == need + model3.size and not (lost or bad),
                  lost, bad, time.monotonic() - t, out.message, probs))
    for name, ok, lost, bad, rec, msg, probs in cases:
        ledger.record("corrupted-object", name, ok, lost, bad, rec,
            checked="detected and re-sent in the same deploy; board complete")
    assert all(c[1] for c in cases), [(c[0], c[1], c[5], c[6]) for c in cases]


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs as the board's deploy root file system (needs root; unmounted afterwards)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (mount -t tmpfs: {res.stderr.strip()}); the disk-full test needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full(fault_boards, project_dir, small_disk):
    prof = _profile(project_dir, keep=1)
    root = small_disk / "root"
    board = _board(fault_boards, project_dir, "emu-03", root)
    fabricate(project_dir, "rpi5", {"model": (1.0, 1)})
    v1 = deploy_target(load_project(project_dir), prof, [board])[0]
    assert v1.ok, v1.message

    def intact(expect: str) -> tuple[int, int, list[str]]:
        lost, bad, cur, probs = check_board(str(root), {expect})
        parts = list((root / "objects" / ".tmp").glob("*.part"))
        strays = [p.name for p in (root / "objects").iterdir() if p.is_file() and p.stat().st_nlink < 2]
        return lost, bad, probs + [f"partial upload left: {p.name}" for p in parts] + [f"unlinked object {s}" for s in strays]

    # 1. the release does not fit: refused before sending anything
    fabricate(project_dir, "rpi5", {"model": (3.5, 2)})
    out = deploy_target(load_project(project_dir), prof, [board])[0]
    lost, bad, probs = intact(v1.release_id)
    ok1 = not out.ok and "disk full" in out.message and out.bytes_sent == 0 and not probs
    ledger.record("disk-full", "checked before upload", ok1, lost, bad,
        checked="'disk full' naming board and root; nothing sent; old release intact")
    # 2. it fits, but something else fills the disk during the upload: ENOSPC mid-transfer
    fabricate(project_dir, "rpi5", {"model": (1.5, 3)})
    filler = small_disk / "filler"

    def fill(path, done, total):
        if not filler.exists():
            with open(filler, "wb") as fh:
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                except OSError:
                    pass

    out2 = deploy_target(load_project(project_dir), prof, [board], progress=fill)[0]
    lost, bad, probs = intact(v1.release_id)
    ok2 = filler.exists() and not out2.ok and "disk full" in out2.message and not probs
    ledger.record("disk-full", "during upload", ok2, lost, bad,
        checked="'disk full'; partial upload removed; old release intact")
    filler.unlink()
    again = deploy_target(load_project(project_dir), prof, [board])[0]
    lost3, bad3, probs3 = intact(again.release_id)
    assert ok1, (out.message, probs)
    assert ok2, (out2.message, probs)
    assert again.ok and not probs3, (again.message, probs3)
