"""Machine actions and indicators end to end through the connector against the emulator: every action to
Succeeded, Failed, TimeOut and Cancelled; a pending action reused instead of sent twice (also after a 400
"already in progress" and after a lost answer); indicators with their quota and batch import."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from connector import connect
from connector.actions import MachineActionPoller
from connector.errors import (
    ActionFailedError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
)
from connector.indicators import indicator_body
from emulator import Fault
from emulator.world import now_ticks

SHA1 = "dc154f12dcc716a56b7147b2e1f260dbaf8e67e6"
FAST = {"timeout": 10.0, "interval": 0.05}
# verb -> (extra arguments, action type, scope)
VERBS = {
    "begin_isolate_device": ({"isolation_type": "Selective"}, "Isolate", "Selective"),
    "begin_release_device": ({}, "Unisolate", None),
    "begin_run_antivirus_scan": ({"scan_type": "Full"}, "RunAntiVirusScan", "Full"),
    "begin_collect_investigation_package": ({}, "CollectInvestigationPackage", None),
    "begin_restrict_app_execution": ({}, "RestrictCodeExecution", None),
    "begin_unrestrict_app_execution": ({}, "UnrestrictCodeExecution", None),
    "begin_stop_and_quarantine_file": ({"sha1": SHA1}, "StopAndQuarantineFile", None),
}


@pytest.fixture
def settings(emu, emu_kwargs):
    emu.action_timing = (0.05, 0.1)
    return {**emu_kwargs, "graph_root": emu.graph_url, "mde_root": emu.mde_url}


@pytest.fixture
def client(settings):
    with connect(**settings) as c:
        yield c


@pytest.fixture
def device(emu):
    """A Windows workstation with no action in the seeded history."""
    busy = {a.machine["id"] for a in emu.stores.actions.all()}
    return next(m["id"] for m in emu.stores.machines.all()
                if m["osPlatform"].startswith("Windows") and m["id"] not in busy)


def posts(emu, suffix):
    return [r for r in emu.requests if r.method == "POST" and r.path.endswith("/" + suffix)]


def ours(emu, device, action_type):
    return [a for a in emu.actions_on(device, action_type) if a.requestor == emu.client_id]


def begin(client, verb, device, comment="defender-soar test"):
    extra, _, _ = VERBS[verb]
    if verb == "begin_stop_and_quarantine_file":
        return client.begin_stop_and_quarantine_file(device, extra["sha1"], comment=comment)
    return getattr(client, verb)(device, comment=comment, **extra)


# ---------------------------------------------------------------- every action to the end


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_action_runs_to_succeeded(emu, client, device, verb):
    _, action_type, scope = VERBS[verb]
    poller = begin(client, verb, device)
    assert not poller.reused and poller.action_id == ours(emu, device, action_type)[0].id
    assert poller.status() in ("Pending", "InProgress", "Succeeded")
    action = poller.result(**FAST)
    assert action["status"] == "Succeeded" and action["type"] == action_type and action["scope"] == scope
    assert action["machineId"] == device and action["requestorComment"] == "defender-soar test"
    assert poller.done() and len(ours(emu, device, action_type)) == 1
    assert len([r for r in emu.requests if r.method == "POST" and r.path.startswith(f"/api/machines/{device}/")]) == 1


def test_isolate_then_release_changes_the_device_and_the_package_can_be_fetched(emu, client, device):
    client.begin_isolate_device(device, comment="contain").result(**FAST)
    assert emu.isolated(device)
    client.begin_release_device(device, comment="all clear").result(**FAST)
    assert not emu.isolated(device)
    collected = client.begin_collect_investigation_package(device, comment="forensics").result(**FAST)
    url = client.get_investigation_package_uri(collected["id"])
    assert url.startswith(emu.mde_url + "/safedownload/")


@pytest.mark.parametrize("outcome", ["Failed", "TimeOut"])
def test_a_failed_or_timed_out_action_raises_with_the_final_status(emu, client, device, outcome):
    emu.set_device_action_outcome(device, outcome)
    poller = client.begin_isolate_device(device, comment="contain")
    with pytest.raises(ActionFailedError, match=f"{poller.action_id}.*ended {outcome}") as caught:
        poller.result(**FAST)
    assert caught.value.final_status == outcome and caught.value.action["status"] == outcome
    assert not emu.isolated(device)


def test_next_action_outcome_fails_only_the_next_action(emu, client, device):
    emu.next_action_outcome = "Failed"
    with pytest.raises(ActionFailedError, match="ended Failed"):
        client.begin_run_antivirus_scan(device, comment="scan").result(**FAST)
    assert client.begin_run_antivirus_scan(device, comment="scan again").result(**FAST)["status"] == "Succeeded"


def test_a_cancelled_action_raises_with_the_cancellation_comment(emu, client, device):
    emu.action_timing = (30, 30)
    poller = client.begin_isolate_device(device, comment="contain")
    cancelled = poller.cancel("wrong device")
    assert cancelled["status"] == "Cancelled" and cancelled["id"] == poller.action_id
    with pytest.raises(ActionFailedError, match="ended Cancelled: wrong device") as caught:
        poller.result(**FAST)
    assert caught.value.final_status == "Cancelled"
    assert emu.action_status(poller.action_id) == "Cancelled" and not emu.isolated(device)


def test_result_gives_up_after_its_timeout_and_the_action_goes_on(emu, client, device):
    emu.action_timing = (30, 30)
    poller = client.begin_run_antivirus_scan(device, comment="scan")
    started = time.monotonic()
    with pytest.raises(ServiceError, match="still Pending after 0.3s"):
        poller.result(timeout=0.3, interval=0.05)
    assert time.monotonic() - started < 3
    emu.finish_action(poller.action_id)
    assert poller.result(**FAST)["status"] == "Succeeded"  # the same poller picks it up later


# ---------------------------------------------------------------- never twice


def test_a_pending_action_is_reused_and_only_one_post_reaches_the_service(emu, settings, client, device):
    emu.action_timing = (30, 30)
    first = client.begin_isolate_device(device, comment="contain")
    with connect(**settings) as rerun:  # a re-run flow, a retried task: a new client, same device
        second = rerun.begin_isolate_device(device, comment="contain (retry)")
    assert second.reused and not first.reused and second.action_id == first.action_id
    assert len(posts(emu, "isolate")) == 1 and len(ours(emu, device, "Isolate")) == 1
    # Another type is another action.
    scan = client.begin_run_antivirus_scan(device, comment="scan")
    assert not scan.reused and scan.action_id != first.action_id


def test_already_in_progress_from_the_service_returns_the_running_action(emu, settings, client, device):
    """Two playbooks race: ours looks first (nothing running), the other submits, then ours submits and gets 400."""
    emu.action_timing = (30, 30)
    # Our look-up is answered "nothing pending" at once but delivered late, leaving room for the other playbook.
    emu.faults.add(Fault("slow", path=r"/api/machineactions$", method="GET", delay=0.5))
    other: dict = {}

    def other_playbook() -> None:
        deadline = time.monotonic() + 5
        while not any(r.path == "/api/machineactions" for r in emu.requests) and time.monotonic() < deadline:
            time.sleep(0.01)
        with connect(**settings) as c:
            other["poller"] = c.begin_isolate_device(device, comment="the other playbook")

    racer = threading.Thread(target=other_playbook)
    racer.start()
    poller = client.begin_isolate_device(device, comment="ours")
    racer.join(5)
    assert [r.status for r in posts(emu, "isolate")] == [201, 400]
    assert poller.reused and poller.action_id == other["poller"].action_id
    assert len(ours(emu, device, "Isolate")) == 1


def test_a_lost_answer_is_recovered_by_lookup_and_never_sent_twice(emu, settings, device):
    emu.action_timing = (30, 30)
    emu.faults.add(Fault("slow", path=r"/isolate$", method="POST", delay=3))
    with connect(**{**settings, "timeout": 1}) as c:
        poller = c.begin_isolate_device(device, comment="contain")
        assert len(posts(emu, "isolate")) == 1 and len(ours(emu, device, "Isolate")) == 1
        assert poller.action_id == ours(emu, device, "Isolate")[0].id
        emu.finish_action(poller.action_id)
        assert poller.result(**FAST)["status"] == "Succeeded"
    assert emu.isolated(device)


def test_a_lost_answer_of_an_action_that_already_finished_is_still_found(emu, settings, device):
    """The device was quick: by the time we look, the action is over. It is found, not reported as never created."""
    emu.action_timing = (0, 0)
    emu.faults.add(Fault("slow", path=r"/runAntiVirusScan$", method="POST", delay=3))
    with connect(**{**settings, "timeout": 1}) as c:
        poller = c.begin_run_antivirus_scan(device, comment="scan after a lost answer")
        assert poller.result(**FAST)["status"] == "Succeeded"
    assert len(posts(emu, "runAntiVirusScan")) == 1 and len(ours(emu, device, "RunAntiVirusScan")) == 1
    assert poller.action_id == ours(emu, device, "RunAntiVirusScan")[0].id


def test_a_lost_answer_of_an_action_never_created_says_so(emu, settings, device):
    # The connection drops before any answer, and nothing was created: say so, and send nothing twice.
    emu.faults.add(Fault("drop", path=r"/isolate$", method="POST"))
    with connect(**{**settings, "timeout": 1}) as c, pytest.raises(ServiceError, match="not created"):
        c.begin_isolate_device(device, comment="contain")
    assert len(posts(emu, "isolate")) == 1 and not ours(emu, device, "Isolate")


def test_unknown_devices_and_missing_permissions(emu, settings, client):
    with pytest.raises(NotFoundError):
        client.begin_isolate_device("0" * 40, comment="contain")
    reader_id = str(uuid.uuid4())
    emu.add_app(emu.tenant_id, reader_id, "reader-secret-value", roles=["Machine.Read.All"])
    with connect(**{**settings, "client_id": reader_id, "client_secret": "reader-secret-value"}) as reader:
        with pytest.raises(PermissionDeniedError, match="needs the application permission Machine.Isolate"):
            reader.begin_isolate_device(next(m["id"] for m in emu.stores.machines.all()), comment="contain")
        with pytest.raises(PermissionDeniedError, match="Ti.ReadWrite"):
            list(reader.list_indicators())
        # Cancelling needs the action's own permission: reading it is not enough.
        emu.action_timing = (30, 30)
        isolation = client.begin_isolate_device(next(m["id"] for m in emu.stores.machines.all()), comment="contain")
        seen_by_reader = MachineActionPoller(reader, reader.get_machine_action(isolation.action_id))
        with pytest.raises(PermissionDeniedError, match="needs the application permission Machine.Isolate"):
            seen_by_reader.cancel("not mine to cancel")
        assert emu.action_status(isolation.action_id) == "Pending"


# ---------------------------------------------------------------- indicators


def soon(days=7):
    return datetime.now(UTC) + timedelta(days=days)


def test_create_update_list_and_delete_an_indicator(emu, client):
    made = client.create_indicator("198.51.100.77", "ipaddress", "block", title="C2", description="from a hunt",
                                   severity="high", expiration=soon())
    assert made["indicatorType"] == "IpAddress" and made["action"] == "Block" and made["severity"] == "High"
    assert made["expirationTime"].startswith(soon().strftime("%Y-%m-%d"))
    again = client.create_indicator("198.51.100.77", "IpAddress", "Warn", title="C2 (confirmed)", description="x")
    assert again["id"] == made["id"] and again["action"] == "Warn"
    listed = list(client.list_indicators(filter="indicatorValue eq '198.51.100.77'"))
    assert [i["id"] for i in listed] == [made["id"]] and listed[0]["title"] == "C2 (confirmed)"
    frame = client.list_indicators().to_frame()
    assert len(frame) == len(emu.stores.indicators.all()) and made["id"] in set(frame["id"])
    client.delete_indicator(made["id"])
    assert emu.stores.indicators.get(made["id"]) is None
    with pytest.raises(NotFoundError):
        client.delete_indicator(made["id"])


def test_the_service_refusals_reach_the_caller_and_bad_bodies_are_never_sent(emu, client):
    with pytest.raises(BadRequestError, match="only external IP addresses"):
        client.create_indicator("10.0.0.10", "IpAddress", "Block", title="t", description="d")
    emu.requests.clear()
    with pytest.raises(BadRequestError, match="CIDR"):
        client.create_indicator("198.51.100.0/24", "IpAddress", "Block", title="t", description="d")
    with pytest.raises(BadRequestError, match="generate_alert"):
        client.create_indicator("contoso-c2.example", "DomainName", "Audit", title="t", description="d")
    assert not [r for r in emu.requests if r.method == "POST"]


def test_the_quota_error_names_the_limit_and_what_to_do(emu, client):
    emu.indicator_quota = emu.stores.indicators.active(now_ticks())
    with pytest.raises(BadRequestError) as caught:
        client.create_indicator("198.51.100.78", "IpAddress", "Block", title="one too many", description="d")
    message = str(caught.value)
    assert f"the limit is {emu.indicator_quota}" in message  # the service's words
    assert "15,000" in message and "delete" in message.lower()  # the connector's advice
    # Updating one that exists is not a new indicator: the quota does not stop it.
    seeded = next(i for i in emu.stores.indicators.all() if i.active(now_ticks()) and i.type == "IpAddress")
    client.create_indicator(seeded.value, "IpAddress", "Block", title="still fine", description="d")


def test_import_sends_batches_of_500_and_returns_every_result(emu, client):
    bodies = [indicator_body(f"198.51.{n // 250}.{n % 250 + 1}", "IpAddress", "Block", title=f"ioc {n}",
                             description="bulk", expiration=soon()) for n in range(501)]
    bodies.append(indicator_body("10.9.9.9", "IpAddress", "Block", title="internal", description="bulk"))
    results = client.import_indicators(bodies)
    assert len(results) == 502 and len([r for r in emu.requests if r.path == "/api/indicators/import"]) == 2
    assert [r["isFailed"] for r in results].count(True) == 1 and "external" in results[-1]["failureReason"]
    assert len(list(client.list_indicators(filter="title eq 'ioc 500'"))) == 1


def test_a_pending_quarantine_of_another_file_is_not_reused(emu, client, device):
    emu.action_timing = (30.0, 30.0)  # the first stays pending for the whole test
    first = client.begin_stop_and_quarantine_file(device, SHA1, comment="first file")
    other = "0123456789abcdef0123456789abcdef01234567"
    try:
        second = client.begin_stop_and_quarantine_file(device, other, comment="second file")
    except Exception as exc:  # noqa: BLE001 - the service may refuse a second file while one is pending
        assert "in progress" in str(exc)
    else:
        assert not second.reused and second.action_id != first.action_id
    assert client.begin_stop_and_quarantine_file(device, SHA1.upper(), comment="first again").reused
