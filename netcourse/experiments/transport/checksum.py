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


def exercise_checksum(conversation: Conversation) -> Exercise:
    """How many different values the checksum fields of a loopback capture hold: a question about what the
    offloaded (pseudo-header-only) sum depends on, answered from the learner's own capture."""
    from scapy.layers.inet import TCP

    segments = [pkt for pkt in conversation.capture.packets if TCP in pkt]
    fields = {pkt[TCP].chksum for pkt in segments}
    count = len(fields)
    return Exercise(
        f"Your capture holds {len(segments)} TCP segments, and on loopback each checksum field holds only the "
        "pseudo-header's sum (offload). How many *different* values appear in those checksum fields? Reason "
        "from what the pseudo-header contains first, then count.",
        answer=count,
        kind="capture", source=conversation,
        hint="Which of the pseudo-header's four fields (source address, destination address, protocol, "
        "length) can differ between two segments of this one loopback connection?",
        recipe="only the TCP length can; count the different segment lengths (TCP header and data) in "
        "your capture, or the different checksum fields themselves.",
        mistakes=[
            (len(segments), "that is one value per segment, as full checksums would give. The field holds "
             "only the pseudo-header's sum: segments of the same length share one value."),
            (1, "the TCP length is part of the pseudo-header, so segments of different lengths differ."),
            (lambda v: v == 2 and count != 2, "direction does not change the sum here: on loopback both "
             "addresses are 127.0.0.1, and the one's-complement sum does not care about their order anyway."),
        ],
        explanation=f"{count}: on loopback the addresses and the protocol are the same for every segment, so "
        "the offloaded field depends on the TCP length alone; your capture has that many different lengths "
        "(the SYNs carry more options than the rest; the data segments differ by their payload). Equal "
        "fields for different data are why a loopback capture's checksums say nothing about corruption.",
    )
