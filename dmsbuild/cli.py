"""The ``dmsbuild`` command (also ``python -m dmsbuild``): what is not a doit task.

    dmsbuild --version
    dmsbuild new PATH                 # a starter project (then: cd PATH && doit list)
    dmsbuild boards up|down|status    # emulated boards (dmsbuild.boards)

Building, deploying and reporting are doit tasks of the project's dodo.py.
A user error prints one line (and its hint) and exits 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import UserError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["boards"]:  # its own options (--count, --net, ...): dmsbuild.boards parses them
        from .boards import main as boards_main

        return boards_main(argv[1:])
    ap = argparse.ArgumentParser(prog="dmsbuild", description="Build, ship and measure DMS models on your own boards. "
                                 "The build, deploy and report steps are doit tasks: `doit list` in a project.")
    ap.add_argument("--version", action="version", version=f"dmsbuild {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    new = sub.add_parser("new", help="write a starter project into PATH (a new or an existing folder)")
    new.add_argument("path", type=Path, metavar="PATH")
    sub.add_parser("boards", help="emulated boards: dmsbuild boards up|down|status [--count N] (see --help there)")
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 2
    try:
        from .convert.scaffold import new_project

        written = new_project(args.path)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = args.path.expanduser().resolve()
    for p in written:
        print(f"new: wrote {p.relative_to(root)}")
    print(f"new: next, in {root}:\n"
          "  doit init onnx=YOUR_MODEL.onnx data=YOUR_IMAGES/   # dmsbuild.toml from your model\n"
          "  doit build && doit deploy                          # this machine (target local)\n"
          "  dmsbuild boards up && doit deploy target=rpi5      # emulated boards (targets/inventory.toml)")
    return 0
