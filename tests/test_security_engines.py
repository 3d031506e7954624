"""What a board's TensorRT engine and its manifest may do on the controller (issue 30, items 1-2).

Emulated boards here are ``LocalTransport`` folders with the trtexec and nvidia-smi test doubles on their PATH
(the doubles check their arguments; the figures they print are labelled generated, as everywhere).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from dmsbuild.backends.trt_board import bench_artifacts
from dmsbuild.measure.bench import host_cache_root
from dmsbuild.transport.local import LocalTransport

DOUBLES = Path(__file__).parents[1] / "dmsbuild" / "doubles"
PLAN = {"warmup": 1, "iterations": 5, "verify_samples": 0}


def _release(base: Path, name: str) -> tuple[Path, dict, list[dict]]:
    """A board's deploy root with one release holding one TensorRT ONNX artifact."""
    rel = base / name / "root" / "releases" / "r1"
    (rel / "models").mkdir(parents=True)
    from tests.byom import classifier

    onnx = classifier(rel / "models" / "fp16.trt.onnx")  # a real model: the trtexec double parses it, as trtexec does
    entry = {"name": "fp16", "precision": "fp16", "kind": "trt-onnx", "file": "models/fp16.trt.onnx",
             "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(), "runtime": "tensorrt", "providers": ["trtexec"]}
    manifest = {"outputs": {"classification": []}, "runtime_settings": {"backend": {"workspace_mb": 64}}}
    return rel, manifest, [entry]


def _board(name: str, log: Path) -> LocalTransport:
    path = f"{DOUBLES}:{Path(sys.executable).parent}:/usr/bin:/bin"
    return LocalTransport(name, env={"PATH": path, "NVIDIA_SMI_DOUBLE_CC": "8.7", "TRTEXEC_DOUBLE_ARGV_LOG": str(log)})


def _builds(log: Path) -> int:
    if not log.is_file():
        return 0
    return sum(1 for a in map(json.loads, log.read_text().splitlines()) if any(x.startswith("--onnx=") for x in a))


class _CorruptingBoard(LocalTransport):
    """A link (or a board) that changes a file on its way in: one byte of every upload flipped."""

    def put(self, local, remote, *args, **kwargs):
        data = bytearray(Path(local).read_bytes())
        data[0] ^= 0xFF
        bad = Path(str(local) + ".flipped")
        bad.write_bytes(bytes(data))
        try:
            return super().put(bad, remote, *args, **kwargs)
        finally:
            bad.unlink()


# ------------------------------------------------------------------ item 2: a board's engine is not trusted by others
def test_a_planted_engine_never_reaches_another_board(tmp_path):
    """Before: board A's engine went into the shared host cache and board B (same key, which B itself reports)
    installed it. Now B builds its own; A's engine stays A's."""
    cache, log = tmp_path / "cache", tmp_path / "argv.jsonl"
    rel_a, manifest, entries = _release(tmp_path, "a")
    [res_a] = bench_artifacts(_board("orin-a", log), str(rel_a), manifest, entries, python=sys.executable, plan=PLAN,
                              cache_root=cache, progress=lambda _: None)
    assert res_a["error"] is None and res_a["engine"]["source"] == "built on the board, stored in its host cache"
    planted = next((cache / "orin-a").glob("*.engine"))
    planted.write_bytes(b"PLANTED: what a hostile board sends home as its engine")
    meta = planted.with_suffix(".json")  # consistent with the planted bytes: the board controls what it sends
    meta.write_text(json.dumps({**json.loads(meta.read_text()),
                                "engine_sha256": hashlib.sha256(planted.read_bytes()).hexdigest()}))
    rel_b, manifest, entries = _release(tmp_path, "b")
    [res_b] = bench_artifacts(_board("orin-b", log), str(rel_b), manifest, entries, python=sys.executable, plan=PLAN,
                              cache_root=cache, progress=lambda _: None)
    assert res_b["error"] is None and res_b["engine"]["source"] == "built on the board, stored in its host cache"
    installed = next((rel_b.parents[1] / "engines").glob("*.engine")).read_bytes()
    assert b"PLANTED" not in installed and _builds(log) == 2


def test_a_board_gets_its_own_engine_back_checked_by_sha256(tmp_path):
    """A board whose engines/ folder was wiped reinstalls its own engine from the host; a copy that arrives
    changed is refused (sha256 recorded when it was built, checked on the board after the upload)."""
    cache, log = tmp_path / "cache", tmp_path / "argv.jsonl"
    rel, manifest, entries = _release(tmp_path, "a")
    bench_artifacts(_board("orin-a", log), str(rel), manifest, entries, python=sys.executable, plan=PLAN,
                    cache_root=cache, progress=lambda _: None)
    engines = rel.parents[1] / "engines"
    for e in engines.glob("*.engine"):
        e.unlink()
    [res] = bench_artifacts(_board("orin-a", log), str(rel), manifest, entries, python=sys.executable, plan=PLAN,
                            cache_root=cache, progress=lambda _: None)
    assert res["error"] is None and res["engine"]["source"] == "installed from this board's host cache"
    assert _builds(log) == 1
    for e in engines.glob("*.engine"):
        e.unlink()
    path = f"{DOUBLES}:{Path(sys.executable).parent}:/usr/bin:/bin"
    flipping = _CorruptingBoard("orin-a", env={"PATH": path, "NVIDIA_SMI_DOUBLE_CC": "8.7",
                                                "TRTEXEC_DOUBLE_ARGV_LOG": str(log)})
    [bad] = bench_artifacts(flipping, str(rel), manifest, entries, python=sys.executable, plan=PLAN,
                            cache_root=cache, progress=lambda _: None)
    assert bad["error"] is not None and "recorded" in bad["error"] and "not installed" in bad["error"], bad["error"]
    assert not list(engines.glob("*.engine")) and not list(engines.glob("*.part"))


def test_a_symlinked_engines_folder_is_refused(tmp_path):
    rel, manifest, entries = _release(tmp_path, "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (rel.parents[1] / "engines").symlink_to(outside)
    [res] = bench_artifacts(_board("orin-a", tmp_path / "log"), str(rel), manifest, entries, python=sys.executable,
                            plan=PLAN, cache_root=tmp_path / "cache", progress=lambda _: None)
    assert res["error"].startswith("refusing: ") and "symlink" in res["error"]
    assert not list(outside.iterdir())


# ------------------------------------------------------------------ item 1: nothing the board says chooses a host path
@pytest.mark.parametrize("value", ["/tmp/evil-cache", "../../outside", "artifacts/../../outside", "~/cache",
                                   "artifacts", "src/cache", "artifacts/link/x", "artifacts/cache\0x"])
def test_a_board_manifest_cannot_move_the_host_engine_cache(tmp_path, value):
    """Before: ``runtime_settings.backend.engine_cache`` from the board's own manifest.json was the host folder
    (an absolute path was created and filled with what the board sent)."""
    project = tmp_path / "proj"
    (project / "artifacts").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (project / "artifacts" / "link").symlink_to(tmp_path / "elsewhere")
    said: list[str] = []
    got = host_cache_root(project, "tensorrt", value, board="orin-a", say=said.append)
    assert got == (project / "artifacts" / "cache" / "tensorrt").resolve()
    assert len(said) == 1 and said[0].startswith("board orin-a: ") and "ignored" in said[0]


def test_a_cache_below_artifacts_is_kept(tmp_path):
    project = tmp_path / "proj"
    (project / "artifacts").mkdir(parents=True)
    said: list[str] = []
    assert host_cache_root(project, "tensorrt", "artifacts/cache/trt-x", board="b", say=said.append) == \
        (project / "artifacts" / "cache" / "trt-x").resolve()
    assert host_cache_root(project, "tensorrt", None, board="b", say=said.append) == \
        (project / "artifacts" / "cache" / "tensorrt").resolve()
    assert not said


def test_a_hostile_manifest_changes_nothing_outside_artifacts_end_to_end(tmp_path, monkeypatch):
    """The whole host-driven bench of one board whose manifest names an absolute cache: the engine lands in
    the project's artifacts/cache/tensorrt/<board>/, and the absolute folder is never created."""
    from dmsbuild.measure.bench import _bench_host_driven

    project = tmp_path / "proj"
    (project / "artifacts").mkdir(parents=True)
    (project / "dmsbuild.toml").write_text("")
    monkeypatch.setenv("DMSBUILD_ROOT", str(project))
    evil = tmp_path / "evil-cache"
    rel, manifest, entries = _release(tmp_path, "a")
    manifest["runtime_settings"]["backend"]["engine_cache"] = str(evil)
    doc = _bench_host_driven(_board("orin-a", tmp_path / "log"), str(rel), manifest, entries, entries,
                             python=sys.executable, artifact=None, timeout=60, facts={"arch": "x86_64"})
    assert doc["results"][0]["error"] is None
    assert not evil.exists()
    assert list((project / "artifacts" / "cache" / "tensorrt" / "orin-a").glob("*.engine"))


@pytest.mark.parametrize("value", ["/var/cache/trt", "../cache", "artifacts/../x", "cache/trt", "artifacts"])
def test_the_profiles_engine_cache_must_be_below_artifacts(value):
    from dmsbuild.backends.tensorrt import load_options
    from dmsbuild.errors import UserError

    with pytest.raises(UserError) as exc:
        load_options({"engine_cache": value}, "targets/orin.toml")
    assert str(exc.value).startswith("targets/orin.toml: field 'backend.engine_cache'")
    assert load_options({"engine_cache": "artifacts/cache/trt-x"}, "t").engine_cache == "artifacts/cache/trt-x"


def test_an_engine_copied_into_another_boards_folder_is_not_installed(tmp_path):
    """The metadata names the board that built an engine: a copy in board B's folder (by hand, or a cache from
    before per-board folders) is rebuilt on B, never installed."""
    import shutil

    cache, log = tmp_path / "cache", tmp_path / "argv.jsonl"
    rel_a, manifest, entries = _release(tmp_path, "a")
    bench_artifacts(_board("orin-a", log), str(rel_a), manifest, entries, python=sys.executable, plan=PLAN,
                    cache_root=cache, progress=lambda _: None)
    shutil.copytree(cache / "orin-a", cache / "orin-b")
    rel_b, manifest, entries = _release(tmp_path, "b")
    [res] = bench_artifacts(_board("orin-b", log), str(rel_b), manifest, entries, python=sys.executable, plan=PLAN,
                            cache_root=cache, progress=lambda _: None)
    assert res["error"] is None and res["engine"]["source"] == "built on the board, stored in its host cache"
    assert _builds(log) == 2


@pytest.mark.parametrize("field, value", [("name", "../../../tmp/evil"), ("name", "/etc/cron.d/x"), ("name", "fp32\n"),
                                          ("sha256", "xyz"), ("file", "../../outside.onnx"), ("file", "/etc/passwd"),
                                          ("runtime", "tensorrt; rm -rf /")])
def test_the_boards_artifact_entries_cannot_name_host_files(tmp_path, field, value):
    """Artifact names become local scratch folders (snpe_board: ``<tmp>/<name>``) and sha256s engine cache keys:
    a board's manifest whose entry is not a safe name, sha256 or relative path is refused before anything runs
    (before: ``Path(td) / '/etc/cron.d/x'`` is ``/etc/cron.d/x``; a bad sha256 raised ValueError, a traceback)."""
    from dmsbuild.measure.bench import BenchError, _remote_manifest

    rel, manifest, entries = _release(tmp_path, "a")
    entries[0][field] = value
    (rel / "manifest.json").write_text(json.dumps({**manifest, "artifacts": entries}))
    with pytest.raises(BenchError) as exc:
        _remote_manifest(LocalTransport("orin-a"), str(rel))
    first = str(exc.value).splitlines()[0]
    assert first.startswith(f"board orin-a: {rel}/manifest.json: artifacts[0].{field} is ") and "\n" not in first


def test_a_reference_head_cannot_name_a_host_file(tmp_path):
    import numpy as np

    from dmsbuild.backends.snpe_board import _verify

    ref = {"inputs": np.zeros((2, 3), np.float32), "../../escape": np.zeros((2, 4), np.float32)}
    verify, note = _verify(LocalTransport("q"), str(tmp_path / "out"), ref, {"verify_samples": 2, "iterations": 2}, [],
                           tmp_path / "local")
    assert verify is None and note.startswith("output check refused: the board's reference.npz names a head")
    assert not (tmp_path / "escape.raw").exists() and not (tmp_path / "local").exists()
