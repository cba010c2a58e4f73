"""Notebook 11: memory per held client, for each transport that holds one.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from ...apps import polling as polling_app
from ...apps import streaming as streaming_app
from ...apps.wsserver import Hub, make_ws_handler

__all__ = ["Held", "memory_per_client"]


@dataclass(frozen=True)
class Held:
    """Python heap the server holds per connected, idle client (bytes), measured with ``tracemalloc``."""

    transport: str
    clients: int
    bytes_per_client: float

    def __repr__(self) -> str:
        return f"{self.transport:<14} {self.bytes_per_client / 1024:6.1f} KiB per held client ({self.clients} held)"


def memory_per_client(n: int = 100, transports: tuple[str, ...] = ("long polling", "SSE", "WebSocket", "raw TCP")) -> list[Held]:
    """Hold ``n`` idle clients on each server and count the server's Python heap per client.

    The clients are plain sockets that send their request (or handshake) and then only wait, so nearly all
    the memory counted is the server's: its connection, its request and its held handler. Kernel socket
    buffers are not Python heap and are not counted. Short polling holds nothing between polls, UDP an
    address per subscriber, webhooks a row per endpoint: none of them is listed.
    """
    from ...runtime.server import serve

    out = []
    for name in transports:
        app, held = _server(name, n)
        with serve(app, name=f"{name} memory", max_connections=n + 50) as srv:
            out.append(Held(name, n, _heap_for(name, n, srv, held) / n))
    return out


_REQUESTS = {"long polling": b"GET /messages?after=0&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
             "SSE": b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"}


def _server(name: str, n: int):
    """The transport's server (an aiohttp app or a stream handler), and a count of the clients it holds now
    (None for SSE: its clients are counted by the sockets the server has written to)."""
    log = polling_app.MessageLog()
    hub = Hub()
    writers: set = set()

    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await reader.read()
        finally:
            writers.discard(writer)

    if name == "long polling":
        return polling_app.make_app(log), lambda: log.waiting
    if name == "SSE":
        return streaming_app.make_app(log, max_streams=n + 10, keepalive=60.0), None
    if name == "WebSocket":
        return make_ws_handler(hub), lambda: hub.count
    return raw, lambda: len(writers)


def _heap_for(name: str, n: int, srv, held) -> int:
    """Python heap traced while ``n`` clients connect and are held (10 s at most), then settle."""
    import gc
    import tracemalloc

    from ...protocols.wsconn import client_request, new_key

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            socks.append(s)
            request = client_request("127.0.0.1", srv.port, new_key(), path="/") if name == "WebSocket" \
                else _REQUESTS.get(name)
            if request:
                s.sendall(request)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (sum(1 for s in socks if _readable(s)) if held is None else held()) >= n:
                break
            time.sleep(0.01)
        time.sleep(0.1)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        for s in socks:
            s.close()


def _readable(sock: socket.socket) -> bool:
    """True when the server has sent something on ``sock`` (peeked, not read; works past fd 1024, unlike select)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
