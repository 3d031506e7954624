"""Quantization-side fixes for brought models (issue 14): QNN fixed shapes for dynamic H/W, and an ONNX Runtime
crash while loading an artifact becomes one line instead of a dead build."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.errors import UserError
from dmsbuild.convert.quantize import _session_check, fix_batch
from tests.byom import classifier


def test_fixed_shape_fixes_dynamic_hw_to_the_configured_size(tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(classifier(tmp_path / "m.onnx", hw=None)))
    fixed = fix_batch(proto, 1, [1, 3, 48, 40])
    dims = [d.dim_value for d in fixed.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 48, 40]
    only_batch = fix_batch(onnx.load(str(tmp_path / "m.onnx")), 1)  # fix_batch edits its argument
    assert [d.dim_param or d.dim_value for d in only_batch.graph.input[0].type.tensor_type.shape.dim] == [1, 3, "H", "W"]


def test_session_check_passes_a_good_artifact(tmp_path: Path) -> None:
    path = classifier(tmp_path / "fp16.onnx")
    _session_check(path)
    assert path.is_file()


def test_runtime_crash_is_one_line_naming_the_precision(tmp_path: Path) -> None:
    path = classifier(tmp_path / "fp16.onnx")
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(UserError) as info:
        _session_check(path, crash)
    assert "ONNX Runtime's CPU provider crashed (signal 11)" in str(info.value).splitlines()[0]
    assert "drop 'fp16'" in info.value.hint
    assert not path.exists()  # no artifact left behind that the runtime cannot load


def test_unloadable_artifact_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "int8-qdq-abc.onnx"
    path.write_bytes(b"garbage")
    with pytest.raises(UserError) as info:
        _session_check(path)
    assert "cannot load this artifact" in str(info.value) and "drop 'int8-qdq'" in info.value.hint
