"""A hostile or broken board: symlinks out of its deploy root, garbage results, trtexec printing garbage;
shell metacharacters in host paths; secrets kept out of everything a deploy writes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dmsbuild.backends.tensorrt import result_from_trtexec
from dmsbuild.config import load_project, load_target
from dmsbuild.errors import UserError
from dmsbuild.inventory import load_inventory
from dmsbuild.manifest import make_release
from dmsbuild.release import deploy_target
from dmsbuild.results import parse_document, validate_result
from tests.faults import ledger
from tests.faults.conftest import check_board, fabricate

FUZZ = settings(max_examples=int(os.environ.get("FAULT_FUZZ_EXAMPLES", "120")) * int(os.environ.get("FAULT_ROUNDS", "1")),
                deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _profile(project_dir: Path):
    prof = load_target(project_dir, "rpi5")
    prof.arch = "any"
    prof.deploy.keep_releases = 2
    return prof


def _board(state: dict, project: Path, name: str, root: Path):
    b = load_inventory(Path(state["inventory"]), project).boards[name]
    b.root = str(root)
    return b


def _tree(path: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(path.rglob("*")):
        st_ = p.lstat()
        out[str(p.relative_to(path))] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return out


@pytest.mark.parametrize("plant", ["objects", "objects/.tmp", "releases", ".lock", "history.json", "dms.service",
                                   "current", "part", "object", "release", "release-subdir"])
def test_symlinks_in_the_deploy_root_never_lead_outside(fault_boards, project_dir, tmp_path, plant):
    prof = _profile(project_dir)
    root = tmp_path / "root"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious").write_text("do not touch")
    (outside / "models").mkdir()
    board = _board(fault_boards, project_dir, "emu-02", root)
    fabricate(project_dir, "rpi5", {"model": (0.2, 1)})
    v1 = deploy_target(load_project(project_dir), prof, [board])[0]
    assert v1.ok, v1.message
    fabricate(project_dir, "rpi5", {"model": (0.2, 2)})
    release = make_release(load_project(project_dir), prof)
    model = next(f for f in release.files if f.path == "models/model.onnx")
    where = {"part": f"objects/.tmp/{model.sha256}.part", "object": f"objects/{model.sha256}",
             "release": f"releases/{release.release_id}", "release-subdir": f"releases/{release.release_id}"}.get(plant, plant)
    target = root / where
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    if plant == "release-subdir":  # a half-built release folder whose models/ leads outside
        target.mkdir()
        (target / "models").symlink_to(outside / "models")
    elif plant in ("object", "part", ".lock", "history.json", "dms.service"):
        target.symlink_to(outside / "precious")
    else:
        target.symlink_to(outside)
    before = _tree(outside)
    out = deploy_target(load_project(project_dir), prof, [board], release=release)[0]
    after = _tree(outside)
    untouched = before == after and (outside / "precious").read_text() == "do not touch"
    if plant in ("objects", "objects/.tmp", "releases", ".lock", "history.json", "dms.service", "current"):
        # the root's own folders/files: refused, naming the symlink
        expect = (not out.ok and "symlink" in out.message and str(root) in out.message) if plant != "current" else (
            not out.ok and "current" in out.message)
    else:  # inside the layout: the symlink is removed (never followed) and the deploy goes on
        lost, bad, cur, probs = check_board(str(root), {release.release_id})
        expect = out.ok and not lost and not bad
    ledger.record("hostile-board", f"symlink {plant}", untouched and expect)
    assert untouched, (plant, before, after)
    assert expect, (plant, out.ok, out.message)


@FUZZ
@given(text=st.one_of(st.text(max_size=300), st.sampled_from([
    "[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000, "NaN", '{"schema": 1, "results": "x"}', "\0",
    '{"schema": 1, "runner": "1", "release_id": "../../x", "facts": {}, "toolchain": {}, "bench": {}, "results": []}'])))
def test_malformed_result_json_is_refused_cleanly(text):
    try:
        parse_document(text, board="emu-01")
    except UserError:
        pass
    ledger.record("hostile-board", "malformed result JSON", True)


def test_huge_result_json_refused_unread():
    with pytest.raises(UserError) as exc:
        parse_document('{"x": "' + "a" * (9 << 20) + '"}', board="emu-01")
    assert "limit" in str(exc.value).splitlines()[0]
    ledger.record("hostile-board", "huge result JSON", True)


TRT_LINES = st.sampled_from([
    "&&&& PASSED TensorRT.trtexec [TensorRT v100300]", "&&&& FAILED", "[I] Latency: min = 1 ms, max = x ms, mean = 2 ms",
    "[I] GPU Compute Time: min = nan ms, max = inf ms", "[I] Throughput: -1 qps", "[I] Throughput: 1e999 qps",
    "[I] Timing trace has 0 queries over 0 s", "[I] === Performance summary ===", "[I] H2D Latency: min = ms",
    "[W] * GPU compute time is unstable", "garbage \x1b[31m <script>", ""])
TIMES = st.one_of(st.none(), st.text(max_size=100), st.sampled_from([
    "[]", "{}", '[{"computeMs": "fast"}]', '[{"computeMs": 1, "latencyMs": null}]', '[{"computeMs": 1, "latencyMs": {"a": 1}}]',
    '[{"computeMs": 1, "latencyMs": NaN}]', '[{"computeMs": 1, "latencyMs": -5}]', "[" * 5000 + "]" * 5000,
    '[{"computeMs": 1, "latencyMs": 1e400, "startComputeMs": "x"}]']))


@FUZZ
@given(lines=st.lists(st.one_of(TRT_LINES, st.text(max_size=60)), max_size=12), times=TIMES)
def test_trtexec_printing_garbage(lines, times):
    """Whatever trtexec prints: a UserError, or a result that is an error or passes the contract's validation."""
    try:
        res = result_from_trtexec("\n".join(lines), times, artifact="trt-fp16", precision="fp16", sha256="0" * 64,
                                  iterations=None)
    except UserError:
        ledger.record("hostile-board", "trtexec garbage", True)
        return
    if res.get("error") is None:
        try:
            validate_result(res, board="emu-01")
        except UserError:
            pass
    ledger.record("hostile-board", "trtexec garbage", True)


def test_shell_metacharacters_in_host_paths_end_to_end(fault_boards, project_dir, tmp_path):
    """The project lives under a path full of shell syntax; nothing on either side runs it."""
    canary = tmp_path / "pwned"
    weird = tmp_path / f"my proj;touch {canary};$(touch {canary})`touch {canary}`'\"&|"
    shutil.copytree(project_dir, weird)
    prof = _profile(weird)
    fabricate(weird, "rpi5", {"model": (0.1, 1)})
    board = _board(fault_boards, weird, "emu-01", tmp_path / "root")
    out = deploy_target(load_project(weird), prof, [board])[0]
    # a deploy root with shell syntax is refused before anything runs
    evil = replace(board, root=str(tmp_path / "r;touch x"))
    with pytest.raises(UserError):
        evil.validate("inventory.toml", "boards[0]")
    bad = deploy_target(load_project(weird), prof, [replace(board, root=f"{tmp_path}/r$(touch {canary})")])[0]
    ok = out.ok and not canary.exists() and not bad.ok and "paths may hold" in bad.message
    ledger.record("hostile-input", "shell metacharacters", ok)
    assert ok, (out.message, bad.message, canary.exists())


def test_secrets_never_reach_board_files_or_reports(fault_boards, project_dir, tmp_path, monkeypatch):
    secrets = {"AWS_SECRET_ACCESS_KEY": "AKIAsecretSECRETsecret123", "GITHUB_TOKEN": "ghp_tokenTOKENtoken456",
               "DMS_API_TOKEN": "tok-789-secret"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    prof = _profile(project_dir)
    fabricate(project_dir, "rpi5", {"model": (0.1, 1)})
    root = tmp_path / "root"
    board = _board(fault_boards, project_dir, "emu-03", root)
    import io

    from dmsbuild.release import report

    out = deploy_target(load_project(project_dir), prof, [board])
    buf = io.StringIO()
    report(out, buf)
    # a passphrase-protected key: refused cleanly, never prompting, the passphrase nowhere
    key = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass-phrase-xyz", "-f", str(key)], check=True)
    locked = deploy_target(load_project(project_dir), prof, [replace(board, identity_file=str(key))])
    report(locked, buf)
    texts = [buf.getvalue(), json.dumps([o.message for o in out + locked])]
    for p in list(root.rglob("*")) + list((project_dir / "artifacts").rglob("*")):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 5_000_000:
            texts.append(p.read_bytes().decode(errors="replace"))
    leaked = [k for k, v in {**secrets, "passphrase": "pass-phrase-xyz"}.items() if any(v in t for t in texts)]
    ok = out[0].ok and not locked[0].ok and not leaked
    ledger.record("secrets", "env tokens + key passphrase", ok)
    assert ok, (out[0].message, locked[0].message, leaked)
