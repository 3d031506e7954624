"""The conformance corpus (issue 14, item 8): architectures users bring, made on the fly with seeded random
weights (no downloads), exported to ONNX at small input sizes.

torchvision cannot be used here (PyPI's torchvision fails to import beside the local torch 2.13.0 CPU build:
'operator torchvision::nms does not exist'), so the architectures are written in plain torch, each keeping the
structure that matters to an exporter, a quantizer and a compiler: MobileNetV2 inverted residuals (depthwise,
ReLU6), ResNet basic blocks (BatchNorm, downsampling shortcut), SqueezeNet fire modules (concat), ShuffleNetV2
channel shuffle (reshape/transpose), an EfficientNet MBConv with squeeze-excitation and SiLU, a RegNet-like
grouped-conv stage, a tiny ViT (patch embedding, multi-head attention, LayerNorm, GELU), an LR-ASPP-like
segmentation head (bilinear Resize, sigmoid gating), a detection-like model with three outputs, an NHWC model,
a dynamic-H/W model; plus ONNX-level cases written with onnx.helper (tests/byom.py): opsets 9 and 21, names
with '/' and ':', fp16-stored weights, external data, a custom-domain op, a two-input model.

``ENTRIES`` lists them; ``make(entry, folder)`` writes the model and returns the project settings.
Used by tests/test_corpus.py and bench/corpus.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.byom import classifier

HW = 32  # small inputs keep the corpus cheap


@dataclass
class Entry:
    name: str
    opset: int
    #: "build": every target builds; otherwise a substring of the one-line refusal expected
    expect: str = "build"
    #: the project settings (tests/byom.project_toml keyword arguments)
    settings: dict[str, Any] = field(default_factory=dict)
    make: Callable[[Path], None] | None = None
    note: str = ""


# --------------------------------------------------------------------------- torch architectures
def _torch_models() -> dict[str, Callable[[], Any]]:
    import torch
    from torch import nn

    def bn_act(cin: int, cout: int, k: int = 3, s: int = 1, g: int = 1, act: type = nn.ReLU6) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout), act())

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, s: int, t: int) -> None:
            super().__init__()
            hid = cin * t
            self.use_res = s == 1 and cin == cout
            self.body = nn.Sequential(bn_act(cin, hid, 1), bn_act(hid, hid, 3, s, hid),
                                      nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.use_res else self.body(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(bn_act(3, 16, 3, 2), InvertedResidual(16, 16, 1, 1),
                                          InvertedResidual(16, 24, 2, 4), InvertedResidual(24, 24, 1, 4),
                                          InvertedResidual(24, 32, 2, 4), bn_act(32, 64, 1))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x))

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, s: int) -> None:
            super().__init__()
            self.a = bn_act(cin, cout, 3, s, act=nn.ReLU)
            self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
                         if s != 1 or cin != cout else nn.Identity())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.b(self.a(x)) + self.down(x))

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(bn_act(3, 16, 3, 1, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
            self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2))
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    class Fire(nn.Module):
        def __init__(self, cin: int, sq: int, ex: int) -> None:
            super().__init__()
            self.sq = nn.Sequential(nn.Conv2d(cin, sq, 1), nn.ReLU())
            self.e1 = nn.Sequential(nn.Conv2d(sq, ex, 1), nn.ReLU())
            self.e3 = nn.Sequential(nn.Conv2d(sq, ex, 3, padding=1), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = self.sq(x)
            return torch.cat([self.e1(s), self.e3(s)], 1)

    class SqueezeNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 32, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                                          Fire(32, 8, 16), Fire(32, 8, 16), Fire(32, 16, 32))
            self.classifier = nn.Sequential(nn.Conv2d(64, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x))

    def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    class ShuffleUnit(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            half = c // 2
            self.branch = nn.Sequential(bn_act(half, half, 1, act=nn.ReLU), nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False),
                                        nn.BatchNorm2d(half), bn_act(half, half, 1, act=nn.ReLU))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = x.chunk(2, dim=1)
            return shuffle(torch.cat([a, self.branch(b)], 1), 2)

    class ShuffleNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(bn_act(3, 24, 3, 2, act=nn.ReLU), ShuffleUnit(24), ShuffleUnit(24),
                                     bn_act(24, 48, 3, 2, act=nn.ReLU), ShuffleUnit(48))
            self.fc = nn.Linear(48, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.net(x).mean((2, 3)))

    class MBConvSE(nn.Module):
        def __init__(self, cin: int, cout: int, s: int) -> None:
            super().__init__()
            hid = cin * 4
            self.expand = bn_act(cin, hid, 1, act=nn.SiLU)
            self.dw = bn_act(hid, hid, 3, s, hid, act=nn.SiLU)
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hid, hid // 4, 1), nn.SiLU(),
                                    nn.Conv2d(hid // 4, hid, 1), nn.Sigmoid())
            self.project = nn.Sequential(nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.res = s == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.dw(self.expand(x))
            y = self.project(y * self.se(y))
            return x + y if self.res else y

    class EfficientNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(bn_act(3, 16, 3, 2, act=nn.SiLU), MBConvSE(16, 16, 1), MBConvSE(16, 24, 2),
                                     MBConvSE(24, 24, 1), bn_act(24, 64, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1),
                                     nn.Flatten(), nn.Linear(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    class RegNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(bn_act(3, 32, 3, 2, act=nn.ReLU), bn_act(32, 32, 3, 1, g=4, act=nn.ReLU),
                                     bn_act(32, 64, 3, 2, g=8, act=nn.ReLU), bn_act(64, 64, 1, act=nn.ReLU),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    class ViT(nn.Module):
        def __init__(self, dim: int = 32, heads: int = 2, depth: int = 2) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, dim, 8, 8)
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, (HW // 8) ** 2 + 1, dim) * 0.02)
            layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
            return self.head(self.norm(self.encoder(t))[:, 0])

    class LRASPP(nn.Module):
        def __init__(self, classes: int = 4) -> None:
            super().__init__()
            self.low = bn_act(3, 16, 3, 2, act=nn.Hardswish)
            self.high = nn.Sequential(bn_act(16, 32, 3, 2, act=nn.Hardswish), bn_act(32, 32, 3, 1, 32, act=nn.Hardswish))
            self.cbr = bn_act(32, 32, 1, act=nn.ReLU)
            self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 32, 1), nn.Sigmoid())
            self.low_cls = nn.Conv2d(16, classes, 1)
            self.high_cls = nn.Conv2d(32, classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            low = self.low(x)
            high = self.high(low)
            y = self.cbr(high) * self.scale(high)
            y = nn.functional.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
            y = self.low_cls(low) + self.high_cls(y)
            return nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    class Detector(nn.Module):
        """A backbone with three outputs: per-anchor class scores, box regressions and a feature map."""

        def __init__(self, anchors: int = 3, classes: int = 5) -> None:
            super().__init__()
            self.backbone = nn.Sequential(bn_act(3, 16, 3, 2, act=nn.ReLU), bn_act(16, 32, 3, 2, act=nn.ReLU),
                                          bn_act(32, 32, 3, 2, act=nn.ReLU))
            self.cls = nn.Conv2d(32, anchors * classes, 1)
            self.box = nn.Conv2d(32, anchors * 4, 1)
            self.classes = classes

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            f = self.backbone(x)
            n = f.shape[0]
            scores = self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, self.classes)
            boxes = self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
            return scores, boxes, f

    class NHWC(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = MobileNetV2()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.permute(0, 3, 1, 2))

    class TwoInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = bn_act(3, 8, act=nn.ReLU)
            self.b = bn_act(3, 8, act=nn.ReLU)
            self.fc = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.cat([self.a(x).mean((2, 3)), self.b(y).mean((2, 3))], 1))

    return {"mobilenetv2": MobileNetV2, "resnet": ResNet, "squeezenet": SqueezeNet, "shufflenetv2": ShuffleNet,
            "efficientnet": EfficientNet, "regnet": RegNet, "vit": ViT, "lraspp": LRASPP, "detector": Detector,
            "nhwc": NHWC, "dynamic_hw": ResNet, "two_input": TwoInput}


def _export(arch: str, opset: int, path: Path, *, shape: list[int] | None = None, outputs: list[str] | None = None,
            inputs: list[str] | None = None, dynamic: dict | None = None, seed: int = 0) -> None:
    import warnings

    import torch

    torch.manual_seed(seed)
    model = _torch_models()[arch]().eval()
    # random BatchNorm statistics, so folding BN into convs is exercised with non-trivial values
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    shape = shape or [1, 3, HW, HW]
    inputs = inputs or ["input"]
    args = tuple(torch.randn(shape) for _ in inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=outputs or ["logits"], dynamic_axes=dynamic or {inputs[0]: {0: "batch"}},
                          do_constant_folding=True)


def _torch_entry(name: str, arch: str, opset: int, *, outputs: list[str] | None = None,
                 classification: list[str] | None = None, shape: list[int] | None = None, layout: str = "NCHW",
                 dynamic: dict | None = None, expect: str = "build", inputs: list[str] | None = None, note: str = "") -> Entry:
    outs = outputs or ["logits"]
    settings = {"inp": (inputs or ["input"])[0], "outputs": outs, "classification": classification,
                "shape": shape or [1, 3, HW, HW], "layout": layout}

    def make(path: Path) -> None:
        _export(arch, opset, path, shape=shape, outputs=outs, inputs=inputs, dynamic=dynamic)

    return Entry(name, opset, expect, settings, make, note)


def _onnx_entry(name: str, opset: int, *, expect: str = "build", inp: str = "x", out: str = "logits", note: str = "",
                **kw: Any) -> Entry:
    def make(path: Path) -> None:
        classifier(path, opset=opset, inp=inp, out=out, **kw)

    return Entry(name, opset, expect, {"inp": inp, "outputs": [out]}, make, note)


ENTRIES: list[Entry] = [
    _torch_entry("mobilenetv2", "mobilenetv2", 17, note="inverted residuals, depthwise, ReLU6"),
    _torch_entry("resnet18-like", "resnet", 13, note="basic blocks, BN, strided shortcut"),
    _torch_entry("squeezenet", "squeezenet", 11, note="fire modules (concat)"),
    _torch_entry("shufflenetv2", "shufflenetv2", 12, note="channel split + shuffle"),
    _torch_entry("efficientnet-b0-like", "efficientnet", 14, note="MBConv, squeeze-excitation, SiLU"),
    _torch_entry("regnet-like", "regnet", 15, note="grouped convs"),
    _torch_entry("vit-tiny", "vit", 17, note="patch embedding, attention, LayerNorm, GELU"),
    _torch_entry("lraspp-seg", "lraspp", 16, outputs=["mask"], classification=[],
                 note="segmentation head, bilinear Resize"),
    _torch_entry("detector-3-outputs", "detector", 18, outputs=["scores", "boxes", "features"], classification=[],
                 note="three outputs (scores, boxes, features)"),
    _torch_entry("nhwc", "nhwc", 19, shape=[1, HW, HW, 3], layout="NHWC", note="NHWC input"),
    _torch_entry("dynamic-hw", "dynamic_hw", 20, dynamic={"input": {0: "batch", 2: "height", 3: "width"}},
                 note="dynamic H and W"),
    _onnx_entry("opset9-constantofshape", 9, const_weights=True, note="opset 9, weights computed by ConstantOfShape"),
    _onnx_entry("opset21-odd-names", 21, inp="data:0", out="gpu_0/softmax_1", note="opset 21, names with ':' and '/'"),
    _onnx_entry("fp16-weights", 17, fp16_weights=True, note="weights stored as float16"),
    _onnx_entry("external-data", 17, external=True, note="weights in an external data file"),
    _onnx_entry("custom-op", 17, custom_op=True, expect="custom-domain op 'com.example::FancyNorm'",
                note="an op no target runs"),
    _torch_entry("two-input", "two_input", 17, inputs=["x", "y"], outputs=["logits"],
                 expect="has 2 inputs ('x' [", note="two inputs"),
]


def make(entry: Entry, folder: Path) -> Path:
    """Write the entry's model to ``folder/models/model.onnx``; returns its path."""
    path = folder / "models" / "model.onnx"
    assert entry.make is not None
    entry.make(path)
    return path


TARGETS = ("local", "rpi5", "qcs8255", "orin")
REPO = Path(__file__).resolve().parents[1]


def make_project(entry: Entry, folder: Path) -> Path:
    """A project around the entry's model with the repository's four target profiles and tiny data sets."""
    from tests.byom import make_byom_project, project_toml

    targets = {t: (REPO / "targets" / f"{t}.toml").read_text() for t in TARGETS}
    s = dict(entry.settings)
    toml = project_toml(inp=s.get("inp", "x"), shape=s.get("shape"), outputs=s.get("outputs"),
                        classification=s.get("classification"), layout=s.get("layout", "NCHW"),
                        extra="\n[export]\nopset = 17\n")
    toml = toml.replace("[data]\n", "[data]\nmax_calibration_samples = 4\nmax_validation_samples = 6\n")
    root = make_byom_project(folder, toml, targets)
    make(entry, root)
    return root


def build_outcome(root: Path, run: Any) -> dict[str, str]:
    """Per target: "ok", or the first line of why it stopped: the import's refusal, else the target's own
    compile or build step, else the shared step (quantize/evaluate) it waited for."""
    import re

    failures = re.findall(r"^Task(?:Failed|Error) - taskid:(\S+)\n(.*)$", run.output, re.M)
    out: dict[str, str] = {}
    for t in TARGETS:
        if (root / "artifacts" / t / "build.json").is_file() and not run.failure(f"build:{t}"):
            out[t] = "ok"
            continue
        own = [f"{task}: {line}" for task, line in failures
               if task == "export" or task.startswith(f"compile:{t}.") or task == f"build:{t}"]
        shared = [f"{task}: {line}" for task, line in failures if task.startswith(("quantize:", "evaluate:"))]
        out[t] = (own or shared or ["not built"])[0]
    return out
