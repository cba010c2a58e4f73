"""Notebook 02: TCP and UDP on the wire — handshake, sequencing, checksums, datagrams, cost, latency."""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from ..traffic.sniffer import Capture, capture
from ..protocols.checksum import PROTO_TCP, PROTO_UDP, partial_checksum, transport_checksum
from ..errors import NetcourseTimeout
from ..course.exercises import Exercise
from ..traffic.packets import C2S, PacketRow
from ..apps.echo import tcp_echo
from .registry import scenario
from ..runtime.server import serve
from ..runtime.waiting import wait_until
from ..runtime.sockets import LOOPBACK, connected_pairs
from ..traffic.wire import WireBytes

__all__ = [
    "loss_knob", "overhead_knob", "latency_knob",
    "Conversation",
    "tcp_conversation",
    "ChecksumCheck",
    "check_checksum",
    "message_boundaries",
    "Refusal",
    "refused",
    "LossRun",
    "lossy_relay",
    "TransportCosts",
    "transport_costs",
    "per_message",
    "LatencyRun",
    "latency",
]

MESSAGES = (b"one", b"two", b"three")


# -- a TCP conversation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """A client sends a few messages over one TCP connection, then closes it.

    Attributes:
        capture: the packets.
        messages: what the client sent, one write each.
        received: what the server read, all together.
    """

    capture: Capture
    messages: tuple[bytes, ...]
    received: bytes

    def syn(self):
        """The client's SYN packet (a scapy packet)."""
        from scapy.layers.inet import TCP

        for pkt in self.capture.packets:
            if TCP in pkt and pkt[TCP].flags == "S":
                return pkt
        raise LookupError("no SYN in the capture")

    def syn_options(self) -> list[tuple[str, object]]:
        """The SYN's TCP options as (name, value): MSS, SAckOK, Timestamp, WScale, NOP."""
        from scapy.layers.inet import TCP

        return [(name, value) for name, value in self.syn()[TCP].options]

    def absolute(self) -> list[tuple[str, str, int, int]]:
        """(direction, flags, absolute seq, absolute ack) of every TCP packet."""
        from scapy.layers.inet import TCP

        rows = self.capture.table()
        return [
            (row.direction, row.flags, pkt[TCP].seq, pkt[TCP].ack)
            for row, pkt in zip(rows, self.capture.packets)
            if row.proto == "TCP"
        ]

    def data_rows(self) -> list[PacketRow]:
        """The packets that carried the client's messages."""
        return [r for r in self.capture.table() if r.direction == C2S and r.payload]


@scenario("tcp_conversation")
def tcp_conversation(messages: tuple[bytes, ...] = MESSAGES, gap: float = 0.005, timeout: float = 5.0) -> Conversation:
    """Open a connection, send ``messages`` one write each (``gap`` seconds apart), close it."""
    received: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())  # everything, until the client's FIN

    with serve(server, name="sink") as srv:
        with capture(srv.port, scenario="tcp_conversation") as cap:
            with socket.create_connection((srv.host, srv.port), timeout=timeout) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for m in messages:
                    sock.sendall(m)
                    time.sleep(gap)
                sock.shutdown(socket.SHUT_WR)
                if sock.recv(1) != b"":
                    raise NetcourseTimeout("the server sent data it should not have")
            if not wait_until(lambda: bool(received), timeout):
                raise NetcourseTimeout("the server never saw the end of the stream")
    return Conversation(cap, tuple(messages), received[0])


# -- checksums -------------------------------------------------------------------------------------


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


# -- datagrams keep their boundaries, a byte stream does not ---------------------------------------


def message_boundaries(messages: tuple[bytes, ...] = MESSAGES, timeout: float = 5.0) -> dict[str, list[bytes]]:
    """Send the same three writes over UDP and over TCP, then read: what does each read return?"""
    out: dict[str, list[bytes]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind((LOOPBACK, 0))
        rx.settimeout(timeout)
        for m in messages:
            tx.sendto(m, rx.getsockname())
        out["UDP"] = [rx.recv(65535) for _ in messages]
    with connected_pairs(1, timeout=timeout) as (_, [(client, conn)]):
        for m in messages:
            client.sendall(m)
        total = sum(len(m) for m in messages)
        if not wait_until(lambda: _readable_bytes(conn) >= total, timeout):
            raise NetcourseTimeout(f"The {total} bytes sent over TCP did not all arrive within {timeout} s.")
        out["TCP"] = [conn.recv(65535)]
    return out


def _readable_bytes(sock: socket.socket) -> int:
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


# -- nobody listening: fire-and-forget vs refusal ---------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """What a sender learns when nobody listens on the port.

    Attributes:
        capture: the packets (UDP datagrams, ICMP errors, TCP SYN and RST).
        port: the port nobody listened on.
        udp_unconnected: the error an unconnected UDP socket got (None: nothing at all).
        udp_connected: the error a connected UDP socket got on its next receive.
        tcp: the error connect() got.
    """

    capture: Capture
    port: int
    udp_unconnected: str | None
    udp_connected: str | None
    tcp: str | None


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _error_name(fn) -> str | None:
    try:
        fn()
    except OSError as exc:
        return type(exc).__name__
    return None


@scenario("refused")
def refused(timeout: float = 1.0) -> Refusal:
    """Send a UDP datagram, then connect with TCP, to a port where nothing listens."""
    port = _free_port(socket.SOCK_DGRAM)
    with capture(port, scenario="refused") as cap:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(0.2)
            # An unconnected socket is never told about the ICMP error that comes back.
            udp_unconnected = _error_name(lambda: u.sendto(b"anyone?", (LOOPBACK, port)))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(timeout)
            c.connect((LOOPBACK, port))
            c.send(b"anyone?")
            udp_connected = _error_name(lambda: c.recv(100))
        with socket.socket() as t:
            t.settimeout(timeout)
            tcp = _error_name(lambda: t.connect((LOOPBACK, port)))
    return Refusal(cap, port, udp_unconnected, udp_connected, tcp)


# -- loss ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossRun:
    """Numbered datagrams sent through a relay that drops some on purpose.

    Attributes:
        sent: how many datagrams the application sent.
        received: the numbers that arrived, in arrival order.
        loss: the relay's drop probability (0..1); seed: its random seed.
    """

    sent: int
    received: list[int]
    loss: float
    seed: int

    @property
    def missing(self) -> list[int]:
        """Numbers that never arrived (the application was not told)."""
        got = set(self.received)
        return [i for i in range(self.sent) if i not in got]


def lossy_relay(count: int = 50, loss: float = 0.2, seed: int = 7, timeout: float = 2.0) -> LossRun:
    """Send ``count`` numbered datagrams to a relay that forwards each with probability 1 - ``loss``.

    Everything is real UDP on loopback: sender → relay socket → receiver socket. The relay's random
    generator is seeded, so the same seed drops the same datagrams.
    """
    if not 0.0 <= loss <= 1.0:
        raise ValueError("loss must be between 0 and 1")
    rng = random.Random(seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as relay, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        relay.bind((LOOPBACK, 0))
        receiver.bind((LOOPBACK, 0))
        relay.settimeout(timeout)
        receiver.setblocking(False)
        received = []
        for i in range(count):
            sender.sendto(i.to_bytes(4, "big"), relay.getsockname())
            datagram, _ = relay.recvfrom(100)
            if rng.random() >= loss:
                relay.sendto(datagram, receiver.getsockname())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                received.append(int.from_bytes(receiver.recv(100), "big"))
            except BlockingIOError:
                if len(received) >= count or _quiet(receiver):
                    break
    return LossRun(count, received, loss, seed)


def _quiet(sock: socket.socket, wait: float = 0.05) -> bool:
    import select

    return not select.select([sock], [], [], wait)[0]


# -- header overhead -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransportCosts:
    """Bytes on the wire, measured from captures (Linux loopback: 14-byte link header).

    Attributes:
        tcp_setup: bytes of the three handshake packets.
        tcp_teardown: bytes of the FINs and their ACKs.
        tcp_data_headers: header bytes of one data segment (link + IP + TCP with options).
        tcp_ack: bytes of one pure ACK.
        udp_headers: header bytes of one datagram (link + IP + UDP).
        tcp_setup_packets, tcp_teardown_packets: how many packets the handshake and teardown took.
    """

    tcp_setup: int
    tcp_teardown: int
    tcp_data_headers: int
    tcp_ack: int
    udp_headers: int
    tcp_setup_packets: int = 3
    tcp_teardown_packets: int = 3


def transport_costs(conversation: Conversation, refusal: Refusal) -> TransportCosts:
    """Read the per-packet costs off a TCP conversation and the UDP datagrams of the refusal demo."""
    rows = conversation.capture.table()
    setup = sum(r.wire for r in rows[:3])
    first_fin = next(i for i, r in enumerate(rows) if "F" in r.flags)
    teardown = sum(r.wire for r in rows[first_fin:])
    data = next(r for r in rows if r.payload)
    ack = next(r for r in rows[3:first_fin] if not r.payload)
    udp = next(r for r in refusal.capture.table() if r.proto == "UDP")
    return TransportCosts(
        setup, teardown, data.wire - data.payload, ack.wire, udp.wire - udp.payload, 3, len(rows) - first_fin
    )


def per_message(costs: TransportCosts, payload: int, messages: int) -> list[WireBytes]:
    """Average bytes on the wire per message, TCP vs UDP.

    TCP: the handshake and teardown shared over ``messages`` messages, plus per message one data
    segment and one ACK. UDP: one datagram per message, nothing else.

    Args:
        costs: measured costs.
        payload: bytes of application data per message.
        messages: messages sent over one TCP connection.
    """
    if messages < 1 or payload < 0:
        raise ValueError("need at least one message and a non-negative payload")
    tcp_packets = (costs.tcp_setup_packets + costs.tcp_teardown_packets) / messages + 2  # + data + ACK
    tcp_total_headers = (costs.tcp_setup + costs.tcp_teardown) / messages + costs.tcp_data_headers + costs.tcp_ack
    link, ip = 14, 20
    tcp = WireBytes(
        f"TCP ({messages} msg/connection)",
        round(tcp_packets, 2),
        round(link * tcp_packets, 1),
        round(ip * tcp_packets, 1),
        round(tcp_total_headers - (link + ip) * tcp_packets, 1),
        0,
        payload,
        "capture",
    )
    udp = WireBytes("UDP", 1, link, ip, costs.udp_headers - link - ip, 0, payload, "capture")
    return [tcp, udp]


# -- latency ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyRun:
    """Round-trip times of an 8-byte echo, in seconds, per method.

    Attributes:
        samples: method -> list of seconds.
        round_trips: method -> network round trips each request costs (a new TCP connection pays one
            more for its handshake).
    """

    samples: dict[str, list[float]]
    round_trips: dict[str, int]

    def medians_ms(self) -> dict[str, float]:
        """Median latency per method, in milliseconds."""
        return {k: statistics.median(v) * 1000 for k, v in self.samples.items()}

    def with_rtt(self, rtt_ms: float) -> dict[str, list[float]]:
        """Samples with a modelled network round trip added, in milliseconds."""
        return {k: [s * 1000 + rtt_ms * self.round_trips[k] for s in v] for k, v in self.samples.items()}


@contextmanager
def udp_echo(timeout: float = 5.0) -> Iterator[tuple[str, int]]:
    """A UDP echo server on loopback in a thread that stops when the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            sock.sendto(data, peer)

    thread = threading.Thread(target=loop, name="netcourse-udp-echo", daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        stop.set()
        thread.join(timeout)
        sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the echo server closed the connection")
        buf += chunk
    return buf


def latency(n: int = 200, timeout: float = 5.0) -> LatencyRun:
    """Measure ``n`` echo round trips each: a new TCP connection per request, one reused TCP
    connection, and UDP datagrams. All live, no capture needed."""
    if not 1 <= n <= 10_000:
        raise ValueError("n must be between 1 and 10,000")
    msg = b"12345678"
    samples: dict[str, list[float]] = {"TCP, new connection": [], "TCP, reused connection": [], "UDP": []}
    with serve(tcp_echo, name="echo") as srv:
        addr = (srv.host, srv.port)
        for _ in range(n):
            t = time.perf_counter()
            with socket.create_connection(addr, timeout=timeout) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(msg)
                _recv_exact(s, len(msg))
                samples["TCP, new connection"].append(time.perf_counter() - t)
        with socket.create_connection(addr, timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(n):
                t = time.perf_counter()
                s.sendall(msg)
                _recv_exact(s, len(msg))
                samples["TCP, reused connection"].append(time.perf_counter() - t)
    with udp_echo() as echo_addr, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(timeout)
        for _ in range(n):
            t = time.perf_counter()
            u.sendto(msg, echo_addr)
            u.recvfrom(2048)
            samples["UDP"].append(time.perf_counter() - t)
    return LatencyRun(samples, {"TCP, new connection": 2, "TCP, reused connection": 1, "UDP": 1})


# -- exercises -------------------------------------------------------------------------------------


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


# -- the knobs' callbacks ------------------------------------------------------------------------------


def loss_knob(loss: float = 0.2, seed: int = 7) -> str:
    """Section 5's knob: 50 datagrams through the lossy relay; what arrived."""
    run = lossy_relay(count=50, loss=loss, seed=seed)
    return f"received {len(run.received)} of {run.sent}; missing {run.missing}"


def overhead_knob(costs: TransportCosts, payload: int = 100, messages: int = 1):
    """Section 6's knob: average bytes on the wire per message, for a payload and messages per connection."""
    from ..course import plots

    return plots.overhead_bar(per_message(costs, payload, messages),
                              title=f"Average bytes on the wire per {payload}-byte message")


def latency_knob(lat: "LatencyRun", rtt_ms: float = 0.0):
    """Section 7's knob: the measured latencies with ``rtt_ms`` of modelled network round trip added."""
    from ..course import plots

    return plots.latency_distributions(lat.with_rtt(rtt_ms), title=f"With {rtt_ms:g} ms of network round trip added")
