"""The TLS record layer, sans-I/O: what a TLS connection looks like before anything is decrypted.

Every byte TLS sends travels in a *record* (RFC 8446 §5.1, RFC 5246 §6.2)::

    +--------------+------------------+----------------+-------------------+
    | content type | legacy version   | length         | fragment          |
    | 1 byte       | 2 bytes (0x0303) | 2 bytes        | `length` bytes    |
    +--------------+------------------+----------------+-------------------+

The header is always in clear, so anyone on the path sees how many records went each way, of which type,
and how long each was. What is inside depends on the moment:

- the first handshake messages (ClientHello, ServerHello; in TLS 1.2 also Certificate, ServerKeyExchange,
  ServerHelloDone, ClientKeyExchange) are in clear;
- after ChangeCipherSpec (TLS 1.2) or the ServerHello (TLS 1.3) the fragments are AEAD ciphertext. TLS 1.3
  disguises every encrypted record as ``application_data`` (type 23) and hides the real type inside, after
  the plaintext (RFC 8446 §5.2); its ChangeCipherSpec is a dummy kept for middleboxes (Appendix D.4).

``RecordDecoder`` splits a byte stream into records, whatever way it was cut into TCP segments, and names
what it can see. ``python -m``-free and stdlib only: the lesson reads it.

    >>> dec = RecordDecoder()
    >>> [r.label for r in dec.feed(bytes.fromhex("15030300020246"))]
    ['Alert fatal protocol_version']
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import TLSRecordError, latching

__all__ = [
    "ContentType",
    "HandshakeType",
    "AlertDescription",
    "Record",
    "RecordDecoder",
    "HEADER",
    "MAX_PLAINTEXT",
    "VERSION_NAMES",
    "parse_alert",
    "handshake_messages",
]

HEADER = 5  # bytes: type, version, length (RFC 8446 §5.1)
MAX_PLAINTEXT = 2**14  # bytes of plaintext per record at most (RFC 8446 §5.1, RFC 5246 §6.2.1)
MAX_RECORD = 2**14 + 2048  # the largest fragment TLS 1.2 allows (RFC 5246 §6.2.3); 1.3 allows 2**14 + 256

# Protocol versions as they appear on the wire (RFC 8446 §4.2.1, RFC 5246 Appendix E).
VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


class ContentType(IntEnum):
    """Record content types (RFC 8446 §5.1)."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24  # RFC 6520; never used by the course


class HandshakeType(IntEnum):
    """Handshake message types (RFC 8446 §4, RFC 5246 §7.4)."""

    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    KEY_UPDATE = 24


class AlertDescription(IntEnum):
    """Alert descriptions (RFC 8446 §6, with RFC 5246 §7.2's)."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    ACCESS_DENIED = 49
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    INAPPROPRIATE_FALLBACK = 86
    USER_CANCELED = 90
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    UNRECOGNIZED_NAME = 112
    BAD_CERTIFICATE_STATUS_RESPONSE = 113
    UNKNOWN_PSK_IDENTITY = 115
    CERTIFICATE_REQUIRED = 116
    NO_APPLICATION_PROTOCOL = 120


@dataclass(frozen=True)
class Record:
    """One TLS record as seen on the wire.

    Attributes:
        content_type: the header's type (for an encrypted TLS 1.3 record always APPLICATION_DATA).
        version: the header's legacy version (0x0303 in practice; 0x0301 in a first ClientHello).
        fragment: the record's body: plaintext, or ciphertext with its authentication tag.
        encrypted: True when the fragment is ciphertext (it came after the sender switched keys).
        label: what the record carries, as far as can be seen without keys.
    """

    content_type: int
    version: int
    fragment: bytes
    encrypted: bool
    label: str

    @property
    def size(self) -> int:
        """Bytes on the wire: header and fragment."""
        return HEADER + len(self.fragment)


def parse_alert(fragment: bytes) -> tuple[str, str]:
    """(level, description) of a plaintext alert: ``("fatal", "protocol_version")`` (RFC 8446 §6)."""
    if len(fragment) != 2:
        raise TLSRecordError(f"an alert is 2 bytes (level, description), not {len(fragment)}")
    level = {1: "warning", 2: "fatal"}.get(fragment[0], f"level {fragment[0]}")
    try:
        description = AlertDescription(fragment[1]).name.lower()
    except ValueError:
        description = f"alert {fragment[1]}"
    return level, description


def handshake_messages(fragment: bytes) -> list[tuple[int, int]]:
    """(type, length) of each whole handshake message in a plaintext handshake fragment (RFC 8446 §4).

    A message split across records (large certificates are) yields what fits: its type and declared length.
    """
    out = []
    i = 0
    while i + 4 <= len(fragment):
        kind, length = fragment[i], int.from_bytes(fragment[i + 1 : i + 4], "big")
        out.append((kind, length))
        i += 4 + length
    return out


def _handshake_name(kind: int) -> str:
    try:
        return "".join(part.title() for part in HandshakeType(kind).name.split("_"))
    except ValueError:
        return f"Handshake {kind}"


class RecordDecoder:
    """Splits one direction of a TLS connection into records, in any cut of the bytes.

    Args:
        max_length: the largest fragment accepted, in bytes; longer is an error (RFC 5246 §6.2.3).

    The decoder also follows the switch to encryption: after this side's ChangeCipherSpec (TLS 1.2), or
    once a record of type APPLICATION_DATA appears during the handshake (TLS 1.3), fragments are
    ciphertext and are labelled as such.
    """

    def __init__(self, *, max_length: int = MAX_RECORD) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self.failed: TLSRecordError | None = None  # set once feed() has raised: it stays failed
        self.encrypted = False
        self.records = 0

    @latching
    def feed(self, data: bytes) -> list[Record]:
        """Add bytes; return every record now complete. Raises ``TLSRecordError`` on bytes that are not TLS."""
        self._buffer += data
        out = []
        while len(self._buffer) >= HEADER:
            kind, version, length = self._buffer[0], int.from_bytes(self._buffer[1:3], "big"), int.from_bytes(
                self._buffer[3:5], "big")
            if kind not in ContentType.__members__.values():
                raise TLSRecordError(f"byte {kind} is not a TLS content type (20-24): these bytes are not TLS")
            if version >> 8 != 3:
                raise TLSRecordError(f"version 0x{version:04x} is not a TLS or SSL 3 version")
            if length > self.max_length:
                raise TLSRecordError(f"a record of {length} bytes is over the limit of {self.max_length}")
            if len(self._buffer) < HEADER + length:
                break
            fragment = bytes(self._buffer[HEADER : HEADER + length])
            del self._buffer[: HEADER + length]
            out.append(self._record(kind, version, fragment))
        return out

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a record."""
        return len(self._buffer)

    def _record(self, kind: int, version: int, fragment: bytes) -> Record:
        self.records += 1
        encrypted = self.encrypted
        if kind == ContentType.CHANGE_CIPHER_SPEC:
            label = "ChangeCipherSpec"
            self.encrypted = True  # what this side sends next is protected (a no-op in TLS 1.3, D.4)
            encrypted = False
        elif kind == ContentType.APPLICATION_DATA:
            self.encrypted = encrypted = True
            label = f"encrypted {len(fragment)} B"
        elif kind == ContentType.ALERT and not encrypted:
            try:
                level, description = parse_alert(fragment)
                label = f"Alert {level} {description}"
            except TLSRecordError:
                label = "Alert ?"
        elif kind == ContentType.HANDSHAKE and not encrypted:
            names = [_handshake_name(k) for k, _ in handshake_messages(fragment)]
            label = ", ".join(names) if names else "Handshake (part)"
        else:
            label = f"{ContentType(kind).name.title().replace('_', '')} (encrypted)"
        return Record(kind, version, fragment, encrypted, label)
