"""The response helpers without a Prefect server: the protected list, device resolution, isolation state, IOCs."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from blocks import ProtectedDevices
from connector import connect
from connector.errors import ConfigurationError, NotFoundError
from flows.respond import devices_in_frame, file_hunt_queries
from flows.respond_tasks import find_device, guess_type, iocs_from_frame, isolation_state

DEVICE = {"id": "ad574086113a73b3b75ba463c85f6dac429205e2", "computerDnsName": "dc-01.corp.contoso.com",
          "machineTags": ["Tier0", "Domain Controllers"], "rbacGroupName": "Servers"}


# ---------------------------------------------------------------- the protected list

@pytest.mark.parametrize("fields, reason", [
    ({"device_ids": [DEVICE["id"].upper()]}, "device id"),
    ({"names": ["DC-01.corp.contoso.com."]}, "matches"),
    ({"names": ["dc-01"]}, "matches"),             # the host name before the first dot
    ({"names": ["dc-*"]}, "matches"),
    ({"names": ["*.corp.contoso.com"]}, "matches"),
    ({"names": ["*"]}, "matches"),                 # the kill switch
    ({"tags": ["tier0"]}, "machine tag 'Tier0'"),
    ({"device_groups": ["servers"]}, "device group 'Servers'"),
])
def test_each_kind_of_entry_protects_the_device(fields, reason):
    assert reason in ProtectedDevices(**fields).why_protected(DEVICE)


@pytest.mark.parametrize("fields", [
    {}, {"device_ids": ["b" * 40]}, {"names": ["dc-02*", "corp", "*.contoso.local"]}, {"tags": ["Tier"]},
    {"device_groups": ["Workstations"]},
])
def test_other_entries_do_not_protect_the_device(fields):
    assert ProtectedDevices(**fields).why_protected(DEVICE) is None


def test_the_list_refuses_entries_that_would_protect_nothing_and_drops_blank_rows():
    with pytest.raises(ValidationError, match="40 hexadecimal characters.*Put DNS names under 'names'"):
        ProtectedDevices(device_ids=["dc-01.corp.contoso.com"])
    block = ProtectedDevices(device_ids=["", DEVICE["id"], DEVICE["id"].upper()], names=["  ", "DC-*"], tags=[""])
    assert block.device_ids == [DEVICE["id"]] and block.names == ["dc-*"] and block.tags == []
    assert ProtectedDevices().is_empty() and not block.is_empty()


# ---------------------------------------------------------------- devices and isolation (emulator, no Prefect)

@pytest.fixture
def client(emu, emu_kwargs):
    with connect(**emu_kwargs) as c:
        yield c


def test_find_device_by_id_name_host_name_and_ip(emu, client):
    machine = next(m for m in emu.stores.machines.all() if m["computerDnsName"].startswith("wks"))
    name = machine["computerDnsName"]
    seen = pd.Timestamp(machine["lastSeen"]).floor("s").to_pydatetime()
    for given in ({"device": machine["id"]}, {"device": name}, {"device": name.upper() + "."},
                  {"device": name.split(".")[0]}, {"ip": machine["lastIpAddress"], "at": seen}):
        assert find_device(client, **given)["id"] == machine["id"], given
    with pytest.raises(NotFoundError, match="No device named 'wks-99999'"):
        find_device(client, "wks-99999")
    with pytest.raises(NotFoundError, match="No device had IP address 192.0.2.254"):
        find_device(client, ip="192.0.2.254", at=seen)
    with pytest.raises(ConfigurationError, match="exactly one"):
        find_device(client, device=name, ip=machine["lastIpAddress"])
    with pytest.raises(NotFoundError):  # a prefix is not a name: never a substring match
        find_device(client, name[:5])


def test_isolation_state_follows_the_devices_actions(emu, client):
    emu.action_timing = (0.3, 0.2)
    machine = [m for m in emu.stores.machines.all() if m["osPlatform"].startswith("Windows")][-1]
    assert isolation_state(client, machine["id"])["state"] in ("never", "released")
    poller = client.begin_isolate_device(machine["id"], comment="unit test")
    state = isolation_state(client, machine["id"])
    assert state["state"] == "isolating" and state["action"]["id"] == poller.action_id
    poller.result(timeout=10, interval=0.1)
    assert isolation_state(client, machine["id"])["state"] == "isolated"
    client.begin_release_device(machine["id"], comment="unit test").result(timeout=10, interval=0.1)
    assert isolation_state(client, machine["id"])["state"] == "released"


# ---------------------------------------------------------------- IOCs and hunts

def test_iocs_from_a_hunt_frame_keep_the_real_ones():
    frame = pd.DataFrame({
        "SHA1": ["A" * 40, "a" * 40, None, "not-a-hash"],
        "InitiatingProcessSHA1": ["c" * 40] * 4,                           # the parent: never blocked unasked
        "RemoteIP": ["203.0.113.7", "10.1.2.3", "127.0.0.1", "fe80::1"],
        "RemoteUrl": ["evil.example", "https://evil.example/payload.bin", "", "c2.example."],
        "Other": ["x"] * 4,
    })
    iocs, skipped = iocs_from_frame(frame)
    found = {(i["type"], i["value"]) for i in iocs}
    assert found == {("FileSha1", "a" * 40), ("IpAddress", "203.0.113.7"), ("DomainName", "evil.example"),
                     ("Url", "https://evil.example/payload.bin"), ("DomainName", "c2.example")}
    why = {s["value"]: s["reason"] for s in skipped}
    assert set(why) == {"not-a-hash", "10.1.2.3", "127.0.0.1", "fe80::1"}
    assert "internal" in why["10.1.2.3"] and "not a SHA1" in why["not-a-hash"]

    chosen, _ = iocs_from_frame(frame, {"InitiatingProcessSHA1": "FileSha1"})
    assert chosen == [{"value": "c" * 40, "type": "FileSha1", "column": "InitiatingProcessSHA1"}]
    with pytest.raises(ConfigurationError, match="No column"):
        iocs_from_frame(frame, {"Missing": "auto"})
    with pytest.raises(ConfigurationError, match="no indicator column"):
        iocs_from_frame(frame[["Other"]])


@pytest.mark.parametrize("value, kind", [
    ("a" * 40, "FileSha1"), ("b" * 64, "FileSha256"), ("c" * 32, "FileMd5"), ("d" * 41, None),
    ("2001:db8::1", "IpAddress"), ("198.51.100.9", "IpAddress"), ("http://x.example/a", "Url"),
    ("x.example", "DomainName"), ("hello world", None),
])
def test_guess_type(value, kind):
    assert guess_type(value) == kind


def test_file_hunts_escape_the_hash_and_devices_come_with_their_last_sighting():
    queries = file_hunt_queries("a" * 40)
    assert len(queries) == 2 and all(f'=~ "{"a" * 40}"' in q or f"=~ '{'a' * 40}'" in q for q in queries)
    frame = pd.DataFrame({"DeviceId": ["d1", "d1", "d2", None],
                          "Timestamp": pd.to_datetime(["2026-01-01", "2026-01-03", "2026-01-02", "2026-01-04"],
                                                      utc=True)})
    assert devices_in_frame(frame) == {"d1": "2026-01-03T00:00:00+00:00", "d2": "2026-01-02T00:00:00+00:00"}
    with pytest.raises(ConfigurationError, match="DeviceId nor a DeviceName"):
        devices_in_frame(pd.DataFrame({"x": [1]}))
