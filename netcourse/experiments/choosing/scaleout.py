"""Notebook 11, scale-out: two server processes, without and with a broker (Redis) between them.

- ``Node``: a child process running ``python -m netcourse.apps.fanout`` (the course's WebSocket server, and
  the message log's long polls and event streams), on 127.0.0.1; it is stopped when the ``with`` block ends,
  whatever happens.
- ``scale_out``: WebSocket, SSE and long-polling clients, each kind assigned alternately to node A and node B;
  a publisher on node A sends ``messages``; each client records what arrives and when. ``fan_out`` does it
  for WebSockets alone.
- ``streams_catch_up``: what Redis pub/sub gives a subscriber that was offline (nothing), against a Redis
  Stream read with ``XREAD`` from the last id it had (everything): the cursor of notebooks 03 and 08.

Without a redis-server on the machine (``apps.broker.find_redis_server``), the results recorded on the
development machine are loaded instead, and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from ...apps.broker import find_redis_server, redis_broker
from ...apps.fanout import PREFIX
from ...clients.sse import stream_events
from ...course.exercises import Prediction
from ...errors import ServerStartError
from ...runtime.waiting import run_async

__all__ = ["Node", "FanOut", "HELD", "fan_out", "StreamsCatchUp", "streams_catch_up", "scale_out", "predict_node_b",
           "RECORDED"]

RECORDED = Path(__file__).resolve().parents[2] / "measured" / "scale_out.json"
START_TIMEOUT = 10.0


class Node:
    """One fan-out node in a child process. Use it as a context manager."""

    def __init__(self, *, redis_port: int = 0, channel: str = "netcourse", wait: bool = True) -> None:
        args = [sys.executable, "-m", "netcourse.apps.fanout", "--channel", channel]
        if redis_port:
            args += ["--redis-port", str(redis_port)]
        self.port = self.http_port = 0  # its WebSocket server's, and its HTTP server's (long polls, event streams)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if wait:
            try:
                self.wait_ready()
            except BaseException:  # an interrupt while it starts: the child goes too
                self.stop()
                raise

    @classmethod
    def several(cls, redis_ports: list[int]) -> list["Node"]:
        """Start one node per entry of ``redis_ports`` (0: no Redis) at once, and wait for all of them."""
        nodes = [cls(redis_port=p, wait=False) for p in redis_ports]
        try:
            for node in nodes:
                node.wait_ready()
        except BaseException:
            for node in nodes:
                node.stop()
            raise
        return nodes

    def wait_ready(self) -> None:
        """Wait for the node's READY line; stop it and raise ``ServerStartError`` if it does not come."""
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise ServerStartError(f"a fan-out node did not start within {START_TIMEOUT:g} s: {line.strip()!r}")
        _, ws_port, http_port = line.split()
        self.port, self.http_port = int(ws_port), int(http_port)

    @staticmethod
    def stop_all(nodes: list["Node"]) -> None:
        """Stop several nodes at once: every standard input closed first, then each waited for."""
        for node in nodes:
            if node.proc.poll() is None and node.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    node.proc.stdin.close()
        for node in nodes:
            node.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the node stops when its stdin closes
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class FanOut:
    """One fan-out run across two nodes.

    Attributes:
        broker: "none" or "redis".
        clients: subscribers, half on each node.
        messages: messages published on node A.
        received: node -> messages received by its clients (first arrivals).
        expected_per_node: clients on that node × messages.
        latencies_ms: node -> publication-to-receipt times, ms.
        fan_out_ms: for each message, from publication to its arrival at the *last* client, ms (median).
    """

    broker: str
    clients: int
    messages: int
    transport: str = "WebSocket"
    received: dict[str, int] = field(default_factory=dict)
    expected_per_node: dict[str, int] = field(default_factory=dict)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    fan_out_ms: float = 0.0
    first_ms: float = 0.0
    median_ms: float = 0.0
    redis: str = ""

    def p50(self, node: str) -> float:
        values = sorted(self.latencies_ms.get(node, []))
        return values[len(values) // 2] if values else float("nan")

    def __repr__(self) -> str:
        parts = [f"{node}: {self.received.get(node, 0)}/{self.expected_per_node[node]} received"
                 + (f", p50 {self.p50(node):.2f} ms" if self.latencies_ms.get(node) else "") for node in ("A", "B")]
        return (f"{self.clients} {self.transport} clients on 2 nodes, broker {self.broker}, {self.messages} messages published on A: "
                + "; ".join(parts) + f"; last client reached after {self.fan_out_ms:.1f} ms (median)")


HELD = ("WebSocket", "SSE", "long polling")


async def _run(ports: dict[str, dict[str, int]], clients: int, messages: int, size: int, gap: float,
               transports: tuple[str, ...] = ("WebSocket",)) -> dict[str, FanOut]:
    """``clients`` subscribers of each transport, alternately on node A and B; ``messages`` published on A.

    ``ports[node]`` holds the node's "ws" and "http" ports. Each subscriber records the first arrival of each
    message; the run ends when everyone has everything, or when A's subscribers have (B's get nothing more
    without a broker)."""
    assignment = [("A" if i % 2 == 0 else "B") for i in range(clients)]
    first: dict[str, dict[tuple[int, int], float]] = {t: {} for t in transports}
    sent: dict[int, float] = {}
    connected = asyncio.Event()
    count = [0]
    everyone = clients * len(transports)

    def ready() -> None:
        count[0] += 1
        if count[0] == everyone:
            connected.set()

    def arrived(transport: str, i: int, text: str) -> None:
        head = text.split(":", 1)[0]
        if head.isdigit():
            first[transport].setdefault((i, int(head)), time.monotonic())

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def websocket(i: int) -> None:
            async with session.ws_connect(f"http://127.0.0.1:{ports[assignment[i]]['ws']}/", autoping=True,
                                          max_msg_size=1 << 20) as ws:
                ready()
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        arrived("WebSocket", i, msg.data)

        async def sse(i: int) -> None:
            url = f"http://127.0.0.1:{ports[assignment[i]]['http']}/sse/events"
            async for _, event in stream_events(session, url, on_open=ready):
                arrived("SSE", i, event.data)

        async def long_poll(i: int) -> None:
            url = f"http://127.0.0.1:{ports[assignment[i]]['http']}/messages"
            async with session.get(url) as resp:  # where the log stands now: from here on
                cursor = (await resp.json())["last_id"]
            ready()
            while True:
                async with session.get(url, params={"after": str(cursor), "wait": "10"}) as resp:
                    data = await resp.json()
                for message in data["messages"]:
                    arrived("long polling", i, message["text"])
                cursor = data["last_id"]

        kinds = {"WebSocket": websocket, "SSE": sse, "long polling": long_poll}
        tasks = [asyncio.create_task(kinds[t](i)) for t in transports for i in range(clients)]
        try:
            waiting = asyncio.create_task(connected.wait())
            await asyncio.wait([waiting, *tasks], timeout=30 + clients / 200, return_when=asyncio.FIRST_COMPLETED)
            if not connected.is_set():
                waiting.cancel()
                broken = [t.exception() for t in tasks if t.done() and t.exception()]
                raise ServerStartError(f"only {count[0]} of {everyone} subscribers connected"
                                       + (f": {broken[0]!r}" if broken else ""))
            async with session.ws_connect(f"http://127.0.0.1:{ports['A']['ws']}/") as publisher:
                await asyncio.sleep(0.05)
                for m in range(1, messages + 1):
                    head = f"{m}:"
                    sent[m] = time.monotonic()
                    await publisher.send_str((PREFIX.decode() + head + "x" * max(0, size - len(head))))
                    await asyncio.sleep(gap)
                deadline = time.monotonic() + 2 + clients / 2000
                on_a = sum(1 for node in assignment if node == "A") * messages
                while time.monotonic() < deadline and sum(map(len, first.values())) < everyone * messages:
                    if (all(sum(1 for (i, _) in got if assignment[i] == "A") >= on_a for got in first.values())
                            and time.monotonic() > sent[messages] + 0.3 + clients / 5000):
                        break  # A's clients have everything; B's get nothing more without a broker
                    await asyncio.sleep(0.01)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {t: _tally(FanOut("", clients, messages, t), assignment, first[t], sent) for t in transports}


def _tally(result: FanOut, assignment: list[str], first: dict[tuple[int, int], float],
           sent: dict[int, float]) -> FanOut:
    """Each node's receipts and latencies, and per message the first, median and last client's arrival."""
    clients, messages = result.clients, result.messages
    for node in ("A", "B"):
        members = [i for i in range(clients) if assignment[i] == node]
        result.expected_per_node[node] = len(members) * messages
        lat = [(first[(i, m)] - sent[m]) * 1000 for i in members for m in range(1, messages + 1) if (i, m) in first]
        result.received[node] = len(lat)
        result.latencies_ms[node] = lat
    firsts, medians, lasts = [], [], []
    for m in range(1, messages + 1):
        arrivals = sorted(first[(i, m)] for i in range(clients) if (i, m) in first)
        if arrivals:
            firsts.append((arrivals[0] - sent[m]) * 1000)
            medians.append((arrivals[len(arrivals) // 2] - sent[m]) * 1000)
            lasts.append((arrivals[-1] - sent[m]) * 1000)

    def middle(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] if values else float("nan")

    result.first_ms, result.median_ms, result.fan_out_ms = middle(firsts), middle(medians), middle(lasts)
    return result


def _ports(a: Node, b: Node) -> dict[str, dict[str, int]]:
    return {"A": {"ws": a.port, "http": a.http_port}, "B": {"ws": b.port, "http": b.http_port}}


def fan_out(clients: int = 20, messages: int = 10, *, broker: bool, size: int = 100, gap: float = 0.02) -> FanOut:
    """Two nodes, ``clients`` split between them, ``messages`` published on node A; with or without Redis."""

    def on_two_nodes(redis_port: int) -> FanOut:
        a, b = Node.several([redis_port, redis_port])
        try:
            return run_async(_run(_ports(a, b), clients, messages, size, gap), 120 + clients / 50)["WebSocket"]
        finally:
            a.stop()
            b.stop()

    if not broker:
        result = on_two_nodes(0)
        result.broker = "none"
        return result
    with redis_broker() as redis:
        result = on_two_nodes(redis.port)
        result.broker, result.redis = "redis", f"Redis {redis.version} ({redis.source})"
    return result


@dataclass
class StreamsCatchUp:
    """A subscriber offline while ``published`` messages went out, back afterwards.

    Attributes:
        pubsub_got: what pub/sub delivered to it once back (fire-and-forget: nothing).
        stream_got: what ``XREAD`` from its last id returned (everything it missed, in order).
        last_id: the stream id it had kept, and ``ids`` the ones it read back.
    """

    published: int
    pubsub_got: int
    stream_got: int
    last_id: str
    ids: list[str]

    def __repr__(self) -> str:
        return (f"offline while {self.published} messages were published, then back:\n"
                f"  pub/sub:          {self.pubsub_got} of them delivered\n"
                f"  stream (XREAD after {self.last_id}): {self.stream_got} of them, ids {self.ids[0]} … {self.ids[-1]}")


def streams_catch_up(published: int = 20, *, broker=None) -> StreamsCatchUp:
    """Pub/sub against a Redis Stream, for a subscriber that was away (on ``broker``, a running
    ``redis_broker()``, or a new one)."""
    with (contextlib.nullcontext(broker) if broker is not None else redis_broker()) as broker:
        r = broker.client()
        try:
            first = r.xadd("chat", {"text": "before you left"})
            last_id = first.decode()
            pubsub = r.pubsub()  # the subscriber left: it is not subscribed while messages go out
            for i in range(published):
                r.publish("chat-live", f"message {i}")
                r.xadd("chat", {"text": f"message {i}"})
            pubsub.subscribe("chat-live")  # back
            got = 0
            deadline = time.monotonic() + 0.2  # on loopback a message published now arrives within a millisecond or two
            while time.monotonic() < deadline:
                msg = pubsub.get_message(timeout=0.1)
                if msg and msg.get("type") == "message":
                    got += 1
            pubsub.close()
            entries = r.xread({"chat": last_id}, count=10_000)
            ids = [entry_id.decode() for _, items in entries for entry_id, _ in items]
        finally:
            r.close()
    return StreamsCatchUp(published, got, len(ids), last_id, ids)


def _both(clients: int, messages: int, *, streams: bool = False) -> tuple[dict[str, FanOut], dict[str, FanOut], StreamsCatchUp | None]:
    """Without and with Redis, each of ``HELD`` with ``clients`` subscribers; all four nodes started at
    once (starting a Python process takes a while), and the two pairs run side by side (each pair's
    counts are what this experiment is about; its latencies share the machine with the other's). With
    ``streams``, the Streams catch-up runs on the same Redis afterwards."""
    with redis_broker() as redis:
        nodes = Node.several([0, 0, redis.port, redis.port])
        try:
            async def side_by_side():
                return await asyncio.gather(_run(_ports(*nodes[:2]), clients, messages, 100, 0.02, HELD),
                                            _run(_ports(*nodes[2:]), clients, messages, 100, 0.02, HELD))

            without, with_broker = run_async(side_by_side(), 120 + clients / 25)
        finally:
            Node.stop_all(nodes)
        for run in without.values():
            run.broker = "none"
        for run in with_broker.values():
            run.broker, run.redis = "redis", f"Redis {redis.version} ({redis.source})"
        caught_up = streams_catch_up(broker=redis) if streams else None
    return without, with_broker, caught_up


def predict_node_b(clients: int = 20, messages: int = 10) -> Prediction:
    """Without a broker, how many messages published on node A reach node B's clients, of all three kinds?"""
    per_kind = clients // 2 * messages
    on_b = per_kind * len(HELD)

    def explain(given: float, measured: float) -> str:
        return ("None. Each server process knows only the connections it accepted: node A delivers to its own "
                "WebSockets, event streams and held long polls, and nothing tells node B that a message exists. "
                f"The {on_b} deliveries B's clients should have had need something both processes listen to: a broker. "
                "A held SSE stream or long poll is as tied to one process as a WebSocket is.")

    return Prediction(
        f"Two server processes, each serving WebSockets, Server-Sent Events and long polls; {clients} clients of "
        f"each kind split between them ({clients // 2 * len(HELD)} on node B), no broker. A publisher "
        f"connected to node A publishes {messages} messages for everyone. Node B's clients should get {on_b} "
        "deliveries in all. How many do they get?",
        measure=lambda run: sum(r.received["B"] for r in run["without"].values()), unit="messages", tolerance=0.0,
        explain=explain, says="the run measured",
        mistakes=[(lambda g, m: g >= on_b, "That assumes a broadcast reaches every client of the service; a process "
                   "can only write to connections it holds, and node B's are not node A's."),
                  (lambda g, m: g == on_b - per_kind, "That counts the WebSocket clients out and the HTTP ones in. "
                   "An event stream is one long HTTP response, and a long poll is a request the server holds: both "
                   "wait on one process, which hears only what is published to it."),
                  (lambda g, m: 0 < g < on_b, "Part of them? Nothing carries any message from A to B: it is all or "
                   "nothing, and without a broker it is nothing.")],
    )


def _fan_outs(data: dict) -> dict[str, FanOut]:
    return {transport: FanOut(**run) for transport, run in data.items()}


def scale_out(clients: int = 20, messages: int = 10) -> dict:
    """The notebook's scale-out runs: live when Redis is here, else the recorded ones (labelled).

    Returns a dict: "source" (a sentence), "without" and "with" (each ``{transport: FanOut}`` for
    ``HELD``), "streams" (``StreamsCatchUp``).
    """
    binary, where = find_redis_server()
    if binary is None:
        data = json.loads(RECORDED.read_text())
        return {
            "source": f"Recorded on {data['recorded_at']} with {data['redis']} ({where} here, so not live).",
            "without": _fan_outs(data["without"]),
            "with": _fan_outs(data["with"]),
            "streams": StreamsCatchUp(**data["streams"]),
        }
    without, with_broker, caught_up = _both(clients, messages, streams=True)
    return {"source": f"Live: {with_broker['WebSocket'].redis}.", "without": without, "with": with_broker,
            "streams": caught_up}


def record(path: Path = RECORDED, clients: int = 20, messages: int = 10) -> Path:
    """Run ``scale_out`` live and save it for machines without Redis."""
    from datetime import datetime, timezone

    run = scale_out(clients, messages)
    if not run["source"].startswith("Live"):
        raise ServerStartError("recording the scale-out needs a redis-server here")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "redis": run["with"]["WebSocket"].redis,
        "without": {t: asdict(r) for t, r in run["without"].items()},
        "with": {t: asdict(r) for t, r in run["with"].items()}, "streams": asdict(run["streams"]),
    }, indent=1) + "\n")
    return path
