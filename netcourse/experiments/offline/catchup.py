"""Notebook 08, section 5: what the log costs: a fresh client catching up on a backlog, in pages.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass

from ...apps.chat import ChatServer
from ...clients.chat import ChatClient, LocalStore
from ...errors import NetcourseError
from ...runtime.server import serve

__all__ = ["CatchUp", "catch_up"]


@dataclass(frozen=True)
class CatchUp:
    """A fresh client catching up on a backlog: messages, seconds, the server's and client's database sizes."""

    messages: int
    seconds: float
    server_db_bytes: int
    client_db_bytes: int
    page: int = 500
    peak_kib: float | None = None

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else float("nan")

    def __repr__(self) -> str:
        peak = "" if self.peak_kib is None else f"; Python heap peak {self.peak_kib:,.0f} KiB"
        return (f"{self.messages:,} messages in pages of {self.page:,} caught up in {self.seconds:.2f} s "
                f"({self.per_second:,.0f}/s); server database {self.server_db_bytes / 1e6:.1f} MB, client database "
                f"{self.client_db_bytes / 1e6:.1f} MB ({self.server_db_bytes / self.messages:.0f} and "
                f"{self.client_db_bytes / self.messages:.0f} bytes per message){peak}")


def catch_up(messages: int = 10_000, *, page: int = 500, size: int = 60, trace_memory: bool = False) -> CatchUp:
    """Fill the server's log with ``messages`` messages of about ``size`` characters, then time a fresh
    client's catch-up over the WebSocket (replayed in pages of ``page``). ``trace_memory``: also the peak of
    Python's heap during the catch-up (tracemalloc; the whole process, server and client together)."""


    if not 1 <= messages <= 1_000_000:
        raise ValueError("messages must be between 1 and 1,000,000")
    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "server.db"), page=page)
        server.add_user("ada", "pw-ada", ("general",))
        server.add_user("bob", "pw-bob", ("general",))
        text = "x" * size
        with contextlib.closing(sqlite3.connect(server.db_path)) as db:
            db.executemany("INSERT INTO messages (conversation, sender, text, key, created) VALUES (?, ?, ?, ?, ?)",
                           (("general", "bob", text, f"k{i}", time.time()) for i in range(messages)))
            db.commit()
        with serve(server.app(), name="chat") as srv:
            store = LocalStore(os.path.join(d, "ada.db"))
            client = ChatClient(store, srv.host, srv.port, "ada", "pw-ada")
            import tracemalloc

            if trace_memory:
                tracemalloc.start()
            try:
                t = time.perf_counter()
                got, syncs = 0, 0
                while got < messages and syncs < 20 and time.perf_counter() - t < 600:
                    got += client.connect(idle=0.3, limit=600)  # a stall longer than idle: it resumes, as designed
                    syncs += 1
                seconds = time.perf_counter() - t - 0.3 * syncs  # the idle waits that end each sync are not catch-up
                peak = tracemalloc.get_traced_memory()[1] / 1024 if trace_memory else None
            finally:
                if trace_memory:
                    tracemalloc.stop()
            store.close()
        if got != messages:
            raise NetcourseError(f"caught up {got} of {messages} messages")
        sizes = [os.path.getsize(p) + (os.path.getsize(p + "-wal") if os.path.exists(p + "-wal") else 0)
                 for p in (server.db_path, os.path.join(d, "ada.db"))]
    return CatchUp(messages, seconds, sizes[0], sizes[1], page, peak)
