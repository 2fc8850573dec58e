"""Machine actions and indicators over HTTPS with plain requests: documented shapes and statuses, the body checks,
the Pending -> InProgress -> Succeeded lifecycle (and Failed, TimeOut, Cancelled), "already in progress", the
device's isolation, the machine-action filters and paging, the investigation package, and indicators with their
quota and batch import."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest

from emulator.world import now_ticks

from .conftest import bearer

SAMPLES = Path(__file__).resolve().parents[2] / "emulator" / "data"
MDE_ERROR = {"code", "message", "target"}
SHA1 = "dc154f12dcc716a56b7147b2e1f260dbaf8e67e6"
BODIES = {  # URL suffix -> (body, type, scope)
    "isolate": ({"Comment": "c", "IsolationType": "Selective"}, "Isolate", "Selective"),
    "unisolate": ({"Comment": "c"}, "Unisolate", None),
    "runAntiVirusScan": ({"Comment": "c", "ScanType": "Quick"}, "RunAntiVirusScan", "Quick"),
    "collectInvestigationPackage": ({"Comment": "c"}, "CollectInvestigationPackage", None),
    "restrictCodeExecution": ({"Comment": "c"}, "RestrictCodeExecution", None),
    "unrestrictCodeExecution": ({"Comment": "c"}, "UnrestrictCodeExecution", None),
    "StopAndQuarantineFile": ({"Comment": "c", "Sha1": SHA1.upper()}, "StopAndQuarantineFile", None),
}


def sample(name):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def windows(emu, n=0):
    return [m for m in emu.stores.machines.all() if m["osPlatform"].startswith("Windows")][n]


def linux(emu):
    return next(m for m in emu.stores.machines.all() if m["osPlatform"] == "Linux")


class Api:
    """Short calls on the MDE host with the default app's token."""

    def __init__(self, emu, http, headers):
        self.emu, self.http, self.headers = emu, http, headers

    def post(self, path, body=None, **kw):
        return self.http.post(self.emu.mde_url + path, json=body, headers=self.headers, **kw)

    def get(self, path, **params):
        return self.http.get(self.emu.mde_url + path, headers=self.headers, params=params)

    def delete(self, path):
        return self.http.delete(self.emu.mde_url + path, headers=self.headers)

    def act(self, machine_id, suffix="isolate", body=None):
        return self.post(f"/api/machines/{machine_id}/{suffix}", body or BODIES[suffix][0])

    def wait_status(self, action_id, wanted, timeout=10.0):
        """Poll GET /api/machineactions/{id} until its status is in ``wanted``; returns the statuses seen."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.get(f"/api/machineactions/{action_id}").json()["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in wanted:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"action {action_id} never reached {wanted}; saw {seen}")


@pytest.fixture
def api(emu, http, auth):
    return Api(emu, http, auth["mde"])


# ---------------------------------------------------------------- machine actions: shapes


def test_an_isolation_is_201_with_the_documented_machine_action(emu, api):
    machine = windows(emu)
    emu.action_timing = (30, 30)
    r = api.act(machine["id"], "isolate", sample("mde-machine-isolate-request.json"))
    assert r.status_code == 201 and r.headers["Content-Type"].startswith("application/json")
    action = r.json()
    assert action.pop("@odata.context") == f"{emu.mde_url}/api/$metadata#MachineActions/$entity"
    documented = sample("mde-machineaction-get-response.json")
    documented.pop("@odata.context")
    assert list(action)[:len(documented)] == list(documented)  # every documented key, in order, then the rest
    assert {"cancellationRequestor", "cancellationComment", "cancellationDateTimeUtc", "title"} <= set(action)
    assert action["type"] == "Isolate" and action["scope"] == "Full" and action["status"] == "Pending"
    assert action["machineId"] == machine["id"] and action["computerDnsName"] == machine["computerDnsName"]
    assert action["requestor"] == emu.client_id and action["requestorComment"] == "Isolate machine due to alert 1234"
    assert action["creationDateTimeUtc"].endswith("Z") and action["relatedFileInfo"] is None
    again = api.get(f"/api/machineactions/{action['id']}").json()
    assert again.pop("@odata.context").endswith("#MachineActions/$entity") and again == action
    listed = api.get("/api/machineactions").json()
    assert listed["@odata.context"] == f"{emu.mde_url}/api/$metadata#MachineActions"
    published = set(sample("mde-machineactions-list-response.json")["value"][0])
    assert published - {"lastUpdateTimeUtc"} <= set(listed["value"][0])  # the entity page spells it lastUpdateDateTimeUtc
    assert listed["value"][0] == action  # newest first


@pytest.mark.parametrize("suffix", list(BODIES))
def test_every_action_is_created_with_its_type_and_scope(emu, api, suffix):
    body, kind, scope = BODIES[suffix]
    r = api.act(windows(emu)["id"], suffix, body)
    assert r.status_code == 201, r.text
    assert (r.json()["type"], r.json()["scope"]) == (kind, scope)
    if kind == "StopAndQuarantineFile":
        assert r.json()["relatedFileInfo"] == {"fileIdentifier": SHA1, "fileIdentifierType": "Sha1"}
    assert [a.type for a in emu.actions_on(windows(emu)["id"])][0] == kind


@pytest.mark.parametrize("suffix, body, code, text", [
    ("isolate", {"IsolationType": "Full"}, "InvalidRequestBody", "'Comment'"),
    ("isolate", {"comment": "lower-case key", "IsolationType": "Full"}, "InvalidRequestBody", "'Comment'"),
    ("isolate", {"Comment": "  "}, "InvalidRequestBody", "'Comment'"),
    ("isolate", {"Comment": "c", "IsolationType": "Partial"}, "InvalidRequestBody", "Full or Selective"),
    ("runAntiVirusScan", {"Comment": "c"}, "InvalidRequestBody", "'ScanType' is required"),
    ("runAntiVirusScan", {"Comment": "c", "ScanType": "Deep"}, "InvalidRequestBody", "Quick or Full"),
    ("StopAndQuarantineFile", {"Comment": "c"}, "InvalidHashValue", "40 hexadecimal"),
    ("StopAndQuarantineFile", {"Comment": "c", "Sha1": SHA1[:-1]}, "InvalidHashValue", "40 hexadecimal"),
    ("unisolate", ["not", "an", "object"], "InvalidRequestBody", "Request body is incorrect"),
])
def test_bad_bodies_are_400_and_create_nothing(emu, api, suffix, body, code, text):
    machine = windows(emu)
    before = len(emu.actions_on(machine["id"]))
    r = api.act(machine["id"], suffix, body)
    assert r.status_code == 400 and set(r.json()["error"]) == MDE_ERROR
    assert r.json()["error"]["code"] == code and text in r.json()["error"]["message"]
    assert len(emu.actions_on(machine["id"])) == before


def test_unknown_machines_names_and_unsupported_platforms(emu, api):
    r = api.act("0" * 40)
    assert r.status_code == 404 and r.json()["error"] == {**r.json()["error"], "code": "ResourceNotFound",
                                                          "message": f"Machine {'0' * 40} was not found"}
    # GET /api/machines/{name} takes a DNS name; the actions take the device id.
    assert api.act(windows(emu)["computerDnsName"]).status_code == 404
    box = linux(emu)
    for suffix, body in (("restrictCodeExecution", None), ("StopAndQuarantineFile", None),
                         ("isolate", {"Comment": "c", "IsolationType": "Selective"})):
        r = api.act(box["id"], suffix, body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "OsPlatformNotSupported", suffix
    assert api.act(box["id"], "isolate", {"Comment": "c"}).status_code == 201  # full isolation works on Linux


def test_each_action_needs_its_own_permission(emu, http, api):
    emu.add_app(emu.tenant_id, "scan-only-app", "scan-only-secret-value", roles=["Machine.Scan", "Machine.Read.All"])
    headers = bearer(emu, http, "mde", "scan-only-app", "scan-only-secret-value")
    machine = windows(emu)
    r = http.post(f"{emu.mde_url}/api/machines/{machine['id']}/isolate", json=BODIES["isolate"][0], headers=headers)
    assert r.status_code == 403 and "Machine.Isolate" in r.json()["error"]["message"]
    r = http.post(f"{emu.mde_url}/api/machines/{machine['id']}/runAntiVirusScan", json=BODIES["runAntiVirusScan"][0],
                  headers=headers)
    assert r.status_code == 201
    assert http.get(f"{emu.mde_url}/api/machineactions/{r.json()['id']}", headers=headers).status_code == 200
    r = http.get(f"{emu.mde_url}/api/indicators", headers=headers)
    assert r.status_code == 403 and "Ti.ReadWrite" in r.json()["error"]["message"]


# ---------------------------------------------------------------- lifecycle


def test_pending_then_in_progress_then_succeeded_and_the_device_is_isolated(emu, api):
    machine = windows(emu)
    emu.action_timing = (0.3, 1.0)
    assert not emu.isolated(machine["id"])
    created = api.act(machine["id"]).json()
    assert created["status"] == "Pending" and created["lastUpdateDateTimeUtc"] == created["creationDateTimeUtc"]
    seen = api.wait_status(created["id"], {"Succeeded"})
    assert seen == ["Pending", "InProgress", "Succeeded"]
    done = api.get(f"/api/machineactions/{created['id']}").json()
    assert done["lastUpdateDateTimeUtc"] > done["creationDateTimeUtc"] and done["errorHResult"] == 0
    assert emu.isolated(machine["id"]) and emu.isolated(machine["computerDnsName"])
    released = api.act(machine["id"], "unisolate").json()
    assert emu.isolated(machine["id"])  # until the release succeeds
    api.wait_status(released["id"], {"Succeeded"})
    assert not emu.isolated(machine["id"])


def test_failed_and_timed_out_actions_on_request(emu, api):
    one, two = windows(emu, 0), windows(emu, 1)
    emu.action_timing = (0.1, 0.1)
    emu.next_action_outcome = "Failed"
    failed = api.act(one["id"]).json()
    ok = api.act(two["id"]).json()  # next_action_outcome is used once
    assert api.wait_status(failed["id"], {"Failed", "Succeeded"})[-1] == "Failed"
    assert api.wait_status(ok["id"], {"Failed", "Succeeded"})[-1] == "Succeeded"
    assert api.get(f"/api/machineactions/{failed['id']}").json()["errorHResult"] != 0
    assert not emu.isolated(one["id"]) and emu.isolated(two["id"])

    emu.set_device_action_outcome(one["computerDnsName"], "TimeOut")
    emu.action_timing = (0.3, 0.3)
    scans = [api.act(one["id"], "runAntiVirusScan").json(), api.act(one["id"], "collectInvestigationPackage").json()]
    for scan in scans:  # a device that never answers: Pending until it times out, never InProgress
        seen = api.wait_status(scan["id"], {"TimeOut", "Succeeded"})
        assert scan["status"] == "Pending" and seen[-1] == "TimeOut" and "InProgress" not in seen
    emu.set_device_action_outcome(one["id"], None)
    with pytest.raises(ValueError):
        emu.next_action_outcome = "Cancelled"  # only a cancel request cancels
    with pytest.raises(ValueError):
        emu.action_timing = (-1, 0)


def test_the_same_action_twice_is_400_already_in_progress(emu, api):
    machine = windows(emu)
    emu.action_timing = (30, 30)
    first = api.act(machine["id"])
    second = api.act(machine["id"], "isolate", {"Comment": "again", "IsolationType": "Full"})
    assert first.status_code == 201 and second.status_code == 400
    assert second.json()["error"]["message"] == "Action is already in progress"
    assert api.act(machine["id"], "runAntiVirusScan").status_code == 201  # another type is fine
    assert len(emu.actions_on(machine["id"], "Isolate")) == 1
    emu.finish_action(first.json()["id"])
    assert api.act(machine["id"]).status_code == 201  # once it is over, a new one may start


def test_cancel_a_pending_action(emu, api):
    machine = windows(emu)
    emu.action_timing = (30, 30)
    action = api.act(machine["id"]).json()
    assert api.post(f"/api/machineactions/{action['id']}/cancel", {"comment": "lower case"}).status_code == 400
    r = api.post(f"/api/machineactions/{action['id']}/cancel", {"Comment": "wrong device"})
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled.pop("@odata.context").endswith("#MachineActions/$entity")
    assert cancelled["status"] == "Cancelled" and cancelled["cancellationComment"] == "wrong device"
    assert cancelled["cancellationRequestor"] == emu.client_id and cancelled["cancellationDateTimeUtc"]
    assert api.get(f"/api/machineactions/{action['id']}").json()["status"] == "Cancelled"
    again = api.post(f"/api/machineactions/{action['id']}/cancel", {"Comment": "twice"})
    assert again.status_code == 400 and "already Cancelled" in again.json()["error"]["message"]
    assert api.post("/api/machineactions/no-such-action/cancel", {"Comment": "x"}).status_code == 404
    assert api.get("/api/machineactions/no-such-action").status_code == 404
    assert not emu.isolated(machine["id"])
    assert api.act(machine["id"]).status_code == 201  # a cancelled action no longer blocks a new one


# ---------------------------------------------------------------- list, filters, paging


def test_machine_action_filters_as_the_connector_sends_them(emu, api):
    one, two = windows(emu, 2), windows(emu, 3)
    emu.action_timing = (30, 30)
    isolate = api.act(one["id"]).json()
    scan = api.act(one["id"], "runAntiVirusScan").json()
    other = api.act(two["id"]).json()
    emu.finish_action(scan["id"])

    def ids(flt):
        r = api.get("/api/machineactions", **{"$filter": flt})
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["value"]]

    running = "(status eq 'Pending' or status eq 'InProgress')"
    assert ids(f"(machineId eq '{one['id']}') and (type eq 'Isolate') and {running}") == [isolate["id"]]
    assert ids(f"machineId eq '{one['id']}' and {running}") == [isolate["id"]]
    assert ids(f"machineId eq '{one['id']}' and status eq 'Succeeded' and type eq 'RunAntiVirusScan'") == [scan["id"]]
    assert ids(f"type eq 'Isolate' and requestor eq '{emu.client_id}'") == [other["id"], isolate["id"]]
    since = isolate["creationDateTimeUtc"]
    assert ids(f"creationDateTimeUtc ge {since}") == [other["id"], scan["id"], isolate["id"]]
    assert len(ids("creationDateTimeUtc lt 2000-01-01T00:00:00Z")) == 0
    r = api.get("/api/machineactions", **{"$filter": "computerDnsName eq 'x'"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ODataError"
    assert "machineId" in r.json()["error"]["message"]


def test_machine_actions_page_with_top_skip_and_next_link(emu, api):
    emu.action_timing = (0, 0)
    for n in range(5):
        assert api.act(windows(emu, n)["id"], "runAntiVirusScan").status_code == 201
    everything = [a["id"] for a in api.get("/api/machineactions").json()["value"]]
    assert len(everything) == len(emu.stores.actions.all()) > 5
    emu.page_size = 4
    first = api.get("/api/machineactions").json()
    assert len(first["value"]) == 4 and first["@odata.nextLink"].startswith(f"{emu.mde_url}/api/machineactions?")
    seen, link = list(first["value"]), first["@odata.nextLink"]
    while link:
        body = api.http.get(link, headers=api.headers).json()
        seen += body["value"]
        link = body.get("@odata.nextLink")
    assert [a["id"] for a in seen] == everything
    assert [a["id"] for a in api.get("/api/machineactions", **{"$skip": "2", "$top": "2"}).json()["value"]] \
        == everything[2:4]
    assert api.get("/api/machineactions", **{"$top": "10001"}).status_code == 400


# ---------------------------------------------------------------- investigation package


def test_the_investigation_package_uri_once_the_collection_succeeded(emu, api):
    machine = windows(emu)
    emu.action_timing = (30, 30)
    action = api.act(machine["id"], "collectInvestigationPackage").json()
    early = api.get(f"/api/machineactions/{action['id']}/GetPackageUri")
    assert early.status_code == 404 and "Pending" in early.json()["error"]["message"]
    scan = api.act(machine["id"], "runAntiVirusScan").json()
    assert api.get(f"/api/machineactions/{scan['id']}/GetPackageUri").status_code == 400
    emu.finish_action(action["id"])
    r = api.get(f"/api/machineactions/{action['id']}/GetPackageUri")
    assert r.status_code == 200 and r.json()["@odata.context"].endswith("#Edm.String")
    url = r.json()["value"]
    assert url.startswith(f"{emu.mde_url}/safedownload/") and "token=" in url
    package = api.http.get(url)  # the link carries its own token: no bearer
    assert package.status_code == 200 and package.headers["Content-Type"] == "application/zip"
    summary = zipfile.ZipFile(io.BytesIO(package.content)).read("Summary.txt").decode()
    assert machine["computerDnsName"] in summary and action["id"] in summary
    assert api.http.get(url.replace("token=", "token=x")).status_code == 403


# ---------------------------------------------------------------- indicators

IOC = {"indicatorValue": "198.51.100.77", "indicatorType": "IpAddress", "action": "Block", "title": "C2",
       "description": "seen in a hunt", "severity": "High", "expirationTime": "2099-01-01T00:00:00Z"}


def test_an_indicator_is_created_with_200_in_the_documented_shape(emu, api):
    r = api.post("/api/indicators", sample("mde-indicator-post-request.json") | {"expirationTime": "2099-12-12T00:00:00Z"})
    assert r.status_code == 200, r.text
    made = r.json()
    assert made.pop("@odata.context") == f"{emu.mde_url}/api/$metadata#Indicators/$entity"
    documented = sample("mde-indicator-entity.json")
    assert list(made)[:len(documented)] == list(documented)
    assert made["indicatorValue"] == "220e7d15b011d7fac48f2bd61114db1022197f7f" and made["indicatorType"] == "FileSha1"
    assert made["rbacGroupNames"] == ["group1", "group2"] and made["expirationTime"] == "2099-12-12T00:00:00Z"
    assert made["createdBy"] == emu.client_id and made["sourceType"] == "AadApp"
    listed = api.get("/api/indicators").json()
    assert listed["@odata.context"] == f"{emu.mde_url}/api/$metadata#Indicators"
    assert set(sample("mde-indicators-list-response.json")["value"][0]) <= set(listed["value"][-1])
    assert listed["value"][-1] == made


def test_the_same_value_and_type_updates_the_indicator(emu, api):
    first = api.post("/api/indicators", IOC).json()
    second = api.post("/api/indicators", IOC | {"title": "C2 (confirmed)", "action": "Warn"}).json()
    assert second["id"] == first["id"] and second["title"] == "C2 (confirmed)" and second["action"] == "Warn"
    assert second["lastUpdateTime"] > first["lastUpdateTime"]
    sha = api.post("/api/indicators", IOC | {"indicatorValue": SHA1.upper(), "indicatorType": "FileSha1"}).json()
    again = api.post("/api/indicators", IOC | {"indicatorValue": SHA1, "indicatorType": "FileSha1"}).json()
    assert sha["id"] == again["id"] and again["indicatorValue"] == SHA1
    other_type = api.post("/api/indicators", IOC | {"indicatorValue": "contoso-c2.example", "indicatorType": "DomainName"})
    assert other_type.json()["id"] not in (first["id"], sha["id"])


@pytest.mark.parametrize("change, code, text", [
    ({"title": None}, "InvalidRequestBody", "'title' is required"),
    ({"description": ""}, "InvalidRequestBody", "'description' is required"),
    ({"indicatorType": "Cidr"}, "InvalidRequestBody", "Invalid indicatorType"),
    ({"action": "Quarantine"}, "InvalidRequestBody", "Invalid action"),
    ({"severity": "Critical"}, "InvalidRequestBody", "Invalid severity"),
    ({"action": "Audit"}, "InvalidRequestBody", "generateAlert"),
    ({"indicatorType": "FileSha256", "indicatorValue": SHA1}, "InvalidHashValue", "64 hexadecimal"),
    ({"indicatorValue": "198.51.100.0/24"}, "InvalidIpAddress", "CIDR"),
    ({"indicatorValue": "10.0.0.10"}, "InvalidIpAddress", "external"),
    ({"indicatorValue": "not-an-ip"}, "InvalidIpAddress", "Invalid IP"),
    ({"indicatorType": "DomainName", "indicatorValue": "https://contoso.com/x"}, "InvalidDomainName", "domain"),
    ({"indicatorType": "Url", "indicatorValue": "contoso.com/x"}, "InvalidUrl", "http"),
    ({"expirationTime": "2001-01-01T00:00:00Z"}, "InvalidInput", "future"),
    ({"expirationTime": "next week"}, "InvalidInput", "ISO 8601"),
    ({"rbacGroupNames": "group1"}, "InvalidRequestBody", "rbacGroupNames"),
])
def test_bad_indicators_are_400_naming_the_problem(emu, api, change, code, text):
    before = len(emu.stores.indicators.all())
    r = api.post("/api/indicators", {k: v for k, v in (IOC | change).items()})
    assert r.status_code == 400 and set(r.json()["error"]) == MDE_ERROR
    assert r.json()["error"]["code"] == code and text in r.json()["error"]["message"]
    assert len(emu.stores.indicators.all()) == before


def test_indicator_filters_paging_and_delete(emu, api):
    made = [api.post("/api/indicators", IOC | {"indicatorValue": f"198.51.100.{n}", "title": f"t{n}"}).json()
            for n in range(1, 6)]

    def values(**params):
        r = api.get("/api/indicators", **params)
        assert r.status_code == 200, r.text
        return [i["indicatorValue"] for i in r.json()["value"]]

    assert values(**{"$filter": "title eq 't3'"}) == ["198.51.100.3"]
    assert values(**{"$filter": "indicatorType eq 'FileSha1' or action eq 'BlockAndRemediate'"}) == [
        i.value for i in emu.stores.indicators.all() if i.type == "FileSha1"]
    assert values(**{"$filter": f"createdBy eq '{emu.client_id}' and severity eq 'High'", "$top": "2",
                     "$skip": "1"}) == ["198.51.100.2", "198.51.100.3"]
    assert values(**{"$filter": "expirationTime gt 2098-01-01T00:00:00Z"}) == [m["indicatorValue"] for m in made]
    emu.page_size = 3
    first = api.get("/api/indicators").json()
    assert len(first["value"]) == 3 and "@odata.nextLink" in first
    assert api.delete(f"/api/indicators/{made[0]['id']}").status_code == 204
    assert api.delete(f"/api/indicators/{made[0]['id']}").status_code == 404
    assert "198.51.100.1" not in values(**{"$top": "100"})
    r = api.get("/api/indicators", **{"$filter": "colour eq 'red'"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ODataError"


def test_the_indicator_quota_counts_active_indicators_and_names_the_limit(emu, api):
    now = now_ticks()
    active = sum(1 for i in emu.stores.indicators.all() if i.active(now))
    assert active < len(emu.stores.indicators.all())  # the seeded world holds an expired one, which does not count
    emu.indicator_quota = active + 1
    assert api.post("/api/indicators", IOC).status_code == 200
    r = api.post("/api/indicators", IOC | {"indicatorValue": "198.51.100.78"})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert f"limit is {active + 1}" in message and "quota" in message.lower()
    assert api.post("/api/indicators", IOC | {"title": "updated at the quota"}).status_code == 200  # an update is fine
    emu.reset()
    assert emu.indicator_quota == 15_000


def test_indicator_import_answers_per_indicator(emu, api):
    emu.indicator_quota = sum(1 for i in emu.stores.indicators.all() if i.active(now_ticks())) + 2
    batch = [IOC | {"indicatorValue": "198.51.100.90"}, IOC | {"indicatorValue": "10.1.1.1"},
             IOC | {"indicatorValue": "198.51.100.91"}, IOC | {"indicatorValue": "198.51.100.92"},
             IOC | {"indicatorValue": "198.51.100.90", "title": "again"}]
    r = api.post("/api/indicators/import", {"Indicators": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith("#Collection(microsoft.windowsDefenderATP.api.ImportIndicatorResult)")
    results = body["value"]
    assert [x["isFailed"] for x in results] == [False, True, False, True, False]
    assert set(results[0]) == {"id", "indicator", "isFailed", "failureReason"}
    assert "external" in results[1]["failureReason"] and "quota" in results[3]["failureReason"].lower()
    assert results[4]["id"] == results[0]["id"]
    assert emu.stores.indicators.get(results[0]["id"]).title == "again"
    too_many = api.post("/api/indicators/import", {"Indicators": [IOC] * 501})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "MaximumBatchSizeExceeded"
    assert api.post("/api/indicators/import", {"indicators": batch}).status_code == 400  # the key is "Indicators"


def test_reset_restores_seeded_actions_indicators_and_settings(emu, api):
    seeded_actions, seeded_indicators = len(emu.stores.actions.all()), len(emu.stores.indicators.all())
    assert seeded_actions and seeded_indicators
    emu.action_timing = (5, 5)
    emu.set_device_action_outcome(windows(emu)["id"], "Failed")
    api.act(windows(emu)["id"])
    api.post("/api/indicators", IOC)
    emu.reset()
    assert (len(emu.stores.actions.all()), len(emu.stores.indicators.all())) == (seeded_actions, seeded_indicators)
    assert emu.action_timing == (1.0, 2.0) and emu.take_action_outcome(windows(emu)["id"]) == "Succeeded"
    now = now_ticks()
    assert all(not a.running(now) for a in emu.stores.actions.all())  # the seeded history is all finished
