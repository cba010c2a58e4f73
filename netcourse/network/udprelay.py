"""The link without root, for UDP: a relay on 127.0.0.1 that delays, drops and paces datagrams.

The TCP relay (``relay``) copies a byte stream, so it can delay but never lose: TCP would hide the loss anyway.
A datagram is different: what the relay drops is gone, and the protocol above (QUIC, a game's own
acknowledgements) must notice. So this relay applies the link's loss itself, one draw per datagram from a
seeded generator, each way.

    relay = UdpRelay("127.0.0.1", server_port, rtt=0.1, loss=0.02).start()
    # clients send to 127.0.0.1:relay.port; the server sees them come from the relay
    relay.rebind()   # a NAT rebinding: every client now reaches the server from a new port
    relay.stop()

Each client address gets its own socket towards the server (as a NAT gives each flow its own mapping), so
the server can tell clients apart and its answers find their way back. ``rebind()`` replaces those sockets:
the server sees the same clients arrive from new ports, as when a NAT forgets a mapping (RFC 9000 §9.3.2's
"NAT rebinding").

The relay runs on an event loop in a thread of its own (``runtime.loopthread``), is listed by
``runtime.registry.live_servers()`` like every server, and stops when ``stop()`` is called, when the notebook
cell that started it runs again, or at interpreter exit. It holds at most ``MAX_CLIENTS`` client mappings (the oldest is forgotten first),
at most ``MAX_QUEUED`` datagrams and ``MAX_QUEUED_BYTES`` bytes in flight, and drops a datagram that would
wait more than ``MAX_QUEUE_DELAY`` seconds behind the rate limit (a router's tail drop); a client whose
socket towards the server cannot be made is forgotten, and the reason kept in ``errors``.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import OrderedDict
from typing import Any

from ..errors import LinkError
from ..runtime.loopthread import LoopThread

__all__ = ["UdpRelay", "MAX_CLIENTS", "MAX_QUEUED", "MAX_QUEUED_BYTES", "MAX_QUEUE_DELAY"]

MAX_CLIENTS = 256  # each a socket, a descriptor
MAX_QUEUED = 100_000  # datagrams in flight, both ways
MAX_QUEUED_BYTES = 8 << 20  # their bytes
MAX_QUEUE_DELAY = 2.0  # seconds a datagram may wait behind the rate limit before it is dropped (a router's tail drop)
MAX_WAITING = 64  # datagrams a client's mapping holds while its socket is being made
HEADERS = 28  # IPv4 (20) + UDP (8): what a datagram costs the link besides its payload, for pacing


class _Direction:
    """One direction's pacing, loss draws and counts."""

    def __init__(self, relay: "UdpRelay", rng: random.Random) -> None:
        self.relay, self.rng = relay, rng
        self.free_at = 0.0
        self.seen = self.delivered = self.lost = self.dropped = 0

    def schedule(self, send: Any, data: bytes, *args: Any) -> None:
        relay = self.relay
        self.seen += 1
        if relay.loss and self.rng.random() < relay.loss:
            self.lost += 1
            return
        loop = relay.loop
        now = loop.time()
        if (relay.in_flight >= MAX_QUEUED or relay.queued_bytes + len(data) > MAX_QUEUED_BYTES
                or self.free_at - now > MAX_QUEUE_DELAY):
            self.dropped += 1  # the queue is full: a router drops too
            return
        start = max(now, self.free_at)
        self.free_at = start + (8 * (len(data) + HEADERS) / relay.rate if relay.rate else 0.0)
        relay.in_flight += 1
        relay.queued_bytes += len(data)

        def deliver() -> None:
            relay.in_flight -= 1
            relay.queued_bytes -= len(data)
            try:
                sent = send(data, *args)
            except OSError:  # the mapping was replaced or closed meanwhile: like a packet lost in flight
                sent = False
            if sent is False:
                self.lost += 1
            else:
                self.delivered += 1

        loop.call_at(self.free_at + relay.rtt / 2, deliver)


class _Mapping(asyncio.DatagramProtocol):
    """One client's socket towards the server; what comes back goes to that client."""

    def __init__(self, relay: "UdpRelay", client: tuple[str, int]) -> None:
        self.relay, self.client = relay, client
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: list[bytes] = []  # datagrams due before the socket existed (at most MAX_WAITING)
        self.closed = False
        self.making: asyncio.Task | None = None  # the socket being made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.closed:  # forgotten (evicted, rebound, stopped) while its socket was being made
            transport.close()
            return
        for data in self.waiting:
            self.transport.sendto(data)
        self.waiting.clear()

    def close(self) -> None:
        self.closed = True
        self.waiting.clear()
        if self.making is not None and not self.making.done():
            self.making.cancel()
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> bool:
        """Hand a datagram to the socket; False when it could not go (the mapping closed, or too many wait)."""
        if self.closed:
            return False
        if self.transport is None:
            if len(self.waiting) >= MAX_WAITING:
                return False
            self.waiting.append(data)
            return True
        if self.transport.is_closing():
            return False
        self.transport.sendto(data)
        return True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        front = self.relay.front
        if front is not None and not front.is_closing():
            self.relay.inbound.schedule(front.sendto, data, self.client)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error (the server's port closed): UDP carries on, as a real network would


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: "UdpRelay") -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        mapping = self.relay.mapping(addr)
        self.relay.outbound.schedule(mapping.send, data)

    def error_received(self, exc: Exception) -> None:
        pass


class UdpRelay:
    """A UDP relay towards ``target_host:target_port``: ``rtt`` seconds round trip (half each way), ``loss``
    a probability per datagram each way, ``rate`` bit/s each way (0: no limit), draws from ``seed``.

    Attributes:
        port: where clients send (on ``host``, 127.0.0.1 by default).
        outbound, inbound: each direction's counts: ``seen`` (reached the relay), ``delivered``, ``lost`` (the
            loss draws), ``dropped`` (past ``MAX_QUEUED``).
    """

    def __init__(self, target_host: str, target_port: int, *, rtt: float, loss: float = 0.0, rate: float = 0.0,
                 seed: int = 1, host: str = "127.0.0.1", name: str = "udp relay") -> None:
        if not 0 <= rtt <= 10 or not 0 <= loss <= 1 or rate < 0:
            raise LinkError("a UDP relay needs 0 <= rtt <= 10 s, 0 <= loss <= 1 and rate >= 0")
        self.target = (target_host, target_port)
        self.rtt, self.loss, self.rate, self.host = rtt, loss, rate, host
        rng = random.Random(seed)
        self.outbound = _Direction(self, random.Random(rng.random()))
        self.inbound = _Direction(self, random.Random(rng.random()))
        self.port = 0
        self.in_flight = self.queued_bytes = 0
        self.errors: list[str] = []
        self.front: asyncio.DatagramTransport | None = None
        self._mappings: OrderedDict[tuple[str, int], _Mapping] = OrderedDict()
        self._background = LoopThread(name)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._background.loop

    @property
    def running(self) -> bool:
        return self._background.running

    # -- the loop's side ---------------------------------------------------------------------------

    def mapping(self, client: tuple[str, int]) -> _Mapping:
        """The client's socket towards the server, made on its first datagram (the oldest forgotten past
        ``MAX_CLIENTS``)."""
        found = self._mappings.get(client)
        if found is not None:
            self._mappings.move_to_end(client)
            return found
        if len(self._mappings) >= MAX_CLIENTS:
            _, oldest = self._mappings.popitem(last=False)
            oldest.close()
        made = _Mapping(self, client)
        self._mappings[client] = made
        made.making = self.loop.create_task(self.loop.create_datagram_endpoint(lambda: made, remote_addr=self.target))
        made.making.add_done_callback(lambda task: self._made(client, made, task))
        return made

    def _made(self, client: tuple[str, int], mapping: _Mapping, task: asyncio.Task) -> None:
        """A socket that could not be made (no descriptors left, say): forget the mapping, so the client's next
        datagram tries again, and say why."""
        if task.cancelled() or task.exception() is None:
            return
        self.errors.append(f"no socket towards the server for {client}: {task.exception()!r}")
        del self.errors[:-100]
        mapping.close()
        if self._mappings.get(client) is mapping:
            del self._mappings[client]

    async def _rebind(self) -> int:
        for client, old in list(self._mappings.items()):
            old.close()
            del self._mappings[client]
            self.mapping(client)
        return len(self._mappings)

    async def _open(self) -> int:
        self.front, _ = await self.loop.create_datagram_endpoint(lambda: _Front(self), local_addr=(self.host, 0))
        sock = self.front.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # bursts (capped by rmem_max)
        return self.front.get_extra_info("sockname")[1]

    async def _close(self) -> None:
        for mapping in self._mappings.values():
            mapping.close()
        if self.front is not None:
            self.front.close()

    # -- the caller's side -------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> "UdpRelay":
        try:
            self.port = self._background.start(self._open, self._close, timeout)
        except OSError as exc:
            raise LinkError(f"the UDP relay could not bind {self.host}: {exc}") from exc
        return self

    def rebind(self, timeout: float = 5.0) -> int:
        """Give every client a new socket (a new source port) towards the server: a NAT rebinding. Returns how
        many clients were rebound."""
        if not self.running:
            raise LinkError("the UDP relay is not running")
        return self._background.run(self._rebind(), timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the relay: its sockets close and its thread ends. Safe to call more than once."""
        self._background.stop(timeout)

    def __enter__(self) -> "UdpRelay":
        return self.start() if not self.running else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"UdpRelay(127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]}, rtt {self.rtt * 1000:g} ms, "
                f"loss {self.loss:g}; out {self.outbound.delivered} delivered, {self.outbound.lost} lost; "
                f"back {self.inbound.delivered} delivered, {self.inbound.lost} lost)")
