"""Tenants, app registrations and the access tokens the emulator issued.

Tokens look like Entra v1 app tokens (``header.payload.signature``, HS256 with a key that lives only in
this process). The registry, not the signature, is the source of truth: a token is valid only if this
emulator issued it, it has not expired, and :meth:`TokenRegistry.expire_all` has not been called since.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509

from .assertions import load_certificates

#: What ``add_app(certificate=...)`` takes: True, PEM text, DER bytes or certificate objects.
CertificateSpec = bool | str | bytes | x509.Certificate | Iterable[x509.Certificate]

# Resource (application ID URI) -> API family. Scopes are "<resource>/.default".
RESOURCES: dict[str, str] = {
    "https://graph.microsoft.com": "graph",
    "https://graph.microsoft.us": "graph",
    "https://dod-graph.microsoft.us": "graph",
    "https://api.securitycenter.microsoft.com": "mde",
    "https://securitycenter.onmicrosoft.com/windowsatpservice": "mde",
    "https://api-gcc.securitycenter.microsoft.us": "mde",
    "https://api-gov.securitycenter.microsoft.us": "mde",
    "https://api-us.securitycenter.microsoft.com": "mde",
    "https://api-eu.securitycenter.microsoft.com": "mde",
    "https://api-uk.securitycenter.microsoft.com": "mde",
    "https://api.security.microsoft.com": "xdr",
    "https://api-gcc.security.microsoft.us": "xdr",
    "https://api-gov.security.microsoft.us": "xdr",
    "https://vault.azure.net": "keyvault",
}

# Application permissions. "All roles" is what the seeded app and add_app(roles=None) get.
HUNTING_ROLES = {"graph": "ThreatHunting.Read.All", "mde": "AdvancedQuery.Read.All", "xdr": "AdvancedHunting.Read.All"}
KEYVAULT_SECRETS_GET = "KeyVault.Secrets.Get"
ALL_ROLES: tuple[str, ...] = (
    "ThreatHunting.Read.All", "AdvancedQuery.Read.All", "AdvancedHunting.Read.All",
    "SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All", "SecurityIncident.Read.All",
    "SecurityIncident.ReadWrite.All",
    "Machine.Read.All", "Machine.ReadWrite.All", "Machine.Isolate", "Machine.Scan", "Machine.CollectForensics",
    "Machine.RestrictExecution", "Machine.StopAndQuarantine",
    "Alert.Read.All", "Alert.ReadWrite.All", "Ti.ReadWrite.All", "File.Read.All", "Ip.Read.All", "User.Read.All",
    "Incident.Read.All", "Incident.ReadWrite.All", KEYVAULT_SECRETS_GET,
)


def resource_of_scope(scope: str) -> str | None:
    """The known resource a ``<resource>/.default`` scope names, or None."""
    if not scope.endswith("/.default"):
        return None
    resource = scope[: -len("/.default")].rstrip("/")
    for known in RESOURCES:
        if known.lower() == resource.lower():
            return known
    return None


@dataclass
class App:
    """An app registration (service principal) in one tenant.

    ``certificate`` says the app signs in with a client assertion; ``certificates`` are the registered
    certificates its signature is checked against (none registered: any well-formed assertion is accepted).
    """

    tenant_id: str
    client_id: str
    client_secret: str | None = field(repr=False)
    certificate: bool
    roles: frozenset[str]
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False)


@dataclass
class Tenant:
    """A directory: its apps by lower-case client id."""

    tenant_id: str
    apps: dict[str, App] = field(default_factory=dict)


class Directory:
    """All tenants and apps the emulator knows. Thread-safe."""

    def __init__(self) -> None:
        self._tenants: dict[str, Tenant] = {}
        self._lock = threading.Lock()

    def add_tenant(self, tenant_id: str) -> Tenant:
        """Register a tenant (GUID or domain name); returns the existing one if already known."""
        with self._lock:
            return self._tenants.setdefault(tenant_id.lower(), Tenant(tenant_id))

    def tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant, matched case-insensitively, or None."""
        with self._lock:
            return self._tenants.get(tenant_id.lower())

    def add_app(self, tenant_id: str, client_id: str, client_secret: str | None = None,
                certificate: CertificateSpec = False, roles: Iterable[str] | None = None) -> App:
        """Register an app in a known tenant. Without a secret or certificate it gets a generated secret.

        ``certificate`` is the certificate (PEM text, DER bytes, or ``x509.Certificate`` objects) whose key
        must sign the app's client assertions; ``True`` registers a certificate app whose assertions are
        accepted unchecked.
        """
        tenant = self.tenant(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id!r}; call add_tenant first")
        certificates = () if isinstance(certificate, bool) else load_certificates(certificate)
        if client_secret is None and not certificate:
            client_secret = "emu~" + secrets.token_urlsafe(24)
        app = App(tenant.tenant_id, client_id, client_secret, bool(certificate),
                  frozenset(ALL_ROLES if roles is None else roles), certificates=certificates)
        with self._lock:
            tenant.apps[client_id.lower()] = app
        return app

    def secrets(self) -> list[str]:
        """Every registered client secret (so logs can scrub them)."""
        with self._lock:
            return [a.client_secret for t in self._tenants.values() for a in t.apps.values() if a.client_secret]

    def app(self, tenant_id: str, client_id: str) -> App | None:
        """The app registered under that client id in that tenant, or None."""
        tenant = self.tenant(tenant_id)
        if tenant is None:
            return None
        with self._lock:
            return tenant.apps.get(client_id.lower())


@dataclass
class TokenInfo:
    """What the emulator remembers about an access token it issued."""

    tenant_id: str
    client_id: str
    object_id: str
    resource: str
    family: str
    roles: frozenset[str]
    expires_at: float

    @property
    def expired(self) -> bool:
        """True once the token's lifetime is over (or it was force-expired)."""
        return time.time() >= self.expires_at


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenRegistry:
    """Issues bearer tokens and looks them up. Thread-safe."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._tokens: dict[str, TokenInfo] = {}
        self._lock = threading.Lock()

    def issue(self, app: App, resource: str, lifetime: int, issuer: str) -> str:
        """A new access token for ``app`` with ``aud`` = ``resource``, valid ``lifetime`` seconds."""
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": app.client_id,
            "appidacr": "2" if app.certificate else "1",
            "idtyp": "app",
            "oid": app.object_id,
            "sub": app.object_id,
            "roles": sorted(app.roles),
            "tid": app.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        header = {"typ": "JWT", "alg": "HS256", "kid": "defender-soar-emulator"}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        token = signing_input + "." + _b64url(signature)
        info = TokenInfo(app.tenant_id, app.client_id, app.object_id, resource, RESOURCES[resource],
                         app.roles, float(now + lifetime))
        with self._lock:
            self._tokens[token] = info
        return token

    def lookup(self, token: str) -> TokenInfo | None:
        """The record of a token this emulator issued, or None (expired tokens are returned too)."""
        with self._lock:
            return self._tokens.get(token)

    def expire_all(self) -> None:
        """Make every token issued so far expired; tokens issued later are unaffected."""
        past = time.time() - 1
        with self._lock:
            for info in self._tokens.values():
                info.expires_at = min(info.expires_at, past)
