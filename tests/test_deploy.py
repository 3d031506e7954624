"""Deploy, redeploy, rollback and the faults of issue 3, against real sshd boards."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import descendants, write_build
from dmsbuild.config import load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.ship.inventory import Board, load_inventory, local_board
from dmsbuild.pipeline.deploy import deploy_target, rollback_target
from dmsbuild.ship.release import BoardLock
from dmsbuild.transport.base import join_argv
from dmsbuild.transport.ssh import SSHTransport, fingerprint


def _boards(state: dict, project: Path, tmp: Path, names: list[str]) -> list[Board]:
    """Inventory boards with a deploy root private to this test."""
    inv = load_inventory(Path(state["inventory"]), project)
    out = []
    for n in names:
        b = inv.boards[n]
        b.root = str(tmp / "board-roots" / n)
        out.append(b)
    return out


def _setup(project_dir: Path, seed: int = 0, sizes: dict | None = None):
    write_build(project_dir, "rpi5", sizes or {"fp32": 2.0, "int8-qdq": 1.0}, seed=seed)
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    return load_project(project_dir), prof


def _current(root: str) -> str | None:
    link = Path(root) / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def _check_release(root: str, release_id: str) -> None:
    rdir = Path(root) / "releases" / release_id
    manifest = json.loads((rdir / "manifest.json").read_text())
    for entry in manifest["artifacts"] + manifest["files"]:
        data = (rdir / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert (rdir / entry["file"]).stat().st_nlink >= 2  # a hardlink into objects/


def test_deploy_redeploy_rollback(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    bs = _boards(boards, project_dir, tmp_path, ["emu-01", "emu-02"])
    first = deploy_target(project, prof, bs)
    assert [o.ok for o in first] == [True, True], [o.message for o in first]
    v1 = first[0].release_id
    from dmsbuild.ship.manifest import make_release

    assert first[0].bytes_sent == make_release(project, prof).total_bytes > 3_000_000
    for b in bs:
        assert _current(b.root) == v1
        _check_release(b.root, v1)
        assert (Path(b.root) / "dms.service").read_text().count(f"{b.root}/current") >= 1

    again = deploy_target(project, prof, bs)
    assert [(o.ok, o.action, o.bytes_sent, o.objects_sent, o.release_id) for o in again] == [(True, "unchanged", 0, 0, v1)] * 2

    # only the changed artifact travels (content addressing)
    write_build(project_dir, "rpi5", {"fp32": 2.0, "int8-qdq": 1.5}, seed=0)
    project2 = load_project(project_dir)
    second = deploy_target(project2, prof, bs[:1])
    assert second[0].ok and second[0].action == "deployed" and second[0].previous == v1
    assert 1_500_000 <= second[0].bytes_sent < 1_600_000
    v2 = second[0].release_id
    assert v2 != v1 and _current(bs[0].root) == v2

    back = rollback_target(prof, bs[:1])
    assert back[0].ok and (back[0].previous, back[0].release_id) == (v2, v1)
    assert _current(bs[0].root) == v1
    _check_release(bs[0].root, v1)
    # nothing older to go back to: refused, current untouched
    again_back = rollback_target(prof, bs[:1])
    assert not again_back[0].ok and "nothing to roll back" in again_back[0].message
    assert _current(bs[0].root) == v1


def test_keep_releases_collects_old_releases_and_objects(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    prof.deploy.keep_releases = 2
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-03"])
    ids = []
    for seed in range(3):
        write_build(project_dir, "rpi5", {"fp32": 0.3}, seed=seed)
        out = deploy_target(load_project(project_dir), prof, [b])
        assert out[0].ok, out[0].message
        ids.append(out[0].release_id)
    releases = sorted(p.name for p in (Path(b.root) / "releases").iterdir())
    assert releases == sorted(ids[1:])
    for obj in (Path(b.root) / "objects").iterdir():
        if obj.is_file():
            assert obj.stat().st_nlink >= 2, f"unreferenced object {obj.name} was not collected"


def test_unknown_board(boards, project_dir):
    inv = load_inventory(Path(boards["inventory"]), project_dir)
    with pytest.raises(UserError) as exc:
        inv.select("rpi5", ["emu-01", "rpi5-99"])
    assert str(exc.value).startswith("board 'rpi5-99': not in the inventory")


def test_unreachable_board_does_not_stop_others(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    (good,) = _boards(boards, project_dir, tmp_path, ["emu-01"])
    ghost = replace(good, name="ghost", host="127.0.0.99", port=9, connect_retries=2, connect_timeout=2.0,
                    root=str(tmp_path / "ghost"))
    out = deploy_target(project, prof, [ghost, good])
    assert not out[0].ok and "unreachable at" in out[0].message and "2 attempt" in out[0].message
    assert out[1].ok


def test_refused_authentication(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-02"])
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    out = deploy_target(project, prof, [replace(b, identity_file=str(key))])
    assert not out[0].ok
    assert "authentication refused" in out[0].message and str(key) in out[0].message


def _board_fp(state: dict, name: str) -> str:
    import base64

    pub = Path(state["dir"], name, "ssh_host_ed25519_key.pub").read_text().split()[1]
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(pub)).digest()).decode().rstrip("=")


def test_host_key_mismatch_refused_with_fingerprint_and_file(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-01"])
    # emu-02's key recorded for emu-01's address: a man-in-the-middle, as far as we can tell
    other = Path(boards["dir"], "emu-02", "ssh_host_ed25519_key.pub").read_text().split()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{b.host}]:{b.port} {other[0]} {other[1]}\n")
    out = deploy_target(project, prof, [replace(b, known_hosts=str(kh))])
    msg = out[0].message
    assert not out[0].ok and "HOST KEY MISMATCH" in msg
    assert _board_fp(boards, "emu-01") in msg and _board_fp(boards, "emu-02") in msg and str(kh) in msg
    assert not Path(b.root, "current").exists()
    # a pinned key that disagrees is refused as well, naming the inventory field
    pinned = replace(b, host_key=f"{other[0]} {other[1]}")
    out = deploy_target(project, prof, [pinned])
    assert not out[0].ok and "HOST KEY MISMATCH" in out[0].message and "pinned host_key" in out[0].message


def test_unknown_host_key_refused_unless_trust_on_first_use(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-01"])
    kh = tmp_path / "empty_known_hosts"
    kh.write_text("")
    out = deploy_target(project, prof, [replace(b, known_hosts=str(kh))])
    assert not out[0].ok and "unknown host key" in out[0].message and _board_fp(boards, "emu-01") in out[0].message
    out = deploy_target(project, prof, [replace(b, known_hosts=str(kh), trust_on_first_use=True)])
    assert out[0].ok, out[0].message
    assert f"[{b.host}]:{b.port} ssh-ed25519 " in kh.read_text()
    # recorded: now the plain (no TOFU) board is accepted
    assert deploy_target(project, prof, [replace(b, known_hosts=str(kh))])[0].ok


def test_concurrent_deploy_blocked_naming_holder(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-03"])
    holder = SSHTransport(b)
    try:
        with BoardLock(holder, b.python, b.root):
            out = deploy_target(project, prof, [b])
            assert not out[0].ok
            assert "another deploy holds the lock" in out[0].message
            assert f"pid {os.getpid()}" in out[0].message and "host " in out[0].message
            assert _current(b.root) is None
    finally:
        holder.close()
    assert deploy_target(project, prof, [b])[0].ok




def test_connection_killed_mid_upload_then_resume(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir, sizes={"fp32": 0.5})
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-04"])
    v1 = deploy_target(project, prof, [b])[0]
    assert v1.ok
    write_build(project_dir, "rpi5", {"fp32": 0.5, "big-a": 3.0, "big-b": 3.0}, seed=7)
    project = load_project(project_dir)
    listener = next(x["pid"] for x in boards["boards"] if x["name"] == "emu-04")
    killed = []

    def kill_sessions(path: str, done: int, total: int) -> None:
        if "big-b" in path and done >= 1_000_000 and not killed:
            for pid in descendants(listener):  # the board's sshd session processes: the connection dies
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    out = deploy_target(project, prof, [b], progress=kill_sessions)
    assert killed and not out[0].ok, out[0].message
    assert _current(b.root) == v1.release_id  # the old release stays current
    _check_release(b.root, v1.release_id)
    parts = list(Path(b.root, "objects", ".tmp").glob("*.part"))
    present = sum(p.stat().st_size for p in parts)
    assert present > 0

    from dmsbuild.ship.manifest import make_release

    release = make_release(project, prof)
    objects, tmpdir = Path(b.root, "objects"), Path(b.root, "objects", ".tmp")
    missing = sum(
        f.size - (tmpdir / f"{f.sha256}.part").stat().st_size if (tmpdir / f"{f.sha256}.part").exists() else f.size
        for f in release.files if not (objects / f.sha256).exists()
    )
    again = deploy_target(project, prof, [b], release=release)
    assert again[0].ok, again[0].message
    # what arrived before the kill (the finished upload and the prefix of the cut one) is not sent again
    assert again[0].bytes_sent == missing
    assert missing <= release.total_bytes - present
    assert _current(b.root) == again[0].release_id
    _check_release(b.root, again[0].release_id)


def test_deploy_root_not_writable(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir)
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-02"])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = deploy_target(project, prof, [replace(b, root=str(blocker / "root"))])
    assert not out[0].ok and "not writable" in out[0].message and str(blocker / "root") in out[0].message


def test_non_portable_artifact_on_wrong_arch_is_an_error(boards, project_dir, tmp_path):
    write_build(project_dir, "rpi5", {"engine": 0.1}, portable=False)
    prof = load_target(project_dir, "rpi5")  # expects aarch64; emulated boards are this machine (x86_64)
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-01"])
    out = deploy_target(load_project(project_dir), prof, [b])
    assert not out[0].ok and "not portable" in out[0].message
    write_build(project_dir, "rpi5", {"fp32": 0.1}, portable=True)
    out = deploy_target(load_project(project_dir), prof, [b])
    assert out[0].ok and any("expects aarch64" in w for w in out[0].warnings)


def test_remote_commands_are_quoted(boards, project_dir, tmp_path):
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-01"])
    canary = tmp_path / "pwned"
    nasty = f"a b;touch {canary} $(touch {canary}) `touch {canary}` 'q\" | &"
    with SSHTransport(b) as t:
        res = t.run(["printf", "%s", nasty])
    assert res.ok and res.stdout == nasty
    assert not canary.exists()
    assert join_argv(["echo", "x;y"]) == "echo 'x;y'"


def test_local_target_deploys_into_a_folder(project_dir):
    write_build(project_dir, "local", {"fp32": 0.2})
    prof = load_target(project_dir, "local")
    board = local_board(project_dir, prof, "python3")
    out = deploy_target(load_project(project_dir), prof, [board])
    assert out[0].ok, out[0].message
    root = project_dir / "artifacts" / "boards" / "local"
    assert _current(str(root)) == out[0].release_id
    _check_release(str(root), out[0].release_id)
    assert deploy_target(load_project(project_dir), prof, [board])[0].action == "unchanged"


def test_ssh_config_alias_and_proxyjump_applied(boards, project_dir, tmp_path, monkeypatch):
    project, prof = _setup(project_dir)
    (b1, b2) = _boards(boards, project_dir, tmp_path, ["emu-01", "emu-02"])
    home = Path(os.environ["HOME"])
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh" / "config").write_text(
        f"Host lab-gw\n  HostName {b1.host}\n  Port {b1.port}\n  User {boards['user']}\n  IdentityFile {boards['identity_file']}\n"
        f"Host lab-board\n  HostName {b2.host}\n  Port {b2.port}\n  User {boards['user']}\n"
        f"  IdentityFile {boards['identity_file']}\n  ProxyJump lab-gw\n"
    )
    aliased = Board(name="aliased", groups=["rpi5"], host="lab-board", known_hosts=boards["known_hosts"], root=b2.root,
                    python=b2.python)
    t = SSHTransport(aliased)
    try:
        res = t.run(["true"])
        assert res.ok and len(t._jumps) == 1
        assert t.endpoint is not None and (t.endpoint.hostname, t.endpoint.port) == (b2.host, b2.port)
    finally:
        t.close()
    out = deploy_target(project, prof, [aliased])
    assert out[0].ok, out[0].message


def test_tampered_object_is_caught_and_repaired(boards, project_dir, tmp_path):
    project, prof = _setup(project_dir, sizes={"fp32": 0.2})
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-02"])
    first = deploy_target(project, prof, [b])[0]
    assert first.ok
    model = Path(b.root, "current", "models", "fp32.onnx")
    os.chmod(model, 0o644)
    with open(model, "r+b") as fh:  # same size, different bytes: the write changed its ctime (seal.json)
        fh.write(b"X")
    healed = deploy_target(project, prof, [b])[0]  # found by the default redeploy, re-sent in the same deploy
    assert healed.ok and healed.action == "repaired" and healed.bytes_sent == 200_000, healed.message
    _check_release(b.root, healed.release_id)
    assert deploy_target(project, prof, [b])[0].action == "unchanged"

    # bit rot below the file system (no ctime change): only verify=full re-hashes and sees it
    with open(model, "r+b") as fh:
        fh.write(b"Y")
    seal = json.loads(Path(b.root, "seal.json").read_text())
    st = os.stat(model)
    sha = next(s for s, v in seal["objects"].items() if v[3] == st.st_ino)
    seal["objects"][sha] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    Path(b.root, "seal.json").write_text(json.dumps(seal))
    assert deploy_target(project, prof, [b])[0].action == "unchanged"
    full = deploy_target(project, prof, [b], full_verify=True)[0]
    assert full.ok and full.action == "repaired" and full.bytes_sent == 200_000, full.message
    _check_release(b.root, full.release_id)


def test_every_remote_command_is_an_argument_list(boards, project_dir, tmp_path):
    """Deploy + rollback through a recording transport: every command is a list of words, each quoted once."""
    import shlex

    project, prof = _setup(project_dir, sizes={"fp32": 0.05})
    (b,) = _boards(boards, project_dir, tmp_path, ["emu-03"])
    seen: list[list[str]] = []

    class Recording(SSHTransport):
        def run(self, argv, **kw):
            seen.append(list(argv))
            return super().run(argv, **kw)

        def spawn(self, argv):
            seen.append(list(argv))
            return super().spawn(argv)

    for seed in (1, 2):
        write_build(project_dir, "rpi5", {"fp32": 0.05}, seed=seed)
        assert deploy_target(load_project(project_dir), prof, [b], transport_factory=Recording)[0].ok
    assert rollback_target(prof, [b], transport_factory=Recording)[0].ok
    # one lock process per deploy (prepare, facts and commit ride on it as JSON lines) and one for the rollback
    assert len(seen) == 3
    for argv in seen:
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        assert argv[0] == b.python  # the board's Python runs facts and the release agent; no shell strings
        assert shlex.split(join_argv(argv)) == argv


@pytest.mark.parametrize("mode, rc", [("pause=0.1", 0), ("kill", -signal.SIGKILL)])
def test_a_fault_point_pauses_or_kills_the_controller_as_asked(mode, rc):
    """The fault hooks the interruption tests rely on: ``pause=<s>`` sleeps and goes on, ``kill`` is SIGKILL."""
    import sys

    from dmsbuild.ship.release import FAULT_ENV

    code = "from dmsbuild.ship.release import fault_point; fault_point('host.x'); print('went on')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, FAULT_ENV: f"host.x:{mode}"})
    assert proc.returncode == rc and ("went on" in proc.stdout) == (rc == 0), proc.stderr[-500:]


def test_an_agent_answer_that_is_no_json_is_one_line_naming_the_board():
    from types import SimpleNamespace

    from dmsbuild.ship.release import agent
    from dmsbuild.transport.base import CommandResult

    board = SimpleNamespace(name="b7", run=lambda argv, stdin=None, timeout=None: CommandResult(argv, 0, "Segmentation fault", ""))
    with pytest.raises(UserError) as exc:
        agent(board, "python3", "commit", {"root": "/r"})
    assert str(exc.value).splitlines()[0].startswith("board 'b7': commit printed no JSON: 'Segmentation fault'")


def test_the_deploy_lock_heartbeats_every_third_of_the_boards_io_timeout(project_dir, monkeypatch):
    """docs/faults.md: a heartbeat line every io_timeout/3; the board gives up after 3 silent periods, so a
    controller that is gone frees the board's lock after about io_timeout."""
    from dmsbuild.ship import release as release_mod

    beats = []

    class Recording(release_mod.BoardLock):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            beats.append(self.heartbeat_s)

    monkeypatch.setattr(release_mod, "BoardLock", Recording)
    write_build(project_dir, "local", {"fp32": 0.2})
    prof = load_target(project_dir, "local")
    board = local_board(project_dir, prof, "python3")
    board.io_timeout = 45.0
    out = deploy_target(load_project(project_dir), prof, [board])
    assert out[0].ok, out[0].message
    assert beats == [15.0]


@pytest.mark.parametrize("io_timeout", [7.5, 60.0])
def test_a_deploys_board_lock_is_released_after_the_boards_io_timeout_of_silence(tmp_path, monkeypatch, io_timeout):
    """A deploy whose connection died without a FIN must not hold the board's lock much longer than the board's
    ``io_timeout``: the lock's idle limit is io_timeout, and the controller's heartbeat comes three times in it."""
    import types

    from dmsbuild.ship import release as release_mod
    from dmsbuild.transport.local import LocalTransport

    seen: dict = {}

    class Recorder(BoardLock):
        def acquire(self, meanwhile=None):
            seen.update(heartbeat_s=self.heartbeat_s)
            raise UserError("stopped by the test before the board's agent starts")

    monkeypatch.setattr(release_mod, "BoardLock", Recorder)
    board = Board(name="pi", host="127.0.0.1", root=str(tmp_path / "root"), io_timeout=io_timeout)
    rel = types.SimpleNamespace(release_id="r1", files=[])
    out = release_mod.deploy_board(board, load_target(Path(__file__).resolve().parent.parent, "rpi5"), rel,
                                   project_name="p", transport_factory=lambda b: LocalTransport(b.name))
    assert not out.ok and "stopped by the test" in out.message
    assert seen["heartbeat_s"] * 3 == pytest.approx(io_timeout)


def test_a_board_agent_that_prints_no_json_is_one_line_naming_the_board_and_op():
    """Something on the board's side printed garbage where the agent's answer belongs (a login banner on stdout, a
    broken Python): one line saying which board and op, and what it printed, not a JSONDecodeError traceback."""
    from dmsbuild.ship.release import agent
    from dmsbuild.transport.base import CommandResult

    class Board:
        name = "pi"

        def run(self, argv, timeout=None, stdin=None):
            return CommandResult(list(argv), 0, "Welcome to Raspberry Pi OS\n", "")

    with pytest.raises(UserError) as exc:
        agent(Board(), "python3", "state", {"root": "/opt/dms"})
    assert str(exc.value).splitlines()[0].startswith("board 'pi': state printed no JSON: 'Welcome to Raspberry Pi OS")

