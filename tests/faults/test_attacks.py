"""The attacks of issue 30 as rows of the fault table: each row's ``held`` is computed from the conditions the
test then asserts, so a row fails when its defence is broken (docs/security.md lists them with the defences).

The two deploy-level attacks run over SSH against the fault suite's own emulated boards; the rest call the code
that meets the hostile input (the agent, the engine cache, the results validation, the report) directly.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from dmsbuild.board import release_agent as agent
from dmsbuild.config import load_project
from dmsbuild.errors import UserError
from dmsbuild.core.results import ResultError, ResultStore, parse_document
from dmsbuild.pipeline.deploy import deploy_target, rollback_target
from tests.faults import ledger
from tests.faults.conftest import fabricate
from tests.faults.test_hostile_board import _board, _profile, _tree
from tests.test_security_agent import _release
from tests.test_security_results import ESCAPES, HUGE, _doc, _set


# ------------------------------------------------------------------ over SSH: rollback and a foreign deploy root
def test_rollback_through_a_symlinked_folder_in_the_previous_release(fault_boards, project_dir, tmp_path):
    """Before: the rollback's file check followed ``releases/<prev>/models`` (a symlink) and removed a folder
    outside the deploy root that was named like the model file."""
    prof = _profile(project_dir)
    root = tmp_path / "root"
    board = _board(fault_boards, project_dir, "emu-01", root)
    ids = []
    for seed in (1, 2):
        fabricate(project_dir, "rpi5", {"model": (0.2, seed)})
        out = deploy_target(load_project(project_dir), prof, [board])[0]
        assert out.ok, out.message
        ids.append(out.release_id)
    outside = tmp_path / "victim"
    models = root / "releases" / ids[0] / "models"
    for name in os.listdir(models):
        (outside / name).mkdir(parents=True)
        (outside / name / "data").write_text("someone else's")
    shutil.rmtree(models)
    models.symlink_to(outside)
    before = _tree(outside)
    back = rollback_target(prof, [board])[0]
    held = not back.ok and "is damaged" in back.message and _tree(outside) == before and \
        os.path.basename(os.readlink(root / "current")) == ids[1]
    ledger.record("hostile-board", "symlinked folder in the previous release (rollback)", held,
                  checked="rollback refused; nothing outside the root removed; current unchanged")
    assert held, (back.ok, back.message)


def test_a_deploy_root_that_holds_someone_elses_files(fault_boards, project_dir, tmp_path):
    """Before: the deploy wrote its layout into the folder and gc emptied its releases/ and objects/."""
    prof = _profile(project_dir)
    root = tmp_path / "shared-data"
    (root / "releases" / "q1").mkdir(parents=True)
    (root / "releases" / "q1" / "report.pdf").write_text("theirs")
    (root / "objects").mkdir()
    (root / "objects" / "photo.jpg").write_text("theirs")
    before = _tree(root)
    board = _board(fault_boards, project_dir, "emu-02", root)
    fabricate(project_dir, "rpi5", {"model": (0.2, 1)})
    out = deploy_target(load_project(project_dir), prof, [board])[0]
    held = not out.ok and f"refusing deploy root {root}: it already holds files" in out.message and _tree(root) == before
    ledger.record("careless-inventory", "deploy root with others' files", held,
                  checked="refused in one line naming the root; nothing in it written or removed")
    after = _tree(root)
    assert held, (out.message, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)})


# ------------------------------------------------------------------ the agent, in process
def test_gc_and_system_roots(tmp_path, monkeypatch):
    root = tmp_path / "root"
    for seed, rid in ((1, "v1"), (2, "v2")):
        _release(root, rid, seed)
    (root / "releases" / "theirs").mkdir()
    (root / "objects" / "README").write_text("theirs")
    for seed, rid in ((3, "v3"), (4, "v4"), (5, "v5")):
        _release(root, rid, seed)
    gc_held = (root / "releases" / "theirs").is_dir() and (root / "objects" / "README").is_file() and \
        not (root / "releases" / "v1").exists()
    ledger.record("careless-inventory", "gc of what dmsbuild did not make", gc_held,
                  checked="foreign release folder and object kept; our old releases collected")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    refused = []
    for r in ("/", "/etc", "/usr/local", str(home)):
        try:
            agent.refuse_system_root(r)
        except agent.AgentFail as exc:
            refused.append(exc.msg.startswith(f"refusing deploy root {r}"))
    try:
        agent.prepare({"root": str(home)})
        wrote = True
    except agent.AgentFail:
        wrote = bool(list(home.iterdir()))
    roots_held = refused == [True] * 4 and not wrote
    ledger.record("careless-inventory", "deploy root /, /etc, /usr/local, home", roots_held,
                  checked="each refused before anything is written")
    assert gc_held and roots_held, (refused, wrote)


# ------------------------------------------------------------------ engines and host paths
def test_engine_cache_path_and_planted_engines(tmp_path, monkeypatch):
    from tests.test_security_engines import test_a_hostile_manifest_changes_nothing_outside_artifacts_end_to_end as e2e
    from tests.test_security_engines import test_a_planted_engine_never_reaches_another_board as planted

    for name, test, phase in (("a", e2e, "manifest names the host engine cache (absolute)"),
                              ("b", planted, "planted engine offered to another board")):
        where = tmp_path / name
        where.mkdir()
        try:
            (test(where, monkeypatch) if test is e2e else test(where))
            held = True
        except AssertionError:
            held = False
        ledger.record("hostile-board", phase, held,
                      checked="nothing written outside artifacts/" if test is e2e else "the second board builds its own engine")
        assert held, phase


# ------------------------------------------------------------------ numbers and strings
def test_numbers_and_strings_from_a_board(tmp_path):
    def refused(doc) -> bool:
        try:
            ResultStore(tmp_path / "r.sqlite").add(doc, board="evil")
        except ResultError as exc:
            return str(exc).startswith("board evil: result field")
        return False

    refusal = "refused naming the board and the field; nothing stored"
    rows = {
        "integer 10**4000 (warmup)": (refused(_set(_doc(), ("warmup",), HUGE)), refusal),
        "float 1e300 (load_ms)": (refused(_set(_doc(), ("load_ms",), 1e300)), refusal),
        "name with a trailing newline": (refused(_set(_doc(), ("artifact",), "fp32\n")), refusal),
    }
    doc = _set(_doc(), ("error",), f"x {ESCAPES}")
    doc["results"][0].update(latency_ms=None, samples_ms=None)
    stored = parse_document(json.dumps(doc), board="b")["results"][0]["error"]
    err = str(UserError(f"board b: {ESCAPES}"))
    rows["ANSI/OSC escapes in board text"] = ("\x1b" not in stored + err and "\\x1b" in stored,
                                              "stored and shown as visible escapes (\\x1b), never sent raw")
    from dmsbuild.measure.report import write_report
    from tests.bench_docs import document, result

    store = ResultStore(tmp_path / "rep.sqlite")
    store.add(document("aaaa000000000001", [result("fp32", 6.7), result("fp16", 1.0, error="[x](javascript:alert(1)) "
                                                                          "![p](https://t.example/p.png)")]), board="b")
    _, md = write_report(store, tmp_path / "report")
    text = md.read_text()
    rows["link and image in report.md"] = ("[x](javascript" not in text and "![p](" not in text,
                                           "report.md shows them as text (brackets escaped)")
    for phase, (held, checked) in rows.items():
        ledger.record("hostile-board", phase, held, checked=checked)
    assert all(held for held, _ in rows.values()), rows
