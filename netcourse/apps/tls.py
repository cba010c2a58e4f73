"""Notebook 09's servers: a throwaway certificate authority, an HTTPS app, and a man in the middle.

- ``Pki``: a certificate authority made for one lesson (``trustme``, in memory), the certificates a lesson
  needs (a good server certificate, an expired one, one without the IP address, a self-signed one, a client
  certificate for mutual TLS, and an attacker's), and a temporary directory for key logs that is removed
  when the ``Pki`` is closed. Nothing is written to the machine's trust store.
- ``server_context``: an ``ssl.SSLContext`` configured like Mozilla's "intermediate" server profile (TLS 1.2
  and 1.3 only, forward-secret AEAD suites only), for ``serve(app, ssl=...)``.
- ``client_context``: what a careful client (or, on purpose, a careless one) uses.
- ``make_tls_app``: ``/hello``, ``/page`` (a few KiB of text), ``POST /echo`` and ``/whoami`` (the client
  certificate the server saw).
- ``make_interceptor``: a relay that terminates TLS with its own certificate and opens its own TLS
  connection to the real server: a real man in the middle on loopback, which keeps what it read.
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from ..network.link import FAR_IP
from .safety import safe_app

__all__ = [
    "Pki",
    "MOZILLA_INTERMEDIATE_CIPHERS",
    "server_context",
    "client_context",
    "make_tls_app",
    "make_interceptor",
    "PAGE",
    "SERVER_NAMES",
]

# Mozilla's Server Side TLS guidelines, "intermediate" configuration (v5.7): the TLS 1.2 suites, in order.
# All are ECDHE or DHE (forward secrecy) with an AEAD cipher (AES-GCM, ChaCha20-Poly1305). TLS 1.3's own
# suites are all AEAD already and OpenSSL's defaults are kept (RFC 8446 §9.1).
MOZILLA_INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])

# The names the course's server certificate is valid for: loopback by name and address, and the far end
# of the emulated link (RFC 5737 documentation address, only inside the course's namespaces).
SERVER_NAMES = ("localhost", "127.0.0.1", "::1", FAR_IP)
ORG = "netcourse"
MAX_SEEN = 64 * 1024  # bytes the interceptor keeps of what it read

# A page of a few KiB of ordinary text, so that the entropy of plaintext and ciphertext can be compared.
PAGE = ("<!doctype html><title>netcourse</title><h1>Your account</h1>\n" + "".join(
    f"<p>Message {i}: the meeting moved to room {100 + i % 7}; bring the printed agenda.</p>\n"
    for i in range(60))).encode()


class Pki:
    """The certificates of one lesson, made fresh, kept in memory; a temporary folder for key logs.

    Use it as a context manager (or call ``close()``): the folder and everything in it is removed.

    Attributes:
        ca: the course's own certificate authority (``trustme.CA``); clients that trust it trust the server.
        server: the server's certificate for ``SERVER_NAMES``.
        no_ip: a certificate for ``localhost`` only (its SAN has no IP address).
        expired: a certificate for ``SERVER_NAMES`` that expired yesterday.
        self_signed: a certificate for ``SERVER_NAMES`` signed by its own key (no CA at all).
        client: a client certificate for mutual TLS, for ``ada@netcourse.test``.
        attacker_ca, attacker: another CA, and its certificate for ``SERVER_NAMES``: what a man in the
            middle presents.
        directory: the temporary folder (key logs go here).
    """

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.ca = trustme.CA(organization_name=ORG, organization_unit_name="course CA")
        self.server = self.ca.issue_cert(*SERVER_NAMES, organization_name=ORG, organization_unit_name="server")
        self.no_ip = self.ca.issue_cert("localhost", organization_name=ORG, organization_unit_name="server, no IP")
        self.expired = self.ca.issue_cert(
            *SERVER_NAMES, organization_name=ORG, organization_unit_name="server, expired",
            not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1))
        self.client = self.ca.issue_cert("ada@netcourse.test", common_name="ada", organization_name=ORG,
                                         organization_unit_name="client")
        self.attacker_ca = trustme.CA(organization_name="not netcourse", organization_unit_name="attacker CA")
        self.attacker = self.attacker_ca.issue_cert(*SERVER_NAMES, organization_name="not netcourse",
                                                    organization_unit_name="attacker")
        self.self_signed = _self_signed(SERVER_NAMES)
        self.directory = Path(tempfile.mkdtemp(prefix="netcourse-tls-"))
        self._keylogs = 0

    def keylog_path(self) -> Path:
        """A fresh file name for a key log, inside the temporary folder."""
        self._keylogs += 1
        return self.directory / f"keylog-{self._keylogs}.txt"

    def close(self) -> None:
        """Remove the temporary folder (key logs) now."""
        directory = getattr(self, "directory", None)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> "Pki":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class _SelfSigned:
    """A certificate signed by its own key, with ``configure_cert`` like trustme's ``LeafCert``."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.cert_pem = cert_pem
        self.key_pem = key_pem

    def configure_cert(self, ctx: ssl.SSLContext) -> None:
        with tempfile.TemporaryDirectory(prefix="netcourse-cert-") as folder:
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_bytes(self.cert_pem)
            key.write_bytes(self.key_pem)
            ctx.load_cert_chain(cert, key)

    def chain_pems(self) -> list[bytes]:
        return [self.cert_pem]


def _self_signed(names: tuple[str, ...]) -> _SelfSigned:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "self-signed")])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(2000, 1, 1)).not_valid_after(datetime.datetime(3000, 1, 1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    return _SelfSigned(cert.public_bytes(serialization.Encoding.PEM),
                       key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))


def server_context(pki: Pki, *, cert: Any = None, require_client_cert: bool = False,
                   maximum: str = "1.3") -> ssl.SSLContext:
    """A server context like Mozilla's "intermediate" profile.

    Args:
        pki: the lesson's certificates.
        cert: the certificate to present (``pki.server`` by default).
        require_client_cert: ask for a client certificate and refuse the handshake without one signed by
            ``pki.ca`` (mutual TLS).
        maximum: the newest version offered, "1.3" or "1.2" (to show TLS 1.2 from a server's side).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996: TLS 1.0 and 1.1 are deprecated
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if maximum == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # Mozilla: the client picks (it knows its own hardware)
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME (TLS 1.3 has no compression at all)
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # TLS 1.2 renegotiation: a DoS lever, and gone in 1.3
    ctx.set_alpn_protocols(["http/1.1"])
    (cert or pki.server).configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        pki.ca.configure_trust(ctx)
    return ctx


def client_context(pki: Pki | None = None, *, version: str | None = None, keylog: Path | None = None,
                   cert: Any = None, verify: bool = True, trust: Any = None) -> ssl.SSLContext:
    """A client context that trusts the lesson's CA (and nothing else).

    Args:
        pki: the lesson's certificates; its CA is trusted unless ``trust`` names another CA.
        version: "1.2" or "1.3" to speak only that version; None for both.
        keylog: a file to append the session secrets to (NSS key log format), or None.
        cert: a client certificate to present (mutual TLS).
        verify: False builds the careless client: no hostname check and ``CERT_NONE``. Never do this.
        trust: a ``trustme.CA`` to trust instead of the lesson's.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Python's default still falls back to the subject's CN when a certificate has no DNS name in its SAN;
    # RFC 9525 dropped that fallback (RFC 6125 had allowed it), so the course's client does not.
    ctx.hostname_checks_common_name = False
    if version is not None:
        v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
        ctx.minimum_version = ctx.maximum_version = v
    ctx.set_alpn_protocols(["http/1.1"])
    authority = trust or (pki.ca if pki is not None else None)
    if authority is not None:
        authority.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if keylog is not None:
        ctx.keylog_filename = str(keylog)
    return ctx


# -- the app -------------------------------------------------------------------------------------------


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello over TLS\n")


async def _page(request: web.Request) -> web.Response:
    return web.Response(body=PAGE, content_type="text/html")


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type="application/octet-stream")


async def _whoami(request: web.Request) -> web.Response:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        return web.Response(text="not a TLS connection\n")
    peer = ssl_object.getpeercert()
    if not peer:
        return web.Response(text=f"{ssl_object.version()}: no client certificate\n")
    subject = ", ".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
    sans = ", ".join(f"{k}:{v}" for k, v in peer.get("subjectAltName", ()))
    return web.Response(text=f"{ssl_object.version()}: client certificate {subject}; {sans}\n")


ALLOWED_CLIENTS = frozenset({"ada@netcourse.test"})  # who may use /account, by the email in the certificate's SAN


async def _account(request: web.Request) -> web.Response:
    """Authorisation after authentication: a certificate the CA signed proves who the client is, not that it
    may do this; the app checks the identity against its own list."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    peer = ssl_object.getpeercert() if ssl_object is not None else None
    emails = {v for k, v in (peer or {}).get("subjectAltName", ()) if k == "email"}
    if not emails & ALLOWED_CLIENTS:
        who = ", ".join(f"{k}:{v}" for k, v in (peer or {}).get("subjectAltName", ())[:2]) or "no certificate"
        return web.Response(status=403, text=f"a valid certificate ({who}), but not an allowed client\n")
    return web.Response(text=f"account of {sorted(emails & ALLOWED_CLIENTS)[0]}\n")


def make_tls_app() -> web.Application:
    """The HTTPS lesson app (serve it with ``serve(make_tls_app(), ssl=server_context(pki))``)."""
    app = safe_app()
    app.router.add_get("/hello", _hello)
    app.router.add_get("/page", _page)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/whoami", _whoami)
    app.router.add_get("/account", _account)
    return app


# -- the man in the middle -----------------------------------------------------------------------------


def make_interceptor(upstream: tuple[str, int], seen: bytearray, *, timeout: float = 5.0):
    """A stream handler for ``serve(handler, ssl=<its own server context>)`` that relays to ``upstream``.

    It terminates the client's TLS with its own certificate, opens its own TLS connection to the real
    server (it does not care who that is), and copies bytes both ways, keeping the first ``MAX_SEEN``
    bytes the client sent in ``seen``: everything the client thought was private.
    """

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        careless = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        careless.check_hostname = False
        careless.verify_mode = ssl.CERT_NONE
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(*upstream, ssl=careless, server_hostname="localhost"), timeout)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while data := await asyncio.wait_for(src.read(16384), timeout):
                    if keep and len(seen) < MAX_SEEN:
                        seen.extend(data[: MAX_SEEN - len(seen)])
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.TimeoutError, ssl.SSLError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            up_writer.close()

    return handler
