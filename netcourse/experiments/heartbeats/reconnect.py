"""Notebook 04, sections 3b and 5: a heartbeat client that closes a dead connection and reconnects with back-off
(``clients.beat.keep_connected``), across loopback and a 100 ms link; and a crowd of clients coming back after
an outage, with and without jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from ...apps.beat import make_beat_handler
from ...clients.beat import keep_connected, peer_process
from ...course.exercises import Prediction
from ...network.link import link
from ...runtime.backoff import Backoff
from .detection import _check_settings

__all__ = ["Reconnecting", "heartbeat_reconnect", "heartbeat_across_a_link", "coming_back", "Storm", "reconnect_storm", "reconnecting_client",
           "predict_storm_return"]


@dataclass
class Reconnecting:
    """A client that keeps one heartbeat connection up: what happened, in order.

    Attributes:
        interval, timeout: the heartbeat's settings, seconds.
        events: (seconds since the start, what happened).
        froze_at, thawed_at: when the peer was frozen and thawed (None: it never was).
        round_trips: seconds from each answered ping to its pong, over all connections.
        leftover_tasks: asyncio tasks still alive when the client returned (0: nothing leaked).
    """

    interval: float
    timeout: float
    events: list[tuple[float, str]] = field(default_factory=list)
    froze_at: float | None = None
    thawed_at: float | None = None
    round_trips: list[float] = field(default_factory=list)
    leftover_tasks: int = 0

    def times(self, what: str) -> list[float]:
        return [t for t, e in self.events if e.startswith(what)]

    @property
    def detected_after(self) -> float | None:
        """Seconds from the freeze to the first connection declared dead."""
        if self.froze_at is None:
            return None
        dead = [t for t in self.times("dead") if t >= self.froze_at]
        return dead[0] - self.froze_at if dead else None

    @property
    def false_alarms(self) -> int:
        """Connections declared dead while the peer was not frozen."""
        def frozen(t: float) -> bool:
            return self.froze_at is not None and self.froze_at <= t <= (self.thawed_at or float("inf")) + self.timeout
        return sum(1 for t in self.times("dead") if not frozen(t))

    def __repr__(self) -> str:
        rtt = sorted(self.round_trips)
        median = f"{rtt[len(rtt) // 2] * 1000:.1f} ms" if rtt else "none"
        detected = f"; dead {self.detected_after:.2f} s after the freeze" if self.detected_after is not None else ""
        return (f"interval {self.interval:g} s, timeout {self.timeout:g} s: {len(self.times('connected'))} "
                f"connections, {len(self.times('dead'))} declared dead ({self.false_alarms} while the peer was "
                f"alive){detected}; {len(rtt)} pongs, median ping round trip {median}; "
                f"{self.leftover_tasks} tasks left behind")


def heartbeat_reconnect(interval: float = 0.2, timeout: float = 0.3, *, freeze_at: float = 0.6,
                        frozen_for: float = 1.2, run_for: float = 2.8, seed: int = 4) -> Reconnecting:
    """A heartbeat client against a peer process that freezes (SIGSTOP) for ``frozen_for`` s and thaws: the
    client declares the connection dead, closes it, reconnects with back-off (the frozen peer's kernel still
    completes the TCP handshake, so each new connection opens, and dies the same way), and is back to steady
    pongs once the peer thaws."""
    from ...runtime.waiting import run_async

    _check_settings(interval, timeout)
    if not 0 < freeze_at < run_for or frozen_for <= 0 or run_for > 30:
        raise ValueError("need 0 < freeze_at < run_for <= 30 and frozen_for > 0")
    result = Reconnecting(interval, timeout)
    with peer_process(tick=0.0) as peer:
        t0 = time.monotonic()
        stop = threading.Event()

        def freezer() -> None:
            if stop.wait(freeze_at):
                return
            result.froze_at = time.monotonic() - t0
            peer.freeze()
            stop.wait(frozen_for)
            peer.thaw()
            result.thawed_at = time.monotonic() - t0

        thread = threading.Thread(target=freezer, daemon=True)

        async def main() -> int:
            loop = asyncio.get_running_loop()
            started = loop.time() - (time.monotonic() - t0)  # the same origin as the freezer's times
            return await keep_connected("127.0.0.1", peer.port, interval=interval, timeout=timeout,
                                        run_for=run_for, backoff=Backoff(0.05, 0.4, rng=random.Random(seed)),
                                        events=result.events, round_trips=result.round_trips, started=started)

        thread.start()
        try:
            result.leftover_tasks = run_async(main(), run_for + 10)
        finally:
            stop.set()
            thread.join(frozen_for + 5)
            peer.thaw()
    return result


def heartbeat_across_a_link(rtt_ms: float = 100.0, timeouts: tuple[float, ...] = (0.05, 0.3), *,
                            interval: float = 0.2, run_for: float = 1.2) -> list[Reconnecting]:
    """The same reconnecting heartbeat across an emulated link to a live, healthy server, once per timeout:
    a timeout shorter than the round trip declares a healthy peer dead at every ping."""
    if not timeouts or any(t <= 0 for t in timeouts):
        raise ValueError("give at least one positive timeout")
    out = []
    with link(rtt_ms=rtt_ms) as net:
        net.announce()
        srv = net.serve(make_beat_handler(tick=None, idle_timeout=3.0, max_pings=50.0), name="heartbeat")
        for timeout in timeouts:
            result = Reconnecting(interval, timeout)

            async def main(result=result) -> int:
                return await keep_connected(srv.host, srv.port, interval=interval, timeout=result.timeout,
                                            run_for=run_for, backoff=Backoff(0.05, 0.2, rng=random.Random(1)),
                                            events=result.events, round_trips=result.round_trips)

            result.leftover_tasks = net.run(main(), run_for + 10)
            out.append(result)
    return out


def coming_back(rtt_ms: float = 100.0, timeouts: tuple[float, ...] = (0.05, 0.3), *, interval: float = 0.2,
                timeout: float = 0.3, freeze_at: float = 0.3, frozen_for: float = 0.8,
                run_for: float = 1.5, link_run_for: float = 0.8) -> tuple[Reconnecting, list[Reconnecting]]:
    """``heartbeat_reconnect`` (in a worker thread: it prints nothing) and ``heartbeat_across_a_link`` (here)
    at the same time: they share nothing, and together they take as long as the longer one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="heartbeat-reconnect") as pool:
        near = pool.submit(heartbeat_reconnect, interval, timeout, freeze_at=freeze_at, frozen_for=frozen_for,
                           run_for=run_for)
        far = heartbeat_across_a_link(rtt_ms, timeouts, interval=interval, run_for=link_run_for)
        return near.result(), far


@dataclass
class Storm:
    """Many clients reconnecting to a server that went down, with and without jitter.

    Attributes:
        clients: how many clients (each a real TCP connect() per attempt).
        down_for: seconds the server was down (its port refused connections: the kernel's RST).
        base, cap: the back-off's settings, seconds.
        attempts: per schedule ("no jitter", "full jitter"), every attempt as (seconds from the server going
            down to the attempt's start, True if it connected).
    """

    clients: int
    down_for: float
    base: float
    cap: float
    attempts: dict[str, list[tuple[float, bool]]]

    def peak(self, schedule: str, width: float = 0.025, *, connected: bool | None = None) -> int:
        """The most attempts within any ``width`` seconds (a sliding window; only the successful ones with
        ``connected=True``: the new connections the returning server must accept at once)."""
        times = sorted(t for t, ok in self.attempts[schedule] if connected is None or ok == connected)
        best, first = 0, 0
        for last, t in enumerate(times):
            while times[first] <= t - width:
                first += 1
            best = max(best, last - first + 1)
        return best

    def back_after(self, schedule: str) -> float:
        """Seconds from the server's return until the last client was connected again."""
        return max((t for t, ok in self.attempts[schedule] if ok), default=float("nan")) - self.down_for

    def __repr__(self) -> str:
        rows = [f"{self.clients} clients, server down for {self.down_for:g} s, back-off base {self.base:g} s, "
                f"cap {self.cap:g} s:"]
        for name, log in self.attempts.items():
            rows.append(f"  {name:<12} {len(log):>4} connection attempts, at most {self.peak(name):>3} in one 25 ms; "
                        f"at most {self.peak(name, connected=True):>3} new connections in one 25 ms; all back "
                        f"{self.back_after(name) * 1000:.0f} ms after the server returned")
        return "\n".join(rows)


def reconnect_storm(clients: int = 100, down_for: float = 0.6, *, base: float = 0.05, cap: float = 0.4,
                    seed: int = 4, limit: float = 5.0) -> Storm:
    """``clients`` clients lose their server at the same moment and reconnect with capped exponential back-off,
    once waiting the ceiling itself (no jitter) and once a random time below it (full jitter, ``Backoff``).

    Each schedule has its own server port, bound but not listening for ``down_for`` seconds, so each
    connect() is refused at once by the kernel; then it listens and accepts. Both run side by side in one
    event loop, for at most ``limit`` seconds. One client is ``reconnecting_client``.
    """
    from ...runtime.waiting import run_async

    if not 1 <= clients <= 500:
        raise ValueError("clients must be between 1 and 500")
    if not 0 < down_for <= 3 or not 0 < base <= cap <= 2:
        raise ValueError("need 0 < down_for <= 3 and 0 < base <= cap <= 2 (seconds)")
    socks = {name: socket.socket() for name in ("no jitter", "full jitter")}
    try:
        for sock in socks.values():
            sock.bind(("127.0.0.1", 0))  # bound, not listening: a SYN meets an RST
            sock.setblocking(False)
        logs = run_async(_storm(socks, clients, down_for, base, cap, random.Random(seed), limit), limit + 10)
    finally:
        for sock in socks.values():
            sock.close()
    return Storm(clients, down_for, base, cap, logs)


async def reconnecting_client(port: int, backoff, log: list[tuple[float, bool]], t0: float, limit: float) -> None:
    """One client: wait the back-off's next delay, try connect(), until one succeeds (or ``limit`` seconds since
    ``t0`` pass). Each attempt goes into ``log`` as (seconds since ``t0`` when its SYN left, connected)."""
    loop = asyncio.get_running_loop()
    while loop.time() - t0 < limit:
        await asyncio.sleep(backoff.next())  # the first attempt waits too: all lost the server at once
        began = loop.time() - t0
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            log.append((began, False))
            continue
        log.append((began, True))
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        return


async def _storm(socks: dict[str, socket.socket], clients: int, down_for: float, base: float, cap: float,
                 rng: random.Random, limit: float) -> dict[str, list[tuple[float, bool]]]:
    from ...runtime.backoff import Backoff

    logs: dict[str, list[tuple[float, bool]]] = {name: [] for name in socks}
    servers = []
    t0 = asyncio.get_running_loop().time()

    async def come_back() -> None:  # the server returns: each port listens, and accepts
        await asyncio.sleep(down_for)
        for sock in socks.values():
            sock.listen(clients + 16)
            servers.append(await asyncio.start_server(_hang_up, sock=sock))

    tasks = [asyncio.create_task(come_back())]
    for name, sock in socks.items():
        for _ in range(clients):
            backoff = Backoff(base, cap, rng=random.Random(rng.random()), jitter=name == "full jitter")
            tasks.append(asyncio.create_task(reconnecting_client(sock.getsockname()[1], backoff, logs[name], t0, limit)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for srv in servers:
            srv.close()
            await srv.wait_closed()
    return logs


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def predict_storm_return(down_for: float = 0.6, base: float = 0.05, cap: float = 0.4) -> Prediction:
    """Predict when clients backing off without jitter get back in (checked against the run's first connect)."""
    waits, t = [], 0.0
    from ...runtime.backoff import Backoff

    plain = Backoff(base, cap, jitter=False)
    while t < down_for:
        waits.append(plain.next())
        t += waits[-1]
    steps = " + ".join(f"{w:g}" for w in waits)

    def explain(given: float, measured: float) -> str:
        return (f"Each client waits {steps} s before its attempts; every attempt before {down_for:g} s is refused, so "
                f"the first that succeeds is at {steps} = {t:g} s, {t - down_for:g} s after the server came back, "
                "and all 100 clients make it at the same moment. The run's few extra milliseconds are timers firing late in "
                "one busy event loop.")

    return Prediction(
        f"Clients back off without jitter: before each attempt they wait {base:g} s, then twice as long each time, "
        f"at most {cap:g} s. The server is down for the first {down_for:g} s. How many seconds after losing it do "
        "the clients get back in?",
        measure=lambda storm: min(t for t, ok in storm.attempts["no jitter"] if ok),
        unit="s", tolerance=0.1, floor=0.03, explain=explain,
        mistakes=[(lambda g, m: abs(g - down_for) < 0.03, "The server is back then, but nobody tries at that "
                   "moment: each client's next attempt comes when its own wait ends.")],
    )
