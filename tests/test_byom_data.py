"""Data a user has (issue 14, item 5): image folders of any size, .npy/.npz tensors, a Python loader; labels checked."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmsbuild.config import load_project
from dmsbuild.convert.data import list_samples, load_labels, load_samples
from dmsbuild.errors import UserError
from tests.byom import classifier, make_byom_project, project_toml
from tests.tinyproject import run_doit

LOADER = '''\
import numpy as np


def samples(split):
    rng = np.random.default_rng(0 if split == "calibration" else 1)
    for _ in range(3 if split == "calibration" else 5):
        yield {"x": rng.random((1, 3, 32, 32), dtype=np.float32)}


def wrong(split):
    yield {"image": np.zeros((3, 32, 32), np.float32)}
'''


def _proj(tmp_path: Path, extra: str = "", **kw) -> Path:
    return make_byom_project(tmp_path / "p", project_toml(extra=extra, **kw))


def test_large_images_are_resized_then_centre_cropped(tmp_path: Path) -> None:
    root = _proj(tmp_path, extra='\n[preprocess]\nresize = [40, 48]\nmean = [0.0]\nstd = [1.0]\nscale = 1.0\n')
    folder = root / "data" / "odd"
    folder.mkdir()
    img = (np.random.default_rng(0).random((120, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(folder / "big.png")
    proj = load_project(root)
    _, batch = load_samples([folder / "big.png"], proj)
    want = np.asarray(Image.fromarray(img).resize((48, 40), Image.BILINEAR), np.float32)[4:36, 8:40].transpose(2, 0, 1)
    assert batch.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(batch[0], want)


def test_resize_smaller_than_input_is_an_error(tmp_path: Path) -> None:
    root = _proj(tmp_path, extra='\n[preprocess]\nresize = [16, 16]\n')
    proj = load_project(root)
    with pytest.raises(UserError, match=r"'preprocess.resize' is \[16, 16\], smaller than the input"):
        load_samples(list_samples(proj, "validation"), proj)


def test_npz_tensors_by_input_name_or_any_key(tmp_path: Path) -> None:
    root = _proj(tmp_path)
    folder = root / "data" / "tensors"
    folder.mkdir()
    stack = np.random.default_rng(0).random((4, 3, 32, 32)).astype(np.float32)
    np.savez(folder / "a.npz", x=stack[:2], other=np.zeros(3))
    np.savez(folder / "b.npz", stack[2:])
    proj = load_project(root)
    proj.data.validation = str(folder)
    names, batch = load_samples(list_samples(proj, "validation"), proj)
    np.testing.assert_array_equal(batch, stack)
    assert [n.name for n in names] == ["a.npz", "a.npz", "b.npz", "b.npz"]


def test_loader_yields_input_dicts(tmp_path: Path) -> None:
    root = make_byom_project(tmp_path / "q", project_toml().replace("[data]\n", '[data]\nloader = "mydata:samples"\n'))
    (root / "mydata.py").write_text(LOADER)
    proj = load_project(root)
    assert list_samples(proj, "calibration") == [(root / "mydata.py").resolve()]
    names, batch = load_samples(list_samples(proj, "validation"), proj)
    assert batch.shape == (5, 3, 32, 32) and [n.name for n in names] == ["0", "1", "2", "3", "4"]
    _, cal = load_samples([], proj, split="calibration")
    assert cal.shape == (3, 3, 32, 32)


def test_loader_wrong_input_name_is_one_line(tmp_path: Path) -> None:
    root = make_byom_project(tmp_path / "q", project_toml().replace("[data]\n", '[data]\nloader = "mydata:wrong"\n'))
    (root / "mydata.py").write_text(LOADER)
    proj = load_project(root)
    with pytest.raises(UserError) as info:
        load_samples([], proj)
    assert "field 'data.loader' (mydata:wrong): sample 0 of split 'validation' is ['image']" in str(info.value)


def test_loader_bad_spec_is_refused_at_load(tmp_path: Path) -> None:
    root = make_byom_project(tmp_path / "q", project_toml().replace("[data]\n", '[data]\nloader = "not a spec"\n'))
    with pytest.raises(UserError, match="field 'data.loader' is 'not a spec'"):
        load_project(root)


def test_loader_builds_end_to_end(tmp_path: Path) -> None:
    root = make_byom_project(tmp_path / "q", project_toml().replace("[data]\n", '[data]\nloader = "mydata:samples"\n'))
    (root / "mydata.py").write_text(LOADER)
    classifier(root / "models" / "model.onnx")
    run = run_doit(root, "build")
    assert run.rc == 0, run.output
    assert "calibrating with up to 128 samples of data.loader mydata:samples" in run.output
    assert "FP32 outputs on 5 validation samples" in run.output


def _labels(tmp_path: Path, table: dict) -> str:
    root = _proj(tmp_path, labels="data/labels.json", outputs=["logits"])
    (root / "data" / "labels.json").write_text(json.dumps(table))
    proj = load_project(root)
    names = list_samples(proj, "validation")
    with pytest.raises(UserError) as info:
        load_labels(proj, names)
    return str(info.value)


def test_labels_naming_unknown_heads_is_an_error(tmp_path: Path) -> None:
    names = [f"{i:03d}.png" for i in range(6)]
    msg = _labels(tmp_path, {n: {"logits": 1, "eye_state": 0} for n in names})
    assert "labels name heads ['eye_state'] that are not in outputs.names ['logits']" in msg


def test_labels_naming_no_head_is_an_error(tmp_path: Path) -> None:
    names = [f"{i:03d}.png" for i in range(6)]
    assert "labels no head at all" in _labels(tmp_path, {n: {} for n in names})


def test_labels_missing_for_some_samples_names_the_head(tmp_path: Path) -> None:
    names = [f"{i:03d}.png" for i in range(6)]
    table = {n: ({"logits": 1} if i else {}) for i, n in enumerate(names)}
    assert "head 'logits' has no label for 000.png" in _labels(tmp_path, table)
