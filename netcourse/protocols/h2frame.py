"""HTTP/2 frames (RFC 9113 §4, §6): the nine-byte header, the ten frame types, and a decoder that reads them
off a connection's bytes. Sans-I/O, standard library only: the course's HTTP/2 server and client use the
``h2`` library for the protocol's state; this module is for reading the wire, as ``wsframe`` is for WebSockets.

Every frame starts with the same nine bytes (RFC 9113 §4.1)::

     0                   1                   2                   3
    +-----------------------------------------------+
    |                 Length (24)                   |
    +---------------+---------------+---------------+
    |   Type (8)    |   Flags (8)   |
    +-+-------------+---------------+-------------------------------+
    |R|                 Stream Identifier (31)                      |
    +=+=============================================================+
    |                   Frame Payload (Length bytes)                |

A client's connection starts with the preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` (§3.4), then
frames. Stream 0 is the connection itself (SETTINGS, PING, GOAWAY, WINDOW_UPDATE for the whole connection);
a request is a stream of its own, odd-numbered when the client opens it (§5.1.1).

``FrameDecoder(...).feed(data)`` returns the whole frames so far; bytes that break §4-§6 raise ``H2FrameError``
with the error code to send in GOAWAY (§7), and the decoder stays failed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ..errors import H2FrameError, latching

__all__ = ["PREFACE", "HEADER_SIZE", "DEFAULT_MAX_FRAME_SIZE", "FrameType", "Flag", "ErrorCode", "SETTINGS",
           "Frame", "encode", "settings", "FrameDecoder"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # §3.4
HEADER_SIZE = 9
DEFAULT_MAX_FRAME_SIZE = 16_384  # §4.2: what a peer may send until it is told more (at most 2^24 - 1)
LARGEST_FRAME_SIZE = (1 << 24) - 1


class FrameType(IntEnum):
    """§6: the frame types, by their number."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Flag:
    """§6: the flags each type defines (the same bit means different things on different types)."""

    END_STREAM = 0x1  # DATA, HEADERS: the sender's last frame on this stream
    ACK = 0x1  # SETTINGS, PING: an acknowledgement
    END_HEADERS = 0x4  # HEADERS, PUSH_PROMISE, CONTINUATION: the header block is complete
    PADDED = 0x8  # DATA, HEADERS, PUSH_PROMISE: a pad length byte and padding
    PRIORITY = 0x20  # HEADERS: priority fields (deprecated by RFC 9113 §5.3.2, still parsed)


class ErrorCode(IntEnum):
    """§7: what a GOAWAY or RST_STREAM says went wrong."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


SETTINGS = {  # §6.5.2: identifier -> name; 0x8 from RFC 8441 §3 (WebSockets over HTTP/2), 0x9 from RFC 9218 §2.1
    0x1: "HEADER_TABLE_SIZE", 0x2: "ENABLE_PUSH", 0x3: "MAX_CONCURRENT_STREAMS", 0x4: "INITIAL_WINDOW_SIZE",
    0x5: "MAX_FRAME_SIZE", 0x6: "MAX_HEADER_LIST_SIZE", 0x8: "ENABLE_CONNECT_PROTOCOL",
    0x9: "NO_RFC7540_PRIORITIES",
}

# §6: payload lengths fixed by the type (a different length is a FRAME_SIZE_ERROR)
_FIXED = {FrameType.PRIORITY: 5, FrameType.RST_STREAM: 4, FrameType.PING: 8, FrameType.WINDOW_UPDATE: 4}
_CONNECTION_ONLY = {FrameType.SETTINGS, FrameType.PING, FrameType.GOAWAY}  # stream 0, always
_STREAM_ONLY = {FrameType.DATA, FrameType.HEADERS, FrameType.PRIORITY, FrameType.RST_STREAM,
                FrameType.PUSH_PROMISE, FrameType.CONTINUATION}  # never stream 0
_FLAG_NAMES = {
    FrameType.DATA: {Flag.END_STREAM: "END_STREAM", Flag.PADDED: "PADDED"},
    FrameType.HEADERS: {Flag.END_STREAM: "END_STREAM", Flag.END_HEADERS: "END_HEADERS", Flag.PADDED: "PADDED",
                        Flag.PRIORITY: "PRIORITY"},
    FrameType.SETTINGS: {Flag.ACK: "ACK"},
    FrameType.PING: {Flag.ACK: "ACK"},
    FrameType.PUSH_PROMISE: {Flag.END_HEADERS: "END_HEADERS", Flag.PADDED: "PADDED"},
    FrameType.CONTINUATION: {Flag.END_HEADERS: "END_HEADERS"},
}


@dataclass(frozen=True)
class Frame:
    """One HTTP/2 frame: its type (a number: unknown types are kept, and ignored, §4.1), flags, stream and
    payload."""

    type: int
    flags: int = 0
    stream: int = 0
    payload: bytes = b""

    @property
    def name(self) -> str:
        try:
            return FrameType(self.type).name
        except ValueError:
            return f"type 0x{self.type:02x} (unknown: ignored)"

    @property
    def size(self) -> int:
        """Bytes on the connection: the nine-byte header and the payload."""
        return HEADER_SIZE + len(self.payload)

    def flag_names(self) -> list[str]:
        names = _FLAG_NAMES.get(self.type, {})
        return [name for bit, name in sorted(names.items()) if self.flags & bit]

    def settings(self) -> list[tuple[str, int]]:
        """A SETTINGS frame's (name, value) pairs, in order (§6.5.1: six bytes each)."""
        out = []
        for i in range(0, len(self.payload) - len(self.payload) % 6, 6):
            ident, value = struct.unpack_from("!HI", self.payload, i)
            out.append((SETTINGS.get(ident, f"0x{ident:04x}"), value))
        return out

    def describe(self) -> str:
        """One line a learner can read: the type, the stream, the flags and what the payload says."""
        head = f"{self.name} stream {self.stream}"
        flags = self.flag_names()
        if flags:
            head += " [" + "|".join(flags) + "]"
        body = ""
        if self.type == FrameType.SETTINGS and not self.flags & Flag.ACK:
            body = ", ".join(f"{name}={value:,}" for name, value in self.settings()) or "(defaults)"
        elif self.type == FrameType.WINDOW_UPDATE and len(self.payload) == 4:
            body = f"+{struct.unpack('!I', self.payload)[0] & 0x7FFF_FFFF:,} bytes of window"
        elif self.type in (FrameType.RST_STREAM, FrameType.GOAWAY) and len(self.payload) >= 4:
            offset = 4 if self.type == FrameType.GOAWAY else 0
            code = struct.unpack_from("!I", self.payload, offset)[0]
            body = _error_name(code)
            if self.type == FrameType.GOAWAY:
                body = f"last stream {struct.unpack_from('!I', self.payload)[0] & 0x7FFF_FFFF}, {body}"
        elif self.type in (FrameType.HEADERS, FrameType.CONTINUATION, FrameType.PUSH_PROMISE):
            body = f"a {len(self.payload)}-byte header block (HPACK)"
        elif self.type == FrameType.DATA:
            body = f"{len(self.payload):,} bytes"
        elif self.type == FrameType.PING:
            body = self.payload.hex()
        return f"{head}: {body}" if body else head


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error 0x{code:x}"


def encode(frame: Frame) -> bytes:
    """The frame's bytes: the nine-byte header, then the payload."""
    if not 0 <= frame.stream < 1 << 31:
        raise ValueError("a stream identifier has 31 bits")
    if len(frame.payload) > LARGEST_FRAME_SIZE:
        raise ValueError("a frame's payload is at most 2^24 - 1 bytes")
    length = len(frame.payload)
    return struct.pack("!BHBBI", length >> 16, length & 0xFFFF, frame.type, frame.flags, frame.stream) + frame.payload


def settings(values: dict[int, int] | None = None, *, ack: bool = False) -> Frame:
    """A SETTINGS frame (§6.5): identifier -> value, or an acknowledgement (empty)."""
    payload = b"".join(struct.pack("!HI", k, v) for k, v in (values or {}).items())
    return Frame(FrameType.SETTINGS, Flag.ACK if ack else 0, 0, b"" if ack else payload)


class FrameDecoder:
    """Reads frames off one direction of a connection.

    Args:
        preface: True on a server's side: the client's preface must come first (§3.4).
        max_frame_size: the largest payload this side accepts (its SETTINGS_MAX_FRAME_SIZE, §4.2).
    """

    def __init__(self, *, preface: bool = False, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not DEFAULT_MAX_FRAME_SIZE <= max_frame_size <= LARGEST_FRAME_SIZE:
            raise ValueError("max_frame_size is from 16,384 to 2^24 - 1 (RFC 9113 §6.5.2)")
        self.max_frame_size = max_frame_size
        self._want_preface = preface
        self._buffer = bytearray()
        self._continuing: int | None = None  # a header block's stream, until a frame with END_HEADERS (§6.10)
        self.failed: H2FrameError | None = None

    @latching
    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame now complete, in order."""
        self._buffer += data
        if self._want_preface:
            got = bytes(self._buffer[: len(PREFACE)])
            if not PREFACE.startswith(got):
                raise H2FrameError("the connection does not start with HTTP/2's preface (RFC 9113 §3.4)",
                                   ErrorCode.PROTOCOL_ERROR)
            if len(got) < len(PREFACE):
                return []
            del self._buffer[: len(PREFACE)]
            self._want_preface = False
        frames = []
        while len(self._buffer) >= HEADER_SIZE:
            high, low, kind, flags, stream = struct.unpack_from("!BHBBI", self._buffer)
            length, stream = (high << 16) | low, stream & 0x7FFF_FFFF  # the reserved bit is ignored (§4.1)
            if length > self.max_frame_size:
                raise H2FrameError(f"a {length:,}-byte frame is over this side's maximum of "
                                   f"{self.max_frame_size:,} (RFC 9113 §4.2)", ErrorCode.FRAME_SIZE_ERROR)
            if len(self._buffer) < HEADER_SIZE + length:
                break
            payload = bytes(self._buffer[HEADER_SIZE: HEADER_SIZE + length])
            del self._buffer[: HEADER_SIZE + length]
            frame = Frame(kind, flags, stream, payload)
            _check(frame)
            self._sequence(frame)
            frames.append(frame)
        return frames

    def _sequence(self, frame: Frame) -> None:
        """§6.10: once a header block starts without END_HEADERS, only its CONTINUATION frames may follow."""
        if self._continuing is not None:
            if frame.type != FrameType.CONTINUATION or frame.stream != self._continuing:
                raise H2FrameError(f"a header block on stream {self._continuing} was interrupted by "
                                   f"{frame.name} on stream {frame.stream} (§6.10)", ErrorCode.PROTOCOL_ERROR)
        elif frame.type == FrameType.CONTINUATION:
            raise H2FrameError("a CONTINUATION with no header block to continue (§6.10)", ErrorCode.PROTOCOL_ERROR)
        if frame.type in (FrameType.HEADERS, FrameType.PUSH_PROMISE, FrameType.CONTINUATION):
            self._continuing = None if frame.flags & Flag.END_HEADERS else frame.stream


def _check(frame: Frame) -> None:
    """§6's rules a single frame can break on its own."""
    if frame.type not in FrameType.__members__.values():
        return  # unknown types are ignored (§4.1, §5.5)
    kind = FrameType(frame.type)
    if kind in _CONNECTION_ONLY and frame.stream != 0:
        raise H2FrameError(f"{kind.name} belongs to the connection, stream 0, not stream {frame.stream} (§6)",
                           ErrorCode.PROTOCOL_ERROR)
    if kind in _STREAM_ONLY and frame.stream == 0:
        raise H2FrameError(f"{kind.name} must name a stream, not stream 0 (§6)", ErrorCode.PROTOCOL_ERROR)
    want = _FIXED.get(kind)
    if want is not None and len(frame.payload) != want:
        raise H2FrameError(f"a {kind.name} payload is {want} bytes, not {len(frame.payload)} (§6)",
                           ErrorCode.FRAME_SIZE_ERROR)
    if kind == FrameType.SETTINGS:
        if frame.flags & Flag.ACK and frame.payload:
            raise H2FrameError("a SETTINGS acknowledgement carries nothing (§6.5)", ErrorCode.FRAME_SIZE_ERROR)
        if len(frame.payload) % 6:
            raise H2FrameError("a SETTINGS payload is six bytes a setting (§6.5)", ErrorCode.FRAME_SIZE_ERROR)
    if frame.flags & Flag.PADDED and kind in (FrameType.DATA, FrameType.HEADERS, FrameType.PUSH_PROMISE):
        if not frame.payload or frame.payload[0] >= len(frame.payload):
            raise H2FrameError("the padding is as long as the payload or longer (§6.1)", ErrorCode.PROTOCOL_ERROR)
    if kind == FrameType.SETTINGS:
        for name, value in frame.settings():
            if name == "ENABLE_PUSH" and value > 1:
                raise H2FrameError(f"SETTINGS_ENABLE_PUSH is 0 or 1, not {value} (§6.5.2)", ErrorCode.PROTOCOL_ERROR)
            if name == "INITIAL_WINDOW_SIZE" and value > 0x7FFF_FFFF:
                raise H2FrameError(f"SETTINGS_INITIAL_WINDOW_SIZE of {value:,} is over 2^31 - 1 (§6.5.2)",
                                   ErrorCode.FLOW_CONTROL_ERROR)
            if name == "MAX_FRAME_SIZE" and not DEFAULT_MAX_FRAME_SIZE <= value <= LARGEST_FRAME_SIZE:
                raise H2FrameError(f"SETTINGS_MAX_FRAME_SIZE of {value:,} is outside 16,384 to 2^24 - 1 (§6.5.2)",
                                   ErrorCode.PROTOCOL_ERROR)
    if kind == FrameType.PRIORITY and struct.unpack_from("!I", frame.payload)[0] & 0x7FFF_FFFF == frame.stream:
        raise H2FrameError(f"stream {frame.stream} cannot depend on itself (§5.3.1)", ErrorCode.PROTOCOL_ERROR)
    if kind == FrameType.GOAWAY and len(frame.payload) < 8:
        raise H2FrameError("a GOAWAY payload is at least 8 bytes (§6.8)", ErrorCode.FRAME_SIZE_ERROR)
    if kind == FrameType.WINDOW_UPDATE and struct.unpack("!I", frame.payload)[0] & 0x7FFF_FFFF == 0:
        raise H2FrameError("a WINDOW_UPDATE of 0 (§6.9)", ErrorCode.PROTOCOL_ERROR)
