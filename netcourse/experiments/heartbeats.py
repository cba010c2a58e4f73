"""Notebook 04: a persistent full-duplex pipe, and how each side learns that the other is gone.

The server (``apps.beat``) pushes ticks without being asked and answers PINGs. The experiments:

- ``duplex_ticks``: the server's ticks and the client's messages interleave on one connection (captured);
- ``peer_deaths``: what a reader and a writer see when the peer closes, crashes (SIGKILL), freezes
  (SIGSTOP: the process stops, its kernel does not) or vanishes from the network (the link's loss switch,
  root only);
- ``heartbeat_detection``: an application heartbeat finds a frozen peer, timed over several trials;
- ``keepalive_detection`` and ``user_timeout_detection``: TCP's own mechanisms find a vanished peer
  (root: the emulated link's loss switch; otherwise the recording is replayed).

The peer that freezes or crashes is a child process (``python -m netcourse.apps.beat``) that this module
starts and always kills; no root is needed for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from ..apps.beat import make_beat_handler
from ..course.exercises import Exercise, Prediction
from ..errors import NetcourseError, NetcourseTimeout
from ..network.link import link
from ..protocols.beat import Frame, Kind, detection_bounds, encode, heartbeat_cost
from ..runtime.backoff import Backoff
from ..runtime.server import serve
from ..runtime.tcpinfo import tcp_info
from ..traffic.packets import C2S, S2C
from ..traffic.sniffer import Capture, capture
from ..clients.beat import BeatClient, keep_connected, peer_process
from .registry import scenario

__all__ = [
    "DuplexTicks", "duplex_ticks", "Death", "peer_deaths", "Detection",
    "heartbeat_detection", "aiohttp_heartbeat_detection", "compare_heartbeats", "Reconnecting", "heartbeat_reconnect", "heartbeat_across_a_link", "coming_back", "TcpDetection", "keepalive_detection", "user_timeout_detection", "keepalive_defaults",
    "heartbeat_cost", "detection_bounds", "predict_worst_detection", "predict_frozen_unacked", "exercise_probe_seq",
    "exercise_echo_time", "tradeoff_knob", "HalfOpen", "half_open", "Storm", "reconnect_storm", "predict_storm_return",
    "LivePipe",
]



# -- a client and a peer process --------------------------------------------------------------------



# -- 1. both directions at once -------------------------------------------------------------------------


@dataclass
class DuplexTicks:
    """Ticks pushed by the server and messages sent by the client, on one connection.

    Attributes:
        ticks: (seconds since the start, tick number) as the client received them.
        sent: seconds since the start at which the client sent each message.
        echoes: seconds at which each message's echo came back.
        capture: the packets.
    """

    ticks: list[tuple[float, int]]
    sent: list[float]
    echoes: list[float]
    capture: Capture

    @property
    def requested_nothing(self) -> bool:
        """True: the ticks arrived although the client never asked for one."""
        return bool(self.ticks)


@scenario("heartbeat_duplex")
def duplex_ticks(clicks: tuple[float, ...] = (0.3, 0.5, 0.9), duration: float = 1.2, tick: float = 0.2) -> DuplexTicks:
    """The server ticks every ``tick`` s; the client sends a message at each time in ``clicks`` (scripted clicks)."""
    handler = make_beat_handler(tick=tick, idle_timeout=None)
    ticks: list[tuple[float, int]] = []
    echoes: list[float] = []
    sent: list[float] = []
    with serve(handler, name="beat") as srv:
        with capture(srv.port, scenario="heartbeat_duplex") as cap:
            with BeatClient(srv.host, srv.port) as client:
                start = time.monotonic()
                pending = sorted(clicks)
                while (now := time.monotonic() - start) < duration:
                    if pending and now >= pending[0]:
                        client.send(Kind.MSG, f"click {len(sent) + 1}".encode())
                        sent.append(now)
                        pending.pop(0)
                        continue
                    wait = min(duration - now, (pending[0] - now) if pending else duration)
                    for frame in client.receive(max(wait, 0.001)):
                        t = time.monotonic() - start
                        if frame.kind is Kind.TICK:
                            ticks.append((t, int(frame.body)))
                        elif frame.kind is Kind.MSG:
                            echoes.append(t)
                client.send(Kind.CLOSE, b"done")
                try:
                    while client.receive(1.0):
                        pass
                except ConnectionError:
                    pass
    return DuplexTicks(ticks, sent, echoes, cap)


# -- 2. how a peer's death looks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Death:
    """What the client saw when its peer died one way.

    Attributes:
        kind: "clean close", "crash", "frozen process", "vanished network".
        read: what a read returned or raised.
        read_ms: how long after the death the read gave that answer (None: it was still waiting when we stopped).
        write: what two writes of 100 bytes, 0.1 s apart, did meanwhile.
        unacked: segments the client's kernel still waited to have acknowledged, 0.1 s after the second write
            (0 also when the connection is gone: nothing is waiting any more).
    """

    kind: str
    read: str
    read_ms: float | None
    write: str
    unacked: int | None

    def __repr__(self) -> str:
        when = "still waiting" if self.read_ms is None else f"after {self.read_ms:.0f} ms"
        return f"{self.kind:<16} read: {self.read} ({when}); write: {self.write}; unacknowledged: {self.unacked}"


def _observe(client: BeatClient, kind: str, die, *, wait: float = 1.0) -> Death:
    """Kill the peer with ``die()`` (which returns when the peer is dead), then read (up to ``wait`` s) and
    write; report both."""
    die()
    t0 = time.monotonic()
    read, read_ms = "nothing", None
    try:
        while time.monotonic() - t0 < wait:
            frames = client.receive(wait - (time.monotonic() - t0))
            if not frames:
                break
            if any(f.kind is Kind.CLOSE for f in frames):
                read = "a CLOSE frame (the reason), then b'' (a FIN)"
                read_ms = (time.monotonic() - t0) * 1000
                try:
                    client.receive(0.5)
                except ConnectionError:
                    pass
                break
    except ConnectionAbortedError:
        read, read_ms = "b'' (end of stream: a FIN)", (time.monotonic() - t0) * 1000
    except ConnectionResetError:
        read, read_ms = "ConnectionResetError (an RST)", (time.monotonic() - t0) * 1000
    outcomes = []
    for _ in range(2):  # after a FIN the first write still succeeds; the peer's RST makes the second fail
        try:
            client.sock.settimeout(1.0)
            client.sock.sendall(encode(Kind.MSG, b"x" * 97))
            outcomes.append("accepted")
        except OSError as exc:
            outcomes.append(type(exc).__name__)
        time.sleep(0.1)
    write = f"first {outcomes[0]}, second {outcomes[1]}"
    info = tcp_info(client.sock)
    return Death(kind, read, read_ms, write, None if info is None else info.unacked)


def peer_deaths(*, wait: float = 0.6) -> list[Death]:
    """The client reads and writes after its peer closes, crashes, freezes and (root) vanishes.

    The four cases are independent (each its own server, process or link), so they run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    def clean() -> Death:
        # the server closes a client that stays quiet for 0.3 s (a CLOSE frame, then a FIN); the death is
        # that moment, 0.3 s after the connection opened
        with serve(make_beat_handler(tick=None, idle_timeout=0.3), name="beat") as srv:
            with BeatClient(srv.host, srv.port) as client:
                opened = time.monotonic()
                return _observe(client, "clean close",
                                lambda: time.sleep(max(0.0, opened + 0.3 - time.monotonic())), wait=wait)

    def in_process(kind: str) -> Death:
        with peer_process() as peer:
            with BeatClient("127.0.0.1", peer.port) as client:
                client.send(Kind.PING, b"1")
                client.receive(2.0)
                try:
                    return _observe(client, kind, peer.kill if kind == "crash" else peer.freeze, wait=wait)
                finally:
                    peer.thaw()

    def vanished() -> Death:
        with link(rtt_ms=10) as net:
            if net.mode != "tap":
                return Death("vanished network", "(needs the tap link: root)", None, "—", None)
            srv = net.serve(make_beat_handler(tick=None, idle_timeout=None), name="beat")

            def far_side_vanishes() -> Death:
                with BeatClient(srv.host, srv.port) as client:
                    client.send(Kind.PING, b"1")
                    client.receive(2.0)
                    return _observe(client, "vanished network", lambda: net.set_loss(1.0), wait=wait)

            return net.near(far_side_vanishes, 30)

    jobs = [clean, lambda: in_process("crash"), lambda: in_process("frozen process"), vanished]
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="peer death") as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]


# -- 3. an application heartbeat ------------------------------------------------------------------------


@dataclass
class Detection:
    """Times from a peer's death to its detection, over several trials.

    Attributes:
        mechanism: what detected it.
        interval, timeout: the heartbeat's settings, seconds.
        seconds: one detection time per trial.
        false_alarms: trials in which the heartbeat declared the peer dead *before* it froze (a PONG merely
            late, e.g. on a busy machine); such a trial is run again and counted here, never averaged in.
    """

    mechanism: str
    interval: float
    timeout: float
    seconds: list[float] = field(default_factory=list)
    false_alarms: int = 0

    @property
    def best(self) -> float:
        return min(self.seconds, default=float("nan"))

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else float("nan")

    @property
    def worst(self) -> float:
        return max(self.seconds, default=float("nan"))

    def __repr__(self) -> str:
        lo, hi = detection_bounds(self.interval, self.timeout)
        alarms = f"; {self.false_alarms} false alarm(s) re-run" if self.false_alarms else ""
        return (f"{self.mechanism}, interval {self.interval:g} s, timeout {self.timeout:g} s: {len(self.seconds)} "
                f"trials, best {self.best:.2f} s, mean {self.mean:.2f} s, worst {self.worst:.2f} s (theory: between "
                f"{lo:g} and {hi:g} s){alarms}")


def _heartbeat_until_dead(client: BeatClient, interval: float, timeout: float, limit: float) -> float | None:
    """Ping every ``interval`` s; return the monotonic time at which a PONG was ``timeout`` s late."""
    n = 0
    start = time.monotonic()
    while time.monotonic() - start < limit:
        n += 1
        sent = time.monotonic()
        client.send(Kind.PING, str(n).encode())
        deadline = sent + timeout
        answered = False
        while not answered:
            left = deadline - time.monotonic()
            if left <= 0:
                return time.monotonic()  # no PONG in time: declared dead
            for f in client.receive(left):
                if f.kind is Kind.PONG and f.body == str(n).encode():
                    answered = True
        time.sleep(max(0.0, sent + interval - time.monotonic()))
    return None


def _ws_heartbeat_until_dead(client, interval: float, timeout: float, limit: float) -> float | None:
    """The same heartbeat with WebSocket control frames: a ping every ``interval`` s (its payload a counter,
    masked as a client must), dead when the matching pong is ``timeout`` s late (RFC 6455 §5.5.2-3)."""
    from ..protocols.wsconn import Pong
    from ..protocols.wsframe import Frame, Opcode

    n = 0
    start = time.monotonic()
    while time.monotonic() - start < limit:
        n += 1
        sent = time.monotonic()
        client.send(Frame(Opcode.PING, str(n).encode()))
        deadline = sent + timeout
        answered = False
        while not answered:
            left = deadline - time.monotonic()
            if left <= 0:
                return time.monotonic()
            client.sock.settimeout(left)
            try:
                events = client.receive()
            except socket.timeout:
                continue
            if not events:
                raise ConnectionAbortedError("the peer closed the connection")
            answered = any(isinstance(e, Pong) and e.payload == str(n).encode() for e in events)
        time.sleep(max(0.0, sent + interval - time.monotonic()))
    return None


def _trials(result: "Detection", protocol: str, trials: int, seed: int, run_one) -> "Detection":
    """Freeze a peer process at a random moment, ``trials`` times; ``run_one(port, freeze_after)`` connects,
    arranges the freeze and returns (detected at, froze at) on the monotonic clock."""
    rng = random.Random(seed)
    with peer_process(protocol=protocol) as peer:
        while len(result.seconds) < trials:
            froze_at: list[float] = []

            def freeze_later(delay: float = rng.uniform(0.5 * result.interval, 1.5 * result.interval)) -> None:
                time.sleep(delay)
                froze_at.append(time.monotonic())
                peer.freeze()

            freezer = threading.Thread(target=freeze_later, daemon=True)
            try:
                detected = run_one(peer.port, freezer.start)
            finally:
                if freezer.ident is not None:  # started: wait for the freeze before thawing
                    freezer.join(5)
                peer.thaw()
            if detected is None or not froze_at:
                raise NetcourseTimeout(f"{result.mechanism} did not notice the frozen peer")
            if detected < froze_at[0]:  # "dead" while still alive: a late PONG, not a death
                result.false_alarms += 1
                if result.false_alarms > trials:
                    raise NetcourseError(f"{result.mechanism}: {result.false_alarms} false alarms; the machine is "
                                         "too busy for these settings (try a longer timeout)")
                continue
            result.seconds.append(detected - froze_at[0])
    return result


def _check_settings(interval: float, timeout: float) -> None:
    if not 0 < interval <= 10 or not 0 < timeout <= 10:
        raise ValueError("interval and timeout must be between 0 and 10 seconds")


def heartbeat_detection(interval: float = 0.2, timeout: float = 0.3, *, trials: int = 5, seed: int = 1,
                        over: str = "beat") -> Detection:
    """Freeze the peer process at a random moment, ``trials`` times; time how long the heartbeat takes to notice.

    ``over="beat"``: PING/PONG frames of the course's length-prefixed protocol; ``over="websocket"``: WebSocket
    ping and pong control frames, sent by the course's own client (``clients.websocket.RawClient``).
    """
    _check_settings(interval, timeout)
    limit = 4 * interval + 2 * timeout + 2
    if over == "beat":
        def run_one(port: int, start_freezer) -> float | None:
            with BeatClient("127.0.0.1", port) as client:
                start_freezer()
                return _heartbeat_until_dead(client, interval, timeout, limit)

        return _trials(Detection("application heartbeat (PING/PONG)", interval, timeout), "beat", trials, seed, run_one)
    if over == "websocket":
        from ..clients.websocket import Address, RawClient

        def run_ws(port: int, start_freezer) -> float | None:
            with RawClient(Address("127.0.0.1", port), nodelay=True) as client:
                if not client.accepted:
                    raise NetcourseError(f"the WebSocket peer refused the handshake: {client.response[:80]!r}")
                start_freezer()
                return _ws_heartbeat_until_dead(client, interval, timeout, limit)

        return _trials(Detection("WebSocket ping/pong (the course's client)", interval, timeout), "websocket",
                       trials, seed, run_ws)
    raise ValueError("over must be 'beat' or 'websocket'")


def aiohttp_heartbeat_detection(heartbeat: float = 0.6, *, trials: int = 5, seed: int = 1) -> Detection:
    """aiohttp's own WebSocket heartbeat, ``ClientSession.ws_connect(heartbeat=…)``, against a frozen peer.

    aiohttp sends a ping ``heartbeat`` seconds after it last received anything, and gives up when no pong
    has come ``heartbeat / 2`` seconds later: one setting for both, so its interval is twice its timeout.
    ``ws.receive()`` then returns an ERROR message (a ``ServerTimeoutError``).
    """
    import aiohttp

    from ..runtime.waiting import run_async

    _check_settings(heartbeat, heartbeat / 2)
    limit = 3 * heartbeat + 2

    async def one(port: int, start_freezer) -> float | None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws", heartbeat=heartbeat,
                                          origin="http://127.0.0.1") as ws:
                start_freezer()
                try:
                    msg = await ws.receive(timeout=limit)
                except asyncio.TimeoutError:
                    return None
                if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE):
                    return time.monotonic()
                raise NetcourseError(f"the WebSocket peer sent {msg.type.name} instead of staying silent")

    return _trials(Detection(f"aiohttp ws_connect(heartbeat={heartbeat:g})", heartbeat, heartbeat / 2), "websocket",
                   trials, seed, lambda port, start: run_async(one(port, start), limit + 10))


def compare_heartbeats(interval: float = 0.2, timeout: float = 0.3, *, trials: int = 5, seed: int = 1) -> list[Detection]:
    """The three application heartbeats against a frozen peer, run side by side (each its own peer process):
    length-prefixed PING/PONG and WebSocket ping/pong with ``interval`` and ``timeout``, and aiohttp's
    ``heartbeat=interval`` (whose timeout is then fixed at half the interval)."""
    from concurrent.futures import ThreadPoolExecutor

    _check_settings(interval, timeout)
    jobs = [
        lambda: heartbeat_detection(interval, timeout, trials=trials, seed=seed),
        lambda: heartbeat_detection(interval, timeout, trials=trials, seed=seed + 1, over="websocket"),
        lambda: aiohttp_heartbeat_detection(interval, trials=trials, seed=seed + 2),
    ]
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="heartbeat") as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]


# -- 3b. a heartbeat that closes and reconnects -----------------------------------------------------------


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
    from ..runtime.waiting import run_async

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


# -- 4. TCP's own mechanisms, on the emulated link -------------------------------------------------------


def keepalive_defaults() -> dict[str, int]:
    """This machine's keepalive settings (Linux sysctls), seconds and probes."""
    out = {}
    for name in ("tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes"):
        try:
            out[name] = int(open(f"/proc/sys/net/ipv4/{name}").read())
        except OSError:
            pass
    return out


@dataclass
class TcpDetection:
    """TCP noticing a peer that vanished (the link's loss switch at 100 %).

    Attributes:
        mechanism: "keepalive" or "user timeout".
        settings: the socket options used.
        seconds: from the switch to the error the application saw (None when replayed: no live run).
        error: the error ``recv`` raised.
        capture: the packets at the client's end of the link (tap: live; otherwise the recording).
        mode: the link's mode.
    """

    mechanism: str
    settings: dict[str, int]
    seconds: float | None
    error: str
    capture: Capture | None
    mode: str

    def into_silence(self) -> set[int]:
        """Row numbers of what the client sent into the silence: from the first probe (or resend) on."""
        if self.capture is None:
            return set()
        rows = self.capture.table()
        first = next((r.no for r in self.probes()), None)
        if first is None:  # user timeout: from the first resend on
            seen, first = set(), None
            for r in rows:
                if r.direction == C2S and r.payload:
                    if r.seq in seen:
                        first = r.no
                        break
                    seen.add(r.seq)
            first = first - 1 if first is not None else None  # the original went into the silence too
        return {r.no for r in rows if first is not None and r.no >= first and r.direction == C2S}

    def probes(self) -> list:
        """Keepalive probes in the capture: bare ACKs from the client, no data, sent after an idle half
        second or more (the probes' timing; their sequence number is left for the learner to read)."""
        if self.capture is None:
            return []
        rows = self.capture.table()
        last_data = max((r.t for r in rows if r.payload), default=0.0)
        return [r for r in rows if r.direction == C2S and not r.payload and r.flags == "A" and r.t >= last_data + 0.5]


def _tcp_detection(mechanism: str, name: str, options: dict[str, int], send_data: bool, timeout: float) -> TcpDetection:
    from ..apps.echo import tcp_echo

    with link(rtt_ms=10) as net:
        srv = net.serve(tcp_echo, name="echo")
        net.announce()

        def client() -> tuple[float | None, str]:
            with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
                for opt, value in options.items():
                    sock.setsockopt(*_option(opt), value)
                sock.sendall(b"hello")
                sock.recv(100)
                if net.mode != "tap":
                    return None, "(relay: no live run)"
                net.set_loss(1.0)
                t0 = time.monotonic()
                if send_data:
                    sock.sendall(b"are you there?")
                sock.settimeout(timeout)
                try:
                    data = sock.recv(100)
                    error = "b'' (end of stream)" if not data else f"data {data!r}"
                except OSError as exc:
                    error = f"{type(exc).__name__}: {os.strerror(exc.errno) if exc.errno else exc}"
                return time.monotonic() - t0, error

        with net.capture(srv.port, scenario=name) as cap:
            seconds, error = net.near(client, timeout + 10)
        if net.mode != "tap":
            error = "ETIMEDOUT (in the recorded run)"
        return TcpDetection(mechanism, options, seconds, error, cap, net.mode)


def _option(name: str) -> tuple[int, int]:
    return {
        "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "TCP_KEEPINTVL": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "TCP_KEEPCNT": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "TCP_USER_TIMEOUT": (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18)),
    }[name]


@scenario("keepalive_probes")
def keepalive_detection(idle: int = 1, interval: int = 1, count: int = 3) -> TcpDetection:
    """TCP keepalive with shrunk settings finds a silent peer: ``idle`` + ``count`` × ``interval`` seconds."""
    opts = {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": idle, "TCP_KEEPINTVL": interval, "TCP_KEEPCNT": count}
    return _tcp_detection("keepalive", "keepalive_probes", opts, False, idle + interval * (count + 2) + 3)


@scenario("user_timeout")
def user_timeout_detection(timeout_ms: int = 1000) -> TcpDetection:
    """TCP_USER_TIMEOUT (RFC 5482): data unacknowledged for ``timeout_ms`` kills the connection."""
    return _tcp_detection("user timeout", "user_timeout", {"TCP_USER_TIMEOUT": timeout_ms}, True, timeout_ms / 1000 + 5)


# -- exercises ---------------------------------------------------------------------------------------------


def predict_worst_detection(interval: float, timeout: float) -> Prediction:
    """Predict the worst detection time of an application heartbeat (checked against the theory, shown
    beside the run's worst trial)."""
    def explain(given: float, measured: float) -> str:
        return (f"The peer can freeze just after answering a PING: the next PING leaves up to {interval:g} s later, "
                f"and only {timeout:g} s after that PING is its PONG overdue. Worst case interval + timeout = "
                f"{interval + timeout:g} s; best case timeout = {timeout:g} s (it froze just before a PING). Compare "
                "your trials' worst above: random freezes approach the worst case but rarely hit it exactly, and "
                "scheduling can add a few milliseconds on top.")

    return Prediction(
        f"A client sends a PING every {interval:g} s and declares the peer dead when no PONG has come back "
        f"{timeout:g} s after a PING. The peer freezes at a random moment. What is the longest it can take to "
        "notice, in seconds?",
        measure=lambda d: d.interval + d.timeout, unit="s", tolerance=0.0, floor=0.02,
        says="the worst case, which your trials approach (see their worst above), is", explain=explain,
    )


def exercise_probe_seq(det: TcpDetection) -> Exercise:
    """The keepalive probe's seq relative to the last byte sent, from the learner's own capture."""
    rows = det.capture.table() if det.capture is not None else []
    data_end = max((r.seq + r.payload for r in rows if r.direction == C2S and r.payload), default=1)
    probes = det.probes()
    seq = probes[0].seq if probes else None
    return Exercise(
        "In your capture (without capture rights: the course's recording of the same run), find the client's "
        "keepalive probes: segments with no payload, sent after the link went silent. Take the sequence number of the next byte the client would send (the last data "
        "segment's seq + len). What is the probe's seq minus that number?",
        answer=(seq - data_end) if seq is not None else None,
        hint="The probes are the C→S rows with flags 'A', payload 0, at the end of keepalive.capture.table(); "
        "the last data row is the last C→S row with a payload.",
        explanation="−1: a probe carries the sequence number of a byte the peer already acknowledged (seq − 1), "
        "so a live peer must answer it with an ACK, while it carries no new data (RFC 9293 §3.8.4).",
        kind="capture",
    )


def exercise_echo_time(run: DuplexTicks) -> Exercise:
    """The time from the client's first message to its echo, from the learner's own capture."""
    rows = run.capture.table()
    sent = next((r for r in rows if r.direction == C2S and r.app.startswith("MSG")), None)
    echo = next((r for r in rows if sent is not None and r.direction == S2C and r.app.startswith("MSG")
                 and r.t >= sent.t), None)
    if sent is None or echo is None:
        raise NetcourseError("the capture holds no message and echo: run duplex_ticks() again")
    ms = round((echo.t - sent.t) * 1000, 3)
    return Exercise(
        "In your capture the client sent MSG frames and the server echoed them, between its TICKs. How many "
        "milliseconds passed from the client's first MSG packet to the server's echo of it (within 0.05 ms)?",
        answer=ms,
        tolerance=0.05,
        hint="In duplex.capture.table(), find the first C→S row whose app starts with 'MSG', then the first S→C "
        "row after it whose app starts with 'MSG'; subtract their t.",
        explanation=f"{ms:.3f} ms: one trip through two kernels and the server's event loop, on loopback. The "
        "ticks kept coming meanwhile: the two directions of one connection are independent.",
        kind="capture",
    )


def tradeoff_knob(measured: Detection | None = None, interval: float = 0.2, timeout: float = 0.3):
    """Section 4's knob: detection time and heartbeat traffic for an interval and a timeout (arithmetic, instant)."""
    from ..course import plots

    return plots.heartbeat_tradeoff(interval, timeout, measured=measured)


def predict_frozen_unacked() -> Prediction:
    """Predict what a frozen peer's kernel does with new data."""
    def explain(given: float, measured: float) -> str:
        return ("SIGSTOP freezes the process, not its kernel: TCP lives in the kernel, which goes on receiving, "
                "buffering and acknowledging. So the client's kernel has nothing unacknowledged, and TCP (keepalive "
                "included: the frozen peer's kernel answers the probes too) sees a healthy connection. Only the "
                "application can notice that nobody reads: an application heartbeat.")

    return Prediction(
        "The peer process is frozen (SIGSTOP) while its connection stays open. The client writes 100 bytes, and "
        "0.1 s later 100 bytes more. 0.1 s after that, how many of the client's segments are still waiting to be "
        "acknowledged?",
        measure=lambda deaths: next(d.unacked for d in deaths if d.kind == "frozen process"),
        unit="segments", tolerance=0.0, explain=explain,
    )


# -- half-open: one side forgot -------------------------------------------------------------------------


@dataclass
class HalfOpen:
    """A connection whose far side forgot it while the path was down.

    Attributes:
        error: what the client's next receive raised after it sent into the forgotten connection.
        capture: the packets at the client's end (tap: live; otherwise the recording).
        mode: the link's mode.
    """

    error: str
    capture: Capture
    mode: str

    def resets(self) -> list:
        """RST segments from the far side in the capture."""
        return [r for r in self.capture.table() if r.direction == S2C and "R" in r.flags]


@scenario("half_open")
def half_open() -> HalfOpen:
    """The far side drops its end of a connection without a word reaching the client (the path is down,
    and it aborts: SO_LINGER 0 frees the socket at once); the path comes back; the client sends; the far
    kernel, which knows no such connection, answers RST (RFC 9293 §3.5.1)."""
    import struct

    with link(rtt_ms=10) as net:
        near, far = net.addresses
        listener = net.far(lambda: socket.create_server((far, 0)))
        port = listener.getsockname()[1]
        net.announce()
        try:
            with net.capture(port, scenario="half_open") as cap:
                if net.mode != "tap":
                    return HalfOpen("ConnectionResetError (recorded run)", cap, net.mode)

                def client() -> str:
                    with socket.create_connection((far, port), timeout=5) as sock:
                        conn, _ = listener.accept()
                        sock.sendall(b"hello")
                        conn.recv(100)
                        net.set_loss(1.0)  # the path goes down ...
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        conn.close()  # ... and the far side forgets (its RST is lost on the way)
                        listener.close()
                        time.sleep(0.1)
                        net.set_loss(0.0)  # the path comes back
                        sock.sendall(b"are you still there?")
                        sock.settimeout(3)
                        try:
                            data = sock.recv(100)
                            return "b'' (end of stream)" if not data else f"data {data!r}"
                        except OSError as exc:
                            return type(exc).__name__

                error = net.near(client, 20)
        finally:
            listener.close()
    return HalfOpen(error, cap, net.mode)


# -- coming back: reconnecting with back-off --------------------------------------------------------------


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
    event loop, for at most ``limit`` seconds.
    """
    from ..runtime.backoff import Backoff
    from ..runtime.waiting import run_async

    if not 1 <= clients <= 500:
        raise ValueError("clients must be between 1 and 500")
    if not 0 < down_for <= 3 or not 0 < base <= cap <= 2:
        raise ValueError("need 0 < down_for <= 3 and 0 < base <= cap <= 2 (seconds)")
    rng = random.Random(seed)
    socks = {name: socket.socket() for name in ("no jitter", "full jitter")}

    async def main() -> dict[str, list[tuple[float, bool]]]:
        loop = asyncio.get_running_loop()
        logs: dict[str, list[tuple[float, bool]]] = {name: [] for name in socks}
        servers = []
        for sock in socks.values():
            sock.bind(("127.0.0.1", 0))  # bound, not listening: a SYN meets an RST
            sock.setblocking(False)
        t0 = loop.time()

        async def client(name: str, port: int, backoff: Backoff) -> None:
            while loop.time() - t0 < limit:
                await asyncio.sleep(backoff.next())  # the first attempt waits too: all lost the server at once
                began = loop.time() - t0  # when the SYN left: the attempt's time
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except ConnectionRefusedError:
                    logs[name].append((began, False))
                    continue
                logs[name].append((began, True))
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
                return

        async def come_back() -> None:
            await asyncio.sleep(down_for)
            for sock in socks.values():
                sock.listen(clients + 16)
                servers.append(await asyncio.start_server(_hang_up, sock=sock))

        tasks = [asyncio.create_task(come_back())]
        for name, sock in socks.items():
            port = sock.getsockname()[1]
            for _ in range(clients):
                backoff = Backoff(base, cap, rng=random.Random(rng.random()), jitter=name == "full jitter")
                tasks.append(asyncio.create_task(client(name, port, backoff)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for srv in servers:
                srv.close()
                await srv.wait_closed()
        return logs

    try:
        logs = run_async(main(), limit + 10)
    finally:
        for sock in socks.values():
            sock.close()
    return Storm(clients, down_for, base, cap, logs)


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


# -- a live pipe, driven by a button --------------------------------------------------------------------


class LivePipe:
    """Section 1 by hand: a connection to a ticking beat server, with a button that sends a message.

    **Connect** starts a beat server (ticking every ``tick`` s) and connects to it; **Send a message** writes
    a MSG frame, which the server echoes; the log shows both directions as they happen, on one connection.
    It closes itself after ``seconds``, on **Close**, or when anything fails, and the server stops with it:
    nothing outlives the pipe. Without a widget front end (a test, a script), call ``connect()``,
    ``click()`` and ``close()``.

    Attributes:
        lines: the log, oldest first: (seconds since connecting, direction "→" or "←", frame text).
        status: what the pipe is doing now, in words.
    """

    def __init__(self, seconds: float = 30.0, tick: float = 1.0, *, shown: int = 12) -> None:
        if not 0 < seconds <= 120 or not 0.05 <= tick <= 10:
            raise ValueError("seconds must be in (0, 120] and tick in [0.05, 10]")
        self.seconds, self.tick, self.shown = seconds, tick, shown
        self.lines: list[tuple[float, str, str]] = []
        self.status = "not connected"
        self._outbox: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clicks = 0
        self._open = False
        self._widget = None

    # the buttons' actions
    def connect(self) -> None:
        """Open the connection (in a background thread that ends by itself after ``seconds``)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.lines = []
        self._clicks = 0
        with self._lock:
            self._outbox = []
        self._open = True
        self._thread = threading.Thread(target=self._run, name="live pipe", daemon=True)
        self._set_status("connecting …")
        self._thread.start()

    def click(self) -> None:
        """Queue one message for the connection (what the Send button does)."""
        self._clicks += 1
        with self._lock:
            self._outbox.append(f"click {self._clicks}")

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection and stop the server; returns when both are gone."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        start = time.monotonic()
        try:
            with serve(make_beat_handler(tick=self.tick, idle_timeout=None), name="live pipe") as srv:
                with BeatClient(srv.host, srv.port) as client:
                    start = time.monotonic()
                    self._set_status(f"connected to 127.0.0.1:{srv.port}; closes by itself after {self.seconds:g} s")
                    while not self._stop.is_set() and time.monotonic() - start < self.seconds:
                        with self._lock:
                            outgoing, self._outbox = self._outbox, []
                        for text in outgoing:
                            client.send(Kind.MSG, text.encode())
                            self._log(time.monotonic() - start, "→", f"MSG {text!r}")
                        for frame in client.receive(0.05):
                            self._log(time.monotonic() - start, "←", _describe(frame))
                    client.send(Kind.CLOSE, b"bye")
            outcome = f"closed after {time.monotonic() - start:.1f} s; the server has stopped"
        except Exception as exc:  # shown to the learner, never left as a dangling thread
            outcome = f"closed: {type(exc).__name__}: {exc}"
        self._open = False
        self._set_status(outcome)

    def _log(self, t: float, direction: str, text: str) -> None:
        self.lines.append((t, direction, text))
        self._redraw()

    def _set_status(self, text: str) -> None:
        self.status = text
        self._redraw()

    # the widget
    def _redraw(self) -> None:
        if self._widget is None:
            return
        import html

        _, status, log = self._widget.children
        status.value = f"<b>{html.escape(self.status)}</b>"
        rows = [f"{t:6.2f} s  {'client → server' if d == '→' else 'server → client'}  {html.escape(x)}"
                for t, d, x in self.lines[-self.shown:]]
        log.value = "<pre style='margin:0'>" + ("\n".join(rows) or "(nothing yet)") + "</pre>"
        buttons = self._widget.children[0].children
        buttons[0].disabled = self._open
        buttons[1].disabled = buttons[2].disabled = not self._open

    def widget(self):
        """The buttons, the status line and the log, as an ipywidgets box."""
        from ipywidgets import HTML, Button, HBox, VBox

        if self._widget is None:
            connect = Button(description="Connect", icon="plug")
            send = Button(description="Send a message", icon="paper-plane", disabled=True)
            close = Button(description="Close", icon="times", disabled=True)
            connect.on_click(lambda _: self.connect())
            send.on_click(lambda _: self.click())
            close.on_click(lambda _: self.close())
            self._widget = VBox([HBox([connect, send, close]), HTML(), HTML()])
            self._widget.add_class("netcourse-live")  # the browser test finds it by this
            self._redraw()
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = dict(self.widget()._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = (f"🔌 A live pipe (run the notebook to use it): Connect, then Send a message while "
                                f"the server ticks every {self.tick:g} s; it closes itself after {self.seconds:g} s.")
        return bundle


def _describe(frame: Frame) -> str:
    body = frame.body.decode(errors="replace")
    if frame.kind is Kind.TICK:
        return f"TICK {body} (nobody asked)"
    if frame.kind is Kind.MSG:
        return f"MSG {body!r} (the echo)"
    return f"{frame.kind.name} {body!r}"


def predict_storm_return(down_for: float = 0.6, base: float = 0.05, cap: float = 0.4) -> Prediction:
    """Predict when clients backing off without jitter get back in (checked against the run's first connect)."""
    waits, t = [], 0.0
    from ..runtime.backoff import Backoff

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
    )
