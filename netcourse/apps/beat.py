"""The heartbeat server of notebook 04: a persistent, full-duplex pipe that notices when a client is gone.

A stream handler for ``serve()`` speaking ``protocols.beat``: it answers PING with PONG, echoes MSG, pushes
a TICK every ``tick`` seconds without being asked (the pipe is full duplex), and closes a connection, with
a CLOSE frame saying why, when the client

- stops pinging for ``idle_timeout`` seconds (the server side of the heartbeat);
- sends half a frame and then nothing for ``frame_deadline`` seconds;
- pings faster than ``max_pings`` per second (a flood: a token bucket refills at that rate);
- breaks the framing.

Every wait has a deadline on the loop's monotonic clock, and the tick task ends with the connection.
``python -m netcourse.apps.beat`` runs one in a process of its own (notebook 04 freezes and kills it); with
the argument ``ws`` that process serves the course's WebSocket echo instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from ..errors import BeatProtocolError
from ..protocols.beat import Decoder, Kind, encode

__all__ = ["BeatServer", "Closed", "make_beat_handler"]


class Closed(list):
    """The reasons the server gave for closing connections, in order (for lessons and tests)."""


class BeatServer:
    """A stream handler for ``serve()``; ``closed`` lists why each connection was closed.

    Args:
        tick: seconds between the server's pushes (None: no pushes).
        idle_timeout: close a client that sent nothing (no PING, no MSG) for this long (None: never).
        frame_deadline: close a client that leaves half a frame waiting this long.
        max_pings: PINGs per second allowed (burst: the same number); more closes the connection.
    """

    def __init__(self, *, tick: float | None = 0.2, idle_timeout: float | None = 3.0, frame_deadline: float = 1.0,
                 max_pings: float = 20.0):
        self.tick, self.idle_timeout, self.frame_deadline, self.max_pings = tick, idle_timeout, frame_deadline, max_pings
        self.closed = Closed()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        ticks = asyncio.create_task(conn.ticker()) if self.tick else None
        reason = "client closed the connection"
        try:
            reason = await conn.serve()
        except (ConnectionError, asyncio.TimeoutError, OSError) as exc:
            reason = f"connection lost: {type(exc).__name__}"
        finally:
            if ticks is not None:
                ticks.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ticks
            self.closed.append(reason)
            await conn.close(reason)


class _Connection:
    """One client: its deadlines, its bucket of PINGs, and the frames it is owed."""

    def __init__(self, server: BeatServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.reader, self.writer = server, reader, writer
        self.loop = asyncio.get_running_loop()
        self.decoder = Decoder()
        self.last_heard = self.refilled = self.loop.time()
        self.partial_since: float | None = None
        self.tokens = server.max_pings
        self.send_lock = asyncio.Lock()  # the ticker and the answers share the writer

    async def send(self, kind: Kind, body: bytes = b"") -> None:
        async with self.send_lock:
            self.writer.write(encode(kind, body))
            await asyncio.wait_for(self.writer.drain(), 5.0)

    async def ticker(self) -> None:
        """A TICK every ``tick`` seconds, unasked: the pipe is full duplex."""
        n = 0
        while True:
            await asyncio.sleep(self.server.tick)
            n += 1
            await self.send(Kind.TICK, str(n).encode())

    def deadline(self) -> tuple[float, str] | None:
        """The earliest deadline this client must meet, and what missing it means."""
        s, deadlines = self.server, []
        if s.idle_timeout is not None:
            deadlines.append((self.last_heard + s.idle_timeout, f"no PING or message for {s.idle_timeout:g} s"))
        if self.partial_since is not None:
            deadlines.append((self.partial_since + s.frame_deadline,
                              f"half a frame, then nothing for {s.frame_deadline:g} s"))
        return min(deadlines, default=None)

    async def serve(self) -> str:
        """Read, answer, until a deadline passes or the client leaves; returns why the connection ends."""
        while True:
            due = self.deadline()
            wait = (due[0] if due else self.loop.time() + 3600) - self.loop.time()
            try:
                data = await asyncio.wait_for(self.reader.read(4096), max(wait, 0.0))
            except asyncio.TimeoutError:
                return due[1]
            if not data:
                return "client closed the connection"
            try:
                frames = self.decoder.feed(data)
            except BeatProtocolError as exc:
                return f"protocol error: {exc}"
            now = self.loop.time()
            self.partial_since = (self.partial_since or now) if self.decoder.partial else None
            if frames:
                self.last_heard = now
            for frame in frames:
                if (reason := await self.answer(frame, now)) is not None:
                    return reason

    async def answer(self, frame, now: float) -> str | None:
        """PONG a PING (within the bucket), echo a MSG; a reason to close, or None."""
        if frame.kind is Kind.PING:
            rate = self.server.max_pings
            self.tokens, self.refilled = min(rate, self.tokens + (now - self.refilled) * rate), now
            if self.tokens < 1:
                return f"ping flood: more than {rate:g} PINGs per second"
            self.tokens -= 1
            await self.send(Kind.PONG, frame.body)
        elif frame.kind is Kind.MSG:
            await self.send(Kind.MSG, frame.body)
        elif frame.kind is Kind.CLOSE:
            return "client said goodbye"
        return None

    async def close(self, reason: str) -> None:
        """A CLOSE frame saying why (if the pipe still takes one), then the connection closed."""
        with contextlib.suppress(Exception):
            if not self.writer.is_closing():
                self.writer.write(encode(Kind.CLOSE, reason.encode()[:1000]))
                await asyncio.wait_for(self.writer.drain(), 1.0)
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def make_beat_handler(*, tick: float | None = 0.2, idle_timeout: float | None = 3.0, frame_deadline: float = 1.0,
                      max_pings: float = 20.0) -> BeatServer:
    """A ``BeatServer`` (see it for the arguments); ``handler.closed`` lists why each connection was closed."""
    return BeatServer(tick=tick, idle_timeout=idle_timeout, frame_deadline=frame_deadline, max_pings=max_pings)


def main(argv: list[str]) -> int:
    """Serve on 127.0.0.1 until killed; print the port on the first line (for notebook 04).

    ``python -m netcourse.apps.beat [TICK]`` serves the beat protocol (a TICK every TICK seconds, none if
    0); ``python -m netcourse.apps.beat ws`` serves the course's WebSocket echo instead (its ping/pong).
    """
    from ..runtime.server import serve

    what = argv[0] if argv else "0"
    if what == "ws":
        from .wsserver import make_ws_handler

        handler, name = make_ws_handler(), "websocket peer"
    else:
        handler, name = make_beat_handler(tick=float(what) or None, idle_timeout=None), "beat peer"
    with serve(handler, name=name) as srv:
        print(srv.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # until the parent closes our stdin (or kills us)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
