"""Notebook 08: offline messaging. A client that keeps a local SQLite copy of its messages,
resumes from ``MAX(id)`` of that copy, and posts through an outbox with idempotency keys.

The server is ``apps.chat``. The client talks WebSocket with the course's own ``RawClient`` (notebook 05),
authenticates with the session cookie from ``POST /login``, and sends ``{"resume_after": last_id}`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import queue
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from ..apps.chat import ChatServer
from ..course.exercises import Exercise, Prediction
from ..errors import NetcourseError
from ..network.link import link
from ..protocols.httpwire import split_head
from ..runtime.server import serve
from ..runtime.sockets import port_for_a_restart
from ..traffic.packets import C2S, S2C
from ..traffic.sniffer import Capture, capture
from ..traffic.wire import tcp_payload_streams
from ..protocols.wsconn import CloseReceived, Message
from ..protocols.wsframe import Frame, Opcode
from .registry import scenario
from ..clients.chat import ChatClient, LocalStore, handshake_as, login
from ..clients.websocket import Address, RawClient

__all__ = ["FAULT_KINDS", "Soak", "fault_soak", "CatchUp", "catch_up", "Variant", "naive_variants", "OutboxRun", "outbox_resend", "HappyPath", "happy_path", "exercise_login_to_socket", "exercise_cookie_bytes", "OfflineRun", "offline_and_back", "predict_replayed", "Attack", "auth_attacks", "predict_repeats", "FAULT_COUNTS", "soak_grid", "soak_knob", "LinkResume", "resume_across_a_link", "bad_inputs"]



# -- faults: the real test -----------------------------------------------------------------------------------


FAULT_KINDS = ("client killed (SIGKILL)", "server crashed and restarted", "connection cut mid-frame")


@dataclass
class Soak:
    """Messages published while faults hit the client, the server and the connection.

    Attributes:
        published: messages the user should hold (the server's ids for them, in id order).
        held: ids in the client's database at the end, in the order they were first stored.
        faults: (seconds since the start, kind, messages published before it) in order.
        lost: published ids the client does not hold.
        duplicated: ids stored more than once (the client's primary key makes this impossible: counted anyway).
        repeats: messages that came over the wire more than once (after a fault) and were absorbed by dedup.
        in_order: the client first stored the messages in the server's order, and holds exactly the
            server's ids.
        streaming_until: seconds into the run when the last message was published.
        cut_frames: (message id, the half frame reached the kernel) for each frame cut in half.
    """

    published: list[int]
    held: list[int]
    faults: list[tuple[float, str, int]]
    repeats: int = 0
    streaming_until: float = 0.0
    cut_frames: list[tuple[int, bool]] = field(default_factory=list)

    @property
    def during_stream(self) -> int:
        """Faults that struck while messages were still being published."""
        return sum(1 for t, _, n in self.faults if 0 < n < len(self.published) and t <= self.streaming_until)

    @property
    def lost(self) -> list[int]:
        have = set(self.held)
        return [i for i in self.published if i not in have]

    @property
    def duplicated(self) -> int:
        return len(self.held) - len(set(self.held))

    @property
    def in_order(self) -> bool:
        return self.held == self.published  # ``published`` is in id order: the server's order

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for _, k, _n in self.faults:
            kinds[k] = kinds.get(k, 0) + 1
        return (f"{len(self.published):,} messages, {len(self.faults)} faults, {self.during_stream} of them while "
                f"messages streamed ({', '.join(f'{n} {k}' for k, n in kinds.items()) or 'none'}): "
                f"{len(self.lost)} lost, {self.duplicated} stored twice, {self.repeats} received twice and "
                f"absorbed; {'stored in the server order' if self.in_order else 'ORDER OR SET DIFFERS from the server'}")


def fault_soak(messages: int = 300, faults: int = 6, *, seed: int = 8, rate: float = 400.0,
               settle: float = 8.0) -> Soak:
    """Publish ``messages`` at ``rate`` per second to a user whose client runs in a child process, and inflict
    ``faults`` faults while they stream, each at a random message count, of a random kind: SIGKILL the client
    (a warm spare process takes over at once), crash the server (every connection aborted without a close
    frame, then the server started again on the same port and database), or cut the connection in the middle
    of the next message frame. The publisher waits at each fault's count until the fault is done, so every
    fault lands mid-stream. Then the client catches up, and its database is compared with the server's."""
    if not 1 <= messages <= 100_000 or not 0 <= faults <= messages // 2 or rate <= 0:
        raise ValueError("need 1 <= messages <= 100000, 0 <= faults <= messages / 2 and rate > 0")
    rng = random.Random(seed)
    at = sorted(rng.sample(range(1, messages), faults))  # fault i strikes after at[i] messages
    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "server.db"), page=50)
        server.add_user("ada", "pw-ada", ("general",))
        server.add_user("bob", "pw-bob", ("general",))
        port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        client_db = os.path.join(d, "ada.db")
        children: list[subprocess.Popen] = []

        def spawn() -> subprocess.Popen:
            # In a session of its own: a notebook's interrupt (SIGINT to the kernel's process group) reaches
            # this function, whose clean-up kills and reaps the child, not the child half-way.
            proc = subprocess.Popen([sys.executable, "-m", "netcourse.clients.chat_process", client_db,
                                     "127.0.0.1", str(port), "ada", "pw-ada"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
            children.append(proc)
            return proc

        def go(proc: subprocess.Popen) -> subprocess.Popen:
            ready = threading.Thread(target=proc.stdout.readline, daemon=True)  # "ready", within a deadline
            ready.start()
            ready.join(20)
            if ready.is_alive() or proc.poll() is not None:
                raise NetcourseError("the client process did not start within 20 s")
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            return proc

        def stop(proc: subprocess.Popen) -> None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()

        log: list[tuple[float, str, int]] = []
        due: queue.Queue[int] = queue.Queue()  # publisher -> faults: "message n is next"
        resume: queue.Queue[bool] = queue.Queue()  # faults -> publisher: "done, go on"
        stopping = threading.Event()
        srv = None
        pub: threading.Thread | None = None
        published = 0
        last_publish: list[float] = []
        try:  # everything this run starts is started inside it: an interrupt anywhere releases all of it
            srv = serve(server.app(), name="chat", port=port)
            spare = spawn()
            client = go(spawn())
            start = time.monotonic()

            def publisher() -> None:
                nonlocal published
                pending, next_at = list(at), time.monotonic()
                while published < messages and not stopping.is_set():
                    if pending and published == pending[0]:
                        pending.pop(0)
                        due.put(published)
                        with contextlib.suppress(queue.Empty):
                            resume.get(timeout=30)
                        next_at = time.monotonic()
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    coro = server.post("bob", "general", f"m{published}")
                    try:  # the server may be restarting: try again shortly
                        asyncio.run_coroutine_threadsafe(coro, srv.loop).result(5)
                        published += 1
                        next_at += 1 / rate
                        last_publish[:] = [time.monotonic()]
                    except Exception:
                        coro.close()  # never started: the loop was stopping
                        time.sleep(0.01)

            pub = threading.Thread(target=publisher, daemon=True)
            pub.start()
            for _ in at:
                n = due.get(timeout=messages / rate + 60)
                kind = rng.choice(FAULT_KINDS)
                log.append((time.monotonic() - start, kind, n))
                if kind == FAULT_KINDS[0]:
                    stop(client)  # SIGKILL: no clean-up of any kind in the child
                    resume.put(True)
                    client, spare = go(spare), spawn()
                elif kind == FAULT_KINDS[1]:
                    asyncio.run_coroutine_threadsafe(server.cut_all(), srv.loop).result(5)  # the kernel's FINs
                    srv.stop()
                    srv = serve(server.app(), name="chat", port=port)
                    resume.put(True)
                else:
                    server.arm_cut_mid_frame()  # the next frame the server sends goes out half, then the cut
                    resume.put(True)
            pub.join(messages / rate + 60)
            if pub.is_alive():
                raise NetcourseError("the publisher did not finish")
            streaming_until = last_publish[0] - start if last_publish else 0.0
            expected = server.ids_for("ada")
            deadline = time.monotonic() + settle
            held: list[int] = []
            while time.monotonic() < deadline:
                with contextlib.closing(sqlite3.connect(client_db, timeout=5)) as db:
                    held = [r[0] for r in db.execute("SELECT id FROM arrivals ORDER BY seq")]
                if len(held) >= len(expected):
                    break
                time.sleep(0.1)
            with contextlib.closing(sqlite3.connect(client_db, timeout=5)) as db:
                repeats = db.execute("SELECT repeats FROM wire").fetchone()[0]
        finally:
            stopping.set()  # the publisher stops too, whatever happened
            resume.put(False)
            for proc in children:
                stop(proc)
            if srv is not None:
                srv.stop()
            if pub is not None:
                pub.join(6)  # its one wait on the server is bounded by 5 s
        return Soak(expected, held, log, repeats, streaming_until, list(server.cut_mid_frame))


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


# -- the notebook's experiments ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _chat(page: int = 50, **options):
    """A chat server with users ada and bob (both in "general" and "ada-bob") and eve (alone), serving."""

    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "server.db"), page=page, **options)
        server.add_user("ada", "correct horse", ("general", "ada-bob"))
        server.add_user("bob", "battery staple", ("general", "ada-bob"))
        server.add_user("eve", "eavesdrop", ("eve-only",))
        with serve(server.app(), name="chat") as srv:
            yield server, srv, d


def _publish(server, srv, n: int, *, conversation: str = "general", gap: float = 0.0) -> None:
    async def go():
        for i in range(n):
            await server.post("bob", conversation, f"{conversation} message {server_last(server) + 1}")
            await asyncio.sleep(gap)

    asyncio.run_coroutine_threadsafe(go(), srv.loop).result(60 + n * gap)


def server_last(server) -> int:
    return server.last_id()


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
            server, srv, d = stack.enter_context(_chat())
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


@dataclass
class HappyPath:
    """Login, the handshake with its cookie, resume, replay and live messages, captured.

    Attributes:
        set_cookie: the Set-Cookie header of the login's answer, from the capture.
        handshake: the WebSocket handshake request's head, from the capture.
        replayed, live: messages the client got from the backlog, and pushed after it.
        same: the client's database equals what the server says the user may read.
        capture: the packets (in replay: the recording).
    """

    set_cookie: str
    handshake: str
    replayed: int
    live: int
    same: bool
    capture: Capture


@scenario("chat_happy_path")
def happy_path(backlog: int = 5, live: int = 3) -> HappyPath:
    """ada logs in, opens the WebSocket with her cookie, resumes after 0, gets the backlog, then live messages."""
    with _chat() as (server, srv, d):
        _publish(server, srv, backlog)
        store = LocalStore(os.path.join(d, "ada.db"))
        client = ChatClient(store, srv.host, srv.port, "ada", "correct horse")
        with capture(srv.port, scenario="chat_happy_path") as cap:
            first = client.connect(idle=0.2)

            pusher = threading.Thread(target=_publish, args=(server, srv, live), kwargs={"gap": 0.05})
            pusher.start()
            second = client.connect(idle=0.4)
            pusher.join()
        same = store.ids() == server.ids_for("ada")
        store.close()
    streams = tcp_payload_streams(cap.packets, cap.table())
    responses, requests = streams[S2C], streams[C2S]
    set_cookie = next((line.decode("latin-1") for line in responses.split(b"\r\n")
                       if line.lower().startswith(b"set-cookie:")), "")
    start = requests.find(b"GET /ws")
    found = split_head(requests[start:]) if start >= 0 else None
    return HappyPath(set_cookie, found[0].decode("latin-1") if found else "", first, second, same, cap)


def exercise_login_to_socket(run: HappyPath) -> Exercise:
    """Time from the login's answer to the socket's 101, read from the learner's capture."""
    rows = run.capture.table()
    login = next((r for r in rows if r.direction == S2C and r.app.startswith("204")), None)
    upgraded = next((r for r in rows if r.direction == S2C and r.app.startswith("101")), None)
    if login is None or upgraded is None:
        raise NetcourseError("the capture holds no login answer or no 101: run happy_path() again")
    ms = round((upgraded.t - login.t) * 1000, 3)
    return Exercise(
        "In your capture, find the server's answer to the login (204, the one carrying Set-Cookie) and its first "
        "'101 Switching Protocols'. How many milliseconds passed from the first to the second?",
        answer=ms, tolerance=0.05,
        hint="In run.capture.table(), rows have .t (seconds), .direction and .app (what the payload was).",
        explanation=f"{ms:.2f} ms on loopback: the client opened a second TCP connection and sent the handshake "
        "with the cookie, and the server checked the session and the Origin before answering 101. "
        "Authentication at set-up costs this once per connection, not per message; across a real distance "
        "it is two round trips (section 2 measures them at 100 ms).",
        kind="capture",
    )


def exercise_cookie_bytes(run: HappyPath) -> Exercise:
    """What the cookie costs the handshake, from the learner's capture."""
    line = next((l for l in run.handshake.split("\r\n") if l.lower().startswith("cookie:")), "")
    size = len(line) + 2 if line else 0
    return Exercise(
        "In your capture, the WebSocket handshake request carries the session in a Cookie header. How many bytes "
        "does that header line take, its CRLF included?", answer=size,
        hint="Find the line starting 'Cookie:' in run.handshake; count its characters, plus 2 for CRLF.",
        explanation=f"{size} bytes, once per connection: authentication happens at the handshake, not on every "
        "message (the notes' 'auth when the socket is set up'). The price: a session revoked later must be "
        "enforced by closing the socket, not by refusing the next message.",
        kind="capture",
    )


@dataclass
class OfflineRun:
    """A client that went offline while messages were published, and came back.

    Attributes:
        before: messages it held before going offline.
        arrivals: (ms since it reconnected, id, "replayed" or "live") for everything after.
        same: its database equals the server's view of what it may read.
    """

    before: int
    arrivals: list[tuple[float, int, str]]
    same: bool

    @property
    def replayed(self) -> int:
        return sum(1 for _, _, k in self.arrivals if k == "replayed")

    def __repr__(self) -> str:
        live = len(self.arrivals) - self.replayed
        return (f"held {self.before} before going offline; on reconnecting: {self.replayed} replayed, then {live} "
                f"live; the local database {'equals' if self.same else 'DIFFERS from'} the server's")


def offline_and_back(held: int = 20, offline: int = 50, live: int = 10, gap: float = 0.03) -> OfflineRun:
    """The client syncs ``held`` messages, goes offline, ``offline`` are published, it reconnects and then
    ``live`` more arrive ``gap`` s apart. Every arrival after the reconnect is timed and labelled."""
    with _chat(page=20) as (server, srv, d):
        _publish(server, srv, held)
        store = LocalStore(os.path.join(d, "ada.db"))
        client = ChatClient(store, srv.host, srv.port, "ada", "correct horse")
        client.connect(idle=0.2)
        before = len(store.ids())
        _publish(server, srv, offline)  # the client is offline: nothing connected
        cut = server_last(server)
        cookie = client.cookie
        arrivals: list[tuple[float, int, str]] = []

        with RawClient(Address(srv.host, srv.port), origin=f"http://127.0.0.1:{srv.port}", nodelay=True,
                       extra_headers=(f"Cookie: session={cookie}",)) as ws:
            t0 = time.perf_counter()
            ws.send(Frame(Opcode.TEXT, json.dumps({"resume_after": store.last_id()}).encode()))
            pusher = threading.Thread(target=_publish, args=(server, srv, live), kwargs={"gap": gap})
            started = False
            while True:
                ws.sock.settimeout(0.5)
                try:
                    events = ws.receive()
                except socket.timeout:
                    break
                batch = [json.loads(e.payload) for e in events if isinstance(e, Message)]
                store.store_many(batch)
                now = (time.perf_counter() - t0) * 1000
                arrivals += [(now, m["id"], "replayed" if m["id"] <= cut else "live") for m in batch]
                if not started and any(m["id"] >= cut for m in batch):
                    pusher.start()  # the backlog is in: now publish live ones
                    started = True
            if started:
                pusher.join()
        same = store.ids() == server.ids_for("ada")
        store.close()
    return OfflineRun(before, arrivals, same)


def predict_replayed(held: int = 20, offline: int = 50) -> Prediction:
    def explain(given: float, measured: float) -> str:
        return (f"The client resumes after its MAX(id), {held}; the server sends every message with a higher id it "
                f"may read: the {offline} published while it was away. Nothing older (it has those), nothing "
                "twice (the cursor only moves forward).")

    return Prediction(
        f"A client holds messages 1 to {held}. It goes offline; {offline} messages are published in its "
        "conversations. It reconnects and sends its resume_after. How many messages does the replay bring?",
        measure=lambda run: run.replayed, unit="messages", tolerance=0.0, explain=explain,
    )


@dataclass(frozen=True)
class Attack:
    """One attempt on the socket's authentication, and the answer."""

    case: str
    answer: str


def auth_attacks() -> tuple[list[Attack], float, list[str]]:
    """Handshakes without, with forged, expired and cross-site credentials; a revoked session's open socket
    (seconds until the server closed it); and where a token in the URL ends up (an access log)."""
    import sqlite3 as _sqlite3

    out: list[Attack] = []
    with _chat() as (server, srv, d):
        own = f"http://127.0.0.1:{srv.port}"
        status, cookie, _ = login(srv.host, srv.port, "ada", "correct horse")
        out.append(Attack("no cookie", handshake_as(srv.host, srv.port, "", cookie=None, origin=own).status_line))
        out.append(Attack("a forged cookie", handshake_as(srv.host, srv.port, "", cookie="A" * 43, origin=own).status_line))
        _, old, _ = login(srv.host, srv.port, "ada", "correct horse")
        with contextlib.closing(_sqlite3.connect(server.db_path)) as db:
            from ..apps.chatlog import token_hash

            db.execute("UPDATE sessions SET expires = ? WHERE token_hash = ?", (time.time() - 1, token_hash(old)))
            db.commit()
        out.append(Attack("an expired cookie", handshake_as(srv.host, srv.port, "", cookie=old, origin=own).status_line))
        out.append(Attack("a valid cookie from another site's page (Origin: http://evil.example)",
                          handshake_as(srv.host, srv.port, "", cookie=cookie, origin="http://evil.example").status_line))
        out.append(Attack("a valid cookie, own origin", handshake_as(srv.host, srv.port, "", cookie=cookie,
                                                                      origin=own).status_line))
        # a revoked session whose socket is open
        with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
            ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
            deadline = time.monotonic() + 3
            while not server.sockets and time.monotonic() < deadline:
                time.sleep(0.005)
            asyncio.run_coroutine_threadsafe(server.revoke("ada"), srv.loop).result(5)
            ws.sock.settimeout(2)
            try:
                events = ws.receive(1)
            except socket.timeout:
                events = []  # no close frame within 2 s: reported as "still open"
        closed = [e for e in events if isinstance(e, CloseReceived)]
        out.append(Attack("the session revoked while its socket is open",
                          f"closed with {closed[0].code} '{closed[0].reason}'" if closed else "still open"))
        revoked_after = server.closed_for_revocation[0] if server.closed_for_revocation else float("nan")
    leaks = _token_in_url_leaks()
    return out, revoked_after, leaks


def _token_in_url_leaks() -> list[str]:
    """A server that writes an ordinary access log (the request line, query string included, as the common
    log format does), asked for /ws?token=…: the line it writes."""
    from aiohttp import web


    lines: list[str] = []

    @web.middleware
    async def access_log(request: web.Request, handler):
        response = await handler(request)
        lines.append(f'{request.remote} - - "{request.method} {request.path_qs} HTTP/1.1" {response.status} '
                     f'"{request.headers.get("Referer", "-")}"')
        return response

    async def ws(request: web.Request) -> web.Response:
        return web.Response(status=426, text="upgrade required")

    app = web.Application(middlewares=[access_log])
    app.router.add_get("/ws", ws)
    with serve(app, name="access-log demo") as srv:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        conn.request("GET", "/ws?token=s3cr3t-session-token")
        conn.getresponse().read()
        conn.close()
    return lines


def predict_repeats(messages: int = 200, faults: int = 20) -> Prediction:
    """How many messages reach the client's database twice, across a soak's faults."""
    def explain(given: float, measured: float) -> str:
        return ("None arrive twice at the database. A SIGKILL mid-batch rolls back the uncommitted rows together "
                "with their count; a frame cut in half is never a message; a crashed server had sent only what "
                "the client may or may not have committed. Each time, the client resumes after MAX(id) of what "
                "it committed, and the server sends only ids above it. Faults cost messages in flight, which "
                "come again; never a stored one.")

    return Prediction(
        f"{messages} messages stream to the offline client while {faults} faults strike: SIGKILLs of the client, "
        "crashes of the server, connections cut in the middle of a frame. How many messages will come over the "
        "wire again *after* the client had already stored them (the repeats INSERT OR IGNORE would absorb)?",
        measure=lambda run: run.repeats, unit="messages", tolerance=0.0, explain=explain,
    )


FAULT_COUNTS = (0, 5, 20)


def soak_grid(counts: tuple[int, ...] = FAULT_COUNTS, *, messages: int = 200, rate: float = 150.0) -> dict[int, Soak]:
    """The fault soak once per number of faults (each a real run, all at once, each with its own server,
    client processes and databases), for the knob."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(counts)) as pool:
        runs = [pool.submit(fault_soak, messages, n, seed=20 + n, rate=rate, settle=6.0) for n in counts]
        return {n: run.result() for n, run in zip(counts, runs)}


def soak_knob(grid: dict[int, Soak], faults: int = 3):
    from ..course import plots

    if faults not in grid:
        raise ValueError(f"no run with {faults} faults; measured: {', '.join(map(str, grid))}")
    return plots.soak_result(grid[faults])


@dataclass
class LinkResume:
    """Coming back across an emulated link: ms from the start to each step of a reconnection."""

    rtt_ms: float
    login_ms: float
    handshake_ms: float
    first_message_ms: float
    all_ms: float
    messages: int
    mode: str

    def __repr__(self) -> str:
        return (f"across a {self.rtt_ms:g} ms round trip ({self.mode}): logged in after {self.login_ms:.0f} ms, "
                f"socket open after {self.handshake_ms:.0f} ms, first replayed message after "
                f"{self.first_message_ms:.0f} ms, all {self.messages} after {self.all_ms:.0f} ms")


def resume_across_a_link(rtt_ms: float = 100.0, backlog: int = 50) -> LinkResume:
    """A client that was offline comes back across an emulated link: login (a TCP connection and a request),
    the WebSocket handshake (another connection and the upgrade), then resume_after and the replay."""

    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d, link(rtt_ms=rtt_ms) as net:
        server = ChatServer(os.path.join(d, "server.db"), page=50,
                            allowed_origins=None)
        server.add_user("ada", "correct horse", ("general",))
        server.add_user("bob", "battery staple", ("general",))
        srv = net.serve(server.app(), name="chat")
        net.announce()
        _publish(server, srv, backlog)
        server.allowed_origins = {f"http://127.0.0.1:{srv.port}", f"http://{srv.host}:{srv.port}"}

        def client() -> tuple[float, float, float, float, int]:
            t0 = time.perf_counter()
            status, cookie, _ = login(srv.host, srv.port, "ada", "correct horse")
            t_login = time.perf_counter()
            with RawClient(Address(srv.host, srv.port), origin=f"http://127.0.0.1:{srv.port}", nodelay=True,
                           extra_headers=(f"Cookie: session={cookie}",)) as ws:
                t_open = time.perf_counter()
                ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
                got, first = 0, None
                while got < backlog:
                    ws.sock.settimeout(5)
                    events = ws.receive()
                    n = sum(1 for e in events if isinstance(e, Message))
                    if n and first is None:
                        first = time.perf_counter()
                    got += n
                t_all = time.perf_counter()
            ms = lambda t: (t - t0) * 1000  # noqa: E731
            return ms(t_login), ms(t_open), ms(first or t_all), ms(t_all), got

        login_ms, open_ms, first_ms, all_ms, got = net.near(client, 30)
        mode = net.mode
    return LinkResume(rtt_ms, login_ms, open_ms, first_ms, all_ms, got, mode)


def bad_inputs() -> list[tuple[str, str]]:
    """Each kind of bad input, sent to a live server: (what was sent, what came back)."""
    out: list[tuple[str, str]] = []
    with _chat() as (server, srv, d):
        own = f"http://127.0.0.1:{srv.port}"
        cookie = login(srv.host, srv.port, "ada", "correct horse")[1]
        for value in ("-1", '"7"', "1.5", "true", "999"):
            with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
                ws.send(Frame(Opcode.TEXT, ('{"resume_after": %s}' % value).encode()))
                ws.sock.settimeout(3)
                events = ws.receive(2)
            error = next((json.loads(e.payload).get("error", "") for e in events if isinstance(e, Message)), "")
            code = next((e.code for e in events if isinstance(e, CloseReceived)), None)
            out.append((f"resume_after {value}", f"close {code}: {error}"))
        with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
            ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
            ws.send(Frame(Opcode.TEXT, b"x" * (server.max_message + 1)))
            ws.sock.settimeout(3)
            events = ws.receive(1)
        code = next((e.code for e in events if isinstance(e, CloseReceived)), None)
        out.append((f"a frame of {server.max_message + 1:,} bytes (limit {server.max_message:,})", f"close {code}"))
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        conn.request("POST", "/login", body="user=ada", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        out.append(("a login that is not JSON", f"{resp.status}: {resp.read().decode()[:70]}"))
        conn.close()
        name = "robert'); DROP TABLE messages;--"
        server.add_user(name, "pw", ("general",))
        status = login(srv.host, srv.port, name, "pw")[0]
        _publish(server, srv, 1)
        out.append((f"a user named {name!r}", f"login {status}; the messages table still works ({server.last_id()} message)"))
    return out
