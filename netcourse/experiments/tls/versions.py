"""Notebook 09, section 1: SSL and TLS over time, the version floor (who refuses TLS 1.0 and 1.1, and with which
alert), and a server configured like Mozilla's intermediate profile.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from ...apps.tls import Pki, make_tls_app, server_context
from ...runtime.server import serve

__all__ = ["TIMEOUT", "short_reason", "Milestone", "TIMELINE", "timeline_table", "Setting", "server_settings", "VersionFloor", "client_hello", "old_versions"]


@dataclass(frozen=True)
class Milestone:
    """A date in the protocol's history: a version published, or one retired by an RFC."""

    year: int
    name: str
    source: str
    kind: str  # "ssl", "tls" or "retired"


TIMELINE = (
    Milestone(1995, "SSL 2.0", "Netscape (SSL 1.0 was never released)", "ssl"),
    Milestone(1996, "SSL 3.0", "Netscape; published as RFC 6101 (2011, historic)", "ssl"),
    Milestone(1999, "TLS 1.0", "RFC 2246: SSL 3.0 renamed and tidied by the IETF", "tls"),
    Milestone(2006, "TLS 1.1", "RFC 4346", "tls"),
    Milestone(2008, "TLS 1.2", "RFC 5246", "tls"),
    Milestone(2011, "SSL 2.0 prohibited", "RFC 6176", "retired"),
    Milestone(2015, "SSL 3.0 prohibited", "RFC 7568 (after POODLE)", "retired"),
    Milestone(2018, "TLS 1.3", "RFC 8446", "tls"),
    Milestone(2021, "TLS 1.0 and 1.1 deprecated", "RFC 8996", "retired"),
)


def timeline_table() -> str:
    """The timeline as text, one line per milestone."""
    return "\n".join(f"{m.year}  {m.name:<28} {m.source}" for m in TIMELINE)


@dataclass(frozen=True)
class Setting:
    """One setting of a server context, and why it is so."""

    name: str
    value: str
    why: str


def server_settings(ctx: ssl.SSLContext) -> list[Setting]:
    """What ``apps.tls.server_context`` configured, read back from the context itself."""
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    tls13 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"]
    aead = all(("GCM" in n or "CHACHA20" in n) for n in tls12 + tls13)
    return [
        Setting("minimum_version", ctx.minimum_version.name, "TLS 1.0 and 1.1 are deprecated (RFC 8996)"),
        Setting("maximum_version", ctx.maximum_version.name, "the newest OpenSSL offers"),
        Setting("TLS 1.3 suites", ", ".join(tls13), "all AEAD; RFC 8446 §9.1 requires TLS_AES_128_GCM_SHA256"),
        Setting("TLS 1.2 suites", f"{len(tls12)}: " + ", ".join(tls12[:3]) + ", …",
                "Mozilla intermediate: ECDHE/DHE (forward secrecy) with AES-GCM or ChaCha20-Poly1305"),
        Setting("only AEAD", str(aead), "no CBC and its padding oracles (Lucky 13, POODLE)"),
        Setting("compression", "off" if ctx.options & ssl.OP_NO_COMPRESSION else "on", "CRIME read secrets through it"),
        Setting("renegotiation", "off" if ctx.options & ssl.OP_NO_RENEGOTIATION else "on",
                "a TLS 1.2 feature with a history of attacks; TLS 1.3 removed it"),
        Setting("client's order wins", "yes" if not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE else "no",
                "Mozilla: every listed suite is strong, and the client knows if it has AES hardware"),
    ]


@dataclass
class VersionFloor:
    """What happens to a client that asks for TLS 1.0 or 1.1.

    Attributes:
        own_floor: the error the client's own OpenSSL raised before sending anything.
        lowered: the error when the client lowered its floor on purpose and asked the course's server.
        server_alert: the record the server sent back, as bytes, and what it says.
    """

    own_floor: str
    lowered: str
    alert_bytes: bytes
    alert: str

    @property
    def refused_by_own_openssl(self) -> bool:
        """True when the client's OpenSSL refused before sending anything (it depends on its build and its
        configuration: Debian's system Python, for one, sends the old ClientHello and lets the server refuse)."""
        return "ALERT" not in self.own_floor

    def first_try(self) -> str:
        """What happened to the client that only asked for TLS 1.0-1.1, in a sentence."""
        if self.refused_by_own_openssl:
            return f"The client's own OpenSSL refused before sending a ClientHello: {self.own_floor}."
        return f"The client's OpenSSL sent the old ClientHello, and the server refused it: {self.own_floor}."

    def __repr__(self) -> str:
        return (f"the course's server (client floor lowered): {self.lowered}\n"
                f"the server's answer on the wire: {self.alert_bytes.hex(' ')}  =  {self.alert}")


def short_reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{type(exc).__name__} {exc.reason}"
    return f"{type(exc).__name__}: {text}"


def _old_client(lowered: bool) -> ssl.SSLContext:
    import warnings

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # Python itself warns that these versions are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    if lowered:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # what it takes to make OpenSSL 3 speak TLS 1.0 at all
    return ctx


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """The bytes of the first flight (the ClientHello record) that ``ctx`` would send, made in memory."""
    obj = ctx.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass  # waiting for the ServerHello, as expected
    return outgoing.read()


def old_versions() -> VersionFloor:
    """Ask for TLS 1.0/1.1: first the client's own OpenSSL refuses; lowered, the course's server does."""
    from ...protocols.tlsrecord import RecordDecoder

    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki), name="https") as srv:
        errors = []
        for lowered in (False, True):
            try:
                with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as raw:
                    with _old_client(lowered).wrap_socket(raw, server_hostname="localhost"):
                        errors.append("connected (unexpected)")
            except (ssl.SSLError, OSError) as exc:
                errors.append(short_reason(exc))
        # The same lowered ClientHello by hand, to read the server's answer off the socket.
        with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as raw:
            raw.sendall(client_hello(_old_client(True)))
            answer = b""
            while len(answer) < 7 and (chunk := raw.recv(4096)):
                answer += chunk
    records = RecordDecoder().feed(answer)
    return VersionFloor(errors[0], errors[1], answer[:7], records[0].label if records else "nothing")


TIMEOUT = 10.0  # seconds any one client operation may take
