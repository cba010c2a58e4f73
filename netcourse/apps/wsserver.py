"""The course's WebSocket server: the opening handshake and frames done by hand, on ``netcourse.wsframe``.

It runs as a raw stream handler under ``serve()``. It is strict where aiohttp's server is lenient: it
refuses unmasked client frames (aiohttp accepts them), checks ``Origin`` against an allow-list
(cross-site WebSocket hijacking, RFC 6455 §10.2), and closes with the RFC's codes: 1002 for a protocol
error, 1007 for bad UTF-8, 1009 for a message over the size limit.

    with serve(make_ws_handler(allowed_origins={"http://localhost"})) as srv: ...

Every open connection is registered in a ``Hub``, so a lesson can count them and broadcast to them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..protocols.wsframe import CloseCode, Frame, FrameDecoder, Opcode, ProtocolError, accept_key, close_payload, encode

__all__ = ["Hub", "make_ws_handler", "handshake_request", "HandshakeError", "parse_handshake"]

MAX_HEAD = 8192  # bytes: a longer handshake head is refused


class HandshakeError(ValueError):
    """The opening handshake is not acceptable; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def handshake_request(host: str, port: int, key: str, *, origin: str | None = None, path: str = "/ws") -> bytes:
    """The client's opening handshake (RFC 6455 §4.1), as bytes."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def parse_handshake(head: bytes, allowed_origins: set[str] | None) -> str:
    """Check a client's handshake head (RFC 6455 §4.2.1); returns its Sec-WebSocket-Key."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError as exc:
        raise HandshakeError(400, "the handshake is not ASCII") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        raise HandshakeError(400, "the handshake must be a GET over HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(400, f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError(400, "missing 'Upgrade: websocket'")
    if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
        raise HandshakeError(400, "missing 'Connection: Upgrade'")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(426, "only Sec-WebSocket-Version 13 is supported")
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 random bytes in base64") from None
    if allowed_origins is not None and headers.get("origin") not in allowed_origins:
        raise HandshakeError(403, f"origin {headers.get('origin')!r} is not allowed")
    return key


@dataclass
class Hub:
    """The open connections of one server: count them, broadcast to them.

    Attributes:
        writers: one per open WebSocket connection.
        closes: (close code, reason) of every connection the server closed, in order.
    """

    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    closes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Open connections."""
        return len(self.writers)

    async def broadcast(self, payload: bytes, opcode: Opcode = Opcode.BINARY) -> int:
        """Send one frame to every open connection; returns how many it was written to."""
        frame = encode(Frame(opcode, payload))
        writers = list(self.writers)
        for w in writers:
            w.write(frame)
        await asyncio.gather(*(w.drain() for w in writers), return_exceptions=True)
        return len(writers)


OnMessage = Callable[[Opcode, bytes], Awaitable[bytes | None]]


async def echo(opcode: Opcode, payload: bytes) -> bytes:
    """The default behaviour: send every message back."""
    return payload


def make_ws_handler(
    hub: Hub | None = None,
    *,
    allowed_origins: set[str] | None = None,
    max_size: int = 1 << 16,
    on_message: OnMessage = echo,
):
    """A stream handler for ``serve()`` that speaks WebSocket on any path.

    Args:
        hub: where open connections are registered (a new one if None); also ``handler.hub``.
        allowed_origins: accepted ``Origin`` values; None accepts any (and a missing one).
        max_size: largest message accepted, in bytes; larger closes with 1009.
        on_message: ``async fn(opcode, payload)`` returning a reply payload, or None for no reply.
    """
    hub = hub if hub is not None else Hub()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        if len(head) > MAX_HEAD:
            await _refuse(writer, HandshakeError(431, "handshake head too large"))
            return
        try:
            key = parse_handshake(head, allowed_origins)
        except HandshakeError as exc:
            await _refuse(writer, exc)
            return
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
            ).encode("ascii")
        )
        await writer.drain()
        hub.writers.add(writer)
        try:
            await _serve_frames(reader, writer, hub, max_size, on_message)
        finally:
            hub.writers.discard(writer)

    handler.hub = hub  # type: ignore[attr-defined]
    return handler


async def _refuse(writer: asyncio.StreamWriter, exc: HandshakeError) -> None:
    body = f"{exc}\n".encode()
    writer.write(
        f"HTTP/1.1 {exc.status} Refused\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode() + body
    )
    await writer.drain()


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hub: Hub, code: int, reason: str) -> None:
    """Send a close frame, then wait (at most a second) for the client to close its side (§7.1.1).

    Closing the socket at once, with the client's bytes still unread, would make the kernel answer with
    a TCP reset, which can destroy the close frame before the client reads it.
    """
    hub.closes.append((code, reason))
    writer.write(encode(Frame(Opcode.CLOSE, close_payload(code, reason[:120]))))
    await writer.drain()

    async def drain_until_eof() -> None:
        while await reader.read(65536):
            pass

    try:
        await asyncio.wait_for(drain_until_eof(), 1.0)
    except (asyncio.TimeoutError, ConnectionError):
        pass


async def _serve_frames(reader, writer, hub: Hub, max_size: int, on_message: OnMessage) -> None:
    decoder = FrameDecoder("server", max_size=max_size)
    parts: list[bytes] = []
    kind = Opcode.BINARY
    while True:
        data = await reader.read(65536)
        if not data:
            return  # the client vanished without a close frame (1006 on its side)
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            await _close(reader, writer, hub, exc.close_code, str(exc))
            return
        for frame in frames:
            if frame.opcode == Opcode.PING:
                writer.write(encode(Frame(Opcode.PONG, frame.payload)))
            elif frame.opcode == Opcode.PONG:
                pass
            elif frame.opcode == Opcode.CLOSE:
                code = int.from_bytes(frame.payload[:2], "big") if frame.payload else CloseCode.NORMAL
                await _close(reader, writer, hub, code, "closing")
                return
            else:
                if frame.opcode != Opcode.CONTINUATION:
                    kind = frame.opcode
                parts.append(frame.payload)
                if frame.fin:
                    message, parts = b"".join(parts), []
                    reply = await on_message(kind, message)
                    if reply is not None:
                        writer.write(encode(Frame(kind, reply)))
        await writer.drain()
