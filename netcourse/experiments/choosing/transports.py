"""Notebook 11: each transport delivering the workload across the link: short and long polling, SSE, WebSocket,
raw TCP, UDP and webhooks, one function each; ``compare`` runs them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import tempfile
import time
from typing import Any

import aiohttp

from ...apps import polling as polling_app
from ...apps import streaming as streaming_app
from ...apps.webhooks import COURSE_ALLOW, Receiver, Sender
from ...apps.wsserver import Hub, make_ws_handler
from ...clients.sse import stream_events
from ...network.link import link
from ...network.relay import Meter
from ...protocols import beat
from ...protocols.webhooks import new_secret
from ...protocols.wsframe import Opcode
from ...runtime.sockets import no_delay
from ...runtime.waiting import run_async
from .harness import (
    GRACE,
    LOSS_GRACE,
    RAW_MAX,
    TRANSPORTS,
    UDP_HEADERS,
    Absence,
    Inbox,
    TransportRun,
    Workload,
    come_and_go,
    finish,
    publish_on_schedule,
    serve_run,
    settle,
    wire_counter,
)

__all__ = ["BATCHING", "run_transport", "compare"]


BATCHING = ("WebSocket", "raw TCP")  # the push transports that can hold messages for Workload.batch seconds


def _polling(workload: Workload, net: Any, run: TransportRun, *, long: bool) -> None:
    log = polling_app.MessageLog()
    meter = _meter(net)
    srv = net.serve(polling_app.make_app(log), meter=meter, name="polling")
    inbox = Inbox()
    absence = Absence(workload)

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

    serve_run(net, workload, run, inbox, absence, srv, wire_counter(net, meter), client,
              lambda text: srv.loop.call_soon_threadsafe(log.append, text), grace=workload.interval)


def _sse(workload: Workload, net: Any, run: TransportRun) -> None:
    log = polling_app.MessageLog()
    meter = _meter(net)
    app = streaming_app.make_app(log, keepalive=30.0, max_streams=workload.clients + 10)
    srv = net.serve(app, meter=meter, name="sse")
    inbox = Inbox()
    absence = Absence(workload)
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

    serve_run(net, workload, run, inbox, absence, srv, wire_counter(net, meter), client,
              lambda text: srv.loop.call_soon_threadsafe(log.append, text),
              ready=lambda: streaming_app.open_streams(app) >= workload.clients)


def _websocket(workload: Workload, net: Any, run: TransportRun) -> None:
    hub = Hub()
    meter = _meter(net)
    srv = net.serve(no_delay(make_ws_handler(hub)), meter=meter, name="websocket")
    inbox = Inbox()
    absence = Absence(workload)
    run.unit_name = "frames"

    async def connection(i: int, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"http://{srv.host}:{srv.port}/", autoping=True) as ws:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    run.units += 1
                    inbox.got(i, msg.data)

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        await come_and_go(i, workload, absence, lambda: connection(i, session))

    serve_run(net, workload, run, inbox, absence, srv, wire_counter(net, meter), client,
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

    meter = _meter(net)
    srv = net.serve(no_delay(handler), meter=meter, name="raw tcp")
    inbox = Inbox()
    absence = Absence(workload)
    run.unit_name = "frames"

    async def client(i: int) -> None:
        await come_and_go(i, workload, absence, lambda: connection(i))

    async def connection(i: int) -> None:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        decoder = beat.Decoder(max_frame=RAW_MAX)
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    run.units += 1
                    inbox.got(i, frame.body.decode())
        finally:
            writer.close()

    serve_run(net, workload, run, inbox, absence, srv, wire_counter(net, meter), client,
              lambda text: srv.loop.call_soon_threadsafe(push, text), ready=lambda: len(writers) >= workload.clients,
              session=False)


def _udp(workload: Workload, run: TransportRun, net: Any = None) -> None:
    """Datagrams to each subscriber. Without a link (relay mode: a TCP relay cannot carry them) the sender holds
    each for the one-way delay and drops ``loss`` of them itself, and the bytes are computed; across a tap link
    the sender sits at the far end, the link delays and loses them, and counts their bytes."""
    rng = random.Random(workload.seed)  # the sender's own losses (relay mode): drawn anew with each seed
    inbox = Inbox()
    absence = Absence(workload)
    run.unit_name = "datagrams"
    tap = net is not None and net.mode == "tap"
    host = net.addresses[0] if tap else "127.0.0.1"
    sockets: list[socket.socket] = []
    sender: socket.socket | None = None
    one_way = 0.0 if tap else workload.rtt_ms / 2000
    sent = [0, 0]
    count = wire_counter(net, None) if tap else (lambda: sent[1] + UDP_HEADERS * sent[0])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cpu0 = time.thread_time()
        addresses = [s.getsockname() for s in sockets]

        def publish(text: str) -> None:
            data = text.encode()
            for addr in addresses:
                sent[0] += 1
                sent[1] += len(data)
                if tap:
                    sender.sendto(data, addr)  # the link delays it, and loses it if it must
                elif rng.random() >= workload.loss:
                    loop.call_later(one_way, sender.sendto, data, addr)

        tasks = [asyncio.create_task(_udp_subscriber(i, sockets, run, inbox, absence if i == 0 else None, host))
                 for i in range(len(sockets))]
        run.setup_wire = count()
        await publish_on_schedule(workload, publish, absence)
        await finish(tasks, inbox, run.expected, GRACE + workload.rtt_ms / 250)
        run.server_cpu_s = time.thread_time() - cpu0  # sender and receivers share this thread: an upper bound

    try:
        if tap:
            sockets += net.near(lambda: [_bound_udp(0, host) for _ in range(workload.clients)])
            sender = net.far(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            net.run(main(), 60)
        else:
            sockets += [_bound_udp(0, host) for _ in range(workload.clients)]
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            run_async(main(), 60)
    finally:
        for s in sockets + ([sender] if sender is not None else []):
            s.close()
    setup = run.setup_wire
    settle(run, inbox, absence, count())
    run.setup_wire = setup


def _bound_udp(port: int, host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    s.setblocking(False)
    return s


async def _udp_subscriber(i: int, sockets: list[socket.socket], run: TransportRun, inbox: Inbox,
                          absence: Absence | None, host: str = "127.0.0.1") -> None:
    """Subscriber ``i`` reads its datagrams; with an ``absence`` (whose workload has ``away``), its socket closes
    while it is away (datagrams to the port are dropped: ICMP port unreachable) and opens again on return."""
    loop = asyncio.get_running_loop()

    async def receive() -> None:
        while True:
            data = await loop.sock_recv(sockets[i], 65536)
            run.units += 1
            inbox.got(i, data.decode())

    reading = asyncio.create_task(receive())
    try:
        if absence is not None and absence.window is not None:
            await absence.until_leave()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            port = sockets[i].getsockname()[1]
            sockets[i].close()
            await absence.until_back()
            sockets[i] = _bound_udp(port, host)
            reading = asyncio.create_task(receive())
        await reading
    finally:
        reading.cancel()


def _webhooks(workload: Workload, net: Any, run: TransportRun) -> None:
    folder = tempfile.mkdtemp(prefix="netcourse-choosing-")
    try:
        secret = new_secret()
        receivers, counters = [], []
        allow = COURSE_ALLOW | {net.addresses[1]}  # the course's receivers: loopback, or the link's far end
        sender = Sender(os.path.join(folder, "outbox.db"), allow=allow, timeout=5.0 if workload.loss else 2.0,
                        scale=0.001)  # a lossy link: a SYN lost twice waits 1 s + 2 s
        for i in range(workload.clients):
            rec = Receiver(os.path.join(folder, f"inbox{i}.db"), secret)
            meter = _meter(net)
            srv = net.serve(rec.app(), meter=meter, name=f"receiver {i}")
            sender.add_endpoint(f"{srv.url}/webhook", secret)
            receivers.append(rec)
            counters.append(wire_counter(net, meter))
        if net.mode == "tap":
            counters = counters[:1]  # the link counts every receiver's bytes at once

        def count() -> int:
            return sum(c() for c in counters)

        absence = Absence(workload)
        away = workload.away[1] - workload.away[0] if workload.away else 0.0

        async def down_and_up() -> None:  # receiver 0 answers 503 while its client is away
            await absence.until_leave()
            receivers[0].mode = "busy"
            await absence.until_back()
            receivers[0].mode = "ok"

        async def main() -> None:
            cpu0 = time.thread_time()
            slack = GRACE + 3 + 3 * away + workload.rtt_ms / 100 + LOSS_GRACE * (workload.loss > 0)
            limit = workload.duration + slack
            delivering = asyncio.create_task(sender.run(until_idle=False, limit=limit))
            outage = asyncio.create_task(down_and_up())
            numbers = iter(range(1, workload.messages + 1))
            run.setup_wire = count()
            await publish_on_schedule(workload, lambda text: sender.publish(
                "message", {"text": text, "wall": time.time()}, msg_id=f"msg_{next(numbers)}"), absence)
            deadline = time.monotonic() + slack - 1  # retries take a while
            while sum(r.accepted for r in receivers) < run.expected and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            delivering.cancel()
            outage.cancel()
            await asyncio.gather(delivering, outage, return_exceptions=True)
            run.server_cpu_s = time.thread_time() - cpu0

        net.run(main(), 60)
        _read_inboxes(receivers, absence, run)
        run.wire = count()
        run.while_away = len(absence.messages)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _read_inboxes(receivers: list[Receiver], absence: Absence, run: TransportRun) -> None:
    """Each receiver's inbox into ``run``: a latency per message (received less published, wall clock), what
    client 0 got late by the sender's retries, requests and duplicates."""
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


def _meter(net: Any) -> Meter | None:
    """A relay's meter (relay mode); in tap mode the link itself counts the bytes (``wire_counter``)."""
    return Meter() if net.mode == "relay" else None


def run_transport(name: str, workload: Workload = Workload(), mode: str = "relay") -> TransportRun:
    """Run one transport (a name of ``TRANSPORTS``) on ``workload``; every server stops before it returns.

    ``mode="relay"`` (anyone): TCP crosses the userspace relay, which delays but never loses, and UDP is
    delayed and lost by its own sender. ``mode="tap"`` (root): every transport, UDP included, crosses the
    emulated link, which loses ``workload.loss`` of the frames each way; bytes are counted on the link.
    """
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}")
    if workload.batch and name not in BATCHING:
        raise ValueError(f"{name} does not take a batching period here (Workload.batch): only "
                         f"{' and '.join(BATCHING)} do; short polling batches by its interval")
    if mode not in ("relay", "tap"):
        raise ValueError(f"mode is 'relay' or 'tap', not {mode!r}")
    if mode == "relay" and workload.loss and name != "UDP":
        raise ValueError(f"the relay cannot lose a TCP segment, so {name} cannot run with loss={workload.loss:g} "
                         "in relay mode: loss on every transport needs mode='tap' (root; see loss_sweep)")
    run = TransportRun(name, workload)
    if name == "UDP" and mode == "relay":
        _udp(workload, run)
        return run
    if name == "raw TCP" and workload.batch and 2 * workload.rate * workload.batch * (workload.size + 30) > RAW_MAX:
        raise ValueError(f"a batch of raw TCP may not pass {RAW_MAX} bytes (its 16-bit length): lower the rate, "
                         "the size or the batching period")
    with link(rtt_ms=workload.rtt_ms, mode=mode, loss=workload.loss if mode == "tap" else 0.0,
              seed=workload.seed) as net:
        if name in ("short polling", "long polling"):
            _polling(workload, net, run, long=name == "long polling")
        elif name == "SSE":
            _sse(workload, net, run)
        elif name == "WebSocket":
            _websocket(workload, net, run)
        elif name == "raw TCP":
            _raw_tcp(workload, net, run)
        elif name == "UDP":
            _udp(workload, run, net)
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
