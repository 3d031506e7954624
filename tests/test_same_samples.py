"""One verdict, same samples, same rule, host and board (issue 24, item 2).

Built from the reported case: the host gate scored 64 validation samples and the board 16, so an artifact
that flips one answer passed on the host (1 of 64 = 1.6 % <= 5 %) and failed on the board (1 of 16 = 6.2 %).
Now both judge the target's first ``bench.verify_samples`` samples, a count that cannot resolve its floor is
refused when the floors are resolved, and a per-head floor keyed by a tensor name that is not a safe id
applies on the board too.

The host side is the build's own code (``evaluate.evaluate_artifact`` running the artifact on ONNX
Runtime, ``evaluate.gate_failures``); the board side is the runner's own output check
(``board/runner/dms_bench.verify_outputs`` on the reference subset the manifest ships, ``manifest.verify_subset``)
judged by the deploy's on-board gate (``measure/gates.check_accuracy``), run in this process on real ONNX Runtime.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmsbuild.convert.evaluate import evaluate_artifact, gate_failures, _savez
from dmsbuild.board.runner import dms_bench
from dmsbuild.config import HeadFloorsConfig, load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.core.accuracy import floors_for
from dmsbuild.measure.gates import check_accuracy
from dmsbuild.names import head_keys, safe_id
from dmsbuild.ship.manifest import verify_subset

HEAD = "save_infer_model/scale_0.tmp_1"  # a PaddleOCR-style output name: not a safe id
SAMPLES = 64


def _model(path: Path, bias: list[float]) -> Path:
    """x [N, 4] -> x + bias: with bias 0 the FP32 reference, else an "artifact" that flips near-tie samples."""
    import onnx
    from onnx import TensorProto, helper

    b = helper.make_tensor("b", TensorProto.FLOAT, [4], bias)
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], [HEAD])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info(HEAD, TensorProto.FLOAT, ["N", 4])], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _inputs(flips: list[int]) -> np.ndarray:
    """64 samples with a clear winner among classes 0, 2, 3; the ``flips`` have class 1 close behind class 0."""
    rng = np.random.default_rng(0)
    x = np.zeros((SAMPLES, 4), dtype=np.float32)
    x[np.arange(SAMPLES), rng.choice([0, 2, 3], SAMPLES)] = 1.0
    x += rng.uniform(0, 0.05, x.shape).astype(np.float32) * (np.arange(4) != 1)
    for i in flips:
        x[i] = [1.0, 0.9, 0.0, 0.0]  # + bias 0.2 on class 1: the artifact says class 1, FP32 class 0
    return x


@pytest.fixture()
def case(project_dir: Path, tmp_path: Path):
    project = load_project(project_dir)
    project.input.name, project.input.shape = "x", [1, 4]
    project.outputs.names, project.outputs.classification = [HEAD], [HEAD]
    project.accuracy.max_accuracy_drop, project.accuracy.min_cosine, project.accuracy.min_sqnr_db = 0.05, 0.5, 5.0
    profile = load_target(project_dir, "rpi5")
    profile.gates.max_accuracy_drop = profile.gates.min_cosine = profile.gates.min_sqnr_db = None
    artifact = _model(tmp_path / "int8.onnx", [0.0, 0.2, 0.0, 0.0])

    def run(flips: list[int], verify_samples: int) -> tuple[list[str], list[str]]:
        """(host gate failures, board gate failures) of the artifact on the same build."""
        profile.bench.verify_samples = verify_samples
        x = _inputs(flips)
        key = safe_id(HEAD)
        full = tmp_path / "validation.npz"
        _savez(full, {"inputs": x, "files": np.asarray([f"{i}.npy" for i in range(SAMPLES)]), key: x.copy()})
        reference = tmp_path / "reference.npz"  # what the build keeps for the board: the first 64
        _savez(reference, {"inputs": x[:64], key: x[:64].copy()})
        result = evaluate_artifact(project, artifact, full, tmp_path / "eval" / "int8.json")
        host = gate_failures(project, profile, result)

        import onnxruntime as ort

        staging = tmp_path / "staging"
        staging.mkdir(exist_ok=True)
        shipped = verify_subset(reference, profile.bench.verify_samples, staging)
        sess = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        with np.load(shipped, allow_pickle=False) as ref:
            verify = dms_bench.verify_outputs(np, sess.run, "x", np.float32, [HEAD], ref, verify_samples, 1, [HEAD],
                                              head_keys([HEAD]))
        doc = {"results": [{"artifact": "int8", "precision": "int8-qdq", "error": None, "verify": verify}]}
        board = [f.message for f in check_accuracy(doc, board="emu-01", floors=floors_for(project, profile))]
        return host, board

    return project, profile, run


def test_a_sample_count_that_cannot_resolve_its_floor_is_refused_in_one_line(case):
    project, profile, run = case
    profile.bench.verify_samples = 16
    with pytest.raises(UserError) as exc:
        floors_for(project, profile)
    first = str(exc.value).splitlines()[0]
    assert "bench.verify_samples = 16 cannot judge" in first and "accuracy.max_accuracy_drop = 5.0%" in first
    assert f"head '{HEAD}'" in first and "6.2%" in first and "needs at least 20 samples" in first, first
    profile.bench.verify_samples = 20  # one disagreement of 20 is exactly the floor: resolvable
    floors_for(project, profile)


@pytest.mark.parametrize(("flips", "verify_samples", "fails"), [
    ([3], 64, False),        # the reported case, judged on 64 samples on both sides: 1.6 % <= 5 %
    ([3], 20, False),        # the same flip on 20 samples: 5.0 %, at the floor
    ([3, 7], 20, True),      # two flips in the first 20: 10 % on both sides (the host's 64 would say 3.1 %)
    ([3, 40], 20, False),    # the second flip lies outside the gate's samples on both sides
    ([3, 7, 11, 30], 64, True),  # 6.2 % of 64
])
def test_host_and_board_give_one_verdict_on_the_same_samples(case, flips, verify_samples, fails):
    _, _, run = case
    host, board = run(flips, verify_samples)
    assert bool(host) == bool(board) == fails, (host, board)
    if fails:
        assert f"head '{HEAD}'" in host[0] and f"head '{HEAD}'" in board[0]
        assert f"over {verify_samples} samples" in host[0] and f"over {verify_samples} samples" in board[0]


def test_a_per_head_floor_for_a_head_that_is_not_a_safe_id_applies_on_the_board(case):
    project, profile, run = case
    assert safe_id(HEAD) != HEAD
    profile.gates.heads = {HEAD: HeadFloorsConfig(min_cosine=0.99)}  # the artifact's mean cosine is ~0.98
    host, board = run([], 32)
    where = f"gates.heads.{HEAD}.min_cosine"
    assert host and board, (host, board)
    assert where in host[0] and where in board[0], (host, board)
    assert f"head '{HEAD}'" in board[0]  # the user's tensor name, not the safe id


def _write_build(project_dir: Path, artifact: Path, x: np.ndarray) -> None:
    """artifacts/rpi5/build.json (CONTRACTS §1) shipping ``artifact`` and the build's reference (the first 64)."""
    import hashlib
    import json
    import shutil

    adir, common = project_dir / "artifacts" / "rpi5", project_dir / "artifacts" / "common"
    adir.mkdir(parents=True, exist_ok=True)
    common.mkdir(parents=True, exist_ok=True)
    shutil.copy(artifact, adir / "int8-qdq.onnx")
    _savez(common / "reference.npz", {"inputs": x[:64], safe_id(HEAD): x[:64].copy()})
    data = (adir / "int8-qdq.onnx").read_bytes()
    build = {"schema": 1, "project": "dms", "target": "rpi5",
             "input": {"name": "x", "shape": [1, 4], "dtype": "float32", "layout": "NCHW"},
             "outputs": {"names": [HEAD], "classification": [HEAD], "keys": head_keys([HEAD])},
             "artifacts": [{"name": "int8-qdq", "precision": "int8-qdq", "kind": "onnx",
                            "path": "artifacts/rpi5/int8-qdq.onnx", "extra_files": [],
                            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "runtime": "onnxruntime",
                            "providers": ["CPUExecutionProvider"], "provider_options": [{}], "portable": True,
                            "eval": {}}],
             "reference": "artifacts/common/reference.npz", "toolchain": {"onnxruntime": "1.32.0", "opset": 17}}
    (adir / "build.json").write_text(json.dumps(build, indent=1))


@pytest.mark.parametrize(("flips", "verify_samples", "per_head_cosine"), [
    ([3, 7], 20, None),     # fails on both sides: 2 of the same 20 samples
    ([3], 64, None),        # the reported case on 64 samples: passes on both sides
    ([], 32, 0.99),         # the per-head floor of a head whose name is not a safe id: fails on both sides
])
def test_a_real_board_gives_the_host_verdict(boards, case, project_dir, tmp_path, flips, verify_samples, per_head_cosine):
    """The deploy's real on-board check: release shipped to an sshd board, the runner run there, judged by the
    deploy's gate; the host's verdict on the same artifact and configuration is the same."""
    from dmsbuild.pipeline.deploy import bench_hook, deploy_target
    from dmsbuild.ship.inventory import load_inventory

    project, profile, run = case
    profile.arch = "any"
    profile.bench.warmup, profile.bench.iterations, profile.bench.threads = 1, 3, 1
    if per_head_cosine is not None:
        profile.gates.heads = {HEAD: HeadFloorsConfig(min_cosine=per_head_cosine)}
    host, in_process = run(flips, verify_samples)
    _write_build(project_dir, tmp_path / "int8.onnx", _inputs(flips))
    board = load_inventory(Path(boards["inventory"]), project_dir).boards["emu-03"]
    board.root = str(tmp_path / "board-roots" / "emu-03")
    [out] = deploy_target(project, profile, [board], after_switch=bench_hook(project, profile))
    assert out.ok and out.verified, out.message
    checks = out.bench_verdict.messages  # measure's verdict: one line per failed check
    assert bool(checks) == bool(host) == bool(in_process), (host, checks)
    if host:
        assert f"head '{HEAD}'" in checks[0] and f"over {verify_samples} samples" in checks[0], checks
        if per_head_cosine is not None:
            assert f"gates.heads.{HEAD}.min_cosine" in checks[0], checks
