"""The Backend interface: everything dmsbuild asks of a runtime, in one class per runtime.

Modelled on Polygraphy's runner base (one class per runtime, the same calls
for every one) and Olive's pass bases (a pass declares its own config and
search space). A runtime is:

- its line in ``dmsbuild/core/runtimes.py`` (the registry: name, module, and
  the facts code below this layer reads without importing the module);
- its module ``dmsbuild/backends/<name>.py`` defining ``BACKEND``, an instance
  of a ``Backend`` subclass whose ``name`` equals the registry's;
- its board driver when the release's runner (``runner/dms_bench.py``, which
  runs any artifact whose providers are ONNX Runtime execution providers)
  cannot run it: a host-side module the host drives the board's tool with
  (``trt_board.py``, ``snpe_board.py``) and/or board-side files under
  ``dmsbuild/board/``;
- its tests and its docs page.

Nothing else branches on its name (``tests/test_architecture.py`` fails when
something does). The methods, by stage:

build   ``validate(profile)``   its ``[backend]`` table checked (UserError naming the file and field); config
        cannot import backends, so ``plan`` calls it and `doit build`/`doit list` report it
        ``plan(project, profile, sources)`` what the target ships (ArtifactPlan, with the host build)
ship    ``host_checks(profiles, env)`` / ``board_checks(board, facts, profile)`` (`doit doctor`, the
        deploy's pre-flight reads the latter's "missing" lines)
        ``facts_probe(transport, python, backend_table)`` the runtime's own board probe (tool paths,
        versions) beyond the common facts of ``dmsbuild/board/runner/probe.py``
measure ``host_driven`` and ``bench_artifacts(...)`` how the board runs and times it
        ``measured_by`` the provenance of its figures (``provenance.classify`` reads it from the registry)
        ``state_tools`` the board-state tools its boards have (``board_state``)
tune    ``tune_space(profile)`` the dimensions `doit tune` searches; ``tune_measured`` whether it measures them;
        ``tune_parts(profile)`` the other runtimes a target ships beside its own, searched as the runtime
        dimension (an onnxruntime target's ``[backend] tflite``: LiteRT), and on such a runtime's backend
        ``tune_part``/``tune_build``/``tune_entry``/``tune_plan`` (its candidates' files, scratch entries, shipping)

Module bodies import no vendor SDK (``doit list`` imports nothing heavy); the
methods import what they need.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

from ..core.runtimes import RUNTIMES, Runtime
from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import ProjectConfig, TargetProfile

Level = Literal["ok", "warning", "missing"]


@dataclass
class ArtifactPlan:
    """One artifact a target ships (becomes an entry of build.json, docs/CONTRACTS.md §1)."""

    name: str
    precision: str
    kind: str  # onnx | qnn-context | trt-onnx | trt-engine | dlc | ort | tflite | edgetpu-tflite (each backend's own)
    path: Path
    source: Path  # the host-built ONNX it derives from (evaluated on the host as its accuracy proxy)
    runtime: str
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    provider_options: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    portable: bool = True
    extra_files: list[Path] = field(default_factory=list)
    #: writes ``path`` (and ``extra_files``) from ``source``; None: the artifact is a copy of ``source``
    build: Callable[[], None] | None = None
    #: settings whose change must rebuild it (JSON-able; fed to doit's config_changed)
    settings: dict[str, Any] = field(default_factory=dict)
    #: more input files of ``build`` (besides ``source``)
    file_dep: list[Path] = field(default_factory=list)
    #: ONNX Runtime session settings the board runs it with (manifest ``session``; chosen by `doit tune`)
    session: dict[str, Any] = field(default_factory=dict)
    #: the host evaluation of the artifact itself, written by ``build`` (None: ``source``'s, the accuracy proxy)
    eval_json: Path | None = None


@dataclass
class Check:
    """One `doit doctor` finding: what was checked, what was found, and what to do when it is missing."""

    where: str  # "host" or the board's name
    what: str
    level: Level
    found: str | None
    needed_by: str = ""
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok     ", "warning": "warning", "missing": "MISSING"}[self.level]
        found = self.found if self.found is not None else "not found"
        need = f" (needed by {self.needed_by})" if self.needed_by else ""
        text = f"{mark} {self.where}: {self.what}: {found}{need}"
        return text if self.level == "ok" or not self.fix else f"{text}\n          -> {self.fix}"


@dataclass
class HostEnv:
    """What the host checks may look at (hooks, so tests can describe a host)."""

    version_of: Callable[[str], str | None]
    which: Callable[[str], str | None]
    environ: Mapping[str, str] = field(default_factory=dict)


def major_minor(v: str | None) -> tuple[int, ...]:
    """(major, minor) of a version string; () when unknown."""
    if not v:
        return ()
    parts = []
    for p in v.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def profile_names(profiles: Sequence["TargetProfile"]) -> str:
    return ", ".join(p.name for p in profiles) or "-"


#: fixes shared by every runtime's board checks
BOARD_FIX = {
    "onnxruntime": "install onnxruntime on the board (pip install onnxruntime; aarch64 wheels are on PyPI)",
}


def board_onnxruntime(board: str, facts: Mapping[str, Any], need: str) -> Check:
    """The board's onnxruntime (the runner's runtimes need it; ``doctor.PREFLIGHT`` names it)."""
    ort = facts.get("onnxruntime")
    ok = bool(ort) and not str(ort).startswith("broken")  # installed but not importable (the probe says why)
    return Check(board, "onnxruntime", "ok" if ok else "missing", ort, need, BOARD_FIX["onnxruntime"])


def ort_tune_space(profile: "TargetProfile") -> dict[str, list[Any]]:
    """The ONNX Runtime space of [tune]: recipes and session settings (runtimes the runner runs share it)."""
    t = profile.tune
    return {"precision": t.precision, "per_channel": t.per_channel, "activation_type": t.activation_type,
            "weight_type": t.weight_type, "calibration_method": t.calibration_method,
            "mixed_precision": t.mixed_precision, "intra_op_threads": t.intra_op_threads or ["1..cores"],
            "graph_optimization_level": t.graph_optimization_level, "execution_mode": t.execution_mode}


@dataclass(frozen=True)
class TunePart:
    """Another runtime in a target's `doit tune` space (the runtime dimension): its artifacts are candidates
    beside the target's own. ``missing``: the one line saying why its candidates are not searched here (the
    target does not ship them, or the host lacks the converters); None: they are."""

    runtime: str
    #: the recipe precisions its candidates are built as (the tuner's ``Recipe.precision``)
    precisions: tuple[str, ...]
    missing: str | None = None
    #: how a profile enables it (the refusal of a choice file naming it on a profile that does not)
    enable: str = ""
    #: the board facts (its version) that, when it is searched, also make a board kind
    kind_facts: tuple[str, ...] = ()


class Backend(ABC):
    """A runtime: how its artifacts are planned, built, checked, run, timed, labelled and tuned."""

    #: the runtime's name: its key in ``core.runtimes.RUNTIMES`` (checked when the registry loads it)
    name: str = ""

    @property
    def info(self) -> Runtime:
        """Its registry line."""
        return RUNTIMES[self.name]

    # ------------------------------------------------------------------ build
    @abstractmethod
    def validate(self, profile: "TargetProfile") -> Any:
        """The profile's ``[backend]`` table checked and typed; a UserError names ``profile.source`` and the field.
        Cheap and SDK-free: `doit list` and `doit doctor` call it for every target."""

    @abstractmethod
    def plan(self, project: "ProjectConfig", profile: "TargetProfile", sources: dict[str, Path]) -> list["ArtifactPlan"]:
        """What the target ships (``dmsbuild/backends/__init__.py`` says what ``sources`` and a plan hold).
        Must stay cheap (task generators call it on every doit run): the host build is the plans' ``build``."""

    # ------------------------------------------------------------------ ship
    def host_checks(self, profiles: Sequence["TargetProfile"], env: HostEnv) -> list[Check]:
        """This machine's tools for building ``profiles`` (targets of this runtime); none by default."""
        return []

    def board_checks(self, board: str, facts: Mapping[str, Any], profile: "TargetProfile") -> list[Check]:
        """What a board needs to run this runtime's artifacts, from its facts (CONTRACTS §4; a missing
        component is null). A "missing" check whose ``what`` is in ``doctor.PREFLIGHT`` refuses a deploy."""
        return []

    def facts_probe(self, transport: Any, python: str, backend_table: Mapping[str, Any]) -> dict[str, Any]:
        """The runtime's own board probe before its board driver runs (tool paths, versions beyond the
        common facts of ``dmsbuild/board/runner/probe.py``); ``{}`` when the common facts say everything."""
        return {}

    #: its artifacts are bound to the board's arch/GPU even when shipped portable (engines built on the board):
    #: a board of another arch is "missing" in the doctor, not a warning
    arch_bound: bool = False

    # ------------------------------------------------------------------ measure
    @property
    def host_driven(self) -> bool:
        """True: the host drives the board's vendor tool (``bench_artifacts``); False: the release's runner
        (runner/dms_bench.py) runs and times the artifacts on the board itself."""
        return self.info.host_driven

    #: host-driven runtimes: the module of its board driver (``bench_artifacts``, ``probe``), imported by name
    #: when a board is benchmarked: the driver imports this backend's module, never the other way round
    board_driver: str | None = None

    def driver(self) -> Any:
        """The board driver module (host-driven runtimes)."""
        import importlib

        if self.board_driver is None:
            raise NotImplementedError(f"runtime {self.name!r} is run by the release's runner; it has no board driver")
        return importlib.import_module(self.board_driver)

    def bench_artifacts(self, transport: Any, release_dir: str, manifest: dict, entries: list[dict], *,
                        python: str, plan: dict, cache_root: Path) -> list[dict]:
        """Host-driven runtimes: run and time ``entries`` on the board; one result (CONTRACTS §3) per entry,
        a failure as that entry's ``error``. The board driver's ``bench_artifacts`` by default."""
        return self.driver().bench_artifacts(transport, release_dir, manifest, entries, python=python, plan=plan,
                                             cache_root=cache_root)

    @property
    def measured_by(self) -> str:
        """Its provenance: the tool that times it on a board ("runner" or the vendor tool). The label itself
        is ``measure.provenance.classify`` (below this layer: the stored results use it too), which reads the
        registry line's ``measured_by``: board-<tool>, a test double for a vendor tool on an emulated board,
        the emulated CPU for the runner on one."""
        return self.info.measured_by

    #: board-state tools its boards have (``measure.board_state``: power mode, clocks, power rails)
    state_tools: tuple[str, ...] = ()

    # ------------------------------------------------------------------ tune
    #: `doit tune` measures candidates of this runtime on its boards (the others' spaces are defined, shown
    #: and checked, not measured yet)
    tune_measured: bool = False
    #: the artifact keys a tune measurement is classified by (``core.provenance.classify``), when measured
    tune_measured_as: Mapping[str, str] | None = None
    #: the board facts that, besides arch, CPU and cores, make a board kind for this runtime (its version)
    tune_kind_facts: tuple[str, ...] = ()

    def tune_space(self, profile: "TargetProfile") -> dict[str, list[Any]]:
        """The dimensions `doit tune` searches for ``profile`` (docs/tune.md lists them), name -> values.

        Contract for the tuner (``pipeline/tune/space.space_for``): it calls this instead of branching on the
        runtime, shows the result (``doit tune`` prints the space) and refuses a target whose backend says
        ``tune_measured = False`` naming the measured runtimes; the values come from the profile's ``[tune]``
        tables, already validated by config. ``{}``: nothing to tune."""
        return {}

    def tune_parts(self, profile: "TargetProfile") -> list[TunePart]:
        """Other runtimes whose artifacts ``profile`` ships beside its own, measured by `doit tune` as the runtime
        dimension against the same default artifact (``pipeline/tune/space.space_for`` reads it); ``[]`` by default.
        A part that cannot be searched is returned with its ``missing`` line, so the tuner says so."""
        return []

    # the methods below: a runtime that is a part of another's tune space (LiteRT beside ONNX Runtime)
    def tune_build(self, project: "ProjectConfig", profile: "TargetProfile", recipe: Any, model_sha: str) -> Path:
        """Build ``recipe`` (its ``runtime`` is this backend) once, with its host evaluation at
        ``convert.paths.Paths.eval_json(path)`` (the host gate reads it); returns the file."""
        raise NotImplementedError(f"runtime {self.name!r} is not a part of a `doit tune` space")

    def tune_path(self, project: "ProjectConfig", recipe: Any, model_sha: str) -> Path:
        """Where ``tune_build`` puts ``recipe``'s file (the build's ``tuned:<target>`` task names it as its target)."""
        raise NotImplementedError(f"runtime {self.name!r} is not a part of a `doit tune` space")

    def tune_entry(self) -> dict[str, Any]:
        """The build.json fields (``kind``, ``providers``, ``provider_options``) of one of its tune candidates."""
        raise NotImplementedError(f"runtime {self.name!r} is not a part of a `doit tune` space")

    def tune_plan(self, name: str, recipe: Any, source: Path, out: Path, session: dict[str, Any]) -> "ArtifactPlan":
        """The chosen candidate (built at ``source`` by ``tune_build``) shipped as artifact ``name`` at ``out``."""
        raise NotImplementedError(f"runtime {self.name!r} is not a part of a `doit tune` space")

    def tune_points(self, profile: "TargetProfile") -> list[Any]:
        """Every point of a space that is defined but not measured yet (each with a ``label``), built and checked
        through this backend's own options; ``[]`` where the tuner enumerates the space itself (measured)."""
        return []


def check_registered(backend: Backend, name: str, module: str, registry: Mapping[str, str]) -> Backend:
    """``backend``, found as runtime ``name`` in ``module``, is a Backend of that name registered there (a UserError
    otherwise)."""
    if not isinstance(backend, Backend):
        raise UserError(f"{module}: BACKEND is {type(backend).__name__}, not a dmsbuild.backends.base.Backend",
                        hint="define BACKEND = <YourBackend>() in the runtime's module")
    if backend.name != name or registry.get(backend.name) != module:
        raise UserError(f"{module}: BACKEND.name is {backend.name!r}, but dmsbuild/core/runtimes.py registers "
                        f"{module} as {name!r}",
                        hint="make the class's name equal its registry line's name")
    return backend
