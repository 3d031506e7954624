"""dmsbuild tasks. `doit list` shows them; see README.md.

Kept thin and light: nothing here (or in what it imports) loads torch,
onnxruntime, onnx or tensorrt; the actions import them when they run.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
# doit opens its dependency database before any task runs; artifacts/ is git-ignored
(ROOT / "artifacts").mkdir(exist_ok=True)

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "verbosity": 2,
    "dep_file": str(ROOT / "artifacts" / ".doit.db"),
    "backend": "sqlite3",
}

from dmsbuild.tasks.bench import task_bench  # noqa: E402,F401
from dmsbuild.tasks.report import task_report, task_results_export  # noqa: E402,F401
from dmsbuild.tasks.doctor import task_doctor  # noqa: E402,F401
from dmsbuild.tasks.deploy import task_deploy, task_rollback  # noqa: E402,F401
