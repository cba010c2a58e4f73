"""Notebook 11, many subscribers: crowds of WebSocket clients in processes of their own, and the fan-out bench.

- ``Crowd``: a ``clients.crowd`` process (a few hundred or thousand subscribers); ``finish()`` returns what
  each received, and when.
- ``bench_fan_out``: through Redis to 1,000 and 10,000 subscribers on two nodes, read by several processes
  (one Python process reads its sockets one after another: alone, it would time itself, not the servers);
  ``make bench`` runs it, ``load_bench`` gives the stored figures as text.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from ...apps.broker import redis_broker
from ...apps.fanout import PREFIX
from ...errors import ServerStartError
from ...runtime.waiting import run_async
from .scaleout import Node

__all__ = ["Crowd", "bench_fan_out", "load_bench", "BENCH"]

BENCH = Path(__file__).resolve().parents[2] / "measured" / "fanout_bench.json"


class Crowd:
    """A ``clients.crowd`` process; ``finish()`` ends it and returns its clients' records."""

    def __init__(self, spec: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "netcourse.clients.crowd", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def wait_ready(self, timeout: float) -> None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "READY":
            error = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise ServerStartError(f"a crowd of clients did not connect within {timeout:g} s {error[-300:]}")

    def finish(self, timeout: float = 30.0) -> list[dict]:
        """Close its standard input (the clients stop), read its records."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)  # closes its standard input first
            return json.loads(out.strip().splitlines()[-1])
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def bench_fan_out(counts: tuple[int, ...] = (1_000, 10_000), messages: int = 5, *, processes: int = 4,
                  path: Path | None = BENCH) -> list[dict]:
    """Fan-out through Redis to ``counts`` subscribers on two nodes, read by ``processes`` crowd processes
    (``clients.crowd``); saved for the notebook (``make bench``). One message at a time: the gap is longer
    than a fan-out, so no message queues behind the last."""
    from datetime import datetime, timezone

    rows = []
    for n in counts:
        gap = max(0.2, n / 2000)
        with redis_broker() as redis:
            a, b = Node.several([redis.port, redis.port])
            crowds: list[Crowd] = []
            try:
                shares = [n // processes + (k < n % processes) for k in range(processes)]
                crowds = [Crowd({"ports": [a.port, b.port], "clients": share}) for share in shares if share]
                for crowd in crowds:
                    crowd.wait_ready(60 + n / 50)
                sent = run_async(_publish_slowly(a.port, messages, gap), 60 + messages * gap)
                records = [r for crowd in crowds for r in crowd.finish()]
            finally:
                for crowd in crowds:
                    crowd.stop()
                a.stop()
                b.stop()
            version = f"Redis {redis.version} ({redis.source})"
        arrivals: dict[int, list[float]] = {m: [] for m in sent}
        for r in records:
            for seq, at in zip(r["seqs"], r["at"]):
                if seq in arrivals:
                    arrivals[seq].append((at - sent[seq]) * 1000)
        firsts, medians, lasts = [], [], []
        for times in arrivals.values():
            times.sort()
            if times:
                firsts.append(times[0])
                medians.append(times[len(times) // 2])
                lasts.append(times[-1])

        def middle(values: list[float]) -> float:
            return sorted(values)[len(values) // 2] if values else float("nan")

        rows.append({"subscribers": n, "messages": messages, "readers": len(shares), "cpus": os.cpu_count(),
                     "received": sum(map(len, arrivals.values())), "expected": n * messages,
                     "first_ms": middle(firsts), "p50_ms": middle(medians), "fan_out_ms": middle(lasts),
                     "redis": version})
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                    "rows": rows}, indent=1) + "\n")
    return rows


async def _publish_slowly(port: int, messages: int, gap: float) -> dict[int, float]:
    """Publish ``messages`` numbered messages on a node, ``gap`` seconds apart; then wait one more gap."""
    sent: dict[int, float] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/") as ws:
            for m in range(1, messages + 1):
                sent[m] = time.monotonic()
                await ws.send_str(f"{PREFIX.decode()}{m}:")
                await asyncio.sleep(gap)
    return sent


def load_bench(path: Path = BENCH) -> str:
    """The stored fan-out figures of ``make bench`` as text, or "" if there are none."""
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    lines = [f"measured by make bench on {data['measured_at']} ({data['rows'][0]['redis']}):"]
    for r in data["rows"]:
        readers = f", read by {r['readers']} processes" if r.get("readers") else ""
        readers += f" on {r['cpus']} cores" if r.get("cpus") else ""
        lines.append(f"  {r['subscribers']:>6,} subscribers on 2 nodes{readers}: {r['received']:,}/{r['expected']:,} received; after "
                     f"publication the first was reached in {r.get('first_ms', float('nan')):.1f} ms, the median one in "
                     f"{r['p50_ms']:.1f} ms, the last in {r['fan_out_ms']:.1f} ms (medians over {r['messages']} messages, "
                     "one at a time)")
    return "\n".join(lines)
