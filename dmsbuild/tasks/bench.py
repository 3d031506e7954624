"""`doit bench target=<name>`: benchmark the target's deployed release on its boards (no redeploy)."""
from __future__ import annotations

from . import doit_var, profile, project, selected_targets, user_error_task
from ..errors import UserError


def _bench_action(target: str):
    def action() -> object:
        from doit.exceptions import TaskFailed

        from ..bench import run_benchmarks

        try:
            outcomes = run_benchmarks(project(), profile(target), artifact=doit_var("artifact"))
        except UserError as exc:
            return TaskFailed(str(exc))
        failed = [o for o in outcomes if not o.ok]
        for o in failed:
            for msg in o.messages():
                print(f"  {msg}")
        print(f"bench {target}: {len(outcomes) - len(failed)}/{len(outcomes)} board(s) passed; "
              f"results in {project().artifacts / 'results.sqlite'}; `doit report` for the report")
        if failed:
            return TaskFailed(f"bench {target}: {len(failed)} board(s) failed: " + ", ".join(o.board for o in failed))
        return None

    return action


def task_bench():
    """Benchmark and verify the deployed release on a target's boards (target=NAME [artifact=NAME])."""
    for target in selected_targets(default_all=False):
        try:
            profile(target)
        except UserError as exc:
            yield user_error_task("bench", target, exc)
            continue
        yield {"name": target, "actions": [_bench_action(target)], "uptodate": [False], "verbosity": 2}
