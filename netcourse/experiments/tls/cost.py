"""Notebook 09, what TLS costs and what it survives: bytes per record, handshake CPU, bad clients.

- ``record_overhead``: the same HTTP messages sent as plaintext and through TLS 1.3 and 1.2 to the course's
  HTTPS server over a real socket; the client's TLS runs on memory buffers (``ssl.SSLObject``) so that
  every byte it puts on the wire is counted.
- ``handshake_cpu``: a client and a server context shaking hands in memory, full and resumed, timed in CPU
  seconds per side.
- ``bad_inputs``: garbage, a client that stops half-way through its ClientHello, 200 handshakes at once;
  after each, a normal client is still served.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass, field

from ...apps.tls import Pki, client_context, make_tls_app, server_context
from ...errors import TLSRecordError
from ...protocols.httpwire import parse_head, split_head
from ...protocols.tlsrecord import RecordDecoder
from ...runtime.server import serve
from ...runtime.waiting import run_async
from .handshake import fetch
from .versions import client_hello

__all__ = [
    "Overhead", "record_overhead", "overhead_knob", "SIZES",
    "HandshakeCost", "handshake_cpu",
    "bad_inputs",
    "handshakes_per_second", "throughput",
]

TIMEOUT = 10.0
SIZES = (0, 16, 100, 1000, 4000, 16_000, 16_384, 16_385, 40_000, 60_000)  # body bytes; the app takes 64 KiB at most


class _MemoryClient:
    """A TLS client whose records pass through memory buffers on their way to a real socket: every byte and
    every record it sends and receives is counted."""

    def __init__(self, ctx: ssl.SSLContext, sock: socket.socket) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.sock = sock
        self.sent = self.received = 0
        self._out, self._in = _Counter(), _Counter()

    @property
    def records(self) -> int:
        """Records sent and received so far."""
        return self._out.records + self._in.records

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self._out.feed(data)
            self.sock.sendall(data)
            self.sent += len(data)

    def _pull(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self._in.feed(data)
        self.received += len(data)
        self.incoming.write(data)

    def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._pull()

    def exchange(self, request: bytes) -> bytes:
        """Send one HTTP request; return the whole response (head and Content-Length body)."""
        self.tls.write(request)
        self._flush()
        data = b""
        while True:
            split = split_head(data)
            if split is not None:
                head, body = split
                length = int(parse_head(head).header("Content-Length") or 0)
                if len(body) >= length:
                    return data
            try:
                data += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._pull()


@dataclass
class Overhead:
    """One message size, plaintext against TLS.

    Attributes:
        body: bytes of request body (the echo answers the same body).
        plain: bytes of the HTTP request and response as plain HTTP puts them on TCP.
        tls13, tls12: bytes on the wire for the same request and response through TLS 1.3 / 1.2.
        records13, records12: records each took (both directions).
    """

    body: int
    plain: int
    tls13: int
    tls12: int
    records13: int
    records12: int

    def per_record(self, version: str = "1.3") -> float:
        """Bytes of overhead per record."""
        extra, records = (self.tls13 - self.plain, self.records13) if version == "1.3" else (
            self.tls12 - self.plain, self.records12)
        return extra / records if records else 0.0


class _Counter:
    """Counts records in a byte stream."""

    def __init__(self) -> None:
        self.decoder = RecordDecoder()
        self.records = 0

    def feed(self, data: bytes) -> None:
        try:
            self.records += len(self.decoder.feed(data))
        except TLSRecordError:
            pass


def record_overhead(sizes: tuple[int, ...] = SIZES) -> list[Overhead]:
    """Echo bodies of ``sizes`` bytes through TLS 1.3 and TLS 1.2; count the bytes against plaintext."""
    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki), name="https") as srv:
        results = {}
        for version in ("1.3", "1.2"):
            results[version] = _measure_records(client_context(pki, version=version), srv.host, srv.port, sizes)
    return [Overhead(s, results["1.3"][s][0], results["1.3"][s][1], results["1.2"][s][1], results["1.3"][s][2],
                     results["1.2"][s][2]) for s in sizes]


def _measure_records(ctx: ssl.SSLContext, host: str, port: int, sizes: tuple[int, ...]) -> dict[int, tuple[int, int, int]]:
    """{body: (plaintext bytes, TLS bytes on the wire, records)} for each size, over one connection."""
    out = {}
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        client = _MemoryClient(ctx, sock)
        client.handshake()
        client.exchange(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")  # TLS 1.3 session tickets arrive here
        for size in sizes:
            request = (f"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n"
                       "Content-Type: application/octet-stream\r\n\r\n").encode() + bytes(size)
            before = (client.sent, client.received, client.records)
            response = client.exchange(request)
            out[size] = (len(request) + len(response), client.sent + client.received - before[0] - before[1],
                         client.records - before[2])
    return out


def overhead_knob(rows: list[Overhead], body: int = 1000):
    """The knob's picture: bytes on the wire for one message size, plaintext against TLS."""
    from ...course.plots.tls import tls_overhead

    row = next((r for r in rows if r.body == body), None)
    if row is None:
        raise ValueError(f"no measurement for {body} bytes; measured: {', '.join(str(r.body) for r in rows)}")
    return tls_overhead(rows, row)


# -- handshake CPU -------------------------------------------------------------------------------------------


@dataclass
class HandshakeCost:
    """CPU time per handshake, each side, measured in memory (no network in the figure).

    Attributes:
        handshakes: how many of each kind were timed.
        full_client_ms, full_server_ms: CPU ms per full TLS 1.3 handshake (ECDHE x25519, ECDSA P-256).
        resumed_client_ms, resumed_server_ms: CPU ms per resumed one (PSK with ECDHE: no certificate
            signed or checked).
        resumed: how many of the resumed handshakes really were resumed.
    """

    handshakes: int
    full_client_ms: float
    full_server_ms: float
    resumed_client_ms: float
    resumed_server_ms: float
    resumed: int

    def __repr__(self) -> str:
        return (f"CPU per TLS 1.3 handshake, {self.handshakes} of each, on this machine:\n"
                f"  full:    client {self.full_client_ms:.2f} ms, server {self.full_server_ms:.2f} ms\n"
                f"  resumed: client {self.resumed_client_ms:.2f} ms, server {self.resumed_server_ms:.2f} ms "
                f"({self.resumed} of {self.handshakes} resumed)")


def _pair(cctx: ssl.SSLContext, sctx: ssl.SSLContext, session=None) -> tuple[ssl.SSLObject, float, float]:
    """One handshake between two memory endpoints; returns (client, client CPU s, server CPU s)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    cpu = {client: 0.0, server: 0.0}
    done = {client: False, server: False}

    def step(side: ssl.SSLObject) -> None:  # one side's turn, timed in this thread's CPU seconds
        t = time.thread_time()
        if not done[side]:
            try:
                side.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
        cpu[side] += time.thread_time() - t

    for _ in range(20):  # a handshake takes a handful of flights
        step(client)
        s_in.write(c_out.read())
        step(server)
        c_in.write(s_out.read())
        if all(done.values()):
            break
    t = time.thread_time()
    try:
        client.read(1)  # takes in the session tickets
    except ssl.SSLWantReadError:
        pass
    cpu[client] += time.thread_time() - t
    return client, cpu[client], cpu[server]


def handshake_cpu(n: int = 50) -> HandshakeCost:
    """Time ``n`` full and ``n`` resumed TLS 1.3 handshakes in memory."""
    with Pki() as pki:
        sctx, cctx = server_context(pki), client_context(pki, version="1.3")
        full_c = full_s = res_c = res_s = 0.0
        resumed = 0
        first, _, _ = _pair(cctx, sctx)
        session = first.session
        for _ in range(n):
            _, c, s = _pair(cctx, sctx)
            full_c, full_s = full_c + c, full_s + s
            again, c, s = _pair(cctx, sctx, session=session)
            res_c, res_s = res_c + c, res_s + s
            resumed += again.session_reused
    ms = 1000.0 / n
    return HandshakeCost(n, full_c * ms, full_s * ms, res_c * ms, res_s * ms, resumed)


# -- bad input -------------------------------------------------------------------------------------------


def _answer(host: str, port: int, data: bytes, wait: float = 3.0) -> tuple[str, float]:
    """Send ``data`` raw, then read what comes back until the server closes; (what, seconds to close)."""
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=wait) as sock:
        sock.sendall(data)
        got = b""
        try:
            while chunk := sock.recv(4096):
                got += chunk
        except socket.timeout:
            return f"nothing within {wait:g} s (still open)", time.perf_counter() - t0
        except ConnectionResetError:
            pass
    elapsed = time.perf_counter() - t0
    if not got:
        return "closed, no answer", elapsed
    try:
        labels = [r.label for r in RecordDecoder().feed(got)]
    except TLSRecordError:
        labels = [repr(got[:20])]
    return f"{', '.join(labels)} ({got.hex(' ')}), then closed", elapsed


def bad_inputs(*, handshakes: int = 200, handshake_timeout: float = 1.0) -> list[tuple[str, str]]:
    """Garbage, a stalled handshake and a crowd of handshakes against one server; it serves on."""
    rows = []
    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki), ssl_handshake_timeout=handshake_timeout,
                             name="https") as srv:
        ctx = client_context(pki)

        def still_serving() -> str:
            return fetch(ctx, srv.host, srv.port).split(" | ")[0]

        what, _ = _answer(srv.host, srv.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        rows.append(("plain HTTP sent to the TLS port", f"{what}; next client: {still_serving()}"))
        what, _ = _answer(srv.host, srv.port, bytes(range(256)) * 4)
        rows.append(("1 KiB of bytes that are not TLS", f"{what}; next client: {still_serving()}"))
        hello = client_hello(ctx)
        what, took = _answer(srv.host, srv.port, hello[: len(hello) // 2], wait=handshake_timeout + 3)
        rows.append((f"half a ClientHello, then silence (timeout {handshake_timeout:g} s)",
                     f"{what} after {took:.1f} s; next client: {still_serving()}"))
        ok, took = run_async(_crowd(ctx, srv.host, srv.port, handshakes), 60)
        rows.append((f"{handshakes} handshakes at once", f"{ok} of {handshakes} completed in {took:.2f} s; "
                     f"next client: {still_serving()}"))
    return rows


async def _crowd(ctx: ssl.SSLContext, host: str, port: int, n: int) -> tuple[int, float]:
    async def one() -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"), TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2.0)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
        return True

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)))
    return sum(results), time.perf_counter() - t0


# -- bench ----------------------------------------------------------------------------------------------


def handshakes_per_second(seconds: float = 2.0) -> dict[str, float]:
    """Full and resumed TLS 1.3 handshakes per second against the course's server over loopback, one client."""
    out = {}
    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki), name="https") as srv:
        ctx = client_context(pki, version="1.3")
        with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while tls.recv(4096):
                pass
            session = tls.session
        for kind, sess in (("full", None), ("resumed", session)):
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as raw, \
                        ctx.wrap_socket(raw, server_hostname="localhost", session=sess):
                    count += 1
            out[kind] = count / (time.perf_counter() - t0)
    return out


@dataclass
class Throughput:
    """Bulk transfer over loopback, plain TCP against TLS 1.3 (MB/s, one connection)."""

    megabytes: int
    plain_mb_s: float
    tls_mb_s: float
    notes: list[str] = field(default_factory=list)


def throughput(megabytes: int = 64) -> Throughput:
    """Send ``megabytes`` MB through a plain and a TLS 1.3 echo-less sink on loopback; MB/s each."""
    total = megabytes * 1_000_000
    chunk = bytes(65536)

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = 0
        while got < total and (data := await reader.read(1 << 20)):
            got += len(data)
        writer.write(b"done")
        await writer.drain()

    rates = {}
    with Pki() as pki:
        for kind, sctx in (("plain", None), ("tls", server_context(pki))):
            with serve(sink, ssl=sctx, name=f"{kind} sink") as srv:
                with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as raw:
                    sock = client_context(pki, version="1.3").wrap_socket(raw, server_hostname="localhost") \
                        if sctx else raw
                    t0 = time.perf_counter()
                    sent = 0
                    while sent < total:
                        sock.sendall(chunk[: total - sent])
                        sent += min(len(chunk), total - sent)
                    sock.recv(4)
                    rates[kind] = megabytes / (time.perf_counter() - t0)
                    if sctx:
                        sock.close()
    return Throughput(megabytes, rates["plain"], rates["tls"])
