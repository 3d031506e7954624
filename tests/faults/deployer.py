"""A deploying process for the fault suite: ``python -m tests.faults.deployer PROJECT INVENTORY BOARD ROOT KEEP``.

Deploys the project's rpi5 build to one board and prints the outcome as JSON;
DMSBUILD_FAULT_AT in its environment kills or pauses it at a named step.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from dmsbuild.config import load_project, load_target
from dmsbuild.ship.inventory import load_inventory
from dmsbuild.pipeline.deploy import deploy_target


def main(argv: list[str]) -> int:
    project_dir, inventory, name, root, keep = argv
    prof = load_target(Path(project_dir), "rpi5")
    prof.arch = "any"
    prof.deploy.keep_releases = int(keep)
    board = load_inventory(Path(inventory), Path(project_dir)).boards[name]
    board.root = root
    out = deploy_target(load_project(Path(project_dir)), prof, [board])[0]
    print(json.dumps({**{k: v for k, v in asdict(out).items() if k != "facts"}, "message": out.message}))
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
