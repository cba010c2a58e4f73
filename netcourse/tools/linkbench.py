"""The emulated link's figures for ``make bench``: accuracy, cost and clean-up, measured, not asserted."""

from __future__ import annotations

import socket
import statistics
import struct
import time

from ..apps.echo import tcp_echo
from ..experiments.transport.slow_start import sink
from ..network.link import Link, link, modes
from ..runtime.server import Server
from ..runtime.tcpinfo import TcpInfo, tcp_info

__all__ = ["rows", "echo_round_trips", "bound_udp", "rtt_accuracy"]


def echo_round_trips(net: Link, srv: Server, n: int = 20) -> tuple[list[float], TcpInfo | None]:
    """Round trips (seconds) of ``n`` 1-byte echoes over one connection from the near end, and the
    client's TCP_INFO at the end. ``srv`` serves ``tcp_echo`` (apps.echo) at the far end."""

    def measure() -> tuple[list[float], TcpInfo | None]:
        s = socket.create_connection((srv.host, srv.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = []
        try:
            for _ in range(n):
                t = time.perf_counter()
                s.sendall(b"x")
                s.recv(1)
                out.append(time.perf_counter() - t)
            return out, tcp_info(s)
        finally:
            s.close()

    return net.near(measure, timeout=120)


def rtt_accuracy(mode: str, rtt_ms: float, n: int = 20) -> tuple[float, float | None]:
    """(median echo round trip ms, TCP_INFO's smoothed RTT ms or None) on a link of ``rtt_ms``."""
    with link(rtt_ms=rtt_ms, mode=mode) as net:
        rtts, info = echo_round_trips(net, net.serve(tcp_echo), n)
    return statistics.median(rtts[1:]) * 1000, (info.rtt_us / 1000 if mode == "tap" and info else None)


def cycles(n: int = 50) -> tuple[float, float]:
    """Median set-up and tear-down milliseconds of a tap link."""
    ups, downs = [], []
    for _ in range(n):
        with link(rtt_ms=1, mode="tap") as net:
            pass
        ups.append(net.setup_s * 1000)
        downs.append(net.teardown_s * 1000)
    return statistics.median(ups), statistics.median(downs)


def loss_rate(loss: float = 0.05, datagrams: int = 10_000) -> float:
    """Measured fraction lost of ``datagrams`` UDP datagrams on a tap link with ``loss``."""
    with link(rtt_ms=2, loss=loss, seed=3, mode="tap") as net:
        _, far = net.addresses
        rx = net.far(lambda: bound_udp(far))
        tx = net.near(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        got = 0
        try:
            port = rx.getsockname()[1]
            for i in range(datagrams):
                tx.sendto(b"x", (far, port))
                if i % 50 == 49:
                    time.sleep(0.002)
            rx.settimeout(0.5)
            try:
                while True:
                    rx.recv(64)
                    got += 1
            except socket.timeout:
                pass
        finally:
            rx.close()
            tx.close()
    return 1 - got / datagrams


def bound_udp(address: str) -> socket.socket:
    """A UDP socket bound to ``address`` on a free port, with a receive buffer for bursts."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
    s.bind((address, 0))
    return s


def goodput(rate_mbit: float, seconds: float = 2.0) -> float:
    """Mbit/s of payload through a tap link limited to ``rate_mbit`` (a transfer of ``seconds`` at that rate)."""
    size = int(rate_mbit * 1e6 / 8 * seconds)

    with link(rtt_ms=2, rate_mbit=rate_mbit, mode="tap") as net:
        srv = net.serve(sink)

        def send() -> float:
            s = socket.create_connection((srv.host, srv.port), timeout=60)
            t = time.perf_counter()
            s.sendall(bytes(size))
            s.shutdown(socket.SHUT_WR)
            s.recv(20)
            s.close()
            return time.perf_counter() - t

        elapsed = net.near(send, timeout=120)
    return 8 * size / elapsed / 1e6


def forwarder_rate(offered: float = 25_000, seconds: float = 1.6, rtt_ms: float = 10.0) -> tuple[float, float, float, float]:
    """Offer ``offered`` small frames/s across a tap link for ``seconds``, receiving as they arrive.

    Returns (frames/s delivered, fraction delivered, median and 99th-percentile one-way ms).
    """
    import threading

    total = int(offered * seconds)
    per_tick = max(1, int(offered / 1000))  # sent in bursts each millisecond, sleeping in between
    with link(rtt_ms=rtt_ms, mode="tap", queue_packets=100_000) as net:
        _, far = net.addresses
        rx = net.far(lambda: bound_udp(far))
        tx = net.near(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        delays: list[float] = []
        arrivals: list[float] = []

        def receive() -> None:
            rx.settimeout(1.0)
            try:
                while len(arrivals) < total:
                    data = rx.recv(64)
                    now = time.perf_counter()
                    arrivals.append(now)
                    delays.append((now - struct.unpack("!d", data)[0]) * 1000)
            except socket.timeout:
                pass  # the rest was lost

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        try:
            port = rx.getsockname()[1]
            start = time.perf_counter()
            for tick in range(0, total, per_tick):
                for _ in range(per_tick):
                    tx.sendto(struct.pack("!d", time.perf_counter()), (far, port))
                pause = start + (tick + per_tick) / offered - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            receiver.join(rtt_ms / 1000 + 3)
        finally:
            rx.close()
            tx.close()
    if len(arrivals) < 2:
        return 0.0, 0.0, float("nan"), float("nan")
    delays.sort()
    rate = len(arrivals) / (arrivals[-1] - arrivals[0])
    return rate, len(arrivals) / total, statistics.median(delays), delays[int(0.99 * (len(delays) - 1))]


def rows() -> list[tuple[str, str, str]]:
    """The link's lines of the bench table."""
    out = []
    tap = modes()["tap"]
    for mode in ("relay", "tap"):
        if mode == "tap" and tap is not None:
            out.append(("emulated link, tap mode", f"skipped: {tap}", "—"))
            continue
        for rtt in (10, 50, 200):
            echo, kernel = rtt_accuracy(mode, rtt)
            bound = 0.05 * rtt + 0.3
            measured = f"echo {echo:.2f} ms" + (f", TCP_INFO {kernel:.2f} ms" if kernel is not None else "")
            out.append((f"link {mode}, RTT {rtt} ms", measured, f"{rtt - bound:.2f}–{rtt + bound:.2f} ms"))
    if tap is None:
        up, down = cycles()
        out.append(("link tap set-up / tear-down, median of 50", f"{up:.1f} ms / {down:.1f} ms", "≤ 300 / ≤ 100 ms"))
        out.append(("link tap loss=0.05 over 10,000 datagrams", f"{loss_rate():.2%} lost", "4–6%"))
        for rate in (1, 10, 50):
            out.append((f"link tap goodput at {rate} Mbit/s", f"{goodput(rate):.2f} Mbit/s", f"≥ {rate * 0.9:g}"))
        fps, share, median, p99 = forwarder_rate()
        out.append(("link tap forwarder, 25,000 small frames/s offered, RTT 10 ms",
                    f"{fps:,.0f} frames/s ({share:.1%} delivered); one-way median {median:.2f} ms, p99 {p99:.2f} ms",
                    "≥ 20,000/s; 5 ± 0.55 ms"))
    return out
