"""Notebook 04's machinery: the heartbeat server's limits, peer deaths, and every detection mechanism."""

from __future__ import annotations

import socket
import time

import pytest

from netcourse.apps.beat import make_beat_handler
from netcourse.clients.beat import BeatClient, keep_connected, peer_process
from netcourse.course.live import LivePipe
from netcourse.errors import LinkError
from netcourse.runtime.registry import live_servers
from netcourse.experiments.heartbeats.deaths import half_open, peer_deaths
from netcourse.experiments.heartbeats.detection import (
    _heartbeat_until_dead,
    compare_heartbeats,
    heartbeat_detection,
    predict_worst_detection,
)
from netcourse.experiments.heartbeats.duplex import duplex_ticks, exercise_echo_time
from netcourse.experiments.heartbeats.reconnect import (
    heartbeat_across_a_link,
    heartbeat_reconnect,
    reconnect_storm,
)
from netcourse.experiments.heartbeats.tcp import (
    exercise_probe_seq,
    keepalive_detection,
    user_timeout_detection,
)
from netcourse.network.link import link
from netcourse.protocols.beat import Kind, detection_bounds, encode, heartbeat_cost
from netcourse.runtime.server import serve
from netcourse.runtime.waiting import wait_until

from .conftest import retried


def _closed_reason(handler, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while not handler.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handler.closed, "the server did not close the connection"
    return handler.closed[-1]


def _raw(srv) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    return s


def test_ping_pong_msg_echo_and_ticks():
    with serve(make_beat_handler(tick=0.05, idle_timeout=None)) as srv:
        with BeatClient(srv.host, srv.port) as c:
            c.send(Kind.PING, b"42")
            c.send(Kind.MSG, b"hello")
            seen = []
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and not ({Kind.PONG, Kind.MSG, Kind.TICK} <= {f.kind for f in seen}):
                seen += c.receive(0.5)
            assert any(f.kind is Kind.PONG and f.body == b"42" for f in seen)
            assert any(f.kind is Kind.MSG and f.body == b"hello" for f in seen)
            assert any(f.kind is Kind.TICK for f in seen)  # pushed, never asked for


@pytest.mark.parametrize("case, words", [
    ("half frame", "half a frame"),
    ("flood", "ping flood"),
    ("silence", "no PING or message"),
    ("garbage", "protocol error"),
])
def test_the_server_ends_bad_clients_with_a_reason(case, words):
    handler = make_beat_handler(tick=None, idle_timeout=0.4, frame_deadline=0.3, max_pings=10)
    with serve(handler) as srv:
        with _raw(srv) as s:
            if case == "half frame":
                s.sendall(encode(Kind.MSG, b"hello")[:4])
            elif case == "flood":
                s.sendall(b"".join(encode(Kind.PING, b"%d" % i) for i in range(50)))
            elif case == "garbage":
                s.sendall(b"\x00\x01Z")
            reason = _closed_reason(handler)
            assert words in reason
            s.settimeout(2)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert words.encode() in data  # the CLOSE frame tells the client why, then a FIN


@pytest.mark.slow
@retried()
def test_a_late_pong_counts_as_dead_and_nothing_is_left_running():
    with peer_process() as peer:
        with BeatClient("127.0.0.1", peer.port) as c:
            peer.freeze()
            t = time.monotonic()
            assert _heartbeat_until_dead(c, 0.1, 0.2, limit=3) is not None
            assert 0.15 < time.monotonic() - t < 1.5
            peer.thaw()
        proc = peer.proc
    assert proc.poll() is not None  # the child is gone


@pytest.mark.slow
@retried()
def test_peer_deaths_look_as_the_notebook_says():
    deaths = {d.kind: d for d in peer_deaths(wait=0.6)}
    assert deaths["clean close"].read.startswith("a CLOSE frame") and deaths["clean close"].read_ms < 300
    assert "FIN" in deaths["crash"].read or "RST" in deaths["crash"].read
    assert deaths["crash"].read_ms < 300
    assert deaths["crash"].write.startswith("first accepted") and "second accepted" not in deaths["crash"].write
    frozen = deaths["frozen process"]
    assert frozen.read_ms is None and frozen.write == "first accepted, second accepted" and frozen.unacked == 0  # its kernel ACKs
    gone = deaths["vanished network"]
    if gone.unacked is not None:  # tap link (root)
        assert gone.read_ms is None and gone.unacked >= 1  # nobody acknowledges any more


@pytest.mark.slow
@retried()
def test_heartbeat_detection_lies_between_timeout_and_interval_plus_timeout():
    det = heartbeat_detection(0.1, 0.2, trials=3)
    lo, hi = detection_bounds(0.1, 0.2)
    assert len(det.seconds) == 3
    assert all(lo - 0.02 <= s <= hi + 0.15 for s in det.seconds), det.seconds
    assert predict_worst_detection(0.1, 0.2).check(0.3, det) and not predict_worst_detection(0.1, 0.2).check(0.2, det)


@pytest.mark.slow
@pytest.mark.replayable
@retried()
def test_keepalive_probes_carry_seq_minus_one():
    det = keepalive_detection()
    probes = det.probes()
    assert len(probes) >= 3
    assert exercise_probe_seq(det).check(-1)
    if det.mode == "tap":  # live: idle 1 s + 3 probes 1 s apart
        assert 3.5 < det.seconds < 6 and "timed out" in det.error
    else:  # nothing ran live: the result says so, never a made-up error
        assert det.seconds is None and det.error is None and det.capture.live is False  # the recording's packets


@pytest.mark.slow
@pytest.mark.replayable
@retried()
def test_user_timeout_ends_a_connection_whose_data_goes_unacknowledged():
    det = user_timeout_detection(1000)
    rows = det.capture.table()
    data = [r for r in rows if r.direction == "C→S" and r.payload]
    assert len(data) >= 2 and data[-1].seq == data[-2].seq  # the same bytes sent again: unacknowledged
    if det.mode == "tap":
        assert 0.9 < det.seconds < 3 and "timed out" in det.error
    else:
        assert det.seconds is None and det.error is None and det.capture.live is False  # the recording's packets


@pytest.mark.slow
def test_the_loss_switch_refuses_bad_values_and_the_relay():
    with link(rtt_ms=1, mode="relay") as net:
        with pytest.raises(LinkError, match="tap link"):
            net.set_loss(1.0)
    with pytest.raises(LinkError, match="fraction"):
        with link(rtt_ms=1, mode="relay") as net:
            net.set_loss(1.5)


def test_heartbeat_costs_add_up():
    c = heartbeat_cost(30)
    assert c["bytes per beat"] == 3 * 66 + 2 * 5  # PING, PONG, and the bare ACK of the PONG
    assert c["bytes per hour, one connection"] == pytest.approx(208 * 120)
    assert c["packets per second at the server, both ways"] == pytest.approx(3 * 100_000 / 30)
    assert heartbeat_cost(30, websocket=True)["bytes per beat"] == 3 * 66 + 8 + 4
    with pytest.raises(ValueError):
        heartbeat_cost(0)


@pytest.mark.slow
@pytest.mark.replayable
@retried()
def test_duplex_ticks_arrive_unasked_and_the_echo_question_reads_the_capture():
    run = duplex_ticks()
    assert run.requested_nothing and len(run.sent) == 3 and len(run.echoes) == 3
    ticks = [r.t for r in run.capture.table() if r.app.startswith("TICK")]
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:]))
    assert 0.15 < gaps[len(gaps) // 2] < 0.25
    rows = run.capture.table()
    sent = next(r for r in rows if r.direction == "C→S" and r.app.startswith("MSG"))
    echo = next(r for r in rows if r.direction == "S→C" and r.app.startswith("MSG") and r.t >= sent.t)
    from scapy.layers.inet import TCP

    # The server's bytes before the echo, from scapy's raw packets (not the table the exercise uses).
    server_port = run.capture.server_ports[0]
    echo_pkt = run.capture.packets[echo.no - 1]
    isn = next(p[TCP].seq for p in run.capture.packets if TCP in p and p[TCP].sport == server_port and p[TCP].flags.S)
    raw = sum(len(p[TCP].payload) for p in run.capture.packets[: echo.no - 1] if TCP in p and p[TCP].sport == server_port)
    assert raw == (echo_pkt[TCP].seq - isn - 1) % 2**32 > 0
    q = exercise_echo_time(run)
    assert q.check(raw) and not q.check(raw + 1) and "client's bytes too" in repr(q.check(
        raw + sum(r.payload for r in rows if r.direction == "C→S" and r.no < echo.no)))


@pytest.mark.replayable
@pytest.mark.slow
def test_half_open_connection_meets_an_rst():
    h = half_open()
    resets = h.resets()
    assert len(resets) == 1
    rows = h.capture.table()
    last_data = [r for r in rows if r.direction == "C→S" and r.payload][-1]
    assert resets[0].t > last_data.t  # the RST answers the data sent into the forgotten connection
    if h.mode == "tap":
        assert "Reset" in h.error  # what the live client's recv() raised
    else:  # relay: the packets are the recording's, and no error is claimed for a run that did not happen
        assert h.error is None and h.capture.live is False


@pytest.mark.slow
@retried()
def test_websocket_and_aiohttp_heartbeats_notice_a_frozen_peer():
    beat, ws, aio = compare_heartbeats(0.1, 0.2, trials=2)
    for det in (beat, ws):
        lo, hi = detection_bounds(0.1, 0.2)
        assert len(det.seconds) == 2 and all(lo - 0.02 <= s <= hi + 0.15 for s in det.seconds), det
    assert "WebSocket" in ws.mechanism
    assert (aio.interval, aio.timeout) == (0.1, 0.05)  # aiohttp: the pong is due heartbeat / 2 after the ping
    lo, hi = detection_bounds(0.1, 0.05)
    assert len(aio.seconds) == 2 and all(lo - 0.02 <= s <= hi + 0.15 for s in aio.seconds), aio
    with pytest.raises(ValueError):
        compare_heartbeats(0, 1)
    with pytest.raises(ValueError):
        peer_process(protocol="carrier pigeon")


@pytest.mark.slow
def test_reconnect_storm_jitter_spreads_the_clients_that_come_back():
    storm = reconnect_storm(clients=60, down_for=0.5, base=0.05, cap=0.4)
    for name, log in storm.attempts.items():
        assert sum(ok for _, ok in log) == 60, name  # every client came back, once
        assert all(not ok for t, ok in log if t < storm.down_for - 0.01), name  # refused while the port was down
        assert all(ok for t, ok in log if t > storm.down_for + 0.05) or name == "full jitter"
    # without jitter every client waits the same ceilings, so they retry (and come back) together
    plain = sorted({round(t, 1) for t, ok in storm.attempts["no jitter"] if not ok})
    assert len(plain) <= 4, plain  # 0.05, 0.15, 0.35 (+ rounding)
    assert storm.peak("full jitter", connected=True) < storm.peak("no jitter", connected=True)
    assert storm.back_after("no jitter") > 0
    with pytest.raises(ValueError):
        reconnect_storm(clients=0)


@pytest.mark.slow
def test_live_pipe_sends_on_click_and_stops_everything_by_itself():
    import threading

    from netcourse.runtime.registry import live_servers

    pipe = LivePipe(seconds=1.0, tick=0.1)
    view = pipe.widget()
    pipe.connect()
    assert wait_until(lambda: any(x.startswith("TICK") for _, _, x in pipe.lines), 3)  # the pipe is up and ticking
    pipe.click()
    deadline = time.monotonic() + 3
    while pipe.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pipe.running and "closed after" in pipe.status, pipe.status
    texts = [x for _, _, x in pipe.lines]
    assert any(x.startswith("TICK") for x in texts) and "MSG 'click 1'" in texts
    assert any("click 1" in x and "echo" in x for x in texts)
    assert "server → client" in view.children[2].value and view.children[0].children[0].disabled is False
    assert not live_servers() and not [t for t in threading.enumerate() if t.name == "live pipe"]
    with pytest.raises(ValueError):
        LivePipe(seconds=0)
    assert "live pipe" in repr(LivePipe()._repr_mimebundle_()["text/plain"])


# -- the heartbeat helper, and a client that closes and reconnects -------------------------------------------


def _beat(delay: float | None, *, interval: float = 0.02, timeout: float = 0.05, beats: int = 3, answer_old=False):
    """Run a Heartbeat whose peer answers each ping after ``delay`` s (None: never)."""
    import asyncio

    from netcourse.runtime.heartbeat import Heartbeat

    async def main():
        loop = asyncio.get_running_loop()
        beat = None

        async def ping(n: int) -> None:
            if delay is not None:
                loop.call_later(delay, beat.pong, n - 1 if answer_old and n > 1 else n)

        beat = Heartbeat(ping, interval=interval, timeout=timeout)
        reason = await beat.run(beats=beats)
        await asyncio.sleep(0.12)  # let any late pong arrive
        return reason, beat, len(asyncio.all_tasks()) - 1

    return asyncio.run(main())


@pytest.mark.slow
@retried()
def test_the_heartbeat_counts_pongs_in_time_and_declares_a_late_one_dead():
    reason, beat, tasks = _beat(0.005)
    assert reason is None and beat.answered == 3 and len(beat.round_trips) == 3 and tasks == 0
    assert all(0.004 < rt < 0.05 for rt in beat.round_trips)
    reason, beat, tasks = _beat(0.08)  # answered, but after the 0.05 s timeout: a late pong is a death
    assert reason == "no pong to ping 1 within 0.05 s" and beat.answered == 0 and beat.late == 1 and tasks == 0
    reason, beat, _ = _beat(None)
    assert reason.startswith("no pong to ping 1") and beat.late == 0


def test_the_heartbeat_ignores_a_pong_for_an_older_ping():
    reason, beat, _ = _beat(0.03, interval=0.01, timeout=0.05, answer_old=True)  # ping 2 is answered "1"
    assert reason == "no pong to ping 2 within 0.05 s" and beat.answered == 1 and beat.late >= 1
    with pytest.raises(ValueError):
        from netcourse.runtime.heartbeat import Heartbeat

        Heartbeat(lambda n: None, interval=0, timeout=1)


@pytest.mark.slow
@retried()
def test_the_client_closes_a_dead_connection_and_reconnects_with_back_off():
    run = heartbeat_reconnect(interval=0.2, timeout=0.3, freeze_at=0.3, frozen_for=0.8, run_for=1.5)
    assert run.froze_at is not None and run.thawed_at is not None
    assert run.false_alarms == 0, run.events
    assert 0.3 - 0.02 <= run.detected_after <= 0.2 + 0.3 + 0.15, run  # between timeout and interval + timeout
    dead = run.times("dead")
    assert len(dead) >= 2 and len(run.times("connected")) == len(dead) + 1  # reconnected after every death
    assert any(w.startswith("waiting") and "back-off" in w for _, w in run.events)
    assert run.times("first pong")[-1] >= run.thawed_at - 0.05  # steady again once the peer thawed
    assert run.leftover_tasks == 0


@pytest.mark.slow
@retried()
def test_a_timeout_shorter_than_the_round_trip_kills_a_healthy_connection():
    short, enough = heartbeat_across_a_link(rtt_ms=100, timeouts=(0.05, 0.3), interval=0.2, run_for=0.8)
    assert len(short.times("dead")) >= 2 and short.round_trips == [] and short.false_alarms == len(short.times("dead"))
    assert enough.times("dead") == [] and len(enough.round_trips) >= 2
    rts = sorted(enough.round_trips)  # (through the relay the first ping also waits for the relay's own connect)
    assert rts[0] >= 0.099 and 0.099 <= rts[len(rts) // 2] < 0.16, enough.round_trips
    assert short.leftover_tasks == enough.leftover_tasks == 0


@pytest.mark.slow
def test_a_crashed_peer_ends_the_connection_with_a_reason_and_the_client_keeps_trying():
    import asyncio
    import random

    from netcourse.runtime.backoff import Backoff
    from netcourse.runtime.waiting import run_async

    events: list[tuple[float, str]] = []
    with peer_process(tick=0.0) as peer:
        async def main() -> int:
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, peer.freeze)  # pings pile up unread in the frozen peer's socket ...
            loop.call_later(0.3, peer.kill)  # ... so at the SIGKILL its kernel answers with an RST, not a FIN
            return await keep_connected("127.0.0.1", peer.port, interval=0.05, timeout=0.3, run_for=1.0,
                                           backoff=Backoff(0.05, 0.1, rng=random.Random(2)), events=events)

        leftover = run_async(main(), 10)
    texts = [e for _, e in events]
    assert texts[0] == "connected" and leftover == 0
    after = [e for t, e in events if t > 0.3]
    assert after and after[0].startswith("closed: ConnectionResetError"), events  # noticed at once, with a reason
    assert any(e.startswith("connect failed") for e in after), events  # and the client went on trying



@retried()
def test_a_stuck_worker_still_pongs_and_only_an_application_ping_notices():
    from netcourse.experiments.heartbeats.worker import stuck_worker

    run = stuck_worker(interval=0.1, timeout=0.15, stall_at=0.3, duration=0.8)
    assert not run.closed
    assert run.after(run.ws_pongs) >= 3  # aiohttp answered WebSocket PINGs from its read loop all along
    assert len(run.app_pongs) >= 2 and run.after(run.app_pongs) == 0  # the worker answered nothing after
    assert run.app_dead_at is not None and 0.1 <= run.app_dead_at - run.stalled_at <= 0.4
    assert not live_servers()
