#!/usr/bin/env python3
"""Rewrite files' imports and paths after dmsbuild's modules moved (scripts/moved_modules.txt).

For merging branches written against the old flat layout: run it over their
new or changed files and every reference follows the move.

    .venv/bin/python scripts/rewrite_imports.py FILE...            # rewrite in place
    .venv/bin/python scripts/rewrite_imports.py --check FILE...    # list what would change, exit 1 if anything

What is rewritten, by the mapping's "old.module new.module" lines:
* absolute dotted names anywhere in the text: ``import dmsbuild.release``,
  ``from dmsbuild.fleet import x``, ``python -m dmsbuild.boards``,
  ``"dmsbuild.backends.trt_board:bench_artifacts"``, ``mock.patch("dmsbuild.x.y")``;
* file paths: ``dmsbuild/release.py``, ``dmsbuild/runner/`` (docs, scripts/mutation.py, pyproject), and
  the short forms relative to ``dmsbuild/`` (``measure/results.py``, ``ship/transport/``; of a one-word
  package only ``build/qat.py``, a module below it, never a bare ``build/``);
* ``from dmsbuild import a, b`` naming moved modules: split into one line
  per new package (``from dmsbuild.ship import fleet``);
* relative imports in files under ``dmsbuild/``: resolved against the module's
  old name (where the file was before the move, if it moved), mapped, and
  written relative to its new place (``from .quantize import x`` in
  ``dmsbuild/tune.py`` becomes ``from .build.quantize import x``); a
  ``from . import a, b`` is split the same way.

Standard library only, text in and text out (formatting and comments kept).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAPPING = Path(__file__).with_name("moved_modules.txt")
PACKAGE = "dmsbuild"


def load_mapping(path: Path = MAPPING) -> dict[str, str]:
    """old module -> new module, from "old new" lines (# comments and blank lines ignored)."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not all(p.startswith(PACKAGE) for p in parts):
            raise SystemExit(f"{path}:{n}: expected 'old.module new.module', got {line!r}")
        out[parts[0]] = parts[1]
    return out


def map_module(name: str, mapping: dict[str, str]) -> str:
    """The new name of module ``name`` (or of an attribute path below it); unchanged when it did not move."""
    best = max((old for old in mapping if name == old or name.startswith(old + ".")), key=len, default=None)
    return name if best is None else mapping[best] + name[len(best):]


def _dotted(text: str, mapping: dict[str, str]) -> str:
    olds = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(o) for o in olds) + r")(?![\w])")
    return pattern.sub(lambda m: mapping[m.group(1)], text)


def _paths(text: str, mapping: dict[str, str], tree: set[str] | None = None) -> str:
    pairs = []
    for old, new in mapping.items():
        o, n = old.replace(".", "/"), new.replace(".", "/")
        pairs += [(o + ".py", n + ".py"), (o + "/", n + "/")]
        # the short forms docs and comments use, relative to dmsbuild/ (`measure/results.py`, `ship/transport/`);
        # a one-word package only with a module after it (`build/qat.py`, not a bare `build/`, which is also output)
        so, sn = o.partition("/")[2], n.partition("/")[2]
        if "/" in so:
            pairs += [(so + ".py", sn + ".py"), (so + "/", sn + "/")]
        elif so:
            subs = {m[len(new) + 1:].split(".")[0] for m in tree or set() if m.startswith(new + ".")}
            pairs += [(f"{so}/{s}{end}", f"{sn}/{s}{end}") for s in subs for end in (".py", "/")]
    pairs.sort(key=lambda p: len(p[0]), reverse=True)
    pattern = re.compile(r"(?<![\w/.])(" + "|".join(re.escape(o) for o, _ in pairs) + r")")
    table = dict(pairs)
    return pattern.sub(lambda m: table[m.group(1)], text)


def _relative(target: str, package: str) -> str:
    """``target`` (absolute) written relative to ``package`` (the importing module's package)."""
    here, there = package.split("."), target.split(".")
    common = 0
    while common < min(len(here), len(there)) and here[common] == there[common]:
        common += 1
    dots = "." * (len(here) - common + 1)
    return dots + ".".join(there[common:])


_FROM_RE = re.compile(r"^(?P<indent>[ \t]*)from[ \t]+(?P<dots>\.*)(?P<mod>[\w.]*)[ \t]+import[ \t]+(?P<names>.+)$")


def _resolve(package: str, dots: str, mod: str) -> str | None:
    """The absolute module a relative ``from <dots><mod>`` in ``package`` names; None if it climbs out of it."""
    base = package.split(".")
    up = len(dots) - 1
    if up >= len(base):
        return None
    return ".".join(base[: len(base) - up] + ([mod] if mod else []))


def _from_imports(text: str, old_module: str | None, new_module: str | None, is_package: bool,
                  mapping: dict[str, str], modules: set[str], tree: set[str] | None = None) -> str:
    """``from X import a, b`` lines: X mapped, and each of a, b that is a moved module sent to its new package.

    Relative forms (only when the file's module is known) are resolved against ``old_module`` and written
    relative to ``new_module``; absolute forms stay absolute. In a file that moved, a relative import that
    names no module of the old layout but one of ``tree`` (the new layout's modules) from the new place is
    already rewritten and kept, so running the script twice changes nothing. Lines whose target did not
    move are kept as they are."""
    tree = tree or set()
    moved_file = old_module != new_module

    def old_exists(name: str) -> bool:
        if any(name == k or name.startswith(k + ".") for k in mapping):
            return True
        return name in tree and not any(name == v or name.startswith(v + ".") for v in mapping.values())

    old_pkg = new_pkg = ""
    if old_module is not None and new_module is not None:
        old_pkg = old_module if is_package else old_module.rpartition(".")[0]
        new_pkg = new_module if is_package else new_module.rpartition(".")[0]
    out = []
    for line in text.splitlines(keepends=True):
        m = _FROM_RE.match(line.rstrip("\n"))
        relative = bool(m and m["dots"])
        code = m["names"].split("#", 1)[0] if m else ""
        if not m or (relative and not old_pkg) or (not relative and not (m["mod"] == PACKAGE or m["mod"].startswith(PACKAGE + "."))):
            out.append(line)  # not ours
            continue
        if relative:
            absolute = _resolve(old_pkg, m["dots"], m["mod"])
            # `from . import x` names the module x when there is one
            first = "" if m["mod"] else "." + code.strip("() \t").split(",")[0].split(" as ")[0].strip()
            now = _resolve(new_pkg, m["dots"], m["mod"])
            if moved_file and (absolute is None or not old_exists(absolute + first)) and now is not None and now + first in tree:
                out.append(line)  # already written for the new place
                continue
            if absolute is None:
                out.append(line)
                continue
        else:
            absolute = m["mod"]

        def spell(target: str) -> str:
            return _relative(target, new_pkg) if relative else target

        if "(" in code and ")" not in code:  # names over several lines: only the base moves (keep `from . import (` simple)
            out.append(f"{m['indent']}from {spell(map_module(absolute, mapping))} import {m['names']}" + ("\n" if line.endswith("\n") else ""))
            continue

        names, comment = m["names"], ""
        if "#" in names:
            names, comment = names.split("#", 1)
            comment = "  #" + comment
        names = names.strip()
        end = "\n" if line.endswith("\n") else ""
        groups: dict[str, list[str]] = {}
        for item in (n.strip() for n in names.strip("()").split(",") if n.strip()):
            name = item.split(" as ")[0].strip()
            full = f"{absolute}.{name}"
            if full in mapping or full in modules:  # a module named in the import list
                new = map_module(full, mapping)
                parent, _, leaf = new.rpartition(".")
                groups.setdefault(parent, []).append(leaf + item[len(name):])
            else:
                groups.setdefault(map_module(absolute, mapping), []).append(item)
        if len(groups) == 1 and spell(next(iter(groups))) == m["dots"] + m["mod"]:
            out.append(line)  # nothing in it moved
            continue
        lines = [f"{m['indent']}from {spell(parent)} import {', '.join(items)}" for parent, items in groups.items()]
        out.append("\n".join(lines) + comment + end)
    return "".join(out)


def module_of(path: Path, root: Path = REPO) -> tuple[str, bool] | None:
    """(module name, is a package __init__) for a file under dmsbuild/, else None."""
    try:
        rel = path.resolve().relative_to(root)
    except ValueError:
        return None
    if not rel.parts or rel.parts[0] != PACKAGE or rel.suffix != ".py":
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def rewrite(text: str, path: Path, mapping: dict[str, str], root: Path = REPO) -> str:
    """``text`` (the content of ``path``, at its place in the new layout) with every reference moved."""
    modules = set(mapping) | set(mapping.values())
    old_module = new_module = None
    is_package = False
    where = module_of(path, root)
    if where is not None:
        new_module, is_package = where
        inverse = {v: k for k, v in mapping.items()}
        old_module = next((old + new_module[len(new):] for new, old in sorted(inverse.items(), key=lambda kv: -len(kv[0]))
                           if new_module == new or new_module.startswith(new + ".")), new_module)
    tree = {module_of(f, root)[0] for f in (root / PACKAGE).rglob("*.py")} if (root / PACKAGE).is_dir() else set()
    text = _from_imports(text, old_module, new_module, is_package, mapping, modules, tree)
    return _paths(_dotted(text, mapping), mapping, tree)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="only list the files that would change")
    ap.add_argument("--mapping", type=Path, default=MAPPING)
    ap.add_argument("--root", type=Path, default=REPO, help="the repository the files belong to")
    args = ap.parse_args(argv)
    mapping = load_mapping(args.mapping)
    changed = []
    for f in args.files:
        old = f.read_text()
        new = rewrite(old, f, mapping, args.root.resolve())
        if new != old:
            changed.append(f)
            if not args.check:
                f.write_text(new)
    for f in changed:
        print(f"{'would rewrite' if args.check else 'rewrote'} {f}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
