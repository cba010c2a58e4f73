"""The link without root: a TCP relay on 127.0.0.1 that delays, and paces, what it carries.

A client connects to the relay; the relay connects to the real server and copies bytes both ways.
Each chunk is held for half the round trip, and sent no faster than the rate allows, so
application-level timings are those of a distant server: a request/response costs one RTT, a
WebSocket echo one RTT, a long poll's delivery half an RTT. A *new* connection also pays TCP's
handshake: the relay holds the client's first bytes one extra RTT, so the first byte of a fresh
HTTP request's answer arrives after about 2 RTT, as on a real network.

What it cannot show is TCP itself at a distance: slow start, loss and retransmission happen in
the kernel on a loopback connection here. Lessons replay those from recordings made on the real
(namespace) link.
"""

from __future__ import annotations

import asyncio
import socket

__all__ = ["make_relay", "Meter"]

CHUNK = 65536
MAX_BUFFERED = 1 << 20  # bytes waiting to be written before the relay stops reading


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    delay: float,
    rate: float,
    first_extra: float,
) -> None:
    """Copy one direction: each chunk leaves ``delay`` s after it arrived (plus serialisation at ``rate``).

    Each chunk's write is scheduled on the loop's clock (``call_at``), in arrival order, so no task
    switch stands between the due time and the write.
    """
    loop = asyncio.get_running_loop()
    free_at = last_due = 0.0
    extra = first_extra

    def deliver(data: bytes) -> None:
        if writer.is_closing():
            return
        if data:
            writer.write(data)
        elif writer.can_write_eof():
            writer.write_eof()

    while True:
        data = await reader.read(CHUNK)
        now = loop.time()
        start = max(now, free_at)
        free_at = start + (8 * len(data) / rate if rate else 0.0)
        # Strictly after what came earlier: the loop orders equal times arbitrarily, bytes must not be.
        due = max(free_at + delay + extra, last_due + 1e-6)
        last_due = due
        extra = 0.0
        loop.call_at(due, deliver, data)
        if not data:
            await asyncio.sleep(max(0.0, due - loop.time()))  # the end leaves last
            return
        if writer.transport.get_write_buffer_size() > MAX_BUFFERED:  # the far side is slow: wait for it
            await asyncio.sleep(max(0.0, due - loop.time()))
            await writer.drain()


class Meter:
    """Bytes and TCP segments between clients and the relay, read from the kernel (TCP_INFO) of the relay's
    client-facing sockets: what crossed the near side of the emulated wire, both ways.

    Attributes:
        connections: connections seen in all.
    """

    def __init__(self) -> None:
        self._open: set = set()  # asyncio's TransportSocket wrappers
        self._closed = [0, 0]  # bytes, segments of connections already ended
        self.connections = 0

    def _add(self, sock: socket.socket) -> None:
        self._open.add(sock)
        self.connections += 1

    def _end(self, sock: socket.socket) -> None:
        if sock in self._open:
            self._open.discard(sock)
            b, s = _counts(sock)
            self._closed[0] += b
            self._closed[1] += s

    @property
    def open(self) -> int:
        """Connections still being relayed (their counts are final once they end)."""
        return len(self._open)

    def totals(self) -> tuple[int, int]:
        """(payload bytes, segments) so far, both directions, open connections included."""
        b, s = self._closed
        for sock in list(self._open):
            ob, os_ = _counts(sock)
            b, s = b + ob, s + os_
        return b, s


def _counts(sock: socket.socket) -> tuple[int, int]:
    from ..runtime.tcpinfo import tcp_info

    try:
        info = tcp_info(sock)
    except OSError:
        return 0, 0
    if info is None:
        return 0, 0
    return info.bytes_acked + info.bytes_received, info.segs_in + info.segs_out


def make_relay(target_host: str, target_port: int, *, rtt: float, rate: float = 0.0, meter: Meter | None = None):
    """A stream handler for ``serve()`` that relays to ``target`` across an emulated distance.

    Args:
        target_host, target_port: the real server.
        rtt: round-trip time to emulate, seconds (half of it each way).
        rate: bits per second each way; 0 for no limit.
        meter: counts what crosses between the clients and the relay, if given.

    The handler's ``rebind()`` resets every connection it carries (a NAT rebinding, as TCP sees it).
    """

    live: set[asyncio.StreamWriter] = set()  # the client side of every relayed connection

    def rebind() -> int:
        """A NAT that forgets its mappings: the client's next segments reach the server from a port the server
        has no connection for, and the server answers with a reset (RFC 9293 §3.10.7.1). Here: every relayed
        connection is reset on both sides. Returns how many."""
        for writer in list(live):
            writer.transport.abort()
        return len(live)

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        live.add(client_writer)
        client_sock = client_writer.get_extra_info("socket")
        if meter is not None and client_sock is not None:
            meter._add(client_sock)
        try:
            await _relay(client_reader, client_writer)
        finally:
            live.discard(client_writer)
            if meter is not None and client_sock is not None:
                meter._end(client_sock)

    async def _relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        for w in (client_writer, server_writer):
            # The relay is the wire, not an application: it must not add Nagle's wait to what it carries.
            # (Without this, a second small write waited for the peer's delayed ACK: +40 ms on Linux, which
            # turned TLS 1.3's three round trips into four.)
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pumps = [asyncio.ensure_future(_pump(client_reader, server_writer, delay=rtt / 2, rate=rate, first_extra=rtt)),
                 asyncio.ensure_future(_pump(server_reader, client_writer, delay=rtt / 2, rate=rate, first_extra=0.0))]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for pump in done:
                pump.result()  # a side that went away raises here
        except ConnectionError:
            pass  # one side went away: the relay ends with it
        finally:
            for pump in pumps:  # the other direction ends too: no orphan task outlives the connection
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            if client_writer.transport.is_closing():  # reset by rebind(): the server's side is reset too
                server_writer.transport.abort()
            server_writer.close()

    relay.rebind = rebind  # type: ignore[attr-defined]
    return relay
