"""`doit doctor [target=<name>]`: what is installed, what each target needs, and how to get what is missing.

Host checks look at this machine's toolchains (python, onnxruntime,
onnxruntime-qnn, the TensorRT Python package, trtexec, the SNPE SDK, free
disk). Board checks read the board facts gathered at deploy (CONTRACTS §4)
and compare them with what the target's runtime needs on the board. Every
missing piece comes with one line saying what to install.

Standard library only at import time (dodo.py imports this module; the
backends' modules are imported when a check runs); package versions are read
from their metadata, not by importing them. Each runtime's own checks are its
backend's ``host_checks`` / ``board_checks`` (dmsbuild/backends/base.py).
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..backends import get_backend
from ..backends.base import Check, HostEnv, Level
from ..config import TargetProfile, load_target, target_names
from ..errors import UserError

#: free disk (MiB) the host build needs (ONNX variants, engines, context binaries, logs)
HOST_DISK_MB = 2048
#: free disk (MiB) a board needs for one more release
BOARD_DISK_MB = 512

#: fixes of the checks every target has; a runtime's own checks carry their fixes (backends/<runtime>.py)
FIX = {
    "python": "install Python >= 3.11 (e.g. apt install python3.11, or pyenv install 3.11)",
    "onnxruntime": "pip install onnxruntime  (the project's scripts/setup.sh does this)",
    "disk": "free disk space under artifacts/ (old engines and releases: rm -rf artifacts/cache)",
    "board-python": "install python3 (>= 3.8) on the board (apt install python3)",
    "board-numpy": "install numpy on the board (apt install python3-numpy, or pip install numpy)",
    "board-disk": "free space under the board's deploy root (lower deploy.keep_releases, or rollback and clean)",
}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _by_runtime(profiles: Sequence[TargetProfile]) -> dict[str, list[TargetProfile]]:
    out: dict[str, list[TargetProfile]] = {}
    for p in profiles:
        out.setdefault(p.runtime, []).append(p)
    return out


def merged(checks: Sequence[Check]) -> list[Check]:
    """One line per thing checked where: two runtimes checking one tool (the SNPE SDK for QNN's DLCs and for
    SNPE) become one check at the worse level, needed by both."""
    order = {"ok": 0, "warning": 1, "missing": 2}
    out: dict[tuple[str, str], Check] = {}
    for c in checks:
        key = (c.where, c.what)
        have = out.get(key)
        if have is None:
            out[key] = Check(c.where, c.what, c.level, c.found, c.needed_by, c.fix)
            continue
        if order[c.level] > order[have.level]:
            have.level, have.found, have.fix = c.level, c.found, c.fix
        needs = [n for n in (have.needed_by, c.needed_by) if n]
        have.needed_by = ", ".join(dict.fromkeys(needs))
    return list(out.values())


# --------------------------------------------------------------------------
# host
# --------------------------------------------------------------------------
def check_host(profiles: Sequence[TargetProfile], artifacts: Path, *,
               version_of: Callable[[str], str | None] = _version,
               which: Callable[[str], str | None] = shutil.which,
               environ: Mapping[str, str] | None = None,
               disk_free_mb: Callable[[Path], float] | None = None) -> list[Check]:
    """Host toolchains, judged against what the given targets need (hooks make it testable): the checks every
    target has, then each runtime's own (its backend's ``host_checks``)."""
    env = HostEnv(version_of, which, os.environ if environ is None else environ)
    checks: list[Check] = []

    py = platform.python_version()
    checks.append(Check("host", "python", "ok" if sys.version_info >= (3, 11) else "missing", py, "dmsbuild", FIX["python"]))

    ort = version_of("onnxruntime")
    checks.append(Check("host", "onnxruntime", "ok" if ort else "missing", ort, "every target (export, quantization, evaluation)",
                        FIX["onnxruntime"]))
    for runtime, mine in sorted(_by_runtime(profiles).items()):
        checks += get_backend(runtime, str(mine[0].source)).host_checks(mine, env)

    probe = artifacts if artifacts.exists() else artifacts.parent
    free = disk_free_mb(probe) if disk_free_mb else shutil.disk_usage(probe).free / 2**20
    checks.append(Check("host", f"free disk at {probe}", "ok" if free >= HOST_DISK_MB else "missing",
                        f"{free:.0f} MiB", f"builds (>= {HOST_DISK_MB} MiB)", FIX["disk"]))
    return merged(checks)


# --------------------------------------------------------------------------
# boards
# --------------------------------------------------------------------------
def check_board(board: str, facts: Mapping[str, Any], profile: TargetProfile) -> list[Check]:
    """What ``profile`` needs on a board, from its facts dict (CONTRACTS §4; a missing component is null): the
    checks every board has, and the runtime's own (its backend's ``board_checks``)."""
    backend = get_backend(profile.runtime, str(profile.source))
    need = f"target {profile.name} ({profile.runtime})"
    checks: list[Check] = []

    def have(key: str) -> Any:
        return facts.get(key)

    arch = have("arch")
    if profile.arch != "any":
        if arch == profile.arch:
            checks.append(Check(board, "arch", "ok", arch))
        else:
            # an engine is tied to the board's GPU: wrong arch is fatal there, a warning for portable ONNX
            level: Level = "missing" if backend.arch_bound else "warning"
            checks.append(Check(board, "arch", level, arch, need,
                                f"the profile expects {profile.arch}; this board reports {arch}"
                                + (f" (emulated board?) - {profile.runtime} artifacts are not portable"
                                   if level == "missing" else " (emulated board?) - portable artifacts still run")))

    py = have("python")
    checks.append(Check(board, "python3", "ok" if py else "missing", py, need, FIX["board-python"]))
    checks.append(Check(board, "numpy", "ok" if have("numpy") else "missing", have("numpy"), need, FIX["board-numpy"]))
    checks += backend.board_checks(board, facts, profile)

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
    from ..transport import open_transport, resolve_root

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
        # the board probe's --writable mode (board/runner/probe.py): the folders a deploy writes that this user cannot
        res = transport.run([board.python, "-c", facts_mod.FACTS_SCRIPT, "--writable", root], timeout=60)
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
