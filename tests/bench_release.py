"""A tiny DMS-shaped ONNX model and a fake release folder for the bench tests.

The model is an onnx.helper graph (conv -> relu -> global pool -> four heads
with the DMS output names), so building it costs milliseconds and no torch.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

OUTPUTS = ["eye_state", "yawn", "activity", "head_pose"]
CLASSIFICATION = ["eye_state", "yawn", "activity"]
HEAD_DIMS = {"eye_state": 2, "yawn": 2, "activity": 5, "head_pose": 3}
SHAPE = [1, 3, 16, 16]
RUNNER = Path(__file__).resolve().parents[1] / "dmsbuild/board/runner/dms_bench.py"


def tiny_model(path: Path, seed: int = 0, perturb: float = 0.0) -> None:
    """Write the tiny model; ``perturb`` adds noise to the head weights (a model that disagrees)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "conv_w")]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
    ]
    noise = np.random.default_rng(seed + 100)
    outputs = []
    for name in OUTPUTS:
        w = rng.standard_normal((8, HEAD_DIMS[name])).astype(np.float32)
        if perturb:
            w = w + noise.standard_normal(w.shape).astype(np.float32) * perturb
        inits.append(numpy_helper.from_array(w, f"{name}_w"))
        out = name if name != "head_pose" else "pose_lin"
        nodes.append(helper.make_node("MatMul", ["f", f"{name}_w"], [out]))
        if name == "head_pose":
            nodes.append(helper.make_node("Tanh", ["pose_lin"], ["head_pose"]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", HEAD_DIMS[name]]))
    graph = helper.make_graph(
        nodes, "tiny_dms",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *SHAPE[1:]])],
        outputs, inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def reference_outputs(model: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outs = sess.run(OUTPUTS, {"image": inputs})
    return dict(zip(OUTPUTS, outs))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_release(root: Path, artifacts: list[dict] | None = None, *, release_id: str = "0123456789abcdef",
                 bench: dict | None = None, n_ref: int = 8) -> Path:
    """A release folder as the deploy step leaves it (CONTRACTS §2), with the runner copied in.

    ``artifacts``: dicts with ``name`` and optionally ``perturb``, ``providers``,
    ``provider_options``, ``raw`` (file bytes instead of a model).
    """
    rel = root / "releases" / release_id
    (rel / "models").mkdir(parents=True)
    (rel / "verify").mkdir()
    (rel / "runner").mkdir()
    fp32 = rel / "models" / "fp32.onnx"
    tiny_model(fp32)
    inputs = np.random.default_rng(1).standard_normal((n_ref, *SHAPE[1:])).astype(np.float32)
    np.savez(rel / "verify" / "reference.npz", inputs=inputs, **reference_outputs(fp32, inputs))
    shutil.copyfile(RUNNER, rel / "runner" / "dms_bench.py")
    shutil.copyfile(RUNNER.with_name("metrics.py"), rel / "runner" / "metrics.py")  # as manifest.SUPPORT_FILES ships it
    shutil.copyfile(RUNNER.with_name("probe.py"), rel / "runner" / "probe.py")
    entries = []
    for spec in artifacts or [{"name": "fp32"}]:
        f = rel / "models" / f"{spec['name']}.onnx"
        if "raw" in spec:
            f.write_bytes(spec["raw"])
        elif spec["name"] != "fp32":
            tiny_model(f, perturb=spec.get("perturb", 0.0))
        entries.append({
            "name": spec["name"], "precision": spec.get("precision", spec["name"] if spec["name"] in ("fp32", "fp16", "int8-qdq", "int8-dynamic") else "fp32"),
            "kind": "onnx", "file": f"models/{spec['name']}.onnx", "extra_files": [],
            "sha256": _sha(f), "size": f.stat().st_size, "runtime": "onnxruntime",
            "providers": spec.get("providers", ["CPUExecutionProvider"]),
            "provider_options": spec.get("provider_options", [{}]), "portable": True,
        })
    manifest = {
        "schema": 1, "project": "dms", "target": "local",
        "input": {"name": "image", "shape": SHAPE, "dtype": "float32", "layout": "NCHW"},
        "outputs": {"names": OUTPUTS, "classification": CLASSIFICATION},
        "artifacts": entries,
        "files": [],
        "bench": bench or {"warmup": 2, "iterations": 20, "threads": 1, "verify_samples": 8},
        "runtime_settings": {}, "toolchain": {"onnxruntime": "1.32.0", "opset": 17},
    }
    (rel / "manifest.json").write_text(json.dumps(manifest, indent=1))
    current = root / "current"
    if current.is_symlink():
        current.unlink()
    current.symlink_to(Path("releases") / release_id)
    return rel


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file of a folder and its sha256 (to prove a release was left untouched)."""
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}
