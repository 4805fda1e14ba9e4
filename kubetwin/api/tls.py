"""Throw-away TLS material for the twin's loopback HTTPS endpoints.

Real clients (kubectl, helm, the official Python client) refuse plain HTTP with a bearer token or insist on
verifying the server, so the twin mints a private CA and a serving certificate per run instead of asking
users for ``--insecure-skip-tls-verify``. Keys never leave memory except for the instant :mod:`ssl` needs
them in a file (a private temp dir, removed right after loading). EC P-256 keeps generation in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServingCert:
    """A CA plus one serving certificate signed by it (all PEM)."""

    ca_pem: bytes
    """The CA certificate clients trust (kubeconfig ``certificate-authority-data``, webhook ``caBundle``)."""
    cert_pem: bytes
    """The serving certificate (SANs as requested)."""
    key_pem: bytes
    """The serving certificate's private key (PKCS#8, unencrypted: it lives in memory only)."""

    def server_context(self) -> ssl.SSLContext:
        """An :class:`ssl.SSLContext` for serving with this certificate (TLS ≥ 1.2)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="dra-lab-tls-") as d:
            cert_path = os.path.join(d, "tls.crt")
            key_path = os.path.join(d, "tls.key")
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key_pem)
            with open(cert_path, "wb") as f:
                f.write(self.cert_pem)
            ctx.load_cert_chain(cert_path, key_path)
        return ctx


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_serving_cert(*, dns_names: Sequence[str] = ("localhost",), ips: Sequence[str] = ("127.0.0.1",),
                      common_name: str = "dra-lab-twin", days: int = 7) -> ServingCert:
    """Mint a fresh CA and a serving certificate for ``dns_names`` and ``ips``."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate small clock skew
    until = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{common_name}-ca"))
        .issuer_name(_name(f"{common_name}-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCert(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
    )


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context trusting only ``ca_pem`` (webhook calls trust their ``caBundle``, nothing else)."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
