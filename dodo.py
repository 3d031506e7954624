"""dmsbuild tasks. `doit list` shows them; see README.md.

The repository's own project (the reference DMS model, dmsbuild.toml,
targets/) uses dmsbuild's tasks the way every project does (the starter
project's dodo.py, dmsbuild/defaults/project/dodo.py, has the same task
lines: tests/test_package.py holds them equal); the path insert makes this
checkout's dmsbuild the one imported, installed or not.

Kept thin and light: nothing here (or in what it imports) loads torch,
onnxruntime, onnx or tensorrt; the actions import them when they run. When
nothing the task generators read has changed since a previous run, their
output comes from artifacts/.doit-tasks/ and they are not even imported
(dmsbuild/taskcache.py; DMSBUILD_TASK_CACHE=off bypasses it).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dmsbuild.taskcache import TaskCache  # noqa: E402

_tasks = TaskCache.open(__file__)  # dmsbuild's generators, or their output cached while nothing they read changed
DOIT_CONFIG = _tasks.doit_config()  # dependency database in artifacts/, `doit` alone builds

task_export = _tasks.creator("export")
task_quantize = _tasks.creator("quantize")
task_evaluate = _tasks.creator("evaluate")
task_build = _tasks.creator("build")
task_deploy = _tasks.creator("deploy")
task_rollback = _tasks.creator("rollback")
task_bench = _tasks.creator("bench")
task_report = _tasks.creator("report")
task_results_export = _tasks.creator("results_export")
task_doctor = _tasks.creator("doctor")
task_init = _tasks.creator("init")
task_tune = _tasks.creator("tune")
task_bundle = _tasks.creator("bundle")
task_ota_pull = _tasks.creator("ota_pull")
