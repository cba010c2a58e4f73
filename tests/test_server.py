"""serve(): background servers that start, stop, report errors, and leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.request

import pytest
from aiohttp import web

from netcourse import serve, stop_all
from netcourse.errors import NetcourseTimeout, PortInUseError, ServerStartError, ServerStoppedError
from netcourse.kernel import listening_ports
from netcourse.server import Server, live_servers

from .conftest import make_ok_app


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
    from netcourse.server import run_async

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
