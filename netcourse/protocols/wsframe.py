"""A WebSocket frame codec written to be read (RFC 6455), sans-I/O: bytes in, frames out.

No socket, asyncio, aiohttp or scapy here. ``encode`` turns a ``Frame`` into bytes;
``FrameDecoder(role).feed(data)`` turns bytes, in any chunking, back into frames and checks them
strictly; ``accept_key`` computes the handshake's ``Sec-WebSocket-Accept``.

The frame layout (RFC 6455 §5.2), one row per 32 bits::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               |Masking-key, if MASK set to 1  |
    +-------------------------------+-------------------------------+
    | Masking-key (continued)       |          Payload Data         |
    +-------------------------------- - - - - - - - - - - - - - - - +

Errors: every ``FrameError`` carries ``close_code``, the code (RFC 6455 §7.4.1) a peer should
close the connection with.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
import struct
from dataclasses import dataclass

from ..errors import FrameError

__all__ = [
    "Role",
    "Opcode",
    "CloseCode",
    "Frame",
    "encode",
    "FrameDecoder",
    "accept_key",
    "apply_mask",
    "close_payload",
    "parse_close",
    "FIELDS",
    "header_length",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class Role(str, enum.Enum):
    """Which end of the connection this is: it decides masking (RFC 6455 §5.1: a client masks every frame it
    sends, a server never does, and each refuses the other kind)."""

    CLIENT = "client"
    SERVER = "server"

    @classmethod
    def of(cls, role: "Role | str") -> "Role":
        """``role`` as a Role; anything but "client" or "server" (exactly) is a ValueError, never a half-client."""
        try:
            return cls(role)
        except ValueError:
            raise ValueError(f'role must be "client" or "server", not {role!r}') from None


class Opcode(enum.IntEnum):
    """Frame opcodes, RFC 6455 §5.2 and §11.8."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Control frames (close, ping, pong) have the opcode's high bit set (§5.5)."""
        return self.value >= 0x8


class CloseCode(enum.IntEnum):
    """Close status codes, RFC 6455 §7.4.1."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RECEIVED = 1005  # never sent on the wire
    ABNORMAL_CLOSURE = 1006  # never sent on the wire
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # IANA WebSocket Close Code Number Registry (not in RFC 6455 itself)
    TLS_HANDSHAKE = 1015  # never sent on the wire


# Codes a close frame may carry on the wire (§7.4.1, §7.4.2; 1012-1014 were registered later at IANA).
_SENDABLE = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}

# The frame header's fields: (name, bits). The same table draws images/websocket_frame.png.
FIELDS = (
    ("FIN", 1),
    ("RSV1", 1),
    ("RSV2", 1),
    ("RSV3", 1),
    ("opcode", 4),
    ("MASK", 1),
    ("payload len", 7),
)


@dataclass(frozen=True)
class Frame:
    """One WebSocket frame.

    Attributes:
        opcode: what the payload is (``Opcode``).
        payload: the application data, unmasked, in bytes.
        fin: True on the last frame of a message.
        rsv1, rsv2, rsv3: reserved bits; must be 0 unless an extension says otherwise.
    """

    opcode: Opcode
    payload: bytes = b""
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "opcode", Opcode(self.opcode))
        if self.opcode.is_control and (len(self.payload) > 125 or not self.fin):
            raise FrameError("a control frame has at most 125 bytes and is never fragmented (§5.5)")

    def __repr__(self) -> str:
        flags = "".join(n for n, on in (("FIN", self.fin), ("RSV1", self.rsv1), ("RSV2", self.rsv2), ("RSV3", self.rsv3)) if on)
        data = self.payload if len(self.payload) <= 32 else self.payload[:29] + b"..."
        return f"Frame({self.opcode.name}, {data!r}, {len(self.payload)} bytes, {flags or 'no FIN'})"


# XOR with one constant byte, as 256 translation tables: _XOR[k][b] == b ^ k.
_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (§5.3). Masking and unmasking are the same.

    Byte i is XORed with key[i % 4], so every fourth byte, starting at i, meets the same key byte:
    four constant XORs, each done in C by ``bytes.translate`` over an extended slice.
    """
    if len(key) != 4:
        raise ValueError("a masking key is exactly 4 bytes")
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR[key[i]])
    return bytes(out)


def header_length(payload_length: int, masked: bool) -> int:
    """Bytes of frame header for a payload of this length: 2, 4 or 10, plus 4 if masked."""
    extra = 0 if payload_length <= 125 else (2 if payload_length <= 0xFFFF else 8)
    return 2 + extra + (4 if masked else 0)


def encode(frame: Frame, *, mask: bool = False, mask_key: bytes | None = None) -> bytes:
    """Encode a frame (§5.2).

    Args:
        frame: the frame.
        mask: mask the payload, as every client-to-server frame must be (§5.3), with a fresh key from
            ``secrets`` (unpredictable, as §10.3 requires).
        mask_key: mask with this 4-byte key instead (for reproducible examples); implies ``mask``.
    """
    if mask_key is None and mask:
        mask_key = secrets.token_bytes(4)
    first = (frame.fin << 7) | (frame.rsv1 << 6) | (frame.rsv2 << 5) | (frame.rsv3 << 4) | frame.opcode
    n = len(frame.payload)
    mask_bit = 0x80 if mask_key is not None else 0
    if n <= 125:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n <= 0xFFFF:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask_key is None:
        return header + frame.payload
    return header + mask_key + apply_mask(frame.payload, mask_key)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: a 2-byte code and a UTF-8 reason (§5.5.1)."""
    data = struct.pack("!H", code) + reason.encode("utf-8")
    if len(data) > 125:
        raise FrameError("a close reason must fit in 123 bytes")
    return data


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame's payload; (1005, "") when it has none (§7.1.5)."""
    if not payload:
        return CloseCode.NO_STATUS_RECEIVED, ""
    if len(payload) == 1:
        raise FrameError("a close payload of 1 byte cannot hold a status code")
    (code,) = struct.unpack("!H", payload[:2])
    if not (code in _SENDABLE or 3000 <= code <= 4999):
        raise FrameError(f"close code {code} may not be sent on the wire")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("the close reason is not valid UTF-8", CloseCode.INVALID_PAYLOAD) from exc
    return code, reason


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (§4.2.2): base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


class FrameDecoder:
    """Turns bytes into frames, strictly, whatever the chunking.

    Args:
        role: "server" (decodes frames from a client: they must be masked) or "client" (decodes frames
            from a server: they must not be).
        max_size: largest message payload accepted, in bytes (larger: close code 1009).
        max_fragments: most frames one message may come in (more: 1009; empty fragments cost memory).

    ``feed(data)`` returns the frames completed by ``data`` (payloads unmasked). After a
    ``FrameError`` the decoder refuses further input: the connection must be closed.
    """

    def __init__(self, role: "Role | str", *, max_size: int = 1 << 20, max_fragments: int = 1024) -> None:
        self.role = Role.of(role)
        self.max_size = max_size
        self.max_fragments = max_fragments
        self._fragments = 0  # frames of the message being continued
        self._buffer = bytearray()
        self._pos = 0  # where the next frame starts in _buffer (consumed bytes are dropped in bulk)
        self._fragmented: Opcode | None = None  # opcode of the message being continued
        self._message_size = 0
        self._text_parts: list[bytes] = []
        self._failed: FrameError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame they complete. Raises ``FrameError`` on bad input."""
        frames, error = self.decode(data)
        if error is not None:
            raise error
        return frames

    def decode(self, data: bytes) -> tuple[list[Frame], FrameError | None]:
        """Add bytes; return (the frames they complete, the error that stopped decoding or None).

        Frames that arrived whole before a bad one are returned with the error, so a peer can act on
        every valid frame before it closes the connection with ``error.close_code``.
        """
        if self._failed is not None:
            return [], FrameError("the decoder already failed: close the connection", self._failed.close_code)
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data
        frames: list[Frame] = []
        try:
            while True:
                frame = self._next()
                if frame is None:
                    return frames, None
                frames.append(frame)
        except FrameError as exc:
            self._failed = exc
            return frames, exc

    def _next(self) -> Frame | None:
        buf, at = self._buffer, self._pos
        if len(buf) - at < 2:
            return None
        b0, b1 = buf[at], buf[at + 1]
        fin, rsv = bool(b0 & 0x80), (bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10))
        masked, length = bool(b1 & 0x80), b1 & 0x7F
        if any(rsv):
            raise FrameError("reserved bits set without a negotiated extension (§5.2)")
        try:
            opcode = Opcode(b0 & 0x0F)
        except ValueError:
            raise FrameError(f"unknown opcode 0x{b0 & 0x0F:x} (§5.2)") from None
        if self.role is Role.SERVER and not masked:
            raise FrameError("a client's frames must be masked (§5.1)")
        if self.role is Role.CLIENT and masked:
            raise FrameError("a server's frames must not be masked (§5.1)")
        if opcode.is_control:
            if not fin:
                raise FrameError("control frames must not be fragmented (§5.5)")
            if length > 125:
                raise FrameError("control frames carry at most 125 bytes (§5.5)")
        offset = 2
        if length == 126:
            if len(buf) - at < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, at + 2)
            offset = 4
            if length <= 125:
                raise FrameError("payload length not in its shortest form (§5.2)")
        elif length == 127:
            if len(buf) - at < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, at + 2)
            offset = 10
            if length >> 63:
                raise FrameError("the 64-bit payload length must have its top bit clear (§5.2)")
            if length <= 0xFFFF:
                raise FrameError("payload length not in its shortest form (§5.2)")
        if not opcode.is_control:
            self._check_sequence(opcode, fin, length)
        key = b""
        if masked:
            if len(buf) - at < offset + 4:
                return None
            key = bytes(buf[at + offset : at + offset + 4])
            offset += 4
        if len(buf) - at < offset + length:
            return None
        payload = bytes(buf[at + offset : at + offset + length])
        self._pos = at + offset + length
        if masked:
            payload = apply_mask(payload, key)
        frame = Frame(opcode, payload, fin)
        self._after(frame)
        return frame

    def _check_sequence(self, opcode: Opcode, fin: bool, length: int) -> None:
        """Fragmentation rules (§5.4) and the size limit, checked as soon as the header is known."""
        if opcode == Opcode.CONTINUATION and self._fragmented is None:
            raise FrameError("a continuation frame with no message to continue (§5.4)")
        if opcode != Opcode.CONTINUATION and self._fragmented is not None:
            raise FrameError("a new message started before the fragmented one finished (§5.4)")
        if opcode == Opcode.CONTINUATION:
            self._fragments += 1
            if self._fragments > self.max_fragments:  # empty fragments cost memory too
                raise FrameError(f"a message in more than {self.max_fragments} fragments", CloseCode.MESSAGE_TOO_BIG)
        if self._message_size + length > self.max_size:
            raise FrameError(f"message larger than {self.max_size} bytes", CloseCode.MESSAGE_TOO_BIG)

    def _after(self, frame: Frame) -> None:
        """Track fragmentation and check UTF-8 of text messages and close reasons (§8.1)."""
        if frame.opcode == Opcode.CLOSE:
            parse_close(frame.payload)
            return
        if frame.opcode.is_control:
            return
        kind = self._fragmented if frame.opcode == Opcode.CONTINUATION else frame.opcode
        self._message_size += len(frame.payload)
        if kind == Opcode.TEXT:
            self._text_parts.append(frame.payload)
        if frame.fin:
            if kind == Opcode.TEXT:
                try:
                    b"".join(self._text_parts).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FrameError("a text message is not valid UTF-8 (§8.1)", CloseCode.INVALID_PAYLOAD) from exc
            self._fragmented, self._message_size, self._text_parts, self._fragments = None, 0, [], 0
        else:
            self._fragmented = kind
