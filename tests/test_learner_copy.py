"""The learner's copy (my-notebooks/): outputs cleared, created once, never overwritten; a fresh copy keeps the old."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netcourse.tools.learnercopy import REFERENCE, cleared, ensure_copy, fresh_copy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folders(tmp_path):
    reference, learner = tmp_path / "notebooks", tmp_path / "my-notebooks"
    reference.mkdir()
    for path in sorted(REFERENCE.glob("*.ipynb"))[:2]:
        (reference / path.name).write_text(path.read_text())
    return reference, learner


def test_every_reference_notebook_cleared_has_no_output_and_keeps_its_cells():
    for path in sorted(REFERENCE.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        clean = cleared(nb)
        assert [c["source"] for c in clean["cells"]] == [c["source"] for c in nb["cells"]]
        code = [c for c in clean["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), path.name
        hidden = [c["metadata"].get("jupyter") for c in clean["cells"] if "solution" in c["metadata"].get("tags", [])]
        assert hidden and all(h == {"source_hidden": True, "outputs_hidden": True} for h in hidden)


def test_the_copy_is_made_once_and_a_learners_edits_survive(folders):
    reference, learner = folders
    made = ensure_copy(reference, learner)
    assert [p.name for p in made] == sorted(p.name for p in reference.glob("*.ipynb"))
    mine = made[0]
    nb = json.loads(mine.read_text())
    nb["cells"][0]["source"] = ["my notes"]
    mine.write_text(json.dumps(nb))
    assert ensure_copy(reference, learner) == []  # make lab again: nothing overwritten
    assert json.loads(mine.read_text())["cells"][0]["source"] == ["my notes"]
    (reference / "99_new.ipynb").write_text((reference / mine.name).read_text())  # a notebook added later
    assert [p.name for p in ensure_copy(reference, learner)] == ["99_new.ipynb"]


def test_a_fresh_copy_keeps_the_old_one_beside_it(folders):
    reference, learner = folders
    ensure_copy(reference, learner)
    first = sorted(reference.glob("*.ipynb"))[0]
    (learner / first.name).write_text("my answers")
    new, kept = fresh_copy(first.stem.split("_")[0], reference, learner)
    assert kept is not None and kept.read_text() == "my answers" and kept.parent == learner
    assert json.loads(new.read_text())["cells"] and new.name == first.name
    with pytest.raises(ValueError, match="give one of"):
        fresh_copy("42", reference, learner)


def test_make_lab_opens_the_learners_copy_and_git_ignores_it():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "learner-copy" in lab and "my-notebooks/00_start_here.ipynb" in lab
    assert "my-notebooks/" in (ROOT / ".gitignore").read_text().split()
    assert "learner-copy" in (ROOT / "postBuild").read_text()



def test_outside_a_checkout_the_learner_copy_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    from netcourse.tools import learnercopy

    monkeypatch.setattr(learnercopy, "ROOT", tmp_path)
    monkeypatch.setattr(learnercopy, "REFERENCE", tmp_path / "notebooks")
    monkeypatch.setattr(learnercopy, "LEARNER", tmp_path / "my-notebooks")
    assert learnercopy.main() == 2
    assert "run this from the course's checkout" in capsys.readouterr().out
    assert not (tmp_path / "my-notebooks").exists()
