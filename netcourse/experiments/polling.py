"""Notebook 03: short and long polling measured side by side on the same stream of messages."""

from __future__ import annotations

import asyncio
import html
import statistics
import time
from contextlib import nullcontext
import dataclasses
from dataclasses import dataclass, field

import aiohttp

from ..traffic.sniffer import Capture, capture
from ..course.exercises import Exercise, Prediction
from ..protocols.httpwire import parse_messages
from ..traffic.packets import C2S, S2C
from ..apps.polling import MessageLog, Publisher, make_app
from ..clients.pollers import CLIENT_HEADERS, PollerResult, long_poller, naive_long_poller, short_poller
from .registry import scenario
from ..network.link import Link, link
from ..runtime.server import serve
from ..runtime.waiting import run_async
from ..traffic.wire import ETHERNET_HEADER, IPV4_HEADER, TCP_HEADER, TCP_TIMESTAMPS

__all__ = [
    "ExploreGrid", "explore_grid", "explore", "theory_knob", "held_delivery_ms", "hold_times_ms", "predict_held_delivery", "exercise_connections", "exercise_hold_time","PollingRun", "compare", "on_a_link", "naive_versus_correct", "Abandoned", "abandoned_waits", "header_sizes"]


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


def _run(
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
    return _run(pollers, rate=rate, duration=duration, seed=seed, burst=burst,
                scenario_name="polling_compare" if record else None, wait=wait)


def on_a_link(
    rtt_ms: float = 100.0,
    interval: float = 0.5,
    *,
    wait: float = 10.0,
    rate: float = 3.0,
    duration: float = 6.0,
    burst: int = 3,
    seed: int = 4,
) -> PollingRun:
    """One short poller and one long poller across an emulated link of ``rtt_ms``.

    Messages come in bursts of ``burst`` (1 ms apart), so the long poller's worst case shows: the
    first of a burst rides the held request's answer; the rest wait for the next request to travel
    to the server and its answer to travel back (RFC 6202 §2.2).
    """
    with link(rtt_ms=rtt_ms) as net:
        net.announce()
        return _run([("short", interval), ("long", wait)], rate=rate, duration=duration, seed=seed,
                    burst=burst, wait=wait, net=net)


def naive_versus_correct(wait: float = 0.5, rate: float = 1.0, duration: float = 2.5, seed: int = 3) -> PollingRun:
    """A correct long poller beside the notes' version, which re-asks only after receiving data."""
    return _run([("long", wait), ("naive", wait)], rate=rate, duration=duration, seed=seed, wait=wait)


def header_sizes(run: PollingRun) -> dict[str, float]:
    """Average HTTP head sizes (bytes) of poll requests and responses in a captured run."""
    if run.capture is None:
        raise ValueError("this run was not captured")
    from ..traffic.wire import tcp_payload_streams

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


# -- clients that go away --------------------------------------------------------------------------


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


# -- exercises -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExploreGrid:
    """Short pollers at several intervals and long pollers at several waits, measured at several rates.

    One run per rate, all at once (each with its own server and publisher); in each run every poller
    follows the same messages. The knob then only looks results up: it redraws in milliseconds.

    Attributes:
        runs: rate (messages per second) -> the run at that rate.
        intervals, waits, rates: the grid's values.
    """

    runs: dict[float, PollingRun]
    intervals: tuple[float, ...]
    waits: tuple[float, ...]
    rates: tuple[float, ...]

    def view(self, interval: float, wait: float, rate: float) -> PollingRun:
        """The run at ``rate``, reduced to the short poller at ``interval`` and the long one at ``wait``."""
        run = self.runs[rate]
        short, long_ = run.poller(f"short {interval:g} s"), run.poller(f"long {wait:g} s")
        return dataclasses.replace(run, pollers=[short, long_], intervals={short.name: interval}, capture=None)


def explore_grid(
    intervals: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0),
    waits: tuple[float, ...] = (0.5, 2.0, 10.0),
    rates: tuple[float, ...] = (2.0, 5.0, 20.0),
    *,
    duration: float = 2.5,
    seed: int = 1,
) -> ExploreGrid:
    """Measure every interval and wait at every rate: ``len(rates)`` runs of ``duration`` s, side by side."""
    from concurrent.futures import ThreadPoolExecutor

    pollers = [("short", i) for i in intervals] + [("long named", w) for w in waits]

    def one(rate: float) -> PollingRun:
        return _run(pollers, rate=rate, duration=duration, seed=seed, wait=max(waits))

    with ThreadPoolExecutor(max_workers=len(rates), thread_name_prefix="netcourse-grid") as pool:
        runs = dict(zip(rates, pool.map(one, rates)))
    return ExploreGrid(runs, tuple(intervals), tuple(waits), tuple(rates))


def explore(grid: ExploreGrid, interval: float = 0.5, wait: float = 10.0, rate: float = 3.0):
    """The knob's callback: latency and cost of one short and one long poller, looked up in ``grid``."""
    import matplotlib.pyplot as plt

    from ..course import plots

    small = grid.view(interval, wait, rate)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained")
    plt.close(fig)
    plots.polling_latency(small, ax=left, title=f"Latency: interval {interval:g} s, wait {wait:g} s, {rate:g} msg/s")
    plots.polling_costs(small.summary(), ax=right)
    return fig


def held_delivery_ms(run: PollingRun) -> float:
    """Median delivery time (ms) of the messages that found the long poller's request held at the server.

    For each request (but the first, which also waited for the connection's handshake), the message that
    released it is the earliest published of those its answer carried. It found the request held if it was
    published after the request had reached the server (one transit, RTT/2, after it was sent). Messages
    that came along in the same answer (the rest of a burst) are left out: they did not wait for a held
    request, they rode with the first. The client's clock times everything.
    """
    poller = run.poller("long")
    published = dict(run.published)
    transit = run.rtt / 2
    lat = []
    for p in poller.polls[1:]:
        carried = [i for i, t in poller.received if t == p.answered and i in published]
        if not carried:
            continue
        first = min(carried, key=lambda i: published[i])
        if published[first] >= p.sent + transit:
            lat.append(p.answered - published[first])
    lat.sort()
    return lat[len(lat) // 2] * 1000 if lat else float("nan")


def predict_held_delivery(rtt_ms: float = 100.0) -> Prediction:
    """Predict a held long poll's delivery time across a link."""
    def explain(given: float, measured: float) -> str:
        why = (f"The request is already at the server, so the answer only has to travel back: one transit, half "
               f"the round trip, {rtt_ms / 2:g} ms (plus a millisecond of server work).")
        if abs(given - rtt_ms) <= 0.2 * rtt_ms:
            why += " A whole round trip would be a request sent *after* the message was published."
        return why

    return Prediction(
        f"Across a {rtt_ms:g} ms link (round trip), a long poll is held at the server when a message is "
        "published. How many milliseconds until the client has the message?",
        measure=held_delivery_ms, unit="ms", tolerance=0.25, floor=5.0, explain=explain,
    )


def exercise_connections(run: PollingRun) -> Exercise:
    """TCP connections the pollers opened, from the learner's own capture."""
    rows = run.capture.table()
    opened = sum(1 for r in rows if r.flags == "S")
    requests = sum(1 for r in rows if r.app.startswith("GET "))
    return Exercise(
        f"Your capture holds {requests} HTTP requests from {len(run.pollers)} pollers. How many TCP connections "
        "did they open to carry them? (Count them in the packets; don't guess.)",
        answer=opened,
        hint="A connection starts with a SYN: count the rows whose flags are exactly 'S'.",
        explanation=f"{opened}: each poller opened one connection and sent every request on it, because an "
        "HTTP/1.1 connection stays open unless someone says Connection: close (RFC 9112 §9.3). With a "
        f"connection per request it would have been {requests} handshakes, each costing a round trip.",
        kind="capture",
    )


def hold_times_ms(rows) -> list[float]:
    """Milliseconds each long-poll request (a GET with ``wait=``) waited for its answer, from a capture."""
    out = []
    pending: dict[str, float] = {}  # client endpoint -> time its long poll was sent
    for r in rows:
        if r.app.startswith("GET ") and "wait=" in r.app:
            pending[r.src] = r.t
        elif r.app[:3].isdigit() and r.dst in pending:
            out.append((r.t - pending.pop(r.dst)) * 1000)
    return out


def exercise_hold_time(run: PollingRun) -> Exercise:
    """The long poller's mean hold time, from the learner's own capture."""
    holds = hold_times_ms(run.capture.table())
    mean = sum(holds) / len(holds) if holds else 0.0
    return Exercise(
        "How long, on average, did the server hold the long poller's requests before answering, in "
        "milliseconds? Take every request that carries wait= (the last, wait=0, too) and compute it from "
        "your capture (within 1 ms).",
        answer=round(mean, 1),
        tolerance=1.0,
        hint="The long poller's requests are the rows whose app starts with 'GET ' and contains 'wait='. "
        "Pair each with the next row whose app is a status ('200 OK') going back to the same endpoint "
        "(r.dst == request.src), and average the differences of t.",
        explanation=f"{mean:.0f} ms over {len(holds)} requests: each waited until the next message was "
        f"published, or the run ended; together the holds tile the {run.duration:g}-second run (about "
        f"{run.duration * 1000 / max(len(holds), 1):.0f} ms each). Every one of those milliseconds, the server "
        "held a request and a connection open.",
        kind="capture",
    )


def exercise_expected_latency() -> Exercise:
    """Short polling's mean latency."""
    return Exercise(
        "A client short-polls every 2 seconds; messages arrive at random times. Ignoring the network, "
        "what is the average delay, in seconds, between a message's arrival and its delivery?",
        answer=1.0,
        tolerance=0.05,
        hint="A message lands at a random moment between two polls; how long until the next poll, on average?",
        explanation="Half the interval, 1 s on average, and up to the full 2 s: the random arrival is "
        "uniformly placed within the interval.",
    )


def exercise_requests_per_message(run: PollingRun, name: str) -> Exercise:
    """Requests per delivered message, from the learner's run."""
    p = run.poller(name)
    value = p.requests / len(p.received) if p.received else 0.0
    return Exercise(
        f"In your run, how many requests did the poller '{name}' make per delivered message? "
        "(one decimal is enough)",
        answer=round(value, 1),
        tolerance=0.051,
        hint="Divide its number of requests by the number of messages it received: see run.summary().",
        explanation=f"{p.requests} requests for {len(p.received)} messages.",
    )


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


def theory_knob(measured: PollingRun | None = None, rtt_ms: int = 100, interval: float = 0.5):
    """Section 7's knob: expected latency for a round trip and interval, with ``measured``'s dots when they match."""
    from ..course import plots

    return plots.polling_theory(rtt_ms, interval, measured=measured)
