"""connector.certificates: PEM or DER, text or files; every problem a ConfigurationError that shows no secret."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.certificates import certificate_and_key, pem_bundle
from connector.errors import ConfigurationError

from .conftest import CANARY

TID = "243bb6be-4136-4b64-9055-fb661594199a"


@pytest.fixture(scope="module")
def cert_and_key():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "defender-soar test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert, cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def test_pem_text_with_key_and_separate_files_and_der(tmp_path, cert_and_key):
    cert, cert_pem, key_pem = cert_and_key
    def stripped(pair):
        return tuple(p.strip() for p in pair)

    assert stripped(certificate_and_key(cert_pem + key_pem)) == (cert_pem.strip(), key_pem.strip())
    (tmp_path / "c.pem").write_text("Bag Attributes\n" + cert_pem)
    (tmp_path / "k.pem").write_text(key_pem)
    (tmp_path / "c.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    assert stripped(certificate_and_key(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))) == (cert_pem.strip(), key_pem.strip())
    assert stripped(certificate_and_key(str(tmp_path / "c.der"), key_pem))[0] == cert_pem.strip()
    assert pem_bundle(cert_pem, key_pem) == cert_pem.strip() + "\n" + key_pem.strip() + "\n"


@pytest.mark.parametrize(
    "certificate, private_key, match",
    [
        ("/nowhere/app.pem", None, r"certificate file '/nowhere/app.pem' was not found"),
        (CANARY, None, r"certificate file \(the path given\) was not found"),
        ("x" * 5000 + ".pem", None, r"certificate file \(the path given\) (was not found|cannot be read)"),
        ("a\x00b.pem", None, "(was not found|cannot be read)"),
        ("-----BEGIN CERTIFICATE-----\nAAAA", None, "no END CERTIFICATE line"),
        ("-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----", None, "No private key found"),
        ("{pem}", "-----BEGIN PRIVATE KEY-----" + CANARY, "No private key found"),
    ],
)
def test_bad_certificates_are_configuration_errors_without_secrets(cert_and_key, certificate, private_key, match):
    certificate = certificate.replace("{pem}", cert_and_key[1])
    with pytest.raises(ConfigurationError, match=match) as info:
        certificate_and_key(certificate, private_key, tenant_id=TID)
    assert CANARY not in str(info.value) and "BEGIN" not in str(info.value).replace("BEGIN ... PRIVATE KEY", "")


def test_a_directory_or_a_file_that_is_not_der(tmp_path):
    with pytest.raises(ConfigurationError, match="was not found"):
        certificate_and_key(str(tmp_path))
    (tmp_path / "junk.crt").write_bytes(b"\x00\x01not a certificate")
    with pytest.raises(ConfigurationError, match="neither PEM nor DER"):
        certificate_and_key(str(tmp_path / "junk.crt"))
