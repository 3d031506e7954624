"""`doit tune` on a board: its kind, its scratch releases, and the interleaved timing of a candidate.

The board gets the candidates as releases rendered and placed by the same code as a deploy
(``ship.manifest.make_release`` renders the manifest template; ``ship.release.push`` sends the missing
objects, has the board verify their sha256 and stage ``releases/<id>``), with one difference: a scratch
release is never switched to (``current`` and the history are untouched) and is discarded when the tune ends.
Measurements are cached per (candidate, default artifact, board kind) under ``artifacts/tune/<target>/``.
"""
from __future__ import annotations

import dataclasses
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...convert.tuned import short_hash
from ...config import TargetProfile, TuneConfig
from ...errors import UserError

if TYPE_CHECKING:
    from ...config import ProjectConfig
    from ...ship.inventory import Board
    from ...ship.release import BoardLock
    from ...transport.base import Transport

def board_kind(facts: dict[str, Any], runtime_facts: tuple[str, ...]) -> tuple[str, str]:
    """(key, label) of a board's kind from its facts: arch, CPU model, cores, the runtime's version
    (``runtime_facts``: ``space.space_for(prof).kind_facts``), emulated or not."""
    kind = {k: facts.get(k) for k in ("arch", "cpu_model", "cpu_count", *runtime_facts)}
    kind["emulated"] = bool(facts.get("emulated"))
    label = f"{kind['arch']} {kind['cpu_model'] or 'unknown CPU'}, {kind['cpu_count']} cores"
    return short_hash(kind, 12), label + (" (emulated board: this machine's CPU)" if kind["emulated"] else "")


def provenance(facts: dict[str, Any], board: str, measured_as: dict[str, str]) -> str:
    """Where a tune figure came from, in the words of provenance.SOURCES (``measured_as``: the artifact keys
    the runtime's tune space names, ``space.space_for(prof).measured_as``)."""
    from ...core.provenance import classify, label

    source = classify(measured_as, facts)
    # "measured on board" only where the board's own processor ran it: on an emulated board the runtime (the HTP
    # simulator included) ran on this machine, and a test double's figure was generated, not measured
    on_board = not facts.get("emulated") and source != "double"
    return f"{label(source)}: measured on board {board}" if on_board else f"{label(source)}: board {board}"


def tune_dir(proj: "ProjectConfig", target: str) -> Path:
    return proj.artifacts / "tune" / target


def measurement_path(proj: "ProjectConfig", target: str, kind_key: str, cand_id: str, baseline_key: str) -> Path:
    return tune_dir(proj, target) / "measurements" / kind_key / f"{cand_id}-{baseline_key}.json"


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
        return short_hash({"sha256": self.sha256, "threads": self.threads, "providers": self.providers}, 10)


class BoardBench:
    """One board's scratch releases for `doit tune`: the build's own document with the default artifact and the
    candidates a measurement needs, rendered and placed through the release code (``ship.manifest.make_release``,
    ``ship.release.push(switch=False)``). ``dir`` is the placed one's folder (``<root>/releases/<id>``).

    A scratch release holds the default and the one or two candidates being timed or checked, so each
    placement sends and verifies little. The tune holds the board's deploy lock while it measures: a deploy
    waits (it would disturb the timing, and its garbage collection would remove the scratch release). A
    scratch release is never ``current`` nor in the history; each is discarded once the next is placed, the
    last when the tune ends, interrupted or not; one left by a lost connection goes at the board's next deploy."""

    def __init__(self, transport: "Transport", board: "Board", prof: TargetProfile, proj: "ProjectConfig",
                 build: dict[str, Any], baseline: "Baseline") -> None:
        self.transport, self.board, self.prof, self.proj, self.build = transport, board, prof, proj, build
        self.baseline = baseline
        self.python = board.python
        self.root = ""
        #: the placed scratch release's folder on the board (what the runner is pointed at)
        self.dir = ""
        #: every artifact the tune may place, by name (build.json entries): the default, then the candidates
        self.entries: dict[str, dict[str, Any]] = {}
        #: the artifacts of the placed scratch release
        self.placed_names: list[str] = []
        self.lock: "BoardLock | None" = None
        #: scratch release ids placed and not yet discarded
        self.placed: list[str] = []
        #: the scratch manifest's [bench]: the output check is a few runs (timing is the interleaved blocks')
        self.scratch_profile = dataclasses.replace(prof, bench=dataclasses.replace(prof.bench, warmup=1, iterations=3))

    def _run(self, argv: list[str], timeout: float, what: str) -> Any:
        res = self.transport.run(argv, timeout=timeout)
        if not res.ok:
            raise UserError(f"board {self.board.name}: {what} failed (exit {res.exit_status}): {res.stderr_tail(1)}")
        return res

    def setup(self) -> dict[str, Any]:
        """Take the board's lock, place the first scratch release (the default artifact, the runner, the
        reference); return the board's facts (from the release's runner: cores, CPU model)."""
        from ...measure.bench import probe_facts
        from ...ship.release import BoardLock
        from ...transport import resolve_root

        self.root = resolve_root(self.transport, self.board, self.prof)
        self.lock = BoardLock(self.transport, self.python, self.root, objects=[], heartbeat_s=self.board.io_timeout / 3,
                              doing="doit tune")
        self.lock.acquire()
        entry = next((a for a in self.build["artifacts"] if a.get("name") == self.baseline.name), None)
        if entry is None:
            raise UserError(f"{self.proj.artifacts / self.prof.name / 'build.json'}: no artifact "
                            f"'{self.baseline.name}' (the default artifact)", hint=f"rebuild: doit build target={self.prof.name}")
        self.entries[self.baseline.name] = entry
        self._ensure([])
        return probe_facts(self.transport, self.dir, self.python)

    def add(self, name: str, path: Path, precision: str, providers: list[str], provider_options: list[dict[str, Any]],
            session: dict[str, Any] | None, runtime: str | None = None, kind: str = "onnx") -> None:
        """A candidate artifact (``session``: its runtime settings) the board may be asked to run; it is placed
        when a measurement needs it. ``runtime``/``kind``: another runtime's candidate (a LiteRT .tflite, run by
        runner/litert_runner.py in the same interleaved harness); None: the default artifact's runtime."""
        if name in self.entries:
            return
        from ...board.release_agent import sha256_of

        sha = sha256_of(path, follow_symlinks=True)
        for other in self.entries.values():  # one file name, one content: FP32 is the default's own file
            if Path(other["path"]).name == path.name and other.get("sha256") == sha:
                path = self.proj.root / other["path"]
        runtime = runtime or self.entries[self.baseline.name].get("runtime") or self.prof.runtime
        self.entries[name] = {"name": name, "precision": precision, "kind": kind, "path": str(path), "sha256": sha,
                              "runtime": runtime, "providers": providers, "provider_options": provider_options,
                              "portable": True, **({"session": session} if session else {})}

    def _ensure(self, names: list[str]) -> None:
        """The placed scratch release has the default and ``names``; else place one that has (only the
        objects the board lacks are sent) and discard the one before."""
        from ...ship.manifest import make_release
        from ...ship.release import push

        want = list(dict.fromkeys([self.baseline.name, *names]))
        if self.dir and set(want) <= set(self.placed_names):
            return
        staging = tune_dir(self.proj, self.prof.name) / "staging" / self.board.name
        doc = {**self.build, "artifacts": [self.entries[n] for n in want]}
        release = make_release(self.proj, self.scratch_profile, build=(staging / "build.json", doc), staging=staging)
        answer, _, _ = push(self.transport, self.board, self.root, release, keep=self.prof.deploy.keep_releases,
                            project_name=self.proj.name, lock=self.lock, switch=False)
        self.dir, self.placed_names = str(answer["release_dir"]), want
        earlier = [rid for rid in self.placed if rid != release.release_id]
        self.placed = [release.release_id] if answer.get("scratch") else []
        self._discard(earlier)

    def _discard(self, release_ids: list[str]) -> None:
        if release_ids and self.lock is not None:
            self.lock.call("discard", {"root": self.root, "release_ids": release_ids})

    def interleave(self, name: str, baseline: "Baseline", cfg: TuneConfig, longer: int = 1) -> dict[str, Any]:
        """Candidate ``name`` vs the default and the A/A control (the default against a second session of
        itself), rotating blocks on the board, each side's block in a fresh process with its deployed settings
        (runner --interleave --control, isolation ``fresh``: the interval then covers the luck of the process and
        session a side lands in, which one session per side hides; docs/measurements.md "Session luck");
        ``longer`` multiplies the blocks and the time limit."""
        from ...core.results import load_json

        self._ensure([name, baseline.name])
        argv = [self.python, posixpath.join(self.dir, "runner/dms_bench.py"), "--release", self.dir,
                "--interleave", self.dir, "--artifact", name, "--baseline", baseline.name,
                "--blocks", str(cfg.blocks * longer), "--iterations", str(cfg.iterations), "--warmup", str(cfg.warmup),
                "--threads", str(baseline.threads), "--max-seconds", str(cfg.max_seconds * longer), "--control",
                "--isolation", TUNE_ISOLATION]
        res = self._run(argv, cfg.max_seconds * longer * 2 + 300, f"timing {name} against {baseline.name}")
        samples = load_json(res.stdout, board=self.board.name, what="interleaved tune JSON")
        if not isinstance(samples, dict) or not isinstance(samples.get("old"), list):
            raise UserError(f"board {self.board.name}: the interleaved timing of {name} printed no sample blocks")
        return samples

    def output_check(self, name: str) -> dict[str, Any]:
        """The board's own output check of one artifact (the runner's verify vs the host FP32 reference)."""
        from ...core.results import load_json

        self._ensure([name])
        argv = [self.python, posixpath.join(self.dir, "runner/dms_bench.py"), "--release", self.dir,
                "--artifact", name]
        res = self.transport.run(argv, timeout=1800)
        doc = load_json(res.stdout, board=self.board.name, what="output check JSON") if res.stdout.strip() else None
        if not isinstance(doc, dict) or not doc.get("results"):
            raise UserError(f"board {self.board.name}: the output check of {name} failed (exit {res.exit_status}): "
                            f"{res.stderr_tail(1)}")
        return doc["results"][0]

    def close(self) -> None:
        """Discard the scratch release and give the board's lock back (best effort: a dead connection leaves a
        scratch release the board's next deploy collects, and the board drops the lock by itself)."""
        try:
            self._discard(self.placed)
            self.placed = []
        except Exception:  # noqa: BLE001 - best effort, see above
            pass
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None


#: the runner's isolation for `doit tune` (runner/dms_bench.py ISOLATIONS): a fresh process per side and block
TUNE_ISOLATION = "fresh"


def measure_ratio(samples: dict[str, Any], cfg: TuneConfig) -> dict[str, Any]:
    """The latency ratio candidate / default with its bootstrap CI (``regression.bootstrap_ratio``)."""
    import statistics

    from ...measure.regression import bootstrap_ratio, control_of

    ratio, low, high = bootstrap_ratio(samples["old"], samples["new"], confidence=cfg.confidence,
                                       resamples=cfg.resamples)
    control = control_of(samples, confidence=cfg.confidence, resamples=cfg.resamples)
    flat = lambda side: [s for b in samples[side] for s in b]  # noqa: E731
    return {"ratio": ratio, "ci_low": low, "ci_high": high, "confidence": cfg.confidence,
            "control": control.as_dict() if control else None, "isolation": samples.get("isolation"),
            "blocks": min(len(samples["old"]), len(samples["new"])), "iterations": cfg.iterations,
            "seconds": float(samples.get("seconds") or 0.0), "stopped_early": bool(samples.get("stopped_early")),
            "default_median_ms": statistics.median(flat("old")), "candidate_median_ms": statistics.median(flat("new"))}


def merge_samples(first: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Two interleaved timings of the same sides as one: the blocks of each side, the orders, the seconds and
    the process counts added up; the load average at the first's start and the last's end."""
    out = {**first, "seconds": float(first.get("seconds") or 0.0) + float(more.get("seconds") or 0.0),
           "stopped_early": bool(first.get("stopped_early") or more.get("stopped_early")),
           "loadavg_end": more.get("loadavg_end")}
    for side in ("old", "new", "control", "orders"):
        if isinstance(first.get(side), list) and isinstance(more.get(side), list):
            out[side] = [*first[side], *more[side]]
    if isinstance(first.get("processes"), dict) and isinstance(more.get("processes"), dict):
        out["processes"] = {k: first["processes"].get(k, 0) + more["processes"].get(k, 0)
                            for k in {*first["processes"], *more["processes"]}}
    return out


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


__all__ = ["Baseline", "BoardBench", "board_kind", "load_average", "measure_ratio", "measurement_path",
           "merge_samples", "provenance", "tune_dir"]
