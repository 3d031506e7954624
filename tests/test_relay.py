"""Relay rollouts (issue 17) on real sshd boards (127.0.7.11-14): later boards fetch objects from earlier ones.

Each board that finished (verified) serves ``objects/<sha256>`` over a short-lived
HTTP server on its own loopback address; a later board fetches from it and
checks each object's sha256 while it arrives (and again at commit). Faults: a
corrupted object on the relay, a relay that disappeared, and a deploy killed
during the fetch; in each the board ends on a complete, verified release.
"""
from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest

from dmsbuild.ship import fleet
from dmsbuild.boards import down, up
from dmsbuild.config import TargetProfile
from dmsbuild.pipeline.deploy import FleetDeploy
from dmsbuild.ship.inventory import Board
from dmsbuild.board.release_agent import sha256_of
from dmsbuild.ship.manifest import Release, ReleaseFile
from dmsbuild.ship.release import FAULT_ENV
from tests.conftest import _free_port, descendants

FILES = {"models/a.onnx": 3_000_000, "models/b.onnx": 1_000_000, "runner/r.py": 5_000}


@pytest.fixture(scope="module")
def relay_boards(tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("relay-boards")
    state = up(4, where, port=_free_port("127.0.7.11"), first=11, groups=("rpi5",), name_prefix="relay", net="127.0.7")
    yield state
    down(where, quiet=True)


def _release(tmp: Path, tag: str) -> Release:
    staging = tmp / f"release-{tag}"
    for rel, size in FILES.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(os.urandom(size))
    files = [ReleaseFile(rel, staging / rel, sha256_of(staging / rel), size) for rel, size in FILES.items()]
    rid = hashlib.sha256("".join(f.sha256 for f in files).encode()).hexdigest()[:16]
    return Release(target="rpi5", release_id=rid, manifest={"project": "relay", "artifacts": []}, manifest_bytes=b"",
                   files=files, staging=staging)


def _deployer(state: dict, tmp: Path, release: Release, **deploy: object) -> FleetDeploy:
    profile = TargetProfile(name="rpi5")
    profile.deploy.relay = "boards"
    for k, v in deploy.items():
        setattr(profile.deploy, k, v)
    boards = [Board(name=b["name"], groups=["rpi5"], host=b["host"], port=b["port"], user=state["user"],
                    identity_file=state["identity_file"], known_hosts=state["known_hosts"],
                    root=str(tmp / "roots" / b["name"]), python=state["python"]) for b in state["boards"]]
    return FleetDeploy(profile, boards, release, project_name="relay")


def _check_current(tmp: Path, name: str, release: Release) -> None:
    """The board's `current` is the release and every file matches its sha256 (the invariant)."""
    cur = tmp / "roots" / name / "current"
    assert os.path.basename(os.readlink(cur)) == release.release_id
    for f in release.files:
        assert sha256_of(cur / f.path) == f.sha256, f.path


def _ref(fd: FleetDeploy, name: str) -> fleet.BoardRef:
    return next(r for r in fd.refs() if r.name == name)


def test_later_wave_fetches_every_object_from_the_first(relay_boards, tmp_path):
    release = _release(tmp_path, "waves")
    fd = _deployer(relay_boards, tmp_path, release, relay_boards=1)
    try:
        res = fleet.rollout(fd.refs(), release.release_id, fd.deploy_one, target="rpi5", waves=[1, "100%"], parallel=4,
                            current_release=fd.current_release)
    finally:
        fd.close()
    assert res.exit_code == 0, res.table()
    by = {b.name: b for b in res.boards}
    first = [b for b in res.boards if b.wave == 1]
    assert len(first) == 1 and first[0].bytes_sent == sum(FILES.values())  # the controller sent the first wave
    for b in res.boards:
        _check_current(tmp_path, b.name, release)
        if b.wave == 2:  # the rest fetched everything from the relay: nothing from the controller
            assert b.bytes_sent == 0, b
            assert by[b.name].details["objects_fetched"] == len(FILES)
    assert fd.relays == []  # stopped at the end


def _serving(state: dict, name: str) -> list[int]:
    b = next(b for b in state["boards"] if b["name"] == name)
    return [p for p in descendants(b["pid"]) if Path(f"/proc/{p}/cmdline").read_bytes().endswith(b"\0serve\0")]


def test_corrupt_object_on_relay_is_refused_and_sent_by_the_controller(relay_boards, tmp_path):
    release = _release(tmp_path, "corrupt")
    fd = _deployer(relay_boards, tmp_path, release, relay_boards=1)
    try:
        assert fd.deploy_one(_ref(fd, "relay-01"), fleet._NullSink()).ok
        assert len(fd.relays) == 1
        big = max(release.files, key=lambda f: f.size)
        obj = tmp_path / "roots" / "relay-01" / "objects" / big.sha256
        data = bytearray(obj.read_bytes())
        data[len(data) // 2] ^= 0xFF
        os.chmod(obj, 0o644)
        obj.write_bytes(bytes(data))  # the relay's copy is now wrong, same size
        out = fd.deploy_one(_ref(fd, "relay-02"), fleet._NullSink())
    finally:
        fd.close()
    assert out.ok, out.reason
    assert out.bytes_sent == big.size  # only the corrupt one came from the controller
    assert out.details["objects_fetched"] == len(FILES) - 1
    _check_current(tmp_path, "relay-02", release)


def test_relay_that_disappeared_falls_back_to_the_controller(relay_boards, tmp_path):
    release = _release(tmp_path, "gone")
    fd = _deployer(relay_boards, tmp_path, release, relay_boards=1)
    try:
        assert fd.deploy_one(_ref(fd, "relay-01"), fleet._NullSink()).ok
        pids = _serving(relay_boards, "relay-01")
        assert pids, "the relay's server process"
        for p in pids:
            os.kill(p, signal.SIGKILL)
        out = fd.deploy_one(_ref(fd, "relay-03"), fleet._NullSink())
    finally:
        fd.close()
    assert out.ok, out.reason
    assert out.bytes_sent == sum(FILES.values()) and "objects_fetched" not in out.details
    _check_current(tmp_path, "relay-03", release)


def test_deploy_killed_during_fetch_keeps_the_old_release_then_resumes(relay_boards, tmp_path, monkeypatch):
    old, new = _release(tmp_path, "old"), _release(tmp_path, "new")
    fd0 = _deployer(relay_boards, tmp_path, old, relay="off")
    assert fd0.deploy_one(_ref(fd0, "relay-04"), fleet._NullSink()).ok
    fd = _deployer(relay_boards, tmp_path, new, relay_boards=1)
    try:
        assert fd.deploy_one(_ref(fd, "relay-01"), fleet._NullSink()).ok
        monkeypatch.setenv(FAULT_ENV, "fetch.read:kill")
        out = fd.deploy_one(_ref(fd, "relay-04"), fleet._NullSink())
        assert not out.ok and "connection lost" in out.reason
        _check_current(tmp_path, "relay-04", old)  # untouched: the old release, complete
        monkeypatch.delenv(FAULT_ENV)
        again = fd.deploy_one(_ref(fd, "relay-04"), fleet._NullSink())
    finally:
        fd.close()
    assert again.ok, again.reason
    _check_current(tmp_path, "relay-04", new)
    assert again.details["objects_fetched"] == len(FILES)


def test_the_resume_checks_connection_is_the_deploys(relay_boards, tmp_path):
    """One SSH connection per board for check + deploy (the second handshake was a quarter of the controller's CPU)."""
    release = _release(tmp_path, "once")
    fd = _deployer(relay_boards, tmp_path, release, relay="off")
    opened: list[str] = []
    factory = fd.transport_factory

    def counting(board):
        opened.append(board.name)
        return factory(board)

    fd.transport_factory = counting
    refs = fd.refs()[:2]
    try:
        res = fleet.rollout(refs, release.release_id, fd.deploy_one, target="rpi5", parallel=2, current_release=fd.current_release)
    finally:
        fd.close()
    assert res.exit_code == 0, res.table()
    assert sorted(opened) == sorted(r.name for r in refs)


def test_one_sftp_write_per_ssh_packet(relay_boards, tmp_path):
    """paramiko's default 32 KiB write plus header took two SSH packets; the upload now sends one per write."""
    import paramiko

    from dmsbuild.transport.ssh import SSHTransport

    release = _release(tmp_path, "pk")
    board = _deployer(relay_boards, tmp_path, release).boards["relay-01"]
    src = tmp_path / "blob"
    src.write_bytes(os.urandom(1 << 20))
    sends: list[int] = []
    real = paramiko.Channel.send

    def send(self, data):
        n = real(self, data)
        sends.append(n)
        return n

    t = SSHTransport(board)
    try:
        t.connect()
        (tmp_path / "roots" / "relay-01").mkdir(parents=True, exist_ok=True)
        paramiko.Channel.send = send
        t.put(src, str(tmp_path / "roots" / "relay-01" / "blob"))
    finally:
        paramiko.Channel.send = real
        t.close()
    assert sum(sends) > 1 << 20
    assert len(sends) <= (1 << 20) // 32000 + 8, f"{len(sends)} packets for 1 MiB"  # 2 per write were ~70
