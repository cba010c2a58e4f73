"""Showing things from helpers, safely.

Helpers return values; the notebook shows them. The one exception is a notice the learner must not
miss — "these packets are a replay, not live" — which ``announce`` shows in the cell that is running
(never from a background thread). Outside Jupyter it becomes a warning.
"""

from __future__ import annotations

import html
import sys
import warnings

__all__ = ["announce", "in_notebook", "ReplayNotice"]


class ReplayNotice(UserWarning):
    """Issued outside Jupyter when a capture was replayed from a recording."""


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``display`` reaches a cell's output)."""
    if "IPython" not in sys.modules:  # a kernel has imported it long before
        return False
    from IPython import get_ipython
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


_STYLES = {
    "live": "border-left:4px solid #2e7d32;background:#edf7ee",
    "replay": "border-left:4px solid #b26a00;background:#fff4e0",
}


def announce(text: str, *, kind: str, tag: str = "capture") -> None:
    """Show a one-line notice in the running cell.

    Args:
        text: the notice, one line.
        kind: "live" or "replay". In notebooks both kinds are shown (so live and replayed runs produce
            the same outputs, which nbval sanitizes); outside notebooks only "replay" is, as a
            ``ReplayNotice`` warning.
        tag: what the notice is about, shown first in the text form: "capture" or "link".
    """
    if in_notebook():
        from IPython.display import display

        style = _STYLES.get(kind, "")
        display(
            {
                "text/plain": f"[{tag}] {text}",
                "text/html": f"<div class='netcourse-notice' style='{style};padding:4px 8px'>"
                f"{html.escape(text)}</div>",
            },
            raw=True,
        )
    elif kind == "replay":
        warnings.warn(text, ReplayNotice, stacklevel=3)
