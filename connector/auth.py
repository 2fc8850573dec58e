"""Tokens from Microsoft Entra ID with MSAL (client secret or certificate).

One MSAL ``ConfidentialClientApplication`` per tenant, app and credential in the process, so
every client of the same tenant shares its token cache; MSAL keeps tokens per scope and renews
them before they expire. A 401 from an API calls ``get_token(force_refresh=True)`` once.
"""

from __future__ import annotations

import hashlib
import logging
import threading

import msal
import requests

from .certificates import certificate_and_key
from .errors import AuthenticationError, ServiceError
from .settings import TenantSettings

log = logging.getLogger(__name__)

# MSAL's default throttle after a 429/5xx without Retry-After (msal/throttled_http_client.py), plus a margin.
_MSAL_THROTTLE_SECONDS = 5.5

# AADSTS codes -> what to tell the person (reference/defender-api.md §1.4).
_AADSTS_HINTS = {
    7000215: "the client secret was refused: use the secret's Value (not its ID) and check it has not expired",
    7000222: "the client secret has expired: create a new one for the app registration",
    700027: "the certificate was refused: upload its public key to the app registration and check the thumbprint",
    90002: "tenant {tenant!r} was not found: check tenant_id and that the cloud ({cloud}) is right",
    700016: "app {client_id!r} was not found in tenant {tenant!r}: check client_id, and that the app is registered "
    "(or admin-consented) in this tenant",
    70011: "the scope {scope!r} was refused: check the API ({api}) and cloud ({cloud}) settings",
    7000218: "the request needs a client secret or certificate",
}


class TokenProvider:
    """Acquires and caches access tokens for one tenant + app + credential."""

    def __init__(self, settings: TenantSettings, session: requests.Session) -> None:
        self._settings = settings
        self._scope = settings.endpoints.scope
        self._app, self._lock = _application(settings, session)

    def get_token(self, *, force_refresh: bool = False) -> str:
        """A valid access token for the settings' API; a new one from Entra ID if ``force_refresh``."""
        s = self._settings
        with self._lock:
            if force_refresh:
                self._app.remove_tokens_for_client()
            try:
                result = self._app.acquire_token_for_client(scopes=[self._scope])
            except (ValueError, requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                raise _sign_in_error(s, exc) from None
        if "access_token" in result:
            log.debug("token for tenant %s scope %s (%s)", s.tenant_id, self._scope, result.get("token_source"))
            return result["access_token"]
        raise _token_error(s, self._scope, result)

def _sign_in_error(s: TenantSettings, exc: Exception) -> AuthenticationError | ServiceError:
    if isinstance(exc, msal.exceptions.MsalServiceError):
        # MSAL raises this for a 5xx from the sign-in endpoint: transient, but MSAL then replays the
        # same failure from its throttle cache for Retry-After or 5 s, so do not retry sooner.
        return ServiceError(
            f"The sign-in endpoint {s.endpoints.authority_host} failed for tenant {s.tenant_id!r}: {_first_line(str(exc))}",
            retry_after=_MSAL_THROTTLE_SECONDS,
        )
    if isinstance(exc, ValueError):
        # MSAL raises ValueError when authority discovery fails (e.g. unknown tenant).
        return AuthenticationError(
            f"Sign-in to tenant {s.tenant_id!r} failed at {s.endpoints.authority_host}: the tenant was not "
            f"found or the authority is wrong (check tenant_id and cloud={s.cloud!r}). MSAL said: "
            f"{_first_line(str(exc))}"
        )
    return ServiceError(
        f"Could not reach the sign-in endpoint {s.endpoints.authority_host} for tenant {s.tenant_id!r}: "
        f"{type(exc).__name__}"
    )


def _token_error(s: TenantSettings, scope: str, result: dict) -> AuthenticationError:
    codes = result.get("error_codes") or []
    error = result.get("error", "unknown_error")
    hints = [
        _AADSTS_HINTS[c].format(tenant=s.tenant_id, client_id=s.client_id, scope=scope, api=s.api, cloud=s.cloud)
        for c in codes
        if c in _AADSTS_HINTS
    ]
    aadsts = ", ".join(f"AADSTS{c}" for c in codes) or error
    detail = hints[0] if hints else _first_line(result.get("error_description", ""))
    return AuthenticationError(
        f"Entra ID refused a token for app {s.client_id!r} in tenant {s.tenant_id!r} ({aadsts}): {detail}.",
        code=error,
        request_id=result.get("correlation_id"),
    )


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


# One MSAL app (and the lock that serialises its token requests) per tenant + app + credential.
_apps: dict[tuple, tuple[msal.ConfidentialClientApplication, threading.Lock]] = {}
_apps_lock = threading.Lock()


def _application(
    settings: TenantSettings, session: requests.Session
) -> tuple[msal.ConfidentialClientApplication, threading.Lock]:
    credential = _client_credential(settings)
    fingerprint = hashlib.sha256(repr(sorted(credential.items()) if isinstance(credential, dict) else credential).encode()).hexdigest()
    ep = settings.endpoints
    key = (ep.authority_host, settings.tenant_id.lower(), settings.client_id.lower(), fingerprint, settings.ca_bundle)
    with _apps_lock:
        entry = _apps.get(key)
        if entry is None:
            entry = _apps[key] = (_new_application(settings, credential, session), threading.Lock())
        return entry


def _new_application(settings: TenantSettings, credential, session: requests.Session) -> msal.ConfidentialClientApplication:
    # MSAL discovers the authority here, in the constructor: map its failures like the token call's.
    ep = settings.endpoints
    try:
        return msal.ConfidentialClientApplication(
            settings.client_id,
            client_credential=credential,
            authority=f"{ep.authority_host}/{settings.tenant_id}",
            http_client=session,
            # No instance discovery: it would call login.microsoftonline.com/common/discovery/instance
            # first, even for a proxy, a sovereign cloud or the emulator. The authority's own OpenID
            # configuration, which MSAL still reads, is all a client-credentials app needs.
            instance_discovery=False,
            timeout=min(settings.timeout, 60.0),
        )
    except (ValueError, requests.RequestException, msal.exceptions.MsalServiceError) as exc:
        raise _sign_in_error(settings, exc) from None


def _client_credential(settings: TenantSettings):
    if settings.client_secret:
        return settings.client_secret
    cert_pem, key_pem = certificate_and_key(settings.certificate, settings.private_key, tenant_id=settings.tenant_id)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    credential = {
        "private_key": key_pem,
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - Entra's x5t is SHA-1 by definition
        "public_certificate": cert_pem,
    }
    if settings.certificate_passphrase:
        credential["passphrase"] = settings.certificate_passphrase
    return credential
