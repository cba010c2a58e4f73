"""Notebook 05: WebSockets by hand — the handshake, frames on the wire, masking, cost, and security."""

from __future__ import annotations

import html
import os
import selectors
import socket
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from ..apps.safety import safe_app
from ..apps.wsserver import Hub, make_ws_handler
from ..course.exercises import Exercise, Prediction
from ..errors import FrameError, NetcourseTimeout
from ..network.link import link
from ..clients.websocket import ORIGIN, RawClient
from ..protocols.httpwire import head_size, parse_head, response_head_size, split_head
from ..protocols.wsconn import CloseReceived, Event
from ..protocols.wsframe import Frame, FrameDecoder, Opcode, accept_key, close_payload, header_length
from ..runtime.server import serve
from ..runtime.waiting import run_async, wait_until
from ..traffic.packets import C2S, S2C
from ..traffic.sniffer import Capture, capture
from ..traffic.wire import tcp_payload_streams
from .registry import scenario

__all__ = [
    "frame_explorer", "rate_knob", "link_knob",
    "handshake",
    "control_frames",
    "explain",
    "FrameView",
    "overhead",
    "latency",
    "idle_connections",
    "security",
    "LinkLatency",
    "across_a_link",
    "BROWSER_HEADERS",
    "SizedEcho",
    "sized_echo",
    "FragmentTiming",
    "fragment_timing",
    "predict_frame_size",
    "exercise_fragment_segments",
    "exercise_fragment_stall",
    "exercise_decode",
    "exercise_accept",
]


# What a browser adds to its handshake (Chromium's, give or take): a subprotocol the page asked for, the
# compression extension offered (RFC 7692), and the site's cookies. The course's server declines both
# offers by leaving them out of its 101 (RFC 6455 §4.2.2, RFC 7692 §5) and does not read the cookie
# (notebook 08 builds authentication on it).
BROWSER_HEADERS = (
    "Sec-WebSocket-Protocol: chat",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    "Cookie: session=d7c3a1f0",
)



# -- 1. the handshake, 2. talking by hand ----------------------------------------------------------


@dataclass
class HandshakeRun:
    """One WebSocket conversation: handshake, one echoed message, close.

    Attributes:
        request, response: the handshake's bytes.
        key, accept: Sec-WebSocket-Key sent and Sec-WebSocket-Accept received.
        sent: bytes of the frame sent; reply: what came back (a ``Message``, then ``CloseReceived``).
        capture: the packets.
    """

    request: bytes
    response: bytes
    key: str
    accept: str | None
    sent: bytes
    reply: list[Event]
    capture: Capture


@scenario("ws_handshake")
def handshake(message: bytes = b"Hello", *, mask_key: bytes = bytes.fromhex("37fa213d")) -> HandshakeRun:
    """Open a WebSocket to the course's echo server with a raw socket, send one text frame, close.

    The handshake carries what a browser's would (``BROWSER_HEADERS``): a subprotocol and an extension
    offered, and a cookie.
    """
    with serve(make_ws_handler(allowed_origins={ORIGIN}), name="ws echo") as srv:
        with capture(srv.port, scenario="ws_handshake") as cap:
            with RawClient(srv, extra_headers=BROWSER_HEADERS) as client:
                sent = client.send(Frame(Opcode.TEXT, message), mask_key=mask_key)
                reply = client.receive(1)
                client.send(Frame(Opcode.CLOSE, close_payload(1000, "done")), mask_key=mask_key)
                reply += client.receive(1)
    return HandshakeRun(client.request, client.response, client.key, client.accept_header, sent, reply, cap)


# -- 5. control frames and fragmentation on the wire -------------------------------------------


@dataclass
class ControlRun:
    """Ping, a fragmented message, and a close, as they crossed the wire.

    Attributes:
        capture: the packets.
        client_frames: frames the client sent, decoded from the capture.
        server_frames: frames the server sent, decoded from the capture.
    """

    capture: Capture
    client_frames: list[Frame]
    server_frames: list[Frame]


def frames_on_the_wire(cap: Capture) -> tuple[list[Frame], list[Frame]]:
    """Decode the WebSocket frames in a capture: (client→server, server→client), handshake skipped."""
    streams = tcp_payload_streams(cap.packets, cap.table())
    out = []
    for direction, role in ((C2S, "server"), (S2C, "client")):
        data = streams[direction]
        found = split_head(data)
        body = found[1] if found is not None else b""
        out.append(FrameDecoder(role, max_size=1 << 24).feed(body))
    return out[0], out[1]


@scenario("ws_control")
def control_frames(mask_key: bytes = bytes.fromhex("37fa213d")) -> ControlRun:
    """Send a ping, a text message in three fragments, and a close; capture and decode both ways."""
    with serve(make_ws_handler(allowed_origins={ORIGIN}), name="ws echo") as srv:
        with capture(srv.port, scenario="ws_control") as cap:
            with RawClient(srv) as client:
                client.send(Frame(Opcode.PING, b"are you there?"), mask_key=mask_key)
                client.receive(1)
                client.send(Frame(Opcode.TEXT, b"Hel", fin=False), mask_key=mask_key)
                client.send(Frame(Opcode.CONTINUATION, b"lo, ", fin=False), mask_key=mask_key)
                client.send(Frame(Opcode.CONTINUATION, b"world"), mask_key=mask_key)
                client.receive(1)
                client.send(Frame(Opcode.CLOSE, close_payload(1000, "bye")), mask_key=mask_key)
                client.receive(1)
    c2s, s2c = frames_on_the_wire(cap)
    return ControlRun(cap, c2s, s2c)


# -- 3. the frame explorer ------------------------------------------------------------------------

_COLOURS = {
    "FIN": "#ef9a9a",
    "RSV": "#ce93d8",
    "opcode": "#90caf9",
    "MASK": "#ffcc80",
    "payload len": "#a5d6a7",
    "extended length": "#c5e1a5",
    "masking key": "#ffe082",
    "payload": "#eeeeee",
}


@dataclass
class FrameView:
    """A frame's bytes, split into the fields of RFC 6455 §5.2, shown coloured.

    Attributes:
        data: the frame's bytes.
        fields: (field name, value as text, first bit, bit count).
    """

    data: bytes
    fields: list[tuple[str, str, int, int]] = field(default_factory=list)

    def __repr__(self) -> str:
        lines = [f"{len(self.data)} bytes: {self.data.hex(' ')}"]
        for name, value, start, bits in self.fields:
            lines.append(f"  {name:<16} bits {start:>4}–{start + bits - 1:<4} {value}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        bits = "".join(f"{b:08b}" for b in self.data)
        legend, cells = [], []
        for name, value, start, nbits in self.fields:
            colour = _COLOURS["RSV" if name.startswith("RSV") else name]
            chunk = bits[start : start + nbits]
            shown = chunk if nbits <= 64 else chunk[:64] + f"… ({nbits} bits)"
            cells.append(f"<span title='{html.escape(name)}' style='background:{colour};padding:1px 2px;"
                         f"font-family:monospace'>{shown}</span>")
            legend.append(f"<tr><td style='background:{colour}'>{html.escape(name)}</td><td>{nbits}</td>"
                          f"<td style='font-family:monospace'>{html.escape(value)}</td></tr>")
        return (
            f"<div style='line-height:1.9;word-break:break-all'>{' '.join(cells)}</div>"
            "<table><tr><th>field</th><th>bits</th><th>value</th></tr>" + "".join(legend) + "</table>"
        )


def explain(data: bytes) -> FrameView:
    """Split one encoded frame into its fields (RFC 6455 §5.2), for display."""
    if len(data) < 2:
        raise FrameError("a frame has at least 2 bytes")
    b0, b1 = data[0], data[1]
    fields = [
        ("FIN", str(b0 >> 7), 0, 1),
        ("RSV1", str((b0 >> 6) & 1), 1, 1),
        ("RSV2", str((b0 >> 5) & 1), 2, 1),
        ("RSV3", str((b0 >> 4) & 1), 3, 1),
        ("opcode", f"0x{b0 & 0xF:x} ({Opcode(b0 & 0xF).name})", 4, 4),
        ("MASK", str(b1 >> 7), 8, 1),
        ("payload len", str(b1 & 0x7F), 9, 7),
    ]
    pos, length = 2, b1 & 0x7F
    if length == 126:
        length = int.from_bytes(data[2:4], "big")
        fields.append(("extended length", f"{length} (16 bits)", 16, 16))
        pos = 4
    elif length == 127:
        length = int.from_bytes(data[2:10], "big")
        fields.append(("extended length", f"{length} (64 bits)", 16, 64))
        pos = 10
    if b1 & 0x80:
        fields.append(("masking key", data[pos : pos + 4].hex(), pos * 8, 32))
        pos += 4
    payload = data[pos : pos + length]
    shown = payload if len(payload) <= 24 else payload[:21] + b"..."
    fields.append(("payload", f"{len(payload)} bytes on the wire: {shown!r}", pos * 8, len(payload) * 8))
    return FrameView(data, fields)


# -- 4. masking -----------------------------------------------------------------------------------

ATTACK = b"GET /app.js HTTP/1.1\r\nHost: victim.example\r\n\r\n"


def ascii_view(data: bytes) -> str:
    """Bytes as printable ASCII ('.' for the rest), how an intermediary scanning for HTTP sees them."""
    return "".join(chr(b) if 32 <= b < 127 else ("⏎" if b == 10 else ".") for b in data)


# -- 6. overhead and latency -----------------------------------------------------------------------


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


# -- 7. what held connections cost ----------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _tcp_kernel_pages() -> int:
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class IdleCost:
    """Open WebSocket connections held idle by one server, and a broadcast to all of them.

    Attributes:
        connections: connections opened and upgraded.
        python_bytes_per_connection: Python heap allocated per connection (tracemalloc), server and
            client ends together (bytes).
        process_bytes_per_connection: growth of this process's resident memory per connection, both
            ends (bytes); noisy for small counts, since freed memory is reused.
        kernel_bytes_per_connection: growth of the kernel's TCP buffer memory per connection (bytes).
        broadcast_s: seconds from the broadcast call until every client had the message.
    """

    connections: int
    python_bytes_per_connection: float
    process_bytes_per_connection: float
    kernel_bytes_per_connection: float
    broadcast_s: float


def idle_connections(n: int = 100, *, timeout: float = 30.0) -> IdleCost:
    """Open ``n`` WebSocket connections to one server, measure memory, broadcast one message to all."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 200
    if soft < need:
        try:  # root may also raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError):
            raise ValueError(f"{n} connections need {need} file descriptors; this process may open {hard}") from None
    # The limit goes back to what it was afterwards: nothing is left changed in the kernel.
    try:
        return _idle_connections(n, timeout)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, max(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))


def _idle_connections(n: int, timeout: float) -> IdleCost:
    hub = Hub()
    handler = make_ws_handler(hub, allowed_origins={ORIGIN})
    clients: list[RawClient] = []
    import tracemalloc

    tracing = tracemalloc.is_tracing()
    # One try for everything opened: an interrupt (or a timeout) at any point closes every client.
    with serve(handler, name="ws hub", max_connections=n + 10) as srv:
        try:
            try:
                if not tracing:
                    tracemalloc.start()
                heap0, rss0, pages0 = tracemalloc.get_traced_memory()[0], _rss_bytes(), _tcp_kernel_pages()
                for _ in range(n):
                    clients.append(RawClient(srv, timeout=timeout))
                if not wait_until(lambda: hub.count >= n, timeout):
                    raise NetcourseTimeout(f"Only {hub.count} of {n} WebSocket connections opened within {timeout} s.")
                heap1, rss1, pages1 = tracemalloc.get_traced_memory()[0], _rss_bytes(), _tcp_kernel_pages()
            finally:
                if not tracing:
                    tracemalloc.stop()
            with selectors.DefaultSelector() as sel:
                for c in clients:
                    c.sock.setblocking(False)
                    sel.register(c.sock, selectors.EVENT_READ, c)
                t = time.perf_counter()
                delivered = srv.run(hub.broadcast(b"news for everyone"), timeout=timeout)
                waiting = set(range(n))
                index = {id(c): i for i, c in enumerate(clients)}
                while waiting and time.perf_counter() - t < timeout:
                    for key, _ in sel.select(timeout=1.0):
                        if key.fileobj.recv(4096):
                            waiting.discard(index[id(key.data)])
                elapsed = time.perf_counter() - t
            if waiting or delivered != n:
                raise NetcourseTimeout(
                    f"The broadcast reached {n - len(waiting)} of {n} clients within {timeout} s "
                    f"(the server wrote it to {delivered}); no broadcast time to report."
                )
        finally:
            for c in clients:
                c.close()
    page = os.sysconf("SC_PAGE_SIZE")
    return IdleCost(n, (heap1 - heap0) / n, (rss1 - rss0) / n, (pages1 - pages0) * page / n, elapsed)


# -- 8. security ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecurityOutcome:
    """How the course's server treated one misbehaving client: HTTP status or close code."""

    case: str
    outcome: str

    def __repr__(self) -> str:
        return f"{self.case:<44} → {self.outcome}"


def security() -> list[SecurityOutcome]:
    """Try the attacks and mistakes the course's server must refuse."""
    out = []
    handler = make_ws_handler(allowed_origins={ORIGIN}, max_size=1024)
    with serve(handler, name="ws strict") as srv:
        with RawClient(srv, origin="http://evil.example") as evil:
            status = parse_head(evil.response).start_line
        out.append(SecurityOutcome("handshake from another site's page (Origin)", status))
        for case, frame, masked in (
            ("unmasked client frame", Frame(Opcode.TEXT, b"hi"), False),
            ("message over the 1 KiB limit", Frame(Opcode.BINARY, bytes(2000)), True),
            ("text frame that is not UTF-8", Frame(Opcode.TEXT, b"\xc3\x28"), True),
        ):
            with RawClient(srv) as c:
                c.send(frame, masked=masked)
                events = c.receive(1)
            code = events[0].code if events and isinstance(events[0], CloseReceived) else None
            out.append(SecurityOutcome(case, f"close {code}"))
    return out


# -- a frame's size, and small writes ------------------------------------------------------------------


@dataclass(frozen=True)
class SizedEcho:
    """One text message of ``size`` bytes sent and echoed.

    Attributes:
        size: payload bytes.
        sent: the client's frame, as written to the socket.
        echoed: the server's frame, as read from the socket.
    """

    size: int
    sent: bytes
    echoed: bytes

    def __repr__(self) -> str:
        return (f"{self.size}-byte message: the client's frame was {len(self.sent)} bytes, "
                f"the server's echo {len(self.echoed)} bytes")


def sized_echo(size: int = 300) -> SizedEcho:
    """Send one ``size``-byte text message over a fresh WebSocket and read the echo's raw frame."""
    if not 0 <= size <= 1 << 20:
        raise ValueError("size must be between 0 and 1,048,576 bytes")
    with serve(make_ws_handler(allowed_origins={ORIGIN}, max_size=1 << 20), name="ws echo") as srv:
        with RawClient(srv) as client:
            sent = client.send(Frame(Opcode.TEXT, b"x" * size))
            want = header_length(size, False) + size
            data = b""
            while len(data) < want:
                chunk = client.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            client.conn.receive_data(data)
    return SizedEcho(size, sent, data[:want])


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


def predict_frame_size(size: int = 300) -> Prediction:
    """Predict the size of a client's frame carrying ``size`` bytes."""
    def explain(given: float, measured: float) -> str:
        ext = 0 if size <= 125 else (2 if size <= 65535 else 8)
        why = (f"2 bytes of header, + {ext} of extended length ({size} is "
               + ("at most 125, so it fits the 7-bit field" if ext == 0 else
                  "more than 125, so the 7-bit field says 126 and a 16-bit length follows" if ext == 2 else
                  "more than 65,535, so the 7-bit field says 127 and a 64-bit length follows")
               + f"), + 4 of masking key (a client always masks) = {2 + ext + 4} bytes of header, then the "
               f"{size} bytes of payload (RFC 6455 §5.2). The server's echo has no key: {2 + ext + size}.")
        if given == size + 2 or given == size + 4:
            why += " Did you forget the masking key?"
        return why

    return Prediction(
        f"A browser sends a {size}-byte text message over a WebSocket (no extension negotiated, so no "
        "compression). How many bytes long is its frame, header included?",
        measure=lambda echo: len(echo.sent), unit="bytes", tolerance=0.0, explain=explain,
    )


def exercise_fragment_segments(ctl: ControlRun) -> Exercise:
    """TCP segments that carried the three fragments, from the learner's own capture."""
    rows = [r for r in ctl.capture.table() if r.direction == C2S and r.payload]
    carrying = [r for r in rows if r.app.startswith(("TEXT", "CONT"))]
    return Exercise(
        "The client wrote its three fragments (TEXT \"Hel\", CONT \"lo, \", CONT \"world\") to the socket "
        "with three separate writes. How many TCP segments carried them, in your capture?",
        answer=len(carrying),
        hint="The ladder names what each packet carried: count the client's packets whose label starts with "
        "TEXT or CONT (in Python: rows of ctl.capture.table() with r.direction == 'C→S' and r.app starting "
        "with 'TEXT' or 'CONT').",
        explanation=f"{len(carrying)} segments for 3 writes"
        + (": the two continuations left together, in one segment. Three writes do not make three packets: "
           "TCP is a byte stream, and something held the second write back until the third had joined it."
           if len(carrying) < 3 else "."),
        kind="capture",
    )


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
        hint="Find the C→S rows of ctl.capture.table() whose app starts with 'TEXT' and then 'CONT'; "
        "subtract their t and multiply by 1,000.",
        explanation=f"{gap:.1f} ms, for writes made microseconds apart. The next cells show why.",
        kind="capture",
    )


# -- exercises -------------------------------------------------------------------------------------


def exercise_decode() -> Exercise:
    """Decode a masked frame by hand (not the RFC's example, which the notebook shows decoded)."""
    return Exercise(
        "A server receives the bytes 81 84 a1 b2 c3 d4 d6 db b1 b1. What text does the frame carry?",
        answer="wire",
        hint="0x81: FIN + text. 0x84: masked, 4 bytes. Then a 4-byte key; XOR each payload byte with "
        "key[i % 4].",
        explanation="0xd6^0xa1=0x77 'w', 0xdb^0xb2=0x69 'i', 0xb1^0xc3=0x72 'r', 0xb1^0xd4=0x65 'e' (RFC 6455 §5.3).",
    )


def exercise_accept() -> Exercise:
    """Compute an accept key."""
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    return Exercise(
        f"A client sent Sec-WebSocket-Key: {key}. What Sec-WebSocket-Accept must the server answer?",
        answer=accept_key(key),
        hint="Append the GUID 258EAFA5-E914-47DA-95CA-C5AB0DC85B11, SHA-1 the result, base64 the 20 bytes.",
        explanation="Only a server that read this key (and knows WebSockets) can produce it (RFC 6455 §4.2.2).",
    )


# -- the knobs' callbacks ------------------------------------------------------------------------------


def frame_explorer(message: str = "Hello", repeat: int = 1, opcode: str = "TEXT", fin: bool = True,
                   masked: bool = True, key: str = "37fa213d"):
    """Section 3's knob: encode a frame from the widgets and colour its fields; a sentence on bad input."""
    payload = message.encode() * repeat
    op = Opcode[opcode]
    if op.is_control and len(payload) > 125:
        return "control frames carry at most 125 bytes (RFC 6455 §5.5)"
    try:
        mask_key = bytes.fromhex(key) if masked else None
    except ValueError:
        return "the key must be 8 hexadecimal digits"
    if mask_key is not None and len(mask_key) != 4:
        return "the key must be 8 hexadecimal digits (4 bytes)"
    from ..protocols.wsframe import encode

    return explain(encode(Frame(op, payload, fin=fin or op.is_control), mask_key=mask_key))


def rate_knob(cost: Overhead, size: int = 20, rate: float = 10.0):
    """Section 6's knob: bytes per second of each design at a message size and rate."""
    from ..course import plots

    return plots.overhead_at_rate(cost.ws_total, cost.http_total, size, rate)


def link_knob(rtt_ms: int = 100) -> LinkLatency:
    """Section 6's link knob: one echo of each kind across a new link of ``rtt_ms``."""
    return across_a_link(rtt_ms=rtt_ms, echoes=1)
