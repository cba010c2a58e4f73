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

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from ..apps.beat import make_beat_handler
from ..course.exercises import Exercise, Prediction
from ..errors import NetcourseError, NetcourseTimeout
from ..network.link import link
from ..protocols.beat import Decoder, Frame, Kind, detection_bounds, encode, heartbeat_cost
from ..runtime.server import serve
from ..runtime.tcpinfo import tcp_info
from ..traffic.packets import C2S, S2C
from ..traffic.sniffer import Capture, capture
from .registry import scenario

__all__ = [
    "BeatClient", "peer_process", "DuplexTicks", "duplex_ticks", "Death", "peer_deaths", "Detection",
    "heartbeat_detection", "TcpDetection", "keepalive_detection", "user_timeout_detection", "keepalive_defaults",
    "heartbeat_cost", "detection_bounds", "predict_worst_detection", "predict_frozen_unacked", "exercise_probe_seq",
    "exercise_tick_gap", "tradeoff_knob", "HalfOpen", "half_open",
]



# -- a client and a peer process --------------------------------------------------------------------


class BeatClient:
    """A blocking client for the beat protocol; every read has a deadline. Use as a context manager."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder()
        self._pending: list[Frame] = []

    def __enter__(self) -> "BeatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, kind: Kind, body: bytes = b"") -> None:
        self.sock.sendall(encode(kind, body))

    def receive(self, timeout: float) -> list[Frame]:
        """Frames that arrive within ``timeout`` seconds (at least one, or none if the time runs out).

        Raises ``ConnectionError`` when the peer closed or reset the connection.
        """
        if self._pending:
            out, self._pending = self._pending, []
            return out
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return []
            if not data:
                raise ConnectionAbortedError("the peer closed the connection (read returned b'')")
            frames = self.decoder.feed(data)
            if frames:
                return frames

    def close(self) -> None:
        self.sock.close()


class peer_process:
    """A beat server in a child process (so it can be frozen or killed): ``with peer_process() as peer:``.

    ``peer.port``; ``peer.freeze()`` (SIGSTOP), ``peer.thaw()`` (SIGCONT), ``peer.kill()`` (SIGKILL). The
    child is always killed on exit.
    """

    def __init__(self, tick: float = 0.0, *, timeout: float = 20.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen([sys.executable, "-m", "netcourse.apps.beat", str(tick)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = self._first_line(timeout)
        try:
            self.port = int(line)
        except ValueError:
            self.kill()
            err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
            raise NetcourseError(f"The peer process did not start: {line!r} {err}") from None

    def _first_line(self, timeout: float) -> str:
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not out:
            self.kill()
            raise NetcourseTimeout(f"The peer process did not say its port within {timeout:g} s.")
        return out[0].decode().strip()

    def __enter__(self) -> "peer_process":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


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
    """The client reads and writes after its peer closes, crashes, freezes and (root) vanishes."""
    out = []
    # clean close: the server closes a client that stays quiet for 0.3 s (a CLOSE frame, then a FIN); the
    # death is that moment, 0.3 s after the connection opened
    with serve(make_beat_handler(tick=None, idle_timeout=0.3), name="beat") as srv:
        with BeatClient(srv.host, srv.port) as client:
            opened = time.monotonic()
            out.append(_observe(client, "clean close", lambda: time.sleep(max(0.0, opened + 0.3 - time.monotonic())),
                                wait=wait))
    with peer_process() as peer:
        with BeatClient("127.0.0.1", peer.port) as client:
            client.send(Kind.PING, b"1")
            client.receive(2.0)
            out.append(_observe(client, "crash", peer.kill, wait=wait))
    with peer_process() as peer:
        with BeatClient("127.0.0.1", peer.port) as client:
            client.send(Kind.PING, b"1")
            client.receive(2.0)
            out.append(_observe(client, "frozen process", peer.freeze, wait=wait))
            peer.thaw()
    with link(rtt_ms=10) as net:
        if net.mode != "tap":
            out.append(Death("vanished network", "(needs the tap link: root)", None, "—", None))
            return out
        srv = net.serve(make_beat_handler(tick=None, idle_timeout=None), name="beat")

        def far_side_vanishes() -> Death:
            with BeatClient(srv.host, srv.port) as client:
                client.send(Kind.PING, b"1")
                client.receive(2.0)
                return _observe(client, "vanished network", lambda: net.set_loss(1.0), wait=wait)

        out.append(net.near(far_side_vanishes, 30))
    return out


# -- 3. an application heartbeat ------------------------------------------------------------------------


@dataclass
class Detection:
    """Times from a peer's death to its detection, over several trials.

    Attributes:
        mechanism: what detected it.
        interval, timeout: the heartbeat's settings, seconds.
        seconds: one detection time per trial.
    """

    mechanism: str
    interval: float
    timeout: float
    seconds: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else float("nan")

    @property
    def worst(self) -> float:
        return max(self.seconds, default=float("nan"))

    def __repr__(self) -> str:
        lo, hi = detection_bounds(self.interval, self.timeout)
        return (f"{self.mechanism}, interval {self.interval:g} s, timeout {self.timeout:g} s: {len(self.seconds)} "
                f"trials, mean {self.mean:.2f} s, worst {self.worst:.2f} s (theory: between {lo:g} and {hi:g} s)")


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


def heartbeat_detection(interval: float = 0.2, timeout: float = 0.3, *, trials: int = 5, seed: int = 1) -> Detection:
    """Freeze the peer process at a random moment, ``trials`` times; time how long the heartbeat takes to notice."""
    if not 0 < interval <= 10 or not 0 < timeout <= 10:
        raise ValueError("interval and timeout must be between 0 and 10 seconds")
    rng = random.Random(seed)
    result = Detection("application heartbeat (PING/PONG)", interval, timeout)
    with peer_process() as peer:
        for _ in range(trials):
            with BeatClient("127.0.0.1", peer.port) as client:
                froze_at: list[float] = []

                def freeze_later(delay: float = rng.uniform(interval, 2 * interval)) -> None:
                    time.sleep(delay)
                    froze_at.append(time.monotonic())
                    peer.freeze()

                freezer = threading.Thread(target=freeze_later, daemon=True)
                freezer.start()
                detected = _heartbeat_until_dead(client, interval, timeout, limit=4 * interval + 2 * timeout + 2)
                freezer.join(5)
                peer.thaw()
                if detected is None or not froze_at:
                    raise NetcourseTimeout("the heartbeat did not notice the frozen peer")
                result.seconds.append(detected - froze_at[0])
    return result


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
    from .transport import tcp_echo

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
                f"{interval + timeout:g} s; best case timeout = {timeout:g} s (it froze just before a PING). Your "
                "trials' worst comes close to the worst case without reaching it: a few random trials rarely hit it.")

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


def exercise_tick_gap(run: DuplexTicks) -> Exercise:
    """The server's tick period, from the learner's own capture."""
    times = [r.t for r in run.capture.table() if r.direction == S2C and r.app.startswith("TICK")]
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    median = gaps[len(gaps) // 2] * 1000 if gaps else 0.0
    return Exercise(
        "In your capture the server sent TICK frames nobody asked for. What is the median time between two "
        "ticks, in milliseconds (within 5 ms)?",
        answer=round(median, 1),
        tolerance=5.0,
        hint="Take the S→C rows of duplex.capture.table() whose app starts with 'TICK'; compute the differences "
        "of their t, sort them and take the middle one.",
        explanation=f"{median:.0f} ms: the server's tick period. The client never asked: a persistent, full-duplex "
        "connection lets the server speak first.",
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
        "The peer process is frozen (SIGSTOP) while its connection stays open. The client writes 100 bytes. "
        "0.2 s later, how many of the client's segments are still waiting to be acknowledged?",
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
