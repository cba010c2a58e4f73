"""The chat's client side (notebook 08): log in, open the WebSocket with the session cookie, resume after the
newest id the local database holds, and store what arrives; plus a handshake attempt for the attack lessons.

- ``login(host, port, user, password)``: ``POST /login``; the session cookie's value.
- ``LocalStore``: the client's own SQLite: its messages (keyed by the server's id) and its outbox.
- ``ChatClient``: one connection's worth of sync: resume, flush the outbox, store until idle.
- ``handshake_as(...)``: the status line the server answers to a handshake with a given cookie and Origin.
"""

from __future__ import annotations

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
from .websocket import Address, RawClient

__all__ = ["login", "LocalStore", "ChatClient", "Refusal", "handshake_as"]


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
            CREATE TABLE IF NOT EXISTS wire (received INTEGER, repeats INTEGER);
            CREATE TABLE IF NOT EXISTS arrivals (seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER);
        """)
        if self.db.execute("SELECT COUNT(*) FROM wire").fetchone()[0] == 0:
            self.db.execute("INSERT INTO wire VALUES (0, 0)")
        self.db.commit()

    def last_id(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]

    def cursors(self) -> dict[str, int]:
        """The last id held in each conversation: ``MAX(id)`` per conversation, from the same database."""
        return dict(self.db.execute("SELECT conversation, MAX(id) FROM messages GROUP BY conversation").fetchall())

    def store(self, msg: dict) -> bool:
        """One message, in its own transaction; False if it was already there."""
        return self.store_many([msg]) == 1

    def store_many(self, msgs: list[dict]) -> int:
        """Several messages in one transaction (all or none); how many were new. Each new id is also
        appended to ``arrivals``, so the order in which messages first arrived can be checked later."""
        with self.db:
            new = 0
            for m in msgs:
                cur = self.db.execute("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?)",
                                      (int(m["id"]), m["conversation"], m["sender"], m["text"]))
                if cur.rowcount == 1:
                    self.db.execute("INSERT INTO arrivals (id) VALUES (?)", (int(m["id"]),))
                    new += 1
            # what came over the wire, in the same transaction (a SIGKILL loses none of this count either)
            self.db.execute("UPDATE wire SET received = received + ?, repeats = repeats + ?", (len(msgs), len(msgs) - new))
            return new

    def arrival_order(self) -> list[int]:
        """The ids in the order they were first stored."""
        return [r[0] for r in self.db.execute("SELECT id FROM arrivals ORDER BY seq")]

    def wire(self) -> tuple[int, int]:
        """(messages received over the wire, of which repeats): what dedup absorbed."""
        return tuple(self.db.execute("SELECT received, repeats FROM wire").fetchone())

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
    cookie, resume after the last id it holds in each conversation (``MAX(id)`` per conversation; with
    ``by_conversation=False`` one ``MAX(id)`` for all, the membership trap), flush the outbox, and store what arrives until ``idle``
    seconds pass with nothing new (or ``limit`` seconds in all)."""

    def __init__(self, store: LocalStore, host: str, port: int, user: str, password: str, *,
                 by_conversation: bool = True) -> None:
        self.store, self.host, self.port, self.user, self.password = store, host, port, user, password
        self.by_conversation = by_conversation  # a cursor per conversation; False: one MAX(id) for all
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
        with RawClient(Address(self.host, self.port), origin=origin, nodelay=True,
                       extra_headers=(f"Cookie: session={self.cookie}",)) as ws:
            if not ws.accepted:
                status = ws.response.split(b"\r\n", 1)[0].decode("latin-1")
                raise NetcourseError(f"the handshake was refused: {status}")
            cursor = ({"resume": self.store.cursors()} if self.by_conversation
                      else {"resume_after": self.store.last_id()})
            ws.send(Frame(Opcode.TEXT, json.dumps(cursor).encode()))
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
    with RawClient(Address(host, port), origin=origin, extra_headers=extra) as ws:
        return Refusal(case, ws.response.split(b"\r\n", 1)[0].decode("latin-1"))
