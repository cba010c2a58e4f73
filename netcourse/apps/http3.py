"""An HTTP/3 server: HTTP over QUIC (RFC 9114, RFC 9000) on UDP, on the ``aioquic`` library, with the course's
throwaway certificate authority (``apps.tls.Pki``: QUIC always runs TLS 1.3, RFC 9001).

    with Pki() as pki, H3Server(pki) as server:        # 127.0.0.1, a free UDP port: server.port
        ...                                            # clients.http3.fetch(...)

It answers the same requests as the HTTP/2 server (``apps.http2``): ``GET /r/<name>?size=N`` with N bytes, and
404 or 405 otherwise. Each request is a QUIC stream of its own; QUIC delivers each stream in order, but one
stream's lost packet does not hold up another's (RFC 9000 §2.2): no head-of-line blocking between requests.

Limits: at most ``MAX_CONNECTIONS`` QUIC connections at once (one more is closed with CONNECTION_REFUSED,
RFC 9000 §20.1); aioquic's own per connection (at most 128 bidirectional streams, flow control of 1 MiB per
connection and per stream, a handshake's 3× anti-amplification limit, RFC 9000 §8.1); an idle timeout of
``IDLE_TIMEOUT`` s; at most ``MAX_SIZE`` bytes an answer and ``BUDGET`` bytes answered to one connection in
``BUDGET_WINDOW`` s and ``LIFETIME_BUDGET`` in its life, past which it gets 503 (aioquic queues a whole answer at
once, whatever the client's window: this bounds what a client that never acknowledges can pin; every answer or
echo costs at least ``MIN_CHARGE``); at most ``MAX_STREAM_IN`` bytes received on one stream (aioquic buffers an
HTTP/3 frame whole, and grows its flow-control windows as data arrives) and ``MAX_REQUESTS`` streams in a
connection's life, past which it is closed with H3_EXCESSIVE_LOAD; a stream answered once, trailers ignored;
an answer that fails resets its stream with H3_INTERNAL_ERROR (RFC 9114 §8.1) and spares the others. The key
log (``keylog``) is created readable by its owner only (0600), never through a symlink. No address validation
(Retry, RFC 9000 §8.1.2): it would add a round trip to every handshake this notebook measures.

WebTransport (draft-ietf-webtrans-http3, as aioquic implements it): an extended CONNECT to ``/wt`` with
``:protocol: webtransport`` opens a session (200); on it, the server echoes each bidirectional stream's bytes
back on the same stream, and each HTTP/3 datagram (RFC 9297, over QUIC DATAGRAM frames, RFC 9221) as a
datagram. At most ``MAX_SESSIONS`` sessions a connection (a session ends with its stream); echoes count
against the same budgets; a datagram may carry ``MAX_DATAGRAM`` bytes, so that its echo fits one packet; an echo
that cannot be sent (a stream the client reset) is dropped; a CONNECT for anything else is refused (404, or 400
for another protocol).

The server runs on an event loop in a thread of its own (``runtime.loopthread``), listed and stopped like
every server.
"""

from __future__ import annotations

import collections
import os
import re
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent, StreamDataReceived, StreamReset

from ..errors import ServerStartError
from ..runtime.loopthread import LoopThread

__all__ = ["H3Server", "IDLE_TIMEOUT", "MAX_SIZE", "MAX_CONNECTIONS", "BUDGET", "MAX_SESSIONS"]

IDLE_TIMEOUT = 30.0
MAX_SIZE = 256 * 1024
MAX_TICKETS = 1000
MAX_CONNECTIONS = 32
BUDGET = 4 << 20  # bytes a connection may be answered in BUDGET_WINDOW seconds (aioquic queues what it is given)
BUDGET_WINDOW = 10.0
LIFETIME_BUDGET = 32 << 20  # bytes a connection may be answered or echoed in its whole life
MIN_CHARGE = 64  # what an echo or an answer costs the budget at least (an empty one is not free)
MAX_STREAM_IN = 256 * 1024  # bytes a client may send on one stream (aioquic buffers an HTTP/3 frame until it ends)
MAX_REQUESTS = 10_000  # streams (requests, sessions, WebTransport streams) in a connection's life
MAX_SESSIONS = 4  # WebTransport sessions on one connection
MAX_DATAGRAM = 1100  # the largest QUIC DATAGRAM frame accepted (RFC 9221 §3), so that its echo fits a packet
H3_INTERNAL_ERROR, H3_EXCESSIVE_LOAD, H3_REQUEST_REJECTED, H3_MESSAGE_ERROR = 0x0102, 0x0107, 0x010B, 0x010E  # §8.1
QUIC_CONNECTION_REFUSED = 0x2  # RFC 9000 §20.1
_RESOURCE = re.compile(r"^/r/[A-Za-z0-9._-]{1,64}$")
_BODY = b"x" * MAX_SIZE


class _H3Protocol(QuicConnectionProtocol):
    """One client's QUIC connection, speaking HTTP/3 once ALPN chose "h3". ``addresses``: every address its
    datagrams came from (more than one after a NAT rebinding or a migration, RFC 9000 §9)."""

    seen: collections.deque | None = None  # set per server: each connection's addresses (the newest 256)
    live: set | None = None  # set per server: the connections open now

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3: H3Connection | None = None
        self.addresses: set[tuple] = set()
        self.answered: set[int] = set()  # request and session streams (a WebTransport echo never writes to them)
        self.sent: collections.deque[tuple[float, int]] = collections.deque()  # (when, bytes) of recent answers
        self.sent_recent = 0  # their sum
        self.sent_total = 0  # every byte answered or echoed, the connection's life long
        self.sessions: set[int] = set()  # WebTransport sessions: the CONNECT streams' IDs
        self.received: dict[int, int] = {}  # bytes received per stream (open streams)
        self.streams_seen = 0
        if self.seen is not None:
            self.seen.append(self.addresses)
        if self.live is not None:
            if len(self.live) >= MAX_CONNECTIONS:
                self._quic.close(error_code=QUIC_CONNECTION_REFUSED, reason_phrase="too many connections")
            self.live.add(self)
            self._connection_terminated_handler = lambda: self.live.discard(self)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(self.addresses) < 16:
            self.addresses.add(tuple(addr[:2]))
        super().datagram_received(data, addr)

    def _too_much(self, event: QuicEvent) -> str:
        """Why this stream event breaks a limit ("" if it does not): bytes on one stream, streams in all."""
        if isinstance(event, StreamReset):
            self.sessions.discard(event.stream_id)  # a session whose stream is reset is over
            self.received.pop(event.stream_id, None)
            return ""
        if not isinstance(event, StreamDataReceived):
            return ""
        if event.stream_id not in self.received:
            self.streams_seen += 1
        total = self.received.get(event.stream_id, 0) + len(event.data)
        self.received[event.stream_id] = total
        if event.end_stream:
            self.received.pop(event.stream_id, None)
            self.sessions.discard(event.stream_id)  # the client ended its session's stream: the session is over
        if total > MAX_STREAM_IN:
            return f"more than {MAX_STREAM_IN:,} bytes on one stream"
        if self.streams_seen > MAX_REQUESTS:
            return f"more than {MAX_REQUESTS:,} streams on one connection"
        return ""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated) and self.live is not None:
            self.live.discard(self)
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic, enable_webtransport=True)
        if self.h3 is None:
            return
        why = self._too_much(event)
        if why:
            self._quic.close(error_code=H3_EXCESSIVE_LOAD, reason_phrase=why)
            self.transmit()
            return
        try:
            h3_events = self.h3.handle_event(event)
        except Exception:  # not aioquic's own refusal (it closes the connection itself): close, and say so
            self._quic.close(error_code=H3_INTERNAL_ERROR, reason_phrase="the server failed on this input")
            self.transmit()
            return
        for h3_event in h3_events:
            if isinstance(h3_event, (WebTransportStreamDataReceived, DatagramReceived)):
                try:
                    self._echo(h3_event)
                except Exception:  # a stream the client reset or stopped: the echo has nowhere to go
                    pass
                continue
            if isinstance(h3_event, HeadersReceived) and h3_event.stream_id not in self.answered:
                self.answered.add(h3_event.stream_id)  # a second HEADERS (trailers) is not a second request
                try:
                    self._answer(h3_event.stream_id, dict(h3_event.headers))
                except Exception:  # a bug must not cost the other streams their answers
                    self._quic.reset_stream(h3_event.stream_id, H3_INTERNAL_ERROR)
        self.transmit()

    def _budget_left(self, now: float) -> int:
        """Bytes this connection may still be sent now: the window's budget, and its life's."""
        while self.sent and self.sent[0][0] <= now - BUDGET_WINDOW:
            self.sent_recent -= self.sent.popleft()[1]
        return min(BUDGET - self.sent_recent, LIFETIME_BUDGET - self.sent_total)

    def _charge(self, now: float, size: int) -> None:
        cost = max(size, MIN_CHARGE)
        self.sent.append((now, cost))
        self.sent_recent += cost
        self.sent_total += cost

    def _echo(self, event: WebTransportStreamDataReceived | DatagramReceived) -> None:
        """Send a WebTransport stream's bytes back on it, or a datagram back as a datagram, within the budget.
        Only a session's datagrams and the client's own bidirectional WebTransport streams are echoed."""
        session = event.session_id if isinstance(event, WebTransportStreamDataReceived) else event.stream_id
        stream = event.stream_id if isinstance(event, WebTransportStreamDataReceived) else None
        bidirectional = isinstance(event, WebTransportStreamDataReceived) and event.stream_id % 4 == 0
        now = time.monotonic()
        if (session not in self.sessions or stream in self.answered
                or max(len(event.data), MIN_CHARGE) > self._budget_left(now)):
            if bidirectional and stream not in self.answered:
                self._quic.reset_stream(event.stream_id, H3_REQUEST_REJECTED)
            return  # a datagram is unreliable by nature: one dropped is within its contract
        if isinstance(event, DatagramReceived):
            self._charge(now, len(event.data))
            self.h3.send_datagram(session, event.data)
        elif bidirectional:  # echo on the same stream
            self._charge(now, len(event.data))
            self._quic.send_stream_data(event.stream_id, event.data, end_stream=event.stream_ended)

    def _open_session(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        """An extended CONNECT (RFC 9220 §3, as for WebSockets): 200 opens a WebTransport session on this stream."""
        protocol = headers.get(b":protocol", b"")
        path = headers.get(b":path", b"")
        if protocol != b"webtransport":
            status = b"400"
        elif path != b"/wt":
            status = b"404"
        elif len(self.sessions) >= MAX_SESSIONS:
            status = b"429"
        else:
            self.sessions.add(stream_id)
            self.h3.send_headers(stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02"),
                                             (b"server", b"netcourse")])
            return
        self.h3.send_headers(stream_id, [(b":status", status), (b"server", b"netcourse")], end_stream=True)

    def _answer(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        method = headers.get(b":method", b"").decode("latin-1")
        if method == "CONNECT":
            return self._open_session(stream_id, headers)
        parts = urlsplit(headers.get(b":path", b"").decode("latin-1"))
        if method != "GET":
            status, body = 405, b"only GET here\n"
        elif _RESOURCE.match(parts.path):
            raw = parse_qs(parts.query).get("size", ["2000"])[-1]
            size = min(int(raw), MAX_SIZE) if raw.isascii() and raw.isdigit() and len(raw) < 9 else 2000
            now = time.monotonic()
            if max(size, MIN_CHARGE) > self._budget_left(now):
                status, body = 503, b"this connection asked for too much at once: try again shortly\n"
            else:
                self._charge(now, size)
                status, body = 200, _BODY[:size]
        else:
            status, body = 404, b"not found\n"
        self.h3.send_headers(stream_id, [(b":status", str(status).encode()), (b"content-type", b"text/plain"),
                                         (b"content-length", str(len(body)).encode()), (b"server", b"netcourse")])
        self.h3.send_data(stream_id, body, end_stream=True)


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
        self.connections: collections.deque[set] = collections.deque(maxlen=256)  # per connection: client addresses
        self.live: set = set()  # the connections open now (at most MAX_CONNECTIONS)

    def _keep_ticket(self, ticket: Any) -> None:
        if len(self.tickets) >= MAX_TICKETS:
            self.tickets.pop(next(iter(self.tickets)))
        self.tickets[ticket.ticket] = ticket

    @property
    def running(self) -> bool:
        return self._background.running

    def _configuration(self) -> QuicConfiguration:
        config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, idle_timeout=IDLE_TIMEOUT,
                                   max_datagram_frame_size=MAX_DATAGRAM)
        cert, key = self.pki.directory / "h3-server.pem", self.pki.directory / "h3-server.key"
        self.pki.server.cert_chain_pems[0].write_to_path(cert)
        self.pki.server.private_key_pem.write_to_path(key)
        config.load_cert_chain(cert, key)
        if self.keylog is not None:  # TLS secrets: readable by their owner only, and never through a symlink
            fd = os.open(self.keylog, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            self._keylog_file = os.fdopen(fd, "a", encoding="ascii")
            config.secrets_log_file = self._keylog_file
        return config

    async def _open(self) -> int:
        fetcher = self.tickets.pop if self.single_use_tickets else self.tickets.get
        protocol = type("H3Protocol", (_H3Protocol,), {"seen": self.connections, "live": self.live})
        self._server = await serve(self.host, self.requested_port, configuration=self._configuration(),
                                   create_protocol=protocol, session_ticket_handler=self._keep_ticket,
                                   session_ticket_fetcher=lambda label: fetcher(label, None))
        return self._server._transport.get_extra_info("sockname")[1]  # noqa: SLF001 (aioquic exposes no getter)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_keylog()

    def start(self) -> "H3Server":
        try:
            self.port = self._background.start(self._open, self._close)
        except OSError as exc:
            self._close_keylog()
            raise ServerStartError(f"the HTTP/3 server could not bind {self.host}: {exc}") from exc
        except BaseException:
            self._close_keylog()
            raise
        return self

    def _close_keylog(self) -> None:
        if self._keylog_file is not None and not self._keylog_file.closed:
            self._keylog_file.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._background.stop(timeout)

    def __enter__(self) -> "H3Server":
        return self.start() if not self.running else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
