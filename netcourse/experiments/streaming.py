"""Notebook 06: HTTP streaming. Chunked transfer coding on the wire, chunks that TCP splits and merges,
Server-Sent Events that resume after a drop, the buffering proxies that break streams (and the fixes),
and HTTP/1.1's connection limit.

The servers are ``apps.streaming`` (chunked, fixed-length and SSE endpoints over a ``MessageLog``) and
``apps.proxy`` (a proxy that buffers and compresses). Every experiment starts them, runs bounded clients and
stops everything before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import socket
import statistics
import time
from dataclasses import dataclass, field

import aiohttp

from ..apps.polling import MessageLog
from ..apps.proxy import make_proxy
from ..apps.streaming import make_app
from ..course.exercises import Exercise, Prediction
from ..network.link import link
from ..protocols.chunked import Chunk, ChunkedDecoder, Data
from ..clients.sse import event_source, stream_events
from ..protocols.httpwire import split_head
from ..protocols.sse import Event, SSEDecoder
from ..runtime.server import serve
from ..runtime.waiting import run_async
from ..traffic.packets import C2S, S2C
from ..traffic.sniffer import Capture, capture
from ..traffic.wire import tcp_payload_streams
from .registry import scenario
from ..protocols.httpwire import head_size, response_head_size

__all__ = [
    "StreamCapture", "chunked_on_the_wire", "ChunkView", "chunk_view", "Boundaries", "chunk_boundaries",
    "SSERun", "sse_resume", "retry_delays", "Buffering", "buffering", "BUFFERING_CASES", "buffer_grid",
    "buffer_knob", "ConnectionLimit", "connection_limit", "LinkDelivery", "sse_across_a_link", "long_poll_bytes", "per_message_bytes",
    "predict_first_event_delay", "exercise_framing_bytes", "resync_demo", "BUFFER_SIZES", "event_body_bytes", "exercise_reconnect_head", "alert_every_third", "exercise_replay_first",
]

UA = {"User-Agent": "netcourse-stream-client"}


def _request(path: str, port: int, extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: netcourse\r\n{extra}"
            "Connection: close\r\n\r\n").encode()


def _read_all(sock: socket.socket, deadline: float) -> list[tuple[float, bytes]]:
    """Every recv until the server closes: (monotonic time, bytes)."""
    pieces = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        pieces.append((time.monotonic(), data))
    return pieces


# -- 1. a streaming response on the wire --------------------------------------------------------------


@dataclass
class StreamCapture:
    """One chunked response and one fixed-length response with the same body, captured.

    Attributes:
        chunked: the chunked response's bytes as the client received them (head and body).
        fixed: the Content-Length response's bytes.
        arrivals: (seconds after the request, bytes) of each recv of the chunked response.
        capture: the packets of both (in replay: the recording).
    """

    chunked: bytes
    fixed: bytes
    arrivals: list[tuple[float, int]]
    capture: Capture

    def chunked_rows(self) -> list:
        """The capture's rows of the first connection (the chunked response)."""
        rows = self.capture.table()
        if not rows:
            return []
        client = rows[0].src if rows[0].direction == C2S else rows[0].dst
        return [r for r in rows if client in (r.src, r.dst)]

    def wire_streams(self) -> dict[str, bytes]:
        """The bytes each side sent, from the capture (in replay: the recorded run's)."""
        return tcp_payload_streams(self.capture.packets, self.capture.table())

    def captured_chunked_body(self) -> bytes:
        """The chunked body (framing included) of the first response in the capture."""
        stream = self.wire_streams()[S2C]
        head, rest = split_head(stream) or (b"", b"")
        decoder = ChunkedDecoder()
        decoder.feed(rest)
        return rest[: len(rest) - len(decoder.unused)]


@scenario("chunked_stream")
def chunked_on_the_wire(pieces: int = 5, gap: float = 0.15, size: int = 16) -> StreamCapture:
    """GET /chunked (``pieces`` writes, ``gap`` s apart) and GET /fixed (the same body at once), captured."""
    with serve(make_app(), name="streaming") as srv:
        with capture(srv.port, scenario="chunked_stream") as cap:
            with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
                t0 = time.monotonic()
                sock.sendall(_request(f"/chunked?pieces={pieces}&gap={gap}&size={size}", srv.port))
                got = _read_all(sock, t0 + pieces * gap + 5)
            with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
                sock.sendall(_request(f"/fixed?pieces={pieces}&size={size}", srv.port))
                fixed = b"".join(d for _, d in _read_all(sock, time.monotonic() + 5))
    return StreamCapture(b"".join(d for _, d in got), fixed, [(t - t0, len(d)) for t, d in got], cap)


@dataclass
class ChunkView:
    """A chunked body split into size lines, data and CRLFs, for display (coloured in HTML)."""

    parts: list[tuple[str, bytes]]  # (kind: "size", "ext", "data", "crlf", "last", "trailer", "end"), bytes

    def __repr__(self) -> str:
        return "".join(f"[{k}:{_printable(b)}]" for k, b in self.parts)

    def _repr_html_(self) -> str:
        colours = {"size": "#ffe082", "data": "#c8e6c9", "crlf": "#b0bec5", "last": "#ef9a9a", "end": "#b0bec5",
                   "trailer": "#ce93d8"}
        spans = "".join(
            f"<span title='{k}' style='background:{colours.get(k, '#eee')};font-family:monospace;"
            f"padding:1px 1px;margin:0 1px'>{html.escape(_printable(b))}</span>" + ("<br>" if k in ("crlf", "end") else "")
            for k, b in self.parts)
        legend = " ".join(f"<span style='background:{c};padding:1px 4px;font-family:monospace'>{n}</span>"
                          for n, c in (("size line (hex)", colours["size"]), ("data", colours["data"]),
                                       ("CRLF", colours["crlf"]), ("last chunk", colours["last"])))
        return f"<div style='line-height:1.8'>{spans}</div><div style='margin-top:4px'>{legend}</div>"


def _printable(data: bytes) -> str:
    return "".join({13: "␍", 10: "␊"}.get(b, chr(b) if 32 <= b < 127 else "·") for b in data)


def chunk_view(body: bytes) -> ChunkView:
    """Split a complete chunked body into its parts (RFC 9112 §7.1), using the course's decoder to find them."""
    parts: list[tuple[str, bytes]] = []
    pos, left = 0, 0
    for event in ChunkedDecoder().feed(body):
        if isinstance(event, Chunk):
            end = body.index(b"\r\n", pos)
            parts += [("last" if event.size == 0 else "size", body[pos:end]), ("crlf", b"\r\n")]
            pos, left = end + 2, event.size
        elif isinstance(event, Data):
            parts.append(("data", event.data))
            pos += len(event.data)
            left -= len(event.data)
            if left == 0:
                parts.append(("crlf", body[pos:pos + 2]))
                pos += 2
    rest = body[pos:]
    if len(rest) > 2:
        parts.append(("trailer", rest[:-2]))
    if rest:
        parts.append(("end", rest[-2:]))
    return ChunkView(parts)


def exercise_framing_bytes(run: StreamCapture) -> Exercise:
    """Bytes of chunked framing in the learner's own capture."""
    body = run.captured_chunked_body()
    parts = chunk_view(body).parts if body else []
    payload = b"".join(d for k, d in parts if k == "data")
    framing = len(body) - len(payload)
    sizes = [d.decode() for k, d in parts if k == "size"]
    per_chunk = ", ".join(f"'{h}' + CRLF + CRLF = {len(h) + 4}" for h in dict.fromkeys(sizes))
    return Exercise(
        "In your capture, the chunked response's body carries some bytes of data. How many bytes of chunked "
        "framing (size lines, their CRLFs, the CRLF after each chunk's data, the last chunk and the final CRLF) "
        "did the server add to them?",
        answer=framing,
        hint="Take run.captured_chunked_body(): its length minus the data bytes. Or count: each chunk costs its "
        "hex size, CRLF, and CRLF after the data; the end is 0 CRLF CRLF.",
        explanation=f"{framing} bytes: {len(payload)} bytes of data in {len(sizes)} chunks, each adding its size line "
        f"({per_chunk}), and the end adding '0' CRLF CRLF = 5. A Content-Length response adds none of this, but "
        "must know its length before it starts.",
        kind="capture",
    )


# -- 2. chunk boundaries are not message boundaries -----------------------------------------------------


@dataclass
class Boundaries:
    """Where chunks and TCP segments begin and end, and what a client reading the body got.

    Attributes:
        chunks: per endpoint, the byte ranges (start, end) of each chunk's data in the server's stream.
        segments: per endpoint, the byte ranges of the TCP segments that carried the response (capture).
        reads: per endpoint, the sizes of the pieces aiohttp's ``iter_any()`` handed the client.
        mtu: the link's MTU.
        mode: the link's mode (segments come from the recording when not "tap").
    """

    chunks: dict[str, list[tuple[int, int]]]
    segments: dict[str, list[tuple[int, int]]]
    reads: dict[str, list[int]]
    mtu: int
    mode: str
    capture: Capture | None = None

    def rows(self, name: str) -> list[str]:
        """One line per segment: the chunks (whole or in part) it carries."""
        out = []
        for i, (a, b) in enumerate(self.segments[name], 1):
            inside = []
            for n, (c, d) in enumerate(self.chunks[name], 1):
                lo, hi = max(a, c), min(b, d)
                if lo < hi:
                    inside.append(f"chunk {n}" + ("" if (lo, hi) == (c, d) else f" (bytes {lo - c}–{hi - c})"))
            empty = "the response head" if a == 0 else "framing only (size lines, CRLFs)"
            out.append(f"segment {i}: {b - a:>4} bytes: " + (", ".join(inside) or empty))
        return out


@scenario("chunk_boundaries")
def chunk_boundaries(mtu: int = 576) -> Boundaries:
    """On a link with a small MTU: three 1,200-byte chunks (each split over several segments), and eight
    40-byte chunks written back to back with Nagle on (several in one segment)."""
    paths = {"big chunks": "/chunked?pieces=3&size=1200&gap=0.1", "small chunks, Nagle on": "/burst?pieces=8&size=40"}
    chunks: dict[str, list[tuple[int, int]]] = {}
    segments: dict[str, list[tuple[int, int]]] = {}
    reads: dict[str, list[int]] = {}
    with link(rtt_ms=20, mtu=mtu, rate_mbit=2) as net:  # 2 Mbit/s: the segments of a chunk arrive apart
        srv = net.serve(make_app(), name="streaming")
        net.announce()

        async def client() -> dict[str, list[int]]:
            out = {}
            async with aiohttp.ClientSession(headers=UA) as session:
                for name, path in paths.items():
                    async with session.get(f"http://{srv.host}:{srv.port}{path}") as resp:
                        out[name] = [len(p) async for p in resp.content.iter_any()]
            return out

        with net.capture(srv.port, scenario="chunk_boundaries") as cap:
            reads = net.run(client(), 20)
    # the server's bytes per connection, from the capture, with each segment's range
    rows = cap.table()
    conns: dict[int, list] = {}
    for pkt, row in zip(cap.packets, rows):
        if row.direction == S2C and row.proto == "TCP" and row.payload:
            conns.setdefault(row.dst, []).append((row.seq, bytes(_tcp_payload(pkt))[: row.payload]))
    # each response's chunks and segments, as byte ranges of the server's stream (responses one after
    # another, on one kept-alive connection or several)
    names = iter(paths)
    for segs in conns.values():
        segs = sorted(set(segs))
        base = segs[0][0]
        stream = bytearray()
        ranges = []
        for seq, data in segs:
            off = seq - base
            if off < len(stream):
                continue  # a retransmission
            ranges.append((off, off + len(data)))
            stream += data
        pos = 0
        while pos < len(stream):
            found = split_head(bytes(stream[pos:]))
            if found is None:
                break
            head, body = found
            name = next(names, None)
            if name is None:
                break
            decoder = ChunkedDecoder()
            chunk_ranges, at = [], pos + len(head)
            for event in decoder.feed(body):
                if isinstance(event, Chunk):
                    at = bytes(stream).index(b"\r\n", at) + 2
                    if event.size:
                        chunk_ranges.append((at, at + event.size))
                        at += event.size + 2
            end = len(stream) - len(decoder.unused)
            chunks[name] = [(a - pos, b - pos) for a, b in chunk_ranges]
            segments[name] = [(max(a, pos) - pos, min(b, end) - pos) for a, b in ranges if a < end and b > pos]
            pos = end
    return Boundaries(chunks, segments, reads, mtu, net.mode, cap)


def _tcp_payload(pkt) -> bytes:
    from scapy.layers.inet import TCP

    return bytes(pkt[TCP].payload)


# -- 3. Server-Sent Events: resume after a drop -----------------------------------------------------------


@dataclass
class SSERun:
    """An event-stream client that kept going across dropped connections.

    Attributes:
        published: message ids the server published, in order.
        received: (id, seconds since the start, connection number from 1) per event received.
        resyncs: resync events received (their data).
        connections: (seconds the connection opened, Last-Event-ID it sent or None, seconds it ended).
        retry_ms: the reconnection time the server set.
        capture: the packets (in replay: the recording).
    """

    published: list[int]
    received: list[tuple[int, float, int]]
    resyncs: list[str]
    connections: list[tuple[float, str | None, float]]
    retry_ms: int | None
    capture: Capture | None = None

    @property
    def lost(self) -> list[int]:
        got = {i for i, _, _ in self.received}
        return [i for i in self.published if i not in got]

    @property
    def duplicated(self) -> list[int]:
        ids = [i for i, _, _ in self.received]
        return sorted({i for i in ids if ids.count(i) > 1})

    def first_response_text(self) -> str:
        """The first event stream's body as the capture shows it (chunk framing removed), as text."""
        if self.capture is None:
            return ""
        stream = tcp_payload_streams(self.capture.packets, self.capture.table())[S2C]
        found = split_head(stream)
        if found is None:
            return ""
        decoder = ChunkedDecoder()
        body = b"".join(e.data for e in decoder.feed(found[1]) if isinstance(e, Data))
        return body.decode("utf-8", errors="replace")

    def gaps_ms(self) -> list[float]:
        """Milliseconds from each connection's end to the next one's start."""
        return [(b[0] - a[2]) * 1000 for a, b in zip(self.connections, self.connections[1:])]

    def replayed(self) -> list[list[int]]:
        """Per reconnection, the ids that arrived at once (published while the client was away)."""
        out = []
        for n in range(2, len(self.connections) + 1):
            opened = self.connections[n - 1][0]
            out.append([i for i, t, c in self.received if c == n and t - opened < 0.02])
        return out

    def __repr__(self) -> str:
        return (f"{len(self.published)} events published, {len(self.received)} received over "
                f"{len(self.connections)} connections; lost {self.lost or 'none'}, duplicated "
                f"{self.duplicated or 'none'}; gaps between connections {', '.join(f'{g:.0f}' for g in self.gaps_ms())} "
                f"ms (retry: {self.retry_ms} ms)")


async def _publish(log: MessageLog, count: int, gap: float, size: int = 0) -> None:
    for i in range(count):
        await asyncio.sleep(gap)
        text = f"event {log.last_id + 1}"
        log.append(text + (" " + "." * max(0, size - len(text) - 1) if size > len(text) else ""))


def alert_every_third(msg_id: int, text: str) -> str | None:
    """The event types of section 3's stream: every third event is an "alert", the rest plain messages."""
    return "alert" if msg_id % 3 == 0 else None


def _sse_run(events: int, gap: float, drop: int, retry_ms: int, keep: int, scenario_name: str | None) -> SSERun:
    log = MessageLog(limit=keep)
    received: list[tuple[int, float, int]] = []
    resyncs: list[str] = []
    connections: list[tuple[float, str | None, float]] = []
    decoder = SSEDecoder()
    with serve(make_app(log, retry_ms=retry_ms, event_type=alert_every_third), name="sse") as srv:

        async def go() -> None:
            t0 = asyncio.get_running_loop().time()
            publishing = asyncio.run_coroutine_threadsafe(_publish(log, events, gap), srv.loop)
            async with aiohttp.ClientSession(headers=UA) as session:
                await event_source(f"{srv.url}/events?drop={drop}", lambda got: len(got) >= events,
                                    limit=events * gap + 10, log=received, resyncs=resyncs,
                                    connections=connections, t0=t0, session=session, decoder=decoder)
            await asyncio.wrap_future(publishing)

        if scenario_name is None:
            run_async(go(), events * gap + 20)
            cap = None
        else:
            with capture(srv.port, scenario=scenario_name) as cap:
                run_async(go(), events * gap + 20)
    return SSERun([m[0] for m in log.messages], received, resyncs, connections, decoder.reconnection_time, cap)


@scenario("sse_stream")
def sse_resume(events: int = 12, gap: float = 0.05, drop: int = 4, retry_ms: int = 150, keep: int = 100) -> SSERun:
    """A client reads an event stream that the server ends after every ``drop`` events; it reconnects after
    ``retry_ms`` with Last-Event-ID, while the server goes on publishing one event every ``gap`` s."""
    return _sse_run(events, gap, drop, retry_ms, keep, "sse_stream")


def retry_delays(retries_ms: tuple[int, ...] = (100, 400)) -> dict[int, list[float]]:
    """For each ``retry:`` value the server sends, the measured gaps (ms) between a dropped stream and the
    client's reconnection."""
    return {retry: _sse_run(6, 0.03, 2, retry, 100, None).gaps_ms() for retry in retries_ms}


def exercise_reconnect_head(run: SSERun) -> Exercise:
    """The size of the first reconnection's request head, read from the learner's capture."""
    stream = tcp_payload_streams(run.capture.packets, run.capture.table())[C2S] if run.capture else b""
    heads = [h + b"\r\n\r\n" for h in stream.split(b"\r\n\r\n") if h.startswith(b"GET /events")]
    size = len(heads[1]) if len(heads) > 1 else None
    return Exercise(
        "In your capture, the client's requests for /events are in the C→S bytes. How many bytes long is the head "
        "of its first reconnection request (the request line, the headers and the blank line that ends them)?",
        answer=size,
        hint="tcp_payload_streams(sse.capture.packets, sse.capture.table())['C→S'] holds every request; split it at "
        "b'\\r\\n\\r\\n' and take the second piece that starts with b'GET /events', plus the 4 bytes of the split.",
        explanation=f"{size} bytes, of which the Last-Event-ID line is about 20: what every reconnection costs "
        "before the first replayed event, besides the TCP handshake. An open stream costs no request per event; "
        "each drop costs one whole request head.",
        kind="capture",
    )


def exercise_replay_first() -> Exercise:
    return Exercise(
        "A client reconnects with Last-Event-ID: 7. The server has published events 1 to 12 and keeps the last "
        "100. What is the id of the first event it sends?",
        answer=8,
        hint="The header names the last event the client has.",
        explanation="8: the server replays 8 to 12 at once, then sends new events as they come. Had it kept only "
        "the last 3 (10 to 12), it would have had to say so: a resync event, never a silent gap.",
    )


# -- 4. buffering proxies, measured --------------------------------------------------------------------------

# name -> (proxy options or None for a direct connection, query added to /events)
BUFFERING_CASES: dict[str, tuple[dict | None, str]] = {
    "direct": (None, ""),
    "proxy buffers 4 KiB": ({"buffer": 4096}, ""),
    "proxy compresses (gzip)": ({"buffer": None, "gzip": True}, ""),
    "fix: X-Accel-Buffering: no": ({"buffer": 4096, "gzip": True}, "&accel=no"),
    "no-transform, but the proxy buffers": ({"buffer": 4096, "gzip": True}, "&no_transform=1"),
    "fix: Cache-Control: no-transform": ({"buffer": None, "gzip": True}, "&no_transform=1"),
    "fix: gzip flushes each write": ({"buffer": None, "gzip": True, "gzip_flush": True}, ""),
    "fix: no gzip for text/event-stream": ({"buffer": None, "gzip": True, "compress_event_stream": False}, ""),
}


@dataclass
class Buffering:
    """Per-event delivery delay (ms from publication to the client's receipt) for each way of connecting.

    Attributes:
        delays: case name -> one delay per event, in publication order (None: never arrived).
        events, gap, size: the stream: ``events`` events of about ``size`` bytes, ``gap`` s apart.
    """

    delays: dict[str, list[float | None]]
    events: int
    gap: float
    size: int
    published_ms: list[float] = field(default_factory=list)

    def _published(self) -> list[float]:
        return self.published_ms or [i * self.gap * 1000 for i in range(self.events)]

    def first(self, case: str) -> float:
        return self.delays[case][0] if self.delays[case] and self.delays[case][0] is not None else float("nan")

    def lumps(self, case: str, *, within_ms: float = 10.0) -> list[int]:
        """How many events arrived together, lump by lump (arrivals less than ``within_ms`` apart)."""
        times = sorted(p + d for p, d in zip(self._published(), self.delays[case]) if d is not None)
        out: list[int] = []
        for k, t in enumerate(times):
            if k and t - times[k - 1] < within_ms:
                out[-1] += 1
            else:
                out.append(1)
        return out

    def worst(self, case: str) -> float:
        return max((d for d in self.delays[case] if d is not None), default=float("nan"))

    def __repr__(self) -> str:
        lines = [f"{self.events} events of about {self.size} bytes, {self.gap * 1000:.0f} ms apart; delay from "
                 "publication to the client, ms:"]
        for case, ds in self.delays.items():
            got = [d for d in ds if d is not None]
            lines.append(f"  {case:<36} first {self.first(case):6.0f}   median {statistics.median(got) if got else float('nan'):6.0f}   "
                         f"worst {self.worst(case):6.0f}" + ("" if len(got) == len(ds) else f"   ({len(ds) - len(got)} missing)"))
        return "\n".join(lines)


def buffering(cases: dict[str, tuple[dict | None, str]] | None = None, *, events: int = 10, gap: float = 0.06,
              size: int = 100) -> Buffering:
    """Subscribe one client per case (directly, or through its own proxy) to the same event stream, publish
    ``events`` events ``gap`` s apart, and time each event's delivery to each client."""
    cases = dict(BUFFERING_CASES if cases is None else cases)
    if not 1 <= events <= 200 or not 0 < gap <= 1 or not 1 <= size <= 10_000:
        raise ValueError("need 1 <= events <= 200, 0 < gap <= 1 s, 1 <= size <= 10000 bytes")
    log = MessageLog()
    app = make_app(log, keepalive=30)
    with serve(app, name="sse") as srv, contextlib.ExitStack() as stack:
        proxies = {name: stack.enter_context(serve(make_proxy(srv.host, srv.port, **opts), name="buffering proxy"))
                   for name, (opts, _) in cases.items() if opts is not None}  # each stops, whatever fails
        received: dict[str, dict[int, float]] = {name: {} for name in cases}

        async def one(session: aiohttp.ClientSession, name: str, ready: asyncio.Event) -> None:
            opts, query = cases[name]
            port = proxies[name].port if opts is not None else srv.port
            # the server ends the stream after the last event (drop=events): a proxy that buffers lets go then
            async for now, event in stream_events(session, f"http://127.0.0.1:{port}/events?retry=1000&drop={events}"
                                                  f"{query}", on_open=ready.set):
                received[name][int(event.id)] = now
                if len(received[name]) >= events:
                    return

        async def go() -> None:
            async with aiohttp.ClientSession(headers=UA) as session:
                readies = {name: asyncio.Event() for name in cases}
                tasks = [asyncio.create_task(one(session, name, readies[name])) for name in cases]
                await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies.values())), 10)
                # every stream is open at the server (proxied ones only once the proxy saw the head)
                deadline = time.monotonic() + 5
                while app_streams(app) < len(cases) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                publishing = asyncio.run_coroutine_threadsafe(_publish(log, events, gap, size), srv.loop)
                await asyncio.wrap_future(publishing)
                await asyncio.wait(tasks, timeout=2 + 2 * gap * events)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        run_async(go(), events * gap + 30)
    published = {msg_id: t for msg_id, _, t in log.messages}
    delays = {name: [((got[i] - published[i]) * 1000 if i in got else None) for i in sorted(published)]
              for name, got in received.items()}
    first = min(published.values(), default=0.0)
    return Buffering(delays, events, gap, size, [(published[i] - first) * 1000 for i in sorted(published)])


def app_streams(app) -> int:
    """Event streams open at the streaming app right now."""
    from ..apps.streaming import _SETTINGS

    return app[_SETTINGS]["open"]


BUFFER_SIZES = (0, 128, 256, 512, 1024, 2048, 4096)


def buffer_grid(sizes: tuple[int, ...] = BUFFER_SIZES, **stream) -> Buffering:
    """The same stream through proxies with each buffer size (0: no buffering), measured side by side."""
    cases = {f"{n} B": ({"buffer": n or None}, "") for n in sizes}
    return buffering(cases, **stream)


def buffer_knob(grid: Buffering, buffer: int = 4096):
    """The knob's picture: per-event delays through a proxy with ``buffer`` bytes, from the measured grid."""
    from ..course import plots

    name = f"{buffer} B"
    if name not in grid.delays:
        raise ValueError(f"no measurement for a {buffer}-byte buffer; measured: {', '.join(grid.delays)}")
    return plots.stream_delays(grid, [name], title=f"Through a proxy that buffers {buffer} bytes" if buffer
                               else "Through a proxy that does not buffer")


def event_body_bytes(size: int = 100, msg_id: int = 10) -> int:
    """Bytes one published event takes in the stream's body: its ``id:`` and ``data:`` lines and the blank line."""
    from ..protocols.sse import encode

    text = f"event {msg_id}"
    text += " " + "." * max(0, size - len(text) - 1) if size > len(text) else ""
    return len(encode(data=text, id=str(msg_id)))


def predict_first_event_delay(events: int = 10, gap: float = 0.06, size: int = 100, buffer: int = 4096) -> Prediction:
    """Predict when the first event reaches a client behind a buffering proxy."""
    sizes = [event_body_bytes(size, n) for n in range(1, events + 1)]
    each = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]} to {sizes[-1]}"
    total = sum(sizes)

    def explain(given: float, measured: float) -> str:
        return (f"{events} events of {each} bytes each in the body (the `id:` and `data:` lines and the blank line) "
                f"make {total} bytes, less than the proxy's {buffer}-byte buffer: the proxy holds every event "
                "until the buffer fills or the response ends. Here the server ends the stream after the last event, "
                f"so all arrive together at the end: the first, published {(events - 1) * gap * 1000:.0f} ms before "
                "the last, waits at least that long. A stream that never ends would never arrive at all.")

    return Prediction(
        f"The server publishes {events} events of about {size} bytes, {gap * 1000:.0f} ms apart, on an event stream. "
        f"Between it and the client sits a proxy that buffers up to {buffer} bytes before forwarding. How many "
        "milliseconds after its publication does the first event reach the client?",
        measure=lambda b: b.first("proxy buffers 4 KiB") if buffer == 4096 else b.first(f"{buffer} B"),
        unit="ms", tolerance=0.3, floor=30, explain=explain,
    )


# -- 5. HTTP/1.1's six connections per host ----------------------------------------------------------------


@dataclass
class ConnectionLimit:
    """A page that holds event streams open and then asks for one more thing from the same host.

    Attributes:
        limit: connections per host the client allows (browsers: about 6 for HTTP/1.1).
        streams: event streams held open.
        hold: seconds the streams stay open.
        waited_ms: how long the extra request took, from asking to its answer.
    """

    limit: int
    streams: int
    hold: float
    waited_ms: float

    def __repr__(self) -> str:
        return (f"{self.streams} streams open, {self.limit} connections per host allowed: the next request took "
                f"{self.waited_ms:.0f} ms")


def connection_limit(limit: int = 6, streams: int = 6, hold: float = 0.6) -> ConnectionLimit:
    """Open ``streams`` event streams through an aiohttp client limited to ``limit`` connections per host (as
    a browser is), then fetch /fixed from the same host; time that fetch."""
    if not 1 <= limit <= 50 or not 0 <= streams <= 50 or not 0 < hold <= 5:
        raise ValueError("need 1 <= limit <= 50, 0 <= streams <= 50 and 0 < hold <= 5 s")
    with serve(make_app(keepalive=0.2), name="sse") as srv:

        async def go() -> float:
            connector = aiohttp.TCPConnector(limit_per_host=limit)
            async with aiohttp.ClientSession(connector=connector, headers=UA) as session:

                async def stream() -> None:
                    async with session.get(f"{srv.url}/events") as resp:
                        try:
                            await asyncio.wait_for(resp.content.read(), hold)
                        except asyncio.TimeoutError:
                            pass  # the page closes the stream (navigates away)

                tasks = [asyncio.create_task(stream()) for _ in range(streams)]
                await asyncio.sleep(0.1)
                t = time.perf_counter()
                async with session.get(f"{srv.url}/fixed") as resp:
                    await resp.read()
                waited = (time.perf_counter() - t) * 1000
                await asyncio.gather(*tasks, return_exceptions=True)
                return waited

        waited = run_async(go(), hold + 20)
    return ConnectionLimit(limit, streams, hold, waited)


# -- 6. on the emulated link, and bytes per message -------------------------------------------------------


@dataclass
class LinkDelivery:
    """Event delivery across an emulated link: ms from publication to the client's receipt, per event."""

    rtt_ms: float
    delays: list[float]
    mode: str

    def __repr__(self) -> str:
        return (f"across a {self.rtt_ms:g} ms round trip ({self.mode}): {len(self.delays)} events, median "
                f"{statistics.median(self.delays):.0f} ms, worst {max(self.delays):.0f} ms from publication to receipt")


def sse_across_a_link(rtt_ms: float = 100.0, events: int = 8, gap: float = 0.05) -> LinkDelivery:
    """The event stream across an emulated link: each event costs half a round trip (one way), no request."""
    log = MessageLog()
    got: dict[int, float] = {}
    with link(rtt_ms=rtt_ms) as net:
        srv = net.serve(make_app(log), name="sse")
        net.announce()

        async def client() -> None:
            publishing = []

            def publish() -> None:  # once the stream is open: every event is one the client waits for
                publishing.append(asyncio.run_coroutine_threadsafe(_publish(log, events, gap), srv.loop))

            async with aiohttp.ClientSession(headers=UA) as session:
                async for now, e in stream_events(session, f"http://{srv.host}:{srv.port}/events", on_open=publish):
                    got[int(e.id)] = now
                    if len(got) >= events:
                        break
            await asyncio.wrap_future(publishing[0])

        net.run(client(), events * gap + 20)
        mode = net.mode
    published = {i: t for i, _, t in log.messages}
    return LinkDelivery(rtt_ms, [(got[i] - published[i]) * 1000 for i in sorted(got)], mode)


def request_head_sizes() -> tuple[aiohttp.TraceConfig, list[int]]:
    """A trace config for an aiohttp session, and the list it fills: the size in bytes of each request head
    the session sends (request line, headers, blank line), rebuilt from the headers aiohttp reports sent."""
    heads: list[int] = []

    async def sent(session, ctx, params) -> None:
        heads.append(head_size(f"{params.method} {params.url.raw_path_qs} HTTP/1.1", params.headers.items()))

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(sent)
    return trace, heads


def long_poll_bytes(size: int = 20) -> dict[str, int]:
    """One long poll that brings one ``size``-byte message, against the course's polling server (notebook 03),
    on a kept-alive connection: its request head, response head, and the JSON around the message, in bytes.
    The heads are sized (``protocols.httpwire.head_size``) from the header lines aiohttp sent and received."""
    from ..apps.polling import make_app as polling_app

    if not 1 <= size <= 10_000:
        raise ValueError("size is 1 to 10,000 bytes")
    log = MessageLog()
    trace, heads = request_head_sizes()
    with serve(polling_app(log), name="long polling") as srv:
        async def poll() -> tuple[int, int]:
            async with aiohttp.ClientSession(trace_configs=[trace], headers=UA) as session:
                async with session.get(f"{srv.url}/messages?after=0&wait=1") as warm:  # the connection, set up
                    await warm.read()
                heads.clear()
                srv.loop.call_later(0.05, log.append, "x" * size)
                async with session.get(f"{srv.url}/messages?after={log.last_id}&wait=5") as resp:
                    body = await resp.read()
                    return response_head_size(resp), len(body) - size

        response_head, json_bytes = run_async(poll(), 15)
    return {"request head": heads[0], "response head": response_head, "JSON around the message": json_bytes}


def per_message_bytes(size: int = 20) -> dict[str, int]:
    """Bytes of protocol overhead per ``size``-byte message pushed to the client (TCP/IP headers aside):
    SSE (its ``id:``/``data:`` lines and blank line, plus the chunk's size line and CRLFs), a WebSocket frame,
    and a long poll (its request head, response head and JSON, measured against notebook 03's server)."""
    from ..protocols.sse import encode
    from ..protocols.wsframe import header_length

    body = encode(data="x" * size, id="1234")
    sse = len(body) - size + len(f"{len(body):x}\r\n\r\n")
    poll = long_poll_bytes(size)
    return {"SSE (id, data, chunk framing)": sse, "WebSocket frame (server → client)": header_length(size, False),
            "long poll (request + response heads + JSON, notebook 03's server)": sum(poll.values())}


def resync_demo(keep: int = 3, published: int = 10, asks: tuple[str, ...] = ("2", "9", "banana")) -> list[tuple[str, list[Event]]]:
    """A server that keeps the last ``keep`` of ``published`` events, asked to resume from each Last-Event-ID in
    ``asks``: what the stream starts with (a resync event when it cannot replay)."""
    log = MessageLog(limit=keep)
    with serve(make_app(log, keepalive=0.2), name="sse") as srv:

        async def fill() -> None:
            for _ in range(published):
                log.append(f"event {log.last_id + 1}")

        asyncio.run_coroutine_threadsafe(fill(), srv.loop).result(5)

        async def ask(last_id: str) -> list[Event]:
            events: list[Event] = []
            async with aiohttp.ClientSession(headers=UA) as session:

                async def read() -> None:
                    async for _, event in stream_events(session, f"{srv.url}/events", headers={"Last-Event-ID": last_id}):
                        events.append(event)

                try:
                    await asyncio.wait_for(read(), 0.5)
                except asyncio.TimeoutError:
                    pass  # nothing more is coming (only keep-alive comments): the demo has what it needs
            return events

        return [(asked, run_async(ask(asked), 10)) for asked in asks]
