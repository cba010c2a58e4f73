"""The emulated link: real distance (RTT, loss, rate) under lessons, and nothing left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest

from netcourse import link
from netcourse.apps.echo import tcp_echo
from netcourse.errors import LinkError
from netcourse.experiments.transport.slow_start import sink
from netcourse.network.link import modes
from netcourse.runtime.waiting import wait_until
from netcourse.tools.linkbench import bound_udp, echo_round_trips

from .conftest import retried

TAP = modes()["tap"]
tap_only = pytest.mark.skipif(TAP is not None, reason=f"tap link unavailable: {TAP}")


@pytest.mark.slow
def test_parameters_are_checked_with_the_valid_range():
    for bad, words in (({"rtt_ms": -1}, "rtt_ms must be a number from 0"), ({"rtt_ms": 10, "loss": 1.5}, "loss must be"),
                       ({"rtt_ms": 10, "mtu": 100}, "mtu must be"), ({"rtt_ms": 10, "jitter_ms": 6}, "at most half"),
                       ({"rtt_ms": 10, "mode": "warp"}, "mode must be"), ({"rtt_ms": True}, "rtt_ms must be")):
        with pytest.raises(LinkError, match=words):
            link(**bad)


@pytest.mark.slow
def test_the_queue_is_one_bandwidth_delay_product_unless_told_otherwise():
    from netcourse.network.link import MIN_QUEUE, queue_size

    assert queue_size(10e6, 0.100) == 83  # 1,000,000 bits of 1,514-byte frames
    assert link(rtt_ms=100, rate_mbit=10).queue_packets == 83
    assert link(rtt_ms=100, rate_mbit=10, queue_bdp=2).queue_packets == 166
    assert link(rtt_ms=2, rate_mbit=10).queue_packets == MIN_QUEUE  # never below TCP's first flight
    assert link(rtt_ms=100, rate_mbit=10, queue_packets=7).queue_packets == 7
    with pytest.raises(LinkError, match="queue_bdp must be"):
        link(rtt_ms=100, queue_bdp=0)


@pytest.mark.slow
@tap_only
def test_slow_start_overshoots_a_one_product_queue_and_the_link_drops_the_excess():
    from netcourse.experiments.transport import slow_start

    bulk = slow_start.bulk_transfer(1_000_000, rtt_ms=60, rate_mbit=20)
    assert bulk.queue_packets == 100  # 20 Mbit/s × 60 ms = 1.2 Mbit
    assert bulk.lost_frames > 0 and bulk.retransmits >= bulk.lost_frames
    assert "queue 100 frames" in slow_start.overshoot(bulk)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["relay", pytest.param("tap", marks=tap_only)])
@pytest.mark.parametrize("rtt_ms", [10, 50])
def test_measured_rtt_matches_the_configured_one(mode, rtt_ms):
    from netcourse.tools.linkbench import rtt_accuracy

    # The link's accuracy itself is a benchmark figure (make bench); here the claim is behaviour: the
    # delay is the one configured, within what a shared 2-core CI machine's timers allow.
    bound = 0.1 * rtt_ms + 0.5
    seen = []
    for _ in range(3):  # a busy machine can delay one run's timers; the claim must hold in a quiet one
        median_ms, kernel_ms = rtt_accuracy(mode, rtt_ms, n=30)
        kernel_ms = rtt_ms if kernel_ms is None else kernel_ms  # relay: the kernel only saw loopback
        seen.append((median_ms, kernel_ms))
        if abs(median_ms - rtt_ms) <= bound and abs(kernel_ms - rtt_ms) <= bound:
            break
    else:
        pytest.fail(f"RTT {rtt_ms} ms ± {bound:.2f}: measured (echo, kernel) {seen}")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["relay", pytest.param("tap", marks=tap_only)])
def test_a_fresh_connection_pays_two_round_trips_for_its_first_answer(mode):
    from netcourse.experiments.start_here import make_hello_app

    def first_byte(srv):
        t = time.perf_counter()
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.sendall(f"GET /hello HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n\r\n".encode())
        s.recv(1)
        s.close()
        return time.perf_counter() - t

    seen = []
    with link(rtt_ms=40, mode=mode) as net:
        srv = net.serve(make_hello_app())
        for _ in range(3):  # a busy machine can delay one connection's timers; 2 RTT must show in a quiet one
            seen.append(round(net.near(lambda: first_byte(srv)) * 1000, 1))
            if 80 - 2 <= seen[-1] <= 80 + 8:  # TCP's handshake + the request: 2 RTT
                return
    pytest.fail(f"first byte after 2 RTT (80 ms) not seen in 3 connections: {seen} ms")


def _udp_rcvbuf_errors() -> int:
    """UDP datagrams this thread's network namespace dropped for a full receive buffer."""
    with open("/proc/thread-self/net/snmp") as snmp:
        lines = [line.split() for line in snmp if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def _tx_drops(device: str) -> int:
    """Packets this namespace's ``device`` dropped on the way out (its queue was full)."""
    with open("/proc/thread-self/net/dev") as dev:
        for line in dev:
            name, _, counters = line.partition(":")
            if name.strip() == device:
                return int(counters.split()[11])  # transmit: bytes packets errs drop ...
    return 0


@pytest.mark.slow
@tap_only
def test_loss_rate_over_ten_thousand_datagrams():
    from netcourse.network.link import DEVICE

    with link(rtt_ms=2, loss=0.05, seed=7) as net:
        near, far = net.addresses
        rx = net.far(lambda: bound_udp(far))
        tx = net.near(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        before = net.far(_udp_rcvbuf_errors), net.near(lambda: _tx_drops(DEVICE))
        got = 0
        try:
            rx.settimeout(0.5)
            port = rx.getsockname()[1]
            for i in range(10_000):
                tx.sendto(b"%05d" % i, (far, port))
                if i % 50 == 49:
                    time.sleep(0.002)  # stay below the TAP queue: only the wire should lose
            try:
                while True:
                    rx.recv(100)
                    got += 1
            except socket.timeout:
                pass
        finally:
            rx.close()
            tx.close()
        stats = net.statistics()
        elsewhere = (net.far(_udp_rcvbuf_errors) - before[0]) + (net.near(lambda: _tx_drops(DEVICE)) - before[1])
    lost = stats["out_lost"] / 10_000
    assert 0.04 <= lost <= 0.06, lost
    # Every datagram is accounted for: delivered, lost by the wire (on purpose), or dropped at a full queue
    # on the way (the kernel counts those; a loaded machine can make a few) -- nothing vanishes unexplained.
    # The link's counters also see the odd frame of the kernel's own (ARP, IPv6 neighbour discovery), which
    # the 5 % loss hits like any other: a few frames more than the 10,000 may be counted, never fewer.
    accounted = got + stats["out_lost"] + stats["out_dropped"] + elsewhere
    assert 10_000 <= accounted <= 10_005, accounted
    assert elsewhere + stats["out_dropped"] <= 100


@pytest.mark.slow
@tap_only
def test_goodput_follows_the_rate_limit():
    with link(rtt_ms=2, rate_mbit=10) as net:
        srv = net.serve(sink)

        def send() -> float:
            s = socket.create_connection((srv.host, srv.port), timeout=20)
            t = time.perf_counter()
            s.sendall(bytes(1_000_000))
            s.shutdown(socket.SHUT_WR)
            assert s.recv(20) == b"1000000"
            s.close()
            return time.perf_counter() - t

        seconds = net.near(send, timeout=30)
    goodput = 8 * 1_000_000 / seconds / 1e6
    assert 9.0 <= goodput <= 10.0, goodput  # headers take ~4% of every 1,514-byte frame


@pytest.mark.slow
@tap_only
def test_the_wire_capture_shows_the_handshake_a_round_trip_apart():
    with link(rtt_ms=30) as net:
        srv = net.serve(tcp_echo)
        with net.capture(srv.port) as cap:
            echo_round_trips(net, srv, n=3)
    rows = cap.table()
    assert [r.flags for r in rows[:3]] == ["S", "SA", "A"]
    assert 29 <= (rows[1].t - rows[0].t) * 1000 <= 33  # SYN out, SYN-ACK in: one round trip
    assert cap.complete and len(cap.lost) == 0


def _netns_names() -> set[str]:
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


@pytest.mark.slow
@tap_only
def test_fifty_links_and_a_failing_block_leave_nothing_behind():
    before = (_netns_names(), len(os.listdir("/proc/self/fd")), threading.active_count())
    links_before = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    for _ in range(50):
        with link(rtt_ms=1) as net:
            net.serve(tcp_echo)
    with pytest.raises(ZeroDivisionError):
        with link(rtt_ms=1) as net:
            net.serve(tcp_echo)
            1 / 0
    def now():
        return (_netns_names(), len(os.listdir("/proc/self/fd")), threading.active_count())

    assert wait_until(lambda: now() == before, 5), (now(), before)  # namespaces go with their last thread
    assert subprocess.run(["ip", "link"], capture_output=True, text=True).stdout == links_before


@pytest.mark.slow
@tap_only
def test_a_server_that_will_not_stop_still_leaves_no_namespace_behind(monkeypatch):
    """code.md §4: a server whose stop() raised left the wire's process, the TAP devices and both namespaces."""
    from netcourse.errors import NetcourseTimeout
    from netcourse.runtime.server import Server

    before = _netns_names()
    real_stop = Server.stop

    def stuck(self, timeout=5.0):
        real_stop(self, timeout)
        raise NetcourseTimeout("pretending the server's thread hung")

    monkeypatch.setattr(Server, "stop", stuck)
    with pytest.raises(NetcourseTimeout, match="pretending"):
        with link(rtt_ms=1) as net:
            net.serve(tcp_echo)
            wire = net._forwarder.proc
    assert wait_until(lambda: _netns_names() == before, 5), _netns_names() - before
    assert wire.poll() is not None  # the wire's process was stopped and reaped


@pytest.mark.slow
def test_the_relay_link_says_it_cannot_capture():
    with link(rtt_ms=5, mode="relay") as net:
        assert "relay" in net.notice
        with pytest.raises(LinkError, match="nothing to capture"):
            with net.capture(1):
                pass


@pytest.mark.slow
@pytest.mark.parametrize("tap", [pytest.param(True, marks=tap_only), False])
@retried()
def test_a_fresh_request_across_a_link_costs_two_round_trips(monkeypatch, tap):
    import warnings

    from netcourse.experiments import start_here
    from netcourse.network import link as link_module

    if not tap:
        monkeypatch.setattr(link_module, "modes", lambda: {"tap": "pretending to have no root", "relay": None})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the relay's replay notice
        budget = start_here.request_across(40)
    assert budget.mode == ("tap" if tap else "relay")
    assert 80 - 1 <= budget.total_ms <= 80 + 10, budget
    assert [step for step, _, _ in budget.rows()][-1].startswith("total")
    assert budget.capture.live is tap  # relay mode shows the recording of the real link
    flags = [r.flags for r in budget.capture.table()[:3]]
    assert flags == ["S", "SA", "A"]


def test_the_time_scaled_ladder_slants_each_arrow_by_the_one_way_delay():
    import matplotlib

    matplotlib.use("Agg")
    from netcourse.course.plots.ladder import ladder_in_time
    from netcourse.traffic.packets import packet_rows
    from netcourse.traffic.recordings import read

    packets, meta = read("first_request_link")
    rows = packet_rows(packets, meta["server_ports"], meta["t0"])
    fig = ladder_in_time(rows, one_way_ms=25)
    arrows = [c for c in fig.axes[0].get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == len(rows)
    for arrow, row in zip(arrows, rows):
        (x1, y1), (x0, y0) = arrow.xy, arrow.xyann
        assert abs(abs(y1 - y0) - 25) < 1e-6  # every arrow spans exactly the one-way delay
        assert (x1 > x0) == (row.direction == "C→S")


@pytest.mark.slow
@pytest.mark.parametrize("tap", [pytest.param(True, marks=tap_only), False])
@retried()
def test_websocket_and_http_round_trips_across_a_link(monkeypatch, tap):
    from netcourse.experiments.websockets.cost import across_a_link
    from netcourse.network import link as link_module

    if not tap:
        monkeypatch.setattr(link_module, "modes", lambda: {"tap": "pretending to have no root", "relay": None})
    result = across_a_link(rtt_ms=40, echoes=3)
    assert result.mode == ("tap" if tap else "relay")
    for what, ms, round_trips in result.rows():
        # Nothing beats the physics; the upper bound only has to tell n round trips from n + 1, so it is
        # half a round trip (a busy CI machine once added 10 ms to the relay's three round trips).
        assert 40 * round_trips - 1 <= ms < 40 * round_trips + 20, (what, ms)


@pytest.mark.slow
@pytest.mark.parametrize("tap", [pytest.param(True, marks=tap_only), False])
def test_polling_across_a_link_pays_transits(monkeypatch, tap):
    import matplotlib

    matplotlib.use("Agg")
    from netcourse.course.plots.polling import polling_on_link, polling_theory
    from netcourse.experiments.polling.link import on_a_link
    from netcourse.network import link as link_module

    if not tap:
        monkeypatch.setattr(link_module, "modes", lambda: {"tap": "pretending to have no root", "relay": None})
    seen = []
    for _ in range(3):  # a busy machine can delay one run's timers; the claim must hold in a quiet one
        run = on_a_link(rtt_ms=60, interval=0.3, burst=3, rate=4, duration=2)
        assert run.link_mode == ("tap" if tap else "relay") and run.rtt == 0.06
        assert run.exactly_once_in_order("long") and run.exactly_once_in_order("short 0.3 s")
        assert min(run.latencies("long")) >= 0.030 - 0.002  # nothing beats one transit (never timing luck)
        assert min(run.latencies("short 0.3 s")) >= 0.030 - 0.002
        seen.append(max(run.burst_worst("long")))
        if seen[-1] <= 3 * 0.030 + 0.015:  # at worst three transits
            break
    else:
        pytest.fail(f"a burst's worst long-poll latency exceeded three transits in 3 runs: {seen}")
    assert run.theory_mean("long") == pytest.approx(0.03 * 7 / 3)
    assert len(polling_on_link(run).axes) == 1
    assert len(polling_theory(60, 0.3, measured=run).axes) == 1


@pytest.mark.slow
@tap_only
def test_slow_start_doubles_the_window_each_round_trip_and_losses_are_repaired():
    from netcourse.experiments.transport import slow_start
    from netcourse.traffic.packets import in_flight, retransmissions

    bulk = slow_start.bulk_transfer(300_000, rtt_ms=60, rate_mbit=20)
    data = [r for r in bulk.capture.table() if r.direction == "C→S" and r.payload]
    assert max(r.payload for r in data) == 1448  # MTU 1500 - 20 - 32
    flight = in_flight(bulk.capture.table())
    start = data[0].t  # the first data segment: one round trip after it, the first ACK of data returns
    first_rtt = max(b for t, b in flight if start <= t < start + 0.060)
    assert 10 * 1448 <= first_rtt <= 11 * 1448  # RFC 6928: ten segments before the first ACK returns
    cwnds = [c for _, c, _, _ in bulk.samples]
    assert cwnds[0] == 10 and max(cwnds) >= 40
    lossy = slow_start.lossy_transfer(100_000, rtt_ms=20, loss=0.05)
    assert len(retransmissions(lossy.capture.table())) >= len(lossy.capture.lost) > 0


@pytest.mark.slow
@pytest.mark.parametrize("rate_mbit", [0, 20])
def test_the_relay_keeps_every_byte_in_order(rate_mbit):
    import os as _os

    payload = _os.urandom(600_000)
    with link(rtt_ms=20, rate_mbit=rate_mbit, mode="relay") as net:
        srv = net.serve(tcp_echo)

        def roundtrip() -> bytes:
            s = socket.create_connection((srv.host, srv.port), timeout=20)
            got = bytearray()
            try:
                for i in range(0, len(payload), 7_000):  # many writes within the first round trip
                    s.sendall(payload[i : i + 7_000])
                s.shutdown(socket.SHUT_WR)
                while data := s.recv(65536):
                    got += data
            finally:
                s.close()
            return bytes(got)

        assert net.near(roundtrip) == payload


def test_when_the_server_resets_the_relay_ends_both_directions():
    """The relay's pump left its sibling running: the server reset the connection, the client kept its socket
    open and silent, and the client-to-server pump waited on it for ever. Now both pumps end with the first
    that fails. (A clean FIN is a half-close: the other direction rightly stays open until the client closes.)"""
    import asyncio
    import struct

    from netcourse.network.relay import make_relay
    from netcourse.runtime.server import serve

    async def reset(reader, writer):
        writer.write(b"bye")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST, not FIN
        writer.transport.abort()

    def tasks(srv) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())
        return asyncio.run_coroutine_threadsafe(count(), srv.loop).result(5)

    with serve(reset) as target, serve(make_relay(target.host, target.port, rtt=0.01)) as relay:
        before = tasks(relay)
        s = socket.create_connection((relay.host, relay.port), timeout=5)
        try:
            assert s.recv(100) == b"bye"
            assert wait_until(lambda: tasks(relay) <= before, 5), (tasks(relay), before)  # s is still open
        finally:
            s.close()
        time.sleep(0.1)  # the client's close reaches the relay: an orphan pump would fail now
    assert not [e for e in relay.errors if "never retrieved" in e or "Reset" in e], relay.errors
