"""The package's dependency rules, checked on the source with ``ast`` (nothing is imported).

1. No import circle between dmsbuild's modules: dependencies point one way,
   errors/config at the bottom, the doit tasks at the top (docs/architecture.md).
2. Packages stack: every package (a folder under dmsbuild/, or a top-level
   module) has a layer in ``LAYERS``, the one written-down order (docs/architecture.md
   "Layers" mirrors it, and a test holds the two equal); a package imports only from
   its own layer or below, and no two packages import each other, directly or round
   a circle, even through modules that form no module-level circle.
3. Board-side code (the release agent and the benchmark runners, copied into
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
BOARD_EXTRA = {"dmsbuild.board.runner.trt_runner": {"tensorrt", "cuda", "pycuda"}}

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
    ("tasks", "cli", "boards", "__main__", "defaults"),  # the top: doit tasks, the command line, dodo.py's
]

#: Module imports that still break the layer order, to go when the pipeline/backend branches land (issue 23):
#: deploy-with-its-gate moves up to pipeline/, and the backend registry replaces measure.bench.HOST_DRIVEN.
#: The coordinator empties this at merge; an entry whose import is gone fails test_known_layer_breaks_still_exist.
KNOWN_LAYER_BREAKS: set[tuple[str, str]] = {
    ("dmsbuild.ship.fleet_deploy", "dmsbuild.measure.bench"),  # bench_hook: deploy's gate -> pipeline/
    ("dmsbuild.ship.fleet_deploy", "dmsbuild.measure.gates"),  # accuracy_floors for the gate -> pipeline/
    ("dmsbuild.ship.mender", "dmsbuild.measure.bench"),  # HOST_DRIVEN: the backend registry's to answer
    ("dmsbuild.ship.mender", "dmsbuild.measure.gates"),  # pull_results judges with the gates (the one verdict)
}


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
    found = package_cycles(import_graph(), KNOWN_LAYER_BREAKS)
    assert not found, "\n".join(found)


def test_packages_import_only_their_layer_or_below() -> None:
    graph = import_graph()
    assert {"core", "transport", "convert", "ship", "measure", "tasks"} <= {package_of(m) for m in graph}
    bad = layer_violations(graph, skip=KNOWN_LAYER_BREAKS)
    assert not bad, "\n".join(bad)


def test_known_layer_breaks_still_exist() -> None:
    """The exemptions are the imports of today, not a licence: one that is gone must leave the list."""
    graph = import_graph()
    gone = sorted(f"{a} -> {b}" for a, b in KNOWN_LAYER_BREAKS if b not in graph.get(a, {}))
    assert not gone, "no longer imported; remove from KNOWN_LAYER_BREAKS: " + ", ".join(gone)


def test_the_docs_list_the_same_layers() -> None:
    """docs/architecture.md's layer table: `| N | `pkg/`, `mod.py` | ... |` rows, in LAYERS' order."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| *(\d+) *\| *([^|]+)\|", text, re.MULTILINE)
    documented = [tuple(n.strip("/").removesuffix(".py") for n in re.findall(r"`([^`]+)`", names)) for _, names in rows]
    assert [int(n) for n, _ in rows] == list(range(1, len(rows) + 1))
    assert documented == LAYERS


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
    # and an exempted import (KNOWN_LAYER_BREAKS) takes it out
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
