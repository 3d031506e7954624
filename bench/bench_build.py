"""Benchmark of the host build (issue 2): prints tables, asserts nothing.

1. cold build time per stage for the project's model (the reference model by default), run in-process;
2. a cold `doit build` of the ONNX Runtime targets, then the no-op `doit build`, median of 5 (goal < 0.5 s);
3. per precision on this machine (ORT CPU, batch 1, 2 threads): size, median/p95 latency,
   speed-up vs FP32 measured in the same run, accuracy vs FP32 on the validation set.

Runs on a temporary copy of the project (its config, targets, checkpoint and data), so the
repository's own artifacts are untouched:

    nice .venv/bin/python bench/bench_build.py [--root PATH] [--iterations 100]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def copy_project(src: Path, dst: Path) -> None:
    from dmsbuild.config import load_project

    proj = load_project(src)
    for rel in ["dmsbuild.toml", "targets"]:
        s = src / rel
        (shutil.copytree if s.is_dir() else shutil.copy2)(s, dst / rel)
    for rel in [proj.model.checkpoint, proj.model.onnx, proj.data.calibration, proj.data.validation, proj.data.labels]:
        if rel is None or Path(rel).is_absolute():
            continue
        s, d = src / rel, dst / rel
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        elif s.is_file():
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)


def doit(root: Path, *args: str) -> tuple[float, int, str, float]:
    """Run doit on ``root``: wall seconds, exit code, output, CPU seconds (user+sys; robust to a busy machine)."""
    import resource

    env = {**os.environ, "DMSBUILD_ROOT": str(root), "PYTHONWARNINGS": "ignore"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "-d", str(root), *args],
                          cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, proc.returncode, proc.stdout + proc.stderr, cpu


def stage_times(root: Path) -> tuple[list[tuple[str, float]], dict[str, Path], dict[str, dict], tuple[str, list[int]]]:
    """Each build stage of the reference model, cold, in one process (torch import counted separately)."""
    import contextlib
    import io

    from dmsbuild.config import load_project, load_target, static_quant_for, target_names
    from dmsbuild.convert.data import list_samples
    from dmsbuild.convert.quantize import settings_key

    proj = load_project(root)
    out = root / "artifacts" / "stages"
    rows: list[tuple[str, float]] = []

    def timed(label: str, fn, *args) -> None:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            fn(*args)
        rows.append((label, time.perf_counter() - started))

    timed("import torch", __import__, "torch")
    timed("import onnx + onnxruntime", lambda: (__import__("onnx"), __import__("onnxruntime")))
    from dmsbuild.convert import evaluate, export, quantize

    fp32 = out / "fp32.onnx"
    timed(f"export ({proj.export.exporter}, opset {proj.export.opset})", export.export_model, proj, fp32, out / "fp32.json")
    timed("fp16 conversion", quantize.convert_fp16, fp32, out / "fp16.onnx")
    timed("int8 dynamic", quantize.quantize_dynamic_int8, fp32, out / "int8-dynamic.onnx", proj.quantization.dynamic)
    calibration = list_samples(proj, "calibration", proj.data.max_calibration_samples)
    variants = {}
    for name in target_names(root):
        prof = load_target(root, name)
        if "int8-qdq" in prof.precisions:
            cfg = static_quant_for(proj, prof)
            variants.setdefault(settings_key(cfg, proj.data.max_calibration_samples), (cfg, []))[1].append(name)
    qdq_files = {}
    for key, (cfg, names) in variants.items():
        path = out / f"int8-qdq-{key}.onnx"
        label = (f"int8 static QDQ for {','.join(names)} ({len(calibration)} samples, {cfg.calibration_method}, "
                 f"{cfg.activation_type}{' sym' if cfg.symmetric_activations else ''}{' fixed' if cfg.fixed_shape else ''})")
        timed(label, quantize.quantize_static_qdq, proj, fp32, path, cfg, calibration)
        qdq_files[f"int8-qdq ({','.join(names)})"] = path
    validation = list_samples(proj, "validation", proj.data.max_validation_samples)
    timed(f"reference outputs ({len(validation)} validation samples)", evaluate.write_reference, proj, fp32, validation,
          out / "reference.npz", out / "validation.npz")
    files = {"fp32": fp32, "fp16": out / "fp16.onnx", "int8-dynamic": out / "int8-dynamic.onnx", **qdq_files}
    evals = {}
    for label, path in files.items():
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            evals[label] = evaluate.evaluate_artifact(proj, path, out / "validation.npz", out / f"{path.stem}.eval.json")
        rows.append((f"evaluate {label}", time.perf_counter() - started))
    return rows, files, evals, (proj.input.name, list(proj.input.shape))


def latency(path: Path, input_name: str, shape: list[int], warmup: int, iterations: int) -> list[float]:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {input_name: x})
    samples = []
    for _ in range(iterations):
        t = time.perf_counter_ns()
        sess.run(None, {input_name: x})
        samples.append((time.perf_counter_ns() - t) / 1e6)
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO, help="project to benchmark (default: this repository)")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the temporary project copy")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dmsbuild-bench-"))
    try:
        copy_project(args.root.resolve(), tmp)
        from dmsbuild.backends import REGISTRY
        from dmsbuild.config import load_target, target_names

        buildable = [n for n in target_names(tmp) if load_target(tmp, n).runtime in REGISTRY]
        sel = f"target={','.join(buildable)}"

        print("## 1. Cold build per stage (in-process)\n")
        rows, files, evals, (name, shape) = stage_times(tmp)
        print("| stage | seconds |\n|---|---:|")
        for label, sec in rows:
            print(f"| {label} | {sec:.2f} |")
        print(f"| **total** | {sum(s for _, s in rows):.2f} |\n")

        print(f"## 2. doit build ({sel})\n")
        cold, rc, out, cold_cpu = doit(tmp, "build", sel)
        noop, noop_cpu = [], []
        for _ in range(5):
            sec, _rc, out2, cpu = doit(tmp, "build", sel)
            noop.append(sec)
            noop_cpu.append(cpu)
            executed = [ln for ln in out2.splitlines() if ln.startswith(".  ")]
            if executed:
                print(f"warning: the no-op run executed {executed}")
        every = [doit(tmp, "--continue", "build") for _ in range(5)]
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
        print("| run | wall s | CPU s |\n|---|---:|---:|")
        print(f"| cold `doit build {sel}` (rc {rc}) | {cold:.2f} | {cold_cpu:.2f} |")
        print(f"| no-op `doit build {sel}`, median of 5 | {statistics.median(noop):.3f} | {statistics.median(noop_cpu):.3f} |")
        missing = [n for n in target_names(tmp) if n not in buildable]
        why = f"; {', '.join(missing)}: no backend here, fail at once" if missing else ""
        print(f"| no-op `doit --continue build` (all {len(target_names(tmp))} targets, rc {every[0][1]}{why}), median of 5 | "
              f"{statistics.median(e[0] for e in every):.3f} | {statistics.median(e[3] for e in every):.3f} |")
        print("| goal for no-op | 0.500 | |\n")
        if rc != 0:
            print("(cold build failed; its tail:)\n```\n" + out[-1500:] + "\n```\n")

        print(f"## 3. Per precision, ORT CPU, batch 1, 2 threads, {args.warmup} warm-up + {args.iterations} timed runs\n")
        fp32_size = files["fp32"].stat().st_size
        lat = {k: latency(p, name, shape, args.warmup, args.iterations) for k, p in files.items()}
        base = statistics.median(lat["fp32"])
        print("| artifact | size MB | FP32/size | median ms | p95 ms | speed-up vs FP32 | min top-1 agreement | min cosine | labelled acc loss |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k, p in files.items():
            s = sorted(lat[k])
            med = statistics.median(s)
            p95 = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
            ev = evals[k]
            heads = ev["heads"].values()
            loss = [h["labelled_fp32"]["accuracy"] - h["labelled"]["accuracy"] for h in heads if "accuracy" in h.get("labelled", {})]
            speed = base / med
            note = " (SLOWER)" if speed < 1 else ""
            agree = ev["min_top1_agreement"]
            print(f"| {k} | {p.stat().st_size / 1e6:.2f} | {fp32_size / p.stat().st_size:.2f}x | {med:.2f} | {p95:.2f} | "
                  f"{speed:.2f}x{note} | {'n/a' if agree is None else f'{100 * agree:.1f}%'} | "
                  f"{min(h['cosine'] for h in heads):.5f} | {'n/a' if not loss else f'{100 * sum(loss) / len(loss):+.1f} pts'} |")
        print(f"\n({ev['samples']} validation samples; load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
