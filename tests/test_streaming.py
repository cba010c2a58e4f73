"""Notebook 06's machinery: the streaming server, the buffering proxy and the experiments."""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading

import aiohttp
import pytest

from netcourse.apps.polling import MessageLog
from netcourse.apps.proxy import make_proxy
from netcourse.apps.streaming import make_app
from netcourse.experiments.streaming.buffering import (
    Buffering,
    app_streams,
    buffer_grid,
    buffering,
    predict_first_event_delay,
)
from netcourse.experiments.streaming.chunked import (
    chunk_boundaries,
    chunk_view,
    chunked_on_the_wire,
    exercise_event_chunk,
    exercise_framing_bytes,
)
from netcourse.experiments.streaming.common import UA, event_body_bytes
from netcourse.experiments.streaming.cost import (
    connection_limit,
    long_poll_bytes,
    per_message_bytes,
    request_head_sizes,
)
from netcourse.experiments.streaming.events import (
    _sse_run,
    exercise_reconnect_head,
    exercise_replay_first,
    resync_demo,
    retry_delays,
    sse_across_a_link,
    sse_resume,
)
from netcourse.protocols.chunked import Chunk, ChunkedDecoder, Data
from netcourse.protocols.sse import SSEDecoder
from netcourse.runtime.registry import live_servers
from netcourse.runtime.server import serve
from netcourse.runtime.waiting import run_async
from netcourse.traffic.packets import C2S, PacketRow, presumed_lost
from netcourse.traffic.wire import tcp_payload_streams

from .conftest import retried


def _get(port: int, path: str, headers: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_each_write_is_one_chunk_and_fixed_has_a_length():
    with serve(make_app()) as srv:
        raw = _get(srv.port, "/chunked?pieces=4&gap=0&size=20")
        head, body = raw.split(b"\r\n\r\n", 1)
        assert b"Transfer-Encoding: chunked" in head
        events = ChunkedDecoder().feed(body)
        assert [e.size for e in events if isinstance(e, Chunk)] == [20, 20, 20, 20, 0]
        fixed = _get(srv.port, "/fixed?pieces=4&size=20")
        assert b"Content-Length: 80" in fixed and fixed.endswith(b"".join(e.data for e in events if isinstance(e, Data)))
        for bad in ("/chunked?pieces=0", "/chunked?size=x", "/chunked?gap=9", "/fixed?pieces=1000"):
            assert _get(srv.port, bad).startswith(b"HTTP/1.1 400"), bad
    assert not live_servers()


def test_the_stream_refuses_a_foreign_host_and_too_many_streams():
    with serve(make_app(max_streams=1, keepalive=0.2)) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 421")

        async def two() -> tuple[int, int]:
            async with aiohttp.ClientSession() as session:
                first = await session.get(srv.url + "/events")
                second = await session.get(srv.url + "/events")
                statuses = first.status, second.status
                first.close()
                second.close()
                return statuses

        assert run_async(two(), 10) == (200, 503)


@pytest.mark.slow
@retried()
def test_sse_resume_delivers_every_event_exactly_once_across_drops():
    run = _sse_run(12, 0.05, 4, 150, 100, None)  # the scenario's run, without its capture
    assert run.published == list(range(1, 13))
    assert [i for i, _, _ in run.received] == run.published and not run.lost and not run.duplicated
    assert len(run.connections) == 3 and [c[1] for c in run.connections] == [None, "4", "8"]
    assert all(100 <= g <= 400 for g in run.gaps_ms()), run.gaps_ms()


@pytest.mark.slow
@pytest.mark.replayable
def test_the_captured_stream_carries_event_types_and_the_reconnection_head_question():
    run = sse_resume()
    text = run.first_response_text()
    assert "id: 3\nevent: alert\ndata: event 3\n\n" in text and "event: alert\ndata: event 1\n" not in text
    events = SSEDecoder().feed(text.encode())
    assert [e.event for e in events if e.data] == ["message", "message", "alert", "message"]
    requests = tcp_payload_streams(run.capture.packets, run.capture.table())[C2S]
    second = [h for h in requests.split(b"\r\n\r\n") if h.startswith(b"GET /events")][1]
    assert b"Last-Event-ID: 4" in second
    q = exercise_reconnect_head(run)
    assert q.check(len(second) + 4) and not q.check(len(second))


@pytest.mark.slow
@retried()
def test_retry_sets_the_reconnection_delay():
    delays = retry_delays((50, 300))
    assert all(45 <= g <= 200 for g in delays[50]) and all(290 <= g <= 500 for g in delays[300]), delays


@pytest.mark.slow
def test_a_cursor_too_old_or_foreign_gets_a_resync_never_a_silent_gap():
    results = dict(resync_demo(keep=3, published=10, asks=("2", "9", "banana", "999")))
    too_old = results["2"]
    assert too_old[0].event == "resync" and "3 to 7" in too_old[0].data and too_old[0].id == "7"
    assert [e.id for e in too_old[1:]] == ["8", "9", "10"]
    assert [e.id for e in results["9"]] == ["10"]
    assert results["banana"][0].event == "resync" and "not an event id" in results["banana"][0].data
    assert results["999"][0].event == "resync" and "ahead" in results["999"][0].data


def test_an_idle_stream_sends_comments():
    with serve(make_app(keepalive=0.1)) as srv:

        async def read() -> bytes:
            async with aiohttp.ClientSession() as session:
                async with session.get(srv.url + "/events") as resp:
                    data = b""
                    while data.count(b": keep-alive") < 2:
                        data += await asyncio.wait_for(resp.content.readany(), 2)
                    return data

        data = run_async(read(), 10)
    assert data.startswith(b"retry: 1000\nid: 0\n\n") and b": keep-alive\n" in data
    assert SSEDecoder().feed(data) == []  # comments dispatch nothing


@retried()
def test_buffering_proxies_hold_events_and_each_fix_releases_them():
    b = buffering(events=6, gap=0.05, size=100)
    assert b.first("direct") < 50
    for held in ("proxy buffers 4 KiB", "proxy compresses (gzip)"):
        assert b.first(held) > 200 and b.lumps(held) == [6], (held, b.delays[held])
    for fix in [c for c in b.delays if c.startswith("fix:")]:
        assert b.worst(fix) < 100 and len(b.lumps(fix)) == 6, (fix, b.delays[fix])
    assert b.lumps("no-transform, but the proxy buffers") == [6]  # no-transform is about bytes, not timing


def test_the_proxy_compresses_correctly_and_honours_the_escape_hatches():
    with serve(make_app()) as srv, serve(make_proxy(srv.host, srv.port, buffer=None, gzip=True)) as proxy:

        async def fetch(path: str) -> tuple[dict, bytes]:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{proxy.port}{path}") as resp:
                    return dict(resp.headers), await resp.read()

        headers, body = run_async(fetch("/fixed?pieces=50&size=100"), 10)
        direct = _get(srv.port, "/fixed?pieces=50&size=100").split(b"\r\n\r\n", 1)[1]
        assert headers.get("Content-Encoding") == "gzip" and body == direct
    # a proxy whose upstream is gone answers 502 with the reason
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
        with serve(make_proxy("127.0.0.1", dead_port)) as proxy:
            answer = _get(proxy.port, "/anything")
    assert answer.startswith(b"HTTP/1.1 502") and b"cannot be reached" in answer
    assert not live_servers()


def test_x_accel_buffering_is_honoured_and_removed():
    log = MessageLog()
    with serve(make_app(log)) as srv, serve(make_proxy(srv.host, srv.port, buffer=4096, gzip=True)) as proxy:

        async def go() -> tuple[dict, list]:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{proxy.port}/events?accel=no&drop=1") as resp:
                    srv.loop.call_soon_threadsafe(log.append, "hello")
                    return dict(resp.headers), SSEDecoder().feed(await resp.read())

        headers, events = run_async(go(), 10)
    # as nginx: no buffering for this response, and the compressor flushes every piece (still gzip)
    assert "X-Accel-Buffering" not in headers and headers.get("Content-Encoding") == "gzip"
    assert [e.data for e in events] == ["hello"]


def test_chunked_capture_and_its_exercise():
    run = chunked_on_the_wire(pieces=5, gap=0.02, size=16)
    body = run.captured_chunked_body()
    view = chunk_view(body)
    assert b"".join(part for _, part in view.parts) == body
    assert [k for k, _ in view.parts][:4] == ["size", "crlf", "data", "crlf"] and view.parts[-1] == ("end", b"\r\n")
    q = exercise_framing_bytes(run)
    assert q.check(35) and "end of the body" in repr(q.check(30)) and "CRLF after each" in repr(q.check(25))
    assert "background" in view._repr_html_()
    assert len(run.chunked_rows()) < len(run.capture.table())


@pytest.mark.slow
@pytest.mark.replayable
def test_chunks_are_split_and_merged_by_tcp():
    b = chunk_boundaries()
    big, small = b.chunks["big chunks"], b.chunks["small chunks, Nagle on"]
    assert [e - s for s, e in big] == [1200] * 3 and [e - s for s, e in small] == [40] * 8
    assert len(b.segments["big chunks"]) >= 9  # each 1,200-byte chunk needs 3 segments at MTU 576
    carrying = [r for r in b.rows("small chunks, Nagle on") if "chunk" in r]
    assert any(r.count("chunk") >= 2 for r in carrying)  # several chunks in one segment
    assert sum(b.reads["big chunks"]) == 3600


@pytest.mark.slow
@retried()
def test_six_connections_per_host_make_the_seventh_request_wait():
    held = connection_limit(limit=6, streams=6, hold=0.5)
    free = connection_limit(limit=7, streams=6, hold=0.5)
    assert held.waited_ms > 300 and free.waited_ms < 200, (held, free)


@pytest.mark.slow
@retried()
def test_an_event_costs_half_a_round_trip_across_the_link():
    run = sse_across_a_link(rtt_ms=100, events=4, gap=0.05)
    assert 45 <= statistics.median(run.delays) <= 90, run


@pytest.mark.slow
def test_per_message_bytes_and_the_exercises():
    sizes = per_message_bytes(20)
    assert sizes["WebSocket frame (server → client)"] == 2
    poll = long_poll_bytes(20)
    assert 100 < poll["request head"] < 300 and 100 < poll["response head"] < 300 and 20 < poll["JSON around the message"]
    assert 15 < sizes["SSE (id, data, chunk framing)"] < 40 < \
        sizes["long poll (request + response heads + JSON, notebook 03's server)"] == sum(poll.values())
    asked, events = resync_demo(keep=5, published=20, asks=("12",))[0]  # the server's own answer
    first = next(int(e.id) for e in events if e.event == "message")
    assert exercise_replay_first(5, 20, 12).check(first - 12 - 1) and first == 16
    chunk = exercise_event_chunk(b"id: 12\ndata: event 12\n\n")
    assert chunk.check(len(b"17\r\nid: 12\ndata: event 12\n\n\r\n")) and "hexadecimal" not in repr(chunk.check(23))
    p = predict_first_event_delay()
    b = Buffering({"proxy buffers 4 KiB": [560.0] * 10}, 10, 0.06, 100)
    assert p.check(540, b) and not p.check(5, b)


def test_two_connections_starting_at_seq_1_are_not_resends():
    def row(no, src, dst, seq):
        return PacketRow(no, 0.0, "C→S", "TCP", src, dst, "PA", seq, 1, 14, 20, 32, 10)

    rows = [row(1, "c:1", "s:80", 1), row(2, "c:2", "s:80", 1), row(3, "c:2", "s:80", 1)]
    assert presumed_lost(rows) == {2}
    assert not [t for t in threading.enumerate() if t.name.startswith("netcourse") and not t.daemon]


@pytest.mark.slow
def test_buffer_sizes_release_events_in_the_lumps_the_notebook_states():
    assert event_body_bytes(100, 1) == 114 and event_body_bytes(100, 10) == 115
    expected = {"0 B": [1] * 10, "128 B": [1, 2, 2, 2, 2, 1],  # a 19-byte prelude + 114 fills 128 at once
                "256 B": [3, 3, 3, 1], "1024 B": [9, 1], "2048 B": [10]}
    seen = []
    for _ in range(3):  # lumps are arrivals 10 ms apart: a busy machine can stall one run's reader past a 60 ms gap
        grid = buffer_grid((0, 128, 256, 1024, 2048), events=10, gap=0.06, size=100)
        seen.append({case: grid.lumps(case) for case in expected})
        if seen[-1] == expected:
            break
    else:
        pytest.fail(f"lumps {seen}, expected {expected}")


@pytest.mark.slow
def test_a_client_that_stops_reading_is_dropped_and_frees_its_slot(monkeypatch):
    import netcourse.apps.streaming as streaming

    monkeypatch.setattr(streaming, "WRITE_TIMEOUT", 0.5)
    log = MessageLog(limit=500)
    app = make_app(log, max_streams=1)
    with serve(app) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        try:
            deadline = __import__("time").monotonic() + 3
            while app_streams(app) < 1 and __import__("time").monotonic() < deadline:
                __import__("time").sleep(0.01)

            async def flood() -> None:
                for _ in range(300):
                    log.append("x" * 20_000)
                    await asyncio.sleep(0)

            asyncio.run_coroutine_threadsafe(flood(), srv.loop).result(10)
            deadline = __import__("time").monotonic() + 10
            while app_streams(app) and __import__("time").monotonic() < deadline:
                __import__("time").sleep(0.05)
            assert app_streams(app) == 0  # the stalled reader was dropped, its slot free again
        finally:
            sock.close()
        assert _get(srv.port, "/fixed?pieces=100&size=65536").startswith(b"HTTP/1.1 400")  # over MAX_BODY


def test_the_proxy_refuses_forbidden_framing_and_caps_its_clients():
    import time

    async def bad_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        kind = head.split(b" ")[1].decode()
        answers = {
            "/two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
            "/injected": b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: pwn=1\r\nContent-Length: 0\r\n\r\n",
            "/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "/coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
            "/bad-chunks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        }
        writer.write(answers[kind])
        await writer.drain()
        writer.close()

    with serve(bad_upstream) as up, serve(handler := make_proxy(up.host, up.port), max_connections=2) as proxy:
        for path in ("/two-lengths", "/injected", "/continue", "/coding"):
            answer = _get(proxy.port, path)
            assert answer.startswith(b"HTTP/1.1 502") and b"pwn" not in answer.split(b"\r\n\r\n")[0], (path, answer)
        cut = _get(proxy.port, "/bad-chunks")  # the head was already sent: the connection is cut, no 502 inside
        assert cut.startswith(b"HTTP/1.1 200") and b"502" not in cut
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        deadline = time.monotonic() + 3
        while handler.connections() and time.monotonic() < deadline:  # the last answer's handler is finishing
            time.sleep(0.01)
        idle = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(2)]  # two silent clients
        try:
            deadline = time.monotonic() + 3
            while handler.connections() < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert handler.connections() == 2, handler.connections()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as third:
                third.sendall(b"GET /two-lengths HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert third.recv(100).startswith(b"HTTP/1.1 502")  # served: a silent client made room
            assert proxy.admission.evictions.get("over the cap", 0) >= 1
        finally:
            for s in idle:
                s.close()


def test_request_head_sizes_match_the_bytes_on_the_socket():
    """The rebuilt head size against an oracle: what a raw socket server actually received."""
    received: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                received.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        server = threading.Thread(target=answer, daemon=True)
        server.start()
        trace, heads = request_head_sizes()

        async def go() -> None:
            async with aiohttp.ClientSession(trace_configs=[trace], headers=UA) as session:
                async with session.get(f"http://127.0.0.1:{port}/messages?after=12&wait=5") as resp:
                    await resp.read()

        run_async(go(), 10)
        server.join(5)
    assert heads == [received[0].index(b"\r\n\r\n") + 4]
