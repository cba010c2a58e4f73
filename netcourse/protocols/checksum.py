"""The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header, computed by hand.

TCP (RFC 9293 §3.1) and UDP (RFC 768) checksum their header and data *plus* a pseudo-header made of
the IP addresses, the protocol number and the segment length, so a segment delivered to the wrong
address fails its check. IPv6 uses a longer pseudo-header (RFC 8200 §8.1), and there UDP's checksum
is mandatory; in IPv4 a UDP checksum of zero means "none computed" (RFC 768).

No socket or scapy here: bytes in, numbers out.
"""

from __future__ import annotations

import ipaddress

from .headers import TCP, UDP

__all__ = [
    "ones_complement_sum",
    "internet_checksum",
    "pseudo_header",
    "transport_checksum",
    "partial_checksum",
    "PROTO_TCP",
    "PROTO_UDP",
]

PROTO_TCP = 6
PROTO_UDP = 17
_CHECKSUM_OFFSET = {PROTO_TCP: TCP.byte_offset("Checksum"), PROTO_UDP: UDP.byte_offset("Checksum")}


def ones_complement_sum(data: bytes) -> int:
    """Sum 16-bit big-endian words with end-around carry (RFC 1071 §1); odd data is padded with 0."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """The one's complement of the one's complement sum (RFC 1071 §1)."""
    return ~ones_complement_sum(data) & 0xFFFF


def pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    """The pseudo-header for IPv4 (RFC 9293 §3.1: 12 bytes) or IPv6 (RFC 8200 §8.1: 40 bytes).

    Args:
        src, dst: IP addresses as text.
        proto: 6 for TCP, 17 for UDP.
        length: bytes of the TCP segment or UDP datagram, header included.
    """
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version != b.version:
        raise ValueError("source and destination must both be IPv4 or both IPv6")
    if a.version == 4:
        return a.packed + b.packed + bytes([0, proto]) + length.to_bytes(2, "big")
    return a.packed + b.packed + length.to_bytes(4, "big") + bytes(3) + bytes([proto])


def _zero_checksum(segment: bytes, proto: int) -> bytes:
    off = _CHECKSUM_OFFSET[proto]
    return segment[:off] + b"\0\0" + segment[off + 2 :]


def transport_checksum(src: str, dst: str, proto: int, segment: bytes) -> int:
    """The checksum a TCP segment or UDP datagram should carry (its own checksum field is ignored).

    A UDP result of 0 is sent as 0xFFFF (RFC 768), since 0 means "no checksum".
    """
    total = internet_checksum(pseudo_header(src, dst, proto, len(segment)) + _zero_checksum(segment, proto))
    if proto == PROTO_UDP and total == 0:
        return 0xFFFF
    return total


def partial_checksum(src: str, dst: str, proto: int, length: int) -> int:
    """What a checksum-offloading sender leaves in the field: the pseudo-header's sum, not complemented.

    The kernel hands the rest of the sum to the network card (or, on loopback, to nobody: bytes
    copied within one machine's memory cannot be corrupted on a wire).
    """
    return ones_complement_sum(pseudo_header(src, dst, proto, length))
