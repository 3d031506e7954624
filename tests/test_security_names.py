"""No name pattern in dmsbuild lets a trailing newline through (issue 30, item 6).

``re.match(r"^...$", s)`` accepts ``"name\\n"``: ``$`` matches before a final newline. The modules listed in
``CHECKED`` use ``fullmatch`` (or ``\\Z``); this test reads their source so a new ``^...$`` + ``match`` there fails.
Modules owned by other work in flight are listed in docs/security.md's follow-ups until they are converted.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "dmsbuild"
#: modules whose name checks were converted in issue 30
CHECKED = ["names.py", "core/results.py", "ship/manifest.py", "backends/toolchain.py", "untrusted.py",
           "board/release_agent.py", "measure/bench.py", "backends/trt_board.py"]
#: a pattern anchored with ``$`` (not ``\\Z``) used with ``.match(`` on the same line or compiled in the module
_DOLLAR_MATCH = re.compile(r"""re\.match\(r?["']\^[^"']*\$["']""")


@pytest.mark.parametrize("module", CHECKED)
def test_no_dollar_anchored_match_in(module):
    text = (ROOT / module).read_text()
    assert not _DOLLAR_MATCH.search(text), module
    for m in re.finditer(r"""(\w+)\s*=\s*re\.compile\(r?["'](\^?[^"']*)\$["']\)""", text):
        name = m.group(1)
        assert not re.search(rf"\b{name}\.match\(", text), f"{module}: {name} ends with $ and is used with .match()"


def test_the_pattern_finder_sees_the_old_form():
    assert _DOLLAR_MATCH.search('if not re.match(r"^[\\w.-]+$", step):')
