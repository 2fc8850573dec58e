"""Access tokens from Microsoft Entra ID: MSAL for a client secret or certificate, or any TokenCredential.

- **Per scope, lazily.** A client asks for a token for a resource's scope the first time it calls
  that resource; building a client makes no network call.
- **Shared cache, own session.** Clients of the same tenant, app and credential share one MSAL
  token cache (so a second client reuses the first one's tokens), but each client signs in through
  its own ``requests.Session``, CA bundle and timeout. The shared caches are bounded (least recently
  used dropped), keyed by a hash of the credential, never by the credential itself; a rotated
  secret starts a new cache and the old one ages out.
- **Sign-in is held to the same rules as API calls.** Every sign-in request has a deadline; no
  redirect is followed (a 307 would re-send the client secret to another host); a 429, a 5xx or
  an unreadable answer is transient (``ThrottledError`` / ``ServiceError``, retried by the
  transport); an unknown tenant carries Entra's own code and text.
- **One refresh per expiry.** When many threads see a 401 together, the first one fetches a new
  token and the others take it instead of each fetching (and discarding) another.
- **No token in any log.** A filter on MSAL's loggers redacts tokens at every level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import msal
import requests

from .certificates import certificate_and_key
from .errors import AuthenticationError, DefenderError, RedirectRefusedError, ServiceError, ThrottledError
from .settings import TenantSettings
from .transport import error_details, retry_after_seconds, send

log = logging.getLogger(__name__)

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
_EXPIRY_MARGIN = 300.0  # renew a credential's token this many seconds before it expires


class Credentials:
    """One client's way to get tokens: per scope, lazily, through the client's own session."""

    def __init__(self, settings: TenantSettings, session: requests.Session) -> None:
        self._settings = settings
        self._session = session
        self._app: msal.ConfidentialClientApplication | None = None
        self._app_lock = threading.Lock()
        self._shared: _SharedCache | None = None
        self._credential_tokens: dict[str, tuple[str, float]] = {}

    def provider(self, scope: str) -> Callable[..., str]:
        """``get_token(force_refresh=False, rejected=None)`` bound to ``scope``, for a Transport."""

        def get_token(*, force_refresh: bool = False, rejected: str | None = None) -> str:
            return self.get_token(scope, force_refresh=force_refresh, rejected=rejected)

        return get_token

    def get_token(self, scope: str, *, force_refresh: bool = False, rejected: str | None = None) -> str:
        """A valid access token for ``scope``.

        ``force_refresh`` asks for a new one, unless the cached token is no longer ``rejected`` (the
        token a 401 refused): then another thread already renewed it, and that one is returned.
        """
        s = self._settings
        shared = self._shared_cache()
        lock = shared.lock_for(scope)
        if not lock.acquire(timeout=s.timeout):
            raise ServiceError(
                f"Sign-in for tenant {s.tenant_id!r} did not finish within {s.timeout:g}s (another call of this "
                "tenant was still waiting for Entra ID).",
                reached_service=False,
            )
        try:
            if s.credential is not None:
                return self._from_credential(scope, force_refresh, rejected)
            return self._from_msal(scope, force_refresh, rejected)
        finally:
            lock.release()

    # ------------------------------------------------------------------ MSAL (secret / certificate)

    def _from_msal(self, scope: str, force_refresh: bool, rejected: str | None) -> str:
        s = self._settings
        app = self._application()
        try:
            if force_refresh:
                cached = app.acquire_token_for_client(scopes=[scope])
                if cached.get("access_token") and cached["access_token"] != rejected:
                    return cached["access_token"]  # someone renewed it while this thread waited
                app.remove_tokens_for_client()
            result = app.acquire_token_for_client(scopes=[scope])
        except DefenderError:
            raise
        except (ValueError, requests.RequestException, msal.exceptions.MsalServiceError) as exc:
            raise ServiceError(
                f"Sign-in to tenant {s.tenant_id!r} at {s.endpoints.authority_host} failed: {_first_line(str(exc))}"
            ) from None
        if "access_token" in result:
            log.debug("token for tenant %s scope %s (%s)", s.tenant_id, scope, result.get("token_source"))
            return result["access_token"]
        raise _token_error(s, scope, result)

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._app_lock:
            if self._app is None:
                s = self._settings
                try:
                    self._app = msal.ConfidentialClientApplication(
                        s.client_id,
                        client_credential=_client_credential(s),
                        authority=f"{s.endpoints.authority_host}/{s.tenant_id}",
                        http_client=_SignInClient(self._session, s),
                        token_cache=self._shared_cache().cache,
                        # No instance discovery: it would call login.microsoftonline.com/common/discovery/instance
                        # first, even for a proxy, a sovereign cloud or the emulator. The authority's own OpenID
                        # configuration, which MSAL still reads (here, in the constructor), is all it needs.
                        instance_discovery=False,
                    )
                except DefenderError:
                    raise
                except (ValueError, requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                    raise AuthenticationError(
                        f"Sign-in to tenant {s.tenant_id!r} failed at {s.endpoints.authority_host}: "
                        f"{_first_line(str(exc))}"
                    ) from None
            return self._app

    def _shared_cache(self) -> _SharedCache:
        if self._shared is None:
            self._shared = _shared_cache_for(self._settings)
        return self._shared

    # ------------------------------------------------------------------ any azure-identity TokenCredential

    def _from_credential(self, scope: str, force_refresh: bool, rejected: str | None) -> str:
        token, expires_on = self._credential_tokens.get(scope, (None, 0.0))
        fresh_enough = token is not None and expires_on - time.time() > _EXPIRY_MARGIN
        if fresh_enough and not (force_refresh and token == rejected):
            return token
        s = self._settings
        kind = type(s.credential).__name__
        try:
            from azure.core.exceptions import AzureError, ClientAuthenticationError
        except ImportError:  # pragma: no cover - azure-core comes with azure-identity
            AzureError = ClientAuthenticationError = Exception  # noqa: N806
        try:
            access = s.credential.get_token(scope)
        except ClientAuthenticationError as exc:
            raise AuthenticationError(
                f"The {kind} credential could not get a token for {scope} (tenant {s.tenant_id!r}): "
                f"{_first_line(getattr(exc, 'message', None) or str(exc))}"
            ) from None
        except AzureError as exc:
            raise ServiceError(f"The {kind} credential failed for {scope}: {_first_line(str(exc))}") from None
        self._credential_tokens[scope] = (access.token, float(access.expires_on))
        return access.token


class _SignInClient:
    """The ``http_client`` MSAL signs in with: the client's session, a deadline, no redirects.

    Transient failures are raised here, before MSAL reads the answer: MSAL would otherwise turn a
    429 into a refusal, a cut-off body into "tenant not found" (and log the body, token included),
    and replay a 5xx from its throttle cache.
    """

    def __init__(self, session: requests.Session, settings: TenantSettings) -> None:
        self._session = session
        self._settings = settings

    def post(self, url, params=None, data=None, headers=None, **kwargs) -> requests.Response:
        return self._call("POST", url, params=params, data=data, headers=headers)

    def get(self, url, params=None, headers=None, **kwargs) -> requests.Response:
        return self._call("GET", url, params=params, headers=headers)

    def close(self) -> None:
        """The session belongs to the client, which closes it."""

    def _call(self, method, url, **kwargs) -> requests.Response:
        s = self._settings
        response = send(self._session, method, url, deadline=time.monotonic() + s.timeout,
                        operation=f"sign-in to tenant {s.tenant_id!r}", ca_bundle=s.ca_bundle, **kwargs)
        status = response.status_code
        where = s.endpoints.authority_host
        if 300 <= status < 400:
            raise RedirectRefusedError(
                f"The sign-in endpoint {where} answered HTTP {status} with a redirect; Entra ID never redirects a "
                "token request, so it was not followed and the credential was not sent on. Check authority_host "
                "and any proxy.",
                status=status,
            )
        if status == 429:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            raise ThrottledError(
                f"The sign-in endpoint {where} throttled tenant {s.tenant_id!r}"
                + (f"; retry after {retry_after:.0f}s." if retry_after is not None else "."),
                status=429, retry_after=retry_after,
            )
        if status >= 500:
            code, message, request_id = error_details(response)
            raise ServiceError(
                f"The sign-in endpoint {where} failed for tenant {s.tenant_id!r} (a service fault)"
                + (f": {message}" if message else "."),
                status=status, code=code, request_id=request_id,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if "/.well-known/openid-configuration" in url and status >= 400:
            raise _token_error(s, s.endpoints.scope, _json_or_empty(response), status=status)
        if status == 200:
            try:
                json.loads(response.content)
            except (ValueError, RecursionError):
                raise ServiceError(
                    f"The sign-in endpoint {where} answered tenant {s.tenant_id!r} with an unreadable body "
                    "(cut off in transit, or not JSON).",
                    status=status,
                ) from None
        return response


def _json_or_empty(response: requests.Response) -> dict:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _token_error(s: TenantSettings, scope: str, result: dict, status: int | None = None) -> AuthenticationError:
    error = result.get("error")
    description = result.get("error_description")
    if isinstance(error, dict):  # the Graph/ARM shape, as some gateways answer
        description = description or error.get("message")
        error = error.get("code")
    error = str(error) if error else "unknown_error"
    codes = [c for c in (result.get("error_codes") or []) if isinstance(c, int)]
    if not codes and isinstance(description, str):
        codes = [int(c) for c in re.findall(r"AADSTS(\d+)", description)[:1]]
    hints = [
        _AADSTS_HINTS[c].format(tenant=s.tenant_id, client_id=s.client_id, scope=scope, cloud=s.cloud,
                                api=s.hunting_api)
        for c in codes
        if c in _AADSTS_HINTS
    ]
    aadsts = ", ".join(f"AADSTS{c}" for c in codes) or error
    detail = hints[0] if hints else (_first_line(str(description)) if description else "no reason given")
    return AuthenticationError(
        f"Sign-in refused for tenant {s.tenant_id!r} ({aadsts}): {detail}.",
        status=status,
        code=error,
        request_id=result.get("correlation_id") if isinstance(result.get("correlation_id"), str) else None,
    )


def _first_line(text: str) -> str:
    return _redact_tokens((str(text).strip().splitlines() or [""])[0][:300])


# ---------------------------------------------------------------------- shared token caches


class _SharedCache:
    """One MSAL token cache and one lock per scope, shared by the clients of a tenant + app + credential."""

    def __init__(self) -> None:
        self.cache = msal.TokenCache()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock_for(self, scope: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(scope, threading.Lock())


_MAX_CACHES = 256
_caches: OrderedDict[tuple, _SharedCache] = OrderedDict()
_caches_lock = threading.Lock()


def _shared_cache_for(settings: TenantSettings) -> _SharedCache:
    if settings.credential is not None:
        secret_id = f"credential:{id(settings.credential)}"
    else:
        secret_id = "|".join(str(v) for v in (settings.client_secret, settings.certificate, settings.private_key,
                                              settings.certificate_passphrase))
    key = (
        settings.endpoints.authority_host,
        settings.tenant_id.lower(),
        settings.client_id.lower(),
        hashlib.sha256(secret_id.encode()).hexdigest(),
    )
    with _caches_lock:
        entry = _caches.get(key)
        if entry is None:
            entry = _caches[key] = _SharedCache()
            while len(_caches) > _MAX_CACHES:
                _caches.popitem(last=False)
        else:
            _caches.move_to_end(key)
        return entry


def clear_token_cache() -> None:
    """Forget every cached token in this process (tests; or after revoking an app's credential)."""
    with _caches_lock:
        _caches.clear()


def token_cache_size() -> int:
    """How many tenant/app/credential token caches the process holds (bounded)."""
    with _caches_lock:
        return len(_caches)


def _client_credential(settings: TenantSettings):
    if settings.client_secret:
        return settings.client_secret
    cert_pem, key_pem = certificate_and_key(settings.certificate, settings.private_key, tenant_id=settings.tenant_id)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        kind = "an elliptic-curve" if isinstance(cert.public_key(), ec.EllipticCurvePublicKey) else "a non-RSA"
        # Entra ID signs client assertions with RS256/PS256 only; MSAL would fail later with a bare JWT error.
        from .errors import ConfigurationError

        raise ConfigurationError(
            f"The certificate for tenant {settings.tenant_id!r} has {kind} key: Entra ID takes only RSA "
            "certificates for app sign-in. Create an RSA (2048-bit or longer) "
            "certificate and upload it to the app registration."
        )
    credential = {
        "private_key": key_pem,
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - Entra's x5t is SHA-1 by definition
        "public_certificate": cert_pem,
    }
    if settings.certificate_passphrase:
        credential["passphrase"] = settings.certificate_passphrase
    return credential


# ---------------------------------------------------------------------- no tokens in logs

_TOKEN_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*){0,2}"),  # a JWT, whole or cut off anywhere
    re.compile(r"""(["']?(?:access_token|refresh_token|id_token|client_secret|client_assertion)["']?\s*[:=]\s*["']?)"""
               r"""[^"'&\s,}]+"""),
)


def _redact_tokens(text: str) -> str:
    text = _TOKEN_PATTERNS[0].sub("<redacted token>", text)
    return _TOKEN_PATTERNS[1].sub(r"\1<redacted>", text)


class _RedactTokens(logging.Filter):
    """Rewrites a log record's message with tokens and secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging system's to report
            return True
        redacted = _redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _redact_tokens(logging.Formatter().formatException(record.exc_info))
        return True


def _install_log_filter() -> None:
    # Filters on a logger do not apply to its children's records, so every msal.* logger gets one.
    token_filter = _RedactTokens()
    names = {"msal", "msal.oauth2cli.oauth2", "msal.application", "msal.authority", "msal.token_cache"}
    names.update(n for n in logging.root.manager.loggerDict if n.startswith("msal."))
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactTokens) for f in logger.filters):
            logger.addFilter(token_filter)


_install_log_filter()
