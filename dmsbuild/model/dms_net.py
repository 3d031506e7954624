"""Reference DMS network: a MobileNetV3-Large backbone with driver-monitoring heads.

Written in plain torch (torchvision does not install beside the CPU torch
used here). The backbone follows Howard et al., "Searching for MobileNetV3"
(Table 1), so the layer shapes, parameter count and ONNX graph match what a
team exporting torchvision's ``mobilenet_v3_large`` would ship.

Heads, all computed from the pooled 960-channel feature:
- ``eye_state``: open / closed (2 classes)
- ``yawn``: no / yes (2 classes)
- ``activity``: attentive, phone, drinking, looking away, eyes off road (5 classes)
- ``head_pose``: yaw, pitch, roll regression, normalised to [-1, 1]
"""
from __future__ import annotations

import torch
from torch import nn

HEADS = {"eye_state": 2, "yawn": 2, "activity": 5}
POSE_DIMS = 3
OUTPUT_NAMES = ["eye_state", "yawn", "activity", "head_pose"]

# kernel, expanded channels, out channels, squeeze-excite, activation, stride
LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
]


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _act(kind: str) -> nn.Module:
    return nn.Hardswish() if kind == "HS" else nn.ReLU()


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "RE"):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
        ]
        if act is not None:
            layers.append(_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        squeeze = _divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.mean(x, dim=(2, 3), keepdim=True)
        s = torch.relu(self.fc1(s))
        s = nn.functional.hardsigmoid(self.fc2(s))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: str, stride: int):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(ConvBNAct(cin, exp, 1, act=act))
        layers.append(ConvBNAct(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(ConvBNAct(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class DMSNet(nn.Module):
    """MobileNetV3-Large backbone + DMS heads. ``width`` scales every layer (1.0 = the paper)."""

    def __init__(self, width: float = 1.0, in_channels: int = 3, hidden: int = 1280, dropout: float = 0.2):
        super().__init__()
        c = lambda n: _divisible(n * width)  # noqa: E731
        first = c(16)
        layers: list[nn.Module] = [ConvBNAct(in_channels, first, 3, 2, act="HS")]
        cin = first
        for k, exp, cout, se, act, stride in LARGE:
            layers.append(InvertedResidual(cin, k, c(exp), c(cout), se, act, stride))
            cin = c(cout)
        last = 6 * cin
        layers.append(ConvBNAct(cin, last, 1, act="HS"))
        self.features = nn.Sequential(*layers)
        hidden = _divisible(hidden * max(width, 1.0)) if width >= 1.0 else _divisible(hidden * width)
        self.neck = nn.Sequential(nn.Linear(last, hidden), nn.Hardswish(), nn.Dropout(dropout))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in HEADS.items()})
        self.pose = nn.Linear(hidden, POSE_DIMS)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = self.features(x)
        f = torch.mean(f, dim=(2, 3))
        h = self.neck(f)
        return (
            self.heads["eye_state"](h),
            self.heads["yawn"](h),
            self.heads["activity"](h),
            torch.tanh(self.pose(h)),
        )


def build_reference() -> DMSNet:
    """The reference model (MobileNetV3-Large, full width)."""
    return DMSNet(width=1.0)


def build_tiny() -> DMSNet:
    """A quarter-width variant for fast tests; same graph structure and heads."""
    return DMSNet(width=0.25, hidden=128)
