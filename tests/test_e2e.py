"""End to end on a real Prefect server: a new high-severity alert in the emulator becomes an event, the served
triage deployment's trigger starts ``triage_alert``, which comments on the alert; a second ingestion starts nothing.

``defender-soar serve`` starts ``prefect server start`` itself (127.0.0.1, a free port, this test's own
PREFECT_HOME) and serves every deployment of deployments/prefect.yaml. Every process is stopped by PID at the
end, also when the test fails: serve by its process group (it and its flow runs), the server by the PID
serve printed (it runs in its own session).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from .flow_fixtures import tenant_block
from .ingest_fixtures import BIN, free_port, prefect_env, stop_group, stored_events, wait_for
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

pytestmark = [pytest.mark.e2e]

COMMENT = "Automated triage (defender-soar)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def triage_runs(client) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["triage-alert"])))


def test_new_alert_triaged_once_end_to_end(emu, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from flows.ingest import ingest_alerts

    # The emulator holds one new high-severity alert and nothing else recent (the first run looks back a day).
    emu.stores.alerts.load([])
    medium, high = emu.seed_alerts(2)
    emu.stores.alerts.load([emu.stores.alerts.get(high)])
    assert emu.stores.alerts.get(high).severity == "high"

    home = tmp_path / "prefect-home"
    home.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        serve = subprocess.Popen(
            [str(BIN / "defender-soar"), "serve", "--port", str(port), "--limit", "4"], cwd=tmp_path,
            env=prefect_env(home, None, PREFECT_RUNNER_POLL_FREQUENCY="2", PREFECT_LOGGING_LEVEL="INFO"),
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server_pid = None
    try:
        wait_for(lambda: serve.poll() is not None or "Serving " in log.read_text(), 300, "serve to start")
        text = log.read_text()
        found = re.search(r"Starting a Prefect server \(SQLite in (\S+); pid (\d+);", text)
        assert found and serve.poll() is None, text[-3000:]
        server_pid = int(found.group(2))
        assert found.group(1) == str(home) and f"Prefect UI: http://127.0.0.1:{port}" in text

        monkeypatch.setenv("PREFECT_API_URL", api)
        monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "client-home"))
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_HOME: str(tmp_path / "client-home")}), \
                get_client(sync_client=True) as client:
            name = "e2e-contoso"
            tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).save(name)
            wait_for(lambda: any(a.name.startswith("triage-alert") for a in client.read_automations()), 120,
                     "serve to register the triage trigger")

            first = ingest_alerts([name])

            assert first["tenants"][name]["alerts"]["created"] == 1
            run = wait_for(lambda: triage_runs(client), 120, "the trigger to start triage-alert")[0]
            assert run.parameters == {"alert_id": high, "tenant": name}
            run = wait_for(lambda: (r := client.read_flow_run(run.id)).state.is_final() and r, 300,
                           "triage-alert to finish")
            assert run.state.is_completed(), (run.state, log.read_text()[-4000:])
            comments = [c.comment for c in emu.stores.alerts.get(high).comments]
            assert any(c.startswith(COMMENT) for c in comments), comments
            # Served runs share the tenant's quotas through Prefect rate limits (serve sets the work pool's env).
            shared = {limit.name for limit in client.read_global_concurrency_limits(limit=200)}
            assert f"defender-hunting-global-{emu.tenant_id.lower()}-60s" in shared, shared

            second = ingest_alerts([name])

            alerts = second["tenants"][name]["alerts"]
            assert alerts["created"] == 0 and alerts["updated"] == 1  # the triage comment changed the alert
            events = stored_events([f"defender.alert.{high}"], name)
            assert sorted(e.event for e in events) == ["defender.alert.created", "defender.alert.updated"]
            # Nothing new starts: the update is no trigger (the trigger acts within a second of an event).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert [r.id for r in triage_runs(client)] == [run.id]
                time.sleep(0.5)

        serve.send_signal(signal.SIGINT)  # Ctrl-C: serve stops, and stops the server it started
        serve.wait(timeout=90)
        wait_for(lambda: not alive(server_pid), 30, "the Prefect server serve started to exit")
        assert "Stopping the Prefect server" in log.read_text()
    finally:
        stop_group(serve)
        if server_pid is not None and alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)
