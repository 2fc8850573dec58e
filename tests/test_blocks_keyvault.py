"""AzureKeyVaultSecret through the real SecretClient and azure-identity, at the HTTP boundary (``responses``).

The Key Vault secrets API answers the first, unauthenticated request with a bearer challenge; the
credential then discovers the (custom) authority, gets a token and the SDK retries with it. Every
URL here is on 127.0.0.1 and served by ``responses``: nothing leaves the process.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import responses

from blocks import AzureKeyVaultSecret, DefenderTenant
from connector import AuthenticationError, ConfigurationError, PermissionDeniedError, ServiceError

from .certs import certificate_pem
from .conftest import CANARY
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

VAULT = "https://127.0.0.1:9443"
AUTHORITY = "https://127.0.0.1:9444"
SP_TENANT, SP_CLIENT, SP_SECRET = "sp-tenant", "sp-client", "sp-secret-value"
TID, CID = "243bb6be-4136-4b64-9055-fb661594199a", "a5b24e23-a96a-4472-b729-9e5310c83e20"


class FakeVault:
    """The Key Vault secrets API and an Entra token endpoint, served by ``responses``."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.secrets: dict[str, str] = {}
        self.denied: set[str] = set()
        self.token_status = 200
        self.secret_requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.token_forms: list[str] = []
        rsps.add_callback(responses.GET, re.compile(re.escape(VAULT) + r"/secrets/.*"), callback=self._secret)
        rsps.add(
            responses.GET,
            f"{AUTHORITY}/{SP_TENANT}/v2.0/.well-known/openid-configuration",
            json={
                "token_endpoint": f"{AUTHORITY}/{SP_TENANT}/oauth2/v2.0/token",
                "authorization_endpoint": f"{AUTHORITY}/{SP_TENANT}/oauth2/v2.0/authorize",
                "issuer": f"{AUTHORITY}/{SP_TENANT}/v2.0",
            },
        )
        rsps.add_callback(responses.POST, f"{AUTHORITY}/{SP_TENANT}/oauth2/v2.0/token", callback=self._token)

    def _secret(self, request):
        path = request.path_url.split("?")[0]
        auth = request.headers.get("Authorization")
        self.secret_requests.append((path, auth))
        assert "api-version=" in request.url
        if not auth:
            challenge = f'Bearer authorization="{AUTHORITY}/{SP_TENANT}", resource="https://vault.azure.net"'
            return 401, {"WWW-Authenticate": challenge}, ""
        name = path.split("/")[2]
        if name in self.denied:
            body = {"error": {"code": "Forbidden", "message": f"The user, group or application does not have secrets get permission on key vault. Secret {name}.",
                              "innererror": {"code": "AccessDenied"}}}
            return 403, {"Content-Type": "application/json"}, json.dumps(body)
        if name not in self.secrets:
            body = {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found in this key vault."}}
            return 404, {"Content-Type": "application/json"}, json.dumps(body)
        body = {"value": self.secrets[name], "id": f"{VAULT}/secrets/{name}/0123456789abcdef", "attributes": {"enabled": True}}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _token(self, request):
        self.token_forms.append(request.body)
        if self.token_status != 200:
            body = {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215]}
            return self.token_status, {"Content-Type": "application/json"}, json.dumps(body)
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"access_token": "kv-token", "expires_in": 3600, "token_type": "Bearer"}
        )


@pytest.fixture
def vault():
    AzureKeyVaultSecret.clear_cache()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeVault(rsps)
    AzureKeyVaultSecret.clear_cache()


def ref(name: str = "contoso-defender", **kwargs) -> AzureKeyVaultSecret:
    values = dict(
        vault_url=VAULT, secret_name=name, sp_tenant_id=SP_TENANT, sp_client_id=SP_CLIENT, sp_client_secret=SP_SECRET,
        authority_host=AUTHORITY, allow_custom_endpoints=True,
    )
    values.update(kwargs)
    return AzureKeyVaultSecret(**values)


def test_get_reads_through_the_challenge_and_the_custom_authority(vault, all_logs):
    vault.secrets["contoso-defender"] = CANARY
    assert ref().get() == CANARY
    assert ref().read_secret() == CANARY.encode()  # second read: from the cache
    (first, _), (second, auth) = vault.secret_requests
    assert first == second == "/secrets/contoso-defender/" and auth == "Bearer kv-token"
    assert len(vault.token_forms) == 1
    form = vault.token_forms[0]
    assert "grant_type=client_credentials" in form and f"client_id={SP_CLIENT}" in form
    assert "scope=https%3A%2F%2Fvault.azure.net%2F.default" in form
    assert CANARY not in all_logs.text


def test_a_pinned_version_is_requested(vault):
    vault.secrets["contoso-defender"] = CANARY
    assert ref(secret_version="0123abcd").get() == CANARY
    assert vault.secret_requests[-1][0] == "/secrets/contoso-defender/0123abcd"


def test_cache_ttl_and_cache_off(vault, monkeypatch):
    vault.secrets["contoso-defender"] = "v1"
    assert ref(cache_ttl_seconds=60).get() == "v1"
    vault.secrets["contoso-defender"] = "v2"
    assert ref(cache_ttl_seconds=60).get() == "v1"  # cached
    later = time.monotonic() + 61
    monkeypatch.setattr("blocks.keyvault.time.monotonic", lambda: later)
    assert ref(cache_ttl_seconds=60).get() == "v2"  # expired, read again
    vault.secrets["contoso-defender"] = "v3"
    assert ref(cache_ttl_seconds=0).get() == "v3"  # no cache at all


def test_cache_entries_are_per_identity(vault):
    vault.secrets["contoso-defender"] = CANARY
    ref().get()
    reads = len(vault.secret_requests)
    # Same vault and secret, another identity: it must ask the vault itself, not reuse the entry.
    vault.denied.add("contoso-defender")
    with pytest.raises(PermissionDeniedError):
        ref(sp_client_secret="another-secret").get()
    assert len(vault.secret_requests) > reads


def test_secret_missing_names_vault_and_secret(vault):
    with pytest.raises(ConfigurationError) as info:
        ref("not-there").get()
    message = str(info.value)
    assert "'not-there'" in message and VAULT in message and "not found" in message


def test_access_denied_names_vault_secret_and_permission(vault):
    vault.secrets["contoso-defender"] = CANARY
    vault.denied.add("contoso-defender")
    with pytest.raises(PermissionDeniedError) as info:
        ref().get()
    message = str(info.value)
    assert "'contoso-defender'" in message and VAULT in message and "get" in message
    assert CANARY not in message


def test_sign_in_refused_names_the_vault(vault):
    vault.token_status = 401
    with pytest.raises(AuthenticationError) as info:
        ref().get()
    message = str(info.value)
    assert "'contoso-defender'" in message and VAULT in message
    assert SP_SECRET not in message


def test_vault_unreachable_names_vault_and_secret(monkeypatch):
    # A closed port on loopback; azure-core's retry back-off is skipped to keep the test fast.
    from azure.core.pipeline.transport import RequestsTransport

    monkeypatch.setattr(RequestsTransport, "sleep", lambda self, duration: None)
    closed = "https://127.0.0.1:9"
    with pytest.raises(ServiceError) as info:
        ref(vault_url=closed, authority_host=closed).get()
    message = str(info.value)
    assert "unreachable" in message and "'contoso-defender'" in message and closed in message


def test_tenant_reads_its_client_secret_from_key_vault(vault):
    vault.secrets["contoso-defender"] = CANARY
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, client_secret_ref=ref())
    settings = tenant.get_settings()
    assert settings.client_secret == CANARY and settings.credential_kind == "client_secret"
    assert CANARY not in repr(settings) and CANARY not in repr(tenant)


def test_tenant_reads_its_certificate_from_key_vault(vault):
    pem = certificate_pem()
    vault.secrets["contoso-cert"] = pem.replace("\n", " ")  # stored on one line: rebuilt like a UI paste
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, certificate_ref=ref("contoso-cert"))
    settings = tenant.get_settings()
    assert settings.certificate == pem and settings.client_secret is None


def test_tenant_key_vault_errors_pass_through_unchanged(vault):
    tenant = DefenderTenant(tenant_id=TID, client_id=CID, client_secret_ref=ref("gone"))
    with pytest.raises(ConfigurationError, match="'gone'.*not found"):
        tenant.get_client()
