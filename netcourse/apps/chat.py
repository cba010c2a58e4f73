"""Offline messaging for notebook 08: a chat server with a durable message log, cookie sessions checked at
the WebSocket handshake, and a resume protocol with no gap and no duplicate at the seam.

**State** (SQLite, one file; every query parameterised):

- ``messages(id INTEGER PRIMARY KEY AUTOINCREMENT, conversation, sender, text, key, created)``: ids are
  persistent and strictly increasing (AUTOINCREMENT never reuses an id, even after the newest row is deleted);
  never wall-clock timestamps, which tie and step backwards. ``(sender, key)`` is unique: a client's
  idempotency key, so a resent message is stored once.
- ``members(conversation, user)``: who may read what.
- ``users(name, salt, hash)``: passwords hashed with scrypt. ``sessions(token_hash, user, expires, revoked)``:
  the server stores only the SHA-256 of each session token, so a leaked database holds no usable cookie.

**HTTP**: ``POST /login`` (JSON ``{"user", "password"}``) answers 204 with ``Set-Cookie: session=<random>;
HttpOnly; SameSite=Lax; Path=/; Max-Age=…``; a malformed login is a 400, a wrong one a 401.

**WebSocket** ``GET /ws``: before the upgrade, the session cookie must name a live session (else 401) and
``Origin`` must be on the allow-list (else 403: cross-site WebSocket hijacking, RFC 6455 §10.2). After it,
the client's first message is ``{"resume_after": N}``; the server

1. registers the connection for live messages *first*,
2. replays the user's messages with ``id > N`` in pages of ``page`` from the database,
3. then forwards live messages, skipping any id it has already sent (the cursor only moves forward):
   nothing published during the replay is lost, nothing is sent twice.

Each message goes out as ``{"id", "conversation", "sender", "text"}``. A client sends
``{"send": {"conversation", "text", "key"}}`` and gets ``{"ack": key, "id": id}``; a key it used before gets
the stored message's id with ``"duplicate": true``, and nothing new is stored or pushed. A ``resume_after``
that is negative, not an integer or ahead of the log gets an ``{"error"}`` frame and close code 1008; a
message over ``max_message`` bytes closes with 1009.

**Limits** (every one checked by a test):

- a session holds at most ``MAX_SOCKETS_PER_SESSION`` sockets; a newer one closes the oldest (1008);
- a socket that cannot keep up (more than ``MAX_QUEUED`` messages waiting, more than ``MAX_UNSENT`` bytes in
  its send buffer, or a write that does not drain within ``WRITE_TIMEOUT``) is dropped with 1013 "try again
  later": the close frame goes behind what it has not read, and the connection is cut ``CLOSE_GRACE`` later;
- revoking a session (``revoke()``) or its expiry closes every socket of it with 1008, resumed or not, and a
  resume on a revoked or expired session is refused;
- scrypt runs off the event loop (a login flood does not stall the sockets), and an unknown user costs the
  same scrypt as a wrong password (the answer's timing does not tell which users exist);
- a database locked by another connection answers 503 with the reason after ``DB_BUSY_TIMEOUT``, never a
  stalled loop; crafted JSON (nesting, lone surrogates) gets 400, or an error frame and 1008, never a 500.

aiohttp accepts unmasked client frames, which RFC 6455 §5.1 says a server must refuse; the course's own
server (``apps.wsserver``) is the strict one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import socket
import sqlite3
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..protocols.wsframe import CloseCode, Frame, Opcode, encode
from .safety import origin_problem, own_origins, safe_app

__all__ = ["ChatServer", "SESSION_COOKIE", "SESSION_SECONDS", "SEAMS", "MAX_SOCKETS_PER_SESSION", "MAX_QUEUED",
           "MAX_UNSENT"]

# how the server joins the replay to the live stream: the right way, and two wrong ones notebook 08 measures
SEAMS = ("correct", "subscribe after the replay", "replay after subscribing, no dedup")

SESSION_COOKIE = "session"
SESSION_SECONDS = 3600
MAX_SOCKETS_PER_SESSION = 8
MAX_QUEUED = 256  # live messages waiting for one socket
MAX_UNSENT = 1 << 20  # bytes waiting in one socket's send buffer
WRITE_TIMEOUT = 5.0  # seconds one write may wait for a socket that does not read
CLOSE_GRACE = 2.0  # seconds a dropped socket gets to read up to its close frame before it is cut
CLOSE_TIMEOUT = 1.0  # seconds the close handshakes of revoke() and of a stop may take, in all
DB_BUSY_TIMEOUT = 0.25  # seconds the server waits for a database another connection has locked
LOGINS_AT_ONCE = 2  # scrypt hashes computed at once (each takes ~15 ms of CPU, off the event loop)
SCRYPT = {"n": 2 ** 12, "r": 8, "p": 1}
_SERVER = web.AppKey("chat", object)
_TOO_DEEP = RecursionError  # what json.loads raises for deeply nested input


@dataclass(eq=False)
class _Socket:
    ws: web.WebSocketResponse
    transport: Any  # the request's transport (public: request.transport), for cuts and drops
    user: str
    token_hash: str
    sent_up_to: int = 0
    live: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))
    dropped: bool = False
    resumed: bool = False
    expiry: asyncio.TimerHandle | None = None


class _Busy(Exception):
    """The database is locked by another connection."""


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, **SCRYPT)


def _json(data: bytes | str) -> Any:
    """JSON, or ValueError for anything malformed: not UTF-8 (RFC 8259 §8.1; ``json.loads`` would also take
    UTF-16 and UTF-32), nesting past Python's stack."""
    try:
        value = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except _TOO_DEEP:
        raise ValueError("nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None
    return value


def _text(value: Any, name: str, limit: int) -> str:
    """A JSON string field that SQLite and UTF-8 can hold, or ValueError saying why not."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} holds a lone surrogate (not Unicode text)") from None
    if not 0 < len(value) <= limit:
        raise ValueError(f"{name} must be 1 to {limit} characters")
    return value


class ChatServer:
    """The chat server's state and its aiohttp app (``server.app()``, run with ``serve()``).

    Args:
        db_path: the SQLite file (the log survives a restart of the server).
        page: messages per replay page (memory stays bounded by it, however long the backlog).
        allowed_origins: Origins accepted at the handshake (None: the server's own, set at start).
        max_message: the largest frame a client may send, bytes.
    """

    def __init__(self, db_path: str, *, page: int = 100, allowed_origins: set[str] | None = None,
                 max_message: int = 16 * 1024, seam: str = "correct") -> None:
        if not 1 <= page <= 10_000 or max_message < 64:
            raise ValueError("need 1 <= page <= 10000 and max_message >= 64")
        if seam not in SEAMS:
            raise ValueError(f"seam is one of {', '.join(SEAMS)}")
        self.seam = seam
        self.db_path, self.page, self.max_message = db_path, page, max_message
        self.allowed_origins = allowed_origins
        self.sockets: list[_Socket] = []  # resumed sockets: they get live messages
        self.closed_for_revocation: list[float] = []  # seconds from revoke() to the socket's close
        self.cut_mid_frame: list[tuple[int, bool]] = []  # (message id, its half frame reached the kernel) per cut
        self.dropped: list[tuple[int, str]] = []  # (close code, reason) of sockets the server dropped or replaced
        self._open: dict[web.WebSocketResponse, _Socket] = {}  # every upgraded socket, resumed or not, oldest first
        self._cuts_armed = 0
        self._db: sqlite3.Connection | None = None
        self._logins: asyncio.Semaphore | None = None
        self._dummy = (secrets.token_bytes(16), _scrypt(secrets.token_urlsafe(12), b"\0" * 16))
        with contextlib.closing(sqlite3.connect(db_path)) as db:
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

    # -- set-up, from any thread (before or while serving) --------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=10)

    def add_user(self, name: str, password: str, conversations: tuple[str, ...] = ()) -> None:
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 12, r=8, p=1)
        with contextlib.closing(self._conn()) as db:
            db.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (name, salt, digest))
            for c in conversations:
                db.execute("INSERT OR IGNORE INTO members VALUES (?, ?)", (c, name))
            db.commit()

    def last_id(self) -> int:
        with contextlib.closing(self._conn()) as db:
            return db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]

    def ids_for(self, user: str) -> list[int]:
        """Every message id ``user`` may read, in order (what a complete client holds)."""
        with contextlib.closing(self._conn()) as db:
            return [r[0] for r in db.execute(
                "SELECT m.id FROM messages m JOIN members b ON b.conversation = m.conversation AND b.user = ? "
                "ORDER BY m.id", (user,))]

    # -- the app ---------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = safe_app()
        app[_SERVER] = self
        app.router.add_post("/login", self._login)
        app.router.add_get("/ws", self._ws)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        # On the event loop, a lock held by another connection must not stall every socket: wait briefly, then 503.
        self._db = sqlite3.connect(self.db_path, timeout=DB_BUSY_TIMEOUT)
        self._logins = asyncio.Semaphore(LOGINS_AT_ONCE)
        self.loop = asyncio.get_running_loop()

    async def _shutdown(self, app: web.Application) -> None:
        await self._close_sockets(list(self._open.values()), WSCloseCode.GOING_AWAY, "server shutting down")

    async def _stop(self, app: web.Application) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _close_sockets(self, socks: list[_Socket], code: int, reason: str) -> None:
        """Close sockets with a close frame, all at once; what has not closed after CLOSE_TIMEOUT is cut."""
        async def close(sock: _Socket) -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.close(code=code, message=reason.encode())

        tasks = [asyncio.ensure_future(close(s)) for s in socks
                 if s.transport is not None and not s.transport.is_closing()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for sock in socks:
            if sock.transport is not None and not sock.ws.closed:
                sock.transport.abort()

    def _drop(self, sock: _Socket, reason: str) -> None:
        """A socket that cannot keep up: 1013 goes out behind what it has not read, and the connection is cut
        CLOSE_GRACE later, whether or not it read that far (its unread backlog must not stay in memory)."""
        if sock.dropped:
            return
        sock.dropped = True
        self.dropped.append((int(CloseCode.TRY_AGAIN_LATER), reason))
        transport = sock.transport
        if transport is None or transport.is_closing():
            return
        payload = struct.pack("!H", CloseCode.TRY_AGAIN_LATER) + reason.encode()[:120]
        transport.write(encode(Frame(Opcode.CLOSE, payload)))  # a server frame: unmasked (RFC 6455 §5.1)
        transport.close()  # sends what is buffered, then FIN ...
        self.loop.call_later(CLOSE_GRACE, transport.abort)  # ... unless the peer never reads it

    async def _login(self, request: web.Request) -> web.Response:
        try:
            data = _json(await request.read())
            if not isinstance(data, dict) or "user" not in data or "password" not in data:
                raise ValueError("missing fields")
            user, password = _text(data["user"], "user", 100), _text(data["password"], "password", 1000)
        except ValueError as exc:
            return web.json_response({"error": "a login is JSON: {\"user\": \"...\", \"password\": \"...\"} "
                                      f"({exc})"}, status=400)
        try:
            row = self._read("SELECT salt, hash FROM users WHERE name = ?", (user,))
        except _Busy as exc:
            return _busy(exc)
        salt, stored = row if row is not None else self._dummy  # an unknown user costs the same scrypt
        assert self._logins is not None
        async with self._logins:  # a flood queues here, off the loop, instead of stalling every socket
            digest = await asyncio.get_running_loop().run_in_executor(None, _scrypt, password, salt)
        if row is None or not secrets.compare_digest(digest, stored):
            return web.json_response({"error": "wrong user or password"}, status=401)
        token = secrets.token_urlsafe(32)
        try:
            self._write("INSERT INTO sessions VALUES (?, ?, ?, 0)", (_hash(token), user, time.time() + SESSION_SECONDS))
        except _Busy as exc:
            return _busy(exc)
        resp = web.Response(status=204)
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", path="/", max_age=SESSION_SECONDS)
        return resp

    # -- the database, on the loop: short waits, a clear error when another connection holds the lock ----------

    def _read(self, sql: str, args: tuple) -> Any:
        assert self._db is not None
        try:
            return self._db.execute(sql, args).fetchone()
        except sqlite3.OperationalError as exc:
            raise _Busy(str(exc)) from exc

    def _write(self, sql: str, args: tuple) -> sqlite3.Cursor:
        assert self._db is not None
        try:
            cur = self._db.execute(sql, args)
            self._db.commit()
            return cur
        except sqlite3.OperationalError as exc:
            self._db.rollback()
            raise _Busy(str(exc)) from exc

    def _session(self, token_hash: str) -> tuple[str, float] | None:
        """(user, expiry as a Unix time) of a live session, or None if it is unknown, revoked or expired."""
        row = self._read("SELECT user, expires, revoked FROM sessions WHERE token_hash = ?", (token_hash,))
        if row is None or row[2] or row[1] < time.time():
            return None
        return row[0], row[1]

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        # authentication and the Origin check happen *before* the upgrade: a refusal is a plain HTTP answer
        token = request.cookies.get(SESSION_COOKIE)
        try:
            found = self._session(_hash(token)) if token else None
        except _Busy as exc:
            return _busy(exc)
        if found is None:
            return web.json_response({"error": "no valid session cookie: log in first"}, status=401)
        origins = request.headers.getall("Origin", [])
        port = (request.transport.get_extra_info("sockname") or ("", 0))[1] if request.transport else 0
        allowed = self.allowed_origins if self.allowed_origins is not None else own_origins(port)
        if len(origins) != 1 or origins[0].lower() not in allowed:
            why = origin_problem(origins, port) or f"Origin {origins[0] if origins else None!r} is not allowed"
            return web.json_response({"error": f"{why}: it may not open this socket (cross-site WebSocket "
                                      "hijacking, RFC 6455 §10.2)"}, status=403)
        (user, expires), token_hash = found, _hash(token)
        # aiohttp closes a message of exactly max_msg_size bytes with 1009; the documented limit is inclusive
        ws = web.WebSocketResponse(max_msg_size=self.max_message + 1, heartbeat=None)
        await ws.prepare(request)
        sock = _Socket(ws, request.transport, user, token_hash)
        self._open[ws] = sock
        self._limit_session(sock)
        sock.expiry = self.loop.call_later(max(0.0, expires - time.time()), self._expire, sock)
        raw = request.transport.get_extra_info("socket") if request.transport else None
        if raw is not None:  # small frames go out at once, not after the previous one's ACK (Nagle, notebook 05)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve_socket(sock)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            if sock.expiry is not None:
                sock.expiry.cancel()
            self._open.pop(ws, None)
            with contextlib.suppress(ValueError):
                self.sockets.remove(sock)
            if not ws.closed and not sock.dropped:
                with contextlib.suppress(ConnectionError, RuntimeError):  # a cut connection has nobody to say goodbye to
                    await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
            if not ws.closed and sock.transport is not None and not sock.dropped:
                sock.transport.abort()
        return ws

    async def _serve_socket(self, sock: _Socket) -> None:
        ws = sock.ws
        first = await asyncio.wait_for(ws.receive(), 10)
        try:
            cursor = self._resume_cursor(first, sock)
        except _Busy as exc:
            cursor = f"the server's database is busy ({exc}); try again"
        if isinstance(cursor, str):
            if not ws.closed:
                await ws.send_json({"error": cursor})
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"bad resume_after")
            return
        sock.sent_up_to, sock.resumed = cursor, True
        if self.seam == "subscribe after the replay":  # a naive server, for notebook 08: the seam leaks
            await self._replay(sock, upto=self._read("SELECT COALESCE(MAX(id), 0) FROM messages", ())[0])
            self.sockets.append(sock)  # ... and live messages only from now: those in between are lost
        else:
            self.sockets.append(sock)  # 1. live messages queue up from now on ...
            await self._replay(sock)  # 2. ... while the backlog goes out, page by page
        reader = asyncio.ensure_future(self._read_posts(sock))
        get: asyncio.Future | None = None
        try:
            while not ws.closed and not sock.dropped:  # 3. then the live ones, never an id twice
                get = asyncio.ensure_future(sock.live.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    break
                msg = get.result()
                if msg["id"] > sock.sent_up_to or self.seam == "replay after subscribing, no dedup":
                    if not await self._send(sock, msg):
                        break
                    sock.sent_up_to = max(sock.sent_up_to, msg["id"])
        finally:  # no task outlives the socket, whether it ended, was dropped or the handler was cancelled
            for task in (get, reader):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (get, reader) if t is not None), return_exceptions=True)

    def _limit_session(self, sock: _Socket) -> None:
        """At most MAX_SOCKETS_PER_SESSION sockets per session: a newer one replaces the oldest."""
        mine = [s for s in self._open.values() if s.token_hash == sock.token_hash and not s.ws.closed]
        excess = mine[: max(0, len(mine) - MAX_SOCKETS_PER_SESSION)]
        if excess:
            reason = "replaced by a newer socket of this session"
            self.dropped += [(int(CloseCode.POLICY_VIOLATION), reason)] * len(excess)
            asyncio.ensure_future(self._close_sockets(excess, WSCloseCode.POLICY_VIOLATION, reason))

    def _expire(self, sock: _Socket) -> None:
        sock.expiry = None
        self.dropped.append((int(CloseCode.POLICY_VIOLATION), "session expired"))
        asyncio.ensure_future(self._close_sockets([sock], WSCloseCode.POLICY_VIOLATION, "session expired"))

    def _resume_cursor(self, msg: Any, sock: _Socket) -> int | str:
        if self._session(sock.token_hash) is None:  # revoked or expired since the handshake
            return "this session was revoked or has expired: log in again"
        if msg.type != WSMsgType.TEXT:
            return "the first message must be JSON text: {\"resume_after\": <last id you hold>}"
        try:
            data = _json(msg.data)
            value = data["resume_after"]
        except (ValueError, KeyError, TypeError):
            return "the first message must be {\"resume_after\": <last id you hold>}"
        if isinstance(value, bool) or not isinstance(value, int):
            return f"resume_after must be an integer, not {str(value)[:20]!r}"
        if value < 0:
            return "resume_after cannot be negative"
        newest = self._read("SELECT COALESCE(MAX(id), 0) FROM messages", ())[0]
        if value > newest:
            return f"resume_after {value} is ahead of the log (its newest id is {newest})"
        return value

    async def _replay(self, sock: _Socket, *, upto: int | None = None) -> None:
        assert self._db is not None
        while True:
            # a range scan of the primary key from the cursor, filtered by membership: each page costs its
            # own size, however long the log behind the cursor
            rows = self._db.execute(
                "SELECT id, conversation, sender, text FROM messages WHERE id > ? AND id <= ? AND conversation IN "
                "(SELECT conversation FROM members WHERE user = ?) ORDER BY id LIMIT ?",
                (sock.sent_up_to, upto if upto is not None else 2 ** 62, sock.user, self.page)).fetchall()
            for msg_id, conversation, sender, text in rows:
                if not await self._send(sock, {"id": msg_id, "conversation": conversation, "sender": sender,
                                               "text": text}):
                    raise ConnectionResetError("cut mid-frame, or dropped for not keeping up")
                sock.sent_up_to = msg_id
            if len(rows) < self.page:
                return
            await asyncio.sleep(0)  # let other connections (and publishers) run between pages: a long
            # backlog must not stall the server, and new messages do arrive mid-replay

    async def _send(self, sock: _Socket, msg: dict) -> bool:
        """Send one message; False if the socket was dropped, or a cut was armed and this frame was cut in half."""
        if not self._cuts_armed:
            transport = sock.transport
            if transport is not None and transport.get_write_buffer_size() > MAX_UNSENT:
                self._drop(sock, f"more than {MAX_UNSENT:,} bytes unsent: the client does not keep up")
                return False
            try:
                await asyncio.wait_for(sock.ws.send_json(msg), WRITE_TIMEOUT)
            except asyncio.TimeoutError:
                self._drop(sock, f"a write did not drain within {WRITE_TIMEOUT:g} s: the client does not read")
                return False
            return True
        self._cuts_armed -= 1
        transport = sock.transport
        reached = False
        if transport is not None:
            frame = encode(Frame(Opcode.TEXT, json.dumps(msg).encode()))  # a server frame: unmasked (§5.1)
            transport.write(frame[:len(frame) // 2])
            reached = transport.get_write_buffer_size() == 0  # all of it handed to the kernel, which sends it
            transport.abort()  # (abort drops only what is still in asyncio's buffer)
        self.cut_mid_frame.append((msg["id"], reached))
        return False

    async def _read_posts(self, sock: _Socket) -> None:
        """The client's frames after the resume: messages to post."""
        async for msg in sock.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                send = _json(msg.data)["send"]
                conversation = _text(send["conversation"], "conversation", 100)
                text, key = _text(send["text"], "text", self.max_message), _text(send["key"], "key", 100)
            except (ValueError, KeyError, TypeError) as exc:
                await sock.ws.send_json({"error": "a post is {\"send\": {\"conversation\", \"text\", \"key\"}} "
                                         f"of strings ({exc})"})
                continue
            try:
                stored = self._store(sock.user, conversation, text, key)
            except _Busy as exc:
                await sock.ws.send_json({"error": f"the server's database is busy ({exc}); send it again",
                                         "key": key})
                continue
            if stored is None:
                await sock.ws.send_json({"error": f"you are not a member of {conversation!r}", "key": key})
                continue
            msg_id, new = stored
            await sock.ws.send_json({"ack": key, "id": msg_id} if new else {"ack": key, "id": msg_id, "duplicate": True})

    # -- publishing (on the server's loop) ----------------------------------------------------------------------

    def _store(self, sender: str, conversation: str, text: str, key: str) -> tuple[int, bool] | None:
        """Store a message once per (sender, key) and push it live if it is new: (its id, whether it is new);
        None if the sender is not a member. A key used before returns the stored message's id and pushes
        nothing: what was acknowledged is exactly what the log holds, and nothing that is not in it goes out."""
        if self._read("SELECT 1 FROM members WHERE conversation = ? AND user = ?", (conversation, sender)) is None:
            return None  # not a member: nothing stored
        cur = self._write("INSERT OR IGNORE INTO messages (conversation, sender, text, key, created) "
                          "VALUES (?, ?, ?, ?, ?)", (conversation, sender, text, key, time.time()))
        if cur.rowcount == 0:
            return self._read("SELECT id FROM messages WHERE sender = ? AND key = ?", (sender, key))[0], False
        msg_id = cur.lastrowid
        assert self._db is not None
        members = {u for (u,) in self._db.execute("SELECT user FROM members WHERE conversation = ?", (conversation,))}
        msg = {"id": msg_id, "conversation": conversation, "sender": sender, "text": text}
        for s in self.sockets:
            if s.user in members and not s.dropped:
                try:
                    s.live.put_nowait(msg)
                except asyncio.QueueFull:
                    self._drop(s, f"more than {MAX_QUEUED} messages waiting: the client does not keep up")
        return msg_id, True

    async def post(self, sender: str, conversation: str, text: str, key: str | None = None) -> int | None:
        """Store a message (once per sender and key) and push it to the members' open sockets; its id (the
        stored one if the key was used before), or None if ``sender`` is not a member."""
        stored = self._store(sender, conversation, text, key or secrets.token_hex(8))
        return None if stored is None else stored[0]

    def arm_cut_mid_frame(self) -> None:
        """Cut the connection in the middle of the next message frame the server sends, to any client: half
        the frame's bytes go out, then the TCP connection is aborted (no close frame). The client holds half
        a frame it must throw away; the message comes again in its next catch-up."""
        self._cuts_armed += 1

    async def cut_all(self) -> int:
        """Abort every open socket's TCP connection without a close frame, as the kernel does for a server
        process that crashed: the client sees the connection end (a FIN, or an RST if data it sent was
        still unread), never a WebSocket close."""
        n = 0
        for sock in list(self._open.values()):  # resumed or still waiting for resume_after: every upgraded socket
            if sock.transport is not None:
                sock.transport.abort()
                n += 1
        return n

    async def revoke(self, user: str) -> int:
        """Revoke every session of ``user`` and close all their sockets, resumed or not (1008); returns how many."""
        t = time.perf_counter()
        self._write("UPDATE sessions SET revoked = 1 WHERE user = ?", (user,))
        victims = [s for s in self._open.values() if s.user == user]
        await self._close_sockets(victims, WSCloseCode.POLICY_VIOLATION, "session revoked")
        self.closed_for_revocation += [time.perf_counter() - t] * len(victims)
        return len(victims)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _busy(exc: Exception) -> web.Response:
    return web.json_response({"error": f"the server's database is locked by another connection ({exc}): an "
                              "open transaction that was never committed? Try again in a moment."},
                             status=503, headers={"Retry-After": "1"})
