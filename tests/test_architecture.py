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
BOARD_EXTRA = {"dmsbuild.board.runner.trt_runner": {"tensorrt", "cuda", "pycuda"},
               # the LiteRT interpreter (Coral boards: Debian's tflite-runtime) for .tflite and Edge TPU artifacts
               "dmsbuild.board.runner.litert_runner": {"ai_edge_litert", "tflite_runtime"}}


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
