"""A WebSocket client made of a plain socket and the course's sans-I/O connection (``protocols.wsconn``):
every byte it sends and receives is visible. Notebooks 04, 05 and 08 drive it, the tests too.

    with RawClient(srv) as ws:                  # srv: anything with .host and .port (a Server, an Address)
        ws.send(Frame(Opcode.TEXT, b"hi"))
        ws.receive()                            # -> [Message(TEXT, b"hi")] from an echo server
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

from ..errors import HandshakeError, HttpParseError
from ..protocols.httpwire import parse_head, split_head
from ..protocols.wsconn import (
    Connection,
    Event,
    State,
    check_response,
    client_request,
    new_key,
)
from ..protocols.wsframe import Frame

__all__ = ["ORIGIN", "Address", "RawClient", "Endpoint"]


class Endpoint(Protocol):
    """Where a server listens: a running ``Server``, or an ``Address``."""

    host: str
    port: int


ORIGIN = "http://127.0.0.1"  # the origin the course's pages would have


@dataclass(frozen=True)
class Address:
    """Where a server listens, for ``RawClient`` when there is no ``Server`` object at hand (a child process,
    a server on the far side of a link)."""

    host: str
    port: int


class RawClient:
    """A WebSocket client made of a plain socket and the course's sans-I/O connection. Every byte is visible.

    Use it as a context manager; the socket is closed at the end, and also when the handshake fails
    on the way (refused connection, timeout).

    Attributes:
        request, response: the opening handshake's bytes, as sent and as received.
        key: the Sec-WebSocket-Key sent.
        conn: the ``wsconn.Connection`` that tracks the protocol's state.
    """

    def __init__(self, srv: Endpoint, *, origin: str | None = ORIGIN, timeout: float = 5.0, key: str | None = None,
                 extra_headers: tuple[str, ...] = (), nodelay: bool = False) -> None:
        self.key = key or new_key()
        self.request = client_request(srv.host, srv.port, self.key, origin=origin, extra=extra_headers)
        self.response = b""
        self.conn = Connection("client", max_size=1 << 24)
        self._pending: list[Event] = []
        self.sock = socket.create_connection((srv.host, srv.port), timeout=timeout)
        try:
            if nodelay:  # send small writes at once, without waiting for the previous one's ACK (Nagle)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(self.request)
            buffer = b""
            while (found := split_head(buffer)) is None:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the server closed the connection during the handshake")
                buffer += chunk
            self.response, rest = found
            if self.accepted and rest:
                self._pending = self._take(rest)
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def accepted(self) -> bool:
        """True when the server answered 101 Switching Protocols with the right accept key."""
        try:
            check_response(self.response, self.key)
        except HandshakeError:
            return False
        return True

    @property
    def accept_header(self) -> str | None:
        """The server's Sec-WebSocket-Accept."""
        try:
            return parse_head(self.response).header("Sec-WebSocket-Accept")
        except HttpParseError:
            return None

    def send(self, frame: Frame, *, mask_key: bytes | None = None, masked: bool = True) -> bytes:
        """Encode and send one frame (masked, as a client must, unless told otherwise); returns the bytes."""
        data = self.conn.send_frame(frame, mask_key=mask_key, masked=masked)
        self.sock.sendall(data)
        return data

    def _take(self, data: bytes) -> list[Event]:
        events = self.conn.receive_data(data)
        reply = self.conn.data_to_send()  # a pong, or the echo of the server's close
        if reply:
            self.sock.sendall(reply)
        return events

    def receive(self, count: int = 1) -> list[Event]:
        """Read until ``count`` events have arrived (bounded by the socket timeout), e.g. a ``Message``."""
        events, self._pending = self._pending, []
        while len(events) < count:
            data = self.sock.recv(65536)
            if not data:
                break
            events += self._take(data)
        return events

    def close(self) -> None:
        """Close the TCP connection; after a close handshake, first let the server close it (§7.1.1)."""
        try:
            if self.conn.state is State.CLOSED:  # both close frames crossed: the server's FIN is due
                self.sock.settimeout(1.0)
                while self.sock.recv(65536):
                    pass
        except OSError:  # a reset or a timeout: the connection ends here either way
            pass
        finally:
            self.sock.close()
