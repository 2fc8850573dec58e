"""``defender-soar tenants``: import, list, add, test and remove ``DefenderTenant`` blocks.

Blocks live in the Prefect server named by ``PREFECT_API_URL`` (without it, Prefect starts a
temporary local server for the command). No command prints a secret.
"""

from __future__ import annotations

import inspect
import re
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

IDENTITY_AUTH = ("managed_identity", "workload_identity", "azure_cli")
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Update existing blocks and accept warnings without asking.")] = False,
    allow_custom_endpoints: Annotated[bool, typer.Option("--allow-custom-endpoints", help="Allow sign-in, API and Key Vault hosts that are not Microsoft's (a proxy, the emulator).")] = False,
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
            allow_custom_endpoints=allow_custom_endpoints,
        )
        apply_plan(plan, dry_run=True)
        changes = [f"{item.ref} exists and would be overwritten" for item in plan if item.status == "would update"]
        warnings = changes + [w for item in plan for w in item.warnings]
        if warnings and not dry_run and not overwrite:
            for warning in warnings:
                typer.echo(f"Warning: {warning}", err=True)
            _confirm("Save anyway?", "pass --overwrite")
        if not dry_run:
            apply_plan(plan)
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
    """List tenant blocks: tenant ID, effective API and cloud, credential source, custom endpoints; marks blocks that do not load."""
    with cli_errors():
        documents = _tenant_documents()
        if not documents:
            typer.echo(
                "No Defender tenants yet. Add one with 'defender-soar tenants add NAME --tenant-id ... --client-id ... "
                "--client-secret -', or import msticpyconfig.yaml with 'defender-soar tenants import'."
            )
            return
        rows = [_tenant_row(doc.name) for doc in sorted(documents, key=lambda d: d.name or "")]
    typer.echo(render_table(("NAME", "TENANT ID", "API", "CLOUD", "CREDENTIAL", "ENDPOINTS", "STATUS"), rows))
    if any(row[-1] != "ok" for row in rows):
        typer.echo("Run 'defender-soar tenants test NAME' on a broken block to see which field to fix.")


def _tenant_row(name: str) -> tuple[str, ...]:
    """One row of 'tenants list', from the block as it loads (defaults applied), or marked broken."""
    from urllib.parse import urlsplit

    from blocks import DefenderTenant
    from blocks.tenant import ENDPOINT_FIELDS
    from connector.errors import ConfigurationError

    try:
        tenant = DefenderTenant.load(name)
    except ValueError as exc:
        return (name, "", "", "", "", "", f"BROKEN: {_load_problem(exc)}")
    try:
        tenant.check_references()
    except ConfigurationError as exc:
        status = f"BROKEN: {exc.message.split(' ', 1)[0]} is a Key Vault block copy with a masked secret"
    else:
        status = "ok"
    custom = [urlsplit(getattr(tenant, f)).netloc for f in ENDPOINT_FIELDS if getattr(tenant, f)]
    endpoints = ("custom allowed: " if tenant.allow_custom_endpoints else "overridden: ") + ", ".join(
        dict.fromkeys(custom)) if custom else ("Microsoft's" + (" (custom allowed)" if tenant.allow_custom_endpoints else ""))
    return (name, tenant.tenant_id, tenant.hunting_api, tenant.cloud, tenant.secret_source, endpoints, status)


def _load_problem(exc: BaseException) -> str:
    """Which field of a saved block does not validate, and what is wrong (never the value)."""
    from pydantic import ValidationError

    from blocks._messages import validation_message

    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ValidationError):
        return validation_message(cause)
    return " ".join(str(exc).split())


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


def _setting_parameter(f) -> inspect.Parameter:
    """A CLI option for one plain setting of SETTING_FIELDS: ``--tenant-id``, ``--hunting-api`` (alias ``--api``)..."""
    names = [f"--{f.name.replace('_', '-')}"] + [
        f"--{a.replace('_', '-')}" for a in f.aliases if re.fullmatch(r"[a-z][a-z_]*", a) and "_" not in a
    ]
    kind = {"number": float, "integer": int}.get(f.kind, str)
    help_text = f.description + (f" One of: {', '.join(f.choices)}." if f.choices else "")
    option = typer.Option(*names, help=help_text, show_default=f.default is not None)
    annotation = Annotated[kind if f.required else kind | None, option]
    default = inspect.Parameter.empty if f.required else None
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _add_options(
    *,
    auth: Annotated[str | None, typer.Option(help="Sign-in method: client_secret, certificate (the app's, given below), or managed_identity, workload_identity, azure_cli (the worker's Azure identity; no secret).", rich_help_panel="Credential (exactly one)")] = None,
    client_secret: Annotated[str | None, typer.Option(help="Client secret value ('-' reads it from stdin, keeping it out of shell history).", rich_help_panel="Credential (exactly one)")] = None,
    client_secret_ref: Annotated[str | None, typer.Option(help="Client secret in Key Vault: https://<vault>.vault.azure.net/secrets/<name>[/<version>].", rich_help_panel="Credential (exactly one)")] = None,
    certificate: Annotated[Path | None, typer.Option(help="PEM (or DER) certificate file; its private key too unless --private-key. Stored in the block as PEM.", rich_help_panel="Credential (exactly one)")] = None,
    private_key: Annotated[Path | None, typer.Option(help="PEM private key file for --certificate.", rich_help_panel="Credential (exactly one)")] = None,
    certificate_ref: Annotated[str | None, typer.Option(help="PEM certificate + key in Key Vault: https://<vault>.vault.azure.net/secrets/<name>[/<version>].", rich_help_panel="Credential (exactly one)")] = None,
    certificate_passphrase: Annotated[str | None, typer.Option(help="Passphrase of an encrypted private key ('-' reads it from stdin).", rich_help_panel="Credential (exactly one)")] = None,
    allow_custom_endpoints: Annotated[bool, typer.Option("--allow-custom-endpoints", help="Allow sign-in, API and Key Vault hosts that are not Microsoft's (a proxy, the emulator). Shown by 'tenants list'.")] = False,
    hunting_per_minute: Annotated[int, typer.Option(min=1, help="Hunting queries per minute.", rich_help_panel="Rate limits")] = 45,
    hunting_per_hour: Annotated[int, typer.Option(min=1, help="Hunting queries per hour.", rich_help_panel="Rate limits")] = 1500,
    api_per_minute: Annotated[int, typer.Option(min=1, help="Other API calls per minute, per resource.", rich_help_panel="Rate limits")] = 100,
    kv_sp_tenant_id: KvSpTenant = None,
    kv_sp_client_id: KvSpClient = None,
    kv_sp_client_secret: KvSpSecret = None,
    kv_authority_host: KvAuthority = None,
    kv_ca_bundle: KvCa = None,
    kv_managed_identity_client_id: KvMi = None,
    kv_cache_ttl: KvTtl = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing block of that name.")] = False,
) -> None:
    """The options of 'tenants add' besides the plain settings (which come from SETTING_FIELDS)."""


def add_tenant(name: str, **options) -> None:
    """Create a tenant block from flags. A Key Vault reference is saved as its own block, <name>-client-secret or <name>-certificate."""
    from blocks import AzureKeyVaultSecret, DefenderTenant
    from blocks.tenant import PLAIN_SETTINGS, TenantRateLimits, certificate_pem

    o = options
    stdin_used: list[str] = []
    o["client_secret"] = read_secret_option(o["client_secret"], "--client-secret", stdin_used=stdin_used)
    o["certificate_passphrase"] = read_secret_option(o["certificate_passphrase"], "--certificate-passphrase", stdin_used=stdin_used)
    o["kv_sp_client_secret"] = read_secret_option(o["kv_sp_client_secret"], "--kv-sp-client-secret", stdin_used=stdin_used)
    given = [n for n in ("client_secret", "client_secret_ref", "certificate", "certificate_ref") if o[n]]
    flags = ", ".join("--" + n.replace("_", "-") for n in given)
    if o["auth"] in IDENTITY_AUTH:
        if given:
            raise typer.BadParameter(f"--auth {o['auth']} uses the worker's Azure identity: drop {flags}", param_hint="--auth")
    elif len(given) != 1:
        raise typer.BadParameter(
            "give exactly one of --client-secret, --client-secret-ref, --certificate or --certificate-ref, or "
            "--auth managed_identity / workload_identity / azure_cli" + (f" (got {flags})" if given else ""),
            param_hint="credential",
        )
    if o["private_key"] and not o["certificate"]:
        raise typer.BadParameter("--private-key goes with --certificate", param_hint="--private-key")

    with cli_errors():
        kv_auth = _keyvault_auth(
            o["kv_sp_tenant_id"], o["kv_sp_client_id"], o["kv_sp_client_secret"],
            o["kv_authority_host"] or o["authority_host"], o["kv_ca_bundle"] or o["ca_bundle"],
            o["kv_managed_identity_client_id"], o["kv_cache_ttl"],
        )
        if o["allow_custom_endpoints"]:
            kv_auth["allow_custom_endpoints"] = True
        values: dict = {k: o[k] for k in PLAIN_SETTINGS if o.get(k) is not None}
        kv_blocks: list[tuple[str, AzureKeyVaultSecret]] = []
        if o["client_secret"]:
            values["client_secret"] = o["client_secret"]
        elif o["certificate"]:
            values["certificate"] = certificate_pem(
                str(o["certificate"]), str(o["private_key"]) if o["private_key"] else None, tenant_id=o["tenant_id"]
            )
        elif given:
            field = "client_secret" if o["client_secret_ref"] else "certificate"
            ref = AzureKeyVaultSecret.from_secret_id(o["client_secret_ref"] or o["certificate_ref"], **kv_auth)
            kv_blocks.append((f"{name}-{field.replace('_', '-')}", ref))
            values[f"{field}_ref"] = ref
        tenant = DefenderTenant(
            auth=o["auth"], certificate_passphrase=o["certificate_passphrase"],
            allow_custom_endpoints=o["allow_custom_endpoints"],
            rate_limits=TenantRateLimits(
                hunting_per_minute=o["hunting_per_minute"], hunting_per_hour=o["hunting_per_hour"],
                api_per_minute=o["api_per_minute"],
            ),
            **values,
        )
        if not o["overwrite"]:
            for cls, block_name in [(DefenderTenant, name)] + [(AzureKeyVaultSecret, n) for n, _ in kv_blocks]:
                if _exists(cls, block_name):
                    raise ValueError(
                        f"Block {cls.get_block_type_slug()}/{block_name} already exists; pass --overwrite to replace it."
                    )
        for block_name, ref in kv_blocks:
            ref.save(block_name, overwrite=o["overwrite"])
            typer.echo(f"Saved {KEY_VAULT_SLUG}/{block_name}: {ref.secret_id}, read with {ref.auth_method}")
        tenant.save(name, overwrite=o["overwrite"])
    typer.echo(
        f"Saved {TENANT_SLUG}/{name}: tenant {tenant.tenant_id}, api {tenant.hunting_api}, cloud {tenant.cloud}, "
        f"{tenant.secret_source}" + (", custom endpoints allowed" if tenant.allow_custom_endpoints else "") + "."
    )
    typer.echo(f"Check it with: defender-soar tenants test {name}")


def _exists(cls, name: str) -> bool:
    """A block of that type and name is saved (whether or not it still loads)."""
    from blocks.msticpy_import import load_or_none

    try:
        return load_or_none(cls, name) is not None
    except ValueError:
        return True


def _add_signature() -> inspect.Signature:
    from blocks.tenant import PLAIN_SETTINGS
    from connector.settings import FIELDS_BY_NAME

    name = inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=NameArg)
    settings = [_setting_parameter(FIELDS_BY_NAME[n]) for n in PLAIN_SETTINGS]
    return inspect.Signature([name, *settings, *inspect.signature(_add_options, eval_str=True).parameters.values()])


# The plain settings' options are derived from SETTING_FIELDS (a new setting is a new option, with no edit here).
add_tenant.__signature__ = _add_signature()
app.command("add")(add_tenant)


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


def _confirm(question: str, how_to_skip: str) -> None:
    """Ask on the terminal; without one (or on 'no') stop with exit code 1 and say how to skip the question."""
    try:
        if typer.confirm(question, default=False, err=True):
            return
    except (typer.Abort, EOFError):  # no terminal (CI, a pipe): the answer is no
        typer.echo("", err=True)
    typer.echo(f"Nothing changed. To go ahead without this question, {how_to_skip}.", err=True)
    raise typer.Exit(EXIT_FAILED)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _load_tenant(name: str):
    from blocks import DefenderTenant
    from blocks.msticpy_import import load_or_none
    from connector.errors import ConfigurationError

    try:
        tenant = load_or_none(DefenderTenant, name)
    except ValueError as exc:
        raise ConfigurationError(
            f"Block {TENANT_SLUG}/{name} does not load: {_load_problem(exc)}. Fix that field on the block's page in "
            f"the Prefect UI, or replace the block with 'defender-soar tenants add {name} ... --overwrite'."
        ) from None
    if tenant is None:
        raise ConfigurationError(f"No {TENANT_SLUG} block named {name!r}; see 'defender-soar tenants list'.")
    return tenant


@app.command("remove")
def remove_tenant(
    name: NameArg,
    keep_key_vault_blocks: Annotated[
        bool, typer.Option("--keep-key-vault-blocks", help="Keep the <name>-client-secret / <name>-certificate Key Vault blocks.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a tenant block, and the Key Vault reference blocks created for it by 'add' or 'import'. Asks first unless --yes."""
    if not yes:
        _confirm(f"Delete {TENANT_SLUG}/{name}" + ("" if keep_key_vault_blocks else " and its Key Vault reference blocks")
                 + "?", "pass --yes")
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
