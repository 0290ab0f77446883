"""Certificate credentials for MSAL: a PEM file holding the private key and the certificate."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from cryptography import x509


class CertificateError(Exception):
    """The certificate file cannot be used; the message names the file and why."""


def msal_credential(path: Path) -> dict[str, Any]:
    """MSAL's client_credential for a PEM with key + certificate (SHA-256 thumbprint by MSAL)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read: {exc.strerror}") from exc
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
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        raise CertificateError(
            f"{path}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        )
    return {"private_key": keys[0], "public_certificate": certs[0]}


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
