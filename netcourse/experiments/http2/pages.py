"""A page of small resources over HTTP/1.1 and over HTTP/2, across the emulated link.

HTTP/1.1 answers one request at a time per connection, so a browser opens up to six connections to a host
and queues the rest (RFC 9112 §9.4 asks clients to limit them; six is what browsers settled on). HTTP/2 sends
every request at once on one connection, each on its own stream (RFC 9113 §5). ``page_load`` fetches the same
``resources`` both ways through one link and returns when each finished, the connections each opened, and
HTTP/2's request header blocks (HPACK, RFC 7541): the first carries every field, the next ones mostly
indexes into the table the first one filled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from ...apps.http2 import make_h1_app, make_h2_handler
from ...clients.http2 import fetch
from ...network.link import link

__all__ = ["PageLoad", "page_load", "fetch_h1", "H1_CONNECTIONS"]

H1_CONNECTIONS = 6


@dataclass
class PageLoad:
    """One version's fetch of the page.

    Attributes:
        version: "HTTP/1.1" or "HTTP/2".
        done: seconds from the start until each resource's last byte, in the order they finished.
        connections: TCP connections the client opened.
        header_blocks: HTTP/2 only: each request's HEADERS payload in bytes, in the order sent.
        link: which link ran ("tap" or "relay") and its round trip.
    """

    version: str
    rtt_ms: float
    done: list[float] = field(default_factory=list)
    connections: int = 0
    header_blocks: list[int] = field(default_factory=list)
    link: str = ""

    @property
    def seconds(self) -> float:
        return max(self.done, default=float("nan"))

    @property
    def round_trips(self) -> float:
        return self.seconds * 1000 / self.rtt_ms if self.rtt_ms else float("nan")

    def __repr__(self) -> str:
        return (f"{self.version:<8} {len(self.done)} resources in {self.seconds * 1000:,.0f} ms "
                f"({self.round_trips:.1f} round trips of {self.rtt_ms:g} ms) over {self.connections} "
                f"connection{'s' if self.connections != 1 else ''}")


async def fetch_h1(url: str, paths: list[str]) -> tuple[dict[str, float], int]:
    """GET every path over HTTP/1.1 with six connections at most (a browser's limit): path -> seconds from the
    start until it finished, and the connections opened."""
    opened = [0]

    async def on_connection(session, context, params) -> None:
        opened[0] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    connector = aiohttp.TCPConnector(limit_per_host=H1_CONNECTIONS)
    done: dict[str, float] = {}
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:

        async def get(path: str) -> None:
            async with session.get(url + path) as resp:
                await resp.read()
                resp.raise_for_status()
            done[path] = time.perf_counter() - start

        await asyncio.gather(*(get(p) for p in paths))
    return done, opened[0]


def page_load(rtt_ms: float = 100.0, resources: int = 30, size: int = 2000, *, mode: str = "auto") -> dict[str, PageLoad]:
    """Fetch ``resources`` of ``size`` bytes over HTTP/1.1 and HTTP/2 across a link of ``rtt_ms``."""
    if not 1 <= resources <= 100 or not 0 <= size <= 100_000:
        raise ValueError("resources is 1 to 100 and size 0 to 100,000 bytes")
    paths = [f"/r/{i}?size={size}" for i in range(resources)]
    with link(rtt_ms=rtt_ms, mode=mode) as net:
        h1 = net.serve(make_h1_app())
        h2 = net.serve(make_h2_handler(), name="HTTP/2 server")
        host = net.addresses[1]
        done, opened = net.run(fetch_h1(f"http://{host}:{h1.port}", paths))
        old = PageLoad("HTTP/1.1", rtt_ms, sorted(done.values()), opened, link=net.mode)
        page = net.run(fetch(host, h2.port, paths))
        new = PageLoad("HTTP/2", rtt_ms, sorted(page.done.values()), page.connections, page.header_blocks, net.mode)
        if set(page.status.values()) != {200}:
            raise RuntimeError(f"the HTTP/2 server answered {sorted(set(page.status.values()))}")
    return {"HTTP/1.1": old, "HTTP/2": new}
