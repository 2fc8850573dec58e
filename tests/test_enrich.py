"""Entity enrichment (connector/enrich.py) against the emulator: one lookup per unique entity, mapped onto every row."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pandas as pd
import pytest

from connector import PermissionDeniedError, connect
from connector.enrich import EnrichmentCache, enrich_frame
from emulator import Fault


@pytest.fixture
def client(emu_kwargs):
    with connect(**emu_kwargs) as c:
        yield c


def lookups(emu) -> Counter:
    """Entity API calls the emulator answered, by kind."""
    kinds = Counter()
    for r in emu.requests:
        path = r.path.split("?")[0]
        if path.startswith("/api/machines/") and path.count("/") == 3:
            kinds["device"] += 1
        elif path.startswith("/api/machines") and "computerDnsName" in str(r.query):
            kinds["device"] += 1
        elif path.startswith("/api/users/"):
            kinds["user"] += 1
        elif path.startswith("/api/files/"):
            kinds["file"] += 1
        elif path.startswith("/api/ips/"):
            kinds["ip"] += 1
    return kinds


def rows_over_devices(client, emu, devices: int, rows: int) -> tuple[pd.DataFrame, list[dict]]:
    """``rows`` hunting rows (DeviceProcessEvents) spread over ``devices`` seeded machines."""
    machines = list(emu.stores.machines.all()[:devices])
    ids = ", ".join(f'"{m["id"]}"' for m in machines)
    frame = client.run_hunting_query(f"DeviceProcessEvents | where DeviceId in ({ids}) | take {rows}")
    assert frame["DeviceId"].nunique() == devices
    repeats = -(-rows // len(frame))
    return pd.concat([frame] * repeats, ignore_index=True).head(rows), machines


def test_10000_rows_over_20_devices_make_exactly_20_device_lookups(client, emu):
    frame, machines = rows_over_devices(client, emu, 20, 10_000)
    assert len(frame) == 10_000
    emu.requests.clear()

    out = enrich_frame(client, frame, user=None, file=None, ip=None)

    assert lookups(emu) == Counter({"device": 20})
    assert out.attrs["enrichment"]["device"]["calls"] == 20
    assert out.attrs["enrichment"]["device"]["entities"] == 20
    # Every row carries its own device's context, not a neighbour's.
    truth = {m["id"]: m for m in machines}
    for device_id, group in out.groupby("DeviceId"):
        machine = truth[device_id]
        assert set(group["DeviceRiskScore"]) == {machine["riskScore"]}
        assert set(group["DeviceDnsName"]) == {machine["computerDnsName"]}
        assert set(group["DeviceOsPlatform"]) == {machine["osPlatform"]}
    assert str(out["DeviceLastSeen"].dtype) == "datetime64[ns, UTC]"
    assert len(out) == len(frame) and "DeviceRiskScore" not in frame.columns  # the input is not changed


def test_every_kind_is_looked_up_once_per_unique_value_and_the_cache_spans_calls(client, emu):
    frame = client.run_hunting_query("DeviceNetworkEvents | take 2000")
    frame = frame.rename(columns={"InitiatingProcessAccountName": "AccountName",
                                  "InitiatingProcessSHA256": "SHA256"})
    emu.requests.clear()
    cache = EnrichmentCache()

    out = enrich_frame(client, frame, cache=cache)

    report = out.attrs["enrichment"]
    counted = lookups(emu)
    for kind in ("device", "user", "file", "ip"):
        assert report[kind]["calls"] == report[kind]["entities"] == counted[kind] > 0, kind
    assert report["ip"]["column"] == "RemoteIP"
    assert out["IpOrgPrevalence"].notna().any() and out["FileGlobalPrevalence"].notna().any()
    assert out["UserDeviceCount"].notna().any()

    emu.requests.clear()
    again = enrich_frame(client, frame.head(500), cache=cache)
    assert lookups(emu) == Counter()  # everything answered from the run's cache
    assert all(r["calls"] == 0 for r in again.attrs["enrichment"].values())
    pd.testing.assert_series_equal(again["DeviceRiskScore"], out["DeviceRiskScore"].head(500))


def test_unknown_entities_stay_empty_and_junk_values_are_not_looked_up(client, emu):
    real = emu.stores.machines.all()[0]
    frame = pd.DataFrame({
        "DeviceId": [real["id"], "0" * 40, real["id"], None],
        "AccountName": ["system", "LOCAL SERVICE", "", None],
        "SHA1": ["not-a-hash", "zz", None, "x" * 40],
        "RemoteIP": ["", "localhost", "999.1.1.1", None],
    })
    emu.requests.clear()

    out = enrich_frame(client, frame)

    assert lookups(emu) == Counter({"device": 2})
    report = out.attrs["enrichment"]
    assert report["device"]["not_found"] == ["0" * 40] and report["device"]["errors"] == {}
    assert list(out["DeviceRiskScore"].isna()) == [False, True, False, True]
    assert report["user"]["entities"] == report["file"]["entities"] == report["ip"]["entities"] == 0


def test_lookups_run_side_by_side_but_never_more_than_max_workers(client, emu):
    machines = emu.stores.machines.all()[:8]
    frame = pd.DataFrame({"DeviceId": [m["id"] for m in machines] * 50})
    emu.faults.add(Fault("slow", path=r"^/api/machines/[0-9a-f]{40}$", delay=0.2, times=None))
    in_flight, peak, lock = 0, 0, threading.Lock()

    class Counting:
        """The real client, counting calls in flight (a wrapper, not a stub: every call reaches the emulator)."""

        def get_device(self, device):
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                return client.get_device(device)
            finally:
                with lock:
                    in_flight -= 1

    out = enrich_frame(Counting(), frame, max_workers=3)

    assert 2 <= peak <= 3
    assert out["DeviceRiskScore"].notna().all()
    assert lookups(emu)["device"] == 8


def test_a_permission_failure_stops_that_kind_and_is_reported_or_raised(emu, emu_kwargs):
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    emu.add_tenant(tenant_id)
    # Files only: no Machine.Read.All, so device lookups are refused (403).
    emu.add_app(tenant_id, client_id, client_secret="files-only-secret", roles=["File.Read.All"])
    kwargs = {**emu_kwargs, "tenant_id": tenant_id, "client_id": client_id, "client_secret": "files-only-secret"}
    machines = emu.stores.machines.all()[:6]
    frame = pd.DataFrame({"DeviceId": [m["id"] for m in machines]})
    with connect(**kwargs) as limited:
        emu.requests.clear()
        out = enrich_frame(limited, frame, max_workers=1)
        assert lookups(emu)["device"] == 1  # the others would fail the same way: not sent
        errors = out.attrs["enrichment"]["device"]["errors"]
        assert len(errors) == 6 and all("PermissionDeniedError" in e for e in errors.values())
        assert "Machine.Read.All" in next(iter(errors.values()))
        assert out["DeviceRiskScore"].isna().all()

        with pytest.raises(PermissionDeniedError):
            enrich_frame(limited, frame, errors="raise")


def test_bad_arguments(client):
    frame = pd.DataFrame({"DeviceId": ["a"]})
    with pytest.raises(KeyError, match="no column 'Nope'"):
        enrich_frame(client, frame, device="Nope")
    with pytest.raises(ValueError):
        enrich_frame(client, frame, errors="ignore")
    with pytest.raises(ValueError):
        enrich_frame(client, frame, max_workers=0)
