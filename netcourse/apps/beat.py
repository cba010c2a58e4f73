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

__all__ = ["make_beat_handler", "Closed"]


class Closed(list):
    """The reasons the server gave for closing connections, in order (for lessons and tests)."""


def make_beat_handler(
    *,
    tick: float | None = 0.2,
    idle_timeout: float | None = 3.0,
    frame_deadline: float = 1.0,
    max_pings: float = 20.0,
):
    """A stream handler for ``serve()``; ``handler.closed`` lists why each connection was closed.

    Args:
        tick: seconds between the server's pushes (None: no pushes).
        idle_timeout: close a client that sent nothing (no PING, no MSG) for this long (None: never).
        frame_deadline: close a client that leaves half a frame waiting this long.
        max_pings: PINGs per second allowed (burst: the same number); more closes the connection.
    """
    closed = Closed()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        decoder = Decoder()
        last_heard = loop.time()
        partial_since: float | None = None
        tokens, refilled = max_pings, loop.time()
        reason = "client closed the connection"
        send_lock = asyncio.Lock()

        async def send(kind: Kind, body: bytes = b"") -> None:
            async with send_lock:
                writer.write(encode(kind, body))
                await asyncio.wait_for(writer.drain(), 5.0)

        async def ticker() -> None:
            n = 0
            while True:
                await asyncio.sleep(tick)
                n += 1
                await send(Kind.TICK, str(n).encode())

        ticks = asyncio.create_task(ticker()) if tick else None
        try:
            while True:
                now = loop.time()
                deadlines = []
                if idle_timeout is not None:
                    deadlines.append((last_heard + idle_timeout, f"no PING or message for {idle_timeout:g} s"))
                if partial_since is not None:
                    deadlines.append((partial_since + frame_deadline, f"half a frame, then nothing for {frame_deadline:g} s"))
                wait = min((d for d, _ in deadlines), default=now + 3600) - now
                try:
                    data = await asyncio.wait_for(reader.read(4096), max(wait, 0.0))
                except asyncio.TimeoutError:
                    reason = min(deadlines)[1]
                    break
                if not data:
                    break
                try:
                    frames = decoder.feed(data)
                except BeatProtocolError as exc:
                    reason = f"protocol error: {exc}"
                    break
                now = loop.time()
                partial_since = (partial_since or now) if decoder.partial else None
                if frames:
                    last_heard = now
                stop = False
                for frame in frames:
                    if frame.kind is Kind.PING:
                        tokens = min(max_pings, tokens + (now - refilled) * max_pings)
                        refilled = now
                        if tokens < 1:
                            reason = f"ping flood: more than {max_pings:g} PINGs per second"
                            stop = True
                            break
                        tokens -= 1
                        await send(Kind.PONG, frame.body)
                    elif frame.kind is Kind.MSG:
                        await send(Kind.MSG, frame.body)
                    elif frame.kind is Kind.CLOSE:
                        reason = "client said goodbye"
                        stop = True
                        break
                if stop:
                    break
        except (ConnectionError, asyncio.TimeoutError, OSError) as exc:
            reason = f"connection lost: {type(exc).__name__}"
        finally:
            if ticks is not None:
                ticks.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ticks
            closed.append(reason)
            with contextlib.suppress(Exception):
                if not writer.is_closing():
                    writer.write(encode(Kind.CLOSE, reason.encode()[:1000]))
                    await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    handler.closed = closed  # type: ignore[attr-defined]
    return handler


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
