"""Benchmark results: the schema boards send home (CONTRACTS §3), its parsers, and the store.

Everything a board says is untrusted input: a document is size-checked,
parsed and validated field by field before one byte of it is stored, and a
bad one raises a ``ResultError`` naming the board and the field. Runners of
other runtimes (trtexec, snpe-net-run) subclass ``ResultParser`` and return
the same result dict, checked by the same validator.

The store, ``artifacts/results.sqlite``, is append-only: triggers refuse
UPDATE and DELETE, so a measurement once stored is never overwritten.
"""
from __future__ import annotations

import abc
import csv
import io
import json
import math
import re
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Iterable

from ..errors import UserError
from ..untrusted import neutralise
from .provenance import ROUTES, SOURCES, classify, energy_source, known_source, lineage
from ..board.runner.dms_bench import latency_stats

SCHEMA = 1
#: a results document larger than this is refused unread (50 artifacts x 10^4 samples fit easily)
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
MAX_RESULTS = 256
MAX_SAMPLES = 100_000
MAX_STRING = 2000
#: the largest whole number the store holds (sqlite INTEGER is a signed 64-bit value)
MAX_INT = 2**63 - 1
#: the largest magnitude of any number a board may send: far above any real measurement, and every
#: sum, mean or ratio a report forms from such numbers stays finite
MAX_MAGNITUDE = 1e15
STAT_KEYS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")
#: a verify head's metrics (runner/metrics.py HEAD_KEYS; that module needs numpy, this one must not)
VERIFY_KEYS = ("max_abs_diff", "mean_abs_diff", "cosine", "cosine_min", "sqnr_db", "psnr_db", "top1_agreement", "degenerate")
GPU_KEYS = ("compute_ms", "h2d_ms", "d2h_ms")
#: checked with fullmatch: ``$`` alone would let a trailing newline through ("fp32\n", a new lineage)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ResultError(UserError):
    """A board sent results that cannot be trusted; nothing of them was stored."""


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
class _Check:
    """Field-by-field checks that name the board and the JSON path of the first bad field."""

    def __init__(self, board: str) -> None:
        self.board = board

    def fail(self, where: str, value: Any, expected: str) -> ResultError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return ResultError(
            f"board {self.board}: result field '{where}' is {shown}; expected {expected}; nothing was stored",
            hint="the board's runner is broken or from another dmsbuild version: redeploy the release",
        )

    def obj(self, value: Any, where: str, keys: Iterable[str] = (), optional: Iterable[str] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, value, "an object")
        for k in keys:
            if k not in value:
                raise self.fail(f"{where}.{k}", None, "a value (the field is missing)")
        return value

    def num(self, value: Any, where: str, *, null: bool = False, lo: float | None = None, hi: float | None = None) -> float | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)) or not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
            raise self.fail(where, value, f"a finite number of magnitude at most {MAX_MAGNITUDE:g}" + (" or null" if null else ""))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(where, value, f"a number in [{lo}, {hi}]")
        return float(value)

    def int_(self, value: Any, where: str, *, null: bool = False, lo: int = 0) -> int | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_INT:
            raise self.fail(where, value, f"a whole number in [{lo}, {MAX_INT}]" + (" or null" if null else ""))
        return value

    def str_(self, value: Any, where: str, *, null: bool = False, pattern: re.Pattern | None = None) -> str | None:
        if value is None and null:
            return None
        if not isinstance(value, str) or len(value) > MAX_STRING or (pattern is not None and not pattern.fullmatch(value)):
            raise self.fail(where, value, "a string" + (f" matching {pattern.pattern}" if pattern else f" of at most {MAX_STRING} characters"))
        return value

    def stats(self, value: Any, where: str, *, mean_only: bool = False) -> None:
        """Every statistic a number; ``mean_only`` (a runtime that reports averages): mean a number, the rest may be null."""
        if value is None:
            return
        self.obj(value, where, STAT_KEYS)
        for k in STAT_KEYS:
            self.num(value[k], f"{where}.{k}", lo=0, null=mean_only and k != "mean")
        if any(value[k] is None for k in ("min", "median", "max")):
            return
        if not value["min"] <= value["median"] <= value["max"]:
            raise self.fail(where, value, "min <= median <= max")

    def plain(self, value: Any, where: str, depth: int = 0) -> None:
        """Facts/toolchain: scalars, short strings, and small lists/objects of them."""
        if depth > 3:
            raise self.fail(where, "...", "at most 3 levels of nesting")
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int):
            if not -MAX_INT - 1 <= value <= MAX_INT:
                raise self.fail(where, value, "a whole number that fits 64 bits")
        elif isinstance(value, float):
            self.num(value, where)
        elif isinstance(value, str):
            self.str_(value, where)
        elif isinstance(value, list):
            if len(value) > 256:
                raise self.fail(where, f"<{len(value)} items>", "at most 256 items")
            for i, v in enumerate(value):
                self.plain(v, f"{where}[{i}]", depth + 1)
        elif isinstance(value, dict):
            if len(value) > 256:
                raise self.fail(where, f"<{len(value)} keys>", "at most 256 keys")
            for k, v in value.items():
                self.str_(k, f"{where} key")
                self.plain(v, f"{where}.{k}", depth + 1)
        else:
            raise self.fail(where, value, "JSON scalars, lists and objects")


def validate_result(result: Any, *, board: str, where: str = "result") -> dict:
    """Check one artifact's result dict (CONTRACTS §3); returns it unchanged."""
    c = _Check(board)
    c.obj(result, where, ("artifact", "precision", "runtime", "latency_ms", "samples_ms", "error"))
    c.str_(result["artifact"], f"{where}.artifact", pattern=_NAME)
    c.str_(result["precision"], f"{where}.precision")
    c.str_(result["runtime"], f"{where}.runtime", pattern=_NAME)
    c.str_(result.get("provider"), f"{where}.provider", null=True)
    c.str_(result.get("sha256"), f"{where}.sha256", null=True, pattern=_SHA256)
    c.int_(result.get("size"), f"{where}.size", null=True)
    c.int_(result.get("warmup", 0), f"{where}.warmup")
    c.int_(result.get("iterations", 0), f"{where}.iterations")
    c.int_(result.get("threads", 0), f"{where}.threads", null=True)
    c.str_(result["error"], f"{where}.error", null=True)
    source = c.str_(result.get("source"), f"{where}.source", null=True)
    if source is not None and not known_source(source):
        raise c.fail(f"{where}.source", source, "one of " + ", ".join(SOURCES) + " (+ a route: " + ", ".join(ROUTES) + ")")
    for k in ("throughput_ips", "load_ms", "first_inference_ms", "peak_rss_mb", "energy_mj"):
        c.num(result.get(k), f"{where}.{k}", null=True, lo=0)
    # stats_source: the runtime reports averages only (snpe-diagview); then samples_ms is [] and only
    # latency_ms.mean must be a number (CONTRACTS §3)
    averaged = c.str_(result.get("stats_source"), f"{where}.stats_source", null=True) is not None
    c.stats(result["latency_ms"], f"{where}.latency_ms", mean_only=averaged)
    samples = result["samples_ms"]
    if samples is not None:
        if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
            raise c.fail(f"{where}.samples_ms", f"<{type(samples).__name__}>", f"a list of at most {MAX_SAMPLES} numbers")
        for i, s in enumerate(samples):
            c.num(s, f"{where}.samples_ms[{i}]", lo=0)
    if averaged and samples:
        raise c.fail(f"{where}.samples_ms", f"<{len(samples)} samples>", "[] when 'stats_source' is set (samples give full statistics)")
    if result["error"] is None and averaged:
        if result["latency_ms"] is None or samples is None:
            raise c.fail(f"{where}.latency_ms", result["latency_ms"], "a mean and samples_ms [] when 'stats_source' is set")
    elif result["error"] is None:
        if result["latency_ms"] is None or not samples:
            raise c.fail(f"{where}.latency_ms", None, "statistics and samples when 'error' is null")
        if result.get("iterations") and len(samples) != result["iterations"]:
            raise c.fail(f"{where}.samples_ms", f"<{len(samples)} samples>", f"{result['iterations']} samples (= iterations)")
    c.plain(result.get("profile") or {}, f"{where}.profile")
    gpu = result.get("gpu")
    if gpu is not None:
        c.obj(gpu, f"{where}.gpu")
        for k in GPU_KEYS:
            c.stats(gpu.get(k), f"{where}.gpu.{k}")
    verify = result.get("verify")
    if verify is not None:
        c.obj(verify, f"{where}.verify", ("samples", "heads", "min_top1_agreement"))
        c.int_(verify["samples"], f"{where}.verify.samples", lo=1)
        c.obj(verify["heads"], f"{where}.verify.heads")
        for head, m in verify["heads"].items():
            w = f"{where}.verify.heads.{head}"
            c.str_(head, w, pattern=_NAME)
            c.obj(m, w, VERIFY_KEYS)
            c.num(m["max_abs_diff"], f"{w}.max_abs_diff", null=True, lo=0)
            c.num(m["mean_abs_diff"], f"{w}.mean_abs_diff", null=True, lo=0)
            for k in ("cosine", "cosine_min"):
                c.num(m[k], f"{w}.{k}", null=True, lo=-1.0001, hi=1.0001)
            c.num(m["sqnr_db"], f"{w}.sqnr_db", null=True)
            c.num(m["psnr_db"], f"{w}.psnr_db", null=True)
            c.num(m["top1_agreement"], f"{w}.top1_agreement", null=True, lo=0, hi=1)
            if m["degenerate"] is None and m["cosine"] is None:  # only non-finite outputs have no cosine
                raise c.fail(f"{w}.cosine", None, "a number (null only with 'degenerate' set)")
            c.str_(m["degenerate"], f"{w}.degenerate", null=True)
            if "by_kind" in m:  # what the head means (runner/metrics.py KIND_KEYS)
                by = c.obj(m["by_kind"], f"{w}.by_kind", ("kind",))
                c.str_(by["kind"], f"{w}.by_kind.kind", pattern=_NAME)
                for k in ("agreement", "string_agreement", "recall", "precision", "mask_iou"):
                    if k in by:
                        c.num(by[k], f"{w}.by_kind.{k}", null=True, lo=0, hi=1)
                for k in ("score_error", "reference_detections", "detections", "matched"):
                    if k in by:
                        c.num(by[k], f"{w}.by_kind.{k}", null=True, lo=0)
            for name, sl in (c.obj(m.get("slices") or {}, f"{w}.slices")).items():
                ws = f"{w}.slices.{name}"
                c.str_(name, ws, pattern=_NAME)
                c.obj(sl, ws, ("cosine", "sqnr_db", "collapsed"))
                c.num(sl["cosine"], f"{ws}.cosine", null=True, lo=-1.0001, hi=1.0001)
                c.num(sl["sqnr_db"], f"{ws}.sqnr_db", null=True)
                c.str_(sl["collapsed"], f"{ws}.collapsed", null=True)
        c.num(verify["min_top1_agreement"], f"{where}.verify.min_top1_agreement", null=True, lo=0, hi=1)
    _neutralise_in_place(result)
    return result


def _neutralise_in_place(obj: dict) -> None:
    """Board strings are data: control characters and ANSI/OSC escapes become visible escapes (``\\x1b``)
    before anything is stored, printed or reported (``untrusted.neutralise``); a clean document is unchanged."""
    clean = neutralise(obj, lines=True)
    if clean != obj:
        obj.clear()
        obj.update(clean)


def validate_document(doc: Any, *, board: str) -> dict:
    """Check a whole results document (CONTRACTS §3); returns it unchanged."""
    c = _Check(board)
    c.obj(doc, "document", ("schema", "release_id", "facts", "results"))
    if doc["schema"] != SCHEMA:
        raise c.fail("schema", doc["schema"], f"{SCHEMA} (this dmsbuild's result schema)")
    c.str_(doc["release_id"], "release_id", pattern=_NAME)
    for k in ("runner", "project", "target"):
        c.str_(doc.get(k), k, null=True)
    c.obj(doc["facts"], "facts")
    c.plain(doc["facts"], "facts")
    c.plain(doc.get("toolchain") or {}, "toolchain")
    c.plain(doc.get("bench") or {}, "bench")
    c.plain(doc.get("state") or {}, "state")
    model = doc.get("model")
    if model is not None:
        c.obj(model, "model", ("file", "sha256"))
        c.str_(model["file"], "model.file", null=True)
        c.str_(model["sha256"], "model.sha256", null=True, pattern=_SHA256)
    results = doc["results"]
    if not isinstance(results, list) or not results or len(results) > MAX_RESULTS:
        raise c.fail("results", f"<{type(results).__name__}>", f"a list of 1 to {MAX_RESULTS} results")
    seen = set()
    for i, r in enumerate(results):
        validate_result(r, board=board, where=f"results[{i}]")
        if r["artifact"] in seen:
            raise c.fail(f"results[{i}].artifact", r["artifact"], "each artifact once")
        seen.add(r["artifact"])
    _neutralise_in_place(doc)
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(text: str, *, board: str, what: str = "result JSON") -> Any:
    """Size-checked, strict JSON (no NaN/Infinity); a clear message for truncated or malformed text."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_DOCUMENT_BYTES:
        raise ResultError(
            f"board {board}: {what} is {size} bytes, over the {MAX_DOCUMENT_BYTES} byte limit; nothing was stored",
            hint="lower bench.iterations in the target profile, or check what the board's runner prints",
        )
    stripped = text.strip()
    if not stripped:
        raise ResultError(f"board {board}: {what} is empty; nothing was stored",
                          hint="the runner printed nothing: run it by hand on the board to see why")
    try:
        return json.loads(stripped, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(stripped) - 1 or exc.msg.startswith("Unterminated string")
        if truncated:
            raise ResultError(
                f"board {board}: {what} is truncated after {len(stripped)} characters ({exc.msg}); nothing was stored",
                hint="the connection dropped or the runner was killed mid-write: run the benchmark again",
            ) from None
        raise ResultError(
            f"board {board}: {what} is malformed (line {exc.lineno} column {exc.colno}: {exc.msg}); nothing was stored",
            hint="something on the board printed to stdout besides the runner's JSON: run the runner by hand there",
        ) from None
    except ValueError as exc:
        raise ResultError(f"board {board}: {what} is malformed ({exc}); nothing was stored") from None
    except RecursionError:  # '[[[[…' within the size limit: a hostile or broken board
        raise ResultError(f"board {board}: {what} is nested too deeply to be a result document; nothing was stored",
                          hint="check what the board's runner prints") from None


def parse_document(text: str, *, board: str) -> dict:
    """The dms_bench.py runner's stdout -> a validated results document."""
    return validate_document(load_json(text, board=board), board=board)


# --------------------------------------------------------------------------
# parsers for other runners
# --------------------------------------------------------------------------
class ResultParser(abc.ABC):
    """Turns one runtime's benchmark output for one artifact into the §3 result dict.

    Subclasses set ``runtime`` (they register themselves by it) and implement
    ``parse_impl``; the public ``parse`` adds the size check and validation,
    so every runtime's results reach the store in the same checked shape.
    """

    runtime: ClassVar[str]
    registry: ClassVar[dict[str, type["ResultParser"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        runtime = getattr(cls, "runtime", None)
        if runtime:
            ResultParser.registry[runtime] = cls

    def parse(self, output: str, *, board: str, artifact: dict, warmup: int, iterations: int) -> dict:
        size = len(output.encode("utf-8", errors="replace"))
        if size > MAX_DOCUMENT_BYTES:
            raise ResultError(f"board {board}: {self.runtime} output for {artifact.get('name')} is {size} bytes, "
                              f"over the {MAX_DOCUMENT_BYTES} byte limit; nothing was stored")
        result = self.parse_impl(output, board=board, artifact=artifact, warmup=warmup, iterations=iterations)
        return validate_result(result, board=board, where=f"results[{artifact.get('name')}]")

    @abc.abstractmethod
    def parse_impl(self, output: str, *, board: str, artifact: dict, warmup: int, iterations: int) -> dict:
        """Build the result dict (start from ``new_result``; ``fill_latency`` adds the statistics)."""


def parser_for(runtime: str) -> ResultParser:
    try:
        return ResultParser.registry[runtime]()
    except KeyError:
        raise UserError(f"no result parser for runtime {runtime!r}; known: {', '.join(sorted(ResultParser.registry)) or 'none'}") from None


def new_result(artifact: dict, *, warmup: int, iterations: int, threads: int | None = None) -> dict:
    """A result dict for a manifest artifact entry with every measurement null."""
    providers = artifact.get("providers") or []
    return {
        "artifact": artifact["name"], "precision": artifact.get("precision", ""),
        "runtime": artifact.get("runtime", ""), "provider": providers[0] if providers else None,
        "sha256": artifact.get("sha256"), "size": artifact.get("size"),
        "warmup": warmup, "iterations": iterations, "threads": threads,
        "latency_ms": None, "samples_ms": None, "throughput_ips": None, "load_ms": None,
        "first_inference_ms": None, "peak_rss_mb": None, "gpu": None, "verify": None, "error": None,
    }


def tool_result(artifact: dict, provider: str, *, warmup: int, iterations: int, error: str | None = None) -> dict:
    """``new_result`` for a vendor tool the host drives on the board (trtexec, snpe-net-run): the tool is the
    provider; an ``error`` is kept as one line of at most 500 characters (tool output can be long)."""
    res = new_result(artifact, warmup=warmup, iterations=iterations)
    res["provider"] = provider
    if error is not None:
        res["error"] = " ".join(error.split())[:500]
    return res


def fill_latency(result: dict, samples_ms: list[float], batch: int = 1) -> dict:
    """Statistics and throughput from raw samples (the same formulas as the board runner)."""
    stats = latency_stats(samples_ms)
    result["samples_ms"] = list(samples_ms)
    result["latency_ms"] = stats
    result["throughput_ips"] = batch * 1000.0 / stats["mean"] if stats["mean"] > 0 else None
    return result


def make_document(*, release_id: str, facts: dict, results: list[dict], target: str | None = None,
                  project: str | None = None, toolchain: dict | None = None, bench: dict | None = None,
                  runner: str = "host", model: dict | None = None) -> dict:
    """A §3 document assembled on the host (for runtimes whose runner is a vendor tool)."""
    doc = {"schema": SCHEMA, "runner": runner, "project": project, "target": target, "release_id": release_id,
           "facts": facts, "toolchain": toolchain or {}, "bench": bench or {}, "results": results}
    if model is not None:
        doc["model"] = model
    return doc


# --------------------------------------------------------------------------
# store
# --------------------------------------------------------------------------
_COLUMNS = (
    ("run_id", "TEXT NOT NULL"), ("created_at", "TEXT NOT NULL"), ("board", "TEXT NOT NULL"),
    ("target", "TEXT NOT NULL"), ("release_id", "TEXT NOT NULL"), ("artifact", "TEXT NOT NULL"),
    ("precision", "TEXT"), ("runtime", "TEXT"), ("provider", "TEXT"), ("sha256", "TEXT"), ("size", "INTEGER"),
    ("warmup", "INTEGER"), ("iterations", "INTEGER"), ("threads", "INTEGER"),
    ("min_ms", "REAL"), ("mean_ms", "REAL"), ("median_ms", "REAL"), ("p90_ms", "REAL"), ("p95_ms", "REAL"),
    ("p99_ms", "REAL"), ("max_ms", "REAL"), ("std_ms", "REAL"), ("throughput_ips", "REAL"),
    ("load_ms", "REAL"), ("first_inference_ms", "REAL"), ("peak_rss_mb", "REAL"),
    ("min_top1_agreement", "REAL"), ("min_cosine", "REAL"), ("error", "TEXT"),
    ("samples_json", "TEXT"), ("verify_json", "TEXT"), ("gpu_json", "TEXT"),
    ("facts_json", "TEXT NOT NULL"), ("toolchain_json", "TEXT NOT NULL"), ("bench_json", "TEXT NOT NULL"),
    # provenance and lineage (docs/measurements.md); stores from before have NULL here (added by ALTER TABLE)
    ("source", "TEXT"), ("lineage", "TEXT"), ("model_file", "TEXT"), ("model_sha256", "TEXT"), ("state_json", "TEXT"),
    ("energy_mj", "REAL"), ("profile_json", "TEXT"),
    # provenance of energy_mj (provenance.ENERGY_SOURCES): its power may come from a double when its latency did not
    ("energy_source", "TEXT"),
)
#: columns added after the first schema: an older store gets them with ALTER TABLE ADD COLUMN
_ADDED_COLUMNS = {n: t for n, t in _COLUMNS[_COLUMNS.index(("source", "TEXT")):]}
COLUMNS = tuple(name for name, _ in _COLUMNS)
_SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {', '.join(f'{n} {t}' for n, t in _COLUMNS)},
    UNIQUE (board, target, release_id, artifact, run_id)
);
CREATE INDEX IF NOT EXISTS results_board ON results (board, target, artifact, id);
CREATE TRIGGER IF NOT EXISTS results_no_update BEFORE UPDATE ON results
    BEGIN SELECT RAISE(ABORT, 'results are append-only'); END;
CREATE TRIGGER IF NOT EXISTS results_no_delete BEFORE DELETE ON results
    BEGIN SELECT RAISE(ABORT, 'results are append-only'); END;
"""
_JSON_COLUMNS = {"samples_json", "verify_json", "gpu_json", "facts_json", "toolchain_json", "bench_json", "state_json",
                 "profile_json"}


class ResultStore:
    """artifacts/results.sqlite: one row per (board, target, release, artifact, run); append-only."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=30)
            con.row_factory = sqlite3.Row
            con.executescript(_SCHEMA_SQL)
            have = {row[1] for row in con.execute("PRAGMA table_info(results)")}
            for col, kind in _ADDED_COLUMNS.items():
                if col not in have:
                    con.execute(f"ALTER TABLE results ADD COLUMN {col} {kind}")
            con.execute("CREATE INDEX IF NOT EXISTS results_lineage ON results (lineage, id)")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a usable results store ({exc})",
                            hint="move the file aside; dmsbuild creates a new store") from None
        return con

    def add(self, doc: dict, *, board: str, target: str | None = None, run_id: str | None = None) -> str:
        """Store a validated document (all rows in one transaction); returns the run id."""
        validate_document(doc, board=board)
        run_id = run_id or uuid.uuid4().hex
        target = target or doc.get("target") or ""
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        model = doc.get("model") or {}
        rows = []
        for r in doc["results"]:
            stats = r["latency_ms"] or {}
            verify = r.get("verify")
            cosines = [h["cosine"] for h in (verify or {}).get("heads", {}).values() if h.get("cosine") is not None]
            rows.append({
                "run_id": run_id, "created_at": now, "board": board, "target": target,
                "release_id": doc["release_id"], "artifact": r["artifact"], "precision": r["precision"],
                "runtime": r["runtime"], "provider": r.get("provider"), "sha256": r.get("sha256"),
                "size": r.get("size"), "warmup": r.get("warmup"), "iterations": r.get("iterations"),
                "threads": r.get("threads"),
                **{f"{k}_ms": stats.get(k) for k in STAT_KEYS},
                "throughput_ips": r.get("throughput_ips"), "load_ms": r.get("load_ms"),
                "first_inference_ms": r.get("first_inference_ms"), "peak_rss_mb": r.get("peak_rss_mb"),
                "min_top1_agreement": verify.get("min_top1_agreement") if verify else None,
                "min_cosine": min(cosines) if cosines else None, "error": r["error"],
                "samples_json": json.dumps(r["samples_ms"]), "verify_json": json.dumps(verify),
                "gpu_json": json.dumps(r.get("gpu")), "facts_json": json.dumps(doc["facts"]),
                "toolchain_json": json.dumps(doc.get("toolchain") or {}), "bench_json": json.dumps(doc.get("bench") or {}),
                "source": r.get("source") or classify(r, doc["facts"]),
                "lineage": lineage(board=board, target=target, model_sha256=model.get("sha256"), result=r),
                "model_file": model.get("file"), "model_sha256": model.get("sha256"),
                "state_json": json.dumps(doc.get("state")) if doc.get("state") is not None else None,
                "energy_mj": r.get("energy_mj"), "energy_source": energy_source(r, doc.get("state")),
                "profile_json": json.dumps(r["profile"]) if r.get("profile") is not None else None,
            })
        sql = f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})"
        con = self._connect()
        try:
            with con:
                con.executemany(sql, rows)
        finally:
            con.close()
        return run_id

    def rows(self, *, board: str | None = None, target: str | None = None, decode: bool = True) -> list[dict]:
        """Rows in insertion order; JSON columns decoded (``samples``, ``verify``, ...) when ``decode``."""
        if not self.path.exists():
            return []
        where, args = [], []
        for col, val in (("board", board), ("target", target)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM results" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        con = self._connect()
        try:
            out = [dict(r) for r in con.execute(sql, args)]
        finally:
            con.close()
        if decode:
            for row in out:
                for col in _JSON_COLUMNS:
                    row[col[: -len("_json")]] = json.loads(row.pop(col)) if row[col] is not None else None
        return out

    def previous(self, *, board: str, target: str, artifact: str, release_id: str,
                 lineage: str | None = None) -> dict | None:
        """The latest successful row of another release for this board and artifact (the regression baseline).

        With ``lineage`` only rows of that lineage count (same board, target,
        model content, precision and recipe: ``provenance.lineage``); None when
        the lineage has no earlier release (a new baseline).
        """
        if not self.path.exists():
            return None
        sql = ("SELECT release_id, median_ms, created_at, source, lineage, model_file, model_sha256, facts_json,"
               " state_json FROM results WHERE board = ? AND target = ? AND artifact = ?"
               " AND release_id != ? AND error IS NULL AND median_ms IS NOT NULL")
        args: list[Any] = [board, target, artifact, release_id]
        if lineage is not None:
            sql += " AND lineage = ?"
            args.append(lineage)
        con = self._connect()
        try:
            row = con.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        finally:
            con.close()
        if not row:
            return None
        out = dict(row)
        out["facts"] = json.loads(out.pop("facts_json") or "{}")
        state = out.pop("state_json")
        out["state"] = json.loads(state) if state else None
        return out

    def export(self, fmt: str) -> str:
        """All rows as JSON (decoded) or CSV (flat columns, JSON columns as text)."""
        if fmt == "json":  # energy_source next to energy_mj: the figure and where it came from, together
            return json.dumps([_energy_next_to_source(r) for r in self.rows()], indent=1)
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=("id", *COLUMNS), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows(decode=False))
            return buf.getvalue()
        raise UserError(f"export format {fmt!r} is unknown; use json or csv")


def _energy_next_to_source(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k != "energy_source"}
    items = list(out.items())
    at = [k for k, _ in items].index("energy_mj") + 1 if "energy_mj" in out else len(items)
    return dict(items[:at] + [("energy_source", row.get("energy_source"))] + items[at:])


def main(argv: list[str] | None = None) -> int:
    """``python -m dmsbuild.core.results export --format csv [--store PATH] [--out FILE]``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m dmsbuild.core.results", description="Export the results store.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("--format", choices=("json", "csv"), default="json")
    ex.add_argument("--store", default="artifacts/results.sqlite")
    ex.add_argument("--out", help="file to write (default: stdout)")
    args = p.parse_args(argv)
    try:
        text = ResultStore(Path(args.store)).export(args.format)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
