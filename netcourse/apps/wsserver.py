"""The course's WebSocket server: a stream handler for ``serve()``, on ``protocols.wsconn``.

It is strict where aiohttp's server is lenient: it refuses unmasked client frames (aiohttp accepts
them), checks ``Origin`` against an allow-list (cross-site WebSocket hijacking, RFC 6455 §10.2), and
closes with the RFC's codes: 1002 for a protocol error, 1007 for bad UTF-8, 1009 for a message over
the size limit, 1011 when the application's handler raises.

    with serve(make_ws_handler(allowed_origins={"http://localhost"})) as srv: ...

The close handshake follows RFC 6455 §7.1.1: once both close frames have crossed, the server closes
the TCP connection first: it half-closes (``shutdown(SHUT_WR)``, its FIN), reads what is left until
the client's FIN, then closes. Reading to the end means no unread byte makes the kernel answer with
a reset that could destroy the close frame in flight.

Every open connection is registered in a ``Hub``, so a lesson can count them and broadcast to them.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..errors import HandshakeError, HttpParseError
from ..protocols.httpwire import parse_head, split_head
from ..protocols.wsconn import Close, Connection, Message, State, accept_request, refusal
from ..protocols.wsframe import CloseCode, Frame, Opcode, encode
from ..runtime.admission import owing
from .safety import host_problem

__all__ = ["Hub", "make_ws_handler", "MAX_HEAD", "HANDSHAKE_TIMEOUT", "CLOSE_TIMEOUT", "HANDSHAKE"]

HANDSHAKE = "a WebSocket handshake"  # what a new connection owes (runtime.admission)

MAX_HEAD = 8192  # bytes: a longer handshake head is refused with 431
HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to send its whole handshake head
CLOSE_TIMEOUT = 2.0  # seconds the closing steps may take, in all, before the connection is dropped
WRITE_TIMEOUT = 5.0  # seconds one write may wait for a peer that does not read
MAX_CLOSES_KEPT = 1000


@dataclass
class Hub:
    """The open connections of one server: count them, broadcast to them.

    A broadcast never waits on the slowest peer. Each peer may have at most ``max_buffered`` bytes
    waiting in its send buffer, and each write must drain within ``write_timeout`` seconds; a peer
    that cannot keep up is dropped (its buffer is full, so even a close frame with 1013 "try again
    later" could not reach it), recorded in ``closes`` as 1013, and counted in ``evicted``.

    Attributes:
        writers: one per open WebSocket connection.
        closes: (close code, reason) of the latest connections the server closed (at most 1,000).
        evicted: peers dropped because they could not keep up with broadcasts.
        max_buffered: bytes a peer's send buffer may hold before it is dropped.
        write_timeout: seconds a broadcast waits for one peer's buffer to drain.
    """

    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    closes: collections.deque[tuple[int, str]] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_CLOSES_KEPT)
    )
    evicted: int = 0
    max_buffered: int = 1 << 20
    write_timeout: float = 1.0
    connections: dict[asyncio.StreamWriter, Connection] = field(default_factory=dict)
    on_join: Callable[[], object] | None = None

    @property
    def count(self) -> int:
        """Open connections."""
        return len(self.writers)

    def _evict(self, writer: asyncio.StreamWriter, reason: str) -> None:
        self.writers.discard(writer)
        self.closes.append((int(CloseCode.TRY_AGAIN_LATER), reason))
        self.evicted += 1
        writer.transport.abort()

    def going_away(self, writer: asyncio.StreamWriter, reason: str = "server going away") -> bool:
        """Start the close handshake with 1001 Going Away (RFC 6455 §7.4.1: a server going down); the
        connection's own task reads the client's close and ends it. False if it is not open."""
        conn = self.connections.get(writer)
        if conn is None or conn.state is not State.OPEN or writer.is_closing():
            return False
        self.writers.discard(writer)  # no broadcast after our close (§5.5.1)
        writer.write(conn.send(Close(int(CloseCode.GOING_AWAY), reason)))
        return True

    async def broadcast(self, payload: bytes, opcode: Opcode = Opcode.BINARY) -> int:
        """Send one frame to every open connection; returns how many peers it was delivered to.

        "Delivered" means handed to the kernel within ``write_timeout``; slow peers are dropped.
        """
        frame = encode(Frame(opcode, payload))
        targets = []
        for w in list(self.writers):
            if w.is_closing():
                continue
            if w.transport.get_write_buffer_size() + len(frame) > self.max_buffered:
                self._evict(w, "too slow: its send buffer is full")
                continue
            try:
                w.write(frame)
            except RuntimeError:  # the connection is shutting down under us: not a target any more
                self.writers.discard(w)
                continue
            targets.append(w)

        async def deliver(w: asyncio.StreamWriter) -> bool:
            try:
                await asyncio.wait_for(w.drain(), self.write_timeout)
                return True
            except asyncio.TimeoutError:
                self._evict(w, f"too slow: a broadcast did not drain within {self.write_timeout} s")
            except ConnectionError:
                self.writers.discard(w)
            return False

        results = await asyncio.gather(*(deliver(w) for w in targets))
        return sum(results)


OnMessage = Callable[[Opcode, bytes], Awaitable["bytes | None"]]


async def echo(opcode: Opcode, payload: bytes) -> bytes:
    """The default behaviour: send every message back."""
    return payload


def make_ws_handler(
    hub: Hub | None = None,
    *,
    allowed_origins: set[str] | None = None,
    max_size: int = 1 << 16,
    on_message: OnMessage = echo,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
):
    """A stream handler for ``serve()`` that speaks WebSocket on any path.

    Args:
        hub: where open connections are registered (a new one if None); also ``handler.hub``.
        allowed_origins: accepted ``Origin`` values; None accepts any (and a missing one).
        max_size: largest message accepted, in bytes; larger closes with 1009.
        on_message: ``async fn(opcode, payload)`` returning a reply payload, or None for no reply.
            If it raises, the connection closes with 1011.
        handshake_timeout: seconds a client gets to send its handshake head. Until it has, the connection
            owes "a WebSocket handshake", and past ``serve()``'s connection cap it is among the first closed
            (``runtime.admission``); that cap (``serve(..., max_connections=)``) counts every connection.
        write_timeout: seconds one write may wait for a peer that does not read; then it is dropped.

    Besides the WebSocket checks, the handshake's ``Host`` must name this server on loopback (421
    otherwise: DNS rebinding, see ``apps.safety``).
    """
    hub = hub if hub is not None else Hub()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with owing(writer.transport, HANDSHAKE):
                head, rest = await asyncio.wait_for(_read_head(reader), handshake_timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return  # a handshake that never finished: drop the connection
        except HttpParseError as exc:
            await _refuse(writer, exc.status, str(exc))
            return
        refused = _handshake(head, writer, allowed_origins)
        if isinstance(refused, tuple):
            await _refuse(writer, *refused)
            return
        writer.write(refused)
        await writer.drain()
        conn = Connection("server", max_size=max_size)
        hub.writers.add(writer)
        hub.connections[writer] = conn
        if hub.on_join is not None:
            hub.on_join()
        try:
            await _serve(conn, rest, reader, writer, on_message, hub, write_timeout)
        finally:
            hub.writers.discard(writer)
            hub.connections.pop(writer, None)
            if conn.close_sent is not None:
                hub.closes.append((int(conn.close_sent.code), conn.close_sent.reason))

    handler.hub = hub  # type: ignore[attr-defined]
    return handler


def _handshake(head: bytes, writer: asyncio.StreamWriter, allowed_origins: set[str] | None) -> bytes | tuple[int, str]:
    """The 101 response to a handshake head, or (status, reason) to refuse it: the ``Host`` must name this
    server on loopback (421: DNS rebinding), then the WebSocket checks (RFC 6455 §4.2.1)."""
    address, port = (writer.get_extra_info("sockname") or ("", 0))[:2]
    try:
        hosts = parse_head(head).all("Host")
    except HttpParseError as exc:
        return 400, str(exc)
    problem = "more than one Host header" if len(hosts) > 1 else host_problem(hosts[0] if hosts else None, port,
                                                                               local_address=address)
    if problem:
        return 421, problem
    try:
        _, response = accept_request(head, allowed_origins=allowed_origins)
    except HandshakeError as exc:
        return exc.status, str(exc)
    return response


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    buffer = b""
    while True:
        found = split_head(buffer, max_size=MAX_HEAD)
        if found is not None:
            return found
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("the client closed before finishing its handshake")
        buffer += chunk


async def _refuse(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    writer.write(refusal(status, reason))
    await writer.drain()


async def _serve(
    conn: Connection,
    first: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    on_message: OnMessage,
    hub: Hub,
    write_timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    closing_deadline: float | None = None
    data = first
    while conn.state is not State.CLOSED:
        if data:
            for event in conn.receive_data(data):
                if isinstance(event, Message) and conn.state is State.OPEN:
                    try:
                        reply = await on_message(event.opcode, event.payload)
                    except Exception as exc:  # the application failed: tell the client (§7.4.1)
                        conn.fail(CloseCode.INTERNAL_ERROR, f"server error: {type(exc).__name__}")
                        reply = None
                    if reply is not None and conn.state is State.OPEN:
                        writer.write(conn.send(Message(event.opcode, reply)))
            writer.write(conn.data_to_send())
            if conn.state is not State.OPEN:
                hub.writers.discard(writer)  # closing: broadcasts must not write after our close (§5.5.1)
            try:  # a peer that does not read cannot hold the server: every write has a deadline
                await asyncio.wait_for(writer.drain(), write_timeout)
            except asyncio.TimeoutError:
                writer.transport.abort()
                return
        if conn.state is State.CLOSED:
            break
        try:
            if conn.state is State.CLOSING:  # we sent a close: the client has a while to answer
                if closing_deadline is None:
                    closing_deadline = loop.time() + CLOSE_TIMEOUT
                data = await asyncio.wait_for(reader.read(65536), max(0.0, closing_deadline - loop.time()))
            else:
                data = await reader.read(65536)
        except asyncio.TimeoutError:
            return  # no close frame came back in time: drop the connection
        if not data:
            return  # the client vanished without a close frame (1006 on its side)
    await _close_tcp_first(reader, writer)


async def _close_tcp_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After the close handshake: FIN first (§7.1.1), read to the client's FIN, then close."""

    async def drain_to_eof() -> None:
        while await reader.read(65536):
            pass

    try:
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(drain_to_eof(), CLOSE_TIMEOUT)
    except (asyncio.TimeoutError, ConnectionError):
        pass

