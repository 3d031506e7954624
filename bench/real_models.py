#!/usr/bin/env python3
"""The real-model corpus table of docs/byom.md (issue 24 item 8): prints a Markdown table, asserts nothing.

For each trained model of tests/real_models.py (shipped inside a pinned PyPI wheel; scripts/model_corpus.py
extracts them): a project with the repository's images (8 calibration, 20 validation) and its four target
profiles, ``doit init``, the settings a user checks after init (input size, preprocessing, each output's kind),
then ``doit --continue build`` for local, rpi5, qcs8255 (a real QNN HTP context binary, onnxruntime-qnn's
simulator) and orin (the ONNX files the board's trtexec builds engines from). Reported per model: opset and
dynamic dims of the shipped file, each output's declared kind (and init's guess where it differed), the targets
built (else the first line of why each stopped), the local target's artifacts judged against FP32 by kind on the
20 validation samples (dmsbuild's own evaluation), and the QNN nodes placed on the HTP.

No timings: nothing here is a performance figure.

    PYTHONPATH=. nice .venv/bin/python bench/real_models.py [--only NAME ...] [--docs]   # --docs: rewrite docs/byom.md's table
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- bench/real_models.py: begin -->", "<!-- bench/real_models.py: end -->"
SHORT = {"int8-dynamic": "INT8 dynamic", "int8-qdq": "INT8 QDQ", "fp16": "FP16"}


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def head_cell(head: dict) -> str:
    k = head.get("by_kind") or {}
    kind = k.get("kind")
    if kind == "classification":
        return f"agree {pct(k.get('agreement'))}"
    if kind == "sequence":
        return f"step {pct(k.get('agreement'))}, strings {pct(k.get('string_agreement'))}"
    if kind == "detection":
        return f"R {pct(k.get('recall'))} P {pct(k.get('precision'))} err {k.get('score_error', 0):.3f}"
    if kind == "segmentation":
        return f"IoU {k.get('mask_iou', float('nan')):.3f}"
    cos = head.get("cosine")
    return "cos –" if cos is None else f"cos {cos:.4f}"


def row(entry, root: Path, init, run) -> dict:
    from tests.corpus import build_outcome
    from tests.real_models import artifact_verdicts, model_facts

    facts = model_facts(entry)
    r = {"model": entry.name, "package": f"{entry.package} {entry.version}", "note": entry.note, **facts,
         "traceback": "Traceback" in init.output + (run.output if run else "")}
    if init.rc != 0:
        line = next((ln for ln in init.output.splitlines() if ln.startswith("doit init:")), init.output.strip()[-200:])
        r.update(built=[], stops={"all": line}, kinds={}, verdicts={})
        return r
    text = (root / "dmsbuild.toml").read_text()
    guesses = json.loads(text.rsplit("# init guessed the kinds: ", 1)[1].splitlines()[0])
    from dmsbuild.config import load_project

    proj = load_project(root)
    r["shape"] = list(proj.input.shape)
    r["kinds"] = {n: (proj.outputs.kinds[n].kind if n in proj.outputs.kinds else "regression", guesses.get(n))
                  for n in proj.outputs.names}
    outcome = build_outcome(root, run)
    r["built"] = [t for t, v in outcome.items() if v == "ok"]
    r["stops"] = {t: v.replace(str(root) + "/", "") for t, v in outcome.items() if v != "ok"}
    r["verdicts"] = artifact_verdicts(root, "local")
    placements = sorted((root / "artifacts").glob("qcs8255/**/*.placement.json"))
    if placements:
        p = json.loads(placements[0].read_text())
        r["htp"] = f"{p['qnn_nodes']}/{p['total_nodes']}"
    return r


def fmt(rows: list[dict]) -> str:
    lines = ["| model | source (PyPI wheel) | opset | dynamic dims (built at) | outputs: kind | targets built | "
             "FP16 | INT8 dynamic | INT8 QDQ | QNN nodes on HTP |",
             "|---|---|---:|---|---|---|---|---|---|---:|"]
    for r in rows:
        kinds = "; ".join(f"`{n}`: {k}" + (f" (init: {g})" if g and g != k else "")
                          for n, (k, g) in r["kinds"].items()) or "–"
        dyn = ", ".join(r["dynamic"]) or "none"
        if r.get("shape") and r["dynamic"]:
            dyn += f" ({'x'.join(str(d) for d in r['shape'])})"
        cells = []
        for art in ("fp16", "int8-dynamic", "int8-qdq"):
            v = r["verdicts"].get(art)
            if not v:
                cells.append("–")
                continue
            heads = "; ".join(head_cell(h) for h in v["heads"].values())
            cells.append(f"{'pass' if v['verdict'] == 'pass' else '**FAIL**'}: {heads}")
        built = ", ".join(r["built"]) or "none"
        lines.append(f"| {r['model']} | {r['package']} | {r['opset'] or '– (PyTorch)'} | {dyn} | {kinds} | {built} | "
                     + " | ".join(cells) + f" | {r.get('htp', '–')} |")
    notes = []
    for r in rows:
        for t, why in r["stops"].items():
            notes.append(f"- {r['model']} / {t}: {why}")
        for art, v in r["verdicts"].items():
            for line in v["failures"]:
                notes.append(f"- {r['model']} / local / {art}: {line}")
        if r["traceback"]:
            notes.append(f"- {r['model']}: TRACEBACK (a bug)")
    return "\n".join(lines) + ("\n\nWhere a target stopped, and each local gate failure, in one line:\n\n"
                               + "\n".join(notes) if notes else "") + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--docs", action="store_true", help="replace the table in docs/byom.md")
    args = ap.parse_args()
    from tests.real_models import ENTRIES, available, init_project
    from tests.tinyproject import run_doit

    missing = available()
    if missing:
        sys.exit(missing)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dmsbuild-real-") as tmp:
        for entry in ENTRIES:
            if args.only and entry.name not in args.only:
                continue
            started = time.perf_counter()
            root, init = init_project(entry, Path(tmp) / entry.name)
            run = run_doit(root, "--continue", "build") if init.rc == 0 else None
            rows.append(row(entry, root, init, run))
            print(f"{entry.name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    import onnxruntime

    table = (f"Real-model corpus: {len(rows)} trained models from PyPI wheels; accuracy: the local target's artifacts "
             f"vs FP32 on 20 validation images of data/validation, ONNX Runtime {onnxruntime.__version__} CPU "
             f"(dmsbuild's evaluation, by each output's kind)\n\n" + fmt(rows))
    print(table)
    if args.docs:
        doc = REPO / "docs" / "byom.md"
        text = doc.read_text()
        a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
        doc.write_text(text[:a] + "\n\n" + table + "\n" + text[b:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
