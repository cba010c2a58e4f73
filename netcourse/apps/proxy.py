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

``make_proxy(host, port, ...)`` returns a ``Proxy``, a stream handler for ``serve()``, whose steps are methods: read the
request, ``plan`` what to do from the upstream's head, ``relay`` the body. Every read and write has a
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
from dataclasses import dataclass

from ..errors import ChunkedParseError, HttpParseError
from ..protocols.chunked import LAST_CHUNK, ChunkedDecoder, Data, encode_chunk
from ..protocols.httpwire import parse_head, split_head
from ..runtime.admission import HEAD, owing

__all__ = ["make_proxy", "Proxy", "Plan", "MAX_HEAD", "TIMEOUT", "MAX_SECONDS"]

MAX_HEAD = 16 * 1024
TIMEOUT = 30.0  # seconds any one read or write may wait
MAX_SECONDS = 300.0  # the longest one proxied exchange may last
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Plan:
    """What the proxy does with one response, decided from its head alone (see ``plan``)."""

    head: bytes  # the head the client gets
    no_body: bool  # a HEAD request, a 204 or a 304
    chunked_out: bool  # the client's copy is re-chunked (compressed, or its length unknown)
    compress: bool  # gzip the body on its way through
    hold: int | None  # bytes gathered before a chunk leaves (None: each piece at once)
    flush_each: bool  # push each piece through the compressor at once (Z_SYNC_FLUSH)


class Proxy:
    """A stream handler for ``serve()`` that proxies to ``host:port`` with the given buffering and compression.

    Each client for at most ``max_seconds``; every read and write waits at most ``timeout``. How many at once
    is ``serve(..., max_connections=)``'s business; ``connections()`` counts those being served. One exchange is
    four steps, each a method: read the client's request (``request``), open the upstream and forward it,
    decide from the upstream's head what to do (``plan``), then pass the body on (``relay``).
    """

    def __init__(self, host: str, port: int, *, buffer: int | None = 4096, gzip: bool = False,
                 gzip_flush: bool = False, honour_accel: bool = True, honour_no_transform: bool = True,
                 compress_event_stream: bool = True, timeout: float = TIMEOUT, max_seconds: float = MAX_SECONDS):
        if buffer is not None and not 1 <= buffer <= 1 << 24:
            raise ValueError("buffer must be None or a number of bytes from 1 to 16 MiB")
        if not 0 < max_seconds <= 3600:
            raise ValueError("need 0 < max_seconds <= 3600")
        self.host, self.port, self.buffer, self.gzip, self.gzip_flush = host, port, buffer, gzip, gzip_flush
        self.honour_accel, self.honour_no_transform = honour_accel, honour_no_transform
        self.compress_event_stream, self.timeout, self.max_seconds = compress_event_stream, timeout, max_seconds
        self._open = 0

    def connections(self) -> int:
        """Clients being served now."""
        return self._open

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        state = {"head_sent": False, "upstream": None}
        try:
            await asyncio.wait_for(self._exchange(reader, writer, state), self.max_seconds)
        except (HttpParseError, ChunkedParseError, ValueError) as exc:
            if state["head_sent"]:
                writer.transport.abort()  # a 502 now would land inside the body already begun
            else:
                with contextlib.suppress(Exception):
                    await _answer(writer, 502, f"bad HTTP from one side: {exc}")
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            writer.transport.abort()  # a side went quiet or away: drop both connections
        finally:
            self._open -= 1
            for w in (state["upstream"], writer):
                if w is not None:
                    w.close()

    async def _exchange(self, reader, writer, state: dict) -> None:
        request = await self.request(reader, writer)
        if request is None:
            return
        lines, accepts_gzip, head_only = request
        try:
            up_reader, state["upstream"] = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            await _answer(writer, 502, f"the upstream server {self.host}:{self.port} cannot be reached: {exc}")
            return
        state["upstream"].write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await asyncio.wait_for(state["upstream"].drain(), self.timeout)
        up_head, body_start = await asyncio.wait_for(_read_head(up_reader), self.timeout)
        response = parse_head(up_head)
        if response.status is None or response.status < 200:
            raise HttpParseError(f"the upstream answered {response.start_line[:40]!r}: informational or "
                                 "malformed responses are not forwarded")
        plan = self.plan(response, accepts_gzip, no_body=head_only or response.status in (204, 304))
        writer.write(plan.head)
        state["head_sent"] = True
        await asyncio.wait_for(writer.drain(), self.timeout)
        if not plan.no_body:
            await self.relay(plan, _fields(response), body_start, up_reader, writer)

    async def request(self, reader, writer) -> tuple[list[str], bool, bool] | None:
        """The client's request as lines to forward, whether it accepts gzip, whether it is a HEAD; or None,
        after answering it 4xx itself (431 for a head over the limit), never 502: the mistake is the client's."""
        try:
            with owing(writer.transport, HEAD):  # a slow head makes room for others past serve()'s cap
                head, rest = await asyncio.wait_for(_read_head(reader), self.timeout)
            request = parse_head(head)
            if rest or request.header("Content-Length") not in (None, "0") or request.header("Transfer-Encoding"):
                await _answer(writer, 400, "this proxy forwards requests without a body only")
                return None
            named = {t.strip().lower() for t in (request.header("Connection") or "").split(",")}
        except HttpParseError as exc:
            await _answer(writer, exc.status, f"bad request: {exc}")
            return None
        lines = [request.start_line] + [f"{k}: {v}" for k, v in request.headers
                                        if k.lower() not in _HOP_BY_HOP | named] + ["Connection: close"]
        accepts_gzip = "gzip" in (request.header("Accept-Encoding") or "").lower()
        return lines, accepts_gzip, request.start_line.upper().startswith("HEAD ")

    def plan(self, response, accepts_gzip: bool, *, no_body: bool) -> Plan:
        """What to do with this response: compress or not, hold how many bytes, and the head to send on."""
        fields = _fields(response)
        passthrough = self.honour_accel and fields.get("x-accel-buffering", "").lower() == "no"
        event_stream = fields.get("content-type", "").lower().startswith("text/event-stream")
        compress = (self.gzip and accepts_gzip and not no_body and "content-encoding" not in fields
                    and not (self.honour_no_transform and "no-transform" in fields.get("cache-control", "").lower())
                    and not (event_stream and not self.compress_event_stream))
        named = {t.strip().lower() for t in fields.get("connection", "").split(",")}
        length_goes = compress or "content-length" not in fields  # re-chunked, or framed by Transfer-Encoding
        keep = [(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP | named | {"x-accel-buffering"}
                and not (length_goes and k.lower() == "content-length")]
        if compress:
            keep += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        chunked_out = not no_body and (compress or "content-length" not in fields)
        if chunked_out:
            keep.append(("Transfer-Encoding", "chunked"))
        head = "\r\n".join([response.start_line] + [f"{k}: {v}" for k, v in keep] + ["Connection: close"])
        return Plan(head=head.encode("latin-1") + b"\r\n\r\n", no_body=no_body, chunked_out=chunked_out,
                    compress=compress, hold=None if passthrough else self.buffer,
                    flush_each=self.gzip_flush or passthrough)  # unbuffered: each piece at once

    async def relay(self, plan: Plan, fields: dict[str, str], start: bytes, up_reader, writer) -> None:
        """The body, from the upstream's framing to the client's, compressed and held as the plan says."""
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if plan.compress else None  # wbits 31: gzip format
        pending = bytearray()

        async def send(data: bytes) -> None:
            if data:
                writer.write(encode_chunk(data) if plan.chunked_out else data)
                await asyncio.wait_for(writer.drain(), self.timeout)

        async for piece in _body(fields, start, up_reader, self.timeout):
            if compressor is not None:
                piece = compressor.compress(piece) + (compressor.flush(zlib.Z_SYNC_FLUSH) if plan.flush_each else b"")
            if plan.hold is None:
                await send(piece)
                continue
            pending.extend(piece)
            if len(pending) >= plan.hold:
                await send(bytes(pending))
                pending.clear()
        if compressor is not None:
            pending.extend(compressor.flush())
        await send(bytes(pending))
        if plan.chunked_out:
            writer.write(LAST_CHUNK)
            await asyncio.wait_for(writer.drain(), self.timeout)


def make_proxy(host: str, port: int, **options) -> Proxy:
    """A ``Proxy`` to ``host:port`` (the options are ``Proxy``'s): a stream handler for ``serve()``."""
    return Proxy(host, port, **options)


def _fields(response) -> dict[str, str]:
    """The response's fields by lower-case name, its framing checked (RFC 9112 §6.3, RFC 9110 §5.3)."""
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
    return fields


async def _body(fields: dict[str, str], start: bytes, up_reader, timeout: float):
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
