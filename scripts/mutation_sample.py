#!/usr/bin/env python3
"""A seeded sample of Cosmic Ray's mutants over the modules that carry dmsbuild's promises (issue 25, item 2).

``scripts/mutation.py`` mutates the lines its authors chose; this lets a maintained tool choose:
Cosmic Ray (PyPI ``cosmic-ray``, pinned in the ``mutation`` extra) enumerates every mutant its operators
make in the promise-carrying modules (``GROUPS``), a seeded random sample of them is kept (the rest are
recorded as skipped in Cosmic Ray's own session database), and ``cosmic-ray exec`` runs each sampled
mutant against the tests of its group, in a temporary copy of the working tree (Cosmic Ray edits files in
place; the working tree is never touched). The run stops starting new groups at ``--minutes``.

    python -m venv .venv-mutation && .venv-mutation/bin/pip install 'cosmic-ray==8.7.0'   # or pip install '.[mutation]'
    .venv-mutation/bin/python scripts/mutation_sample.py --sample 200 --seed 25 --minutes 90   # the sampled run
    .venv-mutation/bin/python scripts/mutation_sample.py --sample 5 --groups gates            # a smoke test
    .venv-mutation/bin/python scripts/mutation_sample.py --list                               # groups, modules, tests

The interpreter running this script needs ``cosmic_ray``; the tests run with the project's own
``.venv/bin/python`` (``--test-python``). It prints a table per group (sampled, killed, survived,
incompetent, skipped by the time limit) with the kill rate over the non-equivalent mutants, and each
survivor's diff, and writes ``artifacts/mutation-sample/<seed>.json``. A survivor either gets a test or an
entry in ``EQUIVALENT`` (module, operator, the line before and after) with a one-line reason why no test can tell
it apart.
Exit status: 0 when the kill rate is at least ``--min-rate`` (default 0.9), 1 below, 2 on a set-up error.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation import REPO, copy_repo  # noqa: E402  (the same copy of the working tree as the named mutations)

COSMIC_RAY = "8.7.0"
#: group -> (modules mutated, the tests that defend them): the issue's promise-carrying modules
GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gates": (("dmsbuild/measure/gates.py", "dmsbuild/core/accuracy.py", "dmsbuild/board/runner/judge.py"),
              ("tests/test_promises_gates.py", "tests/test_gate_boundaries.py", "tests/test_gates.py",
               "tests/test_accuracy_metrics.py")),
    "regression": (("dmsbuild/measure/regression.py", "dmsbuild/measure/board_state.py"),
                   ("tests/test_promises_gates.py", "tests/test_promises_fallbacks.py",
                    "tests/test_promises_board_state.py", "tests/test_measurements.py")),
    "tune": (("dmsbuild/pipeline/tune/choice.py", "dmsbuild/pipeline/tune/run.py", "dmsbuild/pipeline/tune/board.py",
              "dmsbuild/pipeline/tune/space.py", "dmsbuild/convert/tuned.py"), ("tests/test_tune.py", "tests/test_promises_fallbacks.py")),
    "release-agent": (("dmsbuild/board/release_agent.py",),
                      ("tests/test_invariants.py", "tests/test_deploy.py", "tests/test_security_agent.py",
                       "tests/test_agent_messages.py",
                       # the fault hooks (fault_point) the fault tests rely on, one end-to-end test each (a whole
                       # file each would double the group's time): a dropped connection kills the sshd chain, and
                       # fetch.read fires on the first chunk
                       "tests/faults/test_kill.py::test_dropped_commit_never_interleaves_with_the_next_deploy",
                       "tests/test_relay.py::test_deploy_killed_during_fetch_keeps_the_old_release_then_resumes")),
    "release": (("dmsbuild/ship/release.py", "dmsbuild/ship/doctor.py"),
                ("tests/test_promises_preflight.py", "tests/test_deploy.py", "tests/test_doctor.py",
                 "tests/faults/test_hooks.py::test_the_controllers_fault_hook_pauses_or_kills_at_its_point")),
    "transport": (("dmsbuild/transport/ssh.py", "dmsbuild/transport/sshconfig.py"),
                  ("tests/test_promises_ssh.py", "tests/test_ssh_route.py", "tests/test_ssh_identities.py",
                   "tests/test_ssh_known_hosts.py", "tests/test_ssh_algorithms.py",
                   # the upload slot (who waits for one) and the adaptive limit (AdaptiveSlots) live in ssh.py
                   "tests/test_upload_path.py", "tests/test_upload_slots.py", "tests/test_ssh_run.py")),
    "inventory": (("dmsbuild/ship/ansible.py", "dmsbuild/ship/inventory.py"),
                  ("tests/test_inventory.py", "tests/test_ansible.py", "tests/test_ansible_semantics.py")),
    "incremental": (("dmsbuild/tasks/build.py",), ("tests/test_promises_config.py", "tests/test_incremental.py")),
}
#: (module, operator, the line before, the line after) -> why no test can tell that mutant from the original
#: (excluded from the rate). Keyed by what the mutant changes, not by line number, so an entry follows its line
#: when the code around it moves; the seed-25 run (docs/testing.md) found these.
EQUIVALENT: dict[tuple[str, str, str, str], str] = {
    ('dmsbuild/transport/ssh.py', 'core/ReplaceBinaryOperator_LShift_BitOr',
     'err += chan.recv_stderr(1 << 16)',
     'err += chan.recv_stderr(1 | 16)'):
        'stderr read 17 bytes per recv instead of 64 KiB: the loop reads again at once, the same bytes arrive',
    ('dmsbuild/ship/ansible.py', 'core/NumberReplacer',
     'raise UserError(f"{path}: ansible-inventory refused it: {why[:300]}", hint="fix the inventory (ansible-inventory -i FILE --list)")',
     'raise UserError(f"{path}: ansible-inventory refused it: {why[: 301]}", hint="fix the inventory (ansible-inventory -i FILE --list)")'):
        'the cap on the quoted ansible-inventory line: 301 characters instead of 300 is the same one-line message',
    ('dmsbuild/convert/tuned.py', 'core/AddNot',
     'if TYPE_CHECKING:',
     'if not TYPE_CHECKING:'):
        'if not TYPE_CHECKING imports ProjectConfig at run time: dmsbuild.config is already imported above, the name is only used in (lazy) annotations',
    ('dmsbuild/convert/tuned.py', 'core/NumberReplacer',
     'def short_hash(obj: Any, n: int = 16) -> str:',
     'def short_hash(obj: Any, n: int = 15) -> str:'):
        'cache keys and recipe file names 15 hex digits instead of 16: written and read by the same function',
    ('dmsbuild/ship/release.py', 'core/NumberReplacer',
     'return UserError(f"board \'{board.name}\': disk full under {root} while uploading {remote.rsplit(\'/\', 1)[-1]}; "',
     'return UserError(f"board \'{board.name}\': disk full under {root} while uploading {remote.rsplit(\'/\', 2)[-1]}; "'):
        "rsplit('/', 2)[-1] is the same last path component as rsplit('/', 1)[-1]",
    ('dmsbuild/board/runner/judge.py', 'core/ReplaceAndWithOr',
     'elif kind == "sequence" and by.get("string_agreement") is not None:',
     'elif kind == "sequence" or by.get("string_agreement") is not None:'):
        'only sequence heads carry string_agreement (runner/metrics.py), and a sequence head without it has no value to check: `and` and `or` pick the same heads',
    ('dmsbuild/measure/board_state.py', 'core/NumberReplacer',
     'timeout=60)',
     'timeout= 59)'):
        'the SSH time limit for starting the board-state sampler: 59 s instead of 60 s (it answers in well under 1 s)',
    ("dmsbuild/board/release_agent.py", "core/NumberReplacer",
     'time.sleep(2)',
     'time.sleep( 3)'):
        "the dropslow test fault's sleep: 3 s instead of 2 s only keeps the busy-board window open longer",
}


def in_lazy_annotation(path: Path, line: int, col: int) -> bool:
    """Whether (line, col) lies inside an annotation of a module with ``from __future__ import annotations``:
    such annotations are never evaluated (PEP 563), so ``str | None`` -> ``str - None`` changes nothing at run
    time (equivalent, one rule instead of one EQUIVALENT entry per annotation)."""
    import ast

    tree = ast.parse(path.read_text())
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body):
        return False
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            notes.append(node.returns)
        if isinstance(node, ast.arg):
            notes.append(node.annotation)
        if isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        for a in filter(None, notes):
            if (a.lineno, a.col_offset) <= (line, col) <= (a.end_lineno, a.end_col_offset):
                return True
    return False


def _cosmic_ray(args: list[str], cwd: Path, log) -> int:
    cmd = [sys.executable, "-c", "import sys; from cosmic_ray.cli import main; sys.exit(main())", *args]
    # the copy's dmsbuild first for the tests and every process they start (the venv's editable install points
    # at the working tree), and no bytecode: a mutant of the same size written within the second would
    # otherwise be served from the previous mutant's stale .pyc (its mtime has a resolution of one second)
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def _config(modules: tuple[str, ...], tests: tuple[str, ...], test_python: str, timeout: float) -> str:
    command = shlex.join([test_python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                          *tests])
    mods = ", ".join(json.dumps(m) for m in modules)
    return (f"[cosmic-ray]\nmodule-path = [{mods}]\ntimeout = {timeout}\nexcluded-modules = []\n"
            f"test-command = {json.dumps(command)}\n\n[cosmic-ray.distributor]\nname = \"local\"\n")


def _changed_lines(diff: str) -> tuple[str, str]:
    """The first line a mutant's unified diff removes and the first it adds (stripped)."""
    lines = diff.splitlines()
    return (next((ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")), ""),
            next((ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")), ""))


def _changed_column(diff: str) -> int:
    """Where, in the stripped original line, a one-line mutant's diff first differs from it."""
    before, after = _changed_lines(diff)
    return next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))


def _mutated_line(spec, copy: Path) -> str:
    """The line ``spec`` writes, by Cosmic Ray's own mutation of the module's source (nothing run)."""
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    code = mutate_code((copy / spec.module_path).read_text(), get_operator(spec.operator_name)(**(spec.operator_args or {})),
                       spec.occurrence)
    return code.splitlines()[spec.start_pos[0] - 1].strip() if code else ""


def _removed_line(diff: str) -> str:
    """The original line of a one-line mutant's unified diff."""
    return _changed_lines(diff)[0]


def _key(group: str, m, copy: Path) -> tuple:
    """(group, module, operator, occurrence, the line before, the line after) of a mutant: its identity for the
    seeded sample and for finding it again after the code around it moved. The changed line comes from
    Cosmic Ray's own mutation of the module (no test run)."""
    line = (copy / m.module_path).read_text().splitlines()[m.start_pos[0] - 1]
    return (group, str(m.module_path), m.operator_name, int(m.occurrence), line.strip(),
            m.start_pos[1] - (len(line) - len(line.lstrip())))  # its column within the stripped line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample", type=int, default=200, help="mutants drawn across all groups (default 200)")
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--minutes", type=float, default=90.0, help="start no new group after this (default 90)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one mutant's tests may take")
    p.add_argument("--groups", nargs="*", default=sorted(GROUPS), help="groups to mutate (default all)")
    p.add_argument("--test-python", default=str(REPO / ".venv" / "bin" / "python"))
    p.add_argument("--min-rate", type=float, default=0.9)
    p.add_argument("--survivors-of", type=Path, metavar="JSON",
                   help="run only the mutants that survived in that earlier run's JSON (found by module, operator "
                        "and the line they change), e.g. after adding tests")
    p.add_argument("--jobs", type=int, default=1, help="groups run side by side, each in its own copy (default 1)")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for g, (mods, tests) in GROUPS.items():
            print(f"{g:15} {' '.join(mods)}\n{'':15} tests: {' '.join(tests)}")
        return 0
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        print(f"mutation_sample: unknown group(s) {unknown}; groups: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    try:
        import cosmic_ray  # noqa: F401
        from cosmic_ray.work_db import WorkDB, use_db
        from cosmic_ray.work_item import WorkerOutcome, WorkResult
    except ImportError:
        print(f"mutation_sample: cosmic_ray is not importable by {sys.executable}; "
              f"pip install 'cosmic-ray=={COSMIC_RAY}' (or '.[mutation]') into the interpreter that runs this script",
              file=sys.stderr)
        return 2
    start = time.monotonic()
    out_dir = REPO / "artifacts" / "mutation-sample"
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"{args.seed}.log"
    with tempfile.TemporaryDirectory(prefix="dms-cosmic-") as tmp, open(log_path, "w") as log:
        # one copy of the tree per group: Cosmic Ray edits the mutated module in place, and groups run side by
        # side (--jobs) would otherwise see each other's mutants
        copies = {g: copy_repo(Path(tmp) / g) for g in args.groups}
        jobs: list[tuple[str, str]] = []
        keys: dict[tuple[str, str], tuple] = {}
        specs: dict[tuple[str, str], object] = {}
        for g in args.groups:
            mods, tests = GROUPS[g]
            copy = copies[g]
            (copy / f"cr-{g}.toml").write_text(_config(mods, tests, args.test_python, args.timeout))
            if _cosmic_ray(["init", f"cr-{g}.toml", f"cr-{g}.sqlite"], copy, log) != 0:
                print(f"mutation_sample: cosmic-ray init failed for {g} (see {log_path})", file=sys.stderr)
                return 2
            with use_db(str(copy / f"cr-{g}.sqlite"), WorkDB.Mode.open) as db:
                for w in db.work_items:
                    keys[(g, w.job_id)] = _key(g, w.mutations[0], copy)
                    specs[(g, w.job_id)] = w.mutations[0]
                    jobs.append((g, w.job_id))
        total = len(jobs)
        if args.survivors_of:
            # the same mutants again, found by what they change (the code may have moved since)
            prev = json.loads(args.survivors_of.read_text())
            want = {(m["module"], m["operator"], m.get("before") or _removed_line(m.get("diff") or ""))
                    for m in prev["mutants"] if m["outcome"] == "survived"}
            # several mutants of one operator on one line (two `%` in a message): the one whose column is the
            # last at or before the first character the survivor's diff changed
            at = {}
            for m in prev["mutants"]:
                if m["outcome"] == "survived":
                    at.setdefault((m["module"], m["operator"], m.get("before") or _removed_line(m.get("diff") or "")),
                                  []).append((_changed_column(m.get("diff") or ""), _changed_lines(m.get("diff") or "")[1]))
            by_line: dict[tuple, list] = {}
            for j in jobs:
                if keys[j][1:3] + keys[j][4:5] in want:
                    by_line.setdefault(keys[j][1:3] + keys[j][4:5], []).append(j)
            chosen = set()
            for k, js in by_line.items():
                for col, after in at[k]:
                    fits = [j for j in js if keys[j][5] <= col] or js
                    best = max(keys[j][5] for j in fits)
                    ties = [j for j in fits if keys[j][5] == best]
                    # variants of one operator at one place (a number +1 and -1): the one that writes the same line
                    same = [j for j in ties if _mutated_line(specs[j], copies[j[0]]) == after]
                    chosen.add((same or ties)[0])
            gone = sorted(want - set(by_line))
            if gone:
                print(f"mutation_sample: {len(gone)} survivor(s) of {args.survivors_of} no longer exist (the line changed): "
                      + "; ".join(f"{m} {op}: {b!r}" for m, op, b in gone), flush=True)
        else:
            # sampled by what a mutant is (group, module, operator, occurrence), not by Cosmic Ray's random job
            # ids: the same seed on the same code draws the same mutants
            order = sorted(jobs, key=lambda j: keys[j][:4])
            chosen = set(random.Random(args.seed).sample(order, min(args.sample, total)))
        sampled: dict[str, int] = {}
        for g in args.groups:
            with use_db(str(copies[g] / f"cr-{g}.sqlite"), WorkDB.Mode.open) as db:
                mine = [w.job_id for w in db.work_items]
                db.set_multiple_results([j for j in mine if (g, j) not in chosen],
                                        WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not sampled"))
                sampled[g] = sum((g, j) in chosen for j in mine)
        print(f"mutation_sample: {len(chosen)} of {total} mutants sampled (seed {args.seed}): "
              + ", ".join(f"{g} {n}" for g, n in sampled.items()) + f"; {args.jobs} group(s) at a time", flush=True)

        def run_group(g: str) -> None:
            if (time.monotonic() - start) / 60 > args.minutes or not sampled[g]:
                return  # its mutants stay "not run"
            t0 = time.monotonic()
            # the baseline: the group's tests must pass on the unmutated copy, or every mutant would be "killed"
            cmd = [args.test_python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                   *GROUPS[g][1]]
            env = {**os.environ, "PYTHONPATH": str(copies[g]), "PYTHONDONTWRITEBYTECODE": "1"}
            base = subprocess.run(cmd, cwd=copies[g], env=env, capture_output=True, text=True)
            if base.returncode != 0:
                print(f"mutation_sample: {g}: its tests fail without any mutant (exit {base.returncode}); its mutants "
                      f"are not run: {base.stdout.strip().splitlines()[-1:] }", flush=True)
                return
            _cosmic_ray(["exec", f"cr-{g}.toml", f"cr-{g}.sqlite"], copies[g], log)
            print(f"mutation_sample: {g}: {sampled[g]} mutant(s) in {time.monotonic() - t0:.0f} s", flush=True)

        # the longest groups first, so that --jobs keeps every worker busy to the end
        order = sorted(args.groups, key=lambda g: -sampled[g])
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(run_group, order))
        rows, survivors, records = [], [], []
        for g in args.groups:
            counts = {"killed": 0, "survived": 0, "incompetent": 0, "equivalent": 0, "not run": 0}
            with use_db(str(copies[g] / f"cr-{g}.sqlite"), WorkDB.Mode.open) as db:
                for item, result in db.completed_work_items:
                    if result.output == "not sampled":
                        continue
                    m = item.mutations[0]
                    key = (str(m.module_path), m.start_pos[0], m.operator_name)
                    outcome = getattr(result.test_outcome, "value", None) or "not run"
                    before, after = _changed_lines(result.diff or "")
                    why = EQUIVALENT.get((key[0], key[2], before, after)) or ("an annotation, never evaluated (PEP 563)"
                                                  if in_lazy_annotation(copies[g] / key[0], *m.start_pos) else None)
                    if outcome == "survived" and why:
                        outcome = "equivalent"
                    counts[outcome] = counts.get(outcome, 0) + 1
                    _, _, _, occurrence, before, after = keys[(g, item.job_id)]
                    records.append({"group": g, "module": key[0], "line": key[1], "operator": key[2],
                                    "occurrence": occurrence, "before": before, "after": after, "outcome": outcome, "equivalent": why if outcome == "equivalent" else None,
                                    "diff": result.diff})
                    if outcome == "survived":
                        survivors.append(records[-1])
                counts["not run"] += sampled[g] - sum(counts.values())
            rows.append((g, sampled[g], counts))
    judged = sum(c["killed"] + c["survived"] for _, _, c in rows)
    killed = sum(c["killed"] for _, _, c in rows)
    rate = killed / judged if judged else 0.0
    print(f"Cosmic Ray {COSMIC_RAY}: {len(chosen)} of {total} mutants sampled (seed {args.seed}), "
          f"{time.monotonic() - start:.0f} s, load average {os.getloadavg()[0]:.2f}")
    print("| group | sampled | killed | survived | equivalent | incompetent | not run |\n|---|---:|---:|---:|---:|---:|---:|")
    for g, n, c in rows:
        print(f"| {g} | {n} | {c['killed']} | {c['survived']} | {c['equivalent']} | {c['incompetent']} | {c['not run']} |")
    print(f"kill rate over non-equivalent mutants that ran: {killed}/{judged} = {rate:.1%}")
    for s in survivors:
        print(f"\nSURVIVED {s['module']}:{s['line']} {s['operator']}\n{(s['diff'] or '').strip()[:1200]}")
    (out_dir / f"{args.seed}.json").write_text(json.dumps({"cosmic_ray": COSMIC_RAY, "seed": args.seed,
                                                           "sampled": len(chosen), "population": total,
                                                           "rate": rate, "mutants": records}, indent=1))
    return 0 if judged and rate >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
