"""Blocks without a server: validation, names, settings handed to the connector, no secret in reprs or errors."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr, ValidationError

from blocks import AzureKeyVaultSecret, DefenderTenant, TenantRateLimits, check_block_name, suggest_block_name
from blocks.msticpy_import import fingerprint
from connector import ConfigurationError, RateLimits, ServiceError

from .certs import certificate_pem
from .conftest import CANARY
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

TID, CID = "243bb6be-4136-4b64-9055-fb661594199a", "a5b24e23-a96a-4472-b729-9e5310c83e20"
VAULT = "https://soc-vault.vault.azure.net"


def kv(**kwargs) -> AzureKeyVaultSecret:
    values = dict(vault_url=VAULT, secret_name="contoso-defender", sp_tenant_id=TID, sp_client_id=CID, sp_client_secret=CANARY)
    values.update(kwargs)
    return AzureKeyVaultSecret(**values)


SOURCES = {
    "client_secret": lambda: {"client_secret": CANARY},
    "client_secret_ref": lambda: {"client_secret_ref": kv()},
    "certificate": lambda: {"certificate": CANARY, "certificate_passphrase": CANARY},
    "certificate_ref": lambda: {"certificate_ref": kv(secret_name="contoso-cert")},
}


@pytest.mark.parametrize("source", SOURCES)
def test_each_secret_source_alone_is_valid_and_never_shown(source):
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, **SOURCES[source]())
    for text in (repr(tenant), str(tenant), tenant.model_dump_json(), str(tenant.model_dump()), tenant.secret_source):
        assert CANARY not in text
    assert source.split("_")[0] in tenant.secret_source.replace(" ", "_")


@pytest.mark.parametrize(
    "fields",
    [(), ("client_secret", "client_secret_ref"), ("client_secret", "certificate"), ("certificate", "certificate_ref"),
     ("client_secret", "client_secret_ref", "certificate", "certificate_ref")],
)
def test_exactly_one_credential_is_required_and_the_error_hides_the_values(fields):
    values = {}
    for name in fields:
        values.update({k: v for k, v in SOURCES[name]().items() if k == name})
    with pytest.raises(ValidationError) as info:
        DefenderTenant(tenant_id=TID, client_id=CID, **values)
    assert "exactly one credential" in str(info.value)
    assert CANARY not in str(info.value) and CANARY not in repr(info.value)


def test_passphrase_only_with_a_certificate():
    with pytest.raises(ValidationError, match="certificate_passphrase"):
        DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY, certificate_passphrase=CANARY)


def test_bad_field_values_are_refused_without_echoing_them():
    with pytest.raises(ValidationError) as info:
        DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY, authority_host="http://login.example")
    assert "https://" in str(info.value)
    with pytest.raises(ValidationError) as info2:
        DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY, api="splunk")
    assert "Unknown API" in str(info2.value)
    for exc in (info.value, info2.value):
        assert CANARY not in str(exc)


@pytest.mark.parametrize("api, expected", [("MDATP", "mde"), ("M365D", "m365d"), ("xdr", "m365d"), (None, "graph")])
def test_api_aliases_as_in_msticpy(api, expected):
    values = {"api": api} if api else {}
    assert DefenderTenant(tenant_id=TID, client_id=CID, client_secret="x", **values).api == expected


def test_cloud_aliases():
    assert DefenderTenant(tenant_id=TID, client_id=CID, client_secret="x", cloud="GCC-High").cloud == "gcc-high"
    with pytest.raises(ValidationError, match="china"):
        DefenderTenant(tenant_id=TID, client_id=CID, client_secret="x", cloud="china")


def test_get_settings_hands_every_field_to_the_connector(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    tenant = DefenderTenant(
        tenant_id=TID, client_id=CID, client_secret=CANARY, api="mde", cloud="gcc", authority_host="https://127.0.0.1:1/",
        api_root="https://127.0.0.1:2", ca_bundle=str(ca), timeout=12.5, allow_custom_endpoints=True,
        rate_limits=TenantRateLimits(hunting_per_minute=5, hunting_per_hour=50, api_per_minute=7),
    )
    tenant._block_document_name = "contoso"
    settings = tenant.get_settings()
    assert settings.client_secret == CANARY and settings.certificate is None
    assert (settings.tenant_id, settings.client_id, settings.api, settings.cloud) == (TID, CID, "mde", "gcc")
    assert settings.authority_host == "https://127.0.0.1:1" and settings.api_root == "https://127.0.0.1:2"
    assert settings.ca_bundle == str(ca) and settings.timeout == 12.5 and settings.name == "contoso"
    assert settings.rate_limits == RateLimits(5, 50, 7)
    assert CANARY not in repr(settings)


def test_get_client_maps_an_unreachable_sign_in_host_to_service_error():
    # Building the client makes no call; the first token request finds nothing listening.
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY, authority_host="https://127.0.0.1:9",
                            allow_custom_endpoints=True, timeout=5)
    with tenant.get_client() as client, pytest.raises(ServiceError, match="127.0.0.1:9") as info:
        client.get_token()
    assert CANARY not in str(info.value)


def test_certificate_and_passphrase_reach_the_settings():
    pem = certificate_pem(passphrase="pw")
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, certificate=pem, certificate_passphrase="pw")
    settings = tenant.get_settings()
    assert settings.certificate == pem and settings.certificate_passphrase == "pw"
    assert settings.client_secret is None and settings.credential_kind == "certificate"


def test_a_certificate_entra_id_cannot_use_is_refused_naming_the_field():
    # Entra ID signs client assertions with RS256/PS256 only: an EC key would fail later inside MSAL.
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, certificate=certificate_pem(ec_key=True))
    with pytest.raises(ConfigurationError, match=r"certificate \(Certificate \(PEM\)\).*accepts only RSA"):
        tenant.get_settings()


def test_rate_limits_default_to_the_documented_quotas():
    limits = DefenderTenant(tenant_id=TID, client_id=CID, client_secret="x").rate_limits
    assert limits.to_connector() == RateLimits()
    with pytest.raises(ValidationError):
        TenantRateLimits(hunting_per_minute=0)


@pytest.mark.parametrize(
    "text, fixed", [("Tenant_2", "tenant-2"), ("MicrosoftDefender-Tenant2", "microsoftdefender-tenant2"), ("  Contoso Prod ", "contoso-prod"), ("__", "")]
)
def test_block_name_rule_says_the_rule_and_a_fix(text, fixed):
    assert suggest_block_name(text) == fixed
    with pytest.raises(ConfigurationError) as info:
        check_block_name(text)
    assert "lowercase letters, digits and dashes" in str(info.value)
    assert (f"Try {fixed!r}" in str(info.value)) == bool(fixed)
    assert check_block_name("tenant-2") == "tenant-2"


def test_save_with_a_bad_name_fails_before_contacting_prefect():
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY)
    with pytest.raises(ConfigurationError, match="Try 'contoso-prod'"):
        tenant.save("Contoso_Prod")
    with pytest.raises(ConfigurationError, match="lowercase"):
        kv().save("KV")


def test_block_metadata_for_the_ui():
    assert DefenderTenant.get_block_type_slug() == "defender-tenant"
    assert AzureKeyVaultSecret.get_block_type_slug() == "azure-key-vault-secret"
    for cls in (DefenderTenant, AzureKeyVaultSecret):
        assert cls._block_type_name and cls._documentation_url.startswith("https://") and cls._logo_url
        assert cls._description
        schema = cls.model_json_schema()
        for name, prop in schema["properties"].items():
            # Every field has its own title: V2 shows the raw key without one, and V1 shows a nested model's
            # definition title (the class name) unless the reference is wrapped in allOf.
            title = prop.get("title")
            assert prop.get("description") and title, f"{cls.__name__}.{name} needs a description and title"
            assert not re.search(r"[a-z][A-Z]", title), f"{cls.__name__}.{name}: {title!r} reads like a class name"
            assert "$ref" not in prop, f"{cls.__name__}.{name}: a bare $ref loses the field's title in V1"
    # The UIs show only the ```python block of the code example (nothing without one), with the block's name.
    example = DefenderTenant.get_code_example()
    assert re.search(r"```python\n.*DefenderTenant\.load\(\"BLOCK_NAME\"\).*```", example, re.S)
    secret_fields = DefenderTenant.model_json_schema()["secret_fields"]
    assert {"client_secret", "certificate", "certificate_passphrase", "client_secret_ref.sp_client_secret"} <= set(secret_fields)
    # The Key Vault reference is a nested block, not a secret (a Union with SecretStr would lose it on save).
    assert "client_secret_ref" not in secret_fields


def test_key_vault_block_validation():
    assert kv(vault_url=VAULT + "/").vault_url == VAULT
    with pytest.raises(ValidationError, match="https://"):
        kv(vault_url="http://soc-vault.vault.azure.net")
    with pytest.raises(ValidationError, match="Key Vault secret name"):
        kv(secret_name="bad_name")
    with pytest.raises(ValidationError, match="missing sp_client_secret") as info:
        AzureKeyVaultSecret(vault_url=VAULT, secret_name="s", sp_tenant_id=TID, sp_client_id=CANARY)
    assert CANARY not in str(info.value)
    with pytest.raises(ValidationError, match="not both"):
        kv(managed_identity_client_id=CID)
    assert kv().auth_method.startswith("service principal") and CANARY not in kv().auth_method
    assert AzureKeyVaultSecret(vault_url=VAULT, secret_name="s").auth_method == "DefaultAzureCredential"
    assert "managed identity" in AzureKeyVaultSecret(vault_url=VAULT, secret_name="s", managed_identity_client_id=CID).auth_method


def test_key_vault_block_from_a_secret_identifier():
    ref = AzureKeyVaultSecret.from_secret_id(f"{VAULT}/secrets/contoso-defender/0123abcd", cache_ttl_seconds=0)
    assert (ref.vault_url, ref.secret_name, ref.secret_version, ref.cache_ttl_seconds) == (VAULT, "contoso-defender", "0123abcd", 0)
    assert ref.secret_id == f"{VAULT}/secrets/contoso-defender/0123abcd"
    assert AzureKeyVaultSecret.from_secret_id(f"{VAULT}/secrets/x").secret_version is None
    with pytest.raises(ConfigurationError, match="not a Key Vault secret identifier"):
        AzureKeyVaultSecret.from_secret_id("soc-vault/x")


def test_key_vault_block_is_read_only():
    with pytest.raises(NotImplementedError, match="az keyvault secret set"):
        kv().write_secret(b"x")


def test_fingerprint_sees_secret_changes_without_holding_the_secret():
    a = DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY)
    b = DefenderTenant(tenant_id=TID, client_id=CID, client_secret=SecretStr(CANARY))
    c = DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY + "2")
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert CANARY not in repr(fingerprint(a))


IMPORT_CONFIG = """
KeyVault:
  VaultName: soc-vault
DataProviders:
  MicrosoftDefender:
    Args: {{TenantId: {tid}, ClientId: {cid}, ClientSecret: {secret}}}
  MicrosoftDefender-Tenant_2:
    Args:
      TenantId: {tid}
      ClientId: {cid}
      ClientSecret: {{KeyVault: tenant2-defender}}
      Cloud: GCC-High
      ApiType: MDATP
  MicrosoftDefender-Tenant3:
    Args: {{TenantId: {tid}, ClientId: {cid}, ClientSecret: {{EnvironmentVar: TENANT3_SECRET}}}}
  MicrosoftDefender-Cert:
    Args: {{TenantId: {tid}, ClientId: {cid}, Certificate: cert.pem, PrivateKey: key.pem}}
"""


def _write_certificate(directory):
    pem = certificate_pem()
    split = pem.index("-----BEGIN PRIVATE KEY-----")
    (directory / "cert.pem").write_text(pem[:split])
    (directory / "key.pem").write_text(pem[split:])


def test_plan_import_maps_every_secret_kind(tmp_path, monkeypatch):
    from blocks.msticpy_import import plan_import

    _write_certificate(tmp_path)
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(IMPORT_CONFIG.format(tid=TID, cid=CID, secret=CANARY))
    monkeypatch.setenv("TENANT3_SECRET", CANARY)
    plan = plan_import(path, authority_host="https://127.0.0.1:1", api_root="https://127.0.0.1:1",
                       keyvault_auth={"sp_tenant_id": TID, "sp_client_id": CID, "sp_client_secret": "kv-sp"},
                       allow_custom_endpoints=True)
    by_ref = {item.ref: item for item in plan}
    assert list(by_ref) == ["defender-tenant/default", "azure-key-vault-secret/tenant-2-client-secret",
                            "defender-tenant/tenant-2", "defender-tenant/tenant3", "defender-tenant/cert"]
    default, kv_block, tenant2, tenant3, cert = (item.block for item in plan)
    assert default.client_secret.get_secret_value() == CANARY and default.authority_host == "https://127.0.0.1:1"
    assert kv_block.vault_url == "https://soc-vault.vault.azure.net" and kv_block.secret_name == "tenant2-defender"
    assert kv_block.sp_client_id == CID and tenant2.client_secret_ref is kv_block
    assert (tenant2.api, tenant2.cloud) == ("mde", "gcc-high")
    assert tenant3.client_secret.get_secret_value() == CANARY
    assert any("environment variable TENANT3_SECRET" in note for note in by_ref["defender-tenant/tenant3"].notes)
    assert any("'Tenant_2' saved as block name 'tenant-2'" in note for note in by_ref["defender-tenant/tenant-2"].notes)
    pem = cert.certificate.get_secret_value()
    assert "BEGIN CERTIFICATE" in pem and "PRIVATE KEY" in pem
    assert cert.get_settings().credential_kind == "certificate"
    for item in plan:
        assert CANARY not in " ".join(item.notes) and CANARY not in repr(item.block)


def test_plan_import_refuses_colliding_names_and_unset_variables(tmp_path):
    from blocks.msticpy_import import plan_import

    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(f"""
DataProviders:
  MicrosoftDefender-Contoso_Prod:
    Args: {{TenantId: {TID}, ClientId: {CID}, ClientSecret: a}}
  MicrosoftDefender-contoso-prod:
    Args: {{TenantId: {TID}, ClientId: {CID}, ClientSecret: b}}
""")
    with pytest.raises(ConfigurationError, match="would both become block 'contoso-prod'"):
        plan_import(path)
    path.write_text(IMPORT_CONFIG.format(tid=TID, cid=CID, secret="x"))
    with pytest.raises(ConfigurationError, match="TENANT3_SECRET"):
        plan_import(path)
