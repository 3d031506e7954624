"""The benchmark report: artifacts/report/index.html (self-contained) and report.md.

Filled from the results store only: the latest run of every (board, target,
artifact) makes the tables; every stored run makes the history. Strings a
board sent (hostname, OS, errors, even artifact names) are escaped before
they reach HTML or Markdown. matplotlib is imported only while plotting.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from .board_state import conditions
from ..core.provenance import energy_source, label, model_label
from ..core.results import ResultStore
from ..untrusted import md_text

PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8-qdq": 2, "int8-dynamic": 3}
EMPTY_TEXT = "No benchmark results yet. Run `doit deploy target=<name>` or `doit bench target=<name>` first."


@dataclass
class Table:
    title: str
    note: str
    header: list[str]
    rows: list[list[Any]]
    #: HTML id (the browser test finds the tables by it)
    id: str = ""
    #: shown folded (HTML <details>): the details a reader asks for, not the figures they came for
    collapsed: bool = False


class Abbr(str):
    """A shortened identifier: the short text in the cell, the ``full`` one on hover (HTML title) and in the
    details table."""

    full: str

    def __new__(cls, text: str, full: str) -> "Abbr":
        obj = super().__new__(cls, text)
        obj.full = full
        return obj


def _abbr(text: str, limit: int) -> str:
    return text if len(text) <= limit else Abbr(text[: limit - 1] + "…", text)


@dataclass
class Plot:
    title: str
    name: str  # file stem
    png: bytes


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def _key(row: dict) -> tuple:
    return (row["board"], row["target"], PRECISION_ORDER.get(row["precision"], 9), row["artifact"])


@dataclass
class BoardReleases:
    """What the rollout reports say about one (board, target): the release ``current`` on it and the releases
    that were rolled back from it (a release that failed its health gate, or one ``doit rollback`` left)."""

    current: str | None = None
    rolled_back: set[str] | None = None
    #: measure's verdict on the newest benchmarked deploy or bench of this board (``measure/verdict.Verdict.as_json``
    #: as the rollout report carries it in ``details["verdict"]``), with that report's release id; read, never re-judged
    verdict: dict | None = None


def board_releases(artifacts: Path) -> dict[tuple[str, str], BoardReleases]:
    """(board, target) -> ``BoardReleases`` from ``artifacts/<target>/rollouts/*.json``, oldest report first.

    A deploy that left a board ``done``/``current`` (or ``unhealthy`` and kept) makes its release current;
    an unhealthy board with ``rolled_back_to`` and a ``doit rollback`` (``from_release`` -> ``to_release``)
    make the older release current and mark the newer one rolled back. An unreadable report is skipped
    (the report then shows the newest runs, as without reports)."""
    reports = []
    for path in sorted(Path(artifacts).glob("*/rollouts/*.json")):
        try:
            data = json.loads(path.read_text())
            written = path.stat().st_mtime_ns
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("boards"), list):
            reports.append((str(data.get("started_at") or ""), written, data))
    # started_at has whole seconds: two rollouts in one second are ordered by when their report was written
    # (by file name they would be ordered by release hash)
    reports.sort(key=lambda r: r[:2])
    out: dict[tuple[str, str], BoardReleases] = {}
    for _, _, data in reports:
        target, release = str(data.get("target") or ""), data.get("release_id")
        for b in data["boards"]:
            if not isinstance(b, dict) or not b.get("name"):
                continue
            st = out.setdefault((b["name"], target), BoardReleases(rolled_back=set()))
            details = b.get("details") or {}
            if isinstance(details.get("verdict"), dict):
                st.verdict = {**details["verdict"], "release_id": details["verdict"].get("release_id") or release}
            if release == "rollback":  # fleet.rollback's report: details name both releases
                if b.get("status") == "done" and details.get("to_release"):
                    st.rolled_back.add(str(details.get("from_release")))
                    st.current = str(details["to_release"])
            elif b.get("status") in ("done", "current"):
                st.current = release
                st.rolled_back.discard(release)  # deployed again since
            elif b.get("status") == "unhealthy":
                if details.get("rolled_back_to"):
                    st.rolled_back.add(release)
                    st.current = str(details["rolled_back_to"])
                else:
                    st.current = release
    return out


def latest_rows(rows: Sequence[dict], releases: dict[tuple[str, str], BoardReleases] | None = None) -> list[dict]:
    """The newest stored run of every (board, target, artifact) of the release current on the board.

    Where the rollout reports name the board's current release, only that release's runs count, so a
    release that failed its gate and was rolled back never stands as the board's figures; elsewhere (no
    report: ``doit bench`` on a hand-deployed board) the newest run of each artifact counts."""
    releases = releases or {}
    latest: dict[tuple, dict] = {}
    for r in rows:  # insertion order: later wins
        current = (releases.get((r["board"], r["target"])) or BoardReleases()).current
        if current is None or r["release_id"] == current:
            latest[(r["board"], r["target"], r["artifact"])] = r
    return sorted(latest.values(), key=_key)


def rolled_back_rows(rows: Sequence[dict], releases: dict[tuple[str, str], BoardReleases]) -> list[dict]:
    """The newest run of every artifact of each release that was rolled back from its board."""
    out: dict[tuple, dict] = {}
    for r in rows:
        st = releases.get((r["board"], r["target"]))
        if st and st.rolled_back and r["release_id"] in st.rolled_back and r["release_id"] != st.current:
            out[(r["board"], r["target"], r["release_id"], r["artifact"])] = r
    return sorted(out.values(), key=_key)


def _fmt(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _sig(value: float | None) -> str:
    """Three significant digits: abs diffs range from 1e-7 (FP16) to 1 (a broken EP)."""
    return "–" if value is None else f"{value:.3g}"


@dataclass
class Baseline:
    """The row a speed-up is measured against, and the words that name it in every table."""

    row: dict
    name: str  # short, for the speed-up's column
    full: str  # long, for the details table and the note


def _usable(r: dict) -> bool:
    return r["error"] is None and bool(r.get("median_ms"))


def baseline_for(r: dict, latest: Sequence[dict], rows: Sequence[dict]) -> Baseline | None:
    """What ``r``'s speed-up is against, in this order (the first that exists; same model content always):

    1. the FP32 artifact (``fp32``) of the same board, target and release — not any fp32-precision
       artifact: a ``tuned`` fp32 artifact is a candidate, not the baseline;
    2. the FP32 artifact measured on the same board under another target (newest run): ONNX Runtime FP32
       on the board's CPU, the baseline of targets that ship no FP32 artifact (orin, qcs8255), so the
       accelerator's gain shows;
    3. the FP16 artifact of the same board, target and release (TensorRT FP16 on a Jetson);
    None where none exists (the report then says how to get one).
    """
    same = [b for b in latest if b["board"] == r["board"] and b["target"] == r["target"]
            and b["release_id"] == r["release_id"] and _usable(b) and b.get("model_sha256") == r.get("model_sha256")]
    fp32 = [b for b in same if b["artifact"] == "fp32" and b["precision"] == "fp32"]
    if fp32:
        return Baseline(fp32[-1], "fp32", f"FP32 artifact, same release {r['release_id']}")
    other = [b for b in rows if b["board"] == r["board"] and b["target"] != r["target"] and b["artifact"] == "fp32"
             and b["precision"] == "fp32" and _usable(b) and b.get("model_sha256") == r.get("model_sha256")]
    if other:
        b = other[-1]
        return Baseline(b, f"fp32 CPU ({b['target']})",
                        f"FP32 artifact on this board's {b.get('provider') or 'CPU'}, target {b['target']}, "
                        f"release {b['release_id']}")
    fp16 = [b for b in same if b["artifact"] == "fp16" and b["precision"] == "fp16"]
    if fp16:
        return Baseline(fp16[-1], "fp16", f"FP16 artifact ({fp16[-1]['runtime']}), same release {r['release_id']}")
    return None


def speedup(r: dict, base: Baseline | None) -> tuple[float | None, str]:
    """(ratio, text): baseline median / this median; text marks SLOWER, generated figures and the baseline."""
    if base is None:
        return None, "– no baseline"
    if base.row is r or (base.row["artifact"] == r["artifact"] and base.row["release_id"] == r["release_id"]
                         and base.row["target"] == r["target"]):
        return 1.0, "baseline"
    ratio = base.row["median_ms"] / r["median_ms"]
    text = f"{ratio:.2f}x" + (" SLOWER" if ratio < 1.0 else "")
    sides = {(s or "").partition("+")[0] for s in (r.get("source"), base.row.get("source"))}  # "+route" aside
    if "double" in sides:
        text += " (generated)"
    elif "simulator" in sides:  # the HTP simulator's time is not the NPU's: never read as the board's gain
        text += " (simulator)"
    return ratio, text


def _board(r: dict) -> str:
    return r["board"] + (" (emulated)" if (r.get("facts") or {}).get("emulated") else "")


def _model(r: dict) -> str:
    """The model a row measured: file and content hash (``provenance.model_label``)."""
    return model_label({"file": r.get("model_file"), "sha256": r.get("model_sha256")})


def _source(r: dict) -> str:
    return label(r.get("source"))


BASELINE_NOTE = ("Speed-up = the baseline's median / this median, the baseline named beside it: the FP32 artifact "
                 "of the same release and board; where the target ships none (orin, qcs8255), ONNX Runtime FP32 "
                 "measured on the same board's CPU under another target; else the release's FP16 artifact. "
                 "A ratio involving a test double's figure is marked (generated), one involving the QNN HTP "
                 "simulator's figure (simulator). '– no baseline': the board has none of "
                 "these; add fp32 to the target's precisions.")


def name_runtimes(rows: list[dict]) -> list[dict]:
    """Mark the rows of every target whose artifacts ran on more than one runtime (an onnxruntime target's
    ``[backend] tflite``, coral's Edge TPU model beside its CPU .tflite): the report names their runtime, as one
    target may ship an ONNX and a .tflite file of one precision."""
    runtimes: dict[str, set] = {}
    for r in rows:
        runtimes.setdefault(r["target"], set()).add(r.get("runtime"))
    for r in rows:
        if len(runtimes[r["target"]]) > 1:
            r["runtime_named"] = True
    return rows


def _artifact(r: dict) -> str:
    said = [] if r["artifact"] == r["precision"] else [r["precision"]]
    if r.get("runtime_named") and r.get("runtime"):
        said.append(str(r["runtime"]))
    return r["artifact"] + (f" ({', '.join(said)})" if said else "")


def _release(r: dict, releases: dict[tuple[str, str], BoardReleases], short: bool = True) -> str:
    st = releases.get((r["board"], r["target"])) or BoardReleases()
    rid = r["release_id"]
    text = _abbr(rid, 9) if short else rid
    if st.rolled_back and rid in st.rolled_back and rid != st.current:
        return Abbr(f"{text} (rolled back)", f"{rid}: rolled back from the board") if short else f"{rid} (rolled back)"
    return text


def summary_table(latest: list[dict], rows: Sequence[dict], releases: dict[tuple[str, str], BoardReleases]) -> Table:
    """Per board and target, first in the report: what ships, and the fastest shipped artifact's figures."""
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in latest:
        by[(r["target"], r["board"])].append(r)
    out = []
    for (target, board), rs in sorted(by.items()):
        ok = [r for r in rs if _usable(r)]
        ships = ", ".join(r["artifact"] for r in rs)
        if not ok:
            out.append([target, _abbr(_board(rs[0]), 24), "none ran", "–", "–", "–", "–", "–", _abbr(ships, 32),
                        _release(rs[0], releases)])
            continue
        best = min(ok, key=lambda r: r["median_ms"])
        base = baseline_for(best, latest, rows)
        _ratio, text = speedup(best, base)
        agr = best.get("min_top1_agreement")
        out.append([target, _abbr(_board(best), 24), _abbr(_artifact(best), 24), _fmt(best["median_ms"], 3), text,
                    base.name if base else "–", _fmt((1 - agr) * 100 if agr is not None else None, 1, " pts"),
                    _fmt(best["size"] / 1e6 if best.get("size") else None, 2), _abbr(ships, 32),
                    _release(best, releases)])
    return Table("Per target: what ships and how fast",
                 "The release current on each board (rollout reports; else the newest run), the artifacts it ships, "
                 "and its fastest artifact: median latency, speed-up against the named baseline, accuracy drop "
                 "(100% - worst head's top-1 agreement with the host's FP32) and size shipped. " + BASELINE_NOTE,
                 ["target", "board", "fastest", "median ms", "speed-up", "vs", "accuracy drop", "size MB", "ships",
                  "release"], out, id="summary")


def _with_speedups(latest: list[dict], rows: Sequence[dict] | None) -> Iterator[tuple[dict, Any, str]]:
    """Each measured row of the latest runs with its baseline (None: none) and its speed-up text."""
    rows = latest if rows is None else rows
    for r in latest:
        if r["error"] is not None:
            continue
        base = baseline_for(r, latest, rows) if r.get("median_ms") else None
        _ratio, text = speedup(r, base) if r.get("median_ms") else (None, "–")
        yield r, base, text


def latency_table(latest: list[dict], rows: Sequence[dict] | None = None,
                  releases: dict[tuple[str, str], BoardReleases] | None = None) -> Table:
    """The figures a reader came for, in view at 1400 px: identifiers shortened (full on hover and in
    ``latency_details_table``), then median, p95, speed-up and what it is against."""
    releases = releases or {}
    out = []
    for r, base, text in _with_speedups(latest, rows):
        out.append([_abbr(_board(r), 28), r["target"], _abbr(_artifact(r), 28), _fmt(r["median_ms"], 3),
                    _fmt(r["p95_ms"], 3), text, base.name if base else "–", _fmt(r["throughput_ips"], 1),
                    _release(r, releases), label(r.get("source"), short=True)])
    return Table(
        "Latency per board, target and artifact",
        "Latest run per board and artifact of the release current on the board; batch 1; ms from perf_counter_ns "
        "around session.run after a separate warm-up. INT8 is not always faster: read the speed-up. "
        + BASELINE_NOTE + " Model, provider, p99, load time, memory, energy and the board's conditions: the "
        "details table below.",
        ["board", "target", "artifact", "median ms", "p95 ms", "speed-up", "vs", "FPS", "release", "source"],
        out, id="latency")


def latency_details_table(latest: list[dict], rows: Sequence[dict] | None = None,
                          releases: dict[tuple[str, str], BoardReleases] | None = None) -> Table:
    """Every identifier in full and every figure of the latest runs (folded in the HTML report)."""
    releases = releases or {}
    out = []
    for r, base, text in _with_speedups(latest, rows):
        out.append([_board(r), r["target"], _model(r), _release(r, releases, short=False), r["artifact"],
                    r["precision"], r["provider"], _source(r), _fmt(r["median_ms"], 3), _fmt(r["p95_ms"], 3),
                    _fmt(r["p99_ms"], 3), _fmt(r["std_ms"], 3), _fmt(r["throughput_ips"], 1), text,
                    base.full if base else "–", _fmt(r["load_ms"], 1), _fmt(r["first_inference_ms"], 2),
                    _fmt(r["peak_rss_mb"], 1), _energy(r), conditions(r.get("state"))])
    return Table(
        "Latency details: identifiers, statistics, memory, energy and conditions",
        "Every figure of the latency table with its identifiers in full. The source column says where each figure "
        "came from: a board (measured by the runner, trtexec or the SNPE tools), onnxruntime-qnn's HTP simulator, "
        "an emulated board (an sshd on the dev machine: its CPU, not the board's), or a test double (generated, "
        "not measured). Conditions: the board's state during the run (power mode, clocks, temperature, "
        "throttling, load, power); energy per inference is the board's mean power during the run x the mean "
        "latency, where the board reports its rails.",
        ["board", "target", "model", "release", "artifact", "precision", "provider", "source", "median ms", "p95 ms",
         "p99 ms", "std ms", "FPS", "speed-up", "baseline", "load ms", "first run ms", "peak RSS MB", "energy mJ",
         "conditions"],
        out, id="latency-details", collapsed=True)


def rolled_back_table(gone: list[dict]) -> Table:
    """Releases rolled back from their boards: their figures, marked, apart from what the boards run."""
    out = [[_board(r), r["target"], f"{r['release_id']} (rolled back)", r["artifact"], _source(r),
            _fmt(r["median_ms"], 3), _fmt(r["p95_ms"], 3), r["error"] or "–"] for r in gone]
    return Table("Rolled-back releases (not on the board)",
                 "The newest runs of releases that failed their health gate or were left by `doit rollback`; the "
                 "boards run the release named in the tables above.",
                 ["board", "target", "release", "artifact", "source", "median ms", "p95 ms", "error"], out,
                 id="rolled-back")


def verdict_table(releases: dict[tuple[str, str], BoardReleases]) -> Table:
    """Measure's verdict on each board's newest benchmarked release, as the rollout report recorded it: its
    pass/fail, its one-line reason and how many of each check passed. The figures are in the tables above;
    nothing here judges them again (``measure/verdict.py``: the verdict is the single source)."""
    out = []
    for (board, target), st in sorted(releases.items()):
        v = st.verdict
        if not v:
            continue
        tally: dict[str, list[int]] = {}
        for c in v.get("checks") or []:
            n = tally.setdefault(str(c.get("name")), [0, 0])
            n[0] += bool(c.get("ok") is True)
            n[1] += 1
        checks = ", ".join(f"{name} {ok}/{total}" for name, (ok, total) in tally.items()) or "–"
        out.append([board, target, str(v.get("release_id") or "–"), "passed" if v.get("ok") is True else "FAILED",
                    _abbr(str(v.get("reason") or "–"), 100), checks])
    return Table("Health-gate verdicts",
                 "Measure's one verdict on the newest benchmarked deploy or bench of each board (the rollout report's "
                 "`details.verdict`): what the rollout's health gate read. Checks passed / judged, by kind.",
                 ["board", "target", "release", "verdict", "reason", "checks passed"], out, id="verdicts")


def _energy(r: dict) -> str:
    """Energy per inference, marked when the power figure came from a test double of tegrastats."""
    source = r.get("energy_source") or energy_source(r, r.get("state"))  # stores from before energy_source
    return _fmt(r.get("energy_mj"), 2) + (" (generated)" if source == "double" else "")


def profile_table(latest: list[dict]) -> Table:
    """The vendors' own profilers: trtexec per-layer times, throughput and warnings; SNPE throughput."""
    rows = []
    for r in latest:
        p = r.get("profile")
        if r["error"] is not None or not p:
            continue
        layers = p.get("layers") or []
        top = "; ".join(f"{l['name']} {l['average_ms']:.3f} ms ({l['percentage']:.0f}%)" for l in layers[:3])
        tp = p.get("throughput_qps") if p.get("throughput_qps") is not None else p.get("throughput_ips")
        rows.append([_board(r), r["target"], r["artifact"], _source(r), p.get("throughput_tool") or p.get("tool"),
                     _fmt(tp, 1), "; ".join(p.get("warnings") or []) or p.get("throughput_note") or "–",
                     top or p.get("note") or "–"])
    return Table("Vendor profilers: per-layer times, throughput and warnings",
                 "trtexec's own throughput and stability warnings and its --exportProfile top layers (average ms, "
                 "share of the run); SNPE throughput from snpe-throughput-net-run (snpe-diagview keeps per-layer "
                 "detail; DSP/HTP layer times are in cycles). Figures from test doubles are generated.",
                 ["board", "target", "artifact", "source", "tool", "vendor throughput /s", "warnings",
                  "top layers"], rows)


def size_table(latest: list[dict]) -> Table:
    seen: dict[tuple, dict] = {}
    for r in latest:
        if r["size"] is not None:
            seen.setdefault((r["target"], r["artifact"]), r)
    fp32 = {t: r["size"] for (t, a), r in seen.items() if a == "fp32" and r["precision"] == "fp32"}
    rows = []
    for (target, artifact), r in sorted(seen.items(), key=lambda kv: (kv[0][0], PRECISION_ORDER.get(kv[1]["precision"], 9))):
        ratio = fp32[target] / r["size"] if target in fp32 and r["size"] else None
        rows.append([target, _model(r), artifact, r["precision"], _fmt(r["size"] / 1e6, 2), _fmt(ratio, 2, "x")])
    return Table("Model size per precision",
                 "Size shipped to the board (with a QNN context's .bin). Compression ratio: FP32 size / this artifact's "
                 "size, same target; – where the target ships no FP32 artifact. TensorRT targets ship ONNX (FP32 for "
                 "fp16, QDQ for int8) and build the engine on the board, so their sizes are the ONNX's, not the engine's.",
                 ["target", "model", "artifact", "precision", "size MB", "compression"], rows)


def accuracy_table(latest: list[dict]) -> Table:
    rows = []
    for r in latest:
        v = r.get("verify")
        if r["error"] is not None or not v:
            continue
        heads = v["heads"].values()
        agr = v.get("min_top1_agreement")
        psnrs = [h["psnr_db"] for h in heads if h.get("psnr_db") is not None]
        sqnrs = [h["sqnr_db"] for h in heads if h.get("sqnr_db") is not None]
        exact = all(h.get("psnr_db") is None for h in heads)
        broken = [f"{name}: {h['degenerate']}" for name, h in v["heads"].items() if h.get("degenerate")]
        rows.append([_board(r), r["target"], _model(r), r["artifact"], r["precision"], _source(r), v["samples"],
                     _fmt(agr * 100 if agr is not None else None, 1, "%"),
                     _fmt((1 - agr) * 100 if agr is not None else None, 1, " pts"),
                     _fmt(r["min_cosine"], 5),
                     "identical" if exact else _fmt(min(sqnrs) if sqnrs else None, 1, " dB"),
                     _sig(max((h["max_abs_diff"] for h in heads if h.get("max_abs_diff") is not None), default=None)),
                     "identical" if exact else _fmt(min(psnrs) if psnrs else None, 1, " dB"),
                     "; ".join(broken) or "–"])
    return Table(
        "Accuracy loss per precision (output check on the board)",
        "Board outputs vs the host's FP32 reference on the shipped validation inputs; worst head shown. "
        "Loss = 100% - top-1 agreement on classification heads; cosine is the mean per-sample cosine; "
        "degenerate: outputs that are NaN/Inf, all zero or the same for every sample (docs/accuracy.md).",
        ["board", "target", "model", "artifact", "precision", "source", "samples", "top-1 agreement", "loss",
         "min cosine", "min SQNR", "max abs diff", "min PSNR", "degenerate"],
        rows,
    )


def output_names(artifacts: Path | None) -> dict[str, dict[str, tuple[str, str]]]:
    """{target: {head id: (tensor name, kind)}} from each target's build.json (``outputs.keys`` / ``kinds``): the
    board reports heads under their safe ids; the report shows the names the user gave them."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    if artifacts is None or not artifacts.is_dir():
        return out
    for build in sorted(artifacts.glob("*/build.json")):
        try:
            outputs = json.loads(build.read_text()).get("outputs") or {}
        except (OSError, ValueError):
            continue
        keys = outputs.get("keys") or {}
        kinds = outputs.get("kinds") or {}
        classification = set(outputs.get("classification") or [])
        out[build.parent.name] = {
            str(key): (str(name), str((kinds.get(name) or {}).get("kind")
                                      or ("classification" if name in classification else "regression")))
            for name, key in keys.items()}
    return out


def _kind_cell(by_kind: dict) -> str:
    """The head's own metric by its kind (docs/accuracy.md "Outputs by kind")."""
    kind = by_kind.get("kind")

    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    if kind == "classification":
        return f"top-1 agreement {pct(by_kind.get('agreement'))}"
    if kind == "sequence":
        text = f"per-step agreement {pct(by_kind.get('agreement'))}"
        return text + (f", strings {pct(by_kind['string_agreement'])}" if by_kind.get("string_agreement") is not None else "")
    if kind == "detection":
        return (f"recall {pct(by_kind.get('recall'))}, precision {pct(by_kind.get('precision'))}, "
                f"score error {_fmt(by_kind.get('score_error'), 3)}")
    if kind == "segmentation":
        return f"mask IoU {_fmt(by_kind.get('mask_iou'), 3)}"
    return "–"


def heads_table(latest: list[dict], names: dict[str, dict[str, tuple[str, str]]]) -> Table:
    """Every output of every artifact by its own name and kind (issue 24 item 9), and the runs whose output
    check did not run, said as such (never left out)."""
    rows = []
    for r in latest:
        if r["error"] is not None:
            continue
        v = r.get("verify")
        head_names = names.get(r["target"], {})
        if not v or not v.get("heads"):
            rows.append([_board(r), r["target"], _model(r), r["artifact"], "–", "–", "output check did not run",
                         "–", "–", "–"])
            continue
        for key, h in v["heads"].items():
            name, kind = head_names.get(key, (key, (h.get("by_kind") or {}).get("kind") or "?"))
            bad = [f"{s}: collapsed" for s, m in (h.get("slices") or {}).items() if isinstance(m, dict) and m.get("collapsed")]
            if h.get("degenerate"):
                bad.insert(0, str(h["degenerate"]))
            rows.append([_board(r), r["target"], _model(r), r["artifact"], name, kind, _kind_cell(h.get("by_kind") or {}),
                         _fmt(h.get("cosine"), 5), _fmt(h.get("sqnr_db"), 1, " dB"), "; ".join(bad) or "–"])
    return Table(
        "Outputs (output check on the board, per head)",
        "Each output by the tensor name in dmsbuild.toml and the kind it is judged by, against the host's FP32 "
        "reference on the shipped validation inputs: its own metric (classification and sequence agreement, "
        "detections' recall/precision/score error, mask IoU), then cosine and SQNR for every head. 'output check "
        "did not run': the board stored no comparison for that artifact (see the deploy log for why).",
        ["board", "target", "model", "artifact", "output", "kind", "by kind", "cosine", "SQNR", "collapsed / degenerate"],
        rows,
    )


def error_table(latest: list[dict]) -> Table:
    rows = [[_board(r), r["target"], _model(r), r["release_id"], r["artifact"], r["error"]]
            for r in latest if r["error"] is not None]
    return Table("Artifacts that did not run", "The latest run of these artifacts failed on the board.",
                 ["board", "target", "model", "release", "artifact", "error"], rows)


def boards_table(latest: list[dict]) -> Table:
    seen: dict[str, dict] = {}
    for r in latest:
        seen[r["board"]] = r  # the newest facts of each board
    rows = []
    for board, r in sorted(seen.items()):
        f = r.get("facts") or {}
        providers = f.get("onnxruntime_providers") or []
        rows.append([board, r["target"], f.get("hostname"), f.get("arch"), f.get("os"), f.get("kernel"),
                     f.get("python"), f.get("onnxruntime"), ", ".join(str(p) for p in providers) or "–",
                     f.get("cpu_count"), r["created_at"][:19].replace("T", " ")])
    return Table("Boards", "Facts each board reported with its latest run (toolchain versions are in the store).",
                 ["board", "target", "hostname", "arch", "OS", "kernel", "python", "onnxruntime", "providers",
                  "CPUs", "last run (UTC)"], rows)


# --------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _plot_text(text: str) -> str:
    """Board strings in plots: no mathtext ($...$) interpretation."""
    return str(text).replace("$", r"\$")


def _log_if_wide(ax, values: list[float], axis: str) -> None:
    """A log axis when values span more than 10x (INT8-dynamic next to INT8-QDQ)."""
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def make_plots(rows: list[dict], latest: list[dict]) -> list[Plot]:
    """Latency distribution per board and precision, latency vs accuracy, history per board."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: list[Plot] = []
    ok = [r for r in latest if r["error"] is None and r.get("samples")]
    by_board: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by_board[r["board"]].append(r)
    for i, (board, rs) in enumerate(sorted(by_board.items())):
        fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.7 * len(rs)))
        ax.boxplot([r["samples"] for r in rs], orientation="horizontal", whis=(1, 99), showfliers=True,
                   flierprops={"markersize": 2, "alpha": 0.4})
        # never two artifacts under one label: target, artifact, precision, model and source on every row
        labels = [f"{r['target']} · {_artifact(r)}"
                  + f"\n{_model(r)} · {label(r.get('source'), short=True)}" for r in rs]
        ax.set_yticks(range(1, len(rs) + 1), [_plot_text(t) for t in labels], fontsize=7)
        _log_if_wide(ax, [s for r in rs for s in r["samples"]], "x")
        ax.set_xlabel("latency per inference (ms); box: quartiles, whiskers: p1–p99")
        ax.set_title(_plot_text(f"{_board(rs[0])}: latency distribution, latest run per target and artifact"),
                     fontsize=10)
        ax.grid(axis="x", alpha=0.3, which="both")
        plots.append(Plot(f"Latency distribution — {board} (every target, model and source named per row)",
                          f"latency_{i}", _png(fig)))
        plt.close(fig)

    acc = [r for r in ok if r.get("min_top1_agreement") is not None]
    if acc:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        markers = "osD^v<>pP*X"
        def where(r: dict) -> str:  # board, target and source: the same precision on two targets is two points
            return f"{r['board']} · {r['target']} ({label(r.get('source'), short=True)})"

        boards = sorted({where(r) for r in acc})
        precisions = sorted({r["precision"] for r in acc}, key=lambda p: (PRECISION_ORDER.get(p, 9), p))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for r in acc:
            ax.scatter(r["median_ms"], 100 * r["min_top1_agreement"], s=55, alpha=0.85,
                       marker=markers[boards.index(where(r)) % len(markers)],
                       color=colors[precisions.index(r["precision"]) % len(colors)])
        handles = [plt.Line2D([], [], ls="", marker="o", color=colors[i % len(colors)], label=_plot_text(p))
                   for i, p in enumerate(precisions)]
        handles += [plt.Line2D([], [], ls="", marker=markers[i % len(markers)], color="#555", label=_plot_text(b))
                    for i, b in enumerate(boards)]
        ax.legend(handles=handles, fontsize=7, loc="best", title="precision / board · target (source)", title_fontsize=7)
        _log_if_wide(ax, [r["median_ms"] for r in acc], "x")
        ax.set_xlabel("median latency (ms) — lower is better")
        ax.set_ylabel("top-1 agreement with FP32 (%) — higher is better")
        low = min(100 * r["min_top1_agreement"] for r in acc)
        ax.set_ylim(max(0.0, min(low, 99.0) - 1.0), 100.5)  # agreement never exceeds 100 %
        models = sorted({_model(r) for r in acc})
        ax.set_title(_plot_text("Latency against accuracy (latest run per board and artifact)\nmodel: "
                                + "; ".join(models)), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        plots.append(Plot("Latency against accuracy", "latency_vs_accuracy", _png(fig)))
        plt.close(fig)

    # one history plot per (board, target, model): a line never joins two models, targets or boards
    hist: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["error"] is None and r["median_ms"] is not None:
            hist[(r["board"], r["target"], r.get("model_sha256") or "")].append(r)
    for i, ((board, target, _sha), rs) in enumerate(sorted(hist.items())):
        releases: list[str] = []
        for r in rs:
            if r["release_id"] not in releases:
                releases.append(r["release_id"])
        if len(releases) < 2:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        series: dict[str, dict[int, float]] = defaultdict(dict)
        for r in rs:  # the latest run of each release; a line per artifact and source
            series[f"{r['artifact']} ({label(r.get('source'), short=True)})"][releases.index(r["release_id"])] = r["median_ms"]
        for artifact, points in sorted(series.items()):
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker="o", label=_plot_text(artifact))
        _log_if_wide(ax, [v for pts in series.values() for v in pts.values()], "y")
        ax.set_xticks(range(len(releases)), [_plot_text(rid[:8]) for rid in releases], rotation=30, fontsize=7)
        ax.set_xlabel("release (oldest → newest)")
        ax.set_ylabel("median latency (ms)")
        ax.set_title(_plot_text(f"{_board(rs[0])} · target {target}: median latency across releases\n"
                                f"model {_model(rs[0])}"), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        plots.append(Plot(f"History — {board} · {target} · {_model(rs[0])}", f"history_{i}", _png(fig)))
        plt.close(fig)
    return plots


# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------
def _md_cell(value: Any) -> str:
    return md_text(value)  # board text is data: no live link, image, HTML or escape sequence (untrusted.md_text)


def render_markdown(tables: list[Table], plots: list[Plot], generated: str, summary: str) -> str:
    out = ["# dmsbuild benchmark report", "", f"Generated {generated}. {_md_cell(summary)}", ""]
    if not tables:
        out += [EMPTY_TEXT, ""]
    for t in tables:
        if not t.rows:
            continue
        out += [f"## {t.title}", "", t.note, "", "| " + " | ".join(t.header) + " |",
                "|" + "|".join("---" for _ in t.header) + "|"]
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
        out.append("")
    if plots:
        out += ["## Plots", ""]
        out += [f"![{p.title}]({p.name}.png)" for p in plots]
        out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:2px solid #e3e7ee;padding-bottom:.3rem}
p.note{color:#5a6478;font-size:.88rem;margin:.3rem 0 .8rem}.summary{color:#5a6478}
table{border-collapse:collapse;font-size:.84rem;width:100%;margin-bottom:.5rem}
th{background:#f3f5f9;text-align:left;font-weight:600;position:sticky;top:0}
th,td{padding:.35rem .55rem;border-bottom:1px solid #e8ebf1;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}tr:hover td{background:#fafbfd}
td.err{white-space:normal;color:#a3261b}.slow{color:#a3261b;font-weight:600}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem}
figure{margin:0;border:1px solid #e8ebf1;border-radius:6px;padding:.5rem;background:#fff}
figure img{width:100%}figcaption{font-size:.8rem;color:#5a6478}
.empty{padding:2rem;background:#f3f5f9;border-radius:6px;font-size:1.05rem}
.scroll{overflow-x:auto;max-width:100%;margin-bottom:.5rem}.scroll table{width:auto;min-width:100%;margin:0}
details>summary{cursor:pointer}details>summary h2{display:inline-block;border:0}span[title]{text-decoration:underline dotted}
"""


def _is_num(text: str) -> bool:
    t = text.replace(",", "").replace("%", "").replace("x", "").replace(" pts", "").replace(" dB", "").strip()
    try:
        float(t)
    except ValueError:
        return False
    return True


def render_html(tables: list[Table], plots: list[Plot], generated: str, summary: str) -> str:
    e = html.escape
    parts = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content='width=device-width,initial-scale=1'>",
             "<title>dmsbuild benchmark report</title><style>", _CSS, "</style></head><body>",
             "<h1>dmsbuild benchmark report</h1>",
             f"<p class=summary>Generated {e(generated)}. {e(summary)}</p>"]
    if not tables:
        parts.append(f"<div class=empty>{e(EMPTY_TEXT)}</div>")
    for t in tables:
        if not t.rows:
            continue
        numeric = [all(_is_num(str(row[i])) or str(row[i]) == "–" for row in t.rows) for i in range(len(t.header))]
        ident = f" id={e(t.id, quote=True)}" if t.id else ""
        head = f"<h2>{e(t.title)}</h2><p class=note>{e(t.note)}</p>"
        if t.collapsed:  # details on demand: the heading is the <summary> a reader clicks
            head = (f"<details><summary><h2>{e(t.title)}</h2></summary><p class=note>{e(t.note)}</p>")
        parts += [f"{head}<div class=scroll><table{ident}><thead><tr>",
                  "".join(f"<th class=num>{e(h)}</th>" if n else f"<th>{e(h)}</th>" for h, n in zip(t.header, numeric)),
                  "</tr></thead><tbody>"]
        for row in t.rows:
            cells = []
            for h, c in zip(t.header, row):
                text = str(c)
                cls = "err" if h == "error" else ("slow" if "SLOWER" in text else ("num" if _is_num(text) else ""))
                body = (f"<span title='{e(c.full, quote=True)}'>{e(text)}</span>" if isinstance(c, Abbr) else e(text))
                cells.append(f"<td class='{cls}'>{body}</td>" if cls else f"<td>{body}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>" + ("</details>" if t.collapsed else ""))
    if plots:
        parts.append("<h2>Plots</h2><div class=plots>")
        for p in plots:
            data = base64.b64encode(p.png).decode("ascii")
            parts.append(f"<figure><img alt='{e(p.title, quote=True)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{e(p.title)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(store: ResultStore, out_dir: Path, artifacts: Path | None = None) -> tuple[Path, Path]:
    """Write index.html and report.md (+ the PNGs report.md links) under ``out_dir``; an empty store says so.

    ``artifacts`` (default: ``out_dir``'s parent, i.e. ``artifacts/``) holds the rollout reports that say which
    release is current on each board (``board_releases``)."""
    rows = name_runtimes(store.rows())
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    if rows:
        on_board = board_releases(out_dir.parent if artifacts is None else artifacts)
        latest = latest_rows(rows, on_board)
        boards = sorted({r["board"] for r in rows})
        releases = {r["release_id"] for r in rows}
        summary = (f"{len(rows)} stored measurements from {len({r['run_id'] for r in rows})} runs on "
                   f"{len(boards)} board(s) ({', '.join(boards)}), {len(releases)} release(s).")
        tables = [summary_table(latest, rows, on_board), latency_table(latest, rows, on_board),
                  latency_details_table(latest, rows, on_board), rolled_back_table(rolled_back_rows(rows, on_board)),
                  verdict_table(on_board), profile_table(latest), size_table(latest), accuracy_table(latest),
                  heads_table(latest, output_names(out_dir.parent if artifacts is None else artifacts)), error_table(latest),
                  boards_table(latest)]
        plots = make_plots(rows, latest)
    else:
        summary, tables, plots = "The results store is empty.", [], []
    tuned = sorted(t.parent.name for t in (out_dir.parent / "tune").glob("*/report.md"))
    if tuned:  # `doit tune` keeps its own report (Pareto plot, candidates with CIs) beside this one
        summary += " `doit tune` reports: " + ", ".join(f"artifacts/tune/{t}/report.md" for t in tuned) + "."
    for p in plots:
        (out_dir / f"{p.name}.png").write_bytes(p.png)
    html_path, md_path = out_dir / "index.html", out_dir / "report.md"
    html_path.write_text(render_html(tables, plots, generated, summary), encoding="utf-8")
    md_path.write_text(render_markdown(tables, plots, generated, summary), encoding="utf-8")
    return html_path, md_path
