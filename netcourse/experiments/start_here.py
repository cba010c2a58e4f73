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
from ..course.exercises import Exercise, Prediction
from ..errors import NetcourseError, NetcourseTimeout
from ..network.link import link
from ..protocols.httpwire import split_head
from ..runtime.server import Server, serve
from ..runtime.tcpinfo import TcpInfo, tcp_info
from ..runtime.waiting import wait_until
from ..traffic.packets import C2S, S2C
from ..traffic.sniffer import Capture, capture, capture_permitted
from ..traffic.wire import WireBytes, from_capture, from_tcp_info
from .registry import scenario

__all__ = [
    "overhead_knob", "budget_knob",
    "HELLO_BODY",
    "make_hello_app",
    "build_request",
    "Exchange",
    "http_exchange",
    "first_request",
    "exchange_bytes",
    "Budget",
    "request_across",
    "BigResponse",
    "big_response_across",
    "predict_total_ms",
    "predict_segments",
    "exercise_client_bytes",
    "exercise_server_time",
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

    def note(self) -> str:
        """Where this link puts the handshake's round trip (a "[link]" line: the mode's own words)."""
        if self.mode == "relay":
            return ("[link] relay mode: connect() returns at once here, and the relay holds the first bytes for the "
                    "handshake's round trip instead, so that round trip shows in 'request -> first byte'; the total "
                    "is what a real network costs.")
        return "[link] tap mode: the kernel's own TCP crosses the link, so connect() itself takes the handshake's round trip."

    def __repr__(self) -> str:
        # Numbers are not padded: the lines stay the same shape whatever they measure (nbval compares them).
        lines = [f"{'step':<38}measured, expected"]
        lines += [f"{step:<38}{value:.1f} ms, {theory}" for step, value, theory in self.rows()]
        return "\n".join(lines + [self.note()])

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{html.escape(step)}</td><td style='text-align:right'>{value:.1f} ms</td>"
            f"<td>{html.escape(theory)}</td></tr>"
            for step, value, theory in self.rows()
        )
        return (f"<table><tr><th>step</th><th>measured</th><th>expected</th></tr>{body}</table>"
                f"\n<p>{html.escape(self.note())}\n</p>")


def _timed_request(host: str, port: int, timeout: float, path: str = "/hello") -> tuple[float, float, float, TcpInfo | None]:
    """(connect s, request to first byte s, first to last byte s, TCP_INFO) of one fresh request."""
    request = build_request(host, port, path)
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


# -- a big answer on a real MTU ------------------------------------------------------------------


@dataclass(frozen=True)
class BigResponse:
    """One request whose answer is ``body_size`` bytes, across a link with an Ethernet MTU.

    Attributes:
        body_size: the response body, bytes.
        mtu: the link's MTU, bytes.
        capture: the packets at the client's end (tap: live from the wire; relay: the recording).
    """

    body_size: int
    mtu: int
    capture: Capture

    @property
    def server_segments(self) -> int:
        """Packets from the server that carried part of the answer."""
        return sum(1 for r in self.capture.table() if r.direction == S2C and r.payload)

    @property
    def largest_segment(self) -> int:
        """The most payload bytes one of those packets carried: the MSS in use."""
        return max((r.payload for r in self.capture.table() if r.direction == S2C), default=0)

    @property
    def packets(self) -> int:
        """Every packet of the exchange, both ways."""
        return len(self.capture.table())

    @property
    def body_share(self) -> float:
        """The body's share of every byte on the wire, both ways, headers included."""
        total = sum(r.wire for r in self.capture.table())
        return self.body_size / total if total else 0.0

    def __repr__(self) -> str:
        return (f"{self.body_size:,}-byte body at MTU {self.mtu:,}: {self.packets} packets in all, "
                f"{self.server_segments} of them carrying the answer (at most {self.largest_segment:,} bytes each); "
                f"the body is {self.body_share:.1%} of the bytes on the wire")


@scenario("big_response_link")
def big_response_across(body_size: int = 100_000, *, mtu: int = 1500, rtt_ms: float = 10.0, timeout: float = 10.0) -> BigResponse:
    """Ask for a ``body_size`` answer across a link of ``mtu`` and ``rtt_ms``; capture it (recorded at MTU 1,500)."""
    with link(rtt_ms=rtt_ms, mtu=mtu) as net:
        srv = net.serve(make_hello_app(), name="hello")
        net.announce()
        with net.capture(srv.port, scenario="big_response_link", snaplen=128) as cap:
            net.near(lambda: _timed_request(srv.host, srv.port, timeout, f"/hello?size={body_size}"))
    return BigResponse(body_size, mtu, cap)


# -- exercises -------------------------------------------------------------------------------------


def predict_total_ms(rtt_ms: float = 50.0) -> Prediction:
    """Predict the time to a body across a link, before ``request_across`` measures it."""
    def explain(given: float, measured: float) -> str:
        return ("Two round trips: TCP's handshake (SYN out, SYN-ACK back) before the request may leave, then "
                "the request and its answer; plus the server's own work, about a millisecond.")

    return Prediction(
        f"A fresh request crosses a {rtt_ms:g} ms link (round-trip time). How many milliseconds from "
        "connect() until the whole 13-byte body is in the client's hands?",
        measure=lambda budget: budget.total_ms, unit="ms", tolerance=0.15, floor=3.0, explain=explain,
        step=lambda budget: rtt_ms, spread="the answer moves in whole round trips, so the band stays under half of one",
        mistakes=[(lambda g, m: 0.75 * rtt_ms <= g <= 1.25 * rtt_ms,
                   "One round trip forgets the handshake: a fresh connection pays for it first."),
                  (lambda g, m: g >= 2.75 * rtt_ms,
                   "Three or more round trips would be true with TLS or a DNS lookup first, not for this plain request.")],
    )


def predict_segments(body_size: int = 100_000, mtu: int = 1500) -> Prediction:
    """Predict how many packets carry a big answer at an Ethernet MTU."""
    mss = mtu - 20 - 32

    def explain(given: float, measured: float) -> str:
        return (f"Each packet holds at most MTU − 20 (IPv4) − 32 (TCP with timestamps) = {mss:,} bytes of "
                f"payload, so the {body_size:,}-byte body and its ~140-byte head need at least "
                f"⌈{body_size + 140:,} / {mss:,}⌉ = {-(-(body_size + 140) // mss)} packets. On loopback a "
                "packet may hold up to 65,535 − 20 − 32 = 65,483 bytes (IPv4's 16-bit length field caps "
                "it), hence a handful there.")

    return Prediction(
        f"The same server answers with a {body_size:,}-byte body across a link whose MTU is {mtu:,} bytes "
        "(Ethernet's). How many packets from the server will carry the answer?",
        measure=lambda big: big.server_segments, unit="packets", tolerance=0.0, floor=2.0, explain=explain,
        from_capture=True,
        mistakes=[(lambda g, m: g <= 5, "That is loopback's count, whose packets may be 65 kB; an Ethernet packet "
                   f"is at most {mtu:,} bytes."),
                  (lambda g, m: abs(g - body_size / mtu) <= 1 and abs(g - m) > 2,
                   "That divides by the MTU, but each packet also carries its IP and TCP headers: divide by what "
                   "is left for data.")],
    )


def _need(exchange: Exchange) -> Capture:
    if exchange.capture is None:
        raise NetcourseError("This exercise needs the capture of first_request(): run that cell first.")
    return exchange.capture


def exercise_client_bytes(exchange: Exchange) -> Exercise:
    """All bytes the client put on the wire, headers included, from the learner's own capture."""
    rows = _need(exchange).table()
    total = sum(r.wire for r in rows if r.direction == C2S)
    sent = sum(1 for r in rows if r.direction == C2S)
    return Exercise(
        "How many bytes in all did the client put on the wire, every header of every packet it sent "
        "included?",
        answer=total,
        unit="B",
        hint="Every packet the client sent counts, with every layer's header: not just the one carrying the "
        "request.",
        recipe="add link + IP + TCP/UDP + payload over the C→S rows of the table, or in Python: "
        "sum(r.wire for r in first.capture.table() if r.direction == 'C→S').",
        mistakes=[
            (total - 14 * sent, f"you left out the 14-byte link (Ethernet) header of each of the {sent} frames."),
            (len(exchange.request), "that is the request alone: its packet's headers, the handshake and the ACKs "
             "are bytes on the wire too."),
            (sum(r.wire for r in rows), "that counts the server's packets too; only the C→S rows are the client's."),
            (sum(r.payload for r in rows if r.direction == C2S),
             "that is the payload alone; every layer's header is on the wire as well."),
        ],
        explanation=f"{total:,} bytes in {sent} packets, to send a {len(exchange.request)}-byte request: "
        "every packet, even a bare ACK, pays at least 66 bytes of headers here (74 for the SYN, whose "
        "TCP header carries more options).",
        kind="capture", source=exchange,
    )


def exercise_server_time(exchange: Exchange) -> Exercise:
    """Microseconds between the request's packet and the answer's, from the learner's own capture."""
    rows = _need(exchange).table()
    request = next(r for r in rows if r.direction == C2S and r.payload)
    answer = next(r for r in rows if r.direction == S2C and r.payload)
    us = round((answer.t - request.t) * 1e6)
    return Exercise(
        "On loopback a packet arrives the moment it is sent, so the gap between the request's packet and "
        "the first packet of the answer is the server's own time. How many microseconds was it? "
        "(Whole microseconds; within 2.)",
        answer=us,
        tolerance=2.0,
        unit="µs",
        hint="Which packet marks the moment the server had the request, and which the moment it started "
        "answering? Mind the units: the table's ms column is row.ms, and row.t is in seconds.",
        recipe="the first C→S row with a payload and the first S→C row with one: (answer.t − request.t) × 1,000,000 µs.",
        mistakes=[
            (lambda v: isinstance(v, (int, float)) and abs(v - us / 1000) <= 0.002,
             "that is in milliseconds; the question asks for microseconds (× 1,000)."),
            (lambda v: isinstance(v, (int, float)) and abs(v - us / 1e6) <= 2e-6,
             "that is in seconds (row.t); the question asks for microseconds (× 1,000,000)."),
        ],
        explanation=f"{us} µs: aiohttp parsed the request, ran the handler and wrote the answer. Across "
        "the 50 ms link above that is invisible beside two round trips.",
        kind="capture", source=exchange,
    )


# -- the knobs' callbacks ------------------------------------------------------------------------------


def overhead_knob(body_size: int = 13):
    """Section 5's knob: a new live request with a ``body_size`` answer, drawn as shares of the bytes."""
    from ..course.plots.wire import overhead_bar

    exchange = exchange_bytes(body_size)
    return overhead_bar(exchange, share=True,
                              title=f"{body_size:,}-byte body (bytes counted from {exchange.source})")


def budget_knob(rtt_ms: int = 50) -> Budget:
    """Section 6's knob: a fresh request across a new link of ``rtt_ms``, its latency budget."""
    return request_across(rtt_ms=rtt_ms, packets=False)
