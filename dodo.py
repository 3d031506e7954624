"""dmsbuild tasks. `doit list` shows them; see README.md.

The repository's own project (the reference DMS model, dmsbuild.toml,
targets/) uses dmsbuild's tasks the way every project does (the starter
project's dodo.py, dmsbuild/defaults/project/dodo.py, has the same task
imports: tests/test_package.py holds them equal); the path insert makes this
checkout's dmsbuild the one imported, installed or not.

Kept thin and light: nothing here (or in what it imports) loads torch,
onnxruntime, onnx or tensorrt; the actions import them when they run.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dmsbuild.tasks import doit_config  # noqa: E402

DOIT_CONFIG = doit_config()  # artifacts/.doit.db of the project; `doit` alone builds

from dmsbuild.tasks.build import task_build, task_evaluate, task_export, task_quantize  # noqa: E402,F401
from dmsbuild.tasks.deploy import task_deploy, task_rollback  # noqa: E402,F401
from dmsbuild.tasks.bench import task_bench  # noqa: E402,F401
from dmsbuild.tasks.report import task_report, task_results_export  # noqa: E402,F401
from dmsbuild.tasks.doctor import task_doctor  # noqa: E402,F401
from dmsbuild.tasks.init import task_init  # noqa: E402,F401
from dmsbuild.tasks.tune import task_tune  # noqa: E402,F401
from dmsbuild.tasks.bundle import task_bundle, task_ota_pull  # noqa: E402,F401
