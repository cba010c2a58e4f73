"""A tiny length-prefixed protocol over TCP, for heartbeats: bytes in, events out, no I/O.

TCP carries bytes, not messages (notebook 02), so a protocol on it must mark where each message ends.
This one puts a 2-byte big-endian length in front of every frame; the frame's first byte says what it is:

    +--------+--------+------+----------------+
    | length (16 bits) | kind |  body ...      |     length = 1 + len(body), at most MAX_FRAME
    +--------+--------+------+----------------+

    kind  P  PING  (body: an opaque token, echoed)     O  PONG  (body: the PING's token)
          T  TICK  (the server's push: a counter)      M  MSG   (application data, either way)
          C  CLOSE (body: a reason, UTF-8)

``Decoder.feed(data)`` returns the frames completed by ``data``, whatever the split; it refuses a zero or
oversized length, an unknown kind, or more bytes after a CLOSE, with a ``BeatProtocolError`` naming the
problem. ``Decoder.partial`` says whether half a frame is waiting (a peer that froze mid-frame).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import BeatProtocolError, latching

__all__ = ["Kind", "Frame", "encode", "Decoder", "MAX_FRAME", "HEADER", "detection_bounds",
           "heartbeat_cost", "TCP_HEADERS"]

TCP_HEADERS = 14 + 20 + 32  # bytes of link + IPv4 + TCP (with timestamps) headers per packet on Linux

HEADER = 2  # bytes of length prefix
MAX_FRAME = 1024  # kind + body, bytes


class Kind(bytes, enum.Enum):
    PING = b"P"
    PONG = b"O"
    TICK = b"T"
    MSG = b"M"
    CLOSE = b"C"


@dataclass(frozen=True)
class Frame:
    """One frame: its kind and body."""

    kind: Kind
    body: bytes = b""

    def __repr__(self) -> str:
        return f"{self.kind.name} {self.body!r}"


def encode(kind: Kind, body: bytes = b"", *, max_frame: int = MAX_FRAME) -> bytes:
    """The bytes of one frame. ``max_frame`` (at most 65,535: the length field has 16 bits) raises the limit
    for a peer whose ``Decoder`` accepts as much."""
    size = 1 + len(body)
    if size > min(max_frame, 0xFFFF):
        raise BeatProtocolError(f"a frame carries at most {min(max_frame, 0xFFFF) - 1} bytes of body, not {len(body)}")
    return size.to_bytes(HEADER, "big") + kind.value + body


class Decoder:
    """Frames out of a byte stream, strictly, whatever the chunking.

    Args:
        max_frame: the largest length accepted (kind + body), bytes.
    """

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self.failed: BeatProtocolError | None = None  # set once feed() has raised: it stays failed
        self._closed = False

    @property
    def partial(self) -> bool:
        """True while some bytes of an unfinished frame are waiting."""
        return bool(self._buffer)

    @latching
    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame they complete. Raises ``BeatProtocolError`` on bad input."""
        if self._closed and data:
            raise BeatProtocolError("bytes after CLOSE")
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER:
            size = int.from_bytes(self._buffer[:HEADER], "big")
            if size == 0:
                raise BeatProtocolError("a frame of length 0 (every frame has a kind byte)")
            if size > self.max_frame:
                raise BeatProtocolError(f"a frame of {size} bytes, over the limit of {self.max_frame}")
            if len(self._buffer) < HEADER + size:
                break
            raw = bytes(self._buffer[HEADER : HEADER + size])
            del self._buffer[: HEADER + size]
            try:
                kind = Kind(raw[:1])
            except ValueError:
                raise BeatProtocolError(f"unknown frame kind {raw[:1]!r}") from None
            frames.append(Frame(kind, raw[1:]))
            if kind is Kind.CLOSE:
                self._closed = True
                if self._buffer:
                    raise BeatProtocolError("bytes after CLOSE")
                break
        return frames


# -- what a heartbeat buys and costs (arithmetic only) ----------------------------------------------


def detection_bounds(interval: float, timeout: float) -> tuple[float, float]:
    """An application heartbeat notices a death between ``timeout`` and ``interval + timeout`` after it."""
    return timeout, interval + timeout


def heartbeat_cost(interval: float, *, clients: int = 100_000, websocket: bool = False) -> dict[str, float]:
    """Bytes on the wire per hour for one connection's heartbeat, and the server's load for ``clients``.

    One heartbeat = three packets: the PING, the PONG (which carries the ACK of the PING), and a bare ACK of
    the PONG. The next PING cannot carry that ACK: it leaves an interval later, and an ACK may wait at most
    0.5 s (RFC 9293 §3.8.6.3; Linux: 200 ms). Each packet has ``TCP_HEADERS`` bytes of headers here
    (14 Ethernet + 20 IPv4 + 32 TCP with timestamps). Beat frames: 2 bytes of length + 1 of kind + a token
    of ~2 bytes; WebSocket ping/pong: 2 bytes of header (+ 4 of mask when the client pings) + the token.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    token = 2
    frame = (2 + 4 + token) + (2 + token) if websocket else 2 * (3 + token)
    per_beat = 3 * TCP_HEADERS + frame
    beats_per_hour = 3600 / interval
    return {
        "bytes per beat": per_beat,
        "bytes per hour, one connection": per_beat * beats_per_hour,
        "packets per second at the server, both ways": 3 * clients / interval,
        "megabytes per hour at the server": per_beat * beats_per_hour * clients / 1e6,
    }
