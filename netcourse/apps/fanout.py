"""A WebSocket fan-out node, in a process of its own: notebook 10's scale-out.

    python -m netcourse.apps.fanout [--redis-port PORT] [--channel NAME]

It serves the course's WebSocket server (``apps.wsserver``) on 127.0.0.1, prints ``READY <port>`` once
listening, and stops when its standard input closes (the parent ended or died) or on SIGTERM.

A client publishes by sending a TEXT message ``PUB <text>``:

- without Redis, the node broadcasts ``<text>`` to *its own* clients only: a client connected to another
  node never sees it;
- with ``--redis-port``, the node PUBLISHes ``<text>`` on the channel of a Redis on 127.0.0.1, and every
  node broadcasts to its clients what its subscription to that channel receives (this node included).

If Redis goes away, a publish fails (the client's socket closes with 1011) and the subscription ends; the node
says so on its standard error, tries again with a capped back-off, and once it has subscribed again prints
``re-subscribed``. Messages published while it was away are gone: pub/sub keeps nothing (notebook 10).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading

from ..protocols.wsframe import Opcode
from ..runtime.backoff import Backoff
from .wsserver import Hub, make_ws_handler

__all__ = ["Node", "PREFIX", "main"]

PREFIX = b"PUB "
MAX_TEXT = 64 * 1024


class Node:
    """One fan-out node: a WebSocket hub, and (once ``join_redis`` has run) a Redis publisher and a subscription."""

    def __init__(self, channel: str):
        self.channel = channel
        self.hub = Hub(max_buffered=4 << 20, write_timeout=5.0)
        self.publisher = None  # redis.asyncio.Redis, once joined
        self.forwarding: asyncio.Task | None = None

    async def on_message(self, opcode: Opcode, payload: bytes) -> None:
        """A client's ``PUB <text>``: to Redis when joined, else to this node's own clients."""
        if opcode != Opcode.TEXT or not payload.startswith(PREFIX) or len(payload) > MAX_TEXT:
            return
        text = payload[len(PREFIX):]
        if self.publisher is not None:
            await self.publisher.publish(self.channel, text)
        else:
            await self.hub.broadcast(text, Opcode.TEXT)

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
                        await self.hub.broadcast(message["data"], Opcode.TEXT)
            except (aioredis_errors.ConnectionError, aioredis_errors.TimeoutError, OSError) as exc:
                if not lost:
                    print(f"fanout: lost Redis ({type(exc).__name__}); subscribing again", file=sys.stderr, flush=True)
                lost = True
                await asyncio.sleep(backoff.next())
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netcourse.apps.fanout")
    parser.add_argument("--redis-port", type=int, default=0, help="a Redis on 127.0.0.1 to join (0: none)")
    parser.add_argument("--channel", default="netcourse")
    args = parser.parse_args(argv)
    from ..runtime.server import serve
    from ..runtime.sockets import no_delay

    node = Node(args.channel)
    srv = serve(no_delay(make_ws_handler(node.hub, on_message=node.on_message)), name="fanout node",
                max_connections=20_000)
    if args.redis_port:
        srv.run(node.join_redis(args.redis_port), timeout=10)
    print(f"READY {srv.port}", flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
