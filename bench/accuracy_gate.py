"""What the accuracy gate says about a target's good INT8 artifact and deliberately broken copies of it.

Scores the target's static INT8 QDQ model and broken variants (weights zeroed, outputs constant / all zero / NaN /
sign-flipped / scaled) on the project's validation set with the build-time gate's own code
(``evaluate.evaluate_artifact`` + ``evaluate.gate_failures``), and prints one row each: worst-head metrics, the
new verdict, and what the old gate (top-1 drop only, argmax ties counted as agreement) would have said.
Asserts nothing; needs a finished `doit build target=<target>` of the project:

    nice .venv/bin/python bench/accuracy_gate.py [--root PATH] [--target rpi5]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def old_gate_passes(ref_path: Path, model: Path, input_name: str, classification: list[str], limit: float) -> bool:
    """The gate before docs/accuracy.md: plain argmax agreement (a tie is index 0), nothing else gated."""
    import numpy as np

    from dmsbuild.convert.evaluate import run_onnx

    ref = np.load(ref_path)
    outs = run_onnx(model, input_name, ref["inputs"], classification)
    return all(1.0 - float(np.mean(ref[h].reshape(len(ref[h]), -1).argmax(1) == outs[h].reshape(len(outs[h]), -1).argmax(1)))
               <= limit + 1e-9 for h in classification)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO)
    ap.add_argument("--target", default="rpi5")
    args = ap.parse_args()

    from dmsbuild.core.accuracy import floors_for
    from dmsbuild.config import load_project, load_target
    from dmsbuild.convert.evaluate import evaluate_artifact, gate_failures
    from dmsbuild.tasks.build import Paths, sources_for
    from tests.broken_models import break_outputs, zero_weights

    proj, prof = load_project(args.root), load_target(args.root, args.target)
    paths = Paths.of(proj)
    qdq = sources_for(proj, prof).get("int8-qdq")
    if qdq is None or not qdq.is_file() or not paths.validation.is_file():
        print(f"target {prof.name}: no built int8-qdq artifact or validation reference; run `doit build target={prof.name}` first",
              file=sys.stderr)
        return 2
    floors = floors_for(proj, prof).default
    print(f"target {prof.name}: {qdq.name}; floors: top-1 drop <= {floors.max_accuracy_drop.value:.0%}, "
          f"cosine >= {floors.min_cosine.value:g}, SQNR >= {floors.min_sqnr_db.value:g} dB\n")
    variants = {
        "good (as built)": lambda s, d: shutil.copyfile(s, d),
        "weights zeroed": zero_weights,
        "outputs constant (0.5)": lambda s, d: break_outputs(s, d, scale=0.0, shift=0.5),
        "outputs all zero": lambda s, d: break_outputs(s, d, scale=0.0),
        "outputs NaN": lambda s, d: break_outputs(s, d, scale=float("nan")),
        "outputs sign-flipped": lambda s, d: break_outputs(s, d, scale=-1.0),
        "outputs x0.5": lambda s, d: break_outputs(s, d, scale=0.5),
        "outputs x0.1": lambda s, d: break_outputs(s, d, scale=0.1),
    }
    print("| variant | top-1 agreement (min head) | cosine (min head) | SQNR dB (min head) | degenerate heads | new gate | old gate (top-1 only) |")
    print("|---|---:|---:|---:|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in variants.items():
            path = Path(tmp) / "variant.onnx"
            make(qdq, path)
            result = evaluate_artifact(proj, path, paths.validation, Path(tmp) / "eval.json")
            heads = result["heads"].values()
            cos = [h["cosine"] for h in heads if h["cosine"] is not None]
            sq = [h["sqnr_db"] for h in heads if h["sqnr_db"] is not None]
            degenerate = [h for h, m in result["heads"].items() if m["degenerate"]]
            failures = gate_failures(proj, prof, result)
            old = old_gate_passes(paths.validation, path, proj.input.name, proj.outputs.classification,
                                  floors.max_accuracy_drop.value)
            top = result["min_top1_agreement"]
            print(f"| {name} | {'n/a' if top is None else f'{top:.1%}'} | {f'{min(cos):.4f}' if cos else 'n/a'} | "
                  f"{f'{min(sq):.1f}' if sq else 'n/a'} | {', '.join(degenerate) or '-'} | "
                  f"{'pass' if not failures else 'FAIL: ' + failures[0]} | {'pass' if old else 'FAIL'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
