"""Accuracy metrics of an artifact's outputs against the FP32 reference: ONE implementation for host and board.

Shipped in every release as ``runner/metrics.py`` beside ``dms_bench.py`` and
``trt_runner.py`` (manifest.SUPPORT_FILES), and imported on the host by
``dmsbuild.build.evaluate`` (the build-time gate) and ``dmsbuild.backends``. It needs
only the standard library and numpy, because it runs on the board.

Definitions (docs/accuracy.md). A head's output of N samples is read as N
vectors, one per sample (everything after axis 0 flattened); r_i is the
reference's vector of sample i, g_i the candidate's.

* ``cosine``: mean over samples of cos(r_i, g_i); ``cosine_min`` the worst
  sample. Both zero vectors: 1; one zero vector: 0 (an all-zero candidate
  scores 0, never "ignored").
* ``sqnr_db``: 10 log10(sum |r_i|^2 / sum |r_i - g_i|^2) over the head
  (signal-to-quantization-noise ratio); null when the outputs are identical.
* ``psnr_db``: 10 log10(peak^2 / MSE), peak = the reference's range over the
  head (max - min; max |r| if that is 0); null when identical. Reported, not gated.
* ``top1_agreement`` (classification heads): share of samples whose argmax
  (over the flattened sample vector) equals the reference's. A candidate whose
  largest value is tied (all-zero or constant logits) does not agree unless
  the reference is tied the same way: argmax of a tie is index 0, which
  would otherwise "agree" with every sample of class 0.
* ``degenerate``: null, or why the candidate's outputs cannot be trusted at
  all: NaN/Inf, every value exactly 0, or the same output for every sample
  (it varies across samples less than ``CONSTANT_SPREAD`` of what the
  reference varies, where the reference itself varies). A degenerate head
  fails every gate.

Numbers that are not finite are reported as null (JSON has no NaN).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

#: a candidate head varying across samples less than this share of the reference's variation is "constant"
CONSTANT_SPREAD = 1e-3
#: a reference head varying across samples less than this share of its own RMS does not depend on the input
REFERENCE_SPREAD = 1e-4
#: every key of a head's metrics (results validation checks each; docs/CONTRACTS.md §3)
HEAD_KEYS = ("max_abs_diff", "mean_abs_diff", "cosine", "cosine_min", "sqnr_db", "psnr_db", "top1_agreement", "degenerate")


def as_samples(values: Any) -> np.ndarray:
    """(N, features) float64: one row per sample."""
    a = np.asarray(values, dtype=np.float64)
    return a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)


def spread(samples: np.ndarray) -> float:
    """How much a head's output varies across samples: RMS over features of the per-feature standard deviation."""
    if len(samples) < 2:
        return 0.0
    return float(np.sqrt(np.mean(np.var(samples, axis=0))))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def degenerate(ref: np.ndarray, got: np.ndarray) -> str | None:
    """Why ``got`` (samples x features) is not a usable output at all, or None."""
    n = len(got)
    bad = int(np.count_nonzero(~np.isfinite(got).all(axis=1)))
    if bad:
        return f"NaN or Inf in {bad} of {n} samples"
    if not got.any() and ref.any():
        return f"every output is exactly 0 ({n} samples)"
    ref_spread = spread(ref)
    varies = ref_spread > REFERENCE_SPREAD * float(np.sqrt(np.mean(ref ** 2)))  # else the reference is "constant" too
    if n >= 2 and varies and spread(got) <= CONSTANT_SPREAD * ref_spread:
        return f"the same output for every one of {n} samples (it does not depend on the input)"
    return None


def cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """cos(r_i, g_i) per sample; 1 where both are zero vectors, 0 where only one is."""
    nr = np.linalg.norm(ref, axis=1)
    ng = np.linalg.norm(got, axis=1)
    den = nr * ng
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, np.sum(ref * got, axis=1) / np.where(den > 0, den, 1.0), 0.0)
    cos = np.where((nr == 0) & (ng == 0), 1.0, cos)
    return np.clip(cos, -1.0, 1.0)


def _db(signal: float, noise: float) -> float | None:
    """10 log10(signal / noise); None for no noise (identical); floor -200 dB for no signal."""
    if noise == 0:
        return None
    if not math.isfinite(noise) or not math.isfinite(signal):
        return None
    if signal <= 0:
        return -200.0
    return max(10.0 * math.log10(signal / noise), -200.0)


def top1_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Share of samples with the reference's argmax; a tied candidate maximum agrees only with a tied reference."""
    def tied(x: np.ndarray) -> np.ndarray:
        return np.count_nonzero(x == x.max(axis=1, keepdims=True), axis=1) > 1

    same = ref.argmax(axis=1) == got.argmax(axis=1)
    return float(np.mean(same & (tied(ref) | ~tied(got))))


def head_metrics(ref: Any, got: Any, classification: bool) -> dict[str, Any]:
    """Every metric of one head (keys: ``HEAD_KEYS``); ``top1_agreement`` is None for a regression head."""
    r, g = as_samples(ref), as_samples(got)
    if r.shape != g.shape:
        raise ValueError(f"output has shape {g.shape} per sample set, the reference {r.shape}")
    why = degenerate(r, g)
    with np.errstate(all="ignore"):
        diff = np.abs(r - g)
        err = float(np.sum((r - g) ** 2))
        cos = cosines(r, g)
        mse = err / r.size
        peak = float(r.max() - r.min()) or float(np.max(np.abs(r))) or 1.0
        return {
            "max_abs_diff": _finite(float(diff.max())),
            "mean_abs_diff": _finite(float(diff.mean())),
            "cosine": _finite(float(cos.mean())),
            "cosine_min": _finite(float(cos.min())),
            "sqnr_db": _db(float(np.sum(r ** 2)), err),
            "psnr_db": _db(peak * peak, mse),
            "top1_agreement": top1_agreement(r, g) if classification else None,
            "degenerate": why,
        }


def verify_summary(ref: Mapping[str, Any], got: Mapping[str, Any], classification: Sequence[str],
                   keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The CONTRACTS §3 ``verify`` object: per head metrics of ``got`` vs ``ref`` (same samples).

    ``got`` is keyed by tensor name; ``ref`` and the returned heads by safe id (``keys``: tensor name -> id,
    names without an entry are their own id)."""
    keys = keys or {}
    heads = {keys.get(name, name): head_metrics(ref[keys.get(name, name)], got[name], name in classification)
             for name in got}
    tops = [m["top1_agreement"] for m in heads.values() if m["top1_agreement"] is not None]
    n = len(as_samples(next(iter(got.values())))) if got else 0
    return {"samples": n, "heads": heads, "min_top1_agreement": min(tops) if tops else None}


def reference_problem(ref: Any) -> str | None:
    """Why a head's FP32 reference outputs cannot judge an artifact (NaN/Inf, or no variation across samples), or None."""
    r = as_samples(ref)
    bad = int(np.count_nonzero(~np.isfinite(r).all(axis=1)))
    if bad:
        return f"NaN or Inf in {bad} of {len(r)} samples"
    if len(r) < 2:
        return None
    rms = float(np.sqrt(np.mean(r ** 2)))
    s = spread(r)
    if s <= REFERENCE_SPREAD * rms or s == 0:
        return (f"identical on all {len(r)} validation samples" if s == 0 else
                f"nearly identical on all {len(r)} validation samples (variation {s / rms:.1e} of its RMS)")
    return None
