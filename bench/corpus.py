"""The conformance corpus table (issue 14, item 8): prints a Markdown table, asserts nothing.

For each model of tests/corpus.py (seeded random weights, 32x32 inputs, no downloads): `doit --continue build`
for local, rpi5, qcs8255 and orin in a temporary project, then

- targets built (or the first line of why a target stopped),
- INT8 agreement and cosine: the local target's int8-qdq artifact vs FP32 on the 6 validation samples
  (dmsbuild's own evaluation, build.json),
- QNN nodes on HTP: the qcs8255 context binary's placement report (compiled here with onnxruntime-qnn),
- local FP32 / INT8 latency: ONNX Runtime CPU on this machine, batch 1, 1 thread, median of --iterations runs
  after 10 warm-up runs, FP32 and INT8 measured interleaved in the same run.

Random-init models make agreement look better or worse than a trained model would (DESIGN.md §5): the
agreement column says whether the pipeline works, not how accurate a real model would be.

    nice .venv/bin/python bench/corpus.py [--iterations 200] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def latency_ms(paths: list[Path], input_name: str, shape: list[int], iterations: int) -> list[float | None]:
    """Median latency of each model, measured interleaved (one run of each per round)."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) if p.is_file() else None
                for p in paths]
    x = {input_name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    samples: list[list[float]] = [[] for _ in paths]
    for i in range(10 + iterations):
        for k, s in enumerate(sessions):
            if s is None:
                continue
            t0 = time.perf_counter_ns()
            s.run(None, x)
            if i >= 10:
                samples[k].append((time.perf_counter_ns() - t0) / 1e6)
    return [statistics.median(s) if s else None for s in samples]


def row(entry, root: Path, run, iterations: int) -> dict:
    from tests.corpus import build_outcome

    outcome = build_outcome(root, run)
    built = [t for t, v in outcome.items() if v == "ok"]
    stops = {t: v.replace(str(root) + "/", "") for t, v in outcome.items() if v != "ok"}
    r = {"model": entry.name, "opset": entry.opset, "note": entry.note, "built": built, "stops": stops,
         "traceback": "Traceback" in run.output}
    # the local target's INT8 artifact; rpi5's (same static settings) when local stopped
    for build in (root / "artifacts" / "local" / "build.json", root / "artifacts" / "rpi5" / "build.json"):
        if not build.is_file():
            continue
        doc = json.loads(build.read_text())
        qdq = next((a for a in doc["artifacts"] if a["precision"] == "int8-qdq"), None)
        if qdq:
            r["agreement_from"] = doc["target"]
            heads = qdq["eval"]["heads"]
            r["agreement"] = qdq["eval"]["min_top1_agreement"]
            r["cosine"] = min(h["cosine"] for h in heads.values())
            break
    placements = sorted((root / "artifacts").glob("qcs8255/**/*.placement.json"))
    if placements:
        p = json.loads(placements[0].read_text())
        r["htp"] = f"{p['qnn_nodes']}/{p['total_nodes']}"
    common = root / "artifacts" / "common"
    qdq_files = sorted(common.glob("int8-qdq-*.onnx"))
    if (common / "fp32.onnx").is_file() and entry.expect == "build":
        from dmsbuild.config import load_project
        from dmsbuild.tasks.build import _qdq_key

        proj = load_project(root)
        local_qdq = common / f"int8-qdq-{_qdq_key(proj, None)}.onnx"
        fp32, int8 = latency_ms([common / "fp32.onnx", local_qdq if local_qdq.is_file() else (qdq_files or [local_qdq])[0]],
                                proj.input.name, list(proj.input.shape), iterations)
        r["fp32_ms"], r["int8_ms"] = fp32, int8
    return r


def fmt(rows: list[dict]) -> str:
    def num(v, f):
        return "–" if v is None else format(v, f)

    lines = ["| model | opset | targets built | INT8 agreement | cosine (min head) | QNN nodes on HTP | "
             "local FP32 ms | local INT8 ms | INT8 speed-up |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        built = ", ".join(r["built"]) or "none"
        fp32, int8 = r.get("fp32_ms"), r.get("int8_ms")
        agree = r.get("agreement")
        lines.append(
            f"| {r['model']} | {r['opset']} | {built} | {'–' if agree is None else f'{100 * agree:.0f}%'}"
            f"{' (rpi5)' if r.get('agreement_from') == 'rpi5' else ''} | "
            f"{num(r.get('cosine'), '.4f')} | {r.get('htp', '–')} | {num(fp32, '.3f')} | {num(int8, '.3f')} | "
            f"{'–' if not fp32 or not int8 else f'{fp32 / int8:.2f}x'} |")
    notes = []
    for r in rows:
        for t, why in r["stops"].items():
            notes.append(f"- {r['model']} / {t}: {why}")
        if r["traceback"]:
            notes.append(f"- {r['model']}: TRACEBACK (a bug)")
    return "\n".join(lines) + ("\n\nWhere a target stopped, its one line:\n\n" + "\n".join(notes) if notes else "") + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--only", nargs="*", default=[])
    args = ap.parse_args()
    from tests.corpus import ENTRIES, make_project
    from tests.tinyproject import run_doit

    rows = []
    with tempfile.TemporaryDirectory(prefix="dmsbuild-corpus-") as tmp:
        for entry in ENTRIES:
            if args.only and entry.name not in args.only:
                continue
            started = time.perf_counter()
            root = make_project(entry, Path(tmp) / entry.name)
            run = run_doit(root, "--continue", "build")
            rows.append(row(entry, root, run, args.iterations))
            print(f"{entry.name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    import onnxruntime

    print(f"Corpus: {len(rows)} models, seeded random weights, 32x32 inputs; latency: ONNX Runtime "
          f"{onnxruntime.__version__} CPU on this machine, 1 thread, median of {args.iterations} (interleaved)\n")
    print(fmt(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
