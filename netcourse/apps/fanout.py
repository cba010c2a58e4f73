"""A WebSocket fan-out node, in a process of its own: notebook 11's scale-out.

    python -m netcourse.apps.fanout [--redis-port PORT] [--channel NAME]

It serves, on 127.0.0.1, the course's WebSocket server (``apps.wsserver``) and, on a second port, the
message log of notebooks 03 and 06 (``apps.polling`` and ``apps.streaming``: a long poll is
``GET /messages?after=ID&wait=S``, an event stream ``GET /sse/events``). It prints
``READY <websocket port> <http port>`` once listening, and stops when its standard input closes (the parent
ended or died) or on SIGTERM.

A client publishes by sending a WebSocket TEXT message ``PUB <text>``:

- without Redis, the node delivers ``<text>`` to *its own* clients only (its WebSockets, and its log, which
  its event streams and long polls read): a client connected to another node never sees it;
- with ``--redis-port``, the node PUBLISHes ``<text>`` on the channel of a Redis on 127.0.0.1, and every
  node delivers to its clients what its subscription to that channel receives (this node included).

Lines on its standard input are commands (notebook 11's fail-over):

- ``DRAIN <seconds>``: a graceful drain. The node closes its WebSockets with 1001 Going Away, one after
  another with a pause of ``seconds`` / (its clients) after each, so that they move elsewhere a few at a
  time (a busy node takes longer than ``seconds``: it never closes them in a burst).
- ``STATS``: the node prints ``STATS <json>``: its open WebSockets, and the moment (``time.monotonic()``, which
  every process on the machine shares) each one was accepted.

If Redis goes away, a publish fails (the client's socket closes with 1011) and the subscription ends; the node
says so on its standard error, tries again with a capped back-off, and once it has subscribed again prints
``re-subscribed``. Messages published while it was away are gone: pub/sub keeps nothing (notebook 11).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time

from ..protocols.wsframe import Opcode
from ..runtime.backoff import Backoff
from .polling import MessageLog
from .wsserver import Hub, make_ws_handler

__all__ = ["Node", "PREFIX", "make_http_app", "main"]

PREFIX = b"PUB "
MAX_TEXT = 64 * 1024


class Node:
    """One fan-out node: a WebSocket hub, and (once ``join_redis`` has run) a Redis publisher and a subscription."""

    def __init__(self, channel: str):
        self.channel = channel
        self.hub = Hub(max_buffered=4 << 20, write_timeout=5.0)
        self.log = MessageLog()  # read by the HTTP server's long polls and event streams, on that server's loop
        self.http_loop: asyncio.AbstractEventLoop | None = None
        self.publisher = None  # redis.asyncio.Redis, once joined
        self.forwarding: asyncio.Task | None = None
        self.joined: list[float] = []  # time.monotonic() of each WebSocket accepted
        self.hub.on_join = lambda: self.joined.append(time.monotonic())
        self._tasks: set[asyncio.Task] = set()

    def _keep(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drain(self, seconds: float) -> None:
        """Close every WebSocket with 1001, spread evenly over ``seconds`` (on the WebSocket server's loop)."""
        async def one_by_one() -> None:
            writers = list(self.hub.connections)
            gap = seconds / max(1, len(writers))
            for writer in writers:  # one, then a pause: a busy node drains more slowly, never in a burst
                self.hub.going_away(writer, "draining: connect again")
                await asyncio.sleep(gap)

        self._keep(asyncio.get_running_loop().create_task(one_by_one()))

    async def stats(self) -> dict:
        return {"open": self.hub.count, "joined": list(self.joined)}

    async def deliver(self, text: bytes) -> None:
        """To this node's clients: its WebSockets now, its log (on the HTTP server's loop) for the others."""
        if self.http_loop is not None:
            self.http_loop.call_soon_threadsafe(self.log.append, text.decode("utf-8", "replace"))
        await self.hub.broadcast(text, Opcode.TEXT)

    async def on_message(self, opcode: Opcode, payload: bytes) -> None:
        """A client's ``PUB <text>``: to Redis when joined, else to this node's own clients."""
        if opcode != Opcode.TEXT or not payload.startswith(PREFIX) or len(payload) > MAX_TEXT:
            return
        text = payload[len(PREFIX):]
        if self.publisher is not None:
            await self.publisher.publish(self.channel, text)
        else:
            await self.deliver(text)

    async def join_redis(self, port: int) -> None:
        """Subscribe to the channel (5 s at most), then publish there."""
        import redis.asyncio as aioredis

        subscribed = asyncio.get_running_loop().create_future()
        self.forwarding = asyncio.get_running_loop().create_task(
            self.forward(aioredis.Redis(host="127.0.0.1", port=port), subscribed))
        await asyncio.wait_for(subscribed, 5)
        self.publisher = aioredis.Redis(host="127.0.0.1", port=port)

    async def forward(self, subscriber, subscribed: asyncio.Future) -> None:
        """Broadcast to this node's clients what the subscription receives; subscribe again (capped back-off)
        whenever Redis goes away. Pub/sub keeps nothing: what was published meanwhile is gone."""
        import redis.exceptions as aioredis_errors

        backoff, lost = Backoff(base=0.1, cap=2.0), False
        while True:
            pubsub = subscriber.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
                if lost:
                    print(f"fanout: re-subscribed to {self.channel!r}", file=sys.stderr, flush=True)
                lost = False
                backoff.reset()
                if not subscribed.done():
                    subscribed.set_result(None)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self.deliver(message["data"])
            except (aioredis_errors.ConnectionError, aioredis_errors.TimeoutError, OSError) as exc:
                if not lost:
                    print(f"fanout: lost Redis ({type(exc).__name__}); subscribing again", file=sys.stderr, flush=True)
                lost = True
                await asyncio.sleep(backoff.next())
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


def make_http_app(log: MessageLog):
    """Long polls (``/messages``, notebook 03's app) and event streams (``/sse/events``, notebook 06's) on one log."""
    from . import polling, streaming

    app = polling.make_app(log)
    app.add_subapp("/sse/", streaming.make_app(log, max_streams=20_000))
    return app


def _commands(node: Node, srv, done: threading.Event) -> None:
    """Read commands from standard input until it closes (then the node stops)."""
    for line in sys.stdin:
        words = line.split()
        try:
            if words[:1] == ["DRAIN"] and len(words) == 2 and 0 <= float(words[1]) <= 600:
                srv.loop.call_soon_threadsafe(node.drain, float(words[1]))
            elif words == ["STATS"]:
                print("STATS " + json.dumps(srv.run(node.stats(), timeout=10)), flush=True)
            elif words:
                print(f"fanout: unknown command {line.strip()[:40]!r} (DRAIN <seconds> or STATS)", file=sys.stderr, flush=True)
        except (ValueError, RuntimeError) as exc:
            print(f"fanout: {line.strip()[:40]!r} failed: {exc}", file=sys.stderr, flush=True)
    done.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netcourse.apps.fanout")
    parser.add_argument("--redis-port", type=int, default=0, help="a Redis on 127.0.0.1 to join (0: none)")
    parser.add_argument("--channel", default="netcourse")
    args = parser.parse_args(argv)
    from ..runtime.server import serve
    from ..runtime.sockets import no_delay

    # Two servers, two event-loop threads: hand the GIL over every 0.5 ms, not every 5 ms, so that a delivery
    # on one loop does not wait a switch interval for the other loop's thread to let go.
    sys.setswitchinterval(0.0005)
    node = Node(args.channel)
    srv = serve(no_delay(make_ws_handler(node.hub, on_message=node.on_message)), name="fanout node",
                max_connections=20_000)
    try:
        http = serve(make_http_app(node.log), name="fanout node (HTTP)", max_connections=20_000)
    except BaseException:
        srv.stop()
        raise
    node.http_loop = http.loop
    if args.redis_port:
        srv.run(node.join_redis(args.redis_port), timeout=10)
    print(f"READY {srv.port} {http.port}", flush=True)
    done = threading.Event()
    threading.Thread(target=_commands, args=(node, srv, done), daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    srv.stop()
    http.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
