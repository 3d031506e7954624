"""Write docs/configuration.md from the configuration dataclasses, so the reference cannot drift from the code.

    .venv/bin/python scripts/gen_config_reference.py            # (re)write docs/configuration.md
    .venv/bin/python scripts/gen_config_reference.py --check    # exit 1 if it is stale or a field is undocumented

Every field's description is the ``#:`` comment block right above it in the class body (the Sphinx
autodoc convention), its type and default come from the dataclass itself. Covered: the project file
(``dmsbuild.toml``), target profiles (``targets/<name>.toml``, with each backend's ``[backend]`` table)
and inventories. Imports only the standard library and dmsbuild's config-level modules (no torch,
onnxruntime or paramiko). tests/test_docs.py fails when a field has no description or the committed
file differs from what this prints.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import json
import sys
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's dmsbuild, not an installed one
OUT = ROOT / "docs" / "configuration.md"
COMMAND = ".venv/bin/python scripts/gen_config_reference.py"

#: (title, intro, "module:Class") of each file kind; module paths are the only place this script names modules
FILES: list[tuple[str, str, str]] = [
    ("Project file: `dmsbuild.toml`",
     "One per project, at its root. `doit init` writes one from a model's signature ([byom.md](byom.md)).",
     "dmsbuild.config:ProjectConfig"),
    ("Target profiles: `targets/<name>.toml`",
     "One per kind of board. `[backend]` depends on `runtime`; its tables are listed after the common ones.",
     "dmsbuild.config:TargetProfile"),
    ("Inventory: `targets/inventory.toml` (or the file `deploy.inventory` names)",
     "The boards ([boards.md](boards.md)). Ansible INI/YAML inventories map onto the same board fields "
     "([fleet.md](fleet.md#importing-an-ansible-inventory)).",
     "dmsbuild.ship.inventory:InventoryFile"),
]

#: tables typed loosely in the loader (``dict[str, Any]``, ``list[dict]``) and validated elsewhere:
#: (owner "module:Class", field) -> [(label, "module:Class")]; a bare "module" (no class) is a backend
#: without an options class, whose docstring's "- " lines describe its options
LOOSE: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("dmsbuild.config:TargetProfile", "backend"): [
        ('runtime = "onnxruntime"', "dmsbuild.backends.onnxruntime"),
        ('runtime = "qnn"', "dmsbuild.backends.qnn:QnnOptions"),
        ('runtime = "tensorrt"', "dmsbuild.backends.tensorrt:TensorRTOptions"),
    ],
    ("dmsbuild.ship.inventory:InventoryFile", "boards"): [("", "dmsbuild.ship.inventory:Board")],
}

#: classes whose fields take their descriptions from another class's fields of the same name
DESCRIBED_BY: dict[str, str] = {"dmsbuild.ship.inventory:BoardDefaults": "dmsbuild.ship.inventory:Board"}


def load(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def ref_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment block above each field of a dataclass body, joined into one line."""
    lines, _ = inspect.getsourcelines(cls)
    source = textwrap.dedent("".join(lines))
    body = ast.parse(source).body[0]
    text = source.splitlines()
    out: dict[str, str] = {}
    for node in body.body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            block: list[str] = []
            i = node.lineno - 2
            while i >= 0 and text[i].strip().startswith("#:"):
                block.insert(0, text[i].strip()[2:].strip())
                i -= 1
            if block:
                out[node.target.id] = " ".join(block)
    return out


def _type_name(tp: Any) -> str:
    from dmsbuild.config import _type_name as config_type_name  # the loader's own wording in its errors

    return config_type_name(tp)


def _toml(value: Any) -> str:
    """A default as TOML would spell it, in backticks; ``unset`` for None."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (int, float, str, list, dict)):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value}`"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return _toml(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return _toml(f.default_factory())  # type: ignore[misc]
    return "required"


@dataclass
class Row:
    path: str
    type: str
    default: str
    description: str | None
    where: str  # "module:Class.field", for the missing-description message


@dataclass
class Section:
    heading: str
    rows: list[Row]
    note: str = ""
    text: list[str] = dataclasses.field(default_factory=list)  # free-form options (no class)


def _dataclass_of(tp: Any) -> tuple[type | None, str]:
    """(dataclass, how it nests) for a field type: a table, an optional table, or a table of tables."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return tp, "table"
    if args and origin is not dict and origin not in (list, tuple):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0], "optional"
    if origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1], "map"
    return None, ""


def walk(cls: type, prefix: str, heading: str, sections: list[Section], note: str = "") -> None:
    """Append one section for ``cls`` (its scalar fields) and recurse into its tables."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    described_by = DESCRIBED_BY.get(ref_of(cls))
    if described_by:
        comments = {**field_comments(load(described_by)), **comments}
    section = Section(heading, [], note)
    sections.append(section)
    nested: list[tuple[type | str, str, str, str]] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue  # set by the loader, not by the user
        path = f"{prefix}{f.name}"
        inner, how = _dataclass_of(hints[f.name])
        desc = comments.get(f.name)
        where = f"{ref_of(cls)}.{f.name}"
        if inner is not None:
            sub = {"table": (path, f"`[{path}]`"), "optional": (path, f"`[{path}]`"),
                   "map": (f"{path}.<name>", f"`[{path}.<name>]`")}[how]
            section.rows.append(Row(f"`{path}`", "table" + (" (optional)" if how == "optional" else "")
                                    + (" of tables" if how == "map" else ""),
                                    "unset" if how == "optional" else ("`{}`" if how == "map" else "–"),
                                    desc, where))
            nested.append((inner, sub[0] + ".", sub[1], desc or ""))
            continue
        loose = LOOSE.get((ref_of(cls), f.name))
        section.rows.append(Row(f"`{path}`", _type_name(hints[f.name]), _default(f), desc, where))
        for label, ref in loose or []:
            target: type | str = load(ref) if ":" in ref else ref
            if typing.get_origin(hints[f.name]) is list:
                nested.append((target, f"{path}[].", f"`[[{path}]]`", desc or ""))
            else:
                nested.append((target, f"{path}.", f"`[{path}]` when {label}", f"{desc}; used when {label}"))
    for inner, sub_prefix, sub_heading, sub_note in nested:
        if isinstance(inner, str):  # a module whose docstring lists its options
            doc = inspect.getdoc(importlib.import_module(inner)) or ""
            sections.append(Section(sub_heading, [], sub_note, [ln for ln in doc.splitlines() if ln.startswith("- ")]))
        else:
            walk(inner, sub_prefix, sub_heading, sections, sub_note)


def sections_of(root: type) -> list[Section]:
    sections: list[Section] = []
    walk(root, "", "Top level", sections)
    return sections


def all_sections() -> list[tuple[str, str, list[Section]]]:
    return [(title, intro, sections_of(load(ref))) for title, intro, ref in FILES]


def missing_descriptions(sections: list[Section] | None = None) -> list[str]:
    """Fields without a ``#:`` description, as ``module:Class.field``."""
    if sections is None:
        sections = [s for _, _, secs in all_sections() for s in secs]
    return sorted({r.where for s in sections for r in s.rows if not r.description})


def _cell(text: str) -> str:
    """A Markdown table cell: reST double backticks become Markdown code, pipes are escaped."""
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ")


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        f"Generated from the configuration classes by `{COMMAND}`; do not edit by hand "
        "(tests/test_docs.py fails when this file is stale or a field has no description). "
        "Every file is validated strictly when it is read: an unknown field, a wrong type or a value outside the "
        "allowed set stops with one line naming the file and the field. Relative paths are relative to the project "
        "root (the folder holding `dmsbuild.toml`). Types: `table` is a TOML table, `'a' \\| 'b'` the allowed "
        "values, `unset` a field with no value (the description says what applies then).",
        "",
    ]
    for title, intro, sections in all_sections():
        out += [f"## {title}", "", intro, ""]
        for s in sections:
            out += [f"### {s.heading}", ""]
            if s.note:
                note = _cell(s.note)
                out += [note[0].upper() + note[1:] + ("" if note.endswith(".") else "."), ""]
            if s.text:
                out += [_cell(line) for line in s.text] + [""]
                continue
            out += ["| field | type | default | description |", "|---|---|---|---|"]
            for r in s.rows:
                out.append(f"| {_cell(r.path)} | {_cell(r.type)} | {_cell(r.default)} | "
                           f"{_cell(r.description or 'UNDOCUMENTED')} |")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the file is stale or a field undocumented")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    missing = missing_descriptions()
    if missing:
        print("fields without a '#:' description (add one above the field):\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is stale; regenerate it with: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
