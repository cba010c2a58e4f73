"""WebTransport over HTTP/3, measured: a session opened on a new QUIC connection, then one datagram and one
stream echoed, across the link.

A WebTransport session is an extended CONNECT on an HTTP/3 connection (``:protocol: webtransport``, as RFC 9220
does for WebSockets); inside it, the client and the server open as many streams as they like, each a QUIC
stream (independent: a loss on one does not hold up another), and send **datagrams** (RFC 9297 over QUIC's
DATAGRAM frames, RFC 9221): not retransmitted, not ordered, for data that is worthless if late. The protocol is
an IETF draft (draft-ietf-webtrans-http3), which aioquic implements; browsers ship it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...apps.http3 import H3Server
from ...apps.tls import Pki
from ...clients.http3 import webtransport_echo
from ...network.link import link

__all__ = ["WebTransportRun", "webtransport"]


@dataclass
class WebTransportRun:
    """Seconds from the start to each step, one after the other, across a link of ``rtt_ms``."""

    rtt_ms: float
    steps: dict[str, float] = field(default_factory=dict)
    link: str = ""

    def round_trips(self, step: str) -> float:
        return self.steps[step] * 1000 / self.rtt_ms

    def __repr__(self) -> str:
        lines, before = [], 0.0
        for step, seconds in self.steps.items():
            lines.append(f"{step:<30} after {self.round_trips(step):.1f} round trips; this step "
                         f"{(seconds - before) * 1000 / self.rtt_ms:.1f} round trips")
            before = seconds
        return "\n".join(lines)


def webtransport(rtt_ms: float = 100.0, *, mode: str = "auto") -> WebTransportRun:
    """A WebTransport session to the course's HTTP/3 server across a link of ``rtt_ms``; see the docstring."""
    with Pki() as pki, link(rtt_ms=rtt_ms, mode=mode) as net:
        with H3Server(pki, host=net.addresses[1], namespace=net.far_namespace) as server:
            host, port = net.udp_address(server.port)
            steps = net.run(webtransport_echo(host, port, cadata=pki.ca.cert_pem.bytes()))
        return WebTransportRun(rtt_ms, steps, net.mode)
