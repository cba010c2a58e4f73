"""Notebook 10, scale-out: two WebSocket server processes, without and with a broker (Redis) between them.

- ``Node``: a child process running ``python -m netcourse.apps.fanout`` (the course's WebSocket server), on
  127.0.0.1; it is stopped when the ``with`` block ends, whatever happens.
- ``fan_out(clients, broker=...)``: clients assigned alternately to node A and node B; a publisher on node A
  sends ``messages``; each client records what arrives and when.
- ``streams_catch_up``: what Redis pub/sub gives a subscriber that was offline (nothing), against a Redis
  Stream read with ``XREAD`` from the last id it had (everything): the cursor of notebooks 03 and 08.

Without a redis-server on the machine (``apps.broker.find_redis_server``), the results recorded on the
development machine are loaded instead, and say so.
"""

from __future__ import annotations

import asyncio
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
from ...course.exercises import Prediction
from ...errors import ServerStartError
from ...runtime.waiting import run_async

__all__ = ["Node", "FanOut", "fan_out", "StreamsCatchUp", "streams_catch_up", "scale_out", "predict_node_b", "RECORDED",
           "load_bench", "bench_fan_out"]

RECORDED = Path(__file__).resolve().parents[2] / "measured" / "scale_out.json"
BENCH = Path(__file__).resolve().parents[2] / "measured" / "fanout_bench.json"
START_TIMEOUT = 10.0


class Node:
    """One fan-out node in a child process. Use it as a context manager."""

    def __init__(self, *, redis_port: int = 0, channel: str = "netcourse", wait: bool = True) -> None:
        args = [sys.executable, "-m", "netcourse.apps.fanout", "--channel", channel]
        if redis_port:
            args += ["--redis-port", str(redis_port)]
        self.port = 0
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
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the node stops when its stdin closes
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
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
        return (f"{self.clients} clients on 2 nodes, broker {self.broker}, {self.messages} messages published on A: "
                + "; ".join(parts) + f"; last client reached after {self.fan_out_ms:.1f} ms (median)")


async def _run(ports: dict[str, int], clients: int, messages: int, size: int, gap: float) -> FanOut:
    assignment = [("A" if i % 2 == 0 else "B") for i in range(clients)]
    first: dict[tuple[int, int], float] = {}
    sent: dict[int, float] = {}
    connected = asyncio.Event()
    count = [0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def subscriber(i: int) -> None:
            async with session.ws_connect(f"http://127.0.0.1:{ports[assignment[i]]}/", autoping=True,
                                          max_msg_size=1 << 20) as ws:
                count[0] += 1
                if count[0] == clients:
                    connected.set()
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        msg_id = int(msg.data.split(":", 1)[0])
                        first.setdefault((i, msg_id), time.monotonic())

        tasks = [asyncio.create_task(subscriber(i)) for i in range(clients)]
        try:
            await asyncio.wait_for(connected.wait(), 30 + clients / 200)
            async with session.ws_connect(f"http://127.0.0.1:{ports['A']}/") as publisher:
                await asyncio.sleep(0.05)
                for m in range(1, messages + 1):
                    head = f"{m}:"
                    sent[m] = time.monotonic()
                    await publisher.send_str((PREFIX.decode() + head + "x" * max(0, size - len(head))))
                    await asyncio.sleep(gap)
                deadline = time.monotonic() + 2 + clients / 2000
                want = sum(1 for i in range(clients) if assignment[i] == "A") * messages
                while time.monotonic() < deadline and len(first) < clients * messages:
                    if len(first) >= want and time.monotonic() > sent[messages] + 0.3 + clients / 5000:
                        break  # A's clients have everything; B's get nothing more without a broker
                    await asyncio.sleep(0.01)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return _tally(FanOut("", clients, messages), assignment, first, sent)


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


def fan_out(clients: int = 20, messages: int = 10, *, broker: bool, size: int = 100, gap: float = 0.02) -> FanOut:
    """Two nodes, ``clients`` split between them, ``messages`` published on node A; with or without Redis."""

    def on_two_nodes(redis_port: int) -> FanOut:
        a, b = Node.several([redis_port, redis_port])
        try:
            return run_async(_run({"A": a.port, "B": b.port}, clients, messages, size, gap), 120 + clients / 50)
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


def streams_catch_up(published: int = 20) -> StreamsCatchUp:
    """Pub/sub against a Redis Stream, for a subscriber that was away."""
    with redis_broker() as broker:
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
            deadline = time.monotonic() + 0.5
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


def _both(clients: int, messages: int) -> tuple[FanOut, FanOut]:
    """Without and with Redis, all four nodes started at once (starting a Python process takes a while)."""
    with redis_broker() as redis:
        nodes = Node.several([0, 0, redis.port, redis.port])
        try:
            plain, joined = nodes[:2], nodes[2:]
            timeout = 120 + clients / 50
            without = run_async(_run({"A": plain[0].port, "B": plain[1].port}, clients, messages, 100, 0.02), timeout)
            with_broker = run_async(_run({"A": joined[0].port, "B": joined[1].port}, clients, messages, 100, 0.02), timeout)
        finally:
            for node in nodes:
                node.stop()
        without.broker, with_broker.broker = "none", "redis"
        with_broker.redis = f"Redis {redis.version} ({redis.source})"
    return without, with_broker


def predict_node_b(clients: int = 20, messages: int = 10) -> Prediction:
    """Without a broker, how many messages published on node A reach node B's clients?"""
    on_b = clients // 2 * messages

    def explain(given: float, measured: float) -> str:
        return ("None. Each server process knows only the sockets it accepted: node A broadcasts to its own "
                f"{clients // 2} clients, and nothing tells node B that a message exists. The {on_b} deliveries B's "
                "clients should have had need something both processes listen to: a broker.")

    return Prediction(
        f"Two WebSocket server processes, {clients} clients split between them, no broker. A publisher connected to "
        f"node A publishes {messages} messages for everyone. Node B's {clients // 2} clients should get "
        f"{on_b} deliveries in all. How many do they get?",
        measure=lambda run: run["without"].received["B"], unit="messages", tolerance=0.0, explain=explain,
        says="the run measured",
        mistakes=[(lambda g, m: g >= on_b, "That assumes a broadcast reaches every client of the service; a process "
                   "can only write to sockets it holds, and node B's are not node A's."),
                  (lambda g, m: 0 < g < on_b, "Part of them? Nothing carries any message from A to B: it is all or "
                   "nothing, and without a broker it is nothing.")],
    )


def scale_out(clients: int = 20, messages: int = 10) -> dict:
    """The notebook's scale-out runs: live when Redis is here, else the recorded ones (labelled).

    Returns a dict: "source" (a sentence), "without", "with" (``FanOut``), "streams" (``StreamsCatchUp``).
    """
    binary, where = find_redis_server()
    if binary is None:
        data = json.loads(RECORDED.read_text())
        return {
            "source": f"Recorded on {data['recorded_at']} with {data['redis']} ({where} here, so not live).",
            "without": FanOut(**data["without"]),
            "with": FanOut(**data["with"]),
            "streams": StreamsCatchUp(**data["streams"]),
        }
    without, with_broker = _both(clients, messages)
    return {"source": f"Live: {with_broker.redis}.", "without": without, "with": with_broker,
            "streams": streams_catch_up()}


def record(path: Path = RECORDED, clients: int = 20, messages: int = 10) -> Path:
    """Run ``scale_out`` live and save it for machines without Redis."""
    from datetime import datetime, timezone

    run = scale_out(clients, messages)
    if not run["source"].startswith("Live"):
        raise ServerStartError("recording the scale-out needs a redis-server here")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "redis": run["with"].redis,
        "without": asdict(run["without"]), "with": asdict(run["with"]), "streams": asdict(run["streams"]),
    }, indent=1) + "\n")
    return path


def bench_fan_out(counts: tuple[int, ...] = (1_000, 10_000), messages: int = 5, path: Path = BENCH) -> list[dict]:
    """Fan-out through Redis to ``counts`` subscribers on two nodes; saved for the notebook (``make bench``)."""
    from datetime import datetime, timezone

    rows = []
    for n in counts:
        # One message at a time: the gap is longer than a fan-out, so no message queues behind the last.
        run = fan_out(n, messages, broker=True, gap=max(0.2, n / 2000))
        rows.append({"subscribers": n, "messages": messages, "received": sum(run.received.values()),
                     "expected": n * messages, "first_ms": run.first_ms, "p50_ms": run.median_ms,
                     "fan_out_ms": run.fan_out_ms, "redis": run.redis})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                "rows": rows}, indent=1) + "\n")
    return rows


def load_bench(path: Path = BENCH) -> str:
    """The stored fan-out figures of ``make bench`` as text, or "" if there are none."""
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    lines = [f"measured by make bench on {data['measured_at']} ({data['rows'][0]['redis']}):"]
    for r in data["rows"]:
        lines.append(f"  {r['subscribers']:>6,} subscribers on 2 nodes: {r['received']:,}/{r['expected']:,} received; after "
                     f"publication the first was reached in {r.get('first_ms', float('nan')):.1f} ms, the median one in "
                     f"{r['p50_ms']:.1f} ms, the last in {r['fan_out_ms']:.1f} ms (medians over {r['messages']} messages, "
                     "one at a time)")
    return "\n".join(lines)
