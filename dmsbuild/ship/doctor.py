"""`doit doctor [target=<name>]`: what is installed, what each target needs, and how to get what is missing.

Host checks look at this machine's toolchains (python, onnxruntime,
onnxruntime-qnn, the TensorRT Python package, trtexec, the SNPE SDK, free
disk). Board checks read the board facts gathered at deploy (CONTRACTS §4)
and compare them with what the target's runtime needs on the board. Every
missing piece comes with one line saying what to install.

Standard library only at import time (dodo.py imports this module); package
versions are read from their metadata, not by importing them.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from ..config import TargetProfile, load_target, target_names
from ..errors import UserError

Level = Literal["ok", "warning", "missing"]

#: free disk (MiB) the host build needs (ONNX variants, engines, context binaries, logs)
HOST_DISK_MB = 2048
#: free disk (MiB) a board needs for one more release
BOARD_DISK_MB = 512

FIX = {
    "python": "install Python >= 3.11 (e.g. apt install python3.11, or pyenv install 3.11)",
    "onnxruntime": "pip install onnxruntime  (the project's scripts/setup.sh does this)",
    "onnxruntime-qnn": "pip install 'dmsbuild[qnn]'  (onnxruntime-qnn >= 2.7; builds QNN HTP context binaries on x86_64)",
    "tensorrt-host": "optional: on a host with an NVIDIA GPU, pip install 'dmsbuild[tensorrt]' to build engines locally; "
                     "otherwise engines are built on the Jetson",
    "trtexec-host": "optional: install TensorRT (tar or deb from developer.nvidia.com/tensorrt) and put its bin/ on PATH",
    "snpe": "install the Qualcomm AI Runtime (QAIRT) SDK from https://qpm.qualcomm.com and set SNPE_ROOT to its folder; "
            "without it the target's SNPE DLC artifacts are skipped with an error, its QNN artifacts still build",
    "disk": "free disk space under artifacts/ (old engines and releases: rm -rf artifacts/cache)",
    "board-python": "install python3 (>= 3.8) on the board (apt install python3)",
    "board-numpy": "install numpy on the board (apt install python3-numpy, or pip install numpy)",
    "board-onnxruntime": "install onnxruntime on the board (pip install onnxruntime; aarch64 wheels are on PyPI)",
    "board-qnn": "install onnxruntime-qnn for the board's OS and the QAIRT runtime libraries (libQnnHtp.so, "
                 "libQnnHtpV73Skel.so) so ONNX Runtime lists QNNExecutionProvider",
    "board-tensorrt": "flash or upgrade JetPack (6.x ships TensorRT 10): sudo apt install nvidia-jetpack; "
                      "the Python bindings come as python3-libnvinfer",
    "board-trtexec": "trtexec comes with JetPack's TensorRT at /usr/src/tensorrt/bin/trtexec "
                     "(sudo apt install libnvinfer-bin); set backend.trtexec if it is elsewhere",
    "board-snpe": "copy the QAIRT SDK's aarch64 runtime (bin/aarch64-oe-linux-gcc11.2: snpe-net-run, "
                  "snpe-throughput-net-run; lib/: libSNPE.so, HTP skel libs) to the board and put it on PATH",
    "board-disk": "free space under the board's deploy root (lower deploy.keep_releases, or rollback and clean)",
}


@dataclass
class Check:
    """One finding: what was checked, what was found, and what to do when it is missing."""

    where: str  # "host" or the board's name
    what: str
    level: Level
    found: str | None
    needed_by: str = ""
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok     ", "warning": "warning", "missing": "MISSING"}[self.level]
        found = self.found if self.found is not None else "not found"
        need = f" (needed by {self.needed_by})" if self.needed_by else ""
        text = f"{mark} {self.where}: {self.what}: {found}{need}"
        return text if self.level == "ok" or not self.fix else f"{text}\n          -> {self.fix}"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _major_minor(v: str | None) -> tuple[int, ...]:
    if not v:
        return ()
    parts = []
    for p in v.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _runtime_of(profile: TargetProfile) -> str:
    return profile.runtime


def _snpe_enabled(profile: TargetProfile) -> bool:
    snpe = profile.backend.get("snpe", {})
    return profile.runtime == "snpe" or (profile.runtime == "qnn" and snpe.get("enabled", True) is not False)


# --------------------------------------------------------------------------
# host
# --------------------------------------------------------------------------
def check_host(profiles: Sequence[TargetProfile], artifacts: Path, *,
               version_of: Callable[[str], str | None] = _version,
               which: Callable[[str], str | None] = shutil.which,
               environ: Mapping[str, str] | None = None,
               disk_free_mb: Callable[[Path], float] | None = None) -> list[Check]:
    """Host toolchains, judged against what the given targets need (hooks make it testable)."""
    environ = os.environ if environ is None else environ
    runtimes = {_runtime_of(p) for p in profiles}
    names = lambda pred: ", ".join(p.name for p in profiles if pred(p)) or "-"  # noqa: E731
    checks: list[Check] = []

    py = platform.python_version()
    checks.append(Check("host", "python", "ok" if sys.version_info >= (3, 11) else "missing", py, "dmsbuild", FIX["python"]))

    ort = version_of("onnxruntime")
    checks.append(Check("host", "onnxruntime", "ok" if ort else "missing", ort, "every target (export, quantization, evaluation)",
                        FIX["onnxruntime"]))

    qnn = version_of("onnxruntime-qnn")
    if "qnn" in runtimes:
        level: Level = "ok" if qnn and _major_minor(qnn) >= (2, 7) else "missing"
        checks.append(Check("host", "onnxruntime-qnn", level, qnn, names(lambda p: p.runtime == "qnn"), FIX["onnxruntime-qnn"]))
        if qnn and ort and _major_minor(ort) < (1, 23):
            checks.append(Check("host", "onnxruntime for the QNN plugin EP", "missing", ort, "onnxruntime-qnn 2.x",
                                "pip install -U 'onnxruntime>=1.23' (plugin EPs need ONNX Runtime's EP device API)"))
    elif qnn:
        checks.append(Check("host", "onnxruntime-qnn", "ok", qnn))

    trt = version_of("tensorrt") or version_of("tensorrt-cu12")
    trtexec = which("trtexec")
    if "tensorrt" in runtimes:
        checks.append(Check("host", "tensorrt (Python, optional)", "ok" if trt else "warning", trt,
                            names(lambda p: p.runtime == "tensorrt"), FIX["tensorrt-host"]))
        checks.append(Check("host", "trtexec (optional)", "ok" if trtexec else "warning", trtexec,
                            names(lambda p: p.runtime == "tensorrt"), FIX["trtexec-host"]))
        if trt and _major_minor(trt) < (10,):
            checks.append(Check("host", "tensorrt >= 10", "missing", trt, "host engine builds",
                                "pip install -U 'tensorrt>=10' (the TensorRT 8 API is not supported)"))

    if runtimes & {"litert", "edgetpu"}:  # the .tflite converters (dmsbuild[litert]) and, for Coral, the compiler
        lite = names(lambda p: p.runtime in ("litert", "edgetpu"))
        for dist in ("litert-torch", "ai-edge-quantizer", "ai-edge-litert"):
            v = version_of(dist)
            checks.append(Check("host", dist, "ok" if v else "missing", v, lite, "pip install 'dmsbuild[litert]'"))
    if "edgetpu" in runtimes:
        from ..backends.edgetpu import COMPILER_ENV, INSTALL_HINT, is_double

        given = environ.get(COMPILER_ENV) or "edgetpu_compiler"
        found = which(given) or (given if os.path.isfile(given) else None)
        shown = f"{found} (test double)" if found and is_double(found) else found
        checks.append(Check("host", "edgetpu_compiler", "ok" if found else "missing", shown,
                            names(lambda p: p.runtime == "edgetpu"), INSTALL_HINT))

    snpe_targets = [p for p in profiles if _snpe_enabled(p)]
    if snpe_targets:
        from ..backends.snpe import find_sdk

        try:
            sdk = find_sdk(environ)
            checks.append(Check("host", "SNPE SDK", "ok", f"{sdk.root} (from {sdk.env_var})"))
        except UserError as exc:
            checks.append(Check("host", "SNPE SDK", "missing" if any(p.runtime == "snpe" for p in snpe_targets) else "warning",
                                None, ", ".join(p.name for p in snpe_targets) + " (DLC artifacts)",
                                FIX["snpe"] if "not found" in str(exc) else str(exc).splitlines()[0]))

    probe = artifacts if artifacts.exists() else artifacts.parent
    free = disk_free_mb(probe) if disk_free_mb else shutil.disk_usage(probe).free / 2**20
    checks.append(Check("host", f"free disk at {probe}", "ok" if free >= HOST_DISK_MB else "missing",
                        f"{free:.0f} MiB", f"builds (>= {HOST_DISK_MB} MiB)", FIX["disk"]))
    return checks


# --------------------------------------------------------------------------
# boards
# --------------------------------------------------------------------------
def check_board(board: str, facts: Mapping[str, Any], profile: TargetProfile) -> list[Check]:
    """What ``profile`` needs on a board, from its facts dict (CONTRACTS §4; a missing component is null)."""
    rt = profile.runtime
    need = f"target {profile.name} ({rt})"
    checks: list[Check] = []

    def have(key: str) -> Any:
        return facts.get(key)

    arch = have("arch")
    if profile.arch != "any":
        if arch == profile.arch:
            checks.append(Check(board, "arch", "ok", arch))
        else:
            # an engine is tied to the board's GPU: wrong arch is fatal there, a warning for portable ONNX
            level: Level = "missing" if rt == "tensorrt" else "warning"
            checks.append(Check(board, "arch", level, arch, need,
                                f"the profile expects {profile.arch}; this board reports {arch}"
                                + (" (emulated board?) - TensorRT engines are not portable" if level == "missing" else
                                   " (emulated board?) - portable artifacts still run")))

    py = have("python")
    checks.append(Check(board, "python3", "ok" if py else "missing", py, need, FIX["board-python"]))
    checks.append(Check(board, "numpy", "ok" if have("numpy") else "missing", have("numpy"), need, FIX["board-numpy"]))

    if rt in ("onnxruntime", "qnn"):  # (litert/edgetpu boards need no onnxruntime: runner/litert_runner.py)
        ort = have("onnxruntime")
        checks.append(Check(board, "onnxruntime", "ok" if ort else "missing", ort, need, FIX["board-onnxruntime"]))
    if rt == "qnn":
        providers = have("onnxruntime_providers") or []
        qnn = have("onnxruntime_qnn")
        ok = bool(qnn) or "QNNExecutionProvider" in providers
        checks.append(Check(board, "QNN execution provider", "ok" if ok else "missing",
                            qnn or (", ".join(providers) if providers else None), need, FIX["board-qnn"]))
        if _snpe_enabled(profile):
            snpe = have("snpe")
            checks.append(Check(board, "SNPE runtime (snpe-net-run)", "ok" if snpe else "warning", snpe,
                                f"{profile.name} DLC artifacts", FIX["board-snpe"]))
    if rt == "snpe":
        snpe = have("snpe")
        checks.append(Check(board, "SNPE runtime (snpe-net-run)", "ok" if snpe else "missing", snpe, need, FIX["board-snpe"]))
    if rt == "tensorrt":
        trt = have("tensorrt")
        level = "ok" if trt and _major_minor(str(trt)) >= (10,) else "missing"
        checks.append(Check(board, "TensorRT >= 10", level, trt, need, FIX["board-tensorrt"]))
        checks.append(Check(board, "trtexec", "ok" if have("trtexec") else "missing", have("trtexec"), need,
                            FIX["board-trtexec"]))

    if rt in ("litert", "edgetpu"):
        lite = have("litert")
        checks.append(Check(board, "LiteRT interpreter", "ok" if lite else "missing", lite, need,
                            "pip install ai-edge-litert (Coral: apt-get install python3-tflite-runtime)"))
    if rt == "edgetpu":
        tpu = have("edgetpu") or {}
        lib, devices = tpu.get("library"), [*(tpu.get("pcie") or []), *(tpu.get("usb") or [])]
        emulated = bool(have("emulated"))
        level = "ok" if lib else "warning" if emulated else "missing"
        checks.append(Check(board, "Edge TPU delegate (libedgetpu.so.1)", level, lib, need,
                            "emulated board: the Edge TPU model runs on LiteRT's CPU path" if emulated and not lib else
                            "apt-get install libedgetpu1-std (Coral apt repository coral-edgetpu-stable)"))
        level = "ok" if devices else "warning" if emulated else "missing"
        checks.append(Check(board, "Edge TPU device (USB or PCIe)", level, ", ".join(devices) or None, need,
                            "emulated board: no Edge TPU" if emulated and not devices else
                            "plug in the USB Accelerator (lsusb: 1a6e:089a / 18d1:9302) or install the PCIe driver "
                            "(gasket-dkms: /dev/apex_0)"))

    disk = have("disk_free_mb")
    if disk is None:
        checks.append(Check(board, "free disk", "warning", None, need, "the board did not report free disk"))
    else:
        checks.append(Check(board, "free disk", "ok" if disk >= BOARD_DISK_MB else "missing", f"{disk:.0f} MiB",
                            f"{need}, >= {BOARD_DISK_MB} MiB", FIX["board-disk"]))
    return checks


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def report(checks: Sequence[Check]) -> tuple[str, bool]:
    """Printable report and whether nothing required is missing."""
    lines = [c.line() for c in checks]
    missing = [c for c in checks if c.level == "missing"]
    warnings = [c for c in checks if c.level == "warning"]
    lines.append(f"doctor: {len(checks) - len(missing) - len(warnings)} ok, {len(warnings)} warning(s), "
                 f"{len(missing)} missing")
    return "\n".join(lines), not missing


def run(root: Path, target: str | None = None,
        board_facts: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
        board_checks: Sequence[Check] = ()) -> tuple[str, bool]:
    """Check the host for ``target`` (or every target) and each board's facts.

    ``board_facts`` maps a board name to (target name, facts dict); the deploy
    part gathers them (one remote command per board) and passes them in.
    """
    names = [target] if target else target_names(root)
    profiles = [load_target(root, n) for n in names]
    checks = check_host(profiles, root / "artifacts")
    by_name = {p.name: p for p in profiles}
    for board, (tname, facts) in sorted((board_facts or {}).items()):
        prof = by_name.get(tname) or load_target(root, tname)
        checks += check_board(board, facts, prof)
    return report([*checks, *board_checks])


# --------------------------------------------------------------------------
# boards over SSH (`doit doctor target=X`) and the deploy's pre-flight
# --------------------------------------------------------------------------
#: what a release cannot run without: `doit deploy` refuses such a board before uploading anything
PREFLIGHT = ("python3", "numpy", "onnxruntime", "trtexec")

#: run on the board with the deploy root: the folders a deploy writes that this user cannot (standard library only)
WRITABLE_SCRIPT = r"""
import json, os, sys
root = sys.argv[1]
bad = []
for f in (root, os.path.join(root, "objects"), os.path.join(root, "objects", ".tmp"), os.path.join(root, "releases")):
    d = f
    while d and d != "/" and not os.path.isdir(d):
        d = os.path.dirname(d)
    if not os.access(d, os.W_OK | os.X_OK) and d not in bad:
        bad.append(d)
print(json.dumps(bad))
"""


def preflight(board: str, facts: Mapping[str, Any], profile: TargetProfile) -> list[Check]:
    """The missing pieces that stop ``profile``'s release from running on this board (from its facts)."""
    return [c for c in check_board(board, facts, profile) if c.level == "missing" and c.what in PREFLIGHT]


def summarize(board: str, checks: Sequence[Check]) -> Check:
    """One line for a board: the worst level, what was found, and every fix needed."""
    level: Level = "missing" if any(c.level == "missing" for c in checks) else \
        "warning" if any(c.level == "warning" for c in checks) else "ok"
    found = "; ".join(f"{c.what} {c.found if c.found is not None else 'not found'}" for c in checks)
    fixes = "; ".join(dict.fromkeys(c.fix for c in checks if c.level != "ok" and c.fix))
    return Check(board, "board", level, found, "", fixes)


def check_remote_board(board: Any, profile: TargetProfile) -> Check:
    """Connect to one inventory board and check it: route, authentication and host key (the connection),
    Python and runtimes, arch, free disk and the writability of the exact folders a deploy writes."""
    import json

    from . import facts as facts_mod
    from .transport import open_transport, resolve_root

    transport = open_transport(board)
    try:
        try:
            transport.connect()
        except UserError as exc:  # unreachable, host key, authentication: the message says which, the hint what to do
            text = str(exc).splitlines()
            hint = next((ln.strip()[len("hint:"):].strip() for ln in text[1:] if ln.strip().startswith("hint:")), "")
            return Check(board.name, "board", "missing", text[0], "", hint)
        endpoint = getattr(transport, "endpoint", None)
        checks = [Check(board.name, "reached", "ok", endpoint.describe() if endpoint is not None else "this machine")]
        try:
            root = resolve_root(transport, board, profile)
            facts = facts_mod.gather(transport, board.python, root)
        except UserError as exc:
            return Check(board.name, "board", "missing", str(exc).splitlines()[0], "",
                         f"{FIX['board-python']}, or set the board's python in the inventory")
        checks += check_board(board.name, facts, profile)
        res = transport.run([board.python, "-c", WRITABLE_SCRIPT, root], timeout=60)
        try:
            bad = json.loads(res.stdout.strip().splitlines()[-1]) if res.ok else None
        except (ValueError, IndexError):
            bad = None
        if bad is None:
            checks.append(Check(board.name, f"writable {root}", "warning", None, "", "could not check (see the board's python)"))
        else:
            checks.append(Check(board.name, f"writable {root}", "missing" if bad else "ok",
                                ("not writable: " + ", ".join(bad)) if bad else "yes", "",
                                f"let the board user write {', '.join(bad)} (chown/chmod), or set the board's root"))
        return summarize(board.name, checks)
    finally:
        transport.close()


def check_boards(boards: Sequence[Any], profile: TargetProfile, parallel: int = 16) -> list[Check]:
    """Every board at once (one connection each), one summarized Check per board, in inventory order."""
    from concurrent.futures import ThreadPoolExecutor

    if not boards:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(boards)))) as pool:
        return list(pool.map(lambda b: check_remote_board(b, profile), boards))
