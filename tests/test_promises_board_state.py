"""Promise class: every "incomparable conditions" rule of the board state (issue 25, item 1).

docs/measurements.md and ``measure/board_state.incomparable``: the latency gate never compares two runs when
either was throttled (any ``get_throttled`` flag now: throttled, frequency capped, under-voltage, soft
temperature limit; before or after the run), when the power mode (``nvpmodel``) differs, or when
``jetson_clocks`` was on for one and off for the other; a condition one run did not record is no reason.
Generated: hypothesis draws both runs' states from those parts; the expected verdict comes from the rules, and
the gate (``gates.check_latency``) must then skip a 10x slowdown with the reason in its notes, or fail it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from dmsbuild.measure.board_state import incomparable
from dmsbuild.measure.gates import check_latency
from dmsbuild.core.results import ResultStore
from tests.bench_docs import document, result

FLAGS = ("throttled", "freq_capped", "under_voltage", "soft_temp_limit")


@st.composite
def run_state(draw):
    """A run's state as parse_snapshot leaves it: power mode, jetson_clocks, throttle flags before and after."""
    state = {}
    for when in ("before", "after"):
        part = {}
        if when == "before":
            mode = draw(st.none() | st.sampled_from(["MAXN", "15W", "30W"]), label="power mode")
            if mode:
                part["power_mode"] = mode
            locked = draw(st.none() | st.booleans(), label="jetson_clocks locked")
            if locked is not None:
                part["jetson_clocks"] = {"locked": locked}
        flags = draw(st.lists(st.sampled_from(FLAGS), unique=True, max_size=2), label=f"throttle flags {when}")
        if draw(st.booleans(), label=f"vcgencmd {when}"):
            part["throttled"] = {"raw": "0x50005" if flags else "0x0", **{f: f in flags for f in FLAGS}}
        state[when] = part
    return state if draw(st.booleans(), label="state recorded") else None


def _flags(state) -> list[str]:
    return [f for when in ("before", "after") for f in FLAGS
            if (((state or {}).get(when) or {}).get("throttled") or {}).get(f)]


def expected(previous, current) -> str | None:
    """The rules, written from the docs: the first reason in the order the gate reports them."""
    if _flags(current):
        return "this run was throttled"
    if _flags(previous):
        return "the baseline run was throttled"
    old, new = (previous or {}).get("before") or {}, (current or {}).get("before") or {}
    if old.get("power_mode") and new.get("power_mode") and old["power_mode"] != new["power_mode"]:
        return "power mode changed"
    lo, ln = (old.get("jetson_clocks") or {}).get("locked"), (new.get("jetson_clocks") or {}).get("locked")
    if lo is not None and ln is not None and lo != ln:
        return "jetson_clocks"
    return None


@settings(max_examples=300, deadline=None)
@given(previous=run_state(), current=run_state())
def test_incomparable_exactly_when_a_rule_says_so(previous, current):
    want, got = expected(previous, current), incomparable(previous, current)
    if want is None:
        assert got is None, (previous, current, got)
    else:
        assert got is not None and got.startswith(want), (previous, current, got)
        assert "\n" not in got


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(previous=run_state(), current=run_state())
def test_the_latency_gate_compares_only_comparable_runs(previous, current):
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp) / "r.sqlite")
        base = document("r1", [result("fp32", 1.0)])
        base["state"] = previous
        store.add(base, board="b", target="orin")
        slow = document("r2", [result("fp32", 10.0)])  # 10x slower
        slow["state"] = current
        notes: list[str] = []
        failures = check_latency(slow, board="b", target="orin", store=store, max_ratio=1.25, notes=notes)
        why = expected(previous, current)
        if why is None:
            assert [f.gate for f in failures] == ["latency"] and notes == [], notes
        else:
            assert failures == [] and len(notes) == 1 and "latency not compared with release r1: " + why in notes[0]
