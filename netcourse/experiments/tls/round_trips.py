"""Notebook 09, section 3: time to the first byte across a link: TCP, then TLS 1.2, 1.3 and a resumed 1.3.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from ...apps.tls import Pki, client_context, make_tls_app, server_context
from ...course.exercises import Prediction
from ...network.link import link
from .versions import TIMEOUT

__all__ = ["EARLY_DATA_IN_PYTHON", "RoundTrips", "CASES", "round_trips", "round_trip_grid", "round_trip_knob", "predict_first_byte"]


# Python's ssl module has no binding for OpenSSL's SSL_write_early_data / SSL_read_early_data, so 0-RTT
# cannot be sent from Python (checked, not assumed: ``EARLY_DATA_IN_PYTHON``).
EARLY_DATA_IN_PYTHON = any(hasattr(cls, "write_early_data") for cls in (ssl.SSLSocket, ssl.SSLObject))


@dataclass
class RoundTrips:
    """Time to the first byte of the response, on a fresh connection across an emulated link.

    Attributes:
        rtt_ms: the link's round-trip time.
        mode: "tap" (kernel TCP across namespaces) or "relay" (a delaying relay on loopback).
        rows: (case, round trips in theory, measured ms) per case.
    """

    rtt_ms: float
    mode: str
    rows: list[tuple[str, int, float]] = field(default_factory=list)

    def ms(self, case: str) -> float:
        return next(m for c, _, m in self.rows if c == case)

    def __repr__(self) -> str:
        lines = [f"time to the first response byte, fresh connection, RTT {self.rtt_ms:g} ms ({self.mode} link):"]
        for case, theory, ms in self.rows:
            lines.append(f"  {case:<26} theory {theory} RTT = {theory * self.rtt_ms:5.0f} ms   measured {ms:6.1f} ms"
                         f"   ({ms / self.rtt_ms:.2f} RTT)")
        return "\n".join(lines)


CASES = (  # (name, round trips: TCP + TLS + HTTP)
    ("HTTP, no TLS", 2),
    ("TLS 1.2", 4),
    ("TLS 1.3", 3),
    ("TLS 1.3 resumed", 3),
)


def _first_byte(ctx: ssl.SSLContext | None, host: str, port: int, session: Any = None) -> tuple[float, Any]:
    payload = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is None:
            raw.sendall(payload)
            raw.recv(1)
            return time.perf_counter() - t0, None
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(payload)
            tls.recv(1)
            elapsed = time.perf_counter() - t0
            if session is not None and not tls.session_reused:
                raise RuntimeError("the TLS session was not resumed")
            data = b""
            while b"hello over TLS" not in data:  # read the rest, and with it the session tickets
                data += tls.recv(4096)
            return elapsed, tls.session


def round_trips(rtt_ms: float = 100.0) -> RoundTrips:
    """Measure each case of ``CASES`` once on a fresh connection across a link of ``rtt_ms``."""
    with Pki() as pki, link(rtt_ms=rtt_ms) as net:
        tls_srv = net.serve(make_tls_app(), ssl=server_context(pki), name="https")
        plain = net.serve(make_tls_app(), name="http")

        def measure() -> RoundTrips:
            out = RoundTrips(rtt_ms, net.mode)
            ms = 1000.0
            out.rows.append((CASES[0][0], CASES[0][1], _first_byte(None, plain.host, plain.port)[0] * ms))
            out.rows.append((CASES[1][0], CASES[1][1],
                             _first_byte(client_context(pki, version="1.2"), tls_srv.host, tls_srv.port)[0] * ms))
            ctx13 = client_context(pki, version="1.3")
            full, session = _first_byte(ctx13, tls_srv.host, tls_srv.port)
            out.rows.append((CASES[2][0], CASES[2][1], full * ms))
            resumed, _ = _first_byte(ctx13, tls_srv.host, tls_srv.port, session=session)
            out.rows.append((CASES[3][0], CASES[3][1], resumed * ms))
            return out

        return net.near(measure, timeout=30 + rtt_ms / 10)


def round_trip_grid(rtts: tuple[float, ...] = (25, 50, 100)) -> dict[float, RoundTrips]:
    """``round_trips`` at several RTTs, for the knob."""
    return {r: round_trips(r) for r in rtts}


def round_trip_knob(grid: dict[float, RoundTrips], rtt_ms: float = 100):
    """The knob's picture: measured against theory at one RTT of the grid."""
    from ...course.plots.tls import tls_round_trips

    if rtt_ms not in grid:
        raise ValueError(f"no measurement at {rtt_ms:g} ms; measured: {', '.join(f'{r:g}' for r in grid)}")
    return tls_round_trips(grid[rtt_ms])


def predict_first_byte(rtt_ms: float = 100.0) -> Prediction:
    """Predict the time to the first response byte with TLS 1.2 on a fresh connection."""
    def explain(given: float, measured: float) -> str:
        return (f"Four round trips: TCP's SYN/SYN-ACK (1), then TLS 1.2's two: ClientHello → ServerHello … "
                f"ServerHelloDone (2), ClientKeyExchange + Finished → Finished (3), and only then the request → "
                f"the response (4). 4 × {rtt_ms:g} = {4 * rtt_ms:g} ms, plus a little processing. TLS 1.3 sends "
                "its key share in the ClientHello and saves one.")

    return Prediction(
        f"On a link with a {rtt_ms:g} ms round trip, a client opens a fresh TCP connection, does a full TLS 1.2 "
        "handshake, and sends GET. How many ms from connect() to the first byte of the response?",
        measure=lambda rt: rt.ms("TLS 1.2"), unit="ms", tolerance=0.1, explain=explain,
        step=lambda rt: rtt_ms, spread="one round trip off is a different count of flights, not noise",
        mistakes=[(lambda g, m: abs(g - 3 * rtt_ms) < rtt_ms / 2, "That is TLS 1.3's count: TLS 1.2's full handshake "
                   "takes two round trips, not one, before the request may leave."),
                  (lambda g, m: abs(g - 2 * rtt_ms) < rtt_ms / 2, "That leaves out the TLS handshake: TCP's round trip "
                   "and the request's are not all.")],
    )
