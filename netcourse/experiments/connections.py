"""Notebook 01: what a connection is — two sockets, a 4-tuple, ports, and what lingers after close.

Most experiments here use plain blocking sockets, the thing the seed notes call "a socket": a listening
socket that accepts, and clients that connect. The full-duplex one uses a background asyncio server
so both ends can talk at once.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..traffic.sniffer import Capture, capture
from ..errors import NetcourseTimeout
from ..course.exercises import Exercise, Prediction
from ..runtime.tcpinfo import SocketEntry, tcp_sockets
from ..traffic.packets import C2S, S2C
from .registry import scenario
from ..runtime.server import serve
from ..runtime.waiting import wait_until
from ..runtime.sockets import LOOPBACK, connected_pairs

__all__ = [
    "port_budget_knob",
    "predict_server_sockets",
    "exercise_server_fin_ack",
    "exercise_bare_packets",
    "Endpoint",
    "ConnectionEnds",
    "connection_ends",
    "DuplexRun",
    "full_duplex",
    "WELL_KNOWN_PORTS",
    "well_known_ports",
    "ephemeral_range",
    "assigned_ports",
    "BindAttempt",
    "privileged_bind",
    "ManyClients",
    "many_clients",
    "TimeWaitDemo",
    "time_wait",
]



@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: an IP address and a port."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


def _endpoint(addr: tuple) -> Endpoint:
    return Endpoint(addr[0], addr[1])


@dataclass(frozen=True)
class ConnectionEnds:
    """Both sockets of one TCP connection, as each end names itself and its peer.

    Attributes:
        client_local, client_peer: ``getsockname()`` and ``getpeername()`` of the client's socket.
        server_local, server_peer: the same for the socket ``accept()`` returned on the server.
        listening: ``getsockname()`` of the server's listening socket.
    """

    client_local: Endpoint
    client_peer: Endpoint
    server_local: Endpoint
    server_peer: Endpoint
    listening: Endpoint

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        """(client IP, client port, server IP, server port): the name of this connection."""
        return (self.client_local.ip, self.client_local.port, self.server_local.ip, self.server_local.port)

    @property
    def mirrored(self) -> bool:
        """True when each end's local address is the other's peer address."""
        return self.client_local == self.server_peer and self.client_peer == self.server_local

    def __repr__(self) -> str:
        return (
            f"client socket: local {self.client_local}  peer {self.client_peer}\n"
            f"server socket: local {self.server_local}  peer {self.server_peer}\n"
            f"listening socket: {self.listening}"
        )


def connection_ends(timeout: float = 5.0) -> ConnectionEnds:
    """Open one connection on loopback and ask both of its sockets who they are."""
    with connected_pairs(1, timeout=timeout) as (listener, [(client, conn)]):
        return ConnectionEnds(
            client_local=_endpoint(client.getsockname()),
            client_peer=_endpoint(client.getpeername()),
            server_local=_endpoint(conn.getsockname()),
            server_peer=_endpoint(conn.getpeername()),
            listening=_endpoint(listener.getsockname()),
        )


# -- full duplex -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DuplexRun:
    """Both ends of one connection sending at the same time.

    Attributes:
        capture: the packets.
        client_received: what the client read (the server's messages).
        server_received: what the server read (the client's messages).
        messages: messages each side sent.
    """

    capture: Capture
    client_received: bytes
    server_received: bytes
    messages: int

    def data_directions(self) -> list[str]:
        """Direction of each captured packet that carried data, in order."""
        return [r.direction for r in self.capture.table() if r.payload]

    @property
    def switches(self) -> int:
        """How often consecutive data packets changed direction."""
        d = self.data_directions()
        return sum(1 for a, b in zip(d, d[1:]) if a != b)

    @property
    def interleaved(self) -> bool:
        """True when each direction sent data while the other was still sending."""
        d = self.data_directions()
        if C2S not in d or S2C not in d:
            return False
        last_c, last_s = len(d) - 1 - d[::-1].index(C2S), len(d) - 1 - d[::-1].index(S2C)
        return d.index(S2C) < last_c and d.index(C2S) < last_s


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one write, one segment


def _make_duplex_handler(messages: int, interval: float, received: bytearray):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer.get_extra_info("socket"))

        async def send() -> None:
            for i in range(messages):
                writer.write(b"S%d;" % i)
                await writer.drain()
                await asyncio.sleep(interval)

        async def receive() -> None:
            while data := await reader.read(1024):
                received.extend(data)

        await asyncio.gather(send(), receive())

    return handler


@scenario("full_duplex")
def full_duplex(messages: int = 8, interval: float = 0.004, timeout: float = 5.0) -> DuplexRun:
    """Client and server each send ``messages`` short messages, ``interval`` seconds apart, at once.

    The server starts sending as soon as it accepts; the client as soon as it connects. Neither waits
    for the other: that is what full duplex means.
    """
    server_received = bytearray()
    client_received = bytearray()
    handler = _make_duplex_handler(messages, interval, server_received)
    with serve(handler, name="duplex") as srv:
        with capture(srv.port, scenario="full_duplex") as cap:
            with socket.create_connection((srv.host, srv.port), timeout=timeout) as sock:
                _nodelay(sock)

                def read() -> None:
                    while len(client_received) < sum(len(b"S%d;" % i) for i in range(messages)):
                        data = sock.recv(1024)
                        if not data:
                            break
                        client_received.extend(data)

                reader = threading.Thread(target=read, name="netcourse-duplex-reader", daemon=True)
                reader.start()
                for i in range(messages):
                    sock.sendall(b"C%d;" % i)
                    time.sleep(interval)
                reader.join(timeout)
                if reader.is_alive():
                    raise NetcourseTimeout("The server's messages did not all arrive in time.")
                sock.shutdown(socket.SHUT_WR)
                expected = sum(len(b"C%d;" % i) for i in range(messages))
                if not wait_until(lambda: len(server_received) >= expected, timeout):
                    raise NetcourseTimeout("The client's messages did not all reach the server in time.")
    return DuplexRun(cap, bytes(client_received), bytes(server_received), messages)


# -- ports -----------------------------------------------------------------------------------------

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


def _try_bind(port: int) -> int:
    s = socket.socket()
    try:
        s.bind((LOOPBACK, port))
        return 0
    except OSError as exc:
        return exc.errno or errno.EIO
    finally:
        s.close()


def privileged_bind(port: int = 80, user: int = 65534) -> BindAttempt:
    """Try to bind ``port`` on 127.0.0.1 as an ordinary user.

    Run as an ordinary user, this tries it directly. Run as root, it forks a child that first drops
    to ``user`` (65534 is "nobody"), so the answer is the one a learner without privileges gets.
    """
    try:
        limit: int | None = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        limit = None
    if os.geteuid() != 0:
        code = _try_bind(port)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a threaded process
            pid = os.fork()
        if pid == 0:  # the child: drop privileges, try, report through the exit status
            try:
                os.setgroups([])
                os.setgid(user)
                os.setuid(user)
                os._exit(_try_bind(port))
            except BaseException:
                os._exit(255)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 255:
            raise OSError("could not drop privileges to try the bind")
    if code == 0:
        return BindAttempt(port, None, "", limit)
    return BindAttempt(port, errno.errorcode.get(code, str(code)), os.strerror(code), limit)


# -- one listening port, many connections ---------------------------------------------------------


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
        conns = [(_endpoint(s.getsockname()), _endpoint(s.getpeername())) for _, s in pairs]
        rows = [e for e in tcp_sockets() if port in (e.local[1], e.remote[1])]
    return ManyClients(port, conns, rows)


# -- after close: TIME_WAIT ------------------------------------------------------------------------


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


# -- exercises -------------------------------------------------------------------------------------


def predict_server_sockets(n: int = 5) -> Prediction:
    """How many kernel sockets carry the server's port once ``n`` clients are connected?"""
    def explain(given: float, measured: float) -> str:
        why = (f"One LISTEN socket, which only makes connections, plus one ESTABLISHED socket per accepted "
               f"client: {n} + 1. ")
        if given == n:
            why += "You left out the listening socket: it stays open beside the connections it made. "
        elif given == 2 * n + 1 or given == 2 * n:
            why += ("The clients' own sockets are in the table too, but their local port is their ephemeral "
                    "port, not the server's. ")
        return why + "All of them share one local port: only the peer's port tells them apart."

    return Prediction(
        f"{n} clients connect to one listening server at once. How many sockets in the kernel's table "
        "will have the server's port as their *local* port?",
        measure=lambda crowd: sum(crowd.kernel_states().values()), unit="sockets", tolerance=0.0,
        explain=explain,
    )


def _fin(rows, direction: str):
    return next((r for r in rows if r.direction == direction and "F" in r.flags), None)


def exercise_server_fin_ack(duplex: DuplexRun) -> Exercise:
    """The relative ack number on the server's FIN, from the learner's own capture."""
    rows = duplex.capture.table()
    fin = _fin(rows, S2C)
    sent = sum(r.payload for r in rows if r.direction == C2S)
    return Exercise(
        "The server's FIN acknowledges everything it has received so far. Without looking at that packet: "
        "what (relative) acknowledgement number does it carry? Work it out from the client's packets in "
        "your capture, then check it against the FIN's row.",
        answer=fin.ack if fin is not None else None,
        hint="The client's SYN takes sequence number 0 and its first byte of data is 1, so the next byte "
        "expected after all its data is 1 + the bytes it sent. Did the client's FIN come first? A FIN "
        "takes one number too.",
        explanation=f"The client sent {sent} bytes of data: 1 + {sent} = {1 + sent}"
        + (f", + 1 for the client's FIN that arrived first = {sent + 2}" if fin is not None and fin.ack == sent + 2 else "")
        + ". ack names the next byte the server expects (RFC 9293 §3.4).",
        kind="capture",
    )


def exercise_bare_packets(duplex: DuplexRun) -> Exercise:
    """How many packets of the capture carried no data, from the learner's own capture."""
    rows = duplex.capture.table()
    bare = sum(1 for r in rows if not r.payload)
    return Exercise(
        "How many packets in your capture of the full-duplex exchange carried no data at all (SYNs, FINs "
        "and bare ACKs)?",
        answer=bare,
        hint="Count the rows of duplex.capture.table() whose payload is 0: "
        "sum(1 for r in duplex.capture.table() if not r.payload).",
        explanation=f"{bare} of {len(rows)}: 3 for the handshake, the FINs and their ACKs, and the ACKs that "
        "did not get to ride on a data packet going the other way (piggybacking saved the others).",
        kind="capture",
    )


def exercise_who_waits() -> Exercise:
    """Which side holds TIME_WAIT?"""
    return Exercise(
        "A client closes its connection first; the server closes after it. Which side's socket is "
        "left in TIME_WAIT: 'client' or 'server' (upper or lower case)?",
        answer="client",
        normalise=str.lower,
        hint="TIME_WAIT belongs to whoever sent the first FIN (RFC 9293 §3.6).",
        explanation="The side that closes first waits, so that its last ACK can be repeated if lost and "
        "old segments of this connection die out before the same 4-tuple is used again.",
    )


def port_budget_knob(ports: tuple[int, int] = (32768, 60999), time_wait_s: int = 60):
    """Section 5's knob: connections per second to one server address for a port range and TIME_WAIT."""
    from ..course import plots

    return plots.port_budget(ports[0], ports[1], time_wait_s)
