"""Prefect blocks for defender-soar: one ``DefenderTenant`` per tenant, ``AzureKeyVaultSecret`` for its secret.

    >>> from blocks import DefenderTenant, AzureKeyVaultSecret
    >>> DefenderTenant(tenant_id="...", client_id="...",
    ...                client_secret_ref=AzureKeyVaultSecret(vault_url="https://v.vault.azure.net", secret_name="s")).save("contoso")
    >>> client = DefenderTenant.load("contoso").get_client()

Register the block types with a Prefect server (for the UI form): ``prefect block register -m blocks``.
"""

from __future__ import annotations

from .keyvault import AzureKeyVaultSecret
from .naming import check_block_name, suggest_block_name
from .protected import ProtectedDevices
from .tenant import DefenderTenant, TenantRateLimits

__all__ = ["DefenderTenant", "AzureKeyVaultSecret", "ProtectedDevices", "TenantRateLimits", "check_block_name",
           "suggest_block_name"]
