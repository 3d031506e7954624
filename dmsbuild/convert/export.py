"""The FP32 ONNX model every other artifact derives from: exported from PyTorch, or the user's own ONNX.

torch and onnx are imported inside the functions (task generators import this
module to find the files an export depends on).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..config import ProjectConfig
from ..errors import UserError


def factory_source(project: ProjectConfig) -> Path | None:
    """The file defining ``model.factory``'s module, found without importing it (cheap, for file_dep)."""
    return module_source(project, project.model.factory)


def module_source(project: ProjectConfig, spec: str | None) -> Path | None:
    """The file defining the module of a ``module:callable`` setting, found without importing it."""
    if spec is None:
        return None
    module = spec.split(":", 1)[0]
    rel = Path(*module.split("."))
    for base in (project.root, *map(Path, filter(None, sys.path))):
        for cand in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if cand.is_file():
                return cand.resolve()
    return None


def _import_factory(project: ProjectConfig):
    return import_callable(project, project.model.factory or "", "model.factory", "name a function returning a torch.nn.Module")


def import_callable(project: ProjectConfig, spec: str, field: str, what: str) -> Any:
    """Import ``module:callable`` named by config ``field`` (module path relative to the project root)."""
    module_name, _, attr = spec.partition(":")
    where = f"{project.source}: field '{field}' is {spec!r}"
    root = str(project.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"{where}: cannot import module '{module_name}' ({exc})",
            hint="check the module path (relative to the project root) and that its imports are installed",
        ) from None
    except SyntaxError as exc:
        raise UserError(f"{where}: module '{module_name}' has a syntax error ({exc.filename}:{exc.lineno})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"{where}: module '{module_name}' has no callable '{attr}'", hint=what)
    return factory


def _load_checkpoint(project: ProjectConfig, model: Any) -> None:
    import torch

    rel = project.model.checkpoint
    if rel is None:
        return
    path = project.path(rel)
    where = f"{project.source}: field 'model.checkpoint' is {rel!r}"
    if path is None or not path.is_file():
        raise UserError(f"{where}, which does not exist ({path})", hint="train or copy the checkpoint there, or fix model.checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise UserError(f"{where}: cannot read it as a torch checkpoint ({str(exc).splitlines()[0]})",
                        hint="save it with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{where}: expected a state dict, found {type(state).__name__}",
                        hint="save it with torch.save(model.state_dict(), path)")
    own = model.state_dict()
    state = {k: (v.to(own[k].dtype) if k in own and hasattr(v, "to") else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise UserError(
            f"{where}: does not match the model built by model.factory ({project.model.factory}): {detail[:300]}",
            hint="use the checkpoint trained for that factory, or point model.factory at the matching architecture",
        ) from None


def _versions() -> dict[str, str]:
    import onnx

    out = {"onnx": onnx.__version__}
    torch = sys.modules.get("torch")  # recorded when torch exported the model; a brought ONNX never pays its import
    if torch is not None:
        out["torch"] = torch.__version__.split("+")[0]
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def export_model(project: ProjectConfig, out: Path, sidecar: Path, module: Any = None) -> dict[str, Any]:
    """Write the FP32 ONNX (exported or brought by the user), normalised and checked against the config,
    with a JSON sidecar saying how it was made and what the import changed.

    ``module``: export this torch module instead of the factory's (the QAT stage's fine-tuned or pruned model).
    """
    import onnx

    from .model_import import check_signature, normalise, opset_of, signature

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    started = time.perf_counter()
    if project.model.onnx is not None and module is None:
        src = project.path(project.model.onnx)
        if src is None or not src.is_file():
            raise UserError(f"{project.source}: field 'model.onnx' is {project.model.onnx!r}, which does not exist",
                            hint="put your ONNX file there or fix model.onnx")
        what = "model.onnx"
        info: dict[str, Any] = {"exporter": "user-onnx", "source": str(src)}
    else:
        src = out.with_suffix(".export.onnx")
        what = "model.factory"
        info = _export_torch(project, src, module)
    try:
        changes = normalise(src, tmp, what)
        proto = onnx.load(str(tmp))
        check_signature(project, proto, src)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if project.model.onnx is None:
            src.unlink(missing_ok=True)
    os.replace(tmp, out)
    if "opset" in info:
        info["exported_opset"] = info["opset"]
    info.update({"opset": opset_of(proto), "import": changes, "seconds": round(time.perf_counter() - started, 3),
                 "versions": _versions(), **signature(proto)})
    sidecar.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    print(f"  export: {info['exporter']} opset {info['opset']} -> {out} ({out.stat().st_size / 1e6:.1f} MB, {info['seconds']} s)", flush=True)
    return info


def load_torch_model(project: ProjectConfig) -> Any:
    """The factory's module with the checkpoint loaded (float32, eval mode)."""
    import torch

    factory = _import_factory(project)
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{project.source}: field 'model.factory' ({project.model.factory}) returned {type(model).__name__}, not a torch.nn.Module")
    _load_checkpoint(project, model)
    return model.float().eval()


def _export_torch(project: ProjectConfig, out: Path, module: Any = None) -> dict[str, Any]:
    import warnings

    import torch

    model = load_torch_model(project) if module is None else module
    model = model.float().eval()
    inp = project.input
    inputs = project.all_inputs
    for k, one in enumerate(inputs):
        if one.dtype == "float16":
            field = "input.dtype" if not project.inputs else f"inputs[{k}].dtype"
            raise UserError(
                f"{project.source}: field '{field}' is 'float16'; a PyTorch export has a float32 input "
                "(the fp16 precision keeps float32 IO too)",
                hint=f"set {field} = \"float32\" (or bring your own float16-input ONNX with model.onnx)",
            )
    examples = tuple(torch.zeros(i.shape, dtype={"float32": torch.float32, "uint8": torch.uint8}[i.dtype]) for i in inputs)
    shown = (f"input.shape {inp.shape} ({inp.dtype})" if len(inputs) == 1 else
             "inputs " + ", ".join(f"{i.name} {i.shape} ({i.dtype})" for i in inputs))
    cfg = project.export
    outputs = list(project.outputs.names)
    names = [i.name for i in inputs]
    kwargs: dict[str, Any] = {"input_names": names, "output_names": outputs, "opset_version": cfg.opset}
    if cfg.exporter == "torchscript":
        if cfg.dynamic_batch:
            kwargs["dynamic_axes"] = {n: {0: "batch"} for n in [*names, *outputs]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, examples, str(out), dynamo=False, do_constant_folding=True, **kwargs)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                # the model itself fails on the configured example (a 128x128 input for a fixed 224x224 head, ...)
                detail = " ".join(str(exc).split())[:300]
                raise UserError(
                    f"{project.source}: the model of 'model.factory' ({project.model.factory}) cannot be exported "
                    f"with an example input of {shown}: {detail}",
                    hint="set input.shape (and dtype) to what the model's forward() accepts" if len(inputs) == 1 else
                    "set each [[inputs]] entry's shape (and dtype) to what forward() takes, in its argument order") from None
    else:
        if cfg.dynamic_batch:
            batch = torch.export.Dim("batch", min=1, max=1024)
            kwargs["dynamic_shapes"] = tuple({0: batch} for _ in inputs)
        try:
            program = torch.onnx.export(model, examples, dynamo=True, external_data=False, verbose=False, **kwargs)
        except torch.onnx.errors.UnsupportedOperatorError as exc:
            raise UserError(f"{project.source}: field 'export.exporter' = 'dynamo' cannot export this model: {exc}",
                            hint="try exporter = \"torchscript\"") from None
        program.save(str(out))
    import onnx

    proto = onnx.load(str(out))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != cfg.opset:
        print(f"  export: note: the {cfg.exporter} exporter wrote opset {opset} (asked for {cfg.opset})", flush=True)
    return {"exporter": cfg.exporter, "opset": opset, "requested_opset": cfg.opset, "dynamic_batch": cfg.dynamic_batch,
            "factory": project.model.factory, "checkpoint": project.model.checkpoint}
