"""Task parameters and configuration errors at every command (issue 32, item 3).

Runs doit in a subprocess against the repository's dodo.py on a copy of the
reference project's configuration (nothing is built: every case here is
decided before a build step would run)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from dmsbuild.tasks import PARAMS
from tests.tinyproject import REPO, run_doit

#: each task and the parameters `doit help <task>` must list
TASK_PARAMS = {
    "build": ["target"],
    "deploy": ["target", "hosts", "groups", "parallel", "inventory", "verify", "bench"],
    "rollback": ["target", "hosts", "groups", "parallel", "inventory"],
    "bench": ["target", "hosts", "groups", "inventory", "artifact"],
    "tune": ["target", "hosts", "groups", "inventory", "budget"],
    "doctor": ["target", "hosts", "groups", "inventory"],
    "results_export": ["format"],
    "init": ["onnx", "factory", "checkpoint", "shape", "data"],
}

#: every command that reads dmsbuild.toml: each must name a broken one's file and field
COMMANDS = [["build"], ["deploy", "target=rpi5"], ["report"], ["tune", "target=rpi5"], ["bench", "target=rpi5"],
            ["rollback", "target=rpi5"], ["doctor"], ["results_export"], ["deploy", "--target=orin"]]


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("params")
    shutil.copy(REPO / "dmsbuild.toml", root / "dmsbuild.toml")
    shutil.copytree(REPO / "targets", root / "targets")
    return root


@pytest.mark.parametrize("task", sorted(TASK_PARAMS))
def test_help_lists_the_task_parameters(proj: Path, task: str) -> None:
    run = run_doit(proj, "help", task)
    assert run.rc == 0, run.output
    for name in TASK_PARAMS[task]:
        line = next((ln for ln in run.output.splitlines() if ln.strip().startswith(f"--{name}=")), None)
        assert line is not None, f"doit help {task} does not list {name}=:\n{run.output}"
        assert PARAMS[name] in line and f"{name}=VALUE" in line, line
    listed = set(re.findall(r"^\s+--(\w+)=", run.output, re.M))
    assert listed == set(TASK_PARAMS[task]), run.output


def own(*tasks: str) -> str:
    return ", ".join(f"{n}=" for n in PARAMS if any(n in TASK_PARAMS[t] for t in tasks))


UNKNOWN = [
    (["deploy", "target=rpi5", "host=emu-01"], "host=emu-01", "deploy takes " + own("deploy")),
    (["build", "taget=rpi5"], "taget=rpi5", "build takes target="),
    (["report", "formt=csv"], "formt=csv", "report takes no parameters"),
    (["deploy", "target=rpi5", "format=csv"], "format=csv", "deploy takes " + own("deploy")),  # another task's
    (["deploy:rpi5", "budget=5"], "budget=5", "deploy takes " + own("deploy")),
    (["build", "tune", "artifact=x"], "artifact=x", "build, tune take target=, hosts=, groups=, inventory=, budget="),
    (["list", "hots=a"], "hots=a", "dmsbuild's tasks take " + ", ".join(f"{n}=" for n in PARAMS)),
]


@pytest.mark.parametrize("args,bad,takes", UNKNOWN, ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_unknown_parameter_is_refused_in_one_line(proj: Path, args: list[str], bad: str, takes: str) -> None:
    run = run_doit(proj, *args)
    assert run.rc == 3, run.output
    lines = [ln for ln in run.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in run.output, run.output
    assert f"unknown parameter {bad}; {takes} (" in lines[0], lines[0]
    assert not (proj / "artifacts" / "rpi5").exists()


@pytest.mark.parametrize("task,failed", [("deploy", "deploy:nosuch"), ("doctor", "doctor"), ("tune", "tune:nosuch"),
                                         ("bench", "bench:nosuch")])
@pytest.mark.parametrize("form", ["--target=nosuch", "target=nosuch"])
def test_option_form_selects_like_the_variable_form(proj: Path, task: str, failed: str, form: str) -> None:
    """`doit deploy --target=X` (what `doit help` shows) selects exactly like `target=X`; doit's own filling of an
    action's keyword named like a parameter (None) must not replace the value either (doctor once ignored it)."""
    run = run_doit(proj, task, form)
    assert run.rc == 1, run.output
    assert "target 'nosuch': no profile" in run.failure(failed), run.output


BROKEN = {
    "unknown key": (("max_accuracy_drop = 0.05", "max_acuracy_drop = 0.05"),
                    ["unknown field 'accuracy.max_acuracy_drop'", "max_accuracy_drop"]),
    "bad value": (('dtype = "float32"', 'dtype = "float23"'),
                  ["field 'input.dtype' is 'float23'", "'float32', 'float16', 'uint8'"]),
    "malformed": (('name = "dms"', 'name = "dms'), ["malformed TOML"]),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_config_error_is_named_at_every_command(proj: Path, tmp_path: Path, broken: str, command: list[str]) -> None:
    (old, new), expected = BROKEN[broken]
    root = tmp_path / "p"
    shutil.copytree(proj, root, ignore=shutil.ignore_patterns("artifacts"))
    text = (root / "dmsbuild.toml").read_text()
    assert old in text
    (root / "dmsbuild.toml").write_text(text.replace(old, new, 1))
    run = run_doit(root, *command)
    assert run.rc == 1, run.output
    assert "Traceback" not in run.output and "does not exist" not in run.output, run.output
    failed = re.findall(r"^TaskFailed - taskid:(\S+)\n(.*)$", run.output, re.M)
    assert failed, run.output
    for _task, first in failed:
        assert first.startswith(f"{root / 'dmsbuild.toml'}: "), run.output
        for part in expected:
            assert part in first, first


def test_list_docs_are_each_tasks_own(proj: Path) -> None:
    run = run_doit(proj, "list")
    assert run.rc == 0, run.output
    docs = dict(re.findall(r"^(\S+)\s+(.+)$", run.output, re.M))
    assert {"build", "compile", "deploy", "tune", "report", "init"} <= set(docs), run.output
    assert len(set(docs.values())) == len(docs), docs  # compile once showed build's text
    assert "host tool" in docs["compile"] and "accuracy gate" in docs["build"]


def test_path_parameter_resolves_against_the_working_directory(proj: Path, tmp_path: Path) -> None:
    """inventory= is relative to the folder doit runs in (-d here; the project folder when doit runs its
    dodo.py there), never to dmsbuild's checkout or the project root behind the user's back."""
    import os
    import subprocess
    import sys

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "DMSBUILD_ROOT": str(proj), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "-d", str(elsewhere), "doctor",
                          "target=rpi5", "inventory=inv.toml"], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=120)
    text = out.stdout + out.stderr
    assert f"{elsewhere / 'inv.toml'}: inventory file not found" in text, text
