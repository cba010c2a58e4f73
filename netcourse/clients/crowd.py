"""A crowd of WebSocket subscribers in a process of its own (notebook 11's fail-over and fan-out bench).

    python -m netcourse.clients.crowd '{"ports": [A, B], "clients": 500, "fallback": C, "policy": "jitter",
                                        "base": 1.0, "seed": 7}'

Client ``i`` connects to ``ports[i % len(ports)]`` on 127.0.0.1. Each keeps what arrives: a TEXT message that
starts ``<seq>:`` is recorded as (seq, ``time.monotonic()`` at arrival). The process prints ``READY`` once every
client is connected, and runs until its standard input closes; then it prints one JSON line, the record of
every client, and exits.

When a client's connection ends, it connects again to ``fallback`` (another node), by ``policy``:

- ``"none"``: it waits ``base`` seconds, then tries (every client lost at one moment comes back at one moment);
- ``"jitter"``: it waits a random time in [0, 2 × ``base``] (full jitter, ``runtime.backoff``): on average
  ``base`` too, so the two policies differ in the spread of the waits, not in their mean;
- either way a close with 1001 Going Away (a node draining, RFC 6455 §7.4.1) is taken, by this client, as an
  invitation to connect again at once (the RFC asks nothing of the kind: a browser's page script decides). A
  failed attempt waits the back-off's next delay.

Many clients in several processes, because one Python process reads its sockets one after another: with
thousands of them, the readers, not the servers, would set the times measured.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time

import aiohttp

from ..runtime.backoff import Backoff
from ..runtime.sockets import file_limit

__all__ = ["main"]

GOING_AWAY = 1001


async def _crowd(spec: dict, stop: asyncio.Event) -> list[dict]:
    ports, count = spec["ports"], int(spec["clients"])
    fallback, policy, base = spec.get("fallback"), spec.get("policy", "none"), float(spec.get("base", 1.0))
    rng = random.Random(spec.get("seed", 0))
    records = [{"seqs": [], "at": [], "lost": [], "attempts": [], "joined": [], "codes": []} for _ in range(count)]
    connected = [0]
    all_in = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientWSTimeout(ws_close=2.0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def listen(i: int, port: int) -> int | None:
            """One connection, until it ends; returns its close code (None: it never opened)."""
            record = records[i]
            record["attempts"].append(time.monotonic())
            try:
                ws = await session.ws_connect(f"http://127.0.0.1:{port}/", autoping=True, timeout=timeout,
                                              max_msg_size=1 << 20)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                return None
            record["joined"].append(time.monotonic())
            if len(record["joined"]) == 1:
                connected[0] += 1
                if connected[0] == count:
                    all_in.set()
            async with ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        head = msg.data.split(":", 1)[0]
                        if head.isdigit():
                            record["seqs"].append(int(head))
                            record["at"].append(time.monotonic())
            record["lost"].append(time.monotonic())
            record["codes"].append(ws.close_code)
            return ws.close_code

        async def client(i: int) -> None:
            code = await listen(i, ports[i % len(ports)])
            if fallback is None:
                return
            ceiling = 2 * base if policy == "jitter" else base  # the same mean first wait either way
            backoff = Backoff(ceiling, 4 * ceiling, rng=random.Random(rng.random()), jitter=policy == "jitter")
            while not stop.is_set():
                if code != GOING_AWAY:
                    await asyncio.sleep(backoff.next())
                code = await listen(i, fallback)
                if code is not None:
                    backoff.reset()

        tasks = [asyncio.create_task(client(i)) for i in range(count)]
        waiter = asyncio.create_task(all_in.wait())
        await asyncio.wait([waiter, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if all_in.is_set():
            print("READY", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, waiter, return_exceptions=True)
    return records


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if not 1 <= int(spec["clients"]) <= 20_000 or not spec["ports"]:
        print("crowd: clients must be 1 to 20000, and ports not empty", file=sys.stderr)
        return 2
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    try:
        with file_limit(int(spec["clients"]) + 64):  # a descriptor a client
            records = loop.run_until_complete(_crowd(spec, stop))
    finally:
        loop.close()
    print(json.dumps(records), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
