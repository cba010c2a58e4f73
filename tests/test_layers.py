"""The package's folders are its layers: imports point down, and protocols/ does no I/O."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import netcourse

PACKAGE = Path(netcourse.__file__).parent
# Highest first. A module may import from its own layer and any layer below it.
LAYERS = ["tools", "experiments", "course", "apps", "clients", "network", "traffic", "runtime", "protocols", "errors"]
TOP_LEVEL = {"__init__", "__main__"}  # the entry points may import anything


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "netcourse" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None and node.level:  # from . import x / from .. import x
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, t) for line, t in found if t.startswith("netcourse")]


def _modules():
    for info in pkgutil.walk_packages([str(PACKAGE)], "netcourse."):
        rel = info.name.split(".")[1:]
        path = PACKAGE.joinpath(*rel)
        path = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
        yield info.name, path


def test_every_module_sits_in_a_known_layer():
    for name, _ in _modules():
        assert _layer(name) in LAYERS or name.split(".")[1] in TOP_LEVEL, name


@pytest.mark.slow
def test_imports_point_down_the_layers():
    wrong = []
    for name, path in _modules():
        here = _layer(name)
        if here in TOP_LEVEL or here not in LAYERS:
            continue
        for line, target in _imports(path, name):
            there = _layer(target)
            if target == "netcourse.__version__":  # a constant of the package root
                continue
            if there not in LAYERS:
                wrong.append(f"{name}:{line} imports {target}, which is in no layer")
                continue
            if LAYERS.index(there) < LAYERS.index(here):
                wrong.append(f"{name}:{line} imports {target} ({there} is above {here})")
    assert not wrong, "\n".join(wrong)


def _lesson(module: str) -> str:
    """The lesson an experiment module belongs to: its package under experiments/ (or its own name)."""
    return module.split(".")[2] if len(module.split(".")) > 2 else ""


def test_experiments_never_import_another_lessons_experiments():
    """One lesson's experiments may use the registry and their own package, never a sibling lesson's: what two
    lessons share is a client (clients/), a server (apps/) or a protocol (protocols/)."""
    wrong = []
    for name, path in _modules():
        if _layer(name) != "experiments" or name == "netcourse.experiments.registry":
            continue
        for line, target in _imports(path, name):
            if _layer(target) != "experiments" or target in ("netcourse.experiments", "netcourse.experiments.registry"):
                continue
            if _lesson(target) != _lesson(name):
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_catches_an_upward_import(tmp_path):
    fake = tmp_path / "m.py"
    fake.write_text("from ..experiments.registry import scenario\n")
    assert _imports(fake, "netcourse.traffic.m") == [(1, "netcourse.experiments.registry")]


@pytest.mark.slow
def test_protocols_load_no_io_library():
    names = [n for n, _ in _modules() if _layer(n) == "protocols"]
    assert "netcourse.protocols.wsconn" in names
    code = (
        "import importlib, json, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(json.dumps(sorted(m for m in ('socket', 'asyncio', 'aiohttp', 'scapy', 'matplotlib', 'selectors') "
        "if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.slow
def test_the_top_level_api_is_lazy():
    code = (
        "import sys, netcourse\n"
        "assert 'aiohttp' not in sys.modules and 'scapy' not in sys.modules\n"
        "from netcourse import serve, capture, tcp_info\n"
        "print(serve.__module__, capture.__module__, tcp_info.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["netcourse.runtime.server", "netcourse.traffic.sniffer", "netcourse.runtime.tcpinfo"]


def _readme_tree() -> str:
    text = (PACKAGE.parent / "README.md").read_text()
    start = text.index("```\nnotebooks/NN_topic.ipynb")
    return text[start:text.index("```", start + 3)]


def test_the_readme_tree_names_every_module_and_nothing_else():
    import re

    tree = _readme_tree()
    missing = []
    for folder in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p.name in LAYERS)):
        for entry in sorted(folder.iterdir()):
            name = entry.name
            if name.startswith(("_", ".")) or (entry.is_dir() and not (entry / "__init__.py").exists()):
                continue
            shown = f"{name}/" if entry.is_dir() else name
            if not re.search(rf"(?<![\w/]){re.escape(shown)}", tree):
                missing.append(f"{folder.name}/{shown}")
    named = set(re.findall(r"(?<![\w./])(\w+\.py)", tree)) | set(re.findall(r"(?<=\s)([a-z_]+/)(?=\s)", tree))
    existing = ({p.name for p in PACKAGE.rglob("*.py")} | {f"{p.name}/" for p in PACKAGE.rglob("*") if p.is_dir()}
                | {f"{p.name}/" for p in PACKAGE.parent.iterdir() if p.is_dir()})
    stale = sorted(n for n in named if n not in existing)
    assert not missing and not stale, f"README's tree misses {missing}; names what is not there: {stale}"


def test_every_package_init_lists_its_modules():
    missing = []
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        for entry in init.parent.iterdir():
            name = entry.stem if entry.suffix == ".py" else entry.name
            if name.startswith(("_", ".")) or (entry.suffix != ".py" and not (entry / "__init__.py").exists()):
                continue
            if f"``{name}``" not in doc:
                missing.append(f"{init.parent.relative_to(PACKAGE.parent)}: {name}")
    assert not missing, "package maps (their __init__ docstrings) miss: " + ", ".join(sorted(missing))


def test_the_drawing_shows_every_floor_in_order_and_nothing_that_must_stay_empty():
    from netcourse.tools.layers import drawing

    text = drawing()
    floors = [line.split()[2] for line in text.splitlines() if line.startswith("floor")]
    assert floors == ["__main__", "tools/", "experiments/", "course/", "apps/", "clients/", "network/", "traffic/",
                      "runtime/", "protocols/", "errors"]
    assert "imports that point up: none" in text
    assert "one lesson's experiments importing another's: none" in text
    assert "circles: none" in text


def test_the_drawing_finds_a_circle_an_upward_import_and_a_sideways_one():
    from netcourse.tools.layers import Graph, drawing

    g = Graph({"netcourse.tools.bench": 1, "netcourse.tools.loadbench": 1, "netcourse.runtime.server": 1,
               "netcourse.experiments.polling.compare": 1, "netcourse.experiments.tls.cost": 1},
              [("netcourse.tools.bench", "netcourse.tools.loadbench", 3),
               ("netcourse.tools.loadbench", "netcourse.tools.bench", 64),
               ("netcourse.runtime.server", "netcourse.tools.bench", 9),
               ("netcourse.experiments.tls.cost", "netcourse.experiments.polling.compare", 5)])
    text = drawing(g)
    assert "imports that point up: 1\n  netcourse.runtime.server:9 -> netcourse.tools.bench" in text
    assert "importing another's: 1\n  netcourse.experiments.tls.cost:5 -> netcourse.experiments.polling.compare" in text
    assert "circles: 1\n  netcourse.tools.bench <-> netcourse.tools.loadbench" in text


def test_every_module_imports():
    """A module no test imports can break unseen (runtimebench imported a helper loadbench no longer had, and
    `make bench` failed at its first line): every module of the package is imported here."""
    import importlib

    failed = {}
    for name, _ in _modules():
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failed[name] = f"{type(exc).__name__}: {exc}"
    assert not failed, failed
