"""Two worker processes hunting one tenant through the shared Prefect limit: the emulator never sees more than
the quota in any window."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from flows.limits import bucket, limit_name

from .flow_fixtures import new_tenant, tenant_block
from .ingest_fixtures import (  # noqa: F401
    ROOT,
    prefect_env,
    soar_api_fixture,
    soar_server_fixture,
    stop_group,
    unique,
)
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("soar_api")]

QUOTA, PERIOD, CALLS_EACH = 4, 3.0, 4

# A worker: the connector's limiter hook backed by PrefectLimits. The quota under test is QUOTA hunts per
# PERIOD seconds (the connector's own hunting windows are a minute and an hour; a test cannot wait them out),
# so the key and the path are the connector's and only the window is scaled down.
WORKER = """
import sys
from connector import ratelimit
from flows.limits import PrefectLimits
from flows.tasks import tenant_client

name, calls, count, period = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
shared = PrefectLimits()
ratelimit.set_limiter_factory(
    lambda key, limits: shared(key, [(count, period)] if key[2] == "hunting" else limits))
with tenant_client(name) as client:
    for _ in range(calls):
        client.run_hunting_query("DeviceProcessEvents | take 1", timespan="P1D")
print("hunted", calls)
"""


def most_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    return max((sum(1 for t in stamps if s <= t < s + window) for s in stamps), default=0)


def test_two_workers_share_the_tenant_quota(emu, soar_server, tmp_path):
    tenant_id, client_id = new_tenant(emu, "worker-secret-1")
    name = unique("shared")
    tenant_block(emu, tenant_id, client_id, "worker-secret-1").save(name)
    emu.requests.clear()

    workers = [subprocess.Popen([sys.executable, "-c", WORKER, name, str(CALLS_EACH), str(QUOTA), str(PERIOD)],
                                cwd=ROOT, env=prefect_env(tmp_path / f"worker-{n}", soar_server.api_url),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
               for n in range(2)]
    try:
        outputs = [w.communicate(timeout=180)[0].decode(errors="replace") for w in workers]
    finally:
        for worker in workers:
            stop_group(worker)
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "falls back" not in "".join(outputs)  # the shared limit was used, not the process's own

    stamps = [r.timestamp for r in emu.requests if "runHuntingQuery" in r.path and r.method == "POST"]
    assert len(stamps) == 2 * CALLS_EACH and all(r.status == 200 for r in emu.requests if "runHuntingQuery" in r.path)
    assert most_in_any_window(stamps, PERIOD) <= QUOTA
    # Twice the quota went out: with each process on its own limiter both would have sent it all at once.
    capacity, decay = bucket(QUOTA, PERIOD)
    assert max(stamps) - min(stamps) >= (2 * CALLS_EACH - capacity - QUOTA) / decay * 0.9

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        created = client.read_global_concurrency_limit_by_name(limit_name(("global", tenant_id, "hunting"), PERIOD))
    assert created.limit == capacity and math.isclose(created.slot_decay_per_second, decay)
