"""``AzureKeyVaultSecret``: a Prefect block that points at a secret in Azure Key Vault.

The block stores where the secret is and how to authenticate, never the value. ``get()`` reads
the value through azure-keyvault-secrets (:func:`connector.keyvault.get_secret`) and keeps it in
this process's memory for ``cache_ttl_seconds``, so a flow that loads the tenant block for every
task does not call Key Vault every time.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

from prefect.blocks.abstract import SecretBlock
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from connector import clouds
from connector.errors import ConfigurationError
from connector.keyvault import get_secret

from ._ui import drop_empty, optional_field
from .naming import CheckedNameMixin

_LOGO = "https://cdn.sanity.io/images/3ugk85nk/production/54e3fa7e00197a4fbd1d82ed62494cb58d08c96a-250x250.png"
# Key Vault object names: 1-127 characters, letters, digits and dashes.
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
#: DNS suffixes of Azure Key Vault (and Managed HSM) in the public, US Government and China clouds.
KEY_VAULT_DOMAINS = (
    ".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn",
    ".managedhsm.azure.net", ".managedhsm.usgovcloudapi.net", ".managedhsm.azure.cn",
)
_OPTIONAL_FIELDS = (
    "secret_version", "managed_identity_client_id", "sp_tenant_id", "sp_client_id", "sp_client_secret",
    "authority_host", "ca_bundle",
)


def known_login_hosts() -> tuple[str, ...]:
    """The Entra ID sign-in hosts of the supported clouds (``https://...``)."""
    return tuple(sorted({clouds.login_host(c) for c in clouds.CLOUDS}))


class AzureKeyVaultSecret(CheckedNameMixin, SecretBlock):
    """A secret kept in Azure Key Vault, read with azure-identity when a flow needs it.

    Authentication, in order: a service principal (``sp_tenant_id``, ``sp_client_id``,
    ``sp_client_secret``); a user-assigned managed identity (``managed_identity_client_id``);
    otherwise azure-identity's ``DefaultAzureCredential`` (environment variables, workload
    identity, the VM's managed identity, Azure CLI...). The identity needs the Key Vault
    ``get`` secret permission (or the *Key Vault Secrets User* role).

    Example:
        ```python
        from blocks import AzureKeyVaultSecret
        ref = AzureKeyVaultSecret(vault_url="https://soc-vault.vault.azure.net", secret_name="contoso-defender")
        value = ref.get()
        ```
    """

    # Validation errors must not echo the input: it may hold the service principal's secret. (No model
    # title: Prefect's UIs look the nested schema up by its class name, "#/definitions/AzureKeyVaultSecret".)
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name: ClassVar[str] = "Azure Key Vault Secret"
    _block_type_slug: ClassVar[str] = "azure-key-vault-secret"
    _logo_url: ClassVar[str] = _LOGO
    _documentation_url: ClassVar[str] = "https://learn.microsoft.com/azure/key-vault/secrets/about-secrets"
    _description: ClassVar[str] = (
        "A reference to a secret in Azure Key Vault (vault URL + secret name), read with azure-identity when "
        "needed and cached in memory. Stores how to authenticate, never the secret's value."
    )

    vault_url: str = Field(
        description="The vault's URL, e.g. https://soc-vault.vault.azure.net (shown as 'Vault URI' in the Azure portal).",
        title="Vault URL",
    )
    secret_name: str = Field(
        description="The secret's name in the vault (letters, digits and dashes).", title="Secret name"
    )
    secret_version: str | None = optional_field(
        description="A specific version of the secret. Leave empty to always read the current version.",
        title="Secret version",
    )
    managed_identity_client_id: str | None = optional_field(
        description="Client ID of a user-assigned managed identity to authenticate with. Leave empty (and the "
        "service principal fields too) to use DefaultAzureCredential.",
        title="Managed identity client ID",
    )
    sp_tenant_id: str | None = optional_field(
        description="Service principal authentication: the Entra tenant ID of the app that may read the vault.",
        title="Service principal tenant ID",
    )
    sp_client_id: str | None = optional_field(
        description="Service principal authentication: the application (client) ID.",
        title="Service principal client ID",
    )
    sp_client_secret: SecretStr | None = optional_field(
        description="Service principal authentication: the client secret's value.",
        title="Service principal client secret",
    )
    authority_host: str | None = optional_field(
        description="Entra ID sign-in host for the Key Vault credential, e.g. https://login.microsoftonline.us for "
        "US Government. Leave empty for the public cloud.",
        title="Authority host",
    )
    ca_bundle: str | None = optional_field(
        description="Path (on the worker) to a PEM file of CAs to trust for Key Vault and sign-in calls, for private "
        "endpoints behind a TLS-inspecting proxy. Leave empty to use the system's.",
        title="CA bundle",
    )
    allow_custom_endpoints: bool = Field(
        default=False,
        title="Allow custom endpoints (proxy, emulator)",
        description="Let Vault URL and Authority host name hosts that are not Azure's (a proxy, 127.0.0.1). The "
        "vault then chooses which token it is sent: turn on only where you trust everyone who can edit blocks.",
    )
    cache_ttl_seconds: int = Field(
        default=300,
        ge=0,
        description="How long the value is kept in this process's memory after a read, in seconds (0: read the "
        "vault every time). The value is never written to disk or to Prefect.",
        title="Cache TTL (seconds)",
    )

    @model_validator(mode="before")
    @classmethod
    def _form_input(cls, data: Any) -> Any:
        """Empty values from a UI form mean "not set"."""
        return drop_empty(data, _OPTIONAL_FIELDS)

    @field_validator("vault_url")
    @classmethod
    def _vault_url_is_https(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"vault_url must be an https:// URL such as https://my-vault.vault.azure.net, not {value!r}")
        return value

    @field_validator("secret_name")
    @classmethod
    def _secret_name_is_valid(cls, value: str) -> str:
        value = value.strip()
        if not _SECRET_NAME.match(value):
            raise ValueError(f"secret_name {value!r} is not a Key Vault secret name (1-127 letters, digits and dashes)")
        return value

    @field_validator("authority_host")
    @classmethod
    def _authority_is_https(cls, value: str | None) -> str | None:
        value = value.strip() if value else None
        if value and not value.startswith("https://"):
            raise ValueError(f"authority_host must be an https:// URL, not {value!r}")
        return value.rstrip("/") if value else None

    @field_validator("secret_version", "managed_identity_client_id", "sp_tenant_id", "sp_client_id", "ca_bundle")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> AzureKeyVaultSecret:
        sp = {"sp_tenant_id": self.sp_tenant_id, "sp_client_id": self.sp_client_id, "sp_client_secret": self.sp_client_secret}
        given = [k for k, v in sp.items() if v]
        if given and len(given) != len(sp):
            missing = ", ".join(k for k in sp if k not in given)
            raise ValueError(f"service principal authentication needs sp_tenant_id, sp_client_id and sp_client_secret; missing {missing}")
        if given and self.managed_identity_client_id:
            raise ValueError("set either the service principal fields or managed_identity_client_id, not both")
        if not self.allow_custom_endpoints:
            host = (urlsplit(self.vault_url).hostname or "").lower()
            if not host.endswith(KEY_VAULT_DOMAINS):
                raise ValueError(
                    f"vault_url host {host} is not an Azure Key Vault domain ({', '.join(KEY_VAULT_DOMAINS)}). For a "
                    "proxy or an emulator, also set allow_custom_endpoints (title: 'Allow custom endpoints')"
                )
            if self.authority_host and self.authority_host.lower() not in known_login_hosts():
                raise ValueError(
                    f"authority_host {self.authority_host} is not a Microsoft sign-in host "
                    f"({', '.join(known_login_hosts())}). For a proxy or an emulator, also set allow_custom_endpoints"
                )
        return self

    @classmethod
    def from_secret_id(cls, secret_id: str, **kwargs: Any) -> AzureKeyVaultSecret:
        """Build from a Key Vault secret identifier, ``https://<vault>.vault.azure.net/secrets/<name>[/<version>]``."""
        from azure.keyvault.secrets import KeyVaultSecretIdentifier

        try:
            ident = KeyVaultSecretIdentifier(secret_id.strip())
        except (ValueError, AttributeError):
            raise ConfigurationError(
                f"{secret_id!r} is not a Key Vault secret identifier; expected "
                "https://<vault>.vault.azure.net/secrets/<name>[/<version>]."
            ) from None
        return cls(vault_url=ident.vault_url, secret_name=ident.name, secret_version=ident.version, **kwargs)

    @property
    def secret_id(self) -> str:
        """The secret's identifier URL (vault, name and version if pinned); not a secret."""
        return f"{self.vault_url}/secrets/{self.secret_name}" + (f"/{self.secret_version}" if self.secret_version else "")

    @property
    def auth_method(self) -> str:
        """How this block authenticates to Key Vault, in words (no secret)."""
        if self.sp_client_id:
            return f"service principal {self.sp_client_id} (tenant {self.sp_tenant_id})"
        if self.managed_identity_client_id:
            return f"managed identity {self.managed_identity_client_id}"
        return "DefaultAzureCredential"

    def get(self) -> str:
        """The secret's value: from this process's cache if read less than ``cache_ttl_seconds`` ago."""
        key = self._cache_key()
        if self.cache_ttl_seconds > 0:
            cached = _cache.get(key)
            if cached is not None:
                return cached
        credential = self._credential()
        try:
            value = get_secret(
                self.vault_url, self.secret_name, self.secret_version, credential=credential, ca_bundle=self.ca_bundle,
                # Key Vault's challenge names the token's resource; only an opted-in custom vault may name another.
                verify_challenge_resource=not self.allow_custom_endpoints,
            )
        finally:
            close = getattr(credential, "close", None)
            if close is not None:
                close()
        if self.cache_ttl_seconds > 0:
            _cache.put(key, value, self.cache_ttl_seconds)
        return value

    def read_secret(self) -> bytes:
        """The secret's value as UTF-8 bytes (Prefect's ``SecretBlock`` interface); see :meth:`get`."""
        return self.get().encode("utf-8")

    def write_secret(self, secret_data: bytes) -> str:
        """Not supported: defender-soar only reads Key Vault. Set secrets with ``az keyvault secret set``."""
        raise NotImplementedError(
            "AzureKeyVaultSecret is read-only; set the secret with the Azure portal or "
            f"`az keyvault secret set --vault-name ... --name {self.secret_name}`."
        )

    @staticmethod
    def clear_cache() -> None:
        """Forget every cached Key Vault value in this process."""
        _cache.clear()

    def _credential(self):
        """The azure-identity credential this block describes."""
        options: dict[str, Any] = {}
        if self.ca_bundle:
            options["connection_verify"] = self.ca_bundle  # azure-core's transport: wins over REQUESTS_CA_BUNDLE
        if self.sp_client_id:
            from azure.identity import ClientSecretCredential

            if self.authority_host:
                # A custom host (sovereign cloud, proxy, emulator) must not trigger MSAL's instance
                # discovery call to login.microsoftonline.com.
                options.update(authority=self.authority_host, disable_instance_discovery=True)
            return ClientSecretCredential(
                self.sp_tenant_id, self.sp_client_id, self.sp_client_secret.get_secret_value(), **options
            )
        if self.authority_host:
            options["authority"] = self.authority_host
        if self.managed_identity_client_id:
            from azure.identity import ManagedIdentityCredential

            return ManagedIdentityCredential(client_id=self.managed_identity_client_id, **options)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(**options)

    def _cache_key(self) -> tuple:
        # The identity is part of the key: a block whose identity may not read the secret must not
        # get it from another block's cache entry.
        if self.sp_client_id:
            digest = hashlib.sha256(self.sp_client_secret.get_secret_value().encode()).hexdigest()
            identity = ("sp", self.authority_host, self.sp_tenant_id.lower(), self.sp_client_id.lower(), digest)
        elif self.managed_identity_client_id:
            identity = ("mi", self.managed_identity_client_id.lower())
        else:
            identity = ("default", self.authority_host)
        return (self.vault_url.lower(), self.secret_name.lower(), self.secret_version or "", identity)


class _ValueCache:
    """Key Vault values in memory with an expiry; per process, never persisted."""

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[float, SecretStr]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
            return entry[1].get_secret_value()

    def put(self, key: tuple, value: str, ttl: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, SecretStr(value))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _ValueCache()

__all__ = ["AzureKeyVaultSecret"]
