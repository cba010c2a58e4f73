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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...apps.chat import ChatServer
from ...clients.chat import ChatClient, LocalStore, login
from ...clients.websocket import Address, RawClient
from ...protocols.wsconn import Message
from ...protocols.wsframe import Frame, Opcode
from ...runtime.server import serve
from .common import chat_server

__all__ = ["Variant", "naive_variants", "SEAMS", "server_seam", "History", "a_history", "cursor_in_memory",
           "crash_mid_batch", "cursor_before_commit", "cursor_max_id", "cursor_timestamp", "OutboxRun", "outbox_resend"]


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


SEAMS = {"subscribe after the replay": "server subscribes to live messages after the replay",
         "replay after subscribing, no dedup": "server replays after subscribing, without dedup",
         "correct": "the course's server: subscribe, replay, skip what was sent"}


def server_seam(seam: str, backlog: int = 400, during: int = 200) -> Variant:
    """The server's side: ``backlog`` messages wait; a client with no dedup replays from 0 while ``during`` more
    are published, against a server that joins replay and live messages the ``seam`` way (one of ``SEAMS``)."""
    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "chat.db"), page=20, seam=seam)
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
            try:
                got = _raw_ids(srv.host, srv.port, cookie, 0, idle=0.35)
            finally:
                writer.join()
            expected = server.ids_for("ada")
    return Variant(SEAMS[seam], len(set(expected) - set(got)), len(got) - len(set(got)),
                   f"{backlog} in the backlog, {during} more published from the moment the client connected")


@dataclass
class History:
    """A server holding 100 of bob's messages for ada, for the client-side variants: ``fetch(after)`` is what
    one connection that resumes after that id delivers; ``expected`` the ids ada should end up with."""

    fetch: Callable[[int], list[dict]]
    expected: set[int]
    ids: list[int]
    folder: str


@contextlib.contextmanager
def a_history(messages: int = 100) -> Iterator[History]:
    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "client.db"), page=50)
        server.add_user("ada", "pw-ada", ("general",))
        server.add_user("bob", "pw-bob", ("general",))
        with serve(server.app(), name="chat") as srv:
            async def fill(n: int) -> None:
                for i in range(n):
                    await server.post("bob", "general", f"m{i}")
            asyncio.run_coroutine_threadsafe(fill(messages), srv.loop).result(30)
            cookie = login(srv.host, srv.port, "ada", "pw-ada")[1]

            def fetch(after: int) -> list[dict]:
                return [{"id": i, "conversation": "general", "sender": "bob", "text": ""}
                        for i in _raw_ids(srv.host, srv.port, cookie, after, idle=0.2)]

            with contextlib.closing(sqlite3.connect(server.db_path)) as db:
                ids = [r[0] for r in db.execute("SELECT id FROM messages ORDER BY id")]
            yield History(fetch, set(server.ids_for("ada")), ids, d)


def cursor_in_memory(h: History) -> Variant:
    """last_id in a variable, messages in a table without a key: the crash loses the variable (a new process
    starts from 0) and the table takes everything again."""
    naive = sqlite3.connect(":memory:")
    naive.execute("CREATE TABLE messages (id INTEGER, text TEXT)")
    last_id = 0
    for m in h.fetch(last_id):
        naive.execute("INSERT INTO messages VALUES (?, ?)", (m["id"], m["text"]))
        last_id = m["id"]
    naive.commit()
    last_id = 0  # the crash: a new process, and the variable is gone
    for m in h.fetch(last_id):
        naive.execute("INSERT INTO messages VALUES (?, ?)", (m["id"], m["text"]))
    naive.commit()
    rows, distinct = naive.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM messages").fetchone()
    naive.close()
    return Variant("client keeps last_id in memory (lost in a crash)", len(h.expected) - distinct,
                   rows - distinct, "restarted after a crash into a table without a key")


def crash_mid_batch(h: History, store_db: sqlite3.Connection, cursor_of, write_cursor) -> tuple[int, int]:
    """Half a batch committed, the other half inserted and the cursor written, then the crash before the
    commit (a rollback: SQLite's journal undoes the open transaction), then a restart from the cursor.
    Returns (messages lost, messages stored twice)."""
    def store(rows: list[dict]) -> None:
        store_db.executemany("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)",
                             [(m["id"], m["conversation"], m["sender"], m["text"]) for m in rows])

    batch = h.fetch(cursor_of(store_db))
    with store_db:
        store(batch[: len(batch) // 2])
    store_db.execute("BEGIN")
    store(batch[len(batch) // 2:])
    write_cursor(batch[-1]["id"])
    store_db.rollback()  # the crash, before the commit
    again = h.fetch(cursor_of(store_db))  # the restarted client asks from its cursor
    with store_db:
        store(again)
    held = [r[0] for r in store_db.execute("SELECT id FROM messages")]
    return len(h.expected - set(held)), len(held) - len(set(held))


def cursor_before_commit(h: History) -> Variant:
    """The cursor written to a file before the batch is committed, and the crash in between."""
    cursor_file = os.path.join(h.folder, "last_id")
    db = sqlite3.connect(os.path.join(h.folder, "naive.db"), isolation_level=None)
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation, sender, text)")

    def read_file(_db) -> int:
        return int(open(cursor_file).read()) if os.path.exists(cursor_file) else 0

    def write_file(value: int) -> None:
        with open(cursor_file, "w") as f:
            f.write(str(value))

    try:
        lost, dup = crash_mid_batch(h, db, read_file, write_file)
    finally:
        db.close()
    return Variant("client advances last_id before the store commits", lost, dup,
                   "crashed between writing last_id and committing half a batch")


def cursor_max_id(h: History) -> Variant:
    """The course's client: the cursor is MAX(id) of its own database, so it rolls back with the rows."""
    course = LocalStore(os.path.join(h.folder, "course.db"))
    course.db.isolation_level = None
    try:
        lost, dup = crash_mid_batch(h, course.db, lambda db: db.execute("SELECT COALESCE(MAX(id), 0) FROM messages")
                                    .fetchone()[0], lambda value: None)
    finally:
        course.close()
    return Variant("the course's client: last_id = MAX(id) of its own database", lost, dup,
                   "the same crash: the rows and the cursor roll back together")


def cursor_timestamp(ids: list[int]) -> Variant:
    """Timestamps as cursors: the messages stamped in whole seconds, ten a second (as many APIs stamp them); the
    client has read up to the middle of one second and asks for "newer than my newest"."""
    stamped = [(i, 1_700_000_000 + n // 10) for n, i in enumerate(ids)]
    seen = stamped[:45]
    after = [i for i, ts in stamped if ts > seen[-1][1]]
    return Variant("cursor = the newest timestamp (whole seconds)", len(stamped) - len(seen) - len(after), 0,
                   f"{len(stamped)} messages, ten per second; the cursor stops mid-second")


def naive_variants(backlog: int = 400, during: int = 200) -> list[Variant]:
    """The notes' design built the naive ways and the right way, each against the real server (or its data):
    three server seams (``server_seam``), then three places a client keeps its cursor, and a timestamp cursor."""
    out = [server_seam(seam, backlog, during) for seam in SEAMS]
    with a_history() as h:  # the client's variants: a log of their own, shorter than the server's
        out += [Variant(v.name, v.lost, v.duplicated, f"a log of {len(h.ids)}; {v.how}")
                for v in (cursor_in_memory(h), cursor_before_commit(h), cursor_max_id(h))]
    return out + [cursor_timestamp(h.ids)]


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
