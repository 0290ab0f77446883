"""Certificate credentials for MSAL: a PEM file holding the private key and the certificate."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


class CertificateError(Exception):
    """The certificate file cannot be used; the message names the file and why."""


def msal_credential(path: Path) -> dict[str, Any]:
    """MSAL's client_credential for a PEM with key + certificate, or a PFX (PKCS#12) without
    a password; MSAL signs with the key and sends the certificate (SHA-256 thumbprint)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read: {exc.strerror}") from exc
    if path.suffix.lower() in (".pfx", ".p12"):
        text = _pfx_as_pem(path, raw)
    else:
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise CertificateError(f"{path}: not a PEM file (use .pfx for PKCS#12)") from exc
    key_start = text.find("-----BEGIN")
    blocks = _pem_blocks(text)
    keys = [b for b in blocks if "PRIVATE KEY" in b.splitlines()[0]]
    certs = [b for b in blocks if "CERTIFICATE" in b.splitlines()[0]]
    if key_start < 0 or not keys:
        raise CertificateError(f"{path}: no PEM private key in the file")
    if not certs:
        raise CertificateError(f"{path}: no PEM certificate in the file")
    try:
        cert = x509.load_pem_x509_certificate(certs[0].encode())
    except ValueError as exc:
        raise CertificateError(f"{path}: the certificate is not valid PEM") from exc
    try:
        key = serialization.load_pem_private_key(keys[0].encode(), password=None)
    except TypeError:  # cryptography's word for "this key needs a password"
        raise CertificateError(
            f"{path}: the private key is password-protected; export it without a password"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"{path}: the private key is not a valid PEM key") from None
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise CertificateError(f"{path}: the private key does not belong to the certificate")
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        raise CertificateError(
            f"{path}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        )
    return {"private_key": keys[0], "public_certificate": certs[0]}


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _pfx_as_pem(path: Path, raw: bytes) -> str:
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(raw, None)
    except ValueError as exc:
        raise CertificateError(
            f"{path}: cannot open the PFX (a password-protected PFX is not supported: export"
            " it without a password, or as PEM with the key and the certificate)"
        ) from exc
    if key is None or cert is None:
        raise CertificateError(
            f"{path}: the PFX must hold both the private key and the certificate"
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem.decode() + cert.public_bytes(serialization.Encoding.PEM).decode()


def _pem_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("-----BEGIN"):
            current = [line]
        elif line.startswith("-----END") and current:
            current.append(line)
            blocks.append("\n".join(current) + "\n")
            current = []
        elif current:
            current.append(line)
    return blocks
