"""``make bench`` rows for the runtime under abuse and over a long session (issue 24).

Each function measures and returns numbers; ``bench.main`` prints them. Nothing here asserts: the tests check
the behaviour (tests/test_admission.py, test_chat_limits.py, test_learner_session.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import tempfile
import threading
import time

from ..apps.chat import ChatServer
from ..protocols.wsconn import Connection, client_request, new_key
from ..protocols.wsframe import Frame, FrameDecoder, Opcode
from ..runtime.server import serve
from ..runtime.tcpinfo import tcp_sockets
from ..runtime.waiting import wait_until
from ..runtime.sockets import file_limit
from .loadbench import tiny_app

__all__ = ["long_lived_at_real_scale", "cap_under_a_burst", "slow_chat_reader", "login_flood_lag", "idle_chat_socket",
           "session_growth"]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def long_lived_at_real_scale() -> dict:
    """The issue's own timings, with serve()'s real 10 s head deadline: an aiohttp WebSocket that sends at 0, 6,
    13 and 21 s, and a request body streamed for 14 s, at the same time. (The tests run the same at 1/20 scale.)"""
    import aiohttp
    from aiohttp import web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str("echo " + msg.data)
        return ws

    async def upload(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.content.read())))

    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_post("/upload", upload)

    async def talk(url: str) -> list[str]:
        got = []
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as session, session.ws_connect(url + "/ws") as ws:
            for at in (0, 6, 13, 21):
                await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
                await ws.send_str(str(at))
                got.append((await ws.receive(timeout=5)).data)
        return got

    async def send(url: str) -> str:
        async def body():
            for _ in range(14):
                yield b"x" * 1000
                await asyncio.sleep(1)

        async with aiohttp.ClientSession() as session, session.post(url + "/upload", data=body()) as resp:
            return f"{resp.status} {await resp.text()}"

    async def both(url: str) -> tuple:
        return await asyncio.gather(talk(url), send(url))

    from ..runtime.waiting import run_async

    with serve(app) as srv:
        echoes, uploaded = run_async(both(srv.url), timeout=40)
    return {"echoes": echoes, "upload": uploaded, "evicted": srv.admission.evicted}


def cap_under_a_burst(burst: int = 1200, cap: int = 512) -> dict:
    """``burst`` connections at once (half silent, half with half a head) against a cap of ``cap``: how many
    stay open, the most ever open, evictions, and how long a good client waits for its answer meanwhile."""
    import urllib.request

    with file_limit(2 * burst + 300), serve(tiny_app(), max_connections=cap) as srv:
        socks: list[socket.socket] = []
        try:
            for i in range(burst):
                s = socket.create_connection((srv.host, srv.port), timeout=5)
                if i % 2:
                    s.sendall(b"GET / HTTP/1.1\r\nHo")
                socks.append(s)
            t = time.perf_counter()
            with urllib.request.urlopen(srv.url + "/", timeout=5) as resp:
                resp.read()
            good_ms = (time.perf_counter() - t) * 1000
            wait_until(lambda: len(srv.admission.open) <= cap, 5)
            established = sum(1 for e in tcp_sockets() if e.local[1] == srv.port and e.state == "ESTABLISHED")
            return {"open": len(srv.admission.open), "established": established, "peak": srv.admission.peak,
                    "evicted": srv.admission.evicted, "good_ms": good_ms}
        finally:
            for s in socks:
                s.close()


def _chat(d: str, **options) -> ChatServer:
    server = ChatServer(os.path.join(d, "chat.db"), page=50, **options)
    server.add_user("bob", "pw-bob", ("c1",))
    return server


def _cookie(port: int, user: str = "bob", password: str = "pw-bob") -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/login", body=json.dumps({"user": user, "password": password}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return (resp.getheader("Set-Cookie") or "").split(";", 1)[0].split("=", 1)[1]
    finally:
        conn.close()


def _open_socket(port: int, cookie: str, rcvbuf: int | None = None) -> tuple[socket.socket, Connection]:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(client_request("127.0.0.1", port, new_key(), origin=f"http://127.0.0.1:{port}",
                             extra=(f"Cookie: session={cookie}",)))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError("the chat server closed the handshake")
        head += chunk
    conn = Connection("client", max_size=1 << 24)
    s.sendall(conn.send_frame(Frame(Opcode.TEXT, b'{"resume_after": 0}')))
    return s, conn


def slow_chat_reader(posts: int = 3000, size: int = 20_000) -> dict:
    """One chat socket that never reads while ``posts`` messages of ``size`` bytes go to its conversation:
    when it is dropped (posts so far), the server process's memory growth, and how long stop() takes."""
    with tempfile.TemporaryDirectory(prefix="netcourse-bench-") as d:
        server = _chat(d)
        srv = serve(server.app())
        try:
            s, _ = _open_socket(srv.port, _cookie(srv.port), rcvbuf=4096)
            wait_until(lambda: len(server.sockets) == 1, 5)
            rss0, dropped_at = _rss_mb(), None
            for i in range(posts):
                asyncio.run_coroutine_threadsafe(server.post("bob", "c1", f"{i:05d}" + "x" * size), srv.loop).result(10)
                if dropped_at is None and server.dropped:
                    dropped_at = i + 1
            grown = _rss_mb() - rss0
            s.close()
        finally:
            t = time.perf_counter()
            srv.stop()
            stop_s = time.perf_counter() - t
    return {"dropped_at": dropped_at, "grown_mb": grown, "stop_s": stop_s, "errors": len(srv.errors)}


def login_flood_lag(logins: int = 200, threads: int = 40) -> dict:
    """The server loop's lag (median and max, ms) while ``threads`` clients send ``logins`` wrong logins, and
    what a user feels: the round trip of a WebSocket ping on an open chat socket, before and during the flood."""
    import http.client

    with tempfile.TemporaryDirectory(prefix="netcourse-bench-") as d:
        server = _chat(d)
        with serve(server.app()) as srv:
            lags: list[float] = []
            stop = threading.Event()

            async def ticks() -> None:
                loop = asyncio.get_running_loop()
                while not stop.is_set():
                    t = loop.time()
                    await asyncio.sleep(0.005)
                    lags.append((loop.time() - t - 0.005) * 1000)

            s, conn = _open_socket(srv.port, _cookie(srv.port))
            decoder = FrameDecoder("client", max_size=1 << 24)
            quiet = [_ping_ms(s, conn, decoder) for _ in range(20)]
            ticker = asyncio.run_coroutine_threadsafe(ticks(), srv.loop)

            def wrong() -> None:
                for _ in range(logins // threads):
                    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
                    try:
                        c.request("POST", "/login", body='{"user": "bob", "password": "no"}',
                                  headers={"Content-Type": "application/json"})
                        c.getresponse().read()
                    finally:
                        c.close()

            t = time.perf_counter()
            workers = [threading.Thread(target=wrong) for _ in range(threads)]
            for w in workers:
                w.start()
            during = []
            while any(w.is_alive() for w in workers):
                during.append(_ping_ms(s, conn, decoder))
                time.sleep(0.01)
            for w in workers:
                w.join()
            seconds = time.perf_counter() - t
            stop.set()
            ticker.result(5)
            s.close()
    return {"median_ms": statistics.median(lags), "max_ms": max(lags), "logins_per_s": logins / seconds,
            "ping_quiet_ms": statistics.median(quiet), "ping_during_ms": statistics.median(during),
            "ping_during_max_ms": max(during), "pings_during": len(during)}


def _ping_ms(s: socket.socket, conn: Connection, decoder: FrameDecoder) -> float:
    """One WebSocket ping's round trip on an open chat socket, ms (other frames that arrive are skipped)."""
    t = time.perf_counter()
    s.sendall(conn.send_frame(Frame(Opcode.PING, b"rtt")))
    while True:
        if any(f.opcode == Opcode.PONG for f in decoder.feed(s.recv(65536))):
            return (time.perf_counter() - t) * 1000


def idle_chat_socket(seconds: float = 3600.0, ping_every: float = 30.0) -> dict:
    """Hold one chat socket idle for ``seconds``, pinging every ``ping_every``; then post one message and see it
    arrive on that socket. Returns how long it was held, pings answered, whether the message arrived, and how
    the server closed the socket if it did. (The session lasts longer than the wait: its end closes its sockets.)"""
    with tempfile.TemporaryDirectory(prefix="netcourse-bench-") as d:
        server = _chat(d, session_seconds=seconds + 600)
        with serve(server.app()) as srv:
            s, conn = _open_socket(srv.port, _cookie(srv.port))
            decoder = FrameDecoder("client", max_size=1 << 20)
            pongs, start = 0, time.monotonic()
            try:
                while time.monotonic() - start < seconds:
                    time.sleep(min(ping_every, max(0.0, seconds - (time.monotonic() - start))))
                    s.sendall(conn.send_frame(Frame(Opcode.PING, b"still there?")))
                    got = decoder.feed(s.recv(4096))
                    pongs += sum(1 for f in got if f.opcode == Opcode.PONG)
                asyncio.run_coroutine_threadsafe(server.post("bob", "c1", "after the wait"), srv.loop).result(10)
                arrived, closed = False, None
                while not arrived and closed is None:
                    for f in decoder.feed(s.recv(4096)):
                        arrived |= f.opcode == Opcode.TEXT and b"after the wait" in f.payload
                        if f.opcode == Opcode.CLOSE:
                            closed = int.from_bytes(f.payload[:2], "big")
            except OSError as exc:
                arrived, closed = False, repr(exc)
            finally:
                s.close()
            held = time.monotonic() - start
    return {"held_s": held, "pongs": pongs, "arrived": arrived, "closed": closed, "evicted": srv.admission.evicted}


def session_growth(notebook: str = "08_offline_messaging", count: int = 3) -> str:
    """The three-rounds soak of one notebook (tools.soak), as one line: what grew after the first round."""
    from .soak import rounds

    r = rounds(notebook, count)
    first, last = r[1], r[-1]
    return (f"threads {first.threads}→{last.threads}, fds {first.fds}→{last.fds}, listening "
            f"{first.listening}→{last.listening}, children {first.children}→{last.children}, RSS "
            + " → ".join(f"{x.rss_mb:.0f}" for x in r) + " MiB"
            + (f"; {sum(len(x.errors) for x in r)} failing cells" if any(x.errors for x in r) else ""))
