"""Promise class: every gate rule at its boundary (issue 25, item 1).

Generated, not hand-picked: hypothesis draws the floor (or the allowed ratio, or the measured samples) and
each rule is checked just inside and just outside its own limit, computed from the rule's definition:

* the accuracy judge (``board/runner/judge.py``, shared by the build gate, the on-board gate and an OTA
  install): top-1 drop, labelled-accuracy drop, mean cosine, SQNR; every metric of ``accuracy.METRICS``;
* the latency gate on a board's results (``measure/gates.check_latency``) and the rollout health gate
  (``ship/fleet.standard_gate``): a ratio at the limit passes, one past it fails;
* the noise-aware regression decision (``measure/regression.decide``): confirmed only when the *whole*
  confidence interval lies above the allowed ratio. An interval that straddles the limit never confirms,
  even when the point ratio is past it; the A/A control's two refusal rules and its "past any noise" override.

Each rule was shown to fail on a broken copy of its key line (docs/testing.md, "Promise classes";
scripts/mutation.py names them ``promise-*``).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from dmsbuild.board.runner.judge import head_failures
from dmsbuild.core.accuracy import METRICS, AccuracyFloors
from dmsbuild.measure.gates import check_latency
from dmsbuild.measure.regression import MAX_CONTROL_WIDTH, Control, bootstrap_ratio, control_of, decide
from dmsbuild.core.results import ResultStore
from dmsbuild.ship.fleet import BoardOutcome, standard_gate
from tests.bench_docs import document, result

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 1e-6  # "just": well above the judge's 1e-9 tolerance, far below any floor a user writes
#: floors out of reach, so only the metric under test can fail
OPEN = {"max_accuracy_drop": 1.0, "min_cosine": -1.0, "min_sqnr_db": -1e9}


def _floors(metric: str, value: float) -> AccuracyFloors:
    return AccuracyFloors.uniform(**{**OPEN, metric: value}, source="test")


def _metrics(**over) -> dict:
    return {"top1_agreement": 1.0, "cosine": 1.0, "sqnr_db": None, "degenerate": None, **over}


#: for each floor, the head metrics that sit at ``floor`` moved by ``delta`` towards failing (delta > 0 fails)
AT_FLOOR = {
    "max_accuracy_drop": [
        ("top-1 agreement", lambda f, d: _metrics(top1_agreement=1.0 - f - d)),
        ("labelled accuracy", lambda f, d: _metrics(labelled={"accuracy": 0.99 - f - d},
                                                     labelled_fp32={"accuracy": 0.99})),
    ],
    "min_cosine": [("cosine", lambda f, d: _metrics(cosine=f - d))],
    "min_sqnr_db": [("SQNR", lambda f, d: _metrics(sqnr_db=f - d))],
}
FLOOR_RANGE = {"max_accuracy_drop": (0.0, 0.5), "min_cosine": (0.5, 0.9999), "min_sqnr_db": (-10.0, 60.0)}


def test_every_accuracy_metric_has_a_boundary_rule():
    """A new floor in ``accuracy.METRICS`` without a boundary rule here fails: it is covered by default or not at all."""
    assert set(AT_FLOOR) == set(METRICS) == set(FLOOR_RANGE)


@pytest.mark.parametrize("metric, what, at", [(m, w, f) for m, rules in AT_FLOOR.items() for w, f in rules],
                         ids=[f"{m}-{w}" for m, rules in AT_FLOOR.items() for w, _ in rules])
@SETTINGS
@given(data=st.data())
def test_accuracy_floor_passes_at_the_floor_and_fails_just_past_it(metric, what, at, data):
    low, high = FLOOR_RANGE[metric]
    floor = data.draw(st.floats(low, high, allow_nan=False), label=metric)
    floors = _floors(metric, floor)
    head = floors.for_head("h")
    assert head_failures("h", at(floor, 0.0), head, 100) == [], (metric, floor)
    assert head_failures("h", at(floor, -EPS), head, 100) == [], (metric, floor)
    past = head_failures("h", at(floor, EPS), head, 100)
    assert len(past) == 1 and what in past[0] and f"test {metric}" in past[0], (metric, floor, past)


@SETTINGS
@given(ratio=st.floats(1.01, 4.0), old=st.floats(0.05, 500.0))
def test_board_latency_gate_at_and_just_past_the_allowed_ratio(ratio, old):
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp) / "r.sqlite")
        base = document("r1", [result("fp32", old)])
        store.add(base, board="b", target="t")
        stored = base["results"][0]["latency_ms"]["median"]
        for factor, fails in ((1.0 - EPS, False), (1.0 + EPS, True)):
            doc = document("r2", [result("fp32", old)])
            doc["results"][0]["latency_ms"]["median"] = stored * ratio * factor
            got = check_latency(doc, board="b", target="t", store=store, max_ratio=ratio)
            assert bool(got) == fails, (ratio, factor, got)


@SETTINGS
@given(ratio=st.floats(1.01, 4.0), old=st.floats(0.05, 500.0))
def test_health_gate_at_and_just_past_the_allowed_ratio(ratio, old):
    g = standard_gate(ratio)

    def outcome(ms: float) -> BoardOutcome:
        return BoardOutcome("x", True, verified=True, output_check=True, latency_ms=ms, previous_latency_ms=old)

    assert g(None, outcome(old * ratio * (1 - EPS))).ok
    assert not g(None, outcome(old * ratio * (1 + EPS))).ok


# ---------------------------------------------------------------- the interval rule of the regression decision
CONF, RESAMPLES = 0.95, 300


def _blocks(rng, median: float, spread: float, load) -> list[list[float]]:
    return [list(median * f * (1 + spread * rng.standard_normal(12))) for f in load]


@st.composite
def interleaved(draw, control: bool = False):
    """Runner-shaped samples: ``blocks`` pairs with a shared per-pair load, a slowdown and some noise."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    blocks = draw(st.integers(3, 8), label="blocks")
    slowdown = draw(st.floats(0.8, 3.0), label="slowdown")
    spread = draw(st.floats(0.01, 0.3), label="spread")
    load = rng.uniform(1.0, 1.5, size=blocks)
    s = {"artifact": "fp32", "old": _blocks(rng, 5.0, spread, load), "new": _blocks(rng, 5.0 * slowdown, spread, load),
         "seconds": 1.0}
    if control:
        s["control"] = _blocks(rng, 5.0, draw(st.floats(0.3, 0.8), label="control spread"), load)
    return s


def _decide(samples: dict, allowed: float):
    return decide(samples, allowed=allowed, confidence=CONF, resamples=RESAMPLES, previous_release="old", iterations=12)


@SETTINGS
@given(samples=interleaved())
def test_only_an_interval_wholly_above_the_limit_confirms(samples):
    ratio, low, high = bootstrap_ratio(samples["old"], samples["new"], confidence=CONF, resamples=RESAMPLES)
    assume(low < ratio < high and low > 0)
    cases = [
        (low * (1 - EPS), True),             # the whole interval just above the limit: confirmed
        (low, False),                        # the interval's lower end on the limit: not wholly above
        ((low + ratio) / 2, False),          # straddling, the point ratio past the limit: NOT confirmed
        ((ratio + high) / 2, False),         # straddling, the point ratio inside the limit
        (high * (1 + EPS), False),           # wholly below
    ]
    for allowed, confirmed in cases:
        d = _decide(samples, allowed)
        assert d.refused is None and d.control is None
        assert d.confirmed is confirmed, (allowed, ratio, low, high, d.sentence)
        assert d.sentence.startswith("regression confirmed" if confirmed else "within noise"), d.sentence


@SETTINGS
@given(low=st.floats(0.5, 1.0), max_width=st.floats(0.01, 0.5))
def test_control_judges_only_when_it_holds_one_and_is_narrow_enough(low, max_width):
    hi = low + max_width * (1 - EPS)
    assume(low <= 1.0 <= hi)
    assert Control(1.0, low, hi, None, max_width).problem is None  # just narrow enough, holds 1.00
    wide = Control(1.0, low, low + max_width * (1 + EPS) + EPS, None, max_width)
    assert wide.problem and "wide" in wide.problem
    above = Control(1.0, 1.0 + EPS, 1.0 + EPS + max_width / 2, None, max_width)
    below = Control(1.0, 1.0 - EPS - max_width / 2, 1.0 - EPS, None, max_width)
    for c in (above, below):
        assert c.problem and "excludes 1.00" in c.problem
    on_edge = Control(1.0, 1.0, 1.0 + max_width / 2, None, max_width)
    assert on_edge.problem is None  # 1.00 on the interval's edge is inside it
    assert MAX_CONTROL_WIDTH == Control(1.0, 1.0, 1.0, None).max_width


@SETTINGS
@given(samples=interleaved(control=True))
def test_a_noisy_control_refuses_unless_the_slowdown_clears_the_limit_divided_by_its_upper_end(samples):
    c = control_of(samples, confidence=CONF, resamples=RESAMPLES)
    assume(c is not None and c.problem is not None)
    ratio, low, high = bootstrap_ratio(samples["old"], samples["new"], confidence=CONF, resamples=RESAMPLES)
    assume(low > 0 and c.ci_high > 0)
    edge = min(low, low / c.ci_high)  # past any noise the control shows, and the interval wholly above the limit
    past = _decide(samples, edge * (1 - EPS))
    assert past.confirmed and past.refused is None, past.sentence
    inside = _decide(samples, edge * (1 + EPS))
    # a noisy control and a slowdown it could explain: not judged (never "within noise", never confirmed)
    assert not inside.confirmed and inside.refused and inside.sentence.startswith("not judged"), inside.sentence
    assert math.isclose(inside.control["ci_high"], c.ci_high)
