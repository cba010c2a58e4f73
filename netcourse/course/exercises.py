"""Self-checking exercises, the same shape in every notebook.

An exercise states a question; the learner writes an answer in the next cell and calls ``.check``,
which says right or wrong, with a hint when wrong; the worked answer sits in a collapsed cell below.
Answers about the learner's own capture are checked against that capture, so they are right for the
packets the learner actually saw, live or replayed.

    q = Exercise("How many packets does TCP's opening handshake take?", answer=3,
                 hint="Count the packets up to and including the first one with only the A flag.")
    q                      # shows the question
    q.check(3)             # ✅ Right ...
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ExerciseError

__all__ = ["Exercise", "Verdict"]


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


class Exercise:
    """A question with a checked answer.

    Args:
        question: the question, one or two sentences.
        answer: the expected answer. Numbers compare with ``tolerance``; strings compare without
            regard to case or surrounding spaces.
        hint: shown after a wrong answer.
        explanation: shown after a right answer: why it is right.
        tolerance: allowed absolute difference for numeric answers.
        check: optional ``fn(given) -> bool`` that replaces the comparison with ``answer``.
    """

    def __init__(
        self,
        question: str,
        *,
        answer: Any,
        hint: str,
        explanation: str = "",
        tolerance: float = 0.0,
        check: Callable[[Any], bool] | None = None,
    ) -> None:
        if not question.strip():
            raise ExerciseError("An exercise needs a question.")
        self.question = question
        self.answer = answer
        self.hint = hint
        self.explanation = explanation
        self.tolerance = tolerance
        self._check = check

    def _matches(self, given: Any) -> bool:
        if self._check is not None:
            return bool(self._check(given))
        expected = self.answer
        if isinstance(expected, bool) or isinstance(given, bool):
            return given is expected
        if isinstance(expected, (int, float)):
            try:
                value = float(given)
            except (TypeError, ValueError):
                return False
            return math.isclose(value, float(expected), rel_tol=0.0, abs_tol=self.tolerance)
        if isinstance(expected, str):
            return isinstance(given, str) and given.strip().lower() == expected.strip().lower()
        return given == expected

    def check(self, given: Any) -> Verdict:
        """Check an answer. ``...`` (the placeholder in a fresh notebook) asks for one."""
        if given is Ellipsis:
            return Verdict(False, "Replace ... with your answer, then run the cell again.", pending=True)
        if self._matches(given):
            return Verdict(True, self.explanation or "Well done.")
        return Verdict(False, f"{given!r} is not it. Hint: {self.hint}")

    def __repr__(self) -> str:
        return f"❓ {self.question}"

    def _repr_html_(self) -> str:
        return (
            "<div style='border-left:4px solid #1565c0;background:#e8f0fb;padding:4px 8px'>"
            f"<b>Exercise.</b> {html.escape(self.question)}</div>"
        )
