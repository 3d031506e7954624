"""`doit tune`'s search space: the candidates (recipe x runtime settings) and what each runtime can search.

Everything runtime-specific about tuning is answered by ONE function, ``space_for(profile)``: which dimensions
a runtime's space has, whether `doit tune` measures it, how its measurements are labelled and which board facts
make a board kind for it. The recipe and settings types live with the build (``dmsbuild.build.tuned``:
the build ships the chosen one).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ...build.tuned import Recipe, Settings, short_hash
from ...config import TargetProfile, TuneConfig
from ...errors import UserError

if TYPE_CHECKING:
    from ...config import ProjectConfig



@dataclass(frozen=True)
class Candidate:
    recipe: Recipe
    settings: Settings

    def id(self, model_sha: str) -> str:
        """hash(model content, recipe, runtime settings): the cache key of everything about this candidate."""
        return short_hash({"model": model_sha, "recipe": self.recipe.as_dict(), "runtime": self.settings.as_dict()})

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

    def build_argv(self, onnx: str, engine: str, options: Any, timing_cache: str | None = None,
                   shapes: Any = None) -> list[str]:
        """The trtexec build command, through the backend's own ``build_argv`` (its workspace, timing cache,
        trtexec path); ``--best`` and ``--sparsity=enable`` (trtexec --help: spec ::= disable|enable|force) added."""
        from ...backends.tensorrt import build_argv

        base, extra = TRT_PRECISIONS[self.precision]
        opts = dataclasses.replace(options, builder_optimization_level=self.builder_optimization_level)
        argv = build_argv(onnx, engine, base, opts, timing_cache=timing_cache, shapes=shapes)  # dynamic dims: the profile
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
        from ...config import static_quant_for

        return dataclasses.replace(static_quant_for(proj, prof), per_channel=self.per_channel,
                                   activation_type="QUInt16" if self.activation_bits == 16 else "QUInt8")

    def board_provider_options(self, prof: TargetProfile) -> dict[str, str]:
        """The manifest's QNN EP options (backends.qnn.board_provider_options) with this performance mode."""
        from ...backends.qnn import board_provider_options, load_options

        options = load_options(prof.backend, str(prof.source))
        return board_provider_options(dataclasses.replace(options, performance_mode=self.htp_performance_mode))


def qnn_candidates(prof: TargetProfile) -> list[QNNCandidate]:
    """Every point of the profile's [tune.qnn] space (defined and checked here; not yet measured)."""
    q = prof.tune.qnn
    return [QNNCandidate(b, pc, m) for b, pc, m in itertools.product(q.activation_bits, q.per_channel,
                                                                     q.htp_performance_mode)]


@dataclass(frozen=True)
class TuneSpace:
    """What `doit tune` can search for one target's runtime (docs/tune.md, 'Runtimes')."""

    runtime: str
    #: dimension -> the values the profile's [tune] gives it (docs/tune.md lists them)
    dimensions: dict[str, list[Any]]
    #: the artifact keys a measurement is classified by (``measure.provenance.classify``); None: defined, not measured
    measured_as: dict[str, str] | None = None
    #: the points of a space that is defined but not measured yet (built per board when measured)
    points: Callable[[], list[Any]] | None = None
    #: the board facts that, besides arch, CPU and cores, make a board kind for this runtime (its version)
    kind_facts: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return self.measured_as is not None


def space_for(prof: TargetProfile) -> TuneSpace:
    """The ONE place that knows each runtime's tune space (the Backend interface's tune-space method replaces
    this body: the registry answers for the profile's runtime)."""
    t = prof.tune
    if prof.runtime == "qnn":
        return TuneSpace("qnn", {"activation_bits": t.qnn.activation_bits, "per_channel": t.qnn.per_channel,
                                 "htp_performance_mode": t.qnn.htp_performance_mode},
                         points=lambda: qnn_candidates(prof))
    if prof.runtime == "tensorrt":
        return TuneSpace("tensorrt", {"precision": t.tensorrt.precision,
                                      "builder_optimization_level": t.tensorrt.builder_optimization_level,
                                      "sparsity": t.tensorrt.sparsity},
                         points=lambda: tensorrt_candidates(prof))
    if prof.runtime == "onnxruntime":
        return TuneSpace("onnxruntime", {
            "precision": t.precision, "per_channel": t.per_channel, "activation_type": t.activation_type,
            "weight_type": t.weight_type, "calibration_method": t.calibration_method,
            "mixed_precision": t.mixed_precision, "intra_op_threads": t.intra_op_threads or ["1..cores"],
            "graph_optimization_level": t.graph_optimization_level, "execution_mode": t.execution_mode},
            measured_as={"runtime": "onnxruntime", "provider": "CPUExecutionProvider"}, kind_facts=("onnxruntime",))
    return TuneSpace(prof.runtime, {})


def space_description(prof: TargetProfile) -> dict[str, list[Any]]:
    """The dimensions `doit tune` searches for this target's runtime (docs/tune.md lists them)."""
    return space_for(prof).dimensions


def check_space(proj: "ProjectConfig", prof: TargetProfile) -> None:
    """Refuse, in one line naming the field, a [tune] the runtime or this dmsbuild cannot search."""
    space = space_for(prof)
    if not space.measured:
        defined = (f"has its search space defined ([tune.{prof.runtime}])" if space.dimensions
                   else "has no `doit tune` search space")
        raise UserError(f"{prof.source}: `doit tune` cannot tune this target: runtime {prof.runtime!r} {defined} "
                        "but is not measured yet",
                        hint="tune an ONNX Runtime CPU target (docs/tune.md, 'Runtimes')")


__all__ = ["Candidate", "QNNCandidate", "Recipe", "Settings", "TensorRTCandidate", "TuneSpace", "check_space",
           "qnn_candidates", "recipes", "settings_space", "space_description", "space_for", "tensorrt_candidates",
           "thread_counts"]
