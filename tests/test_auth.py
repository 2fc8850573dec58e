"""Token acquisition through real MSAL: Entra's documented error bodies and transient sign-in faults."""

from __future__ import annotations

import json

import pytest
import responses

from connector import AuthenticationError, DefenderClient, TenantSettings
from connector.transport import RetryPolicy

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db49"
LOGIN = "https://login.microsoftonline.com"


def _openid(tenant: str) -> dict:
    base = f"{LOGIN}/{tenant}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
    }


@responses.activate
def test_invalid_scope_sample_body_becomes_an_authentication_error(samples):
    """Microsoft's published AADSTS70011 body, through MSAL, names the scope and what to check."""
    body = json.loads((samples / "entra-token-error-invalid_scope-400.json").read_text())
    responses.get(f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration", json=_openid(TENANT))
    responses.post(f"{LOGIN}/{TENANT}/oauth2/v2.0/token", status=400, json=body)
    client = DefenderClient(TenantSettings(tenant_id=TENANT, client_id="66b9818a-26cd-4584-8eb0-7f7a499242aa",
                                           client_secret="s", name="t-scope"))
    with pytest.raises(AuthenticationError) as info:
        client.get_token()
    message = str(info.value)
    assert "AADSTS70011" in message and "https://graph.microsoft.com/.default" in message
    assert "check the API (graph) and cloud (global)" in message
    assert info.value.code == "invalid_scope"


def test_transient_sign_in_fault_is_retried(emu, emu_kwargs):
    from emulator import Fault

    emu.add_app(emu.tenant_id, "78787878-7878-4878-8878-787878787878", client_secret="fresh-app")
    kwargs = {**emu_kwargs, "client_id": "78787878-7878-4878-8878-787878787878", "client_secret": "fresh-app"}
    emu.faults.add(Fault(kind="status", status=503, path="/oauth2/v2.0/token$"))
    retry = RetryPolicy(max_attempts=3, backoff_initial=0.05, backoff_max=0.1)
    with DefenderClient(TenantSettings(**kwargs), retry=retry) as client:
        assert len(client.run_hunting_query("AlertInfo | take 1")) == 1
    assert [r.status for r in emu.requests if r.path.endswith("/token")] == [503, 200]


def test_tokens_are_renewed_before_they_expire(emu, emu_kwargs):
    """A token within MSAL's 5-minute renewal margin is replaced before use; a fresh one is reused."""
    emu.add_app(emu.tenant_id, "90909090-9090-4090-8090-909090909090", client_secret="short-lived")
    kwargs = {**emu_kwargs, "client_id": "90909090-9090-4090-8090-909090909090", "client_secret": "short-lived"}
    lifetime = emu.token_lifetime
    try:
        emu.token_lifetime = 240  # already inside the renewal margin when issued
        with DefenderClient(TenantSettings(**kwargs)) as client:
            first, second = client.get_token(), client.get_token()
        emu.token_lifetime = 3599
        with DefenderClient(TenantSettings(**kwargs)) as client:
            third, fourth = client.get_token(), client.get_token()
    finally:
        emu.token_lifetime = lifetime
    assert first != second  # renewed before expiry, not used until it fails
    assert third == fourth and third not in (first, second)
    assert len([r for r in emu.requests if r.path.endswith("/token")]) == 3
