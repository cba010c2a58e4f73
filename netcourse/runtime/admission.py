"""Who gets a connection to a course server, and for how long it may owe what it started to send.

aiohttp sets no deadline for a request's head: a client that sends one header byte a second holds a
connection (and a file descriptor) for as long as it likes, and a thousand of them starve everyone
(a "slow loris"). ``Admission`` gives every connection a ``Slot`` and keeps three rules:

- **A head has a deadline, and only a head.** A connection owes a request head from the moment it
  opens, and again when the first bytes of a next head arrive on an idle keep-alive connection; the
  head must be complete ``header_timeout`` seconds later, or the connection is closed. Bytes that
  arrive while a request is being served (its body, or the frames of an upgraded WebSocket) never
  start that clock: a body has its own deadline (``apps.safety`` answers 408), and an upgraded
  connection may live for hours. Idle keep-alive connections are aiohttp's ``keepalive_timeout``'s
  business.
- **A cap that holds.** At most ``max_connections`` connections are open at once, exactly, bursts
  included. A newcomer past the cap makes room by closing one other connection, in this order:
  one that *owes* something (a request head, a request body, a TLS or WebSocket handshake), the one
  that has owed longest first; else the oldest idle one; else the oldest busy connection of the peer
  address that holds the most. So a well-behaved client always gets in, and dawdlers go first.
  (On loopback every client is 127.0.0.1, so the address share cannot tell clients apart there;
  the chat server caps sockets per *session* instead, where clients do differ.)
- **Named debts.** A server that waits for something a client owes says so with
  ``owing(transport, "a request body")``, which makes that connection one of the first to go.

A closed connection is *aborted* (a TCP reset): ``transport.close()`` would wait for its send buffer
to drain, and a client that stopped reading never drains it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Admission", "Slot", "owing", "slot_of", "MAX_CONNECTIONS", "HEADER_TIMEOUT", "HEAD"]

MAX_CONNECTIONS = 512
HEADER_TIMEOUT = 10.0  # seconds
HEAD = "a request head"

Progress = Callable[[Any], "tuple[int, bool]"]


class Slot:
    """One open connection as admission sees it.

    Attributes:
        transport: the connection's TCP transport (for TLS, the one under the encryption).
        peer: the client's IP address.
        opened: when it was accepted (``time.monotonic()``, seconds).
        owes: what the server is waiting for from the client ("a request head", ...), or None.
        owed_since: since when it owes it (seconds, monotonic).
        busy: a function telling whether a request is being served on it now.
    """

    __slots__ = ("transport", "peer", "opened", "owes", "owed_since", "busy")

    def __init__(self, transport: asyncio.BaseTransport, owes: str | None, busy: Callable[[], bool]) -> None:
        peer = transport.get_extra_info("peername")
        self.transport = transport
        self.peer = peer[0] if peer else "?"
        self.opened = self.owed_since = time.monotonic()
        self.owes = owes
        self.busy = busy

    def __repr__(self) -> str:
        return f"<Slot {self.peer} owes {self.owes or 'nothing'}>"


class Admission:
    """Counts a server's connections and keeps the rules; ``wrap`` makes its protocol factory.

    Args:
        max_connections: open connections allowed at once.
        header_timeout: seconds a request head may take, from its first byte to its last.
        progress: for HTTP servers, ``fn(protocol) -> (heads received so far, idle: waiting for its next
            request)``; None for servers of other protocols (no head deadline; every connection counts as busy).

    Attributes:
        open: the open connections' slots, oldest first.
        evicted: connections closed by a rule.
        evictions: the same, by reason ("over the cap", "head deadline").
        peak: the most connections ever open at once after admission made its choice.
    """

    def __init__(self, *, max_connections: int, header_timeout: float, progress: Progress | None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.progress = progress
        self.open: dict[Slot, None] = {}  # insertion-ordered: oldest first
        self.evictions: dict[str, int] = {}
        self.peak = 0

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], "_Guarded"]:
        """A protocol factory for ``loop.create_server`` that guards what ``factory`` makes."""
        return lambda: _Guarded(factory(), self)

    def admit(self, transport: asyncio.BaseTransport, *, owes: str | None,
              busy: Callable[[], bool] = lambda: True) -> Slot:
        """Give a new connection its slot; past the cap, close another connection (or this one)."""
        slot = Slot(transport, owes, busy)
        self.open[slot] = None
        while len(self.open) > self.max_connections:
            victim = self._victim(slot) or slot
            self.evict(victim, "over the cap")
            if victim is slot:
                break
        self.peak = max(self.peak, len(self.open))
        return slot

    def _victim(self, newcomer: Slot) -> Slot | None:
        others = [s for s in self.open if s is not newcomer]
        if not others:
            return None
        owing_ = [s for s in others if s.owes is not None]
        if owing_:
            return min(owing_, key=lambda s: s.owed_since)  # the one that has dawdled longest
        idle = [s for s in others if not s.busy()]
        if idle:
            return idle[0]  # the oldest idle one
        held: dict[str, int] = {}
        for s in others:
            held[s.peer] = held.get(s.peer, 0) + 1
        greediest = max(held, key=held.__getitem__)
        return next(s for s in others if s.peer == greediest)  # its oldest

    def evict(self, slot: Slot, reason: str) -> None:
        """Close a connection now (a TCP reset) and free its slot at once. Aborted even if it is already
        closing: a graceful close waits for its send buffer to drain, which a client that stopped reading
        never lets happen (aborting twice is harmless)."""
        if slot in self.open:
            del self.open[slot]
            self.evictions[reason] = self.evictions.get(reason, 0) + 1
        slot.transport.abort()

    def release(self, slot: Slot) -> None:
        """The connection is gone: free its slot (if a rule had not already)."""
        self.open.pop(slot, None)

    def abort_all(self) -> int:
        """Abort every open connection (when the server stops); returns how many there were."""
        slots = list(self.open)
        self.open.clear()
        for slot in slots:
            slot.transport.abort()
        return len(slots)

    @property
    def evicted(self) -> int:
        return sum(self.evictions.values())


class _Guarded(asyncio.Protocol):
    """Forwards every protocol event to the real protocol, and keeps the admission rules for it."""

    def __init__(self, inner: asyncio.Protocol, admission: Admission) -> None:
        self.inner = inner
        self.admission = admission
        self.slot: Slot | None = None  # set here, or beforehand by a TLS layer that admitted the connection
        self.timer: asyncio.TimerHandle | None = None
        self.heads = 0

    def _busy(self) -> bool:
        progress = self.admission.progress
        return True if progress is None else not progress(self.inner)[1]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)
        http = self.admission.progress is not None
        if self.slot is None:
            self.slot = self.admission.admit(transport, owes=HEAD if http else None, busy=self._busy)
        else:  # a TLS layer admitted the raw connection; the handshake is over, a head is owed now
            self.slot.busy = self._busy
            self._owe(HEAD if http else None)
        if http and self.slot in self.admission.open:
            self._arm()

    def _owe(self, what: str | None) -> None:
        assert self.slot is not None
        self.slot.owes = what
        self.slot.owed_since = time.monotonic()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.admission.header_timeout, self._deadline)

    def _deadline(self) -> None:
        self.timer = None
        if self.slot is not None and self.slot.owes == HEAD:
            self.admission.evict(self.slot, "head deadline")

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)  # type: ignore[attr-defined]
        progress = self.admission.progress
        if progress is None or self.slot is None:
            return
        heads, idle = progress(self.inner)
        if heads > self.heads:  # a head (or more) completed: nothing is owed now
            self.heads = heads
            if self.slot.owes == HEAD:
                self._owe(None)
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        elif self.slot.owes is None and idle:  # first bytes of a next head on an idle keep-alive connection
            self._owe(HEAD)
            self._arm()
        # else: a body, WebSocket frames, or pipelined bytes while a request is served: no head deadline

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.slot is not None:
            self.admission.release(self.slot)
        self.inner.connection_lost(exc)


def slot_of(transport: asyncio.BaseTransport | None) -> Slot | None:
    """The admission slot of a connection served by ``serve()``, from its transport (None if it has none).

    Works for a plain transport, a TLS one (the slot of the TCP connection under it) and a stream
    handler's ``writer.transport``.
    """
    if transport is None:
        return None
    protocol = transport.get_protocol()
    return protocol.slot if isinstance(protocol, _Guarded) else None


@contextmanager
def owing(transport: asyncio.BaseTransport | None, what: str) -> Iterator[None]:
    """While the block runs, the connection owes ``what`` (e.g. "a request body"): past the cap, such
    connections are closed first. A connection without a slot is left alone."""
    slot = slot_of(transport)
    if slot is None:
        yield
        return
    slot.owes, slot.owed_since = what, time.monotonic()
    try:
        yield
    finally:
        if slot.owes == what:
            slot.owes = None
