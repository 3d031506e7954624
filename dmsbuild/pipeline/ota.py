"""`doit ota_pull`: the results the Mender Update Module left on boards, pulled home, stored and judged.

Above ship and measure (docs/architecture.md, layers): it reads boards through the transport, validates and
stores each document like any other (core/results.py), and judges it with the same gates as a deploy's
bench (measure/gates.py). The bundle itself (``doit bundle format=mender``) is ship/mender.py.
"""
from __future__ import annotations

import json
import posixpath
import re
from typing import Any, Callable

from ..config import ProjectConfig, TargetProfile
from ..errors import UserError
from ..ship.mender import ROUTE, PulledRun


def _run_id(board: str, file: str) -> str:
    return f"{ROUTE}-{board}-{posixpath.basename(file).removesuffix('.json')}"


def pull_results(project: ProjectConfig, profile: TargetProfile, boards: list[Any], *, store: Any,
                 transport_factory: Callable[[Any], Any] | None = None,
                 progress: Callable[[str], None] = print) -> list[PulledRun]:
    """Collect every results file the Update Module left on ``boards`` into ``store``; each file once."""
    from ..errors import first_line
    from ..measure.gates import accuracy_floors
    from ..transport import open_transport, resolve_root

    factory = transport_factory or open_transport
    floors = accuracy_floors(project, profile)
    out: list[PulledRun] = []
    for board in boards:
        try:
            with factory(board) as transport:
                root = resolve_root(transport, board, profile)
                folder = posixpath.join(root, "mender", "results")
                res = transport.run(["ls", "-1", folder], timeout=60)
                if not res.ok:
                    progress(f"{board.name}: no Mender results under {folder}")
                    continue
                names = sorted(n for n in res.stdout.split() if re.fullmatch(r"[0-9TZ]+-[0-9a-f]+-\d+\.json", n))
                known = {r["run_id"] for r in store.rows(board=board.name, target=profile.name, decode=False)}
                for n in names:
                    run_id = _run_id(board.name, n)
                    if run_id in known:
                        continue
                    cat = transport.run(["cat", posixpath.join(folder, n)], timeout=60)
                    out.append(_store_one(board.name, n, cat.stdout if cat.ok else None, run_id, profile, store, floors))
                    progress(out[-1].line())
        except UserError as exc:
            out.append(PulledRun(board.name, "-", None, False, [], error=first_line(exc)))
            progress(out[-1].line())
    return out


def _store_one(board: str, name: str, text: str | None, run_id: str, profile: TargetProfile, store: Any,
               floors: Any) -> PulledRun:
    """One results file: validated like any document, stamped with its source and route, stored, judged."""
    from ..measure.gates import check_gates
    from ..core.provenance import stamp_sources, with_route
    from ..core.results import parse_document

    try:
        record = json.loads(text) if text is not None else None
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("route") != ROUTE or not isinstance(record.get("verdict"), dict):
        return PulledRun(board, name, None, False, [], error="not a dmsbuild-release results file")
    verdict = record["verdict"]
    pulled = PulledRun(board, name, record.get("release_id"), bool(verdict.get("ok")), list(verdict.get("failures") or []))
    if record.get("document") is None:
        return pulled
    try:
        doc = parse_document(json.dumps(record["document"]), board=board)
    except UserError as exc:
        pulled.error = str(exc).splitlines()[0]
        return pulled
    stamp_sources(doc)
    for r in doc["results"]:
        r["source"] = with_route(r["source"], ROUTE)  # every label of these figures says how they arrived
    pulled.run_id = store.add(doc, board=board, target=profile.name, run_id=run_id)
    pulled.gate_failures = [f.message for f in check_gates(
        doc, board=board, target=profile.name, store=store, accuracy=floors,
        max_latency_regression=profile.gates.max_latency_regression)]
    return pulled


__all__ = ["pull_results"]
