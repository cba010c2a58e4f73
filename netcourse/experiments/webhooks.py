"""Notebook 07: webhooks. One signed delivery captured, forgeries refused, a receiver that goes down and comes
back (retries on the Standard Webhooks schedule, scaled down), a receiver the sender cannot reach and the
three ways around it, and the noise of a burst (one POST per event, batches, thin events).

The receiver and the sender are ``apps.webhooks``; every experiment keeps their SQLite files in a temporary
directory that is removed at the end, and stops every server before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from ..apps.polling import MessageLog
from ..clients.pollers import long_poller, short_poller
from ..apps.polling import make_app as polling_app
from ..apps.streaming import make_app as streaming_app
from ..apps.webhooks import COURSE_ALLOW, STANDARD_SCHEDULE, Attempt, Receiver, Sender
from ..apps.wsserver import Hub, make_ws_handler
from ..course.exercises import Exercise, Prediction
from ..errors import NetcourseError, SignatureError
from ..protocols.httpwire import parse_head, split_head
from ..protocols.webhooks import headers_for, new_secret, sign, verify
from ..protocols.wsframe import Opcode
from ..runtime.server import serve
from ..runtime.sockets import port_for_a_restart
from ..runtime.sockets import no_delay
from ..runtime.waiting import run_async
from ..traffic.packets import C2S, S2C
from ..traffic.sniffer import Capture, capture
from ..traffic.wire import tcp_payload_streams
from ..clients.sse import stream_events
from .registry import scenario
from ..protocols.httpwire import head_size, response_head_size

__all__ = [
    "Delivery", "one_delivery", "Forgery", "forgeries", "Outage", "receiver_down", "Unreachable", "behind_a_firewall",
    "Noise", "noise", "noise_grid", "noise_knob", "predict_attempt_times", "exercise_signature_by_hand",
    "exercise_dedup", "SECRET", "planned_times", "Restart", "restart_mid_retry", "signature_by_hand", "comparison", "SlowWork", "slow_work", "Replayed", "dead_letters_replayed", "LinkDelivery", "across_a_link", "exercise_head_share",
]

# a fixed, published-looking secret so that the stored notebook and its recording agree (a course secret,
# never a real one)
SECRET = "whsec_bmV0Y291cnNlLXdlYmhvb2tzLWRlbW8tc2VjcmV0IQ=="


@contextlib.contextmanager
def _workdir():
    with tempfile.TemporaryDirectory(prefix="netcourse-webhooks-") as d:
        yield d


# -- 1. one delivery, captured --------------------------------------------------------------------------


@dataclass
class Delivery:
    """One webhook delivery as the wire carried it.

    Attributes:
        request_head, body: the POST's head (text) and body (bytes), from the capture.
        response_status: the receiver's answer's status line.
        secret: the endpoint's secret.
        capture: the packets (in replay: the recording).
    """

    request_head: str
    body: bytes
    response_status: str
    secret: str
    capture: Capture

    def header(self, name: str) -> str:
        """A header of the captured request ("" if absent)."""
        return parse_head(self.request_head.encode("latin-1")).header(name) or ""


@scenario("webhook_delivery")
def one_delivery() -> Delivery:
    """A sender delivers one event to a receiver; the POST and the answer are captured."""
    with _workdir() as d:
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET)
        with serve(receiver.app(), name="webhook receiver") as srv:
            sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW)
            sender.add_endpoint(f"{srv.url}/webhook", SECRET)
            sender.publish("invoice.paid", {"invoice": "in_1042", "amount": 4200, "currency": "EUR"},
                           msg_id="msg_2w8Xq3Vd7TnR5Lk1")
            with capture(srv.port, scenario="webhook_delivery") as cap:
                run_async(sender.run(limit=10), 20)
    streams = tcp_payload_streams(cap.packets, cap.table())
    head, body = split_head(streams[C2S]) or (b"", b"")
    length = int(parse_head(head).header("Content-Length") or 0) if head else 0
    answer = (split_head(streams[S2C]) or (b"", b""))[0].split(b"\r\n", 1)[0].decode("latin-1")
    return Delivery(head.decode("latin-1"), body[:length], answer, SECRET, cap)


def exercise_signature_by_hand(delivery: Delivery) -> Exercise:
    """Sign a retry of the captured delivery: same id and body, a timestamp 5 s later."""
    msg_id, ts = delivery.header("webhook-id"), int(delivery.header("webhook-timestamp"))
    expected = sign(delivery.secret, msg_id, ts + 5, delivery.body)
    return Exercise(
        "Your capture holds one delivery: its webhook-id, webhook-timestamp and body. Suppose the receiver had not "
        "answered, and the sender retried 5 seconds later: same id, same body, webhook-timestamp 5 higher. What "
        "webhook-signature does that retry carry? Compute it with the secret (delivery.secret): base64 of "
        "HMAC-SHA256 over '{id}.{timestamp}.{body}', keyed with the base64-decoded part after 'whsec_'. Answer the "
        "whole 'v1,...' string.",
        answer=expected,
        hint="key = base64.b64decode(secret[6:]); hmac.new(key, f'{id}.{ts + 5}.'.encode() + body, hashlib.sha256)"
        ".digest(), then base64.b64encode(...).decode() with 'v1,' in front. Check your code first: with the "
        "captured timestamp itself it must give the captured header.",
        explanation=f"{expected}: nothing like the first attempt's, although only the timestamp changed. Every "
        "attempt is signed afresh, so a receiver can refuse an old attempt replayed (the timestamp check) without "
        "refusing the sender's genuine retries.",
        kind="capture",
    )


def signature_by_hand(delivery: Delivery, later: int = 0) -> str:
    """The signature computed again from the captured id, timestamp (+ ``later`` seconds) and body."""
    return sign(delivery.secret, delivery.header("webhook-id"), int(delivery.header("webhook-timestamp")) + later,
                delivery.body)


# -- 2. signatures matter: forged and broken deliveries ----------------------------------------------------


@dataclass(frozen=True)
class Forgery:
    """One delivery attempt against the receiver, and its verdict."""

    case: str
    status: int
    answer: str
    processed: bool  # this request's event was processed by it (a duplicate's was not)


def forgeries() -> list[Forgery]:
    """A good delivery, then each attack and each kind of bad input, against a live receiver."""
    body = json.dumps({"type": "invoice.paid", "data": {"invoice": "in_7", "amount": 100}}).encode()
    now = int(time.time())
    wrong = new_secret()
    cases: list[tuple[str, dict[str, str], bytes]] = [
        ("genuine", headers_for(SECRET, "msg_good", body, timestamp=now), body),
        ("forged: right body, wrong secret", headers_for(wrong, "msg_forged", body, timestamp=now), body),
        ("replayed: signed 10 minutes ago", headers_for(SECRET, "msg_old", body, timestamp=now - 600), body),
        ("one byte of the body changed", headers_for(SECRET, "msg_changed", body, timestamp=now),
         body.replace(b"100", b"900")),
        ("the id changed after signing", {**headers_for(SECRET, "msg_a", body, timestamp=now), "webhook-id": "msg_b"},
         body),
        ("no webhook-signature header", {k: v for k, v in headers_for(SECRET, "msg_x", body).items()
                                         if k != "webhook-signature"}, body),
        ("a signature list with no v1 entry", {**headers_for(SECRET, "msg_y", body), "webhook-signature": "v2,abc"},
         body),
        ("a malformed signature (not base64)", {**headers_for(SECRET, "msg_m", body),
                                                "webhook-signature": "v1,not-base64!!"}, body),
        ("a timestamp that is not a number", {**headers_for(SECRET, "msg_z", body), "webhook-timestamp": "yesterday"},
         body),
        ("signed, but not JSON", headers_for(SECRET, "msg_text", b"hello"), b"hello"),
        ("a body over the size limit", headers_for(SECRET, "msg_big", b"x" * 300_000), b"x" * 300_000),
        ("the genuine delivery, again", headers_for(SECRET, "msg_good", body), body),
    ]
    out = []
    with _workdir() as d:
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET)
        with serve(receiver.app(), name="webhook receiver") as srv:

            async def go() -> list[tuple[int, str]]:
                answers = []
                async with aiohttp.ClientSession() as session:
                    for _, headers, data in cases:
                        async with session.post(f"{srv.url}/webhook", data=data,
                                                headers={**headers, "Content-Type": "application/json"}) as resp:
                            text = await resp.text()
                            answers.append((resp.status, text[:160]))
                return answers

            answers = run_async(go(), 30)
            time.sleep(0.1)  # the worker processes the genuine one
            stored = receiver.stored()
    for (case, headers, _), (status, text) in zip(cases, answers):
        msg = headers.get("webhook-id", "")
        processed = status == 202 and msg in stored and stored[msg][1] is not None  # a 200 duplicate is not
        out.append(Forgery(case, status, _reason(text), processed))
    return out


def _reason(text: str) -> str:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(data, dict):
        return data.get("error") or ("duplicate: acknowledged, not processed again" if data.get("duplicate") else
                                     f"accepted {data.get('accepted', '')}")
    return text


# -- 3. the receiver is down -----------------------------------------------------------------------------------


@dataclass
class Outage:
    """A receiver that went down and came back, and an endpoint that answered 410 Gone.

    Attributes:
        attempts: every attempt the sender made (``apps.webhooks.Attempt``), ``at`` counted from the first attempt
            (the publication).
        down: (seconds the receiver went down, came back) on the sender's clock.
        published: events published.
        counts: the sender's outbox by status ("delivered", "dead").
        processed: events the receiver processed (exactly once each).
        duplicates: deliveries the receiver recognised as repeats and acknowledged.
        dead_letters: (msg_id, endpoint, attempts, last error) given up on.
        scale: the factor applied to the Standard Webhooks schedule.
        jitter: whether waits were drawn at random below each step.
    """

    attempts: list[Attempt]
    down: tuple[float, float]
    published: int
    counts: dict[str, int]
    processed: int
    duplicates: int
    dead_letters: list
    scale: float
    jitter: bool

    def __repr__(self) -> str:
        return (f"{self.published} events to 2 endpoints: {self.counts.get('delivered', 0)} delivered, "
                f"{self.counts.get('dead', 0)} dead letters; the receiver processed {self.processed}, each once, and "
                f"acknowledged {self.duplicates} duplicate(s) without processing them; {len(self.attempts)} attempts")


def receiver_down(events: int = 3, down_for: float = 0.25, *, scale: float = 0.001, jitter: bool = False,
                  seed: int = 2) -> Outage:
    """Endpoint 1's receiver is down when the events are published and comes back after ``down_for`` s,
    answering its first delivery too late (stored, but the sender has timed out: a duplicate follows).
    Endpoint 2 answers 410 Gone. The sender retries on the Standard Webhooks schedule × ``scale``."""
    if not 1 <= events <= 50 or not 0 < down_for <= 5:
        raise ValueError("need 1 <= events <= 50 and 0 < down_for <= 5 s")
    with _workdir() as d:
        inbox = os.path.join(d, "inbox.db")
        gone = Receiver(os.path.join(d, "gone.db"), SECRET, mode="gone")
        with serve(gone.app(), name="gone receiver") as gone_srv:
            port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
            sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW, timeout=0.15, scale=scale,
                            jitter=jitter, seed=seed)
            sender.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
            sender.add_endpoint(f"{gone_srv.url}/webhook", SECRET)
            for i in range(events):
                sender.publish("order.shipped", {"order": 1000 + i})
            t0 = time.monotonic()
            outcome: dict = {}
            worker = threading.Thread(target=lambda: outcome.setdefault("run", _run(sender, 15)), daemon=True)
            worker.start()
            time.sleep(down_for)
            up = time.monotonic()
            receiver = Receiver(inbox, SECRET, slow_ack=0.3, slow_first=1)
            with serve(receiver.app(), name="webhook receiver", port=port):
                worker.join(20)
                time.sleep(0.05)  # the worker finishes its inbox
            processed, dups = receiver.processed, receiver.duplicates
            if worker.is_alive():
                raise NetcourseError("the sender did not finish within 20 s")
            if isinstance(outcome.get("run"), BaseException):
                raise outcome["run"]
            first = min((a.at for a in sender.attempts), default=0.0)  # the first attempt: publication
            down = (0.0, up - t0 - (first - (t0 - sender._t0)))
            attempts = [Attempt(a.msg_id, a.endpoint, a.number, a.at - first, a.status, a.outcome)
                        for a in sender.attempts]
            return Outage(attempts, down, events, sender.counts(), processed, dups, sender.dead_letters(),
                          scale, jitter)


def _run(sender: Sender, limit: float):
    try:
        return run_async(sender.run(limit=limit), limit + 5)
    except BaseException as exc:  # handed to the caller's thread
        return exc


@dataclass(frozen=True)
class SlowWork:
    """Deliveries to a receiver whose work is slow: ms from publication to the 2xx, and to the work done."""

    events: int
    attempts: int
    acked_ms: list[float]
    processed_ms: list[float]
    work_seconds: float
    sender_timeout: float

    def __repr__(self) -> str:
        return (f"{self.events} events, {self.work_seconds * 1000:.0f} ms of work each, sender timeout "
                f"{self.sender_timeout * 1000:.0f} ms: {self.attempts} attempts; acknowledged after "
                f"{max(self.acked_ms):.0f} ms at most, all processed after {max(self.processed_ms):.0f} ms")


def slow_work(events: int = 4, work_seconds: float = 0.2, timeout: float = 0.15) -> SlowWork:
    """A receiver whose processing takes longer than the sender waits for an answer: it stores the event,
    answers 202 at once, and works from its queue afterwards, so no attempt times out and nothing is retried."""
    if not 1 <= events <= 20 or not 0 < work_seconds <= 1 or timeout <= 0:
        raise ValueError("need 1 <= events <= 20, 0 < work_seconds <= 1 and timeout > 0")
    with _workdir() as d:
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET, work_seconds=work_seconds)
        with serve(receiver.app(), name="webhook receiver") as srv:
            sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW, timeout=timeout, jitter=False)
            sender.add_endpoint(f"{srv.url}/webhook", SECRET)
            ids = [sender.publish("report.requested", {"report": i}) for i in range(events)]
            run_async(sender.run(limit=10), 15)
            deadline = time.monotonic() + events * work_seconds + 5
            while receiver.processed < events and time.monotonic() < deadline:
                time.sleep(0.01)
            stored = receiver.stored()
        with contextlib.closing(sqlite3.connect(sender.db_path)) as db:
            times = {m: (pub, dlv) for m, pub, dlv in db.execute("SELECT msg_id, published, delivered FROM outbox")}
    acked = [(times[m][1] - times[m][0]) * 1000 for m in ids]
    processed = [(stored[m][1] - times[m][0]) * 1000 for m in ids if stored.get(m) and stored[m][1] is not None]
    return SlowWork(events, len(sender.attempts), acked, processed, work_seconds, timeout)


@dataclass(frozen=True)
class Replayed:
    """Messages that ran out of attempts, and an operator's replay once the receiver was back."""

    dead_before: list[tuple[str, int, int, str]]
    replayed: int
    delivered_after: int
    processed: int

    def __repr__(self) -> str:
        why = self.dead_before[0][3].split(":")[0] if self.dead_before else "-"
        return (f"{len(self.dead_before)} dead letter(s) after their attempts ran out ({why}); replayed "
                f"{self.replayed} once the receiver was back: {self.delivered_after} delivered, "
                f"{self.processed} processed")


def dead_letters_replayed(events: int = 2, max_attempts: int = 3) -> Replayed:
    """The receiver stays down for all ``max_attempts`` attempts, so the messages become dead letters. The
    receiver comes back; an operator inspects the dead letters and replays them (``Sender.replay``)."""
    if not 1 <= events <= 20 or not 1 <= max_attempts <= 5:
        raise ValueError("need 1 <= events <= 20 and 1 <= max_attempts <= 5")
    with _workdir() as d:
        port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
        sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW, timeout=0.2, jitter=False,
                        max_attempts=max_attempts, schedule=(0, 0.01, 0.02, 0.04, 0.08), scale=1.0)
        sender.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
        for i in range(events):
            sender.publish("invoice.overdue", {"invoice": i})
        run_async(sender.run(limit=5), 10)
        dead = sender.dead_letters()
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET)
        with serve(receiver.app(), name="webhook receiver", port=port):
            replayed = sender.replay()
            run_async(sender.run(limit=5), 10)
            deadline = time.monotonic() + 3
            while receiver.processed < events and time.monotonic() < deadline:
                time.sleep(0.01)
            processed = receiver.processed
        return Replayed(dead, replayed, sender.counts().get("delivered", 0), processed)


def planned_times(scale: float = 0.001, attempts: int = 4) -> list[float]:
    """Seconds from publication to each attempt without jitter: the schedule's running sum, scaled."""
    out, t = [], 0.0
    for step in STANDARD_SCHEDULE[:attempts]:
        t += step * scale
        out.append(t)
    return out


def predict_attempt_times(scale: float = 0.001) -> Prediction:
    """Predict when the third attempt leaves, without jitter."""
    plan = planned_times(scale, 3)

    def explain(given: float, measured: float) -> str:
        return (f"The schedule waits 0, then 5 s, then 5 min: attempt 1 at once, attempt 2 at 5 s, attempt 3 at "
                f"5 s + 300 s = 305 s. Scaled by {scale:g}: {plan[1] * 1000:.0f} ms and {plan[2] * 1000:.0f} ms. The "
                "run is 10 to 20 ms later: the sender's outbox loop looks for due messages every 10 ms, and each attempt "
                "goes out at the first look after it is due.")

    return Prediction(
        f"A sender follows the Standard Webhooks schedule (immediately, 5 s, 5 min, 30 min, ...) scaled by {scale:g} "
        "(a second becomes a millisecond), with no jitter. The receiver is down. How many milliseconds after "
        "publication does the third attempt leave?",
        measure=lambda run: 1000 * min(a.at for a in run.attempts if a.number == 3 and a.endpoint == 1) - 1000 * min(
            a.at for a in run.attempts if a.number == 1 and a.endpoint == 1),
        unit="ms", tolerance=0.1, floor=15, explain=explain,
    )


def exercise_dedup() -> Exercise:
    return Exercise(
        "The receiver answered a delivery too late; the sender timed out and sent it again with the same "
        "webhook-id. What does the receiver answer the second time: 'process again', 'refuse' or 'acknowledge'?",
        answer="acknowledge",
        normalise=lambda s: str(s).strip().lower(),
        hint="The sender must stop retrying, and the event must not be processed twice.",
        explanation="acknowledge: a 2xx, so the sender stops, and no second processing, because the id is already "
        "in the inbox. Refusing would make the sender retry until it gives up; processing again would charge the "
        "customer twice.",
    )


# -- 4. a receiver the sender cannot reach ---------------------------------------------------------------------


REACHABLE = "webhook, had the receiver been reachable"  # the row timed at the relay's receipt of each POST


@dataclass
class Unreachable:
    """The same events delivered to a receiver behind a firewall, each way around it.

    Attributes:
        direct: what the sender's attempts to the firewalled receiver met (outcomes).
        latency_ms: way -> publish-to-receipt delays in ms, one per event.
        requests: way -> HTTP requests made for these events: the receiver's (polls, or its one held
            connection), and for the webhook row the sender's POSTs.
        events: how many.
    """

    direct: list[str]
    latency_ms: dict[str, list[float]]
    requests: dict[str, int]
    events: int

    @property
    def relay_posts(self) -> int:
        """The sender's webhook POSTs to the relay (one per event)."""
        return self.requests.get(REACHABLE, 0)

    def __repr__(self) -> str:
        rows = [f"a direct webhook first (one event): {len(self.direct)} attempts, all failed "
                f"({self.direct[0] if self.direct else '-'}); then {self.events} events, each way:"]
        for way, delays in self.latency_ms.items():
            who = f"{self.requests[way]:>3} {'POST(s) by the sender' if way == REACHABLE else 'request(s) by the receiver'}"
            rows.append(f"  {way:<40} median {statistics.median(delays):6.0f} ms, worst {max(delays):6.0f} ms, {who}")
        rows.append(f"  (the relay took {self.relay_posts} webhook POSTs from the sender: the last row's times are "
                    "when they arrived)")
        return "\n".join(rows)


def behind_a_firewall(events: int = 10, gap: float = 0.1, poll_interval: float = 0.5) -> Unreachable:
    """A receiver the sender cannot connect to (its port is closed to the outside: here nothing listens there),
    and five ways around it that only need the receiver to connect *out*: short polling and long polling of
    the sender's events endpoint, an event stream or a WebSocket the receiver holds open to the sender, and a relay
    that takes the sender's webhooks and passes them down an event stream the receiver holds open to it (the
    way smee.io or a tunnel works). The relay's receipt of each webhook POST also gives the row a reachable
    receiver would have had: the same events, the same moments."""
    if not 1 <= events <= 100 or not 0 < gap <= 1 or not 0.05 <= poll_interval <= 5:
        raise ValueError("need 1 <= events <= 100, 0 < gap <= 1 s and 0.05 <= poll_interval <= 5 s")
    duration = events * gap + 0.3
    with _workdir() as d:
        # the direct attempt: a port nobody may reach (closed: refused at once; a dropping firewall would make
        # the sender wait for its timeout instead)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
            sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW, timeout=0.3, max_attempts=3)
            sender.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
            sender.publish("ping", {})
            run_async(sender.run(limit=5), 10)
        direct = [a.outcome for a in sender.attempts]

        # the workarounds: the events go into the sender's own log, the receiver connects out to fetch them
        poll_log, stream_log, own_log = MessageLog(), MessageLog(), MessageLog()
        relay = streaming_app(stream_log, keepalive=5)
        hooks = {"posts": 0}
        hooked: dict[str, float] = {}

        async def take_hook(request: web.Request) -> web.Response:
            hooks["posts"] += 1
            hooked.setdefault(request.headers.get("webhook-id", ""), time.perf_counter())
            body = await request.read()
            forwarded = {"headers": {k: v for k, v in request.headers.items() if k.lower().startswith("webhook-")},
                         "body": body.decode()}
            stream_log.append(json.dumps(forwarded))
            return web.json_response({"relayed": True}, status=202)

        relay.router.add_post("/hooks/learner", take_hook)
        latency: dict[str, list[float]] = {}
        requests: dict[str, int] = {}
        hub = Hub()
        with serve(polling_app(poll_log), name="events endpoint") as polls, serve(relay, name="relay") as relay_srv, \
                serve(streaming_app(own_log, keepalive=5), name="sender's event stream") as own_srv, \
                serve(no_delay(make_ws_handler(hub)), name="sender's WebSocket") as ws_srv:
            relay_sender = Sender(os.path.join(d, "relay-outbox.db"), allow=COURSE_ALLOW, timeout=2)
            relay_sender.add_endpoint(f"{relay_srv.url}/hooks/learner", SECRET)
            published: dict[str, float] = {}
            received_sse: dict[str, float] = {}

            async def publish_all() -> None:
                for i in range(events):
                    await asyncio.sleep(gap)
                    msg_id = f"msg_{i + 1}"
                    published[msg_id] = time.perf_counter()
                    polls.loop.call_soon_threadsafe(poll_log.append, msg_id)
                    own_srv.loop.call_soon_threadsafe(own_log.append, msg_id)
                    asyncio.run_coroutine_threadsafe(hub.broadcast(msg_id.encode(), Opcode.TEXT), ws_srv.loop)
                    relay_sender.publish("ping", {"n": i + 1}, msg_id=msg_id)
                    # the sender works on a loop of its own: its SQLite outbox must not stall the receivers' loop
                    await asyncio.get_running_loop().run_in_executor(
                        None, lambda: run_async(relay_sender.run(limit=5), 10))

            received_own: dict[str, float] = {}

            async def sse_receiver(url: str, until: float, received: dict[str, float], relayed: bool) -> int:
                async def read(session: aiohttp.ClientSession) -> None:
                    async for now, event in stream_events(session, f"{url}/events"):
                        if relayed:
                            forwarded = json.loads(event.data)
                            msg_id, _ = verify(SECRET, forwarded["headers"], forwarded["body"].encode())
                        else:  # the sender's own stream, on the receiver's own (authenticated) connection
                            msg_id = event.data
                        received[msg_id] = now  # the relayed ones verified end to end
                        if len(received) >= events:
                            return

                async with aiohttp.ClientSession() as session:
                    try:
                        await asyncio.wait_for(read(session), max(0.01, until - time.perf_counter()))
                    except asyncio.TimeoutError:
                        pass
                return 1  # one connection

            received_ws: dict[str, float] = {}

            async def ws_receiver(until: float) -> int:
                async with aiohttp.ClientSession() as session:
                    async with session.ws_connect(f"http://127.0.0.1:{ws_srv.port}/") as conn:
                        while time.perf_counter() < until and len(received_ws) < events:
                            try:
                                msg = await conn.receive(timeout=max(0.01, until - time.perf_counter()))
                            except asyncio.TimeoutError:
                                break
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                break
                            received_ws[msg.data] = time.perf_counter()
                return 1

            async def everyone():
                start = time.perf_counter()
                until = start + duration + 1.0
                receivers = [asyncio.create_task(c) for c in (
                    short_poller(polls.url, poll_interval, until), long_poller(polls.url, 10.0, until),
                    sse_receiver(relay_srv.url, until, received_sse, True),
                    sse_receiver(own_srv.url, until, received_own, False), ws_receiver(until))]
                deadline = time.perf_counter() + 5
                while hub.count < 1 and time.perf_counter() < deadline:  # every receiver connected first
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.05)
                await publish_all()
                return await asyncio.gather(*receivers)

            short, long_, sse_connections, own_connections, ws_connections = run_async(everyone(), duration + 20)
        by_id = {i + 1: published[f"msg_{i + 1}"] for i in range(events)}
        latency[f"short polling every {poll_interval:g} s"] = [(t - by_id[i]) * 1000 for i, t in short.received]
        latency["long polling"] = [(t - by_id[i]) * 1000 for i, t in long_.received]
        latency["event stream held to the sender"] = [(received_own[m] - published[m]) * 1000 for m in received_own]
        latency["WebSocket held to the sender"] = [(received_ws[m] - published[m]) * 1000 for m in received_ws]
        latency["relay + event stream (smee-style)"] = [(received_sse[m] - published[m]) * 1000 for m in received_sse]
        latency[REACHABLE] = [(hooked[m] - published[m]) * 1000 for m in hooked
                                                               if m in published]
        requests[f"short polling every {poll_interval:g} s"] = short.requests
        requests["long polling"] = long_.requests
        requests["event stream held to the sender"] = own_connections
        requests["WebSocket held to the sender"] = ws_connections
        requests["relay + event stream (smee-style)"] = sse_connections
        requests[REACHABLE] = hooks["posts"]  # the sender's POSTs
    return Unreachable(direct, latency, requests, events)


# -- 5. noise: a burst of events -----------------------------------------------------------------------------


@dataclass
class Noise:
    """A burst of events delivered one way: requests, bytes and delay from publication to processing.

    Attributes:
        way: "one POST per event", "batches of N", "window W ms", "thin events (ids, then fetch)".
        events: how many.
        requests: HTTP requests made (POSTs, and GETs for thin events).
        body_bytes: bytes of request and response bodies.
        head_bytes: bytes of request heads (as the receiver saw them) and response heads.
        delays_ms: per event, from publication to the receiver holding its details.
    """

    way: str
    events: int
    requests: int
    body_bytes: int
    head_bytes: int
    delays_ms: list[float] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.body_bytes + self.head_bytes


_SESSION = web.AppKey("session", aiohttp.ClientSession)
_GATE = web.AppKey("gate", asyncio.Semaphore)
_FETCHES = web.AppKey("fetches", set)
_API = web.AppKey("api", str)


def noise(way: str = "one", *, events: int = 1000, batch: int = 50, window_ms: float = 0.0, rate: float = 5000.0,
          concurrency: int = 20) -> Noise:
    """Deliver a burst of ``events`` (published at ``rate`` per second) to a verifying receiver one way:

    - ``"one"``: one signed POST per event, carrying the event;
    - ``"batch"``: one POST per ``batch`` events (or fewer, when ``window_ms`` passes first);
    - ``"thin"``: one POST per event carrying only its id and type; the receiver then GETs the details from
      the sender's API (a second server), as it would from a real provider.
    """
    if way not in ("one", "batch", "thin"):
        raise ValueError("way is 'one', 'batch' or 'thin'")
    if not 1 <= events <= 20_000 or not 1 <= batch <= 1000 or not 0 <= window_ms <= 5000 or rate <= 0:
        raise ValueError("need 1 <= events <= 20000, 1 <= batch <= 1000, 0 <= window_ms <= 5000, rate > 0")
    details = {i: {"order": i, "customer": f"c{i % 97}", "items": [f"sku-{i % 13}", f"sku-{i % 7}"],
                   "total": round(i * 1.37, 2)} for i in range(events)}
    published: dict[int, float] = {}
    arrived: dict[int, float] = {}
    stats = {"requests": 0, "heads": 0, "bodies": 0}

    async def api_details(request: web.Request) -> web.Response:  # the sender's API
        stats["requests"] += 1
        stats["heads"] += _head_bytes(request)
        i = int(request.match_info["id"])
        text = json.dumps({"id": i, "type": "order.created", "data": details[i]}, separators=(",", ":"))
        stats["bodies"] += len(text)
        return web.Response(text=text, content_type="application/json")

    api = web.Application()
    api.router.add_get("/events/{id}", api_details)

    async def fetch(app: web.Application, i: int) -> None:  # the receiver asks for the details
        async with app[_GATE]:
            async with app[_SESSION].get(f"{app[_API]}/events/{i}") as r:
                await r.read()
                stats["heads"] += response_head_size(r)
        arrived.setdefault(i, time.perf_counter())

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        stats["heads"] += _head_bytes(request)
        stats["bodies"] += len(body)
        try:
            verify(SECRET, request.headers, body)
        except SignatureError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        items = json.loads(body)
        for item in items if isinstance(items, list) else [items]:
            if way == "thin":
                task = asyncio.create_task(fetch(request.app, int(item["id"])))
                request.app[_FETCHES].add(task)
                task.add_done_callback(request.app[_FETCHES].discard)
            else:
                arrived.setdefault(int(item["id"]), time.perf_counter())
        return web.Response(status=204)

    async def open_session(app: web.Application) -> None:
        app[_SESSION] = aiohttp.ClientSession()
        app[_GATE] = asyncio.Semaphore(concurrency)

    async def close_session(app: web.Application) -> None:
        for task in list(app[_FETCHES]):
            task.cancel()
        await app[_SESSION].close()

    receiver = web.Application(client_max_size=16 << 20)
    receiver[_FETCHES] = set()
    receiver.router.add_post("/webhook", hook)
    receiver.on_startup.append(open_session)
    receiver.on_cleanup.append(close_session)
    with serve(api, name="sender's API") as api_srv:
        receiver[_API] = api_srv.url
        with serve(receiver, name="noise receiver") as srv:

            async def post(session: aiohttp.ClientSession, payload: object, msg_id: str, gate: asyncio.Semaphore) -> None:
                body = json.dumps(payload, separators=(",", ":")).encode()
                async with gate:
                    headers = {**headers_for(SECRET, msg_id, body), "Content-Type": "application/json"}
                    async with session.post(f"{srv.url}/webhook", data=body, headers=headers) as r:
                        await r.read()
                        stats["heads"] += response_head_size(r)

            async def go() -> None:
                gate = asyncio.Semaphore(concurrency)
                async with aiohttp.ClientSession() as session:
                    tasks, buffer, opened = [], [], None
                    start = time.perf_counter()
                    for i in range(events):
                        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                        published[i] = time.perf_counter()
                        full = {"id": i, "type": "order.created", "data": details[i]}
                        if way == "one":
                            tasks.append(asyncio.create_task(post(session, full, f"msg_{i}", gate)))
                        elif way == "thin":
                            tasks.append(asyncio.create_task(post(session, {"id": i, "type": "order.created"},
                                                                  f"msg_{i}", gate)))
                        else:
                            buffer.append(full)
                            opened = opened or time.perf_counter()
                            if len(buffer) >= batch or (window_ms and (time.perf_counter() - opened) * 1000 >= window_ms):
                                tasks.append(asyncio.create_task(post(session, buffer, f"batch_{i}", gate)))
                                buffer, opened = [], None
                    if buffer:
                        tasks.append(asyncio.create_task(post(session, buffer, f"batch_{events}", gate)))
                    await asyncio.gather(*tasks)
                    deadline = time.perf_counter() + 30
                    while len(arrived) < events and time.perf_counter() < deadline:
                        await asyncio.sleep(0.005)  # thin events: the receiver's fetches finish

            run_async(go(), events / rate + 60)
    name = {"one": "one POST per event", "thin": "thin events (ids, then fetch)"}.get(
        way, f"batches of {batch}" + (f" or {window_ms:g} ms" if window_ms else ""))
    delays = [(arrived[i] - published[i]) * 1000 for i in sorted(arrived)]
    if len(delays) != events:
        raise NetcourseError(f"{events - len(delays)} events did not arrive ({name})")
    return Noise(name, events, stats["requests"], stats["bodies"], stats["heads"], delays)


def _head_bytes(request: web.Request) -> int:
    """Bytes of a request's head as the server received it."""
    line = f"{request.method} {request.raw_path} HTTP/{request.version.major}.{request.version.minor}"
    return head_size(line, request.raw_headers)


WINDOWS = (0, 5, 20, 50, 100, 200)


def noise_grid(windows: tuple[float, ...] = WINDOWS, *, events: int = 1000, rate: float = 5000.0) -> dict[float, Noise]:
    """Batching by time window, each window measured: 0 means one POST per event."""
    out = {}
    for w in windows:
        out[w] = noise("one", events=events, rate=rate) if w == 0 else noise("batch", events=events, batch=1000,
                                                                              window_ms=w, rate=rate)
    return out


def noise_knob(grid: dict[float, Noise], window_ms: float = 20):
    """The knob's picture: requests, bytes and delay for one batch window, beside one POST per event."""
    from ..course import plots

    if window_ms not in grid:
        raise ValueError(f"no measurement for a {window_ms:g} ms window; measured: {', '.join(f'{w:g}' for w in grid)}")
    return plots.webhook_noise([grid[0], grid[window_ms]] if window_ms else [grid[0]],
                               title=f"{grid[0].events:,} events: one POST each against a {window_ms:g} ms batch window")


@dataclass
class Restart:
    """A sender that crashed mid-retry and a new one that took over its outbox.

    Attributes:
        before: attempts the first sender made (all failed: the receiver was down).
        after: attempts the second sender made, from the same SQLite outbox.
        delivered: events the receiver processed in the end (each once).
        published: events published (by the first sender only).
    """

    before: list[Attempt]
    after: list[Attempt]
    delivered: int
    published: int

    def __repr__(self) -> str:
        return (f"{self.published} events published; the first sender made {len(self.before)} attempts and stopped "
                f"(a crash); a new sender on the same outbox made {len(self.after)}; the receiver processed "
                f"{self.delivered}")


def restart_mid_retry(events: int = 3) -> Restart:
    """The first sender publishes while the receiver is down and dies mid-retry; a second sender process-to-be
    opens the same outbox file and finishes the job once the receiver is up: at least once, despite the crash."""
    with _workdir() as d:
        outbox = os.path.join(d, "outbox.db")
        port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
        first = Sender(outbox, allow=COURSE_ALLOW, timeout=0.2, jitter=False)
        first.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
        for i in range(events):
            first.publish("order.paid", {"order": 2000 + i})
        run_async(first.run(limit=0.1), 5)  # a tenth of a second of retries, then the "crash"
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET)
        with serve(receiver.app(), name="webhook receiver", port=port):
            second = Sender(outbox, allow=COURSE_ALLOW, timeout=0.2, jitter=False)  # nothing but the file
            run_async(second.run(limit=5), 10)
            time.sleep(0.05)
            done = receiver.processed
        return Restart(first.attempts, second.attempts, done, events)


def comparison(unreachable: Unreachable) -> list[tuple[str, str, str, str, str]]:
    """Every way of section 4, on the same events: (way, requests per event, median delay, who connects to
    whom, what it needs)."""
    needs = {
        "short": ("receiver → sender", "a cursor; latency up to the interval"),
        "long": ("receiver → sender", "a cursor (notebook 03); a request held"),
        "event stream held": ("receiver → sender (held)", "a held connection (notebook 06)"),
        "WebSocket held": ("receiver → sender (held)", "a held connection (notebook 05)"),
        "relay": ("receiver → relay (held)", "a relay; a held connection"),
        "webhook": ("sender → receiver", "a reachable receiver; retries and dedup"),
    }
    rows = []
    for way, delays in unreachable.latency_ms.items():
        who, need = next(v for k, v in needs.items() if k in way)
        per = unreachable.requests[way] / unreachable.events
        rows.append((way, f"{per:.1f}", f"{statistics.median(delays):.0f} ms", who, need))
    return rows


@dataclass
class LinkDelivery:
    """Webhooks across an emulated link: per event, ms from publication to the receiver storing it (arrival)
    and to the sender holding its 2xx (acknowledged)."""

    rtt_ms: float
    arrival_ms: list[float]
    acked_ms: list[float]
    mode: str

    def __repr__(self) -> str:
        rows = [f"across a {self.rtt_ms:g} ms round trip ({self.mode}):"]
        for n, (a, k) in enumerate(zip(self.arrival_ms, self.acked_ms), 1):
            rows.append(f"  event {n}: at the receiver after {a:5.0f} ms, acknowledged after {k:5.0f} ms")
        return "\n".join(rows)


def across_a_link(rtt_ms: float = 100.0, events: int = 4, gap: float = 0.35) -> LinkDelivery:
    """A sender at the near end delivers ``events`` events, ``gap`` s apart, to a receiver at the far end of an
    emulated link: the first pays for the TCP handshake, the next ride the kept-alive connection."""
    from ..network.link import link

    if not 1 <= events <= 20 or not 0 < gap <= 2:
        raise ValueError("need 1 <= events <= 20 and 0 < gap <= 2 s")
    with _workdir() as d, link(rtt_ms=rtt_ms) as net:
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET)
        srv = net.serve(receiver.app(), name="webhook receiver")
        net.announce()
        # the far end's address is internal (a private test network): allowed explicitly, as the course allows
        # its own loopback receivers
        sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW | {srv.host}, timeout=5)
        sender.add_endpoint(f"http://{srv.host}:{srv.port}/webhook", SECRET)

        async def go() -> None:
            running = asyncio.create_task(sender.run(until_idle=False, limit=events * gap + 2 * rtt_ms / 1000 + 1))
            for i in range(events):
                sender.publish("order.shipped", {"order": 3000 + i}, msg_id=f"msg_link_{i + 1}")
                await asyncio.sleep(gap)
            await running

        net.run(go(), events * gap + 20)
        stored = {}
        import sqlite3

        with contextlib.closing(sqlite3.connect(receiver.db_path)) as db:
            stored = dict(db.execute("SELECT id, received FROM inbox").fetchall())
        with contextlib.closing(sqlite3.connect(sender.db_path)) as db:
            rows = db.execute("SELECT msg_id, published, delivered FROM outbox ORDER BY published").fetchall()
        mode = net.mode
    arrival = [(stored[m] - p) * 1000 for m, p, _ in rows if m in stored]
    acked = [(k - p) * 1000 for _, p, k in rows if k is not None]
    if len(arrival) != events or len(acked) != events:
        raise NetcourseError("not every event crossed the link")
    return LinkDelivery(rtt_ms, arrival, acked, mode)


def exercise_head_share(delivery: Delivery) -> Exercise:
    """What share of the POST's bytes were HTTP head, from the learner's own capture."""
    head = len(delivery.request_head.encode("latin-1"))
    total = head + len(delivery.body)
    share = round(100 * head / total, 1) if total else 0.0
    return Exercise(
        "In your capture, the POST carried its head (request line, headers, blank line) and the JSON body. What "
        "percentage of the request's bytes was head (within 1 %)?",
        answer=share, tolerance=1.0,
        hint="len(delivery.request_head) is the head (it ends with the blank line); len(delivery.body) the body.",
        explanation=f"{share:g} %: {head} bytes of head for {len(delivery.body)} of body. Three webhook- headers "
        "alone are over 100 bytes. For small events the head is most of the request, which is what batching "
        "(section 5) saves.",
        kind="capture",
    )
