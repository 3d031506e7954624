"""The board runner, run for real through LocalTransport with this venv's Python and ONNX Runtime."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from dmsbuild.core.accuracy import AccuracyFloors
from dmsbuild.measure.bench import BenchError, BoardBench, bench_boards, benchmark_release, probe_facts
from dmsbuild.errors import UserError
from dmsbuild.core.results import ResultStore, validate_document
from dmsbuild.transport.local import LocalTransport
from tests.bench_release import make_release, tree_digest

PY = sys.executable
#: the project's default floors (dmsbuild.toml [accuracy])
FLOORS = AccuracyFloors.uniform(0.05, 0.98, 12.0)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("board")
    make_release(root, [
        {"name": "fp32"},
        {"name": "int8-qdq", "perturb": 0.05},
        {"name": "broken", "raw": b"not an onnx model"},
        {"name": "needs-qnn", "providers": ["QNNExecutionProvider"], "provider_options": [{"backend_type": "htp"}]},
    ])
    return root / "current"


@pytest.fixture(scope="module")
def doc(release) -> dict:
    return benchmark_release(LocalTransport("bench-01"), str(release), python=PY)


def test_document_follows_schema_and_numbers_are_sane(doc):
    validate_document(doc, board="bench-01")  # raises on any schema violation
    assert doc["release_id"] == "0123456789abcdef"  # `current` resolved to its release
    assert doc["facts"]["onnxruntime"] and doc["facts"]["arch"]
    r = {x["artifact"]: x for x in doc["results"]}
    fp32 = r["fp32"]
    assert fp32["error"] is None and fp32["provider"] == "CPUExecutionProvider"
    lat = fp32["latency_ms"]
    assert len(fp32["samples_ms"]) == fp32["iterations"] == 20 and fp32["warmup"] == 2
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["min"] == min(fp32["samples_ms"]) and lat["max"] == max(fp32["samples_ms"])
    assert fp32["throughput_ips"] == pytest.approx(1000.0 / lat["mean"])
    assert fp32["load_ms"] > 0 and fp32["first_inference_ms"] > 0 and fp32["peak_rss_mb"] > 10
    # the FP32 artifact IS the reference model: the board reproduces it exactly
    v = fp32["verify"]
    assert v["samples"] == 8 and v["min_top1_agreement"] == 1.0
    assert set(v["heads"]) == {"eye_state", "yawn", "activity", "head_pose"}
    assert v["heads"]["head_pose"]["top1_agreement"] is None  # regression head: no top-1
    assert v["heads"]["eye_state"]["max_abs_diff"] < 1e-5 and v["heads"]["eye_state"]["cosine"] > 0.99999


def test_a_different_model_shows_in_the_output_check(doc):
    q = {x["artifact"]: x for x in doc["results"]}["int8-qdq"]
    heads = q["verify"]["heads"]
    assert q["error"] is None
    assert heads["activity"]["max_abs_diff"] > 1e-4
    assert heads["activity"]["psnr_db"] is not None and heads["activity"]["psnr_db"] < 200
    assert heads["activity"]["cosine"] < 1.0


def test_one_failing_artifact_does_not_stop_the_others(doc):
    r = {x["artifact"]: x for x in doc["results"]}
    assert "INVALID_PROTOBUF" in r["broken"]["error"] or "Protobuf" in r["broken"]["error"]
    assert r["broken"]["latency_ms"] is None and r["broken"]["samples_ms"] is None
    assert r["fp32"]["error"] is None and r["int8-qdq"]["error"] is None


def test_qnn_artifact_runs_on_the_plugin_ep_or_says_why(doc):
    q = {x["artifact"]: x for x in doc["results"]}["needs-qnn"]
    if doc["facts"]["onnxruntime_qnn"] is None:
        assert "onnxruntime-qnn" in q["error"]
    else:  # onnxruntime-qnn registered as a plugin EP and really selected
        assert q["error"] is None and q["provider"] == "QNNExecutionProvider"


def test_single_artifact_and_unknown_artifact(release):
    one = benchmark_release(LocalTransport("b"), str(release), python=PY, artifact="fp32")
    assert [r["artifact"] for r in one["results"]] == ["fp32"]
    with pytest.raises(BenchError, match=r"board b: benchmark runner crashed \(exit 2\)[\s\S]*no artifact named 'nope'"):
        benchmark_release(LocalTransport("b"), str(release), python=PY, artifact="nope")


def test_runner_crash_reports_stderr_tail_and_keeps_the_release(tmp_path):
    rel = make_release(tmp_path)
    runner = rel / "runner" / "dms_bench.py"
    runner.write_text(runner.read_text().replace(
        "def run_release(args", "def run_release(args):\n    raise SystemExit('kaboom: the board ran out of luck')\n\ndef _unused(args"))
    before = tree_digest(tmp_path)
    with pytest.raises(BenchError) as err:
        benchmark_release(LocalTransport("rpi5-07"), str(tmp_path / "current"), python=PY)
    text = str(err.value)
    assert text.splitlines()[0].startswith("board rpi5-07: benchmark runner crashed (exit 1)")
    assert "keeps its release" in text and "kaboom: the board ran out of luck" in text
    assert tree_digest(tmp_path) == before and os.readlink(tmp_path / "current") == "releases/0123456789abcdef"


def _python_without_onnxruntime(tmp_path: Path) -> str:
    """A `python3` for the board that cannot import onnxruntime (an empty site and a blocking path entry)."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "onnxruntime.py").write_text("raise ImportError('No module named onnxruntime')\n")
    wrapper = tmp_path / "python3"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={block} exec {PY} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


def test_missing_onnxruntime_is_reported_from_the_facts_with_the_hint(tmp_path):
    make_release(tmp_path)
    py = _python_without_onnxruntime(tmp_path)
    facts = probe_facts(LocalTransport("qcs-02"), str(tmp_path / "current"), python=py)
    assert facts["onnxruntime"] is None and facts["numpy"]
    with pytest.raises(BenchError) as err:
        benchmark_release(LocalTransport("qcs-02"), str(tmp_path / "current"), python=py, facts=facts)
    first = str(err.value).splitlines()[0]
    assert first.startswith("board qcs-02: onnxruntime is not installed") and "pip install onnxruntime" in str(err.value)


def test_runner_itself_exits_3_with_the_hint_when_onnxruntime_is_missing(tmp_path):
    rel = make_release(tmp_path)
    py = _python_without_onnxruntime(tmp_path)
    res = LocalTransport().run([py, str(rel / "runner" / "dms_bench.py"), "--release", str(rel)])
    assert res.exit_status == 3 and res.stdout == ""
    assert "pip install onnxruntime" in res.stderr
    # and the host turns it into a board-named error even when the facts were stale
    with pytest.raises(BenchError, match="board x: onnxruntime is not installed for .*pip install onnxruntime"):
        benchmark_release(LocalTransport("x"), str(rel), python=py, facts={"onnxruntime": "1.32.0"})


def test_missing_release_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"board b: .*/nothing/manifest.json is not readable"):
        benchmark_release(LocalTransport("b"), str(tmp_path / "nothing"), python=PY)


def test_bench_boards_stores_rows_and_reports_progress(release, tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    lines: list[str] = []
    outcomes = bench_boards(
        [BoardBench("board-a", LocalTransport("board-a"), str(release), python=PY),
         ("board-b", LocalTransport("board-b"), str(tmp_path / "missing"))],  # the deploy step's tuple form
        target="local", store=store, accuracy=FLOORS, max_latency_regression=100.0,
        artifact="fp32", progress=lines.append)
    a, b = outcomes
    assert a.ok and a.run_id and not b.ok and "board board-b" in b.error
    baseline = [l for l in lines if "new baseline" in l]  # the first result of a lineage says so
    assert len(baseline) == 1 and baseline[0].startswith("[bench 1/2] board-a: board board-a: artifact fp32")
    lines = [l for l in lines if l not in baseline]
    assert [l.split(":")[0] for l in lines] == ["[bench 1/2] board-a"] * 2 + ["[bench 2/2] board-b"] * 2
    assert "started" in lines[0] and "done" in lines[1] and "fp32" in lines[1] and "FAILED" in lines[3]
    rows = store.rows()
    assert [(r["board"], r["artifact"], r["release_id"]) for r in rows] == [("board-a", "fp32", "0123456789abcdef")]
    assert len(rows[0]["samples"]) == 20 and rows[0]["facts"]["onnxruntime"]


def test_local_target_is_wired_end_to_end(tmp_path, capsys):
    """`doit bench` on the embedded local target: the rollout's bench step on this machine's folder."""
    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.deploy import bench_target
    from dmsbuild.tasks.deploy import boards_for

    root = Path(__file__).resolve().parents[1]
    project, profile = load_project(root), load_target(root, "local")
    store = ResultStore(tmp_path / "results.sqlite")
    profile.deploy.root = str(tmp_path / "boards" / "local")
    [missing] = bench_target(project, profile, boards_for(project, profile), store=store)
    assert not missing.ok and "no release deployed at" in missing.reason and "doit deploy target=local" in missing.reason
    make_release(tmp_path / "boards" / "local")
    capsys.readouterr()
    outcomes = bench_target(project, profile, boards_for(project, profile), store=store)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[bench")]
    assert [o.board for o in outcomes] == ["local"] and outcomes[0].ok, outcomes[0].line()
    assert outcomes[0].action == "benchmarked" and outcomes[0].release_id == "0123456789abcdef"
    assert {r["artifact"] for r in store.rows()} == {"fp32"} and len(lines) == 3
    assert "new baseline" in lines[1]  # the first run of the lineage


@pytest.mark.parametrize("mangle, kind", [
    ("doc_text[: len(doc_text) // 2]", "truncated"),
    ("'# progress 100%\\n' + doc_text", "malformed"),
    ("doc_text + ' ' * (9 * 1024 * 1024)", "over the"),
])
def test_bad_output_from_the_board_is_refused_and_nothing_stored(tmp_path, mangle, kind):
    rel = make_release(tmp_path / "board")
    runner = rel / "runner" / "dms_bench.py"
    runner.write_text(runner.read_text().replace(
        "sys.stdout.write(json.dumps(_finite(doc), allow_nan=False) + \"\\n\")",
        f"doc_text = json.dumps(_finite(doc))\n    sys.stdout.write({mangle})"))
    store = ResultStore(tmp_path / "results.sqlite")
    lines: list[str] = []
    [out] = bench_boards([BoardBench("rpi5-09", LocalTransport("rpi5-09"), str(rel), python=PY)], target="rpi5",
                         store=store, accuracy=FLOORS, max_latency_regression=1.25, progress=lines.append)
    assert not out.ok and out.error.startswith("board rpi5-09: result JSON is") and kind in out.error.splitlines()[0]
    assert "nothing was stored" in out.error and store.rows() == []
    assert "FAILED" in lines[-1]


def test_an_artifact_that_kills_its_process_only_fails_itself(tmp_path):
    rel = make_release(tmp_path, [{"name": "fp32"}, {"name": "crashy"}])
    runner = rel / "runner" / "dms_bench.py"
    runner.write_text(runner.read_text().replace(
        "    np, ort = _import_runtime()\n    result = empty_result(entry, plan)",
        "    np, ort = _import_runtime()\n    if entry['name'] == 'crashy':\n"
        "        sys.stderr.write('segfault coming\\n'); sys.stderr.flush(); os.kill(os.getpid(), 11)\n"
        "    result = empty_result(entry, plan)"))
    doc = benchmark_release(LocalTransport("b"), str(rel), python=PY)
    r = {x["artifact"]: x for x in doc["results"]}
    assert r["fp32"]["error"] is None
    assert "crashed (killed by signal 11)" in r["crashy"]["error"] and "segfault coming" in r["crashy"]["error"]


def test_float16_input_model_is_fed_float16(tmp_path):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    rel = make_release(tmp_path, [{"name": "fp32"}, {"name": "fp16"}])
    f = rel / "models" / "fp16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(f)), keep_io_types=False), str(f))
    manifest = json.loads((rel / "manifest.json").read_text())
    import hashlib
    manifest["artifacts"][1].update(sha256=hashlib.sha256(f.read_bytes()).hexdigest(), size=f.stat().st_size)
    (rel / "manifest.json").write_text(json.dumps(manifest))
    doc = benchmark_release(LocalTransport("b"), str(rel), python=PY, artifact="fp16")
    r = doc["results"][0]
    assert r["error"] is None and r["verify"]["min_top1_agreement"] >= 0.75
    assert 0 < r["verify"]["heads"]["activity"]["max_abs_diff"] < 0.1  # FP16 rounding, not garbage


# ---------------------------------------------------------------------------------------------------------
# the interleaved harness (issue 31, item 1): no cross-session spinning, an A/A control, balanced orders
# ---------------------------------------------------------------------------------------------------------
def test_the_harness_turns_spinning_off_on_every_session_and_the_benchmark_keeps_the_default():
    import onnxruntime as ort

    from dmsbuild.board.runner import dms_bench

    off = dms_bench._session_options(ort, 2, None, spinning=False)
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert off.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    deployed = dms_bench._session_options(ort, 2, None)  # what `doit bench` measures: ORT's default
    with pytest.raises(Exception):
        deployed.get_session_config_entry("session.intra_op.allow_spinning")


def test_side_orders_are_balanced():
    """Every side runs in every position, and after every other side, equally often (a neighbour's after-effects
    and a drifting load hit all sides alike)."""
    from collections import Counter

    from dmsbuild.board.runner.dms_bench import ORDERS

    for n, orders in ORDERS.items():
        assert all(sorted(o) == sorted(orders[0]) and len(o) == n for o in orders)
        positions = Counter((side, i) for o in orders for i, side in enumerate(o))
        assert len(set(positions.values())) == 1 and len(positions) == n * n
        follows = Counter((a, b) for o in orders for a, b in zip(o, o[1:]))
        assert len(follows) == n * (n - 1) and len(set(follows.values())) == 1


@pytest.mark.parametrize("isolation", ["gap", "spin-off", "processes", "fresh"])
def test_interleave_with_an_aa_control_in_each_isolation(tmp_path, isolation, monkeypatch):
    from tests.slow_models import release_with_depth

    release_with_depth(tmp_path, "aaaaaaaaaaaaaaaa", 1, iterations=5)
    new = release_with_depth(tmp_path, "bbbbbbbbbbbbbbbb", 2, iterations=5)
    runner = new / "runner" / "dms_bench.py"
    calls, pauses = [], []
    if isolation in ("gap", "spin-off"):
        # gap (the default): sessions as deployed (spinning on) and an idle pause before every side's block;
        # spin-off: every session the harness opens has spinning off
        from dmsbuild.board.runner import dms_bench

        real = dms_bench.create_session
        monkeypatch.setattr(dms_bench, "create_session",
                            lambda *a, **k: calls.append(a[6] if len(a) > 6 else k.get("spinning")) or real(*a, **k))
        real_sleep = dms_bench.time.sleep
        monkeypatch.setattr(dms_bench.time, "sleep", lambda s: pauses.append(s) or real_sleep(s))
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = dms_bench.main(["--release", str(new), "--interleave", str(tmp_path / "releases" / "aaaaaaaaaaaaaaaa"),
                                   "--artifact", "fp32", "--blocks", "6", "--iterations", "3", "--control",
                                   "--threads", "2"] + (["--isolation", "spin-off"] if isolation == "spin-off" else []))
        want = isolation == "gap"
        assert code == 0 and calls == [want, want, want]
        assert pauses.count(dms_bench.GAP_S) == (6 * 3 if want else 0)  # every side's block, every block
        out = json.loads(buf.getvalue().strip().splitlines()[-1])
    else:
        res = LocalTransport("b").run([PY, str(runner), "--release", str(new), "--interleave",
                                       str(tmp_path / "releases" / "aaaaaaaaaaaaaaaa"), "--artifact", "fp32",
                                       "--blocks", "6", "--iterations", "3", "--control", "--isolation", isolation,
                                       "--threads", "2"], timeout=300)
        assert res.ok, res.stderr
        out = json.loads(res.stdout)
        if isolation == "fresh":  # `doit tune`'s: a process (and session) of its own for every side's every block
            assert out["processes"] == {"old": 6, "new": 6, "control": 6}
    assert out["isolation"] == isolation
    assert len(out["old"]) == len(out["new"]) == len(out["control"]) == 6
    assert all(len(b) == 3 for side in ("old", "new", "control") for b in out[side])
    assert isinstance(out["loadavg_start"], float)


def _idle_cpu_ms(sess, feed, windows: int = 20, idle_s: float = 0.02, after_s: float = 0.0) -> float:
    """CPU time this process burns while it sleeps, ``after_s`` after a run (its intra-op pool's spin-waiting)."""
    import time

    total = 0.0
    for _ in range(windows):
        sess.run(None, feed)
        time.sleep(after_s)
        c0 = time.process_time()
        time.sleep(idle_s)
        total += time.process_time() - c0
    return total * 1000


def test_the_bias_a_multithreaded_session_burns_cores_after_its_run_and_the_harness_session_does_not(tmp_path):
    """DESIGN §9's bias, by its mechanism (robust on a loaded 2-core machine, unlike a timing difference): a
    2-thread session with ONNX Runtime's default spinning keeps a core busy after each run, i.e. exactly while
    its neighbour in the same process is being timed; with spinning off the session burns ~nothing, and the
    deployed session is quiet again once the default ``gap`` harness's pause (``GAP_S``) has passed.
    bench/bench_harness_bias.py shows the timing consequence on an idle machine."""
    import numpy as np
    import onnxruntime as ort

    from dmsbuild.board.runner import dms_bench
    from tests.slow_models import deep_model

    model = tmp_path / "m.onnx"
    deep_model(model, 4, 32)
    burned = {}
    for name, spinning in (("deployed", True), ("harness", False)):
        so = dms_bench._session_options(ort, 2, None, spinning=spinning)
        sess = ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        feed = {inp.name: np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)}
        burned[name] = _idle_cpu_ms(sess, feed)
    # 20 idle windows of 20 ms: the spinning pool takes several ms of them (12-14 of 20 ms each at load 4.7);
    # with spinning off the process sleeps (0.04 ms per window)
    assert burned["deployed"] > 5.0 and burned["deployed"] > 10 * burned["harness"], burned
    # the gap harness: the same deployed session, timed from GAP_S after its run, has stopped spinning
    so = dms_bench._session_options(ort, 2, None, spinning=True)
    sess = ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)}
    after_gap = _idle_cpu_ms(sess, feed, after_s=dms_bench.GAP_S)
    assert after_gap < burned["deployed"] / 5, (after_gap, burned)
