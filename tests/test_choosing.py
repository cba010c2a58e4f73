"""Notebook 10: every transport on one workload, the sweeps, failure behaviour, the decision table, and the
scale-out with a real Redis."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from netcourse.apps.broker import find_redis_server, redis_broker
from netcourse.errors import ServerStartError
from netcourse.experiments.choosing import scaleout
from netcourse.runtime.waiting import wait_until
from netcourse.experiments.choosing.decision import (
    MESSAGE,
    decision_table,
    exercise_long_poll_bytes,
    exercise_websocket_bytes,
    notes_checked,
    one_message_each,
    segment_carrying,
)
from netcourse.experiments.choosing.harness import (
    HEADERS,
    TRANSPORTS,
    TransportRun,
    Workload,
    wire_bytes,
)
from netcourse.experiments.choosing.memory import memory_per_client
from netcourse.experiments.choosing.scaleout import (
    FanOut,
    Node,
    fan_out,
    scale_out,
    streams_catch_up,
)
from netcourse.experiments.choosing.sweeps import (
    SWEEPS,
    crossover,
    load_sweeps,
    sweep,
    sweep_knob,
)
from netcourse.experiments.choosing.transports import compare, run_transport
from netcourse.network.link import link
from netcourse.network.relay import Meter

REDIS, WHERE = find_redis_server()
needs_redis = pytest.mark.skipif(REDIS is None, reason=f"no Redis here: {WHERE}")

SMALL = Workload(clients=2, messages=6, rate=50, size=60, rtt_ms=20, interval=0.1)


@pytest.mark.parametrize("name", TRANSPORTS)
def test_every_transport_delivers_every_message_once_at_the_expected_latency(name):
    run = run_transport(name, SMALL)
    assert run.delivered == run.expected == 12 and run.lost == 0 and run.duplicates == 0
    assert run.wire > run.expected * 60  # every message's text crossed, with headers
    assert run.units > 0 and run.server_cpu_s >= 0
    lowest = min(run.latencies) * 1000
    assert lowest >= 10 - 1  # nothing beats the one-way delay (half of 20 ms)
    if name in ("SSE", "WebSocket", "raw TCP", "UDP"):
        assert run.percentile(50) < 10 + 15, run  # a push: one way
    assert repr(run).startswith(name)


def test_an_unknown_transport_is_named_in_the_error():
    with pytest.raises(ValueError, match="choose from"):
        run_transport("carrier pigeon", SMALL)


@pytest.mark.slow
def test_a_client_away_catches_up_only_where_there_is_a_cursor_or_retries():
    from dataclasses import replace

    workload = replace(SMALL, clients=2, messages=20, rate=50, away=(0.05, 0.25))
    runs = compare(workload)
    for name, run in runs.items():
        assert run.while_away > 0 and run.duplicates == 0, name
        if name in ("short polling", "long polling", "SSE", "webhooks"):
            assert run.caught_up == run.while_away and run.lost == 0, (name, run.caught_up, run.while_away)
        elif name == "UDP":  # a datagram sent just before the client came back is still in flight: it arrives
            assert run.caught_up <= 2 and run.lost >= run.while_away - run.caught_up, (name, run.caught_up, run.lost)
        else:
            assert run.caught_up == 0 and run.lost >= run.while_away, (name, run.lost, run.while_away)


@pytest.mark.slow
def test_memory_per_held_client_is_measured_for_each_held_transport():
    held = memory_per_client(20)
    assert [h.transport for h in held] == ["long polling", "SSE", "WebSocket", "raw TCP"]
    assert all(500 < h.bytes_per_client < 200_000 for h in held), held


@pytest.mark.slow
def test_the_relay_meter_counts_bytes_and_segments_from_the_kernel():
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    meter = Meter()
    with link(rtt_ms=0, mode="relay") as net:
        srv = net.serve(echo, meter=meter)
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            s.sendall(b"x" * 5000)
            got = b""
            while len(got) < 5000:
                got += s.recv(65536)
        # The relay ends its side once both directions have ended; stopping the link first would cut it short.
        assert wait_until(lambda: meter.open == 0, 5)
    payload, segments = meter.totals()  # the connection has ended: its final counts
    assert payload >= 10_000 and segments >= 4  # both ways; SYN, data, ACKs
    assert wire_bytes(meter) == payload + HEADERS * segments and meter.connections == 1


@pytest.mark.slow
def test_sweeps_crossover_and_knob():
    data = {"measured_at": "test", "sweeps": {"rate": {
        "short polling": {"1.0": {"bytes_per_msg": 900.0, "p50_ms": 500.0}, "10.0": {"bytes_per_msg": 300.0, "p50_ms": 500.0},
                          "100.0": {"bytes_per_msg": 60.0, "p50_ms": 500.0}},
        "WebSocket": {"1.0": {"bytes_per_msg": 200.0, "p50_ms": 25.0}, "10.0": {"bytes_per_msg": 200.0, "p50_ms": 25.0},
                      "100.0": {"bytes_per_msg": 200.0, "p50_ms": 25.0}}}}}
    rate = crossover(data)
    assert 10 < rate < 100  # 300 > 200 at 10/s, 60 < 200 at 100/s
    assert crossover(data, "WebSocket", "short polling") is None  # WebSocket is never the dearer
    assert len(sweep_knob(data, "rate", 10.0).axes) == 2
    with pytest.raises(ValueError, match="measured"):
        sweep_knob(data, "rate", 3.0)
    stored = load_sweeps()
    assert set(stored["sweeps"]) == set(SWEEPS)
    for dim, values in SWEEPS.items():
        for transport in TRANSPORTS:
            assert set(stored["sweeps"][dim][transport]) == {str(v) for v in values}
    small = sweep("rate", (50.0,), Workload(clients=1, rtt_ms=0), transports=("WebSocket",))
    assert small["WebSocket"]["50.0"]["delivered"] == small["WebSocket"]["50.0"]["expected"]


def test_the_button_measures_again_and_reports_a_failure_in_the_cell():
    from netcourse.course.knobs import Remeasure

    button = Remeasure(lambda: 42, lambda result: f"drawn {result}", stored=1, label="again")
    button.click()
    assert button.last == 42 and button.last_seconds >= 0

    def broken():
        raise OSError("no network")

    failing = Remeasure(broken, str, stored=1, label="again")
    failing.click()  # no exception escapes a widget callback
    assert failing.last is None


def test_decision_table_and_the_notes_checked_are_built_from_runs():
    runs = {n: TransportRun(n, SMALL, latencies=[0.010 + i / 1000 for i in range(12)], wire=3000, units=12)
            for n in TRANSPORTS}
    away = {n: TransportRun(n, SMALL, while_away=5, caught_up=5 if "poll" in n else 0) for n in TRANSPORTS}
    table = decision_table(runs, away)
    assert table[0][0] == "median latency (50/s, poll every 0.1 s)"
    assert table[0][1]["WebSocket"] == "15 ms"  # nearest rank of 10..21 ms
    assert dict(table)["missed while away, delivered when back (the course's servers, as built here)"][
        "short polling"] == "5/5"
    assert dict(table)["largest latency (50/s, poll every 0.1 s)"]["WebSocket"] == "21 ms"  # 12 samples: no p99
    assert runs["WebSocket"].tail() == ("max", pytest.approx(21.0))
    many = TransportRun("UDP", SMALL, latencies=[i / 1000 for i in range(1, 1001)])
    assert many.tail() == ("p99", pytest.approx(990.0))
    assert all("(protocol" in label for label, _ in table[-3:])
    assert "<table" in table._repr_html_() and "WebSocket" in repr(table)
    scale = {"without": FanOut("none", 4, 2, {"A": 4, "B": 0}, {"A": 4, "B": 4}),
             "with": FanOut("redis", 4, 2, {"A": 4, "B": 4}, {"A": 4, "B": 4})}
    checked = notes_checked(runs, runs, away, scale, 6.5)
    assert len(checked) == 9 and "node B's clients got 0 of 4" in dict(checked)["WebSocket con: 'scalability problem'"]


@pytest.mark.replayable
def test_one_message_on_the_wire_per_transport_and_its_exercises():
    one = one_message_each()
    ws = segment_carrying(one, "WebSocket")
    poll = segment_carrying(one, "long polling")
    assert ws == 2 + len(MESSAGE)  # a server's frame: no mask
    assert poll > 150  # an HTTP head and a JSON body
    # The handshake and the held poll, from scapy's raw packets: the first payload each way per port.
    from scapy.layers.inet import TCP

    def first_payloads(port):
        out = {}
        for p in one.capture.packets:
            if TCP in p and len(p[TCP].payload) and port in (p[TCP].sport, p[TCP].dport):
                out.setdefault(p[TCP].dport == port, len(p[TCP].payload))
        return out[True] + out[False]  # request + response

    handshake = first_payloads(one.ports["WebSocket"])
    per_poll = first_payloads(one.ports["long polling"])
    q_ws, q_poll = exercise_websocket_bytes(one), exercise_long_poll_bytes(one)
    assert q_ws.check(handshake) and not q_ws.check(handshake - 1)
    n = next(n for n in range(1, 100) if handshake + n * ws < n * per_poll)
    assert q_poll.check(n) and not q_poll.check(n + 1) and "starts behind" in repr(q_poll.check(0))


def test_without_redis_the_scale_out_section_shows_its_recorded_run(monkeypatch):
    monkeypatch.setattr(scaleout, "find_redis_server", lambda: (None, "pretending there is none"))
    scale = scale_out()
    assert scale["source"].startswith("Recorded on") and "pretending there is none" in scale["source"]
    assert scale["without"].received["B"] == 0 and scale["with"].received["B"] == scale["with"].expected_per_node["B"]
    assert scale["streams"].pubsub_got == 0 and scale["streams"].stream_got == scale["streams"].published


@pytest.mark.slow
@needs_redis
def test_two_nodes_need_a_broker_and_redis_gives_reach_not_memory():
    without = fan_out(10, 4, broker=False)
    assert without.received == {"A": 20, "B": 0}
    with_redis = fan_out(10, 4, broker=True)
    assert with_redis.received == {"A": 20, "B": 20} and with_redis.redis.startswith("Redis ")
    streams = streams_catch_up(7)
    assert streams.pubsub_got == 0 and streams.stream_got == 7


@needs_redis
def test_the_broker_listens_on_loopback_only_and_is_gone_after_its_block():
    with redis_broker() as broker:
        client = broker.client()
        assert client.ping() and client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
        client.close()
        port = broker.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_no_redis_is_a_clear_error(monkeypatch):
    from netcourse.apps import broker as broker_module

    monkeypatch.setattr(broker_module, "find_redis_server", lambda: (None, "none here"))
    with pytest.raises(ServerStartError, match="Redis is not available: none here"):
        with broker_module.redis_broker():
            pass


@pytest.mark.slow
def test_a_fan_out_node_stops_when_its_parent_closes_stdin():
    node = Node()
    assert node.port > 0
    node.stop()
    assert node.proc.poll() is not None
    bad = subprocess.run([sys.executable, "-m", "netcourse.apps.fanout", "--redis-port", "1"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert bad.returncode != 0  # no Redis on port 1: it fails to start rather than serve half a node


def test_the_node_b_prediction_diagnoses_a_broadcast_that_reaches_everyone():
    from netcourse.experiments.choosing.scaleout import predict_node_b

    p = predict_node_b(clients=4, messages=2)
    scale = {"without": FanOut("none", 4, 2, {"A": 4, "B": 0}, {"A": 4, "B": 4})}
    assert "✅" in repr(p.check(0, scale))
    wrong = repr(p.check(4, scale))
    assert "✅" not in wrong and "sockets it holds" in wrong
    assert "all or nothing" in repr(p.check(2, scale))


def test_repeats_give_each_figure_a_median_and_a_range_and_the_stored_ones_match_section_1():
    from netcourse.experiments.choosing.repeats import SECTION_1, distinguishable, load_repeats, spread_table, spreads

    def sample(p50, size, cpu):
        return {"p50_ms": p50, "bytes_per_msg": size, "cpu_us_per_msg": cpu}

    data = {"runs": 3, "measured_at": "now", "samples": {
        "WebSocket": [sample(26, 295, 80), sample(27, 295, 120), sample(25, 295, 90)],
        "raw TCP": [sample(26, 247, 40), sample(26.5, 247, 100), sample(25.5, 247, 35)]}}
    ws = spreads(data)["WebSocket"]
    assert (ws["p50_ms"].median, ws["p50_ms"].low, ws["p50_ms"].high) == (26, 25, 27)
    assert distinguishable(data, "WebSocket", "raw TCP", "bytes_per_msg")
    assert not distinguishable(data, "WebSocket", "raw TCP", "cpu_us_per_msg")  # 35-100 against 80-120
    assert "295 B (295–295)" in repr(spread_table(data))
    stored = load_repeats()
    assert Workload(**stored["workload"]) == SECTION_1 and stored["runs"] >= 5
    assert set(stored["samples"]) == set(TRANSPORTS)
    assert all(len(runs) == stored["runs"] for runs in stored["samples"].values())


def _conclusions(runs: dict) -> dict:
    """What notebook 10 concludes from section 1's runs, as facts a second run must repeat."""
    rtt = runs["WebSocket"].workload.rtt_ms
    pushes = ("SSE", "WebSocket", "raw TCP", "UDP")
    size = {n: r.bytes_per_message for n, r in runs.items()}
    return {
        "pushes arrive in half a round trip": all(0.4 * rtt <= runs[n].percentile(50) <= 0.7 * rtt for n in pushes),
        "long polling is slower than any push": runs["long polling"].percentile(50) > max(runs[n].percentile(50) for n in pushes),
        "short polling is the slowest poller": runs["short polling"].percentile(50) > runs["long polling"].percentile(50),
        "UDP carries a message in the fewest bytes": min(size, key=size.get) == "UDP",
        "webhooks in the most": max(size, key=size.get) == "webhooks",
        "long polling costs more bytes than a WebSocket": size["long polling"] > size["WebSocket"],
        "nothing lost or duplicated": all(r.lost == 0 and r.duplicates == 0 for r in runs.values()),
    }


@pytest.mark.slow
def test_two_runs_of_section_1_reach_the_same_conclusions():
    from dataclasses import replace

    from netcourse.experiments.choosing.repeats import SECTION_1
    from netcourse.experiments.choosing.transports import compare

    short = replace(SECTION_1, messages=10)  # the notebook's workload, shorter
    first, second = _conclusions(compare(short)), _conclusions(compare(short))
    assert first == second, (first, second)
    assert all(first.values()), first  # and each holds, as the notebook says
