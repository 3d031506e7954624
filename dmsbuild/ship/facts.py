"""Board facts: what a board has (docs/CONTRACTS.md §4), gathered by one remote command.

Facts are read, never changed (operations live in release.py). A component
that is missing is ``null``. Versions come from package metadata and the tools'
own version output, so gathering stays quick.
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import UserError
from .transport.base import Transport

#: runs on the board with its Python; standard library, optional imports guarded
FACTS_SCRIPT = r'''
import json, os, platform, shutil, socket, subprocess, sys
_DISTS = None
def ver(mod):
    # one listdir per sys.path entry instead of importlib.metadata's full scan per lookup
    global _DISTS
    if _DISTS is None:
        _DISTS = {}
        for d in sys.path:
            try:
                names = os.listdir(d or ".")
            except OSError:
                continue
            for n in names:
                if n.endswith(".dist-info") and "-" in n:
                    name, _, version = n[:-10].rpartition("-")
                    _DISTS.setdefault(name.lower().replace("-", "_").replace(".", "_"), version)
    return _DISTS.get(mod.lower().replace("-", "_").replace(".", "_"))
def providers(root):
    # importing onnxruntime costs ~0.1-1 s; its provider list is cached per installed version
    ort = ver("onnxruntime") or ver("onnxruntime-gpu") or ver("onnxruntime-qnn")
    if ort is None:
        return None
    key = "%s|%s|%s" % (sys.executable, ort, ver("onnxruntime-qnn"))
    cache = os.path.join(root, ".facts-cache.json")
    try:
        with os.fdopen(os.open(cache, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))) as fh:
            got = json.load(fh)
        if got.get("key") == key:
            return got["providers"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        import onnxruntime
        found = onnxruntime.get_available_providers()
    except Exception:
        return None
    # only into a deploy root dmsbuild made (its marker, see release_agent.claim_root): never someone else's folder
    if os.path.isfile(os.path.join(root, ".dmsbuild-root")) and not os.path.islink(os.path.join(root, ".dmsbuild-root")):
        try:
            # a fresh name opened O_EXCL|O_NOFOLLOW: a planted symlink cannot redirect the write outside the root
            tmp = "%s.tmp.%d" % (cache, os.getpid())
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "w") as fh:
                json.dump({"key": key, "providers": found}, fh)
            os.replace(tmp, cache)
        except OSError:
            pass
    return found
def tool(cmd):
    path = shutil.which(cmd[0])
    if not path:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else path
    except Exception:
        return path
def mem_mb():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
def edgetpu():
    import glob
    lib = [p for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf",
                       "/usr/lib", "/usr/local/lib") for p in [os.path.join(d, "libedgetpu.so.1")] if os.path.exists(p)]
    usb = []
    for dev in glob.glob("/sys/bus/usb/devices/*"):
        try:
            with open(dev + "/idVendor") as a, open(dev + "/idProduct") as b:
                pair = (a.read().strip(), b.read().strip())
        except OSError:
            continue
        if pair in (("1a6e", "089a"), ("18d1", "9302")):
            usb.append(":".join(pair))
    pcie = sorted(glob.glob("/dev/apex_*"))
    if not (lib or usb or pcie):
        return None
    return {"library": lib[0] if lib else None, "usb": usb, "pcie": pcie}
root = sys.argv[1]
probe = root
while probe and not os.path.exists(probe):
    probe = os.path.dirname(probe)
st = os.statvfs(probe or "/")
os_name = platform.system()
try:
    with open("/etc/os-release") as fh:
        kv = dict(l.rstrip().split("=", 1) for l in fh if "=" in l)
        os_name = kv.get("PRETTY_NAME", os_name).strip('"')
except OSError:
    pass
print(json.dumps({
    "hostname": socket.gethostname(), "arch": platform.machine(), "os": os_name, "kernel": platform.release(),
    "python": platform.python_version(), "numpy": ver("numpy"),
    "onnxruntime": ver("onnxruntime") or ver("onnxruntime-gpu") or ver("onnxruntime-qnn"),
    "onnxruntime_providers": providers(root), "onnxruntime_qnn": ver("onnxruntime-qnn"),
    "tensorrt": ver("tensorrt"), "trtexec": tool(["trtexec", "--version"]) if shutil.which("trtexec") else None,
    "snpe": tool(["snpe-net-run", "--version"]) if shutil.which("snpe-net-run") else None,
    "disk_free_mb": st.f_bavail * st.f_frsize // (1 << 20), "mem_total_mb": mem_mb(),
    "emulated": os.environ.get("DMSBUILD_EMULATED_BOARD") or None,
    "litert": ver("ai-edge-litert") or ver("tflite-runtime"),
    # the Edge TPU runtime's delegate and a PCIe (/dev/apex_*) or USB (1a6e:089a / 18d1:9302) Edge TPU
    "edgetpu": edgetpu(),
}))
'''

FACT_KEYS = ("hostname", "arch", "os", "kernel", "python", "numpy", "onnxruntime", "onnxruntime_providers",
             "onnxruntime_qnn", "tensorrt", "trtexec", "snpe", "disk_free_mb", "mem_total_mb", "litert", "edgetpu",
             # set by `python -m dmsbuild.boards up` (sshd SetEnv): this "board" is this machine standing in for one
             "emulated")


def gather(transport: Transport, python: str, root: str) -> dict[str, Any]:
    """Run the facts script on the board (one command) and parse its JSON."""
    res = transport.run([python, "-c", FACTS_SCRIPT, root], timeout=60)
    if not res.ok:
        raise UserError(
            f"board '{transport.name}': gathering facts with {python} failed (exit {res.exit_status}): {res.stderr_tail(3)}",
            hint="the board needs Python 3; set the board's 'python' in the inventory",
        )
    try:
        facts = json.loads(res.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise UserError(f"board '{transport.name}': facts command printed no JSON: {res.stdout[-200:]!r}") from None
    return {k: facts.get(k) for k in FACT_KEYS}


def _arch_family(arch: str) -> str:
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch.lower(), arch.lower())


#: non-portable artifact kinds an emulated board can still run: a QNN context on onnxruntime-qnn's x86_64 HTP simulator,
#: an Edge TPU model (the compiler double's output) on LiteRT's CPU path (runner/litert_runner.py says so per result)
SIMULATED_KINDS = ("qnn-context", "edgetpu-tflite")


def check_arch(board: str, expected: str, facts: dict[str, Any], artifacts: list[dict[str, Any]]) -> list[str]:
    """Warnings for portable artifacts on an unexpected arch; UserError for a non-portable one."""
    got = facts.get("arch") or "unknown"
    if expected == "any" or _arch_family(got) == _arch_family(expected):
        return []
    tied = [a["name"] for a in artifacts if not a.get("portable", True)]
    simulated = [a["name"] for a in artifacts if not a.get("portable", True) and a.get("kind") in SIMULATED_KINDS]
    if tied and facts.get("emulated") and simulated == tied:
        return [f"board '{board}': emulated {expected} board on {got} ({facts['emulated']}); {', '.join(tied)} "
                "run on its simulator / test double, not on the real hardware"]
    if tied:
        raise UserError(
            f"board '{board}': arch is {got} but the target expects {expected}, and {', '.join(tied)} "
            "is tied to the board's arch/GPU (not portable)",
            hint="deploy this target only to boards of its arch, or rebuild on/for this board",
        )
    return [f"board '{board}': arch is {got}, the target expects {expected}; shipping portable artifacts anyway"]
