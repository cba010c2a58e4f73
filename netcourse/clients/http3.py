"""An HTTP/3 client (RFC 9114) on ``aioquic``: one QUIC connection, every request at once on its own stream.

``fetch(host, port, paths, cadata=...)`` connects (QUIC's handshake carries TLS 1.3's: one round trip, RFC 9001),
sends every request, and returns a ``Page`` (the same shape as ``clients.http2``'s): when each answer ended,
its status and size, and when the handshake completed. ``session_ticket`` resumes an earlier connection;
``early`` then sends the requests as 0-RTT data, before the handshake completes (RFC 9001 §4.6), which the
server may replay-protect or not: RFC 9001 §9.2.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from ..errors import NetcourseError
from .http2 import Page

__all__ = ["fetch", "session", "webtransport_echo"]


class _Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.page: Page | None = None
        self.streams: dict[int, str] = {}
        self.finished = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            path = self.streams.get(getattr(h3_event, "stream_id", -1))
            if path is None or self.page is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                self.page.status[path] = int(dict(h3_event.headers).get(b":status", b"0"))
            elif isinstance(h3_event, DataReceived):
                if h3_event.data:
                    self.page.first.setdefault(path, time.perf_counter() - self.page.started)
                self.page.size[path] += len(h3_event.data)
            if getattr(h3_event, "stream_ended", False):
                self.page.done[path] = time.perf_counter() - self.page.started
                if len(self.page.done) == len(self.streams):
                    self.finished.set()

    def request(self, page: Page, paths: list[str], authority: str) -> None:
        """Send every path on a new stream; ``page`` collects the answers."""
        self.page, self.streams = page, {}
        self.finished.clear()
        for path in paths:
            stream_id = self._quic.get_next_available_stream_id()
            self.streams[stream_id] = path
            page.size[path] = 0
            self.h3.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"https"),
                                             (b":authority", authority.encode()), (b":path", path.encode()),
                                             (b"user-agent", b"netcourse")], end_stream=True)
        self.transmit()


def _configuration(cadata: bytes, server_name: str, timeout: float, keylog: IO[str] | None,
                   session_ticket: Any) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name, cadata=cadata,
                               idle_timeout=timeout)
    if keylog is not None:
        config.secrets_log_file = keylog
    if session_ticket is not None:
        config.session_ticket = session_ticket
    return config


async def fetch(host: str, port: int, paths: list[str], *, cadata: bytes, server_name: str = "localhost",
                timeout: float = 30.0, keylog: IO[str] | None = None, session_ticket: Any = None,
                tickets: list | None = None, early: bool = False) -> Page:
    """GET every path over one new HTTP/3 connection; see the module's docstring. ``tickets`` collects the
    session tickets the server sends (for a later ``session_ticket``). ``page.handshake`` is the seconds until
    the handshake completed."""
    if not paths:
        raise ValueError("fetch() needs at least one path")
    config = _configuration(cadata, server_name, timeout, keylog, session_ticket)
    page = Page(time.perf_counter())
    authority = f"{server_name}:{port}"
    try:
        async with asyncio.timeout(timeout):
            async with connect(host, port, configuration=config, create_protocol=_Client,
                               session_ticket_handler=tickets.append if tickets is not None else None,
                               wait_connected=not early) as client:
                if early:
                    client.request(page, paths, authority)  # 0-RTT: before the handshake completes
                    await client.wait_connected()
                    page.handshake = time.perf_counter() - page.started
                else:
                    page.handshake = time.perf_counter() - page.started
                    client.request(page, paths, authority)
                await client.finished.wait()
    except (TimeoutError, asyncio.TimeoutError):
        raise NetcourseError(f"{len(paths) - len(page.done)} of {len(paths)} HTTP/3 answers did not come within "
                             f"{timeout:g} s") from None
    except ConnectionError as exc:
        raise NetcourseError(f"the QUIC connection failed: {exc}") from exc
    return page


@contextlib.asynccontextmanager
async def session(host: str, port: int, *, cadata: bytes, server_name: str = "localhost",
                  timeout: float = 30.0, quic_logger: Any = None) -> AsyncIterator[Callable[[list[str]], Awaitable[Page]]]:
    """One HTTP/3 connection kept open: ``get = ...; page = await get(paths)`` as often as you like, all on it.
    A ``quic_logger`` (aioquic's ``QuicLogger``) records every frame the client sends and receives (qlog)."""
    config = _configuration(cadata, server_name, timeout, None, None)
    if quic_logger is not None:
        config.quic_logger = quic_logger
    authority = f"{server_name}:{port}"
    try:
        async with connect(host, port, configuration=config, create_protocol=_Client) as client:

            async def get(paths: list[str], wait: float = 10.0) -> Page:
                page = Page(time.perf_counter())
                client.request(page, paths, authority)
                try:
                    await asyncio.wait_for(client.finished.wait(), wait)
                except asyncio.TimeoutError:
                    raise NetcourseError(f"no HTTP/3 answer within {wait:g} s on this connection") from None
                return page

            yield get
    except ConnectionError as exc:
        raise NetcourseError(f"the QUIC connection was refused or lost ({exc!r})") from exc


class _WebTransportClient(QuicConnectionProtocol):
    """HTTP/3 with WebTransport switched on; every HTTP/3 event goes to ``events`` and wakes ``arrived``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.events: list = []
        self.arrived = asyncio.Event()
        self.own_streams: dict[int, bytearray] = {}  # WebTransport streams this client opened: what came back

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, (ConnectionTerminated, StreamReset)):
            self.events.append(event)  # the end of the connection or of a stream: ``until`` fails at once
        if isinstance(event, StreamDataReceived) and event.stream_id in self.own_streams:
            # the answer on a stream this client opened is the application's bytes, not HTTP/3 frames (aioquic's
            # H3Connection knows only the streams the peer opens as WebTransport's), so it is read here
            if len(self.own_streams[event.stream_id]) + len(event.data) <= 65_536:  # a hostile server's flood, cut
                self.own_streams[event.stream_id] += event.data
            if event.end_stream:
                self.events.append(event)
        else:
            self.events.extend(self.h3.handle_event(event))
        self.arrived.set()

    def open_session(self, authority: str, path: str = "/wt") -> int:
        """Send the extended CONNECT that asks for a WebTransport session; its stream ID names the session."""
        session = self._quic.get_next_available_stream_id()
        self.h3.send_headers(session, [(b":method", b"CONNECT"), (b":scheme", b"https"),
                                       (b":authority", authority.encode()), (b":path", path.encode()),
                                       (b":protocol", b"webtransport")])
        self.transmit()
        return session

    def send_on_new_stream(self, session: int, data: bytes) -> int:
        """Open a bidirectional WebTransport stream in ``session``, send ``data`` on it and end it."""
        stream = self.h3.create_webtransport_stream(session)
        self.own_streams[stream] = bytearray()
        self._quic.send_stream_data(stream, data, end_stream=True)
        self.transmit()
        return stream

    async def until(self, test: Callable[[Any], bool], wait: float) -> Any:
        """The first event that passes ``test``, waiting ``wait`` seconds at most."""
        async with asyncio.timeout(wait):
            while True:
                found = next((e for e in self.events if test(e)), None)
                if found is not None:
                    return found
                ended = next((e for e in self.events if isinstance(e, (ConnectionTerminated, StreamReset))), None)
                if isinstance(ended, ConnectionTerminated):
                    raise NetcourseError(f"the server closed the QUIC connection: error 0x{ended.error_code:x} "
                                         f"({ended.reason_phrase or 'no reason given'})")
                if isinstance(ended, StreamReset):
                    raise NetcourseError(f"the server reset stream {ended.stream_id} (error 0x{ended.error_code:x})")
                del self.events[:-64]  # what nobody waits for is not kept
                self.arrived.clear()
                await self.arrived.wait()


async def webtransport_echo(host: str, port: int, *, cadata: bytes, server_name: str = "localhost",
                            text: bytes = b"hello", path: str = "/wt", timeout: float = 10.0) -> dict[str, float]:
    """Open a QUIC connection, a WebTransport session on it (extended CONNECT to /wt), then send ``text`` as one
    datagram and on one bidirectional stream, each echoed by the server: seconds from the start until the
    handshake, the session's 200, the datagram's echo and the stream's echo, one after the other."""
    if not 1 <= len(text) <= 1000:
        raise ValueError("text is 1 to 1,000 bytes: a datagram and its echo must fit one QUIC packet")
    config = _configuration(cadata, server_name, timeout, None, None)
    config.max_datagram_frame_size = 1100
    times: dict[str, float] = {}
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with connect(host, port, configuration=config, create_protocol=_WebTransportClient) as client:
                times["QUIC handshake"] = time.perf_counter() - start
                session = client.open_session(f"{server_name}:{port}", path)
                head = await client.until(lambda e: isinstance(e, HeadersReceived) and e.stream_id == session, timeout)
                if dict(head.headers).get(b":status") != b"200":
                    raise NetcourseError(f"the server refused the WebTransport session: {dict(head.headers)!r}")
                times["session open (CONNECT, 200)"] = time.perf_counter() - start
                client.h3.send_datagram(session, text)
                client.transmit()
                await client.until(lambda e: isinstance(e, DatagramReceived) and e.data == text, timeout)
                times["datagram echoed"] = time.perf_counter() - start
                stream = client.send_on_new_stream(session, text)
                await client.until(lambda e: isinstance(e, StreamDataReceived) and e.stream_id == stream, timeout)
                if bytes(client.own_streams[stream]) != text:
                    raise NetcourseError(f"the stream echoed {bytes(client.own_streams[stream])!r}, not {text!r}")
                times["stream echoed"] = time.perf_counter() - start
    except (TimeoutError, asyncio.TimeoutError):
        raise NetcourseError(f"WebTransport: no answer within {timeout:g} s (so far: {list(times)}); a lost "
                             "datagram is not sent again, by design") from None
    except ConnectionError as exc:
        raise NetcourseError(f"the QUIC connection failed: {exc}") from exc
    return times
