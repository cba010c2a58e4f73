"""Notebook 11's harness: the workload every transport must deliver, a run's result, and the pieces each
transport's run shares (an inbox of arrivals, the server thread's CPU, a client that goes away and comes back,
the publisher).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import aiohttp

from ...network.relay import Meter

__all__ = ["TRANSPORTS", "HEADERS", "UDP_HEADERS", "GRACE", "LOSS_GRACE", "RAW_MAX", "TAIL_SAMPLES", "nearest_rank", "Workload", "TransportRun", "Batcher", "wire_bytes", "wire_counter", "publish_on_schedule", "come_and_go", "Absence", "serve_run", "finish", "Inbox", "settle"]


TRANSPORTS = ("short polling", "long polling", "SSE", "WebSocket", "raw TCP", "UDP", "webhooks")


HEADERS = 14 + 20 + 32  # bytes per TCP segment on the wire: Ethernet, IPv4, TCP with timestamps


UDP_HEADERS = 14 + 20 + 8


GRACE = 0.5  # seconds after the last publication for the last deliveries


LOSS_GRACE = 3.0  # more of it on a lossy link: a retransmission timeout is at least 200 ms on Linux (SRTT plus
# max(4 RTTVAR, 200 ms)) and doubles with each loss of the same segment; a lost SYN waits 1 s (RFC 6298 §2.1)


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
        loss: the link's loss probability, each way (tap mode: every transport; relay mode: UDP only, dropped
            by its sender, since the relay cannot lose a TCP segment).
        away: (leave, back) in seconds after publishing starts: client 0 is gone in between (None: never).
        arrivals: "regular" (one message every 1/rate s) or "poisson" (exponential gaps of mean 1/rate s,
            drawn with ``seed``: the same workload publishes at the same instants on every transport).
        seed: the random draw of Poisson arrivals.
        batch: push transports (WebSocket, raw TCP) hold what they publish and send it in one frame every
            ``batch`` seconds (0: each message at once). Short polling batches by construction.
    """

    clients: int = 5
    messages: int = 20
    rate: float = 20.0
    size: int = 100
    rtt_ms: float = 50.0
    interval: float = 0.25
    loss: float = 0.0
    away: tuple[float, float] | None = None
    arrivals: str = "regular"
    seed: int = 1
    batch: float = 0.0

    def __post_init__(self) -> None:
        if self.arrivals not in ("regular", "poisson"):
            raise ValueError(f"arrivals must be 'regular' or 'poisson', not {self.arrivals!r}")
        if self.rate <= 0 or self.messages < 1 or self.clients < 1:
            raise ValueError("a workload needs a rate above 0, at least one message and one client")
        if self.batch < 0:
            raise ValueError("batch is a time in seconds, 0 or more")

    def schedule(self) -> list[float]:
        """When each message is published, in seconds after publishing starts (the first at 0)."""
        if self.arrivals == "regular":
            return [i / self.rate for i in range(self.messages)]
        import random

        rng, t, out = random.Random(self.seed), 0.0, []
        for _ in range(self.messages):
            out.append(t)
            t += rng.expovariate(self.rate)
        return out

    @property
    def duration(self) -> float:
        """Seconds from the first publication to one mean gap after the last."""
        return self.schedule()[-1] + 1 / self.rate

    @property
    def polls(self) -> float:
        """About how many times each short poller asks during the publications (interval plus a round trip)."""
        return self.duration / (self.interval + self.rtt_ms / 1000)


@dataclass
class TransportRun:
    """One transport on one workload.

    Attributes:
        latencies: seconds from publication to receipt, one per (client, message) received first time.
        duplicates: messages a client received more than once.
        wire: bytes on the wire both ways, headers included (TCP: TCP_INFO at the relay; UDP: counted).
        units: requests (polling, webhooks), frames (WebSocket, raw TCP), events (SSE) or datagrams (UDP).
        server_cpu_s: CPU seconds of the server's thread during the run.
        setup_wire: of ``wire``, the bytes before the first publication (counted one round trip after every
            client is subscribed, so the handshakes' answers and their ACKs are in): connections, handshakes,
            heads, subscriptions (and the polls that found nothing yet).
        teardown_wire: of ``wire``, the bytes after the last delivery: close frames, FINs and their ACKs. The
            rest is the steady state.
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
    setup_wire: int = 0
    teardown_wire: int = 0

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
        return 1000 * nearest_rank(self.latencies, q)

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
    def steady_bytes_per_message(self) -> float:
        """Bytes per message once every client is connected: the run's bytes less its set-up and tear-down, per
        delivery."""
        steady = self.wire - self.setup_wire - self.teardown_wire
        return steady / self.delivered if self.delivered else float("nan")

    @property
    def setup_bytes_per_client(self) -> float:
        """The one-off cost of a client's subscription: bytes before the first publication, per client."""
        return self.setup_wire / self.workload.clients

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


def nearest_rank(values: list[float], q: float) -> float:
    """The q-th percentile of ``values`` by nearest rank: the smallest value with at least q % of them at or
    below it (the ceil(q/100 × n)-th of n, sorted)."""
    import math

    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


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
        """One delivery: a message, or a batch of messages one per line (``Workload.batch``)."""
        now = time.monotonic()
        for line in text.split("\n"):
            msg_id, sent, _ = line.split(":", 2)
            key = (client, int(msg_id))
            if key in self.seen:
                self.duplicates += 1
            else:
                self.seen[key] = now - float(sent)


class Batcher:
    """A push server's batching policy: hold what is published and send it as one delivery (messages one per
    line) every ``period`` seconds; nothing held, nothing sent. The clock ticks first ``phase`` seconds after it
    starts: a server's timer runs on its own, not in step with the messages (a short poller's polls do not
    either), so the runs draw the phase at random."""

    def __init__(self, publish, period: float, phase: float | None = None) -> None:
        self.publish, self.period, self.held = publish, period, []
        self.phase = period if phase is None else phase

    def __call__(self, text: str) -> None:
        self.held.append(text)

    def flush(self) -> None:
        if self.held:
            self.publish("\n".join(self.held))
            self.held.clear()

    async def run(self) -> None:
        start, ticks = time.monotonic() + self.phase - self.period, 0
        while True:
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks * self.period - time.monotonic()))
            self.flush()


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
    schedule = workload.schedule()
    start = time.monotonic()
    if absence is not None:
        absence.start = start
        absence.started.set()
    for i, at in enumerate(schedule, 1):
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if absence is not None and absence.away_now(0):
            absence.messages.append(i)
        publish(_text(i, workload.size))
    delay = start + schedule[-1] + 1 / workload.rate - time.monotonic()  # one mean gap after the last, as before
    if delay > 0:
        await asyncio.sleep(delay)


async def finish(tasks: list[asyncio.Task], inbox: Inbox, expected: int, limit: float, before_cancel=None) -> None:
    """Wait until every delivery is in (or ``limit`` seconds), call ``before_cancel()``, then end ``tasks``."""
    deadline = time.monotonic() + limit
    while len(inbox.seen) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if before_cancel is not None:
        await before_cancel()
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


def wire_counter(net: Any, meter: Meter | None) -> Callable[[], int]:
    """A function returning the bytes on the wire so far: at the relay's meter (relay mode), or every frame
    offered to the emulated link, both ways (tap mode: the link's far end sees them, ACKs on a real path)."""
    if meter is not None:
        return lambda: wire_bytes(meter)

    def on_the_link() -> int:
        stats = net.statistics()
        return stats.get("out_offered_bytes", 0) + stats.get("in_offered_bytes", 0)

    return on_the_link


def serve_run(net: Any, workload: Workload, run: TransportRun, inbox: Inbox, absence: Absence, srv: Any,
              count: Callable[[], int], client, publish, *, ready=None, session: bool = True,
              grace: float = 0.0) -> None:
    """The common run of a TCP transport: start every client (``client(i, session)``, or ``client(i)``) at the
    link's near end, wait until ``ready()`` says they are all subscribed (or a moment, without it), publish on
    schedule, wait for the deliveries, and count the server thread's CPU meanwhile; then settle ``run``.
    ``count()`` gives the bytes on the wire so far (``wire_counter``)."""

    async def clients_then_publish(session_: aiohttp.ClientSession | None) -> None:
        tasks = [asyncio.create_task(client(i, session_) if session else client(i)) for i in range(workload.clients)]
        if ready is None:
            await asyncio.sleep(0.05 + workload.rtt_ms / 500)  # held requests and streams are on their way
        else:
            # Every client subscribed before the first message (on a lossy link a SYN or an upgrade lost several
            # times in a row takes seconds): the experiment is the steady state, not who connected late.
            deadline = time.monotonic() + 5 + workload.rtt_ms / 100 + 15 * (workload.loss > 0)
            while not ready() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        await asyncio.sleep(workload.rtt_ms / 1000 + 0.02)  # the last answers of the set-up, and their ACKs, cross
        cpu0 = _thread_cpu(_server_thread(srv))
        setup_wire[0] = count()
        phase = random.Random(workload.seed).uniform(0, workload.batch)  # the server's timer, out of step
        batcher = Batcher(publish, workload.batch, phase) if workload.batch else None
        flushing = [asyncio.create_task(batcher.run())] if batcher else []
        await publish_on_schedule(workload, batcher or publish, absence)
        await finish(tasks + flushing, inbox, run.expected, GRACE + grace + workload.batch + workload.rtt_ms / 250
                     + LOSS_GRACE * (workload.loss > 0), before_cancel=steady_end)
        run.server_cpu_s = _thread_cpu(_server_thread(srv)) - cpu0

    async def steady_end() -> None:  # the last delivery's ACK crosses, then everything after it is tear-down
        await asyncio.sleep(workload.rtt_ms / 1000 + 0.02)
        end_wire[0] = count()

    async def main() -> None:
        if not session:
            await clients_then_publish(None)
            return
        async with aiohttp.ClientSession() as session_:
            await clients_then_publish(session_)

    setup_wire, end_wire = [0], [0]
    net.run(main(), 60)
    time.sleep(0.05 if net.mode == "tap" else 0.0)  # the last ACKs cross the wire before it is counted
    settle(run, inbox, absence, count())
    run.setup_wire = setup_wire[0]
    run.teardown_wire = max(0, run.wire - end_wire[0]) if end_wire[0] else 0


def settle(run: TransportRun, inbox: Inbox, absence: Absence, wire: int) -> None:
    run.latencies, run.duplicates, run.wire = list(inbox.seen.values()), inbox.duplicates, wire
    run.while_away = len(absence.messages)
    run.caught_up = sum(1 for m in absence.messages if (0, m) in inbox.seen)
