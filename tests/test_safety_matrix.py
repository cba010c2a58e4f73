"""Every promise of the README's Safety section, against every course app that can break it: one test per
promise per app. (The attack review's safety matrix, ../shared/reviews/attack.md, made permanent.)"""

from __future__ import annotations

import socket
import time

import pytest

from netcourse import serve
from netcourse.apps import chat, polling, safety, streaming, tls
from netcourse.apps import webhooks as webhook_app
from netcourse.apps.wsserver import make_ws_handler
from netcourse.experiments import start_here
from netcourse.protocols.webhooks import new_secret
from netcourse.protocols.wsconn import client_request, new_key
from netcourse.runtime.tcpinfo import tcp_sockets
from netcourse.runtime.waiting import wait_until

from .test_safety import http, raw_exchange

from .conftest import retried


def _apps(tmp_path) -> dict:
    return {
        "polling": (polling.make_app, safety.MAX_BODY),
        "streaming": (streaming.make_app, safety.MAX_BODY),
        "chat": (lambda: chat.ChatServer(str(tmp_path / "chat.db")).app(), safety.MAX_BODY),
        "webhook receiver": (lambda: webhook_app.Receiver(str(tmp_path / "inbox.db"), new_secret()).app(),
                             webhook_app.MAX_BODY),
        "tls app (served plain)": (tls.make_tls_app, safety.MAX_BODY),
        "hello (notebook 00)": (start_here.make_hello_app, safety.MAX_BODY),
    }


APPS = ["polling", "streaming", "chat", "webhook receiver", "tls app (served plain)", "hello (notebook 00)"]


@pytest.fixture
def app(request, tmp_path):
    make, max_body = _apps(tmp_path)[request.param]
    return make, max_body


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize("app", APPS, indirect=True)
def test_a_foreign_host_gets_421(app):
    make, _ = app
    with serve(make()) as srv:
        assert raw_exchange(srv.port, http("GET", "/", srv.port, host="evil.example"))[0] == 421
    assert not srv.errors


@pytest.mark.parametrize("app", APPS, indirect=True)
def test_a_foreign_origin_may_not_post(app):
    make, _ = app
    with serve(make()) as srv:
        status, _ = raw_exchange(srv.port, http("POST", "/anything", srv.port, origin="http://evil.example", body=b"x"))
    assert status == 403 and not srv.errors


@pytest.mark.parametrize("app", APPS, indirect=True)
def test_a_head_over_8_kib_gets_431(app):
    make, _ = app
    with serve(make()) as srv:
        request = http("GET", "/", srv.port).replace(b"Connection: close", b"Connection: close\r\nX-Pad: " + b"a" * 9000)
        assert raw_exchange(srv.port, request)[0] == 431
    assert not srv.errors


@pytest.mark.parametrize("app", APPS, indirect=True)
def test_a_body_over_the_limit_gets_413(app):
    make, max_body = app
    with serve(make()) as srv:
        assert raw_exchange(srv.port, http("POST", "/anything", srv.port, body=b"x" * (max_body + 1)))[0] == 413
    assert not srv.errors


@pytest.mark.slow
@pytest.mark.parametrize("app", APPS, indirect=True)
def test_a_dribbled_body_gets_408(app, monkeypatch):
    from .test_admission import _dribble_body

    make, _ = app
    monkeypatch.setattr(safety, "BODY_TIMEOUT", 0.6)
    with serve(make(), header_timeout=0.3) as srv:
        assert _dribble_body(srv.port, "/anything", 3.0).startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("app", APPS, indirect=True)
@retried()
def test_a_half_sent_head_is_closed_at_its_deadline(app):
    make, _ = app
    with serve(make(), header_timeout=0.3) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHo")
            t = time.monotonic()
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - t < 2


@pytest.mark.parametrize("app", APPS, indirect=True)
def test_the_connection_cap_is_exact(app):
    make, _ = app
    with serve(make(), max_connections=8) as srv:
        socks = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(20)]
        try:
            assert wait_until(lambda: sum(1 for e in tcp_sockets() if e.local[1] == srv.port
                                          and e.state == "ESTABLISHED") == 8, 3)
            assert raw_exchange(srv.port, http("GET", "/", srv.port))[0] not in (0, 500)  # a newcomer is served
        finally:
            for s in socks:
                s.close()


@pytest.mark.parametrize("app", APPS, indirect=True)
def test_malformed_bodies_get_4xx_never_500(app):
    make, _ = app
    with serve(make()) as srv:
        bad_chunks = http("POST", "/anything", srv.port).replace(
            b"Content-Length: 0", b"Transfer-Encoding: chunked") + b"zz\r\nhello\r\n0\r\n\r\n"
        status = raw_exchange(srv.port, bad_chunks)[0]
        gzip_junk = http("POST", "/anything", srv.port, body=b"not gzip").replace(
            b"Content-Length", b"Content-Encoding: gzip\r\nContent-Length")
        status2 = raw_exchange(srv.port, gzip_junk)[0]
    assert 400 <= status < 500 and 400 <= status2 < 500, (status, status2)
    assert not srv.errors, srv.errors


@pytest.mark.parametrize("app", APPS, indirect=True)
def test_stop_leaves_no_connection(app):
    make, _ = app
    srv = serve(make())
    socks = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(5)]
    try:
        socks[0].sendall(b"GET / HTTP/1.1\r\nHo")
        srv.stop()
        assert not [e for e in tcp_sockets() if e.local[1] == srv.port and e.state in ("ESTABLISHED", "LISTEN")]
    finally:
        for s in socks:
            s.close()


# -- the raw WebSocket server: the same promises, on its own code path ---------------------------------------


def test_the_websocket_server_keeps_the_same_promises():
    with serve(make_ws_handler(allowed_origins={"http://127.0.0.1"}, handshake_timeout=0.3), max_connections=8) as srv:
        key = new_key()
        good = client_request("127.0.0.1", srv.port, key, origin="http://127.0.0.1")
        assert raw_exchange(srv.port, good.replace(f"Host: 127.0.0.1:{srv.port}".encode(), b"Host: evil.example"))[0] == 421
        assert raw_exchange(srv.port, client_request("127.0.0.1", srv.port, key, origin="http://evil.example"))[0] == 403
        big = good.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n")
        assert raw_exchange(srv.port, big)[0] == 431
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:  # a handshake never finished
            s.sendall(b"GET / HTTP/1.1\r\nHo")
            assert s.recv(100) == b""
        socks = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(20)]
        try:
            assert wait_until(lambda: len(srv.admission.open) == 8, 3)
            assert raw_exchange(srv.port, good)[0] == 101  # the dawdlers made room
        finally:
            for s in socks:
                s.close()
