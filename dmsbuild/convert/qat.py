"""Accuracy recovery and compression: quantization-aware training (QAT) with distillation, and structured pruning.

A target profile asks for it with ``[quantization] method = "qat"`` (docs/qat.md). The stage:

1. loads the PyTorch model (``model.factory`` + ``model.checkpoint``) twice: a frozen FP32 *teacher*
   and a *student*;
2. optionally prunes the student's channels with torch-pruning (``[quantization.prune] fraction``) and
   fine-tunes it with the distillation loss below;
3. folds BatchNorm into the convolutions (as ONNX Runtime's pre-processing does before quantizing), then
   fine-tunes with fake quantization matching the target's scheme: weights per-channel (or per-tensor)
   symmetric int8 / asymmetric uint8 as ``weight_type`` says, activations at the inputs of every
   convolution and linear layer with ``activation_type``'s 8 or 16 bits, symmetric when
   ``symmetric_activations`` (TensorRT) - torch's ``FakeQuantize`` modules with moving-average observers;
4. exports the fine-tuned float weights with the project's exporter and writes the QDQ model with the
   *same* ONNX Runtime quantizer and settings as post-training quantization, so the artifact has exactly
   the Q/DQ placement, types and fixed shapes that the QNN, TensorRT and ORT consumers already take.

The loss is distillation from the teacher, so unlabelled images suffice: KL divergence of the
temperature-softened softmax on classification heads (``outputs.classification``), mean squared error on
the other (regression) heads; with labels and ``label_weight`` > 0 it mixes in cross-entropy / MSE on them.

Everything is seeded; the action writes to temporary files and renames at the end, so Ctrl-C leaves no
half-written artifact. torch, onnx and onnxruntime are imported inside the functions.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..config import PRUNE_CHANNEL_BLOCK, ProjectConfig, QATConfig, StaticQuantConfig, as_dict
from ..errors import UserError

#: seed offset of the generator stream used for QAT images (the reference model trained on seed 20240)
SYNTHETIC_SEED = 31000


# --------------------------------------------------------------------------
# training data (cheap parts are used by task generators: standard library only)
# --------------------------------------------------------------------------
def synthetic_folder(project: ProjectConfig, cfg: QATConfig) -> Path:
    """Where the generator's QAT images are cached (rendered once per seed, count and size)."""
    h, w = project.input.hw
    return project.artifacts / "common" / "qat-data" / f"synthetic-{SYNTHETIC_SEED + cfg.seed}-{cfg.max_samples}-{h}"


def _data_project(project: ProjectConfig, cfg: QATConfig) -> tuple[ProjectConfig, str]:
    """A view of the project whose ``data.<field>`` is the QAT training folder (reuses dmsbuild.convert.data's loaders)."""
    if cfg.data in ("calibration", "validation"):
        return project, cfg.data
    folder = str(synthetic_folder(project, cfg)) if cfg.data == "synthetic" else cfg.data
    labels = cfg.labels
    if cfg.data == "synthetic" and labels is None:
        labels = str(Path(folder) / "labels.json")
    view = copy.copy(project)
    view.data = dataclasses.replace(project.data, calibration=folder, labels=labels)
    return view, "calibration"


def training_files(project: ProjectConfig, cfg: QATConfig) -> list[Path]:
    """The QAT training images (for doit's file_dep); empty for "synthetic" (rendered by the action, seeded)."""
    from .data import list_samples

    if cfg.data == "synthetic":
        return []
    view, field = _data_project(project, cfg)
    files = list_samples(view, field, cfg.max_samples)
    if cfg.labels is not None:
        files.append(project.existing_file(cfg.labels, "QAT", "quantization.qat.labels",
                                           hint="create that JSON file or remove qat.labels"))
    return files


def _load_training_set(project: ProjectConfig, cfg: QATConfig) -> tuple[Any, dict[str, Any] | None, str]:
    """(images N×sample, labels per head or None, a description) for the fine-tuning."""
    from .data import list_samples, load_labels, load_samples

    if cfg.data == "synthetic":
        folder = synthetic_folder(project, cfg)
        if not (folder / "labels.json").is_file():
            from ..model.synthetic import write_set

            h, w = project.input.hw
            if h != w:
                raise UserError(f"{project.source}: QAT data = \"synthetic\" renders square images; input is {h}x{w}",
                                hint="use a folder of images for quantization.qat.data")
            print(f"  qat: rendering {cfg.max_samples} synthetic images ({h}x{w}, seed {SYNTHETIC_SEED + cfg.seed})", flush=True)
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # an interrupted render
            shutil.rmtree(folder, ignore_errors=True)
            write_set(tmp, SYNTHETIC_SEED + cfg.seed, cfg.max_samples, h, with_labels=True)
            os.replace(tmp, folder)
    view, field = _data_project(project, cfg)
    files = list_samples(view, field, cfg.max_samples)
    names, images = load_samples(files, view, cfg.max_samples)
    labels = None
    if cfg.label_weight > 0:
        labels = load_labels(view, names) if view.data.labels is not None else None
        if labels is None:
            raise UserError(f"QAT: quantization.qat.label_weight is {cfg.label_weight} but the training images "
                            f"({cfg.data}) have no labels",
                            hint="set qat.labels (a JSON like data.labels), use data = \"synthetic\", or label_weight = 0")
    return images, labels, f"{len(images)} images from {cfg.data}"


# --------------------------------------------------------------------------
# fake quantization matching the target's scheme
# --------------------------------------------------------------------------
def _act_range(cfg: StaticQuantConfig) -> tuple[int, int, Any]:
    import torch

    bits = 16 if cfg.activation_type.endswith("16") else 8
    signed = cfg.activation_type.startswith("QInt")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    dtype = {(8, True): torch.qint8, (8, False): torch.quint8}.get((bits, signed), torch.qint32)
    return lo, hi, dtype


def _activation_fake_quant(cfg: StaticQuantConfig) -> Any:
    """A torch FakeQuantize for one activation tensor (per-tensor, moving-average min/max)."""
    import torch
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver

    lo, hi, dtype = _act_range(cfg)
    scheme = torch.per_tensor_symmetric if cfg.symmetric_activations else torch.per_tensor_affine
    # torch's observers floor the scale at float32 eps (1.2e-7), ONNX Runtime's quantizer at float32 tiny
    # (onnxruntime/quantization/quant_utils.py compute_scale_zp): with torch's floor a tensor whose range is
    # below ~1.5e-5 fake-quantizes to 0 here but keeps its values in the ORT artifact, so training would
    # correct an error the artifact does not have. Use ORT's floor.
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=lo, quant_max=hi, dtype=dtype,
                        qscheme=scheme, averaging_constant=0.01, eps=torch.finfo(torch.float32).tiny)


def fake_quantize_weight(w: Any, cfg: StaticQuantConfig) -> Any:
    """The weight as the target will see it: int8 symmetric (QInt8) or uint8 asymmetric (QUInt8), per channel or not.

    Scales come from the current weight each step (what ONNX Runtime's quantizer computes from the final one).
    """
    import torch

    dims = tuple(range(1, w.dim())) if cfg.per_channel else tuple(range(w.dim()))
    wd = w.detach()
    if cfg.weight_type == "QInt8":
        absmax = wd.abs().amax(dim=dims).clamp(min=1e-8)
        scale = absmax / 127.0
        zero = torch.zeros_like(scale, dtype=torch.int32)
        lo, hi = -127, 127
    else:
        wmin = wd.amin(dim=dims).clamp(max=0.0)
        wmax = wd.amax(dim=dims).clamp(min=0.0)
        scale = ((wmax - wmin) / 255.0).clamp(min=1e-8)
        zero = torch.round(-wmin / scale).clamp(0, 255).to(torch.int32)
        lo, hi = 0, 255
    if cfg.per_channel:
        return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, lo, hi)
    return torch.fake_quantize_per_tensor_affine(w, float(scale), int(zero), lo, hi)


def _wrap_class() -> type:
    import torch
    from torch import nn

    class FakeQuantized(nn.Module):
        """A Conv2d or Linear whose input and weight pass through fake quantization."""

        def __init__(self, layer: nn.Module, cfg: StaticQuantConfig) -> None:
            super().__init__()
            self.layer = layer
            self.cfg = cfg
            self.act = _activation_fake_quant(cfg)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.act(x)
            w = fake_quantize_weight(self.layer.weight, self.cfg)
            if isinstance(self.layer, nn.Conv2d):
                return self.layer._conv_forward(x, w, self.layer.bias)
            return nn.functional.linear(x, w, self.layer.bias)

    return FakeQuantized


def fold_batchnorm(model: Any) -> int:
    """Fold eval-mode BatchNorm2d that follows a Conv2d inside a Sequential into the conv (in place); returns the count."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for mod in list(model.modules()):
        if not isinstance(mod, nn.Sequential):
            continue
        keys = list(mod._modules)
        for a, b in zip(keys, keys[1:]):
            conv, bn = mod._modules[a], mod._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                mod._modules[a] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                mod._modules[b] = nn.Identity()
                folded += 1
    return folded


def insert_fake_quant(model: Any, cfg: StaticQuantConfig) -> int:
    """Wrap every Conv2d and Linear of ``model`` (in place); returns how many."""
    from torch import nn

    wrapper = _wrap_class()
    count = 0
    for parent in list(model.modules()):
        for key, child in list(parent._modules.items()):
            if isinstance(child, (nn.Conv2d, nn.Linear)) and not isinstance(parent, wrapper):
                parent._modules[key] = wrapper(child, cfg)
                count += 1
    return count


def strip_fake_quant(model: Any) -> Any:
    """The plain float model (the wrapped layers put back) for export."""
    wrapper = _wrap_class().__name__
    for parent in list(model.modules()):
        for key, child in list(parent._modules.items()):
            if type(child).__name__ == wrapper and hasattr(child, "layer"):
                parent._modules[key] = child.layer
    return model


# --------------------------------------------------------------------------
# distillation
# --------------------------------------------------------------------------
def _as_tuple(out: Any) -> tuple[Any, ...]:
    if isinstance(out, (tuple, list)):
        return tuple(out)
    if isinstance(out, dict):
        return tuple(out.values())
    return (out,)


def distillation_loss(student: tuple[Any, ...], teacher: tuple[Any, ...], heads: list[str], classification: set[str],
                      temperature: float, labels: dict[str, Any] | None = None, label_weight: float = 0.0) -> Any:
    """Sum over heads of KL(teacher || student) at ``temperature`` (classification) or MSE (regression), mixed with labels."""
    from torch.nn import functional as F

    total = 0.0
    for i, name in enumerate(heads):
        s, t = student[i], teacher[i]
        if name in classification:
            t_ = temperature
            kd = F.kl_div(F.log_softmax(s / t_, -1), F.softmax(t / t_, -1), reduction="batchmean") * t_ * t_
        else:
            kd = F.mse_loss(s, t)
        term = kd
        if labels is not None and label_weight > 0 and name in labels:
            y = labels[name]
            sup = F.cross_entropy(s, y.long()) if name in classification else F.mse_loss(s, y.float().view_as(s))
            term = (1 - label_weight) * kd + label_weight * sup
        total = total + term
    return total


def lr_factor(step: int, steps: int) -> float:
    """Learning-rate multiplier of step ``step`` (0-based): linear warm-up over the first 5 % of steps, then cosine to 0.

    The warm-up keeps Adam's first, badly-scaled updates (its moment estimates start at zero) from throwing a
    trained model off; the decay lets the last steps settle instead of jittering at the peak rate.
    """
    import math

    warm = max(1, steps // 20)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def fine_tune(student: Any, teacher_outputs: tuple[Any, ...], images: Any, labels: dict[str, Any] | None,
              project: ProjectConfig, cfg: QATConfig, steps: int, what: str,
              on_step: Callable[[int], None] | None = None, lr: float | None = None) -> list[float]:
    """Seeded Adam fine-tuning with the distillation loss (peak ``lr``, default ``cfg.lr``; ``lr_factor`` schedule).

    Prints step, loss and time left every few steps.
    """
    import numpy as np
    import torch

    heads = list(project.outputs.names)
    classification = set(project.outputs.classification)
    peak = cfg.lr if lr is None else lr
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=peak)
    print(f"  {what}: {steps} steps, batch {min(cfg.batch, len(images))}, peak lr {peak:g} (warm-up, cosine)", flush=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, steps))
    rng = np.random.default_rng(cfg.seed)
    n = len(images)
    losses: list[float] = []
    started = time.perf_counter()
    every = max(1, steps // 10)
    student.eval()  # BatchNorm statistics and dropout stay frozen: the teacher's inference behaviour is the target
    for step in range(1, steps + 1):
        idx = torch.from_numpy(rng.choice(n, size=min(cfg.batch, n), replace=False))
        x = images[idx]
        out = _as_tuple(student(x))
        target = tuple(t[idx] for t in teacher_outputs)
        lab = {k: v[idx] for k, v in labels.items()} if labels else None
        loss = distillation_loss(out, target, heads, classification, cfg.temperature, lab, cfg.label_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step)
        if step % every == 0 or step == steps:
            spent = time.perf_counter() - started
            left = spent / step * (steps - step)
            recent = losses[-every:]
            print(f"  {what}: step {step}/{steps} loss {sum(recent) / len(recent):.4g} "
                  f"({spent:.0f} s, ~{left:.0f} s left)", flush=True)
    return losses


# --------------------------------------------------------------------------
# pruning
# --------------------------------------------------------------------------
def prune_channels(model: Any, example: Any, fraction: float, head_sizes: set[int], round_to: int = 1) -> Any:
    """Remove ``fraction`` of the prunable channels by L2 magnitude (torch-pruning keeps coupled layers consistent).

    Linear layers whose width is a model output's (the heads) keep their outputs. ``round_to`` > 1 keeps a multiple
    of that many channels in every pruned layer (``kept_channels``; no layer is ever emptied: torch-pruning's
    dependency graph refuses to, and ``kept_channels`` never asks it to).
    """
    import torch_pruning as tp
    from torch import nn

    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features in head_sizes]
    pruner = _block_pruner(tp)(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                               pruning_ratio=fraction, ignored_layers=ignored, global_pruning=False,
                               round_to=round_to if round_to > 1 else None)
    pruner.step()
    return model


def kept_channels(current: int, pruned: int, block: int) -> int:
    """Channels a layer keeps when ``pruned`` of its ``current`` would go and counts must be multiples of ``block``.

    Rounded down to a multiple, as torch-pruning's ``round_to`` does, except where rounding down leaves nothing:
    then the layer keeps one block (or all its channels, when it has no more than one). torch-pruning 1.6.1 there
    asks to remove every channel, its dependency graph refuses to empty a layer, and the layer stays *unpruned*:
    at fraction 0.5 and round_to 32 a 48-channel layer kept all 48 channels instead of 32 (measured)."""
    kept = current - pruned
    kept -= kept % block
    return kept if kept > 0 else min(current, block)


def _block_pruner(tp: Any) -> Any:
    """torch-pruning's MetaPruner with ``kept_channels`` as its rounding (its ``_round_to`` hook, torch-pruning==1.6.1)."""
    class BlockPruner(tp.pruner.MetaPruner):
        def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
            return current_channels - kept_channels(current_channels, n_pruned, round_to)

    return BlockPruner


def channel_alignment(model: Any, block: int) -> tuple[int, int]:
    """(convolutions whose input and output channel counts are multiples of ``block``, all convolutions)."""
    from torch import nn

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    aligned = sum(1 for m in convs if m.in_channels % block == 0 and m.out_channels % block == 0)
    return aligned, len(convs)


def recalibrate_batchnorm(model: Any, images: Any, batch: int) -> int:
    """Re-estimate every BatchNorm's running mean and variance on ``images`` (a train-mode pass, no gradients).

    After pruning, the channels that feed a BatchNorm are fewer, so the statistics it stored for the full model
    no longer describe its input; re-estimating them on a few hundred images is the cheap first step of
    accuracy recovery ("adaptive BN", Li et al., EagleEye, ECCV 2020). Returns the number of BatchNorm layers.
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch, not an exponential one
    was_training = model.training
    model.eval()  # dropout stays off: only the BatchNorm layers collect statistics
    for m in bns:
        m.train()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model(images[i:i + batch])
    model.train(was_training)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return len(bns)


def count_macs_params(model: Any, example: Any) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass, counted by torch-pruning."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def onnx_latency_ms(path: Path, input_name: str, sample: Any, runs: int = 30) -> float:
    """Median ORT CPU latency (2 threads) of one sample, after 5 warm-up runs: for the before/after pruning report."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {input_name: sample}
    for _ in range(5):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        sess.run(None, feed)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(times))


#: the metrics of ``runner.metrics.head_metrics`` kept in the pruning report (top1_agreement is None for regression heads)
AGREEMENT_KEYS = ("top1_agreement", "cosine", "sqnr_db", "degenerate")


def _agreement(project: ProjectConfig, ref: Path, other: Path) -> dict[str, dict[str, Any]]:
    """Per head, the shared accuracy metrics of ``other`` vs ``ref`` on the validation set (ORT CPU), rounded."""
    from .data import list_samples, load_samples
    from .evaluate import head_metrics, run_onnx

    files = list_samples(project, "validation", project.data.max_validation_samples)
    _, x = load_samples(files, project, project.data.max_validation_samples)
    names = list(project.outputs.names)
    a = run_onnx(ref, project.input.name, x, names)
    b = run_onnx(other, project.input.name, x, names)
    out = {}
    for n in names:
        m = head_metrics(a[n], b[n], n in project.outputs.classification)
        out[n] = {k: round(m[k], 5) if isinstance(m[k], float) else m[k] for k in AGREEMENT_KEYS}
    return out


# --------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------
def report_path(qdq: Path) -> Path:
    """The JSON report written beside a QAT artifact (training time, losses, pruning before/after)."""
    return qdq.with_name(qdq.stem + ".qat.json")


def tuned_fp32_path(qdq: Path) -> Path:
    """The fine-tuned (and pruned) float model beside a QAT artifact."""
    return qdq.with_name(qdq.stem + ".fp32.onnx")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_qat(project: ProjectConfig, fp32_onnx: Path, out: Path, cfg: StaticQuantConfig, calibration: list[Path]) -> dict[str, Any]:
    """The build action: (prune ->) QAT fine-tune -> export -> QDQ with the target's settings; atomic outputs."""
    if project.model.factory is None:
        raise UserError(f"{project.source}: quantization method \"qat\" needs the PyTorch model (model.factory and "
                        "model.checkpoint); model.onnx has no weights to train",
                        hint="set model.factory/model.checkpoint, or use method = \"ptq\" for this target")
    if project.several_inputs:
        raise UserError(f"{project.source}: quantization method \"qat\" trains on one input; this model has "
                        f"{len(project.all_inputs)} ({', '.join(i.name for i in project.all_inputs)})",
                        hint="use method = \"ptq\" (static calibration takes every input) for this target")
    with training_cpu(cfg.qat.threads):
        return _run_qat(project, fp32_onnx, out, cfg, calibration)


@contextlib.contextmanager
def training_cpu(threads: int) -> Iterator[None]:
    """torch set up for training on the CPU, put back afterwards (the action runs inside doit's process).

    - ``threads`` intra-op threads (``qat.threads``): torch's OpenMP workers spin-wait at every parallel region,
      and when the cores are busy with other work a waiting thread burns the slice its partner needs. Measured
      on this 2-core machine under a load average of ~30: a tiny-model step took 1 s with 1 thread and 5-34 s
      with torch's default 2 (docs/qat.md, "Speed").
    - denormal floats flushed to zero: gradients and activations of a trained network underflow into the
      denormal range, which x86 handles in microcode; flushing made a step of the reference model 1.5-2x
      faster (2.4 s instead of 4.4 s, batch 16, measured). Flushing changes only values below 1.2e-38, far
      below the smallest step an 8- or 16-bit quantization grid of the artifact resolves.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)


def _run_qat(project: ProjectConfig, fp32_onnx: Path, out: Path, cfg: StaticQuantConfig, calibration: list[Path]) -> dict[str, Any]:
    import numpy as np
    import torch

    from .export import export_model, load_torch_model
    from .quantize import quantize_static_qdq

    q = cfg.qat
    started = time.perf_counter()
    torch.manual_seed(q.seed)
    np.random.seed(q.seed)
    threads = torch.get_num_threads()
    teacher = load_torch_model(project)
    student = copy.deepcopy(teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    images_np, labels_np, described = _load_training_set(project, q)
    images = torch.from_numpy(np.ascontiguousarray(images_np)).float()
    labels = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in labels_np.items()} if labels_np else None
    with torch.no_grad():
        teacher_out = [_as_tuple(teacher(images[i:i + 32])) for i in range(0, len(images), 32)]
    teacher_outputs = tuple(torch.cat([o[h] for o in teacher_out]) for h in range(len(teacher_out[0])))
    if len(teacher_outputs) != len(project.outputs.names):
        raise UserError(f"{project.source}: the model returns {len(teacher_outputs)} outputs but outputs.names lists "
                        f"{len(project.outputs.names)}", hint="make outputs.names match the model's outputs")
    example = images[:1]
    print(f"  qat: {described}; {q.steps} steps, batch {q.batch}, lr {q.lr}, seed {q.seed}, "
          f"T={q.temperature}, label weight {q.label_weight}; torch threads {threads}", flush=True)
    report: dict[str, Any] = {"settings": as_dict(cfg), "data": described, "teacher": "FP32 model.checkpoint",
                              "source": "measured on this machine (host CPU)"}

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dmsbuild-qat-", dir=out.parent) as tmpdir:
        tmp = Path(tmpdir)
        if cfg.prune.fraction > 0:
            macs0, params0 = count_macs_params(student, example)
            head_sizes = {int(t.shape[-1]) for t in teacher_outputs}
            round_to = cfg.prune.round_to or PRUNE_CHANNEL_BLOCK["onnxruntime"]  # 0 outside a target: ORT's block
            prune_channels(student, example, cfg.prune.fraction, head_sizes, round_to)
            bns = recalibrate_batchnorm(student, images, max(q.batch, 32))
            macs1, params1 = count_macs_params(student, example)
            aligned, convs = channel_alignment(student, round_to)
            with torch.no_grad():
                shapes = [tuple(t.shape[1:]) for t in _as_tuple(student(example))]
            if shapes != [tuple(t.shape[1:]) for t in teacher_outputs]:
                raise UserError(f"pruning changed the model's output shapes to {shapes}",
                                hint="lower quantization.prune.fraction or report the model structure")  # pragma: no cover
            print(f"  prune: {cfg.prune.fraction:.0%} of channels: MACs {macs0 / 1e6:.1f} M -> {macs1 / 1e6:.1f} M, "
                  f"params {params0 / 1e6:.2f} M -> {params1 / 1e6:.2f} M; channels kept in multiples of {round_to} "
                  f"({aligned} of {convs} convolutions aligned); {bns} BatchNorm statistics re-estimated", flush=True)
            t0 = time.perf_counter()
            prune_losses = fine_tune(student, teacher_outputs, images, labels, project, q, cfg.prune.steps,
                                     "prune fine-tune", lr=cfg.prune.lr)
            report["prune"] = {"fraction": cfg.prune.fraction, "round_to": round_to, "convs_aligned": aligned,
                               "convs": convs, "batchnorm_recalibrated": bns, "macs_before": macs0, "macs_after": macs1,
                               "params_before": params0, "params_after": params1, "fine_tune_steps": cfg.prune.steps,
                               "fine_tune_seconds": round(time.perf_counter() - t0, 1),
                               "final_loss": prune_losses[-1] if prune_losses else None}
        folded = fold_batchnorm(student)
        wrapped = insert_fake_quant(student, cfg)
        print(f"  qat: {folded} BatchNorm folded, {wrapped} layers fake-quantized ({cfg.activation_type} activations"
              f"{' symmetric' if cfg.symmetric_activations else ''}, {cfg.weight_type} weights"
              f"{' per-channel' if cfg.per_channel else ' per-tensor'})", flush=True)
        # observe activation ranges first (fake quantization off), then train with it on
        student.apply(torch.ao.quantization.disable_fake_quant)
        with torch.no_grad():
            for i in range(0, min(len(images), 8 * q.batch), q.batch):
                student(images[i:i + q.batch])
        student.apply(torch.ao.quantization.enable_fake_quant)
        freeze_at = max(1, int(q.steps * 0.8))

        def freeze(step: int) -> None:
            if step == freeze_at:  # the last steps train against fixed ranges
                student.apply(torch.ao.quantization.disable_observer)

        t0 = time.perf_counter()
        losses = fine_tune(student, teacher_outputs, images, labels, project, q, q.steps, "qat", on_step=freeze)
        report["qat"] = {"steps": q.steps, "seconds": round(time.perf_counter() - t0, 1),
                         "first_loss": losses[0], "final_loss": losses[-1],
                         "loss_curve": [round(v, 6) for v in losses[:: max(1, len(losses) // 20)]]}
        strip_fake_quant(student)
        student.eval()
        tuned = tmp / "tuned.onnx"
        export_model(project, tuned, tmp / "tuned.json", module=student)
        qdq = tmp / "qdq.onnx"
        ptq_view = dataclasses.replace(cfg, method="ptq")
        quantize_static_qdq(project, tuned, qdq, ptq_view, calibration)
        if cfg.prune.fraction > 0:
            sample = images_np[:1].astype(np.float32)
            before = onnx_latency_ms(fp32_onnx, project.input.name, sample)
            after = onnx_latency_ms(tuned, project.input.name, sample)
            report["prune"].update({
                "fp32_onnx_bytes_before": fp32_onnx.stat().st_size, "fp32_onnx_bytes_after": tuned.stat().st_size,
                "fp32_latency_ms_before": round(before, 3), "fp32_latency_ms_after": round(after, 3),
                "latency_source": "ORT CPU on this machine (emulated board host), median of 30, 2 threads",
                "agreement_pruned_fp32_vs_fp32": _agreement(project, fp32_onnx, tuned),
            })
            print(f"  prune: FP32 ONNX {fp32_onnx.stat().st_size / 1e6:.1f} MB -> {tuned.stat().st_size / 1e6:.1f} MB, "
                  f"ORT CPU median {before:.2f} ms -> {after:.2f} ms", flush=True)
        report["seconds"] = round(time.perf_counter() - started, 1)
        os.replace(tuned, tuned_fp32_path(out))
        _write_atomic(report_path(out), json.dumps(report, indent=2) + "\n")
        os.replace(qdq, out)  # last: the doit target appears only when everything else is in place
    print(f"  qat: {out} ({out.stat().st_size / 1e6:.1f} MB, {report['seconds']:.0f} s in all)", flush=True)
    return report


# --------------------------------------------------------------------------
# TensorRT's documented Q/DQ rules, checked on the ONNX file (TensorRT itself cannot run here)
# --------------------------------------------------------------------------
#: ops TensorRT runs in INT8 when both their data and weight inputs come from DequantizeLinear
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def tensorrt_qdq_problems(path: Path) -> list[str]:
    """What in a QDQ ONNX breaks TensorRT's explicit-quantization rules; empty when it complies.

    From TensorRT's "Working with Quantized Types / Explicit Quantization" docs: INT8 only (signed), symmetric
    (zero point 0; the ONNX parser asserts "TRT only supports symmetric quantization - zeroPt must be all zeros",
    seen in onnx/tensorflow-onnx#1713), INT8 weights in [-127, 127], activations per-tensor and weights
    per-channel along the output-channel axis; and the placement advice "quantize all inputs of weighted
    operations" (Conv, Gemm, MatMul), without which a layer silently stays in floating point.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    problems: list[str] = []
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(n.input) < 3 or n.input[2] not in inits:
            continue  # no zero point: 0, uint8 by ONNX default only for QuantizeLinear without one
        zp = inits[n.input[2]]
        if zp.dtype != np.int8:
            problems.append(f"{n.name}: {zp.dtype} zero point (TensorRT takes INT8 Q/DQ only)")
        elif np.any(zp != 0):
            problems.append(f"{n.name}: zero point {zp.ravel()[:4].tolist()} (TensorRT needs 0: symmetric quantization)")
        scale = inits.get(n.input[1])
        if scale is not None and np.any(scale <= 0):
            problems.append(f"{n.name}: non-positive scale")
        data = n.input[0]
        is_weight = data in inits
        if n.op_type == "DequantizeLinear" and is_weight:
            w = inits[data]
            if w.dtype == np.int8 and w.size and int(w.min()) < -127:
                problems.append(f"{n.name}: INT8 weight value -128 (TensorRT's weight range is [-127, 127])")
        if scale is not None and scale.size > 1:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if not is_weight:
                problems.append(f"{n.name}: per-channel scales on an activation (TensorRT: activations per-tensor)")
            else:
                consumer = next((c for c in g.node if n.output[0] in c.input), None)
                want = 0
                if consumer is not None and consumer.op_type == "Gemm" and not any(
                        a.name == "transB" and a.i for a in consumer.attribute):
                    want = 1
                if consumer is not None and consumer.op_type in ("MatMul", "ConvTranspose"):
                    want = 1
                if axis != want:
                    problems.append(f"{n.name}: per-channel axis {axis}, TensorRT wants the output-channel axis {want}")
    for n in g.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        ins = [i for i in n.input[:2] if i]
        if not all(i in producer and producer[i].op_type == "DequantizeLinear" for i in ins):
            problems.append(f"{n.name} ({n.op_type}): not every input comes from DequantizeLinear "
                            "(TensorRT runs it in floating point)")
    return problems
