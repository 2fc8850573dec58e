"""What an ingested event says, its id, the watermark record, and the shared-limit bucket arithmetic (no server)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from flows.ingest import (
    ALERTS,
    INCIDENTS,
    Watermark,
    alert_user,
    build_event,
    event_id,
    parse_time,
)
from flows.limits import bucket, install_from_env, limit_name, use_process_limits

ALERT = {
    "id": "da638500000000000042_1234", "lastUpdateDateTime": "2026-11-29T10:00:00.1234567Z",
    "createdDateTime": "2026-11-29T09:58:00Z", "severity": "high", "status": "new", "category": "CredentialAccess",
    "title": "Possible credential dumping via comsvcs.dll", "tenantId": "0b7c1d2e-aaaa-bbbb-cccc-000000000001",
    "description": "A process accessed credentials.", "recommendedActions": "Isolate the device.",
    "alertWebUrl": "https://security.microsoft.com/alerts/x", "classification": "unknown",
    "evidence": [
        {"@odata.type": "#microsoft.graph.security.deviceEvidence", "mdeDeviceId": "4f1c0000aaaa",
         "deviceDnsName": "wks-01.contoso.local", "ipInterfaces": ["10.0.0.4"]},
        {"@odata.type": "#microsoft.graph.security.processEvidence",
         "processCommandLine": "rundll32.exe comsvcs.dll MiniDump 624 lsass.dmp full", "processId": 4242},
        {"@odata.type": "#microsoft.graph.security.userEvidence",
         "userAccount": {"accountName": "alice", "domainName": "CONTOSO", "userSid": "S-1-5-21-1-2-3-1104",
                         "userPrincipalName": "alice@contoso.com"}},
        {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "203.0.113.77"},
    ],
}


def test_alert_event_carries_only_the_payload_fields():
    event = build_event(ALERTS, "contoso", ALERT, "created")

    assert event["event"] == "defender.alert.created"
    assert event["payload"] == {"tenant": "contoso", "severity": "high", "status": "new", "category": "CredentialAccess",
                                "title": "Possible credential dumping via comsvcs.dll",
                                "device": "wks-01.contoso.local", "user": "alice@contoso.com"}
    assert event["resource"] == {"prefect.resource.id": f"defender.alert.{ALERT['id']}", "defender.alert.id": ALERT["id"],
                                 "defender.severity": "high",
                                 "prefect.resource.name": "Possible credential dumping via comsvcs.dll"}
    assert event["related"] == [
        {"prefect.resource.id": "defender.tenant.contoso", "prefect.resource.role": "tenant",
         "prefect.resource.name": "contoso"},
        {"prefect.resource.id": "defender.device.4f1c0000aaaa", "prefect.resource.role": "device",
         "prefect.resource.name": "wks-01.contoso.local"},
    ]
    assert parse_time(event["occurred"]) == datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
    text = json.dumps(event)
    for value in ("comsvcs.dll MiniDump", "203.0.113.77", "S-1-5-21", "Isolate the device", "credentials.",
                  ALERT["tenantId"], "alertWebUrl", "10.0.0.4", "4242"):
        assert value not in text


def test_event_id_is_the_alert_version():
    first = build_event(ALERTS, "contoso", ALERT, "created")["id"]
    assert uuid.UUID(first).version == 5
    assert build_event(ALERTS, "contoso", dict(ALERT, status="inProgress"), "updated")["id"] == first
    assert event_id(ALERTS, "contoso", ALERT["id"], ALERT["lastUpdateDateTime"]) == first
    newer = dict(ALERT, lastUpdateDateTime="2026-11-29T10:00:01Z")
    assert build_event(ALERTS, "contoso", newer, "updated")["id"] != first
    assert build_event(ALERTS, "fabrikam", ALERT, "created")["id"] != first  # same id in another tenant
    assert event_id(INCIDENTS, "contoso", ALERT["id"], ALERT["lastUpdateDateTime"]) != first


def test_missing_evidence_and_user_forms():
    bare = {k: v for k, v in ALERT.items() if k != "evidence"}
    event = build_event(ALERTS, "contoso", bare, "updated")
    assert event["payload"]["device"] is None and event["payload"]["user"] is None
    assert [r["prefect.resource.role"] for r in event["related"]] == ["tenant"]
    no_upn = {"evidence": [{"@odata.type": "#microsoft.graph.security.userEvidence",
                            "userAccount": {"accountName": "bob", "domainName": "CONTOSO"}}]}
    assert alert_user(no_upn) == "CONTOSO\\bob"
    long_title = build_event(ALERTS, "t", dict(ALERT, title="x" * 5000), "created")
    assert len(long_title["payload"]["title"]) == 500


def test_incident_event():
    incident = {"id": "2042", "lastUpdateDateTime": "2026-11-29T10:00:00Z", "createdDateTime": "2026-11-29T09:00:00Z",
                "displayName": "Multi-stage incident", "severity": "medium", "status": "active",
                "description": "secret-ish detail", "tenantId": ALERT["tenantId"], "comments": [{"comment": "x"}]}
    event = build_event(INCIDENTS, "contoso", incident, "created")
    assert event["event"] == "defender.incident.created"
    assert event["resource"]["prefect.resource.id"] == "defender.incident.2042"
    assert event["payload"] == {"tenant": "contoso", "severity": "medium", "status": "active",
                                "title": "Multi-stage incident"}
    assert "secret-ish" not in json.dumps(event) and ALERT["tenantId"] not in json.dumps(event)


def test_watermark_round_trip_and_garbage():
    mark = Watermark(parse_time("2026-11-29T10:00:00.5Z"), parse_time("2026-11-28T10:00:00Z"))
    again = Watermark.from_json(json.loads(json.dumps(mark.to_json())))
    assert (again.watermark, again.started) == (mark.watermark, mark.started)
    assert len(json.dumps(mark.to_json())) < 200  # a Variable holds at most 5,000 characters
    assert Watermark.from_json("nonsense") == Watermark()
    assert Watermark.from_json({"watermark": "not a time"}).watermark is None


@pytest.mark.parametrize("count", [1, 2, 3, 6, 10, 45, 100, 1500, 10_000])
@pytest.mark.parametrize("period", [1.0, 5.0, 60.0, 3600.0])
def test_bucket_never_allows_more_than_the_quota_in_any_window(count, period):
    capacity, decay = bucket(count, period)
    margin = min(2.0, period / 10)
    assert 1 <= capacity <= max(1, count - 1)
    # The most a token bucket lets through in a window of W: a full bucket plus W seconds of refill
    # (the server rounds decay down, which only lowers it). W covers the period and the arrival margin.
    assert capacity + int(decay * (period + margin) + 1e-9) <= count
    if count >= 2:  # and no more is given away than the window needs
        assert capacity + decay * (period + margin) == pytest.approx(count)


def test_bucket_for_hunting_quota():
    assert bucket(45, 60) == (4, pytest.approx(41 / 62))
    assert bucket(1500, 3600) == (150, pytest.approx(1350 / 3602))
    with pytest.raises(ValueError):
        bucket(0, 60)


def test_limit_names():
    assert limit_name(("global", "0B7C-AAAA", "hunting"), 60.0) == "defender-hunting-global-0b7c-aaaa-60s"
    assert limit_name(("gcc-high", "t", "graph"), 0.5) == "defender-graph-gcc-high-t-0_5s"


def test_shared_limits_only_when_asked(monkeypatch):
    from connector import ratelimit

    monkeypatch.delenv("DEFENDER_SOAR_SHARED_LIMITS", raising=False)
    assert install_from_env() is False and ratelimit._factory is None
    monkeypatch.setenv("DEFENDER_SOAR_SHARED_LIMITS", "prefect")
    try:
        assert install_from_env() is True
        limiter = ratelimit.limiter_for(("global", "tid", "hunting"), [(45, 60.0), (1500, 3600.0)])
        assert limiter.names == ["defender-hunting-global-tid-60s", "defender-hunting-global-tid-3600s"]
        assert ratelimit.limiter_for(("global", "tid", "hunting"), [(45, 60.0), (1500, 3600.0)]) is limiter
    finally:
        use_process_limits()
    assert ratelimit._factory is None
