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

``parse_datagram(data, short_dcid_length=8)`` returns the packets of one datagram.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import QuicPacketError

__all__ = ["QuicPacket", "parse_datagram", "varint", "LONG_TYPES", "QUIC_V1"]

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
    """

    kind: str
    version: int | None
    dcid: bytes
    scid: bytes
    token: int
    size: int

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
            packets.append(QuicPacket("1-RTT", None, dcid, b"", 0, len(data) - start))
            break
        if offset + 5 > len(data):
            raise QuicPacketError("a long header shorter than its version field (RFC 9000 §17.2)")
        version = int.from_bytes(data[offset + 1: offset + 5], "big")
        dcid, offset = _cid(data, offset + 5)
        scid, offset = _cid(data, offset)
        if version == 0:  # version negotiation: the rest lists versions (§17.2.1)
            packets.append(QuicPacket("Version Negotiation", 0, dcid, scid, 0, len(data) - start))
            break
        kind = LONG_TYPES[(first & 0x30) >> 4] if version == QUIC_V1 else f"type {(first & 0x30) >> 4}"
        if kind == "Retry":  # a token and an integrity tag to the end (§17.2.5)
            packets.append(QuicPacket(kind, version, dcid, scid, len(data) - offset - 16, len(data) - start))
            break
        token = 0
        if kind == "Initial":
            token, offset = varint(data, offset)
            offset += token
        length, offset = varint(data, offset)
        if offset + length > len(data):
            raise QuicPacketError("a packet's Length runs past the datagram (RFC 9000 §17.2)")
        offset += length
        packets.append(QuicPacket(kind, version, dcid, scid, token, offset - start))
        if offset < len(data) and not data[offset] & 0x80 and all(b == 0 for b in data[offset:]):
            break  # padding after the last packet (an Initial datagram is padded to 1,200 bytes, §14.1)
    return packets
