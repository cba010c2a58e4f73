"""Course servers against the browser next door: foreign Host and Origin refused, every answer bounded."""

from __future__ import annotations

import socket

import pytest

from netcourse import serve
from netcourse.apps import polling
from netcourse.apps.safety import host_problem, origin_problem
from netcourse.apps.wsserver import make_ws_handler
from netcourse.experiments import start_here
from netcourse.experiments.websockets.cost import overhead
from netcourse.protocols.httpwire import parse_head, split_head
from netcourse.protocols.wsconn import client_request, new_key


def raw_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send one request on a fresh connection; return (status, everything the server sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while (found := split_head(data)) is None:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head = parse_head(found[0]) if found else None
    return (head.status if head else 0), data


def http(method: str, path: str, port: int, *, host: str | None = None, origin: str | None = None, body: bytes = b"",
         content_type: str = "text/plain") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Connection: close"]
    if origin:
        lines.append(f"Origin: {origin}")
    if body or method == "POST":
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


APPS = {
    "polling": polling.make_app,
    "hello (notebook 00)": start_here.make_hello_app,
}


@pytest.mark.parametrize("name", APPS)
def test_every_app_refuses_a_foreign_host_and_accepts_its_own_names(name):
    with serve(APPS[name]()) as srv:
        for host in ("evil.example", f"evil.example:{srv.port}", "127.0.0.1.nip.io", "localhost.evil.example:80"):
            status, data = raw_exchange(srv.port, http("GET", "/", srv.port, host=host))
            assert status == 421, (host, data)
            assert b"DNS rebinding" in data or b"not this server" in data
        for host in (f"127.0.0.1:{srv.port}", f"localhost:{srv.port}", f"LOCALHOST:{srv.port}", "localhost"):
            status, _ = raw_exchange(srv.port, http("GET", "/", srv.port, host=host))
            assert status != 421, host


def test_a_foreign_origin_cannot_change_state_but_may_read():
    with serve(polling.make_app()) as srv:
        post = lambda origin: raw_exchange(srv.port, http("POST", "/messages", srv.port, origin=origin, body=b"hi"))  # noqa: E731
        assert post("http://evil.example")[0] == 403
        assert post(f"http://127.0.0.1:{srv.port}")[0] == 200
        assert post(None)[0] == 200  # the course's own Python clients send no Origin
        status, _ = raw_exchange(srv.port, http("GET", "/messages?after=0", srv.port, origin="http://evil.example"))
        assert status == 200  # reading changes nothing (and the browser will not show it to the page: no CORS)


def test_websocket_server_checks_host_too():
    key = new_key()
    with serve(make_ws_handler()) as srv:
        evil = client_request("127.0.0.1", srv.port, key).replace(f"Host: 127.0.0.1:{srv.port}".encode(), b"Host: evil.example")
        assert raw_exchange(srv.port, evil)[0] == 421
        assert raw_exchange(srv.port, client_request("127.0.0.1", srv.port, key))[0] == 101


def test_the_http_apps_of_notebook_05_are_guarded():
    o = overhead(20)  # runs its app; the guard adds nothing to a normal exchange
    assert o.http_total > 150


def test_policy_functions():
    assert host_problem("127.0.0.1:8080", 8080) is None
    assert host_problem("[::1]:8080", 8080) is None
    assert host_problem("192.0.2.2:8080", 8080, local_address="192.0.2.2") is None  # an emulated link's far end
    assert host_problem("192.0.2.2:8080", 8080) is not None
    assert "DNS rebinding" in host_problem("127.0.0.1.nip.io:8080", 8080)
    assert host_problem(None, 8080).startswith("the request has no Host")
    assert origin_problem([], 80) is None
    assert origin_problem(["http://a", "http://b"], 80) == "more than one Origin header"


def test_polling_bodies_answer_4xx_never_500():
    with serve(polling.make_app()) as srv:
        cases = [
            (http("POST", "/messages", srv.port, body=b"\xff\xfe"), 400),  # not UTF-8
            (http("POST", "/messages", srv.port, body=b"hi", content_type="text/plain; charset=klingon"), 415),
            (http("POST", "/messages", srv.port, body=b"{}", content_type="application/json"), 415),
            (http("POST", "/messages", srv.port, body=b"x" * 70_000), 413),
            (http("POST", "/messages", srv.port, body="é".encode("latin-1"), content_type="text/plain; charset=latin-1"), 200),
        ]
        for request, expected in cases:
            assert raw_exchange(srv.port, request)[0] == expected, request[:120]
    assert not srv.errors


def test_the_log_is_bounded_and_an_old_cursor_is_told_to_resync():
    log = polling.MessageLog(limit=5)

    async def fill() -> None:
        for i in range(12):
            log.append(f"m{i}")

    import asyncio

    asyncio.run(fill())
    assert [i for i, _, _ in log.after(7)] == [8, 9, 10, 11, 12]
    with pytest.raises(polling.CursorTooOld) as info:
        log.after(3)
    assert info.value.resync_after == 7
    with serve(polling.make_app(log)) as srv:
        status, data = raw_exchange(srv.port, http("GET", "/messages?after=0", srv.port))
    assert status == 410 and b'"resync_after": 7' in data


def test_answers_are_paged():
    import json

    log = polling.MessageLog()
    with serve(polling.make_app(log)) as srv:

        async def fill() -> None:
            for i in range(polling.MAX_PAGE + 30):
                log.append("x" * 100)

        srv.run(fill())
        _, data = raw_exchange(srv.port, http("GET", "/messages?after=0", srv.port))
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert len(body["messages"]) == polling.MAX_PAGE and body["more"] is True
        _, data = raw_exchange(srv.port, http("GET", f"/messages?after={polling.MAX_PAGE}", srv.port))
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert len(body["messages"]) == 30 and body["more"] is False


def test_a_poller_that_falls_behind_counts_the_gap_and_carries_on():
    import time

    from netcourse.clients.pollers import short_poller
    from netcourse.runtime.waiting import run_async

    log = polling.MessageLog(limit=3)
    with serve(polling.make_app(log)) as srv:

        async def fill() -> None:
            for i in range(10):
                log.append(f"m{i}")

        srv.run(fill())
        res = run_async(short_poller(srv.url, 0.05, time.perf_counter() + 0.2))
    assert res.gaps == 1 and res.ids == [8, 9, 10]


def test_bodies_that_break_in_transit_answer_4xx():
    with serve(polling.make_app()) as srv:
        undefined = http("POST", "/messages", srv.port, body=b"hi", content_type="text/plain; charset=undefined")
        assert raw_exchange(srv.port, undefined)[0] == 400
        gz = http("POST", "/messages", srv.port, body=b"abcde").replace(b"Content-Length", b"Content-Encoding: gzip\r\nContent-Length")
        assert raw_exchange(srv.port, gz)[0] == 400
    assert not srv.errors
    with serve(start_here.make_hello_app()) as srv:
        for size in ("abc", "1e3", "9" * 5000, "-1"):
            assert raw_exchange(srv.port, http("GET", f"/hello?size={size}", srv.port))[0] == 400, size
    assert not srv.errors


def test_a_dawdler_on_a_kept_alive_connection_is_evicted_too():
    with serve(polling.make_app(), max_connections=4, header_timeout=1.0) as srv:
        held = []
        try:
            for _ in range(4):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall(f"GET /stats HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
                s.recv(4096)
                s.sendall(b"GET /stats HTTP/1.1\r\nX-Slow: a")  # a second head, never finished
                held.append(s)
            status, _ = raw_exchange(srv.port, http("GET", "/stats", srv.port))
            assert status == 200  # a dawdler made room
        finally:
            for s in held:
                s.close()


def test_an_absolute_form_target_names_the_host():
    with serve(polling.make_app()) as srv:
        request = http("GET", "http://evil.example/messages", srv.port)
        assert raw_exchange(srv.port, request)[0] == 421
