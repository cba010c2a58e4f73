"""The learner's own copy of the course: ``my-notebooks/``, the notebooks with every output cleared.

``notebooks/`` holds the reference: executed, top to bottom, what GitHub, ``make html``, nbval and the browser
test read. A learner works in ``my-notebooks/`` (git-ignored), where no answer is on screen before they predict
it. ``make lab`` creates the copy on first use and afterwards only adds notebooks it lacks: it never overwrites
one, so edits and answers survive ``make lab`` again and ``git pull``. ``make fresh-copy NB=03`` puts a clean
copy of one notebook back and keeps the old one beside it, renamed with the time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["REFERENCE", "LEARNER", "cleared", "ensure_copy", "fresh_copy", "main"]

ROOT = Path(__file__).resolve().parent.parent.parent
if not (ROOT / "notebooks").is_dir():  # installed without the checkout (not editable): the checkout is here
    ROOT = Path.cwd()
REFERENCE = ROOT / "notebooks"
LEARNER = ROOT / "my-notebooks"


def cleared(notebook: dict) -> dict:
    """The notebook with no outputs, no execution counts, no run timings and no saved widget state."""
    nb = json.loads(json.dumps(notebook))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def _write(path: Path, nb: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)  # whole or not at all: an interrupted copy never leaves half a notebook


def ensure_copy(reference: Path = REFERENCE, learner: Path = LEARNER) -> list[Path]:
    """Create the learner's copy of every reference notebook it lacks; never touch one that exists. Returns
    the notebooks created."""
    learner.mkdir(exist_ok=True)
    made = []
    for source in sorted(reference.glob("*.ipynb")):
        target = learner / source.name
        if not target.exists():
            _write(target, cleared(json.loads(source.read_text())))
            made.append(target)
    return made


def _find(prefix: str, reference: Path) -> Path:
    matches = sorted(p for p in reference.glob("*.ipynb") if p.stem == prefix or p.stem.startswith(f"{prefix}_"))
    if len(matches) != 1:
        known = ", ".join(p.stem.split("_")[0] for p in sorted(reference.glob("*.ipynb")))
        raise ValueError(f"NB={prefix!r} names {len(matches)} notebooks; give one of {known}")
    return matches[0]


def fresh_copy(prefix: str, reference: Path = REFERENCE, learner: Path = LEARNER) -> tuple[Path, Path | None]:
    """A clean copy of one notebook (``prefix``: its number, "03", or its full name) in the learner's folder;
    the old one, if any, is kept beside it as ``NAME.old-YYYYMMDD-HHMMSS.ipynb``. Returns (new, kept)."""
    if prefix.isdigit() and len(prefix) == 1:
        prefix = prefix.zfill(2)  # NB=3 means 03
    source = _find(prefix, reference)
    learner.mkdir(exist_ok=True)
    target = learner / source.name
    kept = None
    if target.exists():
        kept = target.with_name(f"{source.stem}.old-{time.strftime('%Y%m%d-%H%M%S')}.ipynb")
        n = 1
        while kept.exists():
            n += 1
            kept = kept.with_name(f"{source.stem}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}.ipynb")
        target.replace(kept)
    _write(target, cleared(json.loads(source.read_text())))
    return target, kept


def main(fresh: str | None = None) -> int:
    if not REFERENCE.is_dir():  # neither beside the package (an editable install) nor in the current folder
        print(f"error: no notebooks/ in {ROOT}: run this from the course's checkout (cd into it, then make lab)")
        return 2
    if fresh:
        try:
            new, kept = fresh_copy(fresh, REFERENCE, LEARNER)
        except ValueError as exc:
            print(f"error: {exc}")
            return 2
        print(f"a clean copy: {new.relative_to(ROOT)}" + (f"; your old one is {kept.relative_to(ROOT)}" if kept else ""))
        return 0
    made = ensure_copy(REFERENCE, LEARNER)
    if made:
        print(f"your copy of the course: {len(made)} notebook(s) created in {LEARNER.relative_to(ROOT)}/ "
              "(outputs cleared; the executed reference stays in notebooks/)")
    return 0
