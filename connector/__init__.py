"""defender-soar connector: Microsoft Defender (XDR / MDE) from Python, no Prefect needed.

    >>> from connector import connect
    >>> client = connect("tenant_id='...'; client_id='...'; client_secret='...'")
    >>> df = client.run_hunting_query("DeviceProcessEvents | take 10", timespan="P7D")
"""

from __future__ import annotations

import os

from .client import DefenderClient
from .errors import (
    AuthenticationError,
    ConfigurationError,
    DefenderError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    ServiceError,
    ThrottledError,
)
from .msticpyconfig import read_config
from .settings import RateLimits, TenantSettings, canonical_key, parse_connection_string

_CREDENTIAL_FIELDS = ("client_secret", "certificate")


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
    - ``connect("tenant_id='...'; client_id='...'; client_secret='...'")``: a connection string;
    - ``connect(instance="Tenant2")``: ``MicrosoftDefender-Tenant2`` in msticpyconfig.yaml;
    - ``connect()``: the ``MicrosoftDefender`` section.

    Other keyword arguments: ``certificate``, ``private_key``, ``certificate_passphrase``,
    ``api`` ("graph" default, "mde"/"mdatp", "m365d"), ``cloud`` ("global", "gcc", "gcc-high",
    "dod"), ``authority_host``, ``api_root``, ``ca_bundle``, ``timeout``, ``rate_limits``. They
    override the connection string or the file. ``keyvault_credential`` is the azure-identity
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
        name = key if key in ("rate_limits", "name") else canonical_key(key)
        if name is None:
            raise ConfigurationError(f"Unknown setting {key!r} passed to connect().")
        if value is not None:
            overrides[name] = value
    if connection_str is not None:
        values = parse_connection_string(connection_str)
    elif instance is None and config_path is None and _complete(overrides):
        values = {}
    else:
        section = read_config(config_path).instance(instance)
        values = section.resolve(keyvault_credential, ca_bundle=overrides.get("ca_bundle"))
    if any(overrides.get(f) for f in _CREDENTIAL_FIELDS):
        for f in (*_CREDENTIAL_FIELDS, "private_key", "certificate_passphrase"):
            values.pop(f, None)  # a credential passed in replaces the file's, it does not add to it
    values.update(overrides)
    return TenantSettings(**values)


def _complete(values: dict) -> bool:
    return bool(values.get("tenant_id") and values.get("client_id") and any(values.get(f) for f in _CREDENTIAL_FIELDS))


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
    "QueryError",
    "NotFoundError",
    "ThrottledError",
    "ServiceError",
]
