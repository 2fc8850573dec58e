"""Ingestion against a real Prefect server and the emulator: exactly once through paging, 429 storms, a server
restart, updates between polls and a crash half-way; the project's triage trigger counts what would be triaged."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from connector.errors import ThrottledError
from emulator import Fault
from emulator.world import ts
from flows.ingest import (
    ALERTS,
    INCIDENTS,
    PrefectEventStore,
    VariableWatermarks,
    ingest_alerts,
    ingest_source,
    parse_time,
)
from flows.tasks import tenant_client

from .conftest import CANARY
from .flow_fixtures import new_tenant, tenant_block
from .ingest_fixtures import (  # noqa: F401
    ROOT,
    only_new_alerts,
    prefect_env,
    soar_api_fixture,
    soar_server_fixture,
    stop_group,
    stored_events,
    triage_counter_fixture,
    unique,
    wait_for,
)
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("soar_api")]

ALERTS_PATH = r"/security/alerts_v2$"
TRIAGED = {"high", "medium"}  # the severities deployments/prefect.yaml's trigger starts triage for


def save_tenant(emu, prefix: str = "ing") -> str:
    name = unique(prefix)
    tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).save(name)
    return name


def ingest(name: str, source=ALERTS, **options):
    from prefect.client.orchestration import get_client

    with tenant_client(name) as client, get_client(sync_client=True) as api:
        return ingest_source(client, PrefectEventStore(api), VariableWatermarks(), source, name, **options)


def kinds(name: str, ids: list[str]) -> Counter:
    """(alert id, event name) -> how many events the server stored."""
    return Counter((e.resource["defender.alert.id"], e.event)
                   for e in stored_events([f"defender.alert.{i}" for i in ids], tenant=name))


def triaged(emu, ids: list[str]) -> dict[str, int]:
    """What the trigger must start: one run per alert of a triaged severity."""
    return {i: 1 for i in ids if emu.stores.alerts.get(i).severity in TRIAGED}


def list_requests(emu) -> list:
    return [r for r in emu.requests if r.path.endswith("/security/alerts_v2") and r.method == "GET"]


def test_2500_alerts_over_several_pages_ingested_exactly_once(emu):
    ids = only_new_alerts(emu, 2500)
    name = save_tenant(emu)

    first = ingest(name)

    assert (first.seen, first.created, first.updated, first.duplicates) == (2500, 2500, 0, 0)
    pages = list_requests(emu)
    assert first.pages == len(pages) == 25 and all(r.status == 200 for r in pages)
    assert len({r.query.get("$skip", "0") for r in pages}) == 25  # every page once
    stored = kinds(name, ids)
    assert stored == Counter({(i, "defender.alert.created"): 1 for i in ids})
    mark = VariableWatermarks().load(ALERTS, name)
    assert mark.watermark == max(parse_time(ts(emu.stores.alerts.get(i).last_update)) for i in ids)

    again = ingest(name)

    assert (again.seen, again.emitted, again.duplicates) == (2500, 0, 2500)
    assert kinds(name, ids) == stored


def test_429_storm_during_ingest_loses_nothing_and_triages_once(emu, triage_counter):
    ids = only_new_alerts(emu, 40)
    name = save_tenant(emu, "storm")
    counter = triage_counter(name)
    # Ridden out: three 429s (Retry-After 1) on the second page; then, from the fourth page on, a storm
    # that outlasts the connector's retries (Retry-After 0, so the test does not sit through it).
    emu.faults.add(Fault("status", status=429, retry_after=1, path=ALERTS_PATH, after=1, times=3))
    emu.faults.add(Fault("status", status=429, retry_after=0, path=ALERTS_PATH, after=3, times=None))

    with pytest.raises(ThrottledError):
        ingest(name, page_size=10)
    assert VariableWatermarks().load(ALERTS, name).watermark is None  # not moved: the next run starts over
    # Pages 1-3 were sent before page 4 failed; the server writes them within a few seconds.
    half = wait_for(lambda: (found := kinds(name, ids)) and len(found) >= 30 and found, 30, "pages 1-3's events")
    assert len(half) == 30 and set(half.values()) == {1}
    assert sum(1 for r in list_requests(emu) if r.status == 429) == 3 + 5
    emu.faults.clear()

    second = ingest(name, page_size=10)

    assert second.created == len(ids) - len(half) and second.duplicates == len(half)
    assert kinds(name, ids) == Counter({(i, "defender.alert.created"): 1 for i in ids})
    assert counter.settle(triaged(emu, ids)) == triaged(emu, ids)


def test_prefect_server_restarted_between_runs(emu, triage_counter, soar_server):
    ids = only_new_alerts(emu, 12)
    name = save_tenant(emu, "restart")
    counter = triage_counter(name)
    first = ingest(name)
    assert first.created == 12
    assert counter.settle(triaged(emu, ids)) == triaged(emu, ids)

    # Prefect's trigger service remembers seen event ids in memory only: after a restart the same
    # ids would start every playbook again. The second run must not send them.
    soar_server.restart()
    second = ingest(name)

    assert (second.emitted, second.duplicates) == (0, 12)
    assert counter.settle(triaged(emu, ids)) == triaged(emu, ids)
    assert kinds(name, ids) == Counter({(i, "defender.alert.created"): 1 for i in ids})


def test_alert_updated_between_polls_is_an_update_not_a_new_alert(emu, triage_counter):
    ids = only_new_alerts(emu, 12)
    name = save_tenant(emu, "upd")
    counter = triage_counter(name)
    ingest(name)
    changed = [i for i in ids if emu.stores.alerts.get(i).severity == "high"][:2]
    with tenant_client(name) as client:
        client.update_alert(changed[0], status="inProgress")
        client.add_alert_comment(changed[1], "looked at it")

    second = ingest(name)
    third = ingest(name)

    assert (second.created, second.updated) == (0, 2)
    assert (third.emitted, third.duplicates) == (0, 12)
    stored = kinds(name, ids)
    assert all(stored[(i, "defender.alert.created")] == 1 for i in ids)
    assert {i for (i, event) in stored if event == "defender.alert.updated"} == set(changed)
    updated = stored_events([f"defender.alert.{changed[0]}"], name, ["defender.alert.updated"])
    assert [e.payload["status"] for e in updated] == ["inProgress"]
    assert counter.settle(triaged(emu, ids)) == triaged(emu, ids)


CRASHING_RUN = """
import sys
from prefect.client.orchestration import get_client
from flows.ingest import ALERTS, PrefectEventStore, VariableWatermarks, ingest_source
from flows.tasks import tenant_client

name = sys.argv[1]
with tenant_client(name) as client, get_client(sync_client=True) as api:
    ingest_source(client, PrefectEventStore(api), VariableWatermarks(), ALERTS, name, page_size=10)
print("finished")
"""


def test_crash_after_half_the_events_loses_nothing_and_triages_once(emu, triage_counter, soar_server, tmp_path):
    ids = only_new_alerts(emu, 40)
    name = save_tenant(emu, "crash")
    counter = triage_counter(name)
    # Pages 1 and 2 (20 alerts) go through; the third hangs until the process is killed.
    emu.faults.add(Fault("slow", path=ALERTS_PATH, after=2, times=1, delay=120))
    process = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, name], cwd=ROOT,
                               env=prefect_env(tmp_path / "crash-home", soar_server.api_url),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: process.poll() is not None or len(kinds(name, ids)) >= 20, 120,
                 "the first two pages' events")
        assert process.poll() is None, process.stdout.read().decode(errors="replace")[-3000:]
    finally:
        process.kill()  # the crash: no cleanup, no finally in the ingesting process
        process.wait(timeout=10)
        stop_group(process)
    emu.faults.clear()
    first_half = kinds(name, ids)
    assert len(first_half) == 20 and set(first_half.values()) == {1}
    assert VariableWatermarks().load(ALERTS, name).watermark is None
    # Meanwhile the playbooks of the first half ran and commented: those alerts changed.
    announced = sorted({i for i, _ in first_half})
    with tenant_client(name) as client:
        for alert_id in announced[:8]:
            client.add_alert_comment(alert_id, "Automated triage (defender-soar): done")

    rerun = ingest(name, page_size=10)

    assert (rerun.created, rerun.updated) == (20, 8)
    stored = kinds(name, ids)
    assert all(stored[(i, "defender.alert.created")] == 1 for i in ids)
    assert sum(n for (_, event), n in stored.items() if event == "defender.alert.updated") == 8
    assert counter.settle(triaged(emu, ids)) == triaged(emu, ids)
    assert VariableWatermarks().load(ALERTS, name).watermark is not None


def test_events_carry_no_secret_and_nothing_else_of_the_alert(emu, all_logs):
    tenant_id, client_id = new_tenant(emu, CANARY)
    ids = only_new_alerts(emu, 6)
    incident_ids = sorted({str(emu.stores.alerts.get(i).incident_id) for i in ids})
    name = unique("canary")
    tenant_block(emu, tenant_id, client_id, CANARY).save(name)

    summary = ingest_alerts([name])

    assert summary["failures"] == {}
    assert summary["tenants"][name]["alerts"]["created"] == 6
    assert summary["tenants"][name]["incidents"]["created"] >= len(incident_ids)
    events = stored_events([f"defender.alert.{i}" for i in ids], name)
    events += stored_events([f"defender.incident.{i}" for i in incident_ids], name)
    assert len(events) == 6 + len(incident_ids)
    with tenant_client(name) as client:
        documents = {a["id"]: a for a in client.list_alerts()}
    for event in events:
        text = event.model_dump_json()
        assert CANARY not in text and tenant_id not in text and client_id not in text
        if event.event.startswith("defender.alert."):
            alert = documents[event.resource["defender.alert.id"]]
            assert set(event.payload) == {"tenant", "severity", "status", "category", "title", "device", "user"}
            assert set(event.resource.model_dump()) == {"prefect.resource.id", "prefect.resource.name", "defender.alert.id",
                                           "defender.severity"}
            assert {r.role for r in event.related} == {"tenant", "device"}
            for key in ("description", "recommendedActions", "alertWebUrl", "incidentWebUrl", "threatFamilyName",
                        "detectorId", "mitreTechniques"):
                value = alert.get(key)
                for part in value if isinstance(value, list) else [value]:
                    if part and len(str(part)) > 6:
                        assert str(part) not in text, key
            for evidence in alert["evidence"]:
                for key in ("processCommandLine", "ipAddress", "url", "userSid", "sha256", "azureAdDeviceId"):
                    if evidence.get(key):
                        assert str(evidence[key]) not in text, key
        else:
            assert set(event.payload) == {"tenant", "severity", "status", "title"}
    assert CANARY not in all_logs.text


def test_incidents_exactly_once(emu):
    ids = only_new_alerts(emu, 75)  # three new incidents of 25 alerts each
    incident_ids = sorted({str(emu.stores.alerts.get(i).incident_id) for i in ids})
    name = save_tenant(emu, "inc")

    first = ingest(name, INCIDENTS)
    second = ingest(name, INCIDENTS)

    assert first.created >= 3 and second.emitted == 0
    stored = Counter((e.resource.id, e.event) for e in stored_events(
        [f"defender.incident.{i}" for i in incident_ids], name))
    assert stored == Counter({(f"defender.incident.{i}", "defender.incident.created"): 1 for i in incident_ids})
