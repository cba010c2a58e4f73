"""Notebook 07, section 1: one signed delivery captured (Standard Webhooks v1 headers) and its HMAC by hand; the
same delivery across a 100 ms link (a new connection, then a kept-alive one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from ...apps.webhooks import COURSE_ALLOW, Receiver, Sender
from ...course.exercises import Exercise
from ...errors import NetcourseError
from ...protocols.httpwire import parse_head, split_head
from ...protocols.webhooks import sign
from ...runtime.server import serve
from ...runtime.waiting import run_async
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ...traffic.wire import tcp_payload_streams
from ..registry import scenario
from .common import SECRET, workdir

__all__ = ["Delivery", "one_delivery", "exercise_signature_by_hand", "signature_by_hand", "LinkDelivery", "across_a_link", "exercise_head_share"]


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
    with workdir() as d:
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
        "Your capture holds one delivery: its webhook-id, webhook-timestamp and body. Suppose the receiver had answered "
        "500 at once, and the sender retried 5 seconds later: same id, same body, webhook-timestamp 5 higher. What "
        "webhook-signature does that retry carry? Compute it with the secret (delivery.secret): base64 of "
        "HMAC-SHA256 over '{id}.{timestamp}.{body}', keyed with the base64-decoded part after 'whsec_'. Answer the "
        "whole 'v1,...' string.",
        answer=expected,
        hint="Check your code first: with the captured timestamp itself it must give the captured header. "
        "The key is bytes, the message is bytes, and the body must be the exact bytes that were sent.",
        recipe="key = base64.b64decode(secret[6:]); hmac.new(key, f'{id}.{ts + 5}.'.encode() + body, "
        "hashlib.sha256).digest(), then base64.b64encode(...).decode() with 'v1,' in front.",
        mistakes=_signature_mistakes(delivery, msg_id, ts, expected),
        explanation=f"{expected}: nothing like the first attempt's, although only the timestamp changed. Every "
        "attempt is signed afresh, so a receiver can refuse an old attempt replayed (the timestamp check) without "
        "refusing the sender's genuine retries.",
        kind="capture", source=delivery,
    )


def _signature_mistakes(delivery: Delivery, msg_id: str, ts: int, expected: str) -> list[tuple[object, str]]:
    """The signatures the usual slips produce, each with what went wrong."""
    import base64
    import hashlib
    import hmac
    import json

    def mac(key: bytes, ts_: int, body: bytes) -> str:
        digest = hmac.new(key, f"{msg_id}.{ts_}.".encode() + body, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode()

    key = base64.b64decode(delivery.secret[len("whsec_"):])
    out: list[tuple[object, str]] = [
        (mac(delivery.secret[len("whsec_"):].encode(), ts + 5, delivery.body),
         "the key is the base64-*decoded* part after 'whsec_': you keyed the HMAC with its text."),
        (mac(delivery.secret.encode(), ts + 5, delivery.body),
         "the key is the base64-decoded part after 'whsec_', not the whole secret string."),
        (sign(delivery.secret, msg_id, ts, delivery.body),
         "that is the captured attempt's own signature: the retry's timestamp is 5 higher."),
        (expected[3:], "the header's value starts with the version: 'v1,' in front of the base64."),
    ]
    try:
        reserialised = json.dumps(json.loads(delivery.body)).encode()
    except ValueError:
        reserialised = delivery.body
    if reserialised != delivery.body:
        out.append((mac(key, ts + 5, reserialised), "you signed the JSON re-serialised; sign the exact bytes "
                    "that were sent (delivery.body): a receiver verifies the raw body, before parsing it."))
    return out


def signature_by_hand(delivery: Delivery) -> str:
    """The captured attempt's signature, computed again from the captured id, timestamp and body."""
    return sign(delivery.secret, delivery.header("webhook-id"), int(delivery.header("webhook-timestamp")),
                delivery.body)


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
    from ...network.link import link

    if not 1 <= events <= 20 or not 0 < gap <= 2:
        raise ValueError("need 1 <= events <= 20 and 0 < gap <= 2 s")
    with workdir() as d, link(rtt_ms=rtt_ms) as net:
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
        answer=share, tolerance=1.0, unit="%",
        hint="A share is a part over the whole: the whole request is its head and its body together.",
        recipe="len(delivery.request_head) is the head (it ends with the blank line); len(delivery.body) the body.",
        mistakes=[
            (round(100 * len(delivery.body) / total, 1) if total else -1,
             "that is the body's share; the question asks for the head's."),
            (round(100 * head / len(delivery.body), 1) if delivery.body else -1,
             "that divides the head by the body; divide it by the whole request (head + body)."),
            (round(head / total, 3) if total else -1, "that is a fraction; the question asks for a percentage."),
        ],
        explanation=f"{share:g} %: {head} bytes of head for {len(delivery.body)} of body. Three webhook- headers "
        "alone are over 100 bytes. For small events the head is most of the request, which is what batching "
        "(section 5) saves.",
        kind="capture", source=delivery,
    )
