"""Import of brought models (issue 14, items 1 and 2): what users bring builds, or fails with one line.

The first tests reproduce the failures the issue saw (opset 9, ConstantOfShape weights, a 224x224 model
configured at 128x128) through `doit build`; the rest check normalise/check_signature directly.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmsbuild.config import load_project
from dmsbuild.errors import UserError
from dmsbuild.convert.model_import import MIN_OPSET, check_signature, normalise, opset_of
from tests.byom import classifier, make_byom_project, project_toml
from tests.tinyproject import run_doit


def _build(tmp_path: Path, toml: str, **model_kw) -> tuple[Path, object]:
    root = make_byom_project(tmp_path / "proj", toml)
    classifier(root / "models" / "model.onnx", **model_kw)
    return root, run_doit(root, "build")


def test_opset9_model_builds_every_precision(tmp_path: Path) -> None:
    root, run = _build(tmp_path, project_toml(), opset=9)
    assert run.rc == 0, run.output
    assert "Traceback" not in run.output
    assert f"import: upgraded opset 9 -> {MIN_OPSET}" in run.output
    build = json.loads((root / "artifacts" / "a" / "build.json").read_text())
    assert [c["step"] for c in build["import"] if c["step"] != "shape-inference"] == ["opset"]
    assert {a["precision"] for a in build["artifacts"]} == {"fp32", "fp16", "int8-dynamic", "int8-qdq"}


def test_constantofshape_weights_are_folded_and_quantized(tmp_path: Path) -> None:
    root, run = _build(tmp_path, project_toml(), const_weights=True)
    assert run.rc == 0, run.output
    assert "import: folded constant subgraphs" in run.output and "ConstantOfShape x1" in run.output
    build = json.loads((root / "artifacts" / "a" / "build.json").read_text())
    fold = next(c for c in build["import"] if c["step"] == "fold-constants")
    assert fold["removed"] == {"Add": 1, "ConstantOfShape": 1}


def test_fixed_224_model_configured_at_128_fails_at_import(tmp_path: Path) -> None:
    _, run = _build(tmp_path, project_toml(shape=[1, 3, 128, 128]), hw=(224, 224))
    assert run.rc != 0 and "Traceback" not in run.output, run.output
    msg = run.failure("export")
    first = msg.splitlines()[0]
    assert "field 'input.shape' is [1, 3, 128, 128]" in first and "[N(dynamic), 3, 224, 224]" in first, msg
    assert "evaluate" not in run.executed  # nothing downstream ran


# --------------------------------------------------------------------------- normalise, directly
def test_normalise_records_nothing_for_a_clean_model(tmp_path: Path) -> None:
    src = classifier(tmp_path / "m.onnx")
    changes = normalise(src, tmp_path / "out.onnx", "model.onnx")
    assert [c["step"] for c in changes] == ["shape-inference"]  # only intermediate shapes were added


def test_fp16_stored_weights_are_folded_to_float32(tmp_path: Path) -> None:
    import onnx

    src = classifier(tmp_path / "m.onnx", fp16_weights=True)
    changes = normalise(src, tmp_path / "out.onnx", "model.onnx")
    assert any(c["step"] == "fold-constants" and c["removed"] == {"Cast": 1} for c in changes)
    out = onnx.load(str(tmp_path / "out.onnx"))
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in out.graph.initializer if i.name != "conv1_w_0_SHAPE")


def test_opset_upgrade_is_real(tmp_path: Path) -> None:
    import onnx

    src = classifier(tmp_path / "m.onnx", opset=11)
    normalise(src, tmp_path / "out.onnx", "model.onnx")
    assert opset_of(onnx.load(str(tmp_path / "out.onnx"))) == MIN_OPSET


def test_custom_domain_op_fails_naming_node_and_op(tmp_path: Path) -> None:
    src = classifier(tmp_path / "m.onnx", custom_op=True)
    with pytest.raises(UserError) as info:
        normalise(src, tmp_path / "out.onnx", "model.onnx")
    first = str(info.value).splitlines()[0]
    assert "node 'fancy_norm'" in first and "com.example::FancyNorm" in first
    assert "standard ONNX ops" in info.value.hint


def test_external_data_is_read_and_missing_data_named(tmp_path: Path) -> None:
    import onnx

    src = classifier(tmp_path / "m.onnx", external=True)
    changes = normalise(src, tmp_path / "out.onnx", "model.onnx")
    assert [c["step"] for c in changes if c["step"] != "shape-inference"] == ["external-data"]
    out = onnx.load(str(tmp_path / "out.onnx"), load_external_data=False)
    assert all(not i.external_data for i in out.graph.initializer)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(UserError) as info:
        normalise(src, tmp_path / "out2.onnx", "model.onnx")
    assert "external file 'm.onnx.data', which is missing" in str(info.value).splitlines()[0]


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(UserError) as info:
        normalise(bad, tmp_path / "out.onnx", "model.onnx")
    assert "cannot read it as ONNX (model.onnx)" in str(info.value)


# --------------------------------------------------------------------------- check_signature
def _check(tmp_path: Path, toml: str, **model_kw) -> str:
    import onnx

    root = make_byom_project(tmp_path / "p", toml)
    src = classifier(root / "models" / "model.onnx", **model_kw)
    with pytest.raises(UserError) as info:
        check_signature(load_project(root), onnx.load(str(src)), src)
    return str(info.value)


def test_signature_names_input_name_and_model_value(tmp_path: Path) -> None:
    msg = _check(tmp_path, project_toml(inp="image"))
    assert "field 'input.name' is 'image'; the model's inputs are ['x']" in msg.splitlines()[0]


def test_signature_names_missing_outputs(tmp_path: Path) -> None:
    msg = _check(tmp_path, project_toml(outputs=["logits", "boxes"]))
    assert "field 'outputs.names' lists ['boxes'], which the model does not produce; its outputs are ['logits']" in msg


def test_signature_names_dtype(tmp_path: Path) -> None:
    msg = _check(tmp_path, project_toml(extra="").replace('layout = "NCHW"', 'layout = "NCHW"\ndtype = "uint8"'))
    assert "field 'input.dtype' is 'uint8'; the model's input 'x' is 'float32'" in msg


def test_signature_suggests_layout(tmp_path: Path) -> None:
    msg = _check(tmp_path, project_toml(shape=[1, 32, 32, 3], layout="NHWC"))
    assert "field 'input.shape' is [1, 32, 32, 3]" in msg and 'set input.layout = "NCHW"' in msg


def test_signature_one_line_per_problem(tmp_path: Path) -> None:
    msg = _check(tmp_path, project_toml(inp="image", outputs=["prob"]))
    lines = [ln for ln in msg.splitlines() if not ln.strip().startswith("hint:")]
    assert len(lines) == 2 and "'input.name'" in lines[0] and "'outputs.names'" in lines[1]


def test_dynamic_hw_fits_any_configured_size(tmp_path: Path) -> None:
    import onnx

    root = make_byom_project(tmp_path / "p", project_toml(shape=[1, 3, 48, 40]))
    src = classifier(root / "models" / "model.onnx", hw=None)
    check_signature(load_project(root), onnx.load(str(src)), src)  # no error
