"""Notebook 09, section 2: TLS 1.3 and TLS 1.2 handshakes captured, dissected (ClientHello, ServerHello and their
extensions), decrypted with a key log, and a resumed session; ciphertext's entropy against plaintext.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ...apps.tls import Pki, client_context, make_tls_app, server_context
from ...course.exercises import Exercise
from ...runtime.server import serve
from ...traffic.sniffer import Capture, capture
from ...traffic.tlsview import TLSConnection, group_name, suite_name, tls_records
from ..registry import scenario
from .versions import TIMEOUT

__all__ = ["exercise_what_shows", "REQUEST", "request", "fetch", "Handshake", "handshake", "handshake_13", "handshake_12", "entropy", "exercise_certificate_length", "exercise_request_overhead"]



REQUEST = b"GET /page HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer course-demo-token\r\nConnection: close\r\n\r\n"


def request(ctx: ssl.SSLContext, host: str, port: int, payload: bytes = REQUEST, *, session: Any = None,
            server_hostname: str = "localhost") -> tuple[bytes, tuple[Any, bool, str, tuple]]:
    """Send ``payload`` over a fresh TLS connection and read until the server closes.

    Returns (response bytes, (the TLS session for resumption, whether this one was resumed, the version,
    the cipher)).
    """
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname=server_hostname, session=session) as tls:
            tls.sendall(payload)
            data = b""
            while len(data) < 1_000_000 and (chunk := tls.recv(65536)):
                data += chunk
            return data, (tls.session, tls.session_reused, tls.version(), tls.cipher())


def fetch(ctx: ssl.SSLContext, url_host: str, port: int, path: str = "/hello", *, headers: str = "") -> str:
    """GET ``path`` over TLS and return the status line and body, as text."""
    payload = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n".encode()
    data, _ = request(ctx, url_host, port, payload)
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode("latin-1") + " | " + body.decode("utf-8", "replace").strip()


@dataclass
class Handshake:
    """A captured HTTPS exchange (and, for TLS 1.3, a resumed second one), dissected.

    Attributes:
        version: the version the server allowed at most ("1.3" or "1.2").
        capture: the capture (live, or replayed from its recording).
        keylog: the NSS key log of the captured connections (the recording's, in a replay).
        connections: each TLS connection, its records decrypted with ``keylog``.
        opaque: the same connections dissected without the key log: what the path sees.
        negotiated: (version, suite) as the live client's ``ssl`` reported them.
        resumed: True when the live second connection resumed the first one's session.
    """

    version: str
    capture: Capture
    keylog: str
    connections: list[TLSConnection]
    opaque: list[TLSConnection]
    negotiated: tuple[str, str]
    resumed: bool | None = None

    @property
    def first(self) -> TLSConnection:
        return self.connections[0]

    def client_hello(self) -> dict[str, Any]:
        """The ClientHello's fields a lesson shows."""
        ch = self.first.client_hello
        record = self.first.find("ClientHello")
        rv = record.version if record is not None else 0
        out: dict[str, Any] = {"record version": f"0x{rv:04x} ({_version(rv)} in the record header, frozen for old servers)",
                               "legacy_version": _version(ch.version)}
        out["cipher suites"] = [suite_name(c) for c in ch.ciphers]
        for ext in ch.ext or []:
            kind = type(ext).__name__
            if kind == "TLS_Ext_ServerName":
                out["server_name (SNI)"] = ", ".join(s.servername.decode() for s in ext.servernames)
            elif kind == "TLS_Ext_ALPN":
                out["ALPN"] = [p.protocol.decode() for p in ext.protocols]
            elif kind == "TLS_Ext_SupportedGroups":
                out["supported_groups"] = [group_name(g) for g in ext.groups]
            elif kind == "TLS_Ext_SupportedVersion_CH":
                out["supported_versions"] = [_version(v) for v in ext.versions]
            elif kind == "TLS_Ext_KeyShare_CH":
                out["key_share"] = [f"{group_name(s.group)} ({len(s.key_exchange)} B)" for s in ext.client_shares]
        out["extensions"] = [_ext_name(e) for e in ch.ext or []]
        return out

    def server_hello(self) -> dict[str, Any]:
        """The ServerHello's choices (for TLS 1.2, the group is in the ServerKeyExchange)."""
        sh = self.first.server_hello
        out: dict[str, Any] = {"version": _version(sh.version), "cipher suite": suite_name(sh.cipher)}
        for ext in sh.ext or []:
            kind = type(ext).__name__
            if kind == "TLS_Ext_SupportedVersion_SH":
                out["version"] = _version(ext.version) + " (in supported_versions; legacy_version says 0x0303)"
            elif kind == "TLS_Ext_KeyShare_SH":
                out["key_share"] = group_name(ext.server_share.group)
            elif kind == "TLS_Ext_ALPN":
                out["ALPN"] = [p.protocol.decode() for p in ext.protocols]
        ske = self.first.find("ServerKeyExchange")
        if ske is not None:
            params = ske.scapy.msg[0].params
            out["key exchange (ServerKeyExchange)"] = group_name(params.named_curve)
        return out

    def group(self) -> str:
        """The key-exchange group the server chose."""
        hello = self.server_hello()
        return hello.get("key_share") or hello.get("key exchange (ServerKeyExchange)", "?")

    def records(self, conn: int = 0, *, opaque: bool = False) -> list[tuple[str, str, int, str]]:
        """(direction, content type, bytes, what it carries) per record of one connection."""
        names = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
        source = (self.opaque if opaque else self.connections)[conn]
        return [(r.direction, names.get(r.content_type, str(r.content_type)), r.size, ", ".join(r.messages)
                 + (" (decrypted)" if r.decrypted else "")) for r in source.records]

    def certificate_in_clear(self) -> bool:
        """True when a Certificate message can be read without any key (TLS 1.2), False in TLS 1.3."""
        return any("Certificate" in r.messages for r in self.opaque[0].records)

    def http(self, conn: int = 0) -> tuple[bytes, bytes]:
        """The decrypted (request, response) bytes of one connection."""
        c = self.connections[conn]
        request_bytes = b"".join(r.plaintext for r in c.records if r.direction == "C→S")
        response = b"".join(r.plaintext for r in c.records if r.direction == "S→C")
        return request_bytes, response

    def ciphertext(self, conn: int = 0) -> bytes:
        """The response's application-data records as they crossed the wire (fragments, no headers)."""
        c = self.opaque[conn]
        return b"".join(bytes(r.scapy)[5:] for r in c.records if r.direction == "S→C" and r.content_type == 23
                        and r.size > 1000)

    def __repr__(self) -> str:
        source = "live" if self.capture.live else "replayed"
        return (f"<Handshake TLS {self.version} max, {len(self.connections)} connection(s), {source} capture, "
                f"negotiated {self.negotiated[0]} {self.negotiated[1]}>")


def _version(v: int) -> str:
    from ...protocols.tlsrecord import VERSION_NAMES

    return VERSION_NAMES.get(v, f"0x{v:04x}")


def _ext_name(ext: Any) -> str:
    name = type(ext).__name__.replace("TLS_Ext_", "")
    return {"ServerName": "server_name", "SupportedPointFormat": "ec_point_formats", "SupportedGroups":
            "supported_groups", "SessionTicket": "session_ticket", "ALPN": "ALPN", "EncryptThenMAC": "encrypt_then_mac",
            "ExtendedMasterSecret": "extended_master_secret", "SignatureAlgorithms": "signature_algorithms",
            "SupportedVersion_CH": "supported_versions", "PSKKeyExchangeModes": "psk_key_exchange_modes",
            "KeyShare_CH": "key_share", "Padding": "padding", "PreSharedKey_CH": "pre_shared_key",
            "PostHandshakeAuth": "post_handshake_auth", "RecordSizeLimit": "record_size_limit"}.get(name, name)


def handshake(version: str = "1.3", *, scenario_name: str | None = None) -> Handshake:
    """Serve the HTTPS app (allowing at most TLS ``version``), capture one GET /page with a key log, and for
    TLS 1.3 a second, resumed connection; dissect and decrypt both."""
    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki, maximum=version), name="https") as srv:
        keylog_path = pki.keylog_path()
        ctx = client_context(pki, keylog=keylog_path)  # a default client: it offers 1.3 and 1.2
        with capture(srv.port, scenario=scenario_name) as cap:
            _, (session, _, negotiated, cipher) = request(ctx, srv.host, srv.port)
            resumed = None
            if version == "1.3":
                _, (_, resumed, _, _) = request(ctx, srv.host, srv.port, session=session)
            if cap.live:
                cap.annotations["tls_keylog"] = keylog_path.read_text()
        keylog = cap.annotations.get("tls_keylog", "")
    return Handshake(version, cap, keylog, tls_records(cap, keylog=keylog), tls_records(cap),
                     (negotiated, cipher[0]), resumed)


@scenario("tls13_handshake")
def handshake_13() -> Handshake:
    """A TLS 1.3 HTTPS request, captured with its key log, then a resumed one."""
    return handshake("1.3", scenario_name="tls13_handshake")


@scenario("tls12_handshake")
def handshake_12() -> Handshake:
    """The same request to a server that allows at most TLS 1.2."""
    return handshake("1.2", scenario_name="tls12_handshake")


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte: 8 for bytes indistinguishable from random, ~4.5 for English text."""
    if not data:
        return 0.0
    counts = Counter(data)
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def exercise_certificate_length(hs12: Handshake) -> Exercise:
    """The Certificate message's own length field, from the TLS 1.2 capture."""
    record = hs12.opaque[0].find("Certificate")
    length = record.handshake_length if record is not None else 0
    return Exercise(
        "In your TLS 1.2 capture the server's Certificate message crossed the wire in clear. A handshake message "
        "starts with a 1-byte type and a 3-byte length (RFC 5246 §7.4). What does that length field say, in bytes?",
        answer=length,
        unit="B",
        hint="Two headers sit in front of the certificates: the record's and the handshake message's. A length "
        "field counts only what follows it.",
        recipe="hs12.records() lists each record's size on the wire. The record header takes 5 bytes and the "
        "handshake header 4: the record's size − 5 − 4.",
        mistakes=[
            (length + 9, "that is the whole record on the wire; take off the 5-byte record header and the 4-byte "
             "handshake header."),
            (length + 4, "that still counts the handshake header (type and length, 4 bytes), which comes before "
             "what its length field counts."),
            (length + 5, "that still counts the handshake header (4 bytes) and one more: the record header is 5, "
             "the handshake header 4."),
        ],
        explanation=f"{length} bytes: the record's size minus 5 (record header) minus 4 (type and length). "
        "Anyone on the path could read this certificate, and with it the name of the site.",
        kind="capture", source=hs12,
    )


def exercise_request_overhead(hs13: Handshake) -> Exercise:
    """Bytes of the request's record that are not the request, from the TLS 1.3 capture."""
    record = next(r for r in hs13.first.records if r.direction == "C→S" and r.plaintext)
    extra = record.size - len(record.plaintext)
    return Exercise(
        "In your TLS 1.3 capture, find the record that carried your GET request (decrypted). How many of its "
        "bytes on the wire were not your request?",
        answer=extra,
        unit="B",
        hint="A TLS 1.3 record wraps its content three ways: a header in front, a byte hidden inside the "
        "encryption, and the authentication tag at the end.",
        recipe="the record's size is in hs13.records(); the request itself is hs13.http()[0]. Subtract.",
        mistakes=[
            (extra - 5, "that leaves out the 5-byte record header, which is on the wire in clear."),
            (extra - 1, "that leaves out the inner content type, the one byte TLS 1.3 hides inside the encryption."),
            (5, "that is only the record header; the encryption adds bytes too."),
        ],
        explanation=f"{extra} bytes: the 5-byte record header, the 1-byte real content type hidden inside the "
        "encryption (RFC 8446 §5.2), and the 16-byte AEAD authentication tag.",
        kind="capture", source=hs13,
    )


_VISIBLE = {"a": True, "b": True, "c": False, "d": False, "e": True, "f": True, "g": False}


def _letters(answer: object) -> str:
    """The option letters in an answer, as standalone letters ('a, b, e and f', 'abef'), sorted."""
    text = str(answer).lower().strip()
    found = list(text) if re.fullmatch(r"[a-g]+", text) else re.findall(r"\b[a-g]\b", text)
    return "".join(sorted(set(found)))


def exercise_what_shows() -> Exercise:
    """What an on-path observer still learns from a TLS 1.3 connection: more than the site's name."""
    right = "".join(k for k, v in _VISIBLE.items() if v)
    return Exercise(
        "A laptop on a café's Wi-Fi opens a TLS 1.3 connection (no Encrypted Client Hello) and loads one page; its "
        "DNS goes over HTTPS. Which of these can the café's router learn? (a) the server's IP address, (b) the "
        "site's name, (c) the page's path, (d) the session cookie, (e) roughly how many bytes the page and each "
        "request were, (f) when each request was made, (g) the server's certificate, from this connection's "
        "packets. Answer with the letters, e.g. 'ace'.",
        answer=right,
        normalise=_letters,
        hint="TLS encrypts records, not the packets around them. What is in the IP and TCP headers, what is "
        "in the ClientHello (sent before any key exists), and what can be seen without reading a byte?",
        recipe="the IP header names the server; the ClientHello's server_name extension names the site; TLS "
        "1.3 encrypts everything after the ServerHello, the certificate included; record lengths and packet "
        "times are never hidden.",
        mistakes=[
            ("b", "the site's name (SNI) is only one thing. Which headers outside TLS name the server, and "
             "what do the packets' sizes and times give away?"),
            (lambda v: "g" in _letters(v), "in TLS 1.3 the certificate travels encrypted, after the "
             "ServerHello (in TLS 1.2 it was in clear, as this notebook's TLS 1.2 capture shows)."),
            (lambda v: "c" in _letters(v) or "d" in _letters(v), "the path and the cookie are inside the "
             "HTTP request, which travels in encrypted application data."),
        ],
        explanation="a, b, e and f. The IP address is in every packet's header; the site's name is in the "
        "ClientHello's SNI (Encrypted Client Hello would hide it); record sizes and packet times show how "
        "much was fetched and when, enough to tell pages apart on a site one knows. TLS 1.3 hides the "
        "path, the cookie and, unlike TLS 1.2, the certificate (RFC 8446 §2, §4.4.2).",
    )
