"""Write-back against the emulator: status, assignee, verdict pairs, tags and comments; a POST is never
sent twice after a timeout."""

from __future__ import annotations

import pytest

from connector import DefenderClient, resolve_settings
from connector.errors import BadRequestError, NotFoundError, ServiceError
from connector.transport import RetryPolicy

FAST = RetryPolicy(max_attempts=3, max_total_seconds=30, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
def client(emu, emu_kwargs):
    kwargs = {**emu_kwargs, "graph_root": emu.graph_url, "mde_root": emu.mde_url, "m365d_root": emu.mde_url}
    with DefenderClient(resolve_settings(**kwargs), retry=FAST) as c:
        yield c


@pytest.fixture
def alert(client):
    return next(iter(client.list_alerts(top=1)))


def test_update_alert_status_assignee_and_verdict(client, alert):
    updated = client.update_alert(alert["id"], status="InProgress", assigned_to="soc@contoso.com",
                                  classification="TruePositive", determination="compromisedAccount")
    assert updated["status"] == "inProgress" and updated["assignedTo"] == "soc@contoso.com"
    assert updated["classification"] == "truePositive" and updated["determination"] == "compromisedUser"
    again = client.get_alert(alert["id"])
    assert again["status"] == "inProgress" and again["classification"] == "truePositive"


def test_an_invalid_verdict_pair_is_refused_before_sending(emu, client, alert):
    emu.requests.clear()
    with pytest.raises(BadRequestError, match="does not go with.*falsePositive: clean, insufficientData"):
        client.update_alert(alert["id"], classification="falsePositive", determination="malware")
    with pytest.raises(BadRequestError, match="Unknown status"):
        client.update_alert(alert["id"], status="closed")
    with pytest.raises(BadRequestError, match="Nothing to update"):
        client.update_alert(alert["id"])
    assert not [r for r in emu.requests if r.method == "PATCH"]


def test_alert_and_incident_comments(client, alert):
    comments = client.add_alert_comment(alert["id"], "Triaged by defender-soar: isolating.")
    assert any(c["comment"] == "Triaged by defender-soar: isolating." for c in comments)
    assert any(c["comment"].startswith("Triaged by") for c in client.get_alert(alert["id"])["comments"])
    incident_id = client.get_alert(alert["id"])["incidentId"]
    listed = client.add_incident_comment(incident_id, "Containment approved by analyst@contoso.com")
    assert any("Containment approved" in c["comment"] for c in listed)
    updated = client.update_incident(incident_id, status="resolved", classification="falsePositive",
                                     determination="notMalicious", custom_tags=["soar", "reviewed"])
    assert updated["status"] == "resolved" and updated["customTags"] == ["soar", "reviewed"]
    with pytest.raises(NotFoundError):
        client.add_alert_comment("no-such-alert", "x")


def test_legacy_write_back(client):
    mde_alert = next(iter(client.list_mde_alerts(top=1)))
    updated = client.update_mde_alert(mde_alert["id"], status="resolved", classification="truePositive",
                                      determination="malware", comment="Resolved by playbook")
    assert updated["status"] == "Resolved" and updated["classification"] == "TruePositive"
    assert any(c["comment"] == "Resolved by playbook" for c in updated["comments"])
    incident = next(iter(client.list_m365d_incidents(top=1)))
    changed = client.update_m365d_incident(incident["incidentId"], tags=["t1"], comment="pen testing")
    assert changed["tags"] == ["t1"]


def test_a_comment_whose_answer_times_out_is_not_posted_twice(emu, emu_kwargs, alert):
    from emulator import Fault

    emu.faults.add(Fault("slow", path=r"/comments$", method="POST", delay=5, times=None))
    kwargs = {**emu_kwargs, "graph_root": emu.graph_url, "timeout": 1}
    with DefenderClient(resolve_settings(**kwargs), retry=FAST) as client, pytest.raises(ServiceError, match="timed out"):
        client.add_alert_comment(alert["id"], "only once")
    assert len([r for r in emu.requests if r.method == "POST" and r.path.endswith("/comments")]) == 1
