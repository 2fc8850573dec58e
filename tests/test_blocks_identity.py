"""A tenant block whose ``auth`` is the worker's Azure identity: managed identity, workload identity, Azure CLI.

Each choice maps to its azure-identity credential; each then signs a real client in, at the boundary
that credential talks to: the managed identity endpoint (``responses``, App Service variables), the
Entra token endpoint of the emulator with a federated token file, and an ``az`` executable on PATH.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import time
import uuid

import pytest
import requests
import responses

from blocks import DefenderTenant, TenantRateLimits
from connector import ConfigurationError
from connector.auth import clear_token_cache

from .conftest import CANARY
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

MSI = "http://127.0.0.1:41998/msi/token"
FAST = TenantRateLimits(hunting_per_minute=10_000, hunting_per_hour=100_000, api_per_minute=10_000)
QUERY = "DeviceProcessEvents | take 2"


@pytest.fixture(autouse=True)
def _fresh_tokens():
    clear_token_cache()
    yield
    clear_token_cache()


def identity_tenant(emu, auth: str, **overrides) -> DefenderTenant:
    options = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, auth=auth, api_root=emu.base_url,
                   ca_bundle=emu.ca_bundle, allow_custom_endpoints=True, timeout=10, rate_limits=FAST)
    return DefenderTenant(**(options | overrides))


def emulator_token(emu) -> str:
    """An access token for Microsoft Graph issued by the emulator to its seeded app (what the identity returns)."""
    answer = requests.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", verify=emu.ca_bundle, timeout=10,
                           data={"client_id": emu.client_id, "client_secret": emu.client_secret,
                                 "scope": "https://graph.microsoft.com/.default", "grant_type": "client_credentials"})
    answer.raise_for_status()
    return answer.json()["access_token"]


@pytest.mark.parametrize(
    ("auth", "credential_class"),
    [("managed_identity", "ManagedIdentityCredential"), ("workload_identity", "WorkloadIdentityCredential"),
     ("azure_cli", "AzureCliCredential")],
)
def test_each_identity_choice_becomes_its_azure_identity_credential(emu, auth, credential_class, tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(tmp_path / "token"))  # read by the workload identity
    tenant = identity_tenant(emu, auth, authority_host=emu.base_url)
    settings = tenant.get_settings()
    assert type(settings.credential).__name__ == credential_class
    assert type(settings.credential).__module__.startswith("azure.identity")
    assert settings.client_secret is None and settings.certificate is None
    assert tenant.credential_kind == auth and "of the worker" in tenant.secret_source


@pytest.mark.parametrize("auth", ["managed_identity", "workload_identity", "azure_cli"])
def test_an_identity_choice_with_a_secret_beside_it_names_both(auth):
    with pytest.raises(ValueError, match=rf"auth is {auth}.*clear client_secret") as info:
        DefenderTenant(tenant_id=str(uuid.uuid4()), client_id=str(uuid.uuid4()), auth=auth, client_secret=CANARY)
    assert CANARY not in str(info.value)


def test_managed_identity_signs_in_through_the_identity_endpoint(emu, monkeypatch):
    # App Service's managed identity: azure-identity calls IDENTITY_ENDPOINT with IDENTITY_HEADER.
    monkeypatch.setenv("IDENTITY_ENDPOINT", MSI)
    monkeypatch.setenv("IDENTITY_HEADER", "header-secret")
    token = emulator_token(emu)
    with responses.RequestsMock() as mock:
        mock.add_passthru(emu.base_url)
        mock.get(MSI, json={"access_token": token, "expires_on": str(int(time.time()) + 3600),
                            "resource": "https://graph.microsoft.com", "token_type": "Bearer"})
        with identity_tenant(emu, "managed_identity").get_client() as client:
            assert len(client.run_hunting_query(QUERY)) == 2
            client.run_hunting_query(QUERY)  # the token is reused
        calls = [c.request for c in mock.calls if c.request.url.startswith(MSI)]
    assert len(calls) == 1
    assert calls[0].headers["X-IDENTITY-HEADER"] == "header-secret"
    # The block's client_id picks the (user-assigned) identity; the resource is the hunting API's.
    assert f"client_id={emu.client_id}" in calls[0].url and "resource=https://graph.microsoft.com" in calls[0].url
    token_posts = [r for r in emu.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_posts) == 1  # only the test's own: the block sent no secret anywhere


def _jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{part({'sig': 'kubernetes'})}"


def test_workload_identity_exchanges_the_federated_token_at_the_authority(emu, tmp_path, monkeypatch):
    # Kubernetes workload identity: the projected service account token is sent as the client assertion.
    client_id = str(uuid.uuid4())
    emu.add_app(emu.tenant_id, client_id, certificate=True)  # accepts any well-formed assertion, like a federation
    token_file = tmp_path / "azure-identity-token"
    federated = _jwt({"iss": "https://oidc.example", "sub": "system:serviceaccount:soar:worker",
                      "aud": "api://AzureADTokenExchange", "exp": int(time.time()) + 3600})
    token_file.write_text(federated)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    tenant = identity_tenant(emu, "workload_identity", client_id=client_id, authority_host=emu.base_url)
    with tenant.get_client() as client:
        assert len(client.run_hunting_query(QUERY)) == 2
    token_posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/oauth2/v2.0/token")]
    assert [r.path for r in token_posts] == [f"/{emu.tenant_id}/oauth2/v2.0/token"]
    assert token_posts[0].status == 200 and b"client_assertion_type=" in token_posts[0].body
    assert b"client_secret" not in token_posts[0].body


def test_workload_identity_without_a_token_file_says_what_to_set(emu, monkeypatch):
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="AZURE_FEDERATED_TOKEN_FILE"):
        identity_tenant(emu, "workload_identity").get_settings()


def test_azure_cli_signs_in_with_the_logged_in_account(emu, tmp_path, monkeypatch):
    # An `az` on PATH that answers `az account get-access-token` as the real one does, and records its arguments.
    token, calls = emulator_token(emu), tmp_path / "az-calls.jsonl"
    az = tmp_path / "bin" / "az"
    az.parent.mkdir()
    az.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"print(json.dumps({{'accessToken': {token!r}, 'expires_on': int(time.time()) + 3600, 'tokenType': 'Bearer',"
        f" 'tenant': {emu.tenant_id!r}}}))\n"
    )
    az.chmod(az.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{az.parent}{os.pathsep}{os.environ['PATH']}")
    with identity_tenant(emu, "azure_cli").get_client() as client:
        assert len(client.run_hunting_query(QUERY)) == 2
    argv = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(argv) == 1 and argv[0][:2] == ["account", "get-access-token"]
    assert argv[0][argv[0].index("--tenant") + 1] == emu.tenant_id
    assert "https://graph.microsoft.com" in argv[0][argv[0].index("--resource") + 1]
