"""A reverse proxy that buffers and compresses as real ones do: what breaks HTTP streaming (notebook 06).

Between a client and an upstream server, for one request per connection (``Connection: close``), it reads the
upstream's response body (decoding chunked framing with ``protocols.chunked``) and passes it on re-chunked,
after up to two transformations:

- **buffering** (``buffer=N``): body bytes are held until N have gathered or the body ends, then sent as one
  chunk (nginx's ``proxy_buffering on`` with an N-byte buffer). ``buffer=None`` passes each piece on as it
  comes.
- **compression** (``gzip=True``), when the client accepts gzip: a gzip compressor holds small inputs until
  a block's worth has gathered; only ``gzip_flush=True`` (zlib's ``Z_SYNC_FLUSH`` after every piece) pushes
  each piece out at once, at a small cost in bytes.

And the escape hatches, as real proxies treat them:

- ``X-Accel-Buffering: no`` in the response (nginx's header): no buffering for it, and, as in nginx's
  unbuffered mode, every piece is flushed through the compressor at once (still compressed, never held).
  The proxy removes the header, as nginx does;
- ``Cache-Control: no-transform``: the body must not be changed, so no compression (RFC 9111 §5.2.2.6;
  Apache's mod_deflate and Squid honour it, nginx's gzip module does not). It does nothing to buffering;
- ``compress_event_stream=False``: responses of type ``text/event-stream`` are not compressed (the fix on
  the proxy's side; nginx's default ``gzip_types`` is ``text/html`` alone, so it compresses event streams
  only when someone adds the type).

``make_proxy(host, port, ...)`` returns a stream handler for ``serve()``. Every read and write has a
deadline, and the whole exchange one too; how many clients it holds at once is ``serve()``'s cap, where a client
still sending its head owes it, and is among the first closed past the cap (``runtime.admission``). An
upstream that cannot be reached, or answers with framing the RFCs forbid (two Content-Lengths, a coding
other than chunked, CR/LF/NUL in a value, a 1xx), gets the client a 502 with the reason, or, once the
response has begun, an aborted connection (never an error message inside the body). A client's own malformed
request gets the 4xx its parser names (400, or 431 for a head over ``MAX_HEAD``), never a 502. An upstream that
sends both Content-Length and Transfer-Encoding is framed by the latter, and its Content-Length is not
forwarded (RFC 9112 §6.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib

from ..errors import ChunkedParseError, HttpParseError
from ..protocols.chunked import LAST_CHUNK, ChunkedDecoder, Data, encode_chunk
from ..protocols.httpwire import parse_head, split_head
from ..runtime.admission import HEAD, owing

__all__ = ["make_proxy", "MAX_HEAD", "TIMEOUT", "MAX_SECONDS"]

MAX_HEAD = 16 * 1024
TIMEOUT = 30.0  # seconds any one read or write may wait
MAX_SECONDS = 300.0  # the longest one proxied exchange may last
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def make_proxy(host: str, port: int, *, buffer: int | None = 4096, gzip: bool = False, gzip_flush: bool = False,
               honour_accel: bool = True, honour_no_transform: bool = True, compress_event_stream: bool = True,
               timeout: float = TIMEOUT, max_seconds: float = MAX_SECONDS):
    """A stream handler that proxies to ``host:port`` with the given buffering and compression.

    Each client for at most ``max_seconds``; every read and write waits at most ``timeout``. How many at once
    is ``serve(..., max_connections=)``'s business; ``handler.connections()`` counts those being served.
    """
    if buffer is not None and not 1 <= buffer <= 1 << 24:
        raise ValueError("buffer must be None or a number of bytes from 1 to 16 MiB")
    if not 0 < max_seconds <= 3600:
        raise ValueError("need 0 < max_seconds <= 3600")
    open_now = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        open_now += 1
        state = {"head_sent": False, "upstream": None}
        try:
            await asyncio.wait_for(_serve(reader, writer, state), max_seconds)
        except (HttpParseError, ChunkedParseError, ValueError) as exc:
            if state["head_sent"]:
                writer.transport.abort()  # a 502 now would land inside the body already begun
            else:
                with contextlib.suppress(Exception):
                    await _answer(writer, 502, f"bad HTTP from one side: {exc}")
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            writer.transport.abort()  # a side went quiet or away: drop both connections
        finally:
            open_now -= 1
            for w in (state["upstream"], writer):
                if w is not None:
                    w.close()

    async def _serve(reader, writer, state) -> None:
        try:  # the client's own mistakes are answered 4xx (431 for a head over the limit), never 502
            with owing(writer.transport, HEAD):  # a slow head makes room for others past serve()'s cap
                head, rest = await asyncio.wait_for(_read_head(reader), timeout)
            request = parse_head(head)
            if rest or request.header("Content-Length") not in (None, "0") or request.header("Transfer-Encoding"):
                await _answer(writer, 400, "this proxy forwards requests without a body only")
                return
            named = {t.strip().lower() for t in (request.header("Connection") or "").split(",")}
        except HttpParseError as exc:
            await _answer(writer, exc.status, f"bad request: {exc}")
            return
        lines = [request.start_line] + [f"{k}: {v}" for k, v in request.headers
                                        if k.lower() not in _HOP_BY_HOP | named] + ["Connection: close"]
        accepts_gzip = "gzip" in (request.header("Accept-Encoding") or "").lower()
        head_only = request.start_line.upper().startswith("HEAD ")
        try:
            up_reader, state["upstream"] = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            await _answer(writer, 502, f"the upstream server {host}:{port} cannot be reached: {exc}")
            return
        state["upstream"].write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await asyncio.wait_for(state["upstream"].drain(), timeout)
        up_head, body_start = await asyncio.wait_for(_read_head(up_reader), timeout)
        response = parse_head(up_head)
        status = response.status
        if status is None or status < 200:
            raise HttpParseError(f"the upstream answered {response.start_line[:40]!r}: informational or "
                                 "malformed responses are not forwarded")
        await _relay(response, body_start, up_reader, writer, accepts_gzip,
                     no_body=head_only or status in (204, 304), state=state)

    async def _relay(response, body_start: bytes, up_reader, writer, accepts_gzip: bool, *, no_body: bool,
                     state: dict) -> None:
        fields = {k.lower(): v for k, v in response.headers}
        # Several Transfer-Encoding lines make one list (RFC 9110 §5.3): "gzip" then "chunked" is "gzip, chunked".
        if response.all("Transfer-Encoding"):
            fields["transfer-encoding"] = ", ".join(response.all("Transfer-Encoding"))
            # RFC 9112 §6.3: with Transfer-Encoding, Content-Length is ignored, and an intermediary that
            # forwards the message must remove it (it would frame the body wrongly downstream).
            fields.pop("content-length", None)
        lengths = set(response.all("Content-Length")) if "content-length" in fields else set()
        if len(lengths) > 1 or any(not (v.isascii() and v.isdigit()) for v in lengths):
            raise HttpParseError(f"the upstream's Content-Length is not one number: {sorted(lengths)}")
        codings = [c.strip().lower() for c in fields.get("transfer-encoding", "").split(",") if c.strip()]
        if codings and codings != ["chunked"]:
            raise HttpParseError(f"transfer coding {fields['transfer-encoding']!r} is not supported (chunked only)")
        named = {t.strip().lower() for t in fields.get("connection", "").split(",")}
        passthrough = honour_accel and fields.get("x-accel-buffering", "").lower() == "no"
        event_stream = fields.get("content-type", "").lower().startswith("text/event-stream")
        compress = (gzip and accepts_gzip and not no_body and "content-encoding" not in fields
                    and not (honour_no_transform and "no-transform" in fields.get("cache-control", "").lower())
                    and not (event_stream and not compress_event_stream))
        keep = [(k, v) for k, v in response.headers
                if k.lower() not in _HOP_BY_HOP | named and k.lower() != "x-accel-buffering"
                and not ((compress or "content-length" not in fields) and k.lower() == "content-length")]
        if compress:
            keep += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        chunked_out = not no_body and (compress or "content-length" not in fields)
        if chunked_out:
            keep = [(k, v) for k, v in keep if k.lower() != "content-length"] + [("Transfer-Encoding", "chunked")]
        head = "\r\n".join([response.start_line] + [f"{k}: {v}" for k, v in keep] + ["Connection: close"])
        writer.write(head.encode("latin-1") + b"\r\n\r\n")
        state["head_sent"] = True
        await asyncio.wait_for(writer.drain(), timeout)
        if no_body:
            return

        compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if compress else None  # wbits 31: the gzip format
        pending = bytearray()
        hold = None if passthrough else buffer
        flush_each = gzip_flush or passthrough  # unbuffered: each piece goes through the compressor at once

        async def send(data: bytes) -> None:
            if data:
                writer.write(encode_chunk(data) if chunked_out else data)
                await asyncio.wait_for(writer.drain(), timeout)

        async def take(piece: bytes) -> None:
            if compressor is not None:
                piece = compressor.compress(piece) + (compressor.flush(zlib.Z_SYNC_FLUSH) if flush_each else b"")
            if hold is None:
                await send(piece)
                return
            pending.extend(piece)
            if len(pending) >= hold:
                await send(bytes(pending))
                pending.clear()

        async for piece in _body(fields, body_start, up_reader):
            await take(piece)
        if compressor is not None:
            pending.extend(compressor.flush())
        await send(bytes(pending))
        if chunked_out:
            writer.write(LAST_CHUNK)
            await asyncio.wait_for(writer.drain(), timeout)

    async def _body(fields: dict[str, str], start: bytes, up_reader):
        """The upstream body's bytes, as they arrive, without their framing."""
        if "chunked" in fields.get("transfer-encoding", "").lower():
            decoder = ChunkedDecoder()
            data = start
            while True:
                for event in decoder.feed(data):
                    if isinstance(event, Data):
                        yield event.data
                if decoder.done:
                    return
                data = await asyncio.wait_for(up_reader.read(65536), timeout)
                if not data:
                    raise ConnectionError("the upstream closed inside a chunked body")
        elif "content-length" in fields:
            left = int(fields["content-length"]) - len(start)
            if start:
                yield start
            while left > 0:
                data = await asyncio.wait_for(up_reader.read(min(left, 65536)), timeout)
                if not data:
                    raise ConnectionError("the upstream closed before Content-Length bytes")
                left -= len(data)
                yield data
        else:  # until the upstream closes
            if start:
                yield start
            while data := await asyncio.wait_for(up_reader.read(65536), timeout):
                yield data

    handler.connections = lambda: open_now  # type: ignore[attr-defined]  # clients being served now
    return handler


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    buffer = b""
    while (found := split_head(buffer, max_size=MAX_HEAD)) is None:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("the peer closed before the end of its head")
        buffer += chunk
    return found


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    from http import HTTPStatus

    body = reason.encode()
    writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (status, HTTPStatus(status).phrase.encode(), len(body), body))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 5)
