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
deadline; a broken upstream answers 502 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib

from ..protocols.chunked import LAST_CHUNK, ChunkedDecoder, ChunkedParseError, Data, encode_chunk
from ..protocols.httpwire import HttpParseError, parse_head, split_head

__all__ = ["make_proxy", "MAX_HEAD", "TIMEOUT"]

MAX_HEAD = 16 * 1024
TIMEOUT = 30.0  # seconds any one read or write may wait
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def make_proxy(host: str, port: int, *, buffer: int | None = 4096, gzip: bool = False, gzip_flush: bool = False,
               honour_accel: bool = True, honour_no_transform: bool = True, compress_event_stream: bool = True,
               timeout: float = TIMEOUT):
    """A stream handler that proxies to ``host:port`` with the given buffering and compression."""
    if buffer is not None and not 1 <= buffer <= 1 << 24:
        raise ValueError("buffer must be None or a number of bytes from 1 to 16 MiB")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        try:
            head, rest = await asyncio.wait_for(_read_head(reader), timeout)
            request = parse_head(head)
            lines = [request.start_line] + [f"{k}: {v}" for k, v in request.headers
                                            if k.lower() not in _HOP_BY_HOP] + ["Connection: close"]
            accepts_gzip = "gzip" in (request.header("Accept-Encoding") or "").lower()
            try:
                up_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                await _answer(writer, 502, f"the upstream server {host}:{port} cannot be reached: {exc}")
                return
            upstream_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + rest)
            await asyncio.wait_for(upstream_writer.drain(), timeout)
            up_head, body_start = await asyncio.wait_for(_read_head(up_reader), timeout)
            response = parse_head(up_head)
            await _relay(response, body_start, up_reader, writer, accepts_gzip)
        except (HttpParseError, ChunkedParseError) as exc:
            with contextlib.suppress(Exception):
                await _answer(writer, 502, f"bad HTTP from one side: {exc}")
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a side went quiet or away: drop both connections
        finally:
            for w in (upstream_writer, writer):
                if w is not None:
                    w.close()

    async def _relay(response, body_start: bytes, up_reader, writer, accepts_gzip: bool) -> None:
        fields = {k.lower(): v for k, v in response.headers}
        passthrough = honour_accel and fields.get("x-accel-buffering", "").lower() == "no"
        event_stream = fields.get("content-type", "").lower().startswith("text/event-stream")
        compress = (gzip and accepts_gzip and "content-encoding" not in fields
                    and not (honour_no_transform and "no-transform" in fields.get("cache-control", "").lower())
                    and not (event_stream and not compress_event_stream))
        keep = [(k, v) for k, v in response.headers
                if k.lower() not in _HOP_BY_HOP and k.lower() != "x-accel-buffering"
                and not (compress and k.lower() == "content-length")]
        if compress:
            keep += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        chunked_out = compress or "content-length" not in fields
        if chunked_out:
            keep = [(k, v) for k, v in keep if k.lower() != "content-length"] + [("Transfer-Encoding", "chunked")]
        head = "\r\n".join([response.start_line] + [f"{k}: {v}" for k, v in keep] + ["Connection: close"])
        writer.write(head.encode("latin-1") + b"\r\n\r\n")
        await asyncio.wait_for(writer.drain(), timeout)

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
    body = reason.encode()
    writer.write(b"HTTP/1.1 %d Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (status, len(body), body))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 5)
