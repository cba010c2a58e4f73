"""Notebook 06's shared pieces: the client's User-Agent, a raw request and reading a whole answer, a publisher.
"""

from __future__ import annotations

import asyncio
import socket
import time

from ...apps.polling import MessageLog

__all__ = ["UA", "raw_request", "read_all", "publish_events", "tcp_payload", "event_body_bytes"]


UA = {"User-Agent": "netcourse-stream-client"}


def raw_request(path: str, port: int, extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: netcourse\r\n{extra}"
            "Connection: close\r\n\r\n").encode()


def read_all(sock: socket.socket, deadline: float) -> list[tuple[float, bytes]]:
    """Every recv until the server closes: (monotonic time, bytes)."""
    pieces = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        pieces.append((time.monotonic(), data))
    return pieces


def tcp_payload(pkt) -> bytes:
    from scapy.layers.inet import TCP

    return bytes(pkt[TCP].payload)


async def publish_events(log: MessageLog, count: int, gap: float, size: int = 0) -> None:
    for i in range(count):
        await asyncio.sleep(gap)
        text = f"event {log.last_id + 1}"
        log.append(text + (" " + "." * max(0, size - len(text) - 1) if size > len(text) else ""))


def event_body_bytes(size: int = 100, msg_id: int = 10) -> int:
    """Bytes one published event takes in the stream's body: its ``id:`` and ``data:`` lines and the blank line."""
    from ...protocols.sse import encode

    text = f"event {msg_id}"
    text += " " + "." * max(0, size - len(text) - 1) if size > len(text) else ""
    return len(encode(data=text, id=str(msg_id)))
