"""Notebook 03, sections 1 to 4: short pollers at several intervals and a long poller on the same seeded message
stream: delivery latency, requests, empty answers and bytes per message; the notes' naive long poller against
the correct one; abandoned waits; a look at the raw API.
"""

from __future__ import annotations

import asyncio
import html
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import aiohttp

from ...apps.polling import MessageLog, Publisher, make_app
from ...clients.pollers import (
    CLIENT_HEADERS,
    PollerResult,
    long_poller,
    naive_long_poller,
    short_poller,
)
from ...network.link import Link
from ...protocols.httpwire import parse_messages
from ...runtime.server import serve
from ...runtime.waiting import run_async
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ...traffic.wire import ETHERNET_HEADER, IPV4_HEADER, TCP_HEADER, TCP_TIMESTAMPS
from ..registry import scenario

__all__ = ["run_pollers", "PollingRun", "PollingSummary", "compare", "naive_versus_correct", "header_sizes", "Abandoned", "abandoned_waits", "peek"]


@dataclass
class PollingRun:
    """Several pollers against one server while one publisher publishes.

    Attributes:
        pollers: one result per poller.
        published: (message id, perf_counter seconds when published).
        start: perf_counter seconds when publishing started.
        duration: seconds of publishing.
        intervals: short-poll interval per poller name (seconds), for the theory.
        max_waiting: most requests the server held at once.
        capture: the packets (None when not captured).
    """

    pollers: list[PollerResult]
    published: list[tuple[int, float]]
    start: float
    duration: float
    intervals: dict[str, float]
    max_waiting: int
    capture: Capture | None = field(default=None, repr=False)
    rtt: float = 0.0  # seconds: the emulated link's round trip (0 on loopback)
    burst: int = 1  # messages published together
    link_mode: str = ""  # "tap" or "relay" on a link

    def poller(self, name: str) -> PollerResult:
        """The result of the poller called ``name``."""
        for p in self.pollers:
            if p.name == name:
                return p
        raise KeyError(f"no poller {name!r}; there are {[p.name for p in self.pollers]}")

    def latencies(self, name: str) -> list[float]:
        """Seconds from publication to receipt, per message, for one poller."""
        published = dict(self.published)
        return [t - published[i] for i, t in self.poller(name).received if i in published]

    def exactly_once_in_order(self, name: str) -> bool:
        """True when the poller received every published message, once each, in order."""
        return self.poller(name).ids == [i for i, _ in self.published]

    def bytes_on_wire(self, name: str) -> int | None:
        """All bytes the poller's connection put on the wire (both ways), from its TCP_INFO."""
        info = self.poller(name).socket_info
        if info is None:
            return None
        packets = info.segs_in + info.segs_out
        per_packet = ETHERNET_HEADER + IPV4_HEADER + TCP_HEADER + (TCP_TIMESTAMPS if info.timestamps else 0)
        return info.bytes_sent + info.bytes_received + packets * per_packet + 16  # + SYN/SYN-ACK options

    def theory_mean(self, name: str) -> float:
        """Expected mean delivery latency, seconds: a short poller waits T/2 on average for its next
        poll, then the answer travels half a round trip; a held long poll answers in one transit."""
        if name in self.intervals:
            return self.intervals[name] / 2 + self.rtt / 2
        if name.startswith("long"):  # in a burst, the first rides the held answer (1 transit), the rest 3 transits
            return self.rtt / 2 * (1 + 3 * (self.burst - 1)) / self.burst
        return float("nan")

    def burst_worst(self, name: str = "long") -> list[float]:
        """For each burst (messages published within 10 ms), the latest delivery, seconds."""
        published = dict(self.published)
        received = dict(self.poller(name).received)
        bursts: list[list[int]] = []
        last = None
        for i, t in self.published:
            if last is None or t - last > 0.010:
                bursts.append([])
            bursts[-1].append(i)
            last = t
        return [max(received[i] - published[i] for i in b) for b in bursts if all(i in received for i in b)]

    def summary(self) -> "PollingSummary":
        """One row per poller: requests, empty answers, latency and bytes per delivered message."""
        rows = []
        for p in self.pollers:
            lat = sorted(self.latencies(p.name))
            delivered = len(p.received)
            wire = self.bytes_on_wire(p.name)
            rows.append(
                {
                    "poller": p.name,
                    "requests": p.requests,
                    "delivered": delivered,
                    "requests per message": p.requests / delivered if delivered else float("nan"),
                    "empty share": p.empty / p.requests if p.requests else 0.0,
                    "mean latency (ms)": statistics.mean(lat) * 1000 if lat else float("nan"),
                    "max latency (ms)": lat[-1] * 1000 if lat else float("nan"),
                    "theory mean (ms)": self.theory_mean(p.name) * 1000,
                    "bytes per message": wire / delivered if wire and delivered else float("nan"),
                }
            )
        return PollingSummary(rows)


class PollingSummary(list):
    """Rows of dictionaries that show as a table (an HTML table in notebooks: it scrolls, never wraps)."""

    def _repr_html_(self) -> str:
        if not self:
            return "<p>(no pollers)</p>"
        keys = list(self[0])
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r[k]))}</td>" for k in keys) + "</tr>" for r in self)
        return f"<div style='overflow-x:auto'><table><tr>{head}</tr>{body}</table></div>"

    def __repr__(self) -> str:
        if not self:
            return "(no pollers)"
        keys = list(self[0])
        cells = [keys] + [[_fmt(r[k]) for k in keys] for r in self]
        widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
        return "\n".join("  ".join(c[i].rjust(widths[i]) for i in range(len(keys))) for c in cells)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "—" if v != v else (f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}")
    return str(v)


def run_pollers(
    pollers: list[tuple[str, object]],
    *,
    rate: float,
    duration: float,
    seed: int,
    burst: int = 1,
    scenario_name: str | None = None,
    wait: float = 10.0,
    net: Link | None = None,
) -> PollingRun:
    log = MessageLog()
    publisher = Publisher(rate, duration, seed, burst)
    intervals = {}
    server = net.serve(make_app(log), name="message log") if net else serve(make_app(log), name="message log")
    with server as srv:
        cm = capture(srv.port, scenario=scenario_name) if scenario_name else nullcontext()
        with cm as cap:
            start = time.perf_counter() + 0.05
            until = start + duration
            publishing = asyncio.run_coroutine_threadsafe(publisher.run(log, start), srv.loop)

            async def everyone() -> list[PollerResult]:
                tasks = []
                for kind, arg in pollers:
                    if kind == "short":
                        intervals[f"short {arg:g} s"] = float(arg)  # type: ignore[arg-type]
                        tasks.append(short_poller(srv.url, float(arg), until))  # type: ignore[arg-type]
                    elif kind == "long":
                        tasks.append(long_poller(srv.url, float(arg), until))  # type: ignore[arg-type]
                    elif kind == "long named":  # several long pollers in one run: "long 0.5 s", ...
                        tasks.append(long_poller(srv.url, float(arg), until, name=f"long {arg:g} s"))  # type: ignore[arg-type]
                    elif kind == "naive":
                        tasks.append(naive_long_poller(srv.url, float(arg), until))  # type: ignore[arg-type]
                return list(await asyncio.gather(*tasks))

            runner = net.run if net else run_async
            results = runner(everyone(), timeout=duration + wait + 15)
            publishing.result(timeout=duration + 5)
        published = [(i, t) for i, _, t in log.messages]
    return PollingRun(results, published, start, duration, intervals, log.max_waiting, cap,
                      rtt=net.rtt if net else 0.0, link_mode=net.mode if net else "", burst=burst)


@scenario("polling_compare")
def compare(
    intervals: tuple[float, ...] = (0.25, 0.5, 1.0),
    wait: float = 10.0,
    rate: float = 3.0,
    duration: float = 4.0,
    seed: int = 1,
    *,
    burst: int = 1,
    record: bool = True,
) -> PollingRun:
    """Short pollers at each interval and one long poller, all at once, on the same messages.

    Args:
        intervals: short-poll intervals, seconds.
        wait: long-poll hold, seconds (at most 30).
        rate: messages per second (Poisson, seeded).
        duration: seconds of publishing.
        seed: the publisher's random seed.
        burst: messages published together at each event.
        record: capture the packets (as scenario "polling_compare"; replayed without capture rights).
    """
    pollers: list[tuple[str, object]] = [("short", i) for i in intervals] + [("long", wait)]
    return run_pollers(pollers, rate=rate, duration=duration, seed=seed, burst=burst,
                scenario_name="polling_compare" if record else None, wait=wait)


def naive_versus_correct(wait: float = 0.5, rate: float = 1.0, duration: float = 2.5, seed: int = 3) -> PollingRun:
    """A correct long poller beside the notes' version, which re-asks only after receiving data."""
    return run_pollers([("long", wait), ("naive", wait)], rate=rate, duration=duration, seed=seed, wait=wait)


def header_sizes(run: PollingRun) -> dict[str, float]:
    """Average HTTP head sizes (bytes) of poll requests and responses in a captured run."""
    if run.capture is None:
        raise ValueError("this run was not captured")
    from ...traffic.wire import tcp_payload_streams

    rows = run.capture.table()
    streams = tcp_payload_streams(run.capture.packets, rows)
    requests = [m for m in parse_messages(streams[C2S], responses=False) if m.start_line.startswith("GET /messages")]
    responses = parse_messages(streams[S2C], responses=True)
    return {
        "request head": statistics.mean(m.head_bytes for m in requests),
        "response head": statistics.mean(m.head_bytes for m in responses),
        "empty response body": statistics.mean(len(m.body) for m in responses if b'"messages": []' in m.body),
        "TCP/IP/link headers per packet": ETHERNET_HEADER + IPV4_HEADER + TCP_HEADER + TCP_TIMESTAMPS,
    }


@dataclass(frozen=True)
class Abandoned:
    """Requests the server held before and after their clients disconnected mid-wait.

    Attributes:
        clients: long-pollers that connected and then went away.
        before: requests held while all were waiting.
        after: requests still held shortly after they disconnected.
        handler_cancellation: whether the server cancels the handlers of vanished clients.
    """

    clients: int
    before: int
    after: int
    handler_cancellation: bool


def abandoned_waits(clients: int = 50, *, handler_cancellation: bool = True, wait: float = 5.0, settle: float = 0.3) -> Abandoned:
    """``clients`` long-pollers start waiting, then disconnect mid-wait. Does the server notice?"""
    log = MessageLog()
    with serve(make_app(log), name="message log", handler_cancellation=handler_cancellation) as srv:

        async def go() -> tuple[int, int]:
            sessions = [aiohttp.ClientSession(headers=CLIENT_HEADERS) for _ in range(clients)]
            tasks = [
                asyncio.create_task(s.get(srv.url + "/messages", params={"after": "0", "wait": str(wait)}))
                for s in sessions
            ]
            deadline = time.monotonic() + 5
            while log.waiting < clients and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            before = log.waiting
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in sessions:
                await s.close()  # closes the connections: the clients are gone
            await asyncio.sleep(settle)
            return before, log.waiting

        before, after = run_async(go(), timeout=wait + 20)
    return Abandoned(clients, before, after, handler_cancellation)


def peek(paths: list[str], *, publish: int = 2, timeout: float = 5.0) -> list[tuple[str, int, dict[str, str], str]]:
    """GET each path from a fresh message-log server holding ``publish`` messages.

    Returns (path, status, response headers, body) per path: a look at the raw API.
    """
    log = MessageLog()
    with serve(make_app(log), name="message log") as srv:
        for i in range(publish):
            srv.run(_append(log, f"message {i + 1}"))

        async def go() -> list[tuple[str, int, dict[str, str], str]]:
            out = []
            async with aiohttp.ClientSession(headers=CLIENT_HEADERS) as s:
                for path in paths:
                    async with s.get(srv.url + path) as r:
                        out.append((path, r.status, dict(r.headers), await r.text()))
            return out

        return run_async(go(), timeout=timeout + 35)


async def _append(log: MessageLog, text: str) -> int:
    return log.append(text)
