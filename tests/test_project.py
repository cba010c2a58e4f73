"""The project's own promises: set-up files agree, notebooks are stored executed and mapped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import tomllib

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_LIBS = {"python", "pip", "libpcap"}  # conda-only entries: the interpreter and C libraries


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_the_python_floor_is_stated_once_and_the_same_everywhere():
    """pyproject's requires-python is the floor; the Makefile's check, environment.yml, the README, and the
    oldest Python CI tries all say the same version."""
    floor = re.fullmatch(r">=(3\.\d+)", tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert floor, "requires-python is not a plain floor"
    version = floor.group(1)
    minor = int(version.split(".")[1])
    makefile = (ROOT / "Makefile").read_text()
    assert f"needs Python {version} or newer" in makefile
    assert f"sys.version_info >= (3, {minor})" in makefile, "the Makefile's interpreter check tests another version"
    assert re.search(rf"^PYTHONS \?= {re.escape(version)} ", makefile, re.M), "CI's oldest Python is not the floor"
    assert f"python>={version}" in (ROOT / "environment.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"Python {version}+" in readme
    stated = set(re.findall(r"Python (3\.\d+)\+", readme)) | set(re.findall(r"python>=(3\.\d+)",
                                                                            (ROOT / "environment.yml").read_text()))
    assert stated == {version}, stated


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(d) for d in project["dependencies"]} | {_name(d) for d in project["optional-dependencies"]["test"]}
    conda, pip_lines = set(), []
    section = None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("dependencies:"):
            section = "deps"
        elif section == "deps" and stripped.startswith("- pip:"):
            section = "pip"
        elif section == "deps" and stripped.startswith("- "):
            conda.add(_name(stripped[2:]))
        elif section == "pip" and stripped.startswith("- "):
            pip_lines.append(stripped[2:])
    from_pip = {_name(line.split("#")[0]) for line in pip_lines if not line.startswith("-")}
    assert (conda - SYSTEM_LIBS) | from_pip == wanted  # pip only for what conda-forge lacks
    assert not (conda & from_pip)
    assert "-e ." in pip_lines


NBVAL_IGNORED_AT_MOST = 0.15  # of code cells course-wide: nbval compares the rest, sanitized (tests/nbval-sanitize.cfg)


def ignored_shares() -> dict[str, tuple[int, int]]:
    """Per notebook: (code cells whose output nbval does not compare, code cells)."""
    shares = {}
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = [c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code"]
        ignored = [c for c in code if "nbval-ignore-output" in c.get("metadata", {}).get("tags", [])]
        shares[nb_path.stem] = (len(ignored), len(code))
    return shares


def test_nbval_compares_the_outputs_of_most_cells():
    """Output-ignored cells are the exception: a measurement's varying parts are sanitized, not its whole output."""
    shares = ignored_shares()
    for name, (ignored, code) in shares.items():
        print(f"{name:<32} {ignored:>3} of {code:>3} code cells output-ignored ({ignored / code:.0%})")
    ignored, code = (sum(x) for x in zip(*shares.values()))
    print(f"{'course':<32} {ignored:>3} of {code:>3} ({ignored / code:.1%}; at most {NBVAL_IGNORED_AT_MOST:.0%})")
    assert ignored / code <= NBVAL_IGNORED_AT_MOST


def test_notebooks_are_stored_executed_without_errors_and_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
        counts = [c["execution_count"] for c in code]
        assert counts == list(range(1, len(code) + 1)), f"{nb_path.name}: not executed top to bottom"
        for cell in code:
            for out in cell["outputs"]:
                assert out["output_type"] != "error", f"{nb_path.name} stores an error"
                assert not (out["output_type"] == "stream" and out["name"] == "stderr"), f"{nb_path.name} prints to stderr"
        assert nb_path.stem in readme, f"{nb_path.name} missing from the README's course map"


def test_no_source_binds_the_wildcard_address():
    for py in (ROOT / "netcourse").rglob("*.py"):
        assert "0.0.0.0'" not in py.read_text() and '"0.0.0.0"' not in py.read_text(), py


def test_every_scenario_has_a_shipped_recording_and_every_recording_a_scenario():
    from netcourse.experiments.registry import known_scenarios
    from netcourse.traffic.recordings import load_meta, shipped

    names = known_scenarios()
    assert sorted(names) == shipped()
    for name in names:
        meta = load_meta(name)
        assert meta["scenario"] == name and meta["packets"] > 0 and meta["complete"]


def test_worked_answers_hide_their_source_and_their_outputs():
    import json

    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        solutions = [c for c in cells if "solution" in c["metadata"].get("tags", [])]
        assert solutions, nb.name
        for cell in solutions:
            assert cell["metadata"].get("jupyter") == {"source_hidden": True, "outputs_hidden": True}, nb.name


def test_every_worked_answer_passes_its_own_check():
    """A worked answer that prints ❌ teaches the wrong thing (05's once decoded the RFC's frame, not the question's)."""
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for i, cell in enumerate(cells):
            if "solution" not in cell["metadata"].get("tags", []) or "solve(" not in "".join(cell["source"]):
                continue
            shown = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in cell["outputs"])
            assert "✅" in shown and "❌" not in shown, f"{nb.name} cell {i}: {shown[:120]}"
