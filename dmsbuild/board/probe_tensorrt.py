"""The TensorRT board driver's probe: where trtexec is, its TensorRT version, the GPU's compute capability.

Runs ON THE BOARD (standard library; ``tensorrt`` guarded), sent by the host as
``python3 -c <this file's source> <backend.trtexec>`` (dmsbuild/backends/trt_board.py ``probe``): it runs
before any engine exists, from the host's copy. Prints one JSON object.
"""
import json
import os
import re
import shutil
import subprocess
import sys


def main(argv):
    cand = argv[0]
    path = cand if os.path.isfile(cand) and os.access(cand, os.X_OK) else shutil.which("trtexec")
    tag = None
    if path:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=120).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        m = re.search(r"\[TensorRT v(\d+)\]", out)
        tag = m.group(1) if m else None
    cc, how = None, None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            lines = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=60).stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            lines = []
        if lines and re.fullmatch(r"\d+\.\d+", lines[0].strip()):
            cc, how = lines[0].strip(), "nvidia-smi"
    if cc is None:
        try:
            compat = open("/proc/device-tree/compatible", "rb").read().decode(errors="replace")
        except OSError:
            compat = ""
        for soc, value in (("tegra234", "8.7"), ("tegra194", "7.2"), ("tegra186", "6.2"), ("tegra210", "5.3")):
            if soc in compat:
                cc, how = value, "device-tree " + soc
                break
    try:
        import tensorrt
        trt_py = str(tensorrt.__version__)
    except ImportError:
        trt_py = None
    print(json.dumps({"trtexec": path, "tag": tag, "compute_capability": cc, "cc_source": how, "tensorrt_python": trt_py}))


if __name__ == "__main__":
    main(sys.argv[1:])
