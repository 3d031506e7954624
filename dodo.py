"""dmsbuild tasks. `doit list` shows them; see README.md.

Kept thin and light: nothing here (or in what it imports) loads torch,
onnxruntime, onnx or tensorrt; the actions import them when they run.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the project whose artifacts are built: DMSBUILD_ROOT, else this folder. doit opens its
# dependency database before any task runs, and artifacts/ is git-ignored: create it.
PROJECT_ROOT = Path(os.environ.get("DMSBUILD_ROOT") or Path(__file__).resolve().parent)
(PROJECT_ROOT / "artifacts").mkdir(exist_ok=True)

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "verbosity": 2,
    "dep_file": str(PROJECT_ROOT / "artifacts" / ".doit.db"),
    "backend": "sqlite3",
}

from dmsbuild.tasks.build import task_build, task_evaluate, task_export, task_quantize  # noqa: E402,F401
from dmsbuild.tasks.deploy import task_deploy, task_rollback  # noqa: E402,F401
from dmsbuild.tasks.bench import task_bench  # noqa: E402,F401
from dmsbuild.tasks.report import task_report, task_results_export  # noqa: E402,F401
from dmsbuild.tasks.doctor import task_doctor  # noqa: E402,F401
from dmsbuild.tasks.init import task_init  # noqa: E402,F401
from dmsbuild.tasks.tune import task_tune  # noqa: E402,F401
from dmsbuild.tasks.bundle import task_bundle, task_ota_pull  # noqa: E402,F401
