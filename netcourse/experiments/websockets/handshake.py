"""Notebook 05, sections 1 and 2: the upgrade handshake captured, and talking WebSocket by hand with a raw socket
(``clients.websocket.RawClient``); what a browser adds to its handshake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...apps.wsserver import make_ws_handler
from ...clients.websocket import ORIGIN, RawClient
from ...course.exercises import Exercise
from ...protocols.wsconn import Event
from ...protocols.wsframe import Frame, Opcode, accept_key, close_payload
from ...runtime.server import serve
from ...traffic.sniffer import Capture, capture
from ..registry import scenario

__all__ = ["BROWSER_HEADERS", "HandshakeRun", "handshake", "exercise_accept"]


# What a browser adds to its handshake (Chromium's, give or take): a subprotocol the page asked for, the
# compression extension offered (RFC 7692), and the site's cookies. The course's server declines both
# offers by leaving them out of its 101 (RFC 6455 §4.2.2, RFC 7692 §5) and does not read the cookie
# (notebook 08 builds authentication on it).
BROWSER_HEADERS = (
    "Sec-WebSocket-Protocol: chat",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    "Cookie: session=d7c3a1f0",
)


@dataclass
class HandshakeRun:
    """One WebSocket conversation: handshake, one echoed message, close.

    Attributes:
        request, response: the handshake's bytes.
        key, accept: Sec-WebSocket-Key sent and Sec-WebSocket-Accept received.
        sent: bytes of the frame sent; reply: what came back (a ``Message``, then ``CloseReceived``).
        capture: the packets.
    """

    request: bytes
    response: bytes
    key: str
    accept: str | None
    sent: bytes
    reply: list[Event]
    capture: Capture


@scenario("ws_handshake")
def handshake(message: bytes = b"Hello", *, mask_key: bytes = bytes.fromhex("37fa213d")) -> HandshakeRun:
    """Open a WebSocket to the course's echo server with a raw socket, send one text frame, close.

    The handshake carries what a browser's would (``BROWSER_HEADERS``): a subprotocol and an extension
    offered, and a cookie.
    """
    with serve(make_ws_handler(allowed_origins={ORIGIN}), name="ws echo") as srv:
        with capture(srv.port, scenario="ws_handshake") as cap:
            with RawClient(srv, extra_headers=BROWSER_HEADERS) as client:
                sent = client.send(Frame(Opcode.TEXT, message), mask_key=mask_key)
                reply = client.receive(1)
                client.send(Frame(Opcode.CLOSE, close_payload(1000, "done")), mask_key=mask_key)
                reply += client.receive(1)
    return HandshakeRun(client.request, client.response, client.key, client.accept_header, sent, reply, cap)


def exercise_accept(key: str = "Q2FuIHlvdSBjb3VudD8hIQ==") -> Exercise:
    """Which of three servers' answers a browser accepts: the accept key computed, and two common bugs."""
    import base64
    import hashlib

    guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    answers = {
        1: base64.b64encode(hashlib.sha1((key + guid.lower()).encode()).digest()).decode(),
        2: accept_key(key),
        3: base64.b64encode(hashlib.sha1((key + guid).encode()).hexdigest().encode()).decode(),
    }
    lines = "; ".join(f"server {n}: {a}" for n, a in answers.items())
    return Exercise(
        f"A client sent Sec-WebSocket-Key: {key}. Three servers answered with these Sec-WebSocket-Accept "
        f"values: {lines}. Which server's answer does the browser accept: 1, 2 or 3?",
        kind="recall",
        answer=2,
        check=lambda v: re.sub(r"[^0-9]", "", str(v)) == "2",
        hint="The browser computes the value itself, from the key it sent, and compares the two exactly. "
        "Compute it.",
        recipe="base64 of the 20-byte SHA-1 digest of the key followed by the GUID (RFC 6455 §4.2.2); "
        "compare with each server's answer.",
        mistakes=[
            (lambda v: re.sub(r"[^0-9]", "", str(v)) == "1", "server 1 lower-cased the GUID. The GUID is a fixed string hashed byte for byte: a different "
             "case is a different digest, and the browser fails the connection."),
            (lambda v: re.sub(r"[^0-9]", "", str(v)) == "3", "server 3 base64-encoded the 40-character *hex* text "
             "of the digest (56 characters, too long for 20 bytes). The RFC encodes the 20 raw bytes: 28 "
             "characters, ending in one '='."),
        ],
        explanation="Server 2. The browser fails the WebSocket connection unless the value is exactly "
        "base64(SHA-1(key + GUID)) over the raw 20-byte digest (RFC 6455 §4.1, §4.2.2): the TCP connection was "
        "open, but no WebSocket ever is, and an HTTP server that never heard of WebSockets cannot produce the "
        "value by accident.",
    )
