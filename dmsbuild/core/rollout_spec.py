"""The rollout's vocabulary: board states, wave / max_fail specs and host patterns.

Standard library only, and below every module that uses it: ``config``
validates ``deploy.waves`` / ``deploy.max_fail`` with it at load time,
``fleet`` plans waves and selects boards with it, ``progress`` draws the
states, ``ansible`` expands an inventory's host ranges. Keeping these here
(not in ``fleet``) is what keeps the imports one-way (tests/test_architecture.py).
"""
from __future__ import annotations

import re
import string
from typing import Sequence

from ..errors import UserError

#: board states, in the order a board normally goes through them
STATES = ("waiting", "connecting", "fetching", "sending", "verifying", "benchmarking", "done", "failed", "unhealthy", "skipped", "current")
#: final states that count as a failed board
FAILED_STATES = ("failed", "unhealthy")

_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_share(value: int | str, where: str) -> tuple[str, float]:
    """('count', n) or ('percent', p) from 3 or "10%"; UserError naming ``where`` otherwise."""
    if isinstance(value, bool):
        raise UserError(f"{where} is {value!r}; expected a board count (1) or a percentage (\"10%\")")
    if isinstance(value, int):
        if value < 0:
            raise UserError(f"{where} is {value}; expected a count >= 0 or a percentage (\"10%\")")
        return ("count", float(value))
    if isinstance(value, str):
        m = _PERCENT_RE.match(value)
        if m:
            p = float(m.group(1))
            if p > 100:
                raise UserError(f"{where} is {value!r}; a percentage must be between 0% and 100%")
            return ("percent", p)
    raise UserError(f"{where} is {value!r}; expected a board count (1) or a percentage (\"10%\")")


def check_waves(waves: Sequence[int | str], where: str = "deploy.waves") -> None:
    """Validate a waves spec without knowing the fleet size (config load time)."""
    if not waves:
        raise UserError(f"{where} is empty; expected e.g. [1, \"10%\", \"100%\"]")
    for i, w in enumerate(waves):
        kind, v = parse_share(w, f"{where}[{i}]")
        if v <= 0:
            raise UserError(f"{where}[{i}] is {w!r}; a wave must add at least one board (count >= 1 or > 0%)")


def check_max_fail(max_fail: int | str, where: str = "deploy.max_fail") -> None:
    parse_share(max_fail, where)


_RANGE_RE = re.compile(r"\[([^\[\]]*)\]")
#: the most hosts one range pattern may name (a typo like [1:100000] must not build a huge list)
MAX_RANGE_HOSTS = 10_000


def expand_host_pattern(pattern: str, where: str = "host") -> list[str]:
    """``rpi5-[01:03]`` -> ``rpi5-01, rpi5-02, rpi5-03`` (Ansible's range syntax; several ranges multiply)."""
    m = _RANGE_RE.search(pattern)
    if not m:
        if "[" in pattern or "]" in pattern:
            raise UserError(f"{where}: {pattern!r} has an unbalanced '[' or ']'; a range looks like name-[01:20]")
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end():]
    parts = body.split(":")
    if len(parts) not in (2, 3):
        raise UserError(f"{where}: range [{body}] in {pattern!r} is malformed; expected [start:end] or [start:end:step]")
    start, end = parts[0], parts[1]
    step_s = parts[2] if len(parts) == 3 else "1"
    if not step_s.isdigit() or int(step_s) < 1:
        raise UserError(f"{where}: range [{body}] in {pattern!r} has step {step_s!r}; expected a positive integer")
    step = int(step_s)
    if start.isdigit() and end.isdigit():
        lo, hi = int(start), int(end)
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        if lo > hi:
            raise UserError(f"{where}: range [{body}] in {pattern!r} runs backwards; write [{end}:{start}]")
        if (hi - lo) // step + 1 > MAX_RANGE_HOSTS:
            raise UserError(f"{where}: range [{body}] in {pattern!r} names more than {MAX_RANGE_HOSTS} hosts")
        items = [str(i).zfill(width) for i in range(lo, hi + 1, step)]
    elif len(start) == 1 and len(end) == 1 and start in string.ascii_letters and end in string.ascii_letters:
        if start > end:
            raise UserError(f"{where}: range [{body}] in {pattern!r} runs backwards; write [{end}:{start}]")
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise UserError(f"{where}: range [{body}] in {pattern!r} is malformed; use numbers ([01:20]) or single letters ([a:f])")
    out: list[str] = []
    for item in items:
        for rest in expand_host_pattern(tail, where):
            out.append(head + item + rest)
            if len(out) > MAX_RANGE_HOSTS:
                raise UserError(f"{where}: {pattern!r} names more than {MAX_RANGE_HOSTS} hosts")
    return out


def split_hosts(hosts: str) -> list[str]:
    """Split on commas outside brackets, so ``a-[1:3],b`` is two parts."""
    parts, depth, cur = [], 0, ""
    for ch in hosts:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]
