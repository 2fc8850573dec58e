"""The seeded incident over HTTPS: one device, user, process tree, connection and file, told the same way by the
hunting tables (filtered with ``where``), the entity APIs, the alert and incident APIs, after a reset and in a fresh
emulator."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from emulator import Emulator
from emulator.incident import INCIDENT, build_incident
from emulator.state import State

MINUTE = 60 * 10**7
HOUR = 60 * MINUTE


def hunt(emu, http, auth, query, api="mde"):
    """Rows of a hunting query over the default window (30 days up to the last full hour)."""
    if api == "graph":
        r = http.post(emu.graph_url + "/v1.0/security/runHuntingQuery", json={"Query": query}, headers=auth["graph"])
        assert r.status_code == 200, r.text
        return r.json()["results"]
    r = http.post(emu.mde_url + "/api/advancedqueries/run", json={"Query": query}, headers=auth["mde"])
    assert r.status_code == 200, r.text
    return r.json()["Results"]


def get(emu, http, auth, path, api="mde", **params):
    base = emu.graph_url if api == "graph" else emu.mde_url
    r = http.get(base + path, headers=auth[api], params=params)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def ticks(text: str) -> int:
    """An ISO time with up to 7 fractional digits -> ticks."""
    head, _, frac = text.rstrip("Z").partition(".")
    when = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    return int(when.timestamp()) * 10**7 + int((frac or "0").ljust(7, "0"))


@pytest.fixture
def inc(emu):
    return emu.incident


# ---------------------------------------------------------------- the public handle


def test_the_incident_is_public_and_lies_before_the_last_full_hour(emu):
    inc = emu.incident
    assert inc is INCIDENT and inc.process_names == ("WINWORD.EXE", "cmd.exe", "powershell.exe", "upd.exe",
                                                     "rundll32.exe")
    assert (inc.device_name, inc.user, inc.remote_ip, inc.remote_port) == (
        "wks-fin-07.contoso.local", "nadia.rahman", "203.0.113.77", 443)
    now = time.time_ns() // 100
    # Placed when the process started: before the last full hour (the default hunting window's end) ...
    assert inc.logon_time < inc.start < inc.alert_time < now // HOUR * HOUR - HOUR
    assert inc.logon_time % HOUR == 0 and inc.start > now - 6 * HOUR
    # ... 1-3 hours back from whenever in the hour that was.
    for moment in (now // HOUR * HOUR, now // HOUR * HOUR + HOUR - 1):
        story = build_incident(moment)
        assert moment - 3 * HOUR < story.logon_time < story.start < story.alert_time < moment // HOUR * HOUR - HOUR
        assert story.start - story.logon_time < HOUR and story.alert_time - story.start < 10 * MINUTE
    chain = {p.pid: p for p in inc.ancestors + inc.processes}
    for parent, child in zip(inc.processes, inc.processes[1:], strict=False):
        assert child.parent_pid == parent.pid and chain[child.parent_pid] is parent and child.created > parent.created


# ---------------------------------------------------------------- hunting tables


def test_process_tree_in_the_hunting_tables_links_ids(emu, http, auth, inc):
    rows = hunt(emu, http, auth, f'DeviceProcessEvents | where DeviceId == "{inc.device_id}"')
    assert [r["FileName"] for r in rows] == list(inc.process_names)  # nothing else on that device, in time order
    assert {r["DeviceName"] for r in rows} == {inc.device_name} and {r["AccountName"] for r in rows} == {inc.user}
    for parent, child in zip(rows, rows[1:], strict=False):
        assert child["InitiatingProcessId"] == parent["ProcessId"]
        assert child["InitiatingProcessUniqueId"] == parent["ProcessUniqueId"]
        assert child["InitiatingProcessFileName"] == parent["FileName"]
        assert child["InitiatingProcessCommandLine"] == parent["ProcessCommandLine"]
        assert child["InitiatingProcessCreationTime"] == parent["ProcessCreationTime"]
        assert child["InitiatingProcessSHA1"] == parent["SHA1"]
    for grandparent, child in zip(rows, rows[2:], strict=False):
        assert child["InitiatingProcessParentId"] == grandparent["ProcessId"]
        assert child["InitiatingProcessParentFileName"] == grandparent["FileName"]
    assert rows[0]["InitiatingProcessFileName"] == "explorer.exe" and ".docm" in rows[0]["ProcessCommandLine"]
    assert "comsvcs.dll, MiniDump" in rows[-1]["ProcessCommandLine"]
    upd = rows[3]
    assert (upd["SHA1"], upd["SHA256"], upd["ProcessId"]) == (inc.sha1, inc.sha256, inc.process("upd.exe").pid)


def test_connection_file_and_logon_in_the_hunting_tables(emu, http, auth, inc):
    upd, powershell = inc.process("upd.exe"), inc.process("powershell.exe")
    network = hunt(emu, http, auth, f'DeviceNetworkEvents | where DeviceId == "{inc.device_id}"', api="graph")
    c2 = [r for r in network if r["RemotePort"] == 443]
    assert c2 and all(r["RemoteIP"] == inc.remote_ip and r["InitiatingProcessFileName"] == "upd.exe"
                      and r["InitiatingProcessId"] == upd.pid and r["LocalIP"] == inc.device_ip for r in c2)
    assert {r["RemoteIP"] for r in network} == {inc.remote_ip}
    files = hunt(emu, http, auth, f'DeviceFileEvents | where DeviceId == "{inc.device_id}"')
    assert [(f["ActionType"], f["FileName"], f["FolderPath"], f["SHA1"], f["SHA256"]) for f in files] == [
        ("FileCreated", "upd.exe", inc.file_path, inc.sha1, inc.sha256)]
    assert files[0]["InitiatingProcessId"] == powershell.pid and files[0]["FileOriginIP"] == inc.remote_ip
    assert ticks(files[0]["Timestamp"]) < ticks(next(r for r in network if r["RemotePort"] == 443)["Timestamp"])
    logons = hunt(emu, http, auth, f'DeviceLogonEvents | where DeviceId == "{inc.device_id}"')
    assert [(r["ActionType"], r["AccountName"], r["AccountDomain"], r["AccountSid"]) for r in logons] == [
        ("LogonSuccess", inc.user, inc.user_domain, inc.user_sid)]
    assert ticks(logons[0]["Timestamp"]) == inc.logon_time < inc.start
    identity = hunt(emu, http, auth, f'IdentityLogonEvents | where AccountName == "{inc.user}"')
    assert [(r["DeviceName"], r["IPAddress"], r["AccountUpn"]) for r in identity] == [
        (inc.device_name, inc.device_ip, inc.user_upn)]


def test_alert_rows_name_the_incident_and_stay_on_its_device(emu, http, auth, inc):
    info = hunt(emu, http, auth, f'AlertInfo | where AlertId == "{inc.alert_id}"')
    assert [(r["Title"], r["Severity"], ticks(r["Timestamp"])) for r in info] == [
        (inc.title, "High", inc.alert_time)]
    evidence = hunt(emu, http, auth, f'AlertEvidence | where AlertId == "{inc.alert_id}"')
    assert {r["DeviceId"] for r in evidence} == {inc.device_id}
    by_type: dict[str, list[dict]] = {}
    for r in evidence:
        by_type.setdefault(r["EntityType"], []).append(r)
    assert set(by_type) == {"Machine", "User", "Process", "File", "Ip"}
    assert [r["FileName"] for r in by_type["Process"]] == list(inc.process_names)
    assert [(r["AccountName"], r["AccountSid"]) for r in by_type["User"]] == [(inc.user, inc.user_sid)]
    assert [(r["SHA1"], r["SHA256"]) for r in by_type["File"]] == [(inc.sha1, inc.sha256)]
    assert [r["RemoteIP"] for r in by_type["Ip"]] == [inc.remote_ip]
    # No other device's rows carry its AlertId, and its device has no other alert.
    assert hunt(emu, http, auth, f'AlertEvidence | where AlertId == "{inc.alert_id}" '
                                 f'and DeviceId != "{inc.device_id}"') == []
    assert {r["AlertId"] for r in hunt(emu, http, auth,
                                       f'AlertEvidence | where DeviceId == "{inc.device_id}"')} == {inc.alert_id}
    others = hunt(emu, http, auth, "AlertEvidence | take 3000")
    assert len(others) == 3000 and all(r["AlertId"] != inc.alert_id for r in others if r["DeviceId"] != inc.device_id)


def test_incident_rows_come_first_and_a_shorter_take_is_a_prefix(emu, http, auth, inc):
    short = hunt(emu, http, auth, "DeviceProcessEvents | take 3")
    long = hunt(emu, http, auth, "DeviceProcessEvents | take 40")
    assert short == long[:3] and [r["FileName"] for r in long[:5]] == list(inc.process_names)
    assert all(r["DeviceId"] != inc.device_id for r in long[5:])
    one = hunt(emu, http, auth, "AlertEvidence | take 1")
    assert [r["AlertId"] for r in one] == [inc.alert_id]


# ---------------------------------------------------------------- entity, alert and incident APIs


def test_entity_apis_know_the_device_user_file_and_ips(emu, http, auth, inc):
    machine = get(emu, http, auth, f"/api/machines/{inc.device_id}")
    assert (machine["computerDnsName"], machine["lastIpAddress"], machine["riskScore"]) == (
        inc.device_name, inc.device_ip, "High")
    assert get(emu, http, auth, f"/api/machines/{inc.device_name}")["id"] == inc.device_id
    users = get(emu, http, auth, f"/api/machines/{inc.device_id}/logonusers")["value"]
    assert [(u["accountName"], u["accountDomain"]) for u in users] == [(inc.user, inc.user_domain)]
    assert [m["id"] for m in get(emu, http, auth, f"/api/users/{inc.user}/machines")["value"]] == [inc.device_id]
    for file_hash in (inc.sha1, inc.sha256):
        info = get(emu, http, auth, f"/api/files/{file_hash}")
        assert (info["sha1"], info["sha256"], info["determinationType"]) == (inc.sha1, inc.sha256, "Malware")
    for address in (inc.remote_ip, inc.device_ip):
        stats = get(emu, http, auth, f"/api/ips/{address}/stats")
        assert stats["ipAddress"] == address and stats["organizationPrevalence"] > 0
    alerts = get(emu, http, auth, f"/api/machines/{inc.device_id}/alerts")["value"]
    assert [a["id"] for a in alerts] == [inc.alert_id]


def test_graph_alert_and_incident_name_the_same_things(emu, http, auth, inc):
    alert = get(emu, http, auth, f"/v1.0/security/alerts_v2/{inc.alert_id}", api="graph")
    assert (alert["severity"], alert["incidentId"], alert["title"]) == ("high", str(inc.incident_id), inc.title)
    assert ticks(alert["createdDateTime"]) == inc.alert_time
    evidence: dict[str, list[dict]] = {}
    for e in alert["evidence"]:
        evidence.setdefault(e["@odata.type"].rsplit(".", 1)[1], []).append(e)
    assert set(evidence) == {"deviceEvidence", "userEvidence", "processEvidence", "fileEvidence", "ipEvidence"}
    device = evidence["deviceEvidence"][0]
    assert (device["mdeDeviceId"], device["deviceDnsName"]) == (inc.device_id, inc.device_name)
    assert device["loggedOnUsers"] == [{"accountName": inc.user, "domainName": inc.user_domain.upper()}]
    assert evidence["userEvidence"][0]["userAccount"]["userSid"] == inc.user_sid
    processes = evidence["processEvidence"]
    assert [(p["imageFile"]["fileName"], p["processId"], p["parentProcessId"]) for p in processes] == [
        (p.name, p.pid, p.parent_pid) for p in inc.processes]
    assert [ticks(p["processCreationDateTime"]) for p in processes] == [p.created for p in inc.processes]
    assert processes[1]["parentProcessImageFile"]["fileName"] == "WINWORD.EXE"
    assert evidence["fileEvidence"][0]["fileDetails"]["sha256"] == inc.sha256
    assert evidence["ipEvidence"][0]["ipAddress"] == inc.remote_ip
    incident = get(emu, http, auth, f"/v1.0/security/incidents/{inc.incident_id}", api="graph",
                   **{"$expand": "alerts"})
    assert incident["severity"] == "high" and [a["id"] for a in incident["alerts"]] == [inc.alert_id]


def test_mde_alert_and_m365d_incident_name_the_same_things(emu, http, auth, inc):
    alert = get(emu, http, auth, f"/api/alerts/{inc.alert_id}", **{"$expand": "evidence"})
    assert (alert["machineId"], alert["computerDnsName"], alert["severity"], alert["incidentId"]) == (
        inc.device_id, inc.device_name, "High", inc.incident_id)
    assert alert["relatedUser"]["userName"] == inc.user
    kinds = [e["entityType"] for e in alert["evidence"]]
    assert kinds == ["User"] + ["Process"] * len(inc.processes) + ["File", "Ip"]
    assert [e["processId"] for e in alert["evidence"] if e["entityType"] == "Process"] == [
        p.pid for p in inc.processes]
    assert {e["sha1"] for e in alert["evidence"] if e["entityType"] == "File"} == {inc.sha1}
    legacy = get(emu, http, auth, f"/api/incidents/{inc.incident_id}", api="xdr")
    assert [a["alertId"] for a in legacy["alerts"]] == [inc.alert_id]
    assert legacy["alerts"][0]["devices"][0]["deviceDnsName"] == inc.device_name


# ---------------------------------------------------------------- lifetime


def test_the_incident_survives_a_reset_and_is_in_every_fresh_emulator(emu, http, auth, inc):
    r = http.patch(f"{emu.graph_url}/v1.0/security/alerts_v2/{inc.alert_id}", headers=auth["graph"],
                   json={"status": "resolved", "classification": "truePositive", "determination": "malware"})
    assert r.status_code == 200, r.text
    assert get(emu, http, auth, f"/v1.0/security/alerts_v2/{inc.alert_id}", api="graph")["status"] == "resolved"
    emu.reset()
    assert get(emu, http, auth, f"/v1.0/security/alerts_v2/{inc.alert_id}", api="graph")["status"] == "new"
    fresh = State()
    alert = fresh.stores.alerts.get(inc.alert_id)
    assert alert is not None and alert.machine is fresh.stores.machines.get(inc.device_id)
    assert fresh.stores.incidents.get(inc.incident_id).alert_ids == [inc.alert_id]
    assert Emulator().incident is inc


def test_make_emulator_prints_the_incident_and_how_to_triage_it(emu, inc):
    from emulator.howto import everything, tenants_add

    text = everything(emu)
    assert f"defender-soar triage --tenant emulator --alert-id {inc.alert_id}" in text
    assert tenants_add(emu).startswith("defender-soar tenants add emulator ")  # the block the triage line names
    assert inc.device_name in text and inc.user_account in text and inc.sha256 in text
