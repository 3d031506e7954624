"""The ORT-format runtime (dmsbuild/backends/ortformat.py): the small runtime that shows what adding one takes.

Its backend module, its registry line, this file and docs/runtimes/ortformat.md are the whole diff (its board
driver is the release's runner, which runs any artifact whose providers are ONNX Runtime execution providers).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.backends import get_backend
from dmsbuild.config import ProjectConfig, TargetProfile, load_dataclass
from dmsbuild.errors import UserError
from dmsbuild.ship.doctor import check_board
from tests.tinyproject import make_project, run_doit

TARGET = """\
runtime = "ortformat"
precisions = ["fp32", "int8-qdq"]
[deploy]
group = "rpi5"
[bench]
warmup = 2
iterations = 10
verify_samples = 3
"""


def _profile(data: dict) -> TargetProfile:
    prof = load_dataclass(TargetProfile, {"name": "t", "runtime": "ortformat", **data}, "targets/t.toml")
    prof.source = Path("targets/t.toml")
    return prof


def _tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_plan_one_ort_file_per_precision_built_from_its_onnx(tmp_path: Path) -> None:
    project = ProjectConfig()
    project.root = tmp_path
    sources = {"fp32": tmp_path / "c" / "fp32.onnx", "int8-qdq": tmp_path / "c" / "int8-qdq-x.onnx"}
    plans = get_backend("ortformat").plan(project, _profile({"precisions": ["fp32", "int8-qdq"]}), sources)
    assert [(p.name, p.kind, p.path.name, p.source, p.runtime, p.providers) for p in plans] == [
        ("fp32", "ort", "fp32.ort", sources["fp32"], "ortformat", ["CPUExecutionProvider"]),
        ("int8-qdq", "ort", "int8-qdq.ort", sources["int8-qdq"], "ortformat", ["CPUExecutionProvider"])]
    assert all(p.build is not None and p.settings == {"optimization_level": "basic"} for p in plans)


@pytest.mark.parametrize("backend, message", [
    ({"optimization_level": "all"}, "targets/t.toml: field 'backend.optimization_level' is 'all'; allowed values: 'basic', 'extended'"),
    ({"providers": ["CPUExecutionProvider"]}, "targets/t.toml: unknown field 'backend.providers' for runtime 'ortformat'"),
])
def test_bad_backend_options_name_the_file_and_field(backend: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        get_backend("ortformat").validate(_profile({"backend": backend}))
    assert str(err.value).splitlines()[0].startswith(message)


def test_the_converted_file_is_ort_format_and_computes_what_the_onnx_does(tmp_path: Path) -> None:
    import onnxruntime as ort

    from dmsbuild.backends.ortformat import convert

    src, out = tmp_path / "m.onnx", tmp_path / "out" / "m.ort"
    _tiny_onnx(src)
    convert(src, out, "basic")
    assert out.is_file() and not list(out.parent.glob("*.tmp.ort"))
    assert out.read_bytes()[4:8] == b"ORTM"  # the FlatBuffers file identifier of an ORT-format model
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_file_onnxruntime_cannot_load_is_one_line(tmp_path: Path) -> None:
    from dmsbuild.backends.ortformat import convert

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"bad.onnx: ONNX Runtime could not convert it to ORT format"):
        convert(bad, tmp_path / "bad.ort", "basic")
    assert not (tmp_path / "bad.ort").exists()


def test_board_checks_need_onnxruntime_that_reads_the_format() -> None:
    prof = _profile({})
    facts = {"python": "3.11", "numpy": "1.26", "onnxruntime": "1.12.1", "disk_free_mb": 4096}
    missing = {c.what for c in check_board("b", facts, prof) if c.level == "missing"}
    assert missing == {"onnxruntime reads ORT format v5"}
    assert not [c for c in check_board("b", {**facts, "onnxruntime": "1.32.0"}, prof) if c.level == "missing"]
    assert {c.what for c in check_board("b", {**facts, "onnxruntime": None}, prof) if c.level == "missing"} == {"onnxruntime"}


def test_deploy_builds_ships_and_benchmarks_ort_files_on_emulated_boards(boards, tmp_path: Path) -> None:
    """End to end: `doit deploy` converts on the host, ships the .ort files, and the release's runner times and
    checks them on two emulated boards; the stored figures say they came from the emulated board's CPU."""
    root = make_project(tmp_path / "p", {"f": TARGET})
    hosts = ["emu-01", "emu-03"]
    run = run_doit(root, "deploy", "target=f", f"hosts={','.join(hosts)}", f"inventory={boards['inventory']}")
    assert run.rc == 0, run.output[-3000:]
    build = json.loads((root / "artifacts" / "f" / "build.json").read_text())
    assert sorted((a["name"], a["kind"], a["path"].rsplit(".", 1)[-1], a["runtime"]) for a in build["artifacts"]) == [
        ("fp32", "ort", "ort", "ortformat"), ("int8-qdq", "ort", "ort", "ortformat")]
    con = sqlite3.connect(root / "artifacts" / "results.sqlite")
    con.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in con.execute("SELECT * FROM results WHERE target = 'f'")]
    finally:
        con.close()
    assert sorted((r["board"], r["precision"]) for r in rows) == [(b, p) for b in hosts for p in ("fp32", "int8-qdq")]
    for r in rows:
        assert (r["runtime"], r["provider"], r["error"], r["source"]) == ("ortformat", "CPUExecutionProvider", None,
                                                                          "emulated")
        assert len(json.loads(r["samples_json"])) == 10
