"""Webhook signatures as the Standard Webhooks specification (v1, standardwebhooks.com) defines them, sans-I/O.

A sender POSTs the event's JSON to the receiver's URL with three headers (the specification's example
headers; it does not publish the secret behind that signature, so the course's tests check ``sign`` against
the test vector the reference libraries share instead):

    webhook-id: msg_2KWPBgLlAfxdpx2AI54pPJ85f4W   the event's id: the same on every retry (an idempotency key)
    webhook-timestamp: 1674087231                  this attempt's time, integer Unix seconds
    webhook-signature: v1,K5oZ...pI4=              base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))

The signed content covers the id and the timestamp as well as the body, so neither can be swapped. The
signature header is a space-separated list, so a sender rotating its secret can sign with the old and the
new one at once; a receiver accepts if any ``v1`` entry matches. Secrets are shown as ``whsec_`` + base64.

- ``sign(secret, msg_id, timestamp, body)`` gives the ``v1,<base64>`` entry.
- ``verify(secret, headers, body, tolerance=300, now=None)`` checks, in this order: the three headers are
  there; the timestamp is an integer within ``tolerance`` seconds of ``now``, neither too old (a replay)
  nor too far ahead; one entry matches, compared in constant time (``hmac.compare_digest``). Any failure
  raises ``SignatureError`` saying which check failed.

``address_problem(ip)`` says why a sender must not deliver to an address (loopback, private, link-local...),
the core of an SSRF guard (the spec's "Server side request forgery" section).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Mapping

from ..errors import SignatureError

__all__ = [ "parse_secret", "new_secret", "sign", "verify", "headers_for", "signed_content",
           "address_problem", "PREFIX", "TOLERANCE"]

PREFIX = "whsec_"
TOLERANCE = 300  # seconds either way: the libraries' default (5 minutes)
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def parse_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise SignatureError(f"a secret looks like 'whsec_<base64 of 24 to 64 random bytes>', not {str(secret)[:12]!r}…")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the part after 'whsec_' is not valid base64") from None
    if not key:
        raise SignatureError("the secret is empty after 'whsec_'")
    return key


def new_secret(nbytes: int = 32) -> str:
    """A fresh random secret in the ``whsec_`` form (the spec asks for 24 to 64 bytes)."""
    import secrets

    if not 24 <= nbytes <= 64:
        raise ValueError("the spec asks for 24 to 64 random bytes")
    return PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """What is signed: ``{msg_id}.{timestamp}.{body}``, the body byte for byte as sent."""
    if "." in msg_id:
        raise SignatureError("a message id must not contain '.' (it would make the signed content ambiguous)")
    return f"{msg_id}.{int(timestamp)}.".encode() + body


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one attempt."""
    mac = hmac.new(parse_secret(secret), signed_content(msg_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers_for(secrets: str | list[str], msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three headers for one attempt, signed with each secret (several while a secret rotates)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": " ".join(sign(k, msg_id, ts, body) for k in keys)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: int = TOLERANCE,
           now: float | None = None) -> tuple[str, int]:
    """Check one delivery; return (msg_id, timestamp). Raises ``SignatureError`` naming the failed check."""
    key = parse_secret(secret)
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in HEADERS if not lower.get(h)]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    msg_id, stamp, listed = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise SignatureError(f"webhook-timestamp {stamp[:20]!r} is not an integer number of seconds")
    ts = int(stamp)
    current = time.time() if now is None else now
    if ts < current - tolerance:
        raise SignatureError(f"the timestamp is {current - ts:.0f} s old, beyond the {tolerance} s tolerance (a replay?)")
    if ts > current + tolerance:
        raise SignatureError(f"the timestamp is {ts - current:.0f} s in the future, beyond the {tolerance} s tolerance")
    entries = listed.split()
    if not entries:
        raise SignatureError("webhook-signature lists no signature")
    expected = hmac.new(key, signed_content(msg_id, ts, body), hashlib.sha256).digest()
    ours = [e.split(",", 1)[1] for e in entries if e.startswith("v1,")]
    if not ours:
        raise SignatureError("webhook-signature has no 'v1,' entry (the only scheme this receiver accepts)")
    malformed = 0
    for candidate in ours:
        try:
            given = base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            malformed += 1
            continue  # a malformed entry matches nothing
        if hmac.compare_digest(given, expected):  # time independent of where the bytes differ
            return msg_id, ts
    if malformed == len(ours):
        raise SignatureError("no v1 signature is valid base64: the header is malformed")
    raise SignatureError("no signature matched: wrong secret, or the id, timestamp or body was changed")


def address_problem(address: str) -> str | None:
    """Why a webhook must not be sent to this IP address (None: a public, globally routable address).

    Anything not global is refused: loopback, private, link-local (cloud metadata), shared address space
    (100.64/10), site-local, multicast, reserved; an IPv6 address that embeds an IPv4 one (mapped, 6to4,
    Teredo) is judged by the IPv4 address inside.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            problem = address_problem(str(inner))
            return f"{address} embeds {inner}: {problem}" if problem else None
    for test, name in ((ip.is_loopback, "loopback"), (ip.is_link_local, "link-local (cloud metadata lives here)"),
                       (ip.is_private, "private"), (ip.is_multicast, "multicast"), (ip.is_reserved, "reserved"),
                       (ip.is_unspecified, "unspecified"),
                       (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
                       (not ip.is_global, "non-global")):
        if test:
            return f"{address} is a {name} address: a sender must not be pointed at the inside of its own network"
    return None
