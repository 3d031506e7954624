"""Release folders whose fp32 artifact is a DMS-shaped model of a chosen depth: a genuinely slower model
(more convolutions), not a sleep. Used by tests/test_measurements.py and bench/bench_regression_gate.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.bench_release import HEAD_DIMS, OUTPUTS, SHAPE, _sha, make_release


def deep_model(path: Path, depth: int, width: int = 32, seed: int = 0) -> None:
    """conv(3->width) then ``depth`` x conv(width->width)+relu, pool, the four DMS heads; time grows with depth."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((width, 3, 3, 3)).astype(np.float32) * 0.3, "w0")]
    nodes = [helper.make_node("Conv", ["image", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"])]
    for i in range(1, depth + 1):
        inits.append(numpy_helper.from_array(rng.standard_normal((width, width, 3, 3)).astype(np.float32) * 0.05, f"w{i}"))
        nodes += [helper.make_node("Conv", [f"r{i - 1}", f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
    nodes += [helper.make_node("GlobalAveragePool", [f"r{depth}"], ["g"]), helper.make_node("Flatten", ["g"], ["f"])]
    outputs = []
    for name in OUTPUTS:
        inits.append(numpy_helper.from_array(rng.standard_normal((width, HEAD_DIMS[name])).astype(np.float32), f"{name}_w"))
        nodes.append(helper.make_node("MatMul", ["f", f"{name}_w"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", HEAD_DIMS[name]]))
    graph = helper.make_graph(nodes, "deep_dms", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                             ["batch", *SHAPE[1:]])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def release_with_depth(root: Path, release_id: str, depth: int, *, iterations: int = 30, width: int = 32,
                       model: str = "dms.onnx") -> Path:
    """A release (``current`` points to it) whose only artifact ``fp32`` is ``deep_model(depth)``.

    ``model`` names the *source* model (its identity: the lineage's model hash). Two releases of the same
    ``model`` with different depths stand for one model whose build regressed (same source, same recipe,
    an artifact with genuinely more compute); a different ``model`` starts a new lineage.
    """
    import hashlib

    rel = make_release(root, [{"name": "fp32"}], release_id=release_id,
                       bench={"warmup": 3, "iterations": iterations, "threads": 1, "verify_samples": 0})
    onnx_path = rel / "models" / "fp32.onnx"
    deep_model(onnx_path, depth, width)
    manifest = json.loads((rel / "manifest.json").read_text())
    manifest["artifacts"][0].update(sha256=_sha(onnx_path), size=onnx_path.stat().st_size)
    manifest["model"] = {"file": model, "sha256": hashlib.sha256(f"source model {model}".encode()).hexdigest()}
    (rel / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (rel / "verify" / "reference.npz").unlink()  # no output check: these releases time models only
    return rel
