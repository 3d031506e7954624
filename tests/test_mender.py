"""The Mender route (docs/ota.md): `doit bundle format=mender` and the Update Module, on real sshd boards.

Each emulated board runs Debian's mender-client (3.4) in standalone mode with its own config, data
directory (device_type, the module's settings) and deploy root, driven over OpenSSH's own `ssh` and
`scp` the way a user's CI would: `mender install`, `mender commit`, `mender rollback`. The Update
Module is the file under dmsbuild/board/mender/, installed where the 3.x client looks for modules
(/usr/share/mender/modules/v3, which its config cannot move); the release's output check is the real
ONNX Runtime runner on a small real ONNX model.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.config import load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.core.provenance import label
from dmsbuild.core.results import ResultStore
from dmsbuild.pipeline.ota import pull_results
from dmsbuild.ship import mender
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.transport.base import join_argv

MODULE_DIR = Path("/usr/share/mender/modules/v3")
ARTIFACT_INFO = Path("/etc/mender/artifact_info")
MODULE_LOCK = "/tmp/dmsbuild-mender-module.lock"
TARGET = "rpi5"


# ------------------------------------------------------------------------------------------------ set-up
@pytest.fixture(scope="module")
def mender_client():
    """mender-client and mender-artifact (scripts/setup.sh installs both), the module where the client looks
    for it, and the image's artifact_info (the 3.x client reads it before a board's first install).

    The module's place is one per machine: a lock keeps two test sessions (e.g. `scripts/mutation.py -j 2`,
    a mutant module against the real one) from installing theirs under each other's boards."""
    import fcntl

    for tool, pkg in (("mender", "mender-client"), ("mender-artifact", "mender-artifact")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/setup.sh (apt-get install {pkg})", pytrace=False)
    lock = open(MODULE_LOCK, "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        _install_module()
        yield
    finally:
        lock.close()


def _install_module() -> None:
    want = mender.MODULE_SOURCE.read_bytes()
    target = MODULE_DIR / mender.MODULE_TYPE
    try:
        if not target.is_file() or target.read_bytes() != want:
            tmp = MODULE_DIR / f".{mender.MODULE_TYPE}.{os.getpid()}"
            tmp.write_bytes(want)
            tmp.chmod(0o755)
            tmp.replace(target)
        if not ARTIFACT_INFO.exists():
            ARTIFACT_INFO.parent.mkdir(parents=True, exist_ok=True)
            ARTIFACT_INFO.write_text("artifact_name=factory-image\n")
    except OSError as exc:
        pytest.fail(f"cannot install the Update Module ({exc}): as root, install -m 755 {mender.MODULE_SOURCE} {target}; "
                    f"echo artifact_name=factory-image > {ARTIFACT_INFO}", pytrace=False)


def write_onnx_build(root: Path, target: str, *, sign: float = 1.0, tag: str = "") -> None:
    """artifacts/<target>/build.json for one real ONNX model (image [1,3,4,4] -> eye_state [1,2], a MatMul) and
    the FP32 reference it is checked against; ``sign=-1`` ships a model whose outputs are the reference's negated
    (cosine -1: the output check must fail it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w = rng.standard_normal((48, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["eye_state"])],
        f"tiny{tag}", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("eye_state", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(sign * w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    adir = root / "artifacts" / target
    adir.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    (adir / "fp32.onnx").write_bytes(data)
    onnx.checker.check_model(model)
    common = root / "artifacts" / "common"
    common.mkdir(parents=True, exist_ok=True)
    x = rng.standard_normal((6, 3, 4, 4)).astype(np.float32)
    np.savez(common / "reference.npz", inputs=x, eye_state=x.reshape(6, 48) @ w)
    build = {"schema": 1, "project": "dms", "target": target,
             "input": {"name": "image", "shape": [1, 3, 4, 4], "dtype": "float32", "layout": "NCHW"},
             "outputs": {"names": ["eye_state"], "classification": ["eye_state"]},
             "model": {"file": "fp32.onnx", "sha256": hashlib.sha256(data).hexdigest()},
             "artifacts": [{"name": "fp32", "precision": "fp32", "kind": "onnx", "path": f"artifacts/{target}/fp32.onnx",
                            "extra_files": [], "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "runtime": "onnxruntime", "providers": ["CPUExecutionProvider"], "provider_options": [{}],
                            "portable": True, "eval": {}}],
             "reference": "artifacts/common/reference.npz", "toolchain": {"onnxruntime": "1.32.0", "opset": 17}}
    (adir / "build.json").write_text(json.dumps(build, indent=1))


def bundle(project_dir: Path, *, sign: float = 1.0, target: str = TARGET, device_types: list[str] | None = None,
           out: str = "out") -> mender.Bundle:
    write_onnx_build(project_dir, target, sign=sign)
    prof = load_target(project_dir, target)
    prof.bench.warmup, prof.bench.iterations, prof.bench.threads = 1, 3, 1  # an output check, not a benchmark
    if device_types is not None:
        prof.deploy.device_types = device_types
    return mender.write_bundle(load_project(project_dir), prof, out_dir=project_dir / out / f"{target}{sign:+.0f}")


class MenderBoard:
    """One emulated board with its own Mender client state, reached with OpenSSH like a CI job would."""

    def __init__(self, state: dict, board: dict, where: Path, device_type: str = TARGET,
                 verify_key: Path | None = None) -> None:
        self.state, self.name, self.host, self.port = state, board["name"], board["host"], board["port"]
        self.dir = where / self.name
        self.root = str(self.dir / "root" / TARGET)
        self.data = self.dir / "mender" / "data"
        self.data.mkdir(parents=True)
        self.conf = self.dir / "mender" / "mender.conf"
        self.conf.write_text(json.dumps({"ModuleTimeoutSeconds": 300,
                                         **({"ArtifactVerifyKey": str(verify_key)} if verify_key else {})}))
        (self.data / "device_type").write_text(f"device_type={device_type}\n")
        (self.data / "dmsbuild-release.json").write_text(json.dumps({"root": self.root, "python": state["python"]}))
        self.incoming = self.dir / "incoming"
        self.incoming.mkdir()

    def _opts(self) -> list[str]:
        return ["-F", "/dev/null", "-i", self.state["identity_file"], "-o", f"UserKnownHostsFile={self.state['known_hosts']}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]

    def ssh_argv(self, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        cmd = (["env", *(f"{k}={v}" for k, v in env.items())] if env else []) + list(argv)
        return ["ssh", *self._opts(), "-p", str(self.port), f"{self.state['user']}@{self.host}", join_argv(cmd)]

    def ssh(self, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv(*argv), capture_output=True, text=True, timeout=timeout)

    def mender(self, *args: str) -> list[str]:
        return ["mender", "--no-syslog", "-c", str(self.conf), "-b", str(self.conf), "-d", str(self.data), *args]

    def send(self, artifact: Path) -> str:
        remote = str(self.incoming / artifact.name)
        subprocess.run(["scp", *self._opts(), "-P", str(self.port), str(artifact), f"{self.state['user']}@{self.host}:{remote}"],
                       check=True, capture_output=True, timeout=120)
        return remote

    def install(self, artifact: Path) -> subprocess.CompletedProcess:
        return self.ssh(*self.mender("install", self.send(artifact)))

    def current(self) -> str | None:
        link = Path(self.root) / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def show_artifact(self) -> str:
        return self.ssh(*self.mender("show-artifact")).stdout.strip()

    def events(self) -> list[dict]:
        path = Path(self.root) / "mender" / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def results(self) -> list[dict]:
        folder = Path(self.root) / "mender" / "results"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []

    def inventory_file(self, project_dir: Path, fleet: list["MenderBoard"] | None = None) -> Path:
        """An inventory naming these boards (default: this one) with their deploy roots, as a user's would."""
        st = self.state
        path = project_dir / f"inventory-{self.name}.toml"
        lines = ["[defaults]", f"groups = [{json.dumps(TARGET)}]", f"user = {json.dumps(st['user'])}",
                 f"identity_file = {json.dumps(st['identity_file'])}", f"known_hosts = {json.dumps(st['known_hosts'])}",
                 f"python = {json.dumps(st['python'])}", ""]
        for b in fleet or [self]:
            lines += ["[[boards]]", f"name = {json.dumps(b.name)}", f"host = {json.dumps(b.host)}", f"port = {b.port}",
                      f"root = {json.dumps(b.root)}", ""]
        path.write_text("\n".join(lines))
        return path

    def inventory_board(self, project_dir: Path):
        b = load_inventory(Path(self.state["inventory"]), project_dir).boards[self.name]
        b.root = self.root
        return b


def check_release(root: str, release_id: str) -> None:
    """The release folder is complete: every file of its manifest has its sha256 (never half a release)."""
    rdir = Path(root) / "releases" / release_id
    manifest = json.loads((rdir / "manifest.json").read_text())
    for entry in manifest["artifacts"] + manifest["files"]:
        assert hashlib.sha256((rdir / entry["file"]).read_bytes()).hexdigest() == entry["sha256"], entry["file"]


@pytest.fixture()
def lab(boards, mender_client, tmp_path):
    def make(i: int, device_type: str = TARGET, verify_key: Path | None = None) -> MenderBoard:
        return MenderBoard(boards, boards["boards"][i], tmp_path / "lab", device_type, verify_key)
    return make


# ------------------------------------------------------------------------------------------------ the bundle
def test_bundle_is_a_checked_mender_artifact_of_the_release(project_dir, mender_client):
    b = bundle(project_dir)
    from dmsbuild.ship.manifest import make_release

    project, prof = load_project(project_dir), load_target(project_dir, TARGET)
    prof.bench.warmup, prof.bench.iterations, prof.bench.threads = 1, 3, 1
    release = make_release(project, prof)
    assert b.release_id == release.release_id and b.name == f"dms-{TARGET}-{release.release_id}"
    report = mender.read_artifact(b.path)
    assert f"Name: {b.name}" in report and "Compatible devices: '[rpi5]'" in report
    assert "Type:   dmsbuild-release" in report
    assert f"dmsbuild.rpi5.version: {b.release_id}" in report and "dmsbuild.project: dms" in report
    assert f"dmsbuild.model: {release.manifest['model']['sha256']}" in report
    # the payload: every object of the release once, named by its sha256, with the plan and the board's tools
    names = set(__import__("re").findall(r"name:\s+(\S+)", report))
    assert names == {f.sha256 for f in release.files} | {"dmsbuild-release.json", "release_agent.py", "judge.py"}
    assert b.plan["files"] == release.file_list() and b.plan["floors"]["default"]["max_accuracy_drop"][0] == 0.05
    assert b.module.read_bytes() == mender.MODULE_SOURCE.read_bytes() and os.access(b.module, os.X_OK)
    # the profile's device types win over the target name
    other = bundle(project_dir, device_types=["raspberrypi5", "rpi5-dev"], out="other")
    assert "Compatible devices: '[raspberrypi5 rpi5-dev]'" in mender.read_artifact(other.path)


def test_bundle_refusals(project_dir, mender_client, monkeypatch):
    with pytest.raises(UserError, match="deploy.device_types"):
        bundle(project_dir, device_types=["rpi 5"])
    build = json.loads((project_dir / "artifacts" / TARGET / "build.json").read_text())
    build["artifacts"][0]["runtime"] = "tensorrt"  # a TensorRT plan: only trtexec, driven by the host, runs it
    (project_dir / "artifacts" / TARGET / "build.json").write_text(json.dumps(build))
    with pytest.raises(UserError, match="cannot check them"):
        mender.write_bundle(load_project(project_dir), load_target(project_dir, TARGET), out_dir=project_dir / "trt")
    monkeypatch.setattr(mender, "MENDER_ARTIFACT", "mender-artifact-missing")
    with pytest.raises(UserError, match="mender-artifact-missing not found"):
        mender.read_artifact(project_dir / "x.mender")


def test_doit_bundle_refuses_an_unknown_format_before_building(project_dir, mender_client):
    from tests.tinyproject import run_doit

    bad = run_doit(project_dir, "bundle", f"target={TARGET}", "format=rauc")
    assert bad.rc != 0 and "format=rauc: no such bundle format" in bad.failure(f"bundle:{TARGET}")
    assert not (project_dir / "artifacts" / "common").exists()  # nothing was built (the reference model takes minutes)


# ------------------------------------------------------------------------------------------------ on the boards
#: the tiny project's rpi5 profile (tests/tinyproject.py: a real PyTorch model built in seconds): FP32, FP16 and
#: static INT8, a short benchmark; its boards come from the inventory the test writes
TINY_RPI5 = """\
runtime = "onnxruntime"
precisions = ["fp32", "fp16", "int8-qdq"]
[deploy]
root = "/opt/dmsbuild/rpi5"
[bench]
warmup = 1
iterations = 5
threads = 1
"""


def test_good_release_installs_checks_commits_on_three_boards(lab, tmp_path):
    """`doit bundle target=rpi5 format=mender` (building first) of a real (tiny) model; Mender installs, checks
    and commits it on three boards; `doit ota_pull` brings the results home, labelled with their route."""
    from tests.tinyproject import make_project, run_doit

    project_dir = make_project(tmp_path / "tiny", {TARGET: TINY_RPI5})
    run = run_doit(project_dir, "bundle", f"target={TARGET}", "format=mender")  # builds what changed first, like deploy
    assert run.rc == 0, run.output[-3000:]
    assert f"build:{TARGET}" in run.executed and f"bundle:{TARGET}" in run.executed
    [path] = (project_dir / "artifacts" / TARGET / "mender").glob("*.mender")
    release_id = path.stem.rsplit("-", 1)[1]
    assert f"checked with mender-artifact read" in run.output and mender.read_artifact(path)
    fleet = [lab(i) for i in range(3)]
    for board in fleet:
        res = board.install(path)
        assert res.returncode == 0, res.stderr[-2000:]
        assert board.current() == release_id  # switched by the agent, checked before the client returned
        assert board.ssh(*board.mender("commit")).returncode == 0
        assert board.show_artifact() == path.stem
        provides = board.ssh(*board.mender("show-provides")).stdout
        assert f"dmsbuild.rpi5.version={release_id}" in provides and "dmsbuild.project=tiny" in provides
        check_release(board.root, release_id)
        assert [e["event"] for e in board.events()] == ["installed", "committed"]
        [record] = board.results()
        assert record["verdict"] == {"ok": True, "failures": []} and record["document"]["release_id"] == release_id
        assert {r["artifact"] for r in record["document"]["results"]} == {"fp32", "fp16", "int8-qdq"}
        assert not (Path(board.root) / "mender" / "pending.json").exists()

    # results from the fleet: pulled over SSH into results.sqlite, labelled with their route, in the report's tables
    inventory = fleet[0].inventory_file(project_dir, fleet)
    pulled = run_doit(project_dir, "ota_pull", f"target={TARGET}", f"inventory={inventory}")
    assert pulled.rc == 0, pulled.output[-3000:]
    assert pulled.output.count(f"release {release_id}: check passed; host gates: pass") == 3
    store = ResultStore(project_dir / "artifacts" / "results.sqlite")
    rows = store.rows(target=TARGET)
    assert len(rows) == 9 and {r["source"] for r in rows} == {"emulated+mender"}
    assert "Mender" in label(rows[0]["source"]) and "emulated board" in label(rows[0]["source"])
    from dmsbuild.measure.report import latency_details_table, latency_table, latest_rows

    # the latency table names the route in short, the folded details table in full
    assert all(any("via mender" in str(c) for c in row) for row in latency_table(latest_rows(rows)).rows)
    details = latency_details_table(latest_rows(rows))
    assert all(any("installed and checked by Mender" in str(c) for c in row) for row in details.rows)
    report = run_doit(project_dir, "report")
    assert report.rc == 0, report.output[-2000:]
    md = (project_dir / "artifacts" / "report" / "report.md").read_text()
    assert md.count("CPU); installed and checked by Mender, results pulled over SSH") >= 9  # (the Markdown escapes the ')
    project, prof = load_project(project_dir), load_target(project_dir, TARGET)
    again = pull_results(project, prof, [b.inventory_board(project_dir) for b in fleet], store=store,
                                progress=lambda _line: None)
    assert again == [] and len(store.rows(target=TARGET)) == 9  # each results file is stored once


def test_failing_output_check_is_rolled_back_by_mender(project_dir, lab):
    good, bad = bundle(project_dir), bundle(project_dir, sign=-1.0)
    assert good.release_id != bad.release_id
    board, fresh = lab(0), lab(1)
    assert board.install(good.path).returncode == 0 and board.ssh(*board.mender("commit")).returncode == 0

    res = board.install(bad.path)
    assert res.returncode != 0
    assert "failed its output check" in res.stderr and "accuracy gate" in res.stderr
    assert board.current() == good.release_id and board.show_artifact() == good.name  # the old one, by Mender's rollback
    check_release(board.root, good.release_id)
    assert [e["event"] for e in board.events()][-2:] == ["check_failed", "rolled_back"]
    assert board.ssh(*board.mender("commit")).returncode == 2  # nothing left to commit
    failed = board.results()[-1]
    assert failed["release_id"] == bad.release_id and not failed["verdict"]["ok"]
    assert any("cosine" in f for f in failed["verdict"]["failures"])

    # a board with no release before: after the rollback it has none again (not a failed release)
    assert fresh.install(bad.path).returncode != 0
    assert fresh.current() is None and fresh.show_artifact() == "factory-image"

    # the failed check's figures still reach the store with the on-board verdict (`doit ota_pull`, as a user runs it),
    # and the host's gates agree with the board's: the task fails, naming the release
    from tests.tinyproject import run_doit

    run = run_doit(project_dir, "ota_pull", f"target={TARGET}", f"inventory={board.inventory_file(project_dir)}")
    assert run.rc != 0, run.output
    assert f"release {good.release_id}: check passed; host gates: pass" in run.output
    assert f"release {bad.release_id}: check FAILED (rolled back by Mender)" in run.output
    assert "accuracy gate" in run.failure(f"ota_pull:{TARGET}")
    rows = ResultStore(project_dir / "artifacts" / "results.sqlite").rows(target=TARGET)
    assert sorted(r["release_id"] for r in rows) == sorted([good.release_id, bad.release_id])
    assert {r["source"] for r in rows} == {"emulated+mender"}


def _mender_pids(board: MenderBoard) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0] == b"mender" and str(board.data).encode() in cmd:
                pids.append(int(d.name))
    return pids


def _tree(pid: int) -> list[int]:
    from tests.conftest import descendants

    return [pid] + descendants(pid)


@pytest.mark.parametrize("point,victims", [("staged", "all"), ("switched", "all"), ("checking", "client")])
def test_interrupted_install_leaves_old_or_new_never_half(project_dir, lab, point, victims):
    """The client killed mid-install (with its module: a power cut; alone: the module finishes on its own):
    the board runs the old release or the new one, complete; the next Mender install puts Mender and the
    board back in agreement."""
    old = bundle(project_dir)
    # a second good release: another bench plan gives another release id
    prof = load_target(project_dir, TARGET)
    prof.bench.warmup, prof.bench.iterations, prof.bench.threads = 1, 4, 1
    new = mender.write_bundle(load_project(project_dir), prof, out_dir=project_dir / "new")
    assert new.release_id != old.release_id
    board = lab(0)
    assert board.install(old.path).returncode == 0 and board.ssh(*board.mender("commit")).returncode == 0
    state = Path(board.root) / "mender"
    proc = subprocess.Popen(board.ssh_argv(*board.mender("install", board.send(new.path)),
                                           env={"DMSBUILD_MENDER_PAUSE": point}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (state / f"paused-{point}").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    module_pid = int((state / f"paused-{point}").read_text())
    [client] = _mender_pids(board)
    doomed = _tree(client) if victims == "all" else [client]
    assert (module_pid in doomed) == (victims == "all")
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    if victims == "client":  # the module outlives its client and finishes the install on its own
        (state / f"resume-{point}").touch()
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{p}").exists() for p in _tree(module_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)

    running = board.current()
    assert running in (old.release_id, new.release_id)
    check_release(board.root, running)
    assert board.show_artifact() == old.name  # the client died before it recorded the new artifact

    # the next install (of the new release) undoes whatever the dead one left, then installs and commits
    res = board.install(new.path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert board.ssh(*board.mender("commit")).returncode == 0
    assert board.current() == new.release_id and board.show_artifact() == new.name
    check_release(board.root, new.release_id)
    kinds = [e["event"] for e in board.events()]
    if point != "staged":  # switched in before the kill: undone first, so Mender's view and the board agree
        assert "recovered" in kinds
    assert kinds[-2:] == ["installed", "committed"]
    # and the release it replaced is the old one (a rollback of it would go back there, not to a dead install)
    assert board.events()[-2]["previous"] == old.release_id


@pytest.mark.parametrize("how", ["payload-byte", "truncated"])
def test_corrupted_artifact_is_refused_by_the_client(project_dir, lab, how):
    good = bundle(project_dir)
    board = lab(0)
    broken = project_dir / f"broken-{how}.mender"
    if how == "payload-byte":  # one byte of one object changed inside a well-formed artifact: only the checksum knows
        outer = tarfile.open(good.path)
        members = [(m, outer.extractfile(m).read()) for m in outer.getmembers()]
        with tarfile.open(broken, "w") as out:
            for m, data in members:
                if m.name.startswith("data/0000"):
                    import gzip

                    inner = tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)))
                    files = [(im, bytearray(inner.extractfile(im).read())) for im in inner.getmembers()]
                    victim = next(b for im, b in files if len(im.name) == 64)
                    victim[len(victim) // 2] ^= 0x01
                    buf = io.BytesIO()
                    with tarfile.open(fileobj=buf, mode="w") as t2:
                        for im, b in files:
                            t2.addfile(im, io.BytesIO(bytes(b)))
                    data = gzip.compress(buf.getvalue())
                    m.size = len(data)
                out.addfile(m, io.BytesIO(data))
    else:
        data = good.path.read_bytes()
        broken.write_bytes(data[: len(data) * 2 // 3])
    res = board.install(broken)
    assert res.returncode != 0
    assert board.current() is None and board.show_artifact() == "factory-image"
    assert not (Path(board.root) / "mender" / "pending.json").exists() and board.events() == []
    if how == "payload-byte":
        assert "checksum" in res.stderr.lower() or "sha256" in res.stderr.lower(), res.stderr[-1500:]


def test_other_device_type_and_other_lineage_are_refused(project_dir, lab):
    good = bundle(project_dir)
    orin_board = lab(0, device_type="orin")
    res = orin_board.install(good.path)
    assert res.returncode != 0 and "not compatible with device orin" in res.stderr
    assert orin_board.current() is None and orin_board.events() == []

    # same device type, another target's release: the module refuses it on a board running this target's
    board = lab(1)
    assert board.install(good.path).returncode == 0 and board.ssh(*board.mender("commit")).returncode == 0
    foreign = bundle(project_dir, target="qcs8255", device_types=[TARGET], out="foreign")
    res = board.install(foreign.path)
    assert res.returncode != 0 and "refused" in res.stderr and "'qcs8255'" in res.stderr
    assert board.current() == good.release_id and board.show_artifact() == good.name


def test_commit_refuses_a_release_that_is_no_longer_running(project_dir, lab):
    """Between `mender install` and `mender commit` the board was switched back (e.g. `doit rollback`): the
    commit fails, so Mender reports a failure instead of a release the board does not run."""
    first = bundle(project_dir)
    prof = load_target(project_dir, TARGET)  # a second release: the same model, another bench plan
    prof.bench.warmup, prof.bench.iterations, prof.bench.threads = 1, 5, 1
    second = mender.write_bundle(load_project(project_dir), prof, out_dir=project_dir / "second")
    board = lab(0)
    assert board.install(first.path).returncode == 0 and board.ssh(*board.mender("commit")).returncode == 0
    assert board.install(second.path).returncode == 0 and board.current() == second.release_id
    # what `doit rollback target=rpi5` does on the board: the agent's rollback (its request on stdin)
    subprocess.run(board.ssh_argv(board.state["python"], str(mender.PACKAGE_DIR / "board" / "release_agent.py"), "rollback"),
                   input=json.dumps({"root": board.root}), text=True, check=True, capture_output=True, timeout=60)
    assert board.current() == first.release_id
    res = board.ssh(*board.mender("commit"))
    assert res.returncode == 1 and "not installed and checked here" in res.stderr
    assert board.current() == first.release_id and board.show_artifact() == first.name


def test_signed_artifacts_only_where_the_board_has_a_verify_key(project_dir, lab, tmp_path):
    key, pub = tmp_path / "signing.pem", tmp_path / "verify.pem"
    subprocess.run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(key)], check=True)
    subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    unsigned = bundle(project_dir)
    prof = load_target(project_dir, TARGET)
    prof.bench.warmup, prof.bench.iterations, prof.bench.threads = 1, 3, 1
    signed = mender.write_bundle(load_project(project_dir), prof, out_dir=project_dir / "signed", key=key)
    assert "Signature: signed and verified correctly" in mender.read_artifact(signed.path, key=pub)
    board = lab(0, verify_key=pub)
    res = board.install(unsigned.path)
    assert res.returncode != 0 and "signature" in res.stderr.lower()
    assert board.current() is None
    assert board.install(signed.path).returncode == 0 and board.ssh(*board.mender("commit")).returncode == 0
    assert board.current() == signed.release_id


@pytest.mark.parametrize("source,known", [("emulated+mender", True), ("board-runner+mender", True), ("double+mender", True),
                                          ("emulated", True), ("emulated+ftp", False), ("mender", False),
                                          ("emulated+mender+x", False), ("+mender", False)])
def test_a_route_is_stored_only_with_a_known_source(source, known):
    from dmsbuild.core.provenance import known_source
    from dmsbuild.core.results import ResultError, validate_result

    assert known_source(source) is known
    result = {"artifact": "fp32", "precision": "fp32", "runtime": "onnxruntime", "error": "did not run",
              "latency_ms": None, "samples_ms": [], "source": source}
    if known:
        validate_result(result, board="emu-01")
    else:
        with pytest.raises(ResultError, match="source"):
            validate_result(result, board="emu-01")


def test_route_labels():
    from dmsbuild.core.provenance import with_route

    assert with_route("emulated", "mender") == with_route("emulated+mender", "mender") == "emulated+mender"
    assert label("board-runner+mender") == ("board (measured by the dms_bench runner); installed and checked by Mender, "
                                            "results pulled over SSH")
    assert label("emulated+mender", short=True) == "emulated CPU via mender"
    assert label("emulated") == "emulated board (this machine's CPU)"


def test_a_board_without_module_settings_refuses_with_one_line(project_dir, lab):
    good = bundle(project_dir)
    board = lab(0)
    (board.data / "dmsbuild-release.json").unlink()
    res = board.install(good.path)
    assert res.returncode != 0 and "dmsbuild-release: no board settings: write " in res.stderr
    assert str(board.data / "dmsbuild-release.json") in res.stderr and board.current() is None


def test_a_board_that_cannot_be_reached_does_not_stop_the_pull(project_dir, lab):
    from dataclasses import replace

    from tests.conftest import _free_port

    good = bundle(project_dir)
    board = lab(0)
    assert board.install(good.path).returncode == 0 and board.ssh(*board.mender("commit")).returncode == 0
    live = board.inventory_board(project_dir)
    dead = replace(live, name="emu-gone", port=_free_port(live.host))  # nothing listens there
    project, prof = load_project(project_dir), load_target(project_dir, TARGET)
    store = ResultStore(project_dir / "artifacts" / "results.sqlite")
    lines: list[str] = []
    runs = pull_results(project, prof, [dead, live], store=store, progress=lines.append)
    assert [(r.board, r.error is None, r.ok) for r in runs] == [("emu-gone", False, False), (board.name, True, True)]
    assert lines[0].startswith("emu-gone: -: NOT STORED: ") and len(store.rows(target=TARGET)) == 1
