"""Notebook 06, sections 1 and 2: one response in chunks, captured and coloured byte by byte beside a
Content-Length response; chunks that TCP splits and merges on a small-MTU link, and what the client's reads got.
"""

from __future__ import annotations

import html
import socket
import time
from dataclasses import dataclass

import aiohttp

from ...apps.streaming import make_app
from ...course.exercises import Exercise
from ...network.link import link
from ...protocols.chunked import Chunk, ChunkedDecoder, Data
from ...protocols.httpwire import split_head
from ...runtime.server import serve
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ...traffic.wire import tcp_payload_streams
from ..registry import scenario
from .common import UA, raw_request, read_all, tcp_payload

__all__ = ["StreamCapture", "chunked_on_the_wire", "ChunkView", "chunk_view", "exercise_framing_bytes", "exercise_event_chunk", "Boundaries", "chunk_boundaries"]


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
                sock.sendall(raw_request(f"/chunked?pieces={pieces}&gap={gap}&size={size}", srv.port))
                got = read_all(sock, t0 + pieces * gap + 5)
            with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
                sock.sendall(raw_request(f"/fixed?pieces={pieces}&size={size}", srv.port))
                fixed = b"".join(d for _, d in read_all(sock, time.monotonic() + 5))
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
    per_chunk = ", ".join(f"'{h}' CRLF before the data and CRLF after it = {len(h) + 4}" for h in dict.fromkeys(sizes))
    return Exercise(
        "In your capture, the chunked response's body carries some bytes of data. How many bytes of chunked "
        "framing (size lines, their CRLFs, the CRLF after each chunk's data, the last chunk and the final CRLF) "
        "did the server add to them?",
        answer=framing,
        unit="B",
        hint="Each chunk costs its hex size line and two CRLFs; the end costs a chunk of size 0 and one more CRLF.",
        recipe="Take run.captured_chunked_body(): its length minus the data bytes (chunk_view(body).parts "
        "names each part).",
        mistakes=[
            (framing - 5, "that leaves out the end of the body: the last chunk '0' CRLF and the final CRLF, 5 bytes."),
            (framing - 2 * len(sizes), "that leaves out the CRLF after each chunk's data: the size line has one, "
             "and the data is followed by another."),
        ],
        explanation=f"{framing} bytes: {len(payload)} bytes of data in {len(sizes)} chunks, each adding its size line "
        f"and a CRLF after its data ({per_chunk}; RFC 9112 §7.1), and the end adding '0' CRLF CRLF = 5. A Content-Length response adds none of this, but "
        "must know its length before it starts.",
        kind="capture", source=run,
    )


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
    names = iter(paths)
    for segs in _server_bytes(cap).values():  # responses one after another, on one kept-alive connection or several
        for chunk_ranges, segment_ranges in _responses(*_reassemble(segs)):
            if (name := next(names, None)) is None:
                break
            chunks[name], segments[name] = chunk_ranges, segment_ranges
    return Boundaries(chunks, segments, reads, mtu, net.mode, cap)


def _server_bytes(cap: Capture) -> dict[str, list[tuple[int, bytes]]]:
    """The server's TCP payloads, per connection (by client address), as (sequence number, bytes)."""
    conns: dict[str, list] = {}
    for pkt, row in zip(cap.packets, cap.table()):
        if row.direction == S2C and row.proto == "TCP" and row.payload:
            conns.setdefault(row.dst, []).append((row.seq, bytes(tcp_payload(pkt))[: row.payload]))
    return conns


def _reassemble(segs: list[tuple[int, bytes]]) -> tuple[bytes, list[tuple[int, int]]]:
    """One direction's byte stream, and each segment's range in it (retransmissions skipped)."""
    segs = sorted(set(segs))
    base, stream, ranges = segs[0][0], bytearray(), []
    for seq, data in segs:
        off = seq - base
        if off < len(stream):
            continue  # a retransmission
        ranges.append((off, off + len(data)))
        stream += data
    return bytes(stream), ranges


def _responses(stream: bytes, ranges: list[tuple[int, int]]):
    """Each chunked response in the stream: (its chunks' ranges, the segments' ranges that carry it), both as
    offsets from the response's first byte."""
    pos = 0
    while pos < len(stream) and (found := split_head(stream[pos:])) is not None:
        head, body = found
        decoder = ChunkedDecoder()
        chunk_ranges, at = [], pos + len(head)
        for event in decoder.feed(body):
            if isinstance(event, Chunk):
                at = stream.index(b"\r\n", at) + 2  # past the size line
                if event.size:
                    chunk_ranges.append((at, at + event.size))
                    at += event.size + 2
        end = len(stream) - len(decoder.unused)
        yield ([(a - pos, b - pos) for a, b in chunk_ranges],
               [(max(a, pos) - pos, min(b, end) - pos) for a, b in ranges if a < end and b > pos])
        pos = end


def _chunk_len(data: bytes) -> int:
    """Bytes ``data`` takes as one chunk: its hex size line, itself, and the CRLF after it."""
    return len(f"{len(data):x}\r\n") + len(data) + 2


def exercise_event_chunk(event: bytes = b"id: 12\ndata: event 12\n\n") -> Exercise:
    """Bytes one SSE event takes in a chunked body: the event's own bytes and the chunk around them."""
    size = len(event)
    total = len(f"{size:x}\r\n") + size + 2
    shown = event.decode().replace("\n", "\\n")
    return Exercise(
        f"The course's SSE server writes each event as its own chunk (your capture shows it). How many bytes "
        f"does the event `{shown}` take in the response body, chunk framing included?",
        answer=total,
        unit="B",
        hint="First the event's own bytes (each \\n is one byte); then what a chunk adds around any data.",
        recipe=f"the size line is the length in hex followed by CRLF; then the data; then CRLF.",
        mistakes=[
            (size, "that is the event alone; the chunk adds its size line before it and a CRLF after it."),
            (size + len(f"{size:x}\r\n"), "you left out the CRLF after the chunk's data."),
            (size + 2 + len(f"{size}\r\n") if len(f"{size}") != len(f"{size:x}") else -1,
             "the size line is hexadecimal, not decimal."),
            (_chunk_len(event.replace(b"\n", b"\r\n")), "SSE ends its lines with \\n, one byte each, not CRLF; "
             "only the chunk's framing uses CRLF."),
        ],
        explanation=f"{total} bytes: the event is {size} bytes (0x{size:x}), so the chunk is '{size:x}' CRLF, the "
        f"{size} bytes, CRLF: {len(f'{size:x}')} + 2 + {size} + 2. SSE's own framing (field names, the blank line) "
        "and HTTP's chunk framing are two layers; both are paid on every event.",
    )
