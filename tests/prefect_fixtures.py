"""Prefect fixtures: one test harness (temporary server + SQLite) for the session, started on first use.

Import the fixture into a test module (``from .prefect_fixtures import prefect_api  # noqa: F401``) and
mark its tests ``@pytest.mark.prefect`` and ``@pytest.mark.usefixtures("prefect_api")``; inside the
harness ``prefect.settings.PREFECT_API_URL.value()`` is its URL. Nothing here contacts anything but 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtualenv's bin: prefect, defender-soar


class _Harness:
    """One harness for the whole run, however many test modules import ``prefect_api``.

    Each module that imports the fixture gets its own session-scoped copy of it, so the harness
    itself is shared here and stopped when the last copy is finalised.
    """

    stack: ExitStack | None = None
    url: str | None = None
    users = 0


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """The harness's API URL. Prefect settings point at it (and at a temporary PREFECT_HOME) for the session."""
    if _Harness.stack is None:
        home = tmp_path_factory.mktemp("prefect-home")
        stack = ExitStack()
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        stack.enter_context(temporary_settings(updates={PREFECT_HOME: str(home)}))
        stack.enter_context(prefect_test_harness(server_startup_timeout=90))
        _Harness.stack, _Harness.url = stack, PREFECT_API_URL.value()
    _Harness.users += 1
    yield _Harness.url
    _Harness.users -= 1
    if _Harness.users == 0:
        stack, _Harness.stack = _Harness.stack, None
        stack.close()


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a ``prefect`` or ``defender-soar`` subprocess that talks to the harness."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "MSTICPYCONFIG"):
        env.pop(name, None)
    env.update(
        PREFECT_API_URL=PREFECT_API_URL.value(),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(autouse=True)
def _no_default_azure_credential(monkeypatch):
    """DefaultAzureCredential would probe IMDS (169.254.169.254) and Microsoft's login: never in tests."""
    import azure.identity

    def refuse(*args, **kwargs):
        raise AssertionError("DefaultAzureCredential must not run in tests; use the service-principal fields")

    monkeypatch.setattr(azure.identity.DefaultAzureCredential, "__init__", refuse)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain_event_workers() -> None:
    """Send what Prefect's event and log workers hold, then stop them, while the server still runs.

    A worker keeps the API URL it started with: left running, it would send a later module's events
    (block loads) to this stopped server, retrying until the harness's own drain gives up minutes later.
    """
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    for worker in (APILogWorker, EventsWorker):
        result = worker.drain_all(timeout=30)
        if inspect.isawaitable(result):
            run_coro_as_sync(result)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real ``prefect server start`` (UI included) on a free loopback port, with its own PREFECT_HOME.

    Prefect settings point at it for the module; it is stopped by PID afterwards. ~15 s to start.
    """
    import signal
    import subprocess
    import time

    import httpx

    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_API_URL=f"{url}/api",
               PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false", PREFECT_LOGGING_LEVEL="WARNING")
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)  # poll interval, bounded by the deadline above
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        with pytest.MonkeyPatch.context() as mp, temporary_settings(
            updates={PREFECT_API_URL: f"{url}/api", PREFECT_HOME: str(home)}
        ):
            mp.setenv("PREFECT_API_URL", f"{url}/api")
            mp.setenv("PREFECT_HOME", str(home))
            try:
                yield url
            finally:
                _drain_event_workers()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
