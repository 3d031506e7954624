"""Accuracy metrics of an artifact's outputs against the FP32 reference: ONE implementation for host and board.

Shipped in every release as ``runner/metrics.py`` beside ``dms_bench.py`` and
``trt_runner.py`` (manifest.SUPPORT_FILES), and imported on the host by
``dmsbuild.convert.evaluate`` (the build-time gate) and ``dmsbuild.backends``. It needs
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
* ``top1_agreement`` (classification and sequence heads): share of positions
  whose argmax along the head's class axis (declared kind, default the last
  axis) equals the reference's: per sample for [N, C], per time step for
  [N, T, K] (``class_agreement``). A candidate whose
  largest value is tied (all-zero or constant logits) does not agree unless
  the reference is tied the same way: argmax of a tie is index 0, which
  would otherwise "agree" with every sample of class 0.
* ``degenerate``: null, or why the candidate's outputs cannot be trusted at
  all: NaN/Inf, every value exactly 0, or the same output for every sample
  (it varies across samples less than ``CONSTANT_SPREAD`` of what the
  reference varies, where the reference itself varies). A degenerate head
  fails every gate.

* ``by_kind`` / ``slices``: what the output means (``kind_metrics``: detections
  matched by IoU after decoding and NMS, mask IoU, per-step and decoded-string
  agreement) and per declared slice (a detector's boxes and class scores) the
  whole-tensor cosine, SQNR and ``collapsed`` (all 0 or constant while FP32's vary).

Numbers that are not finite are reported as null (JSON has no NaN).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

#: a candidate head varying across samples less than this share of the reference's variation is "constant"
CONSTANT_SPREAD = 1e-3
#: a slice whose candidate takes at most this many distinct values (FP32's: many) has collapsed: one
#: quantization step spans its range (class scores 0..1 under a scale set by boxes 0..320 take {0, 1.25})
COLLAPSED_LEVELS = 2
#: a reference head varying across samples less than this share of its own RMS does not depend on the input
REFERENCE_SPREAD = 1e-4
#: every key of a head's metrics (results validation checks each; docs/CONTRACTS.md §3)
HEAD_KEYS = ("max_abs_diff", "mean_abs_diff", "cosine", "cosine_min", "sqnr_db", "psnr_db", "top1_agreement", "degenerate")
#: the keys of what a head means, beside HEAD_KEYS (``kind_metrics``; results validation checks them where present)
KIND_KEYS = ("by_kind", "slices")


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


def head_metrics(ref: Any, got: Any, classification: bool, kind: Mapping[str, Any] | None = None,
                 partner: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Every metric of one head (keys: ``HEAD_KEYS`` + ``KIND_KEYS``); ``top1_agreement`` is None for a regression head.

    ``kind``: the head's declared kind (``kind_spec``; undeclared: classification if ``classification``,
    else regression). A classification or sequence head's ``top1_agreement`` is taken along its class
    axis, per position (per time step of a sequence), never over the flattened sample."""
    spec = kind_spec(kind, classification)
    r, g = as_samples(ref), as_samples(got)
    if r.shape != g.shape:
        raise ValueError(f"output has shape {g.shape} per sample set, the reference {r.shape}")
    full = np.asarray(ref, dtype=np.float64)
    if full.ndim < 2:
        full = full.reshape(len(r), -1)
    by = kind_metrics(full, np.asarray(got, dtype=np.float64).reshape(full.shape), spec, partner)
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
            "top1_agreement": by["by_kind"].get("agreement"),
            "degenerate": why,
            **by,
        }


def verify_summary(ref: Mapping[str, Any], got: Mapping[str, Any], classification: Sequence[str],
                   keys: Mapping[str, str] | None = None, kinds: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CONTRACTS §3 ``verify`` object: per head metrics of ``got`` vs ``ref`` (same samples).

    ``got`` is keyed by tensor name; ``ref`` and the returned heads by safe id (``keys``: tensor name -> id,
    names without an entry are their own id). ``kinds``: tensor name -> declared kind (manifest
    ``outputs.kinds``); an SSD-style detection reads its ``scores_output`` from the same samples."""
    keys, kinds = keys or {}, kinds or {}

    def one(name: str) -> dict[str, Any]:
        spec = kind_spec(kinds.get(name), name in classification)
        partner = None
        other = spec.get("scores_output") if spec["kind"] == "detection" and spec["layout"] == "ssd" else None
        if other is not None and other in got:
            partner = (ref[keys.get(other, other)], got[other])
        try:
            return head_metrics(ref[keys.get(name, name)], got[name], name in classification, spec, partner)
        except ValueError as exc:
            raise ValueError(f"output {name!r} ({spec['kind']}): {exc}") from None

    heads = {keys.get(name, name): one(name) for name in got}
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


# --------------------------------------------------------------------------
# outputs judged by what they mean (docs/accuracy.md "Outputs by kind")
# --------------------------------------------------------------------------
#: what an output can be declared as ([outputs.kinds.<name>] kind = ...)
KINDS = ("classification", "regression", "embedding", "detection", "segmentation", "sequence")
#: a declared kind's fields and their defaults (config.OutputKindConfig holds the same; the board reads this)
KIND_DEFAULTS = {
    "axis": -1,                 # classification / sequence / segmentation: the class axis (segmentation: default 1)
    "layout": "yolo",           # detection: "yolo" ([N, 4+C, A] channels on channel_axis) or "ssd" (boxes + scores_output)
    "channel_axis": 1,          # detection yolo: the axis holding box, objectness and class channels
    "boxes": [0, 4],            # detection yolo: channel range [lo, hi) of the box coordinates
    "scores": None,             # detection yolo: channel range of the class scores (None: after boxes/objectness)
    "objectness": None,         # detection yolo: channel index of an objectness score (YOLOv5 style), or None
    "box_format": "xywh",       # "xywh" (centre, size) or "xyxy" (corners)
    "scores_output": None,      # detection ssd: the output holding [N, A, C] scores for this output's [N, A, 4] boxes
    "background": None,         # detection ssd: a class index that is "no object" (ignored)
    "score_threshold": 0.25,    # detection: a candidate box is kept from this confidence
    "nms_iou": 0.45,            # detection: non-maximum suppression IoU (per class)
    "match_iou": 0.5,           # detection: a candidate detection matches an FP32 one of its class from this IoU
    "max_detections": 300,      # detection: kept per sample after NMS, highest scores first
    "threshold": 0.5,           # segmentation with one channel on its class axis: foreground where value > threshold
    "blank": None,              # sequence: CTC blank class index; set, decoded strings are compared too
}


def kind_spec(raw: Mapping[str, Any] | None, classification: bool = False) -> dict[str, Any]:
    """A declared kind with every default filled in; undeclared: classification or regression (as before kinds)."""
    spec = dict(KIND_DEFAULTS)
    if (raw or {}).get("kind") == "segmentation":
        spec["axis"] = 1  # [N, C, H, W] maps
    spec.update({k: v for k, v in (raw or {}).items() if v is not None})
    if "kind" not in spec or spec["kind"] is None:
        spec["kind"] = "classification" if classification else "regression"
    if spec["kind"] not in KINDS:
        raise ValueError(f"kind {spec['kind']!r} is not one of {KINDS}")
    return spec


def _tied(x: np.ndarray, axis: int) -> np.ndarray:
    return np.count_nonzero(x == x.max(axis=axis, keepdims=True), axis=axis) > 1


def class_agreement(ref: np.ndarray, got: np.ndarray, axis: int) -> float:
    """Share of positions (samples x every axis but the class axis) whose argmax along ``axis`` is the reference's.

    A tied candidate maximum agrees only where the reference is tied too (as ``top1_agreement``)."""
    same = ref.argmax(axis=axis) == got.argmax(axis=axis)
    return float(np.mean(same & (_tied(ref, axis) | ~_tied(got, axis))))


def ctc_decode(x: np.ndarray, axis: int, blank: int) -> list[tuple[int, ...]]:
    """Greedy CTC decoding per sample: argmax per step, repeats merged, blanks dropped."""
    steps = np.moveaxis(x, axis, -1).argmax(axis=-1).reshape(x.shape[0], -1)
    out = []
    for row in steps:
        keep = np.concatenate([[True], row[1:] != row[:-1]]) & (row != blank)
        out.append(tuple(int(v) for v in row[keep]))
    return out


def _xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "xyxy":
        return boxes
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4 xyxy) with every box of ``b`` (m, 4): (n, m)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Indices kept by per-class greedy non-maximum suppression, highest score first."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for pos, i in enumerate(order):
        if suppressed[pos]:
            continue
        kept.append(int(i))
        if len(kept) >= limit:
            break
        rest = order[pos + 1:]
        over = (box_iou(boxes[i:i + 1], boxes[rest])[0] > iou) & (classes[rest] == classes[i])
        suppressed[pos + 1:] |= over
    return np.asarray(kept, dtype=np.int64)


def _split_yolo(x: np.ndarray, spec: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A YOLO-style output's slices, each (N, A, channels): boxes, objectness (if declared), class scores."""
    if x.ndim != 3 or not -3 <= spec["channel_axis"] < 3 or spec["channel_axis"] % 3 == 0:
        raise ValueError(f"a yolo-layout detection is [N, 4+C, A] or [N, A, 4+C] with channel_axis 1 or 2; "
                         f"this output has shape {list(x.shape)}, channel_axis {spec['channel_axis']}")
    ch = np.moveaxis(x, spec["channel_axis"], -1).reshape(x.shape[0], -1, x.shape[spec["channel_axis"]])
    b0, b1 = spec["boxes"]
    obj = spec["objectness"]
    lo, hi = spec["scores"] or [max(b1, obj + 1 if obj is not None else b1), ch.shape[-1]]
    if max(b1, hi, (obj if obj is not None else -1) + 1) > ch.shape[-1] or lo >= hi:
        raise ValueError(f"declared channels (boxes {b0}:{b1}, scores {lo}:{hi}, objectness {obj}) do not fit the "
                         f"{ch.shape[-1]} channels of axis {spec['channel_axis'] % 3} (shape {list(x.shape)})")
    parts = {"boxes": ch[:, :, b0:b1], "scores": ch[:, :, lo:hi]}
    if obj is not None:
        parts["objectness"] = ch[:, :, obj:obj + 1]
    return parts


def _slice_names(spec: Mapping[str, Any], shape: tuple[int, ...]) -> dict[str, str]:
    """Where each slice of a YOLO-style output lies, for failure lines."""
    ax = spec["channel_axis"] % len(shape)
    b0, b1 = spec["boxes"]
    obj = spec["objectness"]
    lo, hi = spec["scores"] or [max(b1, obj + 1 if obj is not None else b1), shape[ax]]
    where = {"boxes": f"channels {b0}:{b1} of axis {ax}", "scores": f"channels {lo}:{hi} of axis {ax}"}
    if obj is not None:
        where["objectness"] = f"channel {obj} of axis {ax}"
    return where


def detections(parts: Mapping[str, np.ndarray], i: int, spec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample i's detections after thresholding and NMS: (boxes xyxy, scores, classes)."""
    scores = parts["scores"][i].astype(np.float64)
    if spec["background"] is not None:
        scores = scores.copy()
        scores[:, int(spec["background"])] = -np.inf
    cls = scores.argmax(axis=1)
    conf = scores[np.arange(len(scores)), cls]
    if "objectness" in parts:
        conf = conf * parts["objectness"][i][:, 0]
    keep = conf >= spec["score_threshold"]
    boxes = _xyxy(parts["boxes"][i][keep].astype(np.float64), spec["box_format"])
    conf, cls = conf[keep], cls[keep]
    idx = nms(boxes, conf, cls, spec["nms_iou"], int(spec["max_detections"]))
    if len(idx) == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    return boxes[idx], conf[idx], cls[idx]


def match_detections(ref_parts: Mapping[str, np.ndarray], got_parts: Mapping[str, np.ndarray],
                     spec: Mapping[str, Any]) -> dict[str, Any]:
    """FP32's detections vs the candidate's, per sample: each FP32 detection (highest score first) takes the
    unmatched candidate detection of its class with the highest IoU >= ``match_iou``.

    recall: matched / FP32 detections; precision: matched / candidate detections (None without any);
    score_error: mean |score difference| of matched pairs."""
    n_ref = n_got = matched = 0
    errors: list[float] = []
    for i in range(len(ref_parts["boxes"])):
        rb, rs, rc = detections(ref_parts, i, spec)
        gb, gs, gc = detections(got_parts, i, spec)
        n_ref, n_got = n_ref + len(rb), n_got + len(gb)
        if not len(rb) or not len(gb):
            continue
        iou = box_iou(rb, gb)
        iou[rc[:, None] != gc[None, :]] = 0.0
        free = np.ones(len(gb), dtype=bool)
        for r in range(len(rb)):  # already in descending score order (nms)
            cand = np.where(free, iou[r], -1.0)
            j = int(cand.argmax())
            if cand[j] >= spec["match_iou"]:
                free[j] = False
                matched += 1
                errors.append(abs(float(rs[r]) - float(gs[j])))
    return {"reference_detections": n_ref, "detections": n_got, "matched": matched,
            "recall": matched / n_ref if n_ref else None,
            "precision": matched / n_got if n_got else None,
            "score_error": float(np.mean(errors)) if errors else None}


def collapsed(ref: np.ndarray, got: np.ndarray) -> str | None:
    """Why a slice of the candidate carries no information while FP32's varies (all 0, or one constant), or None."""
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    if not r.size or not np.isfinite(g).all():
        return None  # NaN/Inf: the head is degenerate already
    r_std = float(r.std())
    if r_std <= REFERENCE_SPREAD * float(np.sqrt(np.mean(r ** 2))) or r_std == 0:
        return None  # FP32's does not vary either
    if not g.any():
        return f"every value is 0 while FP32's vary (FP32 {r.min():.4g}..{r.max():.4g})"
    if float(g.std()) <= CONSTANT_SPREAD * r_std:
        return f"every value is {g[0]:.4g} while FP32's vary (FP32 {r.min():.4g}..{r.max():.4g})"
    levels = np.unique(g)
    if len(levels) <= COLLAPSED_LEVELS and len(np.unique(r)) > 8 * COLLAPSED_LEVELS:
        # one quantization step spans the slice's range: a uint8 scale set by a neighbour 300x larger
        shown = ", ".join(f"{v:.4g}" for v in levels)
        return (f"only {len(levels)} distinct values ({shown}) while FP32's vary over {len(np.unique(r))} "
                f"(FP32 {r.min():.4g}..{r.max():.4g})")
    return None


def _slice_metrics(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    r, g = as_samples(ref), as_samples(got)
    with np.errstate(all="ignore"):
        cos = cosines(r, g)
        return {"cosine": _finite(float(cos.mean())), "sqnr_db": _db(float(np.sum(r ** 2)), float(np.sum((r - g) ** 2))),
                "collapsed": collapsed(ref, got)}


def mask_iou(ref: np.ndarray, got: np.ndarray, spec: Mapping[str, Any]) -> float:
    """Mean over samples of the masks' IoU: foreground (value > threshold) for a one-channel probability map,
    else per class of the argmax along the class axis, averaged over the classes present in either mask."""
    axis = spec["axis"] % ref.ndim
    if axis == 0:
        raise ValueError("the class axis cannot be the batch axis (0)")
    ious = []
    for r, g in zip(ref, got):
        if ref.shape[axis] == 1:
            pairs = [(r > spec["threshold"], g > spec["threshold"])]
        else:
            ra, ga = r.argmax(axis=axis - 1), g.argmax(axis=axis - 1)  # the sample has no batch axis
            pairs = [(ra == c, ga == c) for c in np.union1d(np.unique(ra), np.unique(ga))]
        per = []
        for a, b in pairs:
            union = np.count_nonzero(a | b)
            per.append(1.0 if union == 0 else np.count_nonzero(a & b) / union)
        ious.append(float(np.mean(per)))
    return float(np.mean(ious))


def kind_metrics(ref: Any, got: Any, spec: Mapping[str, Any],
                 partner: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """The metrics of what an output means (``by_kind``) and the whole-tensor metrics of each declared slice
    (``slices``: cosine, SQNR, and ``collapsed``: why a slice carries nothing, e.g. every class score 0).

    ``partner``: (reference, candidate) of an SSD-style detection's ``scores_output``."""
    r = np.asarray(ref, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64).reshape(r.shape)
    kind = spec["kind"]
    by: dict[str, Any] = {"kind": kind}
    slices: dict[str, Any] = {}
    where: dict[str, str] = {}
    if not np.isfinite(g).all():
        return {"by_kind": by, "slices": slices}  # degenerate: judged as such
    if spec["kind"] in ("classification", "sequence", "segmentation") and not -r.ndim < spec["axis"] < r.ndim:
        raise ValueError(f"class axis {spec['axis']} is outside the output's shape {list(r.shape)}")
    if kind in ("classification", "sequence"):
        axis = spec["axis"] % r.ndim
        if axis == 0:
            raise ValueError("the class axis cannot be the batch axis (0)")
        by["agreement"] = class_agreement(r, g, axis)
        if kind == "sequence" and spec["blank"] is not None:
            same = [a == b for a, b in zip(ctc_decode(r, axis, int(spec["blank"])), ctc_decode(g, axis, int(spec["blank"])))]
            by["string_agreement"] = float(np.mean(same))
    elif kind == "detection":
        if spec["layout"] == "ssd":
            if partner is None:
                raise ValueError(f"an ssd-layout detection needs its scores_output {spec['scores_output']!r}")
            pr = np.asarray(partner[0], dtype=np.float64)
            pg = np.asarray(partner[1], dtype=np.float64).reshape(pr.shape)
            ref_parts = {"boxes": r.reshape(r.shape[0], -1, 4), "scores": pr.reshape(pr.shape[0], -1, pr.shape[-1])}
            got_parts = {"boxes": g.reshape(g.shape[0], -1, 4), "scores": pg.reshape(pg.shape[0], -1, pg.shape[-1])}
            where = {"boxes": "the whole output", "scores": f"output {spec['scores_output']!r}"}
        else:
            ref_parts, got_parts = _split_yolo(r, spec), _split_yolo(g, spec)
            where = _slice_names(spec, r.shape)
        by.update(match_detections(ref_parts, got_parts, spec))
        for name in ref_parts:
            slices[name] = {**_slice_metrics(ref_parts[name], got_parts[name]), "where": where[name]}
    elif kind == "segmentation":
        by["mask_iou"] = mask_iou(r, g, spec)
    return {"by_kind": by, "slices": slices}
