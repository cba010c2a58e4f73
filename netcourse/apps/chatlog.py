"""The chat's durable state (notebook 08), in one SQLite file: the message log, who may read what, users and
sessions. ``apps.chat`` serves it; every query is here, and every one is parameterised.

- ``messages(id INTEGER PRIMARY KEY AUTOINCREMENT, conversation, sender, text, key, created)``: ids are
  persistent and strictly increasing (AUTOINCREMENT never reuses an id, even after the newest row is deleted);
  never wall-clock timestamps, which tie and step backwards. ``(sender, key)`` is unique: a client's
  idempotency key, so a resent message is stored once.
- ``members(conversation, user)``: who may read what.
- ``users(name, salt, hash)``: passwords hashed with scrypt. ``sessions(token_hash, user, expires, revoked)``:
  only the SHA-256 of each session token is stored, so a leaked database holds no usable cookie.

Two kinds of access: the set-up methods (``add_user``, ``last_id``, ``ids_for``) open a connection of their
own and may run in any thread; the rest use the server's one connection, on its event loop, which never
waits for a lock (SQLite's busy wait would block the whole loop): a lock another connection holds raises
``Busy`` at once, and the caller may try again a moment later without blocking (``apps.chat`` does, for up
to ``DB_BUSY_TIMEOUT`` in all). A learner's uncommitted transaction must stall nobody.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
import time
from typing import Any

__all__ = ["ChatLog", "Busy", "scrypt", "token_hash", "DB_BUSY_TIMEOUT", "SESSION_SECONDS"]

DB_BUSY_TIMEOUT = 0.25  # seconds the server keeps trying a database another connection has locked
SESSION_SECONDS = 3600
# A demonstration cost: a login takes milliseconds. A real deployment uses more (OWASP suggests n=2**17, r=8, p=1),
# which takes 128 MiB (128 × n × r bytes) and tens of milliseconds per login.
SCRYPT = {"n": 2 ** 12, "r": 8, "p": 1}


class Busy(Exception):
    """The database is locked by another connection (the message is SQLite's)."""


def scrypt(password: str, salt: bytes) -> bytes:
    """The stored form of a password (about 15 ms of CPU: call it off the event loop)."""
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, **SCRYPT)


def token_hash(token: str) -> str:
    """What the database keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


class ChatLog:
    """The chat's SQLite file. See the module's description.

    Args:
        path: the file; created with its tables if new (the log survives a restart of the server).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript("""
                CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation TEXT,
                    sender TEXT, text TEXT, key TEXT, created REAL, UNIQUE (sender, key));
                CREATE TABLE IF NOT EXISTS members (conversation TEXT, user TEXT, PRIMARY KEY (conversation, user));
                CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, salt BLOB, hash BLOB);
                CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, user TEXT, expires REAL,
                    revoked INTEGER DEFAULT 0);
            """)
            db.commit()

    # -- set-up and checks, from any thread --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def add_user(self, name: str, password: str, conversations: tuple[str, ...] = ()) -> None:
        salt = secrets.token_bytes(16)
        with contextlib.closing(self._conn()) as db:
            db.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (name, salt, scrypt(password, salt)))
            for c in conversations:
                db.execute("INSERT OR IGNORE INTO members VALUES (?, ?)", (c, name))
            db.commit()

    def join(self, user: str, conversation: str) -> None:
        """Make ``user`` a member of ``conversation`` (its history included: membership is not by date)."""
        with contextlib.closing(self._conn()) as db:
            db.execute("INSERT OR IGNORE INTO members VALUES (?, ?)", (conversation, user))
            db.commit()

    def conversation_ids(self, conversation: str) -> list[int]:
        """The ids of one conversation's messages, in order."""
        with contextlib.closing(self._conn()) as db:
            return [r[0] for r in db.execute("SELECT id FROM messages WHERE conversation = ? ORDER BY id",
                                             (conversation,))]

    def last_id(self) -> int:
        with contextlib.closing(self._conn()) as db:
            return db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]

    def ids_for(self, user: str) -> list[int]:
        """Every message id ``user`` may read, in order (what a complete client holds)."""
        with contextlib.closing(self._conn()) as db:
            return [r[0] for r in db.execute(
                "SELECT m.id FROM messages m JOIN members b ON b.conversation = m.conversation AND b.user = ? "
                "ORDER BY m.id", (user,))]

    # -- the server's connection, on its event loop ------------------------------------------------------------

    def open(self) -> None:
        self._db = sqlite3.connect(self.path, timeout=0)  # never SQLite's busy wait on the loop: Busy at once

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def _one(self, sql: str, args: tuple = ()) -> Any:
        assert self._db is not None, "the chat log is not open"
        try:
            return self._db.execute(sql, args).fetchone()
        except sqlite3.OperationalError as exc:
            raise Busy(str(exc)) from exc

    def _write(self, sql: str, args: tuple) -> sqlite3.Cursor:
        assert self._db is not None, "the chat log is not open"
        try:
            cur = self._db.execute(sql, args)
            self._db.commit()
            return cur
        except sqlite3.OperationalError as exc:
            self._db.rollback()
            raise Busy(str(exc)) from exc

    def password(self, user: str) -> tuple[bytes, bytes] | None:
        """(salt, scrypt hash) of a user, or None for an unknown one."""
        return self._one("SELECT salt, hash FROM users WHERE name = ?", (user,))

    def new_session(self, user: str, seconds: float = SESSION_SECONDS) -> str:
        """A fresh session for ``user``; returns its token (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        self._write("INSERT INTO sessions VALUES (?, ?, ?, 0)", (token_hash(token), user, time.time() + seconds))
        return token

    def session(self, hashed: str) -> tuple[str, float] | None:
        """(user, expiry as a Unix time) of a live session, or None if it is unknown, revoked or expired."""
        row = self._one("SELECT user, expires, revoked FROM sessions WHERE token_hash = ?", (hashed,))
        if row is None or row[2] or row[1] < time.time():
            return None
        return row[0], row[1]

    def revoke(self, user: str) -> None:
        self._write("UPDATE sessions SET revoked = 1 WHERE user = ?", (user,))

    def newest(self) -> int:
        return self._one("SELECT COALESCE(MAX(id), 0) FROM messages")[0]

    def members(self, conversation: str) -> set[str]:
        assert self._db is not None, "the chat log is not open"
        return {u for (u,) in self._db.execute("SELECT user FROM members WHERE conversation = ?", (conversation,))}

    def store(self, sender: str, conversation: str, text: str, key: str) -> tuple[int, bool] | None:
        """Store a message once per (sender, key): (its id, whether it is new); None if the sender is not a
        member. A key used before returns the stored message's id, whatever the new text says."""
        if self._one("SELECT 1 FROM members WHERE conversation = ? AND user = ?", (conversation, sender)) is None:
            return None
        cur = self._write("INSERT OR IGNORE INTO messages (conversation, sender, text, key, created) "
                          "VALUES (?, ?, ?, ?, ?)", (conversation, sender, text, key, time.time()))
        if cur.rowcount == 0:
            return self._one("SELECT id FROM messages WHERE sender = ? AND key = ?", (sender, key))[0], False
        return cur.lastrowid, True

    def page(self, user: str, after: int, upto: int | None, limit: int) -> list[tuple[int, str, str, str]]:
        """Up to ``limit`` of ``user``'s messages with ``after < id <= upto``, in id order: a range scan of the
        primary key from the cursor, filtered by membership, so each page costs its own size however long the
        log behind the cursor."""
        assert self._db is not None, "the chat log is not open"
        return self._db.execute(
            "SELECT id, conversation, sender, text FROM messages WHERE id > ? AND id <= ? AND conversation IN "
            "(SELECT conversation FROM members WHERE user = ?) ORDER BY id LIMIT ?",
            (after, upto if upto is not None else 2 ** 62, user, limit)).fetchall()
