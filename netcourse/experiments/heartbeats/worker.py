"""Notebook 04, Going deeper: a stuck worker behind a live read loop. WebSocket PINGs keep being answered;
only a ping that the worker itself must answer finds out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ...apps.stuckworker import make_worker_app
from ...runtime.server import serve
from ...runtime.waiting import run_async

__all__ = ["StuckWorker", "stuck_worker"]


@dataclass
class StuckWorker:
    """What a client saw before and after the server's worker deadlocked.

    Attributes:
        interval: seconds between the client's pings (one WebSocket PING and one ``ping-app`` each time).
        timeout: seconds after which an unanswered ``ping-app`` means dead.
        stalled_at: seconds from the start when the client sent ``stall``.
        ws_pongs: times (s) of the WebSocket PONGs received.
        app_pongs: times (s) of the ``pong-app`` answers received.
        app_dead_at: when the application ping declared the server dead (s), or None.
        closed: True if the connection closed during the run (it should not).
    """

    interval: float
    timeout: float
    stalled_at: float
    ws_pongs: list[float] = field(default_factory=list)
    app_pongs: list[float] = field(default_factory=list)
    app_dead_at: float | None = None
    closed: bool = False

    def after(self, times: list[float]) -> int:
        return sum(1 for t in times if t > self.stalled_at)

    def __repr__(self) -> str:
        dead = ("never" if self.app_dead_at is None
                else f"{(self.app_dead_at - self.stalled_at) * 1000:.0f} ms after the deadlock")
        return (f"worker deadlocked at {self.stalled_at:.1f} s; the connection stayed {'closed' if self.closed else 'open'}\n"
                f"WebSocket PONGs:   {len(self.ws_pongs) - self.after(self.ws_pongs)} before, "
                f"{self.after(self.ws_pongs)} after  (aiohttp's read loop answers them)\n"
                f"application pongs: {len(self.app_pongs) - self.after(self.app_pongs)} before, "
                f"{self.after(self.app_pongs)} after  (only the worker answers them)\n"
                f"the application ping declared the server dead: {dead}")


def stuck_worker(*, interval: float = 0.2, timeout: float = 0.3, stall_at: float = 0.6,
                 duration: float = 1.6) -> StuckWorker:
    """Ping a handler-and-worker WebSocket server both ways, deadlock its worker at ``stall_at``, and record
    which pings are still answered."""
    import aiohttp

    result = StuckWorker(interval, timeout, stall_at)

    async def client(port: int) -> None:
        start = time.monotonic()
        pending: list[float] = []  # send times of unanswered ping-app messages
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws", autoping=False,
                                          origin=f"http://127.0.0.1:{port}") as ws:
                async def reader() -> None:
                    async for msg in ws:
                        now = time.monotonic() - start
                        if msg.type is aiohttp.WSMsgType.PONG:
                            result.ws_pongs.append(now)
                        elif msg.type is aiohttp.WSMsgType.TEXT and msg.data == "pong-app" and pending:
                            pending.pop(0)
                            result.app_pongs.append(now)
                    result.closed = True

                task = asyncio.create_task(reader())
                stalled = False
                try:
                    while (now := time.monotonic() - start) < duration:
                        if not stalled and now >= stall_at:
                            await ws.send_str("stall")
                            stalled = True
                        if pending and now - pending[0] > timeout and result.app_dead_at is None:
                            result.app_dead_at = pending[0] + timeout
                        await ws.ping()
                        await ws.send_str("ping-app")
                        pending.append(time.monotonic() - start)
                        await asyncio.sleep(interval)
                finally:
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass

    with serve(make_worker_app(), name="stuck worker") as srv:
        run_async(client(srv.port), duration + 10)
    return result
