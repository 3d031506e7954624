"""``doit init``: a ``dmsbuild.toml`` written from a model's signature, so a brought model starts from facts.

Two forms::

    doit init onnx=models/net.onnx [data=DIR]
    doit init factory=pkg.mod:build checkpoint=models/net.pt [shape=1,3,224,224] [data=DIR]

What is read from the model (input name, shape, dtype, outputs) is written as
fact; what is guessed (layout, which outputs are classification logits,
preprocessing, a size for dynamic H/W) is written with a ``# guess`` comment
and listed at the end as what the user must still check. An existing
``dmsbuild.toml`` is kept as ``dmsbuild.toml.bak-<UTC time>``. The result is
loaded back and checked against the model before ``init`` reports success.

onnx and torch are imported inside the functions.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import PROJECT_FILE, ProjectConfig, load_project, refuse_package_path
from ..errors import UserError

#: size used for dynamic H/W when nothing says otherwise (a guess, stated as one)
DEFAULT_HW = 224
LOCAL_TARGET = """\
# written by `doit init`: this machine, ONNX Runtime CPU, every precision
description = "This machine, ONNX Runtime CPU"
runtime = "onnxruntime"
precisions = ["fp32", "fp16", "int8-dynamic", "int8-qdq"]
transport = "local"

[deploy]
root = "artifacts/boards/local"

[bench]
warmup = 5
iterations = 50
"""


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _layout(shape: list[Any]) -> tuple[str, bool]:
    """(layout, guessed) from a 4-D shape: channels (1, 3 or 4) at axis 1 -> NCHW, at axis 3 -> NHWC."""
    c1, c3 = shape[1], shape[3]
    if isinstance(c1, int) and c1 in (1, 3, 4):
        return "NCHW", False if not (isinstance(c3, int) and c3 in (1, 3, 4)) else True
    if isinstance(c3, int) and c3 in (1, 3, 4):
        return "NHWC", False
    return "NCHW", True


def _looks_like_logits(out: dict[str, Any], producers: dict[str, str]) -> bool:
    """A [N, C] (C >= 2) output, or one made by Softmax/LogSoftmax: probably classification scores."""
    shape = out["shape"]
    if producers.get(out["name"]) in ("Softmax", "LogSoftmax"):
        return True
    return len(shape) == 2 and isinstance(shape[1], int) and shape[1] >= 2


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def guess_kinds(outputs: list[dict[str, Any]], producers: dict[str, str], cls: list[str]) -> dict[str, dict[str, Any]]:
    """Each output's kind guessed from its shape, name and producing op (docs/accuracy.md "Outputs by kind").

    [N, C] or Softmax: classification; a Softmax over [N, T, K]: a sequence; [N, 4+C, A] (A > 4+C) or
    [N, A, 4+C]: a YOLO-style detection; [N, A, 4] boxes beside [N, A, C] scores: an SSD-style pair;
    [N, C, H, W]: a segmentation map; a name with emb/feat: an embedding; else regression."""
    kinds: dict[str, dict[str, Any]] = {}
    shapes = {o["name"]: list(o["shape"]) for o in outputs}
    boxes = [n for n, sh in shapes.items() if len(sh) == 3 and sh[2] == 4]
    for o in outputs:
        name, shape, low = o["name"], shapes[o["name"]], o["name"].lower()
        dims = [_dim(d) for d in shape]
        if len(shape) == 3 and producers.get(name) in ("Softmax", "LogSoftmax"):
            kinds[name] = {"kind": "sequence", "axis": -1}
        elif name in boxes:
            partner = [n for n, sh in shapes.items() if n != name and len(sh) == 3 and sh[1] == shape[1] and sh[2] != 4]
            kinds[name] = ({"kind": "detection", "layout": "ssd", "box_format": "xyxy", "scores_output": partner[0]}
                           if partner else {"kind": "regression"})
        elif len(shape) == 3 and dims[1] and dims[2] and dims[1] >= 5 and dims[2] > dims[1]:
            kinds[name] = {"kind": "detection", "layout": "yolo", "channel_axis": 1, "box_format": "xywh"}
        elif len(shape) == 3 and dims[1] and dims[2] and dims[2] >= 5 and dims[1] > dims[2] and (
                any(w in low for w in ("det", "box", "yolo", "pred")) or name == outputs[0]["name"]):
            kinds[name] = {"kind": "detection", "layout": "yolo", "channel_axis": 2, "box_format": "xywh"}
        elif name in cls:
            kinds[name] = {"kind": "classification", "axis": -1}
        elif len(shape) == 4 and (dims[2] is None or dims[2] >= 8) and (dims[3] is None or dims[3] >= 8):
            kinds[name] = {"kind": "segmentation", "axis": 1}
        elif any(w in low for w in ("emb", "feat", "descriptor")):
            kinds[name] = {"kind": "embedding"}
        else:
            kinds[name] = {"kind": "regression"}
    for name, k in kinds.items():  # the scores of an SSD pair are judged through their boxes' detection
        if k["kind"] == "detection" and k.get("scores_output") and k["scores_output"] in kinds:
            kinds[k["scores_output"]] = {"kind": "regression"}
    return kinds


def _kind_lines(kinds: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, k in kinds.items():
        lines.append(f"[outputs.kinds.{json.dumps(name, ensure_ascii=False)}]  # guess: what this output means")
        lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in k.items()]
        lines.append("")
    return lines


def _data_folders(root: Path, data: str | None) -> tuple[str, str, list[str]]:
    notes: list[str] = []
    if data is None:
        notes.append("data.calibration / data.validation point at data/calibration and data/validation: put "
                     "representative images (.png/.jpg) or .npy/.npz tensors there (or set data.loader)")
        return "data/calibration", "data/validation", notes
    folder = Path(data)
    folder = folder if folder.is_absolute() else (Path.cwd() / folder)
    refuse_package_path(folder, "doit init: data=", data)
    if not folder.is_dir():
        raise UserError(f"doit init: data={data!r} is not a folder ({folder})",
                        hint="name a folder of images or .npy/.npz files, relative to the folder you run doit in")
    cal, val = folder / "calibration", folder / "validation"
    if cal.is_dir() and val.is_dir():
        return _rel(root, cal), _rel(root, val), notes
    notes.append(f"calibration and validation both use {data}: a separate validation folder judges accuracy "
                 "more honestly")
    return _rel(root, folder), _rel(root, folder), notes


def _fixed_shape(name: str, shape: list[Any], hw: int, single: bool = True) -> tuple[list[int], list[str], str, bool]:
    """The configured shape of one input (dynamic dims guessed), the notes on those guesses, its layout and
    whether the layout is a guess (a non-4-D input has none)."""
    notes: list[str] = []
    dim_of, field = ("input dim", "input.shape") if single else (f"input '{name}' dim", "its shape")
    if len(shape) == 4:
        layout, layout_guess = _layout(shape)
        hw_axes = (2, 3) if layout == "NCHW" else (1, 2)
    else:
        layout, layout_guess, hw_axes = "NCHW", False, ()
    fixed = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            fixed.append(d)
        elif i == 0:
            fixed.append(1)
        elif i in hw_axes:
            fixed.append(hw)
            notes.append(f"{dim_of} {i} ('{d}') is dynamic: {field} uses {hw} (a guess); set the size you run at")
        elif len(shape) == 4:
            fixed.append(3)
            notes.append(f"{dim_of} {i} ('{d}') is dynamic: {field} uses 3 channels (a guess)")
        else:
            fixed.append(1)
            notes.append(f"{dim_of} {i} ('{d}') is dynamic: {field} uses 1 (a guess); set the size you run at")
    if layout_guess:
        notes.append((f"input.layout" if single else f"input '{name}' layout") + f" = \"{layout}\" is a guess from the shape {shape}")
    return fixed, notes, layout, layout_guess


def _render(name: str, model_lines: list[str], sig: dict[str, Any], producers: dict[str, str], hw: int,
            cal: str, val: str) -> tuple[str, list[str]]:
    notes: list[str] = []
    inputs = sig["inputs"]
    if not inputs:
        raise UserError("doit init: the model has no graph input", hint="export the model with its input(s)")
    for one in inputs:
        if one["dtype"] not in ("float32", "float16", "uint8"):
            raise UserError(f"doit init: the input '{one['name']}' is {one['dtype']}; dmsbuild feeds float32, float16 "
                            "or uint8", hint="export the model with float32 inputs (a constant such as a sample rate "
                                              "can live inside the model)")
    several = len(inputs) > 1
    if several:
        bad = [i["name"] for i in inputs if any(c in i["name"] for c in "'\",:/\\=")]
        if bad:
            raise UserError(f"doit init: the input name {bad[0]!r} holds a quote, comma, colon, '=' or slash, which "
                            "several inputs cannot carry (npz members, trtexec and SNPE arguments)",
                            hint="rename the model's inputs")
    inp = inputs[0]
    shape = list(inp["shape"])
    if len(shape) != 4 and not several:
        raise UserError(f"doit init: the input '{inp['name']}' has shape {shape}; dmsbuild builds image models "
                        "with a 4-D input (NCHW or NHWC)", hint="export the model with a 4-D image input")
    input_lines: list[str] = []
    layout, channels = "NCHW", 3
    for k, one in enumerate(inputs):
        one_shape = list(one["shape"])
        fixed, one_notes, one_layout, guessed = _fixed_shape(one["name"], one_shape, hw, not several)
        notes.extend(one_notes)
        if k == 0:
            layout = one_layout
            if len(fixed) == 4:
                channels = fixed[1] if layout == "NCHW" else fixed[3]
        input_lines += ["[[inputs]]" if several else "[input]", f"name = {json.dumps(one['name'], ensure_ascii=False)}",
                        f"shape = {json.dumps(fixed)}" + ("  # guess for the dynamic dims" if any(
                            not (isinstance(d, int) and d > 0) for d in one_shape[1:]) else ""),
                        f"dtype = \"{one['dtype']}\""]
        if len(fixed) == 4:
            input_lines.append(f"layout = \"{one_layout}\"" + ("  # guess" if guessed else ""))
        input_lines.append("")
    if several:
        notes.append(f"the model has {len(inputs)} inputs ({', '.join(i['name'] for i in inputs)}): give each sample "
                     "as a .npz with one array per input name, one sub-folder per input, or data.loader dicts "
                     "(docs/byom.md \"Several inputs\")")
    outs = [o["name"] for o in sig["outputs"]]
    cls = [o["name"] for o in sig["outputs"] if _looks_like_logits(o, producers)]
    kinds = guess_kinds(sig["outputs"], producers, cls)
    cls = [n for n in cls if kinds[n]["kind"] == "classification"]  # a Softmax over steps is a sequence
    notes.append(f"outputs.classification = {cls} is a guess (outputs shaped [N, classes] or made by Softmax); "
                 "list the heads whose argmax is the answer")
    notes.append("outputs.kinds are guesses from shapes and names (" + ", ".join(f"{n}: {k['kind']}" for n, k in kinds.items())
                 + "); a detector is judged by its detections, a sequence per step: check each (docs/accuracy.md)")
    notes.append("[preprocess] is a guess (RGB, /255, ImageNet mean/std): use what the model was trained with")
    mean = [0.485, 0.456, 0.406] if channels == 3 else [0.5] * channels
    std = [0.229, 0.224, 0.225] if channels == 3 else [0.5] * channels
    order = "RGB" if channels == 3 else "GRAY"
    lines = [
        "# dmsbuild project configuration, written by `doit init` from the model's signature.",
        "# Lines marked '# guess' are guesses: check them (docs/byom.md says what each must be).",
        f"name = {json.dumps(name)}", "", "[model]", *model_lines, "",
        *input_lines,
        "[outputs]", f"names = {json.dumps(outs, ensure_ascii=False)}",
        f"classification = {json.dumps(cls, ensure_ascii=False)}  # guess", "",
        *_kind_lines(kinds),
        "[preprocess]  # guess: use the model's training preprocessing",
        f"channel_order = \"{order}\"", f"mean = {json.dumps(mean)}", f"std = {json.dumps(std)}", "scale = 255.0", "",
        "[data]", f"calibration = {json.dumps(cal)}", f"validation = {json.dumps(val)}", "",
        "[accuracy]", "max_accuracy_drop = 0.05", "",
    ]
    return "\n".join(lines), notes


def _producers(proto: Any) -> dict[str, str]:
    return {o: n.op_type for n in proto.graph.node for o in n.output}


def _project_name(root: Path) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.resolve().name).strip("-._") or "project"
    return name[:64]


def _torch_signature(root: Path, factory: str, checkpoint: str | None, shape: list[int], tmp: Path) -> tuple[Any, list[str]]:
    """Export the factory's model at ``shape`` to find its outputs; returns the ONNX proto and model lines."""
    import onnx
    import torch

    from ..config import InputConfig, ModelConfig, OutputsConfig
    from .export import _export_torch, _import_factory, _load_checkpoint

    proj = ProjectConfig(name="init", model=ModelConfig(factory=factory, checkpoint=checkpoint),
                         input=InputConfig(name="image", shape=shape))
    proj.root = root
    proj.source = root / PROJECT_FILE
    proj.model.validate(str(proj.source), "model")
    proj.input.validate(str(proj.source), "input")
    model = _import_factory(proj)()
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"doit init: factory={factory} returned {type(model).__name__}, not a torch.nn.Module")
    _load_checkpoint(proj, model)
    with torch.no_grad():
        try:
            out = model.float().eval()(torch.zeros(shape))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise UserError(f"doit init: the model of factory={factory} fails on an example input of shape {shape}: "
                            f"{' '.join(str(exc).split())[:300]}", hint="pass the input shape it accepts: shape=1,3,H,W") from None
    if isinstance(out, dict):
        names = [str(k) for k in out]
    elif isinstance(out, (tuple, list)):
        names = [f"output_{i}" for i in range(len(out))]
    else:
        names = ["output"]
    proj.outputs = OutputsConfig(names=names)
    _export_torch(proj, tmp)
    lines = [f"factory = {json.dumps(factory)}"]
    if checkpoint:
        lines.append(f"checkpoint = {json.dumps(checkpoint)}")
    return onnx.load(str(tmp)), lines


def init_project(root: Path, *, onnx_path: str | None = None, factory: str | None = None, checkpoint: str | None = None,
                 shape: str | None = None, data: str | None = None) -> Path:
    """Write ``root/dmsbuild.toml`` for a brought model; print what the user must still check."""
    import onnx

    from .model_import import check_signature, signature

    if (onnx_path is None) == (factory is None):
        raise UserError("doit init: give onnx=PATH, or factory=module:callable (with checkpoint=PATH and shape=1,3,H,W)",
                        hint="for example: doit init onnx=models/net.onnx data=data")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dmsbuild-init-") as tmp:
        if onnx_path is not None:
            src = Path(onnx_path)
            src = src if src.is_absolute() else Path.cwd() / src
            refuse_package_path(src, "doit init: onnx=", onnx_path)
            if not src.is_file():
                raise UserError(f"doit init: onnx={onnx_path!r} does not exist ({src})",
                                hint="give the path of your .onnx file, relative to the folder you run doit in")
            try:
                proto = onnx.load(str(src), load_external_data=False)
            except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
                raise UserError(f"doit init: {src}: cannot read it as ONNX ({' '.join(str(exc).split())[:200]})") from None
            model_lines = [f"onnx = {json.dumps(_rel(root, src))}"]
        else:
            dims = [d.strip() for d in (shape or f"1,3,{DEFAULT_HW},{DEFAULT_HW}").split(",")]
            if len(dims) != 4 or not all(d.isdigit() and int(d) > 0 for d in dims):
                raise UserError(f"doit init: shape={shape!r}; expected four positive integers like 1,3,224,224")
            if checkpoint is not None and not (Path(checkpoint).is_absolute() or (root / checkpoint).is_file()):
                raise UserError(f"doit init: checkpoint={checkpoint!r} does not exist under {root}",
                                hint="give the checkpoint path relative to the project folder")
            proto, model_lines = _torch_signature(root, factory or "", checkpoint, [int(d) for d in dims],
                                                  Path(tmp) / "model.onnx")
        sig = signature(proto)
        cal, val, data_notes = _data_folders(root, data)
        text, notes = _render(_project_name(root), model_lines, sig, _producers(proto), DEFAULT_HW, cal, val)
        if factory is not None and shape is None:
            notes.insert(0, f"input.shape {[1, 3, DEFAULT_HW, DEFAULT_HW]} is a guess: pass shape=1,C,H,W")
        target = root / PROJECT_FILE
        backup = None
        if target.exists():
            backup = target.with_name(f"{PROJECT_FILE}.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            n = 1
            while backup.exists():
                backup = backup.with_name(f"{backup.name.split('~')[0]}~{n}")
                n += 1
            os.replace(target, backup)
        target.write_text(text)
        try:
            project = load_project(root)
            if onnx_path is None:
                check_signature(project, proto, Path(factory or "model"))
            else:
                check_signature(project, proto, src)
        except UserError:
            if backup is not None:
                os.replace(backup, target)
            raise
    targets = root / "targets"
    wrote_target = False
    if not any(p.stem != "inventory" for p in targets.glob("*.toml")):
        targets.mkdir(exist_ok=True)
        (targets / "local.toml").write_text(LOCAL_TARGET)
        wrote_target = True
    print(f"init: wrote {target}" + (f" (the previous one is kept as {backup.name})" if backup else ""), flush=True)
    if wrote_target:
        print(f"init: wrote {targets / 'local.toml'} (this machine; add boards' profiles next to it)", flush=True)
    shown = ", ".join(f"'{i['name']}' {i['shape']} {i['dtype']}" for i in sig['inputs'])
    print(f"init: model input{'s' if len(sig['inputs']) > 1 else ''} {shown}; "
          f"outputs {[o['name'] for o in sig['outputs']]}", flush=True)
    print("init: still to check:", flush=True)
    for note in [*notes, *data_notes]:
        print(f"  - {note}", flush=True)
    print("init: then run `doit build` (docs/byom.md walks through the rest)", flush=True)
    return target


# --------------------------------------------------------------------------
# `dmsbuild new PATH`: a starter project in the user's own repository
# --------------------------------------------------------------------------
#: the starter project's files: path in the project -> package data file (dmsbuild/defaults/)
STARTER_FILES = {
    "dodo.py": "project/dodo.py",
    PROJECT_FILE: "project/dmsbuild.toml",
    "README.md": "project/README.md",
    **{f"targets/{n}.toml": f"targets/{n}.toml" for n in ("local", "rpi5", "orin", "qcs8255", "inventory")},
}
GITIGNORE_LINE = "artifacts/"


def defaults_dir() -> Path:
    """The defaults dmsbuild ships (templates, target profiles, the starter project), via importlib.resources."""
    from importlib import resources

    return Path(str(resources.files("dmsbuild") / "defaults"))


def new_project(path: Path) -> list[Path]:
    """Write a starter project into ``path`` (created if missing; an existing repository is fine): the files of
    :data:`STARTER_FILES` and an ``artifacts/`` line in ``.gitignore``. A file that exists is never overwritten:
    the whole call is refused naming them, before anything is written. Returns the paths written."""
    from .. import __version__

    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"dmsbuild new: {path} exists and is not a folder", hint="name a new or existing folder")
    clash = [rel for rel in STARTER_FILES if (path / rel).exists() and rel != "README.md"]  # a repo's README stays
    if clash:
        raise UserError(f"dmsbuild new: {path} already has {', '.join(clash)}; nothing was written",
                        hint="pick another folder, or move those files away first")
    name = _project_name(path)
    written = []
    src = defaults_dir()
    for rel, data in STARTER_FILES.items():
        if (path / rel).exists():
            continue  # README.md of an existing repository
        text = (src / data).read_text()
        if rel in (PROJECT_FILE, "README.md"):
            text = text.replace("PROJECT", name).replace("VERSION", __version__)
        dest = path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        written.append(dest)
    ignore = path / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    if GITIGNORE_LINE not in lines and "/artifacts/" not in lines and "artifacts" not in lines:
        head = (src / "project" / "gitignore").read_text()
        ignore.write_text(("\n".join(lines) + "\n" if lines else "") + head)
        written.append(ignore)
    return written
