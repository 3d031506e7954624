"""Hand a release to Mender: a Mender artifact of the target's release, and its results back from the fleet.

``write_bundle`` renders the same release ``doit deploy`` pushes (``manifest.make_release``: the
content-addressed files and ``manifest.json``) and packs it with ``mender-artifact write
module-image`` (Debian's ``mender-artifact``; a maintained tool that writes, checksums and signs the
format, rather than a tar of our own) as a payload for the Update Module ``dmsbuild-release``
(``board/mender/dmsbuild_release.py``): the release's files named by their sha256, the plan
(``dmsbuild-release.json``: release id, file list, keep count, the target's accuracy floors), the board
agent (``board/release_agent.py``) and the shared judge (``board/runner/judge.py``). On the board the
module stages, verifies, switches, checks and rolls back with them (docs/ota.md).

Mender's conventions: the artifact name is ``<project>-<target>-<release id>``; device types are the
profile's ``deploy.device_types`` (default: the target name), which the client checks against the
board's ``device_type``; provides ``dmsbuild.<target>.version`` = the release id (``--software-*``),
``dmsbuild.project`` and ``dmsbuild.model`` (the FP32 model's sha256), which the client reports as
inventory. A board already running another project or target refuses the artifact in the module
(a depends on provides would also refuse a board's first install, which has none).

``pull_results`` collects what the module left on each board (``<root>/mender/results/*.json``) into
results.sqlite, stamped with the route (``provenance.with_route(source, "mender")``), and judges it with
the same gates as ``doit bench`` (the latency gate needs the host's history).
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
from .manifest import PACKAGE_DIR, Release, make_release

#: the payload type: the Update Module's name on the board (/usr/share/mender/modules/v3/dmsbuild-release)
MODULE_TYPE = "dmsbuild-release"
MODULE_SOURCE = PACKAGE_DIR / "board" / "mender" / "dmsbuild_release.py"
#: the plan the module reads (a payload file)
PLAN_NAME = "dmsbuild-release.json"
#: board code the module runs, shipped in every payload: payload name -> path below dmsbuild/
TOOLS = {"release_agent.py": "board/release_agent.py", "judge.py": "board/runner/judge.py"}
ROUTE = "mender"
MENDER_ARTIFACT = "mender-artifact"
#: Mender's artifact names and device types: no spaces or quotes (they end up in headers and inventories)
_MENDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+:-]{0,127}")
_INSTALL_HINT = "on Debian/Ubuntu: apt-get install mender-artifact (scripts/setup.sh installs it)"


@dataclass
class Bundle:
    """A written Mender artifact and what it carries."""

    path: Path
    name: str
    release_id: str
    device_types: list[str]
    #: the Update Module to install once on every board (a copy of board/mender/dmsbuild_release.py)
    module: Path
    plan: dict[str, Any]
    command: list[str] = field(default_factory=list)


def device_types(profile: TargetProfile) -> list[str]:
    """The Mender device types of a target: ``deploy.device_types``, else the target's name."""
    types = list(profile.deploy.device_types) or [profile.name]
    for t in types:
        if not isinstance(t, str) or not _MENDER_NAME.fullmatch(t):
            raise UserError(f"{profile.source}: field 'deploy.device_types' has {t!r}; expected names of letters, digits, "
                            "'.', '_', '-', '+', ':' (a board's Mender device_type)", hint=f"fix it in {profile.source}")
    return types


def artifact_name(project: str, target: str, release_id: str) -> str:
    return f"{project}-{target}-{release_id}"


def floors_json(project: ProjectConfig, profile: TargetProfile) -> dict[str, Any]:
    """The target's accuracy floors as the module's judge reads them: {metric: [value, config field]} per head."""
    from ..core.accuracy import KIND_METRICS, METRICS, floors_for

    floors = floors_for(project, profile)

    def plain(h: Any) -> dict[str, list[Any]]:
        return {m: [getattr(h, m).value, getattr(h, m).source] for m in METRICS + KIND_METRICS if getattr(h, m) is not None}

    # the board's output check reports heads by safe id (floors.keys: the one mapping from tensor names)
    return {"default": plain(floors.default), "heads": {floors.keys.get(k, k): plain(v) for k, v in floors.heads.items()}}


def plan_for(project: ProjectConfig, profile: TargetProfile, release: Release) -> dict[str, Any]:
    model = release.manifest.get("model") or {}
    return {"schema": 1, "project": release.manifest.get("project", project.name), "target": profile.name,
            "release_id": release.release_id,
            "artifact_name": artifact_name(release.manifest.get("project", project.name), profile.name, release.release_id),
            "keep": profile.deploy.keep_releases, "files": release.file_list(),
            "floors": floors_json(project, profile), "model": model if isinstance(model, dict) else {}}


def artifact_command(*, out: Path, name: str, types: list[str], target: str, release_id: str, project: str,
                     model_sha256: str | None, files: list[Path], key: Path | None = None,
                     tool: str = MENDER_ARTIFACT) -> list[str]:
    """The ``mender-artifact write module-image`` command line (flags as in mender-artifact 3.9's --help)."""
    argv = [tool, "write", "module-image", "-T", MODULE_TYPE, "-n", name]
    for t in types:
        argv += ["-t", t]
    argv += ["-o", str(out),
             # provides dmsbuild.<target>.version = release id (and clears dmsbuild.<target>.* of the last install)
             "--software-filesystem", "dmsbuild", "--software-name", target, "--software-version", release_id,
             "--provides", f"dmsbuild.project:{project}"]
    if model_sha256:
        argv += ["--provides", f"dmsbuild.model:{model_sha256}"]
    if key is not None:
        argv += ["-k", str(key)]
    for f in files:
        argv += ["-f", str(f)]
    return argv


def _run_tool(argv: list[str], what: str, timeout: float = 600) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        raise UserError(f"{argv[0]} not found: it writes and checks Mender artifacts", hint=_INSTALL_HINT)
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s") from None
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-5:])
        raise UserError(f"{what}: {argv[0]} failed (exit {res.returncode}): {tail}",
                        hint="run the command shown with -v to see all of it: " + " ".join(argv[:8]) + " …")
    return res


def read_artifact(path: Path, key: Path | None = None) -> str:
    """``mender-artifact read`` of an artifact (it checks the format and every checksum); its report."""
    argv = [MENDER_ARTIFACT, "read", str(path)] + (["-k", str(key)] if key is not None else [])
    return _run_tool(argv, f"{path}: not a valid Mender artifact").stdout


def _payload(staging: Path, release: Release, plan: dict[str, Any]) -> list[Path]:
    """The payload's files, flat (Mender's files tree has no folders): the plan, the board tools, the objects."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    (staging / PLAN_NAME).write_text(json.dumps(plan, indent=1, sort_keys=True) + "\n")
    files = [staging / PLAN_NAME]
    for name, rel in TOOLS.items():
        shutil.copyfile(PACKAGE_DIR / rel, staging / name)
        files.append(staging / name)
    for f in release.files:
        dst = staging / f.sha256
        if dst.exists():
            continue  # the same content twice in a release travels once
        try:
            os.link(f.local, dst)
        except OSError:
            shutil.copyfile(f.local, dst)
        files.append(dst)
    return files


def _check_runnable(profile: TargetProfile, release: Release) -> None:
    """The module checks a release with its own runner (ONNX Runtime, QNN EP); artifacts the host drives with a
    vendor tool on the board (trtexec, the SNPE tools: ``core.runtimes.HOST_DRIVEN``) have no board-only check."""
    from ..core.runtimes import HOST_DRIVEN

    driven = [a["name"] for a in release.manifest["artifacts"] if a.get("runtime") in HOST_DRIVEN]
    if driven:
        raise UserError(f"target {profile.name}: artifacts {', '.join(driven)} run through a vendor tool the host drives "
                        f"({', '.join(sorted(HOST_DRIVEN))}); the Mender module checks a release on the board alone, "
                        "with the release's runner, and cannot check them",
                        hint="bundle a target whose artifacts run on ONNX Runtime or the QNN EP; for TensorRT/SNPE "
                             "use doit deploy (docs/ota.md, limitations)")


def write_bundle(project: ProjectConfig, profile: TargetProfile, *, out_dir: Path | None = None,
                 key: Path | None = None) -> Bundle:
    """Write ``<out_dir>/<project>-<target>-<release id>.mender`` (default out_dir: artifacts/<target>/mender),
    check it with ``mender-artifact read``, and put the Update Module beside it."""
    types = device_types(profile)
    if key is not None and not Path(key).is_file():
        raise UserError(f"signing key {key} not found", hint="key=<PEM private key> (mender-artifact -k), or leave key= out")
    release = make_release(project, profile)
    _check_runnable(profile, release)
    plan = plan_for(project, profile, release)
    out_dir = Path(out_dir or project.artifacts / profile.name / "mender")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _payload(out_dir / "payload", release, plan)
    name = plan["artifact_name"]
    if not _MENDER_NAME.fullmatch(name):
        raise UserError(f"artifact name {name!r} is not a valid Mender artifact name",
                        hint="use project and target names of letters, digits, '.', '_' and '-'")
    out = out_dir / f"{name}.mender"
    tmp = out.with_suffix(".mender.tmp")
    argv = artifact_command(out=tmp, name=name, types=types, target=profile.name, release_id=release.release_id,
                            project=plan["project"], model_sha256=plan["model"].get("sha256"), files=files, key=key)
    if tmp.exists():
        tmp.unlink()
    _run_tool(argv, f"target {profile.name}: writing the Mender artifact")
    read_artifact(tmp)  # the format and every checksum, before it takes the final name
    tmp.replace(out)
    module = out_dir / MODULE_TYPE
    shutil.copyfile(MODULE_SOURCE, module)
    module.chmod(0o755)
    shutil.rmtree(out_dir / "payload", ignore_errors=True)
    return Bundle(out, name, release.release_id, types, module, plan, argv)


# ----------------------------------------------------------------------------------------------------------------
# results from the fleet
# ----------------------------------------------------------------------------------------------------------------
#: Mender deployment status -> what it means in dmsbuild's words (docs/ota.md)
MENDER_STATUS = {
    "success": "installed, output check and accuracy gate passed on the board, committed",
    "failure": "refused (device type, checksum, signature, lineage) or the output check / a gate failed; the "
               "board runs the release it ran before (ArtifactRollback)",
    "already-installed": "the board already runs this artifact: nothing changed",
}


@dataclass
class PulledRun:
    """One results file from one board: stored (run id), or why not."""

    board: str
    file: str
    release_id: str | None
    ok: bool
    verdict: list[str]
    run_id: str | None = None
    gate_failures: list[str] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        if self.error:
            return f"{self.board}: {self.file}: NOT STORED: {self.error}"
        on_board = "check passed" if self.ok else "check FAILED (rolled back by Mender): " + " | ".join(self.verdict)
        gates = "; host gates: " + (" | ".join(self.gate_failures) if self.gate_failures else "pass")
        stored = f"stored as run {self.run_id}" if self.run_id else "no results document (nothing stored)"
        return f"{self.board}: release {self.release_id}: {on_board}{gates if self.run_id else ''}; {stored}"


__all__ = ["Bundle", "MENDER_STATUS", "MODULE_TYPE", "PulledRun", "artifact_command", "device_types",
           "read_artifact", "write_bundle"]
