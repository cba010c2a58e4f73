"""Notebook 07, section 5: the noise of a burst: 1,000 events as single POSTs, batches and thin events (requests,
bytes, delay), with a batch-window knob.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from ...errors import NetcourseError, SignatureError
from ...protocols.httpwire import head_size, response_head_size
from ...protocols.webhooks import headers_for, verify
from ...runtime.server import serve
from ...runtime.waiting import run_async
from .common import SECRET

__all__ = ["Noise", "noise", "Tally", "order", "sender_api", "receiver", "send_burst", "WINDOWS", "noise_grid", "noise_knob"]


@dataclass
class Noise:
    """A burst of events delivered one way: requests, bytes and delay from publication to processing.

    Attributes:
        way: "one POST per event", "batches of N", "window W ms", "thin events (ids, then fetch)".
        events: how many.
        requests: HTTP requests made (POSTs, and GETs for thin events).
        body_bytes: bytes of request and response bodies.
        head_bytes: bytes of request heads (as the receiver saw them) and response heads.
        delays_ms: per event, from publication to the receiver holding its details.
    """

    way: str
    events: int
    requests: int
    body_bytes: int
    head_bytes: int
    delays_ms: list[float] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.body_bytes + self.head_bytes


@dataclass
class Tally:
    """What a burst cost, counted where it happened: requests and head and body bytes (by the servers, and by the
    clients for the responses), and when each event was published and when the receiver held its details."""

    requests: int = 0
    heads: int = 0
    bodies: int = 0
    published: dict[int, float] = field(default_factory=dict)
    arrived: dict[int, float] = field(default_factory=dict)

    def request(self, request: web.Request, body_bytes: int) -> None:
        self.requests += 1
        self.heads += _head_bytes(request)
        self.bodies += body_bytes


_SESSION = web.AppKey("session", aiohttp.ClientSession)
_GATE = web.AppKey("gate", asyncio.Semaphore)
_FETCHES = web.AppKey("fetches", set)
_API = web.AppKey("api", str)


def order(i: int) -> dict:
    """Event ``i``'s details: an order, as a shop's webhook would carry it."""
    return {"order": i, "customer": f"c{i % 97}", "items": [f"sku-{i % 13}", f"sku-{i % 7}"], "total": round(i * 1.37, 2)}


def sender_api(tally: Tally) -> web.Application:
    """The sender's API, where a thin event's receiver GETs the details: ``/events/{id}``."""
    async def details(request: web.Request) -> web.Response:
        i = int(request.match_info["id"])
        text = json.dumps({"id": i, "type": "order.created", "data": order(i)}, separators=(",", ":"))
        tally.request(request, len(text))
        return web.Response(text=text, content_type="application/json")

    api = web.Application()
    api.router.add_get("/events/{id}", details)
    return api


def receiver(tally: Tally, api_url: str, *, thin: bool, concurrency: int = 20) -> web.Application:
    """A receiver that verifies each POST's signature, takes one event or a list of them, and records when it
    holds each event's details: at once, or (``thin``) once its GET to the sender's API has answered."""
    async def fetch(app: web.Application, i: int) -> None:
        async with app[_GATE]:
            async with app[_SESSION].get(f"{app[_API]}/events/{i}") as r:
                await r.read()
                tally.heads += response_head_size(r)
        tally.arrived.setdefault(i, time.perf_counter())

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        tally.request(request, len(body))
        try:
            verify(SECRET, request.headers, body)
        except SignatureError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        items = json.loads(body)
        for item in items if isinstance(items, list) else [items]:
            if thin:
                task = asyncio.create_task(fetch(request.app, int(item["id"])))
                request.app[_FETCHES].add(task)
                task.add_done_callback(request.app[_FETCHES].discard)
            else:
                tally.arrived.setdefault(int(item["id"]), time.perf_counter())
        return web.Response(status=204)

    async def open_session(app: web.Application) -> None:
        app[_SESSION] = aiohttp.ClientSession()
        app[_GATE] = asyncio.Semaphore(concurrency)

    async def close_session(app: web.Application) -> None:
        for task in list(app[_FETCHES]):
            task.cancel()
        await app[_SESSION].close()

    app = web.Application(client_max_size=16 << 20)
    app[_FETCHES], app[_API] = set(), api_url
    app.router.add_post("/webhook", hook)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


async def send_burst(url: str, tally: Tally, way: str, *, events: int, batch: int, window_ms: float, rate: float,
                     concurrency: int) -> None:
    """The sender: publish ``events`` at ``rate`` per second and POST them ``way`` (signed), at most
    ``concurrency`` at once; then wait (30 s at most) for the receiver to hold them all."""
    gate = asyncio.Semaphore(concurrency)

    async def post(session: aiohttp.ClientSession, payload: object, msg_id: str) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        async with gate:
            headers = {**headers_for(SECRET, msg_id, body), "Content-Type": "application/json"}
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                tally.heads += response_head_size(r)

    async with aiohttp.ClientSession() as session:
        tasks, buffer, opened = [], [], None
        start = time.perf_counter()
        for i in range(events):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tally.published[i] = time.perf_counter()
            if way != "batch":  # one POST per event: all of it, or (thin) its id and type
                event = {"id": i, "type": "order.created"} | ({} if way == "thin" else {"data": order(i)})
                tasks.append(asyncio.create_task(post(session, event, f"msg_{i}")))
                continue
            buffer.append({"id": i, "type": "order.created", "data": order(i)})
            opened = opened or time.perf_counter()
            if len(buffer) >= batch or (window_ms and (time.perf_counter() - opened) * 1000 >= window_ms):
                tasks.append(asyncio.create_task(post(session, buffer, f"batch_{i}")))
                buffer, opened = [], None
        if buffer:
            tasks.append(asyncio.create_task(post(session, buffer, f"batch_{events}")))
        await asyncio.gather(*tasks)
        deadline = time.perf_counter() + 30
        while len(tally.arrived) < events and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)  # thin events: the receiver's fetches finish


def noise(way: str = "one", *, events: int = 1000, batch: int = 50, window_ms: float = 0.0, rate: float = 5000.0,
          concurrency: int = 20) -> Noise:
    """Deliver a burst of ``events`` (published at ``rate`` per second) to a verifying receiver one way:

    - ``"one"``: one signed POST per event, carrying the event;
    - ``"batch"``: one POST per ``batch`` events (or fewer, when ``window_ms`` passes first);
    - ``"thin"``: one POST per event carrying only its id and type; the receiver then GETs the details from
      the sender's API (a second server), as it would from a real provider.

    The steps: ``sender_api`` and ``receiver`` are the two servers, ``send_burst`` the sender, ``Tally`` the count.
    """
    if way not in ("one", "batch", "thin"):
        raise ValueError("way is 'one', 'batch' or 'thin'")
    if not 1 <= events <= 20_000 or not 1 <= batch <= 1000 or not 0 <= window_ms <= 5000 or rate <= 0:
        raise ValueError("need 1 <= events <= 20000, 1 <= batch <= 1000, 0 <= window_ms <= 5000, rate > 0")
    tally = Tally()
    with serve(sender_api(tally), name="sender's API") as api_srv, \
            serve(receiver(tally, api_srv.url, thin=way == "thin", concurrency=concurrency), name="noise receiver") as srv:
        run_async(send_burst(f"{srv.url}/webhook", tally, way, events=events, batch=batch, window_ms=window_ms,
                             rate=rate, concurrency=concurrency), events / rate + 60)
    name = {"one": "one POST per event", "thin": "thin events (ids, then fetch)"}.get(
        way, f"batches of {batch}" + (f" or {window_ms:g} ms" if window_ms else ""))
    delays = [(tally.arrived[i] - tally.published[i]) * 1000 for i in sorted(tally.arrived)]
    if len(delays) != events:
        raise NetcourseError(f"{events - len(delays)} events did not arrive ({name})")
    return Noise(name, events, tally.requests, tally.bodies, tally.heads, delays)


def _head_bytes(request: web.Request) -> int:
    """Bytes of a request's head as the server received it."""
    line = f"{request.method} {request.raw_path} HTTP/{request.version.major}.{request.version.minor}"
    return head_size(line, request.raw_headers)


WINDOWS = (0, 5, 20, 50, 100, 200)


def noise_grid(windows: tuple[float, ...] = WINDOWS, *, events: int = 1000, rate: float = 5000.0) -> dict[float, Noise]:
    """Batching by time window, each window measured: 0 means one POST per event."""
    out = {}
    for w in windows:
        out[w] = noise("one", events=events, rate=rate) if w == 0 else noise("batch", events=events, batch=1000,
                                                                              window_ms=w, rate=rate)
    return out


def noise_knob(grid: dict[float, Noise], window_ms: float = 20):
    """The knob's picture: requests, bytes and delay for one batch window, beside one POST per event."""
    from ...course.plots.webhooks import webhook_noise

    if window_ms not in grid:
        raise ValueError(f"no measurement for a {window_ms:g} ms window; measured: {', '.join(f'{w:g}' for w in grid)}")
    return webhook_noise([grid[0], grid[window_ms]] if window_ms else [grid[0]],
                               title=f"{grid[0].events:,} events: one POST each against a {window_ms:g} ms batch window")
