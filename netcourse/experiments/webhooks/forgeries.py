"""Notebook 07, section 2: forged, replayed, altered and malformed deliveries, each refused with its reason; a
duplicate acknowledged but not processed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import aiohttp

from ...apps.webhooks import Receiver
from ...protocols.webhooks import headers_for, new_secret
from ...runtime.server import serve
from ...runtime.waiting import run_async
from .common import SECRET, workdir

__all__ = ["Forgery", "forgeries"]


@dataclass(frozen=True)
class Forgery:
    """One delivery attempt against the receiver, and its verdict."""

    case: str
    status: int
    answer: str
    processed: bool  # this request's event was processed by it (a duplicate's was not)


def forgeries() -> list[Forgery]:
    """A good delivery, then each attack and each kind of bad input, against a live receiver. One case is no
    attack at all: a relay that parsed the JSON and wrote it out again, with the same meaning and the signed
    headers untouched, delivers different bytes, and the signature fails."""
    body = json.dumps({"type": "invoice.paid", "data": {"invoice": "in_7", "amount": 100}}).encode()
    now = int(time.time())
    wrong = new_secret()
    cases: list[tuple[str, dict[str, str], bytes]] = [
        ("genuine", headers_for(SECRET, "msg_good", body, timestamp=now), body),
        ("forged: right body, wrong secret", headers_for(wrong, "msg_forged", body, timestamp=now), body),
        ("replayed: signed 10 minutes ago", headers_for(SECRET, "msg_old", body, timestamp=now - 600), body),
        ("one byte of the body changed", headers_for(SECRET, "msg_changed", body, timestamp=now),
         body.replace(b"100", b"900")),
        ("relayed by a naive relay that re-serialised the JSON (as smee's client did)",
         headers_for(SECRET, "msg_relayed", body, timestamp=now), json.dumps(json.loads(body), indent=1).encode()),
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
    with workdir() as d:
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
