"""``doit bench target=<name> [hosts=...] [groups=...] [inventory=FILE] [artifact=NAME]``.

Benchmarks and verifies the release already ``current`` on the target's
boards (nothing is sent) through the same rollout as ``doit deploy``
(``pipeline/deploy.bench_target``): the same board selection, one connection
per board, the same bench step, store and gates, the same outcome type.
"""
from __future__ import annotations

from typing import Any, Iterator

from . import cli_path, doit_var, params, per_target, profile, project
from ..errors import UserError


def _bench(target: str) -> Any:
    from doit.exceptions import TaskFailed

    from ..pipeline.deploy import bench_target, report
    from .deploy import boards_for

    try:
        proj, prof = project(), profile(target)
        boards = boards_for(proj, prof, doit_var("hosts"), cli_path("inventory"), doit_var("groups"))
        outcomes = bench_target(proj, prof, boards, artifact=doit_var("artifact"))
    except UserError as exc:
        return TaskFailed(str(exc))
    failed = [o for o in outcomes if not o.ok]
    judged = {o.board: o.bench_verdict.messages for o in failed if o.bench_verdict is not None and o.bench_verdict.messages}
    report([o for o in outcomes if o.board not in judged])
    for o in failed:
        if o.board in judged:  # the release ran but measure's verdict failed it: one line per failed check
            print(f"FAIL {o.board}: release {o.release_id} failed {len(judged[o.board])} check(s):")
            for msg in judged[o.board]:
                print(f"  {msg}")
    print(f"bench {target}: {len(outcomes) - len(failed)}/{len(outcomes)} board(s) passed; "
          f"results in {proj.artifacts / 'results.sqlite'}; `doit report` for the report")
    if failed:
        return TaskFailed(f"bench {target}: {len(failed)} board(s) failed: " + ", ".join(o.board for o in failed))
    return None


@params("target", "hosts", "groups", "inventory", "artifact")
def task_bench() -> Iterator[dict]:
    """Benchmark and check the release current on the target's boards again (nothing is sent)."""
    yield from per_target("bench", lambda target: {"actions": [(_bench, [target])], "uptodate": [False], "verbosity": 2},
                          doc="benchmark and check the release current on {target}'s boards")
