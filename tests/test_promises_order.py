"""Promise class: measurement order, checked on the runner's own output (issue 25, item 1).

docs/measurements.md: the re-measure times old and new (and the A/A control) "in rotating blocks, so load that
comes and goes hits all of them". ``dms_bench.py --interleave`` records the sides of each block in the order it
timed them (``orders``); these tests run the real runner on a real tiny release (ONNX Runtime) with a
generated number of blocks and check, on that output: every block times every side once; consecutive blocks
never repeat an order (old is not always before new); over each full rotation every side is first, middle and
last equally often and follows every other side equally often; and the sample blocks match the recorded order.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from collections import Counter
from itertools import permutations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dmsbuild.transport.local import LocalTransport

PY = sys.executable


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> tuple[Path, Path]:
    from tests.slow_models import release_with_depth

    root = tmp_path_factory.mktemp("order")
    release_with_depth(root, "aaaaaaaaaaaaaaaa", 1, iterations=2, width=8)
    new = release_with_depth(root, "bbbbbbbbbbbbbbbb", 1, iterations=2, width=8)
    return root / "releases" / "aaaaaaaaaaaaaaaa", new


def _argv(releases, blocks: int, control: bool) -> list[str]:
    old, new = releases
    return (["--release", str(new), "--interleave", str(old), "--artifact", "fp32", "--blocks", str(blocks),
             "--iterations", "1", "--warmup", "0", "--threads", "1", "--max-seconds", "600"]
            + (["--control"] if control else []))


def check_order(out: dict, blocks: int, control: bool) -> None:
    sides = ["old", "new"] + (["control"] if control else [])
    n = len(sides)
    orders = out["orders"]
    assert len(orders) == blocks, orders  # no early stop with --max-seconds 600
    for side in sides:  # the sample blocks are the ones the order says were timed
        assert len(out[side]) == blocks and all(len(b) == 1 for b in out[side]), side
    assert all(sorted(o) == sorted(sides) for o in orders), orders  # every side once per block
    assert all(a != b for a, b in zip(orders, orders[1:])), orders  # consecutive blocks rotate
    cycle = len(list(permutations(sides))) if n == 3 else 2  # one full rotation of the orders
    full = orders[: blocks - blocks % cycle]
    if full:
        positions = Counter((side, i) for o in full for i, side in enumerate(o))
        assert len(positions) == n * n and len(set(positions.values())) == 1, positions
        follows = Counter((a, b) for o in full for a, b in zip(o, o[1:]))
        assert len(follows) == n * (n - 1) and len(set(follows.values())) == 1, follows
    # a partial rotation leans no side more than one block towards going first
    first = Counter(o[0] for o in orders)
    assert max(first[s] for s in sides) - min(first[s] for s in sides) <= max(1, (blocks % cycle)), first


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.integers(2, 13), control=st.booleans())
def test_the_runner_rotates_the_sides_block_by_block(releases, blocks, control):
    from dmsbuild.board.runner import dms_bench

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = dms_bench.main(_argv(releases, blocks, control))
    assert code == 0
    check_order(json.loads(buf.getvalue().strip().splitlines()[-1]), blocks, control)


def test_the_deployed_runner_rotates_in_its_own_processes(releases):
    """The same check on the runner as the board runs it (its file in the release, a fresh interpreter, each
    side in its own process)."""
    runner = releases[1] / "runner" / "dms_bench.py"
    res = LocalTransport("b").run([PY, str(runner), *_argv(releases, 6, True), "--isolation", "processes"],
                                  timeout=300)
    assert res.ok, res.stderr
    check_order(json.loads(res.stdout), 6, True)
