"""Train the reference DMS model on the synthetic driver-camera set.

Why: quantization accuracy checks need a model that has learned something; a
random-init network makes top-1 agreement look far better than it is. This
script is seeded and fits the project's budget (under 10 minutes on 2 CPU
cores): it renders a fixed training set once, then trains
``build_reference()`` in fp32 with AdamW + one-cycle, channels-last, and
horizontal-flip augmentation (which mirrors yaw and roll).

    nice python -m dmsbuild.model.train --out models/dms_reference.pt

The checkpoint is a state dict with fp16 floating tensors (half the size;
``load_state_dict`` casts them back to float32) plus a JSON sidecar next to it
recording seed, steps, resolution, validation accuracy and versions.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dmsbuild.model import synthetic
from dmsbuild.model.dms_net import HEADS, build_reference

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
POSE_WEIGHT = 2.0
BN_MOMENTUM = 0.1
BN_RECALIBRATION_BATCHES = 16


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> normalised float32 NCHW, as dmsbuild.toml's [preprocess] does."""
    x = (images.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _labels_to_tensors(labels: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in labels.items()}


def evaluate(model: nn.Module, images: torch.Tensor, labels: dict[str, torch.Tensor], batch: int = 64) -> dict:
    """Per-head accuracy and head-pose mean absolute error."""
    model.eval()
    outs: list[tuple[torch.Tensor, ...]] = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            outs.append(model(images[i:i + batch].contiguous(memory_format=torch.channels_last)))
    result: dict[str, float] = {}
    for h, name in enumerate(HEADS):
        pred = torch.cat([o[h] for o in outs]).argmax(1)
        result[name] = float((pred == labels[name]).float().mean())
    pose = torch.cat([o[3] for o in outs])
    result["head_pose_mae"] = float((pose - labels["head_pose"]).abs().mean())
    return result


def _set_bn_momentum(model: nn.Module, momentum: float | None) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum


def recalibrate_bn(model: nn.Module, images: torch.Tensor, rng: np.random.Generator, batch: int,
                   batches: int = BN_RECALIBRATION_BATCHES) -> None:
    """Re-estimate BatchNorm running statistics of the final weights (cumulative average, no grad)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    _set_bn_momentum(model, None)
    model.train()
    idx = torch.from_numpy(rng.permutation(len(images))[: batch * batches])
    with torch.no_grad():
        for i in range(0, len(idx), batch):
            model(images[idx[i:i + batch]].contiguous(memory_format=torch.channels_last))


def train(out: Path, seed: int, train_samples: int, val_samples: int, steps: int, batch: int, size: int,
          lr: float, threads: int, checkpoint_every: int = 0) -> dict:
    """Train, print progress, save the fp16 checkpoint and the sidecar; return the sidecar dict."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    train_images, train_labels = synthetic.render_batch(synthetic.TRAIN_SEED + seed, 0, train_samples, size)
    val_images, val_labels = synthetic.render_batch(synthetic.TRAIN_SEED + seed + 1, 0, val_samples, size)
    x_train, y_train = to_tensor(train_images), _labels_to_tensors(train_labels)
    x_val, y_val = to_tensor(val_images), _labels_to_tensors(val_labels)
    print(f"rendered {train_samples} training + {val_samples} validation images at {size}px "
          f"in {time.time() - t0:.0f} s", flush=True)

    run = {"seed": seed, "train_seed": synthetic.TRAIN_SEED + seed, "steps": steps, "batch": batch,
           "train_samples": train_samples, "val_samples": val_samples, "resolution": [size, size], "lr": lr,
           "threads": threads}
    model = build_reference().to(memory_format=torch.channels_last)
    # The architecture's BN momentum (0.01, as torchvision) lags far behind in a few hundred steps;
    # momentum is not part of the state dict, so train with 0.1 and re-estimate the statistics at the end.
    _set_bn_momentum(model, BN_MOMENTUM)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.02)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    ce = nn.CrossEntropyLoss(label_smoothing=0.05)
    t1 = time.time()
    order = rng.permutation(train_samples)
    pos = 0
    running = 0.0
    for step in range(1, steps + 1):
        model.train()
        if pos + batch > train_samples:
            order, pos = rng.permutation(train_samples), 0
        idx = torch.from_numpy(order[pos:pos + batch])
        pos += batch
        x = x_train[idx]
        y = {k: v[idx] for k, v in y_train.items()}
        flip = torch.from_numpy(rng.random(batch) < 0.5)
        x[flip] = x[flip].flip(3)
        pose = y["head_pose"].clone()
        pose[flip, 0] = -pose[flip, 0]
        pose[flip, 2] = -pose[flip, 2]
        out_t = model(x.contiguous(memory_format=torch.channels_last))
        loss = sum(ce(out_t[h], y[name]) for h, name in enumerate(HEADS))
        loss = loss + POSE_WEIGHT * nn.functional.smooth_l1_loss(out_t[3], pose, beta=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = 0.9 * running + 0.1 * loss.item() if step > 1 else loss.item()
        if step % 25 == 0 or step == steps:
            elapsed = time.time() - t1
            print(f"step {step}/{steps} loss {running:.3f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{step * batch / elapsed:.0f} img/s, {elapsed:.0f} s", flush=True)
        if checkpoint_every and step % checkpoint_every == 0 and step != steps:
            # interim checkpoint on a copy (recalibrating BN must not disturb training); the sidecar
            # says "complete": false, so a run cut short still leaves an honest, usable model
            snapshot = copy.deepcopy(model)
            recalibrate_bn(snapshot, x_train, np.random.default_rng(seed + step), batch)
            _set_bn_momentum(snapshot, 0.01)
            metrics = evaluate(snapshot, x_val, y_val)
            print("  val", _fmt(metrics), flush=True)
            _save(snapshot, out, metrics, dict(run, steps_done=step, complete=False), t0, t1)
    recalibrate_bn(model, x_train, rng, batch)
    _set_bn_momentum(model, 0.01)
    metrics = evaluate(model, x_val, y_val)
    print("final val", _fmt(metrics), flush=True)
    return _save(model, out, metrics, dict(run, steps_done=steps, complete=True), t0, t1)


def _save(model: nn.Module, out: Path, metrics: dict, run: dict, t0: float, t1: float) -> dict:
    train_s = time.time() - t1
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(state, out)
    sidecar = {
        "factory": "dmsbuild.model.dms_net:build_reference",
        **run,
        "validation": {"samples": run["val_samples"], **{k: round(v, 4) for k, v in metrics.items()}},
        "render_s": round(t1 - t0, 1),
        "train_s": round(train_s, 1),
        "total_s": round(time.time() - t0, 1),
        "checkpoint_dtype": "float16",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.with_suffix('.json')}", flush=True)
    return sidecar


def _fmt(m: dict) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in m.items())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the reference DMS model on synthetic driver-camera images.")
    p.add_argument("--out", type=Path, default=Path("models/dms_reference.pt"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-samples", type=int, default=4000)
    p.add_argument("--val-samples", type=int, default=300)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=synthetic.DEFAULT_SIZE, help="training resolution (square)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint-every", type=int, default=100, help="write an interim checkpoint every N steps (0: off)")
    a = p.parse_args(argv)
    train(a.out, a.seed, a.train_samples, a.val_samples, a.steps, a.batch, a.size, a.lr, a.threads, a.checkpoint_every)


if __name__ == "__main__":
    main()
