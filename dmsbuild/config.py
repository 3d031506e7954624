"""Project configuration (``dmsbuild.toml``) and target profiles (``targets/*.toml``).

Both are typed dataclasses validated at load time by one strict loader: an
unknown field, a wrong type or a value outside the allowed set raises a
``UserError`` whose first line names the file, the field and what is allowed.
Relative paths in ``dmsbuild.toml`` are resolved against the project folder
(the one that holds ``dmsbuild.toml``), never against dmsbuild's installation;
a path that lands inside dmsbuild's own package is refused (its files are
dmsbuild's, not the project's: a model calibrated on them would be judged on
someone else's data).

This module is imported by ``dodo.py`` on every doit run, so it imports only
the standard library.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .core import runtimes
from .core.accuracy import check_head_floors  # the accuracy judge's own rule; below config (core/)
from .errors import UserError

from . import PROJECT_FILE, locate_root  # noqa: E402,F401 (PROJECT_FILE: config.PROJECT_FILE for its users)
TARGETS_DIR = "targets"
#: names of targets, boards and artifacts: safe in paths and shell words
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# --------------------------------------------------------------------------
# strict loader
# --------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "table"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(expected: str | None = None) -> UserError:
        return UserError(
            f"{source}: field '{where}' is {value!r}; expected {expected or _type_name(tp)}",
            hint=f"fix '{where}' in {source}",
        )

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where, source)
            except UserError as exc:
                errors.append(exc)
        if len(errors) == 1 and any(dataclasses.is_dataclass(a) for a in args):
            raise errors[0]  # an optional table: its own error names the inner field
        raise bad()
    if origin is Literal:
        if value not in args:
            raise UserError(
                f"{source}: field '{where}' is {value!r}; allowed values: "
                + ", ".join(repr(a) for a in args),
                hint=f"fix '{where}' in {source}",
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise bad()
        inner = args[0] if args else Any
        return [_convert(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad("a table")
        return load_dataclass(tp, value, source, prefix=where)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug, not a user error


def load_dataclass(cls: type, data: dict[str, Any], source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown fields."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise UserError(
                f"{source}: unknown field '{where}'; allowed here: {allowed}",
                hint=f"remove or rename '{where}' in {source}",
            )
        kwargs[key] = _convert(value, hints[key], where, source)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            where = f"{prefix}.{name}" if prefix else name
            raise UserError(
                f"{source}: missing required field '{where}' ({_type_name(hints[name])})",
                hint=f"add '{where}' to {source}",
            )
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(source, prefix)
    return obj


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: malformed TOML: {exc}", hint="fix the syntax of that file (UTF-8 TOML)") from None
    except OSError as exc:  # a folder, no permission, a name too long
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}", hint="check that path") from None


def _check_name(value: str, where: str, source: str) -> None:
    if not NAME_RE.match(value):
        raise UserError(
            f"{source}: field '{where}' is {value!r}; use letters, digits, '.', '_' or '-' "
            "(no spaces, slashes, '..' or shell characters), at most 64 characters",
            hint=f"rename it in {source}",
        )


# --------------------------------------------------------------------------
# project configuration: dmsbuild.toml
# --------------------------------------------------------------------------
@dataclass
class ModelConfig:
    #: ``package.module:callable`` returning a torch.nn.Module (exactly one of ``factory`` and ``onnx``); module
    #: paths resolve from the project root first
    factory: str | None = None
    #: state dict for the factory's module (``torch.save(model.state_dict())``; fp16 tensors are cast back);
    #: loaded with ``weights_only=True`` and strict keys
    checkpoint: str | None = None
    #: your own ONNX model instead of ``factory``/``checkpoint``; normalised on import (docs/byom.md)
    onnx: str | None = None
    #: extra files whose change must re-export (the factory's module file is always tracked)
    sources: list[str] = field(default_factory=list)

    def validate(self, source: str, prefix: str) -> None:
        if (self.factory is None) == (self.onnx is None):
            raise UserError(
                f"{source}: [model] needs exactly one of 'factory' (a PyTorch `module:callable`) or 'onnx' (a file)",
                hint="set model.factory and model.checkpoint, or model.onnx",
            )
        if self.factory is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", self.factory):
            raise UserError(
                f"{source}: field 'model.factory' is {self.factory!r}; expected 'package.module:callable'",
                hint="for example factory = \"dmsbuild.model.dms_net:build_reference\"",
            )


def _check_input_name(name: str, where: str, source: str) -> None:
    """An input name travels as an npz member and a trtexec/SNPE argument: no quotes, commas, ':' or path parts."""
    if not name or any(c in name for c in "'\",:/\\=") or name.strip() != name:
        raise UserError(f"{source}: field '{where}' is {name!r}; with several inputs each name must be non-empty and "
                        "hold no quote, comma, colon, '=', slash or surrounding space",
                        hint="rename the model's input (the name must match the ONNX graph input)")


@dataclass
class InputConfig:
    #: the model's input tensor name (the exported graph's input; a brought ONNX must have it)
    name: str = "image"
    #: 4-D input shape in ``layout`` order; its batch is the export example's (a dynamic batch axis stays symbolic);
    #: an entry of ``[[inputs]]`` may have any rank >= 1 (a state vector, audio frames), fed from .npy/.npz or a loader
    shape: list[int] = field(default_factory=lambda: [1, 3, 224, 224])
    #: input element type; "uint8" models take raw pixels (no scale, mean or std applied)
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    #: axis order of ``shape``: channels first (NCHW) or last (NHWC)
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    def validate(self, source: str, prefix: str) -> None:
        if prefix.startswith("inputs["):  # one of several inputs: any rank (non-image inputs come from arrays)
            if not self.shape or any(d <= 0 for d in self.shape):
                raise UserError(f"{source}: field '{prefix}.shape' is {self.shape}; expected positive dims, the batch first",
                                hint=f"for example {prefix}.shape = [1, 3, 64, 64] (an image) or [1, 128] (a vector)")
            _check_input_name(self.name, f"{prefix}.name", source)
            return
        if len(self.shape) != 4 or any(d <= 0 for d in self.shape):
            raise UserError(
                f"{source}: field 'input.shape' is {self.shape}; expected 4 positive dims ({self.layout})"
            )

    @property
    def is_image(self) -> bool:
        """4-D: an image folder can fill it (preprocessed to H, W, channels)."""
        return len(self.shape) == 4

    @property
    def hw(self) -> tuple[int, int]:
        if self.layout == "NCHW":
            return self.shape[2], self.shape[3]
        return self.shape[1], self.shape[2]

    @property
    def channels(self) -> int:
        return self.shape[1] if self.layout == "NCHW" else self.shape[3]


@dataclass
class OutputKindConfig:
    """What one output means, so it is judged by it (``[outputs.kinds.<name>]``; docs/accuracy.md "Outputs by kind").

    Unset fields take the defaults of ``board/runner/metrics.py`` ``KIND_DEFAULTS`` (shown here)."""

    #: classification, regression, embedding, detection, segmentation or sequence
    kind: Literal["classification", "regression", "embedding", "detection", "segmentation", "sequence"] = "regression"
    #: the class axis (classification, sequence: default -1, the last; segmentation: default 1)
    axis: int | None = None
    #: detection: "yolo" (one [N, 4+C, A] tensor, channels on channel_axis) or "ssd" (this output's [N, A, 4] boxes + scores_output)
    layout: Literal["yolo", "ssd"] | None = None
    #: detection yolo: the axis holding the box, objectness and class channels (default 1)
    channel_axis: int | None = None
    #: detection yolo: channel range [lo, hi) of the box coordinates (default [0, 4])
    boxes: list[int] | None = None
    #: detection yolo: channel range [lo, hi) of the class scores (default: every channel after boxes/objectness)
    scores: list[int] | None = None
    #: detection yolo: channel index of an objectness score (YOLOv5 style); unset: none (YOLOv8 style)
    objectness: int | None = None
    #: detection: box coordinates as "xywh" (centre, size; default) or "xyxy" (corners)
    box_format: Literal["xywh", "xyxy"] | None = None
    #: detection ssd: the output holding the [N, A, C] class scores of this output's boxes
    scores_output: str | None = None
    #: detection ssd: a class index meaning "no object", ignored when decoding
    background: int | None = None
    #: detection: keep a candidate box from this confidence (default 0.25)
    score_threshold: float | None = None
    #: detection: non-maximum suppression IoU, per class (default 0.45)
    nms_iou: float | None = None
    #: detection: a detection matches an FP32 one of its class from this IoU (default 0.5)
    match_iou: float | None = None
    #: detection: detections kept per sample after NMS (default 300)
    max_detections: int | None = None
    #: segmentation with one channel on its class axis: foreground where the value exceeds this (default 0.5)
    threshold: float | None = None
    #: sequence: the CTC blank class; set, greedy-decoded strings are compared too
    blank: int | None = None

    def validate(self, source: str, prefix: str) -> None:
        detection = ("layout", "channel_axis", "boxes", "scores", "objectness", "box_format", "scores_output",
                     "background", "score_threshold", "nms_iou", "match_iou", "max_detections")
        own = {"detection": detection, "segmentation": ("axis", "threshold"), "sequence": ("axis", "blank"),
               "classification": ("axis",)}.get(self.kind, ())
        stray = [f for f in ("axis", "threshold", "blank", *detection) if getattr(self, f) is not None and f not in own]
        if stray:
            raise UserError(f"{source}: field '{prefix}.{stray[0]}' does not apply to a {self.kind} output",
                            hint=f"remove it, or set '{prefix}.kind' to the kind it belongs to (docs/accuracy.md)")
        for name in ("axis", "channel_axis"):
            if getattr(self, name) == 0:
                raise UserError(f"{source}: field '{prefix}.{name}' is 0, the batch axis; expected the axis that holds "
                                "the classes (channels)", hint=f"for example {prefix}.{name} = {-1 if name == 'axis' else 1}")
        for name in ("boxes", "scores"):
            rng = getattr(self, name)
            if rng is not None and not (len(rng) == 2 and 0 <= rng[0] < rng[1]):
                raise UserError(f"{source}: field '{prefix}.{name}' is {rng}; expected a channel range [lo, hi) with 0 <= lo < hi",
                                hint=f"for example {prefix}.{name} = [0, 4]")
        if self.boxes is not None and self.boxes[1] - self.boxes[0] != 4:
            raise UserError(f"{source}: field '{prefix}.boxes' is {self.boxes}; a box has 4 coordinates",
                            hint=f"for example {prefix}.boxes = [0, 4]")
        for name in ("score_threshold", "nms_iou", "match_iou"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UserError(f"{source}: field '{prefix}.{name}' is {value!r}; expected a number in [0, 1]",
                                hint=f"fix '{prefix}.{name}' in {source}")
        if self.kind == "detection" and self.layout == "ssd" and not self.scores_output:
            raise UserError(f"{source}: field '{prefix}.scores_output' is missing; an ssd-layout detection needs the "
                            "output that holds its class scores", hint=f"set {prefix}.scores_output = \"<scores output>\"")


@dataclass
class OutputsConfig:
    #: the model's output (head) names, in the model's order
    names: list[str] = field(default_factory=list)
    #: heads scored by top-1 agreement / labelled accuracy (argmax along the class axis: outputs.kinds, default the
    #: last); a head declared kind = "classification" in outputs.kinds is added here
    classification: list[str] = field(default_factory=list)
    #: what each output means, by output name, e.g. [outputs.kinds.output0] kind = "detection" (docs/accuracy.md);
    #: an output not listed is a classification head if in outputs.classification, else a regression head
    kinds: dict[str, OutputKindConfig] = field(default_factory=dict)

    def validate(self, source: str, prefix: str) -> None:
        unknown = [n for n in self.classification if n not in self.names]
        if unknown:
            raise UserError(
                f"{source}: field 'outputs.classification' names {unknown}, which are not in outputs.names {self.names}"
            )
        for name, k in self.kinds.items():
            if name not in self.names:
                raise UserError(f"{source}: field 'outputs.kinds.{name}' names an output that is not in outputs.names "
                                f"{self.names}", hint=f"use one of {self.names}")
            if name in self.classification and k.kind != "classification":
                raise UserError(f"{source}: output '{name}' is in outputs.classification but outputs.kinds.{name}.kind "
                                f"is {k.kind!r}", hint=f"remove '{name}' from outputs.classification, or make it a classification")
            if k.scores_output is not None and k.scores_output not in self.names:
                raise UserError(f"{source}: field 'outputs.kinds.{name}.scores_output' is {k.scores_output!r}, which is "
                                f"not in outputs.names {self.names}", hint="name the output that holds the class scores")
            if k.kind == "classification" and name not in self.classification:
                self.classification.append(name)

    def kind_table(self) -> dict[str, dict[str, Any]]:
        """{output name: declared kind} as the shared metrics read it (board/runner/metrics.py ``kind_spec``)."""
        return {name: as_dict(k) for name, k in self.kinds.items()}


@dataclass
class PreprocessConfig:
    #: [H, W] images are resized to (bilinear) before a centre crop to the input's H, W; unset: the input's H, W
    resize: list[int] | None = None
    #: channel order the model expects; mean and std are given in this order
    channel_order: Literal["RGB", "BGR", "GRAY"] = "RGB"
    #: per-channel mean subtracted after scaling: ``(pixel / scale - mean) / std`` (default: ImageNet)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    #: per-channel standard deviation divided by after the mean (default: ImageNet)
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    #: pixel values are divided by this before mean/std
    scale: float = 255.0

    def validate(self, source: str, prefix: str) -> None:
        if self.resize is not None and (len(self.resize) != 2 or any(d <= 0 for d in self.resize)):
            raise UserError(f"{source}: field 'preprocess.resize' is {self.resize}; expected [H, W], both positive",
                            hint="images are resized to [H, W], then centre-cropped to the input's H, W")


@dataclass
class ExportConfig:
    #: torch.onnx exporter: "torchscript" (legacy, ~0.5 s, opset <= 17 here) or "dynamo" (~9 s, opset 18; times
    #: here, load average not recorded: not a performance result); the fp32.json sidecar records which ran and the opset actually written
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    #: requested ONNX opset
    opset: int = 17
    #: export a symbolic batch axis ``batch`` on the input and every output
    dynamic_batch: bool = True


@dataclass
class DataConfig:
    #: folder for static INT8 calibration: .png/.jpg/.jpeg/.bmp/.webp images, or .npy/.npz arrays already
    #: preprocessed (one sample shaped like the input without batch, or a stack ``N, ...``)
    calibration: str = "data/calibration"
    #: folder of validation samples (same formats as ``calibration``): the FP32 reference and the accuracy gate
    validation: str = "data/validation"
    #: optional JSON ``{file name: {head: label}}`` for labelled accuracy: class indices for classification
    #: heads, arrays for regression heads (MAE reported); a head is labelled for all samples or none, and a
    #: head the model does not have (or no head at all) is an error
    labels: str | None = None
    #: ``package.module:callable`` called as ``fn(split)`` (split: "calibration" or "validation") and yielding
    #: input dicts ``{input name: array}`` (batch axis optional); replaces the calibration/validation folders
    loader: str | None = None
    #: calibration samples used (the first N by file name)
    max_calibration_samples: int = 128
    #: validation samples used (the first N by file name)
    max_validation_samples: int = 256

    def validate(self, source: str, prefix: str) -> None:
        if self.loader is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", self.loader):
            raise UserError(f"{source}: field 'data.loader' is {self.loader!r}; expected 'package.module:callable'",
                            hint="for example loader = \"mydata:samples\" (a function of the split name yielding {input: array})")


@dataclass
class DynamicQuantConfig:
    #: per-channel weight scales (ONNX Runtime ``quantize_dynamic``)
    per_channel: bool = True
    #: 7-bit weights (ONNX Runtime: may improve accuracy on CPUs without VNNI)
    reduce_range: bool = False
    #: weight element type
    weight_type: Literal["QInt8", "QUInt8"] = "QInt8"


@dataclass
class QATConfig:
    """Quantization-aware fine-tuning (``method = "qat"``): distillation from the FP32 model (docs/qat.md)."""

    #: fine-tuning steps with fake quantization
    steps: int = 200
    #: learning rate of the fine-tuning
    lr: float = 1e-4
    #: images per step
    batch: int = 16
    #: seed of the batch order (and of the synthetic images), so a run can be repeated
    seed: int = 0
    #: training images: "calibration" or "validation" (the [data] folders), "synthetic" (the reference
    #: project's generator, dmsbuild.model.synthetic), or a folder of images / .npy arrays
    data: str = "calibration"
    #: images read from a folder, or rendered by the synthetic generator
    max_samples: int = 512
    #: softmax temperature of the distillation loss on classification heads
    temperature: float = 2.0
    #: weight of the labelled loss (0: distillation only); labels come from ``labels`` or the generator
    label_weight: float = 0.0
    #: optional JSON {file name: {head: value}} for the training images (like data.labels)
    labels: str | None = None
    #: torch CPU threads while training. 1 by default: torch's OpenMP threads spin-wait for each other, and on a
    #: CPU shared with other work a 2-thread step ran 5-30x slower than a 1-thread one (docs/qat.md, "Speed"; under
    #: load (load average ~30): not a performance figure, it shows what oversubscription costs on a busy CPU);
    #: the thread count also fixes the float summation order, so it is part of what makes a run reproducible
    threads: int = 1

    def validate(self, source: str, prefix: str) -> None:
        for name, ok in (("steps", self.steps >= 1), ("lr", self.lr > 0), ("batch", self.batch >= 1),
                         ("threads", self.threads >= 1),
                         ("max_samples", self.max_samples >= 1), ("temperature", self.temperature > 0),
                         ("label_weight", 0 <= self.label_weight <= 1)):
            if not ok:
                raise UserError(f"{source}: field '{prefix}.{name}' is {getattr(self, name)!r}; expected "
                                + ("a value in [0, 1]" if name == "label_weight" else "a positive value"),
                                hint=f"fix '{prefix}.{name}' in {source}")


@dataclass
class PruneConfig:
    """Structured channel pruning before QAT (torch-pruning), fine-tuned with the same distillation."""

    #: fraction of prunable channels removed (0: no pruning)
    fraction: float = 0.0
    #: distillation fine-tuning steps after pruning (before QAT)
    steps: int = 200
    #: peak learning rate of that fine-tune (warm-up then cosine decay); recovering removed channels needs a far
    #: larger step than QAT's nudge of the weights onto the quantization grid (``qat.lr``)
    lr: float = 1e-3
    #: keep a multiple of this many channels in every pruned layer (torch-pruning's ``round_to``, rounding down).
    #: 0: the target runtime's block - 16 for ONNX Runtime (its NCHWc convolutions take only channel counts that
    #: are multiples of the CPU's block: 8 on AVX2, 16 on AVX-512 and ARM64 NEON), 32 for TensorRT, QNN and SNPE
    #: (INT8 32-channel vector formats; HTP pads activation depth to 32). 1: no rounding. Measured: 25 % pruning
    #: without rounding ran 1.12x *slower* than FP32 on ONNX Runtime CPU, with 16-channel rounding 0.64x (docs/qat.md;
    #: load average not recorded: not a performance result)
    round_to: int = 0

    def validate(self, source: str, prefix: str) -> None:
        if self.round_to < 0:
            raise UserError(f"{source}: field '{prefix}.round_to' is {self.round_to!r}; expected 0 (the target "
                            "runtime's channel block), 1 (no rounding) or a channel multiple such as 8, 16 or 32",
                            hint=f"fix '{prefix}.round_to' in {source}")
        if not self.lr > 0:
            raise UserError(f"{source}: field '{prefix}.lr' is {self.lr!r}; expected a positive value",
                            hint=f"fix '{prefix}.lr' in {source}")
        if not 0 <= self.fraction < 0.95:
            raise UserError(f"{source}: field '{prefix}.fraction' is {self.fraction!r}; expected 0 <= fraction < 0.95",
                            hint=f"fix '{prefix}.fraction' in {source}")
        if self.steps < 0:
            raise UserError(f"{source}: field '{prefix}.steps' is {self.steps!r}; expected 0 or more",
                            hint=f"fix '{prefix}.steps' in {source}")


@dataclass
class StaticQuantConfig:
    #: how activation ranges are calibrated (Percentile: 99.999th percentile)
    calibration_method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"
    #: per-channel weight scales
    per_channel: bool = True
    #: weight element type
    weight_type: Literal["QInt8", "QUInt8"] = "QInt8"
    #: activation element type; the 16-bit types raise the model to opset 21
    activation_type: Literal["QUInt8", "QInt8", "QUInt16", "QInt16"] = "QUInt8"
    #: symmetric activation ranges (``ActivationSymmetric``; TensorRT wants symmetric int8)
    symmetric_activations: bool = False
    #: fix the batch axis to 1 before quantizing (the QNN EP takes no nodes of a dynamic-shape graph)
    fixed_shape: bool = False
    #: false: keep Conv/Gemm biases float (TensorRT's ONNX parser rejects ONNX Runtime's int32 bias
    #: DequantizeLinear: onnx/onnx-tensorrt#850, microsoft/onnxruntime#14229); true: int32 biases
    quantize_bias: bool = True
    #: "ptq": calibrate the FP32 model; "qat": fine-tune with fake quantization first (dmsbuild/convert/qat.py)
    method: Literal["ptq", "qat"] = "ptq"
    #: quantization-aware fine-tuning settings (used when ``method = "qat"``; docs/qat.md)
    qat: QATConfig = field(default_factory=QATConfig)
    #: structured channel pruning before QAT (``method = "qat"`` only)
    prune: PruneConfig = field(default_factory=PruneConfig)
    #: "QDQ": QuantizeLinear/DequantizeLinear pairs around float ops (what TensorRT, QNN and SNPE consume);
    #: "QOperator": fused integer operators (QLinearConv, QLinearMatMul...), ONNX Runtime CPU only; on some
    #: models and CPUs faster than QDQ - measure it (issue 16). The artifact keeps its name (int8-qdq);
    #: build.json records the format of every quantized artifact
    quant_format: Literal["QDQ", "QOperator"] = "QDQ"
    #: node names kept in float (mixed precision): the nodes whose quantization costs most accuracy;
    #: names are those of the pre-processed FP32 graph, as ranked by
    #: ``python -m dmsbuild.convert.mixed_precision target=<name>`` (docs/mixed-precision.md)
    nodes_to_exclude: list[str] = field(default_factory=list)

    def validate(self, source: str, prefix: str) -> None:
        where = f"{prefix}." if prefix else ""
        bad = [n for n in self.nodes_to_exclude if not n or n != n.strip()]
        if bad:
            raise UserError(f"{source}: field '{where}nodes_to_exclude' has {bad!r}; expected node names of the model",
                            hint="copy the names the sensitivity table prints (python -m dmsbuild.convert.mixed_precision target=<name>)")
        if self.method == "ptq" and self.prune.fraction > 0:
            raise UserError(f"{source}: field '{where}prune.fraction' is {self.prune.fraction}, but pruning runs "
                            f"in the QAT stage only ('{where}method' is \"ptq\")",
                            hint=f"set {where}method = \"qat\", or remove {where}prune")


@dataclass
class QuantizationConfig:
    #: dynamic INT8 (weights only, activations quantized at run time): the ``int8-dynamic`` precision
    dynamic: DynamicQuantConfig = field(default_factory=DynamicQuantConfig)
    #: static calibrated QDQ INT8: the ``int8-qdq`` precision (a target's ``[quantization]`` replaces it)
    static: StaticQuantConfig = field(default_factory=StaticQuantConfig)


def _check_floor_fields(obj: Any, source: str, where: str) -> None:
    """Accuracy floors in range: a drop in [0, 1], a cosine in [-1, 1], an SQNR finite (dB)."""
    limits = {"max_accuracy_drop": (0.0, 1.0), "min_cosine": (-1.0, 1.0), "min_sqnr_db": (-200.0, 200.0),
              "min_recall": (0.0, 1.0), "min_precision": (0.0, 1.0), "max_score_error": (0.0, 1e6),
              "min_mask_iou": (0.0, 1.0), "min_string_agreement": (0.0, 1.0)}
    for name, (lo, hi) in limits.items():
        value = getattr(obj, name, None)
        if value is not None and not lo <= value <= hi:  # NaN compares False: refused too
            field_name = f"{where}.{name}" if where else name
            raise UserError(f"{source}: field '{field_name}' is {value!r}; expected a number in [{lo:g}, {hi:g}]",
                            hint=f"fix '{field_name}' in {source} (docs/accuracy.md)")


@dataclass
class HeadFloorsConfig:
    """Per-head overrides of the accuracy floors (``[accuracy.heads.<head>]``, ``[gates.heads.<head>]``)."""

    #: largest allowed drop of top-1 agreement / labelled accuracy vs FP32 (classification heads only)
    max_accuracy_drop: float | None = None
    #: smallest allowed mean per-sample cosine similarity with FP32
    min_cosine: float | None = None
    #: smallest allowed signal-to-quantization-noise ratio vs FP32, dB
    min_sqnr_db: float | None = None
    #: detection heads: smallest share of FP32's detections the artifact finds (matched by class and IoU)
    min_recall: float | None = None
    #: detection heads: smallest share of the artifact's detections that match one of FP32's
    min_precision: float | None = None
    #: detection heads: largest mean |score difference| of matched detections
    max_score_error: float | None = None
    #: segmentation heads: smallest mean mask IoU with FP32's masks
    min_mask_iou: float | None = None
    #: sequence heads with a CTC blank: smallest share of samples whose decoded string equals FP32's
    min_string_agreement: float | None = None

    def validate(self, source: str, prefix: str) -> None:
        _check_floor_fields(self, source, prefix)


@dataclass
class AccuracyConfig:
    """The project-wide accuracy floors every artifact must meet on every head (docs/accuracy.md)."""

    #: largest allowed drop of top-1 agreement with FP32 (0.02 = 2 points), any classification head
    max_accuracy_drop: float = 0.05
    #: smallest allowed mean per-sample cosine similarity with FP32, any head
    min_cosine: float = 0.95
    #: smallest allowed SQNR (signal-to-quantization-noise ratio) vs FP32 in dB, any head
    min_sqnr_db: float = 12.0
    #: detection heads: smallest share of FP32's detections the artifact finds (same class, IoU >= match_iou)
    min_recall: float = 0.9
    #: detection heads: smallest share of the artifact's detections that match one of FP32's
    min_precision: float = 0.9
    #: detection heads: largest mean |score difference| of matched detections
    max_score_error: float = 0.1
    #: segmentation heads: smallest mean mask IoU with FP32's masks
    min_mask_iou: float = 0.9
    #: sequence heads with a CTC blank: smallest share of samples whose greedy-decoded string equals FP32's
    min_string_agreement: float = 0.9
    #: per-head overrides, e.g. [accuracy.heads.head_pose] min_sqnr_db = 10
    heads: dict[str, HeadFloorsConfig] = field(default_factory=dict)

    def validate(self, source: str, prefix: str) -> None:
        _check_floor_fields(self, source, prefix)


@dataclass
class ProjectConfig:
    #: project name (letters, digits, '._-'); shown in manifests and the report
    name: str = "dms"
    #: the model: a PyTorch factory and checkpoint, or your own ONNX
    model: ModelConfig = field(default_factory=ModelConfig)
    #: the model's input (one input; a model with several takes ``[[inputs]]`` instead)
    input: InputConfig = field(default_factory=InputConfig)
    #: several inputs, in the model's order: an array of tables with the fields of ``[input]`` (use one or the
    #: other); ``input`` then means the first. Non-4-D entries take .npy/.npz or data.loader data (docs/byom.md)
    inputs: list[InputConfig] = field(default_factory=list)
    #: the model's outputs (heads)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    #: how calibration and validation images become input tensors
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    #: PyTorch -> ONNX export
    export: ExportConfig = field(default_factory=ExportConfig)
    #: calibration and validation data
    data: DataConfig = field(default_factory=DataConfig)
    #: INT8 quantization settings shared by every target unless a target overrides them
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    #: accuracy floors of the build-time and on-board gates (docs/accuracy.md)
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)
    #: set by the loader
    root: Path = field(default=Path("."), init=False)
    source: Path = field(default=Path(PROJECT_FILE), init=False)

    def __post_init__(self) -> None:
        if self.inputs:
            self.input = self.inputs[0]

    @property
    def all_inputs(self) -> list[InputConfig]:
        """Every input, in the model's order (``[input]`` alone, or the ``[[inputs]]`` array)."""
        return list(self.inputs) if self.inputs else [self.input]

    @property
    def several_inputs(self) -> bool:
        return len(self.inputs) > 1

    def validate(self, source: str, prefix: str) -> None:
        _check_name(self.name, "name", source)
        check_head_floors(self.accuracy.heads, self.outputs, source, "accuracy.heads")
        seen: set[str] = set()
        for i, inp in enumerate(self.inputs):
            if inp.name in seen:
                raise UserError(f"{source}: field 'inputs[{i}].name' is {inp.name!r}, which an earlier entry of "
                                "[[inputs]] names too", hint="give each input the model's own, distinct name")
            seen.add(inp.name)

    def path(self, rel: str | None, field_name: str | None = None) -> Path | None:
        """Resolve a path from the config against the project folder; one into dmsbuild's package is refused."""
        if rel is None:
            return None
        p = Path(os.path.expanduser(rel))
        p = p if p.is_absolute() else self.root / p
        refuse_package_path(p, f"{self.source}: field '{field_name}'" if field_name else str(self.source), rel)
        return p

    def existing_file(self, rel: str, source: object, field_name: str, hint: str, show_path: bool = False) -> Path:
        """``path(rel)``, which must be a file: else the one-line error naming ``source``'s field (one wording everywhere)."""
        p = self.path(rel)
        if p is None or not p.is_file():
            where = f" ({p})" if show_path else ""
            raise UserError(f"{source}: field '{field_name}' is {rel!r}, which does not exist{where}", hint=hint)
        return p

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"


# --------------------------------------------------------------------------
# target profiles: targets/<name>.toml
# --------------------------------------------------------------------------
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-qdq")


@dataclass
class DeployConfig:
    #: deploy root on each board; everything dmsbuild writes there stays below it
    root: str = "/opt/dmsbuild"
    #: releases kept on a board (older ones and their unreferenced objects are collected)
    keep_releases: int = 3
    #: inventory file (relative to the project root; TOML, or Ansible INI/YAML); its boards of group ``group``
    #: are this target's. ``doit deploy inventory=FILE`` and the environment variable DMSBUILD_INVENTORY win over it
    inventory: str = "targets/inventory.toml"
    #: inventory group; defaults to the target name
    group: str | None = None
    #: boards deployed at once (``doit deploy parallel=N`` overrides)
    parallel: int = 8
    #: rollout waves: cumulative board counts or percentages of the fleet, e.g. [1, "10%", "50%", "100%"]
    waves: list[int | str] = field(default_factory=lambda: ["100%"])
    #: failed boards tolerated (a count, or percent "10%"); one more halts the rollout (0: first failure halts)
    max_fail: int | str = 0
    #: a board whose new release fails its health gate (output check, latency): "rollback" switches it back
    #: to its previous release (no transfer); "keep" leaves the new release installed for inspection
    on_unhealthy: Literal["rollback", "keep"] = "rollback"
    #: "boards": boards that finished (verified) serve the release's objects to the boards of later waves over a
    #: short-lived HTTP server on their own address; fetched objects are checked by sha256, a failed fetch is
    #: sent by the controller (docs/fleet-scale.md). Needs more than one wave to help: the first wave is pushed
    relay: Literal["off", "boards"] = "off"
    #: boards serving as relays at once (the first ones to finish)
    relay_boards: int = 4
    #: base URL of a mirror the boards fetch ``<sha256>`` objects from (http(s), e.g. a static file server or an
    #: S3-compatible bucket's website endpoint); fetched objects are checked by sha256, what fails is pushed
    mirror: str | None = None
    #: a folder the controller publishes the release's objects into (``<sha256>`` files, written atomically)
    #: before the rollout: the mirror's document root, or a folder synced to it; unset: the mirror is filled by you
    mirror_publish: str | None = None
    #: an inventory's ssh options that run a command on this machine (``ProxyCommand`` in ``ssh_args`` or
    #: ``ansible_ssh_common_args``): "warn" shows each once per deploy ("inventory X runs a local command for board
    #: Y: ..."); "refuse" stops a deploy that selects such a board, before the command runs (docs/ssh.md)
    inventory_commands: Literal["warn", "refuse"] = "warn"
    #: Mender device types a bundle of this target installs on (``doit bundle format=mender``; each board's
    #: ``device_type``, docs/ota.md); empty: the target's name
    device_types: list[str] = field(default_factory=list)

    def validate(self, source: str, prefix: str) -> None:
        from .core.rollout_spec import check_max_fail, check_waves  # standard library only, like this module

        where = f"{source}: field '{prefix + '.' if prefix else ''}"
        check_waves(self.waves, f"{where}waves'")
        check_max_fail(self.max_fail, f"{where}max_fail'")
        if self.parallel < 1:
            raise UserError(f"{where}parallel' is {self.parallel}; expected at least 1", hint=f"fix it in {source}")
        if self.mirror is not None and not re.match(r"https?://[^/\s]+(/\S*)?$", self.mirror):
            raise UserError(f"{where}mirror' is {self.mirror!r}; expected an http:// or https:// URL of the objects folder",
                            hint=f"fix it in {source}, e.g. mirror = \"https://mirror.lab/dms/objects/\"")
        if self.relay_boards < 1:
            raise UserError(f"{where}relay_boards' is {self.relay_boards}; expected at least 1", hint=f"fix it in {source}")


@dataclass
class BenchConfig:
    #: untimed inferences before the timed ones
    warmup: int = 10
    #: timed inferences per artifact (every sample is stored)
    iterations: int = 100
    #: intra-op threads of the on-board session (0: the runtime's default)
    threads: int = 0
    #: validation samples the accuracy gate judges, the same first N of data.validation on the host and on the board
    #: (0: no board check; the host then judges every validation sample); a top-1 floor needs at least 1/floor
    verify_samples: int = 32


@dataclass
class ConfirmConfig:
    """[gates.confirm]: how a latency regression is re-measured before a release is rolled back.

    The defaults suit boards: 8 block pairs of 25 inferences after 5 warm-ups
    (400 inferences, under a minute for models up to ~50 ms), a 95 %
    bootstrap CI from 2000 resamples, at most 120 s of re-measuring.
    """
    #: false: the first run's ratio decides alone (not recommended on shared or thermally limited boards)
    enabled: bool = True
    #: block pairs (old, new) measured alternately
    blocks: int = 8
    #: inferences per block
    iterations: int = 25
    #: untimed inferences per release before the blocks
    warmup: int = 5
    #: the bootstrap confidence interval's level
    confidence: float = 0.95
    #: bootstrap resamples of the ratio's confidence interval
    resamples: int = 2000
    #: stop re-measuring after the block pair that crosses this (s)
    max_seconds: float = 120.0

    def validate(self, source: str, prefix: str) -> None:
        if self.blocks < 2 or self.iterations < 1 or self.warmup < 0 or self.resamples < 100:
            raise UserError(f"{source}: [{prefix}] needs blocks >= 2, iterations >= 1, warmup >= 0, resamples >= 100",
                            hint="for example blocks = 8, iterations = 25")
        if not 0.5 <= self.confidence < 1.0 or self.max_seconds <= 0:
            raise UserError(f"{source}: field '{prefix}.confidence' must be in [0.5, 1) and max_seconds > 0",
                            hint="for example confidence = 0.95, max_seconds = 120")


@dataclass
class GatesConfig:
    #: fail when top-1 agreement with FP32 drops by more than this, any classification head (unset: the
    #: project's accuracy.max_accuracy_drop); these floors hold for the build-time and on-board gates alike
    max_accuracy_drop: float | None = None
    #: fail below this mean per-sample cosine with FP32, any head (unset: the project's accuracy.min_cosine)
    min_cosine: float | None = None
    #: fail below this SQNR vs FP32 (dB), any head (unset: the project's accuracy.min_sqnr_db)
    min_sqnr_db: float | None = None
    #: detection heads on this target (unset: accuracy.min_recall)
    min_recall: float | None = None
    #: detection heads on this target (unset: accuracy.min_precision)
    min_precision: float | None = None
    #: detection heads on this target (unset: accuracy.max_score_error)
    max_score_error: float | None = None
    #: segmentation heads on this target (unset: accuracy.min_mask_iou)
    min_mask_iou: float | None = None
    #: sequence heads with a CTC blank on this target (unset: accuracy.min_string_agreement)
    min_string_agreement: float | None = None
    #: per-head overrides for this target, e.g. [gates.heads.yawn] max_accuracy_drop = 0.1
    heads: dict[str, HeadFloorsConfig] = field(default_factory=dict)
    #: fail a board when its median latency exceeds its previous release's by more than this ratio (confirmed
    #: by ``confirm`` first; docs/measurements.md)
    max_latency_regression: float = 1.25
    #: re-measure a suspected regression (old and new interleaved on the board) before failing
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)

    def validate(self, source: str, prefix: str) -> None:
        _check_floor_fields(self, source, prefix)




def _check_dims(obj: Any, source: str, prefix: str) -> None:
    """Every search dimension of a [tune] table names at least one value (an empty list would search nothing)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list) and not value and f.name not in ("intra_op_threads",):
            where = f"{prefix}.{f.name}" if prefix else f.name
            raise UserError(f"{source}: field '{where}' is empty; list at least one value to search",
                            hint=f"remove '{where}' to search its default values, or list some")


@dataclass
class TuneQNNConfig:
    """[tune.qnn]: the search space of QNN (HTP) targets."""

    #: activation width of the static quantization: 8 (QUInt8) or 16 (QUInt16) bit
    activation_bits: list[Literal[8, 16]] = field(default_factory=lambda: [8, 16])
    #: per-channel (true) or per-tensor (false) weights of the static quantization
    per_channel: list[bool] = field(default_factory=lambda: [True, False])
    #: the QNN EP's htp_performance_mode (provider option) the context runs with
    htp_performance_mode: list[Literal["burst", "sustained_high_performance", "high_performance", "balanced",
                                       "default"]] = field(default_factory=lambda: ["burst"])

    def validate(self, source: str, prefix: str) -> None:
        _check_dims(self, source, prefix)


@dataclass
class TuneTensorRTConfig:
    """[tune.tensorrt]: the search space of TensorRT targets (engines built on the Jetson by trtexec)."""

    #: trtexec precision flags: --fp16, --int8 (with the QDQ model), --best
    precision: list[Literal["fp16", "int8", "best"]] = field(default_factory=lambda: ["fp16", "int8", "best"])
    #: trtexec --builderOptimizationLevel (0-5; TensorRT's default is 3)
    builder_optimization_level: list[int] = field(default_factory=lambda: [3])
    #: trtexec --sparsity=enable (only layers whose weights are 2:4 sparse benefit)
    sparsity: list[bool] = field(default_factory=lambda: [False])

    def validate(self, source: str, prefix: str) -> None:
        _check_dims(self, source, prefix)
        bad = [v for v in self.builder_optimization_level if not 0 <= v <= 5]
        if bad:
            raise UserError(f"{source}: field '{prefix}.builder_optimization_level' has {bad}; allowed: 0 to 5",
                            hint=f"fix '{prefix}.builder_optimization_level' in {source}")


@dataclass
class TuneConfig:
    """[tune]: what `doit tune` searches for this target and how long it may measure (docs/tune.md).

    Each list is one dimension of the search space; narrow it to search less."""

    #: ONNX Runtime CPU: artifact precision / quantization format
    precision: list[Literal["fp32", "fp16", "int8-qdq", "int8-qoperator", "int8-dynamic"]] = field(
        default_factory=lambda: ["fp32", "fp16", "int8-qdq", "int8-qoperator"])
    #: static/dynamic INT8: per-channel (true) or per-tensor (false) weights
    per_channel: list[bool] = field(default_factory=lambda: [True, False])
    #: static INT8: activation type (unsigned or signed 8 bit)
    activation_type: list[Literal["QUInt8", "QInt8"]] = field(default_factory=lambda: ["QUInt8"])
    #: INT8 weight type (signed or unsigned 8 bit)
    weight_type: list[Literal["QInt8", "QUInt8"]] = field(default_factory=lambda: ["QInt8"])
    #: static INT8: how activation ranges are calibrated
    calibration_method: list[Literal["MinMax", "Entropy", "Percentile"]] = field(default_factory=lambda: ["MinMax"])
    #: static INT8: also try candidates that keep the nodes costing most accuracy in float
    #: (dmsbuild.convert.mixed_precision); false only: no mixed-precision candidates
    mixed_precision: list[bool] = field(default_factory=lambda: [False])
    #: intra-op threads; empty: 1 .. the board's cores (from its facts)
    intra_op_threads: list[int] = field(default_factory=list)
    #: ONNX Runtime graph optimisation level of the board's session
    graph_optimization_level: list[Literal["disable", "basic", "extended", "all"]] = field(default_factory=lambda: ["all"])
    #: ONNX Runtime execution mode of the board's session (parallel runs independent branches at once)
    execution_mode: list[Literal["sequential", "parallel"]] = field(default_factory=lambda: ["sequential"])
    #: "staged": every recipe at full threads, then the runtime settings of the best two; "exhaustive": all
    strategy: Literal["staged", "exhaustive"] = "staged"
    #: wall-clock budget of one `doit tune` (minutes; `budget=` on the command line overrides it)
    budget_minutes: float = 10.0
    #: interleaved measurement of each candidate against the default artifact (like [gates.confirm]); each
    #: block starts a process per side (isolation "fresh"), so blocks, not runs, sample a process's luck: 12
    #: keep the bootstrap's coverage near its stated confidence (docs/tune.md "Controls")
    blocks: int = 12
    #: timed runs per artifact in each block
    iterations: int = 20
    #: untimed runs per artifact before each block
    warmup: int = 5
    #: confidence of the bootstrap interval of the speed-up a choice must clear
    confidence: float = 0.95
    #: bootstrap resamples of that interval
    resamples: int = 1000
    #: stop one candidate's measurement after the block pair that crosses this (s)
    max_seconds: float = 60.0
    #: the search space of QNN (HTP) targets
    qnn: TuneQNNConfig = field(default_factory=TuneQNNConfig)
    #: the search space of TensorRT targets
    tensorrt: TuneTensorRTConfig = field(default_factory=TuneTensorRTConfig)

    def validate(self, source: str, prefix: str) -> None:
        _check_dims(self, source, prefix)
        where = f"{prefix}." if prefix else ""
        bad = [t for t in self.intra_op_threads if t < 1]
        if bad:
            raise UserError(f"{source}: field '{where}intra_op_threads' has {bad}; expected whole numbers >= 1",
                            hint=f"fix '{where}intra_op_threads' in {source} (empty: 1 .. the board's cores)")
        for name, ok, expected in (("budget_minutes", self.budget_minutes > 0, "> 0"), ("blocks", self.blocks >= 2, ">= 2"),
                                   ("iterations", self.iterations >= 1, ">= 1"), ("warmup", self.warmup >= 0, ">= 0"),
                                   ("confidence", 0.5 <= self.confidence < 1, "in [0.5, 1)"),
                                   ("resamples", self.resamples >= 100, ">= 100"), ("max_seconds", self.max_seconds > 0, "> 0")):
            if not ok:
                raise UserError(f"{source}: field '{where}{name}' is {getattr(self, name)!r}; expected {expected}",
                                hint=f"fix '{where}{name}' in {source}")


@dataclass
class TargetProfile:
    #: the target's name; defaults to the file name (``targets/<name>.toml``), and must equal it when set
    name: str
    #: one line shown in ``doit list`` and the report
    description: str = ""
    #: the boards' CPU architecture (``uname -m``), e.g. aarch64, x86_64; "any" for the host. A non-portable
    #: artifact (a TensorRT engine) on a board of another arch is refused, a portable one (ONNX) is a warning
    arch: str = "any"
    #: backend that builds and runs this target's artifacts: one of the registered runtimes (dmsbuild/core/runtimes.py;
    #: docs/targets.md). "snpe" builds nothing of its own yet (refused with what to do): SNPE DLCs are built beside
    #: QNN ones, ``[backend.snpe]``
    runtime: str = "onnxruntime"
    #: precisions to build and ship: any of fp32, fp16, int8-dynamic, int8-qdq
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    #: a whole static-quantization table replacing the project's [quantization.static] for this target's
    #: consumer (e.g. symmetric int8 for TensorRT, QUInt16 and a fixed shape for QNN); unset: the project's
    quantization: StaticQuantConfig | None = None
    #: the runtime's options, validated by its backend (tables below, by runtime)
    backend: dict[str, Any] = field(default_factory=dict)
    #: where and how releases reach the boards (rollout waves, failures tolerated, relay, mirror)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    #: the on-board benchmark and output check
    bench: BenchConfig = field(default_factory=BenchConfig)
    #: what fails a build or a board: accuracy floors and the latency regression limit
    gates: GatesConfig = field(default_factory=GatesConfig)
    #: what `doit tune` searches (docs/tune.md)
    tune: TuneConfig = field(default_factory=TuneConfig)
    #: "local": no SSH, deploy into a folder on this machine; "ssh": the inventory's boards
    transport: Literal["local", "ssh"] = "ssh"
    source: Path = field(default=Path("."), init=False)

    def validate(self, source: str, prefix: str) -> None:
        _check_name(self.name, "name", source)
        if runtimes.runtime(self.runtime) is None:
            raise UserError(f"{source}: field 'runtime' is {self.runtime!r}; allowed values: "
                            + ", ".join(repr(n) for n in runtimes.RUNTIMES),
                            hint=f"fix 'runtime' in {source} (the registered runtimes: dmsbuild/core/runtimes.py)")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise UserError(
                f"{source}: field 'precisions' has {bad or 'no entries'}; allowed: {', '.join(PRECISIONS)}",
                hint=f"fix 'precisions' in {source}",
            )
        root = self.deploy.root
        absolute = root.startswith(("/", "~"))
        if (not absolute and self.transport != "local") or ".." in Path(root).parts or not re.match(r"^[\w./~-]+$", root):
            raise UserError(
                f"{source}: field 'deploy.root' is {root!r}; expected an absolute path (relative only for transport = \"local\") of letters, digits, '._-/' without '..'",
                hint=f"fix 'deploy.root' in {source}",
            )


def package_dir() -> Path:
    """dmsbuild's own package folder (site-packages/dmsbuild in an installed tool)."""
    return Path(__file__).resolve().parent


def refuse_package_path(path: Path, where: str, given: str) -> None:
    """A UserError when ``path`` lies inside dmsbuild's package: a project's files never live there."""
    try:
        path.resolve().relative_to(package_dir())
    except ValueError:
        return
    raise UserError(f"{where} is {given!r}, which is inside dmsbuild's own installation ({package_dir()}), "
                    "not your project", hint="point it at your project's own files (relative paths are relative to "
                                             "the folder holding dmsbuild.toml)")


#: the path fields of dmsbuild.toml, checked at load (a keyword value of qat.data is not a path)
_PATH_FIELDS = ("model.checkpoint", "model.onnx", "data.calibration", "data.validation", "data.labels")


def _check_project_paths(cfg: "ProjectConfig") -> None:
    for name in _PATH_FIELDS:
        section, _, attr = name.partition(".")
        cfg.path(getattr(getattr(cfg, section), attr), name)
    for i, extra in enumerate(cfg.model.sources):
        cfg.path(extra, f"model.sources[{i}]")
    qat = cfg.quantization.static.qat
    if qat.data not in ("calibration", "validation", "synthetic"):
        cfg.path(qat.data, "quantization.static.qat.data")
    cfg.path(qat.labels, "quantization.static.qat.labels")


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder upwards holding dmsbuild.toml (DMSBUILD_ROOT, when set, names it:
    the repository's tests run one dodo.py against many projects)."""
    found = locate_root(str(start) if start is not None else None)  # dmsbuild/__init__.py: dodo.py's cache finds it too
    if found is not None:
        return found
    here = (start or Path.cwd()).resolve()
    raise UserError(
        f"{PROJECT_FILE}: not found in {here} or any parent folder",
        hint="run doit in your project's folder, or create a project: dmsbuild new PATH",
    )


def load_project(root: Path | None = None) -> ProjectConfig:
    root = root or find_root()
    path = root / PROJECT_FILE
    data = read_toml(path)
    if "input" in data and "inputs" in data:
        raise UserError(f"{path}: both [input] and [[inputs]] are set; use [input] for a model with one input, "
                        "[[inputs]] (one table per input) for several", hint=f"remove one of them from {path}")
    cfg = load_dataclass(ProjectConfig, data, str(path))
    cfg.root = root
    cfg.source = path
    _check_project_paths(cfg)
    return cfg


def target_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / TARGETS_DIR).glob("*.toml") if p.stem != "inventory")


def load_target(root: Path, name: str) -> TargetProfile:
    path = root / TARGETS_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(target_names(root)) or "none"
        raise UserError(
            f"target '{name}': no profile {path}; known targets: {known}",
            hint="pick one of those, or add a profile file under targets/",
        )
    data = read_toml(path)
    data.setdefault("name", name)
    prof = load_dataclass(TargetProfile, data, str(path))
    if prof.name != name:
        raise UserError(f"{path}: field 'name' is {prof.name!r} but the file is named {name}.toml; make them agree")
    prof.source = path
    return prof


def static_quant_field(project: ProjectConfig, profile: TargetProfile, name: str) -> str:
    """Where a target's static quantization field ``name`` is set, for error lines: "<file>: field '<path>'"."""
    if profile.quantization is not None:
        return f"{profile.source}: field 'quantization.{name}'"
    return f"{project.source}: field 'quantization.static.{name}' (used by target '{profile.name}')"


#: runtimes whose consumer parses QDQ graphs only (the registry's ``qdq_only``: TensorRT explicit quantization, the
#: QNN/SNPE converters)
QDQ_ONLY_RUNTIMES = tuple(name for name, line in runtimes.RUNTIMES.items() if line.qdq_only)
#: ``prune.round_to = 0`` per runtime: the channel multiple its fast kernels want (PruneConfig.round_to; the
#: registry's ``channel_block``, sources in docs/qat.md, "Channel alignment")
PRUNE_CHANNEL_BLOCK = {name: line.channel_block for name, line in runtimes.RUNTIMES.items()}


def static_quant_for(project: ProjectConfig, profile: TargetProfile) -> StaticQuantConfig:
    """The static quantization settings a target's consumer wants; QOperator for a QDQ-only consumer is a UserError."""
    cfg = profile.quantization or project.quantization.static
    if cfg.quant_format != "QDQ" and profile.runtime in QDQ_ONLY_RUNTIMES and "int8-qdq" in profile.precisions:
        raise UserError(f"{static_quant_field(project, profile, 'quant_format')} is {cfg.quant_format!r}, but runtime '{profile.runtime}' of target "
                        f"'{profile.name}' consumes QDQ graphs only",
                        hint=f"set quant_format = \"QDQ\" for target '{profile.name}' (a [quantization] table in "
                             f"{profile.source.name} overrides the project's)")
    if cfg.prune.fraction > 0 and cfg.prune.round_to == 0:
        cfg = dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, round_to=PRUNE_CHANNEL_BLOCK[profile.runtime]))
    return cfg


def as_dict(obj: Any) -> Any:
    """A JSON-able view of a config object (for config_changed and manifests)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
