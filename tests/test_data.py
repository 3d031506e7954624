"""Preprocessing and sample loading follow [input]/[preprocess] exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmsbuild.config import ProjectConfig
from dmsbuild.convert.data import iter_samples, list_samples, load_samples
from dmsbuild.errors import UserError


def _project(tmp_path: Path, **pre) -> ProjectConfig:
    p = ProjectConfig()
    p.root = tmp_path
    p.source = tmp_path / "dmsbuild.toml"
    p.input.shape = [1, 3, 2, 2]
    for k, v in pre.items():
        setattr(p.preprocess, k, v)
    return p


def test_image_normalised_in_channel_order_and_layout(tmp_path: Path) -> None:
    px = np.array([[[255, 0, 51], [0, 0, 0]], [[0, 0, 0], [0, 102, 0]]], np.uint8)
    (tmp_path / "cal").mkdir()
    Image.fromarray(px).save(tmp_path / "cal" / "a.png")
    p = _project(tmp_path, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 0.5], channel_order="BGR")
    _, x = load_samples([tmp_path / "cal" / "a.png"], p)
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32
    # BGR: channel 0 is blue, channel 2 is red; mean/std are given in that (model) order
    assert x[0, 0, 0, 0] == pytest.approx(51 / 255)
    assert x[0, 2, 0, 0] == pytest.approx(1.0 / 0.5)
    assert x[0, 1, 1, 1] == pytest.approx(102 / 255)
    p.input.layout = "NHWC"
    p.input.shape = [1, 2, 2, 3]
    _, y = load_samples([tmp_path / "cal" / "a.png"], p)
    assert y.shape == (1, 2, 2, 3) and np.allclose(y[0].transpose(2, 0, 1), x[0])


def test_images_resized_to_input(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "big.jpg")
    p = _project(tmp_path)
    _, x = load_samples([tmp_path / "big.jpg"], p)
    assert x.shape == (1, 3, 2, 2)


def test_npy_single_sample_and_stack(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.ones((3, 2, 2), np.float32))
    np.save(tmp_path / "stack.npy", np.zeros((5, 3, 2, 2), np.float32))
    p = _project(tmp_path)
    got = list(iter_samples([tmp_path / "one.npy", tmp_path / "stack.npy"], p))
    assert [f.name for f, _ in got] == ["one.npy"] + ["stack.npy"] * 5
    assert len(list(iter_samples([tmp_path / "stack.npy"], p, limit=2))) == 2
    np.save(tmp_path / "bad.npy", np.zeros((5, 3, 2, 4), np.float32))
    with pytest.raises(UserError) as err:
        list(iter_samples([tmp_path / "bad.npy"], p))
    assert str(err.value).startswith(f"{tmp_path / 'bad.npy'}: sample shape (3, 2, 4)")


def test_list_samples_ignores_other_files_and_sorts(tmp_path: Path) -> None:
    (tmp_path / "data" / "calibration").mkdir(parents=True)
    for n in ["b.png", "a.npy", "labels.json", "notes.txt"]:
        (tmp_path / "data" / "calibration" / n).write_bytes(b"")
    p = _project(tmp_path)
    assert [f.name for f in list_samples(p, "calibration")] == ["a.npy", "b.png"]
