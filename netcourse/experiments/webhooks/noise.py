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

__all__ = ["Noise", "noise", "WINDOWS", "noise_grid", "noise_knob"]


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


_SESSION = web.AppKey("session", aiohttp.ClientSession)


_GATE = web.AppKey("gate", asyncio.Semaphore)


_FETCHES = web.AppKey("fetches", set)


_API = web.AppKey("api", str)


def noise(way: str = "one", *, events: int = 1000, batch: int = 50, window_ms: float = 0.0, rate: float = 5000.0,
          concurrency: int = 20) -> Noise:
    """Deliver a burst of ``events`` (published at ``rate`` per second) to a verifying receiver one way:

    - ``"one"``: one signed POST per event, carrying the event;
    - ``"batch"``: one POST per ``batch`` events (or fewer, when ``window_ms`` passes first);
    - ``"thin"``: one POST per event carrying only its id and type; the receiver then GETs the details from
      the sender's API (a second server), as it would from a real provider.
    """
    if way not in ("one", "batch", "thin"):
        raise ValueError("way is 'one', 'batch' or 'thin'")
    if not 1 <= events <= 20_000 or not 1 <= batch <= 1000 or not 0 <= window_ms <= 5000 or rate <= 0:
        raise ValueError("need 1 <= events <= 20000, 1 <= batch <= 1000, 0 <= window_ms <= 5000, rate > 0")
    details = {i: {"order": i, "customer": f"c{i % 97}", "items": [f"sku-{i % 13}", f"sku-{i % 7}"],
                   "total": round(i * 1.37, 2)} for i in range(events)}
    published: dict[int, float] = {}
    arrived: dict[int, float] = {}
    stats = {"requests": 0, "heads": 0, "bodies": 0}

    async def api_details(request: web.Request) -> web.Response:  # the sender's API
        stats["requests"] += 1
        stats["heads"] += _head_bytes(request)
        i = int(request.match_info["id"])
        text = json.dumps({"id": i, "type": "order.created", "data": details[i]}, separators=(",", ":"))
        stats["bodies"] += len(text)
        return web.Response(text=text, content_type="application/json")

    api = web.Application()
    api.router.add_get("/events/{id}", api_details)

    async def fetch(app: web.Application, i: int) -> None:  # the receiver asks for the details
        async with app[_GATE]:
            async with app[_SESSION].get(f"{app[_API]}/events/{i}") as r:
                await r.read()
                stats["heads"] += response_head_size(r)
        arrived.setdefault(i, time.perf_counter())

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        stats["heads"] += _head_bytes(request)
        stats["bodies"] += len(body)
        try:
            verify(SECRET, request.headers, body)
        except SignatureError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        items = json.loads(body)
        for item in items if isinstance(items, list) else [items]:
            if way == "thin":
                task = asyncio.create_task(fetch(request.app, int(item["id"])))
                request.app[_FETCHES].add(task)
                task.add_done_callback(request.app[_FETCHES].discard)
            else:
                arrived.setdefault(int(item["id"]), time.perf_counter())
        return web.Response(status=204)

    async def open_session(app: web.Application) -> None:
        app[_SESSION] = aiohttp.ClientSession()
        app[_GATE] = asyncio.Semaphore(concurrency)

    async def close_session(app: web.Application) -> None:
        for task in list(app[_FETCHES]):
            task.cancel()
        await app[_SESSION].close()

    receiver = web.Application(client_max_size=16 << 20)
    receiver[_FETCHES] = set()
    receiver.router.add_post("/webhook", hook)
    receiver.on_startup.append(open_session)
    receiver.on_cleanup.append(close_session)
    with serve(api, name="sender's API") as api_srv:
        receiver[_API] = api_srv.url
        with serve(receiver, name="noise receiver") as srv:

            async def post(session: aiohttp.ClientSession, payload: object, msg_id: str, gate: asyncio.Semaphore) -> None:
                body = json.dumps(payload, separators=(",", ":")).encode()
                async with gate:
                    headers = {**headers_for(SECRET, msg_id, body), "Content-Type": "application/json"}
                    async with session.post(f"{srv.url}/webhook", data=body, headers=headers) as r:
                        await r.read()
                        stats["heads"] += response_head_size(r)

            async def go() -> None:
                gate = asyncio.Semaphore(concurrency)
                async with aiohttp.ClientSession() as session:
                    tasks, buffer, opened = [], [], None
                    start = time.perf_counter()
                    for i in range(events):
                        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                        published[i] = time.perf_counter()
                        full = {"id": i, "type": "order.created", "data": details[i]}
                        if way == "one":
                            tasks.append(asyncio.create_task(post(session, full, f"msg_{i}", gate)))
                        elif way == "thin":
                            tasks.append(asyncio.create_task(post(session, {"id": i, "type": "order.created"},
                                                                  f"msg_{i}", gate)))
                        else:
                            buffer.append(full)
                            opened = opened or time.perf_counter()
                            if len(buffer) >= batch or (window_ms and (time.perf_counter() - opened) * 1000 >= window_ms):
                                tasks.append(asyncio.create_task(post(session, buffer, f"batch_{i}", gate)))
                                buffer, opened = [], None
                    if buffer:
                        tasks.append(asyncio.create_task(post(session, buffer, f"batch_{events}", gate)))
                    await asyncio.gather(*tasks)
                    deadline = time.perf_counter() + 30
                    while len(arrived) < events and time.perf_counter() < deadline:
                        await asyncio.sleep(0.005)  # thin events: the receiver's fetches finish

            run_async(go(), events / rate + 60)
    name = {"one": "one POST per event", "thin": "thin events (ids, then fetch)"}.get(
        way, f"batches of {batch}" + (f" or {window_ms:g} ms" if window_ms else ""))
    delays = [(arrived[i] - published[i]) * 1000 for i in sorted(arrived)]
    if len(delays) != events:
        raise NetcourseError(f"{events - len(delays)} events did not arrive ({name})")
    return Noise(name, events, stats["requests"], stats["bodies"], stats["heads"], delays)


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
