"""Notebook 06, section 3: Server-Sent Events that resume across dropped connections with Last-Event-ID (every
event exactly once), the retry time measured, a bounded replay buffer that answers resync; one event across a
100 ms link.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

import aiohttp

from ...apps.polling import MessageLog
from ...apps.streaming import make_app
from ...clients.sse import event_source, stream_events
from ...course.exercises import Exercise
from ...network.link import link
from ...protocols.chunked import ChunkedDecoder, Data
from ...protocols.httpwire import split_head
from ...protocols.sse import Event, SSEDecoder
from ...runtime.server import serve
from ...runtime.waiting import run_async
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ...traffic.wire import tcp_payload_streams
from ..registry import scenario
from .common import UA, publish_events

__all__ = ["SSERun", "alert_every_third", "sse_resume", "retry_delays", "exercise_reconnect_head", "exercise_replay_first", "LinkDelivery", "sse_across_a_link", "resync_demo"]


@dataclass
class SSERun:
    """An event-stream client that kept going across dropped connections.

    Attributes:
        published: message ids the server published, in order.
        received: (id, seconds since the start, connection number from 1) per event received.
        resyncs: resync events received (their data).
        connections: (seconds the connection opened, Last-Event-ID it sent or None, seconds it ended).
        retry_ms: the reconnection time the server set.
        capture: the packets (in replay: the recording).
    """

    published: list[int]
    received: list[tuple[int, float, int]]
    resyncs: list[str]
    connections: list[tuple[float, str | None, float]]
    retry_ms: int | None
    capture: Capture | None = None

    @property
    def lost(self) -> list[int]:
        got = {i for i, _, _ in self.received}
        return [i for i in self.published if i not in got]

    @property
    def duplicated(self) -> list[int]:
        ids = [i for i, _, _ in self.received]
        return sorted({i for i in ids if ids.count(i) > 1})

    def first_response_text(self) -> str:
        """The first event stream's body as the capture shows it (chunk framing removed), as text."""
        if self.capture is None:
            return ""
        stream = tcp_payload_streams(self.capture.packets, self.capture.table())[S2C]
        found = split_head(stream)
        if found is None:
            return ""
        decoder = ChunkedDecoder()
        body = b"".join(e.data for e in decoder.feed(found[1]) if isinstance(e, Data))
        return body.decode("utf-8", errors="replace")

    def gaps_ms(self) -> list[float]:
        """Milliseconds from each connection's end to the next one's start."""
        return [(b[0] - a[2]) * 1000 for a, b in zip(self.connections, self.connections[1:])]

    def replayed(self) -> list[list[int]]:
        """Per reconnection, the ids that arrived at once (published while the client was away)."""
        out = []
        for n in range(2, len(self.connections) + 1):
            opened = self.connections[n - 1][0]
            out.append([i for i, t, c in self.received if c == n and t - opened < 0.02])
        return out

    def __repr__(self) -> str:
        return (f"{len(self.published)} events published, {len(self.received)} received over "
                f"{len(self.connections)} connections; lost {self.lost or 'none'}, duplicated "
                f"{self.duplicated or 'none'}; gaps between connections {', '.join(f'{g:.0f}' for g in self.gaps_ms())} "
                f"ms (retry: {self.retry_ms} ms)")


def alert_every_third(msg_id: int, text: str) -> str | None:
    """The event types of section 3's stream: every third event is an "alert", the rest plain messages."""
    return "alert" if msg_id % 3 == 0 else None


def _sse_run(events: int, gap: float, drop: int, retry_ms: int, keep: int, scenario_name: str | None) -> SSERun:
    log = MessageLog(limit=keep)
    received: list[tuple[int, float, int]] = []
    resyncs: list[str] = []
    connections: list[tuple[float, str | None, float]] = []
    decoder = SSEDecoder()
    with serve(make_app(log, retry_ms=retry_ms, event_type=alert_every_third), name="sse") as srv:

        async def go() -> None:
            t0 = asyncio.get_running_loop().time()
            publishing = asyncio.run_coroutine_threadsafe(publish_events(log, events, gap), srv.loop)
            async with aiohttp.ClientSession(headers=UA) as session:
                await event_source(f"{srv.url}/events?drop={drop}", lambda got: len(got) >= events,
                                    limit=events * gap + 10, log=received, resyncs=resyncs,
                                    connections=connections, t0=t0, session=session, decoder=decoder)
            await asyncio.wrap_future(publishing)

        if scenario_name is None:
            run_async(go(), events * gap + 20)
            cap = None
        else:
            with capture(srv.port, scenario=scenario_name) as cap:
                run_async(go(), events * gap + 20)
    return SSERun([m[0] for m in log.messages], received, resyncs, connections, decoder.reconnection_time, cap)


@scenario("sse_stream")
def sse_resume(events: int = 12, gap: float = 0.05, drop: int = 4, retry_ms: int = 150, keep: int = 100) -> SSERun:
    """A client reads an event stream that the server ends after every ``drop`` events; it reconnects after
    ``retry_ms`` with Last-Event-ID, while the server goes on publishing one event every ``gap`` s."""
    return _sse_run(events, gap, drop, retry_ms, keep, "sse_stream")


def retry_delays(retries_ms: tuple[int, ...] = (100, 400)) -> dict[int, list[float]]:
    """For each ``retry:`` value the server sends, the measured gaps (ms) between a dropped stream and the
    client's reconnection."""
    return {retry: _sse_run(6, 0.03, 2, retry, 100, None).gaps_ms() for retry in retries_ms}


def exercise_reconnect_head(run: SSERun) -> Exercise:
    """The size of the first reconnection's request head, read from the learner's capture."""
    stream = tcp_payload_streams(run.capture.packets, run.capture.table())[C2S] if run.capture else b""
    heads = [h + b"\r\n\r\n" for h in stream.split(b"\r\n\r\n") if h.startswith(b"GET /events")]
    size = len(heads[1]) if len(heads) > 1 else None
    return Exercise(
        "In your capture, the client's requests for /events are in the C→S bytes. How many bytes long is the head "
        "of its first reconnection request (the request line, the headers and the blank line that ends them)?",
        answer=size,
        unit="B",
        hint="A reconnection is a whole new HTTP request; its head ends with an empty line. The client's bytes, "
        "in order, are one stream: tcp_payload_streams (imported from netcourse.traffic.wire) gives it.",
        recipe="tcp_payload_streams(sse.capture.packets, sse.capture.table())['C→S'] holds every request; split "
        "it at b'\\r\\n\\r\\n' and take the second piece that starts with b'GET /events', plus the 4 bytes of the split.",
        mistakes=[
            ((size or 0) - 4, "that leaves out the blank line that ends the head (CRLF CRLF: the split took 4 bytes)."),
            ((size or 0) - 2, "the head ends with CRLF CRLF, 4 bytes: count both."),
        ],
        explanation=f"{size} bytes, of which the Last-Event-ID line is about 20: what every reconnection costs "
        "before the first replayed event, besides the TCP handshake. An open stream costs no request per event; "
        "each drop costs one whole request head.",
        kind="capture", source=run,
    )


def exercise_replay_first(keep: int = 5, published: int = 20, last_id: int = 12) -> Exercise:
    """Resume semantics and a bounded buffer together: how many missed events are gone for good."""
    oldest = published - keep + 1
    lost = max(0, oldest - 1 - last_id)
    return Exercise(
        f"A server keeps only its last {keep} events. It has published events 1 to {published} when a client "
        f"reconnects with Last-Event-ID: {last_id}. How many of the events this client missed can the server no "
        "longer send it?",
        answer=lost,
        hint="Which ids has the client already got, which does the server still hold, and what lies between?",
        recipe=f"the client has 1 to {last_id}; the server holds {oldest} to {published}; count the ids in between.",
        mistakes=[
            (published - last_id, "that is every event the client missed; the server still holds the last "
             f"{keep} of them and replays those."),
            (lost + 1, f"one too many: Last-Event-ID names the last event the client *has*, so {last_id} is not missed."),
            (0, f"the buffer starts at {oldest}: the events between {last_id} and it are gone, and the server should "
             "say so (the course's server sends a `resync` event; SSE itself defines none)."),
        ],
        explanation=f"{lost}: the client has everything up to {last_id}; the buffer holds {oldest} to {published}; "
        f"{last_id + 1} to {oldest - 1} are gone. The course's server sends a `resync` event saying so (a convention "
        f"of its own: SSE defines no such event), then replays "
        f"{oldest} to {published}: a client must reload its state rather than show a silent gap.",
    )


@dataclass
class LinkDelivery:
    """Event delivery across an emulated link: ms from publication to the client's receipt, per event."""

    rtt_ms: float
    delays: list[float]
    mode: str

    def __repr__(self) -> str:
        return (f"across a {self.rtt_ms:g} ms round trip ({self.mode}): {len(self.delays)} events, median "
                f"{statistics.median(self.delays):.0f} ms, worst {max(self.delays):.0f} ms from publication to receipt")


def sse_across_a_link(rtt_ms: float = 100.0, events: int = 8, gap: float = 0.05) -> LinkDelivery:
    """The event stream across an emulated link: each event costs half a round trip (one way), no request."""
    log = MessageLog()
    got: dict[int, float] = {}
    with link(rtt_ms=rtt_ms) as net:
        srv = net.serve(make_app(log), name="sse")
        net.announce()

        async def client() -> None:
            publishing = []

            def publish() -> None:  # once the stream is open: every event is one the client waits for
                publishing.append(asyncio.run_coroutine_threadsafe(publish_events(log, events, gap), srv.loop))

            async with aiohttp.ClientSession(headers=UA) as session:
                async for now, e in stream_events(session, f"http://{srv.host}:{srv.port}/events", on_open=publish):
                    got[int(e.id)] = now
                    if len(got) >= events:
                        break
            await asyncio.wrap_future(publishing[0])

        net.run(client(), events * gap + 20)
        mode = net.mode
    published = {i: t for i, _, t in log.messages}
    return LinkDelivery(rtt_ms, [(got[i] - published[i]) * 1000 for i in sorted(got)], mode)


def resync_demo(keep: int = 3, published: int = 10, asks: tuple[str, ...] = ("2", "9", "banana")) -> list[tuple[str, list[Event]]]:
    """A server that keeps the last ``keep`` of ``published`` events, asked to resume from each Last-Event-ID in
    ``asks``: what the stream starts with (a resync event when it cannot replay)."""
    log = MessageLog(limit=keep)
    with serve(make_app(log, keepalive=0.2), name="sse") as srv:

        async def fill() -> None:
            for _ in range(published):
                log.append(f"event {log.last_id + 1}")

        asyncio.run_coroutine_threadsafe(fill(), srv.loop).result(5)

        async def ask(last_id: str) -> list[Event]:
            events: list[Event] = []
            async with aiohttp.ClientSession(headers=UA) as session:

                async def read() -> None:
                    async for _, event in stream_events(session, f"{srv.url}/events", headers={"Last-Event-ID": last_id}):
                        events.append(event)

                try:
                    await asyncio.wait_for(read(), 0.5)
                except asyncio.TimeoutError:
                    pass  # nothing more is coming (only keep-alive comments): the demo has what it needs
            return events

        return [(asked, run_async(ask(asked), 10)) for asked in asks]
