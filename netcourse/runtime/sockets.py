"""Plain sockets for lessons: a listening socket and connected pairs on loopback, closed afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LOOPBACK", "connected_pairs", "no_delay"]

LOOPBACK = "127.0.0.1"


@contextmanager
def connected_pairs(n: int = 1, *, timeout: float = 5.0) -> Iterator[tuple[socket.socket, list[tuple[socket.socket, socket.socket]]]]:
    """A listening socket on 127.0.0.1 (OS-chosen port) and ``n`` connections to it, all open at once.

    Yields ``(listener, [(client, accepted), ...])``. Every socket is closed when the block ends.

    Args:
        n: connections to open (1 to 1000).
        timeout: seconds for connect and accept.
    """
    if not 1 <= n <= 1000:
        raise ValueError("n must be between 1 and 1000")
    opened: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(n)
        listener.settimeout(timeout)
        pairs = []
        try:
            for _ in range(n):
                client = socket.create_connection(listener.getsockname(), timeout=timeout)
                opened.append(client)
                conn, _ = listener.accept()
                opened.append(conn)
                pairs.append((client, conn))
            yield listener, pairs
        finally:
            for s in opened:
                s.close()


def no_delay(handler):
    """Wrap a stream handler so each connection has ``TCP_NODELAY`` (Nagle off), as aiohttp's server does.

    Without it, a server that writes small messages one after another waits, for the second, on the
    client's delayed ACK (up to 40 ms on Linux): notebook 05 shows the stall.
    """

    async def wrapped(reader, writer) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await handler(reader, writer)

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    return wrapped
