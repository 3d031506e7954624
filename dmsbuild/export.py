"""The FP32 ONNX model every other artifact derives from: exported from PyTorch, or the user's own ONNX.

torch and onnx are imported inside the functions (task generators import this
module to find the files an export depends on).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .config import ProjectConfig
from .errors import UserError


def factory_source(project: ProjectConfig) -> Path | None:
    """The file defining ``model.factory``'s module, found without importing it (cheap, for file_dep)."""
    if project.model.factory is None:
        return None
    module = project.model.factory.split(":", 1)[0]
    rel = Path(*module.split("."))
    for base in (project.root, *map(Path, filter(None, sys.path))):
        for cand in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if cand.is_file():
                return cand.resolve()
    return None


def _import_factory(project: ProjectConfig):
    spec = project.model.factory or ""
    module_name, _, attr = spec.partition(":")
    where = f"{project.source}: field 'model.factory' is {spec!r}"
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
        raise UserError(f"{where}: module '{module_name}' has no callable '{attr}'", hint="name a function returning a torch.nn.Module")
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


def _io_spec(model_proto: Any) -> dict[str, list[dict[str, Any]]]:
    def dims(vi: Any) -> list[int | str]:
        return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]

    import onnx

    def entry(vi: Any) -> dict[str, Any]:
        return {"name": vi.name, "shape": dims(vi),
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name}

    inits = {i.name for i in model_proto.graph.initializer}
    return {"inputs": [entry(v) for v in model_proto.graph.input if v.name not in inits],
            "outputs": [entry(v) for v in model_proto.graph.output]}


def check_onnx(path: Path, what: str) -> Any:
    """Load and validate an ONNX file; ``what`` names the config field it came from."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: fails onnx.checker ({what}): {first}",
                        hint="re-export the model or fix the file; `python -m onnx.checker` shows the details") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as ONNX ({what}): {exc}", hint="fix the file") from None
    return onnx.load(str(path))


def _versions() -> dict[str, str]:
    import onnx

    out = {"onnx": onnx.__version__}
    try:
        import torch

        out["torch"] = torch.__version__.split("+")[0]
    except ImportError:
        pass
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def _check_io(project: ProjectConfig, proto: Any, path: Path) -> None:
    spec = _io_spec(proto)
    in_names = [i["name"] for i in spec["inputs"]]
    out_names = [o["name"] for o in spec["outputs"]]
    if project.input.name not in in_names:
        raise UserError(f"{project.source}: field 'input.name' is {project.input.name!r} but {path.name} has inputs {in_names}",
                        hint="set input.name to the model's input")
    missing = [n for n in project.outputs.names if n not in out_names]
    if missing:
        raise UserError(f"{project.source}: field 'outputs.names' lists {missing}, which {path.name} does not produce (it has {out_names})",
                        hint="set outputs.names to the model's outputs")


def export_model(project: ProjectConfig, out: Path, sidecar: Path, module: Any = None) -> dict[str, Any]:
    """Write the FP32 ONNX (exported or brought by the user), validated, with a JSON sidecar saying how it was made.

    ``module``: export this torch module instead of the factory's (the QAT stage's fine-tuned or pruned model).
    """
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    started = time.perf_counter()
    if project.model.onnx is not None and module is None:
        src = project.path(project.model.onnx)
        if src is None or not src.is_file():
            raise UserError(f"{project.source}: field 'model.onnx' is {project.model.onnx!r}, which does not exist",
                            hint="put your ONNX file there or fix model.onnx")
        proto = check_onnx(src, "model.onnx")
        _check_io(project, proto, src)
        shutil.copyfile(src, tmp)
        info: dict[str, Any] = {"exporter": "user-onnx", "source": str(src),
                                "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)}
    else:
        info = _export_torch(project, tmp, module)
    proto = onnx.load(str(tmp))
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    info.update({"seconds": round(time.perf_counter() - started, 3), "versions": _versions(), **_io_spec(proto)})
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
    if inp.dtype == "float16":
        raise UserError(
            f"{project.source}: field 'input.dtype' is 'float16'; a PyTorch export has a float32 input "
            "(the fp16 precision keeps float32 IO too)",
            hint="set input.dtype = \"float32\" (or bring your own float16-input ONNX with model.onnx)",
        )
    dtype = {"float32": torch.float32, "uint8": torch.uint8}[inp.dtype]
    example = torch.zeros(inp.shape, dtype=dtype)
    cfg = project.export
    outputs = list(project.outputs.names)
    kwargs: dict[str, Any] = {"input_names": [inp.name], "output_names": outputs, "opset_version": cfg.opset}
    if cfg.exporter == "torchscript":
        if cfg.dynamic_batch:
            kwargs["dynamic_axes"] = {n: {0: "batch"} for n in [inp.name, *outputs]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(out), dynamo=False, do_constant_folding=True, **kwargs)
    else:
        if cfg.dynamic_batch:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=1024)},)
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, external_data=False, verbose=False, **kwargs)
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
