"""Notebook 02, section 1: one TCP conversation captured: the handshake, sequence and acknowledgement numbers,
the FIN teardown.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from ...errors import NetcourseTimeout
from ...runtime.server import serve
from ...runtime.waiting import wait_until
from ...traffic.packets import C2S, PacketRow
from ...traffic.sniffer import Capture, capture
from ..registry import scenario

__all__ = ["MESSAGES", "Conversation", "tcp_conversation"]


MESSAGES = (b"one", b"two", b"three")


@dataclass(frozen=True)
class Conversation:
    """A client sends a few messages over one TCP connection, then closes it.

    Attributes:
        capture: the packets.
        messages: what the client sent, one write each.
        received: what the server read, all together.
    """

    capture: Capture
    messages: tuple[bytes, ...]
    received: bytes

    def syn(self):
        """The client's SYN packet (a scapy packet)."""
        from scapy.layers.inet import TCP

        for pkt in self.capture.packets:
            if TCP in pkt and pkt[TCP].flags == "S":
                return pkt
        raise LookupError("no SYN in the capture")

    def syn_options(self) -> list[tuple[str, object]]:
        """The SYN's TCP options as (name, value): MSS, SAckOK, Timestamp, WScale, NOP."""
        from scapy.layers.inet import TCP

        return [(name, value) for name, value in self.syn()[TCP].options]

    def absolute(self) -> list[tuple[str, str, int, int]]:
        """(direction, flags, absolute seq, absolute ack) of every TCP packet."""
        from scapy.layers.inet import TCP

        rows = self.capture.table()
        return [
            (row.direction, row.flags, pkt[TCP].seq, pkt[TCP].ack)
            for row, pkt in zip(rows, self.capture.packets)
            if row.proto == "TCP"
        ]

    def data_rows(self) -> list[PacketRow]:
        """The packets that carried the client's messages."""
        return [r for r in self.capture.table() if r.direction == C2S and r.payload]


@scenario("tcp_conversation")
def tcp_conversation(messages: tuple[bytes, ...] = MESSAGES, gap: float = 0.005, timeout: float = 5.0) -> Conversation:
    """Open a connection, send ``messages`` one write each (``gap`` seconds apart), close it."""
    received: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())  # everything, until the client's FIN

    with serve(server, name="sink") as srv:
        with capture(srv.port, scenario="tcp_conversation") as cap:
            with socket.create_connection((srv.host, srv.port), timeout=timeout) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for m in messages:
                    sock.sendall(m)
                    time.sleep(gap)
                sock.shutdown(socket.SHUT_WR)
                if sock.recv(1) != b"":
                    raise NetcourseTimeout("the server sent data it should not have")
            if not wait_until(lambda: bool(received), timeout):
                raise NetcourseTimeout("the server never saw the end of the stream")
    return Conversation(cap, tuple(messages), received[0])
