"""An HTTP/3 server: HTTP over QUIC (RFC 9114, RFC 9000) on UDP, on the ``aioquic`` library, with the course's
throwaway certificate authority (``apps.tls.Pki``: QUIC always runs TLS 1.3, RFC 9001).

    with Pki() as pki, H3Server(pki) as server:        # 127.0.0.1, a free UDP port: server.port
        ...                                            # clients.http3.fetch(...)

It answers the same requests as the HTTP/2 server (``apps.http2``): ``GET /r/<name>?size=N`` with N bytes, and
404 or 405 otherwise. Each request is a QUIC stream of its own; QUIC delivers each stream in order, but one
stream's lost packet does not hold up another's (RFC 9000 §2.2): no head-of-line blocking between requests.

Limits: aioquic's own (at most 128 bidirectional streams open per connection, flow control of 1 MiB per
connection and per stream), an idle timeout of ``IDLE_TIMEOUT`` s, at most ``MAX_SIZE`` bytes an answer; a
malformed packet is dropped or the connection closed with QUIC's error code, by aioquic. ``keylog`` names a
file for the TLS secrets (the key log), with which Wireshark or tshark decrypt a capture.

The server runs on an event loop in a thread of its own (``runtime.loopthread``), listed and stopped like
every server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent

from ..errors import ServerStartError
from ..runtime.loopthread import LoopThread

__all__ = ["H3Server", "IDLE_TIMEOUT", "MAX_SIZE"]

IDLE_TIMEOUT = 30.0
MAX_SIZE = 1 << 20
MAX_TICKETS = 1000
_RESOURCE = re.compile(r"^/r/[A-Za-z0-9._-]{1,64}$")


class _H3Protocol(QuicConnectionProtocol):
    """One client's QUIC connection, speaking HTTP/3 once ALPN chose "h3". ``addresses``: every address its
    datagrams came from (more than one after a NAT rebinding or a migration, RFC 9000 §9)."""

    seen: list[set] | None = None  # set per server: each connection's addresses

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3: H3Connection | None = None
        self.addresses: set[tuple] = set()
        if self.seen is not None:
            self.seen.append(self.addresses)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(self.addresses) < 16:
            self.addresses.add(tuple(addr[:2]))
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
        if self.h3 is None:
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self._answer(h3_event.stream_id, dict(h3_event.headers))

    def _answer(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        method = headers.get(b":method", b"").decode("latin-1")
        parts = urlsplit(headers.get(b":path", b"").decode("latin-1"))
        if method != "GET":
            status, body = 405, b"only GET here\n"
        elif _RESOURCE.match(parts.path):
            raw = parse_qs(parts.query).get("size", ["2000"])[-1]
            size = min(max(int(raw), 0), MAX_SIZE) if raw.isdigit() and len(raw) < 9 else 2000
            status, body = 200, b"x" * size
        else:
            status, body = 404, b"not found\n"
        self.h3.send_headers(stream_id, [(b":status", str(status).encode()), (b"content-type", b"text/plain"),
                                         (b"content-length", str(len(body)).encode()), (b"server", b"netcourse")])
        self.h3.send_data(stream_id, body, end_stream=True)
        self.transmit()


class H3Server:
    """An HTTP/3 server on ``host`` (127.0.0.1 unless given), a UDP port the OS picks (``port``).

    Args:
        pki: the course's certificates (``apps.tls.Pki``); the server presents ``pki.server``.
        keylog: a path for TLS secrets in the key log format (None: none written).
        namespace: a network namespace to serve in (the tap link's far end).
        single_use_tickets: a session ticket resumes one connection only (the server forgets it once used), so
            a 0-RTT request replayed by an attacker on a second connection is refused its early data; False
            accepts the same ticket again, and the replay is served (RFC 9001 §9.2, RFC 8446 §8).
    """

    def __init__(self, pki: Any, *, host: str = "127.0.0.1", port: int = 0, keylog: Path | None = None,
                 namespace: str | None = None, single_use_tickets: bool = True, name: str = "HTTP/3 server") -> None:
        self.pki, self.host, self.requested_port, self.keylog = pki, host, port, keylog
        self.port = 0
        self._server = None
        self._keylog_file: IO[str] | None = None
        self._background = LoopThread(name, namespace=namespace)
        self.single_use_tickets = single_use_tickets
        self.tickets: dict[bytes, Any] = {}  # session tickets issued, by label (at most MAX_TICKETS)
        self.connections: list[set] = []  # per connection accepted, the client addresses its datagrams came from

    def _keep_ticket(self, ticket: Any) -> None:
        if len(self.tickets) >= MAX_TICKETS:
            self.tickets.pop(next(iter(self.tickets)))
        self.tickets[ticket.ticket] = ticket

    @property
    def running(self) -> bool:
        return self._background.running

    def _configuration(self) -> QuicConfiguration:
        config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, idle_timeout=IDLE_TIMEOUT)
        cert, key = self.pki.directory / "h3-server.pem", self.pki.directory / "h3-server.key"
        self.pki.server.cert_chain_pems[0].write_to_path(cert)
        self.pki.server.private_key_pem.write_to_path(key)
        config.load_cert_chain(cert, key)
        if self.keylog is not None:
            self._keylog_file = open(self.keylog, "a", encoding="ascii")  # noqa: SIM115 (closed at stop)
            config.secrets_log_file = self._keylog_file
        return config

    async def _open(self) -> int:
        fetcher = self.tickets.pop if self.single_use_tickets else self.tickets.get
        protocol = type("H3Protocol", (_H3Protocol,), {"seen": self.connections})
        self._server = await serve(self.host, self.requested_port, configuration=self._configuration(),
                                   create_protocol=protocol, session_ticket_handler=self._keep_ticket,
                                   session_ticket_fetcher=lambda label: fetcher(label, None))
        return self._server._transport.get_extra_info("sockname")[1]  # noqa: SLF001 (aioquic exposes no getter)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._keylog_file is not None:
            self._keylog_file.close()

    def start(self) -> "H3Server":
        try:
            self.port = self._background.start(self._open, self._close)
        except OSError as exc:
            raise ServerStartError(f"the HTTP/3 server could not bind {self.host}: {exc}") from exc
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._background.stop(timeout)

    def __enter__(self) -> "H3Server":
        return self.start() if not self.running else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
