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

__all__ = ["main", "PREFIX"]

PREFIX = b"PUB "
MAX_TEXT = 64 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netcourse.apps.fanout")
    parser.add_argument("--redis-port", type=int, default=0, help="a Redis on 127.0.0.1 to join (0: none)")
    parser.add_argument("--channel", default="netcourse")
    args = parser.parse_args(argv)
    from ..runtime.server import serve
    from ..runtime.sockets import no_delay

    hub = Hub(max_buffered=4 << 20, write_timeout=5.0)
    state: dict = {"redis": None}

    async def on_message(opcode: Opcode, payload: bytes) -> None:
        if opcode != Opcode.TEXT or not payload.startswith(PREFIX) or len(payload) > MAX_TEXT:
            return None
        text = payload[len(PREFIX):]
        if state["redis"] is not None:
            await state["redis"].publish(args.channel, text)
        else:
            await hub.broadcast(text, Opcode.TEXT)
        return None

    handler = make_ws_handler(hub, on_message=on_message)
    srv = serve(no_delay(handler), name="fanout node", max_connections=20_000)

    async def join_redis() -> None:
        import redis.asyncio as aioredis
        import redis.exceptions as aioredis_errors

        publisher = aioredis.Redis(host="127.0.0.1", port=args.redis_port)
        subscriber = aioredis.Redis(host="127.0.0.1", port=args.redis_port)
        subscribed = asyncio.get_running_loop().create_future()

        async def forward() -> None:
            backoff = Backoff(base=0.1, cap=2.0)
            lost = False
            while True:
                pubsub = subscriber.pubsub()
                try:
                    await pubsub.subscribe(args.channel)
                    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
                    if lost:
                        print(f"fanout: re-subscribed to {args.channel!r}", file=sys.stderr, flush=True)
                    lost = False
                    backoff.reset()
                    if not subscribed.done():
                        subscribed.set_result(None)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await hub.broadcast(message["data"], Opcode.TEXT)
                except (aioredis_errors.ConnectionError, aioredis_errors.TimeoutError, OSError) as exc:
                    if not lost:
                        print(f"fanout: lost Redis ({type(exc).__name__}); subscribing again", file=sys.stderr,
                              flush=True)
                    lost = True
                    await asyncio.sleep(backoff.next())
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

        state["task"] = asyncio.get_running_loop().create_task(forward())
        await asyncio.wait_for(subscribed, 5)
        state["redis"] = publisher

    if args.redis_port:
        srv.run(join_redis(), timeout=10)
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
