"""Blocks against the emulator: Key Vault over real HTTPS (challenge, token, CA), and many tenants side by side."""

from __future__ import annotations

import uuid

import pytest

from blocks import AzureKeyVaultSecret, DefenderTenant, TenantRateLimits
from connector import AuthenticationError, ConfigurationError, PermissionDeniedError

from .conftest import CANARY
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

FAST = TenantRateLimits(hunting_per_minute=10_000, hunting_per_hour=100_000, api_per_minute=10_000)


@pytest.fixture(autouse=True)
def _fresh_key_vault_cache():
    AzureKeyVaultSecret.clear_cache()
    yield
    AzureKeyVaultSecret.clear_cache()


def vault_ref(emu, name: str, *, client_id=None, client_secret=None, **kwargs) -> AzureKeyVaultSecret:
    """A Key Vault block for the emulator's vault, signing in as the given app (default: the seeded one)."""
    return AzureKeyVaultSecret(
        vault_url=emu.base_url, secret_name=name, sp_tenant_id=emu.tenant_id, sp_client_id=client_id or emu.client_id,
        sp_client_secret=client_secret or emu.client_secret, authority_host=emu.base_url, ca_bundle=emu.ca_bundle,
        allow_custom_endpoints=True, **kwargs,
    )


def tenant_block(emu, tenant_id, client_id, **secret) -> DefenderTenant:
    return DefenderTenant(
        tenant_id=tenant_id, client_id=client_id, authority_host=emu.base_url, api_root=emu.base_url,
        ca_bundle=emu.ca_bundle, timeout=10, rate_limits=FAST, allow_custom_endpoints=True, **secret,
    )


def test_key_vault_secret_through_the_emulator_with_its_ca(emu, monkeypatch):
    # The machine-wide CA variables must not win over the block's ca_bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca.pem")
    emu.add_secret("kv-canary", CANARY)
    assert vault_ref(emu, "kv-canary").get() == CANARY
    paths = [(r.method, r.path.split("?")[0], r.status) for r in emu.requests]
    statuses = [status for _, path, status in paths if path == "/secrets/kv-canary/"]
    # The bearer challenge (401) comes first unless the SDK cached this vault's challenge earlier.
    assert statuses in ([401, 200], [200])
    assert ("POST", f"/{emu.tenant_id}/oauth2/v2.0/token", 200) in paths


def test_key_vault_pinned_version(emu):
    old = emu.add_secret("kv-versions", "old-value")
    emu.add_secret("kv-versions", "new-value")
    assert vault_ref(emu, "kv-versions", cache_ttl_seconds=0).get() == "new-value"
    assert vault_ref(emu, "kv-versions", secret_version=old).get() == "old-value"


def test_key_vault_missing_secret(emu):
    with pytest.raises(ConfigurationError) as info:
        vault_ref(emu, "no-such-secret").get()
    assert "'no-such-secret'" in str(info.value) and emu.base_url in str(info.value)


def test_key_vault_access_denied(emu):
    emu.add_secret("kv-denied", CANARY)
    reader = emu.add_app(emu.tenant_id, str(uuid.uuid4()), client_secret="no-vault-role", roles=["ThreatHunting.Read.All"])
    with pytest.raises(PermissionDeniedError) as info:
        vault_ref(emu, "kv-denied", client_id=reader.client_id, client_secret="no-vault-role").get()
    message = str(info.value)
    assert "'kv-denied'" in message and emu.base_url in message and CANARY not in message


def test_key_vault_wrong_service_principal_secret(emu):
    emu.add_secret("kv-auth", CANARY)
    with pytest.raises(AuthenticationError) as info:
        vault_ref(emu, "kv-auth", client_secret=CANARY + "-wrong").get()
    assert "'kv-auth'" in str(info.value) and CANARY not in str(info.value)


def test_tenant_with_key_vault_secret_hunts_and_leaks_nothing(emu, all_logs):
    tid, cid = str(uuid.uuid4()), str(uuid.uuid4())
    emu.add_tenant(tid)
    emu.add_app(tid, cid, client_secret=CANARY)
    emu.add_secret("canary-tenant-secret", CANARY)
    tenant = tenant_block(emu, tid, cid, client_secret_ref=vault_ref(emu, "canary-tenant-secret"))
    with tenant.get_client() as client:
        frame = client.run_hunting_query("DeviceProcessEvents | take 1")
        texts = [repr(client), str(client), repr(client.settings), repr(tenant), tenant.model_dump_json()]
    assert len(frame) == 1
    for text in texts + [all_logs.text]:
        assert CANARY not in text


def test_many_tenants_never_share_tokens_caches_or_limiters(emu, all_logs):
    good_a = tenant_block(emu, emu.tenant_id, emu.client_id, client_secret=emu.client_secret)
    tid_b, cid_b = str(uuid.uuid4()), str(uuid.uuid4())
    emu.add_tenant(tid_b)
    emu.add_app(tid_b, cid_b, client_secret="good-b")
    good_b = tenant_block(emu, tid_b, cid_b, client_secret="good-b")
    bad_b = tenant_block(emu, tid_b, cid_b, client_secret=CANARY)  # wrong secret for B's app
    bad_a = tenant_block(emu, emu.tenant_id, emu.client_id, client_secret=CANARY)  # A's app, wrong secret

    with good_a.get_client() as a, good_b.get_client() as b, bad_b.get_client() as b_bad, bad_a.get_client() as a_bad:
        assert len(a.run_hunting_query("DeviceProcessEvents | take 1")) == 1
        token_a, token_b = a.get_token(), b.get_token()
        for failing, tenant_id in ((b_bad, tid_b), (a_bad, emu.tenant_id)):
            # A valid token for the same tenant and app sits in the process: it must not be handed out.
            with pytest.raises(AuthenticationError) as info:
                failing.run_hunting_query("DeviceProcessEvents | take 1")
            assert tenant_id in str(info.value) and "AADSTS7000215" in str(info.value)
            assert CANARY not in str(info.value)
        assert len(a.run_hunting_query("DeviceProcessEvents | take 1")) == 1  # A unaffected
        assert a.get_token() == token_a  # still A's cached token

        # Tokens: distinct, each issued to its own tenant and app.
        assert token_a != token_b
        assert (emu.tokens.lookup(token_a).tenant_id, emu.tokens.lookup(token_a).client_id) == (emu.tenant_id, emu.client_id)
        assert (emu.tokens.lookup(token_b).tenant_id, emu.tokens.lookup(token_b).client_id) == (tid_b, cid_b)
    # The emulator saw each tenant's token request at its own tenant path, and hunting only with good tokens.
    token_posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/oauth2/v2.0/token")]
    assert {r.path.split("/")[1] for r in token_posts} == {emu.tenant_id, tid_b}
    assert [r.status for r in emu.requests if "runHuntingQuery" in r.path] == [200, 200]
    assert CANARY not in all_logs.text
