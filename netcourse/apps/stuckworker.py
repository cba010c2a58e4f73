"""Notebook 04: a WebSocket server whose handler passes every message to a worker task, and a message that
deadlocks the worker while the handler's read loop, and the library's PONGs with it, carry on.

The handler reads frames (``async for msg in ws``) and puts each text message on a queue; a worker task takes
them one at a time and answers ``pong-app`` to ``ping-app``, as a chat server's worker would store a message
and acknowledge it. The text ``stall`` makes the worker wait for an event nobody sets, a deadlock: the
queue fills, no answer leaves, yet aiohttp still answers every WebSocket PING, because it does so inside
``ws.receive()``, which the handler's loop keeps calling.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from .safety import safe_app

__all__ = ["make_worker_app", "QUEUE"]

QUEUE = 64  # messages a stuck worker lets pile up before the handler drops new ones


def make_worker_app() -> web.Application:
    """A new app with the handler-and-worker WebSocket endpoint at ``/ws``."""
    app = safe_app()
    app.router.add_get("/ws", _socket)
    return app


async def _socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=True, max_msg_size=4096)
    await ws.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE)
    never = asyncio.Event()  # a lock nobody releases

    async def worker() -> None:
        while True:
            text = await queue.get()
            if text == "stall":
                await never.wait()
            elif text == "ping-app":
                await ws.send_str("pong-app")

    task = asyncio.create_task(worker())
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(msg.data)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return ws
