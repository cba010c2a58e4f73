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
import time

__all__ = ["make_relay"]

CHUNK = 65536


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    delay: float,
    rate: float,
    first_extra: float,
) -> None:
    """Copy one direction: each chunk leaves ``delay`` s after it arrived (plus serialisation at ``rate``)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    free_at = 0.0

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.ensure_future(send())
    extra = first_extra
    try:
        while True:
            data = await reader.read(CHUNK)
            now = time.monotonic()
            start = max(now, free_at)
            free_at = start + (8 * len(data) / rate if rate else 0.0)
            await queue.put((free_at + delay + extra, data))
            extra = 0.0
            if not data:
                break
        await sender
    finally:
        sender.cancel()


def make_relay(target_host: str, target_port: int, *, rtt: float, rate: float = 0.0):
    """A stream handler for ``serve()`` that relays to ``target`` across an emulated distance.

    Args:
        target_host, target_port: the real server.
        rtt: round-trip time to emulate, seconds (half of it each way).
        rate: bits per second each way; 0 for no limit.
    """

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
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
