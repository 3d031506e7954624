"""Does QAT matter? (issue 12) Prints tables, asserts nothing.

On the reference model (models/dms_reference.pt) with a quantization scheme where post-training INT8
fails a strict accuracy gate, compare per head, on the validation set (ORT CPU on this machine):
FP32, PTQ (ONNX Runtime static QDQ), QAT (dmsbuild.convert.qat: distillation from FP32 with fake quantization
of the same scheme) and pruned + QAT. Also prints training time and the size / MACs / latency of
pruned + QAT against FP32 (latency: ORT CPU, batch 1, 2 threads, median of interleaved runs).

The default scheme is per-tensor symmetric int8 (weights and activations: what TensorRT's explicit
quantization takes, without per-channel weight scales); `--scheme` picks others. The gate is the project's
per-head gate (dmsbuild/core/accuracy.py: degenerate check, top-1 agreement drop, mean per-sample cosine, SQNR)
with the floors given here (default: a 1-point agreement drop, cosine 0.95, SQNR 12 dB). Runs in a temporary
folder (the synthetic training images are cached in artifacts/common/qat-data/); the defaults are the run
whose tables are in docs/qat.md:

    nice .venv/bin/python bench/bench_qat.py
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCHEMES = {
    "pertensor-sym": dict(activation_type="QInt8", weight_type="QInt8", per_channel=False, symmetric_activations=True),
    "trt": dict(activation_type="QInt8", weight_type="QInt8", per_channel=True, symmetric_activations=True,
                calibration_method="Percentile"),
    "qnn-u8": dict(activation_type="QUInt8", weight_type="QUInt8", per_channel=True, fixed_shape=True),
}


def _short(failure: str) -> str:
    """"head 'yawn': top-1 agreement with FP32 is 98.4% over ..." -> "yawn agreement" (a table cell)."""
    head = failure.split("'")[1]
    for words, short in (("top-1 agreement", "agreement"), ("labelled accuracy", "labelled acc"), ("cosine", "cosine"),
                         ("SQNR", "SQNR"), ("degenerate", "degenerate")):
        if words in failure:
            return f"{head} {short}"
    return failure


def latency(paths: dict[str, Path], input_name: str, sample, rounds: int = 5, runs: int = 20) -> dict[str, float]:
    """Median ms per artifact, rounds interleaved so machine load hits every artifact alike."""
    from dmsbuild.convert.qat import onnx_latency_ms

    samples: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for k, p in paths.items():
            samples[k].append(onnx_latency_ms(p, input_name, sample, runs=runs))
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scheme", choices=sorted(SCHEMES), default="pertensor-sym")
    ap.add_argument("--gate", type=float, default=0.01, help="max top-1 agreement drop (0.01 = 1 point)")
    ap.add_argument("--min-cosine", type=float, default=0.95)
    ap.add_argument("--min-sqnr-db", type=float, default=12.0)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--samples", type=int, default=128, help="synthetic training images")
    ap.add_argument("--prune", type=float, default=0.25)
    ap.add_argument("--prune-steps", type=int, default=3000)
    ap.add_argument("--prune-lr", type=float, default=1e-3)
    ap.add_argument("--prune-samples", type=int, default=2048,
                    help="synthetic training images of the pruned model's fine-tune and QAT; "
                         "recovering removed channels needs more than QAT's nudge (docs/qat.md)")
    ap.add_argument("--round-to", type=int, default=16,
                    help="channel multiple kept by pruning (16: ONNX Runtime's block, what a target with runtime "
                         "onnxruntime resolves prune.round_to = 0 to; 1: no rounding)")
    ap.add_argument("--workdir", help="keep the models here (default: a temporary folder)")
    ap.add_argument("--evaluate-only", action="store_true", help="skip training: print the table for a kept --workdir")
    args = ap.parse_args()

    import os

    import numpy as np

    from dmsbuild.core.accuracy import AccuracyFloors, failures
    from dmsbuild.config import PruneConfig, QATConfig, StaticQuantConfig, load_project
    from dmsbuild.convert.data import list_samples, load_samples
    from dmsbuild.convert.evaluate import evaluate_artifact, write_reference
    from dmsbuild.convert.export import export_model
    from dmsbuild.convert.qat import report_path, run_qat, tuned_fp32_path
    from dmsbuild.convert.quantize import quantize_static_qdq

    proj = load_project(REPO)
    load_start = os.getloadavg()
    started = time.perf_counter()
    floors = AccuracyFloors.uniform(args.gate, args.min_cosine, args.min_sqnr_db, source="bench")
    with tempfile.TemporaryDirectory(prefix="bench-qat-") as tmpdir:
        work = Path(args.workdir) if args.workdir else Path(tmpdir)
        work.mkdir(parents=True, exist_ok=True)
        fp32 = work / "fp32.onnx"
        val = list_samples(proj, "validation", proj.data.max_validation_samples)
        cal = list_samples(proj, "calibration", proj.data.max_calibration_samples)
        full = work / "validation.npz"
        scheme = StaticQuantConfig(**SCHEMES[args.scheme])
        qat_cfg = QATConfig(steps=args.steps, batch=args.batch, lr=args.lr, data="synthetic", max_samples=args.samples)
        rows: dict[str, Path] = {"FP32": fp32, "PTQ": work / "ptq.onnx", "QAT": work / "qat.onnx"}
        pq = work / "prune-qat.onnx"
        ptq_s = None
        if not args.evaluate_only:  # train (what a kept --workdir lacks); else only re-evaluate it
            if not fp32.is_file():
                export_model(proj, fp32, work / "fp32.json")
            if not full.is_file():
                write_reference(proj, fp32, val, work / "reference.npz", full)
            if not rows["PTQ"].is_file():
                t0 = time.perf_counter()
                quantize_static_qdq(proj, fp32, rows["PTQ"], scheme, cal)
                ptq_s = time.perf_counter() - t0
            if not rows["QAT"].is_file():
                run_qat(proj, fp32, rows["QAT"], dataclasses.replace(scheme, method="qat", qat=qat_cfg), cal)
            if args.prune > 0 and not pq.is_file():
                prune_qat = dataclasses.replace(qat_cfg, max_samples=args.prune_samples or args.samples)
                cfg = dataclasses.replace(scheme, method="qat", qat=prune_qat,
                                          prune=PruneConfig(fraction=args.prune, steps=args.prune_steps, lr=args.prune_lr,
                                                           round_to=args.round_to))
                run_qat(proj, fp32, pq, cfg, cal)
        elif not full.is_file():
            write_reference(proj, fp32, val, work / "reference.npz", full)
        if pq.is_file():
            rows[f"pruned {args.prune:.0%} FP32"] = tuned_fp32_path(pq)
            rows[f"pruned {args.prune:.0%} + QAT"] = pq
        rows = {k: v for k, v in rows.items() if v.is_file()}
        reports = {k: json.loads(report_path(p).read_text()) for k, p in rows.items() if report_path(p).is_file()}
        if "pruned+QAT" not in reports and pq.is_file():
            reports["pruned+QAT"] = reports.pop(f"pruned {args.prune:.0%} + QAT")

        evals = {k: evaluate_artifact(proj, p, full, work / "eval" / f"{p.stem}.json") for k, p in rows.items()}
        _, x = load_samples(val[:1], proj, 1)
        lat = latency(rows, proj.input.name, x[:1].astype(np.float32))

        heads = list(proj.outputs.names)
        print(f"\n### Reference model, scheme {args.scheme} ({json.dumps(SCHEMES[args.scheme])}), "
              f"{evals['FP32']['samples']} validation samples; gate: top-1 drop <= {args.gate:.0%}, "
              f"cosine >= {args.min_cosine}, SQNR >= {args.min_sqnr_db} dB per head\n")
        print("Per head: top-1 agreement with FP32 (labelled accuracy) / mean per-sample cosine / SQNR dB; "
              "head_pose: cosine / SQNR (label MAE).\n")
        print("| model | " + " | ".join(heads) + " | size MB | latency ms (emulated: this machine's CPU) | gate |")
        print("|---|" + "---|" * len(heads) + "---:|---:|---|")
        for k, ev in evals.items():
            cells = []
            for h in heads:
                m = ev["heads"][h]
                lab = m.get("labelled", {})
                sq = "inf" if m["sqnr_db"] is None else f"{m['sqnr_db']:.1f}"
                if m.get("top1_agreement") is not None:  # None on regression heads (runner/metrics.py)
                    cells.append(f"{100 * m['top1_agreement']:.1f}% ({100 * lab.get('accuracy', float('nan')):.1f}%) "
                                 f"/ {m['cosine']:.4f} / {sq}")
                else:
                    cells.append(f"{m['cosine']:.4f} / {sq} ({lab.get('mae', float('nan')):.4f})")
            fails = failures(ev["heads"], floors, ev["samples"])
            gate = "—" if k == "FP32" else ("pass" if not fails else "FAIL: " + ", ".join(_short(f) for f in fails))
            print(f"| {k} | " + " | ".join(cells) + f" | {rows[k].stat().st_size / 1e6:.2f} | {lat[k]:.2f} | {gate} |")
        print(("" if ptq_s is None else f"\nPTQ took {ptq_s:.0f} s. ") + "QAT training: " + "; ".join(
            f"{k}: {r['qat']['seconds']:.0f} s for {r['qat']['steps']} steps ({r['seconds']:.0f} s with export and QDQ)"
            for k, r in reports.items()))
        pr = reports.get("pruned+QAT", {}).get("prune")
        if pr:
            print(f"Pruning {pr['fraction']:.0%} ({reports['pruned+QAT']['data']}; channels in multiples of {pr['round_to']}: {pr['convs_aligned']} of "
                  f"{pr['convs']} convolutions aligned; {pr['batchnorm_recalibrated']} BatchNorm layers re-estimated): MACs {pr['macs_before'] / 1e6:.1f} M -> {pr['macs_after'] / 1e6:.1f} M "
                  f"({pr['macs_after'] / pr['macs_before']:.2f}x), params {pr['params_before'] / 1e6:.2f} M -> "
                  f"{pr['params_after'] / 1e6:.2f} M, fine-tune {pr['fine_tune_seconds']:.0f} s for {pr['fine_tune_steps']} steps")
            fp = rows["FP32"]
            pq = rows[f"pruned {args.prune:.0%} + QAT"]
            pf = rows[f"pruned {args.prune:.0%} FP32"]
            print(f"pruned FP32 vs FP32: size {pf.stat().st_size / fp.stat().st_size:.2f}x, latency "
                  f"{lat[f'pruned {args.prune:.0%} FP32'] / lat['FP32']:.2f}x; pruned+QAT vs FP32: size "
                  f"{pq.stat().st_size / fp.stat().st_size:.2f}x, latency {lat[f'pruned {args.prune:.0%} + QAT'] / lat['FP32']:.2f}x "
                  "(emulated: this machine's CPU, ONNX Runtime CPU, batch 1, 2 threads, median of 5 interleaved rounds of 20)")
        print(f"Source: measured on this machine (x86_64 host CPU, ONNX Runtime CPU); not a board. Bench wall time "
              f"{time.perf_counter() - started:.0f} s; load average (1/5/15 min) at start "
              f"{'/'.join(f'{v:.1f}' for v in load_start)}, at end {'/'.join(f'{v:.1f}' for v in os.getloadavg())} "
              f"on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
