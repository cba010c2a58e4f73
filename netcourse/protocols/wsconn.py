"""One WebSocket connection, sans-I/O: the opening handshake, messages, ping/pong and the close handshake.

The caller owns the socket; this object owns the protocol. Bytes from the peer go into
``receive_data`` and come out as events; what to send comes out of ``send`` (and of
``data_to_send`` for the replies the protocol makes by itself: pongs and the close echo).

    conn = Connection("server")
    for event in conn.receive_data(sock.recv(65536)):
        if isinstance(event, Message) and conn.state is State.OPEN:      # a Close may have come in the
            sock.sendall(conn.send(Message(event.opcode, event.payload)))   # same read: then no more echoes
    sock.sendall(conn.data_to_send())

States (RFC 6455 §4, §7)::

    OPEN ──send(Close)──▶ CLOSING ──peer's Close──▶ CLOSED
      └──peer's Close (we echo it)───────────────────▶ CLOSED
      └──peer breaks the protocol, or fail(): we send Close ──▶ CLOSED (§7.1.7: then close TCP,
                                                               without reading the peer any more)

When the state is CLOSED the server closes the TCP connection first (§7.1.1); a client waits for
the server to do so. The handshake helpers at the bottom build and check the HTTP upgrade
(§4.1, §4.2) with ``httpwire``, the one place HTTP heads are parsed.
"""

from __future__ import annotations

import base64
import binascii
import enum
import http
import secrets
from dataclasses import dataclass
from typing import Union

from ..errors import HandshakeError, ProtocolError
from .httpwire import HttpParseError, parse_head
from .wsframe import (
    CloseCode,
    Frame,
    FrameDecoder,
    Opcode,
    Role,
    accept_key,
    close_payload,
    encode,
    parse_close,
)

__all__ = [
    "State",
    "Message",
    "Ping",
    "Pong",
    "Close",
    "CloseReceived",
    "ConnectionFailed",
    "Connection",
    "client_request",
    "new_key",
    "accept_request",
    "check_response",
    "refusal",
]


class State(enum.Enum):
    """Where a connection is in its life (RFC 6455 §4.1 "OPEN", §7.1.3 "CLOSING", §7.1.4 "CLOSED")."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True)
class Message:
    """A whole data message (its fragments joined): TEXT or BINARY."""

    opcode: Opcode
    payload: bytes

    def __repr__(self) -> str:
        data = self.payload if len(self.payload) <= 32 else self.payload[:29] + b"..."
        return f"Message({self.opcode.name}, {data!r})"

    @property
    def text(self) -> str:
        """The payload of a TEXT message, decoded (the decoder has checked the UTF-8, §8.1)."""
        return self.payload.decode("utf-8")


@dataclass(frozen=True)
class Ping:
    """A ping (§5.5.2). Received: a pong with the same payload is queued automatically."""

    payload: bytes = b""


@dataclass(frozen=True)
class Pong:
    """A pong (§5.5.3)."""

    payload: bytes = b""


@dataclass(frozen=True)
class Close:
    """To send: start (or answer) the close handshake with this code and reason (§5.5.1)."""

    code: int = CloseCode.NORMAL
    reason: str = ""


@dataclass(frozen=True)
class CloseReceived:
    """The peer sent a close frame (1005 when it carried no code, §7.1.5)."""

    code: int
    reason: str


@dataclass(frozen=True)
class ConnectionFailed:
    """The peer broke the protocol (§7.1.7). The next ``data_to_send()`` holds a close with ``code``."""

    code: int
    reason: str


Event = Union[Message, Ping, Pong, CloseReceived, ConnectionFailed]


class Connection:
    """The protocol state of one WebSocket connection, after a successful opening handshake.

    Args:
        role: ``Role.CLIENT`` or "client" (masks what it sends, refuses masked frames), ``Role.SERVER`` or
            "server" (the opposite, §5.1); anything else is a ValueError.
        max_size: largest message accepted, in bytes; larger fails the connection with 1009.
    """

    def __init__(self, role: Role | str, *, max_size: int = 1 << 20) -> None:
        self.role = Role.of(role)
        self.state = State.OPEN
        self.close_sent: Close | None = None
        self.close_received: CloseReceived | None = None
        self._decoder = FrameDecoder(self.role, max_size=max_size)
        self._outgoing = bytearray()
        self._failure: ConnectionFailed | None = None
        self._parts: list[bytes] = []
        self._kind = Opcode.BINARY

    # -- bytes in ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return the events they complete, in order.

        Frames that arrived whole before a bad one are all delivered; the failure comes last.
        After the connection is CLOSED, further bytes are ignored (§7.1.4: nothing follows a close).
        """
        if self.state is State.CLOSED or self.close_received is not None or self._failure is not None:
            return []
        frames, error = self._decoder.decode(data)
        events: list[Event] = []
        for frame in frames:
            event = self._on_frame(frame)
            if event is not None:
                events.append(event)
            if self.close_received is not None:
                return events  # nothing after a close frame counts
        if error is not None:
            # The events before the bad frame stay answerable: the close is queued by the next
            # data_to_send(), after whatever the caller sends in reply to them.
            self._failure = ConnectionFailed(error.close_code, str(error))
            events.append(self._failure)
        return events

    def _on_frame(self, frame: Frame) -> Event | None:
        if frame.opcode == Opcode.PING:
            if self.state is State.OPEN:
                self._outgoing += self._encode(Frame(Opcode.PONG, frame.payload))  # §5.5.2
            return Ping(frame.payload)
        if frame.opcode == Opcode.PONG:
            return Pong(frame.payload)
        if frame.opcode == Opcode.CLOSE:
            code, reason = parse_close(frame.payload)  # the decoder has validated it
            self.close_received = CloseReceived(code, reason)
            if self.state is State.OPEN:  # §5.5.1: answer with a close, echoing the code
                echo = Close(CloseCode.NORMAL if code == CloseCode.NO_STATUS_RECEIVED else code)
                self._outgoing += self._close_frame(echo)
            self.state = State.CLOSED
            return self.close_received
        if frame.opcode != Opcode.CONTINUATION:
            self._kind = frame.opcode
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        payload, self._parts = b"".join(self._parts), []
        return Message(self._kind, payload)

    # -- bytes out -----------------------------------------------------------------------------------

    def send(self, event: Message | Ping | Pong | Close) -> bytes:
        """The bytes that send ``event`` (masked when this side is the client)."""
        if self.state is not State.OPEN:
            raise ProtocolError(f"cannot send {type(event).__name__}: the connection is {self.state.value}")
        if isinstance(event, Message):
            return self._encode(Frame(event.opcode, event.payload))
        if isinstance(event, Ping):
            return self._encode(Frame(Opcode.PING, event.payload))
        if isinstance(event, Pong):
            return self._encode(Frame(Opcode.PONG, event.payload))
        if isinstance(event, Close):
            self.state = State.CLOSING
            return self._close_frame(event)
        raise TypeError(f"cannot send {event!r}")

    def send_frame(self, frame: Frame, *, mask_key: bytes | None = None, masked: bool | None = None) -> bytes:
        """The bytes of one hand-made frame (for lessons: fragments, fixed mask keys, broken frames).

        A close frame moves the state as ``send(Close(...))`` does.
        """
        if frame.opcode == Opcode.CLOSE and self.state is State.OPEN:
            self.state = State.CLOSING
        mask = self.role is Role.CLIENT if masked is None else masked
        return encode(frame, mask=mask, mask_key=mask_key if mask else None)

    def fail(self, code: int, reason: str) -> ConnectionFailed:
        """Fail the connection (§7.1.7): queue a close with ``code``, then the state is CLOSED.

        Use 1011 when the application's handler raised. Nothing the peer sends afterwards is read:
        after a protocol error its framing cannot be trusted, so the TCP connection closes next.
        """
        if self.state is not State.CLOSED:
            self._outgoing += self._close_frame(Close(code, reason))
            self.state = State.CLOSED
        return ConnectionFailed(code, reason)

    def data_to_send(self) -> bytes:
        """Bytes the protocol queued by itself (pongs, the close echo or a failure's close); clears them."""
        if self._failure is not None and self.state is State.OPEN:
            self.fail(self._failure.code, self._failure.reason)
        data, self._outgoing = bytes(self._outgoing), bytearray()
        return data

    def _encode(self, frame: Frame) -> bytes:
        return encode(frame, mask=self.role is Role.CLIENT)

    def _close_frame(self, close: Close) -> bytes:
        reason = close.reason.encode("utf-8")[:123].decode("utf-8", "ignore")  # fits in 125 bytes
        self.close_sent = Close(close.code, reason)
        return self._encode(Frame(Opcode.CLOSE, close_payload(close.code, reason)))

    def __repr__(self) -> str:
        return f"<Connection {self.role.value} {self.state.value}>"


# -- the opening handshake (RFC 6455 §4) ------------------------------------------------------------


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes in base64 (§4.1)."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def client_request(host: str, port: int, key: str, *, origin: str | None = None, path: str = "/ws",
                   extra: tuple[str, ...] = ()) -> bytes:
    """The client's opening handshake (§4.1), as bytes; ``extra`` header lines ("Name: value") follow."""
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
    for line in extra:
        if "\r" in line or "\n" in line or ":" not in line:
            raise ValueError(f"not one header line: {line!r}")
        lines.append(line)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def accept_request(head: bytes, *, allowed_origins: set[str] | None) -> tuple[str, bytes]:
    """Check a client's handshake head (§4.2.1); return (its key, the 101 response to send).

    Raises:
        HandshakeError: with the status to answer (400, 403 for a foreign Origin, 426 for another
            version).
    """
    try:
        request = parse_head(head)
        parts = request.start_line.split(" ")
        if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
            raise HandshakeError(400, "the handshake must be a GET over HTTP/1.1")
        upgrade = request.header("Upgrade") or ""
        connection = request.header("Connection") or ""
        version = request.header("Sec-WebSocket-Version")
        key = request.header("Sec-WebSocket-Key") or ""
        origin = request.header("Origin")  # refuses two Origin headers
    except HttpParseError as exc:
        raise HandshakeError(400, str(exc)) from exc
    if upgrade.lower() != "websocket":
        raise HandshakeError(400, "missing 'Upgrade: websocket'")
    if "upgrade" not in [t.strip().lower() for t in connection.split(",")]:
        raise HandshakeError(400, "missing 'Connection: Upgrade'")
    if version != "13":
        raise HandshakeError(426, "only Sec-WebSocket-Version 13 is supported")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 random bytes in base64") from None
    if allowed_origins is not None and origin not in allowed_origins:
        raise HandshakeError(403, f"origin {origin!r} is not allowed")
    response = (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode("ascii")
    return key, response


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Refused"


def refusal(status: int, reason: str) -> bytes:
    """A plain-text HTTP answer that refuses a handshake, closing the connection (RFC 9110 §15 reason phrases)."""
    body = f"{reason}\n".encode("utf-8", "replace")
    return (
        f"HTTP/1.1 {status} {_phrase(status)}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + body


def check_response(head: bytes, key: str) -> None:
    """Check the server's answer to our handshake (§4.1, client side); raise ``HandshakeError`` if bad."""
    try:
        response = parse_head(head)
        accept = response.header("Sec-WebSocket-Accept")
    except HttpParseError as exc:
        raise HandshakeError(400, f"malformed handshake response: {exc}") from exc
    if response.status != 101:
        raise HandshakeError(response.status or 400, f"the server refused the upgrade: {response.start_line}")
    if accept != accept_key(key):
        raise HandshakeError(400, "Sec-WebSocket-Accept does not match our key")
