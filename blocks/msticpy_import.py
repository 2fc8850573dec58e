"""Turn MSTICPy's msticpyconfig.yaml into ``DefenderTenant`` (and ``AzureKeyVaultSecret``) blocks.

One tenant block per ``DataProviders.MicrosoftDefender[-Instance]`` section: ``MicrosoftDefender``
becomes ``default``, ``MicrosoftDefender-Tenant2`` becomes ``tenant2``. A secret given as a string
is stored in the block as a secret field; ``{EnvironmentVar: NAME}`` is read now and stored the
same way; ``{KeyVault: ...}`` becomes an ``AzureKeyVaultSecret`` block named
``<tenant>-client-secret`` (or ``<tenant>-certificate``) that the tenant references, so the value
stays in Key Vault. Certificate files are read and stored as PEM text.

:func:`plan_import` reads and validates everything first, so a bad section saves nothing;
:func:`apply_plan` then creates, updates or leaves each block and records which.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from prefect.blocks.core import Block
from pydantic import BaseModel, SecretStr, ValidationError

from connector.errors import ConfigurationError
from connector.msticpyconfig import DefenderInstance, EnvironmentSecret, KeyVaultSecret, read_config

from ._messages import validation_message
from .keyvault import AzureKeyVaultSecret
from .naming import suggest_block_name
from .tenant import PLAIN_SETTINGS, DefenderTenant, certificate_pem

#: A template value left in the file (MSTICPy's samples ship ``"[PLACEHOLDER]"``), not a secret.
_PLACEHOLDER = re.compile(r"^\s*(\[.*\]|<.*>|placeholder|changeme|xxx+)\s*$", re.I)


@dataclass
class PlannedBlock:
    """One block the import will save: its type slug, name, the block itself and what to tell the user."""

    slug: str
    name: str
    block: Block
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the user should confirm before saving
    status: str = ""  # created, updated, unchanged (or "would create"/"would update" in a dry run)

    @property
    def ref(self) -> str:
        """``<slug>/<name>``, as ``prefect block inspect`` takes it."""
        return f"{self.slug}/{self.name}"


def tenant_block_name(instance: str | None) -> str:
    """The block name for a msticpyconfig instance: ``default``, or the instance lower-cased and sanitised."""
    if instance is None:
        return "default"
    name = suggest_block_name(instance)
    if not name:
        raise ConfigurationError(
            f"Instance {instance!r} has no letters or digits to make a block name from; rename the section "
            "MicrosoftDefender-<name> with letters, digits and dashes."
        )
    return name


def plan_import(
    path: str | os.PathLike | None = None,
    *,
    authority_host: str | None = None,
    api_root: str | None = None,
    ca_bundle: str | None = None,
    keyvault_auth: dict[str, Any] | None = None,
    allow_custom_endpoints: bool = False,
) -> list[PlannedBlock]:
    """Read msticpyconfig.yaml and build (not save) the blocks, Key Vault blocks before the tenants that use them.

    ``authority_host``, ``api_root`` and ``ca_bundle`` override every instance's settings.
    ``keyvault_auth`` holds ``AzureKeyVaultSecret`` fields for the Key Vault blocks (how to
    authenticate: ``sp_tenant_id``... or ``managed_identity_client_id``, ``authority_host``,
    ``ca_bundle``, ``cache_ttl_seconds``); msticpyconfig does not say, so the default is
    DefaultAzureCredential. Environment variables named by ``EnvironmentVar`` are read now.
    ``allow_custom_endpoints`` is the blocks' opt-in for hosts that are not Microsoft's (a proxy,
    the emulator): without it such an override is refused.
    """
    config = read_config(path)
    if not config.instances:
        raise ConfigurationError(f"No MicrosoftDefender sections under DataProviders in {config.path}.")
    overrides = {"authority_host": authority_host, "api_root": api_root, "ca_bundle": ca_bundle}
    if allow_custom_endpoints:
        overrides["allow_custom_endpoints"] = True
        keyvault_auth = {**(keyvault_auth or {}), "allow_custom_endpoints": True}
    plan: list[PlannedBlock] = []
    names: dict[str, str] = {}
    for instance in config.instances.values():
        name = tenant_block_name(instance.instance)
        if name in names:
            raise ConfigurationError(
                f"Sections {names[name]} and {instance.section} in {config.path} would both become block {name!r}; "
                "rename one of them."
            )
        names[name] = instance.section
        plan.extend(_plan_instance(config.path, instance, name, overrides, keyvault_auth or {}))
    return plan


def _plan_instance(path, instance: DefenderInstance, name: str, overrides: dict, keyvault_auth: dict) -> list[PlannedBlock]:
    where = f"DataProviders.{instance.section} in {path}"
    values: dict[str, Any] = {k: v for k, v in instance.settings.items() if k in PLAIN_SETTINGS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    notes: list[str] = []
    warnings: list[str] = []
    if instance.instance is not None and name != instance.instance.lower():
        notes.append(f"instance {instance.instance!r} saved as block name {name!r} (Prefect names: lowercase, digits, dashes)")
    planned: list[PlannedBlock] = []
    for secret_field, secret in instance.secrets.items():
        if secret_field not in ("client_secret", "certificate", "certificate_passphrase"):
            raise ConfigurationError(f"{where}: {secret_field} cannot be a secret reference.")
        if isinstance(secret, KeyVaultSecret):
            if secret_field == "certificate_passphrase":
                raise ConfigurationError(
                    f"{where}: a certificate passphrase in Key Vault is not supported by the import; store the "
                    "PEM with an unencrypted key as a Key Vault secret (certificate), or give the passphrase as a "
                    "string or EnvironmentVar."
                )
            kv_name = f"{name}-{secret_field.replace('_', '-')}"
            kv = _build(
                AzureKeyVaultSecret,
                where,
                vault_url=secret.vault_url,
                secret_name=secret.secret_name,
                secret_version=secret.version,
                **keyvault_auth,
            )
            kv._block_document_name = kv_name  # the tenant refers to it by this name once saved
            planned.append(
                PlannedBlock(
                    AzureKeyVaultSecret.get_block_type_slug(), kv_name, kv,
                    [f"Key Vault secret {kv.secret_name!r} in {kv.vault_url}, read with {kv.auth_method}"],
                )
            )
            values[f"{secret_field}_ref"] = kv
            notes.append(f"{_words(secret_field)}: Key Vault reference {planned[-1].ref} (the value stays in Key Vault)")
        elif isinstance(secret, EnvironmentSecret):
            values[secret_field] = SecretStr(secret.resolve())
            notes.append(
                f"{_words(secret_field)}: read from environment variable {secret.variable} now and stored in the "
                "block as a secret field (re-run the import after rotating it)"
            )
        else:
            if not secret:
                raise ConfigurationError(f"{where}: {_words(secret_field)} is empty.")
            values[secret_field] = SecretStr(secret)
            notes.append(f"{_words(secret_field)}: stored in the block as a secret field")
            if _PLACEHOLDER.match(secret):
                warnings.append(f"{where}: {_words(secret_field)} looks like a template placeholder, not a real value")
    if instance.settings.get("certificate"):
        values["certificate"] = SecretStr(_certificate_pem(instance, where))
        notes.append("certificate: read from the file(s) named in the config and stored in the block as PEM")
    tenant = _build(DefenderTenant, where, **values)
    notes.insert(0, f"tenant {tenant.tenant_id}, app {tenant.client_id}, api {tenant.hunting_api}, cloud {tenant.cloud}")
    planned.append(PlannedBlock(DefenderTenant.get_block_type_slug(), name, tenant, notes, warnings))
    return planned


def _certificate_pem(instance: DefenderInstance, where: str) -> str:
    try:
        return certificate_pem(
            instance.settings["certificate"], instance.settings.get("private_key"),
            tenant_id=instance.settings.get("tenant_id") or "(not given)",
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc.message}") from None


def _build(cls: type[Block], where: str, **values) -> Any:
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigurationError(f"{where}: {validation_message(exc)}") from None


def _words(secret_field: str) -> str:
    return secret_field.replace("_", " ")


def apply_plan(plan: list[PlannedBlock], *, dry_run: bool = False) -> list[PlannedBlock]:
    """Save each planned block that is new or changed (``overwrite=True``); set ``status`` on each.

    In a dry run nothing is saved and the status says what would happen. Rate limits edited on an
    existing tenant block (in the UI, say) are kept: msticpyconfig has no such setting.
    """
    for item in plan:
        try:
            existing, broken = load_or_none(type(item.block), item.name), False
        except ValueError:  # saved, but it does not load (an old or hand-edited block): replace it
            existing, broken = None, True
        if existing is not None and isinstance(item.block, DefenderTenant):
            item.block.rate_limits = existing.rate_limits
        if broken:
            item.status = "would update" if dry_run else "updated"
        elif existing is None:
            item.status = "would create" if dry_run else "created"
        elif fingerprint(existing) == fingerprint(item.block):
            item.status = "unchanged"
            item.block._block_document_id = existing._block_document_id
        else:
            item.status = "would update" if dry_run else "updated"
        if not dry_run and item.status != "unchanged":
            item.block.save(item.name, overwrite=True)
    return plan


def load_or_none(cls: type[Block], name: str) -> Block | None:
    """``cls.load(name)``, or None if there is no such block."""
    from prefect.exceptions import ObjectNotFound

    try:
        return cls.load(name)
    except ValueError as exc:
        if isinstance(exc.__cause__, ObjectNotFound):
            return None
        raise


def fingerprint(value: Any, *, nested: bool = False) -> Any:
    """A comparable view of a block's data: secrets as hashes, nested blocks with the name they are saved under."""
    if isinstance(value, SecretStr):
        return ("secret", hashlib.sha256(value.get_secret_value().encode()).hexdigest())
    if isinstance(value, BaseModel):
        data = {name: fingerprint(getattr(value, name), nested=True) for name in type(value).model_fields}
        if isinstance(value, Block):
            data["__block__"] = (value.get_block_type_slug(), value._block_document_name if nested else None)
        return data
    return value


__all__ = ["PlannedBlock", "plan_import", "apply_plan", "tenant_block_name", "load_or_none", "fingerprint"]
