"""Notebook 08 (in progress): offline messaging. A client that keeps a local SQLite copy of its messages,
resumes from ``MAX(id)`` of that copy, and posts through an outbox with idempotency keys.

The server is ``apps.chat``. The client talks WebSocket with the course's own ``RawClient`` (notebook 05),
authenticates with the session cookie from ``POST /login``, and sends ``{"resume_after": last_id}`` first.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import socket
import sqlite3
import time
from dataclasses import dataclass

from ..errors import NetcourseError
from ..protocols.wsconn import CloseReceived, Message
from ..protocols.wsframe import Frame, Opcode
from .websockets import RawClient

__all__ = ["login", "LocalStore", "ChatClient", "Refusal", "handshake_as", "Soak", "fault_soak", "CatchUp", "catch_up", "Variant", "naive_variants"]


@dataclass(frozen=True)
class _Address:
    host: str
    port: int


def login(host: str, port: int, user: str, password: str) -> tuple[int, str | None, str]:
    """POST /login; returns (status, the session cookie's value or None, the Set-Cookie header as sent)."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        body = json.dumps({"user": user, "password": password})
        conn.request("POST", "/login", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        header = resp.getheader("Set-Cookie") or ""
        value = header.split(";", 1)[0].split("=", 1)[1] if header.startswith("session=") else None
        return resp.status, value, header
    finally:
        conn.close()


class LocalStore:
    """The client's own database: every message it holds, and its outbox. WAL mode; every insert of a
    message is ``INSERT OR IGNORE`` on the server's id, so a message received twice is stored once, and the
    resume point is ``MAX(id)``, read from the same database the messages are in (never a variable a crash
    can lose, never a counter that can run ahead of what was stored)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, conversation TEXT, sender TEXT, text TEXT);
            CREATE TABLE IF NOT EXISTS outbox (key TEXT PRIMARY KEY, conversation TEXT, text TEXT, acked INTEGER);
        """)
        self.db.commit()

    def last_id(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]

    def store(self, msg: dict) -> bool:
        """One message, in its own transaction; False if it was already there."""
        cur = self.db.execute("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)",
                              (int(msg["id"]), msg["conversation"], msg["sender"], msg["text"]))
        self.db.commit()
        return cur.rowcount == 1

    def store_many(self, msgs: list[dict]) -> int:
        """Several messages in one transaction (all or none); how many were new."""
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)",
                                [(int(m["id"]), m["conversation"], m["sender"], m["text"]) for m in msgs])
            return self.db.total_changes - before

    def ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM messages ORDER BY id")]

    def queue(self, conversation: str, text: str) -> str:
        """Write a message to the outbox (offline or not); its idempotency key."""
        key = secrets.token_hex(8)
        self.db.execute("INSERT INTO outbox VALUES (?, ?, ?, 0)", (key, conversation, text))
        self.db.commit()
        return key

    def unacked(self) -> list[tuple[str, str, str]]:
        return self.db.execute("SELECT key, conversation, text FROM outbox WHERE acked = 0").fetchall()

    def ack(self, key: str) -> None:
        self.db.execute("UPDATE outbox SET acked = 1 WHERE key = ?", (key,))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class ChatClient:
    """One connection's worth of the offline client: log in (if no cookie yet), open the WebSocket with the
    cookie, resume after the local ``MAX(id)``, flush the outbox, and store what arrives until ``idle``
    seconds pass with nothing new (or ``limit`` seconds in all)."""

    def __init__(self, store: LocalStore, host: str, port: int, user: str, password: str) -> None:
        self.store, self.host, self.port, self.user, self.password = store, host, port, user, password
        self.cookie: str | None = None
        self.received = 0
        self.duplicates = 0

    def connect(self, *, idle: float = 0.3, limit: float = 10.0) -> int:
        """Sync once; returns the number of new messages stored."""
        if self.cookie is None:
            status, self.cookie, _ = login(self.host, self.port, self.user, self.password)
            if status != 204 or not self.cookie:
                raise NetcourseError(f"login refused ({status})")
        origin = f"http://127.0.0.1:{self.port}"
        new = 0
        with RawClient(_Address(self.host, self.port), origin=origin, nodelay=True,
                       extra_headers=(f"Cookie: session={self.cookie}",)) as ws:
            if not ws.accepted:
                status = ws.response.split(b"\r\n", 1)[0].decode("latin-1")
                raise NetcourseError(f"the handshake was refused: {status}")
            ws.send(Frame(Opcode.TEXT, json.dumps({"resume_after": self.store.last_id()}).encode()))
            for key, conversation, text in self.store.unacked():  # resent until acknowledged: stored once
                ws.send(Frame(Opcode.TEXT, json.dumps({"send": {"conversation": conversation, "text": text,
                                                                "key": key}}).encode()))
            deadline = time.monotonic() + limit
            quiet_since = time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - quiet_since < idle:
                ws.sock.settimeout(max(0.01, min(idle, deadline - time.monotonic())))
                try:
                    events = ws.receive()
                except socket.timeout:
                    continue
                if not events:
                    break
                batch, closed = [], False
                for event in events:
                    if isinstance(event, CloseReceived):
                        closed = True
                        break
                    if not isinstance(event, Message):
                        continue
                    data = json.loads(event.payload)
                    if "ack" in data:
                        self.store.ack(data["ack"])
                    elif "id" in data:
                        batch.append(data)
                # what arrived in one read is stored in one transaction: MAX(id) moves with the rows
                stored = self.store.store_many(batch) if batch else 0
                self.received += len(batch)
                self.duplicates += len(batch) - stored
                new += stored
                quiet_since = time.monotonic()
                if closed:
                    return new
        return new


@dataclass(frozen=True)
class Refusal:
    """How the server answered a handshake attempt."""

    case: str
    status_line: str


def handshake_as(host: str, port: int, case: str, *, cookie: str | None, origin: str | None) -> Refusal:
    """Try the WebSocket handshake with a given cookie and Origin; the status line the server answered."""
    extra = (f"Cookie: session={cookie}",) if cookie else ()
    with RawClient(_Address(host, port), origin=origin, extra_headers=extra) as ws:
        return Refusal(case, ws.response.split(b"\r\n", 1)[0].decode("latin-1"))


# -- faults: the real test -----------------------------------------------------------------------------------


@dataclass
class Soak:
    """Messages published while faults hit the client, the server and the connection.

    Attributes:
        published: messages the user should hold (the server's ids for them).
        held: ids in the client's database at the end.
        faults: (seconds since the start, kind) in order.
        lost: published ids the client does not hold.
        duplicated: ids held more than once (the database's primary key makes this impossible; counted anyway).
        in_order: the client's ids are the server's, in the same order.
    """

    published: list[int]
    held: list[int]
    faults: list[tuple[float, str]]

    @property
    def lost(self) -> list[int]:
        have = set(self.held)
        return [i for i in self.published if i not in have]

    @property
    def duplicated(self) -> int:
        return len(self.held) - len(set(self.held))

    @property
    def in_order(self) -> bool:
        return self.held == sorted(self.held) and self.held == self.published

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for _, k in self.faults:
            k = k.split(" (")[0] if k.startswith("connections") else k
            kinds[k] = kinds.get(k, 0) + 1
        return (f"{len(self.published):,} messages, {len(self.faults)} faults "
                f"({', '.join(f'{n} {k}' for k, n in kinds.items())}): {len(self.lost)} lost, "
                f"{self.duplicated} duplicated, order {'preserved' if self.in_order else 'NOT preserved'}")


def fault_soak(messages: int = 300, faults: int = 6, *, seed: int = 8, rate: float = 400.0,
               settle: float = 8.0) -> Soak:
    """Publish ``messages`` at ``rate`` per second to a user whose client runs in a child process, and inflict
    ``faults`` faults at random moments, in turn: SIGKILL the client (and start it again), restart the server
    (same port, same database), cut every connection mid-stream. Then let the client catch up and compare."""
    import asyncio
    import os
    import random
    import subprocess
    import sys
    import tempfile
    import threading

    from ..apps.chat import ChatServer
    from ..runtime.server import serve

    if not 1 <= messages <= 100_000 or not 0 <= faults <= 1000 or rate <= 0:
        raise ValueError("need 1 <= messages <= 100000, 0 <= faults <= 1000 and rate > 0")
    rng = random.Random(seed)
    kinds = ["client killed (SIGKILL)", "server restarted", "connections cut"]
    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "server.db"), page=50)
        server.add_user("ada", "pw-ada", ("general",))
        server.add_user("bob", "pw-bob", ("general",))
        with socket.socket() as placeholder:
            placeholder.bind(("127.0.0.1", 0))
            port = placeholder.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        client_db = os.path.join(d, "ada.db")

        def start_client() -> subprocess.Popen:
            proc = subprocess.Popen([sys.executable, "-m", "netcourse.experiments._chat_child", client_db,
                                     "127.0.0.1", str(port), "ada", "pw-ada"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            proc.stdout.readline()  # "ready"
            return proc

        log: list[tuple[float, str]] = []
        start = time.monotonic()
        duration = messages / rate
        when = sorted(rng.uniform(0.1 * duration, 0.9 * duration) for _ in range(faults))
        srv = serve(server.app(), name="chat", port=port)
        client = start_client()
        try:
            published = 0

            def publisher() -> None:
                nonlocal published
                while published < messages:
                    target = start + published / rate
                    time.sleep(max(0.0, target - time.monotonic()))
                    current = srv  # the server may be restarting: try again shortly
                    coro = server.post("bob", "general", f"m{published}")
                    try:
                        asyncio.run_coroutine_threadsafe(coro, current.loop).result(5)
                        published += 1
                    except Exception:
                        coro.close()  # never started: the loop was stopping
                        time.sleep(0.01)

            pub = threading.Thread(target=publisher, daemon=True)
            pub.start()
            for i, t in enumerate(when):
                time.sleep(max(0.0, start + t - time.monotonic()))
                kind = rng.choice(kinds)
                log.append((time.monotonic() - start, kind))
                if kind.startswith("client"):
                    client.kill()
                    client.wait(5)
                    client = start_client()
                elif kind.startswith("server"):
                    srv.stop()
                    srv = serve(server.app(), name="chat", port=port)
                else:
                    wait_until = time.monotonic() + 2  # cut a live connection: wait for the client to be on
                    while not server.sockets and time.monotonic() < wait_until:
                        time.sleep(0.005)
                    cut = asyncio.run_coroutine_threadsafe(server.cut_all(), srv.loop).result(5)
                    log[-1] = (log[-1][0], f"{kind} ({cut} open)")
            pub.join(duration + 30)
            expected = server.ids_for("ada")
            deadline = time.monotonic() + settle
            held: list[int] = []
            while time.monotonic() < deadline:
                with contextlib.closing(sqlite3.connect(client_db, timeout=5)) as db:
                    held = [r[0] for r in db.execute("SELECT id FROM messages ORDER BY rowid")]
                if len(held) >= len(expected):
                    break
                time.sleep(0.1)
        finally:
            client.kill()
            client.wait(5)
            for stream in (client.stdin, client.stdout):
                if stream:
                    stream.close()
            srv.stop()
        return Soak(expected, held, log)


@dataclass(frozen=True)
class CatchUp:
    """A fresh client catching up on a backlog: messages, seconds, the server's and client's database sizes."""

    messages: int
    seconds: float
    server_db_bytes: int
    client_db_bytes: int

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else float("nan")

    def __repr__(self) -> str:
        return (f"{self.messages:,} messages caught up in {self.seconds:.2f} s ({self.per_second:,.0f}/s); "
                f"server database {self.server_db_bytes / 1e6:.1f} MB, client database {self.client_db_bytes / 1e6:.1f} MB")


def catch_up(messages: int = 10_000, *, page: int = 500, size: int = 60) -> CatchUp:
    """Fill the server's log with ``messages`` messages of about ``size`` characters, then time a fresh
    client's catch-up over the WebSocket (replayed in pages of ``page``)."""
    import os
    import tempfile

    from ..apps.chat import ChatServer
    from ..runtime.server import serve

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
            t = time.perf_counter()
            got = client.connect(idle=1.0, limit=600)
            seconds = time.perf_counter() - t - 1.0  # the idle wait that ends the sync is not catch-up time
            store.close()
        if got != messages:
            raise NetcourseError(f"caught up {got} of {messages} messages")
        sizes = [os.path.getsize(p) + (os.path.getsize(p + "-wal") if os.path.exists(p + "-wal") else 0)
                 for p in (server.db_path, os.path.join(d, "ada.db"))]
    return CatchUp(messages, seconds, sizes[0], sizes[1])


# -- naive variants, each measured ---------------------------------------------------------------------------


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
    with RawClient(_Address(host, port), origin=f"http://127.0.0.1:{port}", nodelay=True,
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
    import asyncio
    import os
    import tempfile
    import threading

    from ..apps.chat import ChatServer
    from ..runtime.server import serve

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
                got = _raw_ids(srv.host, srv.port, cookie, 0)
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
            first = _raw_ids(srv.host, srv.port, cookie, 0, idle=0.3)
            # (a) last_id in a variable: stored all 100 in a table without a key, then the process died; the
            # variable died with it, so the restarted client asks from 0 and stores everything again
            again = _raw_ids(srv.host, srv.port, cookie, 0, idle=0.3)
            out.append(Variant("client keeps last_id in memory (lost in a crash)", 0, len(first + again) - len(set(first + again)),
                               "killed after storing 100; restarts from 0 into a table without a key"))
            # (b) last_id written (to a file) before the messages are committed, then killed in between
            batch = first[50:70]
            cursor_file = max(batch)  # advanced ...
            stored = first[:50]  # ... but the batch's commit never happened
            resumed = _raw_ids(srv.host, srv.port, cookie, cursor_file, idle=0.3)
            held = set(stored) | set(resumed)
            out.append(Variant("client advances last_id before the store commits", len(set(first) - held), 0,
                               "killed between writing last_id and committing a batch of 20"))
            out.append(Variant("the course's client: last_id = MAX(id) of its own database", 0, 0,
                               "one transaction per batch: the rows and the cursor move together"))
        # (c) timestamps as cursors: messages stamped in whole seconds (as many APIs do), so several share one
        with contextlib.closing(sqlite3.connect(server.db_path)) as db:
            rows = db.execute("SELECT id, CAST(created AS INTEGER) FROM messages ORDER BY id").fetchall()
        seen = rows[: len(rows) // 2]
        last_ts = seen[-1][1]
        after = [i for i, ts in rows if ts > last_ts]  # "everything after my newest timestamp"
        lost = len(rows) - len(seen) - len(after)
        out.append(Variant("cursor = the newest timestamp (whole seconds)", lost, 0,
                           f"{len(rows)} messages; the ones sharing the cursor's second are skipped"))
    return out
