"""Tenant settings: what the connector needs to reach one Defender tenant, and the connection string.

``TenantSettings`` is the single place settings are validated. It is built from keyword arguments,
from a connection string exactly as MSTICPy documents it
(``"tenant_id='...'; client_id='...'; client_secret='...'"``) or from ``msticpyconfig.yaml``
(see :mod:`connector.msticpyconfig`). Its ``repr`` never shows a secret.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from . import clouds
from .errors import ConfigurationError


@dataclass(frozen=True)
class RateLimits:
    """Calls allowed per tenant, by the documented quotas. Raise them only if Microsoft raised yours."""

    hunting_per_minute: int = 45
    hunting_per_hour: int = 1500
    api_per_minute: int = 100

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"Rate limit {f.name} must be a positive whole number, not {value!r}.")


# Keys accepted in a connection string, keyword arguments and config files (lower-cased, no
# separators) -> TenantSettings field.
_FIELD_ALIASES = {
    "tenantid": "tenant_id", "tenant": "tenant_id",
    "clientid": "client_id", "appid": "client_id",
    "clientsecret": "client_secret",
    "certificate": "certificate", "cert": "certificate",
    "privatekey": "private_key",
    "certificatepassphrase": "certificate_passphrase", "privatekeysecret": "certificate_passphrase",
    "passphrase": "certificate_passphrase",
    "api": "api", "apitype": "api",
    "cloud": "cloud",
    "authorityhost": "authority_host", "loginurl": "authority_host",
    "apiroot": "api_root",
    "cabundle": "ca_bundle", "verify": "ca_bundle",
    "timeout": "timeout",
}
_SECRET_FIELDS = ("client_secret", "certificate", "private_key", "certificate_passphrase")


def canonical_key(key: str) -> str | None:
    """The settings field a user-facing key names (``TenantId``, ``tenant_id``, ``apiRoot``...), or None."""
    return _FIELD_ALIASES.get(key.strip().lower().replace("_", "").replace("-", ""))


@dataclass(frozen=True)
class TenantSettings:
    """How to reach one Defender tenant: identity, credential, API, cloud and endpoint overrides.

    Exactly one credential: ``client_secret``, or ``certificate`` (PEM text or a path to a PEM file
    holding the certificate, and the private key unless ``private_key`` gives it separately).
    ``api`` is ``graph`` (default), ``mde`` or ``m365d`` (aliases MDATP, M365D, XDR accepted);
    ``cloud`` is ``global``, ``gcc``, ``gcc-high`` or ``dod``. ``authority_host`` and ``api_root``
    redirect traffic (proxies, private endpoints, the emulator) without changing the token's
    resource. ``ca_bundle`` is a PEM file of CAs to trust instead of the system's. ``timeout`` is
    the read timeout of one HTTP call, in seconds (Microsoft runs a hunting query for up to 200 s).
    """

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    certificate_passphrase: str | None = field(default=None, repr=False)
    api: str = clouds.GRAPH
    cloud: str = "global"
    authority_host: str | None = None
    api_root: str | None = None
    ca_bundle: str | None = None
    timeout: float = 210.0
    rate_limits: RateLimits = field(default_factory=RateLimits)
    name: str | None = None

    def __post_init__(self) -> None:
        missing = [n for n in ("tenant_id", "client_id") if not (getattr(self, n) or "").strip()]
        if missing:
            raise ConfigurationError(
                f"Missing {' and '.join(missing)}{self._where()}. Give the Entra tenant ID (a GUID or "
                "contoso.onmicrosoft.com) and the application (client) ID of the app registration."
            )
        object.__setattr__(self, "tenant_id", self.tenant_id.strip())
        object.__setattr__(self, "client_id", self.client_id.strip())
        object.__setattr__(self, "api", clouds.normalize_api(self.api))
        object.__setattr__(self, "cloud", clouds.normalize_cloud(self.cloud))
        has_secret, has_cert = bool(self.client_secret), bool(self.certificate)
        if has_secret == has_cert:
            raise ConfigurationError(
                ("Both client_secret and certificate are set" if has_secret else "No credential given")
                + f"{self._where()}: give exactly one of client_secret or certificate (PEM)."
            )
        if self.private_key and not has_cert:
            raise ConfigurationError(f"private_key is set without a certificate{self._where()}.")
        for name in ("authority_host", "api_root"):
            value = getattr(self, name)
            if value is not None and not str(value).startswith("https://"):
                raise ConfigurationError(
                    f"{name} must be an https:// URL{self._where()}, not {value!r} (Entra ID and MSAL require TLS)."
                )
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise ConfigurationError(f"ca_bundle {self.ca_bundle!r} is not a readable file{self._where()}.")
        try:
            timeout = float(self.timeout)
        except (TypeError, ValueError):
            timeout = -1.0
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, not {self.timeout!r}.")
        object.__setattr__(self, "timeout", timeout)
        if isinstance(self.rate_limits, dict):
            object.__setattr__(self, "rate_limits", RateLimits(**self.rate_limits))

    def _where(self) -> str:
        return f" for tenant {self.name!r}" if self.name else ""

    @property
    def endpoints(self) -> clouds.Endpoints:
        """Login host, token resource and API root for this tenant's API and cloud."""
        return clouds.endpoints(self.api, self.cloud, authority_host=self.authority_host, api_root=self.api_root)

    @property
    def credential_kind(self) -> str:
        """``client_secret`` or ``certificate``: which credential is set (never its value)."""
        return "client_secret" if self.client_secret else "certificate"


def parse_connection_string(text: str) -> dict[str, str]:
    """Parse ``key='value'; key=value;`` into a dict of settings fields.

    Quotes (single or double) are optional; inside quotes ``;`` and ``=`` are literal. Whitespace
    around keys and values and a trailing ``;`` are ignored. Unknown or repeated keys are refused
    by name. Error messages never echo a value.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError("The connection string is empty. Expected: tenant_id='...'; client_id='...'; client_secret='...'")
    result: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n;":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        semi = text.find(";", i)
        if eq < 0 or (0 <= semi < eq):
            fragment = text[i:semi if semi >= 0 else n].strip()
            raise ConfigurationError(
                f"Malformed connection string near key {fragment[:40]!r}: expected key=value pairs separated by ';', "
                "e.g. tenant_id='...'; client_id='...'; client_secret='...'"
            )
        key = text[i:eq].strip()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "'\"":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end < 0:
                raise ConfigurationError(f"Malformed connection string: the value of {key!r} has no closing {quote}.")
            value = text[i + 1:end]
            i = end + 1
            while i < n and text[i] in " \t\r\n":
                i += 1
            if i < n and text[i] != ";":
                raise ConfigurationError(
                    f"Malformed connection string: unexpected text after the quoted value of {key!r}; separate pairs with ';'."
                )
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        field_name = canonical_key(key)
        if not key or field_name is None:
            raise ConfigurationError(
                f"Unknown key {key!r} in the connection string. Known keys: "
                + ", ".join(sorted(set(_FIELD_ALIASES.values())))
                + "."
            )
        if field_name in result:
            raise ConfigurationError(f"Key {key!r} appears twice in the connection string.")
        result[field_name] = value
    if not result:
        raise ConfigurationError("The connection string has no key=value pairs.")
    return result
