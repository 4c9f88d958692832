"""What a module of nbci imports, read from its source: for the rules on imports
(`test_import_directions`) and on declared dependencies (`test_packaging`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The modules `path` imports (`from a.b import c` counts as `a.b` and `a.b.c`; a
    relative import counts as the absolute name it means)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, path)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module a `from … import` in `path` names (`from ..collect import x`: `nbci.collect`)."""
    if node.level == 0:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))
