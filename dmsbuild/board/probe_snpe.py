"""The SNPE board driver's probe: where snpe-net-run and snpe-diagview are on the board.

Runs ON THE BOARD (standard library), sent by the host as ``python3 -c <this file's source> <backend.snpe.board_bin>``
(dmsbuild/backends/snpe_board.py ``probe``): ``board_bin``, else PATH, else ``$SNPE_ROOT/bin/<arch>``. Prints one
JSON object.
"""
import glob
import json
import os
import shutil
import sys


def find(name, folder):
    if folder:
        p = os.path.join(folder, name)
        return p if os.path.isfile(p) and os.access(p, os.X_OK) else None
    p = shutil.which(name)
    if p:
        return p
    root = os.environ.get("SNPE_ROOT") or os.environ.get("QAIRT_SDK_ROOT")
    for p in sorted(glob.glob(os.path.join(root, "bin", "*", name))) if root else []:
        if os.access(p, os.X_OK) and "x86_64" not in p:
            return p
    return None


def main(argv):
    net_run = find("snpe-net-run", argv[0])
    diag = find("snpe-diagview", os.path.dirname(net_run) if net_run else argv[0]) or shutil.which("snpe-diagview")
    print(json.dumps({"snpe_net_run": net_run, "snpe_diagview": diag}))


if __name__ == "__main__":
    main(sys.argv[1:])
