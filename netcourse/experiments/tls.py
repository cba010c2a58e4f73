"""Notebook 09: SSL vs TLS — the handshake captured and decrypted, round trips on a link, certificates that
fail, mutual TLS, and a real man in the middle.

Every server here is ``apps.tls``'s HTTPS app on ``serve(..., ssl=...)``; every client is Python's ``ssl``
module, which is OpenSSL. The two captured handshakes (TLS 1.3 and TLS 1.2) are recorded scenarios: without
capture rights their packets and key log are replayed, while the servers and clients still run live.
Costs and attacks are in ``experiments.tls_cost``.
"""

from __future__ import annotations

import math
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..apps.tls import Pki, client_context, make_interceptor, make_tls_app, server_context
from ..course.exercises import Exercise, Prediction
from ..network.link import link
from ..runtime.server import serve
from ..traffic.sniffer import Capture, capture
from ..traffic.tlsview import TLSConnection, group_name, suite_name, tls_records
from .registry import scenario

__all__ = [
    "TIMELINE", "Milestone", "timeline_table",
    "Setting", "server_settings",
    "VersionFloor", "old_versions",
    "Handshake", "handshake", "handshake_13", "handshake_12",
    "entropy",
    "RoundTrips", "round_trips", "round_trip_grid", "round_trip_knob", "EARLY_DATA_IN_PYTHON",
    "Failure", "failures", "CertInfo", "certificate_chain",
    "Interception", "man_in_the_middle",
    "Mutual", "mutual_tls",
    "predict_first_byte", "exercise_certificate_length", "exercise_request_overhead",
    "request", "fetch", "client_hello",
]

TIMEOUT = 10.0  # seconds any one client operation may take


# -- 1. SSL vs TLS, straight --------------------------------------------------------------------------------


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
            return f"The client's own OpenSSL refused before sending a byte: {self.own_floor}."
        return f"The client's OpenSSL sent the old ClientHello, and the server refused it: {self.own_floor}."

    def __repr__(self) -> str:
        return (f"the course's server (client floor lowered): {self.lowered}\n"
                f"the server's answer on the wire: {self.alert_bytes.hex(' ')}  =  {self.alert}")


def _short(exc: BaseException) -> str:
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
    from ..protocols.tlsrecord import RecordDecoder

    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki), name="https") as srv:
        errors = []
        for lowered in (False, True):
            try:
                with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as raw:
                    with _old_client(lowered).wrap_socket(raw, server_hostname="localhost"):
                        errors.append("connected (unexpected)")
            except (ssl.SSLError, OSError) as exc:
                errors.append(_short(exc))
        # The same lowered ClientHello by hand, to read the server's answer off the socket.
        with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as raw:
            raw.sendall(client_hello(_old_client(True)))
            answer = b""
            while len(answer) < 7 and (chunk := raw.recv(4096)):
                answer += chunk
    records = RecordDecoder().feed(answer)
    return VersionFloor(errors[0], errors[1], answer[:7], records[0].label if records else "nothing")


# -- 2. The handshake, captured -------------------------------------------------------------------------------


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
    from ..protocols.tlsrecord import VERSION_NAMES

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


# -- 3. Round trips on the emulated link ----------------------------------------------------------------------

# Python's ssl module has no binding for OpenSSL's SSL_write_early_data / SSL_read_early_data, so 0-RTT
# cannot be sent from Python (checked, not assumed: ``EARLY_DATA_IN_PYTHON``).
EARLY_DATA_IN_PYTHON = any(hasattr(cls, "write_early_data") for cls in (ssl.SSLSocket, ssl.SSLObject))


@dataclass
class RoundTrips:
    """Time to the first byte of the response, on a fresh connection across an emulated link.

    Attributes:
        rtt_ms: the link's round-trip time.
        mode: "tap" (kernel TCP across namespaces) or "relay" (a delaying relay on loopback).
        rows: (case, round trips in theory, measured ms) per case.
    """

    rtt_ms: float
    mode: str
    rows: list[tuple[str, int, float]] = field(default_factory=list)

    def ms(self, case: str) -> float:
        return next(m for c, _, m in self.rows if c == case)

    def __repr__(self) -> str:
        lines = [f"time to the first response byte, fresh connection, RTT {self.rtt_ms:g} ms ({self.mode} link):"]
        for case, theory, ms in self.rows:
            lines.append(f"  {case:<26} theory {theory} RTT = {theory * self.rtt_ms:5.0f} ms   measured {ms:6.1f} ms"
                         f"   ({ms / self.rtt_ms:.2f} RTT)")
        return "\n".join(lines)


CASES = (  # (name, round trips: TCP + TLS + HTTP)
    ("HTTP, no TLS", 2),
    ("TLS 1.2", 4),
    ("TLS 1.3", 3),
    ("TLS 1.3 resumed", 3),
)


def _first_byte(ctx: ssl.SSLContext | None, host: str, port: int, session: Any = None) -> tuple[float, Any]:
    payload = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is None:
            raw.sendall(payload)
            raw.recv(1)
            return time.perf_counter() - t0, None
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(payload)
            tls.recv(1)
            elapsed = time.perf_counter() - t0
            if session is not None and not tls.session_reused:
                raise RuntimeError("the TLS session was not resumed")
            data = b""
            while b"hello over TLS" not in data:  # read the rest, and with it the session tickets
                data += tls.recv(4096)
            return elapsed, tls.session


def round_trips(rtt_ms: float = 100.0) -> RoundTrips:
    """Measure each case of ``CASES`` once on a fresh connection across a link of ``rtt_ms``."""
    with Pki() as pki, link(rtt_ms=rtt_ms) as net:
        tls_srv = net.serve(make_tls_app(), ssl=server_context(pki), name="https")
        plain = net.serve(make_tls_app(), name="http")

        def measure() -> RoundTrips:
            out = RoundTrips(rtt_ms, net.mode)
            ms = 1000.0
            out.rows.append((CASES[0][0], CASES[0][1], _first_byte(None, plain.host, plain.port)[0] * ms))
            out.rows.append((CASES[1][0], CASES[1][1],
                             _first_byte(client_context(pki, version="1.2"), tls_srv.host, tls_srv.port)[0] * ms))
            ctx13 = client_context(pki, version="1.3")
            full, session = _first_byte(ctx13, tls_srv.host, tls_srv.port)
            out.rows.append((CASES[2][0], CASES[2][1], full * ms))
            resumed, _ = _first_byte(ctx13, tls_srv.host, tls_srv.port, session=session)
            out.rows.append((CASES[3][0], CASES[3][1], resumed * ms))
            return out

        return net.near(measure, timeout=30 + rtt_ms / 10)


def round_trip_grid(rtts: tuple[float, ...] = (25, 50, 100)) -> dict[float, RoundTrips]:
    """``round_trips`` at several RTTs, for the knob."""
    return {r: round_trips(r) for r in rtts}


def round_trip_knob(grid: dict[float, RoundTrips], rtt_ms: float = 100):
    """The knob's picture: measured against theory at one RTT of the grid."""
    from ..course import plots

    if rtt_ms not in grid:
        raise ValueError(f"no measurement at {rtt_ms:g} ms; measured: {', '.join(f'{r:g}' for r in grid)}")
    return plots.tls_round_trips(grid[rtt_ms])


def predict_first_byte(rtt_ms: float = 100.0) -> Prediction:
    """Predict the time to the first response byte with TLS 1.2 on a fresh connection."""
    def explain(given: float, measured: float) -> str:
        return (f"Four round trips: TCP's SYN/SYN-ACK (1), then TLS 1.2's two: ClientHello → ServerHello … "
                f"ServerHelloDone (2), ClientKeyExchange + Finished → Finished (3), and only then the request → "
                f"the response (4). 4 × {rtt_ms:g} = {4 * rtt_ms:g} ms, plus a little processing. TLS 1.3 sends "
                "its key share in the ClientHello and saves one.")

    return Prediction(
        f"On a link with a {rtt_ms:g} ms round trip, a client opens a fresh TCP connection, does a full TLS 1.2 "
        "handshake, and sends GET. How many ms from connect() to the first byte of the response?",
        measure=lambda rt: rt.ms("TLS 1.2"), unit="ms", tolerance=0.1, explain=explain,
    )


# -- 5. Authentication, failing on purpose --------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One certificate check that failed (or passed), as the client reported it."""

    case: str
    outcome: str


def failures() -> list[Failure]:
    """Connect to servers whose certificate is wrong in one way each; report the client's verdicts."""
    out = []
    with Pki() as pki:
        servers = {
            "good": serve(make_tls_app(), ssl=server_context(pki), name="good"),
            "no_ip": serve(make_tls_app(), ssl=server_context(pki, cert=pki.no_ip), name="no IP"),
            "expired": serve(make_tls_app(), ssl=server_context(pki, cert=pki.expired), name="expired"),
            "self": serve(make_tls_app(), ssl=server_context(pki, cert=pki.self_signed), name="self-signed"),
        }
        try:
            system = ssl.create_default_context()  # trusts the machine's CAs only, like any program would
            cases = [
                ("the course CA trusted, name localhost", client_context(pki), "good", "localhost"),
                ("only the system's CAs trusted (unknown CA)", system, "good", "localhost"),
                ("connect by a name not in the SAN", client_context(pki), "good", "example.com"),
                ("by 127.0.0.1, a cert for localhost only", client_context(pki), "no_ip", "127.0.0.1"),
                ("an expired certificate", client_context(pki), "expired", "localhost"),
                ("a self-signed certificate", client_context(pki), "self", "localhost"),
            ]
            for case, ctx, which, name in cases:
                srv = servers[which]
                try:
                    data, (_, _, version, _) = request(
                        ctx, srv.host, srv.port, b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                        server_hostname=name)
                    out.append(Failure(case, f"OK, {version}: " + data.split(b"\r\n", 1)[0].decode()))
                except ssl.SSLCertVerificationError as exc:
                    out.append(Failure(case, f"refused: {exc.verify_message} (X509 error {exc.verify_code})"))
        finally:
            for srv in servers.values():
                srv.stop()
    return out


@dataclass(frozen=True)
class CertInfo:
    """The fields of one certificate a person checks."""

    subject: str
    issuer: str
    san: str
    not_before: str
    not_after: str
    key: str
    is_ca: bool

    def __repr__(self) -> str:
        return (f"subject    {self.subject}\nissuer     {self.issuer}\nSAN        {self.san or '-'}\n"
                f"valid      {self.not_before} to {self.not_after}\nkey        {self.key}\nCA         {self.is_ca}")


def describe_certificate(pem_or_der: bytes) -> CertInfo:
    """Read a certificate (PEM or DER) with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = (x509.load_pem_x509_certificate(pem_or_der) if pem_or_der.startswith(b"-----")
            else x509.load_der_x509_certificate(pem_or_der))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
        names += [f"IP:{n}" for n in san.get_values_for_type(x509.IPAddress)]
        names += [f"email:{n}" for n in san.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        names = []
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    key = cert.public_key()
    kind = (f"ECDSA {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey)
            else f"RSA {key.key_size} bits" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__)
    return CertInfo(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), ", ".join(names),
                    cert.not_valid_before_utc.date().isoformat(), cert.not_valid_after_utc.date().isoformat(),
                    kind, is_ca)


def certificate_chain(hs: Handshake) -> list[CertInfo]:
    """The certificates the server sent in a captured handshake (decrypted for TLS 1.3), in order."""
    record = hs.first.find("Certificate")
    if record is None:
        return []
    msg = next(m for m in (record.scapy.inner.msg if record.inner_type else record.scapy.msg)
               if "Certificate" in type(m).__name__)
    out = []
    for entry in msg.certs:
        cert = entry[1] if isinstance(entry, tuple) else getattr(entry, "cert", entry)
        if isinstance(cert, tuple):
            cert = cert[1]
        out.append(describe_certificate(bytes(cert.der if hasattr(cert, "der") else cert)))
    return out


# -- the man in the middle ---------------------------------------------------------------------------------


@dataclass
class Interception:
    """A relay on the path with its own certificate, against a careless and a careful client.

    Attributes:
        careless: what the client with ``CERT_NONE`` and no hostname check got back.
        careless_leak: what the relay read of that client's request, in clear.
        careful: what the verifying client got.
        careful_leak: bytes the relay read from it (none: the handshake failed first).
    """

    careless: str
    careless_leak: bytes
    careful: str
    careful_leak: int

    def __repr__(self) -> str:
        secret = next((line for line in self.careless_leak.split(b"\r\n") if line.startswith(b"Authorization")), b"")
        return (f"careless client (CERT_NONE): {self.careless}\n"
                f"  the relay read {len(self.careless_leak)} B in clear, including: {secret.decode()}\n"
                f"careful client (verifies):   {self.careful}\n"
                f"  the relay read {self.careful_leak} B")


def man_in_the_middle() -> Interception:
    """A real interceptor between client and server on loopback: it terminates TLS with its own certificate."""
    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki), name="real server") as real:
        careless_seen, careful_seen = bytearray(), bytearray()
        attacker_ctx = server_context(pki, cert=pki.attacker)
        headers = "Authorization: Bearer course-demo-token\r\n"
        with serve(make_interceptor((real.host, real.port), careless_seen), ssl=attacker_ctx, name="mitm") as mitm:
            careless = fetch(client_context(pki, verify=False), mitm.host, mitm.port, headers=headers)
        with serve(make_interceptor((real.host, real.port), careful_seen), ssl=server_context(pki, cert=pki.attacker),
                   name="mitm") as mitm:
            try:
                careful = fetch(client_context(pki), mitm.host, mitm.port, headers=headers)
            except ssl.SSLCertVerificationError as exc:
                careful = f"refused: {exc.verify_message}"
    return Interception(careless, bytes(careless_seen), careful, len(careful_seen))


# -- 6. Mutual TLS -----------------------------------------------------------------------------------------


@dataclass
class Mutual:
    """A server that requires a client certificate, without one and with one."""

    without: str
    with_cert: str

    def __repr__(self) -> str:
        return f"without a client certificate: {self.without}\nwith ada's certificate:       {self.with_cert}"


def mutual_tls() -> Mutual:
    """Mutual TLS: the server asks for a certificate signed by the course CA."""
    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki, require_client_cert=True), name="mtls") as srv:
        try:
            without = fetch(client_context(pki), srv.host, srv.port, "/whoami")
        except (ssl.SSLError, OSError) as exc:
            without = "refused: " + _short(exc)
        with_cert = fetch(client_context(pki, cert=pki.client), srv.host, srv.port, "/whoami")
    return Mutual(without, with_cert)


# -- exercises -----------------------------------------------------------------------------------------


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
