#!/usr/bin/env python3
"""The figures of docs/accuracy.md "Outputs by kind": a real INT8 YOLO-like artifact judged whole and by kind.

The model is tests/byom.py ``yolo_like_onnx`` ([N, 4+C, 64]: boxes 320*sigmoid, class scores sigmoid, one
Concat); ONNX Runtime ``quantize_static`` (QDQ, uint8 activations, int8 weights) calibrated on 16 random
inputs; FP32 and INT8 run with ONNX Runtime CPU on this machine on 16 other random inputs, then judged by
dmsbuild/board/runner/metrics.py as a regression output (whole tensor) and as a detection.

    PYTHONPATH=. .venv/bin/python bench/kinds_int8_yolo.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from dmsbuild.board.runner import metrics
    from tests.byom import yolo_like_onnx

    x = np.random.default_rng(0).normal(0, 1, (32, 3, 32, 32)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": x[i:i + 1]} for i in range(16)])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as td:
        fp32, int8 = Path(td) / "fp32.onnx", Path(td) / "int8.onnx"
        yolo_like_onnx(fp32)
        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"x": x[16:]})[0]
        got = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {"x": x[16:]})[0]
    whole = metrics.head_metrics(ref, got, False)
    kind = metrics.head_metrics(ref, got, False, {"kind": "detection"})
    print(json.dumps({"source": f"ONNX Runtime {ort.__version__} CPU on this machine (emulated board), 16 samples",
                      "int8_score_values": sorted({round(float(v), 4) for v in np.unique(got[:, 4:])})[:8],
                      "whole_tensor": {"cosine": whole["cosine"], "sqnr_db": whole["sqnr_db"]},
                      "by_kind": kind["by_kind"], "slices": kind["slices"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
