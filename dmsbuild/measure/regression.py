"""Is a slower median a regression, or noise? Re-measure old and new interleaved on the board, then decide.

One benchmark run is one draw from a noisy distribution: on a shared host the
same artifact measured 13 to 43 ms in successive deploys, and thermal limits
or another process do the same on boards. So when the latency gate sees a
ratio past ``gates.max_latency_regression``, the board runs the previous
release's artifact (kept under ``releases/``) and the new one in alternating
blocks in one process (``runner/dms_bench.py --interleave``): a load that
comes and goes hits both alike. The decision comes from a bootstrap
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
from .results import load_json

if TYPE_CHECKING:
    from ..config import ConfirmConfig
    from ..ship.transport.base import Transport

RUNNER = "runner/dms_bench.py"


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

    @property
    def sentence(self) -> str:
        ci = f"{self.confidence:.0%} CI {self.ci_low:.2f}-{self.ci_high:.2f}"
        how = (f"{self.blocks} interleaved block pairs x {self.iterations} inferences vs release "
               f"{self.previous_release}, {self.seconds:.0f} s" + (", time limit reached" if self.stopped_early else ""))
        if self.confirmed:
            return f"regression confirmed: {self.ratio:.2f}x ({ci}) > allowed {self.allowed:.2f}x ({how})"
        return f"within noise: {self.ratio:.2f}x ({ci}), not a regression past {self.allowed:.2f}x ({how})"

    def as_dict(self) -> dict:
        return {**asdict(self), "sentence": self.sentence}


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
    return Decision(
        artifact=str(samples.get("artifact")), confirmed=low > allowed, ratio=ratio, ci_low=low, ci_high=high,
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
    argv = [python, posixpath.join(release_dir, RUNNER), "--release", release_dir, "--interleave", previous,
            "--artifact", artifact, "--blocks", str(cfg.blocks), "--iterations", str(cfg.iterations),
            "--warmup", str(cfg.warmup), "--threads", str(threads), "--max-seconds", str(cfg.max_seconds)]
    # bounded: the runner stops after the pair that crosses max_seconds; loading two sessions comes on top
    res = transport.run(argv, timeout=cfg.max_seconds * 2 + 300)
    if not res.ok:
        raise UserError(f"board {transport.name}: re-measuring {artifact} against release {previous_release} failed "
                        f"(exit {res.exit_status}): {res.stderr_tail(1)}")
    samples = load_json(res.stdout, board=transport.name, what="interleaved re-measure JSON")
    if not isinstance(samples, dict) or not isinstance(samples.get("old"), list) or not isinstance(samples.get("new"), list):
        raise UserError(f"board {transport.name}: the interleaved re-measure printed {json.dumps(samples)[:80]}, "
                        "not old/new sample blocks")
    try:
        return decide(samples, allowed=allowed, confidence=cfg.confidence, resamples=cfg.resamples,
                      previous_release=previous_release, iterations=cfg.iterations)
    except (ValueError, TypeError) as exc:
        raise UserError(f"board {transport.name}: the interleaved re-measure of {artifact} is unusable ({exc})") from None


__all__ = ["Decision", "bootstrap_ratio", "confirm", "decide", "previous_release_dir"]
