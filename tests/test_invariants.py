"""Promises that a changed line could break without the rest of the suite noticing (issue 11).

Each test here kills a named mutation of scripts/mutation.py: the rollback's sha256 check, the board
agent's path guard, an unreadable history, the runner's warm-up, trtexec's missing summary.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from dmsbuild.board import release_agent as agent
from dmsbuild.config import load_project, load_target
from dmsbuild.ship.inventory import local_board
from dmsbuild.pipeline.deploy import deploy_target, rollback_target
from tests.conftest import write_build


def _current(root: Path) -> str:
    return os.path.basename(os.readlink(root / "current"))


@pytest.fixture()
def two_releases(project_dir: Path):
    """The local target (a folder, the real agent) with releases v1 then v2 deployed."""
    prof = load_target(project_dir, "local")
    board = local_board(project_dir, prof, sys.executable)
    ids = []
    for seed in (1, 2):
        write_build(project_dir, "local", {"fp32": 0.05}, seed=seed)
        out = deploy_target(load_project(project_dir), prof, [board])[0]
        assert out.ok, out.message
        ids.append(out.release_id)
    return prof, board, Path(board.root), ids


# ---------------------------------------------------------------- rollback checks what it switches to
def test_rollback_refuses_a_previous_release_whose_file_no_longer_matches(two_releases):
    prof, board, root, (v1, v2) = two_releases
    model = root / "releases" / v1 / "models" / "fp32.onnx"
    model.unlink()  # a new file in its place (the object stays intact): same size, other bytes
    model.write_bytes(b"\0" * 50_000)
    back = rollback_target(prof, [board])[0]
    assert not back.ok and f"previous release {v1} is damaged (models/fp32.onnx)" in back.message, back.message
    assert _current(root) == v2  # the board keeps its good release


def test_rollback_switches_to_an_intact_previous_release(two_releases):
    prof, board, root, (v1, v2) = two_releases
    back = rollback_target(prof, [board])[0]
    assert back.ok and (back.previous, back.release_id) == (v2, v1), back.message
    assert _current(root) == v1


# ---------------------------------------------------------------- history.json
@pytest.mark.parametrize("text", ["not json", '{"a": 1}', '["ok", 3]', '["../../etc"]', ""])
def test_an_unreadable_history_is_corruption_not_an_empty_history(two_releases, text):
    """Read as empty it would forget every rollback target (and gc would delete their folders)."""
    prof, board, root, (v1, v2) = two_releases
    (root / "history.json").write_text(text)
    with pytest.raises(agent.AgentFail) as exc:
        agent.read_history(str(root))
    assert "history.json is corrupt" in exc.value.msg and "repair it" in exc.value.msg
    back = rollback_target(prof, [board])[0]
    assert not back.ok and "history.json is corrupt" in back.message, back.message
    write_build(Path(board.root).parents[2], "local", {"fp32": 0.05}, seed=3)
    out = deploy_target(load_project(Path(board.root).parents[2]), prof, [board])[0]
    assert not out.ok and "history.json is corrupt" in out.message, out.message
    assert _current(root) == v2 and (root / "releases" / v1).is_dir()  # nothing switched, nothing collected


def test_no_history_yet_is_empty(tmp_path):
    assert agent.read_history(str(tmp_path)) == []


# ---------------------------------------------------------------- the agent's path guard
@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "releases/r/../../../x", "a\0b", ".."])
def test_agent_refuses_paths_that_leave_the_deploy_root(tmp_path, rel):
    with pytest.raises(agent.AgentFail) as exc:
        agent.inside(str(tmp_path), rel)
    assert "refusing path outside the deploy root" in exc.value.msg


def test_agent_keeps_plain_relative_paths_inside(tmp_path):
    assert agent.inside(str(tmp_path), "releases/r1/models/a..b.onnx") == str(tmp_path / "releases/r1/models/a..b.onnx")


def test_a_manifest_entry_with_dotdot_is_never_staged(tmp_path):
    """A release whose file list climbs out of the root (a hostile controller or a corrupt manifest)."""
    root = tmp_path / "root"
    data = b"payload"
    sha = hashlib.sha256(data).hexdigest()
    agent.prepare({"root": str(root)})
    (root / "objects" / sha).write_bytes(data)
    outside = tmp_path / "outside"
    with pytest.raises(agent.AgentFail):
        agent.stage(str(root), "r1", [{"file": "../../outside/x", "sha256": sha, "size": len(data)}])
    assert not outside.exists()
    with pytest.raises(agent.AgentFail):
        agent.prepare({"root": str(root), "objects": ["../../outside"]})


# ---------------------------------------------------------------- the runner's warm-up
def test_runner_runs_the_warmup_before_the_timed_loop(tmp_path, monkeypatch):
    from dmsbuild.board.runner import dms_bench
    from tests.bench_release import make_release

    make_release(tmp_path, [{"name": "fp32"}])
    release = str(tmp_path / "current")
    manifest = dms_bench.load_manifest(release)
    entry = manifest["artifacts"][0]
    calls = {"run": 0, "before_timed": None}
    real_create, real_loop = dms_bench.create_session, dms_bench.timing_loop

    class Counting:
        def __init__(self, sess):
            self.sess = sess

        def __getattr__(self, name):
            return getattr(self.sess, name)

        def run(self, *a, **kw):
            calls["run"] += 1
            return self.sess.run(*a, **kw)

    def loop(run, names, feed, iterations):
        calls["before_timed"] = calls["run"]
        return real_loop(run, names, feed, iterations)

    monkeypatch.setattr(dms_bench, "create_session", lambda *a, **kw: Counting(real_create(*a, **kw)))
    monkeypatch.setattr(dms_bench, "timing_loop", loop)
    plan = {"warmup": 7, "iterations": 5, "threads": 1, "verify_samples": 0}
    res = dms_bench.bench_artifact(release, manifest, entry, plan)
    assert calls["before_timed"] == 1 + 7  # the first inference (timed apart), then every warm-up run
    assert calls["run"] == 1 + 7 + 5 and len(res["samples_ms"]) == 5 and res["warmup"] == 7


# ---------------------------------------------------------------- trtexec without a summary
def test_trtexec_without_a_summary_is_an_error_result_never_numbers():
    from dmsbuild.backends.tensorrt import result_from_trtexec

    res = result_from_trtexec("&&&& PASSED TensorRT.trtexec [TensorRT v100300]\n[I] engine loaded\n", None,
                              artifact="trt-fp16", precision="fp16", sha256="0" * 64)
    assert res["error"] == "trtexec printed no performance summary" and res["latency_ms"] is None
    assert json.dumps(res)  # plain JSON, storable as an error row


# ---------------------------------------------------------------- latency statistics
@pytest.mark.parametrize("samples", [[5.0, 1.0, 2.0, 100.0], [3.0], [1.0, 2.0], [float(x % 17) ** 1.5 for x in range(101)]])
def test_latency_stats_match_numpy(samples):
    """Median, percentiles (linear interpolation, numpy's default) and the population std, as documented."""
    import numpy as np

    from dmsbuild.board.runner.dms_bench import latency_stats

    got = latency_stats(samples)
    a = np.array(samples)
    want = {"min": a.min(), "max": a.max(), "mean": a.mean(), "median": np.median(a), "std": a.std(),
            **{f"p{q}": np.percentile(a, q) for q in (90, 95, 99)}}
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------- non-finite numbers from a board
def test_an_overflowing_or_nan_measurement_is_refused():
    """JSON has no NaN, but 1e999 parses to infinity: neither may reach the store."""
    from dmsbuild.core.results import ResultError, parse_document, validate_result
    from tests.bench_docs import document, result

    doc = document("aaaa000000000001", [result("fp32", 6.7)])
    doc["results"][0]["latency_ms"]["p99"] = 12345.5
    text = json.dumps(doc).replace("12345.5", "1e999")
    with pytest.raises(ResultError, match=r"'results\[0\]\.latency_ms\.p99' is inf"):
        parse_document(text, board="b")
    r = result("fp32", 6.7)
    r["load_ms"] = float("nan")
    with pytest.raises(ResultError, match="load_ms"):
        validate_result(r, board="b")
