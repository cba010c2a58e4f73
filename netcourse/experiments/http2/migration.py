"""A connection that survives a new address: a NAT rebinding in the middle of a conversation, over TCP and over QUIC.

A home router or a mobile network maps a client's address and port to a public pair of its own, and may
forget the mapping when the conversation goes quiet, or move the client to another; the client's packets then
arrive from a new port. TCP names a connection by its two addresses and ports (RFC 9293 §3.1): the server has no
connection for the new pair and answers with a reset. QUIC names it by connection IDs in every packet (RFC 9000
§5.1): the server finds the connection, checks that the new path answers (PATH_CHALLENGE, PATH_RESPONSE,
§8.2), and carries on (§9).

``migration`` runs the same conversation both ways through the link's relay (``Link.rebind()`` changes every
client's port at once): ``requests`` requests, ``gap`` seconds apart, the rebinding while request number
``rebind_after`` (from 0) is on its way. It needs the relay mode: the tap link's wire does not translate addresses.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ...apps.http2 import make_h1_app
from ...apps.http3 import H3Server
from ...apps.tls import Pki
from ...clients.http3 import session
from ...errors import NetcourseError
from ...network.link import link

__all__ = ["Conversation", "migration"]


@dataclass
class Conversation:
    """One transport's requests across a rebinding.

    Attributes:
        outcomes: per request, "ok" or what failed (the exception's name).
        connections: connections the client opened in all.
        server_saw: QUIC only: the client addresses the server's one connection received datagrams from.
        rebound_at: the index of the first request after the rebinding.
    """

    transport: str
    outcomes: list[str] = field(default_factory=list)
    connections: int = 0
    server_saw: int = 0
    rebound_at: int = 0
    path_frames: list[str] = field(default_factory=list)  # QUIC only: path validation frames, from the client's qlog

    @property
    def survived(self) -> bool:
        """The one connection carried every request, across the rebinding."""
        return self.connections == 1 and all(o == "ok" for o in self.outcomes)

    def __repr__(self) -> str:
        failed = [f"request {i + 1}: {o}" for i, o in enumerate(self.outcomes) if o != "ok"]
        seen = f"; the server saw it from {self.server_saw} addresses" if self.server_saw else ""
        if self.path_frames:
            seen += f" ({', '.join(self.path_frames)})"
        return (f"{self.transport:<22} {self.outcomes.count('ok')}/{len(self.outcomes)} requests answered over "
                f"{self.connections} connection{'s' if self.connections != 1 else ''}{seen}"
                + (f" ({'; '.join(failed)})" if failed else "") + f": survived {'yes' if self.survived else 'no'}")


async def _in_flight(request, net, delay: float):
    """Start ``request``, rebind while it is on its way, then wait for it."""
    task = asyncio.ensure_future(request)
    await asyncio.sleep(delay)
    await asyncio.to_thread(net.rebind)
    return await task


async def _tcp(host: str, port: int, net, requests: int, gap: float, rebind_after: int) -> Conversation:
    """Keep-alive HTTP/1.1 on one socket; when it fails, say how, and open another (as a browser would, paying
    a new handshake). A plain socket: aiohttp would quietly retry a failed request on a fresh connection."""
    result = Conversation("HTTP/1.1 over TCP", rebound_at=rebind_after)
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    request = f"GET /r/a?size=1000 HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def get() -> None:
        nonlocal conn
        if conn is None:
            conn = await asyncio.open_connection(host, port)
            result.connections += 1
        reader, writer = conn
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await asyncio.wait_for(reader.readexactly(length), 5)

    try:
        for i in range(requests):
            try:
                await (_in_flight(get(), net, net.rtt / 4) if i == rebind_after else get())
                result.outcomes.append("ok")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                result.outcomes.append("connection reset" if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError))
                                       else type(exc).__name__)
                if conn is not None:
                    conn[1].close()
                conn = None
            await asyncio.sleep(gap)
    finally:
        if conn is not None:
            conn[1].close()
    return result


async def _quic(host: str, port: int, cadata: bytes, net, requests: int, gap: float, rebind_after: int) -> Conversation:
    from aioquic.quic.logger import QuicLogger

    result = Conversation("HTTP/3 over QUIC", rebound_at=rebind_after, connections=1)
    logger = QuicLogger()
    async with session(host, port, cadata=cadata, quic_logger=logger) as get:
        for i in range(requests):
            try:
                ask = get([f"/r/{i}?size=1000"], wait=5)
                page = await (_in_flight(ask, net, net.rtt / 4) if i == rebind_after else ask)
                result.outcomes.append("ok" if set(page.status.values()) == {200} else "error status")
            except NetcourseError:
                result.outcomes.append("no answer")
            await asyncio.sleep(gap)
    result.path_frames = _path_frames(logger.to_dict())
    return result


def _path_frames(qlog: dict) -> list[str]:
    """The path-validation frames in the client's qlog (RFC 9000 §8.2): PATH_CHALLENGE received from the server
    on the new path, PATH_RESPONSE sent back, in order."""
    out = []
    for trace in qlog.get("traces", []):
        for event in trace.get("events", []):
            way = {"transport:packet_received": "received", "transport:packet_sent": "sent"}.get(event.get("name"))
            for frame in (event.get("data", {}).get("frames") or []) if way else []:
                kind = frame.get("frame_type")
                if kind in ("path_challenge", "path_response"):
                    out.append(f"{kind.upper()} {way}")
    return out


def migration(rtt_ms: float = 50.0, requests: int = 10, gap: float = 0.05, rebind_after: int = 5) -> dict[str, Conversation]:
    """The same conversation over TCP and over QUIC, the client's port changed halfway; see the docstring."""
    if not 1 <= rebind_after < requests <= 100:
        raise ValueError("need 1 <= rebind_after < requests <= 100")
    out = {}
    with Pki() as pki, link(rtt_ms=rtt_ms, mode="relay") as net:
        h1 = net.serve(make_h1_app())
        out["TCP"] = net.run(_tcp("127.0.0.1", h1.port, net, requests, gap, rebind_after))
        with H3Server(pki) as h3:
            host, port = net.udp_address(h3.port)
            out["QUIC"] = net.run(_quic(host, port, pki.ca.cert_pem.bytes(), net, requests, gap, rebind_after),
                                  timeout=30 + requests * (gap + 5))
            out["QUIC"].server_saw = len(h3.connections[0]) if h3.connections else 0
    return out
