"""One room per concept: imports only go down the floors, so there are no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aselect_bench"

#: Floors, lowest first. A module may import its own floor and the floors below, never one above.
FLOORS = [
    {"errors", "io", "costs", "uncertainty", "argtypes"},
    {"backbones", "data", "heads", "metrics", "hfr", "selectors", "plots", "config", "precision", "cache",
     "progress"},
    {"settings", "callbacks", "tasks", "pretrain", "reports"},
    {"experiments"},
    {"analyses"},
    {"commands", "cli", "lightning_cli"},
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def room(module: str) -> str | None:
    """``aselect_bench.backbones.dit`` -> ``backbones``; the package root itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "aselect_bench" else None


def imports(path: Path):
    """Every ``aselect_bench`` module imported by ``path``, at module level or inside functions."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aselect_bench"):
            if node.module == "aselect_bench":
                yield from (f"aselect_bench.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("aselect_bench."))


def test_every_room_has_a_floor():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert rooms <= set(FLOOR), sorted(rooms - set(FLOOR))


def test_imports_only_go_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = room("aselect_bench." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if here not in FLOOR:  # the package root (__init__.py re-exports lazily)
            continue
        for module in imports(path):
            there = room(module)
            if there in FLOOR and FLOOR[there] > FLOOR[here]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not upward, upward
