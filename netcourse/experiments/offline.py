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

__all__ = ["login", "LocalStore", "ChatClient", "Refusal", "handshake_as"]


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
                for event in events:
                    if isinstance(event, CloseReceived):
                        return new
                    if not isinstance(event, Message):
                        continue
                    data = json.loads(event.payload)
                    if "ack" in data:
                        self.store.ack(data["ack"])
                    elif "id" in data:
                        self.received += 1
                        if self.store.store(data):
                            new += 1
                        else:
                            self.duplicates += 1
                    quiet_since = time.monotonic()
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
