"""The UDP relay: the link's round trip, its loss rate and a NAT rebinding, for datagrams (issue 29)."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest

from netcourse.errors import LinkError
from .conftest import retried
from netcourse.network.udprelay import UdpRelay
from netcourse.runtime import registry


class Echo:
    """A UDP server on 127.0.0.1 that counts what it gets, remembers the source ports, and echoes."""

    def __init__(self, echo: bool = True) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.sources: list[int] = []
        self.echo, self.stopping = echo, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.received += 1
            self.sources.append(addr[1])
            if self.echo:
                self.sock.sendto(data, addr)

    def close(self) -> None:
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.settimeout(2)
    return sock


@retried()
def test_each_datagram_is_delayed_by_the_round_trip():
    echo = Echo()
    sock = client()
    try:
        with UdpRelay("127.0.0.1", echo.port, rtt=0.05) as relay:
            sent, back = {}, {}

            def read() -> None:  # arrivals timed as they come, not when the sender gets round to them
                for _ in range(200):
                    data, _ = sock.recvfrom(64)
                    back[int.from_bytes(data, "big")] = time.monotonic()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            for i in range(200):
                sent[i] = time.monotonic()
                sock.sendto(i.to_bytes(4, "big"), ("127.0.0.1", relay.port))
                time.sleep(0.001)
            reader.join(5)
            rtts = [back[i] - sent[i] for i in back]
        assert len(rtts) == 200
        median = statistics.median(rtts)
        assert abs(median - 0.05) <= 0.05 * 0.05 + 0.0003, median
        assert min(rtts) >= 0.05 - 0.0003
        assert relay.outbound.delivered == relay.inbound.delivered == 200
    finally:
        sock.close()
        echo.close()


@retried()
def test_datagrams_are_lost_at_the_loss_rate():
    sink = Echo(echo=False)
    sock = client()
    try:
        with UdpRelay("127.0.0.1", sink.port, rtt=0.002, loss=0.05, seed=7) as relay:
            for i in range(10_000):
                sock.sendto(b"x" * 40, ("127.0.0.1", relay.port))
                if i % 50 == 49:
                    time.sleep(0.002)  # gently: no socket buffer overflows, only the relay's draws lose datagrams
            deadline = time.monotonic() + 5
            while sink.received + relay.outbound.lost < 10_000 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert relay.outbound.seen == 10_000 and sink.received + relay.outbound.lost == 10_000
        assert abs(relay.outbound.lost / 10_000 - 0.05) <= 0.01, relay.outbound.lost
        assert relay.outbound.dropped == 0
    finally:
        sock.close()
        sink.close()


def test_a_rebinding_gives_the_client_a_new_port_and_answers_still_come_back():
    echo = Echo()
    sock = client()
    try:
        with UdpRelay("127.0.0.1", echo.port, rtt=0.002) as relay:
            sock.sendto(b"one", ("127.0.0.1", relay.port))
            assert sock.recvfrom(64)[0] == b"one"
            assert relay.rebind() == 1
            sock.sendto(b"two", ("127.0.0.1", relay.port))
            assert sock.recvfrom(64)[0] == b"two"
        assert len(echo.sources) == 2 and echo.sources[0] != echo.sources[1]
    finally:
        sock.close()
        echo.close()


def test_a_stopped_relay_leaves_no_thread_and_no_socket():
    before = {t.name for t in threading.enumerate()}
    relay = UdpRelay("127.0.0.1", 9, rtt=0.01).start()
    port = relay.port
    assert relay._background in registry.live_servers()  # noqa: SLF001
    relay.stop()
    relay.stop()  # twice is fine
    assert relay._background not in registry.live_servers() and not relay.running  # noqa: SLF001
    assert {t.name for t in threading.enumerate()} <= before
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", port))  # the port is free again
    probe.close()
    with pytest.raises(LinkError, match="0 <= loss <= 1"):
        UdpRelay("127.0.0.1", 9, rtt=0.01, loss=1.5)


@pytest.mark.slow
@retried()
def test_the_links_relay_mode_carries_udp_at_its_round_trip_and_stops_it_with_the_link():
    from netcourse.network.link import link

    echo = Echo()
    sock = client()
    try:
        with link(rtt_ms=40, mode="relay") as net:
            address = net.udp_address(echo.port)
            relay = net.udp_relays[0]
            t = time.monotonic()
            sock.sendto(b"ping", address)
            assert sock.recvfrom(64)[0] == b"ping"
            assert 0.04 - 0.0003 <= time.monotonic() - t <= 0.04 * 1.05 + 0.005
        assert not relay.running and relay._background not in registry.live_servers()  # noqa: SLF001
    finally:
        sock.close()
        echo.close()


def test_a_slow_link_drops_what_would_wait_too_long_and_old_mappings_are_closed(monkeypatch):
    from netcourse.network import udprelay

    sink = Echo(echo=False)
    socks = [client() for _ in range(4)]
    monkeypatch.setattr(udprelay, "MAX_CLIENTS", 3)
    try:
        with UdpRelay("127.0.0.1", sink.port, rtt=0.002, rate=80_000) as relay:  # 80 kbit/s: 1 kB takes 0.1 s
            for _ in range(40):
                socks[0].sendto(b"x" * 972, ("127.0.0.1", relay.port))
            for sock in socks[1:]:  # three more clients: the first one's mapping is forgotten
                sock.sendto(b"hi", ("127.0.0.1", relay.port))
            time.sleep(0.3)
            # about 2 s of queue is the most a datagram may wait: of 40, some 20 were dropped at once
            assert 15 <= relay.outbound.dropped <= 25 and relay.outbound.seen == 43
            assert len(relay._mappings) == 3  # noqa: SLF001
    finally:
        for sock in socks:
            sock.close()
        sink.close()
