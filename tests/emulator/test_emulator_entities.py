"""MDE entity routes (machines, users, files, IPs) over HTTPS: documented shapes, 404s, empty lists, and the
same world as the hunting tables."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import bearer

SAMPLES = Path(__file__).resolve().parents[2] / "emulator" / "data"


def sample(name):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def get(emu, http, auth, path, api="mde", **params):
    base = emu.graph_url if api == "graph" else emu.mde_url
    return http.get(base + path, headers=auth[api], params=params)


def hunt(emu, http, auth, query):
    r = http.post(emu.mde_url + "/api/advancedqueries/run", json={"Query": query}, headers=auth["mde"])
    assert r.status_code == 200, r.text
    return r.json()["Results"]


def machines(emu, http, auth):
    r = get(emu, http, auth, "/api/machines")
    assert r.status_code == 200
    return r.json()["value"]


# ---------------------------------------------------------------- machines


def test_machine_list_and_get_have_the_documented_shape(emu, http, auth):
    r = get(emu, http, auth, "/api/machines")
    body = r.json()
    assert r.status_code == 200 and body["@odata.context"] == f"{emu.mde_url}/api/$metadata#Machines"
    assert "@odata.nextLink" not in body and len(body["value"]) == 49  # 48 + the seeded incident's
    expected = sample("mde-machine-get-response.json")
    one = body["value"][3]
    assert set(expected) - {"@odata.context"} <= set(one)
    for by in (one["id"], one["computerDnsName"], one["computerDnsName"].upper()):
        single = get(emu, http, auth, f"/api/machines/{by}")
        assert single.status_code == 200
        assert list(single.json()) == ["@odata.context", *one]  # context first, then the entity as listed
        assert single.json()["@odata.context"].endswith("/api/$metadata#Machine")
        assert single.json()["id"] == one["id"]


def test_unknown_machine_is_resource_not_found(emu, http, auth):
    for path in ("/api/machines/nope.contoso.local", "/api/machines/nope/logonusers", "/api/machines/nope/alerts"):
        r = get(emu, http, auth, path)
        assert r.status_code == 404, path
        assert set(r.json()["error"]) == set(sample("mde-error-resourcenotfound-404.json")["error"])
        assert r.json()["error"]["code"] == "ResourceNotFound"
    assert get(emu, http, auth, "/api/machines/nope").json()["error"]["message"] == "Machine nope was not found"


def test_machine_filters_and_an_empty_result(emu, http, auth):
    r = get(emu, http, auth, "/api/machines", **{"$filter": "startswith(computerDnsName,'srv-') and rbacGroupId eq 42"})
    names = [m["computerDnsName"] for m in r.json()["value"]]
    assert r.status_code == 200 and names and all(n.startswith("srv-") for n in names)
    some = machines(emu, http, auth)[5]
    by_name = get(emu, http, auth, "/api/machines", **{"$filter": f"computerDnsName eq '{some['computerDnsName']}'"})
    assert [m["id"] for m in by_name.json()["value"]] == [some["id"]]
    cutoff = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = get(emu, http, auth, "/api/machines", **{"$filter": f"lastSeen gt {cutoff}"}).json()["value"]
    assert 0 < len(recent) < 48 and all(m["lastSeen"] > cutoff for m in recent)
    empty = get(emu, http, auth, "/api/machines", **{"$filter": "computerDnsName eq 'no-such-host'"})
    assert empty.status_code == 200 and empty.json()["value"] == []
    either = get(emu, http, auth, "/api/machines",
                 **{"$filter": "riskScore eq 'High' or (healthStatus ne 'Active' and osPlatform eq 'Linux')"})
    assert all(m["riskScore"] == "High" or (m["healthStatus"] != "Active" and m["osPlatform"] == "Linux")
               for m in either.json()["value"])


def test_find_by_ip_at_a_time(emu, http, auth):
    machine = machines(emu, http, auth)[7]
    seen = machine["lastSeen"][:19] + "Z"
    r = get(emu, http, auth, f"/api/machines/findbyip(ip='{machine['lastIpAddress']}',timestamp={seen})")
    assert r.status_code == 200 and [m["id"] for m in r.json()["value"]] == [machine["id"]]
    nobody = get(emu, http, auth, f"/api/machines/findbyip(ip='192.0.2.99',timestamp={seen})")
    assert nobody.status_code == 200 and nobody.json()["value"] == []
    bad_ip = get(emu, http, auth, f"/api/machines/findbyip(ip='10.0.0.999',timestamp={seen})")
    assert bad_ip.status_code == 400 and bad_ip.json()["error"]["code"] == "InvalidIpAddress"
    too_old = get(emu, http, auth, f"/api/machines/findbyip(ip='{machine['lastIpAddress']}',timestamp=2020-01-01T00:00:00Z)")
    assert too_old.status_code == 400


def test_logon_users_and_user_machines_agree(emu, http, auth):
    machine = machines(emu, http, auth)[1]
    r = get(emu, http, auth, f"/api/machines/{machine['id']}/logonusers")
    assert r.status_code == 200 and r.json()["@odata.context"].endswith("#Users")
    users = r.json()["value"]
    assert users and set(users[0]) == set(sample("mde-machine-logonusers-response.json")["value"][0])
    for user in users:
        found = get(emu, http, auth, f"/api/users/{quote(user['accountName'])}/machines")
        assert found.status_code == 200 and machine["id"] in [m["id"] for m in found.json()["value"]]
    unknown = get(emu, http, auth, "/api/users/nobody-at-all/machines")
    assert unknown.status_code == 200 and unknown.json()["value"] == []


# ---------------------------------------------------------------- files and IPs


def test_file_info_and_stats(emu, http, auth):
    row = hunt(emu, http, auth, "DeviceProcessEvents | take 1 | project SHA1, SHA256, FileName")[0]
    expected = sample("mde-file-info-response.json")
    by_sha1 = get(emu, http, auth, f"/api/files/{row['SHA1']}")
    by_sha256 = get(emu, http, auth, f"/api/files/{row['SHA256'].upper()}")
    assert by_sha1.status_code == by_sha256.status_code == 200
    assert list(by_sha1.json()) == list(expected)
    assert by_sha1.json()["@odata.context"].endswith("#Files/$entity") and by_sha1.json() == by_sha256.json()
    stats = get(emu, http, auth, f"/api/files/{row['SHA1']}/stats", lookBackHours="48").json()
    assert stats["sha1"] == row["SHA1"] and stats["organizationPrevalence"] > 0
    assert row["FileName"] in stats["topFileNames"]
    assert get(emu, http, auth, f"/api/files/{row['SHA1']}/stats", lookBackHours="721").status_code == 400
    missing = get(emu, http, auth, "/api/files/" + "0" * 40)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    assert get(emu, http, auth, "/api/files/" + "0" * 64 + "/stats").status_code == 404
    assert get(emu, http, auth, "/api/files/not-a-hash").json()["error"]["code"] == "InvalidHashValue"


def test_ip_stats(emu, http, auth):
    expected = sample("mde-ip-stats-response.json")
    r = get(emu, http, auth, "/api/ips/203.0.113.77/stats")
    assert r.status_code == 200 and list(r.json()) == list(expected)
    assert r.json()["organizationPrevalence"] > 0 and r.json()["ipAddress"] == "203.0.113.77"
    unseen = get(emu, http, auth, "/api/ips/192.0.2.1/stats").json()
    assert unseen["organizationPrevalence"] == 0 and unseen["orgFirstSeen"] is None
    assert get(emu, http, auth, "/api/ips/2001:db8::1f/stats").json()["organizationPrevalence"] > 0
    bad = get(emu, http, auth, "/api/ips/10.0.0.256/stats")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidIpAddress"


# ---------------------------------------------------------------- one world


def test_hunting_rows_name_the_entities_the_apis_return(emu, http, auth):
    fleet = machines(emu, http, auth)
    ids, names = {m["id"] for m in fleet}, {m["computerDnsName"] for m in fleet}
    rows = hunt(emu, http, auth, "DeviceProcessEvents | take 400 | project DeviceId, DeviceName, AccountName, "
                                 "AccountDomain, SHA1, SHA256, InitiatingProcessSHA1")
    assert {r["DeviceId"] for r in rows} <= ids and {r["DeviceName"] for r in rows} <= names
    for sha in {r["SHA1"] for r in rows} | {r["SHA256"] for r in rows} | {r["InitiatingProcessSHA1"] for r in rows}:
        assert get(emu, http, auth, f"/api/files/{sha}").status_code == 200, sha
    people = {r["AccountName"] for r in rows if r["AccountDomain"] != "nt authority"}
    assert len(people) >= 8
    for name in people:
        assert get(emu, http, auth, f"/api/users/{quote(name)}/machines").json()["value"], name
    network = hunt(emu, http, auth, "DeviceNetworkEvents | take 300 | project RemoteIP, LocalIP")
    for ip in {r["RemoteIP"] for r in network} | {r["LocalIP"] for r in network}:
        assert get(emu, http, auth, f"/api/ips/{ip}/stats").json()["organizationPrevalence"] > 0, ip


def test_alert_evidence_names_known_entities(emu, http, auth):
    alerts = get(emu, http, auth, "/api/alerts", **{"$expand": "evidence", "$top": "20"}).json()["value"]
    fleet = {m["id"] for m in machines(emu, http, auth)}
    for alert in alerts:
        assert alert["machineId"] in fleet
        for item in alert["evidence"]:
            if item["sha1"]:
                assert get(emu, http, auth, f"/api/files/{item['sha1']}").status_code == 200
            if item["ipAddress"]:
                assert get(emu, http, auth, f"/api/ips/{item['ipAddress']}/stats").json()["organizationPrevalence"] > 0
            if item["entityType"] == "User":
                found = get(emu, http, auth, f"/api/users/{quote(item['accountName'])}/machines").json()["value"]
                assert found, item["accountName"]


# ---------------------------------------------------------------- roles and quotas


@pytest.mark.parametrize("path, needs", [
    ("/api/machines", "Machine.Read.All or Machine.ReadWrite.All"),
    ("/api/alerts", "Alert.Read.All or Alert.ReadWrite.All"),
    ("/api/files/" + "a" * 40, "File.Read.All"),
    ("/api/ips/10.0.0.1/stats", "Ip.Read.All"),
])
def test_a_missing_role_is_403_naming_it(emu, http, path, needs):
    app = emu.add_app(emu.tenant_id, "hunting-only", roles=["AdvancedQuery.Read.All"])
    headers = bearer(emu, http, "mde", app.client_id, app.client_secret)
    r = http.get(emu.mde_url + path, headers=headers)
    assert r.status_code == 403 and r.json()["error"]["message"] == f"Missing application permission {needs}"


def test_each_family_has_its_own_quota(emu, http, auth):
    emu.api_quotas.per_minute = 2
    try:
        statuses = [get(emu, http, auth, "/api/machines").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert get(emu, http, auth, "/api/ips/10.0.0.1/stats").status_code == 200  # another bucket
        limited = get(emu, http, auth, "/api/machines")
        assert limited.json()["error"]["code"] == "TooManyRequests" and int(limited.headers["Retry-After"]) >= 1
    finally:
        emu.api_quotas.per_minute = 100


def test_graph_token_is_refused_by_mde_routes(emu, http, auth):
    r = http.get(emu.mde_url + "/api/machines", headers=auth["graph"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
