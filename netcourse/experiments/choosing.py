"""Notebook 10: every transport of the course on one workload, and scaling out past one process.

One workload: ``clients`` subscribers, a publisher emitting ``messages`` messages of ``size`` bytes at ``rate``
per second. Each transport is the course's own server from its notebook:

- short and long polling: ``apps.polling`` (notebook 03);
- Server-Sent Events: ``apps.streaming``'s ``/events`` (notebook 06);
- WebSocket: ``apps.wsserver`` and its ``Hub`` (notebook 05);
- raw TCP with length-prefixed frames: ``protocols.beat`` (notebook 04);
- UDP datagrams (notebook 02);
- webhooks: ``apps.webhooks``' ``Sender``, each client running a ``Receiver`` (notebook 07).

Every TCP transport runs across the emulated link in relay mode (the same for every learner: this notebook
is about application timing), whose ``Meter`` reads the bytes and segments that crossed from the kernel
(TCP_INFO). UDP cannot cross a TCP relay: its server holds each datagram for the one-way delay itself,
and drops the share ``loss`` says. Each message carries its publication time; each client records when
it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..apps import polling as polling_app
from ..apps import streaming as streaming_app
from ..apps.webhooks import COURSE_ALLOW, Receiver, Sender
from ..apps.wsserver import Hub, make_ws_handler
from ..network.link import link
from ..network.relay import Meter
from ..protocols import beat
from ..protocols.webhooks import new_secret
from ..protocols.wsframe import Opcode
from ..clients.sse import stream_events
from ..runtime.sockets import no_delay
from ..runtime.waiting import run_async

__all__ = [
    "TRANSPORTS", "Workload", "TransportRun", "run_transport", "compare",
    "HEADERS", "wire_bytes",
    "SWEEPS", "BASE", "sweep", "measure_sweeps", "load_sweeps", "crossover", "sweep_knob", "live_rate_sweep",
    "Held", "memory_per_client",
]

TRANSPORTS = ("short polling", "long polling", "SSE", "WebSocket", "raw TCP", "UDP", "webhooks")
HEADERS = 14 + 20 + 32  # bytes per TCP segment on the wire: Ethernet, IPv4, TCP with timestamps
UDP_HEADERS = 14 + 20 + 8
GRACE = 0.5  # seconds after the last publication for the last deliveries
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
        return (f"{self.name:<14} p50 {self.percentile(50):7.1f} ms  p99 {self.percentile(99):7.1f} ms  "
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


class _Inbox:
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


class _Absence:
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


async def _publish(workload: Workload, publish, absence: "_Absence | None" = None) -> None:
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


async def _finish(tasks: list[asyncio.Task], inbox: _Inbox, expected: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while len(inbox.seen) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _come_and_go(i: int, workload: Workload, absence: _Absence, connect) -> None:
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


def _serve_run(workload: Workload, run: TransportRun, inbox: _Inbox, absence: _Absence, srv: Any, meter: Meter,
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
        await _publish(workload, publish, absence)
        await _finish(tasks, inbox, run.expected, GRACE + grace + workload.rtt_ms / 250)
        run.server_cpu_s = _thread_cpu(_server_thread(srv)) - cpu0

    async def main() -> None:
        if not session:
            await clients_then_publish(None)
            return
        async with aiohttp.ClientSession() as session_:
            await clients_then_publish(session_)

    run_async(main(), 60)
    _settle(run, inbox, absence, wire_bytes(meter))


def _settle(run: TransportRun, inbox: _Inbox, absence: _Absence, wire: int) -> None:
    run.latencies, run.duplicates, run.wire = list(inbox.seen.values()), inbox.duplicates, wire
    run.while_away = len(absence.messages)
    run.caught_up = sum(1 for m in absence.messages if (0, m) in inbox.seen)


# -- each transport ------------------------------------------------------------------------------


def _polling(workload: Workload, net: Any, run: TransportRun, *, long: bool) -> None:
    log = polling_app.MessageLog()
    meter = Meter()
    srv = net.serve(polling_app.make_app(log), meter=meter, name="polling")
    inbox = _Inbox()
    absence = _Absence(workload)

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        cursor = 0  # kept while away: the client's own state
        while True:
            if absence.away_now(i):
                await absence.until_back()
            params = {"after": str(cursor)}
            if long:
                params["wait"] = "20"
            async with session.get(f"{srv.url}/messages", params=params) as resp:
                data = await resp.json()
            run.units += 1
            for m in data["messages"]:
                inbox.got(i, m["text"])
                cursor = m["id"]
            if not long:
                await asyncio.sleep(workload.interval)

    _serve_run(workload, run, inbox, absence, srv, meter, client,
               lambda text: srv.loop.call_soon_threadsafe(log.append, text), grace=workload.interval)


def _sse(workload: Workload, net: Any, run: TransportRun) -> None:
    log = polling_app.MessageLog()
    meter = Meter()
    srv = net.serve(streaming_app.make_app(log, keepalive=30.0, max_streams=workload.clients + 10), meter=meter,
                    name="sse")
    inbox = _Inbox()
    absence = _Absence(workload)
    run.unit_name = "events"

    async def stream(i: int, session: aiohttp.ClientSession, last: list[str]) -> None:
        headers = {"Last-Event-ID": last[0]} if last[0] else {}
        async for _, event in stream_events(session, f"{srv.url}/events", headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=None)):
            if event.id:
                last[0] = event.id  # the browser's EventSource keeps it the same way
            if event.data and ":" in event.data:
                run.units += 1
                inbox.got(i, event.data)

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        last = [""]
        reading = asyncio.create_task(stream(i, session, last))
        if i == 0 and workload.away is not None:
            await absence.until_leave()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            await absence.until_back()
            reading = asyncio.create_task(stream(i, session, last))  # reconnects with Last-Event-ID
        try:
            await reading
        finally:
            reading.cancel()

    _serve_run(workload, run, inbox, absence, srv, meter, client,
               lambda text: srv.loop.call_soon_threadsafe(log.append, text))


def _websocket(workload: Workload, net: Any, run: TransportRun) -> None:
    hub = Hub()
    meter = Meter()
    srv = net.serve(no_delay(make_ws_handler(hub)), meter=meter, name="websocket")
    inbox = _Inbox()
    absence = _Absence(workload)
    run.unit_name = "frames"

    async def connection(i: int, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"http://127.0.0.1:{srv.port}/", autoping=True) as ws:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    run.units += 1
                    inbox.got(i, msg.data)

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        await _come_and_go(i, workload, absence, lambda: connection(i, session))

    _serve_run(workload, run, inbox, absence, srv, meter, client,
               lambda text: asyncio.run_coroutine_threadsafe(hub.broadcast(text.encode(), Opcode.TEXT), srv.loop),
               ready=lambda: hub.count >= workload.clients)


def _raw_tcp(workload: Workload, net: Any, run: TransportRun) -> None:
    writers: set[asyncio.StreamWriter] = set()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await reader.read()  # until the client goes
        finally:
            writers.discard(writer)

    def push(text: str) -> None:
        frame = beat.encode(beat.Kind.MSG, text.encode(), max_frame=RAW_MAX)
        for w in list(writers):
            if not w.is_closing():
                w.write(frame)

    meter = Meter()
    srv = net.serve(no_delay(handler), meter=meter, name="raw tcp")
    inbox = _Inbox()
    absence = _Absence(workload)
    run.unit_name = "frames"

    async def client(i: int) -> None:
        await _come_and_go(i, workload, absence, lambda: connection(i))

    async def connection(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        decoder = beat.Decoder(max_frame=RAW_MAX)
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    run.units += 1
                    inbox.got(i, frame.body.decode())
        finally:
            writer.close()

    _serve_run(workload, run, inbox, absence, srv, meter, client,
               lambda text: srv.loop.call_soon_threadsafe(push, text), ready=lambda: len(writers) >= workload.clients,
               session=False)


def _udp(workload: Workload, run: TransportRun) -> None:
    """Datagrams to each subscriber; the sender holds each for the one-way delay and drops ``loss`` of them."""
    rng = random.Random(7)
    inbox = _Inbox()
    absence = _Absence(workload)
    run.unit_name = "datagrams"
    sockets = []
    for _ in range(workload.clients):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sockets.append(s)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    one_way = workload.rtt_ms / 2000
    sent = [0, 0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cpu0 = time.thread_time()

        def send(data: bytes, addr) -> None:
            sender.sendto(data, addr)

        def publish(text: str) -> None:
            data = text.encode()
            for addr in addresses:
                sent[0] += 1
                sent[1] += len(data)
                if rng.random() >= workload.loss:
                    loop.call_later(one_way, send, data, addr)

        async def receive(i: int) -> None:
            while True:
                data = await loop.sock_recv(sockets[i], 65536)
                run.units += 1
                inbox.got(i, data.decode())

        async def client(i: int) -> None:
            reading = asyncio.create_task(receive(i))
            if i == 0 and workload.away is not None:
                await absence.until_leave()
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
                port = sockets[0].getsockname()[1]
                sockets[0].close()  # gone: datagrams to its port are dropped (ICMP port unreachable)
                await absence.until_back()
                back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                back.bind(("127.0.0.1", port))
                back.setblocking(False)
                sockets[0] = back
                reading = asyncio.create_task(receive(i))
            try:
                await reading
            finally:
                reading.cancel()

        addresses = [s.getsockname() for s in sockets]
        tasks = [asyncio.create_task(client(i)) for i in range(len(sockets))]
        await _publish(workload, publish, absence)
        await _finish(tasks, inbox, run.expected, GRACE + workload.rtt_ms / 250)
        run.server_cpu_s = time.thread_time() - cpu0  # sender and receivers share this thread: an upper bound

    try:
        run_async(main(), 60)
    finally:
        for s in sockets + [sender]:
            s.close()
    _settle(run, inbox, absence, sent[1] + UDP_HEADERS * sent[0])


def _webhooks(workload: Workload, net: Any, run: TransportRun) -> None:
    folder = tempfile.mkdtemp(prefix="netcourse-choosing-")
    try:
        secret = new_secret()
        receivers, meters = [], []
        sender = Sender(os.path.join(folder, "outbox.db"), allow=COURSE_ALLOW, timeout=2.0, scale=0.001)
        for i in range(workload.clients):
            rec = Receiver(os.path.join(folder, f"inbox{i}.db"), secret)
            meter = Meter()
            srv = net.serve(rec.app(), meter=meter, name=f"receiver {i}")
            sender.add_endpoint(f"{srv.url}/webhook", secret)
            receivers.append(rec)
            meters.append(meter)

        absence = _Absence(workload)
        away = workload.away[1] - workload.away[0] if workload.away else 0.0

        async def down_and_up() -> None:  # receiver 0 answers 503 while its client is away
            await absence.until_leave()
            receivers[0].mode = "busy"
            await absence.until_back()
            receivers[0].mode = "ok"

        async def main() -> None:
            cpu0 = time.thread_time()
            limit = workload.messages / workload.rate + GRACE + 3 + 3 * away + workload.rtt_ms / 100
            delivering = asyncio.create_task(sender.run(until_idle=False, limit=limit))
            outage = asyncio.create_task(down_and_up())
            count = iter(range(1, workload.messages + 1))
            await _publish(workload, lambda text: sender.publish(
                "message", {"text": text, "wall": time.time()}, msg_id=f"msg_{next(count)}"), absence)
            deadline = time.monotonic() + GRACE + 2 + 3 * away + workload.rtt_ms / 100  # retries take a while
            while sum(r.accepted for r in receivers) < run.expected and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            delivering.cancel()
            outage.cancel()
            await asyncio.gather(delivering, outage, return_exceptions=True)
            run.server_cpu_s = time.thread_time() - cpu0

        run_async(main(), 60)
        import json
        import sqlite3

        for n, rec in enumerate(receivers):
            with contextlib.closing(sqlite3.connect(rec.db_path)) as db:
                for msg_id, payload, received in db.execute("SELECT id, payload, received FROM inbox"):
                    run.latencies.append(received - json.loads(payload)["data"]["wall"])
                    if n == 0 and int(msg_id.split("_")[1]) in absence.messages:
                        run.caught_up += 1  # delivered late, by the sender's retries
            run.units += rec.accepted + rec.duplicates + rec.failed_on_purpose
            run.duplicates += rec.duplicates
        run.wire = sum(wire_bytes(m) for m in meters)
        run.while_away = len(absence.messages)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def run_transport(name: str, workload: Workload = Workload()) -> TransportRun:
    """Run one transport (a name of ``TRANSPORTS``) on ``workload``; every server stops before it returns."""
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}")
    run = TransportRun(name, workload)
    if name == "UDP":
        _udp(workload, run)
        return run
    with link(rtt_ms=workload.rtt_ms, mode="relay") as net:
        if name in ("short polling", "long polling"):
            _polling(workload, net, run, long=name == "long polling")
        elif name == "SSE":
            _sse(workload, net, run)
        elif name == "WebSocket":
            _websocket(workload, net, run)
        elif name == "raw TCP":
            _raw_tcp(workload, net, run)
        else:
            _webhooks(workload, net, run)
    return run


def compare(workload: Workload = Workload(), transports: tuple[str, ...] = TRANSPORTS, *,
            parallel: int = 1) -> dict[str, TransportRun]:
    """Every transport on the same workload: one after the other, or ``parallel`` at a time (for counts, such
    as who lost what; latencies are best measured one at a time, with the machine to themselves)."""
    if parallel <= 1:
        return {name: run_transport(name, workload) for name in transports}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="netcourse-compare") as pool:
        futures = {name: pool.submit(run_transport, name, workload) for name in transports}
        return {name: f.result() for name, f in futures.items()}




# -- sweeps: what changes when the workload does -----------------------------------------------------

MEASURED = Path(__file__).resolve().parent.parent / "measured" / "sweeps.json"
SWEEPS = {  # the knob's values, one dimension at a time, the others at the default workload
    "rate": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    "clients": (1, 5, 20, 50),
    "size": (10, 100, 1000, 10000),
    "rtt_ms": (0.0, 50.0, 200.0),
}
BASE = Workload(clients=5, messages=20, rate=10.0, size=100, rtt_ms=50.0, interval=1.0)


def _messages_for(rate: float) -> int:
    """Enough messages for a distribution, few enough that a slow rate ends within about 30 s."""
    return int(max(3, min(40, rate * 4)))


def summarise(run: TransportRun) -> dict:
    """The figures a sweep keeps of one run."""
    return {"p50_ms": run.percentile(50), "p99_ms": run.percentile(99), "bytes_per_msg": run.bytes_per_message,
            "units_per_msg": run.units_per_message, "cpu_us_per_msg": run.cpu_us_per_message,
            "delivered": run.delivered, "expected": run.expected}


def sweep(dimension: str, values: tuple, base: Workload = BASE,
          transports: tuple[str, ...] = TRANSPORTS) -> dict[str, dict[str, dict]]:
    """{transport: {value: summary}} with one workload dimension varied."""
    from dataclasses import replace

    out: dict[str, dict[str, dict]] = {t: {} for t in transports}
    for value in values:
        workload = replace(base, **{dimension: value})
        if dimension == "rate":
            workload = replace(workload, messages=_messages_for(value))
        for t in transports:
            out[t][str(value)] = summarise(run_transport(t, workload))
    return out


def measure_sweeps(path=MEASURED) -> dict:
    """Every sweep of ``SWEEPS`` (a few minutes: the slow rates take their time); saved for the knobs."""
    from datetime import datetime, timezone
    import json

    data = {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "base": {k: getattr(BASE, k) for k in ("clients", "messages", "rate", "size", "rtt_ms", "interval")},
            "sweeps": {dim: sweep(dim, values) for dim, values in SWEEPS.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def load_sweeps(path=MEASURED) -> dict:
    """The sweeps ``make bench`` measured (``measure_sweeps``), with when."""
    import json

    return json.loads(path.read_text())


def crossover(data: dict, cheap: str = "short polling", push: str = "WebSocket") -> float | None:
    """The rate (messages/s) above which ``cheap`` costs fewer bytes per message than ``push``, interpolated
    on the measured rates (log scale); None if it never does in the measured range."""
    import math

    rates = sorted(float(r) for r in data["sweeps"]["rate"][cheap])
    a = [data["sweeps"]["rate"][cheap][str(r)]["bytes_per_msg"] for r in rates]
    b = [data["sweeps"]["rate"][push][str(r)]["bytes_per_msg"] for r in rates]
    for i in range(1, len(rates)):
        d0, d1 = a[i - 1] - b[i - 1], a[i] - b[i]
        if d0 > 0 >= d1:
            x0, x1 = math.log10(rates[i - 1]), math.log10(rates[i])
            return 10 ** (x0 + (x1 - x0) * d0 / (d0 - d1))
    return None


def sweep_knob(data: dict, dimension: str, value):
    """The knob's picture: every transport at one value of one swept dimension, beside the whole sweep."""
    from ..course import plots

    key = str(value)
    if key not in next(iter(data["sweeps"][dimension].values())):
        raise ValueError(f"{dimension} = {value} was not measured; measured: {', '.join(map(str, SWEEPS[dimension]))}")
    return plots.transport_sweep(data, dimension, key)


# -- memory per connected client ---------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """Python heap the server holds per connected, idle client (bytes), measured with ``tracemalloc``."""

    transport: str
    clients: int
    bytes_per_client: float

    def __repr__(self) -> str:
        return f"{self.transport:<14} {self.bytes_per_client / 1024:6.1f} KiB per held client ({self.clients} held)"


def memory_per_client(n: int = 100, transports: tuple[str, ...] = ("long polling", "SSE", "WebSocket", "raw TCP")) -> list[Held]:
    """Hold ``n`` idle clients on each server and count the server's Python heap per client.

    The clients are plain sockets that send their request (or handshake) and then only wait, so nearly all
    the memory counted is the server's: its connection, its request and its held handler. Kernel socket
    buffers are not Python heap and are not counted. Short polling holds nothing between polls, UDP an
    address per subscriber, webhooks a row per endpoint: none of them is listed.
    """
    import gc
    import tracemalloc

    from ..protocols.wsconn import client_request, new_key
    from ..runtime.server import serve

    out = []
    for name in transports:
        log = polling_app.MessageLog()
        hub = Hub()
        writers: set = set()

        async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            try:
                await reader.read()
            finally:
                writers.discard(writer)

        app = {"long polling": lambda: polling_app.make_app(log),
               "SSE": lambda: streaming_app.make_app(log, max_streams=n + 10, keepalive=60.0),
               "WebSocket": lambda: make_ws_handler(hub),
               "raw TCP": lambda: raw}[name]()
        with serve(app, name=f"{name} memory", max_connections=n + 50) as srv:
            held = {"long polling": lambda: log.waiting, "SSE": lambda: 0,  # SSE: counted by readable sockets
                    "WebSocket": lambda: hub.count, "raw TCP": lambda: len(writers)}[name]
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            socks = []
            try:
                for _ in range(n):
                    s = socket.create_connection((srv.host, srv.port), timeout=5)
                    socks.append(s)
                    if name == "long polling":
                        s.sendall(b"GET /messages?after=0&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    elif name == "SSE":
                        s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    elif name == "WebSocket":
                        s.sendall(client_request("127.0.0.1", srv.port, new_key(), path="/"))
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if name == "SSE":
                        ready = sum(1 for s in socks if _readable(s))
                        if ready >= n:
                            break
                    elif held() >= n:
                        break
                    time.sleep(0.01)
                time.sleep(0.1)
                gc.collect()
                settled = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
                for s in socks:
                    s.close()
            out.append(Held(name, n, settled / n))
    return out


def _readable(sock: socket.socket) -> bool:
    """True when the server has sent something on ``sock`` (peeked, not read; works past fd 1024, unlike select)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False


def live_rate_sweep(rates: tuple[float, ...] = (5.0, 20.0, 100.0),
                    transports: tuple[str, ...] = ("short polling", "long polling", "WebSocket")) -> dict:
    """A small rate sweep, live (about ten seconds): the notebook's button."""
    from dataclasses import replace

    out: dict[str, dict[str, dict]] = {t: {} for t in transports}
    for rate in rates:
        workload = replace(BASE, rate=rate, messages=int(min(40, max(5, rate))))
        for t in transports:
            out[t][str(rate)] = summarise(run_transport(t, workload))
    return {"measured_at": "just now, live", "base": {}, "sweeps": {"rate": out}}
