"""pricelab's import graph, read from the source with ``ast``: which module imports which.

One reading for the two places that need it: the boundary checks
(tests/unit/project/test_boundaries.py) and the map at the top of docs/architecture.md
(:mod:`lab.architecture`). Every import counts, also one inside a function or under
``TYPE_CHECKING``: a deferred import still ties the two modules together. Only absolute imports
are read; the boundary checks refuse relative ones.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

#: the checkout this module sits in
ROOT = Path(__file__).resolve().parents[1]
#: pricelab's packages
PACKAGES = ("core", "controller", "analysis", "lab", "streams", "pricelab")


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> its file, for every module of ``packages`` under ``root`` (a
    package's ``__init__.py`` under the package's own name)."""
    out = {}
    for pkg in packages:
        for path in (root / pkg).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imported(path: Path) -> Iterator[str]:
    """Every module name an import statement of ``path`` names (absolute imports only)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def edges(name: str, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports (a name that is a module's
    attribute counts as its module)."""
    out = set()
    for target in imported(known[name]):
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules it imports, for every module of ``known``."""
    return {name: edges(name, known) for name in known}


def member(package: str, name: str) -> str | None:
    """The member of ``package`` (a module or sub-package directly inside it) that holds module
    ``name``; None for the package itself and for modules outside it."""
    prefix = f"{package}." if package else ""
    if not name.startswith(prefix) or name == package:
        return None
    return prefix + name[len(prefix) :].split(".")[0]
