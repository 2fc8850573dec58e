"""Key Vault secrets through the real azure-keyvault-secrets SecretClient + azure-identity credential."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from emulator import DEFAULT_SECRET_NAME


def client(emu, client_id=None, secret=None, verify_challenge_resource=False):
    credential = ClientSecretCredential(emu.tenant_id, client_id or emu.client_id, secret or emu.client_secret,
                                        authority=emu.base_url, disable_instance_discovery=True,
                                        connection_verify=emu.ca_bundle)
    return SecretClient(emu.base_url, credential, connection_verify=emu.ca_bundle,
                        verify_challenge_resource=verify_challenge_resource)


def test_get_secret_and_versions(emu):
    emu.requests.clear()
    v1 = emu.add_secret("contoso-secret", "first")
    v2 = emu.add_secret("contoso-secret", "zweite Version ü")
    kv = client(emu)
    current = kv.get_secret("contoso-secret")
    assert current.value == "zweite Version ü" and current.properties.version == v2
    assert current.id == f"{emu.base_url}/secrets/contoso-secret/{v2}"
    assert current.properties.enabled is True and current.properties.recovery_level == "Recoverable+Purgeable"
    assert kv.get_secret("contoso-secret", v1).value == "first"
    assert kv.get_secret(DEFAULT_SECRET_NAME).value == emu.client_secret
    # First the unauthenticated challenge round trip, then Entra, then the authorised retry.
    statuses = [(r.path.split("/")[-1] or r.path.split("/")[-2], r.status) for r in emu.requests][:4]
    assert statuses[0][1] == 401 and statuses[-1][1] == 200
    assert all("login.microsoftonline.com" not in r.path for r in emu.requests)


def test_challenge_header(emu):
    r = requests.get(f"{emu.base_url}/secrets/x/?api-version=7.6", verify=emu.ca_bundle, timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{emu.base_url}/{emu.tenant_id}", resource="https://vault.azure.net"')
    assert r.json()["error"]["code"] == "Unauthorized"


def test_unknown_secret_is_404(emu):
    with pytest.raises(ResourceNotFoundError) as caught:
        client(emu).get_secret("no-such-secret")
    assert caught.value.error.code == "SecretNotFound"
    assert "A secret with (name/id) no-such-secret was not found in this key vault." in str(caught.value)


def test_missing_permission_is_403(emu):
    app = emu.add_app(emu.tenant_id, "no-vault-access", roles=["ThreatHunting.Read.All"])
    with pytest.raises(HttpResponseError) as caught:
        client(emu, app.client_id, app.client_secret).get_secret(DEFAULT_SECRET_NAME)
    assert caught.value.status_code == 403 and caught.value.error.code == "Forbidden"
    assert "does not have secrets get permission on key vault" in str(caught.value)


def test_default_challenge_verification_rejects_a_loopback_vault(emu):
    # azure-keyvault-secrets wants the vault host under the challenge resource's domain (*.vault.azure.net).
    with pytest.raises(ValueError, match="verify_challenge_resource"):
        client(emu, verify_challenge_resource=True).get_secret(DEFAULT_SECRET_NAME)
