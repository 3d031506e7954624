"""One board probe (dmsbuild/board/runner/probe.py): the deploy's facts, the release agent's and the runner's
``--facts`` are the same code, sent as source before a release exists and shipped inside one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dmsbuild.ship.facts import FACT_KEYS, FACTS_SCRIPT
from tests.bench_release import make_release

PROBE = Path(__file__).resolve().parents[1] / "dmsbuild" / "board" / "runner" / "probe.py"


def test_the_host_sends_the_probe_file_itself() -> None:
    assert FACTS_SCRIPT == PROBE.read_text()


def test_python_c_the_agent_and_the_runner_report_the_same_facts(tmp_path: Path) -> None:
    sent = json.loads(subprocess.run([sys.executable, "-c", FACTS_SCRIPT, str(tmp_path)], capture_output=True,
                                     text=True, check=True).stdout)
    # the agent runs the script in its own process (a fresh one here: this test process may have registered plugin EPs)
    code = ("import json, sys; from dmsbuild.board.release_agent import run_facts; "
            "from dmsbuild.ship.facts import FACTS_SCRIPT; print(json.dumps(run_facts(FACTS_SCRIPT, sys.argv[1])))")
    agent = json.loads(subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                                      check=True, cwd=Path(__file__).resolve().parents[1]).stdout)
    rel = make_release(tmp_path / "root")
    runner = json.loads(subprocess.run([sys.executable, str(rel / "runner" / "dms_bench.py"), "--facts"],
                                       capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    assert set(FACT_KEYS) <= set(sent) and set(sent) == set(agent) == set(runner)
    for key in ("hostname", "arch", "python", "numpy", "onnxruntime", "onnxruntime_providers", "cpu_count"):
        assert sent[key] == agent[key] == runner[key], key
    assert sent["onnxruntime"] and "CPUExecutionProvider" in sent["onnxruntime_providers"]


def test_a_release_without_the_probe_says_what_to_do(tmp_path: Path) -> None:
    rel = make_release(tmp_path / "root")
    (rel / "runner" / "probe.py").unlink()
    res = subprocess.run([sys.executable, str(rel / "runner" / "dms_bench.py"), "--facts"], capture_output=True, text=True)
    assert res.returncode == 2 and "runner/probe.py is missing beside dms_bench.py; redeploy the release" in res.stderr


def test_writable_mode_lists_folders_a_deploy_cannot_write(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", FACTS_SCRIPT, "--writable", str(tmp_path / "new" / "root")],
                         capture_output=True, text=True, check=True)
    assert json.loads(res.stdout) == []  # its nearest existing parent (tmp_path) is writable
