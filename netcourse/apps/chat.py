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
``{"send": {"conversation", "text", "key"}}`` and gets ``{"ack": key, "id": id}``. A ``resume_after`` that is
negative, not an integer or ahead of the log gets an ``{"error"}`` frame and close code 1008; a frame over
``max_message`` bytes closes with 1009. Revoking a session (``revoke()``) closes its open sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from ..protocols.wsframe import Frame, Opcode, encode
from .safety import own_origins, safe_app

__all__ = ["ChatServer", "SESSION_COOKIE", "SESSION_SECONDS", "SEAMS"]

# how the server joins the replay to the live stream: the right way, and two wrong ones notebook 08 measures
SEAMS = ("correct", "subscribe after the replay", "replay after subscribing, no dedup")

SESSION_COOKIE = "session"
SESSION_SECONDS = 3600
_SERVER = web.AppKey("chat", object)


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    user: str
    token_hash: str
    sent_up_to: int = 0
    live: asyncio.Queue = field(default_factory=asyncio.Queue)


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
        self.sockets: list[_Socket] = []
        self.closed_for_revocation: list[float] = []  # seconds from revoke() to the socket's close
        self.cut_mid_frame: list[tuple[int, bool]] = []  # (message id, its half frame reached the kernel) per cut
        self._open: set[web.WebSocketResponse] = set()  # every upgraded socket, resumed or not (for cut_all)
        self._cuts_armed = 0
        self._db: sqlite3.Connection | None = None
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
        self._db = self._conn()
        self.loop = asyncio.get_running_loop()

    async def _shutdown(self, app: web.Application) -> None:
        for s in list(self.sockets):
            await s.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def _stop(self, app: web.Application) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _login(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read())
            user, password = data["user"], data["password"]
            if not isinstance(user, str) or not isinstance(password, str) or not 0 < len(user) <= 100:
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return web.json_response({"error": "a login is JSON: {\"user\": \"...\", \"password\": \"...\"}"},
                                     status=400)
        assert self._db is not None
        row = self._db.execute("SELECT salt, hash FROM users WHERE name = ?", (user,)).fetchone()
        ok = row is not None and secrets.compare_digest(
            hashlib.scrypt(password.encode(), salt=row[0], n=2 ** 12, r=8, p=1), row[1])
        if not ok:
            return web.json_response({"error": "wrong user or password"}, status=401)
        token = secrets.token_urlsafe(32)
        self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, 0)",
                         (_hash(token), user, time.time() + SESSION_SECONDS))
        self._db.commit()
        resp = web.Response(status=204)
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", path="/", max_age=SESSION_SECONDS)
        return resp

    def _session_user(self, request: web.Request) -> tuple[str, str] | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        assert self._db is not None
        row = self._db.execute("SELECT user, expires, revoked FROM sessions WHERE token_hash = ?",
                               (_hash(token),)).fetchone()
        if row is None or row[2] or row[1] < time.time():
            return None
        return row[0], _hash(token)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        # authentication and the Origin check happen *before* the upgrade: a refusal is a plain HTTP answer
        found = self._session_user(request)
        if found is None:
            return web.json_response({"error": "no valid session cookie: log in first"}, status=401)
        origin = request.headers.get("Origin")
        port = (request.transport.get_extra_info("sockname") or ("", 0))[1] if request.transport else 0
        allowed = self.allowed_origins if self.allowed_origins is not None else own_origins(port)
        if origin is None or origin.lower() not in allowed:
            return web.json_response({"error": f"Origin {origin!r} may not open this socket (cross-site "
                                      "WebSocket hijacking, RFC 6455 §10.2)"}, status=403)
        user, token_hash = found
        ws = web.WebSocketResponse(max_msg_size=self.max_message, heartbeat=None)
        await ws.prepare(request)
        self._open.add(ws)
        sock_ = request.transport.get_extra_info("socket") if request.transport else None
        if sock_ is not None:  # small frames go out at once, not after the previous one's ACK (Nagle, notebook 05)
            import socket as _socket

            sock_.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        sock = _Socket(ws, user, token_hash)
        try:
            first = await asyncio.wait_for(ws.receive(), 10)
            cursor = self._resume_cursor(first)
            if isinstance(cursor, str):
                await ws.send_json({"error": cursor})
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"bad resume_after")
                return ws
            sock.sent_up_to = cursor
            if self.seam == "subscribe after the replay":  # a naive server, for notebook 08: the seam leaks
                await self._replay(sock, upto=self.last_id())  # the backlog as it was at connect time ...
                self.sockets.append(sock)  # ... and live messages only from now: those in between are lost
            else:
                self.sockets.append(sock)  # 1. live messages queue up from now on ...
                await self._replay(sock)  # 2. ... while the backlog goes out, page by page
            reader = asyncio.create_task(self._read(sock))
            try:
                while not ws.closed:  # 3. then the live ones, never an id twice
                    get = asyncio.create_task(sock.live.get())
                    done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if get not in done:
                        get.cancel()
                        break
                    msg = get.result()
                    if msg["id"] > sock.sent_up_to or self.seam == "replay after subscribing, no dedup":
                        if not await self._send(sock, msg):
                            break
                        sock.sent_up_to = max(sock.sent_up_to, msg["id"])
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            self._open.discard(ws)
            with contextlib.suppress(ValueError):
                self.sockets.remove(sock)
            if not ws.closed:
                with contextlib.suppress(ConnectionError):  # a cut connection has nobody to say goodbye to
                    await ws.close()
        return ws

    def _resume_cursor(self, msg) -> int | str:
        if msg.type != WSMsgType.TEXT:
            return "the first message must be JSON text: {\"resume_after\": <last id you hold>}"
        try:
            value = json.loads(msg.data)["resume_after"]
        except (ValueError, KeyError, TypeError):
            return "the first message must be {\"resume_after\": <last id you hold>}"
        if isinstance(value, bool) or not isinstance(value, int):
            return f"resume_after must be an integer, not {str(value)[:20]!r}"
        if value < 0:
            return "resume_after cannot be negative"
        if value > self.last_id():
            return f"resume_after {value} is ahead of the log (its newest id is {self.last_id()})"
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
                    raise ConnectionResetError("cut mid-frame")
                sock.sent_up_to = msg_id
            if len(rows) < self.page:
                return
            await asyncio.sleep(0)  # let other connections (and publishers) run between pages: a long
            # backlog must not stall the server, and new messages do arrive mid-replay

    async def _send(self, sock: _Socket, msg: dict) -> bool:
        """Send one message; False if a cut was armed and this frame was the one cut in half."""
        if not self._cuts_armed:
            await sock.ws.send_json(msg)
            return True
        self._cuts_armed -= 1
        transport = sock.ws._req.transport if sock.ws._req is not None else None  # noqa: SLF001
        reached = False
        if transport is not None:
            frame = encode(Frame(Opcode.TEXT, json.dumps(msg).encode()))  # a server frame: unmasked (§5.1)
            transport.write(frame[:len(frame) // 2])
            reached = transport.get_write_buffer_size() == 0  # all of it handed to the kernel, which sends it
            transport.abort()  # (abort drops only what is still in asyncio's buffer)
        self.cut_mid_frame.append((msg["id"], reached))
        return False

    async def _read(self, sock: _Socket) -> None:
        """The client's frames after the resume: messages to post."""
        async for msg in sock.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                send = json.loads(msg.data)["send"]
                conversation, text, key = str(send["conversation"]), str(send["text"]), str(send["key"])
            except (ValueError, KeyError, TypeError):
                await sock.ws.send_json({"error": "a post is {\"send\": {\"conversation\", \"text\", \"key\"}}"})
                continue
            msg_id = await self.post(sock.user, conversation, text, key)
            await sock.ws.send_json({"ack": key, "id": msg_id})

    # -- publishing (on the server's loop) ----------------------------------------------------------------------

    async def post(self, sender: str, conversation: str, text: str, key: str | None = None) -> int | None:
        """Store a message (once per sender and key) and push it to the members' open sockets; its id."""
        assert self._db is not None
        key = key or secrets.token_hex(8)
        if self._db.execute("SELECT 1 FROM members WHERE conversation = ? AND user = ?",
                            (conversation, sender)).fetchone() is None:
            return None  # not a member: nothing stored
        self._db.execute("INSERT OR IGNORE INTO messages (conversation, sender, text, key, created) "
                         "VALUES (?, ?, ?, ?, ?)", (conversation, sender, text, key, time.time()))
        self._db.commit()
        msg_id, = self._db.execute("SELECT id FROM messages WHERE sender = ? AND key = ?", (sender, key)).fetchone()
        members = {u for (u,) in self._db.execute("SELECT user FROM members WHERE conversation = ?", (conversation,))}
        msg = {"id": msg_id, "conversation": conversation, "sender": sender, "text": text}
        for s in self.sockets:
            if s.user in members:
                s.live.put_nowait(msg)
        return msg_id

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
        for ws in list(self._open):  # resumed or still waiting for resume_after: every upgraded socket
            transport = ws._req.transport if ws._req is not None else None  # noqa: SLF001
            if transport is not None:
                transport.abort()
                n += 1
        return n

    async def revoke(self, user: str) -> int:
        """Revoke every session of ``user`` and close their open sockets; returns how many were closed."""
        assert self._db is not None
        t = time.perf_counter()
        self._db.execute("UPDATE sessions SET revoked = 1 WHERE user = ?", (user,))
        self._db.commit()
        victims = [s for s in self.sockets if s.user == user]
        for s in victims:
            await s.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session revoked")
            self.closed_for_revocation.append(time.perf_counter() - t)
        return len(victims)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
