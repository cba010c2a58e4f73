"""The registry of live servers: every server whose thread is alive, so none runs unseen and none outlives
the notebook. ``live_servers()`` lists them; ``stop_all()`` stops them, and runs at interpreter exit; a cell run
again stops the servers its previous run started. The registry also routes aiohttp's log records to the
``errors`` of the server whose thread emitted them (nothing is printed from a server's thread).
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import NetcourseTimeout
from . import cellhook

__all__ = ["live_servers", "stop_all", "LOGGER"]

_lock = threading.Lock()
_servers: dict[int, Any] = {}  # every server whose thread is alive, by id
_by_thread: dict[int, Any] = {}  # the same servers, by their thread's ident
_counter = 0


def next_id() -> int:
    global _counter
    with _lock:
        _counter += 1
        return _counter


def add(server_id: int, server: Any) -> None:
    with _lock:
        _servers[server_id] = server


def owns_thread(server: Any) -> None:
    """The calling thread is ``server``'s: its log records go to that server."""
    with _lock:
        _by_thread[threading.get_ident()] = server


def remove(server_id: int) -> None:
    """The calling thread, ``server_id``'s, is ending."""
    with _lock:
        _servers.pop(server_id, None)
        _by_thread.pop(threading.get_ident(), None)


# aiohttp's exceptions for requests it could not parse: answered 4xx by aiohttp itself, never ours.
_CLIENT_ERRORS = (HttpProcessingError, web.RequestPayloadError)


class _ToOwningServer(logging.Handler):
    """Routes aiohttp's log records to the ``errors`` of the server whose thread emitted them."""

    def emit(self, record: logging.LogRecord) -> None:
        server = _by_thread.get(record.thread or 0)
        if server is None:
            return
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _CLIENT_ERRORS) and getattr(exc, "code", 400) < 500:
            server.rejected += 1  # a malformed request, answered 4xx: the client's error, not ours
            return
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        server.record_error(text)


# One logger for every server (a logger per server would never be released: the logging module
# keeps every named logger forever).
LOGGER = logging.getLogger("netcourse.server")
LOGGER.propagate = False
LOGGER.setLevel(logging.WARNING)
LOGGER.handlers[:] = [_ToOwningServer()]


def live_servers() -> list[Any]:
    """Every server whose thread is alive, oldest first: running ones, and any that failed to stop."""
    with _lock:
        return [s for _, s in sorted(_servers.items())]


def stop_all(timeout: float = 5.0) -> int:
    """Stop every live server; returns how many were stopped. Runs at interpreter exit too.

    A server that does not stop in time stays listed by ``live_servers()``, its ``errors`` saying so.
    """
    stopped = 0
    for server in live_servers():
        try:
            server.stop(timeout)
            stopped += 1
        except NetcourseTimeout:
            pass  # recorded in server.errors; the server stays listed
    return stopped


atexit.register(stop_all)


def _stop_owned_by(cell: str) -> None:
    """Before a cell runs again: stop the servers its previous run started."""
    for server in live_servers():
        if server.owner == cell and server.running:
            try:
                server.stop()
            except NetcourseTimeout:
                pass  # recorded in server.errors; the server stays listed


cellhook.on_cell_rerun(_stop_owned_by)
