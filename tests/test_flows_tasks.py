"""Each task through ``.fn`` against the emulator (blocks, artifacts and notification blocks in the Prefect harness)."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from prefect.cache_policies import NO_CACHE

from connector import AuthenticationError, ConfigurationError
from flows import tasks
from flows.tasks import AlertDeliveryError, alert, connect, enrich, run_hunting_query

from .conftest import CANARY
from .flow_fixtures import block_name, new_tenant, saved_tenant_fixture, tenant_block, webhook_fixture  # noqa: F401
from .prefect_fixtures import _no_default_azure_credential, prefect_api  # noqa: F401

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api"),
              pytest.mark.filterwarnings("ignore:Artifact creation outside of a flow:FutureWarning")]


def read_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest():
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[-1] if found else None

    return asyncio.run(latest())


def test_every_task_leaves_caching_persistence_and_retries_alone():
    for t in (connect, run_hunting_query, enrich, alert):
        assert t.cache_policy is NO_CACHE, t.name
        assert t.persist_result is False, t.name
        assert t.retries == 0, t.name


def test_connect_checks_the_block_and_the_sign_in(emu, all_logs):
    tenant_id, client_id = new_tenant(emu, CANARY)
    name = block_name("conn")
    tenant_block(emu, tenant_id, client_id, CANARY).save(name)

    info = connect.fn(name)

    assert info["tenant"] == name and info["tenant_id"] == tenant_id and info["client_id"] == client_id
    assert info["hunting_api"] == "graph" and info["credential"] == "client secret (stored in the block)"
    assert CANARY not in repr(info) and CANARY not in all_logs.text
    assert any(r.path == f"/{tenant_id}/oauth2/v2.0/token" and r.status == 200 for r in emu.requests)

    bad = block_name("bad")
    tenant_block(emu, tenant_id, client_id, CANARY + "-wrong").save(bad)
    with pytest.raises(AuthenticationError) as failed:
        connect.fn(bad)
    assert tenant_id in str(failed.value) and CANARY not in str(failed.value)

    with pytest.raises(ConfigurationError, match="defender-soar tenants add no-such-tenant"):
        connect.fn("no-such-tenant")
    with pytest.raises(ConfigurationError, match="lowercase letters"):
        connect.fn("Not_A_Name")


def test_run_hunting_query_raw_kql_adds_the_tenant_column(emu, saved_tenant):
    frame = run_hunting_query.fn(saved_tenant, "DeviceProcessEvents | take 25", timespan="P7D")

    assert len(frame) == 25
    assert frame.columns[0] == "TenantName" and set(frame["TenantName"]) == {saved_tenant}
    assert str(frame["TenantName"].dtype).startswith("str")
    assert str(frame["Timestamp"].dtype) == "datetime64[ns, UTC]"  # the connector's typed frame
    hunt = [r for r in emu.requests if r.path.endswith("/runHuntingQuery")]
    assert len(hunt) == 1 and b'"Timespan": "P7D"' in hunt[0].body.replace(b'":"', b'": "')


def test_run_hunting_query_library_query_with_parameters(emu, saved_tenant):
    device = emu.stores.machines.all()[3]
    frame = run_hunting_query.fn(saved_tenant, query_name="M365D.list_host_processes",
                                 params={"host_name": device["computerDnsName"], "start": "-3d"})

    assert len(frame) > 0 and set(frame["DeviceName"]) == {device["computerDnsName"]}
    assert frame.attrs["query_name"] == "M365D.list_host_processes"
    sent = [r.body for r in emu.requests if r.path.endswith("/runHuntingQuery")][0].decode()
    assert f'DeviceName has \\"{device["computerDnsName"]}\\"' in sent

    with pytest.raises(ConfigurationError, match="either a KQL query or a query_name"):
        run_hunting_query.fn(saved_tenant, "DeviceInfo", query_name="M365D.list_alerts")
    with pytest.raises(ConfigurationError, match="no parameter 'hostname_typo'"):
        run_hunting_query.fn(saved_tenant, query_name="M365D.list_host_processes", params={"hostname_typo": "x"})


def test_enrich_adds_context_once_per_entity(emu, saved_tenant):
    machines = emu.stores.machines.all()[:3]
    frame = pd.DataFrame({"DeviceId": [m["id"] for m in machines] * 100})
    emu.requests.clear()

    out = enrich.fn(saved_tenant, frame)

    assert sorted(r.path for r in emu.requests if r.path.startswith("/api/machines/")) == \
        sorted(f"/api/machines/{m['id']}" for m in machines)
    assert list(out["DeviceDnsName"].head(3)) == [m["computerDnsName"] for m in machines]


def test_alert_writes_an_artifact_comments_and_notifies(emu, saved_tenant, webhook):
    receiver, hook = webhook
    alert_id = emu.stores.alerts.all()[0].id
    frame = pd.DataFrame({"DeviceName": ["wks-1.contoso.local", "wks|2"], "Rows": [1, 2]})

    done = alert.fn("Suspicious logons", "Two devices saw **brute force**.", notify=[hook], frame=frame,
                    artifact="test-alert-artifact", tenant=saved_tenant, alert_id=alert_id)

    assert done["notified"] == [hook] and done["failed"] == {} and done["commented"] == [f"alert {alert_id}"]
    (posted,) = receiver.wait_for(1)
    assert posted["body"]["subject"] == "Suspicious logons"
    assert "brute force" in posted["body"]["text"]
    comments = [c.comment for c in emu.stores.alerts.get(alert_id).comments]
    assert comments[-1].startswith("Suspicious logons") and "brute force" in comments[-1]
    artifact = read_artifact("test-alert-artifact")
    assert artifact is not None and artifact.type == "markdown"
    assert "# Suspicious logons" in artifact.data and "wks\\|2" in artifact.data  # the pipe cannot break the table


def test_alert_reports_a_failed_notification_after_doing_the_rest(emu, saved_tenant, webhook):
    receiver, hook = webhook
    receiver.status = 500
    alert_id = emu.stores.alerts.all()[1].id

    with pytest.raises(AlertDeliveryError, match=hook):
        alert.fn("Delivery check", "body", notify=[hook], artifact="test-alert-failing", tenant=saved_tenant,
                 alert_id=alert_id)

    assert receiver.wait_for(1)
    assert read_artifact("test-alert-failing") is not None
    assert emu.stores.alerts.get(alert_id).comments[-1].comment.startswith("Delivery check")


def test_alert_refuses_unclear_destinations():
    with pytest.raises(ConfigurationError, match="<block-type-slug>/<name>"):
        alert.fn("t", "s", notify=["soc-channel"])
    with pytest.raises(ConfigurationError, match="needs the tenant"):
        alert.fn("t", "s", alert_id="da1")
    with pytest.raises(ConfigurationError, match="Cannot load notification block"):
        tasks.send_notification("custom-webhook/no-such-hook", "b", "s")
