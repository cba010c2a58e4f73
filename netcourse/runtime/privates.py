"""The private attributes of aiohttp and asyncio that the runtime relies on, where no public API exists.

Each is named here with what it is for, and ``check_private_apis()`` checks once, when the first server
starts, that they all still exist: a renamed attribute then stops the start with a message that names it,
instead of every connection dying at its head deadline with no error anywhere (what silent defaults did).
"""

from __future__ import annotations

from asyncio import sslproto
from typing import Any

from ..errors import ServerStartError

__all__ = ["aiohttp_progress", "check_private_apis", "PRIVATE_APIS"]

# (owner, attribute, what for)
PRIVATE_APIS = (
    ("aiohttp.web_protocol.RequestHandler", "_request_count", "the head deadline counts request heads"),
    ("aiohttp.web_protocol.RequestHandler", "_waiter", "idle connections are told from busy ones"),
    ("asyncio.sslproto.SSLProtocol", "_on_handshake_complete", "a failed TLS handshake sends its alert"),
    ("asyncio.sslproto.SSLProtocol", "_process_outgoing", "a failed TLS handshake sends its alert"),
)
_checked = False


def aiohttp_progress(protocol: Any) -> tuple[int, bool]:
    """(request heads received, idle) of aiohttp's RequestHandler.

    Idle means what aiohttp itself means by it (its keep-alive check): the handler waits for a next request,
    on a future it keeps in ``_waiter``. From the moment a head is parsed (the future is done) until the
    handler loop waits again, the connection is busy: its body, or an upgraded WebSocket's frames, arrive
    then. (``_request_in_progress`` is set only once the handler task runs, a loop iteration or two later:
    body bytes in that gap looked like a new head.) aiohttp has no public way to ask either, so these are
    private attributes; ``check_private_apis`` makes sure, once, that they still exist.
    """
    waiter = protocol._waiter  # noqa: SLF001
    return protocol._request_count, waiter is not None and not waiter.done()  # noqa: SLF001


def check_private_apis() -> None:
    """Fail loudly, once, if aiohttp or asyncio no longer has a private attribute the runtime needs."""
    global _checked
    if _checked:
        return
    from aiohttp import __version__ as aiohttp_version
    from aiohttp.web_protocol import RequestHandler

    owners = {"aiohttp.web_protocol.RequestHandler": RequestHandler, "asyncio.sslproto.SSLProtocol": sslproto.SSLProtocol}
    missing = [f"{owner}.{name} ({why})" for owner, name, why in PRIVATE_APIS if not hasattr(owners[owner], name)]
    if missing:
        raise ServerStartError(
            f"This aiohttp ({aiohttp_version}) or Python no longer has what netcourse's servers rely on: "
            + "; ".join(missing) + ". Install the versions pyproject.toml names (make setup), or report it."
        )
    _checked = True
