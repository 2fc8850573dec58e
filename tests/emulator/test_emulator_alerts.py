"""Alerts and incidents over HTTPS: MDE /api/alerts, Graph alerts_v2 and incidents, legacy M365D incidents.
Documented shapes, OData filters, paging (2,500 alerts each exactly once), updates and comments."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import bearer

SAMPLES = Path(__file__).resolve().parents[2] / "emulator" / "data"
GRAPH_ERROR = {"code", "message", "innerError"}
MDE_ERROR = {"code", "message", "target"}


def sample(name):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def get(emu, http, auth, path, api="graph", **params):
    base = emu.graph_url if api == "graph" else emu.mde_url
    return http.get(base + path, headers=auth[api], params=params)


def walk(http, headers, url, params=None):
    """Follow @odata.nextLink to the end; returns (items, number of pages)."""
    items, pages = [], 0
    while url:
        r = http.get(url, headers=headers, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["value"]
        pages += 1
        url, params = body.get("@odata.nextLink"), None
    return items, pages


def evidence_types(items):
    return {e["@odata.type"] for e in items}


# ---------------------------------------------------------------- shapes


def test_graph_alert_list_and_get_match_the_documented_alert(emu, http, auth):
    expected = sample("graph-alerts_v2-list-response.json")["value"][0]
    r = get(emu, http, auth, "/v1.0/security/alerts_v2", **{"$top": "5"})
    body = r.json()
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert body["@odata.context"] == f"{emu.graph_url}/v1.0/$metadata#security/alerts_v2"
    assert len(body["value"]) == 5 and body["@odata.nextLink"].startswith(emu.graph_url + "/v1.0/security/alerts_v2?")
    alert = body["value"][0]
    assert list(alert) == list(expected)
    device = next(e for e in alert["evidence"] if e["@odata.type"].endswith("deviceEvidence"))
    documented = {e["@odata.type"]: set(e) for e in expected["evidence"]}
    assert set(device) == documented["#microsoft.graph.security.deviceEvidence"]
    for kind in ("processEvidence", "fileEvidence"):
        ours = next(e for e in alert["evidence"] if e["@odata.type"].endswith(kind))
        assert set(ours) == documented[f"#microsoft.graph.security.{kind}"], kind
    single = get(emu, http, auth, f"/v1.0/security/alerts_v2/{alert['id']}").json()
    assert single.pop("@odata.context").endswith("#security/alerts_v2/$entity") and single == alert
    assert list(single) == list(sample("graph-alert-get-response.json"))


def test_mde_alerts_match_the_documented_alert_with_and_without_evidence(emu, http, auth):
    documented = sample("mde-alerts-list-expand-evidence-response.json")["value"][0]
    plain = get(emu, http, auth, "/api/alerts", api="mde", **{"$top": "3"}).json()
    assert plain["@odata.context"] == f"{emu.mde_url}/api/$metadata#Alerts"
    assert all(a["evidence"] == [] for a in plain["value"])
    assert set(plain["value"][0]) == set(documented) | set(sample("mde-alerts-list-response.json")["value"][0])
    full = get(emu, http, auth, "/api/alerts", api="mde", **{"$top": "3", "$expand": "evidence"}).json()
    kinds = {e["entityType"] for a in full["value"] for e in a["evidence"]}
    assert {"User", "Process", "File", "Ip"} <= kinds
    for item in full["value"][0]["evidence"]:
        assert list(item) == list(documented["evidence"][0])  # every key, in order, null when unused
    one = get(emu, http, auth, f"/api/alerts/{full['value'][0]['id']}", api="mde", **{"$expand": "evidence"}).json()
    assert one.pop("@odata.context").endswith("#Alerts/$entity") and one == full["value"][0]


def test_the_same_alert_three_ways(emu, http, auth):
    graph = get(emu, http, auth, "/v1.0/security/alerts_v2", **{"$top": "1"}).json()["value"][0]
    mde = get(emu, http, auth, f"/api/alerts/{graph['id']}", api="mde").json()
    assert mde["incidentId"] == int(graph["incidentId"]) and mde["lastUpdateTime"] == graph["lastUpdateDateTime"]
    assert mde["severity"].lower() == graph["severity"] and mde["title"] == graph["title"]
    device = next(e for e in graph["evidence"] if e["@odata.type"].endswith("deviceEvidence"))
    assert device["mdeDeviceId"] == mde["machineId"] and device["deviceDnsName"] == mde["computerDnsName"]
    incident = get(emu, http, auth, f"/api/incidents/{graph['incidentId']}", api="xdr").json()
    embedded = next(a for a in incident["alerts"] if a["alertId"] == graph["id"])
    assert embedded["devices"][0]["deviceId"] == mde["machineId"]


def test_graph_incidents_with_and_without_alerts(emu, http, auth):
    documented = sample("graph-incidents-list-response.json")["value"][0]
    body = get(emu, http, auth, "/v1.0/security/incidents", **{"$top": "2"}).json()
    assert body["@odata.context"].endswith("#security/incidents") and "alerts" not in body["value"][0]
    assert set(body["value"][0]) == set(documented)
    expanded = get(emu, http, auth, "/v1.0/security/incidents", **{"$top": "2", "$expand": "alerts"}).json()
    incident = expanded["value"][0]
    assert incident["alerts"] and all(a["incidentId"] == incident["id"] for a in incident["alerts"])
    one = get(emu, http, auth, f"/v1.0/security/incidents/{incident['id']}", **{"$expand": "alerts"}).json()
    assert one.pop("@odata.context").endswith("#security/incidents/$entity") and one == incident
    assert "alerts" not in get(emu, http, auth, f"/v1.0/security/incidents/{incident['id']}").json()


def test_legacy_incidents_newest_first_with_embedded_alerts(emu, http, auth):
    body = get(emu, http, auth, "/api/incidents", api="xdr").json()
    assert body["@odata.context"] == f"{emu.mde_url}/api/$metadata#Incidents"
    times = [i["lastUpdateTime"] for i in body["value"]]
    assert times == sorted(times, reverse=True)
    incident = body["value"][0]
    assert {"incidentId", "incidentName", "createdTime", "lastUpdateTime", "classification", "determination",
            "status", "severity", "tags", "comments", "alerts"} <= set(incident)
    assert incident["status"] in ("Active", "Resolved", "InProgress", "Redirected")
    assert {"alertId", "devices", "entities", "mitreTechniques"} <= set(incident["alerts"][0])
    too_many = get(emu, http, auth, "/api/incidents", api="xdr", **{"$top": "101"})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "ODataError"
    assert get(emu, http, auth, "/api/incidents", api="mde").status_code == 401  # its own token audience


@pytest.mark.parametrize("api, path", [
    ("graph", "/v1.0/security/alerts_v2/da000_0"), ("graph", "/v1.0/security/incidents/999999"),
    ("mde", "/api/alerts/da000_0"), ("xdr", "/api/incidents/999999"),
])
def test_unknown_ids_are_404_in_the_family_envelope(emu, http, auth, api, path):
    r = get(emu, http, auth, path, api=api)
    assert r.status_code == 404
    error = r.json()["error"]
    if api == "graph":
        assert error["code"] == "NotFound" and set(error) == GRAPH_ERROR
    else:
        assert error["code"] == "ResourceNotFound" and set(error) == MDE_ERROR


@pytest.mark.parametrize("api, path, params", [
    ("mde", "/api/alerts", {"$filter": "assignedTo eq 'nobody@contoso.com'"}),
    ("xdr", "/api/incidents", {"$filter": "status eq 'Redirected'"}),
    ("graph", "/v1.0/security/incidents", {"$filter": "assignedTo eq 'nobody@contoso.com'", "$count": "true"}),
])
def test_empty_lists(emu, http, auth, api, path, params):
    body = get(emu, http, auth, path, api=api, **params).json()
    assert body["value"] == [] and "@odata.nextLink" not in body and body.get("@odata.count", 0) == 0


def test_a_machine_without_alerts_has_an_empty_alert_list(emu, http, auth):
    with_alerts = {a["machineId"] for a in get(emu, http, auth, "/api/alerts", api="mde").json()["value"]}
    quiet = next(m for m in get(emu, http, auth, "/api/machines", api="mde").json()["value"]
                 if m["id"] not in with_alerts)
    r = get(emu, http, auth, f"/api/machines/{quiet['id']}/alerts", api="mde")
    assert r.status_code == 200 and r.json()["value"] == []
    some = next(iter(with_alerts))
    listed = get(emu, http, auth, f"/api/machines/{some}/alerts", api="mde").json()["value"]
    assert listed and all(a["machineId"] == some for a in listed)


# ---------------------------------------------------------------- filters


def test_graph_filters(emu, http, auth):
    everything = get(emu, http, auth, "/v1.0/security/alerts_v2", **{"$count": "true"}).json()
    total = everything["@odata.count"]
    high = get(emu, http, auth, "/v1.0/security/alerts_v2", **{"$filter": "severity eq 'high'"}).json()["value"]
    assert high and all(a["severity"] == "high" for a in high) and len(high) < total
    middle = sorted(a["lastUpdateDateTime"] for a in everything["value"])[total // 2]
    newer = get(emu, http, auth, "/v1.0/security/alerts_v2",
                **{"$filter": f"lastUpdateDateTime ge {middle} and status ne 'resolved'"}).json()["value"]
    assert newer and all(a["lastUpdateDateTime"] >= middle and a["status"] != "resolved" for a in newer)
    either = get(emu, http, auth, "/v1.0/security/alerts_v2",
                 **{"$filter": "severity eq 'high' or severity eq 'low'", "$count": "true"}).json()
    assert {a["severity"] for a in either["value"]} <= {"high", "low"} and either["@odata.count"] > len(high)
    none = get(emu, http, auth, "/v1.0/security/alerts_v2", **{"$filter": "assignedTo eq 'nobody@contoso.com'"})
    assert none.status_code == 200 and none.json()["value"] == [] and "@odata.nextLink" not in none.json()
    incidents = get(emu, http, auth, "/v1.0/security/incidents", **{"$filter": "status eq 'active'"}).json()["value"]
    assert incidents and all(i["status"] == "active" for i in incidents)


def test_mde_filters(emu, http, auth):
    alerts = get(emu, http, auth, "/api/alerts", api="mde").json()["value"]
    some = alerts[len(alerts) // 2]
    by_incident = get(emu, http, auth, "/api/alerts", api="mde", **{"$filter": f"incidentId eq {some['incidentId']}"})
    assert some["id"] in [a["id"] for a in by_incident.json()["value"]]
    since = get(emu, http, auth, "/api/alerts", api="mde",
                **{"$filter": f"lastUpdateTime ge {some['lastUpdateTime']} and severity eq 'High'"}).json()["value"]
    assert all(a["lastUpdateTime"] >= some["lastUpdateTime"] and a["severity"] == "High" for a in since)
    legacy = get(emu, http, auth, "/api/incidents", api="xdr", **{"$filter": "status eq 'Active'"}).json()["value"]
    assert legacy and all(i["status"] == "Active" for i in legacy)


@pytest.mark.parametrize("params", [
    {"$filter": "severity eq"},                                 # syntax
    {"$filter": "nosuchfield eq 'x'"},                          # not a documented field
    {"$filter": "severity eq 'catastrophic'"},                  # not an enum member
    {"$filter": "lastUpdateDateTime ge '2024-01-01T00:00:00Z'"},  # a quoted datetime is a string
    {"$top": "0"}, {"$top": "ten"}, {"$skip": "-1"}, {"$count": "maybe"}, {"$expand": "evidence"},
])
def test_bad_graph_options_are_400_bad_request(emu, http, auth, params):
    r = get(emu, http, auth, "/v1.0/security/alerts_v2", **params)
    assert r.status_code == 400 and set(r.json()["error"]) == GRAPH_ERROR
    assert r.json()["error"]["code"] == "BadRequest"


@pytest.mark.parametrize("params", [
    {"$filter": "severity eq 'High' and"}, {"$filter": "lastUpdateDateTime ge 2024-01-01Z"},
    {"$filter": "incidentId eq 'seven'"}, {"$top": "10001"}, {"$expand": "machines"},
])
def test_bad_mde_options_are_400_odata_error(emu, http, auth, params):
    r = get(emu, http, auth, "/api/alerts", api="mde", **params)
    assert r.status_code == 400 and set(r.json()["error"]) == MDE_ERROR
    assert r.json()["error"]["code"] == "ODataError"


# ---------------------------------------------------------------- paging


def test_2500_alerts_page_exactly_once_on_graph_and_mde(emu, http, auth):
    ids = emu.seed_alerts(2_500)
    assert len(set(ids)) == 2_500
    first = get(emu, http, auth, f"/v1.0/security/alerts_v2/{ids[0]}").json()["lastUpdateDateTime"]
    started = time.perf_counter()
    items, pages = walk(http, auth["graph"], emu.graph_url + "/v1.0/security/alerts_v2",
                        {"$filter": f"lastUpdateDateTime ge {first}"})
    assert [a["id"] for a in items] == ids and pages == 25
    times = [a["lastUpdateDateTime"] for a in items]
    assert times == sorted(times) and len(set(times)) == len(times)
    mde_items, mde_pages = walk(http, auth["mde"], emu.mde_url + "/api/alerts",
                                {"$filter": f"lastUpdateTime ge {first}", "$top": "1000"})
    assert [a["id"] for a in mde_items] == ids and mde_pages == 25  # page_size caps a larger $top
    assert time.perf_counter() - started < 8


def test_page_size_top_skip_and_next_link_base(emu, http, auth):
    emu.page_size = 10
    body = get(emu, http, auth, "/api/machines", api="mde", **{"$top": "4", "$skip": "2"}).json()
    assert len(body["value"]) == 4 and "$skip=6" in body["@odata.nextLink"] and "$top=4" in body["@odata.nextLink"]
    items, pages = walk(http, auth["mde"], emu.mde_url + "/api/machines")
    assert len(items) == len({m["id"] for m in items}) == 49 and pages == 5  # 48 + the seeded incident's
    emu.next_link_base = "https://elsewhere.example:8443"
    link = get(emu, http, auth, "/v1.0/security/incidents").json()["@odata.nextLink"]
    assert link.startswith("https://elsewhere.example:8443/v1.0/security/incidents?")
    emu.reset()
    assert emu.page_size == 100 and emu.next_link_base is None


# ---------------------------------------------------------------- updates and comments


def test_graph_alert_update_and_comments(emu, http, auth):
    alert = get(emu, http, auth, "/v1.0/security/alerts_v2", **{"$filter": "status eq 'new'"}).json()["value"][0]
    url = f"{emu.graph_url}/v1.0/security/alerts_v2/{alert['id']}"
    r = http.patch(url, headers=auth["graph"], json={"status": "Resolved", "classification": "TruePositive",
                                                     "determination": "MultiStagedAttack", "assignedTo": "me@x"})
    updated = r.json()
    assert r.status_code == 200 and updated["status"] == "resolved" and updated["determination"] == "multiStagedAttack"
    assert updated["resolvedDateTime"] and updated["lastUpdateDateTime"] > alert["lastUpdateDateTime"]
    newest = get(emu, http, auth, "/v1.0/security/alerts_v2").json()["value"][-1]
    assert newest["id"] == alert["id"]  # the update made it the most recently updated alert
    expected = sample("graph-incident-comment-post-response.json")
    first = http.post(url + "/comments", headers=auth["graph"],
                      json={"@odata.type": "microsoft.graph.security.alertComment", "comment": "one"}).json()
    second = http.post(url + "/comments", headers=auth["graph"], json={"comment": "two"}).json()
    assert set(second) == set(expected) and [c["comment"] for c in second["value"]] == ["one", "two"]
    assert set(second["value"][0]) == set(expected["value"][0]) and len(first["value"]) == 1
    mde = get(emu, http, auth, f"/api/alerts/{alert['id']}", api="mde").json()
    assert mde["status"] == "Resolved" and [c["comment"] for c in mde["comments"]] == ["one", "two"]
    bad = http.patch(url, headers=auth["graph"], json={"classification": "falsePositive", "determination": "malware"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"
    assert http.patch(url, headers=auth["graph"], json={"severity": "low"}).status_code == 400
    assert http.post(url + "/comments", headers=auth["graph"], json={}).status_code == 400


def test_mde_alert_update_with_comment_and_the_incident_follows(emu, http, auth):
    incident = next(i for i in get(emu, http, auth, "/api/incidents", api="xdr").json()["value"]
                    if i["status"] == "Active" and len(i["alerts"]) == 1)
    alert_id = incident["alerts"][0]["alertId"]
    r = http.patch(f"{emu.mde_url}/api/alerts/{alert_id}", headers=auth["mde"],
                   json={"status": "Resolved", "classification": "FalsePositive", "determination": "NotMalicious",
                         "comment": "benign admin script"})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "Resolved" and body["classification"] == "FalsePositive"
    assert body["comments"][-1]["comment"] == "benign admin script" and body["comments"][-1]["createdBy"]
    after = get(emu, http, auth, f"/api/incidents/{incident['incidentId']}", api="xdr").json()
    assert after["status"] == "Resolved"  # its only alert is resolved
    assert http.patch(f"{emu.mde_url}/api/alerts/{alert_id}", headers=auth["mde"],
                      json={"status": "Closed"}).json()["error"]["code"] == "InvalidRequestBody"


def test_graph_incident_update_and_comments(emu, http, auth):
    incident = get(emu, http, auth, "/v1.0/security/incidents", **{"$filter": "status eq 'active'",
                                                                     "$expand": "alerts"}).json()["value"][0]
    url = f"{emu.graph_url}/v1.0/security/incidents/{incident['id']}"
    r = http.patch(url, headers=auth["graph"], json={"status": "resolved", "customTags": ["t1"],
                                                     "classification": "informationalExpectedActivity",
                                                     "determination": "securityTesting"})
    assert r.status_code == 200 and r.json()["status"] == "resolved" and r.json()["customTags"] == ["t1"]
    for alert in incident["alerts"]:  # resolving an incident resolves its alerts
        assert get(emu, http, auth, f"/v1.0/security/alerts_v2/{alert['id']}").json()["status"] == "resolved"
    comments = http.post(url + "/comments", headers=auth["graph"], json={"comment": "pen test"}).json()
    assert comments["value"][-1]["comment"] == "pen test"
    assert comments["@odata.context"].endswith(f"#security/incidents('{incident['id']}')/comments")


def test_writes_need_the_write_role(emu, http):
    app = emu.add_app(emu.tenant_id, "alert-reader", roles=["SecurityAlert.Read.All", "Alert.Read.All"])
    graph = bearer(emu, http, "graph", app.client_id, app.client_secret)
    alert = http.get(emu.graph_url + "/v1.0/security/alerts_v2?$top=1", headers=graph).json()["value"][0]
    r = http.patch(f"{emu.graph_url}/v1.0/security/alerts_v2/{alert['id']}", headers=graph, json={"status": "new"})
    assert r.status_code == 403 and "SecurityAlert.ReadWrite.All" in r.json()["error"]["message"]
    mde = bearer(emu, http, "mde", app.client_id, app.client_secret)
    r = http.patch(f"{emu.mde_url}/api/alerts/{alert['id']}", headers=mde, json={"comment": "x"})
    assert r.status_code == 403 and r.json()["error"]["message"] == "Missing application permission Alert.ReadWrite.All"


def test_wrong_host_for_each_family(emu, http, auth):
    on_mde = http.get(emu.mde_url + "/v1.0/security/alerts_v2", headers=auth["graph"])
    on_graph = http.get(emu.graph_url + "/api/machines", headers=auth["mde"])
    assert on_mde.status_code == on_graph.status_code == 404
    assert set(on_mde.json()["error"]) == MDE_ERROR and set(on_graph.json()["error"]) == GRAPH_ERROR
    assert http.get(emu.base_url + "/v1.0/security/alerts_v2?$top=1", headers=auth["graph"]).status_code == 200
    assert http.get(emu.base_url + "/api/machines?$top=1", headers=auth["mde"]).status_code == 200
