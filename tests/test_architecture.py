"""The package's dependency rules, checked on the source with ``ast`` (nothing is imported).

1. No import circle between dmsbuild's modules: dependencies point one way,
   errors/config at the bottom, the doit tasks at the top (docs/architecture.md).
2. Packages stack: every package (a folder under dmsbuild/, or a top-level
   module) has a layer in ``LAYERS``, the one written-down order (docs/architecture.md
   "Layers" mirrors it, and a test holds the two equal); a package imports only from
   its own layer or below, and no two packages import each other, directly or round
   a circle, even through modules that form no module-level circle.
3. Board-side code (the release agent and the benchmark runners, copied into
   every release and run with the board's Python, and the probes the host
   sends as ``python3 -c <file's source>``) imports only the standard
   library, numpy, onnxruntime (and onnxruntime_qnn, the same runtime's QNN
   build) and the board-side package itself; and no host module holds a board
   script as a string sent with ``-c`` (board code is a file, so this rule sees it).
4. A runtime's name (a key of the registry, ``dmsbuild/core/runtimes.py``) is
   branched on only in that runtime's own modules (``RUNTIME_HOMES``): no
   comparison with it, no ``case`` of it, no hand-written list of runtimes,
   no table keyed by runtimes elsewhere. Everything else asks the registry or
   the runtime's ``Backend`` (docs/architecture.md, "Backends").

What counts as an import: every ``import`` / ``from ... import`` statement in
the file, at module level *and* inside functions, and inside ``if
TYPE_CHECKING:`` blocks. A function-level import is a real dependency (it runs
whenever the function does; it only moves the cost off start-up), so a circle
through one is still a circle: neither module can be read, tested or moved
without the other. Type-checking imports count too, so annotations do not
hide a dependency that the code's meaning has. Not counted: names built at
run time for ``importlib`` (the runtime registry and a backend's
``board_driver`` name modules on purpose, so that adding a backend touches no
other module), and source text shipped to the board.
"""
from __future__ import annotations

import ast
import re
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
               "dmsbuild.board.probe_tensorrt": {"tensorrt"},
               # the LiteRT interpreter (Coral boards: Debian's tflite-runtime) for .tflite and Edge TPU artifacts
               "dmsbuild.board.runner.litert_runner": {"ai_edge_litert", "tflite_runtime"}}

#: The layers, bottom to top: a package imports only from its own layer or one below. A package is a folder
#: under dmsbuild/ or a top-level module ("dmsbuild" is the package's own __init__). The one place this order
#: is written; docs/architecture.md "Layers" mirrors it (test_the_docs_list_the_same_layers).
LAYERS: list[tuple[str, ...]] = [
    ("board", "doubles"),  # runs on the board / stands in for a board's vendor tools: imports nothing of the host
    ("dmsbuild", "errors", "untrusted", "names"),
    ("core",),  # shared vocabulary: rollout spec, results schema and store, accuracy judge, provenance labels
    ("config",),
    ("transport",),
    ("model",),
    ("convert",),
    ("backends",),
    ("ship",),
    ("measure",),
    ("pipeline",),  # orchestration that crosses stages: deploy with its gate, tune (absent until that branch lands)
    ("tasks", "taskcache", "cli", "boards", "__main__", "defaults"),  # the top: doit tasks (and their cached list), the command line, dodo.py's
]



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


def test_board_scripts_are_files_not_strings() -> None:
    found = script_string_violations()
    assert not found, "board code in a host string; make it a file under dmsbuild/board/ and send " \
                     "dmsbuild.board.source(name):\n" + "\n".join(found)


def package_of(module: str) -> str:
    """The package a module belongs to: the folder under dmsbuild/, or the top-level module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, dict[str, int]], skip: set[tuple[str, str]] = frozenset()
                  ) -> dict[str, dict[str, list[str]]]:
    """package -> {package it imports: ["module -> module (line N)", ...]}, from the module graph less ``skip``."""
    out: dict[str, dict[str, list[str]]] = {package_of(m): {} for m in graph}
    for a, edges in sorted(graph.items()):
        for b, line in sorted(edges.items()):
            pa, pb = package_of(a), package_of(b)
            if pa != pb and (a, b) not in skip:
                out[pa].setdefault(pb, []).append(f"{a} -> {b} (line {line})")
    return out


def package_cycles(graph: dict[str, dict[str, int]], skip: set[tuple[str, str]] = frozenset()) -> list[str]:
    """Every circle of packages, each with the module imports that close it."""
    packages = package_graph(graph, skip)
    found = []
    for comp in cycles({p: dict.fromkeys(e, 0) for p, e in packages.items()}):
        members = set(comp)
        edges = [w for p in comp for q, why in sorted(packages[p].items()) if q in members for w in why]
        found.append("package circle: " + ", ".join(comp) + "\n    " + "\n    ".join(edges))
    return found


def layer_violations(graph: dict[str, dict[str, int]], layers: list[tuple[str, ...]] = LAYERS,
                     skip: set[tuple[str, str]] = frozenset()) -> list[str]:
    """An import of a package from a higher layer, and a package that has no layer."""
    layer = {p: n for n, names in enumerate(layers) for p in names}
    bad = [f"package {p} has no layer: add it to LAYERS in tests/test_architecture.py and to docs/architecture.md"
           for p in sorted({package_of(m) for m in graph}) if p not in layer]
    for a, edges in sorted(graph.items()):
        for b, line in sorted(edges.items()):
            pa, pb = package_of(a), package_of(b)
            if pa in layer and pb in layer and layer[pb] > layer[pa] and (a, b) not in skip:
                bad.append(f"{a} (layer {layer[pa] + 1}, {pa}) imports {b} (layer {layer[pb] + 1}, {pb}) at line {line}: "
                           "move the shared piece down, or the caller up")
    return bad


def test_no_import_circle() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    found = cycles(graph)
    assert not found, "\n".join(describe(c, graph) for c in found)


def test_no_package_circle() -> None:
    found = package_cycles(import_graph())
    assert not found, "\n".join(found)


def test_packages_import_only_their_layer_or_below() -> None:
    graph = import_graph()
    assert {"core", "transport", "convert", "ship", "measure", "tasks"} <= {package_of(m) for m in graph}
    bad = layer_violations(graph)
    assert not bad, "\n".join(bad)


def test_the_docs_list_the_same_layers() -> None:
    """docs/architecture.md's layer table: `| N | `pkg/`, `mod.py` | ... |` rows, in LAYERS' order."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| *(\d+) *\| *([^|]+)\|", text, re.MULTILINE)
    documented = [tuple(n.strip("/").removesuffix(".py") for n in re.findall(r"`([^`]+)`", names)) for _, names in rows]
    assert [int(n) for n, _ in rows] == list(range(1, len(rows) + 1))
    assert documented == LAYERS


def test_board_side_code_is_self_contained() -> None:
    board = [f for f in ROOT.rglob("*.py") if module_name(f).startswith(BOARD_SIDE)]
    assert {"dmsbuild.board.release_agent", "dmsbuild.board.runner.dms_bench", "dmsbuild.board.runner.probe",
            "dmsbuild.board.probe_tensorrt", "dmsbuild.board.probe_snpe"} <= {module_name(f) for f in board}
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


# --------------------------------------------------------------------------
# rule 3: runtime names are branched on only in their own modules
# --------------------------------------------------------------------------
def runtime_names() -> set[str]:
    from dmsbuild.core.runtimes import RUNTIMES

    return set(RUNTIMES)


#: module -> the runtime names it may branch on (besides each registered backend module's own name): the
#: registry itself, the board drivers (host side and board side) and the board facts probe, whose JSON keys
#: name installed software (CONTRACTS §4) that each backend's board checks read
RUNTIME_HOMES: dict[str, set[str] | None] = {  # None: every runtime
    "dmsbuild.core.runtimes": None,
    "dmsbuild.backends.trt_board": {"tensorrt"},
    "dmsbuild.backends.snpe_board": {"snpe"},
    "dmsbuild.board.probe_tensorrt": {"tensorrt"},
    "dmsbuild.board.probe_snpe": {"snpe"},
    "dmsbuild.board.runner.trt_runner": {"tensorrt"},
    "dmsbuild.board.runner.litert_runner": {"litert", "edgetpu"},
    "dmsbuild.board.runner.probe": None,
}


def _runtime_literal(node: ast.AST, names: set[str]) -> list[str]:
    """The runtime names a node spells: a string constant, or a literal tuple/list/set made only of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
            isinstance(e, ast.Constant) and e.value in names for e in node.elts):
        return [str(e.value) for e in node.elts]  # type: ignore[attr-defined]
    return []


def default_homes() -> dict[str, set[str] | None]:
    """RUNTIME_HOMES plus every registered backend module with its own name."""
    from dmsbuild.core.runtimes import RUNTIMES

    return {**{line.module: {name} for name, line in RUNTIMES.items()}, **RUNTIME_HOMES}


def runtime_branches(root: Path = ROOT, names: set[str] | None = None,
                     homes: dict[str, set[str] | None] | None = None) -> list[str]:
    """``file:line: what`` for every place that branches on a runtime name outside that runtime's modules."""
    names = runtime_names() if names is None else names
    homes = default_homes() if homes is None else homes
    bad = set()
    for f in sorted(root.rglob("*.py")):
        allowed = homes.get(module_name(f, root), set())
        if allowed is None:
            continue
        found: list[tuple[int, str, list[str]]] = []
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    lit = _runtime_literal(side, names)
                    if lit:
                        found.append((node.lineno, f"compares with {', '.join(lit)!r}", lit))
            elif isinstance(node, ast.MatchValue):
                lit = _runtime_literal(node.value, names)
                if lit:
                    found.append((node.lineno, f"case {', '.join(lit)!r}", lit))
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and _runtime_literal(node, names):
                lit = _runtime_literal(node, names)
                found.append((node.lineno, f"lists runtimes ({', '.join(lit)})", lit))
            elif isinstance(node, ast.Dict):
                keys = [str(k.value) for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
                if len(keys) >= 2:
                    found.append((node.lineno, f"a table keyed by runtimes ({', '.join(keys)})", keys))
        bad.update(f"{f.relative_to(root.parent)}:{line}: {what}" for line, what, lit in found
                   if set(lit) - allowed)  # a module's own runtime name is its own business
    return sorted(bad)


def test_no_runtime_name_is_branched_on_outside_its_module() -> None:
    found = runtime_branches()
    assert not found, "runtime names branched on outside their backend (ask the registry or the Backend):\n" + \
        "\n".join(found)


def test_a_runtime_name_branch_is_found(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "dmsbuild/__init__.py": "",
        "dmsbuild/doctor.py": "def f(p, facts):\n    if p.runtime == 'tensorrt':\n        return 1\n"
                              "    if p.runtime in ('onnxruntime', 'qnn'):\n        return 2\n"
                              "    match p.runtime:\n        case 'qnn':\n            return 3\n"
                              "    return facts.get('onnxruntime')\n",  # reading a fact is no branch
        "dmsbuild/bench.py": "DRIVEN = {'tensorrt': 'a:b', 'snpe': 'c:d'}\nORT = ('onnxruntime',)\n"
                             "TOOLS = ('python3', 'onnxruntime')\n",  # a mixed list names components, not runtimes
        "dmsbuild/backends/__init__.py": "",
        "dmsbuild/backends/tensorrt.py": "def g(r):\n    return r == 'tensorrt' or r == 'qnn'\n",
        "dmsbuild/backends/qnn.py": "def h(r):\n    return r == 'qnn'\n",  # its own name: fine (below)
    })
    names = {"onnxruntime", "tensorrt", "qnn", "snpe"}
    # no homes: every branch counts
    assert runtime_branches(root, names, homes={}) == ["dmsbuild/backends/qnn.py:2: compares with 'qnn'",
                   "dmsbuild/backends/tensorrt.py:2: compares with 'qnn'",
                   "dmsbuild/backends/tensorrt.py:2: compares with 'tensorrt'",
                   "dmsbuild/bench.py:1: a table keyed by runtimes (tensorrt, snpe)",
                   "dmsbuild/bench.py:2: lists runtimes (onnxruntime)",
                   "dmsbuild/doctor.py:2: compares with 'tensorrt'",
                   "dmsbuild/doctor.py:4: compares with 'onnxruntime, qnn'",
                   "dmsbuild/doctor.py:4: lists runtimes (onnxruntime, qnn)",
                   "dmsbuild/doctor.py:7: case 'qnn'"]
    # each backend module at home with its own name; bench.py allowed everything (as the registry is)
    homes = {"dmsbuild.backends.tensorrt": {"tensorrt"}, "dmsbuild.backends.qnn": {"qnn"}, "dmsbuild.bench": None}
    assert runtime_branches(root, names, homes=homes) == [
        "dmsbuild/backends/tensorrt.py:2: compares with 'qnn'",  # another runtime's name in a backend: still found
        "dmsbuild/doctor.py:2: compares with 'tensorrt'",
        "dmsbuild/doctor.py:4: compares with 'onnxruntime, qnn'",
        "dmsbuild/doctor.py:4: lists runtimes (onnxruntime, qnn)",
        "dmsbuild/doctor.py:7: case 'qnn'"]


# the package rules on synthetic trees: each module import is one way, yet the packages go round
_PACKAGES = {"dmsbuild/__init__.py": "", "dmsbuild/errors.py": "",
             "dmsbuild/core/__init__.py": "", "dmsbuild/core/results.py": "from ..errors import E\n",
             "dmsbuild/ship/__init__.py": "", "dmsbuild/ship/fleet.py": "from ..core.results import R\n",
             "dmsbuild/measure/__init__.py": "", "dmsbuild/measure/gates.py": "from ..core import results\n",
             "dmsbuild/measure/bench.py": "from ..ship.fleet import F\n"}


def test_a_package_circle_is_found_where_no_module_circle_is(tmp_path: Path) -> None:
    # ship.deploy -> measure.gates, measure.bench -> ship.fleet: no module circle, but ship and measure lean on each other
    root = _write(tmp_path, {**_PACKAGES, "dmsbuild/ship/deploy.py": "def f():\n    from ..measure.gates import G\n"})
    graph = import_graph(root)
    assert cycles(graph) == []
    assert package_cycles(graph) == ["package circle: measure, ship\n"
                                     "    dmsbuild.measure.bench -> dmsbuild.ship.fleet (line 1)\n"
                                     "    dmsbuild.ship.deploy -> dmsbuild.measure.gates (line 2)"]
    # and a skipped import takes it out
    assert package_cycles(graph, {("dmsbuild.ship.deploy", "dmsbuild.measure.gates")}) == []


def test_an_import_from_a_higher_layer_is_found(tmp_path: Path) -> None:
    layers = [("dmsbuild", "errors"), ("core",), ("ship",), ("measure",), ("model",)]
    graph = import_graph(_write(tmp_path, {**_PACKAGES, "dmsbuild/model/__init__.py": "", "dmsbuild/model/net.py": ""}))
    assert layer_violations(graph, layers) == []  # measure -> ship -> core -> errors: downwards only
    # core reaching up to the model (even under TYPE_CHECKING) makes no circle, and still breaks the order
    graph = import_graph(_write(tmp_path, {"dmsbuild/core/rollout.py": "from typing import TYPE_CHECKING\n"
                                                                       "if TYPE_CHECKING:\n    from ..model import net\n"}))
    assert package_cycles(graph) == [] and cycles(graph) == []
    assert layer_violations(graph, layers) == [
        "dmsbuild.core.rollout (layer 2, core) imports dmsbuild.model.net (layer 5, model) at line 3: "
        "move the shared piece down, or the caller up"]
    assert layer_violations(graph, layers, skip={("dmsbuild.core.rollout", "dmsbuild.model.net")}) == []
    # the same tree with measure written below ship: measure.bench -> ship.fleet breaks that order
    assert layer_violations(graph, [("dmsbuild", "errors"), ("core",), ("measure",), ("ship",), ("model",)],
                            skip={("dmsbuild.core.rollout", "dmsbuild.model.net")}) == [
        "dmsbuild.measure.bench (layer 3, measure) imports dmsbuild.ship.fleet (layer 4, ship) at line 1: "
        "move the shared piece down, or the caller up"]
    # a package nobody placed is refused, so a new package must take a layer
    graph = import_graph(_write(tmp_path, {"dmsbuild/extra/__init__.py": ""}))
    assert layer_violations(graph, layers, skip={("dmsbuild.core.rollout", "dmsbuild.model.net")}) == [
        "package extra has no layer: add it to LAYERS in tests/test_architecture.py and to docs/architecture.md"]
