"""Fixtures for the emulator's own tests: a private emulator per module (quotas on) and a session trusting it."""

from __future__ import annotations

import pytest
import requests

from emulator import Emulator


@pytest.fixture(scope="module")
def emu():
    """An emulator of the module's own, with the documented quotas enforced (unlike conftest's)."""
    with Emulator(port=0) as running:
        yield running


@pytest.fixture
def http(emu):
    """A requests Session that trusts the emulator's CA, on a reset emulator."""
    emu.reset()
    with requests.Session() as session:
        session.verify = emu.ca_bundle
        yield session
    emu.faults.clear()


RESOURCES = {"graph": "https://graph.microsoft.com", "mde": "https://api.securitycenter.microsoft.com",
             "xdr": "https://api.security.microsoft.com"}


def bearer(emu, http, api: str, client_id: str | None = None, secret: str | None = None) -> dict[str, str]:
    """An Authorization header for ``api`` (graph | mde | xdr), from the emulator's token endpoint."""
    r = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": client_id or emu.client_id, "client_secret": secret or emu.client_secret,
        "scope": f"{RESOURCES[api]}/.default", "grant_type": "client_credentials"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def auth(emu, http):
    """Authorization headers per API family for the default app: ``auth["graph"]``, ``auth["mde"]``, ``auth["xdr"]``."""
    return {api: bearer(emu, http, api) for api in RESOURCES}
