"""Text from a board is data: shown, never obeyed (docs/security.md).

A board (or anything that runs on it) chooses every string it sends home:
error messages, release ids in its ``history.json``, facts, tool output. Sent
to a terminal as they are, ANSI/OSC escape sequences set the window title,
clear the screen or rewrite earlier lines; stored in ``report.md``, a
``[x](javascript:...)`` link or a remote ``![](http://...)`` image becomes live
markup. The helpers here turn such text into plain visible characters:

- :func:`shown` escapes every control character (C0, DEL, C1) and the Unicode
  format characters that reorder text (bidi overrides, "Trojan Source") as
  ``\\x1b`` / ``\\u202e``: the reader sees that they were there;
- :func:`neutralise` does the same to every string inside parsed JSON (keys
  too), keeping newlines and tabs only where asked;
- :func:`md_text` additionally escapes HTML and backslash-escapes Markdown's
  link, image, code and table syntax, so board text in ``report.md`` is text.

Standard library only: used by the results validation, the deploy's view of
the board agent's answers, ``UserError`` and the reports.
"""
from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

#: C0 controls (but newline and tab where allowed), DEL, C1 controls; Unicode format characters (Cf) such as
#: U+202E RIGHT-TO-LEFT OVERRIDE and U+2066..2069 isolates; line/paragraph separators
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]|[^\x00-\x7f]")
#: what makes Markdown markup of text (links and images need ``[``; ``<`` is HTML-escaped instead)
_MD_SPECIAL = re.compile(r"([\\`\[\]|])")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: Any, limit: int | None = None, *, lines: bool = False) -> str:
    """``text`` with control and bidi characters written as escapes (``\\x1b``), cut to ``limit`` characters.

    ``lines``: newlines and tabs stay (multi-line messages); otherwise they are escaped too (one line)."""
    s = text if isinstance(text, str) else str(text)

    def sub(m: re.Match[str]) -> str:
        ch = m.group(0)
        if ord(ch) <= 0x9f or ch in "\u2028\u2029":
            return _escape(ch)
        return _escape(ch) if unicodedata.category(ch) == "Cf" else ch

    out = _CONTROL.sub(sub, s)
    if not lines:
        out = out.replace("\n", "\\n").replace("\t", "\\t")
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 3)] + "..."
    return out


def neutralise(value: Any, *, lines: bool = False) -> Any:
    """Parsed JSON with every string (and key) passed through :func:`shown`; numbers and the shape unchanged.

    A string without control characters comes back equal, so valid documents are unchanged."""
    if isinstance(value, str):
        return shown(value, lines=lines)
    if isinstance(value, list):
        return [neutralise(v, lines=lines) for v in value]
    if isinstance(value, dict):
        return {shown(k) if isinstance(k, str) else k: neutralise(v, lines=lines) for k, v in value.items()}
    return value


def md_text(text: Any, limit: int | None = None) -> str:
    """Board text for a Markdown table cell: control characters as visible escapes, newlines as spaces, HTML
    escaped (``<script>`` is text) and Markdown's link/image/code/table syntax backslash-escaped.

    ``[x](javascript:alert(1))`` and ``![](https://tracker/p.png)`` come out as literal text."""
    s = shown(str(text).replace("\n", " "), limit)
    # quotes stay plain text (no &#x27; in report.md): outside an HTML attribute they open nothing
    return html.escape(_MD_SPECIAL.sub(r"\\\1", s), quote=False)
