"""Notebook 02, section 3: UDP keeps message boundaries and TCP does not; who answers when nobody listens (an RST,
or an ICMP port unreachable); a seeded lossy relay.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass

from ...errors import NetcourseTimeout
from ...runtime.sockets import LOOPBACK, connected_pairs
from ...runtime.waiting import wait_until
from ...traffic.sniffer import Capture, capture
from ..registry import scenario
from .conversation import MESSAGES

__all__ = ["message_boundaries", "Refusal", "refused", "LossRun", "lossy_relay", "loss_knob"]


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


def loss_knob(loss: float = 0.2, seed: int = 7) -> str:
    """Section 5's knob: 50 datagrams through the lossy relay; what arrived."""
    run = lossy_relay(count=50, loss=loss, seed=seed)
    return f"received {len(run.received)} of {run.sent}; missing {run.missing}"
