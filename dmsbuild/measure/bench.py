"""Run a release's benchmark on boards, bring the results home, store them and apply the gates.

The runner (runner/dms_bench.py) is already inside the release on the board;
this module only runs it through a ``Transport`` (argument lists) and reads
its stdout. It never writes to the board, so a crashed or failed benchmark
leaves the board's release exactly as it was.
"""
from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from . import board_state
from ..board.runner import dms_bench
from ..core import runtimes
from ..errors import UserError, first_line
from .gates import GateFailure, check_gates
from ..core.provenance import label, stamp_sources
from ..core.results import ResultError, ResultStore, load_json, parse_document
from ..transport.base import Transport

if TYPE_CHECKING:
    from ..core.accuracy import AccuracyFloors
    from ..config import ConfirmConfig, ProjectConfig, TargetProfile

RUNNER = "runner/dms_bench.py"
#: one board's whole benchmark (every artifact) must finish within this (s)
DEFAULT_TIMEOUT = 1800.0
FACTS_TIMEOUT = 120.0
ORT_HINT = "pip install onnxruntime"
EXIT_ALL_FAILED, EXIT_MISSING_DEPENDENCY = 5, 3  # runner exit codes (1: Python crashed)


class BenchError(UserError):
    """The benchmark could not run on a board (the board keeps its release)."""


def _runner(release_dir: str) -> str:
    return posixpath.join(release_dir, RUNNER)


def probe_facts(transport: Transport, release_dir: str, python: str = "python3", timeout: float = FACTS_TIMEOUT) -> dict:
    """The board's facts (CONTRACTS §4) from the one board probe (board/runner/probe.py, sent as source: the
    same code as the deploy's facts and the runner's ``--facts``), run in ``release_dir``'s deploy root."""
    from ..ship.facts import FACTS_SCRIPT

    res = transport.run([python, "-c", FACTS_SCRIPT, release_dir], timeout=timeout)
    if res.exit_status == 127:
        raise BenchError(f"board {transport.name}: {python} not found on the board; the benchmark cannot run",
                         hint="install Python 3 on the board, or set the board's python in the inventory")
    if not res.ok:
        raise BenchError(
            f"board {transport.name}: reading the board's facts failed (exit {res.exit_status}) with {python}\n"
            + res.stderr_tail(),
            hint="run the board probe there: python3 dmsbuild/board/runner/probe.py <release dir>",
        )
    facts = load_json(res.stdout, board=transport.name, what="facts JSON")
    if not isinstance(facts, dict):
        raise ResultError(f"board {transport.name}: facts JSON is not an object; nothing was stored")
    return facts


def require_onnxruntime(facts: dict, *, board: str, python: str) -> None:
    """Refuse up front (before any run) when the board's facts say onnxruntime is missing."""
    version = facts.get("onnxruntime")
    if version is None or str(version).startswith("broken"):
        state = "not installed" if version is None else str(version)
        raise BenchError(
            f"board {board}: onnxruntime is {state} for {python} (board facts); the benchmark cannot run",
            hint=f"on the board: {python} -m {ORT_HINT} (onnxruntime-qnn for QNN targets), then `doit bench`",
        )


def benchmark_release(transport: Transport, release_dir: str, python: str = "python3", artifact: str | None = None,
                      timeout: float = DEFAULT_TIMEOUT, facts: dict | None = None) -> dict:
    """Run the release's runner on the board; returns the validated results document (CONTRACTS §3).

    ``facts`` (from the deploy step) skips the probe. Raises ``BenchError``
    with the runner's stderr tail when it crashes, and ``ResultError`` when
    its output is not a valid document.
    """
    board = transport.name
    if facts is None:
        facts = probe_facts(transport, release_dir, python)
    manifest = _remote_manifest(transport, release_dir)
    entries = [a for a in manifest.get("artifacts", []) if isinstance(a, dict)
               and (artifact is None or a.get("name") == artifact)]
    driven = [a for a in entries if a.get("runtime") in HOST_DRIVEN]
    # an emulated board asks only the state tools of the kind its release's runtimes make it (each runtime's Backend.state_tools)
    tools = board_state.state_tools(facts, {str(a.get("runtime")) for a in entries})
    state: dict = {"before": board_state.snapshot(transport, python, tools)}
    sampler = board_state.Sampler(transport, python, _state_log(release_dir), tools)
    sampler.start()
    try:
        if driven:
            doc = _bench_host_driven(transport, release_dir, manifest, entries, driven, python=python,
                                     artifact=artifact, timeout=timeout, facts=facts)
        else:
            doc = _run_runner(transport, release_dir, python, artifact, timeout, facts,
                              needs_ort=not all(dms_bench.runs_on_litert(a) for a in entries))
    finally:
        state["during"] = sampler.stop()
    state["after"] = board_state.snapshot(transport, python, tools)
    doc["state"] = {k: v for k, v in state.items() if v is not None}
    for r in doc["results"]:  # energy per inference where the board reports its power rails (tegrastats)
        mean = (r.get("latency_ms") or {}).get("mean")
        if r["error"] is None and board_state.energy_mj(doc["state"], mean) is not None:
            r["energy_mj"] = board_state.energy_mj(doc["state"], mean)
    return stamp_sources(doc)  # every figure says where it came from (provenance.SOURCES)


def _state_log(release_dir: str) -> str:
    """Where tegrastats logs during a run: the deploy root (beside releases/), never outside it."""
    import uuid

    from ..backends.trt_board import engines_dir  # <root>/engines: the same root computation

    root = posixpath.dirname(engines_dir(release_dir))
    return posixpath.join(root, f".tegrastats-{uuid.uuid4().hex[:12]}.log")


def _run_runner(transport: Transport, release_dir: str, python: str, artifact: str | None, timeout: float,
                facts: dict, *, needs_ort: bool = True) -> dict:
    board = transport.name
    if needs_ort:  # a board running only .tflite files (runner/litert_runner.py) needs no onnxruntime
        require_onnxruntime(facts, board=board, python=python)
    argv = [python, _runner(release_dir), "--release", release_dir]
    if artifact is not None:
        argv += ["--artifact", artifact]
    res = transport.run(argv, timeout=timeout)
    if res.exit_status == EXIT_MISSING_DEPENDENCY:
        said = res.stderr_tail(1).removeprefix("dms_bench.py: ") or "a runtime dependency is missing"
        raise BenchError(f"board {board}: {said}; the benchmark cannot run",
                         hint=f"on the board: {python} -m {ORT_HINT}")
    if res.exit_status not in (0, EXIT_ALL_FAILED):
        what = "timed out" if res.exit_status == 124 else f"crashed (exit {res.exit_status})"
        raise BenchError(
            f"board {board}: benchmark runner {what} in {release_dir}; the board keeps its release\n"
            f"  {' '.join(argv)}\n  stderr (last lines):\n    " + res.stderr_tail().replace("\n", "\n    "),
            hint="run that command on the board to see the whole output",
        )
    return parse_document(res.stdout, board=board)


#: runtimes whose artifacts the host drives on the board with the vendor's own tool (not runner/dms_bench.py):
#: the registry says which (core/runtimes.py ``measured_by``); their backend's ``bench_artifacts`` runs them
HOST_DRIVEN = runtimes.HOST_DRIVEN


def _remote_manifest(transport: Transport, release_dir: str) -> dict:
    res = transport.run(["cat", posixpath.join(release_dir, "manifest.json")], timeout=FACTS_TIMEOUT)
    if not res.ok:
        raise BenchError(f"board {transport.name}: {release_dir}/manifest.json is not readable (exit {res.exit_status})",
                         hint="is the release complete? redeploy it")
    manifest = load_json(res.stdout, board=transport.name, what="manifest.json")
    if not isinstance(manifest, dict):
        raise BenchError(f"board {transport.name}: {release_dir}/manifest.json is not an object", hint="redeploy it")
    check_board_artifacts(manifest, board=transport.name, where=f"{release_dir}/manifest.json")
    return manifest


def check_board_artifacts(manifest: dict, *, board: str, where: str) -> None:
    """The board's copy of the manifest names host files too (local scratch files by artifact name, engine
    cache keys by sha256): every artifact entry must have a safe name and runtime, a sha256 and a relative
    file path, or the board's benchmark is refused in one line (the host's own manifest never fails this)."""
    import re

    from ..names import is_safe
    from ..untrusted import shown

    artifacts = manifest.get("artifacts", [])
    if not isinstance(artifacts, list):
        raise BenchError(f"board {board}: {where}: 'artifacts' is not a list; the benchmark cannot run",
                         hint="redeploy the release (the board's copy differs from what was sent)")
    for i, a in enumerate(artifacts):
        if not isinstance(a, dict):
            continue  # not an artifact entry (skipped by the callers)
        file = a.get("file")
        bad = [k for k, ok in (
            ("name", is_safe(a.get("name"))),
            ("runtime", a.get("runtime") is None or is_safe(a.get("runtime"))),
            ("sha256", a.get("sha256") is None or (isinstance(a.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", a["sha256"]))),
            ("file", file is None or (isinstance(file, str) and file and not file.startswith("/") and "\0" not in file
                                      and ".." not in file.split("/"))),
        ) if not ok]
        if bad:
            raise BenchError(f"board {board}: {where}: artifacts[{i}].{bad[0]} is {shown(repr(a.get(bad[0])), 80)}, "
                             "not a safe name/sha256/relative path; the benchmark cannot run",
                             hint="redeploy the release (the board's copy differs from what was sent)")


def host_cache_root(project: Path, runtime: str, value: object, *, board: str,
                    say: Callable[[str], None] = print) -> Path:
    """The host folder of a runtime's engine cache: always below the project's ``artifacts/``.

    ``value`` comes from the board's copy of the manifest (``runtime_settings.backend.engine_cache``):
    a board can rewrite it, so nothing it says may choose a host path. A relative path that stays
    below ``artifacts/`` (symlinks resolved) is used; anything else (absolute, ``..``, through a
    symlink out) is ignored with one line and the default ``artifacts/cache/<runtime>`` is used."""
    artifacts = (project / "artifacts").resolve()
    default = artifacts / "cache" / runtime
    if value is None:
        return default
    text = str(value)
    candidate = (project / text).resolve() if text and not text.startswith(("/", "~")) and "\0" not in text else None
    if candidate is None or ".." in Path(text).parts or candidate == artifacts or not candidate.is_relative_to(artifacts):
        from ..untrusted import shown

        say(f"board {board}: the release's runtime_settings.backend.engine_cache {shown(text, 120)} is not a folder "
            f"below {artifacts}; ignored, the engine cache is {default}")
        return default
    return candidate


def _bench_host_driven(transport: Transport, release_dir: str, manifest: dict, entries: list[dict],
                       driven: list[dict], *, python: str, artifact: str | None, timeout: float, facts: dict) -> dict:
    """Artifacts of vendor-tool runtimes (trtexec) run from here; the others through the release's runner."""
    from ..backends import get_backend
    from ..config import find_root
    from ..core.results import make_document, validate_document

    plan = {"warmup": 10, "iterations": 100, "threads": 0, "verify_samples": 16}
    plan.update({k: v for k, v in (manifest.get("bench") or {}).items() if k in plan})
    by_name: dict[str, dict] = {}
    others = [a for a in entries if a not in driven]
    for a in others:
        doc = _run_runner(transport, release_dir, python, a["name"], timeout, facts)
        by_name.update({r["artifact"]: r for r in doc["results"]})
    for runtime in sorted({a["runtime"] for a in driven}):
        run = get_backend(runtime, f"{release_dir}/manifest.json").bench_artifacts
        backend = (manifest.get("runtime_settings") or {}).get("backend") or {}
        cache_root = host_cache_root(find_root(), runtime, backend.get("engine_cache"), board=transport.name)
        mine = [a for a in driven if a["runtime"] == runtime]
        for r in run(transport, release_dir, manifest, mine, python=python, plan=plan, cache_root=cache_root):
            by_name[r["artifact"]] = r
    release_id = posixpath.basename(posixpath.normpath(release_dir))
    if release_id == "current":
        res = transport.run(["readlink", release_dir], timeout=FACTS_TIMEOUT)
        release_id = posixpath.basename(res.stdout.strip().rstrip("/")) or release_id
    doc = make_document(release_id=release_id, facts=facts, target=manifest.get("target"),
                        project=manifest.get("project"), toolchain=manifest.get("toolchain"), bench=plan,
                        model=manifest.get("model"),
                        results=[by_name[a["name"]] for a in entries if a["name"] in by_name])
    return validate_document(json.loads(json.dumps(doc, allow_nan=False)), board=transport.name)


# --------------------------------------------------------------------------
# several boards
# --------------------------------------------------------------------------
@dataclass
class BoardBench:
    """One board to benchmark: its connection, its release folder and its Python."""

    board: str
    transport: Transport
    release_dir: str
    python: str = "python3"
    facts: dict | None = None


@dataclass
class BenchResult:
    """What one board's benchmark measured and what the gates said (the rollout's bench step turns it into
    measure's one verdict, ``verdict.verdict_of``, which the health gate reads)."""

    board: str
    ok: bool
    seconds: float
    doc: dict | None = None
    run_id: str | None = None
    error: str | None = None  # the benchmark did not run or its output was refused
    failures: list[GateFailure] = field(default_factory=list)
    #: what the latency gate did not compare and why (new baseline, power mode changed, throttled)
    notes: list[str] = field(default_factory=list)
    #: re-measured suspected regressions (``regression.Decision.as_dict()``), confirmed or not
    decisions: list[dict] = field(default_factory=list)
    #: artifact -> the latency comparison with its lineage's previous release (``gates.check_latency``);
    #: None: the gates did not run
    compared: dict[str, dict] | None = None

    def messages(self) -> list[str]:
        return ([self.error] if self.error else []) + [f.message for f in self.failures]


def _summary(doc: dict) -> str:
    parts = []
    for r in doc["results"]:
        if r["error"] is None:
            note = f" ({r['verify_note']})" if r.get("verify_note") else ""  # e.g. no TensorRT Python on the board
            lat = r["latency_ms"]
            src = label(r.get("source"), short=True)  # every figure says where it came from
            if lat["median"] is None:  # average-only runtimes (snpe-net-run): say so (stats_source)
                parts.append(f"{r['artifact']} mean {lat['mean']:.2f} ms [{src}]{note}")
            else:
                parts.append(f"{r['artifact']} {lat['median']:.2f} ms [{src}]{note}")
        else:
            parts.append(f"{r['artifact']} ERROR")
    return ", ".join(parts)


def _confirm_latency(item: "BoardBench", doc: dict, out: BenchResult, *, cfg: "ConfirmConfig",
                     max_latency_regression: float, threads: int, progress: Callable[[str], None], tag: str) -> None:
    """Re-measure each suspected latency regression (``regression.confirm``); drop the ones within noise.

    Where no re-measure can run (a host-driven runtime, the previous release
    gone from the board, the runner failed) the first run's verdict stands
    and the failure message says why it was not re-measured.
    """
    from .regression import confirm

    runtimes = {r["artifact"]: r["runtime"] for r in doc["results"]}
    kept = []
    for f in out.failures:
        if f.gate != "latency":
            kept.append(f)
            continue
        if runtimes.get(f.artifact) in HOST_DRIVEN:
            f.message += f"; not re-measured: interleaved re-measuring runs the dms_bench runner's artifacts only, " \
                         f"not {runtimes[f.artifact]}"
            kept.append(f)
            continue
        progress(f"{tag}: {f.artifact} looks {f.detail.get('ratio', 0):.2f}x slower: re-measuring it against release "
                 f"{f.detail.get('previous_release')} in interleaved blocks")
        try:
            decision = confirm(item.transport, release_dir=item.release_dir,
                               previous_release=f.detail["previous_release"], artifact=f.artifact, python=item.python,
                               cfg=cfg, allowed=max_latency_regression, threads=threads)
        except UserError as exc:
            f.message += f"; not re-measured: {first_line(exc)}"
            kept.append(f)
            continue
        d = decision.as_dict()
        d["source"] = f.detail.get("source")
        out.decisions.append(d)
        progress(f"{tag}: {f.artifact}: {decision.sentence}")
        if decision.confirmed:
            f.message += f"; {decision.sentence}"
            f.detail["decision"] = d
            kept.append(f)
        else:
            out.notes.append(f"board {item.board}: artifact {f.artifact}: {decision.sentence}")
    out.failures = kept
    out.ok = not kept


def bench_boards(boards: Sequence[BoardBench | tuple], *, target: str, store: ResultStore,
                 accuracy: "AccuracyFloors", max_latency_regression: float, artifact: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, progress: Callable[[str], None] = print,
                 confirm: "ConfirmConfig | None" = None) -> list[BenchResult]:
    """Benchmark each board in turn, store what came back, apply the gates; one board's failure stops nothing.

    Boards run one after the other: emulated boards share this machine's CPU,
    and parallel runs would measure each other. Accepts ``BoardBench`` or
    ``(board name, transport, release dir[, python[, facts]])`` tuples (the deploy step's view;
    emulated boards need the host venv's python, which has onnxruntime).
    ``confirm`` (``gates.confirm``): re-measure a suspected latency regression
    before failing the board; None: the first run decides alone.
    """
    items = [b if isinstance(b, BoardBench) else BoardBench(*b) for b in boards]
    outcomes = []
    for i, item in enumerate(items, 1):
        tag = f"[bench {i}/{len(items)}] {item.board}"
        progress(f"{tag}: started ({item.release_dir})")
        t0 = time.monotonic()
        try:
            doc = benchmark_release(item.transport, item.release_dir, item.python, artifact, timeout, item.facts)
            run_id = store.add(doc, board=item.board, target=target)
        except UserError as exc:
            out = BenchResult(item.board, False, time.monotonic() - t0, error=str(exc))
            progress(f"{tag}: FAILED after {out.seconds:.1f} s: {first_line(exc)}")
            outcomes.append(out)
            continue
        notes: list[str] = []
        compared: dict[str, dict] = {}
        failures = check_gates(doc, board=item.board, target=target, store=store, accuracy=accuracy,
                               max_latency_regression=max_latency_regression, notes=notes, compared=compared)
        out = BenchResult(item.board, not failures, time.monotonic() - t0, doc=doc, run_id=run_id, failures=failures,
                           notes=notes, compared=compared)
        if confirm is not None and confirm.enabled and any(f.gate == "latency" for f in failures):
            _confirm_latency(item, doc, out, cfg=confirm, max_latency_regression=max_latency_regression,
                             threads=int((doc.get("bench") or {}).get("threads") or 0), progress=progress, tag=tag)
            out.seconds = time.monotonic() - t0
        for note in out.notes:
            progress(f"{tag}: {note}")
        verdict = "done" if out.ok else f"GATE FAILED ({len(out.failures)})"
        progress(f"{tag}: {verdict} in {out.seconds:.1f} s, release {doc['release_id']}: {_summary(doc)}")
        outcomes.append(out)
    return outcomes


# --------------------------------------------------------------------------
# where results go (the rollout's bench step, pipeline/deploy.bench_hook, runs bench_boards per board)
# --------------------------------------------------------------------------
def store_path(project: "ProjectConfig") -> Path:
    return project.artifacts / "results.sqlite"
