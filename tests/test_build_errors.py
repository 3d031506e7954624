"""Bad input: each mistake fails with a first line naming the file and field, no traceback, and the
targets it does not concern still build (`doit --continue`)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.config import load_project
from dmsbuild.convert.data import list_samples, load_labels
from dmsbuild.errors import UserError
from tests.tinyproject import TARGET_A, TARGET_C, DoitRun, make_project, run_doit


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("errors") / "proj", {"a": TARGET_A, "c": TARGET_C})
    run = run_doit(root, "build")
    assert run.rc == 0, run.output
    return root


@contextmanager
def changed(root: Path, rel: str, text: str | bytes | None) -> Iterator[Path]:
    """Replace (or, with None, remove) one file of the project for the duration of a test."""
    path = root / rel
    backup = path.read_bytes() if path.exists() else None
    try:
        if text is None:
            path.unlink()
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        yield path
    finally:
        if backup is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(backup)


def build_continue(root: Path) -> DoitRun:
    """`doit --continue build`, after forcing target c to rebuild so 'still builds' is observed, not assumed."""
    (root / "artifacts" / "c" / "build.json").unlink(missing_ok=True)
    return run_doit(root, "--continue", "build")


def first_line(run: DoitRun, task: str) -> str:
    msg = run.failure(task)
    assert msg, f"{task} did not fail:\n{run.output}"
    return msg.splitlines()[0]


def assert_clean(run: DoitRun) -> None:
    assert run.rc != 0
    assert "Traceback" not in run.output, run.output


def assert_c_built(root: Path, run: DoitRun) -> None:
    assert "build:c" in run.executed and not run.failure("build:c"), run.output
    assert (root / "artifacts" / "c" / "build.json").is_file()


def test_malformed_profile_fails_alone(proj: Path) -> None:
    with changed(proj, "targets/bad.toml", 'runtime = "onnxruntime"\nprecisions = ["fp32"\n'):
        run = build_continue(proj)
    assert_clean(run)
    line = first_line(run, "build:bad")
    assert "targets/bad.toml" in line and "malformed TOML" in line
    assert_c_built(proj, run)


def test_unknown_field_and_value_name_the_field(proj: Path) -> None:
    with changed(proj, "targets/bad.toml", 'runtime = "onnxruntime"\nprecision = ["fp32"]\n'):
        run = build_continue(proj)
    assert_clean(run)
    line = first_line(run, "build:bad")
    assert "targets/bad.toml" in line and "unknown field 'precision'" in line
    assert_c_built(proj, run)
    with changed(proj, "targets/bad.toml", 'runtime = "tflite"\nprecisions = ["fp32"]\n'):
        run = build_continue(proj)
    line = first_line(run, "build:bad")
    assert "targets/bad.toml" in line and "field 'runtime' is 'tflite'" in line and "'onnxruntime'" in line
    assert_c_built(proj, run)


def test_malformed_project_file(proj: Path) -> None:
    text = (proj / "dmsbuild.toml").read_text()
    with changed(proj, "dmsbuild.toml", text.replace('name = "tiny"', 'name = "tiny')):
        run = build_continue(proj)
    assert_clean(run)
    line = first_line(run, "build:config")
    assert "dmsbuild.toml" in line and "malformed TOML" in line


def test_missing_checkpoint(proj: Path) -> None:
    with changed(proj, "models/tiny.pt", None):
        run = build_continue(proj)
    assert_clean(run)
    line = first_line(run, "export")
    assert "dmsbuild.toml" in line and "'model.checkpoint'" in line and "does not exist" in line


def test_factory_that_fails_to_import(proj: Path) -> None:
    text = (proj / "dmsbuild.toml").read_text()
    with changed(proj, "mymodel.py", "import a_package_that_is_not_installed\n\ndef build():\n    pass\n"), \
            changed(proj, "dmsbuild.toml", text.replace("dmsbuild.model.dms_net:build_tiny", "mymodel:build")):
        run = build_continue(proj)
    assert_clean(run)
    line = first_line(run, "export")
    assert "dmsbuild.toml" in line and "'model.factory'" in line and "a_package_that_is_not_installed" in line


def test_checkpoint_of_another_model(proj: Path) -> None:
    import torch

    with changed(proj, "models/tiny.pt", b""):
        torch.save({"conv.weight": torch.zeros(3)}, proj / "models" / "tiny.pt")
        run = build_continue(proj)
    assert_clean(run)
    line = first_line(run, "export")
    assert "'model.checkpoint'" in line and "does not match the model" in line


def _calibration_failure(run: DoitRun) -> str:
    failed = [t for t in ("quantize:" + n for n in _qdq_names(run.output)) if run.failure(t)]
    assert failed, run.output
    return first_line(run, failed[0])


def _qdq_names(output: str) -> list[str]:
    import re

    return sorted(set(re.findall(r"taskid:quantize:(int8-qdq-\w+)", output)))


def test_empty_calibration_folder(proj: Path, tmp_path: Path) -> None:
    cal = proj / "data" / "calibration"
    shutil.move(cal, tmp_path / "cal")
    cal.mkdir()
    try:
        run = build_continue(proj)
    finally:
        cal.rmdir()
        shutil.move(tmp_path / "cal", cal)
    assert_clean(run)
    line = _calibration_failure(run)
    assert "dmsbuild.toml" in line and "'data.calibration'" in line and "holds no samples" in line
    assert_c_built(proj, run)


def test_unreadable_calibration_image(proj: Path) -> None:
    with changed(proj, "data/calibration/002.png", b"this is not a png"):
        run = build_continue(proj)
    assert_clean(run)
    line = _calibration_failure(run)
    assert "data/calibration/002.png" in line and "unreadable image" in line
    assert_c_built(proj, run)


def test_calibration_sample_shape_mismatch(proj: Path) -> None:
    path = proj / "data" / "calibration" / "005.npy"
    np.save(path, np.zeros((3, 32, 32), np.float32))
    try:
        run = build_continue(proj)
    finally:
        path.unlink()
    assert_clean(run)
    line = _calibration_failure(run)
    assert "005.npy" in line and "(3, 32, 32)" in line and "(3, 64, 64)" in line
    assert_c_built(proj, run)


def test_user_onnx_failing_checker(proj: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["not_defined_anywhere"], ["eye_state"])
    graph = helper.make_graph([node], "broken", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("eye_state", TensorProto.FLOAT, [1, 2])])
    broken = proj / "models" / "broken.onnx"
    onnx.save(helper.make_model(graph), broken)
    text = (proj / "dmsbuild.toml").read_text()
    byo = text.replace('factory = "dmsbuild.model.dms_net:build_tiny"\ncheckpoint = "models/tiny.pt"', 'onnx = "models/broken.onnx"')
    assert byo != text
    with changed(proj, "dmsbuild.toml", byo):
        run = build_continue(proj)
    broken.unlink()
    assert_clean(run)
    line = first_line(run, "export")
    assert "models/broken.onnx" in line and "onnx.checker" in line and "model.onnx" in line


# ---------------------------------------------------------------- data module, without doit
def test_labels_missing_entry_names_file(proj: Path, tmp_path: Path) -> None:
    project = load_project(proj)
    names = list_samples(project, "validation")
    original = (proj / "data" / "validation" / "labels.json").read_text()
    labels = json.loads(original)
    del labels[names[1].name]
    (proj / "data" / "validation" / "labels.json").write_text(json.dumps(labels))
    try:
        with pytest.raises(UserError) as err:
            load_labels(project, names)
    finally:
        (proj / "data" / "validation" / "labels.json").write_text(original)
    assert str(err.value).splitlines()[0].startswith(str(proj / "data" / "validation" / "labels.json"))
    assert names[1].name in str(err.value)


def test_missing_folder_names_field(proj: Path) -> None:
    project = load_project(proj)
    project.data.validation = "data/nowhere"
    with pytest.raises(UserError, match=r"field 'data.validation' is 'data/nowhere', which is not a folder"):
        list_samples(project, "validation")
