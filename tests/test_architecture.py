"""The package's dependency rules, checked on the source with ``ast`` (nothing is imported).

1. No import circle between dmsbuild's modules: dependencies point one way,
   errors/config at the bottom, the doit tasks at the top (docs/architecture.md).
2. Board-side code (the release agent and the benchmark runners, copied into
   every release and run with the board's Python) imports only the standard
   library, numpy, onnxruntime (and onnxruntime_qnn, the same runtime's QNN
   build) and the board-side package itself.

What counts as an import: every ``import`` / ``from ... import`` statement in
the file, at module level *and* inside functions, and inside ``if
TYPE_CHECKING:`` blocks. A function-level import is a real dependency (it runs
whenever the function does; it only moves the cost off start-up), so a circle
through one is still a circle: neither module can be read, tested or moved
without the other. Type-checking imports count too, so annotations do not
hide a dependency that the code's meaning has. Not counted: names built at
run time for ``importlib`` (the backend registry ``backends.BACKENDS`` and
``bench.HOST_DRIVEN`` map names to modules on purpose, so that adding a
backend touches no other module), and source text shipped to the board.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = "dmsbuild"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
#: modules that run on the board (a prefix names a package and everything in it)
BOARD_SIDE = ("dmsbuild.board",)
#: third-party top-level modules board-side code may import
BOARD_ALLOWED = {"numpy", "onnxruntime", "onnxruntime_qnn"}
#: and per module, the board's vendor runtime it exists for (TensorRT's Python API and CUDA bindings on a Jetson)
BOARD_EXTRA = {"dmsbuild.board.runner.trt_runner": {"tensorrt", "cuda", "pycuda"}}


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str], root: Path = ROOT) -> list[tuple[str, int]]:
    """(imported name, line) for every import in ``path``; package-internal names resolved to a module of ``modules``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"  # `from . import fleet`: the module dmsbuild.fleet
                out.append((sub if sub in modules else mod, node.lineno))
    return out


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {internal module it imports: line of the first such import}."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    graph: dict[str, dict[str, int]] = {}
    for f in files:
        edges: dict[str, int] = {}
        for target, line in imports_of(f, modules, root):
            # `import dmsbuild.a.b` names dmsbuild.a.b; an unknown attribute of a module resolves to its longest known prefix
            while target and target not in modules and "." in target:
                target = target.rpartition(".")[0]
            me = module_name(f, root)
            if target in modules and target != me:
                edges.setdefault(target, line)
        graph[module_name(f, root)] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), as a sorted list of names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(comp: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(comp)
    edges = [f"{a} -> {b} (line {line})" for a in comp for b, line in sorted(graph[a].items()) if b in members]
    return "import circle: " + ", ".join(comp) + "\n    " + "\n    ".join(edges)


def board_violations(root: Path = ROOT) -> list[str]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    sides = BOARD_SIDE
    board = [f for f in files if any(module_name(f, root) == s or module_name(f, root).startswith(s + ".") for s in sides)]
    bad = []
    for f in board:
        me = module_name(f, root)
        own = next(s for s in sides if me == s or me.startswith(s + "."))
        for name, line in imports_of(f, modules, root):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in BOARD_ALLOWED | BOARD_EXTRA.get(me, set()) or top == "__future__":
                continue
            if name == own or name.startswith(own + "."):
                continue
            if f.parent.joinpath(f"{top}.py").is_file():  # run as a script on the board: a sibling file (`import metrics`)
                continue
            bad.append(f"{f.relative_to(root.parent)}:{line}: board-side code imports {name}")
    return bad


#: looks like a Python script: an import and more than one statement
def _looks_like_code(text: str) -> bool:
    return "import " in text and ("\n" in text or ";" in text)


def _literal_text(node: ast.AST) -> str | None:
    """The text of a string literal (constants, f-strings and ``+`` of them), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [_literal_text(node.left), _literal_text(node.right)]
        if any(p is not None for p in parts):
            return "".join(p or "" for p in parts)
    return None


def _host_files(root: Path) -> list[Path]:
    return [f for f in sorted(root.rglob("*.py")) if not module_name(f, root).startswith(BOARD_SIDE)]


def script_string_violations(root: Path = ROOT) -> list[str]:
    """Board scripts in host modules: ``"-c"`` followed by code in a string (rule 3)."""
    trees = {f: ast.parse(f.read_text(), str(f)) for f in _host_files(root)}
    # every name (module-level or in a function, with its default arguments) bound to a code-like string literal
    scripts: dict[str, dict[Path, str]] = {}
    for f, tree in trees.items():
        for node in ast.walk(tree):
            pairs: list[tuple[ast.AST, ast.AST]] = []
            if isinstance(node, ast.Assign):
                pairs = [(t, node.value) for t in node.targets]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                pairs = [(node.target, node.value)]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args
                pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
                pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            for target, value in pairs:
                name = target.id if isinstance(target, ast.Name) else target.arg if isinstance(target, ast.arg) else None
                text = _literal_text(value)
                if name and text is not None and _looks_like_code(text):
                    scripts.setdefault(name, {}).setdefault(f, f"{f.relative_to(root.parent)}:{value.lineno}")
    bad = []
    for f, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg and node.arg.endswith("script"):  # handed on (facts_script=)
                name = node.value.id if isinstance(node.value, ast.Name) else \
                    node.value.attr if isinstance(node.value, ast.Attribute) else None
                text = _literal_text(node.value)
                if (text is not None and _looks_like_code(text)) or name in scripts:
                    where = f"{f.relative_to(root.parent)}:{node.value.lineno}"
                    bad.append(f"{where}: {node.arg}= is a board script in a string literal")
            if not isinstance(node, (ast.List, ast.Tuple)):
                continue
            elts = node.elts
            first = elts[0] if elts else None
            if isinstance(first, ast.Attribute) and first.attr == "executable" and \
                    isinstance(first.value, ast.Name) and first.value.id == "sys":
                continue  # the host's own Python: not a board
            for i, e in enumerate(elts[:-1]):
                if not (isinstance(e, ast.Constant) and e.value == "-c"):
                    continue
                arg = elts[i + 1]
                text = _literal_text(arg)
                name = arg.id if isinstance(arg, ast.Name) else arg.attr if isinstance(arg, ast.Attribute) else None
                where = f"{f.relative_to(root.parent)}:{arg.lineno}"
                if text is not None and _looks_like_code(text):
                    bad.append(f"{where}: a board script in a string literal after '-c'")
                elif name in scripts:  # bound in this module, else in another one (``module.NAME``)
                    at = scripts[name].get(f) or next(iter(scripts[name].values()))
                    bad.append(f"{where}: '{name}' after '-c' is a script in a string literal ({at})")
    return sorted(bad, key=lambda line: (line.split(":")[0], int(line.split(":")[1])))


#: board scripts still in host strings, converted to files by another branch of issue 23 (item 5); each must still
#: be flagged (so this list cannot outlive them): empty it when that branch is merged
NOT_YET_FILES = ("dmsbuild/backends/snpe_board.py", "dmsbuild/backends/trt_board.py", "dmsbuild/ship/doctor.py",
                 "dmsbuild/ship/facts.py",
                 "dmsbuild/ship/release.py")  # hands ship/facts.FACTS_SCRIPT to the agent (facts_script=)


def test_board_scripts_are_files_not_strings() -> None:
    found = script_string_violations()
    flagged = {line.split(":")[0] for line in found}
    assert set(NOT_YET_FILES) <= flagged, f"no longer flagged, remove from NOT_YET_FILES: {set(NOT_YET_FILES) - flagged}"
    rest = [line for line in found if line.split(":")[0] not in NOT_YET_FILES]
    assert not rest, "board code in a host string; make it a file under dmsbuild/board/ and send " \
                     "dmsbuild.board.source(name):\n" + "\n".join(rest)


def test_no_import_circle() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    found = cycles(graph)
    assert not found, "\n".join(describe(c, graph) for c in found)


def test_board_side_code_is_self_contained() -> None:
    board = [f for f in ROOT.rglob("*.py") if module_name(f).startswith(BOARD_SIDE)]
    assert {"dmsbuild.board.release_agent", "dmsbuild.board.runner.dms_bench"} <= {module_name(f) for f in board}
    assert not board_violations()


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / PACKAGE


@pytest.mark.parametrize("files, circle", [
    # a function-level import closes the circle as surely as a module-level one
    ({"dmsbuild/__init__.py": "", "dmsbuild/config.py": "def f():\n    from .fleet import x\n",
      "dmsbuild/fleet.py": "from .config import y\n"}, ["dmsbuild.config", "dmsbuild.fleet"]),
    # three modules, absolute and `from . import` spellings
    ({"dmsbuild/__init__.py": "", "dmsbuild/a.py": "import dmsbuild.b\n", "dmsbuild/b.py": "from . import c\n",
      "dmsbuild/c.py": "from dmsbuild.a import thing\n"}, ["dmsbuild.a", "dmsbuild.b", "dmsbuild.c"]),
    # through a sub-package, with `..`
    ({"dmsbuild/__init__.py": "", "dmsbuild/ship/__init__.py": "", "dmsbuild/ship/fleet.py": "from ..progress import P\n",
      "dmsbuild/progress.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .ship.fleet import S\n"},
     ["dmsbuild.progress", "dmsbuild.ship.fleet"]),
])
def test_a_circle_is_found(tmp_path: Path, files: dict[str, str], circle: list[str]) -> None:
    graph = import_graph(_write(tmp_path, files))
    assert cycles(graph) == [circle]


def test_one_way_imports_are_not_a_circle(tmp_path: Path) -> None:
    root = _write(tmp_path, {"dmsbuild/__init__.py": "", "dmsbuild/errors.py": "", "dmsbuild/config.py": "from .errors import E\n",
                             "dmsbuild/fleet.py": "from .config import C\nfrom . import errors\n"})
    assert cycles(import_graph(root)) == []


def test_board_side_import_of_host_code_is_found(tmp_path: Path) -> None:
    root = _write(tmp_path, {"dmsbuild/__init__.py": "", "dmsbuild/config.py": "",
                             "dmsbuild/board/__init__.py": "", "dmsbuild/board/metrics.py": "import numpy\n",
                             "dmsbuild/board/agent.py": "import json, os\nimport onnxruntime\nfrom . import metrics\n"
                                                        "def f():\n    import paramiko\n    from ..config import X\n"})
    assert board_violations(root) == ["dmsbuild/board/agent.py:5: board-side code imports paramiko",
                                      "dmsbuild/board/agent.py:6: board-side code imports dmsbuild.config"]


def test_a_board_script_in_a_host_string_is_found(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "dmsbuild/__init__.py": "",
        "dmsbuild/board/__init__.py": "",
        "dmsbuild/board/probe.py": "import os\nprint(os.getcwd())\n",  # board code may be anything
        "dmsbuild/ship/a.py": (
            "import sys\n"
            "SCRIPT = r\"\"\"\nimport os\nprint(os.uname())\n\"\"\"\n"
            "ONE: str = 'import os; print(1)'\n"
            "SOURCE = open('dmsbuild/board/probe.py').read()\n"
            "def f(t, board, python, script=SCRIPT):\n"
            "    t.run([board.python, '-c', 'import os, sys; print(os.path.expanduser(sys.argv[1]))', '~'])\n"
            "    t.run([python, '-c', SCRIPT, 'x'])\n"
            "    t.run((python, '-c', f'import json\\nprint({1})'))\n"
            "    t.run([python, '-c', SOURCE])\n"  # a file's source: fine
            "    t.run([sys.executable, '-c', script])\n"  # the host's own Python: fine
            "    t.run(['sh', '-c', 'exec ' + board.proxy])\n"  # a shell command, no Python: fine
        ),
        "dmsbuild/ship/b.py": "from . import a\ndef g(t, p):\n    t.run([p, '-c', a.ONE])\n    t.lock(facts_script=a.SCRIPT)\n",
    })
    assert script_string_violations(root) == [
        "dmsbuild/ship/a.py:9: a board script in a string literal after '-c'",
        "dmsbuild/ship/a.py:10: 'SCRIPT' after '-c' is a script in a string literal (dmsbuild/ship/a.py:2)",
        "dmsbuild/ship/a.py:11: a board script in a string literal after '-c'",
        "dmsbuild/ship/b.py:3: 'ONE' after '-c' is a script in a string literal (dmsbuild/ship/a.py:6)",
        "dmsbuild/ship/b.py:4: facts_script= is a board script in a string literal",
    ]
