"""The course's one Server-Sent Events client: an aiohttp GET read piece by piece through ``protocols.sse``.

- ``stream_events(session, url)``: the events of one connection, each with the moment it arrived, until the
  stream ends (or the caller stops iterating).
- ``event_source(...)``: what a browser's ``EventSource`` does with them (WHATWG HTML §9.2.3): when a stream
  ends, wait the retry time, reconnect with ``Last-Event-ID``, and go on; a half-received event is discarded.

Both share a caller's ``SSEDecoder`` when given one, so the last event ID and the retry time carry over from
one connection to the next, as they do in a browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp

from ..errors import NetcourseError
from ..protocols.sse import MEDIA_TYPE, Event, SSEDecoder

__all__ = ["stream_events", "event_source"]


async def stream_events(session: aiohttp.ClientSession, url: str, *, headers: dict[str, str] | None = None,
                        decoder: SSEDecoder | None = None, timeout: aiohttp.ClientTimeout | None = None,
                        on_open: Callable[[], object] | None = None) -> AsyncIterator[tuple[float, Event]]:
    """Open one event stream and yield ``(time.perf_counter() at arrival, event)`` as events complete.

    ``on_open`` is called once the stream's head has arrived (to start publishing, say, only when the client
    is surely listening). Raises ``NetcourseError`` if the answer is not a 200 ``text/event-stream``. The
    stream's end, or the caller leaving the loop, closes the connection.
    """
    decoder = decoder if decoder is not None else SSEDecoder()
    options = {"timeout": timeout} if timeout is not None else {}
    async with session.get(url, headers=headers or {}, **options) as resp:
        if resp.status != 200 or not resp.headers.get("Content-Type", "").startswith(MEDIA_TYPE):
            raise NetcourseError(f"the stream answered {resp.status} {resp.headers.get('Content-Type')}")
        if on_open is not None:
            on_open()
        async for piece in resp.content.iter_any():
            now = time.perf_counter()
            for event in decoder.feed(piece):
                yield now, event


async def event_source(url: str, until: Callable[[list], bool], *, limit: float, default_retry_ms: int = 3000,
                       log: list, resyncs: list, connections: list, t0: float, session: aiohttp.ClientSession,
                       decoder: SSEDecoder) -> None:
    """What a browser's EventSource does: read, and when the stream ends, wait the retry time, then reconnect
    sending Last-Event-ID (WHATWG §9.2.3). Stops when ``until(log)`` or after ``limit`` s.

    ``log`` gets ``(event id, seconds since t0, connection number)`` for each event; ``resyncs`` the data of
    each ``resync`` event; ``connections`` ``(opened, Last-Event-ID sent, closed)`` for each connection.
    """
    loop = asyncio.get_running_loop()
    n = 0
    while loop.time() - t0 < limit and not until(log):
        n += 1
        headers = {"Last-Event-ID": decoder.last_event_id} if decoder.last_event_id else {}
        opened = loop.time() - t0
        try:
            async for _, event in stream_events(session, url, headers=headers, decoder=decoder):
                if event.event == "resync":
                    resyncs.append(event.data)
                else:
                    log.append((int(event.id), loop.time() - t0, n))
                if until(log):
                    break
        except aiohttp.ClientPayloadError:
            pass  # the server dropped mid-stream: reconnect, as a browser does
        decoder.end_of_stream()  # a half-received event is discarded, never half-counted
        connections.append((opened, headers.get("Last-Event-ID"), loop.time() - t0))
        if until(log):
            return
        wait = (decoder.reconnection_time if decoder.reconnection_time is not None else default_retry_ms) / 1000
        await asyncio.sleep(wait)
