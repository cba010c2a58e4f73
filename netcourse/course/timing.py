"""How long a notebook takes: its reading, its cells and its exercises, section by section.

The estimate the top of every notebook states, and the instructor edition's time per section, come from
here: about 200 words of prose a minute, a minute per code cell (running it and reading what it shows), and
five minutes per exercise (thinking, answering, reading the verdict). A part that starts with a
``### Going deeper: ...`` heading (and runs to the next ``##`` section) is counted apart: the core path
leaves it out, and no later cell may need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Section", "sections", "Estimate", "estimate", "stated", "restate", "WORDS_PER_MINUTE", "CORE_LIMIT_MIN"]

WORDS_PER_MINUTE = 200
CODE_CELL_MIN = 1.0
EXERCISE_MIN = 5.0
CORE_LIMIT_MIN = 60
_HEADING = re.compile(r"^(##|###)\s+(.+)$", re.M)
_PLACEHOLDER = ("answer = ...", "prediction = ...")


@dataclass(frozen=True)
class Section:
    """One ``##`` section of a notebook (the first is what comes before any)."""

    title: str
    words: int
    code_cells: int
    exercises: int
    deeper: bool

    @property
    def minutes(self) -> float:
        return self.words / WORDS_PER_MINUTE + self.code_cells * CODE_CELL_MIN + self.exercises * EXERCISE_MIN


def _words(markdown: str) -> int:
    text = re.sub(r"(?m)^\*Time: about.*$", " ", markdown)  # the estimate does not count itself
    text = re.sub(r"<[^>]+>", " ", text)  # anchors and tags are not read
    return len(re.findall(r"[\w'’.-]*\w", text))


def sections(nb: dict) -> list[Section]:
    """The notebook's sections, in order, with what each asks of a learner."""
    out: list[Section] = []
    title, words, code, exercises = "(opening)", 0, 0, 0

    def close() -> None:
        out.append(Section(title, words, code, exercises, "going deeper" in title.lower()))

    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            # a "## " heading starts a section; a "### Going deeper" heading starts a skippable part of it,
            # which runs to the next "## " heading
            # (every such heading in the cell counts, as in the test that checks skipping breaks nothing)
            start = 0
            for heading in _HEADING.finditer(src):
                if heading.group(1) != "##" and "going deeper" not in heading.group(2).lower():
                    continue
                words += _words(src[start: heading.start()])
                if words or code or exercises or out:
                    close()
                title, words, code, exercises = heading.group(2).strip(), 0, 0, 0
                start = heading.end()
            words += _words(src[start:])
        elif cell["cell_type"] == "code":
            if src.lstrip().startswith(_PLACEHOLDER):
                exercises += 1
            else:
                code += 1
    close()
    return out


@dataclass(frozen=True)
class Estimate:
    """A notebook's time: the core path and the *Going deeper* sections apart, in minutes."""

    core: int
    deeper: int
    reading: int
    code_cells: int
    exercises: int

    def line(self) -> str:
        """The sentence the top of the notebook states."""
        text = (f"*Time: about {self.core} min ({self.reading} min of reading at {WORDS_PER_MINUTE} words a minute, "
                f"{self.code_cells} code cells at about a minute each, {self.exercises} exercises at about five)")
        if self.deeper:
            text += f", plus about {self.deeper} min in the *Going deeper* sections, which you may skip"
        return text + ".*"


def estimate(nb: dict) -> Estimate:
    """The notebook's time, core path and deeper sections apart."""
    parts = sections(nb)
    core = [s for s in parts if not s.deeper]
    deeper = [s for s in parts if s.deeper]
    return Estimate(
        core=round(sum(s.minutes for s in core)),
        deeper=round(sum(s.minutes for s in deeper)),
        reading=round(sum(s.words for s in core) / WORDS_PER_MINUTE),
        code_cells=sum(s.code_cells for s in core),
        exercises=sum(s.exercises for s in core),
    )


_STATED = re.compile(r"^\*Time: about .*?\.\*$", re.M)


def stated(nb: dict) -> str | None:
    """The time line the notebook's first cell states, or None."""
    m = _STATED.search("".join(nb["cells"][0]["source"]))
    return m.group(0) if m else None


def restate(nb: dict) -> bool:
    """Rewrite the first cell's time line from ``estimate``; True when it changed."""
    first = "".join(nb["cells"][0]["source"])
    line = estimate(nb).line()
    m = _STATED.search(first)
    if m is None:
        raise ValueError("the first cell states no '*Time: about ... .*' line")
    if m.group(0) == line:
        return False
    nb["cells"][0]["source"] = (first[: m.start()] + line + first[m.end():]).splitlines(keepends=True)
    return True
