"""Self-checking exercises, the same shape in every notebook.

An exercise states a question; the learner writes an answer in the next cell and calls ``.check``,
which says right or wrong, with a hint when wrong; the worked answer sits in a collapsed cell below.

Three kinds, each shown with its own mark so that a learner (and a test) can tell them apart:

- ``Exercise(kind="capture")`` (🔎): a value the learner computes from their *own* capture, printed
  nowhere above. The answer is taken from that same capture, so it is right for the packets the
  learner actually saw, live or replayed.
- ``Prediction`` (🔮): asked *before* an experiment. The learner writes a number; the experiment runs;
  ``.check(prediction, result)`` compares the two and explains the difference.
- ``Exercise()`` (❓): a question of reasoning or recall.

    q = Exercise("How many packets does TCP's opening handshake take?", answer=3,
                 hint="Count the packets up to and including the first one with only the A flag.")
    q                      # shows the question
    q.check(3)             # ✅ Right ...
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ExerciseError

__all__ = ["Exercise", "Prediction", "Verdict", "Folded", "MARKS", "sig3", "as_number"]

MARKS = {"recall": "❓", "capture": "🔎 From your capture:", "predict": "🔮 Predict, before you run the experiment:"}


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one answer.

    Attributes:
        right: True when the answer is accepted.
        message: what to tell the learner.
        pending: True while the answer is still the ``...`` placeholder.
    """

    right: bool
    message: str
    pending: bool = False

    def __bool__(self) -> bool:
        return self.right

    @property
    def mark(self) -> str:
        """The verdict's first words."""
        if self.pending:
            return "✏️ Your turn."
        return "✅ Right." if self.right else "❌ Not yet."

    def __repr__(self) -> str:
        return f"{self.mark} {self.message}"

    def _repr_html_(self) -> str:
        colour = "#2e7d32" if self.right else ("#1565c0" if self.pending else "#b00020")
        return f"<div style='color:{colour}'><b>{self.mark}</b> {html.escape(self.message)}</div>"


@dataclass(frozen=True)
class Folded:
    """A verdict shown folded: a worked answer's result stays closed until the learner opens it.

    JupyterLab opens a collapsed output again when its cell runs (Run All), so the worked-answer cells
    fold their result themselves, in an HTML ``<details>`` element; the text form (what nbval compares)
    is the verdict itself.
    """

    verdict: Verdict

    def __bool__(self) -> bool:
        return bool(self.verdict)

    def __repr__(self) -> str:
        return repr(self.verdict)

    def _repr_html_(self) -> str:
        return ("<details class='netcourse-solution'><summary>The worked answer, checked (click to open)</summary>"
                f"{self.verdict._repr_html_()}</details>")


# Units a numeric answer may be written in, as a factor to the exercise's unit (time and size).
_UNITS = {"s": ("time", 1000.0), "ms": ("time", 1.0), "µs": ("time", 0.001), "us": ("time", 0.001),
          "b": ("size", 1.0), "bytes": ("size", 1.0), "byte": ("size", 1.0), "kb": ("size", 1000.0),
          "kib": ("size", 1024.0), "%": ("share", 1.0)}
_NUMBER = re.compile(r"^\s*([-+]?(?:0x[0-9a-f]+|[\d,]*\.?\d+(?:e[-+]?\d+)?))\s*([a-zµ%]*)\s*$", re.I)


def as_number(given: Any, unit: str = "") -> float | None:
    """A number from what a learner typed: ``311``, ``"311 ms"``, ``"0.311 s"`` (for ms), ``"0x3bf1"``,
    ``b"42"`` or ``"1,448"``. None when it is not a number, or is one in a unit that does not convert."""
    if isinstance(given, bool) or given is None:
        return None
    if isinstance(given, (int, float)):
        return float(given)
    if isinstance(given, (bytes, bytearray)):
        try:
            given = bytes(given).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(given, str):
        try:
            return float(given)  # numpy scalars and the like
        except (TypeError, ValueError):
            return None
    m = _NUMBER.match(given)
    if not m:
        return None
    text, said = m.group(1).replace(",", ""), m.group(2).lower()
    value = float(int(text, 16)) if text.lower().lstrip("+-").startswith("0x") else float(text)
    if not said or said == unit.lower():
        return value
    have, want = _UNITS.get(said), _UNITS.get(unit.lower())
    if have is None or want is None or have[0] != want[0]:
        return None
    return value * have[1] / want[1]


def _as_text(given: Any) -> str | None:
    if isinstance(given, str):
        return given
    if isinstance(given, (bytes, bytearray)):
        try:
            return bytes(given).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


class Exercise:
    """A question with a checked answer, that diagnoses the mistakes it expects.

    Args:
        question: the question, one or two sentences.
        answer: the expected answer. Numbers compare with ``tolerance`` and may be typed as ints, floats,
            hex (``0x3bf1``), or strings with a unit that converts to ``unit`` (``"0.3 s"`` for ms).
            Strings compare exactly (only surrounding spaces are ignored; bytes are decoded as UTF-8):
            case matters in base64, for one. Pass ``normalise`` when the question says what may vary
            (e.g. ``str.lower`` for hex "in either case"). Bytes answers accept the same text as str.
        hint: the concept, shown after the first wrong answer.
        recipe: how to compute it, shown only after a second wrong answer (the hint comes first).
        explanation: shown after a right answer: why it is right.
        tolerance: allowed absolute difference for numeric answers, in ``unit``.
        check: optional ``fn(given) -> bool`` that replaces the comparison with ``answer``.
        kind: "capture" for a value computed from the learner's own capture, "recall" otherwise.
        normalise: applied to both strings before they are compared.
        unit: the answer's unit ("ms", "B", "%"), for answers typed with a unit.
        mistakes: the wrong answers the question expects, each ``(value or fn(given) -> bool, diagnosis)``;
            a wrong answer that matches one gets its diagnosis instead of the general hint.
        ask: what an instructor might ask the room about it (the instructor edition shows it).
        source: for a capture question, the experiment's result (or its capture). When its capture is a
            replayed recording, the question says "From the course's recording", not "From your capture".
    """

    def __init__(
        self,
        question: str,
        *,
        answer: Any,
        hint: str,
        recipe: str = "",
        explanation: str = "",
        tolerance: float = 0.0,
        check: Callable[[Any], bool] | None = None,
        kind: str = "recall",
        normalise: Callable[[str], str] | None = None,
        unit: str = "",
        mistakes: Sequence[tuple[Any, str]] = (),
        ask: str = "",
        source: Any = None,
    ) -> None:
        if not question.strip():
            raise ExerciseError("An exercise needs a question.")
        self.ask = ask
        self.recorded = kind == "capture" and _replayed(source)
        if kind not in ("recall", "capture"):
            raise ExerciseError(f"An exercise's kind is 'recall' or 'capture', not {kind!r}.")
        self.kind = kind
        self._normalise = normalise
        if self.recorded:  # a replay: the learner reads the course's packets, not their own
            question = question.replace("your capture", "the course's recording").replace(
                "Your capture", "The course's recording")
        self.question = question
        self.answer = answer
        self.hint = hint
        self.recipe = recipe
        self.explanation = explanation
        self.tolerance = tolerance
        self.unit = unit
        self.mistakes = tuple(mistakes)
        self._check = check
        self._misses = 0

    def _same(self, given: Any, expected: Any) -> bool:
        if isinstance(expected, bool) or isinstance(given, bool):
            return given is expected
        if isinstance(expected, (int, float)):
            value = as_number(given, self.unit)
            return value is not None and math.isclose(value, float(expected), rel_tol=0.0, abs_tol=self.tolerance)
        if isinstance(expected, (bytes, bytearray)):
            if isinstance(given, str):
                given = given.encode("utf-8")
            return isinstance(given, (bytes, bytearray)) and bytes(given) == bytes(expected)
        if isinstance(expected, str):
            text = _as_text(given)
            if text is None:
                return False
            norm = self._normalise or (lambda v: v)
            return norm(text.strip()) == norm(expected.strip())
        return given == expected

    def _matches(self, given: Any) -> bool:
        if self._check is not None:
            try:
                return bool(self._check(given))
            except Exception:  # a learner's answer of the wrong shape is wrong, not an error
                return False
        return self._same(given, self.answer)

    def diagnose(self, given: Any) -> str | None:
        """The diagnosis of an anticipated mistake ``given`` makes, or None."""
        for wrong, why in self.mistakes:
            try:
                hit = wrong(given) if callable(wrong) else self._same(given, wrong)
            except Exception:
                hit = False
            if hit:
                return why
        return None

    def check(self, given: Any) -> Verdict:
        """Check an answer. ``...`` (the placeholder in a fresh notebook) asks for one.

        A wrong answer that is an anticipated mistake gets its diagnosis; any other gets the hint (the
        concept) first, and the recipe as well from the second miss on."""
        if given is Ellipsis:
            return Verdict(False, "Replace ... with your answer, then run the cell again.", pending=True)
        if self._matches(given):
            return Verdict(True, self.explanation or "Well done.")
        self._misses += 1
        why = self.diagnose(given)
        if why:
            return Verdict(False, f"{given!r} is not it: {why}")
        side = ""
        value, expected = as_number(given, self.unit), self.answer
        if value is not None and isinstance(expected, (int, float)) and not isinstance(expected, bool) \
                and self._check is None:
            side = " Too high." if value > expected else " Too low."
        text = f"{given!r} is not it.{side} Hint: {self.hint}"
        if self.recipe and self._misses >= 2:
            text += f" How: {self.recipe}"
        elif self.recipe:
            text += " (Miss again and the hint says how to compute it.)"
        return Verdict(False, text)

    def solve(self, worked: Any) -> Folded:
        """Check the worked answer, folded (for the collapsed worked-answer cell)."""
        return Folded(self.check(worked))

    def __repr__(self) -> str:
        return f"{self._mark()} {self.question}"

    def _mark(self) -> str:
        return "🔎 From the course's recording:" if self.recorded else MARKS[self.kind]

    def instructor_note(self) -> dict[str, Any]:
        """What the instructor edition shows under the question: the misconceptions it probes (its
        anticipated mistakes), the hint and recipe, and what to ask the room."""
        return _note(self.kind, self.mistakes, self.hint, self.recipe, self.ask or (
            "Collect answers before anyone runs the check; ask two people with different answers to explain "
            "how they got theirs, then let the room decide."))

    def _repr_mimebundle_(self, include=None, exclude=None):
        return ({"text/plain": repr(self), "text/html": self._repr_html_()},
                {"netcourse": {"instructor": self.instructor_note()}})

    def _repr_html_(self) -> str:
        title = ("From the course's recording." if self.recorded else "From your capture.") if self.kind == "capture" \
            else "Exercise."
        return (
            "<div style='border-left:4px solid #1565c0;background:#e8f0fb;padding:4px 8px'>"
            f"<b>{MARKS[self.kind].split()[0]} {title}</b> {html.escape(self.question)}</div>"
        )


def _replayed(source: Any) -> bool:
    """True when ``source`` is, or holds among its attributes, a capture replayed from a recording."""
    if source is None:
        return False
    if getattr(source, "live", None) is False:
        return True
    fields = vars(source).values() if hasattr(source, "__dict__") else ()
    return any(getattr(v, "live", None) is False and hasattr(v, "table") for v in fields)


class Prediction:
    """A number the learner predicts before an experiment runs, compared with what it measured.

    Args:
        question: what to predict, with its unit.
        measure: ``fn(result) -> float``: the measured value, taken from the experiment's result.
        unit: the unit, for messages ("ms", "packets").
        tolerance: how far a prediction may be from the measurement and still count, as a fraction of
            the measurement (0.25 = within 25 %).
        floor: an absolute allowance added to the tolerance, in ``unit`` (for small measurements).
        explain: ``fn(given, measured) -> str``: why the measurement is what it is; it is shown
            whether the prediction was right or not.
        says: the words before the value compared with ("your run measured"; a prediction checked
            against theory, with the run as support, says so).
        step: ``fn(result) -> float``: the size of the step the question is about (a round trip, a
            poll period), in ``unit``. A prediction half a step or more away is never right, whatever
            the tolerance: one round trip off is a different model, not noise.
        spread: why the tolerance is what it is (say, "runs here vary by ±5 %"); the verdict says it.
        mistakes: anticipated wrong predictions, each ``(fn(given, measured) -> bool, diagnosis)``.
        ask: what an instructor might ask the room about it (the instructor edition shows it).
        from_capture: the measurement reads the result's capture; when that capture is a replayed recording,
            the verdict says "the course's recording measured", not "your run measured".

    ::

        p = Prediction("How many ms until the body is in hand?", measure=lambda b: b.total_ms,
                       unit="ms", explain=lambda g, m: "Two round trips ...")
        p                       # shows the question
        budget = request_across(100)
        p.check(180, budget)    # compares 180 with budget.total_ms
    """

    kind = "predict"

    def __init__(
        self,
        question: str,
        *,
        measure: Callable[[Any], float],
        unit: str,
        explain: Callable[[float, float], str],
        tolerance: float = 0.25,
        floor: float = 0.0,
        says: str = "your run measured",
        step: Callable[[Any], float] | None = None,
        spread: str = "",
        mistakes: Sequence[tuple[Callable[[float, float], bool], str]] = (),
        ask: str = "",
        from_capture: bool = False,
    ) -> None:
        if not question.strip():
            raise ExerciseError("A prediction needs a question.")
        self.ask = ask
        self.from_capture = from_capture
        self.says = says
        self._step = step
        self.spread = spread
        self.mistakes = tuple(mistakes)
        self.question = question
        self.unit = unit
        self.tolerance = tolerance
        self.floor = floor
        self._measure = measure
        self._explain = explain

    def measured(self, result: Any) -> float:
        """The value the experiment measured."""
        return float(self._measure(result))

    def check(self, given: Any, result: Any) -> Verdict:
        """Compare a prediction with the experiment's ``result``. ``...`` asks for a prediction."""
        if given is Ellipsis:
            return Verdict(False, "Write your prediction in place of ..., run the experiment, then this cell.",
                           pending=True)
        try:
            value = float(given)
        except (TypeError, ValueError):
            return Verdict(False, f"{given!r} is not a number. Predict a number of {self.unit}.")
        measured = self.measured(result)
        band = self.band(result)
        close = abs(value - measured) <= band
        says = self.says
        capture = getattr(result, "capture", None)
        if self.from_capture and capture is not None and getattr(capture, "live", True) is False:
            says = (self.says.replace("your capture", "the course's recording") if "your capture" in self.says
                    else "the course's recording measured")  # packets replayed: not this run's
        head = f"You predicted {value:g} {self.unit}; {says} {sig3(measured)} {self.unit}."
        if not close:
            head += " " + ("Too high." if value > measured else "Too low.")
            for wrong, why in self.mistakes:
                if wrong(value, measured):
                    head += f" {why}"
                    break
        if band > 0:
            head += f" (Within ±{sig3(band)} {self.unit} counts as right"
            head += f": {self.spread}.)" if self.spread else ".)"
        else:
            head += " (Only the exact value counts.)"
        return Verdict(close, f"{head} {self._explain(value, measured)}")

    def band(self, result: Any) -> float:
        """How far from the measurement a prediction may be and still count, in ``unit``."""
        measured = self.measured(result)
        band = self.tolerance * abs(measured) + self.floor
        if self._step is not None:
            step = float(self._step(result))
            if step > 0:
                band = min(band, 0.49 * step)
        return band

    def solve(self, worked: Any, result: Any) -> Folded:
        """Check the worked prediction against ``result``, folded (for the collapsed worked-answer cell)."""
        return Folded(self.check(worked, result))

    def __repr__(self) -> str:
        return f"{MARKS['predict']} {self.question}"

    def instructor_note(self) -> dict[str, Any]:
        """What the instructor edition shows under the prediction."""
        return _note("predict", self.mistakes, self.spread, "", self.ask or (
            "Take the room's predictions before running anything (write the spread on the board); after the "
            "run, ask those furthest off which step of their model was missing."))

    def _repr_mimebundle_(self, include=None, exclude=None):
        return ({"text/plain": repr(self), "text/html": self._repr_html_()},
                {"netcourse": {"instructor": self.instructor_note()}})

    def _repr_html_(self) -> str:
        return (
            "<div style='border-left:4px solid #6a1b9a;background:#f3e5f5;padding:4px 8px'>"
            f"<b>🔮 Predict, before you run the experiment.</b> {html.escape(self.question)}</div>"
        )


def _note(kind: str, mistakes: Sequence[tuple[Any, str]], hint: str, recipe: str, ask: str) -> dict[str, Any]:
    probes = []
    for wrong, why in mistakes:
        said = "" if callable(wrong) else f"answering {wrong!r}: "
        probes.append(said + why)
    return {"kind": kind, "probes": probes, "hint": hint, "recipe": recipe, "ask": ask}


def sig3(x: float) -> str:
    """Three significant figures, without exponent notation for the sizes the course measures."""
    if x == 0 or not math.isfinite(x) or (x == int(x) and abs(x) < 1e15):
        return f"{int(x):,}" if math.isfinite(x) else f"{x:g}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{digits}f}"
