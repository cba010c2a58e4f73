"""The message-log server, the publisher, the pollers, and notebook 03's experiments."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from netcourse import serve
from netcourse.apps.polling import MAX_WAIT, MessageLog, Publisher, make_app
from netcourse.clients.pollers import long_poller, short_poller
from netcourse.experiments.polling.compare import (
    abandoned_waits,
    compare,
    header_sizes,
    naive_versus_correct,
    peek,
)
from netcourse.experiments.polling.link import exercise_longest_interval
from netcourse.runtime.waiting import run_async, wait_until

from .conftest import retried


def test_bad_parameters_get_a_400_with_a_reason():
    answers = peek(["/messages?after=-1", "/messages?after=x", "/messages?wait=abc", "/messages?wait=31",
                        "/messages?wait=nan", "/messages?after=0&wait=30", "/messages?after=%C2%B2",
                        "/messages?after=" + "9" * 40], publish=1)
    statuses = [a[1] for a in answers]
    assert statuses == [400, 400, 400, 400, 400, 200, 400, 400]  # "²".isdigit() is True in Python
    assert "after must be a message id" in answers[0][3]
    assert "wait must be a number of seconds" in answers[2][3]
    assert f"between 0 and {MAX_WAIT:g} seconds" in answers[3][3]
    assert answers[5][2]["Cache-Control"] == "no-store"


def test_short_and_long_polls_answer_as_documented():
    (_, s1, _, b1), (_, s2, _, b2), (_, s3, _, b3) = peek(
        ["/messages?after=0", "/messages?after=1", "/messages?after=2&wait=0.2"], publish=2)
    assert '"id": 1' in b1 and '"id": 2' in b1
    assert '"id": 1' not in b2 and '"id": 2' in b2
    assert '"messages": []' in b3


def test_message_log_cursor():
    log = MessageLog()

    async def fill() -> None:
        for i in range(5):
            log.append(f"m{i}")

    asyncio.run(fill())
    assert [i for i, _, _ in log.after(0)] == [1, 2, 3, 4, 5]
    assert [i for i, _, _ in log.after(3)] == [4, 5]
    assert log.after(5) == [] and log.last_id == 5


def test_publisher_is_seeded():
    a, b = Publisher(5, 2, seed=9).times(), Publisher(5, 2, seed=9).times()
    assert a == b and all(0 < t < 2 for t in a) and a == sorted(a)
    assert Publisher(5, 2, seed=10).times() != a
    burst = Publisher(2, 2, seed=1, burst=3).times()
    assert len(burst) % 3 == 0
    assert Publisher(0, 2).times() == []


@pytest.mark.slow
@retried()
def test_every_poller_gets_every_message_once_in_order():
    run = compare(intervals=(0.1, 0.3), wait=5, rate=8, duration=1.5, seed=5, record=False)
    assert len(run.published) > 5
    for p in run.pollers:
        assert run.exactly_once_in_order(p.name), p.name
        assert p.errors == 0
    summary = run.summary()
    assert [r["poller"] for r in summary] == ["short 0.1 s", "short 0.3 s", "long"]
    long_lat = run.latencies("long")
    short_lat = run.latencies("short 0.3 s")
    assert max(short_lat) < 0.3 + 0.1  # at most one interval (plus scheduling slack)
    assert sum(long_lat) / len(long_lat) < sum(short_lat) / len(short_lat)
    assert run.max_waiting == 1
    assert all(r["bytes per message"] > 0 for r in summary)


@pytest.mark.slow
@pytest.mark.replayable
def test_captured_run_gives_header_sizes():
    run = compare(intervals=(0.5,), wait=5, rate=4, duration=1.0, seed=1)
    sizes = header_sizes(run)
    assert 100 < sizes["request head"] < 300 and 100 < sizes["response head"] < 300
    with pytest.raises(ValueError):
        header_sizes(compare(intervals=(), duration=0.3, record=False))


@pytest.mark.slow
def test_the_notes_long_poller_loses_messages_a_correct_one_does_not():
    run = naive_versus_correct()
    assert run.exactly_once_in_order("long")
    naive = run.poller("long, re-asks only after data")
    assert len(naive.ids) < len(run.published)


def test_fifty_abandoned_long_polls_leave_no_waiting_handler():
    gone = abandoned_waits(50)
    assert gone.before == 50 and gone.after == 0


@pytest.mark.slow
def test_without_handler_cancellation_abandoned_polls_are_held():
    stuck = abandoned_waits(10, handler_cancellation=False, wait=1.0)
    assert stuck.before == 10 and stuck.after == 10


@pytest.mark.slow
def test_a_restarted_server_is_followed_by_its_clients():
    """Ids restart at 1 after a restart; the epoch tells the client to reset its cursor."""
    first = MessageLog()
    srv = serve(make_app(first))
    port = srv.port
    until = time.perf_counter() + 2.5
    result = {}

    def client() -> None:
        result["long"] = run_async(long_poller(srv.url, 0.3, until), timeout=20)

    t = threading.Thread(target=client)
    t.start()
    assert wait_until(lambda: first.requests >= 1, 5)  # the client's first long poll is held
    srv.run(_publish(first, 2))
    assert wait_until(lambda: first.requests >= 2, 5)  # it got both and asked again
    srv.stop()  # the server goes away
    second = MessageLog()
    srv2 = serve(make_app(second), port=port)  # and comes back on the same port, with an empty log
    try:
        assert wait_until(lambda: second.requests >= 1, 5)  # the client found it again
        srv2.run(_publish(second, 3))
        t.join(10)
    finally:
        srv2.stop()
    assert not t.is_alive()
    got = result["long"].ids
    assert got[:2] == [1, 2] and got[2:] == [1, 2, 3]


async def _publish(log: MessageLog, n: int) -> None:
    for i in range(n):
        log.append(f"m{i}")


@pytest.mark.slow
def test_short_poller_alone_and_exercises():
    log = MessageLog()
    with serve(make_app(log)) as srv:
        srv.run(_publish(log, 3))
        res = run_async(short_poller(srv.url, 0.05, time.perf_counter() + 1.0))  # ~20 polls; a busy machine still makes 3
    assert res.ids == [1, 2, 3] and res.requests >= 3 and res.empty >= 2
    assert res.socket_info is not None and res.socket_info.segs_out > 0
    q = exercise_longest_interval(1.0, 200)
    assert q.check(1.8) and q.check("1800 ms") and not q.check(1.9)
    assert "ignores the network" in repr(q.check(2.0)) and "worst" in repr(q.check(0.9)) and "trip back" in repr(q.check(1.6))
