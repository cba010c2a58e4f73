"""The smallest server a lesson needs: TCP echo, for ``serve()``.

``tcp_echo`` sends back whatever arrives, in the same pieces, with Nagle's algorithm off so each echo leaves at
once (notebook 02's byte stream, notebook 04's TCP detection, the link's round-trip benchmark).
"""

from __future__ import annotations

import asyncio
import socket

__all__ = ["tcp_echo"]


async def tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A stream handler for ``serve()`` that sends back whatever arrives (Nagle off: echoes leave at once)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
