"""Notebook 01, sections 1 and 2: a connection is two sockets and a 4-tuple; both ends talk at once (full duplex),
captured; and the questions computed from that capture.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass

from ...course.exercises import Exercise, Prediction
from ...errors import NetcourseTimeout
from ...runtime.server import serve
from ...runtime.sockets import connected_pairs
from ...runtime.waiting import wait_until
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ..registry import scenario

__all__ = ["endpoint_of", "Endpoint", "ConnectionEnds", "connection_ends", "DuplexRun", "full_duplex", "predict_server_sockets", "exercise_server_fin_ack", "exercise_bare_packets"]


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: an IP address and a port."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


def endpoint_of(addr: tuple) -> Endpoint:
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
            client_local=endpoint_of(client.getsockname()),
            client_peer=endpoint_of(client.getpeername()),
            server_local=endpoint_of(conn.getsockname()),
            server_peer=endpoint_of(conn.getpeername()),
            listening=endpoint_of(listener.getsockname()),
        )


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


def predict_server_sockets(n: int = 5) -> Prediction:
    """How many kernel sockets carry the server's port once ``n`` clients are connected?"""
    def explain(given: float, measured: float) -> str:
        why = (f"One LISTEN socket, which only makes connections, plus one ESTABLISHED socket per accepted "
               f"client: {n} + 1. ")
        return why + "All of them share one local port: only the peer's port tells them apart."

    return Prediction(
        f"{n} clients connect to one listening server at once. How many sockets in the kernel's table "
        "will have the server's port as their *local* port?",
        measure=lambda crowd: sum(crowd.kernel_states().values()), unit="sockets", tolerance=0.0,
        explain=explain,
        mistakes=[(lambda g, m: g == n, "You left out the listening socket: it stays open beside the connections it made."),
                  (lambda g, m: g in (2 * n, 2 * n + 1), "The clients' sockets are in the table too, but their local "
                   "port is their ephemeral port, not the server's.")],
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
        hint="An acknowledgement names the next byte expected. Which things use up sequence numbers: only "
        "bytes of data?",
        recipe="The client's SYN takes number 0 and its first byte of data is 1, so the next byte expected "
        "after all its data is 1 + the bytes it sent. Did the client's FIN come first? A FIN takes one number too.",
        mistakes=[
            (sent, "that is the bytes the client sent; the SYN used number 0, so the next byte expected is one more."),
            (sent + 1, "right for the data, but the client's FIN came first, and a FIN uses a sequence number too."),
        ] if fin is not None and fin.ack == sent + 2 else [
            (sent, "that is the bytes the client sent; the SYN used number 0, so the next byte expected is one more."),
            (sent + 2, "the client's FIN had not arrived when the server sent its own: it is not counted yet."),
        ],
        explanation=f"The client sent {sent} bytes of data: 1 + {sent} = {1 + sent}"
        + (f", + 1 for the client's FIN that arrived first = {sent + 2}" if fin is not None and fin.ack == sent + 2 else "")
        + ". ack names the next byte the server expects (RFC 9293 §3.4).",
        kind="capture", source=duplex,
    )


def exercise_bare_packets(duplex: DuplexRun) -> Exercise:
    """How many packets of the capture carried no data, from the learner's own capture."""
    rows = duplex.capture.table()
    bare = sum(1 for r in rows if not r.payload)
    return Exercise(
        "How many packets in your capture of the full-duplex exchange carried no data at all (SYNs, FINs "
        "and bare ACKs)?",
        answer=bare,
        hint="Data is the payload; a SYN, a FIN or an ACK can travel alone, with none.",
        recipe="count the rows of duplex.capture.table() whose payload is 0: "
        "sum(1 for r in duplex.capture.table() if not r.payload).",
        mistakes=[
            (sum(1 for r in rows if r.flags == "A" and not r.payload),
             "those are the bare ACKs only; the SYNs and FINs carried no data either."),
            (len(rows) - bare, "that counts the packets that *did* carry data."),
            (len(rows), "that is every packet; some carried data."),
        ],
        explanation=f"{bare} of {len(rows)}: 3 for the handshake, the FINs and their ACKs, and the ACKs that "
        "did not get to ride on a data packet going the other way (piggybacking saved the others).",
        kind="capture", source=duplex,
    )
