"""The package's import drawing, made from the code: ``python -m netcourse layers``.

Every folder is a floor; imports should point down. The drawing lists the floors (highest first) with their
size, how many imports run between each pair of floors, and then what should be empty: imports that point up,
one lesson's experiments importing another's, and circles among modules (imports inside functions count too,
as they do in ``tests/test_layers.py``).
"""

from __future__ import annotations

import ast
import pkgutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYERS", "Graph", "import_graph", "drawing"]

PACKAGE = Path(__file__).resolve().parent.parent
# Highest first. A module may import from its own floor and any floor below it.
LAYERS = ["tools", "experiments", "course", "apps", "clients", "network", "traffic", "runtime", "protocols", "errors"]
ALLOWED_UP = {"netcourse.__version__"}  # a constant of the package root


@dataclass
class Graph:
    """Modules (name -> lines of code) and imports (importer, imported module, line)."""

    modules: dict[str, int]
    imports: list[tuple[str, str, int]]

    def floor(self, module: str) -> str:
        if module in ALLOWED_UP:
            return "(root)"
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    def upward(self) -> list[tuple[str, str, int]]:
        return [(a, b, line) for a, b, line in self.imports
                if b not in ALLOWED_UP and self.floor(a) in LAYERS and self.floor(b) in LAYERS
                and LAYERS.index(self.floor(b)) < LAYERS.index(self.floor(a))]

    def between_lessons(self) -> list[tuple[str, str, int]]:
        """One lesson's experiments importing another lesson's (the registry and the package root aside)."""
        def lesson(m: str) -> str:
            return m.split(".")[2] if len(m.split(".")) > 2 else ""

        shared = {"netcourse.experiments", "netcourse.experiments.registry"}
        return [(a, b, line) for a, b, line in self.imports
                if self.floor(a) == self.floor(b) == "experiments" and a not in shared and b not in shared
                and lesson(a) != lesson(b)]

    def circles(self) -> list[list[str]]:
        """Groups of modules that import each other, directly or round about (Tarjan's algorithm)."""
        edges: dict[str, set[str]] = {m: set() for m in self.modules}
        for a, b, _ in self.imports:
            if b in edges and a != b and not _is_package_of(b, a):  # a package's __init__ naming its own modules
                edges[a].add(b)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        found: list[list[str]] = []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            for w in edges[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    found.append(sorted(group))

        for m in sorted(edges):
            if m not in index:
                visit(m)
        return found


def _is_package_of(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def _imports(path: Path, module: str, is_package: bool) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    package = module if is_package else module.rsplit(".", 1)[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return [(t, line) for t, line in found if t.startswith("netcourse")]


def import_graph() -> Graph:
    """Every module of the package and every import between them (``from x import name`` resolved to the module)."""
    modules: dict[str, int] = {}
    paths: dict[str, tuple[Path, bool]] = {}
    for info in pkgutil.walk_packages([str(PACKAGE)], "netcourse."):
        rel = info.name.split(".")[1:]
        path = PACKAGE.joinpath(*rel)
        path = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
        modules[info.name] = sum(1 for line in path.read_text().splitlines() if line.strip())
        paths[info.name] = (path, info.ispkg)
    imports = []
    for name, (path, is_package) in paths.items():
        for target, line in _imports(path, name, is_package):
            # "from netcourse.x import name": the module x.name if there is one, else x
            while target not in modules and target not in ALLOWED_UP and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules or target in ALLOWED_UP:
                imports.append((name, target, line))
    return Graph(modules, imports)


def drawing(graph: Graph | None = None) -> str:
    """The floors, the arrows between them, and what should be empty, as text."""
    g = graph or import_graph()
    lines = []
    floors = ["__main__"] + LAYERS
    for n, floor in enumerate(floors):
        members = {m: size for m, size in g.modules.items() if g.floor(m) == floor}
        if not members:
            continue
        biggest = sorted(members.items(), key=lambda kv: -kv[1])[:4]
        names = ", ".join(f"{m.split('.', 2)[-1]} {size}" for m, size in biggest)
        folder = floor if floor in ("__main__", "errors") else floor + "/"
        lines.append(f"floor {len(floors) - n:>2}  {folder:<13} {sum(members.values()):>6} lines in {len(members):>2} "
                     f"module(s)  (largest: {names})")
    arrows = Counter((g.floor(a), g.floor(b)) for a, b, _ in g.imports if g.floor(a) != g.floor(b))
    lines.append("")
    lines.append("imports between floors (from -> to: how many):")
    for (a, b), count in sorted(arrows.items(), key=lambda kv: (floors.index(kv[0][0]) if kv[0][0] in floors else 99,
                                                                 floors.index(kv[0][1]) if kv[0][1] in floors else 99)):
        lines.append(f"  {a:>11} -> {b:<11} {count:>3}")
    lines.append("")
    for title, found in (("imports that point up", g.upward()),
                         ("one lesson's experiments importing another's", g.between_lessons())):
        lines.append(f"{title}: {len(found) or 'none'}")
        lines += [f"  {a}:{line} -> {b}" for a, b, line in found]
    circles = g.circles()
    lines.append(f"circles: {len(circles) or 'none'}")
    lines += ["  " + " <-> ".join(c) for c in circles]
    return "\n".join(lines)


def main() -> int:
    print(drawing())
    return 0
