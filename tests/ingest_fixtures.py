"""Fixtures for the ingestion, deployment and shared-limit tests: a real ``prefect server start`` that a test
can restart, a Prefect API pointed at it per test, tenant blocks on the emulator, and a triage counter.

Import what a module needs (``from .ingest_fixtures import soar_server_fixture, soar_api_fixture  # noqa: F401``). The
server is one per session (its own PREFECT_HOME, a free loopback port) and is stopped by PID at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.3):
    """Poll ``predicate`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)  # poll interval, bounded by the deadline


def prefect_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for a Prefect subprocess: its own PREFECT_HOME, offline, quiet, this project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "MSTICPYCONFIG", "DEFENDER_SOAR_SHARED_LIMITS"):
        env.pop(name, None)
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false", PYTHONPATH=str(ROOT))
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def stop_group(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to the process group of ``process`` (started with a new session), SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


class PrefectServer:
    """``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME (SQLite there); restartable, stopped by PID."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 150.0) -> None:
        """Start it and wait for its health check."""
        log = open(self.home / f"server-{self.starts}.log", "wb")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=prefect_env(self.home, self.api_url), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        self.starts += 1
        process = self.process

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prefect server exited: {self.log_tail()}")
            try:
                return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, "the Prefect server's health check", interval=0.5)

    def log_tail(self) -> str:
        """The end of the latest server log."""
        path = self.home / f"server-{max(self.starts - 1, 0)}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop it by PID (its process group)."""
        if self.process is not None:
            stop_group(self.process)
            self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port and database."""
        self.stop()
        self.start()


class _Shared:
    """The one server of the run: each module importing the fixture gets its own session-scoped copy of
    it, so the server itself lives here and stops when the last copy is finalised."""

    server: PrefectServer | None = None
    users = 0


@pytest.fixture(scope="session", name="soar_server")
def soar_server_fixture(tmp_path_factory):
    """One real Prefect server for the ingestion and deployment tests (started on first use)."""
    if _Shared.server is None:
        server = PrefectServer(tmp_path_factory.mktemp("soar-prefect-home"))
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _Shared.server = server
    _Shared.users += 1
    try:
        yield _Shared.server
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            server, _Shared.server = _Shared.server, None
            server.stop()


@pytest.fixture(name="soar_api")
def soar_api_fixture(soar_server, tmp_path, monkeypatch):
    """Point this test's Prefect client at ``soar_server`` (settings and environment); yields the server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = tmp_path / "client-home"
    home.mkdir()
    monkeypatch.setenv("PREFECT_API_URL", soar_server.api_url)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    monkeypatch.delenv("DEFENDER_SOAR_SHARED_LIMITS", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: soar_server.api_url, PREFECT_HOME: str(home)}):
        yield soar_server


def unique(prefix: str) -> str:
    """A block name no other test uses (the server's database lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def only_new_alerts(emu, count: int) -> list[str]:
    """Empty the emulator's alert list, then seed ``count`` new alerts (severities cycle); returns their ids."""
    emu.stores.alerts.load([])
    return emu.seed_alerts(count)


def stored_events(resource_ids: list[str], tenant: str | None = None, names: list[str] | None = None) -> list:
    """Every event the server stored for these resources (paged through), optionally only these names."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventRelatedFilter,
        EventResourceFilter,
    )

    out = []
    with get_client(sync_client=True) as client:
        for start in range(0, len(resource_ids), 100):
            query = EventFilter(
                occurred=EventOccurredFilter(since=datetime(2000, 1, 1, tzinfo=UTC),
                                             until=datetime.now(UTC) + timedelta(days=2)),
                resource=EventResourceFilter(id=resource_ids[start:start + 100]),
                event=EventNameFilter(name=names) if names else None,
                related=EventRelatedFilter(id=[f"defender.tenant.{tenant}"]) if tenant else None,
            )
            page = client.read_events(filter=query, limit=50)
            while True:
                out.extend(page.events)
                if not page.next_page:
                    break
                page = client.read_events_page(page.next_page)
    return out


class TriageCounter:
    """The project's triage trigger (from deployments/prefect.yaml), narrowed to one tenant, on a deployment that
    nothing executes: every firing leaves a Scheduled flow run whose ``alert_id`` parameter says what was triaged.

    :meth:`settle` waits for the runs a test expects, then for marker events sent after everything else, so
    that a duplicate run would have shown up too.
    """

    def __init__(self, tenant: str) -> None:
        from flows.serve_cli import load_deployments
        from flows.triage import triage_alert

        (spec,) = [s for s in load_deployments() if s.name == "triage-alert"]
        (trigger,) = spec.triggers
        trigger = {**trigger, "match_related": {"prefect.resource.id": f"defender.tenant.{tenant}"}}
        from prefect.events import DeploymentTriggerTypes
        from pydantic import TypeAdapter

        self.tenant = tenant
        deployment = triage_alert.to_deployment(
            name=f"count-{tenant}", triggers=[TypeAdapter(DeploymentTriggerTypes).validate_python(
                {"name": f"count-{tenant}", **trigger})])
        self.deployment_id = deployment.apply()
        self._marker_round(90.0)  # the trigger service loads new automations a moment later: wait for it

    def _all_runs(self, client) -> list:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        runs: list = []
        while True:  # the API hands out at most 200 a page
            page = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[
                self.deployment_id])), limit=200, offset=len(runs))
            runs.extend(page)
            if len(page) < 200:
                return runs

    def runs(self) -> Counter:
        """alert_id -> flow runs the trigger started (markers left out)."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            runs = self._all_runs(client)
        return Counter(r.parameters.get("alert_id") for r in runs
                       if not str(r.parameters.get("alert_id", "")).startswith("marker-"))

    def settle(self, expected: dict[str, int] | None = None, timeout: float = 90.0) -> Counter:
        """Wait until the runs ``expected`` exist, then until two marker events in a row were acted on; return :meth:`runs`.

        The server's trigger and action services each work two messages at a time, in arrival order, so
        once the second marker's run exists, a run for any event sent before the first would be there too.
        """
        if expected:
            wait_for(lambda: all(self.runs()[k] >= n for k, n in expected.items()), timeout,
                     "the expected triage runs")
        for _ in range(2):
            self._marker_round(timeout)
        return self.runs()

    def _marker_round(self, timeout: float) -> None:
        from prefect.client.orchestration import get_client

        from flows.ingest import ALERTS, build_event

        marker = f"marker-{uuid.uuid4().hex[:8]}"
        alert = {"id": marker, "lastUpdateDateTime": "2026-01-01T00:00:00Z", "severity": "high", "status": "new"}
        with get_client(sync_client=True) as client:
            client.request("POST", "/events", json=[build_event(ALERTS, self.tenant, alert, "created")])

            def marker_run():
                return any(r.parameters.get("alert_id") == marker for r in self._all_runs(client))

            wait_for(marker_run, timeout, "the marker event's triage run")

    def remove(self) -> None:
        """Delete the deployment and its automation."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.delete_resource_owned_automations(f"prefect.deployment.{self.deployment_id}")
            client.delete_deployment(self.deployment_id)


@pytest.fixture(name="triage_counter")
def triage_counter_fixture(soar_api):
    """Make a :class:`TriageCounter` for a tenant: ``counter = triage_counter(name)``; removed after the test."""
    made: list[TriageCounter] = []

    def make(tenant: str) -> TriageCounter:
        made.append(TriageCounter(tenant))
        return made[-1]

    yield make
    for counter in made:
        counter.remove()
