"""Any tensor name works end to end (issue 14, item 3).

The issue saw an output named ``gpu_0/softmax_1`` pass `doit build`, get uploaded, fail the board's result
validation and be rolled back. Names become safe ids wherever they are file names (reference.npz members),
validated JSON keys (the board's verify heads) or shell words (trt_runner's --keys); users see the original.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.errors import UserError
from dmsbuild.names import SAFE_RE, head_keys, safe_id, shown
from tests.byom import classifier, make_byom_project, project_toml
from tests.tinyproject import run_doit

ODD = ["gpu_0/softmax_1", "input:0", "logits (raw)", "Ausgabe_ä", "..", "a..b", "x" * 80, "/etc/passwd"]


def test_safe_id_is_identity_for_safe_names() -> None:
    for n in ("eye_state", "head_pose", "fc.out", "a-b"):
        assert safe_id(n) == n


@pytest.mark.parametrize("name", ODD)
def test_safe_id_passes_the_boards_validation(name: str) -> None:
    key = safe_id(name)
    assert SAFE_RE.match(key) and ".." not in key and "/" not in key
    assert key != name


def test_safe_pattern_is_the_result_validations() -> None:
    from dmsbuild.core import results

    assert SAFE_RE.pattern == results._NAME.pattern  # the host checks what the board's validation checks


def test_distinct_names_stay_distinct_and_show_back() -> None:
    keys = head_keys(["a/b", "a:b", "a b"])
    assert len(set(keys.values())) == 3
    assert shown(keys["a:b"], keys) == "a:b"


def test_collision_is_an_error_naming_both() -> None:
    clash = safe_id("a/b")
    with pytest.raises(UserError) as info:
        head_keys(["a/b", clash])
    assert "'a/b'" in str(info.value) and repr(clash) in str(info.value)


def test_trt_runner_keys_travel_as_one_quoted_word() -> None:
    from dmsbuild.backends.tensorrt import runner_argv
    from dmsbuild.board.runner.trt_runner import verify_summary

    keys = head_keys(["gpu_0/softmax_1"])
    argv = runner_argv("python3", "r.py", "e.engine", "ref.npz", samples=2, classification=["gpu_0/softmax_1"], keys=keys)
    assert argv[-2:] == ["--keys", json.dumps(keys, sort_keys=True)]
    ref = {keys["gpu_0/softmax_1"]: np.eye(3, dtype=np.float32)}
    out = verify_summary(ref, {"gpu_0/softmax_1": np.eye(3, dtype=np.float32)}, ["gpu_0/softmax_1"], keys)
    assert list(out["heads"]) == [keys["gpu_0/softmax_1"]] and out["min_top1_agreement"] == 1.0


def test_odd_names_build_deploy_and_pass_board_validation(tmp_path: Path) -> None:
    out_name, in_name = "gpu_0/softmax_1", "data:0 ä"
    root = make_byom_project(tmp_path / "p", project_toml(inp=in_name, outputs=[out_name], labels="data/labels.json"))
    classifier(root / "models" / "model.onnx", inp=in_name, out=out_name)
    files = sorted(p.name for p in (root / "data" / "validation").iterdir())
    (root / "data" / "labels.json").write_text(json.dumps({f: {out_name: i % 10} for i, f in enumerate(files)}))
    run = run_doit(root, "deploy", "target=a")
    assert run.rc == 0 and "Traceback" not in run.output, run.output
    assert re.search(r"^a\s+done\b", run.output, re.M), run.output
    key = safe_id(out_name)
    with np.load(root / "artifacts" / "common" / "reference.npz") as ref:
        assert sorted(ref.files) == sorted(["inputs", key])
    build = json.loads((root / "artifacts" / "a" / "build.json").read_text())
    assert build["outputs"]["keys"] == {out_name: key}
    assert build["outputs"]["names"] == [out_name]  # the user's name is kept for display
    qdq = next(a for a in build["artifacts"] if a["precision"] == "int8-qdq")
    assert "accuracy" in qdq["eval"]["heads"][out_name]["labelled_fp32"]  # labels found under the safe id


def test_stale_build_without_keys_is_refused_before_upload(tmp_path: Path) -> None:
    from dmsbuild.convert.build_json import check_board_names

    build = {"outputs": {"names": ["gpu_0/softmax_1"]}}
    with pytest.raises(UserError) as info:
        check_board_names(build, tmp_path / "build.json")
    assert "output 'gpu_0/softmax_1'" in str(info.value) and "doit build" in info.value.hint
    check_board_names({"outputs": {"names": ["gpu_0/softmax_1"], "keys": head_keys(["gpu_0/softmax_1"])}},
                      tmp_path / "build.json")
