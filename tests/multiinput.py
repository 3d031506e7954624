"""A two-input gaze model (face crop 1x3x64x64 + eye crop 1x3x32x32 -> gaze [1, 3]) for the several-inputs tests
(issue 24 item 4): its PyTorch module as a project file (``gaze_net:build``), the same model exported to ONNX
(the brought form), and per-input data as .npz files (one array per input name).

The data varies each sample's brightness and contrast per input, so the random-init network's outputs differ
from sample to sample (noise images alone average out behind the global pooling: DESIGN.md §5).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GAZE_NET = '''\
import torch
from torch import nn


class GazeNet(nn.Module):
    """Face and eye crops through their own convolutions, concatenated, a linear gaze head."""

    def __init__(self):
        super().__init__()
        self.face = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.eye = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(24, 3)

    def forward(self, face, eye):
        return self.head(torch.cat([self.face(face), self.eye(eye)], 1))


def build():
    torch.manual_seed(0)
    return GazeNet()
'''

FACE, EYE = [1, 3, 64, 64], [1, 3, 32, 32]

INPUTS = f"""\
[[inputs]]
name = "face"
shape = {json.dumps(FACE)}

[[inputs]]
name = "eye"
shape = {json.dumps(EYE)}
"""

# floors for a random-init regression head calibrated on 4 samples (cosine/SQNR only: no classification head)
ACCURACY = """\
[accuracy]
min_cosine = 0.5
min_sqnr_db = 2.0
"""


def project_toml(*, brought: bool, inputs: str = INPUTS, data: str = "") -> str:
    model = ('[model]\nonnx = "models/gaze.onnx"\n' if brought else
             '[model]\nfactory = "gaze_net:build"\n')
    return (f'name = "gaze"\n\n{model}\n{inputs}\n[outputs]\nnames = ["gaze"]\nclassification = []\n\n'
            f'[data]\ncalibration = "data/calibration"\nvalidation = "data/validation"\n{data}\n{ACCURACY}')


def write_module(root: Path) -> Path:
    (root / "gaze_net.py").write_text(GAZE_NET)
    return root / "gaze_net.py"


def export_onnx(root: Path, path: Path) -> Path:
    """The PyTorch model exported the way a user would bring it (dynamic batch on both inputs)."""
    import importlib.util
    import warnings

    import torch

    spec = importlib.util.spec_from_file_location("gaze_net_export", write_module(root))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mod.build().eval(), (torch.zeros(FACE), torch.zeros(EYE)), str(path), dynamo=False,
                          opset_version=17, input_names=["face", "eye"], output_names=["gaze"],
                          dynamic_axes={"face": {0: "batch"}, "eye": {0: "batch"}, "gaze": {0: "batch"}})
    return path


def sample(rng: np.random.Generator, shape: list[int]) -> np.ndarray:
    scale, offset = rng.uniform(0.3, 2.0), rng.uniform(-1.5, 1.5)
    return (rng.standard_normal(shape[1:]) * scale + offset).astype(np.float32)


def write_npz(folder: Path, count: int, seed: int) -> list[Path]:
    """One .npz per sample, ``face`` and ``eye`` arrays (no batch axis)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        p = folder / f"{i:03d}.npz"
        np.savez(p, face=sample(rng, FACE), eye=sample(rng, EYE))
        out.append(p)
    return out


def make_gaze_project(root: Path, targets: dict[str, str], *, brought: bool, calibration: int = 4,
                      validation: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dmsbuild.toml").write_text(project_toml(brought=brought))
    tdir = root / "targets"
    tdir.mkdir(exist_ok=True)
    for name, text in targets.items():
        (tdir / f"{name}.toml").write_text(text)
    if brought:
        export_onnx(root, root / "models" / "gaze.onnx")
        (root / "gaze_net.py").unlink()
    else:
        write_module(root)
    write_npz(root / "data" / "calibration", calibration, seed=1)
    write_npz(root / "data" / "validation", validation, seed=2)
    return root
