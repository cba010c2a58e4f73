"""The course as a learner meets it: the learner's copy (made by the code `make lab` runs, every output
cleared; it must open with none on show) in JupyterLab in a real Chromium, Run All from empty, then every
knob turned.

Runs beside nbval (which checks the stored outputs), not instead of it. Skips, saying why, when there is
no Chromium or no Playwright. ``make test-browser`` runs it alone. Screenshots of every knob go to
``build/browser/``; the time each knob took to redraw is printed in the summary (and measured, not
asserted: ``make bench`` reports it against its one-second target).
"""

from __future__ import annotations

import json

import pytest

from netcourse.tools.browser import ROOT, find_chromium

pytestmark = pytest.mark.browser

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
SHOTS = ROOT / "build" / "browser"
MOVES: list = []  # every knob move, for the summary (conftest prints it)


@pytest.fixture(scope="module")
def course():
    if find_chromium() is None:
        pytest.skip("no Chromium found (install Debian's `chromium` package, or set NETCOURSE_CHROMIUM)")
    pytest.importorskip("playwright", reason="Playwright for Python is not installed (pip install -e .[test])")
    from netcourse.tools.browser import Course

    with Course(shots=SHOTS) as c:
        yield c


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab_and_every_knob_answers(course, name):
    run = course.run(name)
    MOVES.extend(run.moves)
    assert run.executed_cells == run.code_cells, f"{run.executed_cells} of {run.code_cells} code cells ran"
    assert not run.stderr_outputs, f"errors or stderr: {run.stderr_outputs}"
    assert not run.fallback_texts, f"a widget did not draw: {run.fallback_texts}"
    assert run.knobs_drawn == run.knobs_expected, f"{run.knobs_drawn} of {run.knobs_expected} knobs drew"
    assert run.solutions and not run.solutions_open, f"worked answers on show after Run All: cells {run.solutions_open}"
    assert run.moves, "no control was moved"
    stuck = [f"{m.knob} / {m.control}" for m in run.moves if m.seconds is None]
    assert not stuck, f"controls whose picture never changed: {stuck}"
    failed = [f"{m.control}: {m.failure}" for m in run.moves if m.failure]
    assert not failed, f"knobs that failed: {failed}"
    stored = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    live = sum("".join(o.get("data", {}).get("text/plain", "")).startswith("🔌") for c in stored["cells"]
               for o in c.get("outputs", []))
    assert len(run.live) == live, f"{len(run.live)} of {live} live widgets were found on the page"
    assert all(outcome == "ok" for outcome in run.live), f"live widgets that did not work: {run.live}"
    assert len(run.screenshots) == run.knobs_expected and all(p.exists() for p in run.screenshots)


def test_knob_timings_are_written_for_the_benchmark():
    if not MOVES:
        pytest.skip("the browser run did not happen")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "knob_times.json").write_text(json.dumps([m.__dict__ for m in MOVES], indent=1))
    assert all(m.seconds is not None for m in MOVES)
