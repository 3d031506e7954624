"""`doit bench target=<name> [hosts=...] [artifact=...]`: benchmark the release current on the target's boards
(no redeploy, nothing sent); results are stored like a deploy's."""
from __future__ import annotations

from typing import Any

from . import doit_var, profile, project, selected_targets, user_error_task
from ..errors import UserError


def ssh_boards(proj: Any, prof: Any, hosts: str | None = None, inventory: str | None = None,
               groups: str | None = None) -> tuple[list[Any], list[Any], list[Any]]:
    """Connect (in parallel) to the selected inventory boards and find the release ``current`` on each.

    Returns (``bench.BoardBench`` per reachable board with a release, failed ``bench.BoardOutcome`` per board
    that could not be benchmarked, the open transports to close). One board's failure stops nothing.
    """
    import posixpath
    from concurrent.futures import ThreadPoolExecutor

    from ..bench import BoardBench, BoardOutcome
    from ..release import open_transport, resolve_root
    from .deploy import boards_for

    boards = boards_for(proj, prof, hosts, inventory, groups)

    def one(board: Any) -> tuple[Any, Any]:
        transport = open_transport(board)
        try:
            transport.connect()
            root = resolve_root(transport, board, prof)
            current = posixpath.join(root, "current")
            res = transport.run(["readlink", "-e", "--", current], timeout=60)
            if not res.ok or not res.stdout.strip():
                raise UserError(f"board {board.name}: no release deployed at {current}",
                                hint=f"run `doit deploy target={prof.name} hosts={board.name}` first")
            return BoardBench(board.name, transport, res.stdout.strip(), board.python), transport
        except UserError as exc:
            transport.close()
            return BoardOutcome(board.name, False, 0.0, error=str(exc)), None

    with ThreadPoolExecutor(max_workers=max(1, min(prof.deploy.parallel, len(boards)))) as pool:
        done = list(pool.map(one, boards))
    ready = [item for item, t in done if t is not None]
    failed = [item for item, t in done if t is None]
    for f in failed:
        print(f"[bench] {f.board}: FAILED: {(f.error or '').splitlines()[0]}")
    return ready, failed, [t for _, t in done if t is not None]


def _bench_action(target: str):
    def action() -> object:
        from doit.exceptions import TaskFailed

        from ..bench import run_benchmarks

        transports: list[Any] = []
        try:
            prof = profile(target)
            boards, outcomes = None, []
            if prof.transport == "ssh":
                boards, outcomes, transports = ssh_boards(project(), prof, doit_var("hosts"), doit_var("inventory"),
                                                          doit_var("groups"))
            elif doit_var("hosts") or doit_var("groups"):
                raise UserError(f"target '{target}' benchmarks this machine only; hosts=/groups= do not apply",
                                hint="drop hosts=, or pick a target whose boards are in the inventory")
            if boards is None or boards:
                outcomes += run_benchmarks(project(), prof, boards, artifact=doit_var("artifact"))
        except UserError as exc:
            return TaskFailed(str(exc))
        finally:
            for t in transports:
                t.close()
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
    """Benchmark and verify the current release on a target's boards (target=NAME [hosts=...] [artifact=NAME])."""
    for target in selected_targets(default_all=False):
        try:
            profile(target)
        except UserError as exc:
            yield user_error_task("bench", target, exc)
            continue
        yield {"name": target, "actions": [_bench_action(target)], "uptodate": [False], "verbosity": 2}
