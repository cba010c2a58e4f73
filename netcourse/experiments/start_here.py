"""Notebook 00: one HTTP request, captured — what it takes to deliver 13 bytes.

The server is a real aiohttp app. The client is a plain socket that writes an HTTP/1.1 request by
hand, so the learner sees every byte it sends. It asks the server to close the connection after the
response (``Connection: close``), so one capture holds a connection's whole life: handshake, request,
response and teardown.
"""

from __future__ import annotations

import html
import socket
import time
from dataclasses import dataclass

from aiohttp import web

from ..apps.safety import safe_app
from ..protocols.httpwire import split_head
from ..traffic.sniffer import Capture, capture, capture_permitted
from ..errors import NetcourseError, NetcourseTimeout
from ..course.exercises import Exercise
from ..runtime.tcpinfo import TcpInfo, tcp_info
from .registry import scenario
from ..network.link import link
from ..runtime.server import Server, serve
from ..runtime.waiting import wait_until
from ..traffic.wire import WireBytes, from_capture, from_tcp_info

__all__ = [
    "HELLO_BODY",
    "make_hello_app",
    "build_request",
    "Exchange",
    "http_exchange",
    "first_request",
    "exchange_bytes",
    "Budget",
    "request_across",
    "exercise_handshake",
    "exercise_response_headers",
]

HELLO_BODY = b"Hello, world!"  # 13 bytes
BODY_KEY = web.AppKey("body", bytes)


async def _hello(request: web.Request) -> web.Response:
    size = request.query.get("size")
    if size is not None and not (size.isascii() and size.isdigit() and len(size) <= 8):
        raise web.HTTPBadRequest(text=f"size must be a whole number of bytes up to 10,000,000, not {size[:20]!r}")
    body = request.app[BODY_KEY] if size is None else b"x" * min(int(size), 10_000_000)
    # A fixed Server header keeps the response the same size on every Python and aiohttp version.
    return web.Response(body=body, content_type="text/plain", headers={"Server": "netcourse"})


def make_hello_app(body: bytes = HELLO_BODY) -> web.Application:
    """An app whose ``GET /hello`` answers ``body``; ``GET /hello?size=N`` answers N bytes of "x"."""
    app = safe_app()
    app[BODY_KEY] = body
    app.router.add_get("/hello", _hello)
    return app


def build_request(host: str, port: int, path: str = "/hello") -> bytes:
    """The exact HTTP/1.1 request the course's client sends (RFC 9112 §3)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"  # RFC 9112 §3.2: mandatory in HTTP/1.1
        "User-Agent: netcourse\r\n"
        "Accept: */*\r\n"
        "Connection: close\r\n"  # RFC 9112 §9.6: close after this response
        "\r\n"
    ).encode("ascii")


@dataclass(frozen=True)
class Exchange:
    """One HTTP request and response over a fresh TCP connection.

    Attributes:
        request: every byte the client sent.
        response: every byte the client received.
        latency_s: seconds from connect() to the last byte of the response.
        tcp: the client socket's TCP_INFO after the connection closed (None off Linux).
        capture: the packets, live or replayed (None when not captured).
    """

    request: bytes
    response: bytes
    latency_s: float
    tcp: TcpInfo | None
    capture: Capture | None = None

    @property
    def response_head(self) -> bytes:
        """The response's status line and headers, up to and including the blank line."""
        found = split_head(self.response)
        if found is None:
            raise ValueError("the response has no complete head")
        return found[0]

    @property
    def body(self) -> bytes:
        """The response body."""
        return self.response[len(self.response_head) :]

    def wire(self, label: str = "one HTTP exchange") -> WireBytes:
        """Bytes on the wire per layer: from the capture if there is one, else from TCP_INFO."""
        if self.capture is not None:
            return from_capture(self.capture, label=label)
        if self.tcp is None:
            raise NetcourseError("Neither a capture nor TCP_INFO is available on this system.")
        return from_tcp_info(self.tcp, sent=self.request, received=self.response, label=label)

    def __repr__(self) -> str:
        source = "none" if self.capture is None else ("live" if self.capture.live else "replayed")
        return (
            f"<Exchange: sent {len(self.request)} bytes, received {len(self.response)} bytes "
            f"({len(self.response_head)} of headers, {len(self.body)} of body); packets: {source}>"
        )


def http_exchange(srv: Server, path: str = "/hello", *, timeout: float = 5.0) -> Exchange:
    """Send one request with a raw socket, read the whole response, close, and read TCP_INFO.

    The server closes first (``Connection: close``); the client then closes its side and waits,
    bounded by ``timeout``, until its socket reaches CLOSE, so TCP_INFO counts every segment.
    """
    request = build_request(srv.host, srv.port, path)
    start = time.perf_counter()
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        latency = time.perf_counter() - start
        sock.shutdown(socket.SHUT_WR)
        if not wait_until(lambda: getattr(tcp_info(sock), "state", "CLOSE") == "CLOSE", timeout):  # no TCP_INFO: done
            raise NetcourseTimeout(f"The connection to {srv.url} did not finish closing in {timeout} s.")
        info = tcp_info(sock)
    return Exchange(request=request, response=b"".join(chunks), latency_s=latency, tcp=info)


@scenario("first_request")
def first_request() -> Exchange:
    """Start the hello server, capture one request to it, stop the server. The notebook's experiment."""
    with serve(make_hello_app(), name="hello") as srv:
        with capture(srv.port, scenario="first_request") as cap:
            exchange = http_exchange(srv)
    return Exchange(exchange.request, exchange.response, exchange.latency_s, exchange.tcp, cap)


def exchange_bytes(body_size: int, *, use_capture: bool | None = None) -> WireBytes:
    """Bytes on the wire for one request whose response body is ``body_size`` bytes, measured live.

    With capture rights the packets are captured; without, the kernel's TCP_INFO counts them.

    Args:
        body_size: response body size in bytes (0 to 10,000,000).
        use_capture: force (True) or avoid (False) capture; None decides by capture rights.
    """
    if not 0 <= body_size <= 10_000_000:
        raise ValueError("body_size must be between 0 and 10,000,000 bytes")
    if use_capture is None:
        use_capture = capture_permitted()
    label = f"{body_size:,}-byte body"
    with serve(make_hello_app(), name="hello") as srv:
        if use_capture:
            with capture(srv.port, mode="live", show_notice=False) as cap:
                ex = http_exchange(srv, f"/hello?size={body_size}")
            return from_capture(cap, label=label)
        ex = http_exchange(srv, f"/hello?size={body_size}")
    return ex.wire(label)


# -- the same request across a distance ---------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Where the time of one fresh request across an emulated link went (a latency budget, as in
    Grigorik's *High Performance Browser Networking*, ch. 10), measured at the client.

    Attributes:
        rtt_ms: the link's round-trip time, milliseconds.
        mode: the link's mode, "tap" or "relay".
        connect_ms: connect() until it returned: TCP's handshake.
        first_byte_ms: request sent until the first byte of the answer.
        rest_ms: first byte until the last.
        kernel_rtt_ms: the kernel's smoothed RTT estimate for the connection (None in relay mode, where
            the kernel only saw loopback).
        capture: the packets (tap: live from the wire; relay: the recording).
    """

    rtt_ms: float
    mode: str
    connect_ms: float
    first_byte_ms: float
    rest_ms: float
    kernel_rtt_ms: float | None
    capture: Capture | None

    @property
    def total_ms(self) -> float:
        """connect() to the last byte."""
        return self.connect_ms + self.first_byte_ms + self.rest_ms

    def rows(self) -> list[tuple[str, float, str]]:
        """(step, measured ms, what theory says)."""
        rtt = self.rtt_ms
        return [
            ("TCP handshake (connect)", self.connect_ms, f"1 RTT = {rtt:.1f} ms"),
            ("request -> first byte of the answer", self.first_byte_ms, f"1 RTT = {rtt:.1f} ms + server time"),
            ("first byte -> last byte", self.rest_ms, "about 0 (the answer fits one packet)"),
            ("total, before the body can be used", self.total_ms, f"2 RTT = {2 * rtt:.1f} ms"),
        ]

    def __repr__(self) -> str:
        # Numbers are not padded: the lines stay the same shape whatever they measure (nbval compares them).
        lines = [f"{'step':<38}measured, expected"]
        lines += [f"{step:<38}{value:.1f} ms, {theory}" for step, value, theory in self.rows()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{html.escape(step)}</td><td style='text-align:right'>{value:.1f} ms</td>"
            f"<td>{html.escape(theory)}</td></tr>"
            for step, value, theory in self.rows()
        )
        return f"<table><tr><th>step</th><th>measured</th><th>expected</th></tr>{body}</table>"


def _timed_request(host: str, port: int, timeout: float) -> tuple[float, float, float, TcpInfo | None]:
    """(connect s, request to first byte s, first to last byte s, TCP_INFO) of one fresh request."""
    request = build_request(host, port)
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        t1 = time.perf_counter()
        sock.sendall(request)
        first = sock.recv(65536)
        t2 = time.perf_counter()
        while first and sock.recv(65536):
            pass
        t3 = time.perf_counter()
        info = tcp_info(sock)
    return t1 - t0, t2 - t1, t3 - t2, info


def request_across(rtt_ms: float = 50.0, *, packets: bool = True, timeout: float = 10.0) -> Budget:
    """The hello request on a fresh connection across an emulated link of ``rtt_ms``.

    Args:
        rtt_ms: round-trip time of the link, milliseconds.
        packets: also capture the packets (scenario "first_request_link"; replayed in relay mode).
        timeout: seconds for the request.
    """
    with link(rtt_ms=rtt_ms) as net:
        srv = net.serve(make_hello_app(), name="hello")
        net.announce()
        if packets:
            with net.capture(srv.port, scenario="first_request_link") as cap:
                connect, first, rest, info = net.near(lambda: _timed_request(srv.host, srv.port, timeout))
        else:
            cap = None
            connect, first, rest, info = net.near(lambda: _timed_request(srv.host, srv.port, timeout))
    kernel = info.rtt_us / 1000 if info is not None and net.mode == "tap" else None
    return Budget(rtt_ms, net.mode, connect * 1000, first * 1000, rest * 1000, kernel, cap)


@scenario("first_request_link")
def first_request_link() -> Budget:
    """The recorded scenario: the hello request across a 50 ms link (recorded in tap mode)."""
    return request_across(50.0)


# -- exercises -------------------------------------------------------------------------------------


def exercise_handshake(exchange: Exchange) -> Exercise:
    """How many packets opened the connection? Checked against the learner's own capture."""
    rows = exchange.capture.table() if exchange.capture is not None else []
    first_data = next((r.no for r in rows if r.payload), 4)
    return Exercise(
        "Before the request could be sent, TCP opened the connection. How many packets did that "
        "opening (the three-way handshake) take in your capture?",
        answer=first_data - 1,
        hint="Count the packets in the ladder before the first one that carries a payload (len=...).",
        explanation="SYN, SYN-ACK, ACK: three packets, and one round trip, before any HTTP byte moves "
        "(RFC 9293 §3.5).",
    )


def exercise_response_headers(exchange: Exchange) -> Exercise:
    """How many bytes of HTTP head did the 13-byte body need? Checked against the exchange."""
    head = len(exchange.response_head)
    return Exercise(
        f"The response carried a {len(exchange.body)}-byte body. How many bytes of HTTP head (status "
        "line, header fields and the empty line that ends them) did it need?",
        answer=head,
        hint="Print exchange.response and count the bytes before the body, or subtract the body's "
        "length from the payload of the server's data packet in the table.",
        explanation=f"{head} bytes of head for {len(exchange.body)} bytes of body: the head is "
        f"{head / len(exchange.body):.1f} times the size of what it delivers.",
    )
