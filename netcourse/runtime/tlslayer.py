"""The TLS layer under ``serve(ssl=...)``: asyncio's TLS protocol, with two changes.

- **A failed handshake sends its alert.** asyncio's own TLS (``create_server(ssl=...)``) closes a failed
  handshake without sending the alert OpenSSL wrote (CPython gh-98078): the peer sees only EOF, never *why*.
  RFC 8446 §6.2 says the side that detects an error sends the alert, so the course's servers flush it first.
  This overrides two private methods of ``asyncio.sslproto.SSLProtocol`` (3.11+), checked at start-up by
  ``runtime.privates``; once every supported Python carries the fix, the override can go.
- **A connection holds an admission slot from its first byte**, owing "a TLS handshake" until the handshake
  is done: a client stalled half-way through one is counted by the cap, and among the first closed past it
  (``runtime.admission``). That is also why ``serve()`` builds this protocol itself instead of using
  aiohttp's ``TCPSite``.
"""

from __future__ import annotations

import asyncio
import socket
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

from .admission import Admission, Slot

__all__ = ["tls_factory", "TLS_HANDSHAKE"]

TLS_HANDSHAKE = "a TLS handshake"  # what a TLS connection owes until its handshake is done


def tls_factory(factory: Callable[[], Any], *, context: Any, handshake_timeout: float,
                admission: Admission) -> Callable[[], Any]:
    """A protocol factory that wraps what ``factory`` makes (an admission-guarded protocol) in TLS."""
    loop = asyncio.get_running_loop()

    def tls_protocol() -> Any:
        return _AlertingSSLProtocol(loop, factory(), context, None, server_side=True,
                                    ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=1.0,
                                    admission=admission)

    return tls_protocol


class _AlertingSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol, which also sends the alert of a failed handshake before closing, and
    holds an admission slot from the first byte (owing "a TLS handshake" until it is done)."""

    def __init__(self, *args: Any, admission: Admission, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admission = admission
        self._guard = args[1]  # the app's guarded protocol: it takes over the slot after the handshake
        self._slot: Slot | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiohttp turns Nagle's algorithm off for its connections, but only once the app protocol starts, after
        # the handshake. Until then a handshake record written behind an unacknowledged one waited for the
        # client's delayed ACK (up to 40 ms on Linux): a TLS 1.3 first byte measured 3 round trips + 40 ms.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._slot = self._guard.slot = self._admission.admit(transport, owes=TLS_HANDSHAKE)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._slot is not None:
            self._admission.release(self._slot)
        super().connection_lost(exc)

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            try:
                self._process_outgoing()  # the alert OpenSSL left in the outgoing buffer (3.11+)
            except Exception:  # an older asyncio, or the transport already gone: close as asyncio does
                pass
        super()._on_handshake_complete(handshake_exc)
