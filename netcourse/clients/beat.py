"""The heartbeat lesson's clients (notebook 04), on the course's length-prefixed beat protocol
(``protocols.beat``; the server is ``apps.beat``).

- ``BeatClient``: a blocking socket that sends and receives beat frames, every wait bounded.
- ``peer_process``: the beat server in a child process, so a lesson can freeze (SIGSTOP), thaw and kill it.
- ``keep_connected``: a client that heartbeats one connection and, when a pong is late, closes it and
  connects again after a capped, jittered back-off (``runtime.heartbeat`` times the pings).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from ..errors import NetcourseError, NetcourseTimeout
from ..protocols.beat import Decoder, Frame, Kind, encode
from ..runtime.backoff import Backoff
from ..runtime.heartbeat import Heartbeat

__all__ = ["BeatClient", "peer_process", "keep_connected"]


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

    ``protocol="websocket"`` serves the course's WebSocket echo instead (which answers pings with pongs).

    ``peer.port``; ``peer.freeze()`` (SIGSTOP), ``peer.thaw()`` (SIGCONT), ``peer.kill()`` (SIGKILL). The
    child is always killed on exit.
    """

    def __init__(self, tick: float = 0.0, *, protocol: str = "beat", timeout: float = 20.0) -> None:
        if protocol not in ("beat", "websocket"):
            raise ValueError("protocol must be 'beat' or 'websocket'")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        arg = "ws" if protocol == "websocket" else str(tick)
        self.proc = subprocess.Popen([sys.executable, "-m", "netcourse.apps.beat", arg], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            line = self._first_line(timeout)
        except BaseException:  # an interrupt while it starts: the child goes too
            self.kill()
            raise
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


async def _one_connection(host: str, port: int, interval: float, timeout: float, until: float,
                          note, round_trips: list[float], connect_timeout: float = 3.0) -> bool:
    """Connect, heartbeat until the peer is declared dead (or ``until`` on the loop's clock); close at once.
    True if at least one pong came."""
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        note(f"connect failed: {type(exc).__name__}")
        return False
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    note("connected")

    async def ping(n: int) -> None:
        writer.write(encode(Kind.PING, str(n).encode()))
        await writer.drain()

    beat = Heartbeat(ping, interval=interval, timeout=timeout)

    async def read() -> str:
        decoder = Decoder()
        while True:
            try:
                data = await reader.read(4096)
            except (ConnectionError, OSError) as exc:  # an RST: a crashed peer's kernel answering our pings
                return f"closed: {type(exc).__name__} (the peer's kernel reset the connection)"
            if not data:
                return "closed: the peer closed the connection"
            try:
                frames = decoder.feed(data)
            except Exception as exc:  # the framing broke: nothing after it can be trusted
                return f"closed: bad framing ({exc})"
            for f in frames:
                if f.kind is Kind.PONG and f.body.isdigit():
                    before = beat.answered
                    beat.pong(int(f.body))
                    if before == 0 and beat.answered == 1:
                        note(f"first pong, {beat.round_trips[0] * 1000:.0f} ms after its ping")
                elif f.kind is Kind.CLOSE:
                    return f"closed by the peer: {f.body.decode(errors='replace')}"

    reading = asyncio.create_task(read())
    beating = asyncio.create_task(beat.run())
    try:
        done, _ = await asyncio.wait({reading, beating}, timeout=max(0.0, until - loop.time()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if beating in done:
            failed = beating.exception()
            note(f"closed: {type(failed).__name__} while sending a ping" if failed is not None else
                 f"dead: {beating.result()}; connection closed")
        elif reading in done:
            note(reading.result())
    finally:
        for task in (reading, beating):
            task.cancel()
        await asyncio.gather(reading, beating, return_exceptions=True)
        writer.transport.abort()  # close now: a frozen peer would never read a polite goodbye
        round_trips += beat.round_trips
    return beat.answered > 0


async def keep_connected(host: str, port: int, *, interval: float, timeout: float, run_for: float,
                         backoff: Backoff | None = None, events: list[tuple[float, str]] | None = None,
                         round_trips: list[float] | None = None, started: float | None = None) -> int:
    """Keep a heartbeat connection to a beat server for ``run_for`` seconds: when a pong is late, close the
    connection and connect again after a capped, jittered back-off delay (reset once a connection has had a
    pong). Events go to ``events`` as (seconds since ``started``, text). Every wait has a deadline: the
    connect (3 s), each ping's pong (``timeout``), the back-off. Returns how many asyncio tasks it started
    are still alive when it ends (0: nothing leaked)."""
    loop = asyncio.get_running_loop()
    before = asyncio.all_tasks()
    t0 = loop.time() if started is None else started
    until = t0 + run_for
    backoff = backoff or Backoff(0.05, 0.4)
    events = [] if events is None else events
    round_trips = [] if round_trips is None else round_trips

    def note(text: str) -> None:
        events.append((loop.time() - t0, text))

    while loop.time() < until:
        try:
            answered = await _one_connection(host, port, interval, timeout, until, note, round_trips)
        except OSError as exc:  # anything the connection's own handling missed: still a reason, never a crash
            note(f"closed: {type(exc).__name__}")
            answered = False
        if answered:
            backoff.reset()
        if loop.time() >= until:
            break
        delay = min(backoff.next(), max(0.0, until - loop.time()))
        note(f"waiting {delay * 1000:.0f} ms (back-off) before connecting again")
        await asyncio.sleep(delay)
    return len(asyncio.all_tasks() - before)
