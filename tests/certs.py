"""A self-signed app certificate with its private key, as PEM text, for the certificate tests.

RSA: Entra ID (and the emulator) accept only RS256/PS256 client assertions.
"""

from __future__ import annotations

import datetime as dt


def certificate_pem(passphrase: str | None = None, common_name: str = "defender-soar-test", *, ec_key: bool = False) -> str:
    """PEM text: a fresh self-signed certificate, then its private key (encrypted with ``passphrase`` if given).

    RSA 2048 unless ``ec_key`` (an elliptic-curve key, which Entra ID refuses).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1()) if ec_key else rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key_pem.decode()
