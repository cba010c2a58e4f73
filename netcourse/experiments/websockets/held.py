"""Notebook 05, section 7: what held connections cost: memory per idle WebSocket (Python heap, RSS, kernel pages)
and the time to broadcast to all of them.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from dataclasses import dataclass

from ...apps.wsserver import Hub, make_ws_handler
from ...clients.websocket import ORIGIN, RawClient
from ...errors import NetcourseTimeout
from ...runtime.server import serve
from ...runtime.sockets import file_limit
from ...runtime.waiting import wait_until

__all__ = ["IdleCost", "idle_connections"]


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _tcp_kernel_pages() -> int:
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class IdleCost:
    """Open WebSocket connections held idle by one server, and a broadcast to all of them.

    Attributes:
        connections: connections opened and upgraded.
        python_bytes_per_connection: Python heap allocated per connection (tracemalloc), server and
            client ends together (bytes).
        process_bytes_per_connection: growth of this process's resident memory per connection, both
            ends (bytes); noisy for small counts, since freed memory is reused.
        kernel_bytes_per_connection: growth of the kernel's TCP buffer memory per connection (bytes).
        broadcast_s: seconds from the broadcast call until every client had the message.
    """

    connections: int
    python_bytes_per_connection: float
    process_bytes_per_connection: float
    kernel_bytes_per_connection: float
    broadcast_s: float


def idle_connections(n: int = 100, *, timeout: float = 30.0) -> IdleCost:
    """Open ``n`` WebSocket connections to one server, measure memory, broadcast one message to all."""
    # Both ends of every connection live in this process; the limit goes back to what it was afterwards.
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_limit(2 * n + 200))
        except ValueError as exc:
            raise ValueError(f"{n} connections: {exc}") from None
        return _idle_connections(n, timeout)


def _idle_connections(n: int, timeout: float) -> IdleCost:
    hub = Hub()
    handler = make_ws_handler(hub, allowed_origins={ORIGIN})
    clients: list[RawClient] = []
    import tracemalloc

    tracing = tracemalloc.is_tracing()
    # One try for everything opened: an interrupt (or a timeout) at any point closes every client.
    with serve(handler, name="ws hub", max_connections=n + 10) as srv:
        try:
            try:
                if not tracing:
                    tracemalloc.start()
                heap0, rss0, pages0 = tracemalloc.get_traced_memory()[0], _rss_bytes(), _tcp_kernel_pages()
                for _ in range(n):
                    clients.append(RawClient(srv, timeout=timeout))
                if not wait_until(lambda: hub.count >= n, timeout):
                    raise NetcourseTimeout(f"Only {hub.count} of {n} WebSocket connections opened within {timeout} s.")
                heap1, rss1, pages1 = tracemalloc.get_traced_memory()[0], _rss_bytes(), _tcp_kernel_pages()
            finally:
                if not tracing:
                    tracemalloc.stop()
            with selectors.DefaultSelector() as sel:
                for c in clients:
                    c.sock.setblocking(False)
                    sel.register(c.sock, selectors.EVENT_READ, c)
                t = time.perf_counter()
                delivered = srv.run(hub.broadcast(b"news for everyone"), timeout=timeout)
                waiting = set(range(n))
                index = {id(c): i for i, c in enumerate(clients)}
                while waiting and time.perf_counter() - t < timeout:
                    for key, _ in sel.select(timeout=1.0):
                        if key.fileobj.recv(4096):
                            waiting.discard(index[id(key.data)])
                elapsed = time.perf_counter() - t
            if waiting or delivered != n:
                raise NetcourseTimeout(
                    f"The broadcast reached {n - len(waiting)} of {n} clients within {timeout} s "
                    f"(the server wrote it to {delivered}); no broadcast time to report."
                )
        finally:
            for c in clients:
                c.close()
    page = os.sysconf("SC_PAGE_SIZE")
    return IdleCost(n, (heap1 - heap0) / n, (rss1 - rss0) / n, (pages1 - pages0) * page / n, elapsed)
