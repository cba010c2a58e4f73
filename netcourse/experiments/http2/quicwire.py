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
from ...protocols.quicpacket import FRAME_TYPES, QUIC_V1, QuicPacket, frame_names, parse_datagram
from ...runtime.waiting import run_async
from ...traffic.sniffer import capture
from ..registry import scenario

__all__ = ["Datagram", "FirstFlight", "first_flight", "open_packets"]


@dataclass
class Datagram:
    """One UDP datagram of the connection: who sent it, its size, its packets, and (decrypted) its frames."""

    direction: str  # "C→S" or "S→C"
    size: int
    packets: list[QuicPacket]
    frames: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    raw: bytes = field(default=b"", repr=False)

    def describe(self) -> str:
        kinds = " + ".join(p.kind for p in self.packets)
        seen = f"{self.direction} {self.size:>5} B  {kinds}"
        if self.numbers:
            seen += f"  (packet number {', '.join(map(str, self.numbers))}: {', '.join(self.frames)})"
        return seen


@dataclass
class FirstFlight:
    """The connection's datagrams, decrypted with the key log by the course (aioquic's packet protection, RFC
    9001 §5), and what ``tshark`` read from the same packets with the same key log, where it is installed."""

    datagrams: list[Datagram]
    decrypted: bool  # every packet opened with the key log's secrets
    tshark: list[list[str]] | None = None  # tshark's frames per datagram; None: tshark is not installed

    @property
    def tshark_agrees(self) -> bool | None:
        """Whether tshark read the same frames, datagram by datagram (None without tshark)."""
        if self.tshark is None:
            return None
        return len(self.tshark) == len(self.datagrams) and all(
            t == [f.split()[0] for f in d.frames] for t, d in zip(self.tshark, self.datagrams))

    def numbering(self) -> str:
        """How the server numbered the packets of its first datagram, one per packet number space."""
        answer = next((d for d in self.datagrams if d.direction == "S→C"), None)
        if answer is None or len(answer.numbers) < 2:
            return "the server's first datagram carries one packet: nothing to compare"
        kinds = ", ".join(p.kind for p in answer.packets)
        shared = answer.numbers == list(range(answer.numbers[0], answer.numbers[0] + len(answer.numbers)))
        how = ("one counter for all its packet number spaces, where RFC 9000 §12.3 starts each space at 0; a receiver "
               "only needs the numbers to grow within each space, so this works" if shared and answer.numbers[-1] > 0
               else "each space from its own counter")
        return f"the server numbered its {kinds} packets {', '.join(map(str, answer.numbers))}: {how}"

    def padding(self) -> str:
        """Where the client's first datagram gets its 1,200 bytes from."""
        first = next(d for d in self.datagrams if d.direction == "C→S")
        packets = sum(p.size for p in first.packets)
        inside = "PADDING" in first.frames
        return (f"the client's first datagram: {first.size:,} bytes, of which its packet{'s take' if len(first.packets) > 1 else ' takes'} "
                f"{packets:,}" + ("" if packets == first.size else f" and {first.size - packets:,} zero bytes follow "
                                       "outside any packet") + ("; PADDING frames inside the packet" if inside else ""))

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
            lines.append("(some packets could not be opened with the key log: their frames are not shown)")
        if self.tshark_agrees is not None:
            lines.append("tshark, reading the same packets with the same key log: "
                         + ("the same frames in every datagram" if self.tshark_agrees else "DIFFERENT frames"))
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
        secrets = cap.annotations.get("quic_keylog", "") if not cap.live else keylog.read_text(encoding="ascii")
        keylog.write_text(secrets, encoding="ascii")
        port = cap.server_ports[0]
        datagrams = _read(cap.packets, port)
        decrypted = open_packets(datagrams, secrets)
        read_by_tshark = _tshark(cap.packets, keylog, port, Path(folder))
    return FirstFlight(datagrams, decrypted, read_by_tshark)


def _read(packets: list, port: int) -> list[Datagram]:
    from scapy.layers.inet import UDP

    out = []
    for packet in packets:
        if UDP not in packet:
            continue
        payload = bytes(packet[UDP].payload)
        out.append(Datagram("C→S" if packet[UDP].dport == port else "S→C", len(payload), parse_datagram(payload),
                            raw=payload))
    return out


def _secrets(keylog: str) -> dict[str, bytes]:
    """The key log's secrets by label (NSS key log format: label, client random, secret; one connection here)."""
    out = {}
    for line in keylog.splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            out[parts[0]] = bytes.fromhex(parts[2])
    return out


def open_packets(datagrams: list[Datagram], keylog: str) -> bool:
    """Remove each packet's header protection and decrypt it (RFC 9001 §5), fill each datagram's packet numbers
    and frames, and say whether every packet opened.

    Initial packets use keys derived from the client's first destination connection ID (§5.2), which anyone
    can compute; Handshake and 1-RTT packets use the TLS secrets in the key log, a different one each way. The
    work is aioquic's (its ``CryptoContext``); which secret opens which packet, and the frames, are read here."""
    from aioquic.quic.crypto import CryptoContext, CryptoPair
    from aioquic.tls import CipherSuite

    secrets = _secrets(keylog)
    first_dcid = next((d.packets[0].dcid for d in datagrams if d.direction == "C→S" and d.packets), b"")
    initial = CryptoPair()
    initial.setup_initial(first_dcid, is_client=True, version=QUIC_V1)
    contexts: dict[tuple[str, str], object] = {("Initial", "C→S"): initial.send, ("Initial", "S→C"): initial.recv}
    labels = {("Handshake", "C→S"): "CLIENT_HANDSHAKE_TRAFFIC_SECRET", ("Handshake", "S→C"): "SERVER_HANDSHAKE_TRAFFIC_SECRET",
              ("1-RTT", "C→S"): "CLIENT_TRAFFIC_SECRET_0", ("1-RTT", "S→C"): "SERVER_TRAFFIC_SECRET_0"}
    for key, label in labels.items():
        secret = secrets.get(label)
        if secret is None:
            continue
        suite = CipherSuite.AES_256_GCM_SHA384 if len(secret) == 48 else CipherSuite.AES_128_GCM_SHA256
        context = CryptoContext()
        context.setup(cipher_suite=suite, secret=secret, version=QUIC_V1)
        contexts[key] = context
    largest: dict[tuple[str, str], int] = {}
    every = True
    for datagram in datagrams:
        for packet in datagram.packets:
            key = (packet.kind, datagram.direction)
            context = contexts.get(key)
            if context is None or not packet.number_at:
                every = False
                continue
            raw = datagram.raw[packet.start: packet.start + packet.size]
            try:
                _, payload, number, _ = context.decrypt_packet(raw, packet.number_at, largest.get(key, -1) + 1)
            except Exception:  # a wrong key or a damaged packet: aioquic raises its own CryptoError
                every = False
                continue
            largest[key] = max(largest.get(key, -1), number)
            datagram.numbers.append(number)
            datagram.frames.extend(frame_names(payload))
    return every


def _tshark(packets: list, keylog: Path, port: int, folder: Path) -> list[list[str]] | None:
    """The frames tshark reads in each datagram with the same key log, or None if it is not installed."""
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    from scapy.layers.inet import UDP
    from scapy.utils import wrpcap

    pcap = folder / "quic.pcap"
    wrpcap(str(pcap), [p for p in packets if UDP in p])
    out = subprocess.run([tshark, "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-d", f"udp.port=={port},quic",
                          "-T", "fields", "-e", "quic.frame_type", "-E", "separator=|"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return None
    return [[FRAME_TYPES.get(int(f), f.strip()) for f in line.split(",") if f.strip().isdigit()]
            for line in out.stdout.splitlines()]
