"""Accuracy-aware mixed precision (issue 16, item 3): a model whose INT8 artifact fails the gate because of one
huge-range activation becomes a passing artifact when the ranked nodes are kept in float.

The model (built here with onnx.helper, seeded): Conv1 (3->8, ReLU) whose channel 0 is scaled by 2000, Conv2
(8->8) whose weights for that channel are scaled by 1/2000 (so FP32 is unchanged in effect), global average
pool, Gemm -> logits. Per-tensor activation quantization of Conv1's output spends its 256 levels on channel 0,
so the seven other channels collapse and Conv2's output is noise: the cosine/SQNR floors fail. Keeping Conv2
and its input's producer (Conv1, fused with its ReLU by the quantizer) in float passes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.byom import make_byom_project, project_toml
from tests.tinyproject import run_doit

OUTLIER = 2000.0

TARGET = """\
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
transport = "local"
[deploy]
root = "artifacts/boards/a"
[quantization]
{extra}
"""


def outlier_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    w1[0] *= OUTLIER
    b1[0] = abs(b1[0]) * OUTLIER
    w2 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2
    w2[:, 0] /= OUTLIER
    w3 = rng.standard_normal((5, 8)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (np.zeros(8, np.float32), "b2"), (w3, "w3"), (np.zeros(5, np.float32), "b3"))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built once: its INT8 artifact fails the gate (the files stay for the search)."""
    root = make_byom_project(tmp_path_factory.mktemp("mp") / "proj", project_toml(), {"a": TARGET.format(extra="")})
    outlier_model(root / "models" / "model.onnx")
    run = run_doit(root, "build", "target=a")
    assert run.rc == 1, run.output
    first = run.failure("build:a").splitlines()[0]
    assert "artifact 'int8-qdq' fails the accuracy gate" in first, run.output
    return root


def _inputs(root: Path):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.convert.data import list_samples
    from dmsbuild.tasks.build import Paths, _qdq_key

    proj = load_project(root)
    prof = load_target(root, "a")
    paths = Paths.of(proj)
    return proj, prof, paths.fp32, paths.qdq(_qdq_key(proj, prof)), list_samples(proj, "calibration")


def test_ranking_puts_the_outlier_consumer_first(failing: Path) -> None:
    from dmsbuild.convert.mixed_precision import rank_nodes

    proj, prof, fp32, qdq, cal = _inputs(failing)
    ranked = rank_nodes(proj, prof, fp32, qdq, cal)
    assert ranked[0].node == "conv2", [(s.node, s.loss_db) for s in ranked]
    # its group keeps its input float too: the producer of the huge-range activation
    assert ranked[0].group == ["conv2", "conv1"]
    assert ranked[0].loss_db is not None and ranked[0].loss_db > 10.0
    assert ranked[0].sqnr_db is not None and ranked[0].sqnr_db < 12.0
    # weights are per-channel: conv2's (scaled 1/2000 on one input channel) keep a usable SQNR, named per node
    assert ranked[0].weight_sqnr_db is not None and ranked[0].weight_sqnr_db > 20.0
    # the ranking is worst first
    losses = [s.loss_db for s in ranked if s.loss_db is not None]
    assert losses == sorted(losses, reverse=True)


def test_excluding_the_ranked_nodes_passes_the_gate(failing: Path, tmp_path: Path) -> None:
    from dmsbuild.convert.mixed_precision import build_candidate, fallback_candidates, find_passing, rank_nodes

    proj, prof, fp32, qdq, cal = _inputs(failing)
    ranked = rank_nodes(proj, prof, fp32, qdq, cal)
    cands = fallback_candidates(ranked, sizes=(1, 2, 4))
    assert cands[0] == ranked[0].group and all(set(a) < set(b) for a, b in zip(cands, cands[1:]))
    result = find_passing(proj, prof, fp32, cands, cal, tmp_path)
    assert result.passing is not None, result.message
    assert result.passing.nodes == ["conv2", "conv1"] and len(result.tried) == 1
    assert result.passing.effect.min_cosine > 0.95 and result.passing.effect.min_sqnr_db > 12.0
    assert "2 node(s) kept in float pass the accuracy gate" in result.message
    # the same quantizer without the exclusion fails: the exclusion, not a lucky recalibration, made it pass
    base = build_candidate(proj, prof, fp32, [], cal, tmp_path / "none.onnx")
    assert not base.effect.passed and base.effect.min_sqnr_db < 12.0


def test_no_passing_candidate_is_one_line(failing: Path, tmp_path: Path) -> None:
    from dmsbuild.convert.mixed_precision import find_passing

    proj, prof, fp32, _, cal = _inputs(failing)
    result = find_passing(proj, prof, fp32, [["fc"]], cal, tmp_path)
    assert result.passing is None and len(result.tried) == 1
    assert result.message.startswith("target 'a': no candidate passes the accuracy gate (tried 1, up to 1 node(s)")
    assert "\n" not in result.message


def test_measured_effect_reorders_the_ranking(failing: Path, tmp_path: Path) -> None:
    """A node ranked low by the simulation but best when measured moves to the top."""
    from dmsbuild.convert.mixed_precision import measure_nodes, rank_nodes

    proj, prof, fp32, qdq, cal = _inputs(failing)
    ranked = rank_nodes(proj, prof, fp32, qdq, cal)
    reversed_rank = list(reversed(ranked))
    measured = measure_nodes(proj, prof, fp32, reversed_rank, cal, tmp_path, count=0)
    assert measured[0].node == "conv2" and measured[0].effect is not None and measured[0].effect.passed
    assert all(s.effect is not None for s in measured)


def test_command_prints_the_table_and_the_line_that_fixes_the_build(failing: Path) -> None:
    import subprocess
    import sys

    from tests.tinyproject import REPO

    env = {"DMSBUILD_ROOT": str(failing), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "dmsbuild.convert.mixed_precision", "target=a", "measure=2"],
                          cwd=failing, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "| 1 | conv2 | Conv |" in out and "effect on gate (measured)" in out
    assert "mixed precision: measured 2/2" in out  # progress on the long step
    line = next(l for l in out.splitlines() if l.startswith("nodes_to_exclude = "))
    assert line == 'nodes_to_exclude = ["conv1", "conv2"]'
    assert "targets/a.toml under [quantization]" in out

    # pasted into the profile, the next build passes the gate and records what stayed float
    prof = failing / "targets" / "a.toml"
    prof.write_text(TARGET.format(extra=line))
    try:
        run = run_doit(failing, "build", "target=a")
        assert run.rc == 0, run.output
        doc = json.loads((failing / "artifacts" / "a" / "build.json").read_text())
        qdq = next(a for a in doc["artifacts"] if a["precision"] == "int8-qdq")
        assert qdq["quantization"]["nodes_to_exclude"] == ["conv1", "conv2"]
    finally:
        prof.write_text(TARGET.format(extra=""))


def test_bad_arguments_are_one_line(failing: Path) -> None:
    import subprocess
    import sys

    from tests.tinyproject import REPO

    env = {"DMSBUILD_ROOT": str(failing), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "dmsbuild.convert.mixed_precision", "target=a", "measure=lots"],
                          cwd=failing, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: measure=, samples= and sizes= take whole numbers")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dmsbuild.convert.mixed_precision", "target=nope"],
                          cwd=failing, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "target 'nope': no profile" in proc.stderr and "Traceback" not in proc.stderr
