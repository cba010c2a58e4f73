"""Notebook 05, section 6: what a WebSocket costs against HTTP: header bytes per message, latency on loopback and
across a link, and small writes (Nagle's algorithm and TCP_NODELAY).
"""

from __future__ import annotations

import html
import socket
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from ...apps.safety import safe_app
from ...apps.wsserver import make_ws_handler
from ...clients.websocket import ORIGIN, RawClient
from ...course.exercises import Exercise
from ...network.link import link
from ...protocols.httpwire import head_size, parse_head, response_head_size, split_head
from ...protocols.wsframe import Frame, Opcode, header_length
from ...runtime.server import serve
from ...runtime.waiting import run_async
from ...traffic.packets import C2S
from .frames import ControlRun

__all__ = ["Overhead", "LinkLatency", "across_a_link", "overhead", "latency", "FragmentTiming", "fragment_timing", "exercise_fragment_stall", "rate_knob", "link_knob"]


@dataclass(frozen=True)
class Overhead:
    """Bytes of protocol overhead per message, WebSocket frame against an HTTP request/response.

    Attributes:
        ws_client: frame header bytes of one client→server message (masked).
        ws_server: frame header bytes of one server→client message.
        http_request: HTTP request head bytes of one POST (kept-alive connection).
        http_response: HTTP response head bytes of its answer.
    """

    ws_client: int
    ws_server: int
    http_request: int
    http_response: int

    @property
    def ws_total(self) -> int:
        """WebSocket overhead for a message each way."""
        return self.ws_client + self.ws_server

    @property
    def http_total(self) -> int:
        """HTTP overhead for one request/response."""
        return self.http_request + self.http_response


async def _http_echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), headers={"Server": "netcourse"})


def _http_app() -> web.Application:
    app = safe_app()
    app.router.add_post("/echo", _http_echo)
    return app


@dataclass(frozen=True)
class LinkLatency:
    """What a message costs in round trips across an emulated link, WebSocket against HTTP (ms).

    Attributes:
        rtt_ms: the link's round-trip time; mode: "tap" or "relay".
        ws_open_ms: a fresh WebSocket: connect() until the 101 answer (TCP handshake + upgrade).
        ws_first_echo_ms: a fresh WebSocket: connect() until its first message came back.
        ws_echo_ms: an open WebSocket: one echo (median).
        http_fresh_ms: a fresh connection: connect() until an HTTP echo's answer.
        http_echo_ms: a kept-alive HTTP connection: one request and its answer (median).
    """

    rtt_ms: float
    mode: str
    ws_open_ms: float
    ws_first_echo_ms: float
    ws_echo_ms: float
    http_fresh_ms: float
    http_echo_ms: float

    def rows(self) -> list[tuple[str, float, int]]:
        """(what, measured ms, round trips it should take)."""
        return [
            ("WebSocket: connect -> upgraded (101)", self.ws_open_ms, 2),
            ("WebSocket: connect -> first echo back", self.ws_first_echo_ms, 3),
            ("WebSocket, already open: one echo", self.ws_echo_ms, 1),
            ("HTTP, fresh connection: connect -> answer", self.http_fresh_ms, 2),
            ("HTTP, kept-alive connection: one echo", self.http_echo_ms, 1),
        ]

    def __repr__(self) -> str:
        # Numbers are not padded: the lines stay the same shape whatever they measure (nbval compares them).
        lines = [f"{'on a ' + format(self.rtt_ms, 'g') + ' ms link':<44}measured, in round trips"]
        lines += [f"{what:<44}{ms:.1f} ms, {rtts} x {self.rtt_ms:g} ms = {rtts * self.rtt_ms:.1f} ms"
                  for what, ms, rtts in self.rows()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{html.escape(what)}</td><td style='text-align:right'>{ms:.1f} ms</td>"
            f"<td>{rtts} × {self.rtt_ms:g} ms = {rtts * self.rtt_ms:.1f} ms</td></tr>"
            for what, ms, rtts in self.rows()
        )
        return (f"<div style='overflow-x:auto'><table><tr><th>on a {self.rtt_ms:g} ms link</th><th>measured</th>"
                f"<th>round trips</th></tr>{body}</table></div>")


def _http_echo_request(host: str, port: int, size: int) -> bytes:
    return (f"POST /echo HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\n\r\n").encode("ascii") + bytes(size)


def _read_http_answer(sock: socket.socket) -> bytes:
    """Read one HTTP answer with a Content-Length body from a blocking socket."""
    data = b""
    while (found := split_head(data)) is None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed before answering")
        data += chunk
    head, body = found
    length = int(parse_head(head).header("Content-Length") or 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed inside an answer")
        body += chunk
    return body


def across_a_link(rtt_ms: float = 100.0, *, echoes: int = 5, size: int = 20) -> LinkLatency:
    """WebSocket and HTTP echoes across an emulated link of ``rtt_ms``: fresh and already open."""
    import statistics

    with link(rtt_ms=rtt_ms) as net:
        ws_srv = net.serve(make_ws_handler(allowed_origins={ORIGIN}), name="ws echo")
        http_srv = net.serve(_http_app(), name="http echo")
        net.announce()

        def websocket() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            with RawClient(ws_srv, timeout=10 + rtt_ms / 100) as client:
                t1 = time.perf_counter()
                client.send(Frame(Opcode.BINARY, bytes(size)))
                client.receive(1)
                t2 = time.perf_counter()
                times = []
                for _ in range(echoes):
                    t = time.perf_counter()
                    client.send(Frame(Opcode.BINARY, bytes(size)))
                    client.receive(1)
                    times.append(time.perf_counter() - t)
            return t1 - t0, t2 - t0, statistics.median(times)

        def http() -> tuple[float, float]:
            request = _http_echo_request(http_srv.host, http_srv.port, size)
            t3 = time.perf_counter()
            with socket.create_connection((http_srv.host, http_srv.port), timeout=10 + rtt_ms / 100) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
                _read_http_answer(sock)
                t4 = time.perf_counter()
                times = []
                for _ in range(echoes):
                    t = time.perf_counter()
                    sock.sendall(request)
                    _read_http_answer(sock)
                    times.append(time.perf_counter() - t)
            return t4 - t3, statistics.median(times)

        def measure() -> LinkLatency:
            # The two clients run side by side, on their own connections (threads made here inherit the
            # near end's network namespace), so the knob costs the longer of the two, not their sum.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="netcourse-echo") as pool:
                ws_future, http_future = pool.submit(websocket), pool.submit(http)
                (ws_open, ws_first, ws_echo), (http_first, http_echo) = ws_future.result(), http_future.result()
            ms = 1000.0
            return LinkLatency(rtt_ms, net.mode, ws_open * ms, ws_first * ms, ws_echo * ms, http_first * ms, http_echo * ms)

        return net.near(measure, timeout=60 + 10 * rtt_ms / 100)


def overhead(size: int = 20) -> Overhead:
    """Measure one ``size``-byte echo over HTTP (aiohttp client and server, kept-alive connection) and
    compare its heads with WebSocket frame headers. The heads are sized from the raw header lines each
    side received, so this needs no capture rights."""
    sizes: dict[str, int] = {}

    async def echo_and_measure(request: web.Request) -> web.Response:
        line = f"{request.method} {request.raw_path} HTTP/{request.version.major}.{request.version.minor}"
        sizes["request"] = head_size(line, request.raw_headers)
        return web.Response(body=await request.read(), headers={"Server": "netcourse"})

    app = safe_app()
    app.router.add_post("/echo", echo_and_measure)
    with serve(app, name="http echo") as srv:

        async def go() -> None:
            async with aiohttp.ClientSession() as s:
                async with s.post(srv.url + "/echo", data=bytes(size)) as r:
                    await r.read()
                    sizes["response"] = response_head_size(r)

        run_async(go())
    return Overhead(header_length(size, True), header_length(size, False), sizes["request"], sizes["response"])


def latency(n: int = 200, size: int = 20) -> dict[str, list[float]]:
    """Round-trip seconds of a ``size``-byte echo: WebSocket (raw client, course server) vs HTTP POST
    on a kept-alive connection (aiohttp client and server)."""
    out: dict[str, list[float]] = {"WebSocket echo": [], "HTTP request (kept alive)": []}
    with serve(make_ws_handler(allowed_origins={ORIGIN})) as srv:
        with RawClient(srv) as client:
            for _ in range(n):
                t = time.perf_counter()
                client.send(Frame(Opcode.BINARY, bytes(size)))
                client.receive(1)
                out["WebSocket echo"].append(time.perf_counter() - t)
    with serve(_http_app()) as srv:

        async def go() -> None:
            async with aiohttp.ClientSession() as s:
                for _ in range(n):
                    t = time.perf_counter()
                    async with s.post(srv.url + "/echo", data=bytes(size)) as r:
                        await r.read()
                    out["HTTP request (kept alive)"].append(time.perf_counter() - t)

        run_async(go())
    return out


@dataclass(frozen=True)
class FragmentTiming:
    """A message sent in three small fragments: how long until its echo came back.

    Attributes:
        nodelay: whether the client had set TCP_NODELAY.
        ms: first fragment written → echo received, milliseconds.
    """

    nodelay: bool
    ms: float

    def __repr__(self) -> str:
        return f"TCP_NODELAY {'on ' if self.nodelay else 'off'}: three fragments echoed after {self.ms:.1f} ms"


def fragment_timing(nodelay: bool, *, repeat: int = 3) -> FragmentTiming:
    """Send "Hel", "lo, ", "world" as three fragments (three small writes) and time the echo.

    Returns the median of ``repeat`` runs, each on a fresh connection.
    """
    times = []
    with serve(make_ws_handler(allowed_origins={ORIGIN}), name="ws echo") as srv:
        for _ in range(repeat):
            with RawClient(srv, nodelay=nodelay) as client:
                client.send(Frame(Opcode.PING, b"warm up"))  # the first exchange on a connection is not the point
                client.receive(1)
                start = time.perf_counter()
                client.send(Frame(Opcode.TEXT, b"Hel", fin=False))
                client.send(Frame(Opcode.CONTINUATION, b"lo, ", fin=False))
                client.send(Frame(Opcode.CONTINUATION, b"world"))
                client.receive(1)
                times.append((time.perf_counter() - start) * 1000)
    return FragmentTiming(nodelay, sorted(times)[len(times) // 2])


def exercise_fragment_stall(ctl: ControlRun) -> Exercise:
    """The wait between the first and second fragment, from the learner's own capture."""
    rows = [r for r in ctl.capture.table() if r.direction == C2S]
    first = next((r for r in rows if r.app.startswith("TEXT")), None)
    second = next((r for r in rows if first is not None and r.no > first.no and r.app.startswith("CONT")), None)
    gap = (second.t - first.t) * 1000 if first and second else 0.0
    return Exercise(
        "The client wrote its three fragments to the socket one right after the other. In your capture, how "
        "many milliseconds passed between the packet carrying the first fragment (TEXT \"Hel\") and the "
        "next one carrying a continuation? (Within 0.5 ms.)",
        answer=round(gap, 2),
        tolerance=0.5,
        unit="ms",
        hint="Both packets are the client's; their times are in the capture's rows (row.t in seconds, row.ms in "
        "milliseconds).",
        recipe="find the C→S rows of ctl.capture.table() whose app starts with 'TEXT' and then 'CONT'; "
        "subtract their t and multiply by 1,000.",
        mistakes=[
            (lambda v: abs(float(v) - gap / 1000) < 0.0005 and gap > 1,
             "that is in seconds (row.t); the question asks for milliseconds."),
            (lambda v: abs(float(v)) < 0.5 and gap > 5,
             "the writes were microseconds apart, but the packets were not: measure between the packets."),
        ],
        explanation=f"{gap:.1f} ms, for writes made microseconds apart. The next cells show why.",
        kind="capture", source=ctl,
    )


def rate_knob(cost: Overhead, size: int = 20, rate: float = 10.0):
    """Section 6's knob: bytes per second of each design at a message size and rate."""
    from ...course.plots.wire import overhead_at_rate

    return overhead_at_rate(cost.ws_total, cost.http_total, size, rate)


def link_knob(rtt_ms: int = 100) -> LinkLatency:
    """Section 6's link knob: one echo of each kind across a new link of ``rtt_ms``."""
    return across_a_link(rtt_ms=rtt_ms, echoes=1)
