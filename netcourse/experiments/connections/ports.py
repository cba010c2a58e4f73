"""Notebook 01, section 3: well-known and ephemeral ports, the ports the OS picked, why port 80 needs privileges,
and one listening port serving many connections.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ...runtime.sockets import connected_pairs
from ...runtime.tcpinfo import SocketEntry, tcp_sockets
from .sockets import Endpoint, endpoint_of

__all__ = ["WELL_KNOWN_PORTS", "well_known_ports", "ephemeral_range", "assigned_ports", "BindAttempt", "privileged_bind", "ManyClients", "many_clients"]


# IANA's Service Name and Transport Protocol Port Number Registry (RFC 6335).
WELL_KNOWN_PORTS = {"ssh": 22, "smtp": 25, "domain": 53, "http": 80, "https": 443}


def well_known_ports() -> list[tuple[str, int, str]]:
    """(service, port, where the OS got it): /etc/services when present, else the IANA table."""
    out = []
    for name, port in WELL_KNOWN_PORTS.items():
        try:
            out.append((name, socket.getservbyname(name, "tcp"), "/etc/services"))
        except OSError:
            out.append((name, port, "IANA registry"))
    return out


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int] | None:
    """Linux's range for ephemeral (client) ports, or None where the OS does not publish it."""
    try:
        low, high = Path(path).read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None


def assigned_ports(n: int = 20, timeout: float = 5.0) -> list[int]:
    """Open ``n`` connections to one listening socket at once; return the client ports the OS chose."""
    with connected_pairs(n, timeout=timeout) as (_, pairs):
        return [client.getsockname()[1] for client, _ in pairs]


@dataclass(frozen=True)
class BindAttempt:
    """What happened when an ordinary (non-root) user tried to bind a port below 1024.

    Attributes:
        port: the port tried.
        error: errno name ("EACCES") or None when the bind worked.
        message: the OS's words for the error.
        unprivileged_port_start: Linux's ``net.ipv4.ip_unprivileged_port_start`` (default 1024).
    """

    port: int
    error: str | None
    message: str
    unprivileged_port_start: int | None

    def __repr__(self) -> str:
        outcome = "bound it" if self.error is None else f"{self.error}: {self.message}"
        return f"An ordinary user binding 127.0.0.1:{self.port} → {outcome}"


_TRY_BIND = """
import errno, socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    code = 0
except OSError as exc:
    code = exc.errno or errno.EIO
print(code)
"""


def privileged_bind(port: int = 80, user: int = 65534) -> BindAttempt:
    """Try to bind ``port`` on 127.0.0.1 as an ordinary user.

    A child Python process does the bind. Run as root, the child is started as ``user`` (65534 is "nobody"),
    with no supplementary groups, so the answer is the one a learner without privileges gets; run as an
    ordinary user, it is that user. (``subprocess`` drops the privileges between fork and exec, safely in a
    process with threads: ``os.fork()`` here would copy every thread's locks mid-flight.)
    """
    try:
        limit: int | None = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        limit = None
    as_root = os.geteuid() == 0
    drop = {"user": user, "group": user, "extra_groups": []} if as_root else {}
    # As "nobody", this venv's interpreter may not be reachable (a venv under /root is not): any Python will do.
    candidates = [sys.executable] + ([p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)]
                                     if as_root else [])
    done, problems = None, []
    for python in candidates:
        try:
            done = subprocess.run([python, "-I", "-c", _TRY_BIND, str(port)], capture_output=True, text=True,
                                  timeout=30, cwd="/", **drop)
            break
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{python}: {exc}")
    if done is None:
        raise OSError("no Python an ordinary user may run, to try the bind as one: " + "; ".join(problems))
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise OSError(f"the bind could not be tried as an ordinary user: {done.stderr.strip()[-200:]}")
    code = int(done.stdout)
    if code == 0:
        return BindAttempt(port, None, "", limit)
    return BindAttempt(port, errno.errorcode.get(code, str(code)), os.strerror(code), limit)


@dataclass(frozen=True)
class ManyClients:
    """Several clients connected to one listening port at the same time.

    Attributes:
        server_port: the one port the server listens on.
        connections: (server-side local, server-side peer) of every accepted socket.
        kernel_rows: the kernel's socket-table rows on the server port while all were connected.
    """

    server_port: int
    connections: list[tuple[Endpoint, Endpoint]]
    kernel_rows: list[SocketEntry] = field(repr=False)

    @property
    def client_ports(self) -> list[int]:
        """The client port of each connection, as the server saw it."""
        return [peer.port for _, peer in self.connections]

    @property
    def same_server_port(self) -> bool:
        """True when every accepted socket has the listening port as its local port."""
        return all(local.port == self.server_port for local, _ in self.connections)

    def kernel_states(self) -> dict[str, int]:
        """How many kernel rows on the server's port are in each state (client sockets excluded)."""
        counts: dict[str, int] = {}
        for row in self.kernel_rows:
            if row.local[1] == self.server_port:
                counts[row.state] = counts.get(row.state, 0) + 1
        return dict(sorted(counts.items()))


def many_clients(n: int = 5, timeout: float = 5.0) -> ManyClients:
    """Connect ``n`` clients to one listening socket and look at every connection from the server."""
    with connected_pairs(n, timeout=timeout) as (listener, pairs):
        port = listener.getsockname()[1]
        conns = [(endpoint_of(s.getsockname()), endpoint_of(s.getpeername())) for _, s in pairs]
        rows = [e for e in tcp_sockets() if port in (e.local[1], e.remote[1])]
    return ManyClients(port, conns, rows)
