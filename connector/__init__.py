"""defender-soar connector: Microsoft Defender (XDR / MDE) from Python, no Prefect needed.

    >>> from connector import connect
    >>> client = connect("tenant_id='...'; client_id='...'; client_secret='...'")
    >>> df = client.run_hunting_query("DeviceProcessEvents | take 10", timespan="P7D")
"""

from __future__ import annotations

import os

from .auth import clear_token_cache
from .client import DefenderClient
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    DefenderError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    RedirectRefusedError,
    ServiceError,
    ThrottledError,
)
from .msticpyconfig import read_config
from .settings import (
    CREDENTIAL_FIELDS,
    SETTING_FIELDS,
    RateLimits,
    TenantSettings,
    parse_connection_string,
    resolve_key,
)


def connect(
    connection_str: str | None = None,
    *,
    instance: str | None = None,
    config_path: str | os.PathLike | None = None,
    keyvault_credential=None,
    **kwargs,
) -> DefenderClient:
    """Connect to a Defender tenant the ways MSTICPy does, and return a :class:`DefenderClient`.

    - ``connect(tenant_id=..., client_id=..., client_secret=...)``: keyword arguments;
    - ``connect(tenant_id=..., client_id=..., credential=ManagedIdentityCredential())``: any
      azure-identity ``TokenCredential`` instead of a secret or certificate;
    - ``connect("tenant_id='...'; client_id='...'; client_secret='...'")``: a connection string;
    - ``connect(instance="Tenant2")``: ``MicrosoftDefender-Tenant2`` in msticpyconfig.yaml;
    - ``connect()``: the ``MicrosoftDefender`` section.

    Other keyword arguments are the settings of :data:`connector.settings.SETTING_FIELDS`:
    ``certificate``, ``private_key``, ``certificate_passphrase``, ``hunting_api`` (also ``api`` /
    ``ApiType``: "graph" default, "mde"/"mdatp", "m365d"), ``cloud`` ("global", "gcc", "gcc-high",
    "dod"), ``authority_host``, ``api_root``, ``graph_root``, ``mde_root``, ``m365d_root``,
    ``ca_bundle``, ``timeout``, ``rate_limits``. They override the connection string or the file; a
    credential passed in replaces the file's. ``keyvault_credential`` is the azure-identity
    credential used for ``{KeyVault: ...}`` secrets in the file (default: DefaultAzureCredential).
    """
    return DefenderClient(
        resolve_settings(
            connection_str, instance=instance, config_path=config_path, keyvault_credential=keyvault_credential, **kwargs
        )
    )


def resolve_settings(
    connection_str: str | None = None,
    *,
    instance: str | None = None,
    config_path: str | os.PathLike | None = None,
    keyvault_credential=None,
    **kwargs,
) -> TenantSettings:
    """The :class:`TenantSettings` that :func:`connect` would use (same arguments)."""
    overrides = {}
    for key, value in kwargs.items():
        name = "name" if key == "name" else resolve_key(key, "the arguments of connect()")
        if value is not None:
            if name in overrides:
                raise ConfigurationError(f"{name} is given twice in the arguments of connect(); give it once.")
            overrides[name] = value
    if connection_str is not None:
        values: dict = parse_connection_string(connection_str)
        missing = [f.name for f in SETTING_FIELDS if f.required and not (values.get(f.name) or overrides.get(f.name))]
        if missing:
            raise ConfigurationError(
                f"The connection string has no {' and no '.join(missing)}. Expected: tenant_id='...'; "
                "client_id='...'; client_secret='...'"
            )
    elif instance is None and config_path is None and _complete(overrides):
        values = {}
    else:
        section = read_config(config_path).instance(instance)
        values = section.resolve(keyvault_credential, ca_bundle=overrides.get("ca_bundle"))
    if any(overrides.get(f) for f in CREDENTIAL_FIELDS):
        for f in (*CREDENTIAL_FIELDS, "private_key", "certificate_passphrase"):
            values.pop(f, None)  # a credential passed in replaces the file's, it does not add to it
    values.update(overrides)
    return TenantSettings(**values)


def _complete(values: dict) -> bool:
    return bool(values.get("tenant_id") and values.get("client_id") and any(values.get(f) for f in CREDENTIAL_FIELDS))


__all__ = [
    "connect",
    "resolve_settings",
    "DefenderClient",
    "TenantSettings",
    "RateLimits",
    "DefenderError",
    "ConfigurationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "BadRequestError",
    "QueryError",
    "NotFoundError",
    "ConflictError",
    "RedirectRefusedError",
    "ThrottledError",
    "ServiceError",
    "clear_token_cache",
]
