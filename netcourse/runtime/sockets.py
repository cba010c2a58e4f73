"""Plain sockets for lessons: a listening socket and connected pairs on loopback, closed afterwards; and the open-file
limit raised for a while, for the lessons and tests that hold many connections."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LOOPBACK", "connected_pairs", "no_delay", "port_for_a_restart", "file_limit"]

LOOPBACK = "127.0.0.1"


@contextmanager
def file_limit(need: int) -> Iterator[None]:
    """Let this process open at least ``need`` files for the block, then put its limit back.

    The soft limit is raised; root may raise the hard limit too. Raises ``ValueError`` with both numbers
    when the hard limit forbids it (an ordinary user's is often 1,024 or 4,096)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new_hard = hard if hard == resource.RLIM_INFINITY or hard >= need else need
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, new_hard))
        except (ValueError, OSError):
            raise ValueError(f"this needs {need} open files; this process may open {hard}") from None
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


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


def port_for_a_restart() -> int:
    """A free port on 127.0.0.1 *below* the kernel's ephemeral range, for a server that will go away and come
    back on the same port (a crash and restart, a receiver that is down for a while).

    A port the operating system picks (bind to port 0) comes from the ephemeral range, the same range the
    kernel hands out as *source* ports to every outgoing connection on the machine. While the server is away,
    any connection anywhere may be given that port as its source, and the server's restart then fails with
    "address in use" (seen here once in about 60 notebook runs of the fault soak). A port outside that range
    (``/proc/sys/net/ipv4/ip_local_port_range``) is never handed out as a source port.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    for _ in range(200):
        port = random.randint(max(1024, low // 2), low - 1)
        with socket.socket() as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise OSError("no free port below the ephemeral range")
