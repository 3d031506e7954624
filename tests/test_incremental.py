"""Incremental rebuilds: doit reruns exactly the steps whose inputs changed (issue 2, point 5).

One tiny project is built once per module; each test changes one input, runs
`doit build`, checks what ran, and leaves the project built for the next.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tinyproject import REPO, make_project, run_doit, save_checkpoint, write_images

COMMON = {"export", "quantize:fp16", "quantize:int8-dynamic", "evaluate:reference",
          "evaluate:fp32", "evaluate:fp16", "evaluate:int8-dynamic"}
BUILDS = {"build:a", "build:b", "build:c"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("incremental") / "proj")
    run = run_doit(root, "build")
    assert run.rc == 0, run.output
    assert COMMON | BUILDS <= run.executed
    return root


def _qdq_tasks(names: set[str]) -> set[str]:
    return {n for n in names if "int8-qdq" in n}


def test_cold_build_writes_contract_files(built: Path) -> None:
    doc = json.loads((built / "artifacts" / "a" / "build.json").read_text())
    assert doc["schema"] == 1 and doc["target"] == "a"
    assert [a["precision"] for a in doc["artifacts"]] == ["fp32", "fp16", "int8-dynamic", "int8-qdq"]
    for art in doc["artifacts"]:
        assert (built / art["path"]).is_file()
        assert art["size"] == (built / art["path"]).stat().st_size
        assert set(art["eval"]["heads"]) == {"eye_state", "yawn", "activity", "head_pose"}
    assert doc["toolchain"]["exporter"] == "torchscript" and doc["toolchain"]["opset"] == 17
    import numpy as np

    ref = np.load(built / doc["reference"])
    assert ref["inputs"].shape == (6, 3, 64, 64)
    assert set(ref.files) == {"inputs", "eye_state", "yawn", "activity", "head_pose"}
    # a and b want different static settings: two QDQ files; c ships no QDQ
    a_qdq = next(x for x in doc["artifacts"] if x["precision"] == "int8-qdq")
    b_doc = json.loads((built / "artifacts" / "b" / "build.json").read_text())
    b_qdq = next(x for x in b_doc["artifacts"] if x["precision"] == "int8-qdq")
    assert a_qdq["sha256"] != b_qdq["sha256"]
    summary = (built / "artifacts" / "a" / "summary.md").read_text()
    assert "| int8-dynamic |" in summary and "FP32 size / size" in summary


def test_second_build_executes_nothing(built: Path) -> None:
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    assert run.executed == set()
    assert BUILDS <= run.skipped


def test_touch_without_change_rebuilds_nothing(built: Path) -> None:
    later = time.time() + 5
    for f in [built / "models" / "tiny.pt", *sorted((built / "data").rglob("*.png"))]:
        os.utime(f, (later, later))
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    assert run.executed == set()


def test_calibration_change_rebuilds_only_static_quantization(built: Path) -> None:
    write_images(built / "data" / "calibration", 1, seed=99)  # overwrites 000.png with new content
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    ran = run.executed
    assert not (ran & COMMON), ran
    assert {t for t in ran if t.startswith("quantize:")} == _qdq_tasks(ran) & {t for t in ran if t.startswith("quantize:")}
    assert len([t for t in ran if t.startswith("quantize:int8-qdq-")]) == 2  # a's and b's variants
    assert {"build:a", "build:b"} <= ran and "build:c" not in ran


def test_one_profile_setting_rebuilds_only_that_target(built: Path) -> None:
    prof = built / "targets" / "b.toml"
    prof.write_text(prof.read_text().replace('activation_type = "QInt8"', 'activation_type = "QInt8"\nper_channel = false'))
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    ran = run.executed
    assert ran & BUILDS == {"build:b"}, ran
    assert not (ran & COMMON)
    assert len([t for t in ran if t.startswith("quantize:int8-qdq-")]) == 1
    # a setting that changes no artifact file (the gate) still only touches that target
    prof.write_text(prof.read_text() + "\n[gates]\nmax_accuracy_drop = 0.9\n")
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    assert run.executed == {"build:b"}
    # the gate's sample count (the first bench.verify_samples, host and board) decides the verdict: judged again
    prof.write_text(prof.read_text() + "\n[bench]\nverify_samples = 3\n")
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    assert run.executed == {"build:b"}


def test_checkpoint_change_rebuilds_export_and_downstream(built: Path) -> None:
    save_checkpoint(built / "models" / "tiny.pt", seed=7)
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    assert COMMON | BUILDS <= run.executed
    assert len([t for t in run.executed if t.startswith("quantize:int8-qdq-")]) == 2


def test_one_target_builds_alone(built: Path) -> None:
    save_checkpoint(built / "models" / "tiny.pt", seed=8)
    run = run_doit(built, "build", "target=c")
    assert run.rc == 0, run.output
    assert "build:c" in run.executed
    assert not (run.executed & {"build:a", "build:b"})
    assert not _qdq_tasks(run.executed)  # c ships no static QDQ, so none was calibrated


def test_dodo_and_doit_list_do_not_import_frameworks(built: Path) -> None:
    code = (
        "import sys\n"
        "from doit.doit_cmd import DoitMain\n"
        "from doit.cmd_base import ModuleTaskLoader\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('dodo', {str(REPO / 'dodo.py')!r})\n"
        "dodo = importlib.util.module_from_spec(spec); spec.loader.exec_module(dodo)\n"
        "rc = DoitMain(ModuleTaskLoader(dodo)).run(['list', '--all'])\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'paramiko', 'numpy', 'PIL', 'tensorflow', 'ai_edge_litert', 'litert_torch', 'ai_edge_quantizer', 'jax') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'RC', rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=built, capture_output=True, text=True,
                          env={**os.environ, "DMSBUILD_ROOT": str(built)}, timeout=120)
    assert "HEAVY [] RC 0" in proc.stdout, proc.stdout + proc.stderr
    assert "build:a" in proc.stdout and "quantize:int8-dynamic" in proc.stdout


def test_preprocess_change_requantizes_static_int8(built: Path) -> None:
    """Same calibration files and quantization settings, other pixels fed to calibration: only
    config_changed on the static-quantization task sees it (its task name does not change)."""
    cfg = built / "dmsbuild.toml"
    cfg.write_text(cfg.read_text() + "\n[preprocess]\nscale = 250.0\n")  # a small change: the accuracy gate still passes
    run = run_doit(built, "build")
    assert run.rc == 0, run.output
    assert len([t for t in run.executed if t.startswith("quantize:int8-qdq-")]) == 2, run.executed
    assert "export" not in run.executed


def test_doit_lists_a_task_group_only_when_it_has_tasks(tmp_path, monkeypatch):
    """`compile` and `tuned` get their own docstring line in `doit list` only when some target has such a task
    (the tiny project has neither: no compile backend, no choice file), never as empty groups."""
    from dmsbuild import tasks as T
    from dmsbuild.tasks import build as B

    root = make_project(tmp_path / "proj")
    monkeypatch.setenv("DMSBUILD_ROOT", str(root))
    T.root.cache_clear()
    T.project.cache_clear()
    try:
        tasks = list(B.task_build())
    finally:
        T.root.cache_clear()
        T.project.cache_clear()
    groups = {t["basename"] for t in tasks if t.get("basename") in B.GROUP_DOCS and t.get("name") is None}
    have = {t.get("basename", "build") for t in tasks if t.get("name") is not None}
    assert groups == set(B.GROUP_DOCS) & have, (groups, have)
    assert "build" in have and not {"compile", "tuned"} & have


def test_a_guarded_action_is_named_after_the_function_it_runs():
    """`doit info` and doit's failure lines name an action by its function: run_qat, not ':' or 'action'."""
    from dmsbuild.tasks.build import guarded

    assert guarded("dmsbuild.convert.qat:run_qat").__name__ == "run_qat"
    assert guarded(len).__name__ == "len"
