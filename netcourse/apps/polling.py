"""Short and long polling: a message-log server, a seeded publisher, and the two kinds of poller.

The server (``make_app``) keeps a log of messages whose ids only ever increase:

| endpoint | behaviour |
| --- | --- |
| ``POST /messages`` | appends the request body as a message; answers ``{"id": n}`` |
| ``GET /messages?after=ID`` | answers at once with the messages after ID (short poll) |
| ``GET /messages?after=ID&wait=S`` | holds the request until a message after ID exists or S seconds pass (long poll); a timeout answers an empty list |
| ``GET /stats`` | how many requests the server is holding right now, and since it started |

Limits (every answer is bounded, whatever a client asks): the log keeps the newest ``MAX_MESSAGES``
messages; a cursor older than the oldest kept one answers **410 Gone** with ``resync_after``, the
cursor to start again from (messages in between are lost to that client, and it is told so, the
same contract as an SSE replay buffer). An answer holds at most ``MAX_PAGE`` messages and says
``"more": true`` when others wait. A message is text (``text/plain``, UTF-8 unless a charset says
otherwise) of at most 10,000 characters. Every app is wrapped by ``apps.safety`` (Host and Origin).

Every answer carries ``epoch``, a random id of this server run. Message ids restart at 1 when the server
restarts, so a client that sees a new epoch starts again from ``after=0`` instead of waiting for ids it
has already seen to come round again. Answers carry ``Cache-Control: no-store`` so no intermediary
caches a poll (RFC 6202 §2.2, "Caching").
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..errors import CursorTooOld
from .safety import safe_app

__all__ = [
    "MAX_WAIT",
    "MAX_MESSAGES",
    "MAX_PAGE",
    "MessageLog",
    "make_app",
    "Publisher",
]

MAX_WAIT = 30.0  # seconds: the longest a long poll may be held (below typical proxy idle timeouts)
MAX_MESSAGES = 1000  # messages the log keeps; older ones are evicted
MAX_PAGE = 100  # messages in one answer
MAX_TEXT = 10_000  # characters in one message



class MessageLog:
    """The server's state: messages with increasing ids, and the requests waiting for new ones.

    Attributes:
        messages: (id, text, published) with ``published`` in ``time.perf_counter()`` seconds.
        waiting: requests being held right now.
        max_waiting: the most held at once.
        requests: poll requests answered or being held, in all.
        epoch: random id of this log (changes when the server restarts).
    """

    def __init__(self, *, limit: int = MAX_MESSAGES) -> None:
        self.limit = limit
        self.evicted = 0  # messages dropped from the front: ids 1..evicted are gone
        self.messages: list[tuple[int, str, float]] = []
        self.waiting = 0
        self.max_waiting = 0
        self.requests = 0
        self.epoch = secrets.token_hex(4)
        self._changed: asyncio.Event | None = None

    @property
    def last_id(self) -> int:
        """Id of the newest message (0 when empty)."""
        return self.messages[-1][0] if self.messages else self.evicted

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def append(self, text: str) -> int:
        """Add a message and wake every held request. Must run on the server's loop. Returns its id."""
        msg_id = self.last_id + 1
        self.messages.append((msg_id, text, time.perf_counter()))
        if len(self.messages) > self.limit:
            del self.messages[: len(self.messages) - self.limit]
            self.evicted = self.messages[0][0] - 1
        event = self._event()
        event.set()
        self._changed = asyncio.Event()  # the next wait needs a fresh event
        return msg_id

    def after(self, msg_id: int) -> list[tuple[int, str, float]]:
        """Messages with an id greater than ``msg_id``, oldest first.

        Raises:
            CursorTooOld: some messages after ``msg_id`` were already evicted.
        """
        if msg_id < self.evicted:
            raise CursorTooOld(msg_id, self.evicted)
        # ids are consecutive, and the list starts at id evicted + 1
        return self.messages[msg_id - self.evicted :]

    def _count(self, delta: int) -> None:
        self.waiting += delta
        self.max_waiting = max(self.max_waiting, self.waiting)

    async def wait_after(self, msg_id: int, timeout: float) -> list[tuple[int, str, float]]:
        """Messages after ``msg_id``; if none yet, wait up to ``timeout`` seconds for some."""
        found = self.after(msg_id)
        if found or timeout <= 0:
            return found
        self._count(+1)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while not found:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._event().wait(), remaining)
                except asyncio.TimeoutError:
                    break
                found = self.after(msg_id)
            return found
        finally:  # also when the client went away and the handler was cancelled
            self._count(-1)


LOG_KEY = web.AppKey("log", MessageLog)


def _bad_request(text: str) -> web.Response:
    return web.json_response({"error": text}, status=400, headers={"Server": "netcourse"})


def _answer(log: MessageLog, payload: dict[str, Any]) -> web.Response:
    payload = {"epoch": log.epoch, **payload}
    return web.json_response(payload, headers={"Cache-Control": "no-store", "Server": "netcourse"})


async def _post_message(request: web.Request) -> web.Response:
    log = request.app[LOG_KEY]
    if request.content_type != "text/plain":
        return web.json_response(
            {"error": f"a message is text/plain, not {request.content_type}"}, status=415, headers={"Server": "netcourse"}
        )
    body = await request.read()
    charset = request.charset or "utf-8"
    try:
        text = body.decode(charset)
    except LookupError:
        return web.json_response({"error": f"unknown charset {charset!r}"}, status=415, headers={"Server": "netcourse"})
    except UnicodeError:  # bytes that are not valid in the charset, or a charset that decodes nothing
        return _bad_request(f"the message is not valid {charset}")
    if len(text) > MAX_TEXT:
        return _bad_request("a message must be at most 10,000 characters")
    return _answer(log, {"id": log.append(text)})


def _parse_after(raw: str | None) -> int | str:
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() is True
        return f"after must be a message id: a whole number 0 or more, not {raw!r}"
    return int(raw)


def _parse_wait(raw: str | None) -> float | str:
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        return f"wait must be a number of seconds, not {raw!r}"
    if not 0 <= wait <= MAX_WAIT or wait != wait:
        return f"wait must be between 0 and {MAX_WAIT:g} seconds, not {raw}"
    return wait


async def _get_messages(request: web.Request) -> web.Response:
    log = request.app[LOG_KEY]
    after = _parse_after(request.query.get("after"))
    if isinstance(after, str):
        return _bad_request(after)
    wait = _parse_wait(request.query.get("wait"))
    if isinstance(wait, str):
        return _bad_request(wait)
    client_epoch = request.query.get("epoch")
    if client_epoch is not None and client_epoch != log.epoch:
        after = 0  # the server restarted: the client's cursor means nothing here
    log.requests += 1
    try:
        found = await log.wait_after(after, wait)
    except CursorTooOld as exc:
        return web.json_response(
            {"epoch": log.epoch, "error": str(exc), "resync_after": exc.resync_after},
            status=410,
            headers={"Cache-Control": "no-store", "Server": "netcourse"},
        )
    page = found[:MAX_PAGE]
    return _answer(
        log,
        {"messages": [{"id": i, "text": t} for i, t, _ in page], "last_id": log.last_id, "more": len(found) > len(page)},
    )


async def _stats(request: web.Request) -> web.Response:
    log = request.app[LOG_KEY]
    return _answer(log, {"waiting": log.waiting, "max_waiting": log.max_waiting, "requests": log.requests, "last_id": log.last_id})


def make_app(log: MessageLog | None = None) -> web.Application:
    """The message-log app. Pass a ``MessageLog`` to reach its state from the experiment."""
    app = safe_app()
    app[LOG_KEY] = log or MessageLog()
    app.router.add_post("/messages", _post_message)
    app.router.add_get("/messages", _get_messages)
    app.router.add_get("/stats", _stats)
    return app


# -- the publisher -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publisher:
    """Messages at seeded random times: a Poisson process of ``rate`` messages per second.

    Attributes:
        rate: mean messages per second.
        duration: seconds to publish for.
        seed: random seed: the same seed gives the same times.
        burst: messages published together (1 ms apart) at each event; 1 for none.
    """

    rate: float
    duration: float
    seed: int = 1
    burst: int = 1

    def times(self) -> list[float]:
        """Publication times, seconds after the start."""
        if self.rate <= 0 or self.duration <= 0:
            return []
        rng = random.Random(self.seed)
        out, t = [], 0.0
        while True:
            t += rng.expovariate(self.rate)
            if t >= self.duration:
                return out
            out.extend(t + 0.001 * k for k in range(self.burst))

    async def run(self, log: MessageLog, start: float) -> None:
        """Publish into ``log`` at ``start`` (perf_counter seconds) + each time. Runs on the server loop."""
        last = None
        for i, t in enumerate(self.times(), start=1):
            due = start + t
            if self.burst > 1 and (i - 1) % self.burst and last is not None:
                # within a burst, keep the millisecond after the previous message even when the loop ran
                # late: otherwise a busy machine publishes the burst in one instant and it rides one answer
                due = max(due, last + 0.001)
            # Always yield, even when late: a held request must get the chance to answer between two
            # messages, as it would on a real server whose messages arrive one by one.
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            last = time.perf_counter()
            log.append(f"message {i}")
