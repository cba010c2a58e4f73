"""serve(): background servers that start, stop, report errors, and leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.request

import pytest
from aiohttp import web

from netcourse import serve
from netcourse.errors import (
    NetcourseTimeout,
    PortInUseError,
    ServerStartError,
    ServerStoppedError,
)
from netcourse.runtime.registry import live_servers, stop_all
from netcourse.runtime.server import Server
from netcourse.runtime.tcpinfo import listening_ports

from .conftest import make_ok_app, own_listening_ports


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


def test_serves_on_loopback_with_os_assigned_port(ok_app):
    with serve(ok_app) as srv:
        assert srv.host == "127.0.0.1"
        assert 1024 <= srv.port <= 65535
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert fetch(srv.url + "/") == b"ok"
        assert srv.port in listening_ports()
    assert srv.port not in listening_ports()
    assert not srv.running


def test_two_servers_at_once():
    with serve(make_ok_app()) as a, serve(make_ok_app()) as b:
        assert a.port != b.port
        assert fetch(a.url + "/") == b"ok" and fetch(b.url + "/") == b"ok"
        assert set(live_servers()) == {a, b}


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_hundred_start_stop_cycles_leave_nothing_behind():
    # Warm up once so lazily created resources (logging, selectors) don't count as leaks.
    serve(make_ok_app()).stop()
    threads, fds = threading.active_count(), _fd_count()
    ports = []
    for _ in range(100):
        srv = serve(make_ok_app())
        ports.append(srv.port)
        srv.stop()
    assert threading.active_count() == threads
    assert _fd_count() == fds
    assert not set(ports) & listening_ports()
    assert live_servers() == []


def test_explicit_stop_is_idempotent_and_releases_port(ok_app):
    srv = serve(ok_app)
    port = srv.port
    srv.stop()
    srv.stop()
    with socket.socket() as s:  # the port can be bound again at once
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_startup_failure_is_raised_in_the_caller_with_a_clear_message():
    async def broken(app: web.Application) -> None:
        raise RuntimeError("database unreachable")

    app = make_ok_app()
    app.on_startup.append(broken)
    threads = threading.active_count()
    with pytest.raises(ServerStartError, match="could not start: RuntimeError: database unreachable") as info:
        serve(app)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert threading.active_count() == threads
    assert live_servers() == []


def test_port_in_use_gives_a_clear_error_and_leaves_nothing():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        threads = threading.active_count()
        with pytest.raises(PortInUseError, match=f"Port {port} on 127.0.0.1 is already in use") as info:
            serve(make_ok_app(), port=port)
        assert "port=0" in str(info.value)
        assert threading.active_count() == threads
        assert live_servers() == []


def test_rejects_a_hostname_and_a_non_app():
    with pytest.raises(ServerStartError, match="IP address"):
        serve(make_ok_app(), host="localhost")
    with pytest.raises(TypeError, match="aiohttp.web.Application"):
        Server(42)  # type: ignore[arg-type]


def test_run_a_coroutine_on_the_server_loop_with_timeout(ok_app):
    with serve(ok_app) as srv:
        async def where() -> int:
            return threading.get_ident()

        assert srv.run(where()) != threading.get_ident()
        with pytest.raises(NetcourseTimeout):
            srv.run(asyncio.sleep(10), timeout=0.05)
    with pytest.raises(ServerStoppedError):
        srv.run(asyncio.sleep(0))


def test_works_from_async_code_too(ok_app):
    async def main() -> tuple[bytes, int]:
        async with serve(ok_app) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            value = await srv.arun(asyncio.sleep(0, result=7))
            return data, value

    data, value = asyncio.run(main())
    assert data.endswith(b"ok") and value == 7


def test_raw_stream_handler_and_stop_with_an_open_connection():
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    srv = serve(echo)
    client = socket.create_connection((srv.host, srv.port), timeout=5)
    client.sendall(b"ping")
    assert client.recv(100) == b"ping"
    srv.stop()  # the connection is still open: stop must not wait for it
    assert client.recv(100) == b""  # the server closed it
    client.close()


def test_handler_errors_are_collected_not_printed(ok_app, capsys):
    async def boom(request: web.Request) -> web.Response:
        raise ValueError("kaput")

    ok_app.router.add_get("/boom", boom)
    with serve(ok_app) as srv:
        with pytest.raises(urllib.error.HTTPError):
            fetch(srv.url + "/boom")
    assert any("kaput" in e for e in srv.errors)
    out = capsys.readouterr()
    assert "kaput" not in out.out + out.err


def test_stop_all_stops_everything():
    servers = [serve(make_ok_app()) for _ in range(3)]
    assert stop_all() == 3
    assert not any(s.running for s in servers)
    assert live_servers() == []


def test_run_async_returns_raises_and_times_out():
    from netcourse.runtime.waiting import run_async

    async def value() -> int:
        await asyncio.sleep(0)
        return 3

    async def boom() -> None:
        raise KeyError("x")

    threads = threading.active_count()
    assert run_async(value()) == 3
    with pytest.raises(KeyError):
        run_async(boom())
    with pytest.raises(NetcourseTimeout):
        run_async(asyncio.sleep(5), timeout=0.05)
    assert threading.active_count() == threads


# -- regressions: each of these failed before the runtime was reworked -----------------------------


def test_servers_do_not_leak_loggers():
    import logging

    serve(make_ok_app()).stop()
    before = len(logging.Logger.manager.loggerDict)
    for _ in range(30):
        serve(make_ok_app()).stop()
    assert len(logging.Logger.manager.loggerDict) == before


def test_a_timeout_error_raised_by_the_coroutine_itself_is_not_relabelled(ok_app):
    from netcourse.runtime.waiting import run_async

    async def gives_up() -> None:
        raise TimeoutError("the peer never answered")

    with serve(ok_app) as srv:
        with pytest.raises(TimeoutError, match="the peer never answered") as info:
            srv.run(gives_up(), timeout=5)
        assert not isinstance(info.value, NetcourseTimeout)

        async def via_arun() -> None:
            await srv.arun(gives_up(), timeout=5)

        with pytest.raises(TimeoutError, match="the peer never answered") as info:
            asyncio.run(via_arun())
        assert not isinstance(info.value, NetcourseTimeout)
    with pytest.raises(TimeoutError, match="the peer never answered") as info:
        run_async(gives_up(), timeout=5)
    assert not isinstance(info.value, NetcourseTimeout)


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    from netcourse.runtime.waiting import wait_until

    return wait_until(predicate, timeout)


def test_a_start_that_times_out_while_on_startup_waits_leaves_nothing_running():
    async def waits_forever(app: web.Application) -> None:
        await asyncio.Event().wait()

    app = make_ok_app()
    app.on_startup.append(waits_forever)
    threads = threading.active_count()
    with pytest.raises(ServerStartError, match="did not start listening within 0.2 s"):
        serve(app, start_timeout=0.2)
    assert threading.active_count() == threads
    assert live_servers() == []


@pytest.mark.slow
def test_a_start_blocked_in_a_synchronous_call_stays_visible_until_its_thread_ends():
    import time as _time

    async def blocks(app: web.Application) -> None:
        _time.sleep(2.0)  # a blocking call: the server's loop cannot even be cancelled

    app = make_ok_app()
    app.on_startup.append(blocks)
    listening = own_listening_ports()
    with pytest.raises(ServerStartError):
        serve(app, start_timeout=0.1, shutdown_timeout=0.1)
    stuck = live_servers()
    assert len(stuck) == 1 and stuck[0].state == "stopping"
    assert any("did not end" in e for e in stuck[0].errors)
    assert _wait_for(lambda: live_servers() == [])
    assert stuck[0].state == "stopped"
    assert own_listening_ports() <= listening


def test_a_zero_start_timeout_never_leaves_a_server_listening():
    threads = threading.active_count()
    listening = own_listening_ports()

    async def brief_startup(app: web.Application) -> None:
        await asyncio.sleep(0.001)

    failed = 0
    for i in range(24):
        app = make_ok_app()
        if i % 2:
            app.on_startup.append(brief_startup)
        try:
            srv = serve(app, start_timeout=(0, 0.0005, 0.001, 0.002)[i % 4])
        except ServerStartError:
            failed += 1
        else:  # it may win the race; then it really runs, and stops like any other
            assert srv.running
            srv.stop()
    assert failed > 0
    assert _wait_for(lambda: live_servers() == [] and threading.active_count() == threads)
    assert own_listening_ports() <= listening


@pytest.mark.slow
def test_a_stop_that_times_out_keeps_the_server_listed_with_the_reason():
    import time as _time

    async def slow_cleanup(app: web.Application) -> None:
        _time.sleep(1.0)

    app = make_ok_app()
    app.on_cleanup.append(slow_cleanup)
    srv = serve(app)
    with pytest.raises(NetcourseTimeout, match="still listed in live_servers"):
        srv.stop(timeout=0.1)
    assert srv in live_servers()
    assert any("did not end within 0.1 s" in e for e in srv.errors)
    assert _wait_for(lambda: live_servers() == [])
    assert srv.state == "stopped"


def test_serving_the_same_app_twice_says_what_to_do():
    app = make_ok_app()
    with serve(app):
        pass
    with pytest.raises(ServerStartError, match="served once already.*Build a fresh one"):
        serve(app)


def test_errors_are_bounded(ok_app):
    from netcourse.runtime.server import MAX_ERRORS

    async def boom(request: web.Request) -> web.Response:
        raise ValueError("kaput")

    ok_app.router.add_get("/boom", boom)
    with serve(ok_app) as srv:
        for _ in range(MAX_ERRORS + 20):
            with pytest.raises(urllib.error.HTTPError):
                fetch(srv.url + "/boom")
    assert len(srv.errors) == MAX_ERRORS


def test_ports_must_be_numbers():
    with pytest.raises(ServerStartError, match="port must be a number"):
        serve(make_ok_app(), port=True)  # type: ignore[arg-type]


@pytest.mark.slow
def test_slow_header_clients_cannot_starve_a_server(ok_app):
    """A cap full of dawdlers: the slowest are closed to let a real request in, and the deadline ends the rest."""
    slow = []
    with serve(ok_app, max_connections=20, header_timeout=0.5) as srv:
        try:
            for _ in range(50):
                s = socket.create_connection((srv.host, srv.port), timeout=5)
                s.sendall(b"GET / HTTP/1.1\r\nHo")  # and never the rest
                slow.append(s)
            assert fetch(srv.url + "/") == b"ok"  # still served
            assert _wait_for(lambda: srv.admission.evicted >= 30, 2)  # 50 came, 20 fit
            for s in slow:  # by the deadline every dawdler has been closed by the server
                s.settimeout(3)
                try:
                    assert s.recv(100) == b""
                except ConnectionResetError:
                    pass
        finally:
            for s in slow:
                s.close()


def test_a_start_refused_by_the_private_api_check_leaves_the_server_new(monkeypatch):
    from netcourse.runtime import server as server_module

    def refuse() -> None:
        raise ServerStartError("pretending aiohttp renamed something")

    monkeypatch.setattr(server_module, "check_private_apis", refuse)
    srv = Server(make_ok_app())
    with pytest.raises(ServerStartError, match="pretending"):
        srv.start()
    assert srv.state == "new"
    srv.stop()  # no AssertionError: nothing was started
    assert srv.state == "stopped"
