"""Every read operation of the client against the emulator, through real msal and requests:
devices, users, files, IPs, alerts and incidents; empty lists, 404s, paging, hosts and limiters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from connector import DefenderClient, resolve_settings
from connector.auth import clear_token_cache
from connector.errors import BadRequestError, NotFoundError, RedirectRefusedError
from connector.transport import RetryPolicy

FAST = RetryPolicy(max_attempts=3, max_total_seconds=30, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
def client(emu, emu_kwargs):
    """A client with each resource on its own emulator host, as with Microsoft."""
    kwargs = {**emu_kwargs, "graph_root": emu.graph_url, "mde_root": emu.mde_url, "m365d_root": emu.mde_url}
    with DefenderClient(resolve_settings(**kwargs), retry=FAST) as c:
        yield c


@pytest.fixture
def device(client):
    return next(iter(client.list_devices(top=1)))


def test_devices_list_and_frame(client):
    frame = client.list_devices(top=5).to_frame()
    assert 0 < len(frame) <= 5
    assert str(frame["lastSeen"].dtype) == "datetime64[ns, UTC]"
    assert isinstance(frame["osBuild"].dtype, pd.Int64Dtype) and frame["machineTags"].dtype == object


def test_get_device_by_id_and_by_dns_name(client, device):
    assert client.get_device(device["id"])["id"] == device["id"]
    assert client.get_device(device["computerDnsName"])["id"] == device["id"]


def test_unknown_devices_are_not_found(client):
    with pytest.raises(NotFoundError):
        client.get_device("f" * 40)
    with pytest.raises(NotFoundError, match="No device named"):
        client.get_device("no-such-host.contoso.local")


def test_find_devices_by_name_prefix(client, device):
    prefix = device["computerDnsName"][:4]
    names = [d["computerDnsName"] for d in client.list_devices(name_prefix=prefix)]
    assert device["computerDnsName"] in names
    assert all(n.lower().startswith(prefix.lower()) for n in names)


def test_find_devices_by_ip_at_a_time(client, device):
    last_seen = pd.Timestamp(device["lastSeen"]).to_pydatetime(warn=False)
    found = client.find_devices_by_ip(device["lastIpAddress"], at=last_seen).to_frame()
    assert device["id"] in set(found["id"])
    with pytest.raises(BadRequestError, match="not an IP address"):
        client.find_devices_by_ip("10.0.0.999")


def test_device_logon_users_and_alerts(client, device):
    users = client.list_device_logon_users(device["id"]).to_frame()
    assert {"accountName", "accountDomain", "lastSeen"} <= set(users.columns)
    alerts = client.list_device_alerts(device["id"]).to_frame()
    assert {"id", "severity", "machineId"} <= set(alerts.columns)
    assert set(alerts["machineId"].dropna()) <= {device["id"]}
    with pytest.raises(NotFoundError):
        client.list_device_logon_users("e" * 40).to_frame()


def test_files_ips_and_users(client, device):
    events = client.run_hunting_query(f'DeviceProcessEvents | where DeviceId == "{device["id"]}" | take 1')
    sha1, sha256 = events["SHA1"][0], events["SHA256"][0]
    assert client.get_file(sha1)["sha1"] == sha1
    assert client.get_file(sha256)["sha256"] == sha256
    assert client.get_file_stats(sha1)
    with pytest.raises(NotFoundError):
        client.get_file("0" * 40)
    stats = client.get_ip_stats(device["lastIpAddress"])
    assert stats["ipAddress"] == device["lastIpAddress"] and stats["organizationPrevalence"] >= 1
    assert client.get_ip_stats("203.0.113.254")["organizationPrevalence"] == 0
    with pytest.raises(BadRequestError):
        client.get_ip_stats("not-an-ip")
    account = next(iter(client.list_device_logon_users(device["id"])))["accountName"]
    assert device["id"] in {d["id"] for d in client.list_user_devices(account)}
    empty = client.list_user_devices("nobody-at-all").to_frame()
    assert len(empty) == 0 and "computerDnsName" in empty.columns


def test_alerts_and_incidents(client):
    alert = next(iter(client.list_alerts(top=1)))
    full = client.get_alert(alert["id"])
    assert full["id"] == alert["id"] and isinstance(full.get("evidence"), list)
    incident = client.get_incident(full["incidentId"])
    assert alert["id"] in {a["id"] for a in incident["alerts"]}
    incidents = client.list_incidents(expand_alerts=True, top=3).to_frame()
    assert 0 < len(incidents) <= 3 and "alerts" in incidents.columns
    with pytest.raises(NotFoundError):
        client.get_alert("no-such-alert")
    mde = client.list_mde_alerts(top=2, expand_evidence=True).to_frame()
    assert str(mde["lastUpdateTime"].dtype) == "datetime64[ns, UTC]"
    assert client.get_mde_alert(mde["id"][0])["id"] == mde["id"][0]
    future = datetime.now(UTC) + timedelta(days=3650)
    empty = client.list_alerts(since=future).to_frame()
    assert len(empty) == 0 and "lastUpdateDateTime" in empty.columns


def test_paging_over_2500_alerts_returns_each_exactly_once(emu, client):
    emu.page_size = 100
    ids = set(emu.seed_alerts(2500))
    since = datetime.now(UTC) - timedelta(days=3650)
    seen = [a["id"] for a in client.list_alerts(since=since) if a["id"] in ids]
    assert len(seen) == 2500 and set(seen) == ids
    pages = [r for r in emu.requests if r.path.endswith("/alerts_v2")]
    assert len(pages) >= 25


def test_a_next_link_to_a_foreign_host_sends_no_token(emu, client):
    emu.seed_alerts(5)
    emu.page_size = 2
    emu.next_link_base = "https://evil.example"
    pager = client.list_alerts()
    first_page = next(pager.by_page())
    assert len(first_page) == 2
    with pytest.raises(RedirectRefusedError, match="evil.example"):
        next(pager.by_page())
    assert all(r.path.endswith("/alerts_v2") for r in emu.requests if "alerts" in r.path)


def test_one_client_two_scopes_two_limiters(emu, emu_kwargs):
    clear_token_cache()
    tenant = "cdcdcdcd-cdcd-4dcd-8dcd-cdcdcdcdcdcd"  # a tenant of its own: limiters are per tenant
    emu.add_tenant(tenant)
    emu.add_app(tenant, emu.client_id, client_secret="own-limits")
    kwargs = {**emu_kwargs, "tenant_id": tenant, "client_secret": "own-limits",
              "graph_root": emu.graph_url, "mde_root": emu.mde_url,
              "rate_limits": {"hunting_per_minute": 1000, "hunting_per_hour": 10_000, "api_per_minute": 3}}
    with DefenderClient(resolve_settings(**kwargs), retry=FAST) as client:
        client.run_hunting_query("DeviceProcessEvents | take 1")  # Graph
        devices = client.list_devices(top=2).to_frame()  # MDE
        assert len(devices) == 2
        graph, mde = client._resource("graph"), client._resource("mde")
        assert graph.limiter is not mde.limiter
        client.get_device(devices["id"][0])
        client.get_device(devices["id"][1])
        assert mde.limiter.would_wait() > 0 and graph.limiter.would_wait() == 0  # 3 MDE calls this minute
    scopes = sorted(r.body.decode() for r in emu.requests if r.path.endswith("/oauth2/v2.0/token"))
    assert len(scopes) == 2
    assert any("graph.microsoft.com" in s for s in scopes) and any("securitycenter" in s for s in scopes)


def test_a_resource_sent_to_the_wrong_host_fails_like_microsoft(emu, emu_kwargs):
    kwargs = {**emu_kwargs, "graph_root": emu.mde_url}
    with DefenderClient(resolve_settings(**kwargs), retry=FAST) as client, pytest.raises(NotFoundError):
        client.get_alert("anything")
