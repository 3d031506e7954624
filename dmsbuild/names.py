"""Safe identifiers for tensor names.

ONNX allows any string as a tensor name (``gpu_0/softmax_1``, ``input:0``,
``logits (raw)``, ``Ausgabe_ä``). Wherever dmsbuild turns a name into a file
name, a JSON key that the board's result validation checks, or a shell word,
it uses ``safe_id(name)`` instead; users always see the original name.

Standard library only: imported by task generators and by the host-side
release code; board-side code never computes ids, it reads the mapping the
host wrote into the manifest (``outputs.keys``).
"""
from __future__ import annotations

import hashlib
import re

from .errors import UserError

#: the pattern of names the board's result validation accepts (results._NAME, config.NAME_RE); use
#: ``fullmatch`` (or :func:`is_safe`): with ``match``, ``$`` also matches before a trailing newline
SAFE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def is_safe(name: object) -> bool:
    """True for a name safe in a path, a JSON key and a shell word: the whole string matches ``SAFE_RE``."""
    return isinstance(name, str) and SAFE_RE.fullmatch(name) is not None and ".." not in name


def safe_id(name: str) -> str:
    """``name`` itself when it is already safe, else a readable safe form plus a short hash (stays unique)."""
    if is_safe(name):
        return name
    readable = _UNSAFE.sub("_", name).replace("..", "_").strip("._-") or "t"
    if not readable[0].isalnum():
        readable = "t" + readable
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{readable[:54]}-{digest}"


def head_keys(names: list[str], where: str = "outputs.names") -> dict[str, str]:
    """The safe key of every name; two names mapping to one key is an error naming both."""
    keys: dict[str, str] = {}
    seen: dict[str, str] = {}
    for n in names:
        k = safe_id(n)
        if k in seen and seen[k] != n:
            raise UserError(f"{where}: tensor names {seen[k]!r} and {n!r} both map to the safe id {k!r}",
                            hint="rename one of the outputs in the model")
        seen[k] = n
        keys[n] = k
    return keys


def shown(key: str, keys: dict[str, str]) -> str:
    """The original tensor name behind a safe key (for messages and reports)."""
    for original, k in keys.items():
        if k == key:
            return original
    return key
