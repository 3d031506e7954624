"""Project configuration (``dmsbuild.toml``) and target profiles (``targets/*.toml``).

Both are typed dataclasses validated at load time by one strict loader: an
unknown field, a wrong type or a value outside the allowed set raises a
``UserError`` whose first line names the file, the field and what is allowed.
Relative paths are resolved against the repository root (the folder that holds
``dmsbuild.toml``).

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

from .errors import UserError

PROJECT_FILE = "dmsbuild.toml"
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
    #: ``module:callable`` returning a torch.nn.Module (mutually exclusive with ``onnx``)
    factory: str | None = None
    #: state dict loaded into the factory's module
    checkpoint: str | None = None
    #: an existing ONNX model the user brings instead of a PyTorch factory
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


@dataclass
class InputConfig:
    name: str = "image"
    shape: list[int] = field(default_factory=lambda: [1, 3, 224, 224])
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    def validate(self, source: str, prefix: str) -> None:
        if len(self.shape) != 4 or any(d <= 0 for d in self.shape):
            raise UserError(
                f"{source}: field 'input.shape' is {self.shape}; expected 4 positive dims ({self.layout})"
            )

    @property
    def hw(self) -> tuple[int, int]:
        if self.layout == "NCHW":
            return self.shape[2], self.shape[3]
        return self.shape[1], self.shape[2]

    @property
    def channels(self) -> int:
        return self.shape[1] if self.layout == "NCHW" else self.shape[3]


@dataclass
class OutputsConfig:
    names: list[str] = field(default_factory=list)
    #: heads scored by top-1 agreement / labelled accuracy (argmax over the last axis)
    classification: list[str] = field(default_factory=list)

    def validate(self, source: str, prefix: str) -> None:
        unknown = [n for n in self.classification if n not in self.names]
        if unknown:
            raise UserError(
                f"{source}: field 'outputs.classification' names {unknown}, which are not in outputs.names {self.names}"
            )


@dataclass
class PreprocessConfig:
    resize: list[int] | None = None  # [H, W]; defaults to the input's H, W
    channel_order: Literal["RGB", "BGR", "GRAY"] = "RGB"
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    #: pixel values are divided by this before mean/std
    scale: float = 255.0

    def validate(self, source: str, prefix: str) -> None:
        if self.resize is not None and (len(self.resize) != 2 or any(d <= 0 for d in self.resize)):
            raise UserError(f"{source}: field 'preprocess.resize' is {self.resize}; expected [H, W], both positive",
                            hint="images are resized to [H, W], then centre-cropped to the input's H, W")


@dataclass
class ExportConfig:
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: int = 17
    dynamic_batch: bool = True


@dataclass
class DataConfig:
    #: folder of images (.png/.jpg) or .npy arrays for static INT8 calibration
    calibration: str = "data/calibration"
    #: folder of validation images or .npy arrays
    validation: str = "data/validation"
    #: optional JSON {file name: {head: class index}} for labelled accuracy
    labels: str | None = None
    #: ``package.module:callable`` called as ``fn(split)`` (split: "calibration" or "validation") and yielding
    #: input dicts ``{input name: array}`` (batch axis optional); replaces the calibration/validation folders
    loader: str | None = None
    max_calibration_samples: int = 128
    max_validation_samples: int = 256

    def validate(self, source: str, prefix: str) -> None:
        if self.loader is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", self.loader):
            raise UserError(f"{source}: field 'data.loader' is {self.loader!r}; expected 'package.module:callable'",
                            hint="for example loader = \"mydata:samples\" (a function of the split name yielding {input: array})")


@dataclass
class DynamicQuantConfig:
    per_channel: bool = True
    reduce_range: bool = False
    weight_type: Literal["QInt8", "QUInt8"] = "QInt8"


@dataclass
class QATConfig:
    """Quantization-aware fine-tuning (``method = "qat"``): distillation from the FP32 model (docs/qat.md)."""

    steps: int = 200
    lr: float = 1e-4
    batch: int = 16
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
    #: CPU shared with other work a 2-thread step ran 5-30x slower than a 1-thread one (docs/qat.md, "Speed");
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

    def validate(self, source: str, prefix: str) -> None:
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
    calibration_method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"
    per_channel: bool = True
    weight_type: Literal["QInt8", "QUInt8"] = "QInt8"
    activation_type: Literal["QUInt8", "QInt8", "QUInt16", "QInt16"] = "QUInt8"
    symmetric_activations: bool = False
    #: fix the batch axis (QNN needs fixed shapes)
    fixed_shape: bool = False
    #: false: keep Conv/Gemm biases float (TensorRT's ONNX parser rejects ONNX Runtime's int32 bias
    #: DequantizeLinear: onnx/onnx-tensorrt#850, microsoft/onnxruntime#14229); true: int32 biases
    quantize_bias: bool = True
    #: "ptq": calibrate the FP32 model; "qat": fine-tune with fake quantization first (dmsbuild/qat.py)
    method: Literal["ptq", "qat"] = "ptq"
    qat: QATConfig = field(default_factory=QATConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)

    def validate(self, source: str, prefix: str) -> None:
        where = f"{prefix}." if prefix else ""
        if self.method == "ptq" and self.prune.fraction > 0:
            raise UserError(f"{source}: field '{where}prune.fraction' is {self.prune.fraction}, but pruning runs "
                            f"in the QAT stage only ('{where}method' is \"ptq\")",
                            hint=f"set {where}method = \"qat\", or remove {where}prune")


@dataclass
class QuantizationConfig:
    dynamic: DynamicQuantConfig = field(default_factory=DynamicQuantConfig)
    static: StaticQuantConfig = field(default_factory=StaticQuantConfig)


def _check_floor_fields(obj: Any, source: str, where: str) -> None:
    """Accuracy floors in range: a drop in [0, 1], a cosine in [-1, 1], an SQNR finite (dB)."""
    limits = {"max_accuracy_drop": (0.0, 1.0), "min_cosine": (-1.0, 1.0), "min_sqnr_db": (-200.0, 200.0)}
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
    #: per-head overrides, e.g. [accuracy.heads.head_pose] min_sqnr_db = 10
    heads: dict[str, HeadFloorsConfig] = field(default_factory=dict)

    def validate(self, source: str, prefix: str) -> None:
        _check_floor_fields(self, source, prefix)


@dataclass
class ProjectConfig:
    name: str = "dms"
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    data: DataConfig = field(default_factory=DataConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)
    #: set by the loader
    root: Path = field(default=Path("."), init=False)
    source: Path = field(default=Path(PROJECT_FILE), init=False)

    def validate(self, source: str, prefix: str) -> None:
        _check_name(self.name, "name", source)
        check_head_floors(self.accuracy.heads, self.outputs, source, "accuracy.heads")

    def path(self, rel: str | None) -> Path | None:
        """Resolve a path from the config against the project root."""
        if rel is None:
            return None
        p = Path(os.path.expanduser(rel))
        return p if p.is_absolute() else self.root / p

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
    #: inventory file (relative to the project root); its boards of group ``group`` are this target's
    inventory: str = "targets/inventory.toml"
    #: inventory group; defaults to the target name
    group: str | None = None
    #: boards deployed at once
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

    def validate(self, source: str, prefix: str) -> None:
        from .fleet import check_max_fail, check_waves  # standard library only, like this module

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
    warmup: int = 10
    iterations: int = 100
    threads: int = 0  # 0: runtime default
    #: validation samples carried to the board for the output check
    verify_samples: int = 16


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
    warmup: int = 5
    #: the bootstrap confidence interval's level
    confidence: float = 0.95
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
    #: this target's accuracy floors (None: the project's [accuracy]); build-time and on-board gates alike
    #: fail when top-1 agreement with FP32 drops by more than this
    max_accuracy_drop: float | None = None
    #: fail below this mean per-sample cosine with FP32, any head
    min_cosine: float | None = None
    #: fail below this SQNR vs FP32 (dB), any head
    min_sqnr_db: float | None = None
    #: per-head overrides for this target, e.g. [gates.heads.yawn] max_accuracy_drop = 0.1
    heads: dict[str, HeadFloorsConfig] = field(default_factory=dict)
    #: fail a board when median latency exceeds the previous release's by this ratio
    max_latency_regression: float = 1.25
    #: re-measure a suspected regression (old and new interleaved on the board) before failing
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)

    def validate(self, source: str, prefix: str) -> None:
        _check_floor_fields(self, source, prefix)


@dataclass
class TargetProfile:
    name: str
    description: str = ""
    #: the board CPU architecture expected (uname -m), e.g. aarch64, x86_64; "any" for the host
    arch: str = "any"
    #: backend that builds and runs this target's artifacts
    runtime: Literal["onnxruntime", "tensorrt", "qnn", "snpe"] = "onnxruntime"
    #: precisions to build and ship
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    #: overrides of the project's static quantization for this target's consumer
    quantization: StaticQuantConfig | None = None
    #: backend-specific options (validated by the backend module)
    backend: dict[str, Any] = field(default_factory=dict)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    #: "local": no SSH, deploy into a folder on this machine; "ssh": the inventory's boards
    transport: Literal["local", "ssh"] = "ssh"
    source: Path = field(default=Path("."), init=False)

    def validate(self, source: str, prefix: str) -> None:
        _check_name(self.name, "name", source)
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


def check_head_floors(heads: dict[str, HeadFloorsConfig], outputs: OutputsConfig, source: str | Path, where: str) -> None:
    """Per-head floors name real heads; a top-1 drop only for a classification head."""
    for head, floors in heads.items():
        if head not in outputs.names:
            raise UserError(f"{source}: field '{where}.{head}' names a head that is not in outputs.names {outputs.names}",
                            hint=f"use one of {outputs.names}, or remove [{where}.{head}]")
        if floors.max_accuracy_drop is not None and head not in outputs.classification:
            raise UserError(f"{source}: field '{where}.{head}.max_accuracy_drop' is set, but '{head}' is not a "
                            f"classification head (outputs.classification {outputs.classification}): it has no top-1",
                            hint=f"remove it, or set min_cosine / min_sqnr_db for '{head}'")


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder upwards holding dmsbuild.toml."""
    env = os.environ.get("DMSBUILD_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / PROJECT_FILE).is_file():
            return p
    raise UserError(
        f"{PROJECT_FILE}: not found in {here} or any parent folder",
        hint="run dmsbuild from the project folder, or set DMSBUILD_ROOT",
    )


def load_project(root: Path | None = None) -> ProjectConfig:
    root = root or find_root()
    path = root / PROJECT_FILE
    cfg = load_dataclass(ProjectConfig, read_toml(path), str(path))
    cfg.root = root
    cfg.source = path
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


def static_quant_for(project: ProjectConfig, profile: TargetProfile) -> StaticQuantConfig:
    """The static quantization settings a target's consumer wants."""
    return profile.quantization or project.quantization.static


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
