"""One exception type for mistakes a user can fix.

doit actions and the command-line entry points print a ``UserError`` as its
message alone (first line: the file/field/board and what to do); any other
exception is a bug in dmsbuild and keeps its traceback.
"""
from __future__ import annotations

from .untrusted import shown


class UserError(Exception):
    """A problem in the user's input or environment, with a fix to suggest."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # messages quote boards (agent refusals, stderr tails, facts): their escape sequences are shown, never obeyed
        message = shown(message, lines=True)
        hint = shown(hint, lines=True) if hint is not None else None
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
