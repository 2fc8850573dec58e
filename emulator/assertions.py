"""Client assertions (certificate credentials, §1.2): a JWT the app signs with its certificate's private key.

Entra ID checks it against the certificates registered for the app: the ``x5t`` / ``x5t#S256`` header names
the certificate, the RS256 / PS256 signature must verify with its public key, ``iss`` and ``sub`` are the
client id, ``aud`` is the token endpoint and ``nbf``/``exp`` bracket now. Each failure has its AADSTS code.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# Entra allows a few minutes of clock skew either way.
SKEW_SECONDS = 300


@dataclass(frozen=True)
class Refusal:
    """Why an assertion was refused: the AADSTS number and Entra's description."""

    aadsts: int
    description: str


def load_certificates(value: str | bytes | x509.Certificate | Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Certificates from PEM text (a private key block beside them is ignored), DER bytes or certificate objects."""
    if isinstance(value, x509.Certificate):
        return (value,)
    if isinstance(value, str):
        value = value.encode("ascii")
    if isinstance(value, bytes):
        if b"-----BEGIN CERTIFICATE-----" in value:
            return tuple(x509.load_pem_x509_certificates(value))
        return (x509.load_der_x509_certificate(value),)
    certs = tuple(value)
    if not all(isinstance(c, x509.Certificate) for c in certs):
        raise TypeError("certificate must be PEM text, DER bytes or cryptography x509.Certificate objects")
    return certs


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprints(cert: x509.Certificate) -> tuple[str, str]:
    """(``x5t``, ``x5t#S256``) of a certificate, base64url as in a JWT header."""
    return _b64encode(cert.fingerprint(hashes.SHA1())), _b64encode(cert.fingerprint(hashes.SHA256()))


def _verify(cert: x509.Certificate, alg: str, signed: bytes, signature: bytes) -> bool:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    pad = (padding.PKCS1v15() if alg == "RS256"
           else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO))
    try:
        key.verify(signature, signed, pad, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _hex_thumbprint(value: str) -> str:
    try:
        return _b64decode(value).hex().upper()
    except (binascii.Error, ValueError):
        return value


def check(assertion: str, client_id: str, certificates: tuple[x509.Certificate, ...],
          now: float | None = None) -> Refusal | None:
    """None if ``assertion`` is a valid client assertion of ``client_id`` signed by one of ``certificates``."""
    now = time.time() if now is None else now
    head, payload, sig = assertion.split(".")
    header, claims = json.loads(_b64decode(head)), json.loads(_b64decode(payload))
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        return Refusal(5002738, f"Invalid JWT token. '{alg}' is not a supported signature algorithm. "
                                        "Supported signing algorithms are: 'RS256, PS256'.")
    named = header.get("x5t#S256") or header.get("x5t")
    candidates = certificates
    if isinstance(named, str) and named:
        named = named.rstrip("=")  # MSAL pads its base64url thumbprints; Entra takes either
        candidates = tuple(c for c in certificates if named in thumbprints(c))
        if not candidates:
            return Refusal(700027, "Client assertion contains an invalid signature. [Reason - The key was "
                                           f"not found., Thumbprint of key used by client: '{_hex_thumbprint(named)}', "
                                           "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to "
                                           f"see configured keys for app Id '{client_id}'.]")
    try:
        signature = _b64decode(sig)
    except (binascii.Error, ValueError):
        signature = b""
    signed = f"{head}.{payload}".encode("ascii")
    if not any(_verify(cert, alg, signed, signature) for cert in candidates):
        used = _hex_thumbprint(named) if named else "none"
        return Refusal(700027, "Client assertion contains an invalid signature. [Reason - The provided "
                                       "signature value did not match the expected signature value., Thumbprint of "
                                       f"key used by client: '{used}']")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return Refusal(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(a, str) and a.rstrip("/").endswith(("/oauth2/v2.0/token", "/oauth2/token"))
               for a in audiences):
        return Refusal(700023, "Client assertion audience claim does not match Realm issuer. "
                                       "Review the documentation at https://aka.ms/certCreds .")
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, (int, float)) or exp < now - SKEW_SECONDS or (
            isinstance(nbf, (int, float)) and nbf > now + SKEW_SECONDS):
        stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")
        return Refusal(700024, f"Client assertion is not within its valid time range. Current time: {stamp}, "
                                       f"assertion valid from {nbf}, expiry time of assertion {exp}.")
    return None
