"""Blocks against a Prefect server (the test harness): save/load round trips, registration, no secret leaks."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from blocks import AzureKeyVaultSecret, DefenderTenant, TenantRateLimits
from blocks.msticpy_import import fingerprint

from .conftest import CANARY
from .prefect_fixtures import BIN, ROOT, _no_default_azure_credential, prefect_api, subprocess_env  # noqa: F401

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]

TID, CID = "243bb6be-4136-4b64-9055-fb661594199a", "a5b24e23-a96a-4472-b729-9e5310c83e20"
VAULT = "https://soc-vault.vault.azure.net"


def kv(name: str, **kwargs) -> AzureKeyVaultSecret:
    return AzureKeyVaultSecret(
        vault_url=VAULT, secret_name=name, secret_version="0123abcd", sp_tenant_id=TID, sp_client_id=CID,
        sp_client_secret=CANARY, authority_host="https://login.microsoftonline.us", cache_ttl_seconds=42, **kwargs,
    )


def combinations():
    """name -> (tenant block, Key Vault block to save first or None)."""
    saved_ref = kv("rt-saved-secret")
    saved_cert = kv("rt-saved-cert")
    common = dict(tenant_id=TID, client_id=CID, api="mde", cloud="gcc-high", authority_host="https://127.0.0.1:1",
                  api_root="https://127.0.0.1:2", allow_custom_endpoints=True, timeout=33.0,
                  rate_limits=TenantRateLimits(hunting_per_minute=3, hunting_per_hour=30, api_per_minute=9))
    return {
        "rt-plain-secret": (DefenderTenant(client_secret=CANARY, **common), None),
        "rt-inline-kv-secret": (DefenderTenant(client_secret_ref=kv("inline-secret"), **common), None),
        "rt-saved-kv-secret": (DefenderTenant(client_secret_ref=saved_ref, **common), ("rt-saved-kv-secret-ref", saved_ref)),
        "rt-plain-cert": (DefenderTenant(certificate="PEM " + CANARY, certificate_passphrase=CANARY, **common), None),
        "rt-inline-kv-cert": (DefenderTenant(certificate_ref=kv("inline-cert"), **common), None),
        "rt-saved-kv-cert": (
            DefenderTenant(certificate_ref=saved_cert, certificate_passphrase=CANARY, **common),
            ("rt-saved-kv-cert-ref", saved_cert),
        ),
    }


@pytest.fixture(scope="module")
def saved(request):
    """Every combination saved once for the module: name -> (tenant as built, nested block name or None)."""
    request.getfixturevalue("prefect_api")
    result = {}
    for name, (tenant, nested) in combinations().items():
        if nested:
            nested[1].save(nested[0], overwrite=True)
        tenant.save(name, overwrite=True)
        result[name] = (tenant, nested[0] if nested else None)
    return result


def test_every_secret_source_round_trips(saved, all_logs):
    from prefect.blocks.core import Block

    for name, (tenant, nested_name) in saved.items():
        loaded = DefenderTenant.load(name)
        assert fingerprint(loaded) == fingerprint(tenant), name
        for field in ("client_secret", "certificate", "certificate_passphrase"):
            if getattr(tenant, field) is not None:
                assert getattr(loaded, field).get_secret_value() == getattr(tenant, field).get_secret_value()
        ref = loaded.client_secret_ref or loaded.certificate_ref
        if ref is not None:
            # The nested Key Vault block survives with every field, its own secret included.
            assert isinstance(ref, AzureKeyVaultSecret)
            assert (ref.vault_url, ref.secret_version, ref.cache_ttl_seconds) == (VAULT, "0123abcd", 42)
            assert ref.sp_client_secret.get_secret_value() == CANARY
            # A reference saved first keeps its name; an unsaved one is saved by save() as <name>-client-secret
            # (or <name>-certificate), so that it shows as a link on the tenant's page.
            kind = "client-secret" if loaded.client_secret_ref is not None else "certificate"
            assert ref._block_document_name == (nested_name or f"{name}-{kind}")
    assert type(Block.load("defender-tenant/rt-plain-secret")) is DefenderTenant
    assert CANARY not in all_logs.text


def test_updating_a_saved_key_vault_block_reaches_the_tenant():
    ref = AzureKeyVaultSecret(vault_url=VAULT, secret_name="first")
    ref.save("rt-shared-ref", overwrite=True)
    DefenderTenant(tenant_id=TID, client_id=CID, client_secret_ref=ref).save("rt-follows-ref", overwrite=True)
    AzureKeyVaultSecret(vault_url=VAULT, secret_name="second").save("rt-shared-ref", overwrite=True)
    assert DefenderTenant.load("rt-follows-ref").client_secret_ref.secret_name == "second"


def test_saving_with_a_bad_name_says_the_rule():
    from connector import ConfigurationError

    with pytest.raises(ConfigurationError, match="lowercase letters, digits and dashes.*Try 'tenant-2'"):
        DefenderTenant(tenant_id=TID, client_id=CID, client_secret=CANARY).save("Tenant_2")


def test_no_secret_in_api_json_inspect_or_register_output(saved, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = subprocess_env(tmp_path)

    # Both CLI processes start at once: each spends seconds importing Prefect. The inspected block
    # has a passphrase and a Key Vault reference whose service principal secret is the canary.
    commands = {
        "register": [str(BIN / "prefect"), "block", "register", "-m", "blocks"],
        "inspect": [str(BIN / "prefect"), "block", "inspect", "defender-tenant/rt-saved-kv-cert"],
    }
    procs = {
        key: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for key, cmd in commands.items()
    }
    with get_client(sync_client=True) as client:
        documents = [
            client.read_block_document_by_name(name, block_type_slug="defender-tenant", include_secrets=False)
            for name in saved
        ]
        listed = client.read_block_documents(include_secrets=False)
    for document in documents + listed:
        assert CANARY not in document.model_dump_json()
    plain = next(d for d in documents if d.name == "rt-plain-secret")
    assert plain.data["client_secret"] == "********"
    with httpx.Client(base_url=PREFECT_API_URL.value(), timeout=30) as http:
        rest = [
            http.get(f"/block_types/slug/defender-tenant/block_documents/name/{name}").text for name in saved
        ]
        rest.append(http.post("/block_documents/filter", json={}).text)
        rest.append(http.get("/block_types/slug/defender-tenant/block_documents").text)
    for text in rest:
        assert text.startswith(("{", "[")) and CANARY not in text
    outputs = {}
    for key, proc in procs.items():
        outputs[key], _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, outputs[key]
    assert "Defender Tenant" in outputs["register"] and "Azure Key Vault Secret" in outputs["register"]
    assert "rt-saved-kv-cert" in outputs["inspect"] and "********" in outputs["inspect"]
    for text in outputs.values():
        assert CANARY not in text
