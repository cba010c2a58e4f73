"""Notebook 02, section 4: what each costs: header bytes per message, and latency on loopback, TCP against UDP.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ...apps.echo import tcp_echo
from ...course.exercises import Prediction
from ...runtime.server import serve
from ...runtime.sockets import LOOPBACK
from ...traffic.wire import WireBytes
from .conversation import Conversation
from .datagrams import Refusal

__all__ = ["TransportCosts", "transport_costs", "per_message", "predict_one_message_bytes", "LatencyRun", "udp_echo", "latency", "overhead_knob", "latency_knob"]


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
        capture: the TCP conversation's capture they were read from (live, or a replayed recording).
    """

    tcp_setup: int
    tcp_teardown: int
    tcp_data_headers: int
    tcp_ack: int
    udp_headers: int
    tcp_setup_packets: int = 3
    tcp_teardown_packets: int = 3
    capture: Any = field(default=None, repr=False, compare=False)


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
        setup, teardown, data.wire - data.payload, ack.wire, udp.wire - udp.payload, 3, len(rows) - first_fin,
        conversation.capture,
    )


def predict_one_message_bytes(payload: int = 100) -> Prediction:
    """Predict the bytes on the wire for one message sent over a TCP connection of its own."""
    def explain(given: float, measured: float) -> str:
        return ("Count the packets first: 3 for the handshake (the two SYNs carry 8 bytes more of options), the "
                f"data segment ({payload} bytes + 66 of headers), its ACK (66), and 3 to close (FIN, FIN, ACK; 66 "
                "each). Most of the bytes are the connection's, not the message's: UDP sends the same message in "
                f"one datagram of {payload + 42} bytes.")

    return Prediction(
        f"A client opens a TCP connection, sends one {payload}-byte message, gets it acknowledged, and closes. How "
        "many bytes cross the wire in all, both directions, every header included?",
        measure=lambda costs: per_message(costs, payload, 1)[0].total, unit="bytes", tolerance=0.05, explain=explain,
        says="the packet sizes in your capture add up to", from_capture=True,
        spread="the packets' sizes are fixed; only the count of packets is to be found",
        mistakes=[(lambda g, m: abs(g - (payload + 66)) < 10, "That is the data segment alone: its ACK, the "
                   "handshake and the close are on the wire too."),
                  (lambda g, m: abs(g - (payload + 132)) < 10, "A connection used once also pays its handshake "
                   "(3 packets) and its close (3 more)."),
                  (lambda g, m: abs(g - (payload + 42)) < 10, "That is UDP's datagram; TCP's headers are bigger and "
                   "a connection adds packets of its own."),
                  (lambda g, m: abs(g - (m + 66)) < 10, "That counts a close of four segments (FIN, ACK, FIN, ACK, "
                   "RFC 9293 §3.6); your capture's close took three: the server's FIN carried its ACK.")],
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


def overhead_knob(costs: TransportCosts, payload: int = 100, messages: int = 1):
    """Section 6's knob: average bytes on the wire per message, for a payload and messages per connection."""
    from ...course.plots.wire import overhead_bar

    return overhead_bar(per_message(costs, payload, messages),
                              title=f"Average bytes on the wire per {payload}-byte message")


def latency_knob(lat: "LatencyRun", rtt_ms: float = 0.0):
    """Section 7's knob: the measured latencies with ``rtt_ms`` of modelled network round trip added."""
    from ...course.plots.wire import latency_distributions

    return latency_distributions(lat.with_rtt(rtt_ms), title=f"With {rtt_ms:g} ms of network round trip added")
