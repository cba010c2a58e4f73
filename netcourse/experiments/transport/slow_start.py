"""Notebook 02, across a distance: TCP's slow start, loss recovery and segment sizes on an emulated link.

On loopback a 1 MB transfer is over before TCP's congestion control has anything to do. Across a
100 ms, 10 Mbit/s link it is not: the sender may only have ``cwnd`` segments in flight (RFC 5681
§3.1), starts small (RFC 6928: ten segments), and doubles the window every round trip until the
path is full. Everything here is measured on the emulated link (``netcourse.network``): as root on
the real one (the kernel's own TCP, its ``TCP_INFO`` sampled as it goes); otherwise the transfer runs
through the relay and the packets are replayed from a recording of the real link.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field

from ...course.exercises import Exercise, Prediction
from ...network.forwarder import FULL_FRAME_BITS
from ...network.link import link
from ...runtime.tcpinfo import tcp_info
from ...traffic.sniffer import Capture
from ..registry import scenario

__all__ = ["predict_transfer_ms", "exercise_first_window", "first_flight", "windows", "Transfer", "sink", "bulk_transfer", "lossy_transfer", "clean_transfer", "loopback_segments", "overshoot"]

SNAPLEN = 128  # bytes kept of each frame in the recording: every header, no payload


@dataclass
class Transfer:
    """One bulk transfer from the near end to a sink at the far end.

    Attributes:
        size: bytes sent.
        rtt_ms, rate_mbit, loss: the link.
        mode: "tap" or "relay".
        seconds: connect() called to the sink's confirmation, the handshake included (relay mode: first to
            last packet of the recording, since the relay cannot show what TCP does on the real link).
        samples: (seconds since the start, cwnd in segments, segments unacknowledged, mss) from the
            sender's TCP_INFO every few milliseconds (tap mode only; empty in relay mode).
        retransmits: segments the sender retransmitted (TCP_INFO; None in relay mode).
        capture: the packets at the sender's end (tap: live; relay: the recording).
        queue_packets: full frames the link's rate limiter queues (one bandwidth-delay product by default).
    """

    size: int
    rtt_ms: float
    rate_mbit: float
    loss: float
    mode: str
    seconds: float
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    retransmits: int | None = None
    capture: Capture | None = None
    queue_packets: int = 0

    @property
    def lost_frames(self) -> int | None:
        """Frames the link lost on their way out (from the wire; for a replay, from its recording)."""
        return None if self.capture is None else self.capture.lost_count

    @property
    def sack_acks(self) -> int:
        """ACKs from the sink that carried SACK blocks (RFC 2018): "I hold these later bytes too"."""
        from scapy.layers.inet import TCP

        if self.capture is None or self.capture.packets is None:
            return 0
        return sum(
            1 for pkt, row in zip(self.capture.packets, self.capture.table())
            if row.direction != "C→S" and TCP in pkt and any(opt[0] == "SAck" for opt in pkt[TCP].options)
        )

    @property
    def goodput_mbit(self) -> float:
        """Payload bits per second over the whole transfer, Mbit/s."""
        return 8 * self.size / self.seconds / 1e6

    def __repr__(self) -> str:
        return (f"<Transfer {self.size:,} bytes across {self.rtt_ms:g} ms, {self.rate_mbit:g} Mbit/s"
                f"{f', loss {self.loss:g}' if self.loss else ''}: {self.seconds:.2f} s, "
                f"goodput {self.goodput_mbit:.2f} Mbit/s>")


async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A stream handler that reads until the client's FIN, then answers the byte count."""
    total = 0
    while data := await reader.read(1 << 16):
        total += len(data)
    writer.write(str(total).encode())
    await writer.drain()


def _send(host: str, port: int, size: int, sample_every: float, timeout: float):
    """Send ``size`` bytes and read the sink's count; sample TCP_INFO meanwhile."""
    samples: list[tuple[float, int, int, int]] = []
    done = threading.Event()
    start = time.perf_counter()  # before connect(): the handshake is part of the transfer's time
    sock = socket.create_connection((host, port), timeout=timeout)

    def sample() -> None:
        while not done.is_set():
            info = tcp_info(sock)
            if info is not None:
                samples.append((time.perf_counter() - start, info.snd_cwnd, info.unacked, info.snd_mss))
            done.wait(sample_every)

    sampler = threading.Thread(target=sample, name="netcourse-tcpinfo-sampler", daemon=True)
    sampler.start()
    try:
        sock.sendall(bytes(size))
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(32)
        seconds = time.perf_counter() - start
        info = tcp_info(sock)
    finally:
        done.set()
        sampler.join(2)
        sock.close()
    if answer != str(size).encode():
        raise ConnectionError(f"the sink counted {answer!r} bytes, not {size}")
    return seconds, samples, info


def _transfer(size: int, rtt_ms: float, rate_mbit: float, loss: float, name: str, timeout: float) -> Transfer:
    with link(rtt_ms=rtt_ms, rate_mbit=rate_mbit, loss=loss, seed=2) as net:
        srv = net.serve(sink, name="sink")
        net.announce()
        with net.capture(srv.port, scenario=name, snaplen=SNAPLEN) as cap:
            seconds, samples, info = net.near(lambda: _send(srv.host, srv.port, size, 0.005, timeout), timeout + 5)
        tap = net.mode == "tap"
        if not tap:  # the relay cannot lose or slow-start: the time that means something is the recording's
            rows = cap.table()
            seconds = rows[-1].t - rows[0].t if rows else seconds
        return Transfer(size, rtt_ms, rate_mbit, loss, net.mode, seconds, samples if tap else [],
                        info.retransmits_total if tap and info else None, cap, net.queue_packets)


@scenario("slow_start_link")
def bulk_transfer(size: int = 1_000_000, *, rtt_ms: float = 100.0, rate_mbit: float = 10.0, timeout: float = 30.0) -> Transfer:
    """Send ``size`` bytes across a ``rtt_ms``, ``rate_mbit`` link; capture it (scenario "slow_start_link")."""
    return _transfer(size, rtt_ms, rate_mbit, 0.0, "slow_start_link", timeout)


def overshoot(transfer: Transfer) -> str:
    """What slow start did against the link's queue, in numbers read from the capture (live or recorded).

    A replayed transfer has the queue its recording had: the link's default, one bandwidth-delay product.
    """
    from ...traffic.packets import in_flight, retransmissions

    rows = transfer.capture.table() if transfer.capture is not None else []
    pipe = transfer.rate_mbit * 1e6 / 8 * transfer.rtt_ms / 1000
    queue = transfer.queue_packets * FULL_FRAME_BITS / 8
    peak = max((b for _, b in in_flight(rows)), default=0)
    again = retransmissions(rows)
    twice = len(again) - len({r.seq for r in again})
    lines = [
        f"the path holds rate × RTT = {pipe / 1000:.0f} kB; the link's queue {transfer.queue_packets} frames "
        f"({queue / 1000:.0f} kB) more: {(pipe + queue) / 1000:.0f} kB in all",
        f"data segments sent in each base round trip ({transfer.rtt_ms:g} ms): {windows(transfer)}",
        f"most bytes in flight (from the capture): {peak / 1000:.0f} kB",
        f"frames the link dropped: {transfer.lost_frames}; segments the client resent: {len(again)}"
        + (f" ({twice} of them a second time)" if twice else ""),
        f"the whole transfer: {transfer.seconds:.2f} s, {transfer.goodput_mbit:.1f} Mbit/s of the link's "
        f"{transfer.rate_mbit:g}",
    ]
    return "\n".join(lines)


@scenario("lossy_link")
def lossy_transfer(size: int = 200_000, *, rtt_ms: float = 50.0, loss: float = 0.05, timeout: float = 30.0) -> Transfer:
    """Send ``size`` bytes across a link that loses ``loss`` of the frames each way (seeded)."""
    return _transfer(size, rtt_ms, 0.0, loss, "lossy_link", timeout)


@scenario("clean_link")
def clean_transfer(size: int = 200_000, *, rtt_ms: float = 50.0, timeout: float = 30.0) -> Transfer:
    """The lossy transfer's twin on the same link without loss: what the losses cost in time."""
    return _transfer(size, rtt_ms, 0.0, 0.0, "clean_link", timeout)


def loopback_segments(size: int = 1_000_000) -> tuple[int, int]:
    """(data segments, largest payload) to send ``size`` bytes over loopback (MTU 65,536), from TCP_INFO."""
    from ...runtime.sockets import connected_pairs

    with connected_pairs(1) as (_, [(client, server)]):
        reader = threading.Thread(target=lambda: _drain(server, size), daemon=True)
        reader.start()
        client.sendall(bytes(size))
        reader.join(10)
        info = tcp_info(client)
    if info is None:
        raise RuntimeError("TCP_INFO is not available here")
    return info.data_segs_out, info.snd_mss


def _drain(sock: socket.socket, size: int) -> None:
    got = 0
    while got < size:
        data = sock.recv(1 << 20)
        if not data:
            return
        got += len(data)


def predict_transfer_ms(size: int = 200_000, rtt_ms: float = 50.0) -> Prediction:
    """Predict how long ``size`` bytes take across an unlimited link of ``rtt_ms``: slow start's cost."""
    window, sent, rounds = 10 * 1448, 0, 0  # the textbook's doubling, from ten segments
    while sent < size:
        sent, window, rounds = sent + window, window * 2, rounds + 1
    model_ms = (rounds + 1) * rtt_ms

    def explain(given: float, measured: float) -> str:
        trips = round(measured / rtt_ms)
        return (f"No rate limit, so only round trips count: one for the handshake, then one per window of data, "
                f"the last of which also brings the sink's answer back: 1 + windows round trips. The transfer took "
                f"{measured:.0f} ms, about {trips} round trips: {trips - 1} windows. The textbook's doubling (10 "
                f"segments, 14.5 kB, then 29, 58, 116 kB …) would need {rounds} windows for {size // 1000} kB, "
                f"{model_ms:g} ms; Linux's windows grow a little slower (the next cell counts those in your capture), "
                "and each extra window costs a round trip. With no window at all it would be 2 round trips "
                "(everything sent in the first).")

    return Prediction(
        f"{size // 1000} kB go from the client to a sink {rtt_ms:g} ms (round trip) away, with no rate limit "
        "and no loss. How many milliseconds from connect() until the sink confirms it has everything?",
        measure=lambda transfer: transfer.seconds * 1000, unit="ms", tolerance=0.2, floor=10.0,
        explain=explain, step=lambda transfer: rtt_ms, from_capture=True,
        spread="the answer moves in whole round trips, so the band is under half of one",
        mistakes=[(lambda g, m: abs(g - model_ms) < 0.25 * rtt_ms and abs(m - model_ms) >= 0.49 * rtt_ms,
                   "That is the textbook model, whose windows double every round trip; count the windows your "
                   "capture shows (next cell): one more, one more round trip."),
                  (lambda g, m: g <= 2.5 * rtt_ms,
                   "That is a transfer with no window at all; slow start sends 10 segments first, then waits "
                   "for their ACKs.")],
    )


def first_flight(transfer: Transfer) -> int:
    """Data segments the client sent before the first ACK of its data came back (from the capture)."""
    count = 0
    for row in transfer.capture.table():
        if row.direction == "C→S" and row.payload:
            count += 1
        elif row.direction != "C→S" and row.ack is not None and row.ack > 1 and count:
            break  # the first acknowledgement of data: the first round trip is over
    return count


def exercise_first_window(transfer: Transfer) -> Exercise:
    """Data segments sent before the first ACK of data, from the learner's own capture."""
    first = first_flight(transfer)
    return Exercise(
        f"In your capture of the 1 MB transfer across {transfer.rtt_ms:g} ms, how many data segments did the "
        "client send before the first acknowledgement of its data came back?",
        answer=first,
        hint="Until the first acknowledgement of data arrives, the sender knows nothing about the path: how much "
        "does TCP dare to send blind? Count it in the packets rather than recalling it.",
        recipe="walk through bulk.capture.table(): count the C→S rows with a payload until the first S→C row "
        "whose ack is greater than 1 (ack 1 only acknowledges the SYN).",
        mistakes=[
            (first * 1448, "that is in bytes; the question counts segments."),
            (3, "those are the handshake's packets; count the client's *data* segments."),
            (first + 1, "one too many: stop at the first S→C row that acknowledges data (ack > 1), and do not "
             "count what the client sent after it."),
        ],
        explanation=f"{first}: TCP's initial window. A new connection may send this many segments before it "
        "hears anything (RFC 6928 raised it to 10, about 14.5 kB); each ACK then lets the window grow "
        "(RFC 5681 §3.1), roughly doubling it every round trip.",
        kind="capture", source=transfer,
    )


def windows(transfer: Transfer) -> list[int]:
    """Data segments sent in each round trip after the first data segment (slots of one RTT), from the capture."""
    rows = [r for r in transfer.capture.table() if r.direction == "C→S" and r.payload]
    if not rows:
        return []
    rtt = transfer.rtt_ms / 1000
    counts: list[int] = []
    for r in rows:
        k = int((r.t - rows[0].t) / rtt)
        counts.extend([0] * (k + 1 - len(counts)))
        counts[k] += 1
    return counts
