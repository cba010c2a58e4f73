"""The course without a kernel: static HTML for projectors and reading, and the Binder link.

``python -m netcourse html`` (``make html``) exports every stored, executed notebook to one self-contained
HTML page (images embedded) and writes an index whose table is the README's course map, its links pointing
at the pages. Beside them, ``build/html/instructor/`` holds the instructor edition, the page a teacher
projects: the worked answers open, the time of each section at the top, and under every exercise the
misconceptions it probes (its anticipated mistakes), its hint and recipe, and what to ask the room. ``python -m netcourse binder`` prints the Binder badge for the repository's git remote.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["export_html", "binder_url", "ROOT"]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _course_map(readme: str) -> str:
    """The README's course map: the table under the "Course map" heading, as Markdown."""
    lines = readme.splitlines()
    start = next((i for i, l in enumerate(lines) if l.lstrip().startswith("| notebook")), None)
    if start is None:
        raise ValueError("the README has no course map table (a table whose first column is 'notebook')")
    end = start
    while end < len(lines) and lines[end].lstrip().startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def _instructor_cells(nb, nbformat) -> None:
    """Turn a notebook node into its instructor edition, in place."""
    import html as html_

    from ..course.timing import estimate, sections

    est = estimate(nb)
    rows = "\n".join(f"| {part.title}{' *(going deeper)*' if part.deeper else ''} | {part.minutes:.0f} | "
                     f"{part.exercises} |" for part in sections(nb))
    head = ("**Instructor edition.** Worked answers are open; under each exercise, the misconceptions it probes "
            "and what to ask the room. Learners work in their own copy (`make lab`), where nothing is executed "
            f"yet.\n\nCore path: about {est.core} min" + (f"; *Going deeper*: about {est.deeper} min" if est.deeper else "")
            + ".\n\n| section | min | exercises |\n| --- | --- | --- |\n" + rows)
    cells = [nb.cells[0], nbformat.v4.new_markdown_cell(head)]
    for cell in nb.cells[1:]:
        if "solution" in cell.metadata.get("tags", []):
            cell.metadata.pop("jupyter", None)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data:
                data["text/html"] = data["text/html"].replace("<details class='netcourse-solution'>",
                                                              "<details class='netcourse-solution' open>")
        cells.append(cell)
        notes = [o.get("metadata", {}).get("netcourse", {}).get("instructor") for o in cell.get("outputs", [])]
        for note in filter(None, notes):
            lines = ["🧑‍🏫 **For the instructor.**"]
            if note.get("probes"):
                lines.append("Misconceptions it probes (each gets its own answer in check()):")
                lines += [f"- {html_.escape(p)}" for p in note["probes"]]
            if note.get("hint"):
                lines.append(f"\nFirst hint (the concept): {html_.escape(note['hint'])}")
            if note.get("recipe"):
                lines.append(f"\nAfter a second miss (the recipe): {html_.escape(note['recipe'])}")
            lines.append(f"\n**Ask the room:** {html_.escape(note['ask'])}")
            cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
    nb.cells = cells


def export_html(out: Path | None = None) -> list[Path]:
    """Write ``build/html/<notebook>.html`` for every notebook and ``build/html/index.html``; return the paths."""
    import mistune
    import nbformat
    from nbconvert import HTMLExporter

    out = out or ROOT / "build" / "html"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    exporter = HTMLExporter(embed_images=True)  # one file per page: ../images/*.png inlined
    written = []
    (out / "instructor").mkdir()
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(NOTEBOOKS)}})
        page = out / f"{nb_path.stem}.html"
        page.write_text(body, encoding="utf-8")
        written.append(page)
        _instructor_cells(nb, nbformat)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(NOTEBOOKS)}})
        page = out / "instructor" / f"{nb_path.stem}.html"
        page.write_text(body, encoding="utf-8")
        written.append(page)
    table = _course_map((ROOT / "README.md").read_text(encoding="utf-8"))
    table = re.sub(r"\(notebooks/(\w+)\.ipynb\)", r"(\1.html)", table)
    html_table = mistune.create_markdown(plugins=["table"])(table)
    index = out / "index.html"
    index.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>netcourse</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}</style>"
        "</head><body><h1>netcourse</h1><p>How polling, WebSockets, webhooks and TLS actually work, shown on "
        "real packets. These pages are the notebooks as last executed; to turn the knobs, run them in "
        "JupyterLab (<code>make lab</code>). Teaching from them? The <a href='instructor/00_start_here.html'>"
        "instructor edition</a> (one page per notebook, in <code>instructor/</code>) has the worked answers "
        "open, the time per section, the misconceptions each exercise probes and what to ask the room.</p>"
        f"{html_table}</body></html>",
        encoding="utf-8",
    )
    return [index, *written]


def binder_url(remote: str | None = None) -> str | None:
    """The mybinder.org URL that opens notebook 00 for a GitHub remote (``origin`` by default), or None."""
    if remote is None:
        try:
            remote = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True,
                                    text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    m = re.match(r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", remote or "")
    if not m:
        return None
    owner, repo = m.groups()
    return f"https://mybinder.org/v2/gh/{owner}/{repo}/HEAD?labpath=my-notebooks%2F00_start_here.ipynb"
