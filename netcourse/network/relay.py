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

__all__ = ["make_relay"]

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


def make_relay(target_host: str, target_port: int, *, rtt: float, rate: float = 0.0):
    """A stream handler for ``serve()`` that relays to ``target`` across an emulated distance.

    Args:
        target_host, target_port: the real server.
        rtt: round-trip time to emulate, seconds (half of it each way).
        rate: bits per second each way; 0 for no limit.
    """

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        for w in (client_writer, server_writer):
            # The relay is the wire, not an application: it must not add Nagle's wait to what it carries.
            # (Without this, a second small write waited for the peer's delayed ACK: +40 ms on Linux, which
            # turned TLS 1.3's three round trips into four.)
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(
                _pump(client_reader, server_writer, delay=rtt / 2, rate=rate, first_extra=rtt),
                _pump(server_reader, client_writer, delay=rtt / 2, rate=rate, first_extra=0.0),
            )
        except ConnectionError:
            pass  # one side went away: the relay ends with it
        finally:
            server_writer.close()

    return relay
