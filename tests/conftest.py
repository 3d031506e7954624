"""Shared fixtures: real sshd boards for the session; tests never read the real ~/.ssh."""
from __future__ import annotations

import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: no leaks: what a session starts (sshd, nginx, namespaces, users) is stopped at its end, or by the next session
pytest_plugins = ["tests.reaper"]


@pytest.fixture(autouse=True)
def _no_real_ssh(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the developer's ~/.ssh and ssh-agent."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("DMSBUILD_INVENTORY", raising=False)
    monkeypatch.delenv("DMSBUILD_SSH_CONFIG", raising=False)


@pytest.fixture()
def ctrl_c_raises():
    """SIGINT handled by Python's default handler (KeyboardInterrupt) for the test, whatever pytest was started
    from: a shell that starts it in the background (``nohup ... &``) hands it SIGINT ignored, and then Python
    installs no handler, a Ctrl-C sent by a test is dropped and the rollout rightly leaves SIG_IGN alone. The
    handler pytest found is put back after the test."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


#: (system, machine) pairs PyPI has onnxruntime-qnn wheels for: there a missing package is a broken setup,
#: not a reason to skip (scripts/setup.sh installs it with the [qnn] extra)
QNN_WHEEL_PLATFORMS = {("Linux", "x86_64"), ("Windows", "AMD64"), ("Windows", "ARM64")}


@pytest.fixture(scope="session")
def onnxruntime_qnn() -> None:
    """Tests that compile or run QNN context binaries: fail where the package could be installed, skip (saying
    why) only where no wheel exists."""
    try:
        import onnxruntime_qnn  # noqa: F401
    except ImportError:
        where = (platform.system(), platform.machine())
        if where in QNN_WHEEL_PLATFORMS:
            pytest.fail("onnxruntime-qnn is not installed, though it exists for this platform: run scripts/setup.sh "
                        "(or pip install 'dmsbuild[qnn]')", pytrace=False)
        pytest.skip(f"onnxruntime-qnn has no wheel for {where[0]} {where[1]}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook signature
    """The fault suite's tables (tests/faults/ledger.py), once, in the process that reports (pytest's own, or
    pytest-xdist's controller, which collects nothing itself and so never loads tests/faults/conftest.py); then
    the last line before pytest's totals (after -ra's short summary): every skipped test and why."""
    yield
    from tests.faults import ledger

    if ledger.RECORDS:
        terminalreporter.section("fault injection summary")
        for line in ledger.table():
            terminalreporter.write_line(line)
    reasons: dict[str, int] = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    listed = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items())) if reasons else "none"
    terminalreporter.write_line(f"skips: {listed}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001 - hook signature
    """Under pytest-xdist (scripts/test.sh runs the suite on 2 workers): a worker hands what the fault suite
    recorded (tests/faults/ledger.py) to the controller, which prints the tables for the whole run."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        from dataclasses import asdict

        from tests.faults import ledger

        out["fault_ledger"] = [asdict(f) for faults in ledger.RECORDS.values() for f in faults]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ARG001 - pytest-xdist hook signature
    """The controller's side of the above: the worker's fault records join this process's ledger."""
    from tests.faults import ledger

    for rec in (getattr(node, "workeroutput", None) or {}).get("fault_ledger", []):
        ledger.RECORDS.setdefault(rec["kind"], []).append(ledger.Fault(**rec))



def _free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def boards(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four emulated boards (real sshd on 127.0.0.x), started with `boards up`, stopped with `boards down`."""
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
        pytest.fail("openssh-server is not installed: the deploy tests need real sshd boards; "
                    "run scripts/setup.sh or apt-get install -y openssh-server")
    where = tmp_path_factory.mktemp("boards")
    port = _free_port("127.0.0.41")
    cmd = [sys.executable, "-m", "dmsbuild.boards", "up", "--count", "4", "--dir", str(where),
           "--port", str(port), "--first", "41", "--groups", "rpi5,orin"]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    state = json.loads((where / "boards.json").read_text())
    state["dir"] = where
    yield state
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "down", "--dir", str(where)], cwd=REPO, check=True,
                   capture_output=True)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): the sshd session processes a test kills."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                kids.append(int(d.name))
    return kids + [g for k in kids for g in descendants(k)]


def write_reference(path: Path, rng: "random.Random") -> None:
    """A real (small) reference.npz: 4 inputs and one head's FP32 outputs."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, inputs=np.frombuffer(rng.randbytes(4 * 4 * 3 * 4 * 4), dtype=np.float32).reshape(4, 3, 4, 4),
             eye_state=np.zeros((4, 2), dtype=np.float32))
    path.write_bytes(buf.getvalue())


def write_build(root: Path, target: str, sizes_mb: dict[str, float], seed: int = 0, portable: bool = True) -> Path:
    """A fabricated artifacts/<target>/build.json (CONTRACTS §1) with random-content artifact files."""
    import hashlib
    import random

    rng = random.Random(f"{target}-{seed}")
    adir = root / "artifacts" / target
    adir.mkdir(parents=True, exist_ok=True)
    arts = []
    for name, mb in sizes_mb.items():
        data = rng.randbytes(int(mb * 1e6))
        path = adir / f"{name}.onnx"
        path.write_bytes(data)
        arts.append({"name": name, "precision": name if name in ("fp32", "fp16", "int8-qdq") else "fp32",
                     "kind": "onnx", "path": f"artifacts/{target}/{name}.onnx", "extra_files": [],
                     "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "runtime": "onnxruntime",
                     "providers": ["CPUExecutionProvider"], "provider_options": [{}], "portable": portable, "eval": {}})
    common = root / "artifacts" / "common"
    common.mkdir(parents=True, exist_ok=True)
    write_reference(common / "reference.npz", rng)
    build = {"schema": 1, "project": "dms", "target": target,
             "input": {"name": "image", "shape": [1, 3, 224, 224], "dtype": "float32", "layout": "NCHW"},
             "outputs": {"names": ["eye_state"], "classification": ["eye_state"]},
             "artifacts": arts, "reference": "artifacts/common/reference.npz",
             "toolchain": {"onnxruntime": "1.32.0", "opset": 17}}
    (adir / "build.json").write_text(json.dumps(build, indent=1))
    return adir / "build.json"


@pytest.fixture()
def project_dir(tmp_path: Path) -> Path:
    """A tmp project: the repo's dmsbuild.toml and target profiles, no build output yet."""
    shutil.copy(REPO / "dmsbuild.toml", tmp_path / "dmsbuild.toml")
    shutil.copytree(REPO / "targets", tmp_path / "targets")
    return tmp_path
