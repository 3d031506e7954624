"""Accuracy-aware mixed precision on corpus models whose INT8 build stops at the accuracy gate (issue 16, item 3).

For each (corpus model, target) pair: a temporary project (tests/corpus.py: seeded random weights, 32x32 inputs,
4 calibration and 6 validation images), `doit build target=T` (the INT8 artifact fails the gate), then
dmsbuild.convert.mixed_precision's search (rank with ORT's qdq_loss_debug, measure the top nodes on the real gate,
build the candidate float sets smallest first), the passing set pasted into the target profile as
`nodes_to_exclude`, and `doit build target=T` again. Prints a Markdown table: per-head metrics of the fully
quantized and the mixed artifact (the build's own host evaluation), the nodes kept in float, sizes, and host
latency (ONNX Runtime CPU on this machine, batch 1, 1 thread, median, FP32 / INT8 / mixed measured interleaved
in one loop: bench/corpus.py's latency_ms). Asserts nothing.

    nice .venv/bin/python bench/bench_mixed_precision.py [--iterations 300] [--measure 8] [--only resnet18-like:orin ...]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: corpus pairs whose INT8 artifact stops at the gate (docs/byom.md's corpus table)
PAIRS = ("resnet18-like:orin", "dynamic-hw:orin", "vit-tiny:rpi5")


def _latency_ms():
    """bench/corpus.py's interleaved latency loop (one implementation)."""
    spec = importlib.util.spec_from_file_location("bench_corpus", REPO / "bench" / "corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.latency_ms


def _qdq_entry(root: Path, target: str) -> dict | None:
    build = root / "artifacts" / target / "build.json"
    if not build.is_file():
        return None
    return next((a for a in json.loads(build.read_text())["artifacts"] if a["precision"] == "int8-qdq"), None)


def _heads(result: dict) -> str:
    parts = []
    for head, m in result["heads"].items():
        top1 = "" if m.get("top1_agreement") is None else f", top-1 {100 * m['top1_agreement']:.0f}%"
        sqnr = "identical" if m.get("sqnr_db") is None else f"{m['sqnr_db']:.1f} dB"
        parts.append(f"{head}: cos {m['cosine']:.4f}, SQNR {sqnr}{top1}")
    return "; ".join(parts)


def run_pair(name: str, target: str, tmp: Path, measure: int, iterations: int) -> dict:
    from dmsbuild.config import load_project, load_target
    from dmsbuild.convert.data import list_samples
    from dmsbuild.convert.evaluate import evaluate_artifact
    from dmsbuild.convert.mixed_precision import (effect_of, exclude_line, fallback_candidates, find_passing, measure_nodes,
                                          rank_nodes)
    from dmsbuild.tasks.build import Paths, _qdq_key
    from tests.corpus import ENTRIES, make_project
    from tests.tinyproject import run_doit

    entry = next(e for e in ENTRIES if e.name == name)
    root = make_project(entry, tmp / f"{name}-{target}")
    started = time.perf_counter()
    first = run_doit(root, "build", f"target={target}")
    proj, prof = load_project(root), load_target(root, target)
    paths = Paths.of(proj)
    qdq = paths.qdq(_qdq_key(proj, prof))
    row: dict = {"model": name, "target": target, "first_rc": first.rc,
                 "first_failure": (first.failure(f"build:{target}").splitlines() or ["-"])[0]}
    before = evaluate_artifact(proj, qdq, paths.validation, tmp / f"{name}-{target}-before.json")
    row["before"] = _heads(before)
    row["before_passed"] = effect_of(proj, prof, before).passed
    calibration = list_samples(proj, "calibration", proj.data.max_calibration_samples)
    work = tmp / f"{name}-{target}-work"
    work.mkdir()
    ranked = rank_nodes(proj, prof, paths.fp32, qdq, calibration)
    ranked = measure_nodes(proj, prof, paths.fp32, ranked, calibration, work, measure)
    result = find_passing(proj, prof, paths.fp32, fallback_candidates(ranked), calibration, work)
    row["search_s"] = time.perf_counter() - started
    row["message"] = result.message
    row["fp32_size"] = paths.fp32.stat().st_size
    row["int8_size"] = qdq.stat().st_size
    if result.passing is None:
        return row
    row["nodes"] = sorted(result.passing.nodes)
    profile_path = root / "targets" / f"{target}.toml"
    text = profile_path.read_text()
    if "[quantization]" in text:
        text = text.replace("[quantization]\n", "[quantization]\n" + exclude_line(result.passing.nodes) + "\n", 1)
    else:
        text += "\n[quantization]\n" + exclude_line(result.passing.nodes) + "\n"
    profile_path.write_text(text)
    second = run_doit(root, "build", f"target={target}")
    row["second_rc"] = second.rc
    row["second_failure"] = (second.failure(f"build:{target}").splitlines() or [""])[0]
    shipped = _qdq_entry(root, target)
    if shipped is not None:
        row["after"] = _heads(shipped["eval"])
        row["mixed_size"] = shipped["size"]
        row["recorded_nodes"] = shipped["quantization"]["nodes_to_exclude"]
        mixed = paths.qdq(_qdq_key(load_project(root), load_target(root, target)))
        fp32_ms, int8_ms, mixed_ms = _latency_ms()([paths.fp32, qdq, mixed], proj.input.name,
                                                    list(proj.input.shape), iterations)
        row.update(fp32_ms=fp32_ms, int8_ms=int8_ms, mixed_ms=mixed_ms)
    return row


def fmt(rows: list[dict], iterations: int) -> str:
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    lines = ["| model / target | fully INT8 (host eval, 6 samples) | gate | nodes kept in float | mixed (host eval) | "
             "gate | size FP32 / INT8 / mixed KB | host ms FP32 / INT8 / mixed | mixed vs FP32 | search s |",
             "|---|---|---|---|---|---|---|---|---:|---:|"]
    for r in rows:
        nodes = ", ".join(f"`{n}`" for n in r.get("nodes", [])) or "none passes"
        second = "–" if "second_rc" not in r else ("pass" if r["second_rc"] == 0 else "FAIL")
        sizes = (f"{r['fp32_size'] / 1e3:.0f} / {r['int8_size'] / 1e3:.0f} / "
                 f"{r['mixed_size'] / 1e3:.0f}" if "mixed_size" in r else f"{r['fp32_size'] / 1e3:.0f} / {r['int8_size'] / 1e3:.0f} / –")
        speed = "–" if not r.get("mixed_ms") else f"{r['fp32_ms'] / r['mixed_ms']:.2f}x"
        lines.append(f"| {r['model']} / {r['target']} | {r['before']} | {'pass' if r['before_passed'] else 'FAIL'} | "
                     f"{nodes} | {r.get('after', '–')} | {second} | {sizes} | "
                     f"{ms(r.get('fp32_ms'))} / {ms(r.get('int8_ms'))} / {ms(r.get('mixed_ms'))} | {speed} | {r['search_s']:.0f} |")
    lines += ["", "The build's first line before, and the search's verdict:", ""]
    for r in rows:
        lines.append(f"- {r['model']} / {r['target']}: before: {r['first_failure']}")
        lines.append(f"  search: {r['message']}"
                     + (f"; rebuilt with nodes_to_exclude: {'passes the gate' if r.get('second_rc') == 0 else r.get('second_failure')}"
                        if "second_rc" in r else ""))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--measure", type=int, default=8, help="nodes measured on the real gate (0: all)")
    ap.add_argument("--only", nargs="*", default=[], help="model:target pairs")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dmsbuild-mp-bench-") as tmp:
        for pair in args.only or PAIRS:
            name, _, target = pair.partition(":")
            started = time.perf_counter()
            rows.append(run_pair(name, target, Path(tmp), args.measure, args.iterations))
            print(f"{pair}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    import onnxruntime

    print(f"Mixed precision on corpus models (seeded random weights, 32x32, 4 calibration / 6 validation images); "
          f"latency: ONNX Runtime {onnxruntime.__version__} CPU on this machine (an emulated board's CPU, not the "
          f"target's), 1 thread, median of {args.iterations}, FP32 / INT8 / mixed interleaved\n")
    print(fmt(rows, args.iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
