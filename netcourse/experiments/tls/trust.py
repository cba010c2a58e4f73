"""Notebook 09, section 4: authentication, failing on purpose (unknown CA, wrong name, expired, self-signed), the
certificate read field by field, a real man in the middle, and mutual TLS.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from ...apps.tls import (
    Pki,
    client_context,
    make_interceptor,
    make_tls_app,
    server_context,
)
from ...runtime.server import serve
from .handshake import Handshake, fetch, request
from .versions import short_reason

__all__ = ["Failure", "failures", "CertInfo", "describe_certificate", "certificate_chain", "Interception", "man_in_the_middle", "borrowed_certificate", "Mutual", "mutual_tls"]


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


def borrowed_certificate() -> str:
    """A man in the middle that presents the real server's certificate (public, anyone may copy it) with a key of
    its own: the server side must prove it holds the certificate's key, and OpenSSL will not even load the pair.
    Returns what happened, in words that stay the same across OpenSSL builds."""
    with Pki() as pki:
        cert = pki.directory / "borrowed-cert.pem"
        key = pki.directory / "own-key.pem"
        cert.write_bytes(b"".join(p.bytes() for p in pki.server.cert_chain_pems))
        key.write_bytes(pki.attacker.private_key_pem.bytes())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            if "mismatch" in str(exc).lower():
                return ("OpenSSL refused to load them: the key does not match the certificate's public key "
                        "(KEY_VALUES_MISMATCH)")
            return f"OpenSSL refused to load them: {exc}"
        return "OpenSSL loaded them (unexpected: the handshake's CertificateVerify would still fail)"


@dataclass(frozen=True)
class Mutual:
    """A server that requires a client certificate: without one, with ada's, and with the server's own (signed by
    the same CA), each asking for /whoami (who are you?) and /account (may you?)."""

    without: str
    with_cert: str
    account: str
    server_as_client: str
    server_account: str

    def __repr__(self) -> str:
        rows = [("without a client certificate:", self.without), ("with ada's certificate:", self.with_cert),
                ("   and her /account:", self.account), ("with the server's own certificate:", self.server_as_client),
                ("   and /account:", self.server_account)]
        return "\n".join(f"{label:<35}{value}" for label, value in rows)


def mutual_tls() -> Mutual:
    """Mutual TLS: the server asks for a certificate signed by the course CA; the app then decides who may do what."""
    with Pki() as pki, serve(make_tls_app(), ssl=server_context(pki, require_client_cert=True), name="mtls") as srv:
        try:
            without = fetch(client_context(pki), srv.host, srv.port, "/whoami")
        except (ssl.SSLError, OSError) as exc:
            without = "refused: " + short_reason(exc)
        ada, server = client_context(pki, cert=pki.client), client_context(pki, cert=pki.server)
        with_cert = fetch(ada, srv.host, srv.port, "/whoami")
        account = fetch(ada, srv.host, srv.port, "/account")
        server_as_client = fetch(server, srv.host, srv.port, "/whoami")
        server_account = fetch(server, srv.host, srv.port, "/account")
    return Mutual(without, with_cert, account, server_as_client, server_account)
