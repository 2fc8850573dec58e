"""``DefenderTenant``: one Prefect credentials block per Microsoft Defender tenant.

It holds the tenant and app IDs, how the worker signs in (a client secret or a certificate, each
stored in the block as a secret field or kept in Azure Key Vault; or an azure-identity credential:
managed identity, workload identity, Azure CLI), the hunting API and cloud, endpoint overrides
and rate limits. ``get_client()`` hands out a ready :class:`connector.DefenderClient`.

The secret and its Key Vault reference are two fields with a validator, not one
``Union[AzureKeyVaultSecret, SecretStr]`` field: Prefect treats such a union as a secret and
saves the nested block as ``"********"`` (reference/prefect-notes.md, section 2).

The block loads whatever the Prefect UI forms send (``""``, ``{}``, ``null`` for a field left
empty; a PEM whose line breaks became spaces): see :mod:`blocks._ui`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit
from uuid import UUID

from prefect.blocks.abstract import CredentialsBlock
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from connector import DefenderClient, RateLimits, TenantSettings, clouds
from connector.certificates import certificate_and_key, pem_bundle
from connector.errors import ConfigurationError
from connector.settings import FIELDS_BY_NAME, RATE_LIMIT_FIELDS, SETTING_FIELDS, SettingField, validate_value

from ._relink import MASK, arelink, relink
from ._ui import PemError, collapse_optional, drop_empty, optional_field, own_title, repair_pem
from .keyvault import _LOGO, AzureKeyVaultSecret, known_login_hosts
from .naming import CheckedNameMixin

#: The four ways to give an app credential in the block; exactly one, unless ``auth`` names an identity.
SECRET_SOURCES = ("client_secret", "client_secret_ref", "certificate", "certificate_ref")

#: ``auth`` choices that sign in with an azure-identity credential on the worker (no secret in the block).
IDENTITY_AUTH = ("managed_identity", "workload_identity", "azure_cli")
AUTH_CHOICES = ("client_secret", "certificate", *IDENTITY_AUTH)
AuthChoice = Literal["client_secret", "certificate", "managed_identity", "workload_identity", "azure_cli"]

#: Endpoint override fields: each one sends the token (and sign-in: the secret) to another host.
ENDPOINT_FIELDS = ("authority_host", "api_root", "graph_root", "mde_root", "m365d_root")

#: Fields that a UI form may send as "", {}, null or all-empty values when the user left them alone.
_OPTIONAL_FIELDS = (
    "auth", *SECRET_SOURCES, "certificate_passphrase", *ENDPOINT_FIELDS, "ca_bundle",
)

_TITLES = {
    "client_secret": "Client secret", "client_secret_ref": "Client secret in Key Vault",
    "certificate": "Certificate (PEM)", "certificate_ref": "Certificate in Key Vault",
    "certificate_passphrase": "Certificate passphrase",
}


#: Settings the block holds as they are, derived from :data:`connector.settings.SETTING_FIELDS`: every
#: setting that can be given as text and is not a credential (the block has its own credential fields:
#: a secret field or a Key Vault reference each, and ``auth``).
PLAIN_SETTINGS = tuple(f.name for f in SETTING_FIELDS if f.text and f.kind not in ("secret", "credential"))


def _annotation(f: SettingField) -> Any:
    if f.kind == "choice":
        return Literal[f.choices]
    base = {"number": float, "integer": int}.get(f.kind, str)
    return base if f.required or f.default is not None else base | None


def _ui_description(f: SettingField) -> str:
    # A drop-down accepts only its choices: the sentence about aliases (for text input) would mislead.
    if f.kind == "choice":
        return " ".join(s for s in re.split(r"(?<=\.)\s+", f.description) if "alias" not in s.lower())
    return f.description


def _field_info(f: SettingField) -> Any:
    extra = _UI_NOTES.get(f.name, "")
    options: dict[str, Any] = {"title": f.title, "description": _ui_description(f) + extra}
    if f.kind in ("number", "integer"):
        options.update(gt=0, allow_inf_nan=False) if f.kind == "number" else options.update(ge=1)
    if f.required:
        return Field(**options)
    if f.default is None:
        return Field(default=None, json_schema_extra=collapse_optional, **options)
    return Field(default=f.default, **options)


def _declare(namespace: dict[str, Any], *names: str) -> None:
    """Add settings to a class body being built (its ``locals()``), typed and described from SETTING_FIELDS."""
    annotations = namespace.setdefault("__annotations__", {})
    for name in names:
        f = FIELDS_BY_NAME.get(name) or next(r for r in RATE_LIMIT_FIELDS if r.name == name)
        annotations[name] = _annotation(f)
        namespace[name] = _field_info(f)


_UI_NOTES = {
    "authority_host": " A host other than login.microsoftonline.com / .us needs 'Allow custom endpoints'.",
    "api_root": " A host other than Microsoft's needs 'Allow custom endpoints'.",
    "ca_bundle": " The file is read on the worker.",
}
#: The plain settings shown before, and after, the endpoint opt-in; any setting added later comes last.
_FIRST = ("tenant_id", "client_id")
_MIDDLE = ("hunting_api", "cloud", *ENDPOINT_FIELDS)
_LAST = tuple(n for n in PLAIN_SETTINGS if n not in _FIRST + _MIDDLE)


def known_api_hosts() -> tuple[str, ...]:
    """Every Microsoft host of every resource in every supported cloud (``https://...``)."""
    return tuple(sorted({clouds.resource_host(r, c) for r in clouds.RESOURCES for c in clouds.CLOUDS}))


class TenantRateLimits(BaseModel):
    """Calls per tenant the in-process limiter allows (Microsoft's documented quotas by default)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, title="Rate limits")

    _declare(locals(), *(f.name for f in RATE_LIMIT_FIELDS))

    def to_connector(self) -> RateLimits:
        """The connector's :class:`connector.RateLimits`."""
        return RateLimits(self.hunting_per_minute, self.hunting_per_hour, self.api_per_minute)


class DefenderTenant(CheckedNameMixin, CredentialsBlock):
    """Credentials and settings to reach one Microsoft Defender tenant with an Entra ID app registration.

    Give one app credential: a client secret or a certificate (PEM holding the certificate and its
    private key), stored here as a secret field or kept in Azure Key Vault through a saved
    ``AzureKeyVaultSecret`` block. Or set ``auth`` to sign in with the worker's managed identity,
    workload identity or Azure CLI login instead. Flows take the block's *name* and call
    ``DefenderTenant.load(name).get_client()``.

    Keep the secret in Key Vault, referenced by a named block (shown as a link on the tenant's page):

        from blocks import AzureKeyVaultSecret, DefenderTenant
        ref = AzureKeyVaultSecret(vault_url="https://soc-vault.vault.azure.net", secret_name="contoso")
        ref.save("contoso-client-secret")
        DefenderTenant(tenant_id="00000000-0000-0000-0000-000000000000",
                       client_id="11111111-1111-1111-1111-111111111111", client_secret_ref=ref).save("contoso")

    A reference that was never saved is saved by ``save()`` as ``<name>-client-secret`` (or
    ``<name>-certificate``) first, as ``defender-soar tenants add`` and ``import`` do.
    """

    # Validation errors must not echo the input: it holds the secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name: ClassVar[str] = "Defender Tenant"
    _block_type_slug: ClassVar[str] = "defender-tenant"
    _logo_url: ClassVar[str] = _LOGO
    _documentation_url: ClassVar[str] = "https://learn.microsoft.com/defender-xdr/api-create-app-web"
    # The V1 UI cuts the card's text at about 200 characters.
    _description: ClassVar[str] = (
        "One Microsoft Defender XDR / Defender for Endpoint tenant: its Entra ID app, how the worker signs in "
        "(secret or certificate, here or in Key Vault, or an Azure identity), API and rate limits."
    )
    # Shown on every block page under "Paste this snippet into your flows": both UIs show only what is inside
    # a ```python fence (nothing without one) and put the block's name in place of BLOCK_NAME.
    _code_example: ClassVar[str] = """\
```python
from blocks import DefenderTenant

with DefenderTenant.load("BLOCK_NAME").get_client() as client:
    df = client.run_hunting_query("DeviceInfo | take 10")
```
"""

    # Class-body namespace: the plain settings are declared from SETTING_FIELDS (title, description, type,
    # default), so a setting added there appears here, in the UI form and in the CLI without another edit.
    _declare(locals(), *_FIRST)

    auth: AuthChoice | None = optional_field(
        title="Sign-in method",
        description="Leave empty to use the credential filled in below. client_secret or certificate: the app's "
        "secret or certificate, below or in Key Vault. managed_identity, workload_identity, azure_cli: the "
        "worker's own Azure identity (azure-identity), no secret in this block.",
    )
    client_secret: SecretStr | None = optional_field(
        title="Client secret",
        description="The app's client secret value (not its secret ID). Fill in exactly one of the four credential "
        "fields. The V1 UI shows what you type here: prefer the V2 UI (/v2) or a Key Vault reference.",
    )
    client_secret_ref: AzureKeyVaultSecret | None = optional_field(
        title="Client secret in Key Vault",
        description="Choose (or add) an Azure Key Vault Secret block holding the app's client secret.",
    )
    certificate: SecretStr | None = optional_field(
        title="Certificate (PEM)",
        description="PEM text with the app's certificate (RSA) and its private key. Paste it whole: line breaks "
        "that become spaces in a one-line box are restored. The V1 UI shows what you paste: prefer the V2 UI (/v2) "
        "or a Key Vault reference.",
    )
    certificate_ref: AzureKeyVaultSecret | None = optional_field(
        title="Certificate in Key Vault",
        description="Choose (or add) an Azure Key Vault Secret block holding the PEM certificate with its private "
        "key (a Key Vault certificate created with content type PEM exposes one under the same name).",
    )
    certificate_passphrase: SecretStr | None = optional_field(
        title="Certificate passphrase",
        description="Passphrase of the certificate's private key, if it is encrypted.",
    )
    _declare(locals(), *_MIDDLE)
    allow_custom_endpoints: bool = Field(
        default=False,
        title="Allow custom endpoints (proxy, emulator)",
        description="Let the overrides above name hosts that are not Microsoft's (a proxy, 127.0.0.1). The "
        "credential and tokens are then sent there: turn on only where you trust everyone who can edit blocks.",
    )
    _declare(locals(), *_LAST)
    rate_limits: TenantRateLimits = Field(
        default_factory=TenantRateLimits,
        description="Calls this process allows per tenant, to stay within Microsoft's quotas.",
        title="Rate limits",
        # A $ref field's own title is dropped from the schema (V2 then prints "rate_limits"): set it back.
        json_schema_extra=lambda schema, *_: (schema.update(title="Rate limits"), own_title(schema)) and None,
    )

    @model_validator(mode="before")
    @classmethod
    def _form_input(cls, data: Any) -> Any:
        """Empty values from a UI form mean "not set"; ``api`` is the old name of ``hunting_api``."""
        if not isinstance(data, dict):
            return data
        data = drop_empty(data, _OPTIONAL_FIELDS)
        if "api" in data:
            api = data.pop("api")
            data.setdefault("hunting_api", api)
        return data

    @field_validator(*(n for n in PLAIN_SETTINGS if n != "ca_bundle"), mode="before")
    @classmethod
    def _setting(cls, value: Any, info: ValidationInfo) -> Any:
        # TenantSettings' own check of each value: the connector stays the one validator.
        try:
            return validate_value(info.field_name, value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @field_validator("ca_bundle")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("certificate")
    @classmethod
    def _repair_certificate(cls, value: SecretStr | None) -> SecretStr | None:
        # A PEM pasted into a one-line box: rebuild it. What cannot be rebuilt is kept as given, and
        # get_settings() names the field (so the block still loads and can be fixed in the UI).
        if value is None:
            return None
        try:
            return SecretStr(repair_pem(value.get_secret_value()))
        except PemError:
            return value

    @model_validator(mode="after")
    def _one_credential(self) -> DefenderTenant:
        given = [name for name in SECRET_SOURCES if getattr(self, name) is not None]
        if self.auth in IDENTITY_AUTH:
            if given or self.certificate_passphrase is not None:
                extra = given + (["certificate_passphrase"] if self.certificate_passphrase is not None else [])
                raise ValueError(
                    f"auth is {self.auth}, which signs in with the worker's Azure identity: clear "
                    f"{', '.join(extra)} (or set auth to client_secret / certificate)"
                )
            return self
        allowed = {
            None: SECRET_SOURCES,
            "client_secret": ("client_secret", "client_secret_ref"),
            "certificate": ("certificate", "certificate_ref"),
        }[self.auth]
        if len(given) != 1 or given[0] not in allowed:
            names = " or ".join(allowed)
            state = f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set" if given else "none is set"
            raise ValueError(
                f"give exactly one credential: {names}"
                + (f" (auth is {self.auth})" if self.auth else "")
                + f"; {state}. Or set auth to managed_identity, workload_identity or azure_cli"
            )
        if self.certificate_passphrase is not None and given[0] not in ("certificate", "certificate_ref"):
            raise ValueError("certificate_passphrase is set but the credential is not a certificate")
        return self

    @model_validator(mode="after")
    def _endpoints_allowed(self) -> DefenderTenant:
        if self.allow_custom_endpoints:
            return self
        logins, apis = known_login_hosts(), known_api_hosts()
        for name in ENDPOINT_FIELDS:
            value = getattr(self, name)
            known = logins if name == "authority_host" else apis
            if value is not None and _origin(value) not in known:
                raise ValueError(
                    f"{name} {_origin(value)} is not a Microsoft {'sign-in' if name == 'authority_host' else 'API'} "
                    f"host ({', '.join(urlsplit(h).hostname for h in known)}). To send sign-in and tokens to a proxy "
                    "or an emulator, also set allow_custom_endpoints (title: 'Allow custom endpoints')"
                )
        return self

    @property
    def api(self) -> str:
        """The hunting API (same as ``hunting_api``; the block's field was called ``api`` before)."""
        return self.hunting_api

    @property
    def credential_kind(self) -> str:
        """``client_secret``, ``certificate``, or the ``auth`` identity (``managed_identity``...)."""
        if self.auth in IDENTITY_AUTH:
            return self.auth
        return "client_secret" if self.client_secret is not None or self.client_secret_ref is not None else "certificate"

    @property
    def secret_source(self) -> str:
        """Which credential the block uses and where it comes from, in words; never the value."""
        if self.auth in IDENTITY_AUTH:
            return {"managed_identity": "managed identity", "workload_identity": "workload identity",
                    "azure_cli": "Azure CLI login"}[self.auth] + " of the worker"
        if self.client_secret is not None:
            return "client secret (stored in the block)"
        if self.certificate is not None:
            return "certificate (stored in the block)"
        ref, kind = (
            (self.client_secret_ref, "client secret")
            if self.client_secret_ref is not None
            else (self.certificate_ref, "certificate")
        )
        saved = f", block {ref._block_document_name}" if ref._block_document_name and not ref._is_anonymous else ""
        return f"{kind} in Key Vault ({ref.secret_id}{saved})"

    def check_references(self) -> None:
        """Raise :class:`ConfigurationError` if a Key Vault reference cannot sign in to its vault as saved.

        That is a copy of a Key Vault block whose service principal secret is Prefect's mask: what the V2 edit
        form leaves when the original block no longer matches (see :mod:`blocks._relink`). Makes no call.
        """
        for field in _REF_FIELDS:
            ref = getattr(self, field)
            if ref is not None:
                _check_not_masked(ref, field, self.tenant_id)

    def get_settings(self) -> TenantSettings:
        """The connector's :class:`TenantSettings` for this tenant, with the credential resolved.

        A Key Vault reference is read here (or served from the in-memory cache). A certificate that
        cannot be read raises :class:`ConfigurationError` naming the field.
        """
        credential: dict[str, Any] = {}
        if self.auth in IDENTITY_AUTH:
            credential["credential"] = self._identity_credential()
        elif self.client_secret is not None:
            credential["client_secret"] = self.client_secret.get_secret_value()
        elif self.client_secret_ref is not None:
            self.check_references()
            credential["client_secret"] = self.client_secret_ref.get()
        else:
            field = "certificate" if self.certificate is not None else "certificate_ref"
            if self.certificate is None:
                self.check_references()
            text = self.certificate.get_secret_value() if self.certificate is not None else self.certificate_ref.get()
            passphrase = self.certificate_passphrase.get_secret_value() if self.certificate_passphrase else None
            credential["certificate"] = readable_certificate(text, passphrase, field=field, tenant=self.tenant_id)
            if passphrase is not None:
                credential["certificate_passphrase"] = passphrase
        return TenantSettings(
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            hunting_api=self.hunting_api,
            cloud=self.cloud,
            authority_host=self.authority_host,
            api_root=self.api_root,
            graph_root=self.graph_root,
            mde_root=self.mde_root,
            m365d_root=self.m365d_root,
            ca_bundle=self.ca_bundle,
            timeout=self.timeout,
            rate_limits=self.rate_limits.to_connector(),
            name=self._block_document_name,
            **credential,
        )

    def get_client(self) -> DefenderClient:
        """A ready :class:`connector.DefenderClient` for this tenant (close it, or use it as a context manager)."""
        return DefenderClient(self.get_settings())

    def _identity_credential(self):
        """The azure-identity credential that ``auth`` names; it runs on the worker, lazily."""
        import azure.identity

        if self.auth == "managed_identity":
            return azure.identity.ManagedIdentityCredential(client_id=self.client_id)
        if self.auth == "workload_identity":
            options: dict[str, Any] = {}
            if self.authority_host:
                options["authority"] = self.authority_host
            if self.ca_bundle:
                options["connection_verify"] = self.ca_bundle
            try:
                return azure.identity.WorkloadIdentityCredential(
                    tenant_id=self.tenant_id, client_id=self.client_id, **options
                )
            except ValueError:  # no token file: azure-identity says only "Missing required arguments"
                raise ConfigurationError(
                    f"auth (Sign-in method) of tenant {self.tenant_id!r} is workload_identity, but this worker has "
                    "no federated token: AZURE_FEDERATED_TOKEN_FILE is not set (the Azure Workload Identity webhook sets "
                    "it in pods labelled azure.workload.identity/use: 'true')."
                ) from None
        return azure.identity.AzureCliCredential(tenant_id=self.tenant_id)

    @classmethod
    def _get_block_document(cls, name: str, client: Any) -> tuple[Any, str]:
        # Loading by name: a Key Vault link that the V2 edit form turned into a masked copy is restored.
        document, name = super()._get_block_document(name, client=client)
        relink(document, client, _REF_FIELDS, AzureKeyVaultSecret.get_block_type_slug(), _kv_secret_fields())
        return document, name

    @classmethod
    async def _aget_block_document(cls, name: str, client: Any) -> tuple[Any, str]:
        document, name = await super()._aget_block_document(name, client=client)
        await arelink(document, client, _REF_FIELDS, AzureKeyVaultSecret.get_block_type_slug(), _kv_secret_fields())
        return document, name

    def save(self, name: str | None = None, overwrite: bool = False, client: Any = None, **kwargs: Any) -> UUID:
        """Save as a block document; an unsaved Key Vault reference is saved first as ``<name>-client-secret``.

        A named reference shows on the tenant's page as a link to the vault and secret; an embedded
        one would show as "None" and be dropped by the V1 form's edit.
        """
        if name is not None:
            for field in ("client_secret_ref", "certificate_ref"):
                ref = getattr(self, field)
                if ref is not None and ref._block_document_id is None:
                    ref.save(
                        f"{name}-{field.removesuffix('_ref').replace('_', '-')}", overwrite=overwrite, client=client,
                        **kwargs,
                    )
        return super().save(name, overwrite=overwrite, client=client, **kwargs)

    async def asave(self, name: str | None = None, overwrite: bool = False, client: Any = None) -> UUID:
        """Async :meth:`save`."""
        if name is not None:
            for field in ("client_secret_ref", "certificate_ref"):
                ref = getattr(self, field)
                if ref is not None and ref._block_document_id is None:
                    await ref.asave(
                        f"{name}-{field.removesuffix('_ref').replace('_', '-')}", overwrite=overwrite, client=client
                    )
        return await super().asave(name, overwrite=overwrite, client=client)


_REF_FIELDS = ("client_secret_ref", "certificate_ref")


def _kv_secret_fields() -> tuple[str, ...]:
    return tuple(AzureKeyVaultSecret.model_json_schema()["secret_fields"])


def _check_not_masked(ref: AzureKeyVaultSecret, field: str, tenant: str) -> None:
    """A Key Vault block copy whose secret is Prefect's mask cannot sign in: say what happened and the fix."""
    if ref.sp_client_secret is not None and ref.sp_client_secret.get_secret_value() == MASK:
        raise ConfigurationError(
            f"{field} ({_TITLES[field]}) of tenant {tenant!r} is a copy of a Key Vault block whose service principal "
            "secret is Prefect's mask '********' (Prefect's V2 edit form replaces a link with such a copy). Choose "
            "the Key Vault block again in the tenant's form, or save the tenant again from Python."
        )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def readable_certificate(text: str, passphrase: str | None, *, field: str, tenant: str = "(not given)") -> str:
    """PEM certificate + key from ``text`` (repaired if pasted on one line), checked with cryptography.

    Raises :class:`ConfigurationError` naming ``field`` (and its title) with what to do; never the text.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    where = f"{field} ({_TITLES.get(field, field)})"
    try:
        pem = repair_pem(text)
    except PemError as exc:
        raise ConfigurationError(
            f"{where} of tenant {tenant!r} is not readable: {exc}. Paste the whole PEM file, BEGIN and END lines "
            "included, or use 'defender-soar tenants add --certificate FILE'."
        ) from None
    try:
        cert_pem, key_pem = certificate_and_key(pem, tenant_id=tenant)
        x509.load_pem_x509_certificate(cert_pem.encode())
        key = load_pem_private_key(key_pem.encode(), passphrase.encode() if passphrase else None)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc.message}") from None
    except TypeError as exc:  # cryptography: a passphrase missing, or given for a key that has none
        reason = (
            "the private key is encrypted: set certificate_passphrase (Certificate passphrase)"
            if "not given" in str(exc) else "certificate_passphrase is set but the private key is not encrypted: clear it"
        )
        raise ConfigurationError(f"{where} of tenant {tenant!r}: {reason}.") from None
    except ValueError:
        raise ConfigurationError(
            f"{where} of tenant {tenant!r}: the certificate or its private key could not be read (a wrong "
            "passphrase, or a damaged PEM). Paste the whole PEM file again."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        # Entra ID takes only RS256/PS256 client assertions: MSAL would fail later with a bare JWT error.
        raise ConfigurationError(
            f"{where} of tenant {tenant!r}: the private key is {type(key).__name__.removeprefix('_')}, but Entra ID "
            "accepts only RSA certificates. Create an RSA certificate (e.g. openssl req -x509 -newkey rsa:2048 ...)."
        )
    return pem


def certificate_pem(certificate: str, private_key: str | None = None, *, tenant_id: str = "(not given)") -> str:
    """One PEM text with the certificate and its private key, from PEM text or file paths (PEM or DER).

    For the ``certificate`` field: a worker on another machine then needs no files.
    """
    return pem_bundle(certificate, private_key, tenant_id=tenant_id)


__all__ = [
    "AUTH_CHOICES", "DefenderTenant", "ENDPOINT_FIELDS", "IDENTITY_AUTH", "SECRET_SOURCES", "TenantRateLimits",
    "certificate_pem", "known_api_hosts", "readable_certificate",
]
