"""dmsbuild tasks. `doit list` shows them; see README.md.

Kept thin and light: nothing here (or in what it imports) loads torch,
onnxruntime, onnx or tensorrt; the actions import them when they run.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dmsbuild.tasks.build import task_build, task_evaluate, task_export, task_quantize  # noqa: E402,F401

# the project whose artifacts are built: DMSBUILD_ROOT, else this folder
_ROOT = Path(os.environ.get("DMSBUILD_ROOT") or Path(__file__).resolve().parent)
(_ROOT / "artifacts").mkdir(exist_ok=True)

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "verbosity": 2,
    "dep_file": str(_ROOT / "artifacts" / ".doit.db"),
    "backend": "sqlite3",
}
