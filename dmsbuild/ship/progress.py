"""Live per-board status of a rollout.

On a terminal the status block is redrawn in place (ANSI: cursor up, clear to
end of screen), at most ``max_hz`` times a second, so twenty boards sending
megabytes do not flood the terminal. Elsewhere (CI logs, pipes) every state
change is one plain timestamped line, and a sending board logs at most one
line per ``log_step`` of its transfer. Safe to call from many worker threads.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, TextIO

from ..untrusted import shown
from ..core.rollout_spec import FAILED_STATES, STATES

_FINAL = ("done", "failed", "unhealthy", "skipped", "current")
_COLOURS = {"done": "32", "current": "32", "failed": "31", "unhealthy": "31", "skipped": "33"}


@dataclass
class _Board:
    state: str = "waiting"
    detail: str = ""
    sent: int | None = None
    total: int | None = None
    logged_fraction: float = -1.0


class FleetProgress:
    """A ``fleet.ProgressSink`` that shows every board's state."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        max_hz: float = 8.0,
        log_step: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        title: str = "rollout",
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.min_interval = 1.0 / max_hz
        self.log_step = log_step
        self.clock = clock
        self.now = now
        self.title = title
        self._boards: dict[str, _Board] = {}
        self._lock = threading.Lock()
        self._drawn_lines = 0
        self._last_draw = float("-inf")
        self._wave = ""

    # -- the ProgressSink protocol -------------------------------------
    def update(self, board: str, state: str, detail: str = "", *, sent: int | None = None, total: int | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown board state {state!r}")  # a bug in the deploy side
        detail = shown(detail)  # board text (agent messages, release ids): escape sequences shown, never obeyed
        with self._lock:
            b = self._boards.setdefault(board, _Board())
            changed = state != b.state or detail != b.detail
            b.state, b.detail = state, detail
            if state == "sending":
                b.sent, b.total = sent, total
            if self.tty:
                self._draw(force=changed and state in _FINAL)
            else:
                self._log(board, b, changed)

    def wave(self, index: int, total: int, size: int) -> None:
        with self._lock:
            self._wave = f"wave {index}/{total} ({size} board{'s' if size != 1 else ''})"
            if self.tty:
                self._draw(force=True)
            else:
                self._line(f"{self.title}: {self._wave}")

    def finish(self) -> None:
        """Draw the final state (TTY) so the last frame is complete."""
        with self._lock:
            if self.tty:
                self._draw(force=True)

    # -- plain lines ----------------------------------------------------
    def _line(self, text: str) -> None:
        self.stream.write(f"{self.now().strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()

    def _log(self, name: str, b: _Board, changed: bool) -> None:
        if b.state == "sending" and b.total:
            frac = (b.sent or 0) / b.total
            step = int(frac / self.log_step) * self.log_step
            if not changed and step <= b.logged_fraction:
                return
            b.logged_fraction = step
            self._line(f"{name}: sending {(b.sent or 0) / 1e6:.1f}/{b.total / 1e6:.1f} MB")
            return
        if not changed or b.state == "waiting":  # every board starts waiting: no line per board for that
            return
        b.logged_fraction = -1.0
        self._line(f"{name}: {b.state}" + (f" ({b.detail})" if b.detail else ""))

    # -- the in-place block -----------------------------------------------
    def _describe(self, name: str, b: _Board, width: int) -> str:
        text = b.state
        if b.state == "sending" and b.sent is not None:
            text += f" {b.sent / 1e6:.1f}" + (f"/{b.total / 1e6:.1f} MB" if b.total else " MB")
        if b.detail:
            text += f" - {b.detail}"
        line = f"  {name:<20} {text}"[:width]
        colour = _COLOURS.get(b.state)
        return f"\x1b[{colour}m{line}\x1b[0m" if colour else line

    def _draw(self, force: bool = False) -> None:
        t = self.clock()
        if not force and t - self._last_draw < self.min_interval:
            return
        self._last_draw = t
        cols, rows = shutil.get_terminal_size((100, 40))
        counts: dict[str, int] = {}
        for b in self._boards.values():
            counts[b.state] = counts.get(b.state, 0) + 1
        head = f"{self.title}" + (f" {self._wave}" if self._wave else "") + ": " + ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: STATES.index(kv[0]))
        )
        # boards in flight and failed ones first; the rest only while they fit
        order = sorted(
            self._boards.items(),
            key=lambda kv: (0 if kv[1].state not in _FINAL + ("waiting",) else 1 if kv[1].state in FAILED_STATES else 2),
        )
        room = max(1, rows - 3)
        shown = order[:room]
        lines = [head[:cols]] + [self._describe(n, b, cols) for n, b in shown]
        if len(order) > room:
            lines.append(f"  ... {len(order) - room} more")
        out = ""
        if self._drawn_lines:
            out += f"\x1b[{self._drawn_lines}F"  # to the start of the block
        out += "\x1b[J" + "\n".join(lines) + "\n"
        self.stream.write(out)
        self.stream.flush()
        self._drawn_lines = len(lines)
