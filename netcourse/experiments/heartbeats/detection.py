"""Notebook 04, section 3: an application heartbeat finds a frozen peer.

PING/PONG frames of the course's beat protocol, or WebSocket ping and pong, against a peer process frozen at
a random moment; the time to notice, over several trials, against the theory (``protocols.beat``).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from ...clients.beat import BeatClient, peer_process
from ...course.exercises import Exercise, Prediction, as_number
from ...errors import NetcourseError, NetcourseTimeout
from ...protocols.beat import Kind, detection_bounds

__all__ = ["Detection", "heartbeat_detection", "aiohttp_heartbeat_detection", "compare_heartbeats", "predict_worst_detection", "tradeoff_knob", "exercise_stuck_worker", "exercise_aiohttp_worst"]


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
    from ...protocols.wsconn import Pong
    from ...protocols.wsframe import Frame, Opcode

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
        from ...clients.websocket import Address, RawClient

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

    from ...runtime.waiting import run_async

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
        mistakes=[(lambda g, m: abs(g - timeout) < 0.01, "That is the best case (the peer froze just before a "
                   "PING); at worst the next PING is a whole interval away."),
                  (lambda g, m: abs(g - interval) < 0.01, "A PING that goes unanswered is only declared lost "
                   "after the timeout: add it.")],
    )


def tradeoff_knob(measured: Detection | None = None, interval: float = 0.2, timeout: float = 0.3):
    """Section 4's knob: detection time and heartbeat traffic for an interval and a timeout (arithmetic, instant)."""
    from ...course.plots.heartbeats import heartbeat_tradeoff

    return heartbeat_tradeoff(interval, timeout, measured=measured)


_LAYER_WORDS = {"app ping": "app ping", "application ping": "app ping", "app-level ping": "app ping",
                "application heartbeat": "app ping", "app heartbeat": "app ping",
                "application-level ping": "app ping", "websocket ping": "websocket ping", "ping": "websocket ping", "ws ping": "websocket ping",
                "ping/pong": "websocket ping", "keepalive": "keepalive", "tcp keepalive": "keepalive"}


def _layer(text: object) -> str:
    said = str(text).strip().lower().strip("'\".").removeprefix("an ").removeprefix("the ").removeprefix("a ")
    return _LAYER_WORDS.get(said, said)


def exercise_stuck_worker() -> Exercise:
    """Which heartbeat notices a stuck worker behind a live event loop: the layers that answer each one."""
    return Exercise(
        "A chat server's handler reads every frame (`async for msg in ws`) and passes each chat message to a "
        "worker task that stores it and answers. The worker deadlocks; the handler's loop and the event loop "
        "run on. The client watches three things: TCP keepalive, aiohttp's `heartbeat=10` (WebSocket PING "
        "frames), and an application 'ping' message that the worker answers like any other. Which one "
        "notices the deadlock: 'keepalive', 'websocket ping' or 'app ping'?",
        answer="app ping",
        normalise=_layer,
        hint="For each of the three, ask who writes the answer: the kernel, the WebSocket library, or the code "
        "that is stuck.",
        mistakes=[
            ("keepalive", "the server's *kernel* answers keepalive probes; it knows nothing of the worker, or "
             "even of the process, as the frozen peer above showed."),
            ("websocket ping", "aiohttp sends the PONG from inside `ws.receive()`, which the handler's loop still "
             "calls: pongs keep coming although no message is stored. (A browser answers PINGs itself too; a "
             "page's script never even sees them.)"),
        ],
        explanation="Only the application's own ping: its answer comes from the same code path as real work, "
        "so it stops when that path stops. Each heartbeat proves only that the layer answering it is alive: "
        "keepalive the kernel, a WebSocket PING the library's read loop, an app ping the application.",
    )


def exercise_aiohttp_worst(heartbeat: int = 30) -> Exercise:
    """aiohttp's heartbeat: the worst time to notice a peer that vanished, from its two timers."""
    worst = heartbeat + heartbeat / 2
    return Exercise(
        f"A chat client uses aiohttp's ws_connect(url, heartbeat={heartbeat}) and the connection is otherwise idle. "
        "The server's machine loses power. At most how many seconds pass before the client knows?",
        answer=worst,
        unit="s",
        # aiohttp rounds both deadlines up to whole seconds of its loop clock above 5 s: up to 2 s later
        check=lambda v: worst <= float(as_number(v, "s")) <= worst + 2,
        hint="Two timers run one after the other: one decides when to ask, the other how long to wait for the "
        "answer. When, at worst, does the first one start?",
        recipe=f"aiohttp pings after `heartbeat` seconds without incoming data, and waits heartbeat / 2 for the "
        f"pong: {heartbeat} + {heartbeat // 2}.",
        mistakes=[
            (heartbeat, f"that is when the PING leaves; then the client waits {heartbeat // 2} s for its PONG."),
            (heartbeat / 2, "that is only the wait for the PONG; the PING itself leaves after the idle interval."),
            (2 * heartbeat, "aiohttp waits half the interval for the PONG, not a whole one."),
        ],
        explanation=f"{worst:g} s: the last pong may have arrived just before the power went; the next ping leaves "
        f"{heartbeat} s after it, and the client gives up {heartbeat // 2} s later (interval + timeout, with aiohttp's "
        "timeout fixed at half the interval). Above 5 s aiohttp rounds both deadlines up to whole seconds of "
        f"its loop clock, so a real client may take a second or two more: {worst:g} to {worst + 2:g} s all count.",
    )
