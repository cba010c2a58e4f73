"""Time to the first byte of a fresh connection: HTTP/1.1 over TLS 1.3 over TCP, against HTTP/3 over QUIC, fresh
and resumed with 0-RTT, across the link.

- TCP + TLS 1.3: TCP's handshake (1 round trip), TLS's (1), then the request (1): the answer's first byte after
  about 3 round trips (notebook 09 measured the same).
- QUIC: one handshake carries the transport's and TLS 1.3's together (RFC 9001 §4), then the request: about 2.
- QUIC resumed with 0-RTT: the request rides in the first flight, encrypted with keys from the last connection's
  session ticket (RFC 9001 §4.6): about 1. The price is replay: an attacker who copies that first flight can
  send it again (RFC 9001 §9.2), so servers accept only requests that are safe to repeat as early data.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from ...apps.http3 import H3Server
from ...errors import NetcourseError
from ...apps.tls import Pki, client_context, make_tls_app, server_context
from ...clients.http3 import fetch
from ...network.link import link

__all__ = ["FirstByte", "first_byte"]


@dataclass
class FirstByte:
    """Seconds to the first answer on a fresh connection, per way; ``rtt_ms`` the link's round trip."""

    rtt_ms: float
    seconds: dict[str, float] = field(default_factory=dict)
    link: str = ""

    def round_trips(self, way: str) -> float:
        return self.seconds[way] * 1000 / self.rtt_ms

    def __repr__(self) -> str:
        return "\n".join(f"{way:<28} {s * 1000:6.0f} ms  ({self.round_trips(way):.1f} round trips)"
                         for way, s in self.seconds.items())


async def _tls_first_byte(url: str, pki: Pki) -> float:
    connector = aiohttp.TCPConnector(ssl=client_context(pki), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        async with session.get(url) as resp:
            await resp.content.read(1)
            return time.perf_counter() - start


def first_byte(rtt_ms: float = 100.0, *, mode: str = "auto") -> FirstByte:
    """One fresh request each way across a link of ``rtt_ms``; see the module's docstring."""
    result = FirstByte(rtt_ms)
    with Pki() as pki, link(rtt_ms=rtt_ms, mode=mode) as net:
        result.link = net.mode
        host = net.addresses[1]
        tls = net.serve(make_tls_app(), ssl=server_context(pki))
        result.seconds["HTTP/1.1, TLS 1.3, TCP"] = net.run(_tls_first_byte(f"https://{host}:{tls.port}/hello", pki))
        with H3Server(pki, host=host, namespace=net.far_namespace) as h3:
            quic_host, quic_port = net.udp_address(h3.port)
            cadata, tickets = pki.ca.cert_pem.bytes(), []
            fresh = net.run(fetch(quic_host, quic_port, ["/r/first?size=100"], cadata=cadata, tickets=tickets))
            result.seconds["HTTP/3, QUIC"] = fresh.seconds
            _wait_for_ticket(tickets)
            again = net.run(fetch(quic_host, quic_port, ["/r/again?size=100"], cadata=cadata,
                                  session_ticket=tickets[-1], early=True))
            result.seconds["HTTP/3, QUIC resumed, 0-RTT"] = again.seconds
    return result


def _wait_for_ticket(tickets: list, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not tickets and time.monotonic() < deadline:
        time.sleep(0.01)
    if not tickets:
        raise RuntimeError("the HTTP/3 server sent no session ticket")


async def _use_twice(host: str, port: int, cadata: bytes, rtt_ms: float) -> dict[str, float]:
    """Log in (for a ticket), then use the same ticket twice for 0-RTT: round trips to each answer."""
    tickets: list = []
    await fetch(host, port, ["/r/login"], cadata=cadata, tickets=tickets)
    for _ in range(200):  # the ticket comes right after the handshake; a bounded wait
        if tickets:
            break
        await asyncio.sleep(0.01)
    if not tickets:
        raise NetcourseError("the HTTP/3 server sent no session ticket within 2 s")
    out = {}
    for attempt in ("first use of the ticket", "the same ticket again"):
        page = await fetch(host, port, ["/r/transfer"], cadata=cadata, session_ticket=tickets[0], early=True)
        out[attempt] = page.seconds * 1000 / rtt_ms
    return out


def replay_early_data(rtt_ms: float = 100.0, *, mode: str = "auto") -> dict[str, dict[str, float]]:
    """A resumed 0-RTT request, then the same session ticket used again (what a replay of the first flight
    amounts to, to the server): round trips to the answer each time, against a server with single-use tickets
    and one whose tickets may be used again, side by side on one link. With single-use tickets the server has
    forgotten the ticket, refuses the early data, and the second request waits for a full handshake and is sent
    again (two round trips or more); with reusable ones it is served again at once (one), which is why a server
    must only accept early data that is safe to repeat (RFC 9001 §9.2)."""
    with Pki() as pki, link(rtt_ms=rtt_ms, mode=mode) as net:
        host = net.addresses[1]
        with H3Server(pki, host=host, namespace=net.far_namespace, single_use_tickets=True) as once, \
                H3Server(pki, host=host, namespace=net.far_namespace, single_use_tickets=False) as again:
            cadata = pki.ca.cert_pem.bytes()

            async def both() -> list[dict[str, float]]:
                return await asyncio.gather(*(_use_twice(*net.udp_address(s.port), cadata, rtt_ms) for s in (once, again)))

            single, reusable = net.run(both())
    return {"single-use tickets": single, "reusable tickets": reusable}
