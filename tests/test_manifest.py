"""The release manifest: deterministic id, strict templates, build.json checks."""
from __future__ import annotations

import json

import pytest

from tests.conftest import write_build
from dmsbuild.board.release_agent import sha256_of
from dmsbuild.ship import manifest
from dmsbuild.config import load_project, load_target
from dmsbuild.errors import UserError


def test_unchanged_build_same_release_id_changed_build_new_id(project_dir):
    write_build(project_dir, "rpi5", {"fp32": 0.05, "int8-qdq": 0.02})
    project, prof = load_project(project_dir), load_target(project_dir, "rpi5")
    a = manifest.make_release(project, prof)
    b = manifest.make_release(project, prof)
    assert a.release_id == b.release_id and len(a.release_id) == 16 and a.manifest_bytes == b.manifest_bytes
    m = json.loads(a.manifest_bytes)
    assert [x["file"] for x in m["artifacts"]] == ["models/fp32.onnx", "models/int8-qdq.onnx"]
    assert {f["file"] for f in m["files"]} >= {"run.sh", "verify/reference.npz"}
    assert m["bench"] == {"warmup": 5, "iterations": 50, "threads": 4, "verify_samples": 32}
    prof.bench.iterations = 51  # a benchmark-plan change is a new release
    assert manifest.make_release(project, prof).release_id != a.release_id
    # the earlier Release still names its own bytes (rendered files are staged by sha256)
    assert sha256_of(next(f.local for f in a.files if f.path == "manifest.json")) == \
        next(f.sha256 for f in a.files if f.path == "manifest.json")


def test_stale_build_json_and_missing_build(project_dir):
    project, prof = load_project(project_dir), load_target(project_dir, "rpi5")
    with pytest.raises(UserError, match="has not been built"):
        manifest.make_release(project, prof)
    path = write_build(project_dir, "rpi5", {"fp32": 0.01})
    (project_dir / "artifacts" / "rpi5" / "fp32.onnx").write_bytes(b"changed after the build")
    with pytest.raises(UserError, match="build.json is stale"):
        manifest.make_release(project, prof)
    assert path.exists()


def test_templates_are_strict(tmp_path):
    (tmp_path / "t.j2").write_text("{{ defined }} {{ missing }}")
    with pytest.raises(UserError, match="'missing' is undefined"):
        manifest.render("t.j2", templates=tmp_path, defined=1)
    assert manifest.render("t.j2", templates=tmp_path, defined=1, missing=2) == "1 2"


def test_support_files_include_the_runner_when_present(project_dir, tmp_path):
    write_build(project_dir, "rpi5", {"fp32": 0.01})
    pkg = tmp_path / "pkg"
    (pkg / "board" / "runner").mkdir(parents=True)
    (pkg / "board" / "runner" / "dms_bench.py").write_text("print('bench')\n")
    rel = manifest.make_release(load_project(project_dir), load_target(project_dir, "rpi5"), package_dir=pkg)
    assert "runner/dms_bench.py" in {f.path for f in rel.files}
    rel2 = manifest.make_release(load_project(project_dir), load_target(project_dir, "rpi5"), package_dir=tmp_path / "none")
    assert "runner/dms_bench.py" not in {f.path for f in rel2.files}


def test_verify_subset_ships_only_the_samples_the_board_checks(tmp_path):
    """The board's output check reads bench.verify_samples samples; the release carries just those,
    and the same input gives the same bytes (so an unchanged build keeps its release id)."""
    import numpy as np

    from dmsbuild.ship.manifest import verify_subset

    ref = tmp_path / "reference.npz"
    rng = np.random.default_rng(0)
    np.savez(ref, inputs=rng.standard_normal((64, 3, 8, 8), dtype=np.float32), eye_state=rng.standard_normal((64, 2)))
    stage = tmp_path / "stage"
    stage.mkdir()
    out = verify_subset(ref, 16, stage)
    first = out.read_bytes()
    with np.load(out) as got, np.load(ref) as full:
        assert got["inputs"].shape == (16, 3, 8, 8)
        assert np.array_equal(got["eye_state"], full["eye_state"][:16])
    assert verify_subset(ref, 16, stage).read_bytes() == first
    assert verify_subset(ref, 64, stage) == ref  # nothing to cut: ship the build's file itself


def test_total_size_counts_an_artifacts_extra_files(project_dir):
    """A QNN context model is a small .onnx plus its .bin: the report's size column needs both."""
    path = write_build(project_dir, "rpi5", {"int8-qdq": 0.01})
    build = json.loads(path.read_text())
    extra = project_dir / "artifacts" / "rpi5" / "int8-qdq_qnn.bin"
    extra.write_bytes(b"\0" * 12345)
    build["artifacts"][0]["extra_files"] = ["artifacts/rpi5/int8-qdq_qnn.bin"]
    path.write_text(json.dumps(build))
    rel = manifest.make_release(load_project(project_dir), load_target(project_dir, "rpi5"))
    [art] = rel.manifest["artifacts"]
    assert art["extra_files"] == ["models/int8-qdq_qnn.bin"]
    assert art["total_size"] == art["size"] + 12345
