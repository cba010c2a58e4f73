"""Notebook 06, section 4: a buffering and a compressing proxy holding a stream back, and the fixes measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field

import aiohttp

from ...apps.polling import MessageLog
from ...apps.proxy import make_proxy
from ...apps.streaming import make_app
from ...clients.sse import stream_events
from ...course.exercises import Prediction
from ...runtime.server import serve
from ...runtime.waiting import run_async
from .common import UA, event_body_bytes, publish_events

__all__ = ["BUFFERING_CASES", "Buffering", "buffering", "app_streams", "BUFFER_SIZES", "buffer_grid", "buffer_knob", "predict_first_event_delay"]


# name -> (proxy options or None for a direct connection, query added to /events)
BUFFERING_CASES: dict[str, tuple[dict | None, str]] = {
    "direct": (None, ""),
    "proxy buffers 4 KiB": ({"buffer": 4096}, ""),
    "proxy compresses (gzip)": ({"buffer": None, "gzip": True}, ""),
    "fix: X-Accel-Buffering: no": ({"buffer": 4096, "gzip": True}, "&accel=no"),
    "no-transform, but the proxy buffers": ({"buffer": 4096, "gzip": True}, "&no_transform=1"),
    "fix: Cache-Control: no-transform": ({"buffer": None, "gzip": True}, "&no_transform=1"),
    "fix: gzip flushes each write": ({"buffer": None, "gzip": True, "gzip_flush": True}, ""),
    "fix: no gzip for text/event-stream": ({"buffer": None, "gzip": True, "compress_event_stream": False}, ""),
}


@dataclass
class Buffering:
    """Per-event delivery delay (ms from publication to the client's receipt) for each way of connecting.

    Attributes:
        delays: case name -> one delay per event, in publication order (None: never arrived).
        events, gap, size: the stream: ``events`` events of about ``size`` bytes, ``gap`` s apart.
    """

    delays: dict[str, list[float | None]]
    events: int
    gap: float
    size: int
    published_ms: list[float] = field(default_factory=list)

    @property
    def published(self) -> list[float]:
        """When each event was published, ms since the first (measured, or from the gap)."""
        return self.published_ms or [i * self.gap * 1000 for i in range(self.events)]

    def first(self, case: str) -> float:
        return self.delays[case][0] if self.delays[case] and self.delays[case][0] is not None else float("nan")

    def lumps(self, case: str, *, within_ms: float = 10.0) -> list[int]:
        """How many events arrived together, lump by lump (arrivals less than ``within_ms`` apart)."""
        times = sorted(p + d for p, d in zip(self.published, self.delays[case]) if d is not None)
        out: list[int] = []
        for k, t in enumerate(times):
            if k and t - times[k - 1] < within_ms:
                out[-1] += 1
            else:
                out.append(1)
        return out

    def worst(self, case: str) -> float:
        return max((d for d in self.delays[case] if d is not None), default=float("nan"))

    def __repr__(self) -> str:
        lines = [f"{self.events} events of about {self.size} bytes, {self.gap * 1000:.0f} ms apart; delay from "
                 "publication to the client, ms:"]
        for case, ds in self.delays.items():
            got = [d for d in ds if d is not None]
            lines.append(f"  {case:<36} first {self.first(case):6.0f}   median {statistics.median(got) if got else float('nan'):6.0f}   "
                         f"worst {self.worst(case):6.0f}" + ("" if len(got) == len(ds) else f"   ({len(ds) - len(got)} missing)"))
        return "\n".join(lines)


def buffering(cases: dict[str, tuple[dict | None, str]] | None = None, *, events: int = 10, gap: float = 0.06,
              size: int = 100) -> Buffering:
    """Subscribe one client per case (directly, or through its own proxy) to the same event stream, publish
    ``events`` events ``gap`` s apart, and time each event's delivery to each client."""
    cases = dict(BUFFERING_CASES if cases is None else cases)
    if not 1 <= events <= 200 or not 0 < gap <= 1 or not 1 <= size <= 10_000:
        raise ValueError("need 1 <= events <= 200, 0 < gap <= 1 s, 1 <= size <= 10000 bytes")
    log = MessageLog()
    app = make_app(log, keepalive=30)
    with serve(app, name="sse") as srv, contextlib.ExitStack() as stack:
        proxies = {name: stack.enter_context(serve(make_proxy(srv.host, srv.port, **opts), name="buffering proxy"))
                   for name, (opts, _) in cases.items() if opts is not None}  # each stops, whatever fails
        received: dict[str, dict[int, float]] = {name: {} for name in cases}

        async def one(session: aiohttp.ClientSession, name: str, ready: asyncio.Event) -> None:
            opts, query = cases[name]
            port = proxies[name].port if opts is not None else srv.port
            # the server ends the stream after the last event (drop=events): a proxy that buffers lets go then
            async for now, event in stream_events(session, f"http://127.0.0.1:{port}/events?retry=1000&drop={events}"
                                                  f"{query}", on_open=ready.set):
                received[name][int(event.id)] = now
                if len(received[name]) >= events:
                    return

        async def go() -> None:
            async with aiohttp.ClientSession(headers=UA) as session:
                readies = {name: asyncio.Event() for name in cases}
                tasks = [asyncio.create_task(one(session, name, readies[name])) for name in cases]
                await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies.values())), 10)
                # every stream is open at the server (proxied ones only once the proxy saw the head)
                deadline = time.monotonic() + 5
                while app_streams(app) < len(cases) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                publishing = asyncio.run_coroutine_threadsafe(publish_events(log, events, gap, size), srv.loop)
                await asyncio.wrap_future(publishing)
                await asyncio.wait(tasks, timeout=2 + 2 * gap * events)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        run_async(go(), events * gap + 30)
    published = {msg_id: t for msg_id, _, t in log.messages}
    delays = {name: [((got[i] - published[i]) * 1000 if i in got else None) for i in sorted(published)]
              for name, got in received.items()}
    first = min(published.values(), default=0.0)
    return Buffering(delays, events, gap, size, [(published[i] - first) * 1000 for i in sorted(published)])


def app_streams(app) -> int:
    """Event streams open at the streaming app right now."""
    from ...apps.streaming import _SETTINGS

    return app[_SETTINGS]["open"]


BUFFER_SIZES = (0, 128, 256, 512, 1024, 2048, 4096)


def buffer_grid(sizes: tuple[int, ...] = BUFFER_SIZES, **stream) -> Buffering:
    """The same stream through proxies with each buffer size (0: no buffering), measured side by side."""
    cases = {f"{n} B": ({"buffer": n or None}, "") for n in sizes}
    return buffering(cases, **stream)


def buffer_knob(grid: Buffering, buffer: int = 4096):
    """The knob's picture: per-event delays through a proxy with ``buffer`` bytes, from the measured grid."""
    from ...course.plots.streaming import stream_delays

    name = f"{buffer} B"
    if name not in grid.delays:
        raise ValueError(f"no measurement for a {buffer}-byte buffer; measured: {', '.join(grid.delays)}")
    return stream_delays(grid, [name], title=f"Through a proxy that buffers {buffer} bytes" if buffer
                               else "Through a proxy that does not buffer")


def predict_first_event_delay(events: int = 10, gap: float = 0.06, size: int = 100, buffer: int = 4096) -> Prediction:
    """Predict when the first event reaches a client behind a buffering proxy."""
    sizes = [event_body_bytes(size, n) for n in range(1, events + 1)]
    each = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]} to {sizes[-1]}"
    total = sum(sizes)

    def explain(given: float, measured: float) -> str:
        return (f"{events} events of {each} bytes each in the body (the `id:` and `data:` lines and the blank line) "
                f"make {total} bytes, less than the proxy's {buffer}-byte buffer: the proxy holds every event "
                "until the buffer fills or the response ends. Here the server ends the stream after the last event, "
                f"so all arrive together at the end: the first, published {(events - 1) * gap * 1000:.0f} ms before "
                "the last, waits at least that long. Had the stream gone on, its events would have left the proxy only "
                "when the buffer filled, or when the proxy's read timeout ended the response.")

    return Prediction(
        f"The server publishes {events} events of about {size} bytes, {gap * 1000:.0f} ms apart, on an event stream. "
        f"Between it and the client sits a proxy that buffers up to {buffer} bytes before forwarding, and the server "
        "ends the stream after the last event. How many "
        "milliseconds after its publication does the first event reach the client?",
        measure=lambda b: b.first("proxy buffers 4 KiB") if buffer == 4096 else b.first(f"{buffer} B"),
        unit="ms", tolerance=0.3, floor=30, explain=explain,
        mistakes=[(lambda g, m: g < gap * 1000, "A stream's events are tiny: a proxy that buffers holds them until "
                   "its buffer fills or the response ends, whichever comes first.")],
    )
