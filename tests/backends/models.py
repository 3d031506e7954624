"""Small ONNX models built on the fly for backend tests and bench scripts."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (1, 3, 224, 224)


def calibration_inputs(n: int, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def settle(model, shape: tuple[int, ...] = SHAPE, batches: int = 4, seed: int = 0):
    """Give a random-init DMSNet input-dependent outputs: default Linear init, BN stats from random images."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, *shape[1:]))
    return model.eval()


def export_dms(model, path: Path, *, dynamic_batch: bool, shape: tuple[int, ...] = SHAPE) -> Path:
    import torch

    from dmsbuild.model.dms_net import OUTPUT_NAMES

    torch.onnx.export(
        model, torch.randn(*shape), str(path), input_names=["image"], output_names=OUTPUT_NAMES,
        opset_version=17, dynamo=False, do_constant_folding=True,
        dynamic_axes={"image": {0: "batch"}} if dynamic_batch else None,
    )
    return path


def export_tiny(path: Path, *, dynamic_batch: bool) -> Path:
    from dmsbuild.model.dms_net import build_tiny

    return export_dms(settle(build_tiny()), path, dynamic_batch=dynamic_batch)


def quantize_qdq(fp32: Path, out: Path, activation_type: str, samples: int = 8,
                 weight_type: str = "QUInt8") -> Path:
    """Static QDQ quantization as the host build does it for QNN (unsigned activations)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    data = iter(calibration_inputs(samples, seed=1))

    class Reader(CalibrationDataReader):
        def get_next(self):
            x = next(data, None)
            return None if x is None else {"image": x}

    quantize_static(
        str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
        activation_type=getattr(QuantType, activation_type), weight_type=getattr(QuantType, weight_type),
    )
    return out
