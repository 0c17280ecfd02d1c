"""One room per concept: imports only go down the floors, and no group of modules imports itself in a circle.

The import graph is measured file by file: every ``import`` of the package's own modules counts, at module
level or inside a function (a function-level import closes a circle as surely as a module-level one; it only
hides it until the function runs). The package root's ``__init__.py`` re-exports lazily and is left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aselect_bench"

#: Floors, lowest first. A module may import its own floor and the floors below, never one above.
FLOORS = [
    {"errors", "io", "costs", "uncertainty", "argtypes", "registry"},
    {"backbones", "data", "heads", "metrics", "hfr", "plots", "config", "precision", "cache", "progress"},
    {"selectors"},
    {"settings", "callbacks", "tasks", "pretrain", "reports"},
    {"experiments"},
    {"analyses", "searches"},  # searches: its scoring reads analyses.error_bars; compare imports it
    {"launch"},
    {"commands", "cli", "lightning_cli"},
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def module_names(package: Path) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` for every module of ``package`` (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, module: str, known: set[str]):
    """The modules in ``known`` that the module ``module`` (file ``path``) imports, at module level or inside
    functions. ``from pkg import name`` names the submodule ``pkg.name`` when there is one, else ``pkg``;
    relative imports are resolved against ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = _known_prefix(f"{base}.{alias.name}", known) if f"{base}.{alias.name}" in known else \
                    _known_prefix(base, known)
                if target:
                    yield target
        elif isinstance(node, ast.Import):
            yield from filter(None, (_known_prefix(a.name, known) for a in node.names))


def _known_prefix(name: str, known: set[str]) -> str | None:
    """The longest dotted prefix of ``name`` that is a module in ``known`` (``None``: not ours)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def import_graph(package: Path) -> dict[str, set[str]]:
    """``{module: {module it imports}}`` over ``package``'s modules, the package root left out (its
    ``__init__.py`` re-exports lazily, for users, and no module of the package should import it)."""
    modules = module_names(package)
    known = set(modules) - {package.name}
    return {m: set(imports(path, m, known)) - {m} for m, path in modules.items() if m in known}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import one another in a circle: the strongly connected components with
    more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def room(module: str) -> str:
    """``aselect_bench.backbones.dit`` -> ``backbones``."""
    return module.split(".")[1]


def upward_arrows(graph: dict[str, set[str]], floor: dict[str, int]) -> list[str]:
    """``"a imports b"`` for every import from a room to a room on a higher floor."""
    return [f"{a} imports {b}" for a in sorted(graph) for b in sorted(graph[a])
            if floor[room(b)] > floor[room(a)]]


def rooms(package: Path) -> set[str]:
    """The package's top-level modules and subpackages."""
    return {p.stem if p.is_file() else p.name for p in package.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}


def test_every_room_has_a_floor():
    assert rooms(PACKAGE) <= set(FLOOR), sorted(rooms(PACKAGE) - set(FLOOR))


def test_no_import_circles():
    assert circles(import_graph(PACKAGE)) == []


def test_imports_only_go_down():
    assert upward_arrows(import_graph(PACKAGE), FLOOR) == []


# ------------------------------------------------------------------------- the checker on a package of its own
def _fake_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``root/pkg`` and return the package folder."""
    for name, source in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "pkg"


CLEAN = {
    "__init__.py": "def __getattr__(name):\n    from pkg import formula\n    return formula\n",
    "formula.py": "import math\n",
    "pick/__init__.py": "from pkg.pick.base import choose\n",
    "pick/base.py": "from pkg import formula\n\ndef choose():\n    from pkg.formula import math\n",
    "app.py": "from pkg.pick import choose\nfrom .formula import math\n",
}


def test_the_checker_finds_nothing_in_a_clean_package(tmp_path):
    package = _fake_package(tmp_path, CLEAN)
    graph = import_graph(package)
    assert graph == {"pkg.formula": set(), "pkg.pick": {"pkg.pick.base"}, "pkg.pick.base": {"pkg.formula"},
                     "pkg.app": {"pkg.pick", "pkg.formula"}}
    assert circles(graph) == []
    assert upward_arrows(graph, {"formula": 0, "pick": 1, "app": 2}) == []


def test_the_checker_sees_a_circle_closed_inside_a_function(tmp_path):
    files = {**CLEAN, "formula.py": "import math\n\ndef check(name):\n    from pkg.pick.base import choose\n"}
    graph = import_graph(_fake_package(tmp_path, files))
    assert circles(graph) == [["pkg.formula", "pkg.pick.base"]]
    assert upward_arrows(graph, {"formula": 0, "pick": 1, "app": 2}) == ["pkg.formula imports pkg.pick.base"]
