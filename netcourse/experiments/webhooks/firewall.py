"""Notebook 07, section 4: a receiver behind a firewall, and the ways around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from ...apps.polling import MessageLog
from ...apps.polling import make_app as polling_app
from ...apps.streaming import make_app as streaming_app
from ...apps.webhooks import COURSE_ALLOW, Sender
from ...apps.wsserver import Hub, make_ws_handler
from ...clients.pollers import long_poller, short_poller
from ...clients.sse import stream_events
from ...protocols.webhooks import verify
from ...protocols.wsframe import Opcode
from ...runtime.server import serve
from ...runtime.sockets import no_delay
from ...runtime.waiting import run_async
from .common import SECRET, workdir

__all__ = ["REACHABLE", "Unreachable", "direct_attempt", "SenderSide", "RelayHooks", "sender_side", "Way", "by_polling", "by_long_polling",
           "by_event_stream", "by_websocket", "by_relay", "as_a_webhook", "behind_a_firewall", "comparison"]


REACHABLE = "webhook, had the receiver been reachable"  # the row timed at the relay's receipt of each POST


@dataclass
class Unreachable:
    """The same events delivered to a receiver behind a firewall, each way around it.

    Attributes:
        direct: what the sender's attempts to the firewalled receiver met (outcomes).
        latency_ms: way -> publish-to-receipt delays in ms, one per event.
        requests: way -> HTTP requests made for these events: the receiver's (polls, or its one held
            connection), and for the webhook row the sender's POSTs.
        events: how many.
    """

    direct: list[str]
    latency_ms: dict[str, list[float]]
    requests: dict[str, int]
    events: int

    @property
    def relay_posts(self) -> int:
        """The sender's webhook POSTs to the relay (one per event)."""
        return self.requests.get(REACHABLE, 0)

    def __repr__(self) -> str:
        rows = [f"a direct webhook first (one event): {len(self.direct)} attempts, all failed "
                f"({self.direct[0] if self.direct else '-'}); then {self.events} events, each way:"]
        for way, delays in self.latency_ms.items():
            who = f"{self.requests[way]:>3} {'POST(s) by the sender' if way == REACHABLE else 'request(s) by the receiver'}"
            rows.append(f"  {way:<40} median {statistics.median(delays):6.0f} ms, worst {max(delays):6.0f} ms, {who}")
        rows.append(f"  (the relay took {self.relay_posts} webhook POSTs from the sender: the last row's times are "
                    "when they arrived)")
        return "\n".join(rows)


def direct_attempt(directory: str) -> list[str]:
    """A webhook to a receiver nobody may reach (its port is closed: refused at once; a dropping firewall would
    make the sender wait for its timeout instead): what each of the sender's attempts met."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        sender = Sender(os.path.join(directory, "outbox.db"), allow=COURSE_ALLOW, timeout=0.3, max_attempts=3)
        sender.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
        sender.publish("ping", {})
        run_async(sender.run(limit=5), 10)
    return [a.outcome for a in sender.attempts]


@dataclass
class RelayHooks:
    """The webhooks a relay received: event id -> moment of receipt (``time.perf_counter()``), and POSTs in all."""

    received: dict[str, float] = field(default_factory=dict)
    posts: int = 0


@dataclass
class SenderSide:
    """What the sender offers a receiver that can only connect *out*, each a running server: an events endpoint
    to poll (notebook 03's server), its own event stream (notebook 06's), a WebSocket, and a relay that takes the
    sender's webhooks and passes each one down an event stream (the way smee.io or a tunnel works).

    Attributes:
        published: event id -> when it was published (``time.perf_counter()``).
        hooks: what the relay received: each webhook POST's moment (a reachable receiver's moment), and how many.
    """

    polls: Any
    stream: Any
    websocket: Any
    relay: Any
    hub: Hub
    poll_log: MessageLog
    stream_log: MessageLog
    relay_sender: Sender
    hooks: "RelayHooks"
    published: dict[str, float] = field(default_factory=dict)


    async def publish(self, events: int, gap: float) -> None:
        """Publish ``events`` events ``gap`` seconds apart to every way at once (and as a webhook, to the relay)."""
        for i in range(events):
            await asyncio.sleep(gap)
            msg_id = f"msg_{i + 1}"
            self.published[msg_id] = time.perf_counter()
            self.polls.loop.call_soon_threadsafe(self.poll_log.append, msg_id)
            self.stream.loop.call_soon_threadsafe(self.stream_log.append, msg_id)
            asyncio.run_coroutine_threadsafe(self.hub.broadcast(msg_id.encode(), Opcode.TEXT), self.websocket.loop)
            self.relay_sender.publish("ping", {"n": i + 1}, msg_id=msg_id)
            # the sender works on a loop of its own: its SQLite outbox must not stall the receivers' loop
            await asyncio.get_running_loop().run_in_executor(None, lambda: run_async(self.relay_sender.run(limit=5), 10))


@contextmanager
def sender_side(directory: str) -> Iterator[SenderSide]:
    """Start the four servers of a ``SenderSide``; they all stop when the block ends, whatever fails."""
    poll_log, stream_log, relayed, hooks, hub = MessageLog(), MessageLog(), MessageLog(), RelayHooks(), Hub()

    async def take_hook(request: web.Request) -> web.Response:  # the relay: a webhook in, an event out
        hooks.posts += 1
        hooks.received.setdefault(request.headers.get("webhook-id", ""), time.perf_counter())
        forwarded = {"headers": {k: v for k, v in request.headers.items() if k.lower().startswith("webhook-")},
                     "body": (await request.read()).decode()}
        relayed.append(json.dumps(forwarded))
        return web.json_response({"relayed": True}, status=202)

    relay_app = streaming_app(relayed, keepalive=5)
    relay_app.router.add_post("/hooks/learner", take_hook)
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(serve(app, name=name)) for app, name in (
            (polling_app(poll_log), "events endpoint"), (streaming_app(stream_log, keepalive=5), "sender's event stream"),
            (no_delay(make_ws_handler(hub)), "sender's WebSocket"), (relay_app, "relay"))]
        relay_sender = Sender(os.path.join(directory, "relay-outbox.db"), allow=COURSE_ALLOW, timeout=2)
        relay_sender.add_endpoint(f"{servers[3].url}/hooks/learner", SECRET)
        yield SenderSide(*servers, hub, poll_log, stream_log, relay_sender, hooks)


# -- the ways around the firewall: each a receiver that connects out --------------------------------------------


@dataclass
class Way:
    """One way around the firewall: each event's delay from publication to receipt (ms), and the requests the
    receiver made (polls, or its one held connection)."""

    name: str
    latency_ms: list[float]
    requests: int


async def by_polling(side: SenderSide, interval: float, until: float) -> Way:
    """Short polling of the sender's events endpoint every ``interval`` s (``clients.pollers``)."""
    got = await short_poller(side.polls.url, interval, until)
    return Way(f"short polling every {interval:g} s", _delays(side, [(f"msg_{i}", t) for i, t in got.received]),
               got.requests)


async def by_long_polling(side: SenderSide, until: float) -> Way:
    """Long polling of the same endpoint: each poll held until an event comes."""
    got = await long_poller(side.polls.url, 10.0, until)
    return Way("long polling", _delays(side, [(f"msg_{i}", t) for i, t in got.received]), got.requests)


async def by_event_stream(side: SenderSide, until: float, events: int, opened: asyncio.Event) -> Way:
    """An event stream the receiver holds open to the sender (``clients.sse``): one request for everything."""
    got = await _read_stream(side.stream.url, until, events, opened, lambda data: data)
    return Way("event stream held to the sender", _delays(side, got), 1)


async def by_websocket(side: SenderSide, until: float, events: int) -> Way:
    """A WebSocket the receiver holds open to the sender."""
    got: list[tuple[str, float]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{side.websocket.port}/") as ws:
        while time.perf_counter() < until and len(got) < events:
            try:
                msg = await ws.receive(timeout=max(0.01, until - time.perf_counter()))
            except asyncio.TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            got.append((msg.data, time.perf_counter()))
    return Way("WebSocket held to the sender", _delays(side, got), 1)


async def by_relay(side: SenderSide, until: float, events: int, opened: asyncio.Event) -> Way:
    """A relay's event stream: each event is the sender's webhook, headers and body as signed, checked here end
    to end (a relay that re-serialised the JSON would break the signature)."""
    def verified(data: str) -> str:
        forwarded = json.loads(data)
        return verify(SECRET, forwarded["headers"], forwarded["body"].encode())[0]

    got = await _read_stream(side.relay.url, until, events, opened, verified)
    return Way("relay + event stream (smee-style)", _delays(side, got), 1)


def as_a_webhook(side: SenderSide) -> Way:
    """What a reachable receiver would have had: the sender's POSTs, timed when the relay received them."""
    return Way(REACHABLE, _delays(side, list(side.hooks.received.items())), side.hooks.posts)


async def _read_stream(url: str, until: float, events: int, opened: asyncio.Event, msg_id) -> list[tuple[str, float]]:
    got: list[tuple[str, float]] = []

    async def read(session: aiohttp.ClientSession) -> None:
        async for now, event in stream_events(session, f"{url}/events", on_open=opened.set):
            got.append((msg_id(event.data), now))
            if len(got) >= events:
                return

    async with aiohttp.ClientSession() as session:
        try:
            await asyncio.wait_for(read(session), max(0.01, until - time.perf_counter()))
        except asyncio.TimeoutError:
            pass
    return got


def _delays(side: SenderSide, received: list[tuple[str, float]]) -> list[float]:
    return [(t - side.published[m]) * 1000 for m, t in received if m in side.published]


def behind_a_firewall(events: int = 10, gap: float = 0.1, poll_interval: float = 0.5) -> Unreachable:
    """A direct webhook that cannot get through, then ``events`` events delivered every way around the firewall
    at once (so all ways see the same events at the same moments): ``direct_attempt``, ``sender_side``, and the
    ``by_...`` receivers, each a few lines to read."""
    if not 1 <= events <= 100 or not 0 < gap <= 1 or not 0.05 <= poll_interval <= 5:
        raise ValueError("need 1 <= events <= 100, 0 < gap <= 1 s and 0.05 <= poll_interval <= 5 s")
    with workdir() as d:
        direct = direct_attempt(d)
        with sender_side(d) as side:

            async def everyone() -> list[Way]:
                until = time.perf_counter() + events * gap + 1.3
                streams = [asyncio.Event(), asyncio.Event()]
                receivers = [asyncio.ensure_future(c) for c in (
                    by_polling(side, poll_interval, until), by_long_polling(side, until),
                    by_event_stream(side, until, events, streams[0]), by_websocket(side, until, events),
                    by_relay(side, until, events, streams[1]))]
                # every receiver connected before the first event: the long poll held, both streams open, the socket up
                deadline = time.perf_counter() + 5
                while time.perf_counter() < deadline and not (
                        side.hub.count >= 1 and side.poll_log.waiting >= 1 and all(s.is_set() for s in streams)):
                    await asyncio.sleep(0.005)
                await side.publish(events, gap)
                return await asyncio.gather(*receivers)

            ways = run_async(everyone(), events * gap + 20) + [as_a_webhook(side)]
    return Unreachable(direct, {w.name: w.latency_ms for w in ways}, {w.name: w.requests for w in ways}, events)


def comparison(unreachable: Unreachable) -> list[tuple[str, str, str, str, str]]:
    """Every way of section 4, on the same events: (way, requests per event, median delay, who connects to
    whom, what it needs)."""
    needs = {
        "short": ("receiver → sender", "a cursor; latency up to the interval"),
        "long": ("receiver → sender", "a cursor (notebook 03); a request held"),
        "event stream held": ("receiver → sender (held)", "a held connection (notebook 06)"),
        "WebSocket held": ("receiver → sender (held)", "a held connection (notebook 05)"),
        "relay": ("receiver → relay (held)", "a relay; a held connection"),
        "webhook": ("sender → receiver", "a reachable receiver; retries and dedup"),
    }
    rows = []
    for way, delays in unreachable.latency_ms.items():
        who, need = next(v for k, v in needs.items() if k in way)
        per = unreachable.requests[way] / unreachable.events
        rows.append((way, f"{per:.1f}", f"{statistics.median(delays):.0f} ms", who, need))
    return rows
