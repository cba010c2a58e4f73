"""Offline messaging for notebook 08: a chat server with a durable message log, cookie sessions checked at
the WebSocket handshake, and a resume protocol with no gap and no duplicate at the seam.

**State**: a ``ChatLog`` (``apps.chatlog``): the message log, members, users with scrypt hashes, and sessions
stored as token hashes, in one SQLite file.

**HTTP**: ``POST /login`` (JSON ``{"user", "password"}``) answers 204 with ``Set-Cookie: session=<random>;
HttpOnly; SameSite=Lax; Path=/; Max-Age=…``; a malformed login is a 400, a wrong one a 401.

**WebSocket** ``GET /ws``: before the upgrade, the session cookie must name a live session (else 401) and
``Origin`` must be on the allow-list (else 403: cross-site WebSocket hijacking, RFC 6455 §10.2). After it,
the client's first message is its cursor: ``{"resume": {conversation: N, ...}}``, the last id it holds in
each conversation (a conversation it does not name, one it joined since, is replayed from its start), or
``{"resume_after": N}``, one cursor for all (a conversation joined later then never gets its history: the
membership trap notebook 08 shows); the server

1. registers the connection for live messages *first*,
2. replays the user's messages after their conversation's cursor, in pages of ``page`` from the database,
3. then forwards live messages, skipping any id it has already sent (each cursor only moves forward):
   nothing published during the replay is lost, nothing is sent twice.

Each message goes out as ``{"id", "conversation", "sender", "text"}``. A client sends
``{"send": {"conversation", "text", "key"}}`` and gets ``{"ack": key, "id": id}``; a key it used before gets
the stored message's id with ``"duplicate": true``, and nothing new is stored or pushed. A cursor that is
negative, not an integer or ahead of the log gets an ``{"error"}`` frame and close code 1008; a
message over ``max_message`` bytes closes with 1009.

**Limits** (every one checked by a test):

- a session holds at most ``MAX_SOCKETS_PER_SESSION`` sockets; a newer one closes the oldest (1008);
- a socket's queue of live messages holds at most ``MAX_QUEUED``; past that (a long replay while many messages
  arrive, or a slow reader) the queue is emptied and the socket catches up from the log instead, as a
  reconnecting client would: the log is the overflow, memory stays bounded, and nothing is lost;
- a socket whose write does not drain within ``WRITE_TIMEOUT`` (aiohttp's writer waits for the send buffer past
  64 KiB: the client does not read) is dropped with 1013 "try again later": the close frame goes behind what it
  has not read, and the connection is cut ``CLOSE_GRACE`` later;
- revoking a session (``revoke()``) or its expiry closes every socket of it with 1008, resumed or not, and a
  resume on a revoked or expired session is refused;
- scrypt runs off the event loop (a login flood does not stall the sockets), and an unknown user costs the
  same scrypt as a wrong password (the answer's timing does not tell which users exist);
- a database locked by another connection answers 503 with the reason after ``DB_BUSY_TIMEOUT`` of retries
  that never block the loop (every other socket goes on meanwhile); crafted JSON (nesting, lone surrogates) gets 400, or an error frame and 1008, never a 500.

aiohttp accepts unmasked client frames, which RFC 6455 §5.1 says a server must refuse; the course's own
server (``apps.wsserver``) is the strict one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..protocols.wsframe import CloseCode, Frame, Opcode, encode
from .chatlog import DB_BUSY_TIMEOUT, SESSION_SECONDS, Busy, ChatLog, scrypt, token_hash
from .chatresume import FORM, Cursors, read_resume
from .jsonbody import parse_json, text_field
from .safety import origin_problem, own_origins, safe_app

__all__ = ["ChatServer", "SESSION_COOKIE", "SEAMS", "MAX_SOCKETS_PER_SESSION", "MAX_QUEUED"]

# how the server joins the replay to the live stream: the right way, and two wrong ones notebook 08 measures
SEAMS = ("correct", "subscribe after the replay", "replay after subscribing, no dedup")

SESSION_COOKIE = "session"
MAX_SOCKETS_PER_SESSION = 8
MAX_QUEUED = 256  # live messages waiting for one socket; past it, it catches up from the log
_BEHIND = {"id": -1}  # put in a socket's queue when it overflowed: "catch up from the log", not a message
WRITE_TIMEOUT = 5.0  # seconds one write may wait for a socket that does not read
CLOSE_GRACE = 2.0  # seconds a dropped socket gets to read up to its close frame before it is cut
CLOSE_TIMEOUT = 1.0  # seconds the close handshakes of revoke() and of a stop may take, in all
LOGINS_AT_ONCE = 2  # scrypt hashes computed at once (each takes ~15 ms of CPU, off the event loop)
_SERVER = web.AppKey("chat", object)


@dataclass(eq=False)
class _Socket:
    ws: web.WebSocketResponse
    transport: Any  # the request's transport (public: request.transport), for cuts and drops
    user: str
    token_hash: str
    cursors: Cursors = field(default_factory=Cursors)  # what it has been sent (chatresume)
    live: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))
    dropped: bool = False
    resumed: bool = False
    expiry: asyncio.TimerHandle | None = None


class ChatServer:
    """The chat server's state and its aiohttp app (``server.app()``, run with ``serve()``).

    Args:
        db_path: the SQLite file (the log survives a restart of the server).
        page: messages per replay page (memory stays bounded by it, however long the backlog).
        allowed_origins: Origins accepted at the handshake (None: the server's own, set at start).
        max_message: the largest message a client may send, bytes (one more closes with 1009).
        session_seconds: how long a login's session lasts; its sockets are closed (1008) when it ends.
    """

    def __init__(self, db_path: str, *, page: int = 100, allowed_origins: set[str] | None = None,
                 max_message: int = 16 * 1024, seam: str = "correct", session_seconds: float = SESSION_SECONDS) -> None:
        if not 1 <= page <= 10_000 or max_message < 64:
            raise ValueError("need 1 <= page <= 10000 and max_message >= 64")
        if seam not in SEAMS:
            raise ValueError(f"seam is one of {', '.join(SEAMS)}")
        self.seam = seam
        self.db_path, self.page, self.max_message = db_path, page, max_message
        self.session_seconds = session_seconds
        self.allowed_origins = allowed_origins
        self.sockets: list[_Socket] = []  # resumed sockets: they get live messages
        self.closed_for_revocation: list[float] = []  # seconds from revoke() to the socket's close
        self.cut_mid_frame: list[tuple[int, bool]] = []  # (message id, its half frame reached the kernel) per cut
        self.dropped: list[tuple[int, str]] = []  # (close code, reason) of sockets the server dropped or replaced
        self.fell_behind = 0  # times a socket's live queue overflowed and it caught up from the log instead
        self._open: dict[web.WebSocketResponse, _Socket] = {}  # every upgraded socket, resumed or not, oldest first
        self._cuts_armed = 0
        self.log = ChatLog(db_path)
        self._logins: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Future] = set()  # closings running in the background
        self._dummy = (secrets.token_bytes(16), scrypt(secrets.token_urlsafe(12), b"\0" * 16))

    # -- set-up and checks, from any thread (before or while serving), each on a connection of its own ---------

    def add_user(self, name: str, password: str, conversations: tuple[str, ...] = ()) -> None:
        self.log.add_user(name, password, conversations)

    def last_id(self) -> int:
        return self.log.last_id()

    def ids_for(self, user: str) -> list[int]:
        """Every message id ``user`` may read, in order (what a complete client holds)."""
        return self.log.ids_for(user)

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
        self.log.open()  # on the event loop: a lock another connection holds stalls nobody (see _db)
        self._logins = asyncio.Semaphore(LOGINS_AT_ONCE)
        self.loop = asyncio.get_running_loop()

    async def _shutdown(self, app: web.Application) -> None:
        await self._close_sockets(list(self._open.values()), WSCloseCode.GOING_AWAY, "server shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop(self, app: web.Application) -> None:
        self.log.close()

    async def _db(self, call: Any, *args: Any) -> Any:
        """One ``ChatLog`` call; while another connection holds the database's lock, the same call again every
        10 ms, the loop serving everyone else in between, for up to ``DB_BUSY_TIMEOUT``; then ``Busy``."""
        deadline = self.loop.time() + DB_BUSY_TIMEOUT
        while True:
            try:
                return call(*args)
            except Busy:
                if self.loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.01)

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
            data = parse_json(await request.read())
            if not isinstance(data, dict) or "user" not in data or "password" not in data:
                raise ValueError("missing fields")
            user, password = text_field(data["user"], "user", 100), text_field(data["password"], "password", 1000)
        except ValueError as exc:
            return web.json_response({"error": "a login is JSON: {\"user\": \"...\", \"password\": \"...\"} "
                                      f"({exc})"}, status=400)
        try:
            row = await self._db(self.log.password, user)
        except Busy as exc:
            return _busy(exc)
        salt, stored = row if row is not None else self._dummy  # an unknown user costs the same scrypt
        assert self._logins is not None
        async with self._logins:  # a flood queues here, off the loop, instead of stalling every socket
            digest = await asyncio.get_running_loop().run_in_executor(None, scrypt, password, salt)
        if row is None or not secrets.compare_digest(digest, stored):
            return web.json_response({"error": "wrong user or password"}, status=401)
        try:
            token = await self._db(self.log.new_session, user, self.session_seconds)
        except Busy as exc:
            return _busy(exc)
        resp = web.Response(status=204)
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", path="/",
                        max_age=int(self.session_seconds))
        return resp

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        # authentication and the Origin check happen *before* the upgrade: a refusal is a plain HTTP answer
        token = request.cookies.get(SESSION_COOKIE)
        try:
            found = await self._db(self.log.session, token_hash(token)) if token else None
        except Busy as exc:
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
        (user, expires), hashed = found, token_hash(token)
        # aiohttp closes a message of exactly max_msg_size bytes with 1009; the documented limit is inclusive
        ws = web.WebSocketResponse(max_msg_size=self.max_message + 1, heartbeat=None)
        await ws.prepare(request)
        sock = _Socket(ws, request.transport, user, hashed)
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
                # a cut connection has nobody to say goodbye to; a silent one gets CLOSE_TIMEOUT, then the abort below
                with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                    await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
            if not ws.closed and sock.transport is not None and not sock.dropped:
                sock.transport.abort()
        return ws

    async def _serve_socket(self, sock: _Socket) -> None:
        ws = sock.ws
        first = await asyncio.wait_for(ws.receive(), 10)
        try:
            cursor = await self._resume_cursor(first, sock)
        except Busy as exc:
            cursor = f"the server's database is busy ({exc}); try again"
        if isinstance(cursor, str):
            if not ws.closed:
                await ws.send_json({"error": cursor})
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"bad resume")
            return
        sock.cursors, sock.resumed = cursor, True
        if self.seam == "subscribe after the replay":  # a naive server, for notebook 08: the seam leaks
            await self._replay(sock, upto=await self._db(self.log.newest))
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
                if msg is _BEHIND:  # its queue overflowed: what it missed is in the log, from its cursor on
                    await self._replay(sock)
                    continue
                if msg["id"] > sock.cursors.after(msg["conversation"]) or self.seam == "replay after subscribing, no dedup":
                    if not await self._send(sock, msg):
                        break
                    sock.cursors.moved(msg["conversation"], msg["id"])
        finally:  # no task outlives the socket, whether it ended, was dropped or the handler was cancelled
            for task in (get, reader):
                if task is not None:
                    task.cancel()
            outcomes = await asyncio.gather(*(t for t in (get, reader) if t is not None), return_exceptions=True)
            for failure in outcomes:  # a bug in the reader must reach srv.errors, not vanish with the socket
                if isinstance(failure, Exception) and not isinstance(failure, (ConnectionError, asyncio.CancelledError)):
                    self.loop.call_exception_handler({"message": "the chat's reader failed", "exception": failure})

    def _limit_session(self, sock: _Socket) -> None:
        """At most MAX_SOCKETS_PER_SESSION sockets per session: a newer one replaces the oldest."""
        mine = [s for s in self._open.values() if s.token_hash == sock.token_hash and not s.ws.closed]
        excess = mine[: max(0, len(mine) - MAX_SOCKETS_PER_SESSION)]
        if excess:
            reason = "replaced by a newer socket of this session"
            self.dropped += [(int(CloseCode.POLICY_VIOLATION), reason)] * len(excess)
            self._background(self._close_sockets(excess, WSCloseCode.POLICY_VIOLATION, reason))

    def _expire(self, sock: _Socket) -> None:
        sock.expiry = None
        self.dropped.append((int(CloseCode.POLICY_VIOLATION), "session expired"))
        self._background(self._close_sockets([sock], WSCloseCode.POLICY_VIOLATION, "session expired"))

    def _fall_behind(self, sock: _Socket) -> None:
        """A socket's queue is full: empty it and tell its loop to catch up from the log (its cursor is in
        ``cursors``), so the queue never grows past ``MAX_QUEUED`` and no message is lost."""
        while not sock.live.empty():
            sock.live.get_nowait()
        sock.live.put_nowait(_BEHIND)
        self.fell_behind += 1

    def _background(self, coro: Any) -> None:
        """Run a closing in the background, kept (a task nobody references may be collected mid-way) and
        awaited at shutdown."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume_cursor(self, msg: Any, sock: _Socket) -> Cursors | str:
        if await self._db(self.log.session, sock.token_hash) is None:  # revoked or expired since the handshake
            return "this session was revoked or has expired: log in again"
        if msg.type != WSMsgType.TEXT:
            return f"the first message must be JSON text: {FORM}"
        try:
            data = parse_json(msg.data)
        except (ValueError, TypeError):
            return f"the first message must be {FORM}"
        return read_resume(data, await self._db(self.log.newest))

    async def _replay(self, sock: _Socket, *, upto: int | None = None) -> None:
        # one scan of the log in id order from the lowest cursor; each conversation's rows at or below its own
        # cursor are skipped (the client holds them)
        scan = sock.cursors.lowest()
        while True:  # page by page: memory stays bounded by a page, however long the backlog
            rows = self.log.page(sock.user, scan, upto, self.page)
            for msg_id, conversation, sender, text in rows:
                scan = msg_id
                if msg_id <= sock.cursors.after(conversation):
                    continue
                if not await self._send(sock, {"id": msg_id, "conversation": conversation, "sender": sender,
                                               "text": text}):
                    raise ConnectionResetError("cut mid-frame, or dropped for not keeping up")
                sock.cursors.moved(conversation, msg_id)
            if len(rows) < self.page:
                return
            await asyncio.sleep(0)  # let other connections (and publishers) run between pages: a long
            # backlog must not stall the server, and new messages do arrive mid-replay

    async def _send(self, sock: _Socket, msg: dict) -> bool:
        """Send one message; False if the socket was dropped, or a cut was armed and this frame was cut in half."""
        if not self._cuts_armed:
            try:
                async with asyncio.timeout(WRITE_TIMEOUT):  # a timer, not a task per message (wait_for's cost)
                    await sock.ws.send_json(msg)
            except TimeoutError:
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
                send = parse_json(msg.data)["send"]
                conversation = text_field(send["conversation"], "conversation", 100)
                text, key = text_field(send["text"], "text", self.max_message), text_field(send["key"], "key", 100)
            except (ValueError, KeyError, TypeError) as exc:
                await sock.ws.send_json({"error": "a post is {\"send\": {\"conversation\", \"text\", \"key\"}} "
                                         f"of strings ({exc})"})
                continue
            try:
                stored = await self._store(sock.user, conversation, text, key)
            except Busy as exc:
                await sock.ws.send_json({"error": f"the server's database is busy ({exc}); send it again",
                                         "key": key})
                continue
            if stored is None:
                await sock.ws.send_json({"error": f"you are not a member of {conversation!r}", "key": key})
                continue
            msg_id, new = stored
            await sock.ws.send_json({"ack": key, "id": msg_id} if new else {"ack": key, "id": msg_id, "duplicate": True})

    # -- publishing (on the server's loop) ----------------------------------------------------------------------

    async def _store(self, sender: str, conversation: str, text: str, key: str) -> tuple[int, bool] | None:
        """Store a message once per (sender, key) and push it live if it is new: (its id, whether it is new);
        None if the sender is not a member. A key used before returns the stored message's id and pushes
        nothing: what was acknowledged is exactly what the log holds, and nothing that is not in it goes out."""
        stored = await self._db(self.log.store, sender, conversation, text, key)
        if stored is None or not stored[1]:
            return stored  # not a member, or a key used before: nothing new to push
        msg_id = stored[0]
        members = self.log.members(conversation)
        msg = {"id": msg_id, "conversation": conversation, "sender": sender, "text": text}
        for s in self.sockets:
            if s.user in members and not s.dropped:
                try:
                    s.live.put_nowait(msg)
                except asyncio.QueueFull:
                    self._fall_behind(s)
        return msg_id, True

    async def post(self, sender: str, conversation: str, text: str, key: str | None = None) -> int | None:
        """Store a message (once per sender and key) and push it to the members' open sockets; its id (the
        stored one if the key was used before), or None if ``sender`` is not a member."""
        stored = await self._store(sender, conversation, text, key or secrets.token_hex(8))
        return None if stored is None else stored[0]

    def arm_cut_mid_frame(self) -> None:
        """Cut the connection in the middle of the next message frame the server sends, to any client: half
        the frame's bytes go out, then the TCP connection is aborted (no close frame). The client holds half
        a frame it must throw away; the message comes again in its next catch-up."""
        self._cuts_armed += 1

    @property
    def cuts_armed(self) -> int:
        """Cuts armed by ``arm_cut_mid_frame`` and not yet made (no frame has gone out since)."""
        return self._cuts_armed

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
        await self._db(self.log.revoke, user)
        victims = [s for s in self._open.values() if s.user == user]
        await self._close_sockets(victims, WSCloseCode.POLICY_VIOLATION, "session revoked")
        self.closed_for_revocation += [time.perf_counter() - t] * len(victims)
        return len(victims)


def _busy(exc: Exception) -> web.Response:
    return web.json_response({"error": f"the server's database is locked by another connection ({exc}): an "
                              "open transaction that was never committed? Try again in a moment."},
                             status=503, headers={"Retry-After": "1"})
