#!/usr/bin/env python3
"""What a board has (docs/CONTRACTS.md §4) and whether a deploy can write its folders: the one board probe.

Runs ON THE BOARD with its Python, standard library only (onnxruntime is
imported, guarded, only for its provider list). Three ways in, one code:

- before any release exists (deploy, `doit doctor`), the host sends this
  file's source: ``python3 -c <source> ROOT`` prints the facts JSON
  (``ship/facts.py``), ``python3 -c <source> --writable ROOT`` the folders a
  deploy writes that this user cannot (``ship/doctor.py``); the release agent
  runs the same source in its own process (``release_agent.run_facts``);
- inside a release it is ``runner/probe.py``, imported by its sibling
  ``runner/dms_bench.py`` (``--facts`` and every results document).

Versions come from the installed distributions' metadata (one listdir per
``sys.path`` entry) and the tools' own version output, so probing stays quick.
A component that is missing is null. The keys name installed software, read
by each runtime's board checks (``backends/<runtime>.py``), not branched on.
"""
import json
import os
import platform
import shutil
import sys

# subprocess (only when a tool is installed) and socket are not imported up front: the release agent runs this
# probe in its own process on every deploy, and on a board with none of the tools they were a fifth of its imports

_DISTS = None


def ver(mod):
    """The installed version of distribution ``mod`` (None: not installed)."""
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


def ort_version():
    return ver("onnxruntime") or ver("onnxruntime-gpu") or ver("onnxruntime-qnn")


def providers(root):
    """ONNX Runtime's providers; "missing" when this Python cannot import it, "broken: <why>" when importing it
    fails otherwise; importing
    onnxruntime costs ~0.1-1 s, so the list is cached per installed version."""
    ort = ort_version()
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
        found = list(onnxruntime.get_available_providers())
    except ImportError:  # installed elsewhere, but this Python does not see it: not installed for it
        return "missing"
    except Exception as exc:  # installed but broken: a fact to report, not a crash
        return ("broken: %s: %s" % (type(exc).__name__, exc))[:200]
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
    """The first line of ``cmd``'s version output; its path when it prints nothing; None when not on PATH."""
    path = shutil.which(cmd[0])
    if not path:
        return None
    import subprocess

    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else path
    except Exception:
        return path


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def mem_mb():
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def os_name():
    name = platform.system()
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return name


def cpu_model():
    """The CPU's model name (/proc/cpuinfo; ARM boards say "Model" or only the part number): `doit tune` keys
    its measurements by it, so a result is reused only on the same kind of CPU."""
    fields = {}
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    for key in ("model name", "Model", "Hardware", "CPU part"):
        if fields.get(key):
            return fields[key][:120]
    return platform.processor() or None


def hostname():
    """The host's name: on Linux (and every POSIX system) the uname node name is what gethostname(2) returns."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def disk_free_mb(root):
    """Free MiB of the file system ``root`` is (or would be) on."""
    probe = root
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe or "/")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize // (1 << 20)


#: USB ids of a Coral USB Accelerator: before its firmware is loaded (1a6e:089a) and after (18d1:9302)
EDGETPU_USB = (("1a6e", "089a"), ("18d1", "9302"))
EDGETPU_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf",
                    "/usr/lib", "/usr/local/lib")


def edgetpu():
    """The Edge TPU runtime's delegate library and a PCIe (/dev/apex_*) or USB Edge TPU; None when none is here."""
    import glob

    lib = [p for p in (os.path.join(d, "libedgetpu.so.1") for d in EDGETPU_LIB_DIRS) if os.path.exists(p)]
    usb = []
    for dev in glob.glob("/sys/bus/usb/devices/*"):
        pair = (_read(dev + "/idVendor"), _read(dev + "/idProduct"))
        if pair in EDGETPU_USB:
            usb.append(":".join(pair))
    pcie = sorted(glob.glob("/dev/apex_*"))
    if not (lib or usb or pcie):
        return None
    return {"library": lib[0] if lib else None, "usb": usb, "pcie": pcie}


def gather(root):
    """Every fact of this board (CONTRACTS §4); ``root``: the deploy root (disk, provider cache). An onnxruntime
    that this Python cannot import is null, one that fails to import otherwise ``"broken: <why>"``."""
    cpu0 = "/sys/devices/system/cpu/cpu0/cpufreq/"
    max_khz = _read(cpu0 + "scaling_max_freq")
    ort, found = ort_version(), providers(root)
    if isinstance(found, str):
        ort, found = (None if found == "missing" else found), None
    return {
        "hostname": hostname(), "arch": platform.machine(), "os": os_name(), "kernel": platform.release(),
        "python": platform.python_version(), "numpy": ver("numpy"),
        "onnxruntime": ort, "onnxruntime_providers": found, "onnxruntime_qnn": ver("onnxruntime-qnn"),
        "tensorrt": ver("tensorrt"), "trtexec": tool(["trtexec", "--version"]),
        "snpe": tool(["snpe-net-run", "--version"]),
        "litert": ver("ai-edge-litert") or ver("tflite-runtime"),  # the LiteRT interpreter (runner/litert_runner.py)
        "edgetpu": edgetpu(),
        "disk_free_mb": disk_free_mb(root), "mem_total_mb": mem_mb(),
        "emulated": os.environ.get("DMSBUILD_EMULATED_BOARD") or None,  # set by `python -m dmsbuild.boards up`
        "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
        "cpu_governor": _read(cpu0 + "scaling_governor"),
        "cpu_max_mhz": int(max_khz) // 1000 if max_khz and max_khz.isdigit() else None,
    }


def not_writable(root):
    """The folders a deploy writes under ``root`` that this user cannot write (their nearest existing parent)."""
    bad = []
    for f in (root, os.path.join(root, "objects"), os.path.join(root, "objects", ".tmp"), os.path.join(root, "releases")):
        d = f
        while d and d != "/" and not os.path.isdir(d):
            d = os.path.dirname(d)
        if not os.access(d, os.W_OK | os.X_OK) and d not in bad:
            bad.append(d)
    return bad


def main(argv):
    if argv[:1] == ["--writable"]:
        print(json.dumps(not_writable(argv[1])))
    else:
        print(json.dumps(gather(argv[0] if argv else os.getcwd())))
    return 0


if __name__ in ("__main__", "__facts__"):  # "__facts__": the release agent runs the source in its own process
    main(sys.argv[1:])
