"""`doit tune` end to end on the tiny project with a real sshd board (127.0.16.x), and its choice logic.

The search space is tiny (fp32 and per-tensor int8 QDQ at 1 thread, 2 block pairs of 3 inferences) so the
whole module runs in about a minute. Timing is never asserted: only what is measured, cached, written and shipped.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, _free_port
from tests.tinyproject import make_project, run_doit

NET, FIRST = "127.0.16", 11

TARGET = """\
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
[deploy]
group = "t"
[bench]
warmup = 1
iterations = 5
threads = 1
verify_samples = 4
[tune]
precision = ["fp32", "int8-qdq"]
per_channel = [false]
intra_op_threads = [1]
blocks = 2
iterations = 3
warmup = 1
max_seconds = 5
budget_minutes = 5
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One emulated board on this module's loopback range, the tiny project, and a first `doit tune`."""
    where = tmp_path_factory.mktemp("tune-boards")
    port = _free_port(f"{NET}.{FIRST}")
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "up", "--count", "1", "--dir", str(where), "--port",
                    str(port), "--first", str(FIRST), "--net", NET, "--groups", "t"], check=True, cwd=REPO,
                   capture_output=True)
    state = json.loads((where / "boards.json").read_text())
    root = make_project(tmp_path_factory.mktemp("tune") / "p", {"t": TARGET})
    run = run_doit(root, "tune", "target=t", f"inventory={state['inventory']}")
    yield {"root": root, "inventory": state["inventory"], "run": run}
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "down", "--dir", str(where)], cwd=REPO, check=True,
                   capture_output=True)


def _measurements(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in (root / "artifacts" / "tune" / "t" / "measurements").rglob("*.json")}


def test_tune_measures_within_budget_and_writes_the_choice(tuned):
    root, run = tuned["root"], tuned["run"]
    assert run.rc == 0, run.output[-3000:]
    measured = re.findall(r"^  \[\s*\d+ s\] (.*): [\d.]+x vs fp32 \(CI [\d.]+-[\d.]+\) \[emulated board", run.output, re.M)
    assert sorted(measured) == ["fp32, 1 thread", "int8 QDQ per-tensor u8s8 MinMax, 1 thread"], run.output[-2000:]
    assert len(_measurements(root)) == 2
    import tomllib

    choice = tomllib.loads((root / "targets" / "t.tuned.toml").read_text())
    from dmsbuild.board.release_agent import sha256_of

    assert choice["model_sha256"] == sha256_of(root / "artifacts" / "common" / "fp32.onnx")
    [kind] = choice["choice"]
    assert "emulated board (this machine's CPU)" in kind["provenance"] and kind["boards"] == ["emu-01"]
    assert kind["keep_default"] or kind["speedup_ci"][0] > 1.0  # a choice only with a CI above 1
    report = (root / "artifacts" / "tune" / "t" / "report.md").read_text()
    assert "**Choice:**" in report and "emulated board (this machine's CPU)" in report
    assert list((root / "artifacts" / "tune" / "t").glob("pareto-*.png"))
    assert not list(root.rglob("*.tmp"))  # no partial files


def test_tune_places_scratch_releases_through_the_release_code_and_leaves_the_board_as_it_was(tuned):
    """The candidates reached the board as releases rendered from the manifest template and placed by the
    deploy's own push (sha256 verified on the board), never switched to: after the tune the board has no
    current release, no history, no release folder and no object (the scratch releases were discarded)."""
    root = tuned["root"]
    assert tuned["run"].rc == 0, tuned["run"].output[-3000:]
    board_root = Path(json.loads(Path(tuned["inventory"]).with_name("boards.json").read_text())["boards"][0]["root"]) / "t"
    assert not (board_root / "current").exists() and not (board_root / "tune").exists()
    history = json.loads((board_root / "history.json").read_text()) if (board_root / "history.json").exists() else []
    assert history == []
    assert list((board_root / "releases").iterdir()) == [] and [p for p in (board_root / "objects").iterdir()
                                                              if p.name != ".tmp"] == []
    assert json.loads((board_root / ".dmsbuild-root").read_text())["releases"] == []
    staged = json.loads((root / "artifacts" / "tune" / "t" / "staging" / "emu-01" / "manifest.json").read_text())
    # the template's manifest (runtime_settings, toolchain, files), with the default and the candidates
    assert {"runtime_settings", "toolchain", "files", "bench"} <= set(staged) and staged["bench"]["iterations"] == 3
    assert staged["artifacts"][0]["name"] == "fp32" and all(a["name"].startswith("c-") for a in staged["artifacts"][1:])
    assert len(staged["artifacts"]) <= 3  # the default and the candidates one measurement needs, no more
    assert {f["file"] for f in staged["files"]} >= {"runner/dms_bench.py", "runner/metrics.py", "verify/reference.npz"}


def _scratch_files(root: Path, seed: int) -> list[dict]:
    """Objects of a small release placed in ``root/objects`` (as the controller's upload leaves them)."""
    import hashlib

    from dmsbuild.board import release_agent as agent

    agent.prepare({"root": str(root)})
    files = []
    for rel, data in {"models/m.onnx": f"model {seed}".encode() * 50, "manifest.json": f'{{"s": {seed}}}'.encode()}.items():
        sha = hashlib.sha256(data).hexdigest()
        (root / "objects" / sha).write_bytes(data)
        files.append({"file": rel, "sha256": sha, "size": len(data)})
    return files


def test_a_scratch_release_is_never_current_and_is_discarded_or_collected(tmp_path):
    """The agent's ``stage`` (doit tune) verifies and stages like ``commit`` but never switches nor enters the
    history; ``discard`` removes it (never the current release); a leftover goes at the next deploy's collect."""
    from dmsbuild.board import release_agent as agent

    root = tmp_path / "root"
    agent.commit({"root": str(root), "release_id": "v1", "files": _scratch_files(root, 1), "keep": 3})
    out = agent.stage_scratch({"root": str(root), "release_id": "s1", "files": _scratch_files(root, 2)})
    assert out == {"release_dir": str(root / "releases" / "s1"), "scratch": True}
    assert (root / "releases" / "s1" / "models" / "m.onnx").read_bytes() == b"model 2" * 50
    assert os.readlink(root / "current") == "releases/v1" and agent.read_history(str(root)) == ["v1"]
    again = agent.stage_scratch({"root": str(root), "release_id": "v1", "files": _scratch_files(root, 1)})
    assert again["scratch"] is False  # the same id as a kept release: it stays a release
    gone = agent.discard({"root": str(root), "release_ids": ["s1", "v1"]})
    assert gone["removed_releases"] == ["s1"] and gone["freed_bytes"] > 0  # never the current release
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["v1"] and os.readlink(root / "current") == "releases/v1"
    agent.stage_scratch({"root": str(root), "release_id": "s2", "files": _scratch_files(root, 3)})  # left by a lost tune
    agent.commit({"root": str(root), "release_id": "v2", "files": _scratch_files(root, 4), "keep": 3})
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["v1", "v2"]  # the deploy's gc collected it
    bad = agent.stage_scratch({"root": str(root), "release_id": "s3", "files": [{"file": "models/x.onnx",
                                                                                 "sha256": "0" * 64, "size": 1}]})
    assert bad["resend"] == ["0" * 64] and not (root / "releases" / "s3").exists()  # missing object: sent again


def test_second_tune_measures_nothing_new(tuned):
    root = tuned["root"]
    before = _measurements(root)
    run = run_doit(root, "tune", "target=t", f"inventory={tuned['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    assert _measurements(root) == before
    assert not re.search(r"^  \[\s*\d+ s\]", run.output, re.M), run.output[-2000:]
    rows = json.loads((root / "artifacts" / "tune" / "t" / "tune.json").read_text())["results"][0]["rows"]
    assert {r["cached"] for r in rows if r["measurement"]} == {True}
    run = run_doit(root, "report")  # `doit report` links the tune report
    assert run.rc == 0, run.output[-2000:]
    assert "artifacts/tune/t/report.md" in (root / "artifacts" / "report" / "report.md").read_text()


def _force_choice(root: Path) -> None:
    """Write the choice file as `doit tune` would for the measured int8 candidate (the test needs a non-default
    choice; whether the tiny model's int8 is faster on this machine is not deterministic)."""
    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.tune.choice import KindResult, Row, write_choice
    from dmsbuild.pipeline.tune.run import _baseline
    from dmsbuild.convert.tuned import tuned_path
    from dmsbuild.board.release_agent import sha256_of
    from dmsbuild.ship.manifest import read_build

    proj = load_project(root)
    prof = load_target(root, "t")
    doc = json.loads((root / "artifacts" / "tune" / "t" / "tune.json").read_text())["results"][0]
    [raw] = [r for r in doc["rows"] if r["recipe"]["precision"] == "int8-qdq"]
    from dmsbuild.pipeline.tune.space import Candidate
    from dmsbuild.convert.tuned import Recipe, Settings

    row = Row(Candidate(Recipe(**raw["recipe"]), Settings(**raw["runtime"])), raw["id"], [], raw["accuracy"],
              raw["measurement"], True, None, "pass")
    res = KindResult(doc["kind_key"], doc["kind"], doc["board"], [doc["board"]], doc["provenance"], {}, [row], row,
                     "forced by the test", [])
    _, build = read_build(proj, "t")
    write_choice(proj, prof, [res], _baseline(proj, prof, build), sha256_of(root / "artifacts/common/fp32.onnx"),
                 "tiny.pt")
    assert tuned_path(proj, "t").is_file()


def test_deploy_ships_the_choice_without_tuning(tuned):
    root = tuned["root"]
    _force_choice(root)
    before = _measurements(root)
    run = run_doit(root, "deploy", "target=t", f"inventory={tuned['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    assert _measurements(root) == before and "tune t:" not in run.output
    build = json.loads((root / "artifacts" / "t" / "build.json").read_text())
    first = build["artifacts"][0]
    assert (first["name"], first["precision"], first["session"]["intra_op_threads"]) == ("tuned", "int8-qdq", 1)
    manifest = json.loads((root / "artifacts" / "t" / "release" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["name"] == "tuned" and manifest["artifacts"][0]["session"]["intra_op_threads"] == 1
    board_root = Path(json.loads(Path(tuned["inventory"]).with_name("boards.json").read_text())["boards"][0]["root"])
    run_sh = (board_root / "t" / "current" / "run.sh").read_text()
    assert 'DMS_ARTIFACT:-tuned}' in run_sh
    # the board ran the shipped artifact with its tuned session settings
    assert json.loads((board_root / "t" / "current" / "manifest.json").read_text())["artifacts"][0]["name"] == "tuned"
    # bench/check_tune.py --target finds what to re-time from the files alone (no tuner code)
    import tomllib

    spec = _check_tune().from_target("t", root)
    kind = tomllib.loads((root / "targets" / "t.tuned.toml").read_text())["choice"][0]
    assert spec["candidate"] == root / first["path"] and spec["candidate"].is_file()
    assert spec["baseline"].name == "fp32.onnx" and spec["baseline"].is_file()
    assert spec["tuner_ci"] == tuple(kind["speedup_ci"]) and spec["candidate_threads"] == 1


def test_stale_model_hash_is_refused_in_one_line(tuned):
    root = tuned["root"]
    path = root / "targets" / "t.tuned.toml"
    if "keep_default = false" not in path.read_text():
        _force_choice(root)
    text = path.read_text()
    stale = re.sub(r'^model_sha256 = "[0-9a-f]+"', 'model_sha256 = "' + "0" * 64 + '"', text, flags=re.M)
    path.write_text(stale)
    try:
        run = run_doit(root, "build", "target=t")
        assert run.rc != 0
        assert re.search(r"t\.tuned\.toml: tuned for model sha256 000000000000, but the model is now [0-9a-f]{12}; "
                         r"re-run `doit tune target=t`", run.output), run.output[-2000:]
        assert "Traceback" not in run.output
    finally:
        path.write_text(text)


@pytest.mark.parametrize("line, message", [
    ("precision = [\"fp8\"]", "field 'tune.precision[0]' is 'fp8'; allowed values"),
    ("intra_op_threads = [0]", "field 'tune.intra_op_threads' has [0]; expected whole numbers >= 1"),
    ("per_channel = []", "field 'tune.per_channel' is empty"),
    ("budget_minutes = 0", "field 'tune.budget_minutes' is 0.0; expected > 0"),
    ("speed = 1", "unknown field 'tune.speed'"),
])
def test_bad_tune_fields_fail_in_one_line(tmp_path, line, message):
    from dmsbuild.config import load_target
    from dmsbuild.errors import UserError

    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "x.toml").write_text(f"[tune]\n{line}\n")
    with pytest.raises(UserError) as exc:
        load_target(tmp_path, "x")
    assert message in str(exc.value).splitlines()[0] and "x.toml" in str(exc.value).splitlines()[0]


def test_budget_on_the_command_line_is_checked(tmp_path):
    root = make_project(tmp_path / "p", {"t": TARGET})
    run = run_doit(root, "tune", "target=t", "budget=soon")  # refused before the build it would wait for
    assert run.rc != 0 and "budget=soon: expected a number of minutes > 0" in run.output


# --------------------------------------------------------------------------
# the choice (the key line: a CI wholly below 1 and a passed gate)
# --------------------------------------------------------------------------
def _row(ratio: float, ci_high: float, failures: list[str] | None = None, threads: int = 1):
    from dmsbuild.pipeline.tune.space import Candidate
    from dmsbuild.convert.tuned import Recipe, Settings
    from dmsbuild.pipeline.tune.choice import Row

    cand = Candidate(Recipe("int8-qdq", False, "QUInt8", "QInt8", "MinMax"), Settings(threads))
    return Row(cand, f"id{ratio}{threads}", failures or [], {"min_top1_agreement": 0.99},
               {"ratio": ratio, "ci_low": ratio * 0.9, "ci_high": ci_high, "measured_at": "now", "confidence": 0.95})


def test_choice_needs_a_whole_ci_below_one_and_a_passed_gate():
    from dmsbuild.pipeline.tune.choice import faster_and_passing

    noisy = _row(0.70, 1.05)  # fastest point, but its CI reaches past 1: not shown to be faster
    failing = _row(0.60, 0.80, ["head yawn: top-1 drop 0.4 > 0.05"])  # fast, fails the gate
    good, better = _row(0.90, 0.97, threads=2), _row(0.85, 0.95, threads=3)
    assert faster_and_passing([noisy, failing, good, better]) == [better, good]
    assert faster_and_passing([noisy, failing]) == []


def test_no_faster_candidate_keeps_the_default_and_says_so():
    from dmsbuild.pipeline.tune.board import Baseline
    from dmsbuild.pipeline.tune.choice import explain

    base = Baseline("fp32", Path("x"), "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    assert "the default stays" in explain(None, base, 0.95)
    sentence = explain(_row(0.8, 0.9), base, 0.95)
    # what the interval supports first: its lower bound is the speed-up the choice can promise
    assert re.fullmatch(r"int8 QDQ per-tensor u8s8 MinMax, 1 thread: at least 1\.11x faster than the default "
                        r"\(fp32, 1 thread\), 95 % CI 1\.11-1\.39, median 1\.25x, "
                        r"agreement 99\.0%", sentence), sentence


def test_the_choice_sentence_separates_int8_from_threads():
    """Against the best FP32 setting too: on a board where FP32 at more threads is already 1.5x the default,
    a 2x INT8 choice is 1.33x of what threads alone give."""
    from dmsbuild.pipeline.tune.board import Baseline
    from dmsbuild.pipeline.tune.space import Candidate
    from dmsbuild.convert.tuned import Recipe, Settings
    from dmsbuild.pipeline.tune.choice import Row, explain

    base = Baseline("fp32", Path("x"), "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    int8 = _row(0.5, 0.55, threads=2)
    fp32 = Row(Candidate(Recipe("fp32"), Settings(2)), "f2", [], {}, {"ratio": 1 / 1.5, "ci_low": 0.6,
                                                                      "ci_high": 0.7, "confidence": 0.95})
    sentence = explain(int8, base, 0.95, [fp32, int8])
    assert "; 1.33x the best FP32 setting (fp32, 2 threads, 1.50x the default)" in sentence, sentence


def test_a_failed_aa_control_refuses_to_choose_in_one_line():
    """Injected noisy samples: the default against itself comes out wide in the confirmation; no candidate is
    chosen, one line names the load average and the width. In the search, a control that is only wide leaves
    the candidate a contender (the confirmation judges the board); one that excludes 1.00 drops it, and when it
    was the only faster one the refusal line says the board's noise is why the default stays."""
    import numpy as np

    from dmsbuild.config import TuneConfig
    from dmsbuild.pipeline.tune.board import Baseline, measure_ratio
    from dmsbuild.pipeline.tune.choice import confirm, contenders_of, explain, faster_and_passing, noisy_refusal

    rng = np.random.default_rng(0)
    blocks = lambda m, sd, n=6: [list(m * (1 + sd * rng.standard_normal(20))) for _ in range(n)]  # noqa: E731
    samples = {"old": blocks(10.0, 0.02), "new": blocks(5.0, 0.02), "control": blocks(10.0, 0.5),
               "loadavg_start": 4.2, "loadavg_end": 3.9}
    m = measure_ratio(samples, TuneConfig(resamples=300))
    assert m["control"]["problem"] and m["ci_high"] < 1.0  # the candidate alone looks 2x faster
    assert m["control"]["ci_low"] <= 1.0 <= m["control"]["ci_high"]  # wide, not excluding 1.00
    row = _row(0.5, 0.55)
    row.measurement.update(control=m["control"])
    assert faster_and_passing([row]) == [row] and contenders_of([row]) == (None, [row])  # the search keeps it
    line = confirm(row, {**m, "measured_at": "later"})  # ... the confirmation's failed control refuses
    assert line is not None and line.startswith("board too noisy to choose: the A/A control") and "load average 4.20" in line
    assert f"control width {m['control']['width']:.2f}" in line and "\n" not in line
    assert row.measurement["search"]["ratio"] == 0.5 and row.measurement["measured_at"] == "later"
    base = Baseline("fp32", Path("x"), "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    assert explain(row, base, 0.95, [row], line).endswith("nothing chosen, the default stays")
    quiet = {**samples, "control": blocks(10.0, 0.02)}
    mq = measure_ratio(quiet, TuneConfig(resamples=300))
    assert mq["control"]["problem"] is None and confirm(_row(0.5, 0.55), mq) is None
    # a control that excludes 1.00 (a 1.3x shift of the default against itself) drops its candidate
    shifted = measure_ratio({**samples, "control": blocks(13.0, 0.02)}, TuneConfig(resamples=300))
    assert shifted["control"]["ci_low"] > 1.0
    biased = _row(0.5, 0.55)
    biased.measurement.update(control=shifted["control"])
    refused, contenders = contenders_of([biased])
    assert contenders == [] and refused == noisy_refusal([biased]) and refused.startswith("board too noisy to choose")
    quiet_row = _row(0.6, 0.65, threads=2)
    assert contenders_of([biased, quiet_row]) == (None, [quiet_row])  # another contender: no refusal, just dropped


def test_search_space_dimensions():
    from dmsbuild.config import TuneConfig
    from dmsbuild.pipeline.tune.space import Candidate, recipes, settings_space
    from dmsbuild.convert.tuned import Recipe, Settings

    cfg = TuneConfig(precision=["fp32", "int8-qdq", "int8-dynamic"], per_channel=[True, False])
    got = recipes(cfg)
    assert [r.precision for r in got].count("fp32") == 1 and len(got) == 1 + 2 + 2
    assert [s.intra_op_threads for s in settings_space(cfg, 4)] == [4, 3, 2, 1]  # 1..cores, full first
    a = Candidate(Recipe("fp32"), Settings(1)).id("m")
    assert a != Candidate(Recipe("fp32"), Settings(2)).id("m") != Candidate(Recipe("fp32"), Settings(1)).id("n")


def test_runner_applies_the_tuned_session_settings():
    import onnxruntime as ort

    from dmsbuild.board.runner.dms_bench import _session_options, session_threads

    so = _session_options(ort, 2, {"graph_optimization_level": "basic", "execution_mode": "parallel"})
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL and so.intra_op_num_threads == 2
    assert session_threads({"session": {"intra_op_threads": 3}}, 4) == 3 and session_threads({}, 4) == 4
    with pytest.raises(RuntimeError, match="not understood"):
        _session_options(ort, 1, {"graph_optimization_level": "max"})


@pytest.mark.parametrize("runtime, table", [("qnn", "[tune.qnn]\nactivation_bits = [16]\n"),
                                            ("tensorrt", "[tune.tensorrt]\nbuilder_optimization_level = [3, 5]\n")])
def test_qnn_and_tensorrt_spaces_are_defined_but_refused_in_one_line(tmp_path, runtime, table):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.errors import UserError
    from dmsbuild.pipeline.tune.space import check_space, space_description

    make_project(tmp_path / "p", {"x": f'runtime = "{runtime}"\nprecisions = ["fp16"]\n{table}'})
    proj, prof = load_project(tmp_path / "p"), load_target(tmp_path / "p", "x")
    assert space_description(prof)["activation_bits" if runtime == "qnn" else "builder_optimization_level"] in ([16], [3, 5])
    with pytest.raises(UserError) as exc:
        check_space(proj, prof)
    assert str(exc.value).splitlines()[0].endswith("is not measured yet")
    (tmp_path / "p" / "targets" / "x.toml").write_text(f'runtime = "{runtime}"\n[tune.tensorrt]\nbuilder_optimization_level = [7]\n')
    with pytest.raises(UserError, match=r"field 'tune.tensorrt.builder_optimization_level' has \[7\]; allowed: 0 to 5"):
        load_target(tmp_path / "p", "x")


def test_mixed_precision_candidate_keeps_the_ranked_nodes_in_float(tuned):
    """tune.mixed_precision = [true]: dmsbuild.convert.mixed_precision ranks the nodes; the candidate keeps the fewest
    that pass the host gate in float (recorded beside the artifact)."""
    import dataclasses

    import onnx

    from dmsbuild.config import load_project, load_target
    from dmsbuild.board.release_agent import sha256_of
    from dmsbuild.convert.tuned import Recipe
    from dmsbuild.pipeline.tune.recipe import build_recipe, host_gate
    from dmsbuild.pipeline.tune.space import check_space

    root = tuned["root"]
    proj, prof = load_project(root), load_target(root, "t")
    prof.tune.mixed_precision = [False, True]
    check_space(proj, prof)  # the module is there: no refusal
    sha = sha256_of(root / "artifacts" / "common" / "fp32.onnx")
    mixed = Recipe("int8-qdq", False, "QUInt8", "QInt8", "MinMax", True)
    path = build_recipe(proj, prof, mixed, sha)
    nodes = json.loads(path.with_suffix(".nodes.json").read_text())["nodes_to_exclude"]
    plain = build_recipe(proj, prof, dataclasses.replace(mixed, mixed_precision=False), sha)
    assert nodes and path != plain and not host_gate(proj, prof, path)[1]
    quantized = lambda p: sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(p)).graph.node)  # noqa: E731
    assert quantized(path) < quantized(plain)
    graph = {n.name: n for n in onnx.load(str(path)).graph.node}
    assert all(n in graph for n in nodes)  # the excluded nodes are there, unquantized


def test_tensorrt_candidates_build_through_the_backend_and_the_trtexec_double_accepts_them(tmp_path):
    """[tune.tensorrt] points become trtexec build commands through backends.tensorrt.build_argv; the trtexec
    double (which checks every argument as trtexec 10 does) builds each, and refuses a sparsity spec trtexec has not."""
    import os

    from dmsbuild.backends.tensorrt import TensorRTOptions
    from dmsbuild.config import load_target
    from tests.byom import classifier

    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "o.toml").write_text('runtime = "tensorrt"\nprecisions = ["fp16"]\n[tune.tensorrt]\n'
                                                 'precision = ["fp16", "int8", "best"]\nbuilder_optimization_level = [0, 5]\n'
                                                 'sparsity = [false, true]\n')
    from dmsbuild.pipeline.tune.space import tensorrt_candidates

    cands = tensorrt_candidates(load_target(tmp_path, "o"))
    assert len(cands) == 12
    onnx_path = classifier(tmp_path / "m.onnx")
    double = str(REPO / "dmsbuild" / "doubles" / "trtexec")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for i, c in enumerate(cands):
        argv = c.build_argv(str(onnx_path), str(tmp_path / f"e{i}.engine"), TensorRTOptions(trtexec=double))
        assert f"--builderOptimizationLevel={c.builder_optimization_level}" in argv
        assert ("--sparsity=enable" in argv) == c.sparsity and ("--best" in argv) == (c.precision == "best")
        assert ("--int8" in argv) == (c.precision in ("int8", "best"))
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, (argv, proc.stdout[-500:])
        assert (tmp_path / f"e{i}.engine").is_file()
    bad = [sys.executable, double, f"--onnx={onnx_path}", f"--saveEngine={tmp_path / 'x.engine'}", "--sparsity=maybe"]
    proc = subprocess.run(bad, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Invalid value for --sparsity: 'maybe'" in proc.stdout


def test_qnn_candidates_go_through_the_qnn_backend_options(tmp_path):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.convert.quantize import settings_key
    from dmsbuild.pipeline.tune.space import qnn_candidates

    root = make_project(tmp_path / "p", {"q": 'runtime = "qnn"\nprecisions = ["int8-qdq"]\n[quantization]\nfixed_shape = true\n'
                                              '[tune.qnn]\nhtp_performance_mode = ["burst", "balanced"]\n'})
    proj, prof = load_project(root), load_target(root, "q")
    cands = qnn_candidates(prof)
    assert len(cands) == 2 * 2 * 2
    keys = {settings_key(c.static(proj, prof), 4) for c in cands}
    assert len(keys) == 4  # 8/16-bit x per-channel/tensor: four distinct quantized files, shared by the modes
    c16 = next(c for c in cands if c.activation_bits == 16 and c.htp_performance_mode == "balanced")
    assert c16.static(proj, prof).activation_type == "QUInt16" and c16.static(proj, prof).fixed_shape
    assert c16.board_provider_options(prof)["htp_performance_mode"] == "balanced"


# --------------------------------------------------------------------------
# bench/check_tune.py: the independent re-timing (issue 31, item 4)
# --------------------------------------------------------------------------
def _check_tune():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_tune", REPO / "bench" / "check_tune.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod



def test_check_tune_states_the_ratio_of_typical_latencies_not_the_median_of_round_ratios():
    """The tuner states median(default) / median(candidate); with independent process luck on both sides the
    median of each round's own ratio is another quantity (here 2.0 against 1.33), so the check's interval is
    over rounds of the ratio of medians, and its centre is that ratio."""
    mod = _check_tune()
    base = [2.0, 2.0, 2.0, 3.0, 3.0, 3.0] * 5
    cand = [1.0, 1.5, 1.5, 1.5, 1.0, 1.0] * 5  # round ratios 2, 1.33, 1.33, 2, 3, 3: their median 2.0
    low, high = mod.rounds_interval_of_medians_ratio(base, cand, resamples=500)
    point = statistics.median(base) / statistics.median(cand)
    assert point == pytest.approx(2.5 / 1.25) and low <= point <= high and 1.0 < low and high <= 3.0
    shifted = [b * 1.5 for b in base]  # every baseline round 1.5x slower: the interval moves with it
    low2, high2 = mod.rounds_interval_of_medians_ratio(shifted, cand, resamples=500)
    assert low2 == pytest.approx(1.5 * low) and high2 == pytest.approx(1.5 * high)


def _two_models(tmp_path: Path) -> tuple[Path, Path]:
    from tests.bench_release import tiny_model

    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    tiny_model(a)
    tiny_model(b, perturb=0.1)
    return a, b


@pytest.mark.parametrize("load, force, code", [(3.7, False, 2), (3.7, True, None), (0.2, False, None)])
def test_check_tune_refuses_a_ratio_on_a_busy_machine(tmp_path, monkeypatch, capsys, load, force, code):
    """Above a load average of 1 at the start it prints the load and no ratio; --force labels the ratio."""
    mod = _check_tune()
    a, b = _two_models(tmp_path)
    monkeypatch.setattr(mod.os, "getloadavg", lambda: (load, load, load))
    argv = ["check_tune.py", "--candidate", str(a), "--baseline", str(b), "--candidate-threads", "1",
            "--baseline-threads", "1", "--rounds", "4", "--iterations", "2", "--warmup", "1",
            "--tuner-ci", "0.01", "100"] + (["--force"] if force else [])
    monkeypatch.setattr(sys, "argv", argv)
    rc = mod.main()
    out = capsys.readouterr().out
    if code == 2:
        assert rc == 2 and f"load average {load:.2f} > 1.0 at start" in out and "speed-up" not in out
        return
    assert rc == 0 and re.search(r"speed-up [\d.]+x \(95 % CI [\d.]+-[\d.]+\)", out)
    assert "tuner's interval 0.01-100.00: CONTAINS" in out
    assert ("NOT A PERFORMANCE RESULT" in out) == force
    assert "4 alternated rounds x 2 runs, a new process per side and round" in out


def test_check_tune_does_not_use_the_tuners_measuring_code():
    text = (REPO / "bench" / "check_tune.py").read_text()
    for name in ("dms_bench", "bootstrap_ratio", "interleave", "dmsbuild.measure"):
        assert name not in text.split('"""', 2)[2], name  # (the docstring may name them; the code must not use them)


@pytest.mark.parametrize("h, lead", [({"ratio": 1.2, "ci_low": 1.1, "ci_high": 1.3}, "second"),
                                     ({"ratio": 0.95, "ci_low": 0.9, "ci_high": 1.02}, "first")])
def test_the_final_head_to_head_lets_a_clearly_faster_runner_up_lead(h, lead):
    from dmsbuild.pipeline.tune.board import Baseline
    from dmsbuild.pipeline.tune.choice import explain, head_to_head

    first, second = _row(0.80, 0.9), _row(0.82, 0.9, threads=2)
    order = head_to_head([first, second], h)
    assert order[0] is (second if lead == "second" else first)
    duel = order[0].measurement["head_to_head"]
    assert duel["against"] == order[1].candidate.label and duel["ci_high"] <= 1.02
    base = Baseline("fp32", Path("x"), "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    assert f"; head to head against {order[1].candidate.label}: " in explain(order[0], base, 0.95, order)


@pytest.mark.parametrize("runtime, measured, dimension", [("onnxruntime", True, "intra_op_threads"),
                                                          ("qnn", False, "htp_performance_mode"),
                                                          ("tensorrt", False, "builder_optimization_level"),
                                                          ("snpe", False, None)])
def test_space_for_answers_every_runtime_question_in_one_place(runtime, measured, dimension):
    """What a runtime's tune space holds, whether it is measured, how a figure is labelled and what makes a
    board kind: one function (the Backend interface's tune space replaces its body)."""
    from types import SimpleNamespace

    from dmsbuild.config import TuneConfig
    from dmsbuild.errors import UserError
    from dmsbuild.pipeline.tune.space import check_space, space_for

    prof = SimpleNamespace(runtime=runtime, tune=TuneConfig(), source=f"targets/{runtime}.toml")
    space = space_for(prof)
    assert space.runtime == runtime and space.measured == measured
    assert (dimension in space.dimensions) if dimension else space.dimensions == {}
    assert (space.points is not None) == (runtime in ("qnn", "tensorrt"))
    if measured:
        assert space.measured_as == {"runtime": "onnxruntime", "provider": "CPUExecutionProvider"}
        assert space.kind_facts == ("onnxruntime",)
        check_space(None, prof)
    else:
        with pytest.raises(UserError) as exc:
            check_space(None, prof)
        line = str(exc.value).splitlines()[0]
        assert line.startswith(f"targets/{runtime}.toml: `doit tune` cannot tune this target: runtime '{runtime}'")
        assert line.endswith("is not measured yet")


def test_a_deploy_waits_while_a_tune_measures_and_says_so(tmp_path):
    """The tune holds the board's deploy lock while it measures (a deploy would disturb the timing and collect
    its scratch release); a deploy meanwhile is refused in one line naming the tune and its holder."""
    from dmsbuild.errors import UserError
    from dmsbuild.ship.release import BoardLock
    from dmsbuild.transport.local import LocalTransport

    root = str(tmp_path / "root")
    with BoardLock(LocalTransport("b"), sys.executable, root, objects=[], doing="doit tune"):
        with pytest.raises(UserError) as exc:
            BoardLock(LocalTransport("b"), sys.executable, root).acquire()
    line = str(exc.value).splitlines()[0]
    assert line.startswith(f"board 'b': another doit tune holds the lock {root}/.lock: host ") and " pid " in line
    with BoardLock(LocalTransport("b"), sys.executable, root):  # released when the tune ends
        pass


# --------------------------------------------------------------------------
# the search loop with a fake board and a fake clock (issue 25, item 2: the sampled mutants' survivors)
# --------------------------------------------------------------------------
class _Clock:
    """``time`` for dmsbuild.pipeline.tune.run: ``monotonic`` moves only when the fake board measures."""

    def __init__(self, now: float = 0.0) -> None:
        import time as real

        self.now, self.strftime, self.gmtime = now, real.strftime, real.gmtime

    def monotonic(self) -> float:
        return self.now


class _FakeBench:
    """A board bench that answers each timing with ``ratio`` (candidate / default, 1 % spread) per precision and
    settings, takes ``seconds`` of the fake clock per timing, and passes every output check."""

    def __init__(self, clock: _Clock, ratios: dict[tuple[str, int], float], seconds: list[float]) -> None:
        from types import SimpleNamespace

        self.clock, self.ratios, self.seconds = clock, ratios, list(seconds)
        self.board = SimpleNamespace(name="b1")
        self.entries: dict[str, dict] = {}
        self.timed: list[tuple[str, str]] = []
        #: (name, longer) of each timing; ``noisy``: names whose first (1x) timing comes out wide
        self.rounds: list[tuple[str, int]] = []
        self.noisy: set[str] = set()

    def add(self, name, path, precision, providers, provider_options, session):
        self.entries[name] = {"precision": precision, "threads": session["intra_op_threads"]}

    def interleave(self, name, baseline, cfg, longer=1):
        self.timed.append((name, baseline.name))
        self.rounds.append((name, longer))
        self.clock.now += self.seconds.pop(0) if self.seconds else 1.0
        e = self.entries[name]
        ratio = self.ratios[(e["precision"], e["threads"])]
        if baseline.name in self.entries:  # the final: first / second
            b = self.entries[baseline.name]
            ratio /= self.ratios[(b["precision"], b["threads"])]
        spread = 0.3 if name in self.noisy else 0.01
        self.noisy.discard(name)  # noisy the first time only
        blocks = lambda ms: [[ms * (1 + spread * ((i * 7 + j * 3) % 5 - 2)) for j in range(10)] for i in range(4)]  # noqa: E731
        return {"old": blocks(10.0), "new": blocks(10.0 * ratio), "control": blocks(10.0)}

    def output_check(self, name):
        return {"verify": {"heads": {}, "samples": 4}, "error": None}


def _tune_kind(tmp_path, monkeypatch, *, strategy="staged", threads=(1,), deadline=1e9, now=0.0, seconds=(),
               ratios=None):
    """tune_kind over fp32 and per-tensor int8 QDQ (no model is built: the recipe and host gate are faked)."""
    from types import SimpleNamespace

    import dmsbuild.core.accuracy as accuracy
    import dmsbuild.measure.gates as gates
    from dmsbuild.config import TuneConfig
    from dmsbuild.pipeline.tune import run as tune_run
    from dmsbuild.pipeline.tune.board import Baseline

    clock = _Clock(now)
    monkeypatch.setattr(tune_run, "time", clock)
    monkeypatch.setattr(tune_run, "build_recipe", lambda proj, prof, recipe, sha: tmp_path / f"{recipe.precision}.onnx")
    monkeypatch.setattr(tune_run, "host_gate", lambda proj, prof, path: ({"heads": {}}, []))
    monkeypatch.setattr(tune_run, "accuracy_summary", lambda ev: {"min_top1_agreement": 1.0})
    monkeypatch.setattr(gates, "accuracy_floors", lambda proj, prof: None)
    monkeypatch.setattr(accuracy, "failures", lambda heads, floors, samples: [])
    cfg = TuneConfig(precision=["fp32", "int8-qdq"], per_channel=[False], intra_op_threads=list(threads),
                     strategy=strategy, resamples=200)
    prof = SimpleNamespace(name="t", runtime="onnxruntime", tune=cfg, source="targets/t.toml")
    proj = SimpleNamespace(artifacts=tmp_path / "artifacts", root=tmp_path)
    base = Baseline("fp32", tmp_path / "fp32.onnx", "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    bench = _FakeBench(clock, ratios or {("fp32", t): 1.0 for t in threads} | {("int8-qdq", t): 0.5 / t for t in threads},
                       list(seconds))
    lines: list[str] = []
    res = tune_run.tune_kind(proj, prof, bench, {"arch": "x86_64", "cpu_count": 4, "emulated": True}, base, "m" * 64,
                             deadline=deadline, started=0.0, boards=["b1"], log=lines.append)
    return res, bench, lines


def test_exhaustive_strategy_measures_every_recipe_at_every_setting(tmp_path, monkeypatch):
    res, bench, _ = _tune_kind(tmp_path, monkeypatch, strategy="exhaustive", threads=(2, 1))
    measured = sorted((r.candidate.recipe.precision, r.candidate.settings.intra_op_threads) for r in res.rows
                      if r.measurement)
    assert measured == [("fp32", 1), ("fp32", 2), ("int8-qdq", 1), ("int8-qdq", 2)]
    assert res.chosen is not None and res.chosen.candidate.recipe.precision == "int8-qdq"


def test_a_tune_past_its_deadline_starts_no_measurement(tmp_path, monkeypatch):
    """The budget holds from the first candidate on: with no measurement to estimate from, a candidate is
    started only while the deadline has not passed (here it passed half a second ago)."""
    res, bench, lines = _tune_kind(tmp_path, monkeypatch, now=10.0, deadline=9.5)
    assert bench.timed == [] and res.chosen is None
    assert sorted(res.skipped) == ["fp32, 1 thread", "int8 QDQ per-tensor u8s8 MinMax, 1 thread"]
    assert any(line.startswith("  budget reached: 2 candidate(s) not measured") for line in lines), lines


def test_the_final_head_to_head_runs_only_within_the_budget(tmp_path, monkeypatch):
    """Two contenders: the final times them against each other, and names the result in the log; when the
    deadline has passed by then (the second measurement took longer than the first), there is no final."""
    ratios = {("fp32", 2): 0.8, ("fp32", 1): 1.0, ("int8-qdq", 2): 0.5, ("int8-qdq", 1): 0.6}
    res, bench, lines = _tune_kind(tmp_path, monkeypatch, strategy="exhaustive", threads=(2, 1), ratios=ratios)
    # four candidates, the final, then the confirmation of the leader against the default
    assert len(bench.timed) == 6 and bench.timed[-2][1].startswith("c-") and bench.timed[-1][1] == "fp32"
    [h2h] = [line for line in lines if line.startswith("  head to head: ")]
    assert re.fullmatch(r"  head to head: int8 QDQ per-tensor u8s8 MinMax, 2 threads 1\.20x int8 QDQ per-tensor "
                        r"u8s8 MinMax, 1 thread \(CI 1\.\d\d-1\.\d\d\)", h2h), h2h
    # 50 s for the first candidate, 90 s for the second: the final would start at 140 s of a 130 s budget
    res, bench, lines = _tune_kind(tmp_path / "late", monkeypatch, ratios={("fp32", 1): 0.8, ("int8-qdq", 1): 0.5},
                                   deadline=130.0, seconds=(50.0, 90.0))
    assert len(bench.timed) == 3 and not any("head to head" in line for line in lines), lines
    assert res.chosen is not None and "head_to_head" not in res.chosen.measurement


def test_the_choice_states_the_confirmations_figures_and_an_unconfirmed_leader_leaves_the_default(tmp_path, monkeypatch):
    """The search picks the fastest of several noisy intervals, which flatters it: the leader is re-timed
    against the default after the search, the choice states that measurement (the search's kept under
    ``search``), and a leader the confirmation does not show faster is not chosen, in one line. The
    confirmation runs even when the search spent the budget (no unconfirmed choice is written)."""
    from dmsbuild.pipeline.tune import run as tune_run

    confirming = {"ratio": 0.5}

    orig = _FakeBench.interleave

    def interleave(self, name, baseline, cfg, longer=1):
        out = orig(self, name, baseline, cfg, longer)
        if [n for n, b in self.timed].count(name) > 1 and baseline.name == "fp32":  # the confirmation
            out["new"] = [[v * confirming["ratio"] / 0.5 for v in b] for b in out["new"]]
        return out

    monkeypatch.setattr(_FakeBench, "interleave", interleave)
    res, bench, lines = _tune_kind(tmp_path, monkeypatch, ratios={("fp32", 1): 1.0, ("int8-qdq", 1): 0.5})
    assert res.chosen is not None and bench.timed[-1] == (f"c-{res.chosen.cand_id}", "fp32")
    assert bench.rounds[-1] == (f"c-{res.chosen.cand_id}", tune_run.CONFIRM_FIRST) and tune_run.CONFIRM_FIRST > 1
    assert res.chosen.measurement["search"]["ratio"] == pytest.approx(0.5, rel=0.05)
    confirming["ratio"] = 0.8
    res, bench, lines = _tune_kind(tmp_path / "b", monkeypatch, ratios={("fp32", 1): 1.0, ("int8-qdq", 1): 0.5})
    m = res.chosen.measurement
    assert m["ratio"] == pytest.approx(0.8, rel=0.05) and m["search"]["ratio"] == pytest.approx(0.5, rel=0.05)
    assert "at least 1.2" in res.sentence and "confirmed after the search, which measured 2.0" in res.sentence, res.sentence
    confirming["ratio"] = 1.0  # not faster in the confirmation: the default stays, said in one line
    res, bench, lines = _tune_kind(tmp_path / "c", monkeypatch, ratios={("fp32", 1): 1.0, ("int8-qdq", 1): 0.5},
                                   deadline=2.5)  # the search spent the budget: the confirmation still runs
    assert res.chosen is None and len(bench.timed) == 3
    assert re.search(r"not confirmed: re-timed after the search it came out 1\.00x", res.sentence), res.sentence
    assert res.sentence.endswith("nothing chosen, the default stays")


def test_a_figure_of_an_emulated_board_is_never_said_to_be_measured_on_the_board():
    from dmsbuild.pipeline.tune.board import provenance

    cpu = {"runtime": "onnxruntime", "provider": "CPUExecutionProvider"}
    assert provenance({"emulated": True}, "emu-01", cpu) == "emulated board (this machine's CPU): board emu-01"
    assert provenance({"arch": "aarch64"}, "rpi-1", cpu) == \
        "board (measured by the dms_bench runner): measured on board rpi-1"


def test_the_host_waits_for_a_timing_at_least_twice_the_runners_own_limit(tmp_path):
    """The runner stops after the block pair that crosses --max-seconds (so it can run up to about twice that),
    and loading the sessions comes on top: the host's timeout must not cut a measurement that keeps its limit."""
    from dmsbuild.config import TuneConfig
    from dmsbuild.pipeline.tune.board import Baseline, BoardBench
    from dmsbuild.transport.base import CommandResult
    from types import SimpleNamespace

    calls = []

    def run(argv, timeout=None):
        calls.append((argv, timeout))
        return CommandResult(argv, 0, json.dumps({"old": [[1.0]], "new": [[1.0]]}), "")

    bench = BoardBench.__new__(BoardBench)
    bench.transport, bench.board, bench.python = SimpleNamespace(run=run), SimpleNamespace(name="b"), "python3"
    bench.dir, bench.placed_names = "/r/releases/s1", ["fp32", "c-1"]
    bench.baseline = base = Baseline("fp32", tmp_path / "fp32.onnx", "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    for longer in (1, 4):
        bench.interleave("c-1", base, TuneConfig(max_seconds=600.0), longer)
        argv, timeout = calls[-1]
        limit = float(argv[argv.index("--max-seconds") + 1])
        assert limit == 600.0 * longer and timeout >= 2 * limit + 60, (limit, timeout)


def test_the_choice_file_records_the_speedup_and_its_interval_to_six_decimals(tmp_path):
    """What `doit build` and bench/check_tune.py read back: speedup = 1 / ratio, its CI from the ratio's CI,
    floats kept to 6 decimals (convert/tuned._toml_value), and keep_default false for a choice."""
    import tomllib
    from types import SimpleNamespace

    from dmsbuild.pipeline.tune.board import Baseline
    from dmsbuild.pipeline.tune.choice import KindResult, write_choice

    row = _row(0.8, 0.9)
    row.measurement["ci_low"] = 0.7
    res = KindResult("k", "x86_64 cpu, 4 cores", "b", ["b"], "emulated board", {}, [row], row, "sentence", [])
    base = Baseline("fp32", tmp_path / "fp32.onnx", "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    proj = SimpleNamespace(root=tmp_path)
    path = write_choice(proj, SimpleNamespace(name="t"), [res], base, "a" * 64, "m.pt")
    [choice] = tomllib.loads(path.read_text())["choice"]
    assert choice["speedup"] == 1.25 and choice["speedup_ci"] == [round(1 / 0.9, 6), round(1 / 0.7, 6)]
    assert choice["speedup_ci"][0] == 1.111111 and choice["keep_default"] is False


def test_a_build_without_a_default_artifact_is_refused_in_one_line(tmp_path):
    from types import SimpleNamespace

    from dmsbuild.errors import UserError
    from dmsbuild.pipeline.tune.run import _baseline

    proj = SimpleNamespace(artifacts=tmp_path / "artifacts", root=tmp_path)
    prof = SimpleNamespace(name="t")
    with pytest.raises(UserError) as exc:
        _baseline(proj, prof, {"artifacts": [{"name": "tuned", "path": "x.onnx"}]})
    assert str(exc.value).splitlines()[0] == f"{tmp_path}/artifacts/t/build.json: no default artifact to compare with"


def test_tune_figures_are_labelled_by_what_the_runtimes_space_measures(tmp_path, monkeypatch):
    """The provenance of a tune comes from the space's ``measured_as`` (the Backend's answer), not from a
    fixed runtime: a space measured through the QNN provider on an emulated board is the HTP simulator's."""
    import dataclasses

    from dmsbuild.pipeline.tune import run as tune_run
    from dmsbuild.pipeline.tune.space import space_for

    qnn = {"runtime": "onnxruntime", "provider": "QNNExecutionProvider"}
    monkeypatch.setattr(tune_run, "space_for", lambda prof: dataclasses.replace(space_for(prof), measured_as=qnn))
    res, _, _ = _tune_kind(tmp_path, monkeypatch)
    # an emulated board: the simulator ran on this machine, not on the board's processor
    assert res.provenance == "QNN HTP simulator (this machine's CPU): board b1"


def test_a_wide_interval_is_measured_longer_while_the_budget_allows(tmp_path, monkeypatch):
    """A candidate whose interval comes out wider than TARGET_WIDTH is timed again with as many blocks again
    (then twice that), the blocks adding up (the noisy first stretch stays in the data), and its measurement
    says how many rounds it took."""
    from dmsbuild.pipeline.tune import run as tune_run

    orig_add = _FakeBench.add

    def add(self, name, path, precision, providers, provider_options, session):  # the int8 candidate is noisy
        orig_add(self, name, path, precision, providers, provider_options, session)
        if precision == "int8-qdq":
            self.noisy.add(name)

    monkeypatch.setattr(_FakeBench, "add", add)
    res, bench, _ = _tune_kind(tmp_path, monkeypatch)
    [int8] = [r for r in res.rows if r.candidate.recipe.precision == "int8-qdq"]
    [fp32] = [r for r in res.rows if r.candidate.recipe.precision == "fp32"]
    search = int8.measurement["search"]  # int8 is chosen: its search measurement, before the confirmation
    assert search["rounds"] in (2, 4) and fp32.measurement["rounds"] == 1 and fp32.measurement["blocks"] == 4
    calls = [longer for n, longer in bench.rounds if n == f"c-{int8.cand_id}"]
    assert calls[:-1] == [1, 1, 2][: {2: 2, 4: 3}[search["rounds"]]]  # then the confirmation's first call
    assert search["blocks"] == 4 * search["rounds"]  # every block timed counts


class _StandInBench:
    """The board side of ``tune_kind`` (BoardBench's methods it calls), recording what would be timed."""

    board = type("B", (), {"name": "b1"})()

    def __init__(self) -> None:
        self.entries: dict[str, object] = {}
        self.timed: list[tuple[str, str]] = []

    def add(self, name, *args):
        self.entries[name] = args

    def interleave(self, name, against, cfg, longer=1):
        self.timed.append((name, against.name))
        return {}

    def output_check(self, name):
        return {"error": "not on a board in this test"}


def _tune_kind_here(tmp_path, monkeypatch, *, cached: bool, deadline_in: float, facts: dict | None = None,
                    measured_as: dict | None = None, target: str = TARGET):
    """``tune_kind`` on the tiny project's space with the stand-in bench (builds, host gate and the ratio's
    statistics stubbed); with ``cached``, every candidate was measured by an earlier tune at 0.5x, 0.6x ...
    the default's latency. Returns (result, candidates, bench)."""
    import dataclasses
    import time

    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.tune import run as tune_run
    from dmsbuild.pipeline.tune.board import Baseline, board_kind, measurement_path
    from dmsbuild.pipeline.tune.space import Candidate, recipes, settings_space, space_for

    root = make_project(tmp_path / "p", {"t": target})
    proj, prof = load_project(root), load_target(root, "t")
    facts = facts or {"arch": "x86_64", "cpu_model": "test", "cpu_count": 4, "emulated": True}
    if measured_as is not None:  # how a runtime's measurements are classified (its backend's tune_measured_as)
        space = dataclasses.replace(space_for(prof), measured_as=measured_as)
        monkeypatch.setattr(tune_run, "space_for", lambda prof: space)
    baseline = Baseline("fp32", root / "fp32.onnx", "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    kind_key, _ = board_kind(facts, space_for(prof).kind_facts)
    cands = [Candidate(r, s) for r in recipes(prof.tune) for s in settings_space(prof.tune, facts["cpu_count"])]
    assert len(cands) >= 2
    for i, c in enumerate(cands if cached else []):
        path = measurement_path(proj, "t", kind_key, c.id("sha"), baseline.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"ratio": 0.5 + i / 10, "ci_low": 0.45 + i / 10, "ci_high": 0.55 + i / 10,
                                    "label": c.label, "rounds": 1}))
    monkeypatch.setattr(tune_run, "host_gate", lambda proj, prof, path: ({}, []))
    monkeypatch.setattr(tune_run, "build_recipe", lambda proj, prof, recipe, sha: tmp_path / "c.onnx")
    monkeypatch.setattr(tune_run, "measure_ratio", lambda samples, cfg: {"ratio": 1.0, "ci_low": 0.9, "ci_high": 1.1})
    bench = _StandInBench()
    now = time.monotonic()
    res = tune_run.tune_kind(proj, prof, bench, facts, baseline, "sha", deadline=now + deadline_in, started=now,
                             boards=["b1"], log=lambda line: None)
    return res, cands, bench


@pytest.mark.parametrize("budget_left", [True, False])
def test_the_final_head_to_head_runs_only_while_the_budget_lasts(tmp_path, monkeypatch, budget_left):
    """Two contenders (cached measurements, both faster than the default): the final times them head to head
    only before the deadline; past it the ranking stands as measured (no more board time)."""
    res, cands, bench = _tune_kind_here(tmp_path, monkeypatch, cached=True, deadline_in=600 if budget_left else -1)
    first, second = (f"c-{c.id('sha')}" for c in cands[:2])
    assert bench.timed == ([(first, second)] if budget_left else [])
    assert ("head_to_head" in (res.rows[0].measurement or {})) == budget_left


def test_a_tune_whose_budget_is_spent_measures_nothing_and_lists_each_candidate_as_skipped(tmp_path, monkeypatch):
    """The deadline passed (even a moment ago) before the first measurement: no candidate is timed, each one
    is skipped for the budget, and nothing is chosen."""
    res, cands, bench = _tune_kind_here(tmp_path, monkeypatch, cached=False, deadline_in=-0.2)
    assert bench.timed == [] and res.chosen is None
    assert len(res.skipped) == len(res.rows) >= 2
    assert all(r.skipped and r.skipped.startswith("budget: ") and r.measurement is None for r in res.rows)


@pytest.mark.parametrize("provider, arch, emulated, source", [
    ("CPUExecutionProvider", "aarch64", False, "board-runner"),
    ("CPUExecutionProvider", "x86_64", True, "emulated"),
    ("QNNExecutionProvider", "x86_64", False, "simulator"),
])
def test_a_tune_figure_says_where_it_was_measured(tmp_path, monkeypatch, provider, arch, emulated, source):
    """The tune's provenance comes from what the runtime's measurements are (its ``measured_as``) and the board's
    facts, in the words of provenance.SOURCES: a real board, an emulated one, the QNN HTP simulator on x86."""
    from dmsbuild.core.provenance import SOURCES

    facts = {"arch": arch, "cpu_model": "test", "cpu_count": 4, "emulated": emulated}
    res, _, _ = _tune_kind_here(tmp_path, monkeypatch, cached=True, deadline_in=600, facts=facts,
                                measured_as={"runtime": "onnxruntime", "provider": provider})
    assert res.provenance == (f"{SOURCES[source]}: board b1" if source == "emulated"  # this machine, not a board
                              else f"{SOURCES[source]}: measured on board b1"), res.provenance


@pytest.mark.parametrize("strategy", ["staged", "exhaustive"])
def test_the_search_strategy_decides_which_candidates_are_measured(tmp_path, monkeypatch, strategy):
    """``exhaustive``: every recipe at every runtime setting; ``staged``: every recipe at the first setting, then
    the other settings of the two fastest recipes only (here 3 recipes x 2 thread counts)."""
    target = TARGET.replace('precision = ["fp32", "int8-qdq"]\nper_channel = [false]',
                            'precision = ["fp32", "int8-qdq"]\nper_channel = [false, true]')
    target = target.replace("intra_op_threads = [1]", "intra_op_threads = [1, 2]") + f'strategy = "{strategy}"\n'
    res, cands, _ = _tune_kind_here(tmp_path, monkeypatch, cached=True, deadline_in=600, target=target)
    recipes = {c.recipe for c in cands}
    settings = {c.settings for c in cands}
    assert len(recipes) == 3 and len(settings) == 2, (recipes, settings)
    measured = {r.candidate for r in res.rows}
    if strategy == "exhaustive":
        assert measured == set(cands)
    else:  # cached at 0.5x, 0.6x ... in candidate order: the first two recipes are the fastest
        first = cands[0].settings
        fastest = [c.recipe for c in cands if c.settings == first][:2]
        assert measured == {c for c in cands if c.settings == first or c.recipe in fastest}
        assert len(measured) == 5


def test_the_choice_file_records_the_speedup_and_its_interval_of_the_chosen_candidate(tmp_path):
    """The chosen candidate's latency ratio 0.8 (CI 0.75-0.86) is a 1.25x speed-up (CI 1/0.86-1/0.75) in the file."""
    import tomllib

    from dmsbuild.config import load_project, load_target
    from dmsbuild.convert.tuned import Recipe, Settings, tuned_path
    from dmsbuild.pipeline.tune.board import Baseline
    from dmsbuild.pipeline.tune.choice import KindResult, Row, write_choice
    from dmsbuild.pipeline.tune.space import Candidate

    root = make_project(tmp_path / "p", {"t": TARGET})
    proj, prof = load_project(root), load_target(root, "t")
    baseline = Baseline("fp32", root / "fp32.onnx", "fp32", "0" * 64, 1, ["CPUExecutionProvider"], [{}])
    m = {"ratio": 0.8, "ci_low": 0.75, "ci_high": 0.86, "confidence": 0.95, "measured_at": "2026-01-01T00:00:00Z"}
    row = Row(Candidate(Recipe("int8-qdq", per_channel=False), Settings(1)), "abc", [], {}, m, True, None, "pass")
    res = KindResult("k", "x86_64 test, 4 cores", "b1", ["b1"], "emulated board: board b1", {}, [row], row, "why", [])
    write_choice(proj, prof, [res], baseline, "sha", "tiny.pt")
    [choice] = tomllib.loads(tuned_path(proj, "t").read_text())["choice"]
    assert choice["speedup"] == pytest.approx(1.25, abs=1e-6)
    assert choice["speedup_ci"] == pytest.approx([1 / 0.86, 1 / 0.75], abs=1e-6)


def test_a_tune_without_a_default_artifact_to_compare_with_is_one_line(tmp_path):
    from dmsbuild.config import load_project, load_target
    from dmsbuild.errors import UserError
    from dmsbuild.pipeline.tune.run import _baseline

    root = make_project(tmp_path / "p", {"t": 'runtime = "onnxruntime"\nprecisions = ["fp32"]\n[deploy]\ngroup = "t"\n'})
    proj, prof = load_project(root), load_target(root, "t")
    with pytest.raises(UserError) as exc:
        _baseline(proj, prof, {"artifacts": [{"name": "tuned", "path": "x"}]})
    assert str(exc.value).splitlines()[0] == f"{proj.artifacts / 't' / 'build.json'}: no default artifact to compare with"
