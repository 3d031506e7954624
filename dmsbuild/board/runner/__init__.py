"""The benchmark runner shipped inside each release (runs alone on the board).

The deploy step copies ``RUNNER_SOURCE`` into every release at ``RELEASE_PATH``.
"""
from pathlib import Path

RUNNER_SOURCE = Path(__file__).with_name("dms_bench.py")
RELEASE_PATH = "runner/dms_bench.py"
