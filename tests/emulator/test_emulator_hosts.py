"""Graph and MDE on hosts of their own: a call routed to the wrong one fails as it would against Microsoft."""

from __future__ import annotations

import pytest

GRAPH = "https://graph.microsoft.com"
MDE = "https://api.securitycenter.microsoft.com"
XDR = "https://api.security.microsoft.com"


def token(emu, http, resource):
    r = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": emu.client_id, "client_secret": emu.client_secret, "scope": f"{resource}/.default",
        "grant_type": "client_credentials"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def test_three_distinct_ports(emu):
    urls = {emu.base_url, emu.graph_url, emu.mde_url}
    assert len(urls) == 3 and all(u.startswith("https://127.0.0.1:") for u in urls)


@pytest.mark.parametrize("api, path, resource", [
    ("graph", "/v1.0/security/runHuntingQuery", GRAPH),
    ("mde", "/api/advancedqueries/run", MDE),
    ("mde", "/api/advancedhunting/run", XDR),
])
def test_each_resource_answers_on_its_own_host_and_on_the_base(emu, http, api, path, resource):
    headers = {"Authorization": f"Bearer {token(emu, http, resource)}"}
    own = emu.graph_url if api == "graph" else emu.mde_url
    for url in (own, emu.base_url):
        r = http.post(url + path, json={"Query": "AlertInfo | take 1"}, headers=headers)
        assert r.status_code == 200, (url, r.text)
    if api == "graph":
        assert r.json()["@odata.context"].startswith(emu.base_url)
        body = http.post(own + path, json={"Query": "AlertInfo | take 1"}, headers=headers).json()
        assert body["@odata.context"].startswith(emu.graph_url)  # links point at the host that answered


def test_mde_path_on_the_graph_host_is_a_graph_404(emu, http):
    headers = {"Authorization": f"Bearer {token(emu, http, MDE)}"}
    r = http.post(emu.graph_url + "/api/advancedqueries/run", json={"Query": "AlertInfo"}, headers=headers)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "NotFound" and set(error["innerError"]) == {"date", "request-id", "client-request-id"}


def test_graph_path_on_the_mde_host_is_an_mde_404(emu, http):
    headers = {"Authorization": f"Bearer {token(emu, http, GRAPH)}"}
    r = http.post(emu.mde_url + "/v1.0/security/runHuntingQuery", json={"Query": "AlertInfo"}, headers=headers)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "ResourceNotFound" and set(r.json()["error"]) == {"code", "message", "target"}


@pytest.mark.parametrize("host", ["graph_url", "mde_url"])
def test_sign_in_and_key_vault_live_only_on_the_base_host(emu, http, host):
    url = getattr(emu, host)
    r = http.post(f"{url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": emu.client_id, "client_secret": emu.client_secret, "scope": f"{GRAPH}/.default",
        "grant_type": "client_credentials"})
    assert r.status_code == 404 and "access_token" not in r.text
    assert http.get(f"{url}/secrets/defender-client-secret/?api-version=7.4").status_code == 404


def test_links_use_the_host_name_the_client_used(emu, http):
    port = emu.graph_url.rsplit(":", 1)[1]
    headers = {"Authorization": f"Bearer {token(emu, http, GRAPH)}"}
    body = http.get(f"https://localhost:{port}/v1.0/security/alerts_v2?$top=1", headers=headers).json()
    assert body["@odata.nextLink"].startswith(f"https://localhost:{port}/v1.0/security/alerts_v2?")
    assert body["@odata.context"].startswith(f"https://localhost:{port}/")
