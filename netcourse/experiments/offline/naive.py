"""Notebook 08, section 3: the notes' design built the naive ways, each against the real server: subscribing
after a snapshot, replaying without dedup, ``last_id`` in memory or advanced before the commit; and an outbox
resent after lost acks, with and without idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass

from ...apps.chat import ChatServer
from ...clients.chat import ChatClient, LocalStore, login
from ...clients.websocket import Address, RawClient
from ...protocols.wsconn import Message
from ...protocols.wsframe import Frame, Opcode
from ...runtime.server import serve
from .common import chat_server

__all__ = ["Variant", "naive_variants", "OutboxRun", "outbox_resend"]


@dataclass(frozen=True)
class Variant:
    """One way of building offline messaging, and what it cost: messages lost and duplicated."""

    name: str
    lost: int
    duplicated: int
    how: str

    def __repr__(self) -> str:
        return f"{self.name:<52} lost {self.lost:>4}   duplicated {self.duplicated:>4}   ({self.how})"


def _raw_ids(host: str, port: int, cookie: str, resume_after: int, *, idle: float = 0.5) -> list[int]:
    """Every message id one connection delivers, duplicates included (a client with no dedup)."""
    got: list[int] = []
    with RawClient(Address(host, port), origin=f"http://127.0.0.1:{port}", nodelay=True,
                   extra_headers=(f"Cookie: session={cookie}",)) as ws:
        ws.send(Frame(Opcode.TEXT, json.dumps({"resume_after": resume_after}).encode()))
        while True:
            ws.sock.settimeout(idle)
            try:
                events = ws.receive()
            except socket.timeout:
                return got
            if not events:
                return got
            got += [json.loads(e.payload)["id"] for e in events if isinstance(e, Message)]


def naive_variants(backlog: int = 400, during: int = 200) -> list[Variant]:
    """The notes' design built four naive ways and the right way, each against the real server (or its data)."""


    out: list[Variant] = []
    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        for seam in ("subscribe after the replay", "replay after subscribing, no dedup", "correct"):
            server = ChatServer(os.path.join(d, f"{len(out)}.db"), page=20, seam=seam)
            server.add_user("ada", "pw-ada", ("general",))
            server.add_user("bob", "pw-bob", ("general",))
            with serve(server.app(), name="chat") as srv:
                def publish(n: int) -> None:
                    async def go():
                        for i in range(n):
                            await server.post("bob", "general", f"m{i}")
                            if i % 5 == 0:
                                await asyncio.sleep(0)
                    asyncio.run_coroutine_threadsafe(go(), srv.loop).result(60)

                publish(backlog)
                cookie = login(srv.host, srv.port, "ada", "pw-ada")[1]
                writer = threading.Thread(target=publish, args=(during,))
                writer.start()  # published while the client's replay is running
                got = _raw_ids(srv.host, srv.port, cookie, 0, idle=0.35)
                writer.join()
                expected = server.ids_for("ada")
            name = {"subscribe after the replay": "server subscribes to live messages after the replay",
                    "replay after subscribing, no dedup": "server replays after subscribing, without dedup",
                    "correct": "the course's server: subscribe, replay, skip what was sent"}[seam]
            out.append(Variant(name, len(set(expected) - set(got)), len(got) - len(set(got)),
                               f"{backlog} in the backlog, {during} published during the replay"))

        # the client's side: where it keeps its cursor
        server = ChatServer(os.path.join(d, "client.db"), page=50)
        server.add_user("ada", "pw-ada", ("general",))
        server.add_user("bob", "pw-bob", ("general",))
        with serve(server.app(), name="chat") as srv:
            async def fill(n: int) -> None:
                for i in range(n):
                    await server.post("bob", "general", f"m{i}")
            asyncio.run_coroutine_threadsafe(fill(100), srv.loop).result(30)
            cookie = login(srv.host, srv.port, "ada", "pw-ada")[1]
            expected = set(server.ids_for("ada"))

            def fetch(after: int) -> list[dict]:
                return [{"id": i, "conversation": "general", "sender": "bob", "text": ""}
                        for i in _raw_ids(srv.host, srv.port, cookie, after, idle=0.2)]

            # (a) last_id in a variable, messages in a table without a key: the crash loses the variable (a
            # new process starts from 0) and the table takes everything again
            naive = sqlite3.connect(":memory:")
            naive.execute("CREATE TABLE messages (id INTEGER, text TEXT)")
            last_id = 0
            for m in fetch(last_id):
                naive.execute("INSERT INTO messages VALUES (?, ?)", (m["id"], m["text"]))
                last_id = m["id"]
            naive.commit()
            last_id = 0  # the crash: a new process, and the variable is gone
            for m in fetch(last_id):
                naive.execute("INSERT INTO messages VALUES (?, ?)", (m["id"], m["text"]))
            naive.commit()
            rows, distinct = naive.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM messages").fetchone()
            out.append(Variant("client keeps last_id in memory (lost in a crash)", len(expected) - distinct,
                               rows - distinct, "restarted after a crash into a table without a key"))

            # (b) the cursor written (to a file) before the batch is committed; the crash comes in between,
            # and a crash before COMMIT is a rollback: SQLite's journal undoes the open transaction
            def crash_mid_batch(store_db: sqlite3.Connection, cursor_of, write_cursor) -> tuple[int, int]:
                batch = fetch(cursor_of(store_db))
                first_half, second_half = batch[: len(batch) // 2], batch[len(batch) // 2:]
                with store_db:
                    store_db.executemany("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)",
                                         [(m["id"], m["conversation"], m["sender"], m["text"]) for m in first_half])
                store_db.execute("BEGIN")
                store_db.executemany("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)",
                                     [(m["id"], m["conversation"], m["sender"], m["text"]) for m in second_half])
                write_cursor(second_half[-1]["id"])
                store_db.rollback()  # the crash, before the commit
                again = fetch(cursor_of(store_db))  # the restarted client asks from its cursor
                with store_db:
                    store_db.executemany("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)",
                                         [(m["id"], m["conversation"], m["sender"], m["text"]) for m in again])
                held = [r[0] for r in store_db.execute("SELECT id FROM messages")]
                return len(expected - set(held)), len(held) - len(set(held))

            cursor_file = os.path.join(d, "last_id")
            before_commit = sqlite3.connect(os.path.join(d, "naive.db"), isolation_level=None)
            before_commit.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation, sender, text)")

            def read_file(_db) -> int:
                return int(open(cursor_file).read()) if os.path.exists(cursor_file) else 0

            def write_file(value: int) -> None:
                with open(cursor_file, "w") as f:
                    f.write(str(value))

            lost, dup = crash_mid_batch(before_commit, read_file, write_file)
            before_commit.close()
            out.append(Variant("client advances last_id before the store commits", lost, dup,
                               "crashed between writing last_id and committing half a batch"))

            course = LocalStore(os.path.join(d, "course.db"))
            course.db.isolation_level = None
            lost, dup = crash_mid_batch(course.db, lambda db: db.execute("SELECT COALESCE(MAX(id), 0) FROM messages")
                                        .fetchone()[0], lambda value: None)
            course.close()
            out.append(Variant("the course's client: last_id = MAX(id) of its own database", lost, dup,
                               "the same crash: the rows and the cursor roll back together"))
        # (c) timestamps as cursors: the server's messages stamped in whole seconds, ten a second (as many APIs
        # stamp them); the client has read up to the middle of one second and asks for "newer than my newest"
        with contextlib.closing(sqlite3.connect(server.db_path)) as db:
            ids = [r[0] for r in db.execute("SELECT id FROM messages ORDER BY id")]
        stamped = [(i, 1_700_000_000 + n // 10) for n, i in enumerate(ids)]
        seen = stamped[:45]
        last_ts = seen[-1][1]
        after = [i for i, ts in stamped if ts > last_ts]
        lost = len(stamped) - len(seen) - len(after)
        out.append(Variant("cursor = the newest timestamp (whole seconds)", lost, 0,
                           f"{len(stamped)} messages, ten per second; the cursor stops mid-second"))
    return out


@dataclass(frozen=True)
class OutboxRun:
    """Messages written offline, posted, their acks lost with the connection, and posted again.

    Attributes:
        written: messages ada wrote while offline (into her outbox).
        sent: posts that went over the wire in all (the first try and the resend).
        stored_with_keys: rows the server holds for them, idempotency keys on.
        stored_without_keys: the same run with a fresh key on every send (what a client without an outbox does).
        unacked: outbox entries still waiting at the end.
    """

    written: int
    sent: int
    stored_with_keys: int
    stored_without_keys: int
    unacked: int

    def __repr__(self) -> str:
        return (f"{self.written} written offline, {self.sent} posts on the wire (the acks of the first "
                f"{self.written} were lost): stored {self.stored_with_keys} times with idempotency keys, "
                f"{self.stored_without_keys} without; {self.unacked} still in the outbox")


def outbox_resend(written: int = 3) -> OutboxRun:
    """ada writes ``written`` messages offline. She connects, sends them, and the connection dies before she
    reads the acks (the server has stored them). She connects again and sends them again, as she must: with
    the same keys the server stores each once; with fresh keys it stores each twice."""
    if not 1 <= written <= 100:
        raise ValueError("written is 1 to 100")

    def stored(server, tag: str) -> int:
        with contextlib.closing(sqlite3.connect(server.db_path)) as db:
            return db.execute("SELECT COUNT(*) FROM messages WHERE text LIKE ?", (f"{tag}%",)).fetchone()[0]

    results, sent = [], 0
    for keep_keys in (True, False):
        with contextlib.ExitStack() as stack:
            server, srv, d = stack.enter_context(chat_server())
            store = LocalStore(os.path.join(d, "ada.db"))
            stack.callback(store.close)
            for i in range(written):
                store.queue("general", f"offline {i}")
            status, cookie, _ = login(srv.host, srv.port, "ada", "correct horse")
            origin = f"http://127.0.0.1:{srv.port}"
            with RawClient(Address(srv.host, srv.port), origin=origin, nodelay=True,
                           extra_headers=(f"Cookie: session={cookie}",)) as ws:  # the first try
                ws.send(Frame(Opcode.TEXT, json.dumps({"resume_after": store.last_id()}).encode()))
                for key, conversation, text in store.unacked():
                    ws.send(Frame(Opcode.TEXT, json.dumps({"send": {"conversation": conversation, "text": text,
                                                                    "key": key}}).encode()))
                    sent += keep_keys
                deadline = time.monotonic() + 5
                while stored(server, "offline") < written and time.monotonic() < deadline:
                    time.sleep(0.005)  # the server has them all ...
            # ... and the connection closed before a single ack was read: the outbox still says "unacked"
            if not keep_keys:  # a client without an outbox makes up a new message (a new key) for a resend
                store.db.execute("UPDATE outbox SET key = key || '-again'")
                store.db.commit()
            client = ChatClient(store, srv.host, srv.port, "ada", "correct horse")
            client.connect(idle=0.2)
            sent += keep_keys * written
            results.append((stored(server, "offline"), len(store.unacked())))
    (with_keys, unacked), (without_keys, _) = results
    return OutboxRun(written, sent, with_keys, without_keys, unacked)
