"""`doit tune` with the runtime as a dimension (issue 28 item 4): an onnxruntime target shipping `[backend] tflite`
has LiteRT candidates (their precisions x interpreter threads) timed by the same interleaved harness against the
same default ONNX artifact; a choice naming a LiteRT artifact ships as `tuned` and runs with LiteRT on the board.

Tiny project (settled, so full-integer INT8 passes the gate: tests/test_targets_coral_e2e.py says why), one real
sshd board on 127.0.17.x, 2 candidates (ONNX Runtime int8 QDQ and LiteRT int8, each at 2 threads), 2 block pairs
of 3 inferences. Timing is never asserted: only what is measured, written, shipped and run. The end-to-end part
needs the `litert` extra (skipped, saying so, without it); the space and refusal tests do not.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, _free_port
from tests.tinyproject import make_project, run_doit

NET, FIRST = "127.0.17", 11
HAVE_LITERT = all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"))
needs_extra = pytest.mark.skipif(not HAVE_LITERT, reason="the litert extra is not installed (pip install 'dmsbuild[litert]')")

TARGET = """\
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
[backend]
tflite = ["int8-qdq"]
[deploy]
group = "t"
[bench]
warmup = 1
iterations = 5
threads = 1
verify_samples = 3
[tune]
precision = ["int8-qdq"]
per_channel = [false]
intra_op_threads = [2]
blocks = 2
iterations = 3
warmup = 1
max_seconds = 5
budget_minutes = 8
"""
NO_TFLITE = TARGET.replace('[backend]\ntflite = ["int8-qdq"]\n', "")


def _profile(tmp_path: Path, text: str):
    from dmsbuild.config import load_target

    (tmp_path / "targets").mkdir(exist_ok=True)
    (tmp_path / "targets" / "x.toml").write_text(text)
    return load_target(tmp_path, "x")


# --------------------------------------------------------------------------
# the space (no extra, no board)
# --------------------------------------------------------------------------
def test_the_space_has_litert_points_when_the_target_ships_tflite(tmp_path, monkeypatch):
    from dmsbuild.backends import litert
    from dmsbuild.convert.tuned import Recipe, Settings
    from dmsbuild.pipeline.tune.space import part_notes, part_recipes, recipes, settings_for, space_for

    monkeypatch.setattr(litert, "missing_extra", lambda: [])  # the host has the extra
    prof = _profile(tmp_path, TARGET.replace('tflite = ["int8-qdq"]', 'tflite = ["fp32", "int8-qdq"]')
                    .replace('precision = ["int8-qdq"]', 'precision = ["fp32", "int8-qdq"]')
                    .replace("intra_op_threads = [2]\n", ""))
    space = space_for(prof)
    assert space.dimensions["runtime"] == ["onnxruntime", "litert"]
    assert space.dimensions["litert_precision"] == ["fp32", "int8-qdq"] and part_notes(space) == []
    assert space.kind_facts == ("onnxruntime", "litert")  # a board with another LiteRT version is another kind
    lite = part_recipes(space)
    assert lite == [Recipe("fp32", runtime="litert"), Recipe("int8-qdq", runtime="litert")]
    assert [r.label for r in lite] == ["litert fp32", "litert int8 full-integer"]
    # LiteRT's settings are its thread count only (1..cores, full first); ONNX Runtime's keep the whole session space
    assert settings_for(lite[1], prof.tune, 4) == [Settings(4), Settings(3), Settings(2), Settings(1)]
    assert len(settings_for(recipes(prof.tune)[0], prof.tune, 4)) == 4
    # a LiteRT candidate's id (its cache key and file name) differs from the ONNX recipe of the same precision,
    # while an ONNX recipe's id is what it was before the runtime dimension (runtime None is left out)
    assert Recipe("int8-qdq").as_dict() == {"precision": "int8-qdq", "mixed_precision": False}
    assert Recipe("int8-qdq", runtime="litert").key("m", 8) != Recipe("int8-qdq").key("m", 8)

    # LiteRT's precisions as its backend builds them, whichever .tflite the target ships itself (the int8 one may
    # fail the build's gate; the tuner gates each candidate itself), and no fp16 (computed as fp32 on the CPU)
    only_fp32 = space_for(_profile(tmp_path, TARGET.replace('tflite = ["int8-qdq"]', 'tflite = ["fp32"]')
                                   .replace('precision = ["int8-qdq"]', 'precision = ["fp32", "fp16", "int8-qdq"]')))
    assert part_recipes(only_fp32) == lite

    without = space_for(_profile(tmp_path, NO_TFLITE))
    assert "runtime" not in without.dimensions and part_recipes(without) == [] and without.kind_facts == ("onnxruntime",)
    [note] = part_notes(without)  # said, in one line, how to search LiteRT too
    assert note.startswith("LiteRT candidates not searched: ") and "[backend] tflite" in note and "\n" not in note


def test_a_missing_litert_extra_skips_its_candidates_in_one_line(tmp_path, monkeypatch):
    from dmsbuild.backends import litert
    from dmsbuild.pipeline.tune.space import check_space, part_notes, part_recipes, space_for

    monkeypatch.setattr(litert, "missing_extra", lambda: ["litert_torch", "ai_edge_litert"])
    prof = _profile(tmp_path, TARGET)
    space = space_for(prof)
    check_space(None, prof)  # the ONNX Runtime part is still tuned: no refusal, no crash
    assert part_recipes(space) == [] and "runtime" not in space.dimensions
    [note] = part_notes(space)
    assert note.startswith("LiteRT candidates skipped: the litert extra is missing here (no litert_torch, "
                           "ai_edge_litert); pip install 'dmsbuild[litert]'") and "\n" not in note


def test_missing_extra_looks_without_importing():
    from dmsbuild.backends import litert

    before = set(sys.modules)
    litert.missing_extra()
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in litert.EXTRA_MODULES}


# --------------------------------------------------------------------------
# end to end on an emulated board (the litert extra)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not HAVE_LITERT:
        pytest.skip("the litert extra is not installed (pip install 'dmsbuild[litert]')")
    from tests.test_targets_coral_e2e import _settled_project

    where = tmp_path_factory.mktemp("tune-litert-boards")
    port = _free_port(f"{NET}.{FIRST}")
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "up", "--count", "1", "--dir", str(where), "--port",
                    str(port), "--first", str(FIRST), "--net", NET, "--groups", "t"], check=True, cwd=REPO,
                   capture_output=True)
    state = json.loads((where / "boards.json").read_text())
    root = _settled_project(tmp_path_factory.mktemp("tune-litert") / "p", {"t": TARGET, "n": NO_TFLITE})
    run = run_doit(root, "tune", "target=t", f"inventory={state['inventory']}")
    yield {"root": root, "inventory": state["inventory"], "run": run, "boards": state}
    subprocess.run([sys.executable, "-m", "dmsbuild.boards", "down", "--dir", str(where)], cwd=REPO, check=True,
                   capture_output=True)


@needs_extra
def test_tune_measures_both_runtimes_against_the_same_default(tuned):
    root, run = tuned["root"], tuned["run"]
    assert run.rc == 0, run.output[-3000:]
    assert "tune t: runtimes onnxruntime, litert" in run.output
    measured = re.findall(r"^  \[\s*\d+ s\] (.*): [\d.]+x vs fp32 \(CI [\d.]+-[\d.]+\) \[emulated board", run.output, re.M)
    assert sorted(measured) == ["int8 QDQ per-tensor u8s8 MinMax, 2 threads", "litert int8 full-integer, 2 threads"], \
        run.output[-2000:]
    rows = json.loads((root / "artifacts" / "tune" / "t" / "tune.json").read_text())["results"][0]["rows"]
    [lite] = [r for r in rows if r["recipe"].get("runtime") == "litert"]
    m = lite["measurement"]
    # the same harness as an ONNX candidate: interleaved with the default and the A/A control, the host gate first
    assert m["control"] is not None and m["isolation"] == "fresh" and m["baseline"]["name"] == "fp32"
    assert lite["gate_failures"] == [] and lite["accuracy"]["samples"]
    [cand] = (root / "artifacts" / "common").glob("tune-*.tflite")  # built once, by the LiteRT backend
    assert (root / "artifacts" / "common" / "eval" / f"{cand.stem}.json").is_file()  # its host evaluation
    report = (root / "artifacts" / "tune" / "t" / "report.md").read_text()
    assert "| litert |" in report and "| onnxruntime |" in report


def _force_litert_choice(root: Path) -> dict:
    """The choice file as `doit tune` writes it for the measured LiteRT candidate (whether it is faster on this
    machine is not deterministic; the test needs a LiteRT choice)."""
    from dmsbuild.board.release_agent import sha256_of
    from dmsbuild.config import load_project, load_target
    from dmsbuild.convert.tuned import Recipe, Settings
    from dmsbuild.pipeline.tune.choice import KindResult, Row, write_choice
    from dmsbuild.pipeline.tune.run import _baseline
    from dmsbuild.pipeline.tune.space import Candidate
    from dmsbuild.ship.manifest import read_build

    proj, prof = load_project(root), load_target(root, "t")
    doc = json.loads((root / "artifacts" / "tune" / "t" / "tune.json").read_text())["results"][0]
    [raw] = [r for r in doc["rows"] if r["recipe"].get("runtime") == "litert"]
    row = Row(Candidate(Recipe(**raw["recipe"]), Settings(**raw["runtime"])), raw["id"], [], raw["accuracy"],
              raw["measurement"], True, None, "pass")
    res = KindResult(doc["kind_key"], doc["kind"], doc["board"], [doc["board"]], doc["provenance"], {}, [row], row,
                     "forced by the test", [])
    _, build = read_build(proj, "t")
    write_choice(proj, prof, [res], _baseline(proj, prof, build), sha256_of(root / "artifacts/common/fp32.onnx"), "tiny.pt")
    return raw


@needs_extra
def test_deploy_ships_a_litert_choice_as_tuned_and_the_board_runs_it_with_litert(tuned):
    root = tuned["root"]
    assert tuned["run"].rc == 0, tuned["run"].output[-3000:]
    raw = _force_litert_choice(root)
    assert 'runtime = "litert"' in (root / "targets" / "t.tuned.toml").read_text()
    run = run_doit(root, "deploy", "target=t", f"inventory={tuned['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    build = json.loads((root / "artifacts" / "t" / "build.json").read_text())
    first = build["artifacts"][0]
    assert (first["name"], first["kind"], first["runtime"], first["precision"]) == ("tuned", "tflite", "litert", "int8-qdq")
    assert first["path"].endswith("t/tuned.tflite") and first["session"] == {"intra_op_threads": 2}
    assert first["quantization"]["format"] == "tflite-full-integer"
    # the shipped file is the measured candidate, and its host gate judged the .tflite itself
    [measured] = (root / "artifacts" / "common").glob("tune-*.tflite")
    assert (root / first["path"]).read_bytes() == measured.read_bytes() and raw["gate_failures"] == []
    assert first["eval"]["litert"]["format"] == "tflite-full-integer"
    assert [a["name"] for a in build["artifacts"]] == ["tuned", "fp32", "int8-qdq", "int8-qdq-tflite"]
    board_root = Path(tuned["boards"]["boards"][0]["root"]) / "t"
    manifest = json.loads((board_root / "current" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["name"] == "tuned" and manifest["artifacts"][0]["file"] == "models/tuned.tflite"
    assert 'DMS_ARTIFACT:-tuned}' in (board_root / "current" / "run.sh").read_text()
    con = sqlite3.connect(root / "artifacts" / "results.sqlite")
    try:
        row = con.execute("SELECT runtime, provider, threads, error, verify_json FROM results WHERE target = 't' AND "
                          "artifact = 'tuned' ORDER BY created_at DESC").fetchone()
    finally:
        con.close()
    assert row is not None, run.output[-2000:]
    runtime, provider, threads, error, verify = row
    # the board ran it in LiteRT with the tuned thread count, and checked its outputs on the FP32 reference
    assert (runtime, provider, threads, error) == ("litert", "cpu (XNNPACK)", 2, None)
    assert set(json.loads(verify)["heads"]) == {"eye_state", "yawn", "activity", "head_pose"}


@needs_extra
def test_a_litert_choice_on_a_target_without_tflite_is_refused_in_one_line(tuned):
    root = tuned["root"]
    path = root / "targets" / "t.tuned.toml"
    if 'runtime = "litert"' not in path.read_text():
        _force_litert_choice(root)
    other = root / "targets" / "n.tuned.toml"
    other.write_text(path.read_text().replace('target = "t"', 'target = "n"'))
    try:
        run = run_doit(root, "build", "target=n")
        assert run.rc != 0 and "Traceback" not in run.output
        [line] = [x for x in run.output.splitlines() if "n.tuned.toml: the choice is a litert artifact" in x]
        assert re.search(r"n\.tuned\.toml: the choice is a litert artifact \(litert int8 full-integer\), but target n "
                         r"ships no litert artifacts \(.*targets/n\.toml\); add \[backend\] tflite", line), line
        assert not (root / "artifacts" / "n" / "build.json").exists()
    finally:
        other.unlink()


@needs_extra
def test_tune_without_the_extra_says_so_in_one_line_and_tunes_onnx(tuned, monkeypatch):
    """The litert extra missing on the host (DMSBUILD_EXTRAS=dev,qnn): the ONNX Runtime candidates are tuned, the
    LiteRT ones are named as skipped in one line of the log and in the report."""
    from dmsbuild.backends import litert
    from dmsbuild.config import load_project, load_target
    from dmsbuild.pipeline.tune.run import run_tune
    from dmsbuild.tasks.deploy import boards_for

    root = tuned["root"]
    assert tuned["run"].rc == 0, tuned["run"].output[-3000:]
    choice = root / "targets" / "t.tuned.toml"
    kept = choice.read_text()
    monkeypatch.setattr(litert, "missing_extra", lambda: ["ai_edge_litert"])
    monkeypatch.chdir(root)
    proj, prof = load_project(root), load_target(root, "t")
    boards = boards_for(proj, prof, inventory=tuned["inventory"])
    lines: list[str] = []
    try:
        _, results = run_tune(proj, prof, boards, log=lines.append)
    finally:
        choice.write_text(kept)
    said = [x for x in lines if "LiteRT candidates skipped" in x]
    assert said == ["tune t: LiteRT candidates skipped: the litert extra is missing here (no ai_edge_litert); "
                    "pip install 'dmsbuild[litert]' (litert-torch, ai-edge-quantizer, ai-edge-litert; about 1.1 GB)"]
    assert "tune t: runtimes onnxruntime" in lines
    assert all(r.candidate.recipe.runtime is None for r in results[0].rows)
    measured = [x for x in lines if re.match(r"^  \[\s*\d+ s\]", x)]  # (the board kind has no LiteRT version now)
    assert measured and not [x for x in measured if "litert" in x], lines
    assert "Not searched: LiteRT candidates skipped" in (root / "artifacts" / "tune" / "t" / "report.md").read_text()
