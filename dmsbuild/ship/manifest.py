"""A release: the files a target's boards get, and the manifest naming them.

Read from ``artifacts/<target>/build.json`` (docs/CONTRACTS.md §1, ``dmsbuild.convert.build_json``), rendered
with Jinja (``templates/``, StrictUndefined) into ``manifest.json`` (§2). The
release id is the first 16 hex digits of the rendered manifest's sha256; the
manifest has no timestamps, so an unchanged build gets the same id.

Files shipped besides the artifacts are listed in ``SUPPORT_FILES``: add a
line there to ship another one.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..board.release_agent import sha256_of
from ..convert.build_json import read_build
from ..config import NAME_RE, ProjectConfig, TargetProfile, as_dict
from ..errors import UserError

#: the dmsbuild package folder: "package:" support files are paths below it (wherever this module lives)
PACKAGE_DIR = Path(importlib.util.find_spec("dmsbuild").origin).resolve().parent
#: the Jinja templates: package data (dmsbuild/defaults/templates/, found through importlib.resources), so an
#: installed dmsbuild renders releases; the repository's top-level templates/ are held equal to them by a test
TEMPLATES = Path(str(importlib.resources.files("dmsbuild") / "defaults" / "templates"))
ID_LEN = 16


@dataclass(frozen=True)
class SupportFile:
    """A file every release carries: where it lands in the release, where it comes from."""

    release_path: str
    #: "package:<path below dmsbuild/>", "build:<build.json key>" or "template:<name.j2>"
    source: str
    required: bool = True


#: extend here to ship another file in every release
SUPPORT_FILES: tuple[SupportFile, ...] = (
    SupportFile("runner/dms_bench.py", "package:board/runner/dms_bench.py", required=False),
    # the accuracy metrics shared by the board's output checks and the host's build-time gate
    SupportFile("runner/metrics.py", "package:board/runner/metrics.py", required=False),
    # the board facts probe: the runner's --facts and the host's pre-deploy probe are this one file
    SupportFile("runner/probe.py", "package:board/runner/probe.py", required=False),
    # TensorRT output check on the board (TensorRT 10 Python API); run only for trt-onnx artifacts
    SupportFile("runner/trt_runner.py", "package:board/runner/trt_runner.py", required=False),
    # LiteRT (.tflite) and Edge TPU artifacts: the interpreter, its delegate, quantized I/O
    SupportFile("runner/litert_runner.py", "package:board/runner/litert_runner.py", required=False),
    SupportFile("verify/reference.npz", "build:reference", required=False),
    SupportFile("run.sh", "template:run.sh.j2"),
)


@dataclass
class ReleaseFile:
    path: str  # relative to the release folder
    local: Path
    sha256: str
    size: int


@dataclass
class Release:
    """What one deploy puts on every board of a target."""

    target: str
    release_id: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    files: list[ReleaseFile]  # every file, manifest.json included
    staging: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file_list(self) -> list[dict[str, Any]]:
        return [{"file": f.path, "sha256": f.sha256, "size": f.size} for f in self.files]


def _stage_bytes(staging: Path, data: bytes) -> Path:
    """Rendered files are kept under their sha256, so a Release never sees a later render's bytes."""
    path = staging / "objects" / hashlib.sha256(data).hexdigest()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def environment(templates: Path | None = None) -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates or TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, *, templates: Path | None = None, **context: Any) -> str:
    """Render one template; a missing variable is an error (StrictUndefined), never an empty string."""
    import jinja2

    try:
        return environment(templates).get_template(template).render(**context)
    except jinja2.UndefinedError as exc:
        raise UserError(f"{(templates or TEMPLATES) / template}: {exc.message}", hint="the template uses a variable dmsbuild does not provide") from None
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"{exc.filename}:{exc.lineno}: template syntax error: {exc.message}") from None


def _local(project: ProjectConfig, rel: str, where: str, source: Path) -> Path:
    p = project.path(rel)
    if p is None or not p.is_file():
        raise UserError(f"{source}: {where} names {rel!r}, which does not exist", hint="rebuild the target")
    return p


def verify_subset(reference: Path, samples: int, staging: Path) -> Path:
    """The first ``samples`` validation inputs and FP32 outputs: all the board's output check reads.

    The build keeps up to 64 samples (12 MB at 128x128); a board verifying 16 needs a quarter of
    that. Written with fixed zip timestamps so an unchanged build gives the same bytes (and release id)."""
    import io
    import zipfile

    import numpy as np

    try:
        with np.load(reference, allow_pickle=False) as ref:
            arrays = {k: ref[k] for k in ref.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{reference}: not a readable reference .npz ({exc})",
                        hint="rebuild it: doit forget evaluate:reference && doit build") from None
    per_sample = {k for k in arrays if k != "input_names"}  # input_names: one per input (several inputs), kept whole
    if all(len(arrays[k]) <= samples for k in per_sample):
        return reference
    out = staging / f"reference-{samples}.npz"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            kept = arrays[name][:samples] if name in per_sample else arrays[name]
            np.lib.format.write_array(member, np.ascontiguousarray(kept), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    data = buf.getvalue()
    if not out.is_file() or out.read_bytes() != data:
        out.write_bytes(data)
    return out


def make_release(project: ProjectConfig, profile: TargetProfile, *, package_dir: Path | None = None,
                 build: tuple[Path, dict[str, Any]] | None = None, staging: Path | None = None) -> Release:
    """Read build.json, render the support files and the manifest into artifacts/<target>/release/.

    ``package_dir``: where "package:" support files are looked up (default: the dmsbuild package).
    ``build``: (where it came from, a build.json document) rendered instead of the target's build.json, into
    ``staging`` (`doit tune`'s scratch releases: the default artifact and the candidates measured so far)."""
    source, build = build or read_build(project, profile.name)
    staging = staging or project.artifacts / profile.name / "release"
    staging.mkdir(parents=True, exist_ok=True)
    files: list[ReleaseFile] = []
    taken: dict[str, str] = {}

    def add(rel: str, local: Path, origin: str, sha: str | None = None) -> ReleaseFile:
        same = next((f for f in files if f.path == rel), None) if rel in taken else None
        if same is not None and same.local.resolve() == local.resolve():
            return same  # two artifacts of one file (`doit tune`: one recipe at two session settings)
        if rel in taken:
            raise UserError(f"{source}: {origin} and {taken[rel]} would both be {rel} in the release", hint="give them distinct file names")
        taken[rel] = origin
        digest = sha256_of(local, follow_symlinks=True)
        if sha is not None and sha != digest:
            raise UserError(
                f"{source}: {origin}: sha256 in build.json is {sha[:12]}… but {local} has {digest[:12]}…; build.json is stale",
                hint=f"rebuild: doit build target={profile.name}",
            )
        f = ReleaseFile(rel, local, digest, local.stat().st_size)
        files.append(f)
        return f

    artifacts, extra_entries = [], []
    for i, a in enumerate(build["artifacts"]):
        where = f"artifacts[{i}]"
        name = a.get("name", "")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise UserError(f"{source}: {where}.name is {name!r}; expected a plain name", hint="rebuild the target")
        local = _local(project, a["path"], f"{where}.path", source)
        main = add(f"models/{local.name}", local, f"artifact '{name}'", a.get("sha256"))
        extras = []
        for j, extra in enumerate(a.get("extra_files", [])):
            p = _local(project, extra, f"{where}.extra_files[{j}]", source)
            ef = add(f"models/{p.name}", p, f"artifact '{name}' extra file")
            extras.append(ef.path)
            extra_entries.append(ef)
        artifacts.append({
            "name": name, "precision": a.get("precision"), "kind": a.get("kind"), "file": main.path,
            "extra_files": extras, "sha256": main.sha256, "size": main.size,
            # what the artifact weighs on the board: a QNN context model is a small .onnx plus its .bin
            "total_size": main.size + sum(f.size for f in files if f.path in extras),
            "runtime": a.get("runtime", profile.runtime),
            "providers": a.get("providers", []), "provider_options": a.get("provider_options", []),
            "portable": bool(a.get("portable", True)),
            # ONNX Runtime session settings `doit tune` chose (runner/dms_bench.py applies them)
            **({"session": a["session"]} if a.get("session") else {}),
            # a quantized artifact's format (QDQ / QOperator) and nodes kept in float: shipped with it
            **({"quantization": a["quantization"]} if isinstance(a.get("quantization"), dict) else {}),
        })

    context = {"project": build.get("project", project.name), "target": profile.name,
               "default_artifact": artifacts[0]["name"]}
    for sf in SUPPORT_FILES:
        kind, _, ref = sf.source.partition(":")
        if kind == "package":
            local = (package_dir or PACKAGE_DIR) / ref
        elif kind == "build":
            value = build.get(ref)
            local = project.path(value) if isinstance(value, str) else None
            if ref == "reference" and local is not None and local.is_file():
                local = verify_subset(local, profile.bench.verify_samples, staging)
        else:
            local = _stage_bytes(staging, render(ref, **context).encode())
        if local is None or not local.is_file():
            if sf.required:
                raise UserError(f"{sf.release_path}: needed in every release but {sf.source} is missing")
            continue
        add(sf.release_path, local, sf.source)

    manifest_text = render(
        "manifest.json.j2",
        project=context["project"], target=profile.name, model=build.get("model"),
        input=build.get("input", as_dict(project.input)),
        inputs=build.get("inputs", [as_dict(i) for i in project.inputs] if project.several_inputs else None),
        outputs=build.get("outputs", as_dict(project.outputs)),
        artifacts=artifacts,
        files=[{"file": f.path, "sha256": f.sha256, "size": f.size} for f in files if not f.path.startswith("models/") or f in extra_entries],
        bench=as_dict(profile.bench),
        runtime_settings={"runtime": profile.runtime, "arch": profile.arch, "backend": profile.backend},
        toolchain=build.get("toolchain", {}),
    )
    try:
        manifest = json.loads(manifest_text)
    except json.JSONDecodeError as exc:  # a template bug, not a user error
        raise RuntimeError(f"templates/manifest.json.j2 rendered invalid JSON: {exc}") from exc
    data = manifest_text.encode()
    digest = hashlib.sha256(data).hexdigest()
    mpath = _stage_bytes(staging, data)
    (staging / "manifest.json").write_bytes(data)  # the latest, for people to read
    files.append(ReleaseFile("manifest.json", mpath, digest, len(data)))
    return Release(profile.name, digest[:ID_LEN], manifest, data, files, staging)


def service_unit(project: str, target: str, board: str, root: str, python: str) -> str:
    """The systemd unit for one board (its paths are the board's, so it lives outside the release)."""
    return render("dms.service.j2", project=project, target=target, board=board, root=root, python=python)
