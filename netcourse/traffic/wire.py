"""Bytes on the wire, split by layer: what an exchange really costs.

Two sources give the same split:

- ``from_capture``: sums each captured packet's link, IP and TCP/UDP headers, and splits the TCP
  payload into application headers and body by parsing the HTTP messages in it.
- ``from_tcp_info``: no capture needed. The kernel's TCP_INFO counts the segments; every segment on
  Linux loopback has a 14-byte Ethernet header, a 20-byte IPv4 header and a 20-byte TCP header plus
  options (12 bytes of timestamps when negotiated, RFC 7323 §3; the SYN and SYN-ACK carry 8 more:
  MSS, SACK-permitted, window scale and padding).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..protocols.httpwire import parse_messages
from ..runtime.tcpinfo import TcpInfo
from .packets import C2S, S2C, PacketRow

__all__ = ["WireBytes", "from_capture", "from_tcp_info", "tcp_payload_streams", "LAYERS"]

LAYERS = ("link", "ip", "transport", "app_headers", "payload")
LAYER_LABELS = {
    "link": "link (Ethernet)",
    "ip": "IP",
    "transport": "TCP/UDP",
    "app_headers": "HTTP headers",
    "payload": "payload (body)",
}

ETHERNET_HEADER = 14  # bytes; loopback frames on Linux carry a zeroed Ethernet header
IPV4_HEADER = 20  # bytes, no options (RFC 791 §3.1)
TCP_HEADER = 20  # bytes, no options (RFC 9293 §3.1)
TCP_TIMESTAMPS = 12  # bytes: NOP, NOP, TSopt (RFC 7323 §3.2)
SYN_EXTRA_OPTIONS_TS = 8  # a SYN's options are MSS 4 + SACK-perm 2 + TS 10 + NOP 1 + wscale 3 = 20, not 12
SYN_OPTIONS_NO_TS = 12  # SYN without timestamps: MSS 4, NOP NOP SACK-perm 4, NOP wscale 4


@dataclass(frozen=True)
class WireBytes:
    """Bytes one exchange put on the wire, per layer.

    Attributes:
        label: what the exchange was (for plots).
        packets: number of packets (frames).
        link, ip, transport: header bytes of each layer, summed over all packets.
        app_headers: application-protocol overhead (HTTP heads, chunk framing), in bytes.
        payload: the bytes the application wanted to deliver (HTTP bodies), in bytes.
        source: "capture" or "TCP_INFO".
    """

    label: str
    packets: int
    link: int
    ip: int
    transport: int
    app_headers: int
    payload: int
    source: str

    @property
    def total(self) -> int:
        """All bytes on the wire."""
        return self.link + self.ip + self.transport + self.app_headers + self.payload

    @property
    def overhead(self) -> int:
        """Everything that is not payload, in bytes."""
        return self.total - self.payload

    @property
    def payload_share(self) -> float:
        """Payload as a fraction of all bytes on the wire (0..1)."""
        return self.payload / self.total if self.total else 0.0

    def layers(self) -> dict[str, int]:
        """Layer name -> bytes, in stacking order."""
        return {name: getattr(self, name) for name in LAYERS}

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in self.layers().items())
        return (
            f"WireBytes({self.label!r}: {self.total} bytes in {self.packets} packets; {parts}; "
            f"payload share {self.payload_share:.1%}; from {self.source})"
        )


def tcp_payload_streams(packets: Iterable, rows: Iterable[PacketRow]) -> dict[str, bytes]:
    """Reassemble the TCP payload sent each way (all connections, in capture order).

    Retransmitted segments (a sequence number already seen on that connection) are skipped.
    """
    from scapy.layers.inet import TCP

    streams = {C2S: bytearray(), S2C: bytearray()}
    seen: set[tuple[str, str, int]] = set()
    for pkt, row in zip(packets, rows):
        if row.proto != "TCP" or not row.payload:
            continue
        key = (row.src, row.dst, row.seq or 0)
        if key in seen:
            continue
        seen.add(key)
        streams[row.direction] += bytes(pkt[TCP].payload)[: row.payload]
    return {k: bytes(v) for k, v in streams.items()}


def _http_split(request_stream: bytes, response_stream: bytes) -> tuple[int, int]:
    """(application header bytes, body bytes) of the HTTP messages in both directions."""
    headers = body = 0
    for stream, responses in ((request_stream, False), (response_stream, True)):
        for msg in parse_messages(stream, responses=responses):
            headers += msg.head_bytes + msg.framing_bytes
            body += len(msg.body)
    return headers, body


def from_capture(capture, *, label: str = "exchange", http: bool = True) -> WireBytes:
    """Split a finished capture's bytes by layer.

    Args:
        capture: a finished ``Capture``.
        label: a name for the plot.
        http: parse the TCP payload as HTTP/1.1 to separate headers from bodies; if False, all
            payload counts as payload.
    """
    rows = capture.table()
    link = sum(r.link for r in rows)
    ip = sum(r.ip for r in rows)
    transport = sum(r.transport for r in rows)
    payload_total = sum(r.payload for r in rows)
    app_headers = 0
    if http:
        streams = tcp_payload_streams(capture.packets, rows)
        app_headers, _ = _http_split(streams[C2S], streams[S2C])
    return WireBytes(label, len(rows), link, ip, transport, app_headers, payload_total - app_headers, "capture")


def from_tcp_info(
    info: TcpInfo, *, sent: bytes, received: bytes, label: str = "exchange", http: bool = True
) -> WireBytes:
    """Estimate the split from the client's TCP_INFO and the bytes it sent and received.

    Exact for IPv4 on Linux loopback, where every segment has the header sizes in this module.

    Args:
        info: TCP_INFO of the client socket, read after the connection closed.
        sent: every byte the client wrote.
        received: every byte the client read.
    """
    packets = info.segs_out + info.segs_in
    transport = TCP_HEADER * packets
    if info.timestamps:
        transport += TCP_TIMESTAMPS * packets + 2 * SYN_EXTRA_OPTIONS_TS
    else:
        transport += 2 * SYN_OPTIONS_NO_TS
    app_headers, _ = _http_split(sent, received) if http else (0, 0)
    payload = len(sent) + len(received) - app_headers
    return WireBytes(label, packets, ETHERNET_HEADER * packets, IPV4_HEADER * packets, transport, app_headers, payload, "TCP_INFO")
