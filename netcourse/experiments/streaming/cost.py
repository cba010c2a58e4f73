"""Notebook 06, sections 5 and 6: bytes per message against a WebSocket frame and a long poll (notebook 03's
server), and HTTP/1.1's six connections per host stalling a seventh request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from ...apps.polling import MessageLog
from ...apps.streaming import make_app
from ...protocols.httpwire import head_size, response_head_size
from ...runtime.server import serve
from ...runtime.waiting import run_async
from .common import UA, event_body_bytes

__all__ = ["event_body_bytes", "ConnectionLimit", "connection_limit", "request_head_sizes", "long_poll_bytes", "per_message_bytes"]



@dataclass
class ConnectionLimit:
    """A page that holds event streams open and then asks for one more thing from the same host.

    Attributes:
        limit: connections per host the client allows (browsers: about 6 for HTTP/1.1).
        streams: event streams held open.
        hold: seconds the streams stay open.
        waited_ms: how long the extra request took, from asking to its answer.
    """

    limit: int
    streams: int
    hold: float
    waited_ms: float

    def __repr__(self) -> str:
        return (f"{self.streams} streams open, {self.limit} connections per host allowed: the next request took "
                f"{self.waited_ms:.0f} ms")


def connection_limit(limit: int = 6, streams: int = 6, hold: float = 0.6) -> ConnectionLimit:
    """Open ``streams`` event streams through an aiohttp client limited to ``limit`` connections per host (as
    a browser is), then fetch /fixed from the same host; time that fetch."""
    if not 1 <= limit <= 50 or not 0 <= streams <= 50 or not 0 < hold <= 5:
        raise ValueError("need 1 <= limit <= 50, 0 <= streams <= 50 and 0 < hold <= 5 s")
    with serve(make_app(keepalive=0.2), name="sse") as srv:

        async def go() -> float:
            connector = aiohttp.TCPConnector(limit_per_host=limit)
            async with aiohttp.ClientSession(connector=connector, headers=UA) as session:

                async def stream() -> None:
                    async with session.get(f"{srv.url}/events") as resp:
                        try:
                            await asyncio.wait_for(resp.content.read(), hold)
                        except asyncio.TimeoutError:
                            pass  # the page closes the stream (navigates away)

                tasks = [asyncio.create_task(stream()) for _ in range(streams)]
                await asyncio.sleep(0.1)
                t = time.perf_counter()
                async with session.get(f"{srv.url}/fixed") as resp:
                    await resp.read()
                waited = (time.perf_counter() - t) * 1000
                await asyncio.gather(*tasks, return_exceptions=True)
                return waited

        waited = run_async(go(), hold + 20)
    return ConnectionLimit(limit, streams, hold, waited)


def request_head_sizes() -> tuple[aiohttp.TraceConfig, list[int]]:
    """A trace config for an aiohttp session, and the list it fills: the size in bytes of each request head
    the session sends (request line, headers, blank line), rebuilt from the headers aiohttp reports sent."""
    heads: list[int] = []

    async def sent(session, ctx, params) -> None:
        heads.append(head_size(f"{params.method} {params.url.raw_path_qs} HTTP/1.1", params.headers.items()))

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(sent)
    return trace, heads


def long_poll_bytes(size: int = 20) -> dict[str, int]:
    """One long poll that brings one ``size``-byte message, against the course's polling server (notebook 03),
    on a kept-alive connection: its request head, response head, and the JSON around the message, in bytes.
    The heads are sized (``protocols.httpwire.head_size``) from the header lines aiohttp sent and received."""
    from ...apps.polling import make_app as polling_app

    if not 1 <= size <= 10_000:
        raise ValueError("size is 1 to 10,000 bytes")
    log = MessageLog()
    trace, heads = request_head_sizes()
    with serve(polling_app(log), name="long polling") as srv:
        async def poll() -> tuple[int, int]:
            async with aiohttp.ClientSession(trace_configs=[trace], headers=UA) as session:
                async with session.get(f"{srv.url}/messages?after=0&wait=1") as warm:  # the connection, set up
                    await warm.read()
                heads.clear()
                srv.loop.call_later(0.05, log.append, "x" * size)
                async with session.get(f"{srv.url}/messages?after={log.last_id}&wait=5") as resp:
                    body = await resp.read()
                    return response_head_size(resp), len(body) - size

        response_head, json_bytes = run_async(poll(), 15)
    return {"request head": heads[0], "response head": response_head, "JSON around the message": json_bytes}


def per_message_bytes(size: int = 20) -> dict[str, int]:
    """Bytes of protocol overhead per ``size``-byte message pushed to the client (TCP/IP headers aside):
    SSE (its ``id:``/``data:`` lines and blank line, plus the chunk's size line and CRLFs), a WebSocket frame,
    and a long poll (its request head, response head and JSON, measured against notebook 03's server)."""
    from ...protocols.sse import encode
    from ...protocols.wsframe import header_length

    body = encode(data="x" * size, id="1234")
    sse = len(body) - size + len(f"{len(body):x}\r\n\r\n")
    poll = long_poll_bytes(size)
    return {"SSE (id, data, chunk framing)": sse, "WebSocket frame (server → client)": header_length(size, False),
            "long poll (request + response heads + JSON, notebook 03's server)": sum(poll.values())}
