"""Opening a WebSocket: over HTTP/1.1 a new TCP connection and an upgrade; over HTTP/2 one more stream (RFC 8441).

A browser opens each HTTP/1.1 WebSocket on a connection of its own: TCP's handshake, then the upgrade request
and its 101, then the first message (notebook 05: two round trips before the first message, a third for its
echo). RFC 8441 lets a WebSocket ride a stream of an HTTP/2 connection the page already has: a CONNECT with
``:protocol: websocket``, a 200, then frames in DATA frames; no handshake of its own, so one round trip less.
(Over HTTP/3, RFC 9220 does the same; WebTransport, a successor with many streams and unreliable datagrams,
is a draft for HTTP/3.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from ...apps.http2 import make_h2_handler
from ...apps.wsserver import make_ws_handler
from ...clients.http2 import websocket_echo
from ...network.link import link

__all__ = ["Opening", "opening_a_websocket"]


@dataclass
class Opening:
    """Round trips from wanting a WebSocket to its first message's echo, each way."""

    rtt_ms: float
    http11_new_connection: float
    http2_open_connection: float
    link: str = ""

    def __repr__(self) -> str:
        return (f"HTTP/1.1, a new connection and an upgrade: first echo after {self.http11_new_connection:.1f} round trips\n"
                f"HTTP/2, a stream on an open connection (RFC 8441): first echo after {self.http2_open_connection:.1f} "
                f"round trips")


async def _http11(url: str) -> float:
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        async with session.ws_connect(url) as ws:
            await ws.send_str("hello")
            await ws.receive(timeout=10)
            return time.perf_counter() - start


def opening_a_websocket(rtt_ms: float = 100.0, *, mode: str = "auto") -> Opening:
    """Time to the first echo: a WebSocket over HTTP/1.1 on a new connection, and over HTTP/2 on an open one."""
    with link(rtt_ms=rtt_ms, mode=mode) as net:
        host = net.addresses[1]
        ws = net.serve(make_ws_handler(), name="WebSocket server")
        h2 = net.serve(make_h2_handler(), name="HTTP/2 server")
        old = net.run(_http11(f"http://{host}:{ws.port}/"))
        _, echoed = net.run(websocket_echo(host, h2.port, warm=True))
        return Opening(rtt_ms, old * 1000 / rtt_ms, echoed * 1000 / rtt_ms, net.mode)
