"""Notebook 11, a node lost: a thousand WebSocket clients on node A; A is killed, or drained; they move to B.

Two fan-out nodes (``scaleout.Node``) joined by Redis pub/sub; ``clients`` subscribers on node A, spread over
``processes`` crowd processes (``clients.crowd``: one Python process reads its sockets one after another),
and ``residents`` subscribers that live on node B all along. A publisher on B sends a numbered message
``rate`` times a second. One second in, node A fails, in one of three ways (``HOW``):

- **killed, no jitter**: SIGKILL; every client waits the same ``base`` seconds and connects to B: a
  thundering herd, all at one moment (notebook 04's storm, with real WebSocket handshakes on a real server);
- **killed, full jitter**: SIGKILL; each waits a random time in [0, 2 × ``base``] (``runtime.backoff``): the
  same mean wait, spread;
- **drained**: A closes its sockets with 1001 Going Away, evenly over ``drain`` seconds; a client so closed
  connects to B at once (a deploy, or a load balancer taking a node out of service).

What is measured, all from real processes: how long each moved client was without a connection, the messages
published meanwhile that it never got (pub/sub keeps nothing), the most new WebSockets B accepted in 25 ms
(from B's own clock), and the delivery latency of B's residents, before and after the failure. ``make bench`` stores a run of 1,000 clients; the notebook reads it.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from ...apps.broker import redis_broker
from ...apps.fanout import PREFIX
from ...errors import ServerStartError
from ...runtime.waiting import run_async
from .crowds import Crowd
from .scaleout import Node

__all__ = ["HOW", "Failover", "failover", "measure_failovers", "load_failovers", "listen_overflows", "RECORDED"]

HOW = ("killed, no jitter", "killed, full jitter", "drained")
RECORDED = Path(__file__).resolve().parents[2] / "measured" / "failover.json"
WINDOW = 25  # ms, for the peak of new connections


@dataclass
class Failover:
    """One failure of node A, and what its clients and node B went through.

    Attributes:
        how: one of ``HOW``. clients, residents: subscribers on A, and on B all along.
        outage_ms: for each client of A, from losing A to its WebSocket being open on B.
        missed: for each client of A, messages published (on B, at ``rate``/s) that it never received.
        joins_peak: the most WebSocket handshakes B completed within 25 ms after the failure (B's clock).
        slow_opens: clients whose connection to B took over 0.9 s to open: a SYN dropped at B's full accept
            queue (or the handshake's last ACK ignored there) and sent again after TCP's initial timeout of
            1 s (RFC 6298 §2.1).
        back_after_ms: from the failure until the last client of A was on B.
        stragglers: clients of A not on B when the run ended.
        listen_overflows: times the kernel found a listening socket's accept queue full during the run
            (``TcpExtListenOverflows`` in /proc/net/netstat: every listener of this network namespace, and
            one client may count more than once).
        residents_ms: delivery latency to B's own residents, median and p99, "before" the failure (one
            second), "during" the moves (until the last client of A is on B) and "after" them.
    """

    how: str
    clients: int
    residents: int
    base: float
    drain: float
    rate: float
    outage_ms: list[float] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    joins_peak: int = 0
    back_after_ms: float = float("nan")
    stragglers: int = 0
    slow_opens: int = 0
    listen_overflows: int = 0
    residents_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    def outage(self, q: float) -> float:
        return _quantile(self.outage_ms, q)

    def __repr__(self) -> str:
        window = self.residents_ms
        return (f"{self.how:<19} {self.clients:,} clients moved; without a connection: median "
                f"{self.outage(0.5):.0f} ms, longest {self.outage(1.0):.0f} ms; messages missed: "
                f"{sum(self.missed):,} ({_quantile(self.missed, 0.5):.0f} each at the median); "
                f"at most {self.joins_peak} handshakes completed on B in {WINDOW} ms; all back after "
                f"{self.back_after_ms:.0f} ms{f' ({self.stragglers} not back)' if self.stragglers else ''}; "
                f"{self.slow_opens} connections opened only after TCP sent again a second later "
                f"({self.listen_overflows} accept-queue overflows); B's own clients' latency p99: "
                f"{window['before']['p99']:.0f} ms before, {window['during']['p99']:.0f} ms during the moves, "
                f"{window['after']['p99']:.0f} ms after")


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))]


def listen_overflows() -> int:
    """This network namespace's count of connections dropped at a full accept queue (0 if unreadable)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", 0))
    return 0


def _peak(times: list[float], width: float) -> int:
    """The most of ``times`` within any ``width`` seconds (a sliding window)."""
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - width:
            first += 1
        best = max(best, last - first + 1)
    return best


def _stats(node: Node) -> dict:
    node.proc.stdin.write("STATS\n")
    node.proc.stdin.flush()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ready, _, _ = select.select([node.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = node.proc.stdout.readline()
        if line.startswith("STATS "):
            return json.loads(line[6:])
    raise ServerStartError("node B did not answer STATS within 10 s")


async def _publish(port: int, rate: float, before: float, after: float, fail) -> tuple[dict[int, float], float]:
    """Publish on node B ``rate`` times a second; ``fail()`` node A after ``before`` s; go on ``after`` s more."""
    published: dict[int, float] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/") as ws:
            start = time.monotonic()
            failed_at, seq = 0.0, 0
            while time.monotonic() < start + before + after:
                if not failed_at and time.monotonic() >= start + before:
                    failed_at = time.monotonic()
                    fail()
                seq += 1
                published[seq] = time.monotonic()
                await ws.send_str(f"{PREFIX.decode()}{seq}:")
                await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
    return published, failed_at


def failover(how: str, clients: int = 1000, residents: int = 50, *, base: float = 0.5, drain: float = 1.0,
             rate: float = 10.0, processes: int = 2, after: float = 4.0, seed: int = 10) -> Failover:
    """Node A fails ``how`` (one of ``HOW``) with ``clients`` on it; see the module's docstring."""
    if how not in HOW:
        raise ValueError(f"how is one of {HOW}, not {how!r}")
    if not 1 <= clients <= 10_000 or not 1 <= residents <= 1000 or not 1 <= processes <= 8:
        raise ValueError("need 1 to 10,000 clients, 1 to 1,000 residents and 1 to 8 crowd processes")
    policy = "jitter" if how == "killed, full jitter" else "none"
    result = Failover(how, clients, residents, base, drain, rate)
    with redis_broker() as redis:
        a, b = Node.several([redis.port, redis.port])
        crowds: list[Crowd] = []
        try:
            shares = [clients // processes + (k < clients % processes) for k in range(processes)]
            crowds = [Crowd({"ports": [a.port], "clients": n, "fallback": b.port, "policy": policy, "base": base,
                             "seed": seed + k}) for k, n in enumerate(shares) if n]
            crowds.append(Crowd({"ports": [b.port], "clients": residents}))
            for crowd in crowds:
                crowd.wait_ready(30 + clients / 100)

            def fail() -> None:
                if how == "drained":
                    a.proc.stdin.write(f"DRAIN {drain}\n")
                    a.proc.stdin.flush()
                else:
                    a.proc.kill()

            overflows = listen_overflows()
            published, failed_at = run_async(_publish(b.port, rate, 1.0, after, fail), 30 + after)
            result.listen_overflows = listen_overflows() - overflows
            stats = _stats(b)
            records = [crowd.finish() for crowd in crowds]
        finally:
            for crowd in crowds:
                crowd.stop()
            a.stop()
            b.stop()
    moved = [r for crowd in records[:-1] for r in crowd]
    _tally(result, moved, records[-1], published, failed_at, stats)
    return result


def _tally(result: Failover, moved: list[dict], residents: list[dict], published: dict[int, float],
           failed_at: float, stats: dict) -> None:
    every = set(published)
    back = []
    for r in moved:
        result.missed.append(len(every - set(r["seqs"])))
        if r["lost"] and len(r["joined"]) >= 2:
            result.outage_ms.append((r["joined"][1] - r["lost"][0]) * 1000)
            back.append(r["joined"][1])
            if r["joined"][1] - r["attempts"][-1] > 0.9:  # its last attempt's connect() waited a retransmission
                result.slow_opens += 1
        else:
            result.stragglers += 1
    joined = [t for t in stats["joined"] if t >= failed_at]
    result.joins_peak = _peak(joined, WINDOW / 1000)
    result.back_after_ms = (max(back) - failed_at) * 1000 if back else float("nan")
    all_back = max(back) if back else float("inf")
    latency: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    for r in residents:
        for seq, at in zip(r["seqs"], r["at"]):
            sent = published.get(seq)
            if sent is not None:
                window = "before" if sent < failed_at else "during" if sent <= all_back else "after"
                latency[window].append((at - sent) * 1000)
    result.residents_ms = {k: {"median": _quantile(v, 0.5), "p99": _quantile(v, 0.99)} for k, v in latency.items()}


def measure_failovers(clients: int = 1000, *, path: Path | None = RECORDED, **options) -> dict[str, Failover]:
    """The three failures, one after another (``make bench``); saved to ``path`` for the notebook."""
    runs = {how: failover(how, clients, **options) for how in HOW}
    if path is not None:
        path.write_text(json.dumps({"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                    "cpus": os.cpu_count(),
                                    "runs": {how: asdict(run) for how, run in runs.items()}}, indent=1) + "\n")
    return runs


def load_failovers(path: Path = RECORDED) -> tuple[str, dict[str, Failover]]:
    """The stored runs of ``make bench``: (when and on how many cores they were measured, {how: Failover})."""
    data = json.loads(path.read_text())
    return (f"{data['measured_at']}, on {data.get('cpus', '?')} cores",
            {how: Failover(**run) for how, run in data["runs"].items()})
