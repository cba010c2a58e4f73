"""QUIC packet headers as they cross the wire (RFC 9000 §17): what anyone on the path can read of a QUIC
connection. Sans-I/O, standard library only.

A UDP datagram carries one or more QUIC packets (several long-header packets may be coalesced, §12.2):

- **long header** (first bit 1), during the handshake: a type (Initial, 0-RTT, Handshake, Retry), the
  version, both connection IDs, and for Initial packets a token; then a Length, so that another packet may
  follow in the same datagram;
- **short header** (first bit 0), once the handshake is done (1-RTT): only the destination connection ID,
  whose length the receiver already knows, then the rest to the datagram's end.

Everything after the header is encrypted, and so is the packet number itself (header protection, RFC 9001
§5.4): the path sees the packet's kind, its connection IDs and its size, not its number or its frames. The
Initial packets are encrypted too, but with keys derived from the client's first destination connection ID
(RFC 9001 §5.2), which anyone can compute: their protection is against tampering, not against reading.

``parse_datagram(data, short_dcid_length=8)`` returns the packets of one datagram; ``frame_names(payload)``
walks a decrypted packet's frames (§19) and names them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import QuicPacketError

__all__ = ["QuicPacket", "parse_datagram", "frame_names", "varint", "LONG_TYPES", "QUIC_V1", "FRAME_TYPES"]

QUIC_V1 = 0x0000_0001  # RFC 9000
LONG_TYPES = {0: "Initial", 1: "0-RTT", 2: "Handshake", 3: "Retry"}  # §17.2, version 1


@dataclass(frozen=True)
class QuicPacket:
    """One packet's visible header.

    Attributes:
        kind: "Initial", "0-RTT", "Handshake", "Retry", "1-RTT" (short header) or "Version Negotiation".
        version: the version field (long headers), else None.
        dcid, scid: destination and source connection IDs (a short header has no source ID).
        token: an Initial's token length (0 on a first Initial).
        size: bytes of this packet in the datagram, header included.
        start: where the packet starts in its datagram.
        number_at: where its (protected) packet number starts, counted from ``start``: what a receiver needs
            to remove the header protection (RFC 9001 §5.4.2) and decrypt; 0 where there is none (Retry,
            Version Negotiation).
    """

    kind: str
    version: int | None
    dcid: bytes
    scid: bytes
    token: int
    size: int
    start: int = 0
    number_at: int = 0

    def describe(self) -> str:
        ids = f"DCID {self.dcid.hex()}" + (f" SCID {self.scid.hex()}" if self.kind != "1-RTT" else "")
        return f"{self.kind} ({self.size} B): {ids}"


def varint(data: bytes, offset: int) -> tuple[int, int]:
    """A variable-length integer (§16): its value and the offset after it. The first two bits give its length."""
    if offset >= len(data):
        raise QuicPacketError("a variable-length integer runs past the datagram (RFC 9000 §16)")
    length = 1 << (data[offset] >> 6)
    if offset + length > len(data):
        raise QuicPacketError("a variable-length integer runs past the datagram (RFC 9000 §16)")
    value = data[offset] & 0x3F
    for byte in data[offset + 1: offset + length]:
        value = (value << 8) | byte
    return value, offset + length


def _cid(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset >= len(data):
        raise QuicPacketError("a connection ID length runs past the datagram (RFC 9000 §17.2)")
    length = data[offset]
    if length > 20:
        raise QuicPacketError(f"a connection ID of {length} bytes: version 1 allows 20 at most (RFC 9000 §17.2)")
    end = offset + 1 + length
    if end > len(data):
        raise QuicPacketError("a connection ID runs past the datagram (RFC 9000 §17.2)")
    return data[offset + 1: end], end


def parse_datagram(data: bytes, short_dcid_length: int = 8) -> list[QuicPacket]:
    """The packets coalesced in one UDP datagram (§12.2), each with its visible header.

    ``short_dcid_length`` is the length of the connection IDs this endpoint issued (a short header does not
    say; aioquic uses 8). Bytes that are not QUIC raise ``QuicPacketError``."""
    packets: list[QuicPacket] = []
    offset = 0
    while offset < len(data):
        start, first = offset, data[offset]
        if not first & 0x80:  # short header: the rest of the datagram is this packet (§17.3)
            if not first & 0x40:
                raise QuicPacketError("the fixed bit is 0: not a QUIC version 1 packet (RFC 9000 §17.3)")
            dcid = data[offset + 1: offset + 1 + short_dcid_length]
            packets.append(QuicPacket("1-RTT", None, dcid, b"", 0, len(data) - start, start,
                                      1 + short_dcid_length))
            break
        if offset + 5 > len(data):
            raise QuicPacketError("a long header shorter than its version field (RFC 9000 §17.2)")
        version = int.from_bytes(data[offset + 1: offset + 5], "big")
        dcid, offset = _cid(data, offset + 5)
        scid, offset = _cid(data, offset)
        if version == 0:  # version negotiation: the rest lists versions (§17.2.1)
            packets.append(QuicPacket("Version Negotiation", 0, dcid, scid, 0, len(data) - start, start))
            break
        kind = LONG_TYPES[(first & 0x30) >> 4] if version == QUIC_V1 else f"type {(first & 0x30) >> 4}"
        if kind == "Retry":  # a token and an integrity tag to the end (§17.2.5)
            packets.append(QuicPacket(kind, version, dcid, scid, len(data) - offset - 16, len(data) - start, start))
            break
        token = 0
        if kind == "Initial":
            token, offset = varint(data, offset)
            offset += token
        length, offset = varint(data, offset)
        if offset + length > len(data):
            raise QuicPacketError("a packet's Length runs past the datagram (RFC 9000 §17.2)")
        number_at = offset - start
        offset += length
        packets.append(QuicPacket(kind, version, dcid, scid, token, offset - start, start, number_at))
        if offset < len(data) and not data[offset] & 0x80 and all(b == 0 for b in data[offset:]):
            break  # padding after the last packet (an Initial datagram is padded to 1,200 bytes, §14.1)
    return packets


FRAME_TYPES = {  # RFC 9000 §19 (and §12.4's table); 0x30-0x31 from RFC 9221
    0x00: "PADDING", 0x01: "PING", 0x02: "ACK", 0x03: "ACK", 0x04: "RESET_STREAM", 0x05: "STOP_SENDING",
    0x06: "CRYPTO", 0x07: "NEW_TOKEN", **{t: "STREAM" for t in range(0x08, 0x10)}, 0x10: "MAX_DATA",
    0x11: "MAX_STREAM_DATA", 0x12: "MAX_STREAMS", 0x13: "MAX_STREAMS", 0x14: "DATA_BLOCKED",
    0x15: "STREAM_DATA_BLOCKED", 0x16: "STREAMS_BLOCKED", 0x17: "STREAMS_BLOCKED", 0x18: "NEW_CONNECTION_ID",
    0x19: "RETIRE_CONNECTION_ID", 0x1A: "PATH_CHALLENGE", 0x1B: "PATH_RESPONSE", 0x1C: "CONNECTION_CLOSE",
    0x1D: "CONNECTION_CLOSE", 0x1E: "HANDSHAKE_DONE", 0x30: "DATAGRAM", 0x31: "DATAGRAM",
}


def _skip(data: bytes, offset: int, count: int) -> int:
    if offset + count > len(data):
        raise QuicPacketError("a frame runs past its packet's payload (RFC 9000 §12.4)")
    return offset + count


def _frame_end(kind: int, data: bytes, offset: int) -> int:
    """Where the frame whose type ``kind`` was read just before ``offset`` ends (§19's layouts)."""
    n = lambda at: varint(data, at)  # noqa: E731 - one value and the offset after it
    if kind in (0x00, 0x01, 0x1E):  # PADDING, PING, HANDSHAKE_DONE: the type alone
        return offset
    if kind in (0x02, 0x03):  # ACK: largest, delay, range count, first range, ranges, [3 ECN counts]
        _, offset = n(offset)
        _, offset = n(offset)
        ranges, offset = n(offset)
        _, offset = n(offset)
        for _ in range(2 * ranges + (3 if kind == 0x03 else 0)):
            _, offset = n(offset)
        return offset
    if kind == 0x06 or kind == 0x07:  # CRYPTO: offset, length, data; NEW_TOKEN: length, token
        if kind == 0x06:
            _, offset = n(offset)
        length, offset = n(offset)
        return _skip(data, offset, length)
    if 0x08 <= kind <= 0x0F:  # STREAM: id, [offset if 0x04], [length if 0x02, else to the end], data
        _, offset = n(offset)
        if kind & 0x04:
            _, offset = n(offset)
        if not kind & 0x02:
            return len(data)
        length, offset = n(offset)
        return _skip(data, offset, length)
    if kind in (0x04, 0x05, 0x11, 0x15):  # RESET_STREAM has three values, the others two
        for _ in range(3 if kind == 0x04 else 2):
            _, offset = n(offset)
        return offset
    if kind in (0x10, 0x12, 0x13, 0x14, 0x16, 0x17, 0x19):  # one value each
        return n(offset)[1]
    if kind == 0x18:  # NEW_CONNECTION_ID: sequence, retire prior to, length (1 byte), ID, 16-byte reset token
        _, offset = n(offset)
        _, offset = n(offset)
        offset = _skip(data, offset, 1)
        return _skip(data, offset, data[offset - 1] + 16)
    if kind in (0x1A, 0x1B):  # PATH_CHALLENGE, PATH_RESPONSE: 8 bytes of data
        return _skip(data, offset, 8)
    if kind in (0x1C, 0x1D):  # CONNECTION_CLOSE: code, [frame type if 0x1c], reason length, reason
        for _ in range(2 if kind == 0x1C else 1):
            _, offset = n(offset)
        length, offset = n(offset)
        return _skip(data, offset, length)
    if kind in (0x30, 0x31):  # DATAGRAM: [length if 0x31], data
        if kind == 0x30:
            return len(data)
        length, offset = n(offset)
        return _skip(data, offset, length)
    raise QuicPacketError(f"frame type 0x{kind:02x} is not one RFC 9000 defines (§12.4: a FRAME_ENCODING_ERROR)")


def frame_names(payload: bytes) -> list[str]:
    """The frames of one decrypted packet payload, by name, in order (§12.4, §19); a STREAM frame with its stream
    ID ("STREAM 3"). A run of PADDING bytes is one PADDING. Bytes that break a frame's layout raise
    ``QuicPacketError``."""
    names: list[str] = []
    offset = 0
    while offset < len(payload):
        kind, offset = varint(payload, offset)
        name = FRAME_TYPES.get(kind)
        if name == "STREAM":
            name = f"STREAM {varint(payload, offset)[0]}"
        offset = _frame_end(kind, payload, offset)
        if name == "PADDING" and names and names[-1] == "PADDING":
            continue
        names.append(name or f"0x{kind:02x}")
    return names
