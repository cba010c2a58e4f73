"""Notebook 08's shared set-up: a chat server with two users, a publisher on its loop, the newest id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile

from ...apps.chat import ChatServer
from ...runtime.server import serve

__all__ = ["chat_server", "publish", "server_last"]


@contextlib.contextmanager
def chat_server(page: int = 50, **options):
    """A chat server with users ada and bob (both in "general" and "ada-bob") and eve (alone), serving."""

    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "server.db"), page=page, **options)
        server.add_user("ada", "correct horse", ("general", "ada-bob"))
        server.add_user("bob", "battery staple", ("general", "ada-bob"))
        server.add_user("eve", "eavesdrop", ("eve-only",))
        with serve(server.app(), name="chat") as srv:
            yield server, srv, d


def publish(server, srv, n: int, *, conversation: str = "general", gap: float = 0.0) -> None:
    async def go():
        for i in range(n):
            await server.post("bob", conversation, f"{conversation} message {server_last(server) + 1}")
            await asyncio.sleep(gap)

    asyncio.run_coroutine_threadsafe(go(), srv.loop).result(60 + n * gap)


def server_last(server) -> int:
    return server.last_id()
