"""Tenant settings: what the connector needs to reach one Defender tenant, and the connection string.

``TenantSettings`` is the single place settings are validated. It is built from keyword arguments,
from a connection string exactly as MSTICPy documents it
(``"tenant_id='...'; client_id='...'; client_secret='...'"``) or from ``msticpyconfig.yaml``
(see :mod:`connector.msticpyconfig`). Every setting is described once, in :data:`SETTING_FIELDS`:
the keys accepted in connection strings, keyword arguments and msticpyconfig, the Prefect block's
fields and the CLI's options are all derived from that list, so adding a setting is one entry there
(plus its handling in ``TenantSettings``) and its documentation.

Messages never show a secret, and never quote a value that did not validate: a connection string
split on the wrong character can put a secret into any value.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import clouds
from .errors import ConfigurationError

#: The kinds of :class:`SettingField`:
#:
#: - ``plain``: text shown as is (IDs);
#: - ``secret``: text never shown (client secret, certificate PEM, private key, passphrase);
#: - ``url``: an ``https://host[:port][/path]`` URL;
#: - ``path``: a file path on the machine that runs the client;
#: - ``number``: a positive, finite number (seconds);
#: - ``integer``: a positive whole number;
#: - ``choice``: one of ``choices`` (aliases accepted, any case);
#: - ``credential``: an azure-core ``TokenCredential`` object (keyword argument only, never text);
#: - ``limits``: a :class:`RateLimits` or a mapping of its fields (keyword argument only).
KINDS = ("plain", "secret", "url", "path", "number", "integer", "choice", "credential", "limits")


@dataclass(frozen=True)
class SettingField:
    """One setting, described once for every place it can be given.

    ``name`` is the :class:`TenantSettings` field and the keyword argument. ``aliases`` are other
    accepted spellings; every key is matched case-insensitively with ``_``, ``-`` and spaces
    ignored, so ``TenantId``, ``tenant-id`` and ``tenant_id`` are the same key. ``msticpy_key`` is
    how msticpyconfig.yaml spells it (None: it cannot be given there). ``text`` says whether it can
    be given as text at all (connection string, msticpyconfig, CLI option); a credential object or
    rate limits cannot.
    """

    name: str
    title: str
    description: str
    kind: str
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    default: Any = None
    msticpy_key: str | None = None
    text: bool = True
    required: bool = False

    @property
    def secret(self) -> bool:
        """True when the value must never be shown."""
        return self.kind == "secret"

    @property
    def keys(self) -> tuple[str, ...]:
        """Every accepted spelling: the name, the msticpyconfig key and the aliases."""
        return tuple(dict.fromkeys(k for k in (self.name, self.msticpy_key, *self.aliases) if k))


#: The settings of one tenant, in the order a person fills them in.
SETTING_FIELDS: tuple[SettingField, ...] = (
    SettingField(
        "tenant_id", "Tenant ID",
        "Entra ID tenant (directory) ID: a GUID, or a domain such as contoso.onmicrosoft.com.",
        "plain", aliases=("tenant",), msticpy_key="TenantId", required=True,
    ),
    SettingField(
        "client_id", "Client ID",
        "Application (client) ID of the Entra app registration that has the Defender API permissions (a GUID).",
        "plain", aliases=("app_id", "application_id"), msticpy_key="ClientId", required=True,
    ),
    SettingField(
        "client_secret", "Client secret",
        "The app's client secret value (not its secret ID). Give exactly one of client secret, certificate or "
        "credential.",
        "secret", msticpy_key="ClientSecret",
    ),
    SettingField(
        "certificate", "Certificate",
        "The app's certificate: PEM text, or the path of a PEM or DER file. PEM may hold the private key too. "
        "Instead of a client secret.",
        "secret", aliases=("cert",), msticpy_key="Certificate",
    ),
    SettingField(
        "private_key", "Private key",
        "The certificate's private key (PEM text or a file path), when the certificate does not hold it.",
        "secret", msticpy_key="PrivateKey",
    ),
    SettingField(
        "certificate_passphrase", "Certificate passphrase",
        "Passphrase of the certificate's private key, if it is encrypted.",
        "secret", aliases=("passphrase", "private_key_secret"), msticpy_key="PrivateKeySecret",
    ),
    SettingField(
        "credential", "Credential",
        "Any azure-identity TokenCredential (ManagedIdentityCredential, WorkloadIdentityCredential, "
        "AzureCliCredential...) instead of an app secret or certificate.",
        "credential", text=False,
    ),
    SettingField(
        "hunting_api", "Hunting API",
        "Hunting API: graph (Microsoft Graph runHuntingQuery, recommended), mde (legacy Defender for Endpoint "
        "API) or m365d (legacy Microsoft 365 Defender API). Aliases MDATP, M365D and XDR are accepted.",
        "choice", aliases=("api", "api_type"), choices=clouds.APIS, default=clouds.GRAPH, msticpy_key="ApiType",
    ),
    SettingField(
        "cloud", "Cloud", "Microsoft cloud: global (commercial), gcc, gcc-high or dod.",
        "choice", choices=clouds.CLOUDS, default="global", msticpy_key="Cloud",
    ),
    SettingField(
        "authority_host", "Authority host override",
        "Entra ID sign-in host (https://...) instead of the cloud's: a proxy, a private endpoint or the emulator.",
        "url", aliases=("login_url",), msticpy_key="AuthorityHost",
    ),
    SettingField(
        "api_root", "API root override",
        "One host (https://...) for every Defender resource instead of the cloud's, e.g. one proxy. The token "
        "is still requested for the cloud's resource.",
        "url", msticpy_key="apiRoot",
    ),
    SettingField(
        "graph_root", "Graph root override",
        "Host (https://...) for Microsoft Graph calls (alerts, incidents, Graph hunting); wins over the API root.",
        "url", msticpy_key="GraphRoot",
    ),
    SettingField(
        "mde_root", "Defender for Endpoint root override",
        "Host (https://...) for Defender for Endpoint API calls (machines, files, IPs, actions, indicators); "
        "wins over the API root.",
        "url", msticpy_key="MdeRoot",
    ),
    SettingField(
        "m365d_root", "Microsoft 365 Defender root override",
        "Host (https://...) for the legacy Microsoft 365 Defender hunting API; wins over the API root.",
        "url", msticpy_key="M365dRoot",
    ),
    SettingField(
        "ca_bundle", "CA bundle",
        "Path of a PEM file of CAs to trust for sign-in and API calls instead of the system's, e.g. behind a "
        "TLS-inspecting proxy. Certificate verification cannot be turned off.",
        "path", aliases=("verify",), msticpy_key="CaBundle",
    ),
    SettingField(
        "timeout", "Timeout (seconds)",
        "Time allowed for one HTTP call, in seconds (Defender runs a hunting query for up to 200 s).",
        "number", default=210.0, msticpy_key="Timeout",
    ),
    SettingField(
        "rate_limits", "Rate limits",
        "Calls this process allows per tenant, to stay within Microsoft's quotas.",
        "limits", text=False,
    ),
)

#: The fields of :class:`RateLimits`, described like :data:`SETTING_FIELDS`.
RATE_LIMIT_FIELDS: tuple[SettingField, ...] = (
    SettingField(
        "hunting_per_minute", "Hunting queries per minute",
        "Advanced hunting queries per minute (Microsoft's quota: 45).", "integer", default=45,
    ),
    SettingField(
        "hunting_per_hour", "Hunting queries per hour",
        "Advanced hunting queries per hour (Microsoft's quota: 1,500).", "integer", default=1500,
    ),
    SettingField(
        "api_per_minute", "API calls per minute",
        "Other API calls per minute and per resource (alerts, machines, actions; Microsoft's quota: 100).",
        "integer", default=100,
    ),
)

FIELDS_BY_NAME: dict[str, SettingField] = {f.name: f for f in SETTING_FIELDS}
#: Settings whose values are never shown.
SECRET_FIELDS: tuple[str, ...] = tuple(f.name for f in SETTING_FIELDS if f.secret)
#: The ways to authenticate: exactly one must be set.
CREDENTIAL_FIELDS: tuple[str, ...] = ("client_secret", "certificate", "credential")
#: Per-resource endpoint overrides, resource -> setting.
RESOURCE_ROOTS: dict[str, str] = {r: f"{r}_root" for r in clouds.RESOURCES}

MAX_TIMEOUT = 3600.0
_MAX_TEXT = 4096  # no setting is longer (a PEM with its key is ~3-5 KB; PEM text is exempt)
_MAX_PEM = 256 * 1024


def _norm(key: str) -> str:
    return key.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


_KEYS: dict[str, str] = {_norm(k): f.name for f in SETTING_FIELDS for k in f.keys}
# Delegated (user) sign-in in MSTICPy; refused with advice rather than silently signing in as the app.
_DELEGATED_KEYS = {"username", "delegatedauth"}
_DELEGATED_MESSAGE = (
    "{key} (delegated sign-in as a user, as in MSTICPy) is not supported: the connector signs in as an "
    "application. Use an app registration's client_secret or certificate, or pass an azure-identity credential, "
    "e.g. credential=azure.identity.AzureCliCredential() (your `az login`) or ManagedIdentityCredential()."
)
_KEY_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_ -]{0,39}")


def canonical_key(key: str) -> str | None:
    """The setting a user-facing key names (``TenantId``, ``tenant_id``, ``apiRoot``, ``ApiType``...), or None."""
    return _KEYS.get(_norm(key)) if isinstance(key, str) else None


def resolve_key(key: Any, where: str = "the settings", *, text: bool = False, quote: bool = True) -> str:
    """The setting ``key`` names, or a ConfigurationError that says what is accepted.

    ``text``: the key comes from text (a connection string, a file), where only settings that
    can be written as text are allowed. ``quote``: the key may be shown in the message (it is
    shown anyway only if it looks like a key: a tail of a mis-split secret must not be echoed).
    """
    if not isinstance(key, str):
        raise ConfigurationError(f"A key in {where} is not text; keys are setting names such as tenant_id.")
    shown = repr(key.strip()) if quote and _KEY_SHAPE.fullmatch(key.strip()) else "a key"
    if _norm(key) in _DELEGATED_KEYS:
        raise ConfigurationError(_DELEGATED_MESSAGE.format(key=shown if shown != "a key" else "UserName"))
    name = canonical_key(key)
    if name is None:
        hint = ""
        if shown != "a key":
            close = difflib.get_close_matches(_norm(key), list(_KEYS), n=1, cutoff=0.75)
            hint = f" Did you mean {_KEYS[close[0]]}?" if close else ""
        known = ", ".join(f.name for f in SETTING_FIELDS if f.text or not text)
        what = f"Unknown key {shown} in {where}." if shown != "a key" else f"A key in {where} is not a setting."
        raise ConfigurationError(f"{what}{hint} Known keys: {known}.")
    if text and not FIELDS_BY_NAME[name].text:
        raise ConfigurationError(
            f"{name} cannot be given in {where}: pass it as a keyword argument "
            + ("(an azure-identity credential object)." if name == "credential" else "(a mapping).")
        )
    return name


_GUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def is_guid(value: str) -> bool:
    """True for a GUID written the usual way, e.g. ``243bb6be-4136-4b64-9055-fb661594199a``."""
    return isinstance(value, str) and bool(_GUID.fullmatch(value.strip()))


_DOMAIN = re.compile(r"(?=.{4,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,62}")


def is_tenant_id(value: str) -> bool:
    """True for an Entra tenant ID: a GUID or a verified domain (``contoso.onmicrosoft.com``)."""
    return isinstance(value, str) and (is_guid(value) or bool(_DOMAIN.fullmatch(value.strip())))


def ca_bundle_problem(path: str | os.PathLike, *, quote: bool = True) -> str | None:
    """Why ``path`` cannot serve as a CA bundle right now (missing, unreadable, too long...), or None.

    For the transport: a CA file can disappear while a client lives. The message names the file
    when ``quote`` and the path looks like one (a path that settings accepted is not a secret);
    settings themselves pass ``quote=False``, as they never quote a value that did not validate.
    """
    try:
        text = os.fspath(path)
    except TypeError:
        return "ca_bundle must be the path of a PEM file of CA certificates"
    if not isinstance(text, str) or not text.strip():
        return "ca_bundle must be the path of a PEM file of CA certificates"
    shown = repr(text) if quote and _quotable_path(text) else "(the path given)"
    if len(text) > _MAX_TEXT:
        return f"ca_bundle is {len(text)} characters long: no file has such a path"
    try:
        p = Path(text).expanduser()
        if not p.is_file():
            return f"ca_bundle: the file {shown} does not exist or is not a file"
        with p.open("rb") as handle:
            handle.read(1)
    except (OSError, ValueError, RuntimeError) as exc:
        # ValueError: an embedded NUL; RuntimeError: ~user that does not exist.
        return f"ca_bundle: the file {shown} cannot be read ({type(exc).__name__})"
    return None


def _quotable_path(text: str) -> bool:
    # A path is shown only if it looks like one: a secret that slid into ca_bundle from a
    # mis-split connection string would contain ',', '=', ';', quotes or spaces.
    return len(text) <= 300 and bool(re.fullmatch(r"[\w./\\:~+@()-]+", text))


@dataclass(frozen=True)
class RateLimits:
    """Calls allowed per tenant, by the documented quotas. Raise them only if Microsoft raised yours."""

    hunting_per_minute: int = 45
    hunting_per_hour: int = 1500
    api_per_minute: int = 100

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**9:
                raise ConfigurationError(f"rate_limits.{f.name} must be a positive whole number.")

    @classmethod
    def from_value(cls, value: Any) -> RateLimits:
        """A RateLimits from None (the defaults), a RateLimits or a mapping of its fields (names checked)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ConfigurationError(
                "rate_limits must be a mapping such as {'hunting_per_minute': 45, 'hunting_per_hour': 1500, "
                "'api_per_minute': 100} (or a RateLimits)."
            )
        names = [f.name for f in RATE_LIMIT_FIELDS]
        for key in value:
            if key not in names:
                shown = repr(key) if isinstance(key, str) and _KEY_SHAPE.fullmatch(key) else "a key"
                close = difflib.get_close_matches(key, names, n=1) if shown != "a key" else []
                hint = f" Did you mean {close[0]}?" if close else ""
                raise ConfigurationError(f"Unknown rate_limits key {shown}.{hint} Known keys: {', '.join(names)}.")
        return cls(**value)



@dataclass(frozen=True, init=False)
class TenantSettings:
    """How to reach one Defender tenant: identity, credential, hunting API, cloud and endpoint overrides.

    Exactly one credential: ``client_secret``; or ``certificate`` (PEM text or a path to a PEM/DER
    file; the private key in it or in ``private_key``, optionally encrypted with
    ``certificate_passphrase``); or ``credential``, any azure-identity ``TokenCredential``.
    ``hunting_api`` is ``graph`` (default), ``mde`` or ``m365d`` (aliases MDATP, M365D, XDR; the keys
    ``api`` and ``ApiType`` are accepted too). ``cloud`` is ``global``, ``gcc``, ``gcc-high`` or ``dod``.
    ``authority_host`` moves sign-in; ``api_root`` moves every resource at once, ``graph_root``,
    ``mde_root`` and ``m365d_root`` one resource each (they win over ``api_root``); none of them
    changes the token's audience. ``ca_bundle`` is a PEM file of CAs to trust instead of the
    system's (verification cannot be turned off). ``timeout`` is the time allowed for one HTTP
    call, in seconds. Every field is described in :data:`SETTING_FIELDS`.

    Other keys given as keyword arguments are matched like connection-string keys (``api``,
    ``ApiType``, ``TenantId``...); unknown keys and ``UserName`` are a :class:`ConfigurationError`.
    """

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    certificate_passphrase: str | None = field(default=None, repr=False)
    credential: Any = field(default=None, repr=False, compare=False)
    hunting_api: str = clouds.GRAPH
    cloud: str = "global"
    authority_host: str | None = None
    api_root: str | None = None
    graph_root: str | None = None
    mde_root: str | None = None
    m365d_root: str | None = None
    ca_bundle: str | None = None
    timeout: float = 210.0
    rate_limits: RateLimits = field(default_factory=RateLimits)
    name: str | None = None

    def __init__(
        self,
        tenant_id: str | None = None,
        client_id: str | None = None,
        *,
        client_secret: str | None = None,
        certificate: str | None = None,
        private_key: str | None = None,
        certificate_passphrase: str | None = None,
        credential: Any = None,
        hunting_api: str | None = None,
        cloud: str | None = None,
        authority_host: str | None = None,
        api_root: str | None = None,
        graph_root: str | None = None,
        mde_root: str | None = None,
        m365d_root: str | None = None,
        ca_bundle: str | os.PathLike | bool | None = None,
        timeout: float | str | None = None,
        rate_limits: RateLimits | dict | None = None,
        name: str | None = None,
        **aliases: Any,
    ) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "aliases", "__class__")}
        for key, value in aliases.items():
            canonical = resolve_key(key, "the settings")
            if value is None:
                continue
            if given.get(canonical) is not None:
                raise ConfigurationError(f"{canonical} is given twice (as {canonical} and as {key}); give it once.")
            given[canonical] = value
        object.__setattr__(self, "name", _name(given["name"]))
        where = self._where()
        for f in SETTING_FIELDS:  # tenant_id first: no later message may quote an unchecked value
            object.__setattr__(self, f.name, validate_value(f.name, given[f.name], where))
        self._check_credentials()

    def _check_credentials(self) -> None:
        where = self._where()
        given = [n for n in CREDENTIAL_FIELDS if getattr(self, n) is not None]
        if len(given) != 1:
            state = f"{' and '.join(given)} are set" if given else "no credential is given"
            raise ConfigurationError(
                f"Give exactly one of client_secret, certificate (PEM) or credential (an azure-identity "
                f"TokenCredential){where}: {state}."
            )
        for extra in ("private_key", "certificate_passphrase"):
            if getattr(self, extra) is not None and self.certificate is None:
                raise ConfigurationError(f"{extra} is set without a certificate{where}.")

    def _where(self) -> str:
        return f" for tenant {self.name!r}" if self.name else ""

    @property
    def api(self) -> str:
        """The hunting API (same as ``hunting_api``; MSTICPy's name for it)."""
        return self.hunting_api

    def endpoints_for(self, resource: str) -> clouds.Endpoints:
        """Sign-in host, token resource and root URL for one resource (``graph``, ``mde`` or ``m365d``).

        The root is the resource's own override, else ``api_root``, else the cloud's host. The
        token's resource is always the cloud's: an override moves traffic, never the audience.
        """
        if resource not in clouds.RESOURCES:
            raise ConfigurationError(f"Unknown resource; the resources are: {', '.join(clouds.RESOURCES)}.")
        root = getattr(self, RESOURCE_ROOTS[resource]) or self.api_root
        return clouds.endpoints(resource, self.cloud, authority_host=self.authority_host, api_root=root)

    @property
    def endpoints(self) -> clouds.Endpoints:
        """Endpoints of the hunting API's resource (``endpoints_for(hunting_api)``)."""
        return self.endpoints_for(self.hunting_api)

    @property
    def credential_kind(self) -> str:
        """``client_secret``, ``certificate`` or ``credential``: which credential is set (never its value)."""
        return next(n for n in CREDENTIAL_FIELDS if getattr(self, n) is not None)


# --- validation of one value each. Messages name the setting, never quote a value that failed. ---


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _separator_hint(value: str) -> str:
    # "tenant_id=abc, client_secret=...": pairs separated by ',' end up inside one value.
    for match in re.finditer(r"[,\s]\s*([A-Za-z][\w -]{0,39}?)\s*=", value):
        if canonical_key(match.group(1)) or _norm(match.group(1)) in _DELEGATED_KEYS:
            return " It seems to hold another key=value pair: separate pairs with ';', not ','."
    return ""


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not _is_text(value) or len(value) > 200:
        raise ConfigurationError("name (the tenant's label) must be text of at most 200 characters.")
    return value


def _tenant_id(name: str, value: Any, where: str) -> str:
    if value is None or (_is_text(value) and not value.strip()):
        raise ConfigurationError(
            f"Missing tenant_id{where}. Give the Entra tenant ID (a GUID or contoso.onmicrosoft.com) and the "
            "application (client) ID of the app registration."
        )
    if not _is_text(value):
        raise ConfigurationError(f"tenant_id{where} must be text: a GUID or a domain such as contoso.onmicrosoft.com.")
    if not is_tenant_id(value):
        raise ConfigurationError(
            f"tenant_id{where} is neither a GUID nor a domain such as contoso.onmicrosoft.com."
            + _separator_hint(value)
        )
    return value.strip()


def _client_id(name: str, value: Any, where: str) -> str:
    if value is None or (_is_text(value) and not value.strip()):
        raise ConfigurationError(
            f"Missing client_id{where}. Give the application (client) ID of the app registration (a GUID)."
        )
    if not _is_text(value) or not is_guid(value):
        raise ConfigurationError(
            f"client_id{where} must be the application (client) ID of the app registration: a GUID."
            + (_separator_hint(value) if _is_text(value) else "")
        )
    return value.strip()


def _secret(name: str, value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise ConfigurationError(f"{name}{where} is not UTF-8 text.") from None
    if not _is_text(value):
        raise ConfigurationError(f"{name}{where} must be text.")
    if not value.strip():
        return None  # an empty secret is no secret: "No credential" says so
    if len(value) > (_MAX_PEM if name in ("certificate", "private_key") else _MAX_TEXT):
        raise ConfigurationError(f"{name}{where} is too long ({len(value)} characters).")
    if name == "client_secret" and ("\n" in value.strip() or "-----BEGIN" in value):
        raise ConfigurationError(
            f"client_secret{where} looks like a PEM certificate or holds a line break: give a certificate as "
            "certificate=..."
        )
    return value


def _credential(name: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not callable(getattr(value, "get_token", None)):
        raise ConfigurationError(
            f"credential{where} must be an azure-identity TokenCredential object (with get_token), e.g. "
            "ManagedIdentityCredential(); for a client secret use client_secret."
        )
    return value


def _choice(name: str, value: Any, where: str) -> str:
    normalize = clouds.normalize_api if name == "hunting_api" else clouds.normalize_cloud
    try:
        return normalize(value)
    except ConfigurationError as exc:
        hint = _separator_hint(value) if _is_text(value) else ""
        raise ConfigurationError(f"{exc.message.rstrip('.')}{where}.{hint}") from None


def _url(name: str, value: Any, where: str) -> str | None:
    if value is None or (_is_text(value) and not value.strip()):
        return None
    problem = None
    if not _is_text(value):
        problem = "it is not text"
    elif len(value) > 2048:
        problem = "it is too long"
    elif any(c.isspace() or ord(c) < 32 for c in value.strip()):
        problem = "it holds spaces or control characters"
    else:
        try:
            parts = urlsplit(value.strip())
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None:
            problem = "it is not a URL"
        elif parts.scheme.lower() != "https":
            problem = "it does not start with https:// (Entra ID and MSAL require TLS)"
        elif not parts.hostname:
            problem = "it has no host name"
        elif parts.username is not None or parts.password is not None:
            problem = "it holds a user name or password"
        elif parts.query or parts.fragment:
            problem = "it holds a query or fragment"
        elif port == 0:
            problem = "its port is 0"
    if problem:
        hint = _separator_hint(value) if _is_text(value) else ""
        raise ConfigurationError(
            f"{name}{where} must be an https:// URL with a host name, e.g. https://proxy.contoso.com:8443; "
            f"{problem}.{hint}"
        )
    return value.strip().rstrip("/")


_FALSE = {"false", "0", "no", "off", "none"}
_TRUE = {"true", "1", "yes", "on"}


def _ca_bundle(name: str, value: Any, where: str) -> str | None:
    if value is None or value is True:
        return None
    if value is False or (_is_text(value) and value.strip().lower() in _FALSE):
        raise ConfigurationError(
            f"TLS certificate verification cannot be turned off{where} (verify/ca_bundle is false). To trust a "
            "private CA (a TLS-inspecting proxy, the emulator), give ca_bundle='<path of a PEM file of CAs>'."
        )
    if _is_text(value) and value.strip().lower() in _TRUE:
        return None
    path = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not _is_text(path):
        raise ConfigurationError(f"ca_bundle{where} must be the path of a PEM file of CA certificates.")
    problem = ca_bundle_problem(path.strip(), quote=False)
    if problem:
        raise ConfigurationError(f"{problem}{where}.")
    return path.strip()


def _timeout(name: str, value: Any, where: str) -> float:
    if value is None:
        return 210.0
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = float(value.strip() if _is_text(value) else value)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigurationError(
            f"timeout{where} must be a number of seconds greater than 0 and at most {MAX_TIMEOUT:g} "
            "(not infinite or NaN)."
        )
    return seconds


def _rate_limits(name: str, value: Any, where: str) -> RateLimits:
    return RateLimits.from_value(value)


_VALIDATORS = {
    "tenant_id": _tenant_id,
    "client_id": _client_id,
    **{n: _secret for n in SECRET_FIELDS},
    "credential": _credential,
    "hunting_api": _choice,
    "cloud": _choice,
    **{n: _url for n in ("authority_host", "api_root", *RESOURCE_ROOTS.values())},
    "ca_bundle": _ca_bundle,
    "timeout": _timeout,
    "rate_limits": _rate_limits,
}


def validate_value(name: str, value: Any, where: str = "") -> Any:
    """Check and normalise one setting's value exactly as :class:`TenantSettings` does.

    For places that hold settings before a whole ``TenantSettings`` can be built (a config file
    whose secret is still in Key Vault, a Prefect block field, a CLI option). ``None`` means "not
    given" and gives the default (or None); ``where`` is added to the message (" for tenant 'x'").
    Raises :class:`ConfigurationError` naming the setting and quoting nothing that failed.
    """
    try:
        validator = _VALIDATORS[name]
    except KeyError:
        raise ConfigurationError(f"Unknown setting {name!r}; the settings are listed in SETTING_FIELDS.") from None
    return validator(name, value, where)


# --- connection strings ---


def parse_connection_string(text: str) -> dict[str, str]:
    """Parse ``key='value'; key=value;`` into a dict of settings fields.

    Quotes (single or double) are optional; inside quotes ``;`` and ``=`` are literal. Whitespace
    around keys and values and a trailing ``;`` are ignored. Unknown or repeated keys are refused
    by name, and pairs separated by ``,`` are detected. Error messages never echo a value, nor a
    "key" that may be the tail of an unquoted value.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(
            "The connection string is empty. Expected: tenant_id='...'; client_id='...'; client_secret='...'"
        )
    if len(text) > 4 * _MAX_PEM:
        raise ConfigurationError(f"The connection string is too long ({len(text)} characters).")
    result: dict[str, str] = {}
    i, n = 0, len(text)
    previous: str | None = None  # the setting whose unquoted value came last: its tail may look like a key
    while i < n:
        while i < n and text[i] in " \t\r\n;":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        semi = text.find(";", i)
        after = f" after the value of {previous}" if previous else ""
        if eq < 0 or (0 <= semi < eq):
            raise ConfigurationError(
                f"Malformed connection string{after}: expected key=value pairs separated by ';', e.g. "
                "tenant_id='...'; client_id='...'; client_secret='...'. A value that holds ';' must be quoted."
            )
        key = text[i:eq].strip()
        field_name = resolve_key(key, "the connection string", text=True, quote=previous is None or not _secret_field(previous))
        if field_name in result:
            raise ConfigurationError(f"{field_name} appears twice in the connection string.")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "'\"":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end < 0:
                raise ConfigurationError(f"Malformed connection string: the value of {field_name} has no closing {quote}.")
            value = text[i + 1:end]
            i = end + 1
            while i < n and text[i] in " \t\r\n":
                i += 1
            if i < n and text[i] != ";":
                raise ConfigurationError(
                    f"Malformed connection string: unexpected text after the quoted value of {field_name}; "
                    "separate pairs with ';'."
                )
            previous = None
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
            if _separator_hint(value):
                raise ConfigurationError(
                    f"Malformed connection string: the value of {field_name} seems to hold another key=value pair. "
                    "Separate pairs with ';', not ','; quote a value that holds ',' and '='."
                )
            previous = field_name
        result[field_name] = value
    if not result:
        raise ConfigurationError("The connection string has no key=value pairs.")
    return result


def _secret_field(name: str) -> bool:
    return FIELDS_BY_NAME[name].secret


__all__ = [
    "SETTING_FIELDS",
    "RATE_LIMIT_FIELDS",
    "FIELDS_BY_NAME",
    "SECRET_FIELDS",
    "CREDENTIAL_FIELDS",
    "RESOURCE_ROOTS",
    "KINDS",
    "SettingField",
    "RateLimits",
    "TenantSettings",
    "canonical_key",
    "resolve_key",
    "parse_connection_string",
    "is_guid",
    "is_tenant_id",
    "ca_bundle_problem",
    "validate_value",
]
