"""Notebook 05, sections 3 to 5: frames bit by bit. The frame explorer, masking and why (RFC 6455 §10.3), control
frames and fragments decoded off the wire, a frame's size against its payload.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from ...apps.wsserver import make_ws_handler
from ...clients.websocket import ORIGIN, RawClient
from ...course.exercises import Exercise, Prediction
from ...errors import FrameError
from ...protocols.httpwire import split_head
from ...protocols.wsframe import (
    Frame,
    FrameDecoder,
    Opcode,
    close_payload,
    header_length,
)
from ...runtime.server import serve
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ...traffic.wire import tcp_payload_streams
from ..registry import scenario

__all__ = ["ControlRun", "frames_on_the_wire", "control_frames", "FrameView", "explain", "ATTACK", "ascii_view", "SizedEcho", "sized_echo", "predict_frame_size", "exercise_fragment_release", "exercise_decode", "frame_explorer"]


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


ATTACK = b"GET /app.js HTTP/1.1\r\nHost: victim.example\r\n\r\n"


def ascii_view(data: bytes) -> str:
    """Bytes as printable ASCII ('.' for the rest), how an intermediary scanning for HTTP sees them."""
    return "".join(chr(b) if 32 <= b < 127 else ("⏎" if b == 10 else ".") for b in data)


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
        return why

    return Prediction(
        f"A browser sends a {size}-byte text message over a WebSocket (no extension negotiated, so no "
        "compression). How many bytes long is its frame, header included?",
        measure=lambda echo: len(echo.sent), unit="bytes", tolerance=0.0, explain=explain,
        mistakes=[(lambda g, m: g in (size + 2, size + 4), "Did you forget the masking key? A client masks every "
                   "frame: 4 more bytes."),
                  (lambda g, m: g == size + 6, "Above 125 bytes the length no longer fits the 7-bit field: 2 more "
                   "bytes of extended length.")],
    )


def exercise_fragment_release(ctl: ControlRun) -> Exercise:
    """Which packet let the held-back continuations go, from the learner's own capture."""
    rows = ctl.capture.table()
    text = next((r for r in rows if r.direction == C2S and r.app.startswith("TEXT")), None)
    cont = next((r for r in rows if text is not None and r.no > text.no and r.direction == C2S
                 and r.app.startswith("CONT")), None)
    before = [r for r in rows if cont is not None and text is not None and text.no < r.no < cont.no
              and r.direction == S2C]
    release = before[-1] if before else None
    after = (cont.t - release.t) * 1000 if release and cont else 0.0
    return Exercise(
        "The client wrote its three fragments (TEXT \"Hel\", CONT \"lo, \", CONT \"world\") microseconds "
        "apart, yet its TCP held the continuations back, and sent them together. Something it received let "
        "them go. Find that packet in your capture: what is its number (the `no` column)?",
        answer=release.no if release else 0,
        kind="capture", source=ctl,
        hint="A sender that keeps small segments back is waiting for news about the data it already sent. "
        "What news can a receiver send?",
        recipe="look at the rows of ctl.capture.table() between the TEXT row and the CONT row, in time order: "
        "the last packet from the server before the continuations left is the one.",
        mistakes=[
            (text.no if text else -1, "that is the first fragment itself; the question is what the client "
             "received that let the *next* ones go."),
            (cont.no if cont else -1, "that is the segment that carried the continuations; look just before it."),
        ],
        explanation=f"Packet {release.no if release else '?'}, the server's bare ACK of \"Hel\", and the "
        f"continuations left {after:.2f} ms after it. The client's TCP was holding small data back until "
        "what it had already sent was acknowledged; the next cells say whose rule that is, and why the ACK "
        "took so long.",
    )


def exercise_decode() -> Exercise:
    """Decode a masked frame by hand (not the RFC's example, which the notebook shows decoded)."""
    return Exercise(
        "A server receives the bytes 81 84 a1 b2 c3 d4 d6 db b1 b1. What text does the frame carry?",
        answer="wire",
        hint="Read the two header bytes bit by bit first: which bit says the payload is masked, and where does "
        "the key sit?",
        recipe="0x81: FIN + text. 0x84: masked, 4 bytes. Then a 4-byte key; XOR each payload byte with "
        "key[i % 4].",
        mistakes=[
            (lambda v: isinstance(v, (bytes, str)) and (v.encode("latin-1") if isinstance(v, str) else v)
             == bytes.fromhex("d6dbb1b1"),
             "those are the payload's bytes as sent: a client's payload is masked, XOR it with the key first."),
            (lambda v: isinstance(v, str) and v != "wire" and v.lower() == "wire",
             "case matters: each unmasked byte is exactly one character."),
            (lambda v: isinstance(v, (bytes, str)) and len(v) == 4 and v not in ("wire", b"wire"),
             "four characters, but not these: XOR byte i of the payload with byte i % 4 of the key, the key "
             "being the 4 bytes right after the length (a1 b2 c3 d4)."),
        ],
        explanation="0xd6^0xa1=0x77 'w', 0xdb^0xb2=0x69 'i', 0xb1^0xc3=0x72 'r', 0xb1^0xd4=0x65 'e' (RFC 6455 §5.3).",
    )


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
    from ...protocols.wsframe import encode

    return explain(encode(Frame(op, payload, fin=fin or op.is_control), mask_key=mask_key))
