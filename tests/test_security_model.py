"""A hostile model or data file (issue 30: the attacks that held stay as tests).

A user's ONNX whose weights point outside its folder, a .npy/.npz that carries a pickle: refused in one line
naming the file, nothing outside read, no code run. (A checkpoint is read with ``torch.load(weights_only=True)``:
tests/test_model.py.)
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.errors import UserError


def _model_with_external(tmp_path: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "4")):
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], initializer=[w])
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    from dmsbuild.convert.model_import import normalise

    (tmp_path / "secret.bin").write_bytes(b"\0\0\0\0")
    src = _model_with_external(tmp_path, location)
    with pytest.raises(UserError) as exc:
        normalise(src, tmp_path / "out.onnx", "model.onnx")
    assert str(exc.value).startswith(f"{src}: initializer 'w' points at external data") and "outside" in str(exc.value)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_a_pickle_in_calibration_data_is_never_unpickled(tmp_path, project_dir, suffix):
    from dmsbuild.convert.data import iter_samples
    from dmsbuild.config import load_project

    ran = tmp_path / "pickle-ran"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (ran,))

    arr = np.array([Boom()], dtype=object)
    path = tmp_path / f"calib{suffix}"
    if suffix == ".npy":
        np.save(path, arr, allow_pickle=True)
    else:
        np.savez(path, image=arr)
    assert pickle.loads(pickle.dumps(Boom())) is None and ran.exists()  # the payload works when unpickled
    ran.unlink()

    with pytest.raises(UserError) as exc:
        list(iter_samples([path], load_project(project_dir)))
    assert str(exc.value).startswith(f"{path}: unreadable") and not ran.exists()
