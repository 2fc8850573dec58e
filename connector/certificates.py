"""Read an app certificate and its private key: PEM text or files, PEM or DER (as MSTICPy stores it).

Every problem is a :class:`ConfigurationError`. Messages never show the certificate or key, and
show a file path only when it looks like the path of a certificate file (``.pem``, ``.crt``...):
a secret given in the wrong setting must not be printed as a "file name".
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigurationError

_MAX_FILE = 1024 * 1024  # a certificate with its chain and key is a few KB
_CERT_BEGIN, _CERT_END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:[A-Z]+ )*PRIVATE KEY)-----.+?-----END \1-----", re.S)
_CERT_FILE = re.compile(r"[\w./\\:~+@() -]{1,300}\.(?:pem|crt|cer|der|key|txt)", re.I)


def _shown(value: str) -> str:
    return repr(value) if _CERT_FILE.fullmatch(value) else "(the path given)"


def _read(value: str, what: str, tenant_id: str) -> bytes:
    if "-----BEGIN" in value:
        return value.encode()
    try:
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"The {what} file {_shown(value)} was not found for tenant {tenant_id!r}: give PEM text, or the path "
                "of a PEM or DER file."
            )
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE + 1)
    except (OSError, ValueError, RuntimeError) as exc:  # too long a name, a NUL, ~nobody, no permission
        raise ConfigurationError(
            f"The {what} file {_shown(value)} cannot be read for tenant {tenant_id!r} ({type(exc).__name__})."
        ) from None
    if len(data) > _MAX_FILE:
        raise ConfigurationError(f"The {what} file {_shown(value)} for tenant {tenant_id!r} is larger than 1 MiB.")
    return data


def certificate_and_key(certificate: str, private_key: str | None = None, *, tenant_id: str = "(not given)") -> tuple[str, str]:
    """(certificate PEM, private key PEM) from PEM text or files; DER certificates are converted.

    ``tenant_id`` only labels messages; give it once settings have validated it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if not isinstance(certificate, str) or not certificate.strip():
        raise ConfigurationError(f"No certificate given for tenant {tenant_id!r}.")
    cert_bytes = _read(certificate, "certificate", tenant_id)
    key_bytes = _read(private_key, "private key", tenant_id) if private_key else cert_bytes
    start = cert_bytes.find(_CERT_BEGIN)
    if start >= 0:
        end = cert_bytes.find(_CERT_END, start)
        if end < 0:
            raise ConfigurationError(f"The certificate for tenant {tenant_id!r} has no END CERTIFICATE line.")
        cert_pem = cert_bytes[start:end + len(_CERT_END)].decode("ascii", "replace")
    else:
        try:  # MSTICPy stores the certificate as DER
            cert_pem = x509.load_der_x509_certificate(cert_bytes).public_bytes(Encoding.PEM).decode()
        except ValueError:
            raise ConfigurationError(f"The certificate for tenant {tenant_id!r} is neither PEM nor DER.") from None
    key = _KEY_BLOCK.search(key_bytes)
    if key is None:
        raise ConfigurationError(
            f"No private key found for the certificate of tenant {tenant_id!r}: give a PEM holding "
            "the key (BEGIN ... PRIVATE KEY ... END ... PRIVATE KEY), or private_key."
        )
    return cert_pem, key.group(0).decode("ascii", "replace")


def pem_bundle(certificate: str, private_key: str | None = None, *, tenant_id: str = "(not given)") -> str:
    """One PEM text holding the certificate and then its private key."""
    cert_pem, key_pem = certificate_and_key(certificate, private_key, tenant_id=tenant_id)
    return cert_pem.strip() + "\n" + key_pem.strip() + "\n"
