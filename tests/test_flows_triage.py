"""``triage_alert`` on the emulator's seeded incident (once, under the Prefect harness), and its pure parts."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from flows.triage import alert_entities, focus_process, plan_queries, process_tree, render_tree, triage_alert

from .flow_fixtures import block_name, tenant_block, webhook_fixture  # noqa: F401
from .prefect_fixtures import _no_default_azure_credential, prefect_api  # noqa: F401


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_triage_of_the_seeded_incident_names_its_device_user_tree_and_connection_only(emu, webhook):
    receiver, hook = webhook
    story = emu.incident
    tenant = block_name("triage")
    tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).save(tenant)

    result = triage_alert(story.alert_id, tenant, notify=[hook])
    report = result.report

    # The incident's device, user, process tree (in order, nested) and network connection.
    assert story.device_name in report and story.device_id in report
    assert f"{story.user_domain.upper()}\\{story.user}" in report
    tree = report.split("## Process tree")[1].split("##")[0]
    lines = [line for line in tree.splitlines() if line.strip().startswith("- ")]
    names = [re.match(r"\s*- (\S+)", line).group(1) for line in lines]
    indents = [len(line) - len(line.lstrip()) for line in lines]
    expected = [p.name for p in story.ancestors] + list(story.process_names)
    assert names == expected and indents == sorted(indents) and len(set(indents)) == len(indents)
    for process in story.processes:
        assert f"{process.name} (PID {process.pid})" in tree
    assert "upd.exe (PID 4412)" in next(line for line in lines if "<== alert" in line)
    connections = report.split("## Network connections")[1].split("##")[0]
    for name, ip, port, _ in story.connections:
        assert re.search(rf"\| {re.escape(name)} \| \d+ \| {re.escape(ip)} \| {port} \|", connections)
    assert story.sha256 in report and "Malware" in report  # the file, enriched
    # Nothing from any other device.
    others = [m for m in emu.stores.machines.all() if m["id"] != story.device_id]
    assert others
    for machine in others:
        assert machine["computerDnsName"] not in report and machine["id"] not in report
    # Every hunting query was narrowed to the device and the window.
    hunts = [r.body.decode() for r in emu.requests if r.path.endswith("/runHuntingQuery")]
    assert len(hunts) == 5 and all(story.device_id in body for body in hunts)
    assert result.failures == {} and all(result.rows[s] > 0 for s in ("processes", "network", "logons"))
    # The comment on the alert, and the notification.
    comment = emu.stores.alerts.get(story.alert_id).comments[-1].comment
    assert comment.startswith("Automated triage (defender-soar): device " + story.device_name)
    assert "WINWORD.EXE > cmd.exe > powershell.exe > upd.exe, which started rundll32.exe" in comment
    assert result.commented == [f"alert {story.alert_id}"] and result.notified == [hook]
    (message,) = receiver.wait_for(1)
    assert message["body"]["subject"] == f"Triage of alert {story.alert_id}" and story.device_name in \
        message["body"]["text"]


ALERT = {
    "id": "da1", "title": "Suspicious 'b.exe'", "firstActivityDateTime": "2024-05-01T10:00:00Z",
    "lastActivityDateTime": "2024-05-01T10:05:00Z",
    "evidence": [
        {"@odata.type": "#microsoft.graph.security.deviceEvidence", "mdeDeviceId": "d" * 40,
         "deviceDnsName": "wks-9.contoso.local", "loggedOnUsers": [{"accountName": "sam", "domainName": "CONTOSO"}]},
        {"@odata.type": "#microsoft.graph.security.processEvidence", "processId": 10, "parentProcessId": 5,
         "imageFile": {"fileName": "a.exe", "sha256": "1" * 64}, "parentProcessImageFile": {"fileName": "explorer.exe"},
         "userAccount": {"accountName": "sam", "domainName": "CONTOSO"}},
        {"@odata.type": "#microsoft.graph.security.processEvidence", "processId": 11, "parentProcessId": 10,
         "imageFile": {"fileName": "b.exe", "sha256": "2" * 64}, "parentProcessImageFile": {"fileName": "a.exe"}},
        {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "198.51.100.9"},
    ],
}


def test_entities_focus_and_plan_from_an_alert_alone():
    entities = alert_entities(ALERT)
    assert entities.device["host_name"] == "wks-9.contoso.local" and entities.user["account_name"] == "sam"
    assert [p["file_name"] for p in entities.processes] == ["a.exe", "b.exe"] and entities.ips == ["198.51.100.9"]
    assert focus_process(entities, ALERT["title"])["file_name"] == "b.exe"  # named in the title

    start, end = pd.Timestamp("2024-05-01T08:00:00Z"), pd.Timestamp("2024-05-01T12:05:00Z")
    plan = plan_queries(entities, start, end)
    assert [p["section"] for p in plan] == ["processes", "network", "files", "logons", "alerts"]
    assert plan[0]["params"]["host_name"] == "wks-9.contoso.local"
    assert plan[0]["params"]["add_query_items"].startswith(f'| where DeviceId == "{"d" * 40}"')
    assert plan[3]["params"]["account_name"] == "sam"

    device_only = {**ALERT["evidence"][0], "loggedOnUsers": []}
    no_user = plan_queries(alert_entities({**ALERT, "evidence": [device_only]}), start, end)
    assert no_user[3] == {"section": "logons", "query_name": "M365D.user_logons",
                          "skipped": "the alert names no account_name"}
    assert "params" in no_user[0]


def test_process_tree_from_the_evidence_when_no_rows_came_back():
    tree = process_tree(pd.DataFrame(), alert_entities(ALERT), ALERT["title"])
    text = render_tree(tree)
    assert text.splitlines() == ["- a.exe (PID 10)  _(evidence)_", "    - b.exe (PID 11)  **<== alert**"]
