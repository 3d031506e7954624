"""Issue 24 item 9: the report shows every output by its own name and kind, and says when a target's output
check did not run (dmsbuild/measure/report.py ``heads_table``)."""
from __future__ import annotations

import json
from pathlib import Path

from dmsbuild.measure.report import heads_table, output_names
from dmsbuild.names import head_keys


def _build(artifacts: Path, target: str, names: list[str], kinds: dict) -> None:
    (artifacts / target).mkdir(parents=True)
    (artifacts / target / "build.json").write_text(json.dumps(
        {"outputs": {"names": names, "classification": [], "kinds": kinds, "keys": head_keys(names)}}))


def _row(target: str, artifact: str, verify: dict | None, error: str | None = None) -> dict:
    return {"board": "b1", "target": target, "artifact": artifact, "precision": artifact, "error": error,
            "verify": verify, "model_file": "m.onnx", "model_sha256": "0" * 64}


def test_each_output_by_its_name_and_kind_and_a_missing_check_said(tmp_path):
    names = ["output0", "save_infer_model/scale_0.tmp_1"]
    _build(tmp_path, "orin", names, {"output0": {"kind": "detection"}, names[1]: {"kind": "sequence", "blank": 0}})
    ids = head_keys(names)
    verify = {"samples": 20, "heads": {
        ids["output0"]: {"cosine": 0.9991, "sqnr_db": 28.0, "by_kind": {"kind": "detection", "recall": 0.5,
                         "precision": 0.6, "score_error": 0.36},
                         "slices": {"boxes": {"cosine": 1.0}, "scores": {"cosine": 0.9, "collapsed": "every value is 0"}}},
        ids[names[1]]: {"cosine": 0.99, "sqnr_db": 20.0, "by_kind": {"kind": "sequence", "agreement": 0.961,
                        "string_agreement": 0.5}}}}
    table = heads_table([_row("orin", "int8-qdq", verify), _row("orin", "fp16", None)], output_names(tmp_path))
    by_output = {r[4]: r for r in table.rows}
    assert ids[names[1]] != names[1]  # the board's key is a safe id; the report shows the user's name
    assert by_output["output0"][5:7] == ["detection", "recall 50.0%, precision 60.0%, score error 0.360"]
    assert by_output["output0"][9] == "scores: collapsed"
    assert by_output[names[1]][5:7] == ["sequence", "per-step agreement 96.1%, strings 50.0%"]
    missing = [r for r in table.rows if r[3] == "fp16"]
    assert missing and missing[0][6] == "output check did not run"


def test_without_a_build_json_the_id_is_shown(tmp_path):
    verify = {"samples": 3, "heads": {"logits": {"cosine": 1.0, "sqnr_db": None, "by_kind": {"kind": "classification",
                                                                                             "agreement": 1.0}}}}
    table = heads_table([_row("local", "fp32", verify)], output_names(tmp_path / "none"))
    assert table.rows[0][4:7] == ["logits", "classification", "top-1 agreement 100.0%"]
