"""The response playbooks end to end: flows under the Prefect test harness, the emulator as Defender.

Approvals are answered the way a person or another program would: ``resume_flow_run`` with a
``run_input`` while the run is paused. Machine actions are counted in the emulator.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run

from blocks import ProtectedDevices
from connector.errors import ActionFailedError, ConfigurationError
from emulator.faults import Fault
from emulator.world import ts
from flows.respond import block_indicators, contain_device, release_device, respond_file
from flows.respond_tasks import ProtectedDeviceError, isolate_device

from .flow_fixtures import Receiver, block_name, tenant_block
from .prefect_fixtures import _no_default_azure_credential, prefect_api  # noqa: F401

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]

#: Fast polling everywhere: the emulator's actions end in half a second here.
FAST = {"approval_poll_seconds": 1, "poll_interval": 0.2, "action_timeout": 30}


#: Ids of the emulator's seeded machine actions (its history): not counted as ours.
SEEDED: set[str] = set()


@pytest.fixture(autouse=True, scope="module")
def _no_heartbeats(prefect_api):  # noqa: F811
    """No flow-run heartbeat thread: ending one costs up to a second per run, and nothing here can crash unseen."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(autouse=True)
def _quick_actions(emu):
    emu.action_timing = (0.2, 0.3)
    SEEDED.clear()
    SEEDED.update(a.id for a in emu.stores.actions.all())


# Blocks are saved once for the module (each save is an API call); the emulator is reset for each test.

@pytest.fixture(name="saved_tenant", scope="module")
def saved_tenant_fixture(emulator, prefect_api) -> str:  # noqa: F811
    """A saved tenant block for the emulator's default tenant."""
    name = block_name("emu")
    tenant_block(emulator, emulator.tenant_id, emulator.client_id, emulator.client_secret).save(name)
    return name


@pytest.fixture(name="unprotected", scope="module")
def unprotected_fixture(prefect_api) -> str:  # noqa: F811
    """An empty protected-devices list (the flows refuse to run without one)."""
    name = block_name("prot")
    ProtectedDevices().save(name)
    return name


@pytest.fixture(name="hook_block", scope="module")
def hook_block_fixture(prefect_api):  # noqa: F811
    """A receiver and a saved custom-webhook notification block posting to it, for the module."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    receiver = Receiver()
    name = block_name("hook")
    CustomWebhookNotificationBlock(name="soc", url=receiver.url,
                                   json_data={"subject": "{{subject}}", "text": "{{body}}"}).save(name)
    yield receiver, f"custom-webhook/{name}"
    receiver.close()


@pytest.fixture(name="webhook")
def webhook_fixture(hook_block):
    """The module's receiver, emptied for this test, and its block reference."""
    receiver, ref = hook_block
    receiver.requests.clear()
    return receiver, ref


def machine(emu, *, tags: tuple[str, ...] = (), os_prefix: str = "Windows", skip: int = 0) -> dict:
    """A seeded machine with exactly these tags and an OS starting with ``os_prefix``."""
    found = [m for m in emu.stores.machines.all()
             if tuple(m["machineTags"]) == tags and m["osPlatform"].startswith(os_prefix)]
    return found[skip]


def isolations(emu, device: dict) -> list:
    """The Isolate actions on a device, apart from the seeded history."""
    return [a for a in emu.actions_on(device["id"], "Isolate") if a.id not in SEEDED]


def alert_on_plain_workstation(emu):
    """An alert (with evidence and an incident) on a Windows workstation without tags."""
    return next(a for a in emu.stores.alerts.all()
                if a.machine["computerDnsName"].startswith("wks") and not a.machine["machineTags"])


def start(playbook, **parameters):
    """Run a flow in a thread; returns (thread, box with 'state', flow run name)."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    box: dict = {}
    run = lambda: box.update(state=playbook.with_options(flow_run_name=name)(**parameters, return_state=True))  # noqa: E731
    # The thread sees this one's Prefect settings (the harness, no heartbeats).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    return thread, box, name


def wait_paused(name: str, timeout: float = 60.0):
    """The flow run called ``name`` once it is Paused with its form saved (the state is set before the form)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
            if runs and runs[0].state is not None and runs[0].state.is_paused():
                keyset = runs[0].state.state_details.run_input_keyset
                try:
                    client.read_flow_run_input(runs[0].id, keyset["schema"])
                    return runs[0]
                except ObjectNotFound:
                    pass
            if runs and runs[0].state is not None and runs[0].state.is_final():
                raise AssertionError(f"run ended without pausing: {runs[0].state}")
            time.sleep(0.2)  # polling the API, bounded by the deadline
    raise AssertionError(f"flow run {name} did not pause within {timeout} s")


def approval_form(run) -> str:
    """The description shown with the approval form (what the UI renders above it)."""
    keyset = run.state.state_details.run_input_keyset
    with get_client(sync_client=True) as client:
        return client.read_flow_run_input(run.id, keyset["description"])


# ---------------------------------------------------------------- approval

def test_approved_containment_isolates_once_comments_and_notifies(emu, saved_tenant, unprotected, webhook):
    receiver, hook = webhook
    alert = alert_on_plain_workstation(emu)
    device = alert.machine
    thread, box, name = start(contain_device, tenant=saved_tenant, device=device["computerDnsName"],
                              alert_id=alert.id, reason="C2 beacon", protected=unprotected, notify=[hook], **FAST)
    run = wait_paused(name)

    form = approval_form(run)
    assert device["computerDnsName"] in form and device["id"] in form
    assert f"| Risk score | {device['riskScore']} |" in form and f"| Exposure level | {device['exposureLevel']} |" in form
    assert alert.title in form  # the open alert
    assert "## Evidence" in form and alert.image.FileName in form  # the alert's process/file evidence
    assert isolations(emu, device) == []  # nothing happens while waiting
    assert emu.client_secret not in form

    with pytest.raises(RuntimeError, match="approver"):  # an approval must say who gives it
        resume_flow_run(run.id, run_input={"approve": True})
    resume_flow_run(run.id, run_input={"approve": True, "approver": "alice@contoso.com", "comment": "confirmed C2"})
    thread.join(60)

    state = box["state"]
    assert state.is_completed(), state
    result = state.result()
    assert result.outcome == "done" and result.approval["approver"] == "alice@contoso.com"
    (action,) = isolations(emu, device)
    assert emu.isolated(device["id"])
    assert result.actions[0]["action_id"] == action.id
    assert "alice@contoso.com" in action.comment and str(alert.incident_id) in action.comment
    comment = emu.stores.incidents.get(alert.incident_id).comments[-1].comment
    assert "alice@contoso.com" in comment and action.id in comment and "isolated" in comment
    (posted,) = receiver.wait_for(1)
    assert device["computerDnsName"] in posted["body"]["subject"] and action.id in posted["body"]["text"]


def test_refused_containment_does_nothing_but_say_who_refused(emu, saved_tenant, unprotected):
    alert = alert_on_plain_workstation(emu)
    device = alert.machine
    thread, box, name = start(contain_device, tenant=saved_tenant, device=device["id"], alert_id=alert.id,
                              protected=unprotected, **FAST)
    run = wait_paused(name)
    resume_flow_run(run.id, run_input={"approve": False, "approver": "bob", "comment": "false positive"})
    thread.join(60)

    state = box["state"]
    assert state.is_completed() and state.name == "Refused"
    assert state.result().outcome == "refused"
    assert isolations(emu, device) == [] and not emu.isolated(device["id"])
    comment = emu.stores.incidents.get(alert.incident_id).comments[-1].comment
    assert "refused by bob (false positive)" in comment


def test_unanswered_containment_times_out_and_does_nothing(emu, saved_tenant, unprotected, webhook):
    receiver, hook = webhook
    alert = alert_on_plain_workstation(emu)
    device = alert.machine
    comments_before = len(emu.stores.incidents.get(alert.incident_id).comments)

    started = time.monotonic()
    state = contain_device(saved_tenant, device=device["computerDnsName"], alert_id=alert.id, protected=unprotected,
                           approval_timeout=2, notify=[hook], return_state=True, **FAST)

    assert time.monotonic() - started < 30
    assert state.is_failed() and "never resumed" in state.message  # Prefect's verdict on an expired pause
    assert isolations(emu, device) == [] and not emu.isolated(device["id"])
    assert len(emu.stores.incidents.get(alert.incident_id).comments) == comments_before  # nothing written to Defender
    (posted,) = receiver.wait_for(1)
    assert "no answer" in posted["body"]["subject"] and "nothing was done" in posted["body"]["text"]


def test_a_device_protected_while_waiting_for_approval_is_still_refused(emu, saved_tenant):
    device = machine(emu)
    name_of_list = block_name("prot")
    ProtectedDevices().save(name_of_list)
    thread, box, name = start(contain_device, tenant=saved_tenant, device=device["id"], protected=name_of_list, **FAST)
    run = wait_paused(name)
    ProtectedDevices(device_ids=[device["id"]]).save(name_of_list, overwrite=True)  # someone adds it meanwhile
    resume_flow_run(run.id, run_input={"approve": True, "approver": "alice"})
    thread.join(60)

    state = box["state"]
    assert state.is_failed()
    with pytest.raises(ProtectedDeviceError, match="device id"):
        state.result()
    assert isolations(emu, device) == []


# ---------------------------------------------------------------- protected devices

def test_a_protected_device_is_never_isolated_by_id_name_or_ip(emu, saved_tenant):
    server = machine(emu, tags=("Tier0",), os_prefix="WindowsServer")  # protected by its tag
    named = machine(emu, skip=1)                                         # protected by a name pattern
    listed = machine(emu, skip=2)                                        # protected by its id
    protected = block_name("prot")
    ProtectedDevices(tags=["tier0"], names=[named["computerDnsName"].split(".")[0].upper() + "*"],
                     device_ids=[listed["id"]]).save(protected)
    seen = {m["id"]: pd.Timestamp(m["lastSeen"]).floor("s").to_pydatetime() for m in (server, named, listed)}
    attempts = [
        {"device": server["id"]}, {"device": server["computerDnsName"].upper()},
        {"device": server["computerDnsName"].split(".")[0]}, {"ip": server["lastIpAddress"], "at": seen[server["id"]]},
        {"ip": named["lastIpAddress"], "at": seen[named["id"]]}, {"device": listed["computerDnsName"]},
    ]
    for given in attempts:
        # No approval step: were the check to let it through, the device would be isolated at once.
        state = contain_device(saved_tenant, protected=protected, approval=False, return_state=True, **given, **FAST)
        assert state.is_failed(), given
        with pytest.raises(ProtectedDeviceError, match="Nothing was done"):
            state.result()
    for device in (server, named, listed):
        assert isolations(emu, device) == [] and not emu.isolated(device["id"])
    assert not any(r.method == "POST" and r.path.endswith("/isolate") for r in emu.requests)


def test_without_its_protected_list_nothing_is_isolated(emu, saved_tenant):
    device = machine(emu)
    state = contain_device(saved_tenant, device=device["id"], protected="no-such-list", approval=False,
                           return_state=True, **FAST)
    assert state.is_failed()
    with pytest.raises(ConfigurationError, match="refuse to act without their protected list"):
        state.result()
    assert isolations(emu, device) == []


# ---------------------------------------------------------------- dry run

def test_dry_run_shows_the_plan_and_changes_nothing(emu, saved_tenant, unprotected, webhook):
    receiver, hook = webhook
    alert = alert_on_plain_workstation(emu)
    device = alert.machine
    before = len(emu.stores.incidents.get(alert.incident_id).comments)

    state = contain_device(saved_tenant, device=device["computerDnsName"],
                           alert_id=alert.id, protected=unprotected, dry_run=True, notify=[hook], return_state=True,
                           **FAST)

    assert state.is_completed() and state.name == "Dry run"
    result = state.result()
    assert result.outcome == "dry-run" and "Nothing was done" in result.message
    assert f"| Exposure level | {device['exposureLevel']} |" in result.plan and alert.title in result.plan
    assert isolations(emu, device) == []
    assert len(emu.stores.incidents.get(alert.incident_id).comments) == before
    assert not any(r.method in ("POST", "PATCH") for r in emu.requests if "/oauth2/" not in r.path)
    time.sleep(0.5)  # give a (wrong) notification time to arrive before checking that none did
    assert receiver.requests == []


# ---------------------------------------------------------------- one action per device

def test_a_rerun_or_a_double_submission_leaves_one_isolation(emu, saved_tenant, unprotected):
    device = machine(emu, skip=3)
    first = contain_device(saved_tenant, device=device["id"], protected=unprotected, approval=False,
                           return_state=True, **FAST)
    assert first.is_completed() and first.result().outcome == "done"
    again = contain_device(saved_tenant, device=device["computerDnsName"], protected=unprotected, approval=False,
                           return_state=True, **FAST)
    assert again.result().outcome == "already" and again.name == "Nothing to do"
    assert len(isolations(emu, device)) == 1

    # An isolation still pending (submitted by someone else a moment ago) is awaited, not submitted again.
    other = machine(emu, skip=4)
    emu.action_timing = (1.0, 0.2)
    with tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).get_client() as client:
        pending = client.begin_isolate_device(other["id"], comment="by hand")
    state = contain_device(saved_tenant, device=other["id"], protected=unprotected, approval=False,
                           return_state=True, **FAST)
    assert state.is_completed()
    assert [a.id for a in isolations(emu, other)] == [pending.action_id]
    assert state.result().actions[0]["reused"] is True


def test_a_retried_task_leaves_one_isolation(emu, saved_tenant):
    device = machine(emu, skip=5)
    # The action succeeds at once, but the first look at it fails (not retried by the connector): Prefect retries
    # the task, and the retry finds nothing pending: only the finished isolation says not to submit again.
    emu.action_timing = (0.05, 0.05)
    emu.faults.add(Fault("status", status=404, method="GET", path=r"/api/machineactions/[0-9a-f-]{36}$", times=1))

    @flow
    def isolate_with_retries():
        return isolate_device.with_options(retries=2, retry_delay_seconds=0)(
            saved_tenant, device["id"], comment="retry test", timeout=30, interval=0.2)

    outcome = isolate_with_retries()

    assert outcome["status"] == "Succeeded"
    assert len(isolations(emu, device)) == 1
    assert sum(r.method == "POST" and r.path.endswith("/isolate") for r in emu.requests) == 1


def test_a_read_timeout_on_the_isolate_post_leaves_one_isolation(emu):
    device = machine(emu, skip=6)
    tenant = block_name("slow")
    block = tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret)
    block.timeout = 1.5
    block.save(tenant)
    protected = block_name("prot")
    ProtectedDevices().save(protected)
    # The service creates the action, but its answer comes after the client has given up.
    emu.faults.add(Fault("slow", method="POST", path=r"/isolate$", delay=3))

    state = contain_device(tenant, device=device["id"], protected=protected, approval=False, return_state=True,
                           **FAST)

    assert state.is_completed(), state
    (action,) = isolations(emu, device)
    assert state.result().actions[0]["action_id"] == action.id and emu.isolated(device["id"])
    assert sum(r.method == "POST" and r.path.endswith("/isolate") for r in emu.requests) == 1


# ---------------------------------------------------------------- failures and release

def test_a_failed_isolation_is_commented_notified_and_fails_the_run(emu, saved_tenant, unprotected, webhook):
    receiver, hook = webhook
    alert = alert_on_plain_workstation(emu)
    device = alert.machine
    emu.set_device_action_outcome(device["id"], "Failed")

    state = contain_device(saved_tenant, device=device["id"], alert_id=alert.id, protected=unprotected,
                           approval=False, notify=[hook], return_state=True, **FAST)

    assert state.is_failed()
    with pytest.raises(ActionFailedError, match="Failed"):
        state.result()
    assert not emu.isolated(device["id"])
    assert "did not complete" in emu.stores.incidents.get(alert.incident_id).comments[-1].comment
    (posted,) = receiver.wait_for(1)
    assert "FAILED" in posted["body"]["subject"]


def test_release_device_releases_once(emu, saved_tenant):
    device = machine(emu, skip=7)
    with tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).get_client() as client:
        client.begin_isolate_device(device["id"], comment="isolated earlier").result(timeout=10, interval=0.2)
    assert emu.isolated(device["id"])

    state = release_device(saved_tenant, device=device["computerDnsName"], reason="clean", return_state=True, **FAST)
    assert state.is_completed() and state.result().outcome == "done"
    assert not emu.isolated(device["id"])
    again = release_device(saved_tenant, device=device["id"], return_state=True, **FAST)
    assert again.result().outcome == "already"
    assert len([a for a in emu.actions_on(device["id"], "Unisolate") if a.id not in SEEDED]) == 1


# ---------------------------------------------------------------- indicators and files

def test_block_indicators_from_a_hunt_expire_and_a_rerun_adds_none(emu, saved_tenant):
    query = ("DeviceNetworkEvents | where RemoteUrl in ('xn--mnchen-3ya.example', 'fs01.contoso.local') "
             "| project RemoteIP, RemoteUrl")
    dry = block_indicators(saved_tenant, query=query, timespan="P30D", dry_run=True, return_state=True)
    planned = dry.result()
    assert planned.outcome == "dry-run"
    values = {i["value"] for i in planned.indicators}
    assert {"192.0.2.200", "xn--mnchen-3ya.example", "fs01.contoso.local"} <= values
    assert "10.0.0.11" in planned.skipped and "internal" in planned.skipped["10.0.0.11"]  # never block our own
    before = len(emu.stores.indicators.all())

    incident = emu.stores.incidents.all()[0]
    state = block_indicators(saved_tenant, query=query, timespan="P30D", approval=False, expires_in_days=7,
                             incident_id=str(incident.id), return_state=True)

    result = state.result()
    assert result.outcome == "done" and all(r["ok"] for r in result.indicators)
    made = [emu.stores.indicators.find(r["type"], r["value"]) for r in result.indicators]
    assert all(i is not None and i.action == "AlertAndBlock" for i in made)
    soon = datetime.now(UTC) + timedelta(days=7)
    for indicator in made:
        expires = pd.Timestamp(ts(indicator.expiration))
        assert abs(expires - pd.Timestamp(soon)) < pd.Timedelta(minutes=5)
    assert len(emu.stores.indicators.all()) == before + len(made)
    assert "3 of 3 AlertAndBlock indicator(s)" in incident.comments[-1].comment
    block_indicators(saved_tenant, query=query, timespan="P30D", approval=False, expires_in_days=7, return_state=True)
    assert len(emu.stores.indicators.all()) == before + len(made)  # created or updated: never twice


def test_respond_file_quarantines_on_every_device_the_hunt_found_once(emu, saved_tenant):
    sha1 = "62723258591f09c92448a72a41be1a2ce8892879"  # whoami.exe, seen on many devices
    windows = [machine(emu, skip=k) for k in (8, 9, 10)]
    linux = machine(emu, os_prefix="Linux")  # Defender cannot quarantine there: that device fails, the others go on
    names = ", ".join(f"'{m['computerDnsName']}'" for m in windows + [linux])
    hunt = f"DeviceProcessEvents | where DeviceName in ({names}) | distinct DeviceId, DeviceName"  # "found it there"
    spared = windows[0]
    protected = block_name("prot")
    ProtectedDevices(device_ids=[spared["id"]]).save(protected)

    state = respond_file(saved_tenant, sha1, query=hunt, protected=protected, approval=False, return_state=True,
                         **FAST)

    result = state.result()
    assert state.name == "Completed with failures" and result.outcome == "partial"
    assert set(result.skipped) == {spared["computerDnsName"]}
    assert {a["device_id"] for a in result.actions} == {m["id"] for m in windows[1:]}
    assert set(result.failures) == {linux["computerDnsName"]} and "not supported" in result.failures[linux["computerDnsName"]]

    def quarantines(device):
        return [a for a in emu.actions_on(device["id"], "StopAndQuarantineFile") if a.sha1 == sha1 and a.id not in SEEDED]

    assert [len(quarantines(m)) for m in windows] == [0, 1, 1]
    again = respond_file(saved_tenant, sha1, query=hunt, protected=protected, approval=False, return_state=True,
                         **FAST)
    assert all(a["already"] for a in again.result().actions) and len(again.result().actions) == 2
    assert [len(quarantines(m)) for m in windows] == [0, 1, 1]  # a re-run submits nothing new


def test_respond_file_by_default_hunts_both_tables_for_the_file(emu, saved_tenant, unprotected):
    sha1 = "dc154f12dcc716a56b7147b2e1f260dbaf8e67e6"  # upd.exe
    with tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).get_client() as client:
        expected = set()
        for table in ("DeviceProcessEvents", "DeviceFileEvents"):
            expected |= set(client.run_hunting_query(
                f"{table} | where SHA1 == '{sha1}' or InitiatingProcessSHA1 == '{sha1}' | distinct DeviceId",
                timespan="P30D")["DeviceId"])

    state = respond_file(saved_tenant, sha1.upper(), protected=unprotected, dry_run=True, return_state=True, **FAST)

    result = state.result()
    assert result.outcome == "dry-run" and {d["id"] for d in result.devices} == expected
    assert not any(a.sha1 == sha1 and a.id not in SEEDED for a in emu.stores.actions.all())


# ---------------------------------------------------------------- the command line

def cli(*args: str):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_cli_help_and_usage_errors():
    for command in ("contain", "release", "block-indicators", "respond-file"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "--dry-run" in result.stdout and "Exit codes" in result.stdout, command
    assert cli("contain", "--tenant", "t").exit_code == 2  # neither --device nor --ip
    assert cli("contain", "--tenant", "t", "--device", "d", "--ip", "10.0.0.1").exit_code == 2


def test_cli_contain_dry_run_then_approved_with_yes(emu, saved_tenant, unprotected):
    alert = alert_on_plain_workstation(emu)
    device = alert.machine
    dry = cli("contain", "--tenant", saved_tenant, "--device", device["computerDnsName"], "--alert", alert.id,
              "--protected", unprotected, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"# Isolate {device['computerDnsName']}?" in dry.stdout and "Nothing was done" in dry.stdout
    assert isolations(emu, device) == []

    done = cli("contain", "--tenant", saved_tenant, "--device", device["id"], "--alert", alert.id, "--protected",
               unprotected, "--yes", "--approver", "carol", "--reason", "ransomware", "--poll-interval", "0.2")
    assert done.exit_code == 0, done.stderr
    assert "Approved as carol" in done.stderr and "is isolated" in done.stdout
    (action,) = isolations(emu, device)
    assert "carol" in action.comment and "ransomware" in action.comment
    assert "approved by carol" in emu.stores.incidents.get(alert.incident_id).comments[-1].comment


def test_cli_refuses_a_protected_device_with_exit_4(emu, saved_tenant):
    device = machine(emu, tags=("Tier0",), os_prefix="WindowsServer")
    protected = block_name("prot")
    ProtectedDevices(tags=["Tier0"]).save(protected)
    seen = pd.Timestamp(device["lastSeen"]).isoformat()
    result = cli("contain", "--tenant", saved_tenant, "--ip", device["lastIpAddress"], "--at", seen, "--protected",
                 protected, "--yes", "--approver", "carol")
    assert result.exit_code == 4 and "Refused:" in result.stderr and "Tier0" in result.stderr
    assert isolations(emu, device) == []


def test_cli_without_yes_waits_for_an_answer_from_elsewhere(emu, saved_tenant, unprotected):
    device = machine(emu, skip=11)

    def refuse_when_paused():
        deadline = time.monotonic() + 60
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                for run in client.read_flow_runs(flow_run_filter=FlowRunFilter()):
                    if run.state and run.state.is_paused() and run.parameters.get("device") == device["id"]:
                        try:
                            client.read_flow_run_input(run.id, run.state.state_details.run_input_keyset["schema"])
                        except ObjectNotFound:
                            continue
                        resume_flow_run(run.id, run_input={"approve": False, "approver": "dave"})
                        return
                time.sleep(0.2)  # polling the API, bounded by the deadline

    helper = threading.Thread(target=contextvars.copy_context().run, args=(refuse_when_paused,), daemon=True)
    helper.start()
    result = cli("contain", "--tenant", saved_tenant, "--device", device["id"], "--protected", unprotected,
                 "--approval-timeout", "60")
    helper.join(10)
    assert result.exit_code == 4, result.stderr
    assert "Waiting up to 60 s for an approval" in result.stderr and "refused by dave" in result.stdout
    assert isolations(emu, device) == []


def test_cli_block_indicators_and_respond_file_dry_runs(emu, saved_tenant, unprotected):
    result = cli("block-indicators", "--tenant", saved_tenant, "--value", "203.0.113.9", "--value", "10.9.9.9",
                 "--value", "bad.example", "--expires-days", "3", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "203.0.113.9" in result.stdout and "bad.example" in result.stdout
    assert "skipped 10.9.9.9: an internal" in result.stderr
    assert emu.stores.indicators.find("IpAddress", "203.0.113.9") is None

    device = machine(emu)
    result = cli("respond-file", "--tenant", saved_tenant, "--sha1", "a" * 40, "--device", device["computerDnsName"],
                 "--protected", unprotected, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert device["id"] in result.stdout and "would be stopped and quarantined on 1 device(s)" in result.stdout
    assert emu.actions_on(device["id"], "StopAndQuarantineFile") == [] or all(
        a.id in SEEDED for a in emu.actions_on(device["id"], "StopAndQuarantineFile"))
