"""Corpus architectures through the LiteRT converters: FP32 and full-integer INT8 .tflite vs PyTorch FP32.

    PYTHONPATH=. .venv/bin/python bench/litert_corpus.py [arch ...]     (default: mobilenetv2 resnet squeezenet)

Each architecture of tests/corpus.py (seeded random weights, random BatchNorm statistics, as the corpus exports
them) is converted by litert-torch, quantized by ai-edge-quantizer (static_wi8_ai8, 32 random-normal calibration
inputs) and run by the LiteRT interpreter (dmsbuild/board/runner/litert_runner.py) on 64 other random inputs; the
outputs are judged against PyTorch FP32 with the metrics every artifact's gate uses (runner/metrics.py) and the
project's default floors (cosine >= 0.95, SQNR >= 12 dB, top-1 drop <= 5 %). Random weights and inputs: a check
that the route converts and quantizes these structures sanely, not an accuracy figure of a trained model.
Needs the `litert` extra. Prints one Markdown row per architecture and precision.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HW = 32


def run(arch: str, folder: Path) -> list[str]:
    import litert_torch
    import torch
    from ai_edge_quantizer import quantizer, recipe

    from dmsbuild.board.runner.litert_runner import TfliteModel
    from dmsbuild.board.runner.metrics import verify_summary
    from tests.corpus import _torch_models

    torch.manual_seed(0)
    model = _torch_models()[arch]().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 3, HW, HW)).astype(np.float32) for _ in range(32)]
    x = rng.standard_normal((64, 3, HW, HW)).astype(np.float32)
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    rows = []
    fp32 = folder / f"{arch}-fp32.tflite"
    t0 = time.perf_counter()
    litert_torch.convert(model, (torch.zeros(1, 3, HW, HW),)).export(str(fp32))
    convert_s = time.perf_counter() - t0
    int8 = folder / f"{arch}-int8.tflite"
    t0 = time.perf_counter()
    qt = quantizer.Quantizer(str(fp32))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    sig = TfliteModel(str(fp32)).interpreter.get_signature_list()["serving_default"]["inputs"][0]
    qt.quantize(qt.calibrate({"serving_default": [{sig: c} for c in calib]}, num_threads=1)).export_model(
        str(int8), overwrite=True)
    quant_s = time.perf_counter() - t0
    for name, path, secs in (("fp32", fp32, convert_s), ("int8 (full integer)", int8, quant_s)):
        got = TfliteModel(str(path)).run_many(x)[0]
        head = verify_summary({"logits": ref}, {"logits": got}, ["logits"])["heads"]["logits"]
        ok = head["cosine"] >= 0.95 and head["sqnr_db"] >= 12 and (1 - head["top1_agreement"]) <= 0.05
        rows.append(f"| {arch} | {name} | {path.stat().st_size / 1e6:.2f} | {secs:.1f} | {head['cosine']:.4f} | "
                    f"{head['sqnr_db']:.1f} | {head['top1_agreement']:.3f} | {'pass' if ok else 'FAIL'} |")
    return rows


def main(argv: list[str]) -> int:
    arches = argv or ["mobilenetv2", "resnet", "squeezenet"]
    print("| architecture | .tflite | MB | convert/quantize s | cosine | SQNR dB | top-1 agreement | default floors |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in arches:
            try:
                rows = run(arch, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one architecture's failure is a row, the others still run
                rows = [f"| {arch} | - | - | - | - | - | - | stops: {type(exc).__name__}: {' '.join(str(exc).split())[:120]} |"]
            print("\n".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
