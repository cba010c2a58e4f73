"""Notebook 02, section 2: the Internet checksum (RFC 1071) of a captured segment, by hand, with its pseudo-header.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...course.exercises import Exercise
from ...protocols.checksum import (
    PROTO_TCP,
    PROTO_UDP,
    partial_checksum,
    transport_checksum,
)
from .conversation import Conversation

__all__ = ["ChecksumCheck", "segment_bytes", "check_checksum", "exercise_checksum"]


@dataclass(frozen=True)
class ChecksumCheck:
    """A captured segment's checksum field against what we compute by hand.

    Attributes:
        proto: "TCP" or "UDP".
        field: the value in the header.
        full: the complete checksum RFC 9293 / RFC 768 define, computed here.
        partial: the pseudo-header sum alone, what an offloading sender leaves in the field.
    """

    proto: str
    field: int
    full: int
    partial: int

    @property
    def complete(self) -> bool:
        """True when the field holds the full checksum (it would verify on a real wire)."""
        return self.field == self.full

    @property
    def offloaded(self) -> bool:
        """True when the field holds only the pseudo-header sum: checksum offload at work."""
        return self.field == self.partial and not self.complete

    def __repr__(self) -> str:
        verdict = "full checksum" if self.complete else ("offloaded: pseudo-header sum only" if self.offloaded else "WRONG")
        return (
            f"{self.proto} checksum field 0x{self.field:04x}; computed full 0x{self.full:04x}, "
            f"pseudo-header only 0x{self.partial:04x} → {verdict}"
        )


def segment_bytes(pkt) -> tuple[str, str, int, bytes]:
    """(source IP, destination IP, protocol number, TCP segment or UDP datagram bytes) of a packet."""
    from scapy.layers.inet import IP

    raw = bytes(pkt[IP])
    ip = IP(raw)  # re-dissected, so lengths are filled in even for a packet built by hand
    ihl = ip.ihl * 4
    return ip.src, ip.dst, ip.proto, raw[ihl : ip.len]


def check_checksum(pkt, *, flip: int | None = None) -> ChecksumCheck:
    """Recompute a captured TCP or UDP checksum by hand (RFC 1071 with the pseudo-header).

    Args:
        pkt: a captured IPv4 packet carrying TCP or UDP.
        flip: if given, invert the byte at this offset of the segment first (the field is kept), to
            see that one changed byte changes the checksum.
    """
    src, dst, proto, segment = segment_bytes(pkt)
    if proto not in (PROTO_TCP, PROTO_UDP):
        raise ValueError("not a TCP or UDP packet")
    offset = 16 if proto == PROTO_TCP else 6
    field = int.from_bytes(segment[offset : offset + 2], "big")
    if flip is not None:
        segment = segment[:flip] + bytes([segment[flip] ^ 0xFF]) + segment[flip + 1 :]
    return ChecksumCheck(
        "TCP" if proto == PROTO_TCP else "UDP",
        field,
        transport_checksum(src, dst, proto, segment),
        partial_checksum(src, dst, proto, len(segment)),
    )


def exercise_checksum(conversation: Conversation, message: int = 2) -> Exercise:
    """The full TCP checksum of one captured segment, computed by the learner."""
    row = conversation.data_rows()[message]
    pkt = conversation.capture.packets[row.no - 1]
    full = check_checksum(pkt).full
    text = conversation.messages[message].decode()
    return Exercise(
        f"Compute, by hand, the full TCP checksum of the segment in your capture that carried '{text}' "
        "(the value a real network card would have written into the field). Answer with a number, e.g. "
        "0x1234.",
        answer=full,
        hint="transport.segment_bytes(pkt) gives (source, destination, protocol, segment). Set the segment's "
        "checksum field (bytes 16 and 17) to zero, put pseudo_header(source, destination, 6, len(segment)) "
        "in front, and take internet_checksum of the whole.",
        explanation=f"0x{full:04x}: the one's-complement sum of the pseudo-header, the TCP header with its "
        "checksum field zeroed, and the data, inverted (RFC 9293 §3.1, RFC 1071).",
        kind="capture",
    )
