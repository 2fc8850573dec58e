"""Any azure-identity TokenCredential signs the client in: managed identity at the HTTP boundary."""

from __future__ import annotations

import time

import pytest
import requests
import responses

from connector import connect
from connector.auth import clear_token_cache
from connector.errors import AuthenticationError

MSI = "http://127.0.0.1:41999/msi/token"


def emulator_token(emu, scope="https://graph.microsoft.com/.default") -> str:
    answer = requests.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", verify=emu.ca_bundle, timeout=10,
                           data={"client_id": emu.client_id, "client_secret": emu.client_secret, "scope": scope,
                                 "grant_type": "client_credentials"})
    return answer.json()["access_token"]


@pytest.fixture
def app_service_identity(monkeypatch):
    """azure-identity's App Service managed identity reads these two variables."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", MSI)
    monkeypatch.setenv("IDENTITY_HEADER", "header-secret")
    clear_token_cache()
    yield
    clear_token_cache()


def test_a_managed_identity_signs_the_client_in(emu, emu_kwargs, app_service_identity):
    from azure.identity import ManagedIdentityCredential

    token = emulator_token(emu)
    with responses.RequestsMock() as mock:
        mock.add_passthru(emu.base_url)
        mock.get(MSI, json={"access_token": token, "expires_on": str(int(time.time()) + 3600),
                            "resource": "https://graph.microsoft.com", "token_type": "Bearer"})
        settings = {k: v for k, v in emu_kwargs.items() if k != "client_secret"}
        with connect(**settings, credential=ManagedIdentityCredential()) as client:
            frame = client.run_hunting_query("DeviceProcessEvents | take 3")
            client.run_hunting_query("DeviceProcessEvents | take 1")  # the token is reused
        identity_calls = [c for c in mock.calls if c.request.url.startswith(MSI)]
    assert len(frame) == 3
    assert len(identity_calls) == 1
    assert identity_calls[0].request.headers["X-IDENTITY-HEADER"] == "header-secret"
    assert "resource=https://graph.microsoft.com" in identity_calls[0].request.url
    assert len([r for r in emu.requests if r.path.endswith("/oauth2/v2.0/token")]) == 1  # only the test's own


def test_a_refused_managed_identity_is_an_authentication_error(emu, emu_kwargs, app_service_identity):
    from azure.identity import ManagedIdentityCredential

    with responses.RequestsMock() as mock:
        mock.get(MSI, status=400, json={"error": "invalid_resource", "error_description": "no identity assigned"})
        settings = {k: v for k, v in emu_kwargs.items() if k != "client_secret"}
        with connect(**settings, credential=ManagedIdentityCredential()) as client, \
                pytest.raises(AuthenticationError, match="ManagedIdentityCredential"):
            client.get_token()


def test_delegated_username_is_refused_with_what_to_use_instead():
    from connector.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="(?i)credential|AzureCli"):
        connect("tenant_id='contoso.onmicrosoft.com'; client_id='11111111-1111-4111-8111-111111111111'; "
                "username='analyst@contoso.com'")
