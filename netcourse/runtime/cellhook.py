"""Re-running a notebook cell stops the servers its previous run left behind.

Before a cell runs, IPython fires ``pre_run_cell`` with the cell's id (JupyterLab and nbclient send
one). Every object a cell starts is *owned* by that cell's key; when the same cell runs again, the
things it owned are stopped first. Two different cells with the same source are different cells: the
source is used as the key only when the front end sends no id (a plain IPython terminal).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["current_cell", "on_cell_rerun", "install"]

_lock = threading.Lock()
_current: str | None = None
_installed = False
_listeners: list[Callable[[str], None]] = []


def cell_key(cell_id: str | None, source: str | None) -> str | None:
    """The key of a cell: its id when there is one, else a hash of its source, else None."""
    if cell_id:
        return f"id:{cell_id}"
    if source is not None:
        return f"src:{hash(source)}"
    return None


def current_cell() -> str | None:
    """The key of the cell running now (None outside IPython). Installs the hook on first use."""
    install()
    return _current


def on_cell_rerun(listener: Callable[[str], None]) -> None:
    """Call ``listener(key)`` before each cell runs, with that cell's key."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def _pre_run_cell(info: Any) -> None:
    global _current
    key = cell_key(getattr(info, "cell_id", None), getattr(info, "raw_cell", None))
    _current = key
    if key is None:
        return
    for listener in list(_listeners):
        try:
            listener(key)
        except Exception:  # a listener's failure must not break the learner's cell
            pass


def _running_cell_id(shell: Any) -> str | None:
    """The id of the cell executing now, from the kernel's current request (ipykernel)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:
        return None
    if not isinstance(parent, dict):
        return None
    metadata = parent.get("metadata") or {}
    cell_id = metadata.get("cellId")
    return cell_id if isinstance(cell_id, str) and cell_id else None


def install() -> None:
    """Register the hook with IPython, if we run inside it. Safe to call many times."""
    global _installed, _current
    with _lock:
        if _installed:
            return
        _installed = True
    if "IPython" not in sys.modules:  # not inside IPython (a server's own process): importing it costs 50 ms
        return
    from IPython import get_ipython
    shell = get_ipython()
    if shell is None:
        return
    shell.events.register("pre_run_cell", _pre_run_cell)
    # The cell running now (the one that first used this) passed its pre_run_cell already.
    history = shell.user_ns.get("In") or [""]
    _current = cell_key(_running_cell_id(shell), history[-1])
