"""Notebook 10: memory per held client, for each transport that holds one.
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
    import gc
    import tracemalloc

    from ...protocols.wsconn import client_request, new_key
    from ...runtime.server import serve

    out = []
    for name in transports:
        log = polling_app.MessageLog()
        hub = Hub()
        writers: set = set()

        async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            try:
                await reader.read()
            finally:
                writers.discard(writer)

        app = {"long polling": lambda: polling_app.make_app(log),
               "SSE": lambda: streaming_app.make_app(log, max_streams=n + 10, keepalive=60.0),
               "WebSocket": lambda: make_ws_handler(hub),
               "raw TCP": lambda: raw}[name]()
        with serve(app, name=f"{name} memory", max_connections=n + 50) as srv:
            held = {"long polling": lambda: log.waiting, "SSE": lambda: 0,  # SSE: counted by readable sockets
                    "WebSocket": lambda: hub.count, "raw TCP": lambda: len(writers)}[name]
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            socks = []
            try:
                for _ in range(n):
                    s = socket.create_connection((srv.host, srv.port), timeout=5)
                    socks.append(s)
                    if name == "long polling":
                        s.sendall(b"GET /messages?after=0&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    elif name == "SSE":
                        s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    elif name == "WebSocket":
                        s.sendall(client_request("127.0.0.1", srv.port, new_key(), path="/"))
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if name == "SSE":
                        ready = sum(1 for s in socks if _readable(s))
                        if ready >= n:
                            break
                    elif held() >= n:
                        break
                    time.sleep(0.01)
                time.sleep(0.1)
                gc.collect()
                settled = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
                for s in socks:
                    s.close()
            out.append(Held(name, n, settled / n))
    return out


def _readable(sock: socket.socket) -> bool:
    """True when the server has sent something on ``sock`` (peeked, not read; works past fd 1024, unlike select)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
