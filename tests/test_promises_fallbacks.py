"""Promise class: every documented fallback is exercised (issue 25, item 1).

docs/measurements.md: "Where no re-measure can run (a trtexec or SNPE artifact, the previous release pruned
from the board, the runner failing) the first run's verdict stands and the message says why it was not
re-measured"; a control too noisy even after measuring longer: "the release stays"; docs/tune.md and
measurements.md: "nothing chosen, the default stays". Each way the fallback can be reached is generated
from the code's own lists (``bench.HOST_DRIVEN``, every way a board can answer the re-measure badly), not
picked by hand, and each must end in the documented outcome, never in a silently dropped suspect.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from dmsbuild.config import ConfirmConfig
from dmsbuild.measure.bench import HOST_DRIVEN, BenchResult, BoardBench, _confirm_latency
from dmsbuild.measure.gates import GateFailure
from dmsbuild.transport.base import CommandResult

CFG = ConfirmConfig(blocks=4, iterations=10, warmup=1, resamples=200, max_seconds=30)
FIRST = "board b: artifact fp32 (fp32) fails the latency gate: median 5.000 ms is 2.00x the 2.500 ms of release old"


def _blocks(ms: float, spread: float = 0.01, n: int = 4, k: int = 10) -> list[list[float]]:
    return [[ms * (1 + spread * ((i * 7 + j * 3) % 5 - 2)) for j in range(k)] for i in range(n)]


class Board:
    """A board whose answers to the re-measure are given: ``present`` (the previous release's manifest is there),
    and the runner's (exit status, stdout, stderr) per call. Records every command."""

    name = "b"

    def __init__(self, present: bool = True, answers: list[tuple[int, str, str]] | None = None) -> None:
        self.present, self.answers, self.calls = present, list(answers or []), []

    def run(self, argv, timeout=None):
        self.calls.append(list(argv))
        if argv[0] == "test":
            return CommandResult(list(argv), 0 if self.present else 1, "", "")
        code, out, err = self.answers.pop(0)
        return CommandResult(list(argv), code, out, err)


def _suspect(runtime: str = "onnxruntime") -> tuple[dict, BenchResult]:
    doc = {"results": [{"artifact": "fp32", "runtime": runtime}]}
    f = GateFailure("b", "fp32", "latency", FIRST, detail={"ratio": 2.0, "previous_release": "old", "source": "board"})
    return doc, BenchResult("b", False, 0.0, failures=[f])


def _run(board: Board, runtime: str = "onnxruntime") -> BenchResult:
    doc, out = _suspect(runtime)
    item = BoardBench("b", board, "/d/releases/new", "python3")
    _confirm_latency(item, doc, out, cfg=CFG, max_latency_regression=1.25, threads=0, progress=lambda m: None, tag="b")
    return out


def _ok(samples: dict) -> tuple[int, str, str]:
    return 0, json.dumps(samples), ""


#: every way the re-measure cannot give a verdict, and the words the failure must then carry
CANNOT_REMEASURE = {
    "previous release pruned": (Board(present=False), "no longer on the board"),
    "runner exits non-zero": (Board(answers=[(3, "", "Traceback...\nMemoryError")]), "failed (exit 3): MemoryError"),
    "runner prints no JSON": (Board(answers=[(0, "Segmentation fault", "")]), "interleaved re-measure JSON"),
    "runner prints JSON without blocks": (Board(answers=[_ok({"old": 1})]), "not old/new sample blocks"),
    "too few block pairs": (Board(answers=[_ok({"old": _blocks(2.5, n=1), "new": _blocks(5.0, n=1)})]), "unusable"),
    "ragged blocks": (Board(answers=[_ok({"old": [[1.0, "x"], [1.0, 2.0]], "new": _blocks(5.0, n=2, k=2)})]),
                      "unusable"),
}


@pytest.mark.parametrize("why", sorted(CANNOT_REMEASURE))
def test_a_suspect_that_cannot_be_re_measured_keeps_the_first_runs_verdict(why):
    board, words = CANNOT_REMEASURE[why]
    board = Board(board.present, board.answers)  # a fresh copy: the answers are consumed
    out = _run(board)
    assert not out.ok and len(out.failures) == 1, why
    [f] = out.failures
    assert f.gate == "latency" and f.message.startswith(FIRST + "; not re-measured: "), f.message
    assert words in f.message and "\n" not in f.message, f.message
    assert out.decisions == [], why


@pytest.mark.parametrize("runtime", sorted(HOST_DRIVEN))
def test_a_host_driven_runtimes_suspect_keeps_the_first_runs_verdict_without_touching_the_board(runtime):
    board = Board()
    out = _run(board, runtime)
    [f] = out.failures
    assert not out.ok and f.message.startswith(FIRST + "; not re-measured: ") and runtime in f.message
    assert board.calls == []


def test_a_re_measure_that_clears_the_suspect_drops_it_and_one_that_confirms_keeps_it():
    """The other side of the fallback: with a verdict, the verdict decides (so the tests above can fail)."""
    noise = _run(Board(answers=[_ok({"old": _blocks(2.5), "new": _blocks(2.5), "control": _blocks(2.5)})]))
    assert noise.ok and noise.failures == [] and noise.decisions[0]["sentence"].startswith("within noise")
    slow = _run(Board(answers=[_ok({"old": _blocks(2.5), "new": _blocks(5.0), "control": _blocks(2.5)})]))
    assert not slow.ok and "regression confirmed" in slow.failures[0].message


def test_a_control_too_noisy_twice_leaves_the_release_in_place_and_says_so():
    noisy = {"old": _blocks(2.5), "new": _blocks(3.3), "control": _blocks(2.5, spread=0.4)}
    board = Board(answers=[_ok(noisy), _ok(noisy)])
    out = _run(board)
    assert out.ok and out.failures == []  # the release stays
    [d] = out.decisions
    assert d["refused"] and not d["confirmed"] and d["sentence"].startswith("not judged: board too noisy")
    assert any("not judged" in n for n in out.notes)
    assert len([c for c in board.calls if c[0] != "test"]) == 2  # measured longer once before refusing


# ---------------------------------------------------------------- doit tune: the default stays
#: a candidate's A/A control in the search: held, only wide, or excluding 1.00 (its measurement disturbed)
CONTROLS = {"held": (0.95, 1.05, None), "wide": (0.9, 1.4, "its interval 0.90-1.40 is 0.50 wide (> 0.20)"),
            "excludes": (1.05, 1.2, "its interval 1.05-1.20 excludes 1.00"),
            "excludes-below": (0.8, 0.95, "its interval 0.80-0.95 excludes 1.00")}


def _row(ratio: float, ci_high: float, failures: list[str], control_kind: str):
    from dmsbuild.pipeline.tune.space import Candidate
    from dmsbuild.convert.tuned import Recipe, Settings
    from dmsbuild.pipeline.tune.choice import Row

    low, high, problem = CONTROLS[control_kind]
    control = {"ratio": (low + high) / 2, "ci_low": low, "ci_high": high, "loadavg": 2.0, "max_width": 0.2,
               "problem": problem}
    return Row(Candidate(Recipe("int8-qdq", False, "QUInt8", "QInt8", "MinMax"), Settings(1)), f"id{ratio}", failures,
               {"min_top1_agreement": 0.99},
               {"ratio": ratio, "ci_low": ratio * 0.9, "ci_high": ci_high, "confidence": 0.95, "control": control})


candidate = st.tuples(st.floats(0.3, 1.5), st.floats(0.0, 0.5), st.booleans(), st.sampled_from(sorted(CONTROLS)))
#: the confirmation of the leader: its ratio's CI high, and its control
confirmation = st.tuples(st.floats(0.3, 1.5), st.sampled_from(sorted(CONTROLS)))


@settings(max_examples=80, deadline=None)
@given(cands=st.lists(candidate, min_size=1, max_size=5), conf=confirmation)
def test_tune_keeps_the_default_unless_a_candidate_is_shown_faster_passes_its_control_and_is_confirmed(cands, conf):
    """A contender: faster with its whole CI, accuracy gate passed, its own control not excluding 1.00 (a
    control only wide leaves it in: the confirmation judges the board). The leader is chosen only when the
    confirmation shows it faster with its whole CI and the confirmation's control held; else the default stays,
    in a sentence that says so (the board too noisy, or not confirmed)."""
    from dmsbuild.pipeline.tune.board import Baseline
    from dmsbuild.pipeline.tune.choice import confirm, contenders_of, explain
    from pathlib import Path

    rows = [_row(r, r + w, ["head x: drop"] if fails else [], kind) for r, w, fails, kind in cands]
    refused, contenders = contenders_of(rows)
    faster = [(row, kind) for row, (r, w, fails, kind) in zip(rows, cands) if r + w < 1.0 and not fails]
    eligible = [row for row, kind in faster if not kind.startswith("excludes")]
    assert sorted(map(id, contenders)) == sorted(map(id, eligible))
    # refused only when a faster candidate was dropped for its control and none is left
    assert (refused is not None) == (not eligible and bool(faster)), (refused, faster)
    if refused:
        assert refused.startswith("board too noisy to choose") and "excludes 1.00" in refused
    chosen = None
    if contenders:
        high, kind = conf
        low_c, high_c, problem = CONTROLS[kind]
        m = {"ratio": high * 0.9, "ci_low": high * 0.8, "ci_high": high, "confidence": 0.95, "measured_at": "t",
             "control": {"ratio": (low_c + high_c) / 2, "ci_low": low_c, "ci_high": high_c, "loadavg": 2.0,
                         "max_width": 0.2, "problem": problem}}
        refused = confirm(contenders[0], m)
        assert (refused is None) == (high < 1.0 and kind == "held"), (refused, conf)
        if kind != "held":
            assert refused.startswith("board too noisy to choose")
        chosen = None if refused else contenders[0]
    base = Baseline("fp32", Path("x"), "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    sentence = explain(chosen, base, 0.95, rows, refused)
    assert sentence.endswith("the default stays") == (chosen is None), sentence
