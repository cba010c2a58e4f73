"""Notebook 01, section 4: what lingers after close: TIME_WAIT on the side that closed first, SO_REUSEADDR, and
the port budget it costs.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from ...course.exercises import Exercise
from ...errors import NetcourseTimeout
from ...runtime.sockets import LOOPBACK
from ...runtime.tcpinfo import tcp_sockets
from ...runtime.waiting import wait_until

__all__ = ["TimeWaitDemo", "time_wait", "exercise_time_wait_load", "port_budget_knob"]


@dataclass(frozen=True)
class TimeWaitDemo:
    """Who keeps TIME_WAIT after a close, and what it does to restarting a server on its port.

    Attributes:
        client_closes_first: kernel state of (client side, server side) after the client closed first.
        server_closes_first: the same after the server closed first.
        restart: for each (old listener had SO_REUSEADDR, new socket sets SO_REUSEADDR), the errno
            name when binding the old server port again while a TIME_WAIT entry holds it, or None
            when the bind worked.
        time_wait_seconds: how long Linux keeps TIME_WAIT (TCP_TIMEWAIT_LEN), in seconds.
    """

    client_closes_first: tuple[str, str]
    server_closes_first: tuple[str, str]
    restart: dict[tuple[bool, bool], str | None]
    time_wait_seconds: int = 60

    def restart_table(self) -> str:
        """The restart results as a small text table."""
        lines = ["old listener had SO_REUSEADDR | new socket sets it | bind again"]
        for (old, new), result in self.restart.items():
            lines.append(f"{str(old):>29} | {str(new):>17} | {result or 'works'}")
        return "\n".join(lines)


def _state_of(local_port: int, remote_port: int) -> str:
    for e in tcp_sockets():
        if e.local[1] == local_port and e.remote[1] == remote_port:
            return e.state
    return "gone"


def _close_and_watch(first_closer: str, timeout: float, reuse: bool = False) -> tuple[tuple[str, str], int]:
    listener = socket.socket()
    if reuse:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, 0))
    listener.listen()
    listener.settimeout(timeout)
    port = listener.getsockname()[1]
    client = socket.create_connection((LOOPBACK, port), timeout=timeout)
    conn, _ = listener.accept()
    cport = client.getsockname()[1]
    listener.close()  # the listening socket itself is not part of the connection
    first, second = (client, conn) if first_closer == "client" else (conn, client)
    first.close()
    second.recv(1)  # reads the FIN: returns b""
    second.close()
    closer_port, other = (cport, port) if first_closer == "client" else (port, cport)
    if not wait_until(lambda: _state_of(closer_port, other) == "TIME_WAIT", timeout):
        raise NetcourseTimeout("The first closer never reached TIME_WAIT.")
    return (_state_of(cport, port), _state_of(port, cport)), port


def _rebind(port: int, reuse: bool) -> str | None:
    s = socket.socket()
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOPBACK, port))
        s.listen()
        return None
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    finally:
        s.close()


def time_wait(timeout: float = 5.0) -> TimeWaitDemo:
    """Close connections from each side and read the kernel's socket table afterwards; then try to
    restart a server on a port that a TIME_WAIT entry still holds, with and without SO_REUSEADDR."""
    client_first, _ = _close_and_watch("client", timeout)
    server_first, _ = _close_and_watch("server", timeout)
    restart: dict[tuple[bool, bool], str | None] = {}
    for old in (False, True):
        _, port = _close_and_watch("server", timeout, reuse=old)
        for new in (False, True):
            restart[(old, new)] = _rebind(port, reuse=new)
    return TimeWaitDemo(client_first, server_first, restart)


def exercise_time_wait_load(per_second: int = 1000, wait_s: int = 60) -> Exercise:
    """A reasoning step from "the side that closes first waits": how many TIME_WAIT entries a busy server holds."""
    held = per_second * wait_s
    return Exercise(
        f"A web server closes every connection first (as HTTP/1.0 servers did) and serves {per_second:,} new "
        f"clients a second, each from its own address and port. TIME_WAIT lasts {wait_s} s. In the steady "
        "state, how many TIME_WAIT entries does the *server* hold?",
        answer=held,
        unit="entries",
        hint="Who keeps the entry depends on who sent the first FIN; then ask how long each entry lives and "
        "how many new ones arrive while it does.",
        recipe="new connections per second × seconds each entry lives.",
        mistakes=[
            (0, "TIME_WAIT is kept by the side that closes first, and here that is the server."),
            (per_second, "that is one second's worth of entries; each one stays for the whole TIME_WAIT."),
            (28232, "the ephemeral range limits a *client's* ports towards one server address. The server's "
             "entries all share its one port and differ in the client's address and port: no range caps them."),
            (lambda v: v in (470, 471), "that is the knob's limit for a client that closes first, not a count of entries."),
        ],
        explanation=f"{per_second:,} a second, each kept {wait_s} s: {held:,} entries, all on the server (it sent "
        "the first FIN). They cost the server kernel memory, not ports: each is a different 4-tuple on the one "
        "server port, and Linux caps how many it keeps (`net.ipv4.tcp_max_tw_buckets`). Fewer, longer "
        "connections mean fewer entries: one reason HTTP/1.1 keeps connections open (RFC 9112 §9.3).",
    )


def port_budget_knob(ports: tuple[int, int] = (32768, 60999), time_wait_s: int = 60):
    """Section 5's knob: connections per second to one server address for a port range and TIME_WAIT."""
    from ...course.plots.connections import port_budget

    return port_budget(ports[0], ports[1], time_wait_s)
