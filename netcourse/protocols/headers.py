"""Header layouts of IPv4, TCP and UDP as field tables, and a parser that reads headers with them.

The same tables draw the header diagrams in images/ and find the checksum fields for the checksum code,
so the picture, the parser and the arithmetic cannot disagree. No socket or scapy here: bytes in,
numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Field", "HeaderLayout", "IPV4", "TCP", "UDP", "LAYOUTS"]


@dataclass(frozen=True)
class Field:
    """One header field: its name and width in bits."""

    name: str
    bits: int


@dataclass(frozen=True)
class HeaderLayout:
    """A header drawn as rows of 32 bits, as the RFCs draw them.

    Attributes:
        name: "IPv4", "TCP" or "UDP".
        source: where the layout is defined, e.g. "RFC 9293 §3.1".
        fields: the fixed part's fields, in order.
        note: what follows the fixed part (options), for the diagram.
    """

    name: str
    source: str
    fields: tuple[Field, ...]
    note: str = ""

    @property
    def bits(self) -> int:
        """Width of the fixed part, in bits."""
        return sum(f.bits for f in self.fields)

    @property
    def size(self) -> int:
        """Size of the fixed part, in bytes."""
        return self.bits // 8

    def bit_offset(self, name: str) -> int:
        """Offset of a field from the header's start, in bits."""
        offset = 0
        for f in self.fields:
            if f.name == name:
                return offset
            offset += f.bits
        raise KeyError(f"{self.name} has no field {name!r}")

    def byte_offset(self, name: str) -> int:
        """Offset of a byte-aligned field, in bytes."""
        bit = self.bit_offset(name)
        if bit % 8:
            raise ValueError(f"{name} does not start on a byte boundary")
        return bit // 8

    def parse(self, data: bytes) -> dict[str, int]:
        """Read every fixed field from the start of ``data`` (network byte order)."""
        if len(data) < self.size:
            raise ValueError(f"a {self.name} header needs {self.size} bytes, got {len(data)}")
        value = int.from_bytes(data[: self.size], "big")
        out = {}
        shift = self.bits
        for f in self.fields:
            shift -= f.bits
            out[f.name] = (value >> shift) & ((1 << f.bits) - 1)
        return out


IPV4 = HeaderLayout(
    "IPv4",
    "RFC 791 §3.1 (DSCP/ECN: RFC 2474, RFC 3168)",
    (
        Field("Version", 4),
        Field("IHL", 4),
        Field("DSCP", 6),
        Field("ECN", 2),
        Field("Total Length", 16),
        Field("Identification", 16),
        Field("Flags", 3),
        Field("Fragment Offset", 13),
        Field("Time to Live", 8),
        Field("Protocol", 8),
        Field("Header Checksum", 16),
        Field("Source Address", 32),
        Field("Destination Address", 32),
    ),
    note="Options (if IHL > 5)",
)

TCP = HeaderLayout(
    "TCP",
    "RFC 9293 §3.1",
    (
        Field("Source Port", 16),
        Field("Destination Port", 16),
        Field("Sequence Number", 32),
        Field("Acknowledgment Number", 32),
        Field("Data Offset", 4),
        Field("Reserved", 4),
        Field("CWR", 1),
        Field("ECE", 1),
        Field("URG", 1),
        Field("ACK", 1),
        Field("PSH", 1),
        Field("RST", 1),
        Field("SYN", 1),
        Field("FIN", 1),
        Field("Window", 16),
        Field("Checksum", 16),
        Field("Urgent Pointer", 16),
    ),
    note="Options (if Data Offset > 5), then data",
)

UDP = HeaderLayout(
    "UDP",
    "RFC 768",
    (
        Field("Source Port", 16),
        Field("Destination Port", 16),
        Field("Length", 16),
        Field("Checksum", 16),
    ),
    note="data",
)

LAYOUTS = {"ipv4": IPV4, "tcp": TCP, "udp": UDP}
