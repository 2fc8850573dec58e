"""Read an app certificate and its private key: PEM text or files, PEM or DER (as MSTICPy stores it)."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigurationError


def certificate_and_key(certificate: str, private_key: str | None = None, *, tenant_id: str = "(not given)") -> tuple[str, str]:
    """(certificate PEM, private key PEM) from PEM text or files; DER certificates are converted."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    def read(value: str, what: str) -> bytes:
        if "-----BEGIN" in value:
            return value.encode()
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"The {what} file {str(path)!r} was not found for tenant {tenant_id!r}.")
        return path.read_bytes()

    cert_bytes = read(certificate, "certificate")
    key_bytes = read(private_key, "private key") if private_key else cert_bytes
    if b"-----BEGIN CERTIFICATE-----" in cert_bytes:
        start = cert_bytes.index(b"-----BEGIN CERTIFICATE-----")
        end = cert_bytes.index(b"-----END CERTIFICATE-----", start) + len(b"-----END CERTIFICATE-----")
        cert_pem = cert_bytes[start:end].decode()
    else:
        try:  # MSTICPy stores the certificate as DER
            cert_pem = x509.load_der_x509_certificate(cert_bytes).public_bytes(Encoding.PEM).decode()
        except ValueError:
            raise ConfigurationError(
                f"The certificate for tenant {tenant_id!r} is neither PEM nor DER."
            ) from None
    marker = b"PRIVATE KEY-----"
    if marker not in key_bytes:
        raise ConfigurationError(
            f"No private key found for the certificate of tenant {tenant_id!r}: give a PEM holding "
            "the key, or private_key."
        )
    start = key_bytes.index(b"-----BEGIN")
    while marker not in key_bytes[start:key_bytes.index(b"\n", start)]:
        start = key_bytes.index(b"-----BEGIN", start + 1)
    end = key_bytes.index(marker, key_bytes.index(b"-----END", start)) + len(marker)
    return cert_pem, key_bytes[start:end].decode()


def pem_bundle(certificate: str, private_key: str | None = None, *, tenant_id: str = "(not given)") -> str:
    """One PEM text holding the certificate and then its private key."""
    cert_pem, key_pem = certificate_and_key(certificate, private_key, tenant_id=tenant_id)
    return cert_pem.strip() + "\n" + key_pem.strip() + "\n"
