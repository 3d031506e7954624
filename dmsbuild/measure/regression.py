"""Is a slower median a regression, or noise? Re-measure old and new interleaved on the board, then decide.

One benchmark run is one draw from a noisy distribution: on a shared host the
same artifact measured 13 to 43 ms in successive deploys, and thermal limits
or another process do the same on boards. So when the latency gate sees a
ratio past ``gates.max_latency_regression``, the board runs the previous
release's artifact (kept under ``releases/``) and the new one in alternating
blocks (``runner/dms_bench.py --interleave``, isolation ``gap``: deployed session
settings and an idle pause before each side's block, so neither side's thread
pool spins into the other's timing), with a
third side, the previous artifact again (the A/A control): a load that comes
and goes hits all alike, and a control whose interval excludes 1.00 or is
wider than ``MAX_CONTROL_WIDTH`` says the board is too noisy to judge (the
re-measure runs once more, twice as long, then refuses and the release
stays), unless the slowdown clears the allowed ratio even divided by the
control's upper bound (a 5x regression is not hidden by 20 % of noise). The decision comes from a bootstrap
confidence interval of the ratio of medians (new / old):

* confirmed when the whole interval lies above the allowed ratio
  ("regression confirmed: 1.42x (95% CI 1.35-1.50)");
* otherwise within noise ("within noise: 1.08x (95% CI 0.91-1.31), not a
  regression"): the release stays.

The bootstrap is hierarchical: it resamples block pairs (keeping each old
block with the new block measured next to it, so slow phases stay paired)
and then the samples inside each chosen block. It is a few lines of numpy
(vectorised over the resamples); scipy.stats.bootstrap would resample
samples or pairs but not both levels, and would add scipy to the host
dependencies for one function.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import UserError
from ..core.results import load_json

if TYPE_CHECKING:
    from ..config import ConfirmConfig
    from ..transport.base import Transport

RUNNER = "runner/dms_bench.py"
#: the widest A/A control interval (high - low of baseline-vs-itself) a board may show and still be judged;
#: wider, or excluding 1.00, and the board is too noisy: measure longer once, then refuse (docs/measurements.md)
MAX_CONTROL_WIDTH = 0.20


@dataclass
class Control:
    """The A/A control of one interleaved measurement: the baseline timed against a second session of itself.
    A harness without bias and a quiet board give 1.00x inside a narrow interval."""

    ratio: float
    ci_low: float
    ci_high: float
    loadavg: float | None
    max_width: float = MAX_CONTROL_WIDTH

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low

    @property
    def problem(self) -> str | None:
        """Why this control says the board cannot be judged now, else None."""
        if not self.ci_low <= 1.0 <= self.ci_high:
            return f"its interval {self.ci_low:.2f}-{self.ci_high:.2f} excludes 1.00"
        if self.width > self.max_width:
            return f"its interval {self.ci_low:.2f}-{self.ci_high:.2f} is {self.width:.2f} wide (> {self.max_width:.2f})"
        return None

    def refusal(self, what: str) -> str:
        """The one line a refusal prints: the control, its width and the load average."""
        load = f"{self.loadavg:.2f}" if self.loadavg is not None else "unknown"
        return (f"board too noisy to {what}: the A/A control (the baseline against itself) came out "
                f"{self.ratio:.2f}x and {self.problem} after measuring longer; load average {load}, "
                f"control width {self.width:.2f}")

    def as_dict(self) -> dict:
        return {**asdict(self), "width": self.width, "problem": self.problem}


def control_of(samples: dict, *, confidence: float, resamples: int, max_width: float = MAX_CONTROL_WIDTH) -> Control | None:
    """The A/A control of runner samples that carry a ``control`` side (``--control``), else None."""
    if not isinstance(samples.get("control"), list) or len(samples["control"]) < 2:
        return None
    ratio, low, high = bootstrap_ratio(samples["old"], samples["control"], confidence=confidence, resamples=resamples)
    loads = [v for v in (samples.get("loadavg_start"), samples.get("loadavg_end")) if isinstance(v, (int, float))]
    return Control(ratio, low, high, max(loads) if loads else None, max_width)


def detectable_slowdown(allowed: float, ratio: float, ci_low: float) -> float:
    """The smallest slowdown this measurement would have confirmed: the interval's lower side scales with the
    ratio, so a true ratio r is confirmed when r * (ci_low / ratio) > allowed."""
    return allowed * ratio / ci_low if ci_low > 0 else float("inf")


@dataclass
class Decision:
    """The verdict on one suspected regression (what the progress line, the report and the rollout JSON show)."""

    artifact: str
    confirmed: bool
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    allowed: float
    blocks: int
    iterations: int
    seconds: float
    old_median_ms: float
    new_median_ms: float
    previous_release: str
    stopped_early: bool = False
    #: the A/A control (``Control.as_dict``); None for a runner without ``--control``
    control: dict | None = None
    #: why no verdict: the control says the board is too noisy even after measuring longer (the release stays)
    refused: str | None = None
    isolation: str | None = None

    @property
    def detectable(self) -> float:
        """The gate's power at this noise: the smallest slowdown this measurement could have confirmed."""
        return detectable_slowdown(self.allowed, self.ratio, self.ci_low)

    @property
    def sentence(self) -> str:
        ci = f"{self.confidence:.0%} CI {self.ci_low:.2f}-{self.ci_high:.2f}"
        how = (f"{self.blocks} interleaved block pairs x {self.iterations} inferences vs release "
               f"{self.previous_release}, {self.seconds:.0f} s" + (", time limit reached" if self.stopped_early else ""))
        if self.control:
            how += f"; A/A control {self.control['ci_low']:.2f}-{self.control['ci_high']:.2f}"
        power = f"; this measurement could detect a slowdown of {self.detectable:.2f}x or more"
        if self.refused:
            return f"not judged: {self.refused}; the release stays ({ci}, {how})"
        if self.confirmed:
            return f"regression confirmed: {self.ratio:.2f}x ({ci}) > allowed {self.allowed:.2f}x ({how})"
        return f"within noise: {self.ratio:.2f}x ({ci}), not a regression past {self.allowed:.2f}x ({how}{power})"

    def as_dict(self) -> dict:
        return {**asdict(self), "sentence": self.sentence, "detectable": self.detectable}


def bootstrap_ratio(old: list[list[float]], new: list[list[float]], *, confidence: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(median(new) / median(old), CI low, CI high) by a two-level bootstrap over paired blocks and their samples."""
    import numpy as np

    pairs = min(len(old), len(new))
    if pairs < 2:
        raise ValueError("the bootstrap needs at least 2 block pairs")
    width = min(min(len(b) for b in old[:pairs]), min(len(b) for b in new[:pairs]))
    o = np.asarray([b[:width] for b in old[:pairs]], dtype=np.float64)
    n = np.asarray([b[:width] for b in new[:pairs]], dtype=np.float64)
    point = float(np.median(n) / np.median(o))
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, pairs, size=(resamples, pairs))  # the same block pairs for old and new
    within_o = rng.integers(0, width, size=(resamples, pairs, width))
    within_n = rng.integers(0, width, size=(resamples, pairs, width))
    mo = np.median(o[blocks[:, :, None], within_o].reshape(resamples, -1), axis=1)
    mn = np.median(n[blocks[:, :, None], within_n].reshape(resamples, -1), axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(mn / mo, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def decide(samples: dict, *, allowed: float, confidence: float, resamples: int, previous_release: str,
           iterations: int) -> Decision:
    """A ``Decision`` from the runner's interleaved samples (``{"old": [[ms...]...], "new": [...], ...}``)."""
    import numpy as np

    ratio, low, high = bootstrap_ratio(samples["old"], samples["new"], confidence=confidence, resamples=resamples)
    control = control_of(samples, confidence=confidence, resamples=resamples)
    refused = control.refusal("judge a regression") if control is not None and control.problem else None
    if refused and min(low, low / control.ci_high) > allowed:  # type: ignore[union-attr]
        # a slowdown past anything the noisy control can explain: confirmed all the same (and only then: a
        # control below 1.00 must not turn a refusal into "within noise")
        refused = None
    return Decision(
        artifact=str(samples.get("artifact")), confirmed=low > allowed and refused is None, ratio=ratio, ci_low=low,
        ci_high=high, control=control.as_dict() if control else None, refused=refused,
        isolation=samples.get("isolation"),
        confidence=confidence, allowed=allowed, blocks=min(len(samples["old"]), len(samples["new"])),
        iterations=iterations, seconds=float(samples.get("seconds") or 0.0),
        old_median_ms=float(np.median([s for b in samples["old"] for s in b])),
        new_median_ms=float(np.median([s for b in samples["new"] for s in b])),
        previous_release=previous_release, stopped_early=bool(samples.get("stopped_early")))


def previous_release_dir(release_dir: str, previous_release: str) -> str:
    """``<root>/releases/<previous>`` for ``<root>/releases/<id>`` or ``<root>/current``."""
    from ..backends.trt_board import engines_dir  # <root>/engines: the same root computation

    return posixpath.join(posixpath.dirname(engines_dir(release_dir)), "releases", previous_release)


def confirm(transport: "Transport", *, release_dir: str, previous_release: str, artifact: str, python: str,
            cfg: "ConfirmConfig", allowed: float, threads: int = 0) -> Decision:
    """Re-measure ``artifact`` of the previous and the new release interleaved on the board, and decide.

    Raises ``UserError`` (one line: why no re-measure was possible) when the
    previous release is gone from the board or the runner fails; the caller
    then keeps the first run's verdict and says so.
    """
    previous = previous_release_dir(release_dir, previous_release)
    if not transport.run(["test", "-f", posixpath.join(previous, "manifest.json")], timeout=60).ok:
        raise UserError(f"board {transport.name}: release {previous_release} is no longer on the board "
                        f"({previous}); the suspected regression could not be re-measured")
    decision = None
    for longer in (1, 2):  # a control that says "too noisy": measure once more, twice as long, then refuse
        argv = [python, posixpath.join(release_dir, RUNNER), "--release", release_dir, "--interleave", previous,
                "--artifact", artifact, "--blocks", str(cfg.blocks * longer), "--iterations", str(cfg.iterations),
                "--warmup", str(cfg.warmup), "--threads", str(threads), "--max-seconds", str(cfg.max_seconds * longer),
                "--control"]
        # bounded: the runner stops after the block that crosses max_seconds; loading the sessions comes on top
        res = transport.run(argv, timeout=cfg.max_seconds * longer * 2 + 300)
        if not res.ok:
            raise UserError(f"board {transport.name}: re-measuring {artifact} against release {previous_release} "
                            f"failed (exit {res.exit_status}): {res.stderr_tail(1)}")
        samples = load_json(res.stdout, board=transport.name, what="interleaved re-measure JSON")
        if not isinstance(samples, dict) or not isinstance(samples.get("old"), list) or not isinstance(samples.get("new"), list):
            raise UserError(f"board {transport.name}: the interleaved re-measure printed {json.dumps(samples)[:80]}, "
                            "not old/new sample blocks")
        try:
            decision = decide(samples, allowed=allowed, confidence=cfg.confidence, resamples=cfg.resamples,
                              previous_release=previous_release, iterations=cfg.iterations)
        except (ValueError, TypeError) as exc:
            raise UserError(f"board {transport.name}: the interleaved re-measure of {artifact} is unusable ({exc})") from None
        if decision.refused is None:
            break
    return decision


__all__ = ["Control", "Decision", "MAX_CONTROL_WIDTH", "bootstrap_ratio", "confirm", "control_of", "decide",
           "detectable_slowdown", "previous_release_dir"]
