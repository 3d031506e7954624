"""The static quantization recipe dimensions the tuner searches (issue 16): quant_format and nodes_to_exclude.

Each is validated (QOperator refused for QDQ-only consumers, unknown node names refused at build time), reaches
ONNX Runtime's quantize_static, names its own cached variant (a change rebuilds it, a no-op change does not, and
the defaults keep version one's keys) and is recorded in build.json and the manifest.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmsbuild.config import StaticQuantConfig, TargetProfile, load_dataclass, load_project, load_target, static_quant_for
from dmsbuild.errors import UserError
from dmsbuild.convert.quantize import settings_key
from tests.tinyproject import make_project, run_doit

TARGET = """\
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
transport = "local"
[deploy]
root = "artifacts/boards/a"
[quantization]
{extra}
"""

# a QDQ-only consumer asked for QOperator: its build fails, the other targets carry on
QNN_QOPERATOR = """\
runtime = "qnn"
precisions = ["int8-qdq"]
transport = "local"
[deploy]
root = "artifacts/boards/q"
[quantization]
quant_format = "QOperator"
"""


def _profile(runtime: str, **quant: object) -> TargetProfile:
    data = {"name": "t", "runtime": runtime, "precisions": ["int8-qdq"], "quantization": quant}
    prof = load_dataclass(TargetProfile, data, "targets/t.toml")
    prof.source = Path("targets/t.toml")
    return prof


def test_defaults_keep_version_one_keys() -> None:
    """New fields at their defaults leave the key (the file name) as main computed it: nothing rebuilds on upgrade."""
    assert settings_key(StaticQuantConfig(), 100) == "743f3f711d"
    assert settings_key(StaticQuantConfig(activation_type="QInt8", symmetric_activations=True), 100) == "7ed00f6769"


def test_format_and_excluded_nodes_name_their_own_variant() -> None:
    base = settings_key(StaticQuantConfig(), 100)
    qop = settings_key(StaticQuantConfig(quant_format="QOperator"), 100)
    one = settings_key(StaticQuantConfig(nodes_to_exclude=["/a/Conv"]), 100)
    two = settings_key(StaticQuantConfig(nodes_to_exclude=["/a/Conv", "/b/Conv"]), 100)
    assert len({base, qop, one, two}) == 4
    # the set of nodes matters, not the order or repeats written in the profile
    assert settings_key(StaticQuantConfig(nodes_to_exclude=["/b/Conv", "/a/Conv", "/a/Conv"]), 100) == two


@pytest.mark.parametrize("runtime", ["tensorrt", "qnn", "snpe"])
def test_qoperator_refused_for_qdq_consumers(tmp_path: Path, runtime: str) -> None:
    proj = load_project(make_project(tmp_path, {"a": TARGET.format(extra="")}))
    prof = _profile(runtime, quant_format="QOperator")
    with pytest.raises(UserError) as exc:
        static_quant_for(proj, prof)
    line = str(exc.value).splitlines()[0]
    assert "targets/t.toml: field 'quantization.quant_format' is 'QOperator'" in line
    assert f"runtime '{runtime}' of target 't' consumes QDQ graphs only" in line
    assert 'quant_format = "QDQ"' in exc.value.hint
    # the project's own setting, inherited by the target, is named where it is set
    proj.quantization.static.quant_format = "QOperator"
    with pytest.raises(UserError, match=r"dmsbuild.toml: field 'quantization.static.quant_format' \(used by target 't'\)"):
        static_quant_for(proj, load_dataclass(TargetProfile, {"name": "t", "runtime": runtime, "precisions": ["int8-qdq"]}, "t"))


def test_qoperator_allowed_for_onnxruntime(tmp_path: Path) -> None:
    proj = load_project(make_project(tmp_path, {"a": TARGET.format(extra="")}))
    assert static_quant_for(proj, _profile("onnxruntime", quant_format="QOperator")).quant_format == "QOperator"
    with pytest.raises(UserError, match="field 'quantization.quant_format'"):
        _profile("onnxruntime", quant_format="QLinear")
    with pytest.raises(UserError, match="field 'quantization.nodes_to_exclude' has"):
        _profile("onnxruntime", nodes_to_exclude=[" /a/Conv"])


def _float_nodes(path: Path) -> dict[str, str]:
    """Conv/Gemm nodes of a QDQ model whose weight is a float initializer (not a DequantizeLinear output)."""
    import onnx

    g = onnx.load(str(path)).graph
    inits = {i.name for i in g.initializer}
    return {n.name: n.op_type for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in inits}


def _key(root: Path) -> str:
    proj = load_project(root)
    return settings_key(static_quant_for(proj, load_target(root, "a")), proj.data.max_calibration_samples)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("recipe"), {"a": TARGET.format(extra=""), "q": QNN_QOPERATOR})
    run = run_doit(root, "build", "target=a")
    assert run.rc == 0, run.output
    return root


def test_build_records_format_and_rebuilds_only_on_change(built: Path) -> None:
    import onnx

    root, prof = built, built / "targets" / "a.toml"
    doc = json.loads((root / "artifacts" / "a" / "build.json").read_text())
    qdq = next(a for a in doc["artifacts"] if a["precision"] == "int8-qdq")
    assert qdq["quantization"]["format"] == "QDQ" and qdq["quantization"]["nodes_to_exclude"] == []
    assert "quantization" not in next(a for a in doc["artifacts"] if a["precision"] == "fp32")
    fp32_convs = [n.name for n in onnx.load(str(root / "artifacts" / "common" / "fp32.onnx")).graph.node if n.op_type == "Conv"]
    first, last = fp32_convs[0], fp32_convs[-1]
    assert _float_nodes(root / "artifacts" / "common" / f"int8-qdq-{_key(root)}.onnx") == {}

    # two nodes kept in float: a new variant, quantized with them excluded
    prof.write_text(TARGET.format(extra=f'nodes_to_exclude = ["{first}", "{last}"]'))
    key = _key(root)
    run = run_doit(root, "build", "target=a")
    assert run.rc == 0, run.output
    assert f"quantize:int8-qdq-{key}" in run.executed and "2 node(s) kept in float" in run.output
    assert set(_float_nodes(root / "artifacts" / "common" / f"int8-qdq-{key}.onnx")) == {first, last}
    doc = json.loads((root / "artifacts" / "a" / "build.json").read_text())
    assert next(a for a in doc["artifacts"] if a["precision"] == "int8-qdq")["quantization"]["nodes_to_exclude"] == sorted([first, last])

    # the same set written in another order: nothing runs again
    prof.write_text(TARGET.format(extra=f'nodes_to_exclude = ["{last}", "{first}"]'))
    again = run_doit(root, "build", "target=a")
    assert again.rc == 0, again.output
    assert again.executed == set(), again.executed

    # QOperator: fused integer operators, recorded as such
    prof.write_text(TARGET.format(extra='quant_format = "QOperator"'))
    key = _key(root)
    run = run_doit(root, "build", "target=a")
    assert run.rc == 0, run.output
    assert f"quantize:int8-qdq-{key}" in run.executed
    ops = {n.op_type for n in onnx.load(str(root / "artifacts" / "common" / f"int8-qdq-{key}.onnx")).graph.node}
    assert "QLinearConv" in ops and "DequantizeLinear" in ops and "Conv" not in ops
    doc = json.loads((root / "artifacts" / "a" / "build.json").read_text())
    assert next(a for a in doc["artifacts"] if a["precision"] == "int8-qdq")["quantization"]["format"] == "QOperator"


def test_unknown_node_name_fails_the_build_in_one_line(built: Path) -> None:
    prof = built / "targets" / "a.toml"
    prof.write_text(TARGET.format(extra='nodes_to_exclude = ["/no/such/Conv", "/backbone/typo"]'))
    try:
        run = run_doit(built, "build", "target=a")
    finally:
        prof.write_text(TARGET.format(extra=""))
    assert run.rc == 1
    msg = run.failure(f"quantize:int8-qdq-{_key_of(built, ['/no/such/Conv', '/backbone/typo'])}")
    first = msg.splitlines()[0]
    assert "targets/a.toml: field 'quantization.nodes_to_exclude' names 2 node(s) not in the graph" in first
    assert "/backbone/typo, /no/such/Conv" in first
    assert "python -m dmsbuild.convert.mixed_precision" in msg
    assert "Traceback" not in run.output


def _key_of(root: Path, nodes: list[str]) -> str:
    proj = load_project(root)
    return settings_key(StaticQuantConfig(nodes_to_exclude=nodes), proj.data.max_calibration_samples)


def test_qdq_only_target_with_qoperator_fails_alone(built: Path) -> None:
    """The QNN target's build names its field; the same doit run still builds target a."""
    run = run_doit(built, "build", "target=a,q")
    assert run.rc == 1
    first = run.failure("build:q").splitlines()[0]
    assert "targets/q.toml: field 'quantization.quant_format' is 'QOperator'" in first, run.output
    assert run.failure("build:a") == "" and "Traceback" not in run.output
