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
    recovery_s: float = 0.0


def record(kind: str, phase: str, survived: bool, lost: int = 0, corrupted: int = 0, recovery_s: float = 0.0) -> Fault:
    f = Fault(kind, phase, survived, lost, corrupted, recovery_s)
    RECORDS.setdefault(kind, []).append(f)
    return f


def table() -> list[str]:
    """One row per fault kind (and per phase of the kills)."""
    rows = [("fault", "injected", "survived", "lost", "corrupted", "max recovery s")]
    total = [0, 0, 0, 0, 0.0]
    for kind in sorted(RECORDS):
        by_phase: dict[str, list[Fault]] = {}
        for f in RECORDS[kind]:
            by_phase.setdefault(f.phase, []).append(f)
        for phase, fs in sorted(by_phase.items()):
            n, ok = len(fs), sum(f.survived for f in fs)
            lost, bad = sum(f.lost for f in fs), sum(f.corrupted for f in fs)
            rec = max(f.recovery_s for f in fs)
            rows.append((f"{kind}/{phase}" if phase else kind, str(n), str(ok), str(lost), str(bad), f"{rec:.2f}"))
            total = [total[0] + n, total[1] + ok, total[2] + lost, total[3] + bad, max(total[4], rec)]
    rows.append(("TOTAL", str(total[0]), str(total[1]), str(total[2]), str(total[3]), f"{total[4]:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0 or i == len(rows) - 2:
            out.append("  ".join("-" * w for w in widths))
    return out
