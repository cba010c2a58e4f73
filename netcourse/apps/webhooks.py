"""Webhooks done properly (notebook 07): a receiver and a sender following the Standard Webhooks specification.

**The receiver** (``Receiver(db_path, secret).app()``, an aiohttp app on ``serve()``), for ``POST /webhook``:

1. verifies the signature on the raw body, before anything reads it as JSON (401 with the failed check);
2. parses the JSON (400 if it is not);
3. stores the event in its **inbox** (SQLite) keyed by ``webhook-id`` in one statement: a retried delivery
   finds its id there and is acknowledged (200, ``{"duplicate": true}``) without being processed again;
4. answers 202 at once; a worker task processes the inbox in the background, so a slow handler never makes
   the sender time out and retry. Unprocessed rows are picked up again after a restart: nothing acknowledged
   is lost. Nothing is processed twice *as long as* the ids are kept for the sender's whole retry span (this
   inbox keeps them for good) and the processing marks its row done in the same transaction as its effect
   (here the "work" is the mark itself; real side effects must be idempotent or transactional too).

For the experiments it can fail on purpose: ``fail_rate`` (random 500s), ``mode`` "gone" (410) or "busy" (503 with
``Retry-After``), ``slow_ack`` (store, then answer only after a delay, as when the answer is lost).

**The sender** (``Sender(db_path)``) keeps an **outbox** in SQLite: ``publish()`` writes one row per enabled
endpoint; ``run()`` delivers what is due, concurrently, and on failure schedules the next attempt from the
Standard Webhooks schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h), **scaled
down** by ``scale`` (1/1000 in the course: a second of the schedule is a millisecond here) with full jitter
(a random wait between 0 and the step). It honours ``Retry-After`` (scaled the same way), disables an
endpoint that answers 410 Gone, times out a hanging receiver, and after ``max_attempts`` moves the message
to the dead letters, which ``replay()`` puts back. A sender restarted mid-retry finds its outbox and goes on:
every event is delivered at least once.

Endpoints are checked against SSRF twice: ``add_endpoint`` refuses a URL whose host resolves to anything but
public addresses (``endpoint_problem``), and every connection resolves through a resolver that drops such
addresses again, so a name repointed later gains nothing. Addresses on the ``allow`` list pass (the course
allows 127.0.0.1 for its own receivers, explicitly). Redirects are not followed (a 3xx is a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets as _secrets
import socket
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..errors import EndpointRefused, SignatureError
from ..protocols.webhooks import address_problem, headers_for, parse_secret, verify
from .jsonbody import parse_json, unicode_text
from .safety import safe_app

__all__ = ["Receiver", "Sender", "endpoint_problem", "STANDARD_SCHEDULE", "COURSE_ALLOW",
           "MAX_BODY", "Attempt"]

STANDARD_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)  # seconds before attempt n+1
COURSE_ALLOW = frozenset({"127.0.0.1", "::1"})  # the course's own receivers, allowed on purpose
MAX_BODY = 256 * 1024
USER_AGENT = "netcourse-webhooks/1"


class _GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolves as usual, then drops every address the SSRF rule refuses (unless allowed): the check happens
    at each connection, on the very addresses connected to, so a name repointed after ``add_endpoint`` (DNS
    rebinding) gains nothing."""

    def __init__(self, allow: frozenset[str]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow = allow

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if r["host"] in self._allow or address_problem(r["host"]) is None]
        if not kept:
            raise OSError(f"refused: {host} resolves only to internal addresses ({results[0]['host']}...)")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def endpoint_problem(url: str, allow: frozenset[str] | set[str] = frozenset()) -> str | None:
    """Why a sender must not deliver to ``url`` (None: fine). Resolves the host and checks every address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"only http and https endpoints, not {parts.scheme or 'no scheme'!r}"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username or parts.password:
        return "credentials in the URL are refused"
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"{parts.hostname!r} does not resolve ({exc})"
    for info in infos:
        address = info[4][0]
        problem = address_problem(address)
        if problem and address not in allow:
            return problem
    return None


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` asks for: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); None if neither."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when is not None else None


# -- the receiver ------------------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver with a durable inbox. See the module's description.

    Attributes (updated on the server's loop, read anywhere):
        accepted: deliveries verified and stored for the first time.
        duplicates: deliveries of an id already stored (acknowledged, not processed again).
        refused: reason -> count of deliveries refused (4xx).
        processed: events the worker has finished.
        worked: id -> how many times its work ran (the dedup's proof: never more than 1).
        failed_on_purpose: 500s answered because of ``fail_rate``.
    """

    def __init__(self, db_path: str, secret: str | list[str], *, work_seconds: float = 0.0, fail_rate: float = 0.0,
                 mode: str = "ok", retry_after: int = 100, slow_ack: float = 0.0, slow_first: int = 0,
                 tolerance: int = 300, seed: int = 1, max_body: int = MAX_BODY) -> None:
        if mode not in ("ok", "gone", "busy"):
            raise ValueError("mode is 'ok', 'gone' or 'busy'")
        if not 0 <= fail_rate < 1 or work_seconds < 0 or slow_ack < 0:
            raise ValueError("need 0 <= fail_rate < 1, work_seconds >= 0 and slow_ack >= 0")
        self.db_path = db_path
        self.secrets = [secret] if isinstance(secret, str) else list(secret)
        for s in self.secrets:  # a bad secret fails here, with the expected form named
            parse_secret(s)
        self.work_seconds, self.fail_rate, self.mode = work_seconds, fail_rate, mode
        self.retry_after, self.slow_ack, self.slow_first = retry_after, slow_ack, slow_first
        self.tolerance, self.max_body = tolerance, max_body
        self._rng = random.Random(seed)
        self.accepted = self.duplicates = self.processed = self.failed_on_purpose = 0
        self.refused: dict[str, int] = {}
        self.worked: dict[str, int] = {}  # id -> times its work ran (more than 1 would be processing twice)
        self.request_bytes = 0
        self._db: sqlite3.Connection | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS inbox (id TEXT PRIMARY KEY, type TEXT, payload TEXT, "
                       "received REAL, processed REAL)")
            db.commit()

    def app(self) -> web.Application:
        app = safe_app(max_body=self.max_body)
        app.router.add_post("/webhook", self._deliver)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self._db = sqlite3.connect(self.db_path)
        self._queue = asyncio.Queue()
        for (msg_id,) in self._db.execute("SELECT id FROM inbox WHERE processed IS NULL ORDER BY received"):
            self._queue.put_nowait(msg_id)  # acknowledged before a restart, not yet processed: now
        self._worker = asyncio.create_task(self._work())

    async def _stop(self, app: web.Application) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._db is not None:
            self._db.close()
            self._db = None

    def _refuse(self, status: int, reason: str) -> web.Response:
        key = reason.split(":")[0][:60]
        self.refused[key] = self.refused.get(key, 0) + 1
        return web.json_response({"error": reason}, status=status)

    async def _deliver(self, request: web.Request) -> web.Response:
        if self.fail_rate and self._rng.random() < self.fail_rate:
            self.failed_on_purpose += 1
            return web.json_response({"error": "a failure, on purpose"}, status=500)
        if self.mode == "gone":
            return web.json_response({"error": "this endpoint is gone: stop sending"}, status=410)
        if self.mode == "busy":
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": str(self.retry_after)})
        body = await request.read()  # the raw bytes, exactly as signed
        self.request_bytes += len(body)
        problems = []
        for secret in self.secrets:
            try:
                msg_id, _ = verify(secret, request.headers, body, tolerance=self.tolerance)
                break
            except SignatureError as exc:
                problems.append(str(exc))
        else:
            return self._refuse(401, f"signature refused: {problems[0]}")
        try:  # strictly: UTF-8 only (RFC 8259 §8.1), bounded nesting
            event = parse_json(body)
        except ValueError as exc:
            return self._refuse(400, f"the body is not JSON this receiver reads: {exc}")
        kind = event.get("type", "") if isinstance(event, dict) else ""
        if not unicode_text(str(kind)):  # "\ud800": valid JSON, but not Unicode text (a lone surrogate)
            return self._refuse(400, "the event type holds a lone surrogate: not Unicode text")
        assert self._db is not None and self._queue is not None
        cur = self._db.execute("INSERT OR IGNORE INTO inbox (id, type, payload, received) VALUES (?, ?, ?, ?)",
                               (msg_id, str(kind)[:100], body.decode(), time.time()))
        self._db.commit()
        if cur.rowcount == 0:
            self.duplicates += 1
            return web.json_response({"duplicate": True, "id": msg_id}, status=200)
        self.accepted += 1
        self._queue.put_nowait(msg_id)
        if self.slow_ack and self.accepted <= (self.slow_first or self.accepted):
            await asyncio.sleep(self.slow_ack)  # stored, but the answer comes late (as if it were lost)
        return web.json_response({"accepted": msg_id}, status=202)

    async def _work(self) -> None:
        assert self._queue is not None and self._db is not None
        while True:
            msg_id = await self._queue.get()
            done = self._db.execute("SELECT processed FROM inbox WHERE id = ?", (msg_id,)).fetchone()
            if done is None or done[0] is not None:
                continue  # already done (queued twice somehow): the work is not repeated
            if self.work_seconds:
                await asyncio.sleep(self.work_seconds)
            self.worked[msg_id] = self.worked.get(msg_id, 0) + 1  # the work itself, counted per id
            cur = self._db.execute("UPDATE inbox SET processed = ? WHERE id = ? AND processed IS NULL",
                                   (time.time(), msg_id))
            self._db.commit()
            self.processed += cur.rowcount

    def stored(self) -> dict[str, tuple[str, float | None]]:
        """The inbox as the database has it: id -> (type, processed time or None). Any thread."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            return {i: (t, p) for i, t, p in db.execute("SELECT id, type, processed FROM inbox")}


# -- the sender ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: message, endpoint, attempt number (1 = the first), when (seconds on the sender's
    clock since it started), the HTTP status (None: no answer) and the outcome in words."""

    msg_id: str
    endpoint: int
    number: int
    at: float
    status: int | None
    outcome: str


class Sender:
    """A webhook sender with a durable outbox. See the module's description.

    Args:
        db_path: the SQLite file (its outbox survives a restart of the sender).
        schedule: seconds before each retry (the Standard Webhooks example schedule by default).
        scale: the factor applied to the schedule and to ``Retry-After`` (1/1000: seconds become ms).
        jitter: full jitter (a random wait between 0 and the step); False waits the step exactly.
        max_attempts: attempts before a message goes to the dead letters (default: the schedule's length).
        timeout: seconds an attempt may take before it counts as failed.
        allow: addresses allowed although internal (the SSRF check refuses the rest).
        concurrency: attempts in flight at once.
    """

    def __init__(self, db_path: str, *, schedule: tuple[float, ...] = STANDARD_SCHEDULE, scale: float = 0.001,
                 jitter: bool = True, max_attempts: int | None = None, timeout: float = 1.0,
                 allow: frozenset[str] | set[str] = frozenset(), concurrency: int = 20, seed: int = 1) -> None:
        if not schedule or not 0 < scale <= 1 or timeout <= 0 or concurrency < 1:
            raise ValueError("need a schedule, 0 < scale <= 1, timeout > 0 and concurrency >= 1")
        self.db_path, self.schedule, self.scale, self.jitter = db_path, tuple(schedule), scale, jitter
        self.max_attempts = max_attempts or len(self.schedule)
        self.timeout, self.allow, self.concurrency = timeout, frozenset(allow), concurrency
        self._rng = random.Random(seed)
        self.attempts: list[Attempt] = []
        self.requests = 0
        self._t0 = time.monotonic()
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript("""
                CREATE TABLE IF NOT EXISTS endpoints (id INTEGER PRIMARY KEY, url TEXT, secret TEXT,
                    enabled INTEGER DEFAULT 1, why TEXT);
                CREATE TABLE IF NOT EXISTS outbox (msg_id TEXT, endpoint INTEGER, body BLOB, attempts INTEGER,
                    due REAL, status TEXT, last_error TEXT, published REAL, delivered REAL,
                    PRIMARY KEY (msg_id, endpoint));
            """)
            db.commit()

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=10)

    def add_endpoint(self, url: str, secret: str) -> int:
        """Subscribe ``url``; refused (``EndpointRefused``) when it points inside the network."""
        parse_secret(secret)
        problem = endpoint_problem(url, self.allow)
        if problem:
            raise EndpointRefused(f"{url}: {problem}")
        with contextlib.closing(self._db()) as db:
            cur = db.execute("INSERT INTO endpoints (url, secret) VALUES (?, ?)", (url, secret))
            db.commit()
            return int(cur.lastrowid)

    def publish(self, event_type: str, data: object, *, msg_id: str | None = None) -> str:
        """Write an event to the outbox, once per enabled endpoint; returns its id. Delivery happens in ``run``."""
        msg_id = msg_id or "msg_" + _secrets.token_hex(10)
        from datetime import datetime, timezone

        when = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = json.dumps({"type": event_type, "timestamp": when, "data": data},  # the event's time (ISO 8601)
                          separators=(",", ":")).encode()
        now = time.time()
        with contextlib.closing(self._db()) as db:
            for (endpoint,) in db.execute("SELECT id FROM endpoints WHERE enabled = 1").fetchall():
                db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, 0, ?, 'pending', NULL, ?, NULL)",
                           (msg_id, endpoint, body, now, now))
            db.commit()
        return msg_id

    def step_delay(self, attempts_made: int) -> float:
        """Seconds to wait after ``attempts_made`` failed attempts (scaled; full jitter unless turned off)."""
        step = self.schedule[min(attempts_made, len(self.schedule) - 1)] * self.scale
        return self._rng.uniform(0, step) if self.jitter else step

    def counts(self) -> dict[str, int]:
        with contextlib.closing(self._db()) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())

    def dead_letters(self) -> list[tuple[str, int, int, str]]:
        """(msg_id, endpoint, attempts, last error) of every message given up on."""
        with contextlib.closing(self._db()) as db:
            return db.execute("SELECT msg_id, endpoint, attempts, last_error FROM outbox WHERE status = 'dead'").fetchall()

    def replay(self, msg_id: str | None = None) -> int:
        """Put dead letters (one, or all) back in the outbox, due now, with their attempts reset. The endpoint
        of each replayed message is enabled again: replaying is an operator's decision."""
        with contextlib.closing(self._db()) as db:
            cur = db.execute("UPDATE outbox SET status = 'pending', attempts = 0, due = ? WHERE status = 'dead'"
                             + (" AND msg_id = ?" if msg_id else ""), (time.time(), msg_id) if msg_id else (time.time(),))
            db.execute("UPDATE endpoints SET enabled = 1, why = NULL WHERE id IN "
                       "(SELECT endpoint FROM outbox WHERE status = 'pending')")
            db.commit()
            return cur.rowcount

    async def run(self, *, until_idle: bool = True, limit: float = 30.0) -> None:
        """Deliver what is due until nothing is pending (or ``limit`` seconds pass). Attempts run side by side,
        at most ``concurrency`` at once: a slow receiver delays only its own message."""
        deadline = time.monotonic() + limit
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=self.concurrency, resolver=_GuardedResolver(self.allow))
        inflight: dict[tuple[str, int], asyncio.Task] = {}
        async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                         headers={"User-Agent": USER_AGENT}) as session:
            try:
                while time.monotonic() < deadline:
                    room = self.concurrency - len(inflight)
                    with contextlib.closing(self._db()) as db:
                        due = db.execute(
                            "SELECT o.msg_id, o.endpoint, o.body, o.attempts, e.url, e.secret FROM outbox o "
                            "JOIN endpoints e ON e.id = o.endpoint WHERE o.status = 'pending' AND o.due <= ? "
                            "ORDER BY o.due LIMIT ?", (time.time(), room + len(inflight))).fetchall() if room else []
                        nxt = db.execute("SELECT MIN(due) FROM outbox WHERE status = 'pending'").fetchone()[0]
                    launched = 0
                    for row in due:
                        key = (row[0], row[1])
                        if key not in inflight and len(inflight) < self.concurrency:
                            task = asyncio.create_task(self._attempt(session, *row))
                            inflight[key] = task
                            task.add_done_callback(lambda _t, k=key: inflight.pop(k, None))
                            launched += 1
                    if nxt is None and not inflight and until_idle:
                        return
                    # nothing new to start (what is due is in flight): look again in 10 ms, never spin
                    ahead = (nxt - time.time()) if nxt is not None else 0.01
                    await asyncio.sleep(0.0 if launched else min(0.01, ahead) if ahead > 0 else 0.01)
            finally:
                for task in list(inflight.values()):
                    task.cancel()
                await asyncio.gather(*inflight.values(), return_exceptions=True)

    async def _attempt(self, session: aiohttp.ClientSession, msg_id: str, endpoint: int, body: bytes,
                       attempts: int, url: str, secret: str) -> None:
        number = attempts + 1
        at = time.monotonic() - self._t0
        status, outcome, retry_after = None, "", None
        headers = headers_for(secret, msg_id, body)  # a fresh timestamp on every attempt
        headers["Content-Type"] = "application/json"
        self.requests += 1
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                await resp.content.read(65536)  # the answer's body matters little: read a bounded part
                retry_after = resp.headers.get("Retry-After")
        except asyncio.TimeoutError:
            outcome = f"no answer within {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            outcome = f"{type(exc).__name__}: {exc}"[:200]
        now = time.time()
        with contextlib.closing(self._db()) as db:
            if status is not None and 200 <= status < 300:
                outcome = f"{status}: delivered"
                db.execute("UPDATE outbox SET status = 'delivered', attempts = ?, delivered = ? "
                           "WHERE msg_id = ? AND endpoint = ?", (number, now, msg_id, endpoint))
            elif status == 410:
                outcome = "410 Gone: endpoint disabled"
                db.execute("UPDATE endpoints SET enabled = 0, why = '410 Gone' WHERE id = ?", (endpoint,))
                db.execute("UPDATE outbox SET status = 'dead', attempts = ?, last_error = ? WHERE endpoint = ? "
                           "AND status = 'pending'", (number, "endpoint disabled (410 Gone)", endpoint))
            else:
                outcome = outcome or f"{status}: failed"
                if number >= self.max_attempts:
                    db.execute("UPDATE outbox SET status = 'dead', attempts = ?, last_error = ? "
                               "WHERE msg_id = ? AND endpoint = ?", (number, outcome, msg_id, endpoint))
                    outcome += "; dead letter"
                else:
                    wait = self.step_delay(number)
                    asked = _retry_after_seconds(retry_after)
                    if asked is not None:
                        wait = max(wait, min(asked, 86400) * self.scale)  # honoured, scaled, capped
                    db.execute("UPDATE outbox SET attempts = ?, due = ?, last_error = ? WHERE msg_id = ? "
                               "AND endpoint = ?", (number, now + wait, outcome, msg_id, endpoint))
            db.commit()
        self.attempts.append(Attempt(msg_id, endpoint, number, at, status, outcome))
