"""`doit deploy` / `doit rollback` end to end, in a tmp project whose build task is a no-op stand-in
(the build itself is another part's job; here build.json is fabricated)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, write_build

DODO = f'''
import sys
sys.path.insert(0, {str(REPO)!r})
from dmsbuild.tasks.deploy import task_deploy, task_rollback  # noqa: F401
DOIT_CONFIG = {{"verbosity": 2, "dep_file": "artifacts/.doit.db", "backend": "sqlite3"}}

def task_build():
    """stand-in for dmsbuild.tasks.build: build.json is fabricated by the test"""
    for t in ("local", "rpi5"):
        yield {{"name": t, "actions": []}}
'''


def _doit(project: Path, *args: str) -> subprocess.CompletedProcess:
    # the fabricated artifacts are random bytes: skip the on-board benchmark here (`doit deploy` with the
    # benchmark runs in tests/test_targets_e2e.py and tests/test_targets_qnn_e2e.py)
    if args and args[0] == "deploy":
        args = (*args, "bench=no")
    env = {**os.environ, "DMSBUILD_ROOT": str(project)}
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)


def _status(out: str, board: str) -> str | None:
    """The board's status in the rollout's final table."""
    m = re.search(rf"^{re.escape(board)}\s+(\w+)\s", out, re.M)
    return m.group(1) if m else None


def test_doit_deploy_and_rollback(boards, project_dir):
    (project_dir / "dodo.py").write_text(DODO)
    (project_dir / "artifacts").mkdir(exist_ok=True)
    inv = f"inventory={boards['inventory']}"
    write_build(project_dir, "rpi5", {"fp32": 0.3}, seed=1)
    # every target's deploy root on the emulated boards is private to this session's boards dir
    res = _doit(project_dir, "deploy", "target=rpi5", "hosts=emu-01,emu-02", inv)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert _status(out, "emu-01") == "done" and _status(out, "emu-02") == "done", out
    assert _status(out, "emu-03") is None  # not selected
    [report] = (project_dir / "artifacts" / "rpi5" / "rollouts").glob("*.json")
    data = json.loads(report.read_text())
    assert data["summary"]["done"] == 2 and all(b["details"]["action"] == "deployed" for b in data["boards"])

    write_build(project_dir, "rpi5", {"fp32": 0.3}, seed=2)
    assert _doit(project_dir, "deploy", "target=rpi5", "hosts=emu-01", inv).returncode == 0
    res = _doit(project_dir, "rollback", "target=rpi5", "hosts=emu-01", inv)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and _status(out, "emu-01") == "done" and "emu-01: rolled back" in out, out

    res = _doit(project_dir, "deploy", "target=rpi5", "hosts=emu-01,rpi5-77", inv)
    assert res.returncode != 0 and "board 'rpi5-77': not in the inventory" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_doit_deploy_default_target_is_local(project_dir):
    (project_dir / "dodo.py").write_text(DODO)
    (project_dir / "artifacts").mkdir(exist_ok=True)
    write_build(project_dir, "local", {"fp32": 0.2})
    res = _doit(project_dir, "deploy")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert _status(out, "local") == "done", out
    assert (project_dir / "artifacts" / "boards" / "local" / "current").is_symlink()


def test_doit_deploy_fails_when_a_board_fails(boards, project_dir, tmp_path):
    (project_dir / "dodo.py").write_text(DODO)
    (project_dir / "artifacts").mkdir(exist_ok=True)
    write_build(project_dir, "rpi5", {"fp32": 0.1})
    inv = tmp_path / "inv.toml"
    inv.write_text(f'include = [{boards["inventory"]!r}]\n\n[[boards]]\nname = "gone"\ngroups = ["rpi5"]\n'
                   f'host = "127.0.0.98"\nport = 9\nconnect_retries = 1\nroot = "/tmp/gone"\n')
    # max_fail=1: one board down must not stop the other
    (project_dir / "targets" / "rpi5.toml").write_text(
        (project_dir / "targets" / "rpi5.toml").read_text().replace("[deploy]", "[deploy]\nmax_fail = 1"))
    res = _doit(project_dir, "deploy", "target=rpi5", "hosts=gone,emu-03", f"inventory={inv}")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert _status(out, "gone") == "failed" and _status(out, "emu-03") == "done", out
    assert "unreachable" in out and "1 of 2 board(s) failed" in out


def test_deploy_fails_a_board_whose_benchmark_fails(boards, project_dir):
    """The on-board benchmark runs after the switch; an artifact that cannot run fails that board's deploy
    and names the board and artifact. With on_unhealthy = "keep" the release stays installed and rollback
    is offered (the default, "rollback", is tested in test_fleet_ssh.py)."""
    (project_dir / "dodo.py").write_text(DODO)
    (project_dir / "artifacts").mkdir(exist_ok=True)
    prof = project_dir / "targets" / "rpi5.toml"
    prof.write_text(prof.read_text().replace("[deploy]\n", '[deploy]\non_unhealthy = "keep"\n'))
    write_build(project_dir, "rpi5", {"fp32": 0.3}, seed=7)
    env = {**os.environ, "DMSBUILD_ROOT": str(project_dir)}
    res = subprocess.run([sys.executable, "-m", "doit", "deploy", "target=rpi5", "hosts=emu-01",
                          f"inventory={boards['inventory']}"], cwd=project_dir, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert _status(out, "emu-01") == "unhealthy" and "artifact fp32 did not run" in out, out
    assert "doit rollback target=rpi5 hosts=emu-01" in out
    assert "Traceback" not in out


def test_deploy_output_is_one_line_per_board_and_notes_once():
    """Ten boards, three artifacts each a new baseline: ten board lines (latency, source, verdict) and one note,
    not the 30 "new baseline (lineage ...)" lines a deploy once printed."""
    from types import SimpleNamespace

    from dmsbuild.pipeline.deploy import measurement_lines

    boards = []
    for i in range(1, 11):
        name = f"emu-{i:02d}"
        notes = [f"board {name}: artifact {a} ({a}) of model.onnx @abcdef123456: new baseline (lineage {name}{a}: no "
                 "earlier release of this model, precision and recipe on this board); the latency gate starts comparing "
                 "from this run" for a in ("fp32", "fp16", "int8-qdq")]
        notes.append(f"board {name}: artifact fp32 (fp32): latency not compared with release r0: power mode changed")
        boards.append(SimpleNamespace(name=name, status="done", output_check=i != 3, details={
            "sources": {"fp32": "emulated", "fp16": "emulated", "int8-qdq": "emulated"},
            "latencies": {"fp32": {"stat": "median", "ms": 3.0 + i / 100}, "fp16": {"stat": "median", "ms": 4.5},
                          "int8-qdq": {"stat": "mean", "ms": 2.25}},
            "latency_notes": notes}))
    lines = measurement_lines(SimpleNamespace(boards=boards))
    assert len(lines) == 12, "\n".join(lines)
    assert lines[0] == ("emu-01: done: fp32 3.01 ms [emulated CPU], fp16 4.50 ms [emulated CPU], "
                        "int8-qdq 2.25 ms (mean) [emulated CPU]; output check passed")
    assert lines[2].startswith("emu-03: done: ") and lines[2].endswith("; output check FAILED")
    assert lines[10].startswith("emu-01, emu-02 and 8 more (10 boards): new latency baseline for fp32, fp16, int8-qdq "
                                "of model.onnx @abcdef123456 (")
    assert lines[11] == ("emu-01, emu-02 and 8 more (10 boards): artifact fp32 (fp32): latency not compared with "
                         "release r0: power mode changed")
