"""QUIC's first flight, captured: what the path sees of an HTTP/3 request, and what the key log opens.

One request over a fresh QUIC connection on loopback, captured live (root or CAP_NET_RAW). Each UDP datagram
is read with ``protocols.quicpacket``: its packets' kinds (Initial, Handshake, 1-RTT), connection IDs and
sizes, all a router could see. The client's first Initial datagram is padded to at least 1,200 bytes (RFC 9000
§14.1), so that a server's answer to a forged address cannot be much bigger than what the forger sent (the
3× anti-amplification limit, §8.1). Then, with the TLS secrets the client wrote to its key log (RFC 9001
uses TLS 1.3's), ``tshark`` where it is installed decrypts each packet: its number and its frames (CRYPTO
carries the TLS handshake, ACK, STREAM carries HTTP/3, HANDSHAKE_DONE ends the handshake).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ...apps.http3 import H3Server
from ...apps.tls import Pki
from ...clients.http3 import fetch
from ...protocols.quicpacket import QuicPacket, parse_datagram
from ...runtime.waiting import run_async
from ...traffic.sniffer import capture
from ..registry import scenario

__all__ = ["Datagram", "FirstFlight", "first_flight"]


@dataclass
class Datagram:
    """One UDP datagram of the connection: who sent it, its size, its packets, and (decrypted) its frames."""

    direction: str  # "C→S" or "S→C"
    size: int
    packets: list[QuicPacket]
    frames: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)

    def describe(self) -> str:
        kinds = " + ".join(p.kind for p in self.packets)
        seen = f"{self.direction} {self.size:>5} B  {kinds}"
        if self.numbers:
            seen += f"  (packet number {', '.join(map(str, self.numbers))}: {', '.join(self.frames)})"
        return seen


@dataclass
class FirstFlight:
    datagrams: list[Datagram]
    decrypted: bool  # tshark was here, and read the frames with the key log

    def __repr__(self) -> str:
        """The handshake's datagrams one by one; the rest (their order and ACKs follow timing) in one line."""
        rest = self.datagrams[3:]
        kinds = sorted({p.kind for d in rest for p in d.packets})
        frames = sorted({f for d in rest for f in d.frames})
        lines = [d.describe() for d in self.datagrams[:3]]
        if rest:
            lines.append(f"then {len(rest)} datagrams, each carrying {' or '.join(kinds)} packets only"
                         + (f"; their frames: {', '.join(frames)}" if frames else ""))
        if not self.decrypted:
            lines.append("(tshark is not installed: the packet numbers and frames, which need the key log, are not shown)")
        return "\n".join(lines)


@scenario("quic_first_flight")
def first_flight() -> FirstFlight:
    """One HTTP/3 request on a fresh connection, captured and read; see the module's docstring. Without capture
    rights, the course's recording of the same exchange (and the key log it wrote) is read instead."""
    with Pki() as pki, tempfile.TemporaryDirectory(prefix="netcourse-quic-") as folder:
        keylog = Path(folder) / "keys.txt"
        with H3Server(pki) as server, capture(server.port, scenario="quic_first_flight") as cap:
            with open(keylog, "w", encoding="ascii") as keys:
                run_async(fetch("127.0.0.1", server.port, ["/r/first?size=1000"], cadata=pki.ca.cert_pem.bytes(),
                                keylog=keys))
            if cap.live:
                cap.annotations["quic_keylog"] = keylog.read_text(encoding="ascii")
        if not cap.live:
            keylog.write_text(cap.annotations.get("quic_keylog", ""), encoding="ascii")
        port = cap.server_ports[0]
        datagrams = _read(cap.packets, port)
        decrypted = _decrypt(cap.packets, keylog, port, datagrams, Path(folder))
    return FirstFlight(datagrams, decrypted)


def _read(packets: list, port: int) -> list[Datagram]:
    from scapy.layers.inet import UDP

    out = []
    for packet in packets:
        if UDP not in packet:
            continue
        payload = bytes(packet[UDP].payload)
        out.append(Datagram("C→S" if packet[UDP].dport == port else "S→C", len(payload), parse_datagram(payload)))
    return out


def _decrypt(packets: list, keylog: Path, port: int, datagrams: list[Datagram], folder: Path) -> bool:
    """Fill each datagram's packet numbers and frames from tshark, if it is installed; True if it was."""
    tshark = shutil.which("tshark")
    if tshark is None:
        return False
    from scapy.layers.inet import UDP
    from scapy.utils import wrpcap

    pcap = folder / "quic.pcap"
    wrpcap(str(pcap), [p for p in packets if UDP in p])
    out = subprocess.run([tshark, "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-d", f"udp.port=={port},quic",
                          "-T", "fields", "-e", "quic.packet_number", "-e", "quic.frame_type", "-E", "separator=|"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return False
    lines = out.stdout.splitlines()
    for datagram, line in zip(datagrams, lines):
        numbers, _, frames = line.partition("|")
        datagram.numbers = [int(n) for n in numbers.split(",") if n.strip().isdigit()]
        datagram.frames = [_FRAMES.get(f.strip(), f.strip()) for f in frames.split(",") if f.strip()]
    return True


_FRAMES = {  # RFC 9000 §19's frame types, as tshark prints their numbers
    "0": "PADDING", "1": "PING", "2": "ACK", "3": "ACK", "6": "CRYPTO", "7": "NEW_TOKEN",
    **{str(n): "STREAM" for n in range(8, 16)}, "24": "NEW_CONNECTION_ID", "25": "RETIRE_CONNECTION_ID",
    "28": "CONNECTION_CLOSE", "29": "CONNECTION_CLOSE", "30": "HANDSHAKE_DONE",
}
