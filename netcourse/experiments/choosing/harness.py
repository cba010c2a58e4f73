"""Notebook 10's harness: the workload every transport must deliver, a run's result, and the pieces each
transport's run shares (an inbox of arrivals, the server thread's CPU, a client that goes away and comes back,
the publisher).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ...network.relay import Meter
from ...runtime.waiting import run_async

__all__ = ["TRANSPORTS", "HEADERS", "UDP_HEADERS", "GRACE", "RAW_MAX", "TAIL_SAMPLES", "Workload", "TransportRun", "wire_bytes", "publish_on_schedule", "come_and_go", "Absence", "serve_run", "finish", "Inbox", "settle"]


TRANSPORTS = ("short polling", "long polling", "SSE", "WebSocket", "raw TCP", "UDP", "webhooks")


HEADERS = 14 + 20 + 32  # bytes per TCP segment on the wire: Ethernet, IPv4, TCP with timestamps


UDP_HEADERS = 14 + 20 + 8


GRACE = 0.5  # seconds after the last publication for the last deliveries


TAIL_SAMPLES = 1000  # samples before a 99th percentile means something (below it, the tables show the maximum)


RAW_MAX = 0xFFFF  # raw TCP frames: notebook 04's length-prefixed frames, with the 16-bit length's full range


@dataclass(frozen=True)
class Workload:
    """What every transport must deliver.

    Attributes:
        clients: subscribers.
        messages: messages published.
        rate: messages per second.
        size: bytes of each message's text.
        rtt_ms: the emulated link's round trip (0: loopback).
        interval: short polling's interval, seconds.
        loss: UDP's loss probability on the way to each client.
        away: (leave, back) in seconds after publishing starts: client 0 is gone in between (None: never).
    """

    clients: int = 5
    messages: int = 20
    rate: float = 20.0
    size: int = 100
    rtt_ms: float = 50.0
    interval: float = 0.25
    loss: float = 0.0
    away: tuple[float, float] | None = None


@dataclass
class TransportRun:
    """One transport on one workload.

    Attributes:
        latencies: seconds from publication to receipt, one per (client, message) received first time.
        duplicates: messages a client received more than once.
        wire: bytes on the wire both ways, headers included (TCP: TCP_INFO at the relay; UDP: counted).
        units: requests (polling, webhooks), frames (WebSocket, raw TCP), events (SSE) or datagrams (UDP).
        server_cpu_s: CPU seconds of the server's thread during the run.
    """

    name: str
    workload: Workload
    latencies: list[float] = field(default_factory=list)
    duplicates: int = 0
    wire: int = 0
    units: int = 0
    unit_name: str = "requests"
    server_cpu_s: float = 0.0
    while_away: int = 0  # messages published while client 0 was away
    caught_up: int = 0  # of those, how many client 0 received after all (late)

    @property
    def expected(self) -> int:
        return self.workload.clients * self.workload.messages

    @property
    def delivered(self) -> int:
        return len(self.latencies)

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    def percentile(self, q: float) -> float:
        """The q-th percentile of latency, in ms (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    def tail(self) -> tuple[str, float]:
        """The tail of the latency distribution the sample supports, in ms: ("p99", value) from 1,000 samples
        up, else ("max", the largest delay seen). With 80 samples a "p99" is just the second largest."""
        if len(self.latencies) >= TAIL_SAMPLES:
            return "p99", self.percentile(99)
        return "max", 1000 * max(self.latencies) if self.latencies else float("nan")

    @property
    def bytes_per_message(self) -> float:
        return self.wire / self.delivered if self.delivered else float("nan")

    @property
    def units_per_message(self) -> float:
        return self.units / self.delivered if self.delivered else float("nan")

    @property
    def cpu_us_per_message(self) -> float:
        return 1e6 * self.server_cpu_s / self.delivered if self.delivered else float("nan")

    def __repr__(self) -> str:
        label, tail = self.tail()
        return (f"{self.name:<14} p50 {self.percentile(50):7.1f} ms  {label} {tail:7.1f} ms  "
                f"{self.delivered}/{self.expected} delivered ({self.lost} lost, {self.duplicates} twice)  "
                f"{self.bytes_per_message:7.0f} B/msg  {self.units_per_message:5.2f} {self.unit_name}/msg  "
                f"{self.cpu_us_per_message:6.0f} µs CPU/msg")


def wire_bytes(meter: Meter) -> int:
    """Bytes on the wire through a relay's meter: payload, and Ethernet/IP/TCP headers per segment."""
    payload, segments = meter.totals()
    return payload + HEADERS * segments


def _text(msg_id: int, size: int) -> str:
    head = f"{msg_id}:{time.monotonic():.6f}:"
    return head + "x" * max(0, size - len(head))


class Inbox:
    """What the clients received: first arrival per (client, message), and repeats."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], float] = {}
        self.duplicates = 0

    def got(self, client: int, text: str) -> None:
        now = time.monotonic()
        msg_id, sent, _ = text.split(":", 2)
        key = (client, int(msg_id))
        if key in self.seen:
            self.duplicates += 1
        else:
            self.seen[key] = now - float(sent)


def _thread_cpu(thread_ident: int | None) -> float:
    if thread_ident is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread_ident))
    except (OSError, AttributeError):
        return 0.0


def _server_thread(srv: Any) -> int | None:
    thread = getattr(srv, "_thread", None)
    return thread.ident if thread is not None else None


class Absence:
    """When client 0 is away (``Workload.away``), on the monotonic clock once publishing has started."""

    def __init__(self, workload: Workload) -> None:
        self.window = workload.away
        self.started = asyncio.Event()
        self.start = 0.0
        self.messages: list[int] = []  # ids published while client 0 was away

    def away_now(self, client: int) -> bool:
        if client != 0 or self.window is None or not self.started.is_set():
            return False
        t = time.monotonic() - self.start
        return self.window[0] <= t < self.window[1]

    async def until_leave(self) -> None:
        """Return when client 0 must leave (never, without a window)."""
        if self.window is None:
            await asyncio.Event().wait()
        await self.started.wait()
        await asyncio.sleep(max(0.0, self.start + self.window[0] - time.monotonic()))

    async def until_back(self) -> None:
        assert self.window is not None
        await asyncio.sleep(max(0.0, self.start + self.window[1] - time.monotonic()))


async def publish_on_schedule(workload: Workload, publish, absence: "Absence | None" = None) -> None:
    """Publish at the workload's rate, on schedule (no drift from the time publishing takes)."""
    start = time.monotonic()
    if absence is not None:
        absence.start = start
        absence.started.set()
    for i in range(1, workload.messages + 1):
        if absence is not None and absence.away_now(0):
            absence.messages.append(i)
        publish(_text(i, workload.size))
        delay = start + i / workload.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def finish(tasks: list[asyncio.Task], inbox: Inbox, expected: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while len(inbox.seen) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def come_and_go(i: int, workload: Workload, absence: Absence, connect) -> None:
    """Run ``connect()``; client 0 drops its connection while away and opens a fresh one when back."""
    task = asyncio.create_task(connect())
    if i == 0 and workload.away is not None:
        await absence.until_leave()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await absence.until_back()
        task = asyncio.create_task(connect())
    try:
        await task
    finally:
        task.cancel()


def serve_run(workload: Workload, run: TransportRun, inbox: Inbox, absence: Absence, srv: Any, meter: Meter,
               client, publish, *, ready=None, session: bool = True, grace: float = 0.0) -> None:
    """The common run of a TCP transport: start every client (``client(i, session)``, or ``client(i)``), wait
    until ``ready()`` says they are all subscribed (or a moment, without it), publish on schedule, wait for the
    deliveries, and count the server thread's CPU meanwhile; then settle ``run``."""

    async def clients_then_publish(session_: aiohttp.ClientSession | None) -> None:
        tasks = [asyncio.create_task(client(i, session_) if session else client(i)) for i in range(workload.clients)]
        if ready is None:
            await asyncio.sleep(0.05 + workload.rtt_ms / 500)  # held requests and streams are on their way
        else:
            deadline = time.monotonic() + 5 + workload.rtt_ms / 100
            while not ready() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        cpu0 = _thread_cpu(_server_thread(srv))
        await publish_on_schedule(workload, publish, absence)
        await finish(tasks, inbox, run.expected, GRACE + grace + workload.rtt_ms / 250)
        run.server_cpu_s = _thread_cpu(_server_thread(srv)) - cpu0

    async def main() -> None:
        if not session:
            await clients_then_publish(None)
            return
        async with aiohttp.ClientSession() as session_:
            await clients_then_publish(session_)

    run_async(main(), 60)
    settle(run, inbox, absence, wire_bytes(meter))


def settle(run: TransportRun, inbox: Inbox, absence: Absence, wire: int) -> None:
    run.latencies, run.duplicates, run.wire = list(inbox.seen.values()), inbox.duplicates, wire
    run.while_away = len(absence.messages)
    run.caught_up = sum(1 for m in absence.messages if (0, m) in inbox.seen)
