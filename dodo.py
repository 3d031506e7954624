"""dmsbuild tasks. `doit list` shows them; see README.md.

Kept thin and light: nothing here (or in what it imports) loads torch,
onnxruntime, onnx or tensorrt; the actions import them when they run.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "verbosity": 2,
    "dep_file": str(Path(__file__).resolve().parent / "artifacts" / ".doit.db"),
    "backend": "sqlite3",
}

from dmsbuild.tasks.deploy import task_deploy, task_rollback  # noqa: E402,F401
