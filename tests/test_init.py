"""`doit init` (issue 14, item 4): dmsbuild.toml from a model's signature, guesses marked, backup kept."""
from __future__ import annotations

from pathlib import Path

import pytest

from dmsbuild.config import load_project
from dmsbuild.errors import UserError
from dmsbuild.convert.scaffold import init_project
from tests.byom import classifier
from tests.tinyproject import run_doit, write_images

FACTORY = '''\
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 16 * 16, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return {"scores": self.fc(y.flatten(1)), "features": y}


def build():
    return Net()
'''


def test_init_onnx_then_build(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    classifier(root / "models" / "net.onnx", inp="data:0", out="gpu_0/softmax_1", hw=None)
    write_images(root / "data" / "calibration", 3, seed=1, size=(50, 60))
    write_images(root / "data" / "validation", 4, seed=2, size=(50, 60))
    run = run_doit(root, "init", "onnx=models/net.onnx", "data=data")
    assert run.rc == 0, run.output
    assert "input.shape uses 224 (a guess)" in run.output and "still to check" in run.output
    text = (root / "dmsbuild.toml").read_text()
    assert 'onnx = "models/net.onnx"' in text and 'names = ["gpu_0/softmax_1"]' in text
    assert 'calibration = "data/calibration"' in text and "shape = [1, 3, 224, 224]  # guess" in text
    assert (root / "targets" / "local.toml").is_file()
    build = run_doit(root, "build")
    assert build.rc == 0, build.output


def test_init_keeps_a_backup_and_restores_on_failure(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    classifier(root / "net.onnx")
    (root / "dmsbuild.toml").write_text("# mine\n")
    init_project(root, onnx_path=str(root / "net.onnx"))
    backups = list(root.glob("dmsbuild.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == "# mine\n"
    assert load_project(root).input.shape == [1, 3, 32, 32]
    init_project(root, onnx_path=str(root / "net.onnx"))
    assert len(list(root.glob("dmsbuild.toml.bak-*"))) == 2  # never overwrites an older backup


def test_init_writes_one_inputs_table_per_input(tmp_path: Path) -> None:
    """Several inputs (issue 24 item 4): each gets an [[inputs]] table, non-4-D ones included."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    g = h.make_graph([h.make_node("Add", ["a", "b"], ["c"])], "two",
                     [h.make_tensor_value_info("a", T.FLOAT, [1, 3, 8, 8]), h.make_tensor_value_info("b", T.FLOAT, [1, 8])],
                     [h.make_tensor_value_info("c", T.FLOAT, [1, 3, 8, 8])])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), tmp_path / "two.onnx")
    init_project(tmp_path, onnx_path=str(tmp_path / "two.onnx"))
    text = (tmp_path / "dmsbuild.toml").read_text()
    assert text.count("[[inputs]]") == 2 and "[input]" not in text
    assert [(i.name, i.shape) for i in load_project(tmp_path).all_inputs] == [("a", [1, 3, 8, 8]), ("b", [1, 8])]


def test_init_refuses_an_integer_input_naming_it(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    g = h.make_graph([h.make_node("Cast", ["sr"], ["c"], to=T.FLOAT)], "int",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8]), h.make_tensor_value_info("sr", T.INT64, [])],
                     [h.make_tensor_value_info("c", T.FLOAT, [])])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), tmp_path / "int.onnx")
    with pytest.raises(UserError, match=r"the input 'sr' is int64; dmsbuild feeds float32, float16 or uint8"):
        init_project(tmp_path, onnx_path=str(tmp_path / "int.onnx"))
    assert not (tmp_path / "dmsbuild.toml").exists()


def test_init_needs_exactly_one_form(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="give onnx=PATH, or factory="):
        init_project(tmp_path)


def test_init_pytorch_factory(tmp_path: Path) -> None:
    import torch

    root = tmp_path / "proj"
    root.mkdir()
    (root / "mynet.py").write_text(FACTORY)
    import importlib
    import sys

    sys.path.insert(0, str(root))
    try:
        torch.save(importlib.import_module("mynet").build().state_dict(), root / "net.pt")
        init_project(root, factory="mynet:build", checkpoint="net.pt", shape="1,3,16,16")
        proj = load_project(root)
        assert proj.model.factory == "mynet:build" and proj.input.shape == [1, 3, 16, 16]
        assert proj.outputs.names == ["scores", "features"] and proj.outputs.classification == ["scores"]
        with pytest.raises(UserError, match=r"fails on an example input of shape \[1, 3, 32, 32\]"):
            init_project(root, factory="mynet:build", checkpoint="net.pt", shape="1,3,32,32")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("mynet", None)
