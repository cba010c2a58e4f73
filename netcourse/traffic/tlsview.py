"""TLS records in a capture, dissected by scapy's TLS layer and, given the key log, decrypted.

``tls_records(capture)`` follows each TCP connection of a capture in order, cuts both directions into
records (``protocols.tlsrecord``), and hands each record to scapy's TLS dissector with one TLS session per
connection. The session learns the handshake as it goes (the client and server randoms, the chosen suite),
so with the secrets of an NSS key log (``SSLContext.keylog_filename``; the format browsers write to
``SSLKEYLOGFILE``) it derives the traffic keys and opens every encrypted record: the TLS 1.3 Certificate,
the HTTP request, the response.

Without the key log the same records stay ciphertext; only their headers and the first hello messages can
be read, which is what anyone on the path sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import TLSRecordError
from ..protocols.tlsrecord import HEADER, RecordDecoder
from .packets import C2S

__all__ = ["TLSRecordView", "TLSConnection", "tls_records", "suite_name", "group_name"]


@dataclass
class TLSRecordView:
    """One record of a captured TLS connection.

    Attributes:
        t: seconds since the capture started, when the record's last byte was captured.
        direction: "C→S" or "S→C".
        content_type: the header's content type (23 for every encrypted TLS 1.3 record).
        size: bytes on the wire, the 5-byte header included.
        messages: what the record carries: handshake message names, "ApplicationData", an alert, or
            "encrypted" when it could not be opened.
        plaintext: the application data the record carried, decrypted (b"" if none or unknown).
        encrypted: True when the fragment was ciphertext on the wire.
        decrypted: True when it was ciphertext and was opened with the key log.
        inner_type: TLS 1.3's real content type, hidden inside the encryption (RFC 8446 §5.2), or None.
        handshake_length: for a handshake message record, the first message's declared length (bytes).
        version: the record header's legacy version field (RFC 8446 §5.1), e.g. 0x0301 in a first ClientHello.
    """

    t: float
    direction: str
    content_type: int
    size: int
    messages: list[str]
    plaintext: bytes = b""
    encrypted: bool = False
    decrypted: bool = False
    inner_type: int | None = None
    handshake_length: int | None = None
    version: int = 0
    scapy: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The record as a ladder shows it: ``Certificate (decrypted) · 572 B``."""
        names = ", ".join(self.messages)
        if self.decrypted:
            names += " (decrypted)"
        return f"{names} · {self.size} B"


@dataclass
class TLSConnection:
    """The records of one TCP connection, with the two hellos as scapy parsed them."""

    client_port: int
    records: list[TLSRecordView]
    client_hello: Any = None
    server_hello: Any = None

    def find(self, name: str) -> TLSRecordView | None:
        """The first record carrying a message called ``name`` (e.g. "Certificate")."""
        return next((r for r in self.records if name in r.messages), None)


_NAMES = {
    "TLSClientHello": "ClientHello", "TLS13ClientHello": "ClientHello", "TLSServerHello": "ServerHello",
    "TLS13ServerHello": "ServerHello", "TLSCertificate": "Certificate", "TLS13Certificate": "Certificate",
    "TLSServerKeyExchange": "ServerKeyExchange", "TLSServerHelloDone": "ServerHelloDone",
    "TLSClientKeyExchange": "ClientKeyExchange", "TLSFinished": "Finished", "TLSChangeCipherSpec": "ChangeCipherSpec",
    "TLSEncryptedExtensions": "EncryptedExtensions", "TLSCertificateVerify": "CertificateVerify",
    "TLSNewSessionTicket": "NewSessionTicket", "TLS13NewSessionTicket": "NewSessionTicket",
    "TLSCertificateRequest": "CertificateRequest", "TLS13CertificateRequest": "CertificateRequest",
    "TLSApplicationData": "ApplicationData", "TLSAlert": "Alert", "TLS13KeyUpdate": "KeyUpdate",
}


def suite_name(code: int) -> str:
    """A cipher suite's IANA name, e.g. 0x1302 -> "TLS_AES_256_GCM_SHA384"."""
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites

    return _tls_cipher_suites.get(code, f"0x{code:04x}")


def group_name(code: int) -> str:
    """A named group's name, e.g. 29 -> "x25519"."""
    from scapy.layers.tls.crypto.groups import _tls_named_groups

    return _tls_named_groups.get(code, f"group {code}")


def _load_scapy_tls() -> None:
    from scapy.main import load_layer

    load_layer("tls")  # the TLS classes; here they dissect reassembled records, not packets scapy routes by port


def tls_records(capture: Any, *, keylog: str | None = None) -> list[TLSConnection]:
    """Every TLS connection of a capture, in order, its records dissected and (with ``keylog``) decrypted.

    Args:
        capture: a finished ``Capture`` (live or replayed).
        keylog: the text of an NSS key log with the connections' secrets, or None.
    """
    _load_scapy_tls()
    from scapy.layers.inet import TCP
    from scapy.layers.tls.record import TLS
    from scapy.layers.tls.session import parse_nss_keys, tlsSession

    keys = parse_nss_keys(keylog) if keylog else None
    rows = capture.table()
    conns: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for pkt, row in zip(capture.packets, rows):
        if row.proto != "TCP" or not row.payload:
            continue
        client_port = int((row.src if row.direction == C2S else row.dst).rsplit(":", 1)[1])
        state = conns.get(client_port)
        if state is None:
            session = tlsSession()  # scapy's session is seen from the server: the client's records are "read"
            session.nss_keys = keys
            state = conns[client_port] = {"session": session, "side": C2S, "next": {}, "decoders": {},
                                          "conn": TLSConnection(client_port, [])}
            order.append(client_port)
        expected = state["next"].get(row.direction)
        if expected is not None and row.seq != expected:
            continue  # a resend: its bytes were read already
        state["next"][row.direction] = (row.seq or 0) + row.payload
        decoder = state["decoders"].setdefault(row.direction, RecordDecoder())
        if decoder is False:
            continue
        try:
            records = decoder.feed(bytes(pkt[TCP].payload)[: row.payload])
        except TLSRecordError:
            state["decoders"][row.direction] = False  # not TLS (or bytes missing): stop reading this side
            continue
        for record in records:
            if state["side"] != row.direction:
                state["session"] = state["session"].mirror()
                state["side"] = row.direction
            wire = bytes([record.content_type]) + record.version.to_bytes(2, "big") + len(record.fragment).to_bytes(
                2, "big") + record.fragment
            state["conn"].records.append(_view(TLS(wire, tls_session=state["session"]), record, row, state["conn"],
                                               keyed=keys is not None))
    return [conns[p]["conn"] for p in order]


def _view(parsed: Any, record: Any, row: Any, conn: TLSConnection, *, keyed: bool) -> TLSRecordView:
    if record.encrypted and not keyed:
        # Without keys nothing encrypted can be opened. (scapy would still "parse" the ciphertext as if it were
        # plaintext, and now and then random bytes look like a message: never trust that.)
        opened, objects, inner_type = False, [], None
    elif type(parsed).__name__ == "TLS13":  # an encrypted TLS 1.3 record: opened only with the keys
        inner = getattr(parsed, "inner", None)
        opened = inner is not None and getattr(inner, "type", None) is not None and bool(inner.msg)
        objects = list(inner.msg) if opened else []
        inner_type = int(inner.type) if opened else None
    else:
        opened = not record.encrypted or _tls12_opened(parsed)
        objects = list(getattr(parsed, "msg", None) or []) if opened else []
        inner_type = None
    messages, plaintext, length = [], b"", None
    for m in objects:
        kind = type(m).__name__
        if kind == "Raw":
            continue
        messages.append(_NAMES.get(kind, kind))
        if kind == "TLSApplicationData":
            plaintext += bytes(m.data)
        if length is None and getattr(m, "msglen", None) is not None:
            length = int(m.msglen)
        if kind in ("TLSClientHello", "TLS13ClientHello") and conn.client_hello is None:
            conn.client_hello = m
        if kind in ("TLSServerHello", "TLS13ServerHello") and conn.server_hello is None:
            conn.server_hello = m
    decrypted = record.encrypted and bool(messages)
    if not decrypted:
        inner_type = None
    if not messages:
        messages = ["encrypted"] if record.encrypted else [record.label]
    return TLSRecordView(
        t=row.t, direction=row.direction, content_type=record.content_type, size=HEADER + len(record.fragment),
        messages=messages, plaintext=plaintext, encrypted=record.encrypted, decrypted=decrypted,
        inner_type=inner_type, handshake_length=length, version=record.version, scapy=parsed,
    )


def _tls12_opened(parsed: Any) -> bool:
    session = getattr(parsed, "tls_session", None)
    return bool(session is not None and session.nss_keys and session.master_secret)
