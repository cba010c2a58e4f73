"""Notebook 09, section 2: TLS 1.3 and TLS 1.2 handshakes captured, dissected (ClientHello, ServerHello and their
extensions), decrypted with a key log, and a resumed session; ciphertext's entropy against plaintext.
"""

from __future__ import annotations

import math
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

__all__ = ["REQUEST", "request", "fetch", "Handshake", "handshake", "handshake_13", "handshake_12", "entropy", "exercise_certificate_length", "exercise_request_overhead"]



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
        out: dict[str, Any] = {"record version": "0x0301 (TLS 1.0, for old middleboxes)",
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
        hint="hs12.records() lists each record's size on the wire. The record header takes 5 bytes and the "
        "handshake header 4; the length field counts what follows them.",
        explanation=f"{length} bytes: the record's size minus 5 (record header) minus 4 (type and length). "
        "Anyone on the path could read this certificate, and with it the name of the site.",
        kind="capture",
    )


def exercise_request_overhead(hs13: Handshake) -> Exercise:
    """Bytes of the request's record that are not the request, from the TLS 1.3 capture."""
    record = next(r for r in hs13.first.records if r.direction == "C→S" and r.plaintext)
    extra = record.size - len(record.plaintext)
    return Exercise(
        "In your TLS 1.3 capture, find the record that carried your GET request (decrypted). How many of its "
        "bytes on the wire were not your request?",
        answer=extra,
        hint="The record's size is in hs13.records(); the request itself is hs13.http()[0]. Subtract.",
        explanation=f"{extra} bytes: the 5-byte record header, the 1-byte real content type hidden inside the "
        "encryption (RFC 8446 §5.2), and the 16-byte AEAD authentication tag.",
        kind="capture",
    )
