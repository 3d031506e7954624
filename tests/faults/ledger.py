"""What the fault suite injected or fuzzed, and what held: printed as two tables at the end of the run.

Every record is the outcome of checks that can fail. A fault test computes ``survived`` from the
same conditions it then asserts; a fuzz example is recorded through :func:`example`, which records
it as held only when the block's assertions passed, and as a failure (re-raising, so the test fails)
otherwise. ``checked`` says, in a few words, what was asserted for the row.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

#: kind -> per-fault records, filled by the tests, printed by conftest.pytest_terminal_summary
RECORDS: dict[str, list["Fault"]] = {}

INJECTED, FUZZED = "injected", "fuzzed"


@dataclass
class Fault:
    kind: str
    phase: str
    survived: bool
    lost: int = 0  # releases `current` (or the history) pointed to that no longer exist
    corrupted: int = 0  # kept releases whose files no longer match their manifest
    recovery_s: float | None = None  # fault -> board deployable again (or, for a hung board: -> reported)
    category: str = INJECTED  # INJECTED: a fault done to a board/link/process; FUZZED: a generated input
    checked: str = ""  # what was asserted


def record(kind: str, phase: str, survived: bool, lost: int = 0, corrupted: int = 0,
           recovery_s: float | None = None, *, checked: str = "", category: str = INJECTED) -> Fault:
    """Record one injected fault whose ``survived`` the caller computed from the conditions it asserts."""
    f = Fault(kind, phase, bool(survived), lost, corrupted, recovery_s, category, checked)
    RECORDS.setdefault(kind, []).append(f)
    return f


@contextmanager
def example(kind: str, phase: str, checked: str) -> Iterator[None]:
    """One fuzzed input: held when the block's assertions passed; a failure (re-raised) otherwise."""
    try:
        yield
    except BaseException:
        record(kind, phase, False, checked=checked, category=FUZZED)
        raise
    record(kind, phase, True, checked=checked, category=FUZZED)


def table(category: str | None = None) -> list[str]:
    """One row per fault kind (and per phase of the kills) of ``category`` (None: both tables)."""
    if category is None:
        out: list[str] = []
        for cat, title in ((INJECTED, "faults injected"), (FUZZED, "inputs fuzzed")):
            if any(f.category == cat for fs in RECORDS.values() for f in fs):
                out += ([""] if out else []) + [title + ":"] + table(cat)
        return out
    count = "injected" if category == INJECTED else "examples"
    rows = [("fault", count, "held", "failed", "lost", "corrupted", "max recovery s", "checked")]
    total: list = [0, 0, 0, 0, None]
    for kind in sorted(RECORDS):
        by_phase: dict[str, list[Fault]] = {}
        for f in RECORDS[kind]:
            if f.category == category:
                by_phase.setdefault(f.phase, []).append(f)
        for phase, fs in sorted(by_phase.items()):
            n, ok = len(fs), sum(f.survived for f in fs)
            lost, bad = sum(f.lost for f in fs), sum(f.corrupted for f in fs)
            times = [f.recovery_s for f in fs if f.recovery_s is not None]
            rec = max(times) if times else None
            checked = "; ".join(sorted({f.checked for f in fs if f.checked})) or "-"
            rows.append((f"{kind}/{phase}" if phase else kind, str(n), str(ok), str(n - ok), str(lost), str(bad),
                         _s(rec), checked))
            longest = max([t for t in (total[4], rec) if t is not None], default=None)
            total = [total[0] + n, total[1] + ok, total[2] + lost, total[3] + bad, longest]
    rows.append(("TOTAL", str(total[0]), str(total[1]), str(total[0] - total[1]), str(total[2]), str(total[3]),
                 _s(total[4]), ""))
    if category == FUZZED:  # no board state to lose or corrupt, no recovery time: count, held, failed, checked
        rows = [r[:4] + r[7:] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        cells = [c.ljust(widths[j]) if j in (0, len(r) - 1) else c.rjust(widths[j]) for j, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
        if i == 0 or i == len(rows) - 2:
            out.append("  ".join("-" * w for w in widths[:-1]) + "  " + "-" * 7)
    return out


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"
