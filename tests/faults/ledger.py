"""What the fault suite injected and what survived: printed as a table at the end of the run."""
from __future__ import annotations

from dataclasses import dataclass

#: kind -> per-fault records, filled by the tests, printed by conftest.pytest_terminal_summary
RECORDS: dict[str, list["Fault"]] = {}


@dataclass
class Fault:
    kind: str
    phase: str
    survived: bool
    lost: int = 0  # releases `current` (or the history) pointed to that no longer exist
    corrupted: int = 0  # kept releases whose files no longer match their manifest
    recovery_s: float | None = None  # fault -> board deployable again (or, for a hung board: -> reported)


def record(kind: str, phase: str, survived: bool, lost: int = 0, corrupted: int = 0,
           recovery_s: float | None = None) -> Fault:
    f = Fault(kind, phase, survived, lost, corrupted, recovery_s)
    RECORDS.setdefault(kind, []).append(f)
    return f


def table() -> list[str]:
    """One row per fault kind (and per phase of the kills)."""
    rows = [("fault", "injected", "survived", "lost", "corrupted", "max recovery s")]
    total: list = [0, 0, 0, 0, None]
    for kind in sorted(RECORDS):
        by_phase: dict[str, list[Fault]] = {}
        for f in RECORDS[kind]:
            by_phase.setdefault(f.phase, []).append(f)
        for phase, fs in sorted(by_phase.items()):
            n, ok = len(fs), sum(f.survived for f in fs)
            lost, bad = sum(f.lost for f in fs), sum(f.corrupted for f in fs)
            times = [f.recovery_s for f in fs if f.recovery_s is not None]
            rec = max(times) if times else None
            rows.append((f"{kind}/{phase}" if phase else kind, str(n), str(ok), str(lost), str(bad), _s(rec)))
            longest = max([t for t in (total[4], rec) if t is not None], default=None)
            total = [total[0] + n, total[1] + ok, total[2] + lost, total[3] + bad, longest]
    rows.append(("TOTAL", str(total[0]), str(total[1]), str(total[2]), str(total[3]), _s(total[4])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0 or i == len(rows) - 2:
            out.append("  ".join("-" * w for w in widths))
    return out


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"
