"""Synthetic results documents (CONTRACTS §3) for store, gate and report tests."""
from __future__ import annotations

import numpy as np

from dmsbuild.core.results import fill_latency, make_document, new_result

FACTS = {"hostname": "board", "arch": "aarch64", "os": "Debian 12", "kernel": "6.6", "python": "3.11.2",
         "numpy": "1.26.4", "onnxruntime": "1.32.0", "onnxruntime_providers": ["CPUExecutionProvider"],
         "onnxruntime_qnn": None, "tensorrt": None, "trtexec": None, "snpe": None,
         "disk_free_mb": 1000, "mem_total_mb": 8000}
SIZES = {"fp32": 21_900_000, "fp16": 11_000_000, "int8-qdq": 6_000_000, "int8-dynamic": 5_700_000}


def result(name: str, median: float, *, agreement: float = 1.0, n: int = 30, seed: int = 0,
           error: str | None = None) -> dict:
    entry = {"name": name, "precision": name, "runtime": "onnxruntime", "providers": ["CPUExecutionProvider"],
             "sha256": f"{seed:02x}" * 32, "size": SIZES.get(name, 1000)}
    r = new_result(entry, warmup=5, iterations=n, threads=2)
    if error:
        r["error"] = error
        return r
    rng = np.random.default_rng(seed)
    fill_latency(r, [float(median * (1 + 0.05 * abs(x))) for x in rng.standard_normal(n)])
    r["load_ms"], r["first_inference_ms"], r["peak_rss_mb"] = 40.0, median * 3, 120.0
    heads = {h: {"max_abs_diff": 0.01, "mean_abs_diff": 0.001, "cosine": 0.999, "cosine_min": 0.995, "sqnr_db": 30.0,
                 "psnr_db": 45.0, "top1_agreement": agreement if h != "yawn" else 1.0, "degenerate": None}
             for h in ("eye_state", "yawn", "activity")}
    heads["head_pose"] = {"max_abs_diff": 0.02, "mean_abs_diff": 0.002, "cosine": 0.998, "cosine_min": 0.99,
                          "sqnr_db": None, "psnr_db": None, "top1_agreement": None, "degenerate": None}
    r["verify"] = {"samples": 16, "heads": heads, "min_top1_agreement": agreement}
    return r


def document(release_id: str, results: list[dict], *, hostname: str = "board", target: str = "rpi5") -> dict:
    return make_document(release_id=release_id, facts={**FACTS, "hostname": hostname}, results=results,
                         target=target, project="dms", toolchain={"onnxruntime": "1.32.0", "opset": 17},
                         bench={"warmup": 5, "iterations": 30, "threads": 2, "verify_samples": 16})
