"""HTTP streaming for notebook 06: a response sent in pieces, and Server-Sent Events with a replay buffer.

| endpoint | behaviour |
| --- | --- |
| ``GET /chunked?pieces=5&gap=0.2&size=16`` | ``pieces`` writes of ``size`` bytes, ``gap`` s apart: each write one chunk (RFC 9112 §7.1) |
| ``GET /fixed?pieces=5&size=16`` | the same bytes at once, with a ``Content-Length`` |
| ``GET /burst?pieces=5&size=16`` | the pieces written back to back with Nagle on: chunks that TCP merges |
| ``GET /events`` | an event stream (``text/event-stream``) of the ``MessageLog``'s messages, each with its id |

The event stream:

- starts with ``retry: <ms>`` (how long the client waits before reconnecting) and ``id: <cursor>`` (where it
  starts, so that a client dropped before any event resumes from there), then replays the messages
  after the request's ``Last-Event-ID``, then sends new ones as they are published, with no gap and no
  duplicate at the seam (the cursor only moves forward);
- keeps the newest ``MessageLog.limit`` messages. A ``Last-Event-ID`` older than that, or one that is not a
  message id at all, is answered by an event of type ``resync`` saying what was lost and where the stream
  starts again (its ``id`` moves the client's cursor there): never a silent gap;
- sends a comment line after ``keepalive`` s without messages (idle proxies and NATs, notebook 04);
- ends after ``drop`` events when the query asks (``?drop=3``: a server restart, for the reconnect demo),
  and after ``MAX_STREAM_SECONDS`` in any case;
- takes ``?retry=MS`` (the retry sent), ``?accel=no`` (adds ``X-Accel-Buffering: no``: buffering proxies
  pass the stream through) and ``?no_transform=1`` (adds ``Cache-Control: no-transform``: proxies must not
  compress it).

At most ``max_streams`` streams are open at once (503 past that); an answer of pieces is at most ``MAX_BODY``
bytes; every write waits at most ``WRITE_TIMEOUT`` for a client that does not read, then the connection is
aborted (its slot freed). Every app is wrapped by ``apps.safety``.

Event ids count up from 1 in each run of the server, whose log lives in memory: after a restart, an old
client's Last-Event-ID may name an event of the previous run. Only an id *ahead* of the new log is caught;
a durable log (notebook 08) or the run's epoch in the id (as notebook 03's answers carry) closes that gap.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ..errors import CursorTooOld
from ..protocols.sse import MEDIA_TYPE, comment, encode
from .polling import MessageLog
from .safety import safe_app

__all__ = ["make_app", "open_streams", "LOG_KEY", "MAX_STREAM_SECONDS", "MAX_PIECES", "MAX_PIECE", "MAX_GAP", "MAX_BODY", "WRITE_TIMEOUT"]

MAX_PIECES = 100
MAX_PIECE = 64 * 1024
MAX_GAP = 2.0
MAX_STREAM_SECONDS = 120.0
MAX_BODY = 256 * 1024  # pieces × size of one /chunked, /fixed or /burst answer
WRITE_TIMEOUT = 10.0  # seconds one write may wait for a client that does not read
LOG_KEY = web.AppKey("stream_log", MessageLog)
_SETTINGS = web.AppKey("stream_settings", dict)


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


def _gap(request: web.Request) -> float:
    raw = request.query.get("gap", "0.2")
    try:
        gap = float(raw)
    except ValueError:
        gap = -1.0
    if not 0 <= gap <= MAX_GAP:
        raise web.HTTPBadRequest(text=f"gap must be a number of seconds from 0 to {MAX_GAP:g}, not {raw[:20]!r}")
    return gap


def _shape(request: web.Request, default_pieces: int = 5) -> tuple[int, int]:
    pieces = _int(request, "pieces", default_pieces, 1, MAX_PIECES)
    size = _int(request, "size", 16, 1, MAX_PIECE)
    if pieces * size > MAX_BODY:
        raise web.HTTPBadRequest(text=f"pieces × size is {pieces * size:,} bytes, over the limit of {MAX_BODY:,}")
    return pieces, size


async def _write(request: web.Request, resp: web.StreamResponse, data: bytes) -> None:
    """One write, with a deadline: a client that stops reading cannot hold the handler (or its slot)."""
    try:
        await asyncio.wait_for(resp.write(data), WRITE_TIMEOUT)
    except asyncio.TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError(f"the client read nothing for {WRITE_TIMEOUT:g} s") from None


def _piece(i: int, size: int) -> bytes:
    """Piece ``i`` (from 1): its number, then dots up to ``size`` bytes, ending in a newline."""
    head = f"piece {i} "
    body = (head + "." * max(0, size - len(head) - 1))[: max(size - 1, 0)] + "\n"
    return body.encode()[:size] if size else b""


async def _chunked(request: web.Request) -> web.StreamResponse:
    pieces, size = _shape(request)
    gap = _gap(request)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain", "Cache-Control": "no-store"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        for i in range(1, pieces + 1):
            if i > 1 and gap:
                await asyncio.sleep(gap)
            await _write(request, resp, _piece(i, size))  # one write, one chunk
        await asyncio.wait_for(resp.write_eof(), WRITE_TIMEOUT)
    except (ConnectionError, asyncio.TimeoutError):
        pass  # the client went away or stopped reading
    return resp


async def _fixed(request: web.Request) -> web.Response:
    pieces, size = _shape(request)
    body = b"".join(_piece(i, size) for i in range(1, pieces + 1))
    return web.Response(body=body, content_type="text/plain", headers={"Cache-Control": "no-store"})


async def _burst(request: web.Request) -> web.StreamResponse:
    """The pieces written back to back with Nagle's algorithm on (TCP_NODELAY off): while the first segment
    waits for its ACK, the next chunks queue up and leave together, several chunks in one segment."""
    import socket

    pieces, size = _shape(request)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain", "Cache-Control": "no-store"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        for i in range(1, pieces + 1):
            await _write(request, resp, _piece(i, size))
        await asyncio.wait_for(resp.write_eof(), WRITE_TIMEOUT)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    return resp


def _cursor(raw: str | None) -> int | None:
    """The Last-Event-ID as a message id; None when absent; -1 when it is no message id at all."""
    if raw is None or raw == "":
        return None
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else -1


async def _events(request: web.Request) -> web.StreamResponse:
    log = request.app[LOG_KEY]
    settings = request.app[_SETTINGS]
    if settings["open"] >= settings["max_streams"]:
        raise web.HTTPServiceUnavailable(text=f"this server already holds {settings['max_streams']} streams")
    retry = _int(request, "retry", settings["retry_ms"], 0, 60_000)
    drop = _int(request, "drop", 0, 0, 10_000)
    headers = {"Content-Type": MEDIA_TYPE, "Cache-Control": "no-cache"}
    if request.query.get("accel") == "no":
        headers["X-Accel-Buffering"] = "no"
    if request.query.get("no_transform") == "1":
        headers["Cache-Control"] = "no-cache, no-transform"
    asked = request.headers.get("Last-Event-ID")
    cursor = _cursor(asked)
    resp = web.StreamResponse(headers=headers)
    resp.enable_chunked_encoding()
    settings["open"] += 1
    try:
        await resp.prepare(request)
        if cursor is None:
            cursor = log.last_id  # a new client: from now on
        elif cursor == -1 or cursor > log.last_id:
            what = "is not an event id of this stream" if cursor == -1 else "is ahead of this stream (a restart?)"
            cursor = log.last_id
            await _write(request, resp, _resync(f"Last-Event-ID {asked[:40]!r} {what}", cursor))
        # the prelude: the reconnection time, and the cursor as the last event id, so that a client dropped
        # before the first event resumes from here (not from "now" again, which would skip what came between)
        await _write(request, resp, f"retry: {retry}\nid: {cursor}\n\n".encode())
        sent = 0
        deadline = asyncio.get_running_loop().time() + MAX_STREAM_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            try:
                left = deadline - asyncio.get_running_loop().time()
                found = await log.wait_after(cursor, max(0.0, min(settings["keepalive"], left)))
            except CursorTooOld as exc:
                lost = f"events {cursor + 1} to {exc.resync_after} are no longer kept"
                cursor = exc.resync_after
                await _write(request, resp, _resync(lost, cursor))
                continue
            if not found:
                await _write(request, resp, comment("keep-alive"))
                continue
            typed = settings["event_type"]
            for msg_id, text, _ in found:
                await _write(request, resp, encode(data=text, id=str(msg_id),
                                                   event_type=typed(msg_id, text) if typed else None))
                cursor = msg_id
                sent += 1
                if drop and sent >= drop:
                    return resp  # the stream ends (the client reconnects with Last-Event-ID)
        return resp
    except (ConnectionResetError, ConnectionError):
        return resp  # the client went away
    finally:
        settings["open"] -= 1


def _resync(reason: str, cursor: int) -> bytes:
    data = json.dumps({"reason": reason, "resume_after": cursor, "do": "reload the full state, then go on"})
    return encode(data=data, event_type="resync", id=str(cursor))


def open_streams(app: web.Application) -> int:
    """Event streams the app holds open now (each counted from the moment its request is taken)."""
    return app[_SETTINGS]["open"]


def make_app(log: MessageLog | None = None, *, retry_ms: int = 1000, keepalive: float = 15.0,
             max_streams: int = 100, event_type=None) -> web.Application:
    """The streaming app. Pass a ``MessageLog`` to publish into it from the experiment (on the server's loop).

    ``event_type(msg_id, text)`` names an event's type (its ``event:`` field); None, or a function that
    returns None, leaves the field out, and the event's type is then "message"."""
    if not 0 <= retry_ms <= 60_000 or not 0 < keepalive <= 60 or max_streams < 1:
        raise ValueError("need 0 <= retry_ms <= 60000, 0 < keepalive <= 60 and max_streams >= 1")
    if event_type is not None and not callable(event_type):
        raise TypeError("event_type is a function (msg_id, text) -> str | None")
    app = safe_app()
    app[LOG_KEY] = log or MessageLog()
    app[_SETTINGS] = {"retry_ms": retry_ms, "keepalive": keepalive, "max_streams": max_streams, "open": 0,
                      "event_type": event_type}
    app.router.add_get("/chunked", _chunked)
    app.router.add_get("/fixed", _fixed)
    app.router.add_get("/burst", _burst)
    app.router.add_get("/events", _events)
    return app
