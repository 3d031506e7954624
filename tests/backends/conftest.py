"""Shared fixtures for the backend tests: a tiny DMS model exported and QDQ-quantized here.

The model is the quarter-width ``build_tiny`` with its BatchNorm statistics
re-estimated on random images and PyTorch's default Linear init, so its
outputs depend on the input (the factory's init leaves the heads near zero,
which would make every agreement metric look perfect).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends.models import export_tiny, quantize_qdq


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny")
    fp32_dyn = export_tiny(d / "fp32.onnx", dynamic_batch=True)
    fp32_fixed = export_tiny(d / "fp32-fixed.onnx", dynamic_batch=False)
    return {
        "fp32": fp32_fixed,
        "fp32-dynamic": fp32_dyn,
        "qdq16": quantize_qdq(fp32_fixed, d / "qdq-u16.onnx", "QUInt16"),
        "qdq8-dynamic": quantize_qdq(fp32_dyn, d / "qdq-u8-dynamic.onnx", "QUInt8"),
    }
