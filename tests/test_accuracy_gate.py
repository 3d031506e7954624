"""The accuracy gate for real: `doit build` of the tiny project fails a broken INT8 artifact with a line naming the
head and the metric, passes the good one, refuses a validation set that does not exercise the model; the board's
output check (the runner, through `doit bench`) rejects the same broken artifact."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.broken_models import break_outputs, zero_weights
from tests.tinyproject import make_project, run_doit

TARGET = """\
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
transport = "local"
[deploy]
root = "artifacts/boards/a"
[bench]
warmup = 1
iterations = 3
threads = 1
verify_samples = 6
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = make_project(tmp_path_factory.mktemp("acc") / "proj", targets={"a": TARGET})
    first = run_doit(root, "build", "target=a")
    assert first.rc == 0, first.output[-3000:]
    return root


def _qdq(root: Path) -> Path:
    [path] = (root / "artifacts" / "common").glob("int8-qdq-*.onnx")
    return path


def test_the_good_int8_artifact_passes_real_floors(tiny):
    summary = json.loads((tiny / "artifacts" / "a" / "summary.json").read_text())
    assert summary["floors"]["default"] == {"max_accuracy_drop": 0.34, "min_cosine": 0.5, "min_sqnr_db": 2.0}
    rows = {r["artifact"]: r for r in summary["rows"]}
    assert rows["int8-qdq"]["gate_failures"] == [] and rows["fp32"]["gate_failures"] == []
    assert 0.5 < rows["int8-qdq"]["min_cosine"] < 1.0 and rows["int8-qdq"]["min_sqnr_db"] > 2.0  # really compared
    assert (tiny / "artifacts" / "a" / "build.json").is_file()


@pytest.mark.parametrize(("breaker", "head_metric"), [
    (zero_weights, "degenerate outputs: "),  # every output exactly 0 or one constant: caught before any metric
    (lambda s, d: break_outputs(s, d, scale=0.0, shift=0.5), "degenerate outputs: the same output for every one of 6 samples"),
    (lambda s, d: break_outputs(s, d, scale=0.0), "degenerate outputs: every output is exactly 0 (6 samples)"),
    (lambda s, d: break_outputs(s, d, scale=float("nan")), "degenerate outputs: NaN or Inf in 6 of 6 samples"),
    (lambda s, d: break_outputs(s, d, scale=-1.0), "head 'eye_state': cosine -0.99"),
    # same direction and class, a tenth of the size: only SQNR sees it (top-1 and cosine pass)
    (lambda s, d: break_outputs(s, d, scale=0.1), "head 'activity': SQNR 0."),
], ids=["weights-zeroed", "constant", "all-zero", "nan", "sign-flipped", "scaled-0.1"])
def test_a_broken_int8_artifact_fails_doit_build_naming_head_and_metric(tiny, tmp_path, breaker, head_metric):
    qdq = _qdq(tiny)
    good = tmp_path / "good.onnx"
    shutil.copyfile(qdq, good)
    try:
        breaker(good, qdq)
        run = run_doit(tiny, "build", "target=a")
        assert run.rc != 0
        message = run.failure("build:a")
        first = message.splitlines()[0]
        assert first.startswith("target 'a': artifact 'int8-qdq' fails the accuracy gate: head '"), first
        assert head_metric in message, message  # one line per failing head and metric, the first one first
        assert "< floor 2 dB (dmsbuild.toml: accuracy.min_sqnr_db)" in message or "SQNR" not in head_metric
        assert "Traceback" not in run.output
        assert not (tiny / "artifacts" / "a" / "build.json").exists()  # nothing to deploy
    finally:
        shutil.copyfile(good, qdq)
    assert run_doit(tiny, "build", "target=a").rc == 0  # the good artifact passes again


@pytest.fixture(scope="module")
def deployed(tiny) -> Path:
    """The good release on the local 'board' (deploy runs the runner's output check: it passes)."""
    deploy = run_doit(tiny, "deploy", "target=a")
    assert deploy.rc == 0, deploy.output[-3000:]
    current = tiny / "artifacts" / "boards" / "a" / "current"
    assert (current / "runner" / "metrics.py").is_file()  # shipped with the runner in every release
    return current


@contextmanager
def swapped_int8(current: Path, breaker) -> Iterator[None]:
    """The deployed release's INT8 model replaced by a broken copy (as if the board computed it), then restored."""
    shipped = current / "models" / "int8-qdq.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        good, broken = Path(tmp) / "good.onnx", Path(tmp) / "broken.onnx"
        shutil.copyfile(shipped, good)
        breaker(good, broken)
        shipped.unlink()  # a hardlink into objects/: replace the name, leave the object alone
        shutil.copyfile(broken, shipped)
        try:
            yield
        finally:
            shipped.unlink()
            shutil.copyfile(good, shipped)


@pytest.mark.parametrize(("breaker", "head_metric"), [
    (zero_weights, "degenerate outputs: "),
    (lambda s, d: break_outputs(s, d, scale=0.1), "SQNR 0."),  # a floor from dmsbuild.toml, not only degeneracy
], ids=["weights-zeroed", "scaled-0.1"])
def test_the_board_output_check_rejects_the_same_broken_artifact(tiny, deployed, breaker, head_metric):
    """`doit bench` runs the shipped runner on the local board: the same broken INT8 fails the same floors."""
    with swapped_int8(deployed, breaker):
        run = run_doit(tiny, "bench", "target=a")
    assert run.rc != 0
    lines = [line.strip() for line in run.output.splitlines() if "fails the accuracy gate" in line]
    assert lines and all(line.startswith("board a: artifact int8-qdq (int8-qdq) fails the accuracy gate on the "
                                         "board's output check vs the host FP32 reference: head '") for line in lines)
    assert any(head_metric in line for line in lines), lines
    assert "< floor 2 dB (dmsbuild.toml: accuracy.min_sqnr_db)" in run.output or "SQNR" not in head_metric


def test_the_fleet_health_gate_gets_the_same_verdict(tiny, deployed):
    """The deploy's bench step (what the rollout's health gate reads) applies the target's floors."""
    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.deploy import bench_hook
    from dmsbuild.transport.local import LocalTransport

    project, profile = load_project(tiny), load_target(tiny, "a")
    board = SimpleNamespace(name="a", python=sys.executable, transport="local", host=None)
    session = SimpleNamespace(board=board, transport=LocalTransport("a"),
                              release_dir=str(deployed), facts=None, release=None, release_id="swapped")
    with swapped_int8(deployed, lambda s, d: break_outputs(s, d, scale=0.1)):
        check = bench_hook(project, profile)(session)
    assert not check.ok and check.output_check is False
    assert any("fails the accuracy gate" in m and "SQNR 0." in m and "accuracy.min_sqnr_db" in m for m in check.messages)


def test_validation_data_that_does_not_exercise_the_model_is_an_error(tmp_path):
    root = make_project(tmp_path / "proj", targets={"a": TARGET})
    folder = root / "data" / "validation"
    images = sorted(folder.glob("*.png"))
    for img in images[1:]:
        shutil.copyfile(images[0], img)  # six copies of one image: the FP32 outputs are identical
    run = run_doit(root, "build", "target=a")
    assert run.rc != 0
    first = run.failure("evaluate:reference").splitlines()[0]
    assert first.startswith("dmsbuild.toml: data.validation (6 samples): the FP32 outputs are identical on all 6 "
                            "validation samples on every head"), first
    assert first.endswith("the validation data does not exercise the model")
    assert "Traceback" not in run.output


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
