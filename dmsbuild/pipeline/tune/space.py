"""`doit tune`'s search space: the candidates (recipe x runtime settings) and what each runtime can search.

Everything runtime-specific about tuning is answered by ONE function, ``space_for(profile)``: which dimensions
a runtime's space has, whether `doit tune` measures it, how its measurements are labelled and which board facts
make a board kind for it. The recipe and settings types live with the build (``dmsbuild.convert.tuned``:
the build ships the chosen one).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...backends.base import Backend, TunePart
from ...backends.qnn import QNNCandidate, qnn_candidates
from ...backends.tensorrt import TensorRTCandidate, tensorrt_candidates
from ...convert.tuned import Recipe, Settings, short_hash
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


def settings_for(recipe: Recipe, cfg: TuneConfig, cores: int | None) -> list[Settings]:
    """A recipe's runtime settings, full threads first: ONNX Runtime's whole session space; another runtime's
    candidate (LiteRT) only its thread count (its interpreter has no graph level nor execution mode)."""
    if recipe.runtime is None:
        return settings_space(cfg, cores)
    return [Settings(t) for t in sorted(thread_counts(cfg, cores), reverse=True)]


def part_recipes(space: "TuneSpace") -> list[Recipe]:
    """The recipes of the other runtimes of the space (the runtime dimension) that can be searched here."""
    return [Recipe(p, runtime=part.runtime) for part in space.parts if part.missing is None for p in part.precisions]


def part_notes(space: "TuneSpace") -> list[str]:
    """One line per runtime of the space whose candidates are not searched here, saying why (never dropped silently)."""
    return [part.missing for part in space.parts if part.missing]


def part_of(prof: TargetProfile, recipe: Recipe, where: str) -> TunePart:
    """The runtime part of ``prof``'s space that ``recipe`` (a choice file's, ``where``) belongs to; a choice naming a
    runtime the target does not ship is refused in one line (never shipped as something else)."""
    space = space_for(prof)
    part = next((p for p in space.parts if p.runtime == recipe.runtime), None)
    if part is None or not part.precisions:
        ships = "" if part is None else f"; {part.enable}" if part.enable else ""
        raise UserError(f"{where}: the choice is a {recipe.runtime} artifact ({recipe.label}), but target {prof.name} "
                        f"ships no {recipe.runtime} artifacts ({prof.source}){ships}",
                        hint=f"re-run `doit tune target={prof.name}`, or delete {Path(where).name} to ship untuned")
    return part


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
    #: the other runtimes of the runtime dimension (``Backend.tune_parts``), each with why it is not searched, if so
    parts: tuple[TunePart, ...] = ()

    @property
    def measured(self) -> bool:
        return self.measured_as is not None


def space_for(prof: TargetProfile) -> TuneSpace:
    """The runtime's tune space, as its Backend answers it (``tune_space``, ``tune_measured``,
    ``tune_measured_as``, ``tune_kind_facts``, ``tune_points``): tune never branches on a runtime name."""
    from ...backends import get_backend

    backend = get_backend(prof.runtime, str(prof.source))
    points = backend.tune_points
    parts = backend.tune_parts(prof)
    return TuneSpace(prof.runtime, backend.tune_space(prof),
                     measured_as=dict(backend.tune_measured_as or {}) if backend.tune_measured else None,
                     points=None if type(backend).tune_points is Backend.tune_points else (lambda: points(prof)),
                     kind_facts=tuple(backend.tune_kind_facts) + tuple(f for p in parts if p.missing is None
                                                                       for f in p.kind_facts),
                     parts=tuple(parts))


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
           "part_notes", "part_of", "part_recipes", "qnn_candidates", "recipes", "settings_for", "settings_space", "space_description", "space_for", "tensorrt_candidates",
           "thread_counts"]
