"""The ``hunt`` and ``hunt_pack`` flows, once each under the Prefect test harness, against the emulator."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from connector import ConfigurationError
from flows.hunt import hunt
from flows.hunt_pack import hunt_pack, load_pack

from .conftest import CANARY
from .flow_fixtures import block_name, new_tenant, tenant_block, webhook_fixture  # noqa: F401
from .prefect_fixtures import _no_default_azure_credential, prefect_api  # noqa: F401

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


def artifacts(key: str, flow_run_id=None):
    """Artifacts with this key (of one flow run, if given: the harness is shared by every module)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    async def read():
        run = ArtifactFilterFlowRunId(any_=[flow_run_id]) if flow_run_id else None
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]), flow_run_id=run))

    return asyncio.run(read())


def test_hunt_three_tenants_one_failing_sign_in(emu, tmp_path, all_logs):
    names = []
    ids = {}
    for n, secret in enumerate(("good-secret-one", "good-secret-two", None)):
        tenant_id, client_id = new_tenant(emu, secret or "the-real-secret")
        name = block_name(f"hunt{n}")
        tenant_block(emu, tenant_id, client_id, secret or CANARY).save(name)  # the third signs in with a wrong one
        names.append(name)
        ids[name] = tenant_id
    out = tmp_path / "results" / "hunt.parquet"

    state = hunt(names, "DeviceProcessEvents | take 40", timespan="P1D", output=str(out), return_state=True)

    assert state.is_completed() and state.name == "Completed with failures"
    assert names[2] in state.message and "AuthenticationError" in state.message
    result = state.result()
    assert result.rows == {names[0]: 40, names[1]: 40}
    failure = result.failures[names[2]]
    assert failure.startswith("AuthenticationError") and ids[names[2]] in failure and "AADSTS7000215" in failure
    assert CANARY not in failure and CANARY not in all_logs.text
    # Both good tenants' rows, tagged, in the file: Dynamic columns as JSON text.
    assert list(result.frame["TenantName"].value_counts().sort_index()) == [40, 40]
    written = pd.read_parquet(out)
    assert result.path == str(out.resolve()) and len(written) == 80
    assert set(written["TenantName"]) == {names[0], names[1]}
    assert str(written["Timestamp"].dtype) == "datetime64[ns, UTC]"
    (table,) = artifacts("hunt-results", state.state_details.flow_run_id)
    assert table.type == "table" and str(out.resolve()) in table.description
    assert names[2] in table.description and "AuthenticationError" in table.description
    # The failing tenant never reached the hunting API; the two others hunted once each.
    hunts = [r for r in emu.requests if r.path.endswith("/runHuntingQuery")]
    assert sorted(r.status for r in hunts) == [200, 200]


def test_hunt_fails_when_every_tenant_fails_and_writes_csv_on_request(emu, tmp_path):
    good = block_name("csv")
    tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).save(good)
    out = tmp_path / "rows.csv"
    result = hunt(good, query_name="M365D.list_alerts", params={"start": "-30d"}, output=str(out),
                  output_format="csv")
    assert result.ok and len(result.frame) > 0
    assert pd.read_csv(out).shape[0] == len(result.frame)

    state = hunt(["no-such-tenant-a", "no-such-tenant-b"], "DeviceInfo | take 1", output=str(tmp_path / "x.parquet"),
                 return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="Every tenant failed: no-such-tenant-a: ConfigurationError"):
        state.result()


PACK = """
name: test-pack
timespan: P1D
queries:
  - name: rundll-launches
    query: DeviceProcessEvents | where FileName =~ "rundll32.exe" | take 5
  - name: nothing-here
    query: DeviceProcessEvents | where FileName == "no-such-binary.exe"
  - name: logons-of-an-account
    query_name: M365D.user_logons
    params: {account_name: "no-such-account", start: -1d}
"""


def test_hunt_pack_alerts_only_on_the_queries_with_rows(emu, webhook, tmp_path):
    receiver, hook = webhook
    tenant = block_name("pack")
    tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).save(tenant)
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)

    result = hunt_pack(str(pack), [tenant], notify=[hook], output_dir=str(tmp_path / "hits"))

    assert result.ok and result.alerted
    assert result.rows == {("rundll-launches", tenant): 5, ("nothing-here", tenant): 0,
                           ("logons-of-an-account", tenant): 0}
    assert list(result.hits) == [("rundll-launches", tenant)]
    assert len(pd.read_parquet(result.files[("rundll-launches", tenant)])) == 5
    (message,) = receiver.wait_for(1)
    assert message["body"]["subject"] == "Hunt pack test-pack: 1 hit(s)"
    assert "rundll-launches" in message["body"]["text"] and "nothing-here" not in message["body"]["text"]
    assert artifacts("hunt-pack-test-pack-alert")


def test_load_pack_names_the_bad_entry(tmp_path):
    assert [q.name for q in load_pack(PACK).queries] == ["rundll-launches", "nothing-here", "logons-of-an-account"]
    bad = "queries:\n  - name: a\n    query_name: M365D.user_logons\n    params: {acount_name: x}\n"
    with pytest.raises(ConfigurationError, match="query 'a'.*no parameter 'acount_name'"):
        load_pack(bad)
    with pytest.raises(ConfigurationError, match="either 'query'"):
        load_pack("queries:\n  - name: a\n")
    with pytest.raises(ConfigurationError, match="appears twice"):
        load_pack("queries:\n  - {name: a, query: x}\n  - {name: a, query: y}\n")
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_pack(str(tmp_path / "missing.yaml"))
