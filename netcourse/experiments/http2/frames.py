"""One HTTP/2 connection, captured and read frame by frame; HPACK's dynamic table filled by the first request.

The client (``clients.http2.fetch``) sends three GETs at once on one connection to the course's HTTP/2
server, on loopback, while the capture runs. Each direction's TCP payload is put back together and read with
``protocols.h2frame``: the preface, SETTINGS both ways and their acknowledgements, a HEADERS frame per
request on streams 1, 3 and 5 (odd: the client opened them, RFC 9113 §5.1.1), the answers' HEADERS and DATA,
and WINDOW_UPDATE frames returning flow-control credit (§6.9).

The request HEADERS are then decoded with ``hpack`` (the HPACK implementation ``h2`` uses; RFC 7541) in the
order they were sent, as the server's decoder did: after each one, the dynamic table (§2.3.2) holds the fields
the encoder chose to index, and the next request refers to them by a one-byte index instead of repeating them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hpack

from ...apps.http2 import make_h2_handler
from ...clients.http2 import fetch
from ...protocols.h2frame import Frame, FrameDecoder, FrameType
from ...runtime.server import serve
from ...runtime.waiting import run_async
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import capture
from ...traffic.wire import tcp_payload_streams
from ..registry import scenario

__all__ = ["Exchange", "HeaderBlock", "h2_exchange", "PATHS"]

PATHS = ["/r/style.css?size=1200", "/r/app.js?size=31000", "/r/logo.png?size=800"]


@dataclass
class HeaderBlock:
    """One request's HEADERS frame: its HPACK bytes, the fields they decode to, and the dynamic table after it."""

    stream: int
    size: int  # bytes of HPACK-encoded header block (the frame's payload)
    fields: list[tuple[str, str]]
    table: list[tuple[str, str, int]]  # (name, value, entry size = name + value + 32, RFC 7541 §4.1), newest first

    @property
    def plain(self) -> int:
        """The same fields written as HTTP/1.1 header lines would be ("name: value\\r\\n"), in bytes."""
        return sum(len(n) + 2 + len(v) + 2 for n, v in self.fields)


@dataclass
class Exchange:
    """The frames each way, in order, and the request header blocks decoded."""

    frames: dict[str, list[Frame]] = field(default_factory=dict)
    blocks: list[HeaderBlock] = field(default_factory=list)
    source: str = ""

    def lines(self, direction: str) -> list[str]:
        return [f"{direction}  {frame.describe()}" for frame in self.frames.get(direction, [])]

    def __repr__(self) -> str:
        return "\n".join(self.lines(C2S) + self.lines(S2C))


@scenario("h2_exchange")
def h2_exchange() -> Exchange:
    """Three GETs on one HTTP/2 connection on loopback, captured; see the module's docstring."""
    with serve(make_h2_handler(), name="HTTP/2 server") as srv, capture(srv.port, scenario="h2_exchange") as cap:
        page = run_async(fetch("127.0.0.1", srv.port, PATHS, authority="localhost"))
        if set(page.status.values()) != {200}:
            raise RuntimeError(f"the HTTP/2 server answered {sorted(set(page.status.values()))}")
    streams = tcp_payload_streams(cap.packets, cap.table())
    frames = {C2S: FrameDecoder(preface=True).feed(streams[C2S]), S2C: FrameDecoder().feed(streams[S2C])}
    return Exchange(frames, _blocks(frames[C2S]), "live capture" if cap.live else "the course's recording")


def _blocks(frames: list[Frame]) -> list[HeaderBlock]:
    decoder = hpack.Decoder()
    out = []
    for frame in frames:
        if frame.type != FrameType.HEADERS:
            continue
        fields = [(str(n), str(v)) for n, v in decoder.decode(frame.payload)]
        table = [(n.decode(), v.decode(), len(n) + len(v) + 32) for n, v in decoder.header_table.dynamic_entries]
        out.append(HeaderBlock(frame.stream, len(frame.payload), fields, table))
    return out
