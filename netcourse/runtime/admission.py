"""Who gets a connection to a course server, and for how long it may dawdle before its first request.

aiohttp sets no deadline for a request's head: a client that sends one header byte a second holds a
connection (and a file descriptor) for as long as it likes, and a thousand of them starve everyone
(a "slow loris"). ``Admission`` wraps each connection's protocol and adds two rules:

- **Header deadline.** Every request head, the first on a connection and each later one, must be
  complete ``header_timeout`` seconds after its first byte (after the connection opened, for the
  first); otherwise the connection is closed. (Idle keep-alive connections are aiohttp's
  ``keepalive_timeout``'s business; bodies have their own deadline in ``apps.safety``.)
- **A cap, slowest out first.** Past ``max_connections`` open connections, a connection that is not
  serving a request is closed to make room: first one caught half-way through a head, else the
  oldest idle one. So a well-behaved client gets in even while the cap is full of dawdlers. Only if
  every open connection is busy serving is the newcomer itself turned away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Admission", "MAX_CONNECTIONS", "HEADER_TIMEOUT"]

MAX_CONNECTIONS = 512
HEADER_TIMEOUT = 10.0  # seconds


class Admission:
    """Counts a server's connections and enforces the two rules; ``wrap`` makes its protocol factory.

    Args:
        max_connections: open connections allowed at once.
        header_timeout: seconds a request head may take, from its first byte to its last.
        progress: ``fn(protocol) -> (heads received so far, serving a request now)``.
    """

    def __init__(
        self, *, max_connections: int, header_timeout: float, progress: Callable[[Any], tuple[int, bool]]
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.progress = progress
        self.open: dict[_Guarded, None] = {}  # insertion-ordered: oldest first
        self.evicted = 0  # connections closed by either rule

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that guards what ``factory`` makes."""
        return lambda: _Guarded(factory(), self)

    def admit(self, newcomer: "_Guarded") -> None:
        self.open[newcomer] = None
        if len(self.open) <= self.max_connections:
            return
        idle = [g for g in self.open if g is not newcomer and not self.progress(g.inner)[1]]
        idle.sort(key=lambda g: not g.partial)  # half-sent heads first, then the oldest idle ones
        victim = idle[0] if idle else newcomer
        victim.close()

    def close_all(self) -> None:
        for guarded in list(self.open):
            guarded.close()


class _Guarded(asyncio.Protocol):
    """Forwards every protocol event to the real protocol, and keeps the admission rules."""

    def __init__(self, inner: asyncio.Protocol, admission: Admission) -> None:
        self.inner = inner
        self.admission = admission
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.partial = True  # a head is due: a new connection owes its first one
        self.heads = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.inner.connection_made(transport)
        self._arm()
        self.admission.admit(self)

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.admission.header_timeout, self._deadline)

    def _deadline(self) -> None:
        if self.partial:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.admission.evicted += 1
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)  # type: ignore[attr-defined]
        heads = self.admission.progress(self.inner)[0]
        if heads > self.heads:  # a head (or more) completed: nothing is owed now
            self.heads = heads
            self.partial = False
            if self.timer is not None:
                self.timer.cancel()
        elif not self.partial:  # the first bytes of a new head: its deadline starts now
            self.partial = True
            self._arm()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.admission.open.pop(self, None)
        self.inner.connection_lost(exc)
