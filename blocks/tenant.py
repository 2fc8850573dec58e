"""``DefenderTenant``: one Prefect credentials block per Microsoft Defender tenant.

It holds the tenant and app IDs, exactly one credential (a client secret or a certificate, each
either stored in the block as a secret field or referenced in Azure Key Vault), the API and cloud,
endpoint overrides and rate limits. ``get_client()`` hands out a ready
:class:`connector.DefenderClient`.

The secret and its Key Vault reference are two fields with a validator, not one
``Union[AzureKeyVaultSecret, SecretStr]`` field: Prefect treats such a union as a secret and
saves the nested block as ``"********"`` (reference/prefect-notes.md, section 2).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from prefect.blocks.abstract import CredentialsBlock
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connector import DefenderClient, RateLimits, TenantSettings, clouds
from connector.certificates import pem_bundle
from connector.errors import ConfigurationError

from .keyvault import _LOGO, AzureKeyVaultSecret
from .naming import CheckedNameMixin

#: The four ways to give the credential; exactly one must be set.
SECRET_SOURCES = ("client_secret", "client_secret_ref", "certificate", "certificate_ref")


class TenantRateLimits(BaseModel):
    """Calls per tenant the in-process limiter allows (Microsoft's documented quotas by default)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    hunting_per_minute: int = Field(
        default=45, ge=1, description="Advanced hunting queries per minute (Microsoft's quota: 45).",
        title="Hunting queries per minute",
    )
    hunting_per_hour: int = Field(
        default=1500, ge=1, description="Advanced hunting queries per hour (Microsoft's quota: 1,500).",
        title="Hunting queries per hour",
    )
    api_per_minute: int = Field(
        default=100, ge=1, description="Other API calls per minute (alerts, machines, actions; Microsoft's quota: 100).",
        title="API calls per minute",
    )

    def to_connector(self) -> RateLimits:
        """The connector's :class:`connector.RateLimits`."""
        return RateLimits(self.hunting_per_minute, self.hunting_per_hour, self.api_per_minute)


class DefenderTenant(CheckedNameMixin, CredentialsBlock):
    """Credentials and settings to reach one Microsoft Defender tenant with an Entra ID app registration.

    Give exactly one credential: a client secret or a certificate (PEM holding the certificate and
    its private key), either stored here as a secret field or as a reference to an Azure Key Vault
    secret. Flows take the block's *name* and call ``DefenderTenant.load(name).get_client()``.

    Example:
        ```python
        from blocks import AzureKeyVaultSecret, DefenderTenant
        DefenderTenant(
            tenant_id="00000000-0000-0000-0000-000000000000",
            client_id="11111111-1111-1111-1111-111111111111",
            client_secret_ref=AzureKeyVaultSecret(vault_url="https://soc-vault.vault.azure.net", secret_name="contoso"),
        ).save("contoso")
        client = DefenderTenant.load("contoso").get_client()
        df = client.run_hunting_query("DeviceInfo | take 10")
        ```
    """

    # Validation errors must not echo the input: it holds the secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name: ClassVar[str] = "Defender Tenant"
    _block_type_slug: ClassVar[str] = "defender-tenant"
    _logo_url: ClassVar[str] = _LOGO
    _documentation_url: ClassVar[str] = "https://learn.microsoft.com/defender-xdr/api-create-app-web"
    _description: ClassVar[str] = (
        "One Microsoft Defender (XDR / Defender for Endpoint) tenant: Entra ID app registration, its client secret or "
        "certificate (stored here or in Azure Key Vault), API, cloud and rate limits. Flows refer to it by name."
    )

    tenant_id: str = Field(
        description="Entra ID tenant (directory) ID: a GUID or a domain such as contoso.onmicrosoft.com.",
        title="Tenant ID",
    )
    client_id: str = Field(
        description="Application (client) ID of the Entra app registration that has the Defender API permissions.",
        title="Client ID",
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description="The app's client secret value (not its secret ID). Set this, or one of the three other "
        "credential fields.",
        title="Client secret",
    )
    client_secret_ref: AzureKeyVaultSecret | None = Field(
        default=None,
        description="The app's client secret, kept in Azure Key Vault (instead of Client secret).",
        title="Client secret in Key Vault",
    )
    certificate: SecretStr | None = Field(
        default=None,
        description="PEM text holding the app's certificate and its private key (instead of a client secret).",
        title="Certificate (PEM)",
    )
    certificate_ref: AzureKeyVaultSecret | None = Field(
        default=None,
        description="The PEM certificate with its private key, kept as a Key Vault secret (a Key Vault "
        "certificate created with content type PEM exposes one under the same name).",
        title="Certificate in Key Vault",
    )
    certificate_passphrase: SecretStr | None = Field(
        default=None,
        description="Passphrase of the certificate's private key, if it is encrypted.",
        title="Certificate passphrase",
    )
    api: Literal["graph", "mde", "m365d"] = Field(
        default="graph",
        description="Hunting API: graph (Microsoft Graph runHuntingQuery, recommended), mde (legacy Defender for "
        "Endpoint API) or m365d (legacy Microsoft 365 Defender API). Aliases MDATP, M365D and XDR are accepted.",
        title="API",
    )
    cloud: Literal["global", "gcc", "gcc-high", "dod"] = Field(
        default="global",
        description="Microsoft cloud: global (commercial), gcc, gcc-high or dod.",
        title="Cloud",
    )
    authority_host: str | None = Field(
        default=None,
        description="Override the Entra ID sign-in host (https://...), for a proxy or a test emulator. Leave empty "
        "to use the cloud's.",
        title="Authority host override",
    )
    api_root: str | None = Field(
        default=None,
        description="Override the API host (https://...), for a proxy or a test emulator. The token is still "
        "requested for the cloud's API. Leave empty to use the cloud's.",
        title="API root override",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="Path (on the worker) to a PEM file of CAs to trust for sign-in and API calls, e.g. behind a "
        "TLS-inspecting proxy. Leave empty to use the system's.",
        title="CA bundle",
    )
    timeout: float = Field(
        default=210.0,
        gt=0,
        description="Read timeout of one HTTP call, in seconds (Defender runs a hunting query for up to 200 s).",
        title="Timeout (seconds)",
    )
    rate_limits: TenantRateLimits = Field(
        default_factory=TenantRateLimits,
        description="Calls this process allows per tenant, to stay within Microsoft's quotas.",
        title="Rate limits",
    )

    @field_validator("api", mode="before")
    @classmethod
    def _normalize_api(cls, value: Any) -> Any:
        try:
            return clouds.normalize_api(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @field_validator("cloud", mode="before")
    @classmethod
    def _normalize_cloud(cls, value: Any) -> Any:
        try:
            return clouds.normalize_cloud(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("authority_host", "api_root")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith("https://"):
            raise ValueError(f"must be an https:// URL (Entra ID and MSAL require TLS), not {value!r}")
        return value.strip().rstrip("/")

    @field_validator("ca_bundle")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @model_validator(mode="after")
    def _exactly_one_credential(self) -> DefenderTenant:
        given = [name for name in SECRET_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            state = f"{' and '.join(given)} are {'both' if len(given) == 2 else 'all'} set" if given else "none is set"
            raise ValueError(
                f"give exactly one credential: client_secret, client_secret_ref (Key Vault), certificate (PEM) or "
                f"certificate_ref (Key Vault); {state}"
            )
        if self.certificate_passphrase is not None and given[0] not in ("certificate", "certificate_ref"):
            raise ValueError("certificate_passphrase is set but the credential is not a certificate")
        return self

    @property
    def secret_source(self) -> str:
        """Which credential the block uses and where it comes from, in words; never the value."""
        if self.client_secret is not None:
            return "client secret (stored in the block)"
        if self.certificate is not None:
            return "certificate (stored in the block)"
        ref, kind = (
            (self.client_secret_ref, "client secret")
            if self.client_secret_ref is not None
            else (self.certificate_ref, "certificate")
        )
        return f"{kind} in Key Vault ({ref.secret_id})"

    def get_settings(self) -> TenantSettings:
        """The connector's :class:`TenantSettings` for this tenant, with the credential resolved.

        A Key Vault reference is read here (or served from the in-memory cache).
        """
        credential: dict[str, str] = {}
        if self.client_secret is not None:
            credential["client_secret"] = self.client_secret.get_secret_value()
        elif self.client_secret_ref is not None:
            credential["client_secret"] = self.client_secret_ref.get()
        elif self.certificate is not None:
            credential["certificate"] = self.certificate.get_secret_value()
        else:
            credential["certificate"] = self.certificate_ref.get()
        if self.certificate_passphrase is not None:
            credential["certificate_passphrase"] = self.certificate_passphrase.get_secret_value()
        return TenantSettings(
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            api=self.api,
            cloud=self.cloud,
            authority_host=self.authority_host,
            api_root=self.api_root,
            ca_bundle=self.ca_bundle,
            timeout=self.timeout,
            rate_limits=self.rate_limits.to_connector(),
            name=self._block_document_name,
            **credential,
        )

    def get_client(self) -> DefenderClient:
        """A ready :class:`connector.DefenderClient` for this tenant (close it, or use it as a context manager)."""
        return DefenderClient(self.get_settings())


def certificate_pem(certificate: str, private_key: str | None = None, *, tenant_id: str = "(not given)") -> str:
    """One PEM text with the certificate and its private key, from PEM text or file paths (PEM or DER).

    For the ``certificate`` field: a worker on another machine then needs no files.
    """
    return pem_bundle(certificate, private_key, tenant_id=tenant_id)


__all__ = ["DefenderTenant", "TenantRateLimits", "SECRET_SOURCES", "certificate_pem"]
