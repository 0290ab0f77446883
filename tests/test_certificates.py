"""Certificate credentials: PEM (key + certificate) and PFX, and clear errors for bad ones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from bot.microsoft.certificates import CertificateError, msal_credential
from bot.world import APPROVERS
from simulator.tls import create_client_certificate
from tests.conftest import MakeWorld


def expired_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=35))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


async def test_closure_runs_with_a_certificate_credential(make_world: MakeWorld) -> None:
    """MSAL signs in with the certificate (no secret) and step 1 deletes the users."""
    world = await make_world(certificate=True, users=25)
    assert "client_secret_env" not in world.config_path.read_text()
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    assert len(world.tenant.users) == 1


def test_pfx_without_password_is_read(tmp_path: Path) -> None:
    """A PKCS#12 file becomes MSAL's key + public certificate."""
    key_pem, cert_pem = create_client_certificate()
    key = serialization.load_pem_private_key(key_pem, None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    pfx = tmp_path / "app.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"app",
            key,
            cert,
            None,  # type: ignore[arg-type]
            serialization.NoEncryption(),
        )
    )
    credential = msal_credential(pfx)
    assert credential["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in credential["private_key"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "no PEM private key"),
        ("expired", "expired on"),
    ],
)
def test_bad_certificates_say_what_is_wrong(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    """Unreadable, keyless and expired certificate files each get a one-line reason."""
    path = tmp_path / "app.pem"
    if content == "expired":
        path.write_bytes(expired_pem())
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(CertificateError, match=message) as info:
        msal_credential(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_password_protected_pfx_is_refused_clearly(tmp_path: Path) -> None:
    """A PFX with a password is refused with what to do instead."""
    key_pem, cert_pem = create_client_certificate()
    key = serialization.load_pem_private_key(key_pem, None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    pfx = tmp_path / "app.p12"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"app",
            key,
            cert,
            None,  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    with pytest.raises(CertificateError, match="password"):
        msal_credential(pfx)
