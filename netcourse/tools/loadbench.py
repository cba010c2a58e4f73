"""Load cases for ``make bench``: figures under abuse, measured on loopback, in bounded loops.

Each function returns numbers; ``bench.main`` prints them, one line each. Nothing here asserts.
"""

from __future__ import annotations

import base64
import selectors
import socket
import statistics
import threading
import time
import urllib.request

from aiohttp import web

from ..apps.safety import safe_app
from ..apps.wsserver import Hub, make_ws_handler
from ..protocols.wsconn import client_request
from ..runtime.server import serve
from ..runtime.sockets import file_limit
from ..runtime.waiting import run_async, wait_until

__all__ = ["tiny_app", "flood_capture", "slow_clients", "broadcast_with_a_stalled_peer", "close_times"]


def tiny_app() -> web.Application:
    """An app whose GET / answers "ok": the smallest thing to serve."""
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = safe_app()
    app.router.add_get("/", ok)
    return app


def flood_capture(runs: int = 20) -> str:
    """Issue 9's acceptance: captures of 5,000 datagrams under a UDP flood, in a private namespace."""
    from .flood import can_run, run_in_namespace

    why = can_run()
    if why is not None:
        return f"skipped: {why}"
    results = run_in_namespace(runs, 5000, filters="10")
    kernel = [r for r in results if r.kernel_filter]
    python = [r for r in results if not r.kernel_filter]
    silent = sum(r.silent_loss for r in results)
    rate = statistics.median(r.flood_rate for r in results)
    return (
        f"{silent} silent losses in {len(results)} captures (flood {rate / 1000:.0f}k datagrams/s); "
        f"kernel filter: {sum(r.complete for r in kernel)}/{len(kernel)} complete, "
        f"min {min(r.captured for r in kernel):,}/5,000; Python filter: {sum(not r.complete for r in python)}"
        f"/{len(python)} reported incomplete (drops counted)"
    )


def slow_clients(n: int = 1100, seconds: float = 6.0) -> tuple[int, int, float, int]:
    """``n`` clients trickle a request head one byte a second while a normal client keeps asking.

    Returns (normal requests answered, asked, median seconds per answer, dawdlers the server closed).
    """
    with file_limit(2 * n + 300), serve(tiny_app()) as srv:
        slow: list[socket.socket] = []
        try:
            for _ in range(n):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect((srv.host, srv.port))
                except BlockingIOError:
                    pass
                slow.append(s)
            answered, asked, times, failures = 0, 0, [], []
            deadline = time.monotonic() + seconds
            next_trickle = 0.0
            while time.monotonic() < deadline:
                if time.monotonic() >= next_trickle:  # one more byte of "GET / HTTP/1.1..." from each
                    for s in list(slow):
                        try:
                            s.send(b"G")
                        except OSError:  # the server closed it (that is the point): stop trickling
                            slow.remove(s)
                            s.close()
                    next_trickle = time.monotonic() + 1.0
                asked += 1
                t = time.perf_counter()
                try:
                    with urllib.request.urlopen(srv.url + "/", timeout=2) as resp:
                        if resp.read() == b"ok":
                            answered += 1
                            times.append(time.perf_counter() - t)
                except OSError as exc:  # counted: asked but not answered
                    failures.append(type(exc).__name__)
                time.sleep(0.05)
            return answered, asked, statistics.median(times) if times else float("nan"), srv.admission.evicted
        finally:
            for s in slow:
                s.close()


def broadcast_with_a_stalled_peer(n: int = 1000, payload: int = 64 * 1024, rounds: int = 200) -> tuple[float, float, int, int]:
    """``n`` reading peers and one that never reads; broadcast until the stalled one is dropped, and 10 more.

    Returns (median ms per broadcast, max ms, peers reached by the last broadcast, peers evicted).
    """
    hub = Hub(max_buffered=512 * 1024, write_timeout=1.0)
    with file_limit(2 * n + 300), serve(make_ws_handler(hub, max_size=1 << 20), max_connections=n + 10) as srv:
        key = base64.b64encode(bytes(16)).decode()
        request = client_request(srv.host, srv.port, key)
        peers = []
        stalled = socket.create_connection((srv.host, srv.port), timeout=10)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(request)
        stop = threading.Event()
        try:
            for _ in range(n):
                s = socket.create_connection((srv.host, srv.port), timeout=10)
                s.sendall(request)
                peers.append(s)
            if not wait_until(lambda: hub.count == n + 1, 30):
                return float("nan"), float("nan"), 0, 0

            def drain_all() -> None:  # the healthy peers read everything, all the time
                with selectors.DefaultSelector() as sel:
                    for s in peers:
                        s.setblocking(False)
                        sel.register(s, selectors.EVENT_READ)
                    while not stop.is_set():
                        for key_, _ in sel.select(0.1):
                            try:
                                key_.fileobj.recv(1 << 20)
                            except OSError:  # a peer the server dropped: stop watching it
                                sel.unregister(key_.fileobj)

            reader = threading.Thread(target=drain_all, daemon=True)
            reader.start()
            times, reached = [], 0
            data = bytes(payload)
            after_eviction = 0
            for _ in range(rounds):  # until the stalled peer is dropped, then 10 more (bounded)
                t = time.perf_counter()
                reached = srv.run(hub.broadcast(data), timeout=30)
                times.append((time.perf_counter() - t) * 1000)
                after_eviction += 1 if hub.evicted else 0
                if after_eviction > 10:
                    break
            stop.set()
            reader.join(5)
            return statistics.median(times), max(times), reached, hub.evicted
        finally:
            stop.set()
            stalled.close()
            for s in peers:
                s.close()


def close_times(runs: int = 20) -> dict[str, float]:
    """Median milliseconds for a client to close a WebSocket with the course's server."""
    import aiohttp

    out: dict[str, float] = {}
    with serve(make_ws_handler()) as srv:
        url = f"ws://{srv.host}:{srv.port}/ws"
        try:
            from websockets.sync.client import connect
        except ImportError:
            connect = None
        if connect is not None:
            times = []
            for _ in range(runs):
                with connect(url, open_timeout=5, close_timeout=5) as ws:
                    ws.send("hi")
                    ws.recv(timeout=5)
                    t = time.perf_counter()
                times.append((time.perf_counter() - t) * 1000)
            out["websockets"] = statistics.median(times)

        async def with_aiohttp() -> list[float]:
            times = []
            async with aiohttp.ClientSession() as session:
                for _ in range(runs):
                    async with session.ws_connect(url) as ws:
                        await ws.send_str("hi")
                        await ws.receive()
                        t = time.perf_counter()
                        await ws.close()
                        times.append((time.perf_counter() - t) * 1000)
            return times

        out["aiohttp"] = statistics.median(run_async(with_aiohttp(), timeout=60))
    return out

