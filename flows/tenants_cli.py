"""``defender-soar tenants``: import, list, add, test and remove ``DefenderTenant`` blocks.

Blocks live in the Prefect server named by ``PREFECT_API_URL`` (without it, Prefect starts a
temporary local server for the command). No command prints a secret.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from .cli_support import EXIT_FAILED, cli_errors, error_line, read_secret_option, render_table

app = typer.Typer(
    name="tenants",
    help="Manage Defender tenant blocks (one per tenant): import from msticpyconfig.yaml, add, list, test, remove.",
    no_args_is_help=True,
    rich_markup_mode=None,  # help texts hold [optional] parts and <placeholders>, not markup
)

TENANT_SLUG = "defender-tenant"
KEY_VAULT_SLUG = "azure-key-vault-secret"
DEFAULT_TEST_QUERY = "DeviceProcessEvents | take 1"


def _block_name(value: str) -> str:
    """Typer callback: a bad block name is a usage error that says the rule and a fixed name."""
    from blocks.naming import NAME_RULE, suggest_block_name

    if value is not None and value != suggest_block_name(value):
        fix = suggest_block_name(value)
        raise typer.BadParameter(
            f"{value!r} is not a valid block name: use {NAME_RULE}." + (f" Try {fix!r}." if fix else "")
        )
    return value


NameArg = Annotated[str, typer.Argument(help="Block name: lowercase letters, digits and dashes.", callback=_block_name)]

# Key Vault authentication options, shared by `import` and `add`.
KvSpTenant = Annotated[str | None, typer.Option("--kv-sp-tenant-id", help="Key Vault via a service principal: its tenant ID.", rich_help_panel="Key Vault authentication")]
KvSpClient = Annotated[str | None, typer.Option("--kv-sp-client-id", help="Key Vault via a service principal: its client ID.", rich_help_panel="Key Vault authentication")]
KvSpSecret = Annotated[str | None, typer.Option("--kv-sp-client-secret", help="Key Vault via a service principal: its client secret ('-' reads it from stdin).", rich_help_panel="Key Vault authentication")]
KvAuthority = Annotated[str | None, typer.Option("--kv-authority-host", help="Sign-in host for the Key Vault credential (sovereign cloud, emulator; default: --authority-host).", rich_help_panel="Key Vault authentication")]
KvCa = Annotated[str | None, typer.Option("--kv-ca-bundle", help="PEM file of CAs to trust for Key Vault and its sign-in (default: --ca-bundle).", rich_help_panel="Key Vault authentication")]
KvMi = Annotated[str | None, typer.Option("--kv-managed-identity-client-id", help="Key Vault via this user-assigned managed identity.", rich_help_panel="Key Vault authentication")]
KvTtl = Annotated[int | None, typer.Option("--kv-cache-ttl", min=0, help="Seconds a Key Vault value stays cached in memory (default 300).", rich_help_panel="Key Vault authentication")]


def _keyvault_auth(
    sp_tenant_id, sp_client_id, sp_client_secret, authority_host, ca_bundle, managed_identity_client_id, cache_ttl
) -> dict:
    values = {
        "sp_tenant_id": sp_tenant_id,
        "sp_client_id": sp_client_id,
        "sp_client_secret": sp_client_secret,
        "authority_host": authority_host,
        "ca_bundle": ca_bundle,
        "managed_identity_client_id": managed_identity_client_id,
        "cache_ttl_seconds": cache_ttl,
    }
    return {k: v for k, v in values.items() if v is not None}


@app.command("import")
def import_config(
    path: Annotated[
        Path | None,
        typer.Argument(help="msticpyconfig.yaml (default: $MSTICPYCONFIG, else ./msticpyconfig.yaml).", show_default=False),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be created or updated; save nothing.")] = False,
    authority_host: Annotated[str | None, typer.Option(help="Override the sign-in host of every imported tenant (proxy, emulator).")] = None,
    api_root: Annotated[str | None, typer.Option(help="Override the API host of every imported tenant (proxy, emulator).")] = None,
    ca_bundle: Annotated[str | None, typer.Option(help="PEM file of CAs to trust, for every imported tenant.")] = None,
    kv_sp_tenant_id: KvSpTenant = None,
    kv_sp_client_id: KvSpClient = None,
    kv_sp_client_secret: KvSpSecret = None,
    kv_authority_host: KvAuthority = None,
    kv_ca_bundle: KvCa = None,
    kv_managed_identity_client_id: KvMi = None,
    kv_cache_ttl: KvTtl = None,
) -> None:
    """Create or update one tenant block per MicrosoftDefender[-Instance] section of msticpyconfig.yaml.

    MicrosoftDefender becomes block 'default', MicrosoftDefender-Tenant2 becomes 'tenant2'.
    KeyVault secrets become Azure Key Vault Secret blocks (the value stays in the vault);
    EnvironmentVar secrets are read now and stored in the block. Re-running updates in place.
    """
    from blocks.msticpy_import import apply_plan, plan_import

    kv_sp_client_secret = read_secret_option(kv_sp_client_secret, "--kv-sp-client-secret", stdin_used=[])
    with cli_errors():
        plan = plan_import(
            path,
            authority_host=authority_host,
            api_root=api_root,
            ca_bundle=ca_bundle,
            keyvault_auth=_keyvault_auth(
                kv_sp_tenant_id, kv_sp_client_id, kv_sp_client_secret, kv_authority_host or authority_host,
                kv_ca_bundle or ca_bundle, kv_managed_identity_client_id, kv_cache_ttl,
            ),
        )
        apply_plan(plan, dry_run=dry_run)
    tenants = sum(1 for item in plan if item.slug == TENANT_SLUG)
    typer.echo(("Dry run: nothing saved. " if dry_run else "") + f"{tenants} tenant(s) from {path or 'msticpyconfig.yaml'}:")
    for item in plan:
        typer.echo(f"  {item.status:<13} {item.ref}")
        for note in item.notes:
            typer.echo(f"                  {note}")
    if not dry_run:
        typer.echo("Check each with: defender-soar tenants test <name>")


@app.command("list")
def list_tenants() -> None:
    """List tenant blocks: name, tenant ID, API, cloud and where the secret comes from (never the secret)."""
    with cli_errors():
        documents = _tenant_documents()
    if not documents:
        typer.echo("No Defender tenant blocks. Create one with 'defender-soar tenants add' or 'tenants import'.")
        return
    rows = [
        (doc.name, doc.data.get("tenant_id"), doc.data.get("api"), doc.data.get("cloud"), _secret_source(doc.data))
        for doc in sorted(documents, key=lambda d: d.name or "")
    ]
    typer.echo(render_table(("NAME", "TENANT ID", "API", "CLOUD", "SECRET SOURCE"), rows))


def _tenant_documents() -> list:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return [
                d for d in client.read_block_documents_by_type(TENANT_SLUG, include_secrets=False) if not d.is_anonymous
            ]
        except ObjectNotFound:  # the block type was never registered: no tenants yet
            return []


def _secret_source(data: dict) -> str:
    """Where a stored tenant's credential comes from, from the block document (secrets obfuscated)."""
    for field, kind in (("client_secret", "client secret"), ("certificate", "certificate")):
        if data.get(field):
            return f"{kind} (in block)"
        ref = data.get(f"{field}_ref")
        if isinstance(ref, dict) and ref.get("vault_url"):
            version = f"/{ref['secret_version']}" if ref.get("secret_version") else ""
            return f"{kind} (Key Vault {ref['vault_url']}/secrets/{ref.get('secret_name')}{version})"
    return "none"


@app.command("add")
def add_tenant(
    name: NameArg,
    tenant_id: Annotated[str, typer.Option(help="Entra tenant ID (GUID or contoso.onmicrosoft.com).")],
    client_id: Annotated[str, typer.Option(help="Application (client) ID of the app registration.")],
    client_secret: Annotated[str | None, typer.Option(help="Client secret value ('-' reads it from stdin, keeping it out of shell history).", rich_help_panel="Credential (exactly one)")] = None,
    client_secret_ref: Annotated[str | None, typer.Option(help="Client secret in Key Vault: https://<vault>.vault.azure.net/secrets/<name>[/<version>].", rich_help_panel="Credential (exactly one)")] = None,
    certificate: Annotated[Path | None, typer.Option(help="PEM (or DER) certificate file; its private key too unless --private-key. Stored in the block as PEM.", rich_help_panel="Credential (exactly one)")] = None,
    private_key: Annotated[Path | None, typer.Option(help="PEM private key file for --certificate.", rich_help_panel="Credential (exactly one)")] = None,
    certificate_ref: Annotated[str | None, typer.Option(help="PEM certificate + key in Key Vault: https://<vault>.vault.azure.net/secrets/<name>[/<version>].", rich_help_panel="Credential (exactly one)")] = None,
    certificate_passphrase: Annotated[str | None, typer.Option(help="Passphrase of an encrypted private key ('-' reads it from stdin).", rich_help_panel="Credential (exactly one)")] = None,
    api: Annotated[str, typer.Option(help="graph (default), mde (alias MDATP) or m365d (alias XDR).")] = "graph",
    cloud: Annotated[str, typer.Option(help="global, gcc, gcc-high or dod.")] = "global",
    authority_host: Annotated[str | None, typer.Option(help="Override the sign-in host (https://...).")] = None,
    api_root: Annotated[str | None, typer.Option(help="Override the API host (https://...).")] = None,
    ca_bundle: Annotated[str | None, typer.Option(help="PEM file of CAs to trust (path on the worker).")] = None,
    timeout: Annotated[float, typer.Option(help="Read timeout of one HTTP call, seconds.")] = 210.0,
    hunting_per_minute: Annotated[int, typer.Option(min=1, help="Hunting queries per minute.", rich_help_panel="Rate limits")] = 45,
    hunting_per_hour: Annotated[int, typer.Option(min=1, help="Hunting queries per hour.", rich_help_panel="Rate limits")] = 1500,
    api_per_minute: Annotated[int, typer.Option(min=1, help="Other API calls per minute.", rich_help_panel="Rate limits")] = 100,
    kv_sp_tenant_id: KvSpTenant = None,
    kv_sp_client_id: KvSpClient = None,
    kv_sp_client_secret: KvSpSecret = None,
    kv_authority_host: KvAuthority = None,
    kv_ca_bundle: KvCa = None,
    kv_managed_identity_client_id: KvMi = None,
    kv_cache_ttl: KvTtl = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing block of that name.")] = False,
) -> None:
    """Create a tenant block from flags. A Key Vault reference is saved as its own block, <name>-client-secret or <name>-certificate."""
    stdin_used: list[str] = []
    client_secret = read_secret_option(client_secret, "--client-secret", stdin_used=stdin_used)
    certificate_passphrase = read_secret_option(certificate_passphrase, "--certificate-passphrase", stdin_used=stdin_used)
    kv_sp_client_secret = read_secret_option(kv_sp_client_secret, "--kv-sp-client-secret", stdin_used=stdin_used)
    given = [n for n, v in (("--client-secret", client_secret), ("--client-secret-ref", client_secret_ref),
                            ("--certificate", certificate), ("--certificate-ref", certificate_ref)) if v]
    if len(given) != 1:
        raise typer.BadParameter(
            "give exactly one of --client-secret, --client-secret-ref, --certificate or --certificate-ref"
            + (f" (got {', '.join(given)})" if given else ""),
            param_hint="credential",
        )
    if private_key and not certificate:
        raise typer.BadParameter("--private-key goes with --certificate", param_hint="--private-key")

    from blocks import AzureKeyVaultSecret, DefenderTenant
    from blocks.msticpy_import import load_or_none
    from blocks.tenant import TenantRateLimits, certificate_pem

    with cli_errors():
        kv_auth = _keyvault_auth(
            kv_sp_tenant_id, kv_sp_client_id, kv_sp_client_secret, kv_authority_host or authority_host,
            kv_ca_bundle or ca_bundle,
            kv_managed_identity_client_id, kv_cache_ttl,
        )
        values: dict = {}
        kv_blocks: list[tuple[str, AzureKeyVaultSecret]] = []
        if client_secret:
            values["client_secret"] = client_secret
        elif certificate:
            values["certificate"] = certificate_pem(str(certificate), str(private_key) if private_key else None, tenant_id=tenant_id)
        else:
            field = "client_secret" if client_secret_ref else "certificate"
            ref = AzureKeyVaultSecret.from_secret_id(client_secret_ref or certificate_ref, **kv_auth)
            kv_blocks.append((f"{name}-{field.replace('_', '-')}", ref))
            values[f"{field}_ref"] = ref
        tenant = DefenderTenant(
            tenant_id=tenant_id, client_id=client_id, certificate_passphrase=certificate_passphrase, api=api,
            cloud=cloud, authority_host=authority_host, api_root=api_root, ca_bundle=ca_bundle, timeout=timeout,
            rate_limits=TenantRateLimits(
                hunting_per_minute=hunting_per_minute, hunting_per_hour=hunting_per_hour, api_per_minute=api_per_minute
            ),
            **values,
        )
        if not overwrite:
            for cls, block_name in [(DefenderTenant, name)] + [(AzureKeyVaultSecret, n) for n, _ in kv_blocks]:
                if load_or_none(cls, block_name) is not None:
                    raise ValueError(
                        f"Block {cls.get_block_type_slug()}/{block_name} already exists; pass --overwrite to replace it."
                    )
        for block_name, ref in kv_blocks:
            ref.save(block_name, overwrite=overwrite)
            typer.echo(f"Saved {KEY_VAULT_SLUG}/{block_name}: {ref.secret_id}, read with {ref.auth_method}")
        tenant.save(name, overwrite=overwrite)
    typer.echo(
        f"Saved {TENANT_SLUG}/{name}: tenant {tenant.tenant_id}, api {tenant.api}, cloud {tenant.cloud}, "
        f"{tenant.secret_source}."
    )
    typer.echo(f"Check it with: defender-soar tenants test {name}")


@app.command("test")
def test_tenant(
    name: NameArg,
    query: Annotated[str, typer.Option(help="The one-row hunting query to run.")] = DEFAULT_TEST_QUERY,
) -> None:
    """Sign in with a tenant block and run a one-row hunting query; print the API, endpoint and latency.

    Exits 1 with 'FAILED: <ErrorClass>: <message>' if anything fails.
    """
    typer.echo(f"Testing {TENANT_SLUG}/{name}")
    step = "load the block"
    try:
        tenant = _load_tenant(name)
        typer.echo(f"  tenant:    {tenant.tenant_id} (app {tenant.client_id}, cloud {tenant.cloud})")
        typer.echo(f"  secret:    {tenant.secret_source}")
        step = "read the credential"
        started = time.perf_counter()
        settings = tenant.get_settings()
        if tenant.client_secret_ref is not None or tenant.certificate_ref is not None:
            typer.echo(f"  key vault: ok ({_ms(started)} ms)")
        endpoints = settings.endpoints
        typer.echo(f"  API:       {settings.api}")
        typer.echo(f"  endpoint:  {urlsplit(endpoints.api_root).netloc} (sign-in {urlsplit(endpoints.authority_host).netloc})")
        from connector import DefenderClient

        with DefenderClient(settings) as client:
            step = "get a token"
            started = time.perf_counter()
            client.get_token()
            typer.echo(f"  token:     ok ({_ms(started)} ms)")
            step = "run the hunting query"
            started = time.perf_counter()
            frame = client.run_hunting_query(query)
            typer.echo(f"  query:     {query!r}: {len(frame)} row(s) in {_ms(started)} ms")
    except Exception as exc:  # report every failure the same way, as one line
        typer.echo(f"FAILED: {error_line(exc)}")
        typer.echo(f"  (while trying to {step})", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"OK: {TENANT_SLUG}/{name} works with the {settings.api} API.")


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _load_tenant(name: str):
    from blocks import DefenderTenant
    from blocks.msticpy_import import load_or_none
    from connector.errors import ConfigurationError

    tenant = load_or_none(DefenderTenant, name)
    if tenant is None:
        raise ConfigurationError(f"No {TENANT_SLUG} block named {name!r}; see 'defender-soar tenants list'.")
    return tenant


@app.command("remove")
def remove_tenant(
    name: NameArg,
    keep_key_vault_blocks: Annotated[
        bool, typer.Option("--keep-key-vault-blocks", help="Keep the <name>-client-secret / <name>-certificate Key Vault blocks.")
    ] = False,
) -> None:
    """Delete a tenant block, and the Key Vault reference blocks created for it by 'add' or 'import'."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from connector.errors import ConfigurationError

    removed = []
    with cli_errors(), get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, block_type_slug=TENANT_SLUG, include_secrets=False)
        except ObjectNotFound:
            raise ConfigurationError(f"No {TENANT_SLUG} block named {name!r}; see 'defender-soar tenants list'.") from None
        references = [
            ref.get("block_document", {}).get("name")
            for ref in (document.block_document_references or {}).values()
        ]
        client.delete_block_document(document.id)
        removed.append(f"{TENANT_SLUG}/{name}")
        if not keep_key_vault_blocks:
            for ref_name in references:
                if ref_name in (f"{name}-client-secret", f"{name}-certificate"):
                    ref_doc = client.read_block_document_by_name(ref_name, block_type_slug=KEY_VAULT_SLUG, include_secrets=False)
                    client.delete_block_document(ref_doc.id)
                    removed.append(f"{KEY_VAULT_SLUG}/{ref_name}")
    for ref in removed:
        typer.echo(f"Removed {ref}")
