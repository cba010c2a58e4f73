"""Seven event streams from one page: over HTTP/1.1 the seventh waits; over HTTP/2 all seven run on one connection.

A browser opens at most six HTTP/1.1 connections to one host (notebook 06 met the limit: the seventh
``EventSource`` hangs until another closes). An event stream holds its connection for as long as it lasts, so
six streams use every connection there is. HTTP/2 carries each stream on a stream of one connection, and the
limit becomes the server's SETTINGS_MAX_CONCURRENT_STREAMS (100 here, RFC 9113 §6.5.2).

``seven_streams`` opens ``streams`` event streams at once, each ``count`` events ``gap`` seconds apart, both ways,
and reports when each stream's first event arrived.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from ...apps.http2 import make_h1_app, make_h2_handler
from ...clients.http2 import fetch
from ...network.link import link
from .pages import H1_CONNECTIONS

__all__ = ["Streams", "seven_streams"]


@dataclass
class Streams:
    """When each stream's first event arrived (seconds from the start), per version."""

    rtt_ms: float
    gap: float
    count: int
    first: dict[str, list[float]] = field(default_factory=dict)
    connections: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "\n".join(f"{version:<8} over {self.connections[version]} connection(s): first events at "
                         + ", ".join(f"{t * 1000:,.0f} ms" for t in times)
                         for version, times in self.first.items())


async def _h1(url: str, streams: int) -> tuple[list[float], int]:
    opened = [0]

    async def on_connection(session, context, params) -> None:
        opened[0] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    connector = aiohttp.TCPConnector(limit_per_host=H1_CONNECTIONS)  # a browser's six
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:

        async def one() -> float:
            async with session.get(url) as resp:
                await resp.content.readuntil(b"\n\n")
                first = time.perf_counter() - start
                await resp.read()
                return first

        firsts = await asyncio.gather(*(one() for _ in range(streams)))
    return sorted(firsts), opened[0]


def seven_streams(rtt_ms: float = 100.0, *, streams: int = 7, count: int = 5, gap: float = 0.2,
                  mode: str = "auto") -> Streams:
    """``streams`` event streams at once over HTTP/1.1 (six connections at most) and over HTTP/2 (one)."""
    if not 1 <= streams <= 50 or not 1 <= count <= 100 or not 0 <= gap <= 2:
        raise ValueError("streams is 1 to 50, count 1 to 100, gap 0 to 2 s")
    result = Streams(rtt_ms, gap, count)
    query = f"/events?count={count}&gap={gap}"
    with link(rtt_ms=rtt_ms, mode=mode) as net:
        h1 = net.serve(make_h1_app())
        h2 = net.serve(make_h2_handler(), name="HTTP/2 server")
        host = net.addresses[1]
        result.first["HTTP/1.1"], result.connections["HTTP/1.1"] = net.run(_h1(f"http://{host}:{h1.port}{query}", streams))
        page = net.run(fetch(host, h2.port, [f"{query}&stream={i}" for i in range(streams)]))
        result.first["HTTP/2"] = sorted(page.first.values())
        result.connections["HTTP/2"] = page.connections
    return result
