"""`doit tune`: find, per board kind, the fastest artifact that passes the accuracy gate, and ship it.

Which recipe, precision and runtime settings are fastest depends on the model,
the runtime and the board (issue 16: per-tensor QDQ 1.21x, QOperator 1.17x,
u8u8 0.83x of FP32 on one model; dynamic INT8 7-10x slower), so it is measured
on the user's own boards:

1. candidates = recipes (precision, per-channel, types, calibration, mixed
   precision) x runtime settings (intra-op threads, graph optimisation level,
   execution mode), each dimension named in the profile's ``[tune]``;
2. every recipe is built on the host and checked by the host accuracy gate
   first (cheap); a recipe that fails is never measured;
3. survivors are timed on one board of each kind INTERLEAVED with the default
   artifact (``runner/dms_bench.py --interleave --baseline``: alternating
   blocks, rotated order, both sessions loaded), and the ratio's bootstrap CI
   comes from ``regression.bootstrap_ratio``; back-to-back timing favours
   whichever session ran last, so it is never used;
4. the choice per board kind: the fastest candidate whose CI says it is faster
   than the default and that passes the gate; then the board's own output
   check on the chosen one. None faster: the default stays, and it says so;
5. the choice goes to ``targets/<target>.tuned.toml`` (reviewable,
   committable); ``doit build``/``deploy`` ship it as the release's default
   artifact with its session settings, refusing a file tuned for another model.

Candidates are named by hash(model content, recipe, runtime settings);
measurements are cached per (candidate, default artifact, board kind) under
``artifacts/tune/<target>/``, each written atomically, so a second tune
measures only what is new and an interrupted one resumes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..config import TargetProfile, TuneConfig
from ..errors import UserError, first_line

if TYPE_CHECKING:
    from ..config import ProjectConfig
    from ..ship.inventory import Board
    from ..transport.base import Transport

SCHEMA = 1
#: the artifact name of the tuned choice in build.json and the manifest
TUNED_NAME = "tuned"
#: runtime settings a candidate runs with (the manifest entry's ``session``)
SETTINGS_KEYS = ("intra_op_threads", "graph_optimization_level", "execution_mode")
#: recipe dimensions that matter only for INT8 precisions
QUANT_DIMS = ("per_channel", "activation_type", "weight_type", "calibration_method", "mixed_precision")
#: the runtimes `doit tune` measures today; QNN and TensorRT spaces are defined (``space_description``)
MEASURED_RUNTIMES = ("onnxruntime",)


# --------------------------------------------------------------------------
# candidates
# --------------------------------------------------------------------------
def _hash(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Recipe:
    """How the artifact is made from the FP32 model (one point of the recipe dimensions)."""

    precision: str
    per_channel: bool | None = None
    activation_type: str | None = None
    weight_type: str | None = None
    calibration_method: str | None = None
    mixed_precision: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def key(self, model_sha: str, calibration: int) -> str:
        """Names the built file: same model, recipe and calibration budget -> same bytes, built once."""
        return _hash({"model": model_sha, "recipe": self.as_dict(), "calibration": calibration}, 12)

    @property
    def label(self) -> str:
        if self.precision in ("fp32", "fp16"):
            return self.precision
        if self.precision == "int8-dynamic":
            return f"int8 dynamic {'per-channel' if self.per_channel else 'per-tensor'} {self.weight_type}"
        fmt = "QOperator" if self.precision == "int8-qoperator" else "QDQ"
        types = f"{_short(self.activation_type)}{_short(self.weight_type)}"
        mixed = ", mixed precision" if self.mixed_precision else ""
        return (f"int8 {fmt} {'per-channel' if self.per_channel else 'per-tensor'} {types} "
                f"{self.calibration_method}{mixed}")


def _short(qtype: str | None) -> str:
    return {"QUInt8": "u8", "QInt8": "s8", "QUInt16": "u16", "QInt16": "s16"}.get(qtype or "", "?")


@dataclass(frozen=True)
class Settings:
    """ONNX Runtime session settings (the manifest entry's ``session``, read by runner/dms_bench.py)."""

    intra_op_threads: int
    graph_optimization_level: str = "all"
    execution_mode: str = "sequential"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        extra = "" if self.graph_optimization_level == "all" else f", graph opt {self.graph_optimization_level}"
        extra += "" if self.execution_mode == "sequential" else f", {self.execution_mode} execution"
        return f"{self.intra_op_threads} thread{'s' if self.intra_op_threads != 1 else ''}{extra}"


@dataclass(frozen=True)
class Candidate:
    recipe: Recipe
    settings: Settings

    def id(self, model_sha: str) -> str:
        """hash(model content, recipe, runtime settings): the cache key of everything about this candidate."""
        return _hash({"model": model_sha, "recipe": self.recipe.as_dict(), "runtime": self.settings.as_dict()})

    @property
    def label(self) -> str:
        return f"{self.recipe.label}, {self.settings.label}"


def recipes(cfg: TuneConfig) -> list[Recipe]:
    """Every recipe of the [tune] dimensions; FP32/FP16 ignore the INT8 dimensions, dynamic INT8 the
    calibration ones (it has none), so no recipe is listed twice."""
    out: list[Recipe] = []
    for precision in cfg.precision:
        if precision in ("fp32", "fp16"):
            out.append(Recipe(precision))
        elif precision == "int8-dynamic":
            out += [Recipe(precision, per_channel=pc, weight_type=wt)
                    for pc, wt in itertools.product(cfg.per_channel, cfg.weight_type)]
        else:
            out += [Recipe(precision, pc, at, wt, cm, mp) for pc, at, wt, cm, mp in itertools.product(
                cfg.per_channel, cfg.activation_type, cfg.weight_type, cfg.calibration_method, cfg.mixed_precision)]
    return list(dict.fromkeys(out))


def thread_counts(cfg: TuneConfig, cores: int | None) -> list[int]:
    """[tune] intra_op_threads, else 1 .. the board's cores (from its facts)."""
    if cfg.intra_op_threads:
        return sorted(set(cfg.intra_op_threads))
    return list(range(1, max(1, cores or 1) + 1))


def settings_space(cfg: TuneConfig, cores: int | None) -> list[Settings]:
    """Every runtime setting; the first one is the 'full' setting stage 1 of the staged search uses."""
    threads = sorted(thread_counts(cfg, cores), reverse=True)
    return [Settings(t, g, e) for g, e, t in itertools.product(cfg.graph_optimization_level, cfg.execution_mode, threads)]


def space_description(prof: TargetProfile) -> dict[str, list[Any]]:
    """The dimensions `doit tune` searches for this target's runtime (docs/tune.md lists them)."""
    t = prof.tune
    if prof.runtime == "qnn":
        return {"activation_bits": t.qnn.activation_bits, "per_channel": t.qnn.per_channel,
                "htp_performance_mode": t.qnn.htp_performance_mode}
    if prof.runtime == "tensorrt":
        return {"precision": t.tensorrt.precision, "builder_optimization_level": t.tensorrt.builder_optimization_level,
                "sparsity": t.tensorrt.sparsity}
    return {"precision": t.precision, "per_channel": t.per_channel, "activation_type": t.activation_type,
            "weight_type": t.weight_type, "calibration_method": t.calibration_method,
            "mixed_precision": t.mixed_precision, "intra_op_threads": t.intra_op_threads or ["1..cores"],
            "graph_optimization_level": t.graph_optimization_level, "execution_mode": t.execution_mode}


#: [tune.tensorrt] precision -> (the backend precision whose ONNX and flags it builds from, extra trtexec flags)
TRT_PRECISIONS = {"fp16": ("fp16", []), "int8": ("int8-qdq", []), "best": ("int8-qdq", ["--best"])}


@dataclass(frozen=True)
class TensorRTCandidate:
    """One point of [tune.tensorrt]: engines built on the Jetson by trtexec (candidates share the engine cache,
    which keys engines by their trtexec flags)."""

    precision: str
    builder_optimization_level: int
    sparsity: bool

    @property
    def label(self) -> str:
        return (f"TensorRT {self.precision}, builder level {self.builder_optimization_level}"
                + (", sparsity" if self.sparsity else ""))

    def build_argv(self, onnx: str, engine: str, options: Any, timing_cache: str | None = None) -> list[str]:
        """The trtexec build command, through the backend's own ``build_argv`` (its workspace, timing cache,
        trtexec path); ``--best`` and ``--sparsity=enable`` (trtexec --help: spec ::= disable|enable|force) added."""
        from ..backends.tensorrt import build_argv

        base, extra = TRT_PRECISIONS[self.precision]
        opts = dataclasses.replace(options, builder_optimization_level=self.builder_optimization_level)
        argv = build_argv(onnx, engine, base, opts, timing_cache=timing_cache)
        at = argv.index("--skipInference")
        return argv[:at] + extra + (["--sparsity=enable"] if self.sparsity else []) + argv[at:]


def tensorrt_candidates(prof: TargetProfile) -> list[TensorRTCandidate]:
    """Every point of the profile's [tune.tensorrt] space (defined and checked here; not yet measured)."""
    t = prof.tune.tensorrt
    return [TensorRTCandidate(p, lvl, sp) for p, lvl, sp in itertools.product(t.precision, t.builder_optimization_level,
                                                                              t.sparsity)]


@dataclass(frozen=True)
class QNNCandidate:
    """One point of [tune.qnn]: the static quantization the context binary is built from, and the HTP
    performance mode it runs with (through the QNN backend's own options and provider options)."""

    activation_bits: int
    per_channel: bool
    htp_performance_mode: str

    @property
    def label(self) -> str:
        return (f"QNN {self.activation_bits}-bit activations {'per-channel' if self.per_channel else 'per-tensor'}, "
                f"HTP {self.htp_performance_mode}")

    def static(self, proj: "ProjectConfig", prof: TargetProfile) -> Any:
        """The target's static quantization with this width and per-channel (its own key: a shared file per point)."""
        from ..config import static_quant_for

        return dataclasses.replace(static_quant_for(proj, prof), per_channel=self.per_channel,
                                   activation_type="QUInt16" if self.activation_bits == 16 else "QUInt8")

    def board_provider_options(self, prof: TargetProfile) -> dict[str, str]:
        """The manifest's QNN EP options (backends.qnn.board_provider_options) with this performance mode."""
        from ..backends.qnn import board_provider_options, load_options

        options = load_options(prof.backend, str(prof.source))
        return board_provider_options(dataclasses.replace(options, performance_mode=self.htp_performance_mode))


def qnn_candidates(prof: TargetProfile) -> list[QNNCandidate]:
    """Every point of the profile's [tune.qnn] space (defined and checked here; not yet measured)."""
    q = prof.tune.qnn
    return [QNNCandidate(b, pc, m) for b, pc, m in itertools.product(q.activation_bits, q.per_channel,
                                                                     q.htp_performance_mode)]


def check_space(proj: "ProjectConfig", prof: TargetProfile) -> None:
    """Refuse, in one line naming the field, a [tune] the runtime or this dmsbuild cannot search."""
    if prof.runtime not in MEASURED_RUNTIMES:
        raise UserError(f"{prof.source}: `doit tune` measures runtime {', '.join(MEASURED_RUNTIMES)} targets; "
                        f"runtime {prof.runtime!r} has its search space defined ([tune.{prof.runtime}]) but is not measured yet",
                        hint="tune an ONNX Runtime CPU target (docs/tune.md, 'Runtimes')")


# --------------------------------------------------------------------------
# host side: build a recipe, gate it
# --------------------------------------------------------------------------
def recipe_path(proj: "ProjectConfig", recipe: Recipe, model_sha: str) -> Path:
    """``artifacts/common/tune-<key>.onnx`` (FP32 is the exported model itself)."""
    from ..convert.paths import Paths

    if recipe.precision == "fp32":
        return Paths.of(proj).fp32
    return Paths.of(proj).common / f"tune-{recipe.key(model_sha, proj.data.max_calibration_samples)}.onnx"


def build_recipe(proj: "ProjectConfig", prof: TargetProfile, recipe: Recipe, model_sha: str) -> Path:
    """The recipe's ONNX file, built once (each quantizer writes to a temporary name and renames)."""
    from ..config import DynamicQuantConfig, static_quant_for
    from ..convert.quantize import convert_fp16, quantize_dynamic_int8, quantize_static_qdq
    from ..convert.paths import Paths

    out = recipe_path(proj, recipe, model_sha)
    if out.is_file():
        return out
    fp32 = Paths.of(proj).fp32
    if recipe.precision == "fp16":
        convert_fp16(fp32, out)
    elif recipe.precision == "int8-dynamic":
        quantize_dynamic_int8(fp32, out, DynamicQuantConfig(per_channel=bool(recipe.per_channel),
                                                            weight_type=recipe.weight_type or "QInt8"))
    else:
        from ..convert.data import list_samples

        base = static_quant_for(proj, prof)
        changes: dict[str, Any] = {"per_channel": recipe.per_channel, "activation_type": recipe.activation_type,
                                   "weight_type": recipe.weight_type, "calibration_method": recipe.calibration_method,
                                   "method": "ptq"}
        names = {f.name for f in dataclasses.fields(base)}
        if "quant_format" in names:
            changes["quant_format"] = "QOperator" if recipe.precision == "int8-qoperator" else "QDQ"
        cfg = dataclasses.replace(base, **changes)
        calibration = list_samples(proj, "calibration", proj.data.max_calibration_samples)
        if recipe.mixed_precision:
            _build_mixed(proj, prof, recipe, model_sha, cfg, calibration, out)
        else:
            quantize_static_qdq(proj, fp32, out, cfg, calibration)
    return out


def _build_mixed(proj: "ProjectConfig", prof: TargetProfile, recipe: Recipe, model_sha: str, cfg: Any,
                 calibration: list[Path], out: Path) -> None:
    """The recipe with the fewest nodes kept in float that passes the host gate (dmsbuild.convert.mixed_precision ranks
    the nodes by the accuracy their quantization costs; node sets of the top 1, 2, 4, 8 are tried smallest
    first). None passing: the largest set is kept, and the gate reports it. The nodes go to ``<out>.nodes.json``."""
    from ..convert.quantize import quantize_static_qdq
    from ..convert.paths import Paths

    from ..convert import mixed_precision as api

    fp32 = Paths.of(proj).fp32
    plain = build_recipe(proj, prof, dataclasses.replace(recipe, mixed_precision=False, precision="int8-qdq"), model_sha)
    sets = api.fallback_candidates(api.rank_nodes(proj, prof, fp32, plain))
    if not sets:
        raise UserError(f"{plain}: no quantized node to keep in float; the mixed-precision candidate is the plain one")
    tmp = out.with_name(f".{out.stem}.mixed.onnx")
    for nodes in sorted(sets, key=len):
        quantize_static_qdq(proj, fp32, tmp, dataclasses.replace(cfg, nodes_to_exclude=sorted(set(nodes))), calibration)
        _, failed = host_gate(proj, prof, tmp)
        if not failed:
            break
    write_atomic(out.with_suffix(".nodes.json"), json.dumps({"nodes_to_exclude": sorted(set(nodes))}) + "\n")
    Paths.of(proj).eval_json(tmp).unlink(missing_ok=True)  # the kept file is evaluated under its own name
    os.replace(tmp, out)


def host_gate(proj: "ProjectConfig", prof: TargetProfile, path: Path) -> tuple[dict[str, Any], list[str]]:
    """(host evaluation vs FP32, the accuracy gate's failures): cached beside the shared artifacts' evaluations."""
    from ..convert.evaluate import evaluate_artifact, gate_failures
    from ..convert.paths import Paths

    p = Paths.of(proj)
    out = p.eval_json(path)
    if out.is_file() and out.stat().st_mtime >= path.stat().st_mtime:
        ev = json.loads(out.read_text())
    else:
        ev = evaluate_artifact(proj, path, p.validation, out)
    return ev, gate_failures(proj, prof, ev)


def accuracy_summary(ev: dict[str, Any]) -> dict[str, Any]:
    """The accuracy figures a choice is explained with: worst-head top-1 agreement and cosine vs FP32."""
    cos = [h["cosine"] for h in ev["heads"].values() if h.get("cosine") is not None]
    return {"min_top1_agreement": ev.get("min_top1_agreement"), "min_cosine": min(cos) if cos else None,
            "samples": ev.get("samples")}


# --------------------------------------------------------------------------
# board kinds and the measurement cache
# --------------------------------------------------------------------------
def board_kind(facts: dict[str, Any]) -> tuple[str, str]:
    """(key, label) of a board's kind from its facts: arch, CPU model, cores, ONNX Runtime, emulated or not."""
    kind = {k: facts.get(k) for k in ("arch", "cpu_model", "cpu_count", "onnxruntime")}
    kind["emulated"] = bool(facts.get("emulated"))
    label = f"{kind['arch']} {kind['cpu_model'] or 'unknown CPU'}, {kind['cpu_count']} cores"
    return _hash(kind, 12), label + (" (emulated board: this machine's CPU)" if kind["emulated"] else "")


def provenance(facts: dict[str, Any], board: str) -> str:
    """Where a tune figure came from, in the words of provenance.SOURCES."""
    from ..core.provenance import classify, label

    source = classify({"runtime": "onnxruntime", "provider": "CPUExecutionProvider"}, facts)
    return f"{label(source)}: measured on board {board}" if source != "emulated" else f"{label(source)}: board {board}"


def tune_dir(proj: "ProjectConfig", target: str) -> Path:
    return proj.artifacts / "tune" / target


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary name and rename: an interrupted tune never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def measurement_path(proj: "ProjectConfig", target: str, kind_key: str, cand_id: str, baseline_key: str) -> Path:
    return tune_dir(proj, target) / "measurements" / kind_key / f"{cand_id}-{baseline_key}.json"


# --------------------------------------------------------------------------
# on the board
# --------------------------------------------------------------------------
@dataclass
class Baseline:
    """The default artifact every candidate is compared with (the build's first, untuned artifact)."""

    name: str
    path: Path
    precision: str
    sha256: str
    threads: int
    providers: list[str]
    provider_options: list[dict[str, Any]]

    @property
    def key(self) -> str:
        return _hash({"sha256": self.sha256, "threads": self.threads, "providers": self.providers}, 10)


class BoardBench:
    """A scratch folder ``<deploy root>/tune/<id>/`` on one board: runner, reference, models, a manifest.

    It is never a release (``current`` is untouched) and is removed when the tune ends, interrupted or not."""

    def __init__(self, transport: "Transport", board: "Board", prof: TargetProfile, proj: "ProjectConfig",
                 build: dict[str, Any]) -> None:
        from ..transport import resolve_root

        self.transport, self.board, self.prof, self.proj, self.build = transport, board, prof, proj, build
        self.python = board.python
        self.dir = posixpath.join(resolve_root(transport, board, prof), "tune", uuid.uuid4().hex[:12])
        self.entries: dict[str, dict[str, Any]] = {}
        self.uploaded: set[str] = set()

    def _run(self, argv: list[str], timeout: float, what: str) -> Any:
        res = self.transport.run(argv, timeout=timeout)
        if not res.ok:
            raise UserError(f"board {self.board.name}: {what} failed (exit {res.exit_status}): {res.stderr_tail(1)}")
        return res

    def _put(self, local: Path, rel: str) -> None:
        if rel in self.uploaded:
            return
        remote = posixpath.join(self.dir, rel)
        self._run(["mkdir", "-p", "--", posixpath.dirname(remote)], 60, "creating the tune folder")
        self.transport.put(local, remote)
        self.uploaded.add(rel)

    def setup(self) -> dict[str, Any]:
        """Upload the runner and the reference; return the board's facts (from the runner: cores, CPU model)."""
        from .bench import probe_facts
        from ..ship.manifest import PACKAGE_DIR, SUPPORT_FILES, verify_subset
        from ..convert.paths import Paths

        for sf in SUPPORT_FILES:  # the release's own runner files, from where the manifest takes them
            if sf.release_path in ("runner/dms_bench.py", "runner/metrics.py"):
                self._put(PACKAGE_DIR / sf.source.removeprefix("package:"), sf.release_path)
        staging = tune_dir(self.proj, self.prof.name) / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        self._put(verify_subset(Paths.of(self.proj).reference, self.prof.bench.verify_samples, staging),
                  "verify/reference.npz")
        return probe_facts(self.transport, self.dir, self.python)

    def add(self, name: str, path: Path, precision: str, providers: list[str], provider_options: list[dict[str, Any]],
            session: dict[str, Any] | None) -> None:
        rel = f"models/{path.name}"
        self._put(path, rel)
        entry = {"name": name, "precision": precision, "kind": "onnx", "file": rel, "runtime": "onnxruntime",
                 "providers": providers, "provider_options": provider_options}
        if session:
            entry["session"] = session
        self.entries[name] = entry
        manifest = {"schema": 1, "project": self.build.get("project"), "target": self.prof.name,
                    "model": self.build.get("model"), "input": self.build.get("input"),
                    "outputs": self.build.get("outputs"), "artifacts": list(self.entries.values()),
                    "bench": {"warmup": 1, "iterations": 3, "threads": self.prof.bench.threads,
                              "verify_samples": self.prof.bench.verify_samples}}
        staging = tune_dir(self.proj, self.prof.name) / "staging" / f"manifest-{self.board.name}.json"
        write_atomic(staging, json.dumps(manifest, indent=1))
        self.uploaded.discard("manifest.json")
        self._put(staging, "manifest.json")

    def interleave(self, name: str, baseline: Baseline, cfg: TuneConfig, longer: int = 1) -> dict[str, Any]:
        """Candidate ``name`` vs the default and the A/A control (the default against a second session of
        itself), rotating blocks on the board, each session with its deployed settings and an idle pause
        before each side's block (runner --interleave --control, isolation ``gap``); ``longer`` multiplies the blocks and the time limit."""
        from ..core.results import load_json

        argv = [self.python, posixpath.join(self.dir, "runner/dms_bench.py"), "--release", self.dir,
                "--interleave", self.dir, "--artifact", name, "--baseline", baseline.name,
                "--blocks", str(cfg.blocks * longer), "--iterations", str(cfg.iterations), "--warmup", str(cfg.warmup),
                "--threads", str(baseline.threads), "--max-seconds", str(cfg.max_seconds * longer), "--control"]
        res = self._run(argv, cfg.max_seconds * longer * 2 + 300, f"timing {name} against {baseline.name}")
        samples = load_json(res.stdout, board=self.board.name, what="interleaved tune JSON")
        if not isinstance(samples, dict) or not isinstance(samples.get("old"), list):
            raise UserError(f"board {self.board.name}: the interleaved timing of {name} printed no sample blocks")
        return samples

    def output_check(self, name: str) -> dict[str, Any]:
        """The board's own output check of one artifact (the runner's verify vs the host FP32 reference)."""
        from ..core.results import load_json

        argv = [self.python, posixpath.join(self.dir, "runner/dms_bench.py"), "--release", self.dir,
                "--artifact", name]
        res = self.transport.run(argv, timeout=1800)
        doc = load_json(res.stdout, board=self.board.name, what="output check JSON") if res.stdout.strip() else None
        if not isinstance(doc, dict) or not doc.get("results"):
            raise UserError(f"board {self.board.name}: the output check of {name} failed (exit {res.exit_status}): "
                            f"{res.stderr_tail(1)}")
        return doc["results"][0]

    def close(self) -> None:
        try:
            self.transport.run(["rm", "-rf", "--", self.dir], timeout=120)
        except Exception:  # noqa: BLE001 - best effort: a dead connection leaves a scratch folder, nothing else
            pass


# --------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------
@dataclass
class Row:
    """One candidate on one board kind: its recipe, settings, host gate and (if measured) its ratio."""

    candidate: Candidate
    cand_id: str
    gate_failures: list[str] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    measurement: dict[str, Any] | None = None
    cached: bool = False
    skipped: str | None = None
    board_check: str | None = None  # None: not run; "pass" or the failure line

    @property
    def ratio(self) -> float | None:
        return self.measurement["ratio"] if self.measurement else None

    @property
    def speedup(self) -> float | None:
        return 1.0 / self.ratio if self.ratio else None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.cand_id, "label": self.candidate.label, "recipe": self.candidate.recipe.as_dict(),
                "runtime": self.candidate.settings.as_dict(), "gate_failures": self.gate_failures,
                "accuracy": self.accuracy, "measurement": self.measurement, "cached": self.cached,
                "skipped": self.skipped, "board_check": self.board_check}


def faster_and_passing(rows: list[Row]) -> list[Row]:
    """The candidates that may be chosen, fastest first: the whole CI of the latency ratio (candidate / default)
    below 1 (so the speed-up's CI lower bound is above 1) and the host accuracy gate passed."""
    ok = [r for r in rows if r.measurement and r.measurement["ci_high"] < 1.0 and not r.gate_failures]
    return sorted(ok, key=lambda r: r.ratio)


#: a candidate is measured longer (2x, then 4x, within the budget) until its speed-up interval is at most this
#: wide relative to its median, and its A/A control holds
TARGET_WIDTH = 0.10


def _needs_more(m: dict[str, Any]) -> bool:
    control = m.get("control") or {}
    return bool(control.get("problem")) or (m["ci_high"] - m["ci_low"]) / m["ratio"] > TARGET_WIDTH


def noisy_refusal(rows: list[Row]) -> str | None:
    """The one line that refuses a choice: a measured candidate's A/A control failed even after measuring longer."""
    from .regression import Control

    for r in rows:
        c = (r.measurement or {}).get("control")
        if c and c.get("problem"):
            return Control(c["ratio"], c["ci_low"], c["ci_high"], c.get("loadavg"), c["max_width"]).refusal("choose")
    return None


def contenders_of(rows: list[Row]) -> tuple[str | None, list[Row]]:
    """(the refusal line, []) when an A/A control failed; else (None, the candidates that may be chosen)."""
    refused = noisy_refusal(rows)
    return refused, ([] if refused else faster_and_passing(rows))


def head_to_head(contenders: list[Row], h: dict[str, Any]) -> list[Row]:
    """The final: ``h`` is the first contender timed against the second (ratio first / second with its CI).
    The runner-up leads when it is faster with its whole CI; the leader's measurement keeps the duel."""
    first, second, rest = contenders[0], contenders[1], contenders[2:]
    if h["ci_low"] > 1.0:
        first, second = second, first
        h = {**h, "ratio": 1 / h["ratio"], "ci_low": 1 / h["ci_high"], "ci_high": 1 / h["ci_low"]}
    first.measurement = {**(first.measurement or {}), "head_to_head": {
        "against": second.candidate.label, "ratio": h["ratio"], "ci_low": h["ci_low"], "ci_high": h["ci_high"]}}
    return [first, second, *rest]


def best_fp32(rows: list[Row]) -> Row | None:
    """The fastest measured FP32 setting (threads, graph level): how much of a speed-up is INT8, how much threads."""
    fp32 = [r for r in rows if r.measurement and r.candidate.recipe.precision == "fp32" and not r.gate_failures]
    return min(fp32, key=lambda r: r.ratio) if fp32 else None


def explain(row: Row | None, baseline: Baseline, cfg_conf: float, rows: list[Row] | None = None,
            refused: str | None = None) -> str:
    """The choice in one sentence: what the interval supports ("at least 1.12x faster, 95 % CI 1.12-1.31,
    median 1.21x") against the default, and against the best FP32 setting."""
    if refused:
        return f"{refused}: nothing chosen, the default stays"
    if row is None:
        return f"no candidate was faster than the default {baseline.precision} artifact with {cfg_conf:.0%} confidence " \
               "and passed the accuracy gate: the default stays"
    m = row.measurement or {}
    agreement = row.accuracy.get("min_top1_agreement")
    acc = f"agreement {100 * agreement:.1f}%" if agreement is not None else \
        f"cosine {row.accuracy.get('min_cosine') or 0:.4f}"
    # name the default's threads: on an oversubscribed board most of a "speed-up" can be the thread count alone
    threads = f"{baseline.threads} thread{'s' if baseline.threads != 1 else ''}" if baseline.threads else "default threads"
    conf = f"{m.get('confidence', cfg_conf) * 100:.0f} %"
    text = (f"{row.candidate.label}: at least {1 / m['ci_high']:.2f}x faster than the default ({baseline.precision}, "
            f"{threads}), {conf} CI {1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f}, median {1 / m['ratio']:.2f}x")
    fp32 = best_fp32(rows or [])
    if fp32 is not None and fp32 is not row:
        text += (f"; {fp32.ratio / row.ratio:.2f}x the best FP32 setting ({fp32.candidate.label}, "
                 f"{1 / fp32.ratio:.2f}x the default), median against median")
    h2h = m.get("head_to_head")
    if h2h:
        text += (f"; head to head against {h2h['against']}: {1 / h2h['ratio']:.2f}x "
                 f"(CI {1 / h2h['ci_high']:.2f}-{1 / h2h['ci_low']:.2f})")
    return f"{text}, {acc}"


@dataclass
class KindResult:
    kind_key: str
    kind_label: str
    board: str
    boards: list[str]
    provenance: str
    facts: dict[str, Any]
    rows: list[Row]
    chosen: Row | None
    sentence: str
    skipped: list[str]


def _baseline(proj: "ProjectConfig", prof: TargetProfile, build: dict[str, Any]) -> Baseline:
    entries = [a for a in build["artifacts"] if a.get("name") != TUNED_NAME]
    if not entries:
        raise UserError(f"{proj.artifacts / prof.name / 'build.json'}: no default artifact to compare with",
                        hint=f"rebuild: doit build target={prof.name}")
    a = entries[0]
    return Baseline(a["name"], proj.root / a["path"], a.get("precision") or a["name"], a["sha256"],
                    prof.bench.threads, list(a.get("providers") or ["CPUExecutionProvider"]),
                    list(a.get("provider_options") or [{}]))


def measure_ratio(samples: dict[str, Any], cfg: TuneConfig) -> dict[str, Any]:
    """The latency ratio candidate / default with its bootstrap CI (``regression.bootstrap_ratio``)."""
    import statistics

    from .regression import bootstrap_ratio

    from .regression import control_of

    ratio, low, high = bootstrap_ratio(samples["old"], samples["new"], confidence=cfg.confidence,
                                       resamples=cfg.resamples)
    control = control_of(samples, confidence=cfg.confidence, resamples=cfg.resamples)
    flat = lambda side: [s for b in samples[side] for s in b]  # noqa: E731
    return {"ratio": ratio, "ci_low": low, "ci_high": high, "confidence": cfg.confidence,
            "control": control.as_dict() if control else None, "isolation": samples.get("isolation"),
            "blocks": min(len(samples["old"]), len(samples["new"])), "iterations": cfg.iterations,
            "seconds": float(samples.get("seconds") or 0.0), "stopped_early": bool(samples.get("stopped_early")),
            "default_median_ms": statistics.median(flat("old")), "candidate_median_ms": statistics.median(flat("new"))}


def tune_kind(proj: "ProjectConfig", prof: TargetProfile, bench: BoardBench, facts: dict[str, Any],
              baseline: Baseline, model_sha: str, *, deadline: float, started: float, boards: list[str],
              log: Callable[[str], None] = print) -> KindResult:
    """Search one board kind on ``bench``'s board within the deadline; measurements are cached as they land."""
    from ..core.accuracy import failures as head_failures
    from .gates import accuracy_floors

    cfg = prof.tune
    kind_key, kind_label = board_kind(facts)
    where = provenance(facts, bench.board.name)
    bench.add(baseline.name, baseline.path, baseline.precision, baseline.providers, baseline.provider_options, None)
    all_settings = settings_space(cfg, facts.get("cpu_count"))
    recs = recipes(cfg)
    gate_cache: dict[Recipe, tuple[dict[str, Any], list[str], Path | None]] = {}
    rows: dict[Candidate, Row] = {}
    skipped: list[str] = []
    costs: list[float] = []

    def evaluate(cand: Candidate) -> Row:
        row = rows.get(cand)
        if row is not None:
            return row
        row = rows[cand] = Row(cand, cand.id(model_sha))
        cached = measurement_path(proj, prof.name, kind_key, row.cand_id, baseline.key)
        t0 = time.monotonic()
        estimate = sum(costs) / len(costs) if costs else 0.0
        if not cached.is_file() and t0 + estimate > deadline:
            row.skipped = f"budget: {cand.label} (about {estimate:.0f} s more would pass the budget)"
            skipped.append(cand.label)
            return row
        if cand.recipe not in gate_cache:
            try:
                path = build_recipe(proj, prof, cand.recipe, model_sha)
                ev, failed = host_gate(proj, prof, path)
            except UserError as exc:
                ev, failed, path = {}, [f"cannot be built: {first_line(exc)}"], None
            gate_cache[cand.recipe] = (ev, failed, path)
            row.accuracy, row.gate_failures = (accuracy_summary(ev) if ev else {}), failed
            if failed:
                log(f"  {cand.recipe.label}: fails the host accuracy gate, not measured: {failed[0]}")
        else:
            ev, failed, _ = gate_cache[cand.recipe]
            row.accuracy, row.gate_failures = (accuracy_summary(ev) if ev else {}), failed
        if row.gate_failures:
            return row
        if cached.is_file():
            row.measurement, row.cached = json.loads(cached.read_text()), True
            return row
        _, _, path = gate_cache[cand.recipe]
        name = f"c-{row.cand_id}"
        bench.add(name, path, cand.recipe.precision, baseline.providers, baseline.provider_options,
                  cand.settings.as_dict())
        m = measure_ratio(bench.interleave(name, baseline, cfg), cfg)
        longer = 1
        # adaptive: longer until the interval is narrow and the A/A control holds, while the budget allows
        while _needs_more(m) and longer < 4 and time.monotonic() + (time.monotonic() - t0) * 2 * longer < deadline:
            longer *= 2
            m = measure_ratio(bench.interleave(name, baseline, cfg, longer), cfg)
        m["rounds"] = longer
        m.update({"candidate": row.cand_id, "label": cand.label, "recipe": cand.recipe.as_dict(),
                  "runtime": cand.settings.as_dict(), "board": bench.board.name, "board_kind": kind_label,
                  "kind_key": kind_key, "provenance": where, "baseline": dataclasses.asdict(baseline) | {"path": str(baseline.path)},
                  "model_sha256": model_sha, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        write_atomic(cached, json.dumps(m, indent=1, sort_keys=True) + "\n")
        row.measurement = m
        costs.append(time.monotonic() - t0)
        log(f"  [{time.monotonic() - started:5.0f} s] {cand.label}: {1 / m['ratio']:.2f}x vs {baseline.precision} "
            f"(CI {1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f}) [{where}]")
        return row

    first = all_settings[0]
    if cfg.strategy == "exhaustive":
        for rec, st in itertools.product(recs, all_settings):
            evaluate(Candidate(rec, st))
    else:
        for rec in recs:  # stage 1: every recipe at the first (full-thread) setting
            evaluate(Candidate(rec, first))
        ranked = sorted((r for r in rows.values() if r.measurement and not r.gate_failures), key=lambda r: r.ratio)
        for best in ranked[:2]:  # stage 2: the runtime settings of the two fastest recipes
            for st in all_settings[1:]:
                evaluate(Candidate(best.candidate.recipe, st))

    floors = accuracy_floors(proj, prof)
    chosen = None
    refused, contenders = contenders_of(list(rows.values()))
    if refused:
        log(f"  {refused}")
    if len(contenders) >= 2 and time.monotonic() < deadline:  # the final: the two best head to head
        first, second = contenders[0], contenders[1]
        for r in (first, second):
            if f"c-{r.cand_id}" not in bench.entries:
                bench.add(f"c-{r.cand_id}", gate_cache[r.candidate.recipe][2], r.candidate.recipe.precision,  # type: ignore[arg-type]
                          baseline.providers, baseline.provider_options, r.candidate.settings.as_dict())
        against = dataclasses.replace(baseline, name=f"c-{second.cand_id}")
        h = measure_ratio(bench.interleave(f"c-{first.cand_id}", against, cfg), cfg)  # first / second
        contenders = head_to_head(contenders, h)
        lead, h2h = contenders[0], (contenders[0].measurement or {})["head_to_head"]
        log(f"  head to head: {lead.candidate.label} {1 / h2h['ratio']:.2f}x {h2h['against']} "
            f"(CI {1 / h2h['ci_high']:.2f}-{1 / h2h['ci_low']:.2f})")
    for row in contenders:
        name = f"c-{row.cand_id}"
        if name not in bench.entries:  # measured by an earlier tune (cached): upload it for the output check
            bench.add(name, gate_cache[row.candidate.recipe][2], row.candidate.recipe.precision,  # type: ignore[arg-type]
                      baseline.providers, baseline.provider_options, row.candidate.settings.as_dict())
        result = bench.output_check(name)
        verify = result.get("verify")
        problems = ([f"did not run: {result['error']}"] if result.get("error") else
                    head_failures(verify["heads"], floors, verify["samples"]) if verify else ["no output check ran"])
        row.board_check = "pass" if not problems else problems[0]
        if not problems:
            chosen = row
            break
        log(f"  {row.candidate.label}: fails the board's output check, not chosen: {problems[0]}")
    if skipped:
        log(f"  budget reached: {len(skipped)} candidate(s) not measured: {'; '.join(skipped)}")
    return KindResult(kind_key, kind_label, bench.board.name, boards, where, facts, list(rows.values()), chosen,
                      explain(chosen, baseline, cfg.confidence, list(rows.values()), refused), skipped)


# --------------------------------------------------------------------------
# the choice file: targets/<target>.tuned.toml
# --------------------------------------------------------------------------
def tuned_path(proj: "ProjectConfig", target: str) -> Path:
    from ..config import TARGETS_DIR

    return proj.root / TARGETS_DIR / f"{target}.tuned.toml"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(round(v, 6)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (same escapes)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def write_choice(proj: "ProjectConfig", prof: TargetProfile, results: list[KindResult], baseline: Baseline,
                 model_sha: str, model_file: str) -> Path:
    """Write the reviewable choice file (one [[choice]] per board kind) atomically."""
    lines = [f"# Written by `doit tune target={prof.name}`: review, commit, and `doit build`/`doit deploy` ship it.",
             "# Re-run `doit tune` after changing the model: a file tuned for another model is refused.",
             f"schema = {SCHEMA}", f"target = {_toml_value(prof.name)}", f"model = {_toml_value(model_file)}",
             f"model_sha256 = {_toml_value(model_sha)}",
             f"default_artifact = {_toml_value(baseline.name)}", ""]
    for res in results:
        c = res.chosen
        m = c.measurement if c else None
        lines += ["[[choice]]", f"board_kind = {_toml_value(res.kind_label)}", f"kind_key = {_toml_value(res.kind_key)}",
                  f"boards = {_toml_value(res.boards)}", f"provenance = {_toml_value(res.provenance)}",
                  f"sentence = {_toml_value(res.sentence)}", f"keep_default = {_toml_value(c is None)}"]
        if c is not None and m is not None:
            lines += [f"candidate = {_toml_value(c.cand_id)}", f"recipe = {_toml_value(c.candidate.recipe.as_dict())}",
                      f"runtime = {_toml_value(c.candidate.settings.as_dict())}",
                      f"speedup = {_toml_value(1 / m['ratio'])}",
                      f"speedup_ci = {_toml_value([1 / m['ci_high'], 1 / m['ci_low']])}",
                      f"confidence = {_toml_value(m['confidence'])}",
                      f"accuracy = {_toml_value({k: v for k, v in c.accuracy.items() if v is not None})}",
                      f"board_check = {_toml_value(c.board_check)}", f"measured_at = {_toml_value(m['measured_at'])}"]
        lines.append("")
    path = tuned_path(proj, prof.name)
    write_atomic(path, "\n".join(lines))
    return path


def read_tuned(proj: "ProjectConfig", prof: TargetProfile) -> dict[str, Any] | None:
    """The target's choice file, checked (None when there is none)."""
    from ..config import read_toml

    path = tuned_path(proj, prof.name)
    if not path.is_file():
        return None
    data = read_toml(path)
    if data.get("schema") != SCHEMA or data.get("target") != prof.name or not isinstance(data.get("choice"), list):
        raise UserError(f"{path}: not a schema-{SCHEMA} choice file of target '{prof.name}'",
                        hint=f"re-run `doit tune target={prof.name}`, or delete the file to ship the untuned artifacts")
    for i, c in enumerate(data["choice"]):
        if not c.get("keep_default") and not isinstance(c.get("recipe"), dict):
            raise UserError(f"{path}: choice[{i}] has no recipe", hint=f"re-run `doit tune target={prof.name}`")
    return data


def shipped_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    """The choice a target's release ships as its default: the one for most boards (a release is one per
    target; docs/tune.md says so). None: every board kind keeps the default."""
    picks = [c for c in data["choice"] if not c.get("keep_default")]
    return max(picks, key=lambda c: len(c.get("boards") or []), default=None)


def check_model(data: dict[str, Any], path: Path, model_sha: str, target: str) -> None:
    """A choice tuned for other model content is refused in one line, never silently replaced by the default."""
    if data.get("model_sha256") != model_sha:
        raise UserError(f"{path}: tuned for model sha256 {str(data.get('model_sha256'))[:12]}, but the model is now "
                        f"{model_sha[:12]}; re-run `doit tune target={target}` (or delete {path.name} to ship untuned)")


def tuned_recipe(choice: dict[str, Any]) -> tuple[Recipe, Settings]:
    r, s = choice["recipe"], choice["runtime"]
    return Recipe(**r), Settings(**s)


def build_tuned(proj: "ProjectConfig", prof: TargetProfile) -> None:
    """The `tuned:<target>` action: (re)build the chosen recipe's file and its host evaluation; no tuning."""
    from ..ship.manifest import sha256_file
    from ..convert.paths import Paths

    data = read_tuned(proj, prof)
    choice = shipped_choice(data) if data else None
    if choice is None:
        return
    p = Paths.of(proj)
    sha = sha256_file(p.fp32)
    check_model(data, tuned_path(proj, prof.name), sha, prof.name)  # type: ignore[arg-type]
    recipe, _ = tuned_recipe(choice)
    path = build_recipe(proj, prof, recipe, sha)
    host_gate(proj, prof, path)


# --------------------------------------------------------------------------
# report: Pareto plot per board kind, table of top candidates
# --------------------------------------------------------------------------
def _acc_metric(row: Row) -> tuple[float | None, str]:
    a = row.accuracy.get("min_top1_agreement")
    if a is not None:
        return 100 * a, "top-1 agreement with FP32, worst head (%)"
    return row.accuracy.get("min_cosine"), "cosine vs FP32, worst head"


def write_report(proj: "ProjectConfig", prof: TargetProfile, results: list[KindResult], baseline: Baseline,
                 load: str) -> Path:
    """artifacts/tune/<target>/report.md (+ pareto-<kind>.png): every candidate, the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tune_dir(proj, prof.name)
    lines = [f"# doit tune: target {prof.name}", "",
             f"Default artifact: {baseline.name} ({baseline.precision}, {baseline.threads or 'default'} threads). "
             f"Ratios are interleaved with it on the board (alternating blocks, bootstrap CI). Host load: {load}.", ""]
    for res in results:
        measured = sorted((r for r in res.rows if r.measurement), key=lambda r: r.ratio)
        lines += [f"## {res.kind_label}", "", f"Measured on: {res.provenance}; boards of this kind: {', '.join(res.boards)}.",
                  "", f"**Choice:** {res.sentence}.", "",
                  "| # | candidate | speed-up vs default | CI | accuracy | host gate | board check | cached |",
                  "|---:|---|---:|---|---|---|---|---|"]
        for i, r in enumerate(measured[:10], 1):
            m = r.measurement or {}
            metric, _ = _acc_metric(r)
            lines.append(f"| {i} | {r.candidate.label}{' **(chosen)**' if r is res.chosen else ''} | {r.speedup:.2f}x | "
                         f"{1 / m['ci_high']:.2f}-{1 / m['ci_low']:.2f} | {'n/a' if metric is None else format(metric, '.3g')} | "
                         f"{'pass' if not r.gate_failures else 'FAIL'} | {r.board_check or '-'} | {'yes' if r.cached else 'no'} |")
        failed = [r for r in res.rows if r.gate_failures and r.candidate.settings == res.rows[0].candidate.settings]
        if failed:
            lines += ["", "Not measured (host accuracy gate): " + "; ".join(f"{r.candidate.recipe.label}: {r.gate_failures[0]}"
                                                                            for r in failed)]
        if res.skipped:
            lines += ["", f"Not measured (budget): {'; '.join(res.skipped)}"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in res.rows:
            metric, name = _acc_metric(r)
            if r.measurement is None or metric is None:
                continue
            ax.scatter([metric], [r.speedup], color="tab:red" if r is res.chosen else "tab:blue",
                       marker="*" if r is res.chosen else "o", s=160 if r is res.chosen else 30, zorder=3)
            m = r.measurement
            ax.plot([metric, metric], [1 / m["ci_high"], 1 / m["ci_low"]], color="grey", lw=0.8)
            ax.annotate(r.candidate.label, (metric, r.speedup), fontsize=6)
        ax.axhline(1.0, color="black", lw=0.6, ls="--")
        ax.set_xlabel(_acc_metric(res.rows[0])[1] if res.rows else "accuracy")
        ax.set_ylabel(f"speed-up vs default {baseline.precision} (interleaved, CI)")
        ax.set_title(f"{prof.name}: {res.kind_label}\n{res.provenance}", fontsize=8)
        fig.tight_layout()
        png = out / f"pareto-{res.kind_key}.png"
        tmp = png.with_name(f".{png.name}.tmp")
        fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        os.replace(tmp, png)
        lines += ["", f"![Pareto plot: {res.kind_label}; {res.provenance}]({png.name})", ""]
    path = out / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    write_atomic(out / "tune.json", json.dumps({"target": prof.name, "load": load, "results": [
        {"kind": r.kind_label, "kind_key": r.kind_key, "board": r.board, "provenance": r.provenance,
         "sentence": r.sentence, "chosen": r.chosen.cand_id if r.chosen else None, "skipped": r.skipped,
         "rows": [x.as_dict() for x in r.rows]} for r in results]}, indent=1) + "\n")
    return path


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------
def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def run_tune(proj: "ProjectConfig", prof: TargetProfile, boards: list["Board"], *, budget_minutes: float | None = None,
             log: Callable[[str], None] = print) -> tuple[Path, list[KindResult]]:
    """Tune ``prof`` on ``boards`` (one board per kind measures); write the choice file and the report."""
    from ..ship.manifest import read_build, sha256_file
    from ..transport import open_transport
    from ..convert.paths import Paths

    check_space(proj, prof)
    _, build = read_build(proj, prof.name)
    baseline = _baseline(proj, prof, build)
    model_sha = sha256_file(Paths.of(proj).fp32)
    budget = (budget_minutes if budget_minutes is not None else prof.tune.budget_minutes) * 60.0
    started = time.monotonic()
    deadline = started + budget
    log(f"tune {prof.name}: default artifact {baseline.name}; budget {budget / 60:.1f} min; host load {load_average()}")
    results: list[KindResult] = []
    kinds: dict[str, list[str]] = {}
    opened: list[tuple[Any, BoardBench, dict[str, Any]]] = []
    try:
        for board in boards:
            transport = open_transport(board)
            try:
                transport.connect()
                bench = BoardBench(transport, board, prof, proj, build)
                facts = bench.setup()
            except UserError as exc:
                transport.close()
                log(f"  board {board.name}: skipped: {first_line(exc)}")
                continue
            key, _ = board_kind(facts)
            kinds.setdefault(key, []).append(board.name)
            if len(kinds[key]) == 1:
                opened.append((transport, bench, facts))
            else:
                bench.close()
                transport.close()
        if not opened:
            raise UserError(f"tune {prof.name}: no board could be reached; nothing was measured",
                            hint=f"check the boards (doit doctor target={prof.name})")
        for transport, bench, facts in opened:
            key, label = board_kind(facts)
            log(f"tune {prof.name}: board kind {label}: measuring on {bench.board.name} "
                f"(also for {', '.join(kinds[key][1:]) or 'no other board'})")
            results.append(tune_kind(proj, prof, bench, facts, baseline, model_sha, deadline=deadline,
                                     started=started, boards=kinds[key], log=log))
    finally:
        for transport, bench, _ in opened:
            bench.close()
            transport.close()
    model_file = str((build.get("model") or {}).get("file") or "model")
    path = write_choice(proj, prof, results, baseline, model_sha, model_file)
    report = write_report(proj, prof, results, baseline, load_average())
    for res in results:
        log(f"tune {prof.name}: {res.kind_label}: {res.sentence}")
    log(f"tune {prof.name}: choice written to {path} (review and commit it); report {report}; "
        f"{time.monotonic() - started:.0f} s of a {budget / 60:.1f} min budget")
    return path, results


__all__ = ["Candidate", "Recipe", "Settings", "board_kind", "check_model", "explain", "faster_and_passing",
           "read_tuned", "recipes", "run_tune", "settings_space", "shipped_choice", "write_choice"]
