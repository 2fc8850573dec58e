"""``defender-soar serve``: on one machine, a Prefect server and every deployment, with its schedules and triggers.

    defender-soar serve                       # UI at http://127.0.0.1:4200
    defender-soar serve --port 4300 --limit 4
    defender-soar serve --deployment ingest-alerts --deployment triage-alert --deployment hunt/adhoc

It reads ``deployments/prefect.yaml`` (the same file ``prefect deploy --all`` uses with workers) and:

1. reuses the Prefect server at ``PREFECT_API_URL`` when that answers; without one it reuses a server
   already answering on ``--host``/``--port``, or starts ``prefect server start`` there (SQLite in
   ``PREFECT_HOME``) and waits for it;
2. prints the UI address, then serves each deployment in this process (``prefect.serve``): interval
   and cron schedules, event triggers (automations), parameters and concurrency limits as written in
   the file; each run is a subprocess working in the project directory (as a worker's pull step
   makes it), with ``DEFENDER_SOAR_SHARED_LIMITS`` from the work pool's environment, so parallel
   runs share each tenant's quota;
3. on Ctrl-C (or SIGTERM) stops serving and stops the server it started, by PID; a server it
   reused keeps running.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from .cli_support import EXIT_FAILED

#: Seconds to wait for a started server's health check.
SERVER_TIMEOUT = 180.0


def project_root() -> Path:
    """The directory that holds ``flows/`` (a checkout, or site-packages): what ``DEFENDER_SOAR_HOME`` names."""
    return Path(__file__).resolve().parent.parent


def default_prefect_file() -> Path:
    """``deployments/prefect.yaml`` of the project."""
    return project_root() / "deployments" / "prefect.yaml"


# ---------------------------------------------------------------- prefect.yaml


@dataclass
class DeploymentSpec:
    """One deployment of ``prefect.yaml``, as served."""

    name: str
    entrypoint: str
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    concurrency_limit: int | dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def module_and_function(self) -> tuple[str, str]:
        """``flows/ingest.py:ingest_alerts`` -> (``flows.ingest``, ``ingest_alerts``)."""
        path, _, function = self.entrypoint.rpartition(":")
        if not path.endswith(".py") or not function:
            raise ValueError(f"deployment {self.name!r}: entrypoint {self.entrypoint!r} is not 'path/to/file.py:flow'")
        return path[:-3].replace("\\", "/").strip("/").replace("/", "."), function


def load_deployments(path: str | Path | None = None) -> list[DeploymentSpec]:
    """The deployments of a ``prefect.yaml`` (default: the project's); raises ``ValueError`` naming what is wrong."""
    path = Path(path) if path is not None else default_prefect_file()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    entries = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path} has no 'deployments' list")
    specs = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("entrypoint"):
            raise ValueError(f"{path}: every deployment needs a name and an entrypoint")
        pool = entry.get("work_pool") or {}
        env = ((pool.get("job_variables") or {}).get("env") or {}) if isinstance(pool, dict) else {}
        specs.append(DeploymentSpec(
            name=str(entry["name"]), entrypoint=str(entry["entrypoint"]), description=entry.get("description"),
            tags=list(entry.get("tags") or []), parameters=dict(entry.get("parameters") or {}),
            schedules=list(entry.get("schedules") or []), triggers=list(entry.get("triggers") or []),
            concurrency_limit=entry.get("concurrency_limit"), env={str(k): str(v) for k, v in env.items()},
        ))
    return specs


def _flow_name(spec: DeploymentSpec) -> str:
    module, function = spec.module_and_function
    return getattr(importlib.import_module(module), function).name


def _schedule(spec: dict[str, Any]):
    from prefect.schedules import Cron, Interval

    common = {"active": bool(spec.get("active", True)), "parameters": spec.get("parameters") or {}}
    if "interval" in spec:
        return Interval(float(spec["interval"]), timezone=spec.get("timezone"), **common)
    if "cron" in spec:
        return Cron(str(spec["cron"]), timezone=spec.get("timezone"), day_or=spec.get("day_or", True), **common)
    raise ValueError(f"unsupported schedule {spec!r}: give an interval (seconds) or a cron expression")


def runner_deployments(specs: list[DeploymentSpec]) -> list:
    """``RunnerDeployment`` objects for :func:`prefect.serve`: the flows imported as modules (any install place)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.deployments.runner import EntrypointType
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    triggers = TypeAdapter(DeploymentTriggerTypes)
    out = []
    for spec in specs:
        module, function = spec.module_and_function
        flow = getattr(importlib.import_module(module), function)
        limit = spec.concurrency_limit
        if isinstance(limit, dict):
            limit = ConcurrencyLimitConfig(**limit)
        out.append(flow.to_deployment(
            name=spec.name, description=spec.description, tags=spec.tags, parameters=spec.parameters,
            schedules=[_schedule(s) for s in spec.schedules] or None,
            triggers=[triggers.validate_python({"name": f"{spec.name}__automation_{i}", **t})
                      for i, t in enumerate(spec.triggers, 1)] or None,
            concurrency_limit=limit, entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    return out


# ---------------------------------------------------------------- the server


def api_answers(api_url: str, timeout: float = 3.0) -> bool:
    """True when ``<api_url>/health`` answers 200."""
    import httpx

    try:
        return httpx.get(api_url.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class StartedServer:
    """A ``prefect server start`` this command started (its own process group), stopped by PID."""

    def __init__(self, host: str, port: int, log_path: Path) -> None:
        self.url = f"http://{host}:{port}"
        self.api_url = self.url + "/api"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        prefect = Path(sys.executable).with_name("prefect")
        command = [str(prefect)] if prefect.exists() else [sys.executable, "-m", "prefect"]
        self.process = subprocess.Popen(
            [*command, "server", "start", "--host", host, "--port", str(port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = SERVER_TIMEOUT) -> None:
        """Poll the health check until it answers; raises RuntimeError if the server exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while not api_answers(self.api_url, timeout=2):
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server start exited with code {self.process.returncode}; "
                                   f"see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not answer within {timeout:g}s; see {self.log_path}")
            time.sleep(0.5)  # health-check poll interval, bounded by the deadline

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout``; waits for it."""
        try:
            if self.process.poll() is None:
                os.killpg(self.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        finally:
            self._log.close()


def _configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or None


def _use_api(api_url: str) -> None:
    # Flow runs are subprocesses of the runner: they read the environment, not this process's settings.
    os.environ["PREFECT_API_URL"] = api_url


# ---------------------------------------------------------------- the command


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(
    prefect_file: Annotated[Path | None, typer.Option("--prefect-file", help="The prefect.yaml to serve (default: the project's deployments/prefect.yaml).")] = None,
    host: Annotated[str, typer.Option("--host", help="Where to start a Prefect server when none is configured.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Its port (UI and API).")] = 4200,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Flow runs executing at once.")] = 8,
    deployment: Annotated[list[str] | None, typer.Option("--deployment", "-d", help="Serve only this deployment (repeatable).")] = None,
    shared_limits: Annotated[bool, typer.Option("--shared-limits/--no-shared-limits", help="Share tenant quotas across runs through Prefect rate limits (as the work pool's environment says).")] = True,
) -> None:
    """Start (or reuse) a Prefect server and serve every deployment with its schedules and triggers. Ctrl-C stops."""
    try:
        specs = load_deployments(prefect_file)
    except ValueError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if deployment:
        # A name may be the deployment's ("ingest-alerts") or the full "<flow>/<deployment>" ("hunt/adhoc").
        names = {s.name: s for s in specs}
        full = {f"{_flow_name(s)}/{s.name}": s for s in specs}
        unknown = sorted(set(deployment) - set(names) - set(full))
        if unknown:
            typer.echo(f"Error: no deployment named {', '.join(unknown)}; the file has "
                       f"{', '.join(sorted(full))}.", err=True)
            raise typer.Exit(EXIT_FAILED)
        specs = [s for s in specs if s.name in deployment or f"{_flow_name(s)}/{s.name}" in deployment]

    started: StartedServer | None = None
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    # Started in the background by a script (``cmd &``), SIGINT arrives ignored: take it back, so that
    # ``kill -INT`` stops serve like Ctrl-C does.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        configured = _configured_api_url()
        local_api = f"http://{host}:{port}/api"
        if configured:
            if not api_answers(configured):
                typer.echo(f"Error: PREFECT_API_URL is {configured}, which does not answer. Start that server, or "
                           "unset PREFECT_API_URL and this command starts one.", err=True)
                raise typer.Exit(EXIT_FAILED)
            api_url = configured
            typer.echo(f"Using the Prefect server at {api_url} (PREFECT_API_URL).", err=True)
        elif api_answers(local_api):
            api_url = local_api
            typer.echo(f"Using the Prefect server already running at {local_api}.", err=True)
        else:
            from prefect.settings import PREFECT_HOME

            home = Path(PREFECT_HOME.value()).expanduser()
            started = StartedServer(host, port, home / "defender-soar-server.log")
            typer.echo(f"Starting a Prefect server (SQLite in {home}; pid {started.pid}; log "
                       f"{started.log_path})...", err=True)
            started.wait_ready()
            api_url = started.api_url
        _use_api(api_url)
        ui = api_url[:-4] if api_url.endswith("/api") else api_url
        for spec in specs:
            for name, value in spec.env.items():
                if name == "DEFENDER_SOAR_SHARED_LIMITS" and not shared_limits:
                    continue
                os.environ.setdefault(name, value)
        os.chdir(project_root())  # runs work where a worker's pull step would put them
        from prefect import serve as prefect_serve
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            runnable = runner_deployments(specs)
            typer.echo(f"Prefect UI: {ui}", err=False)
            typer.echo(f"Serving {', '.join(f'{d.flow_name}/{d.name}' for d in runnable)}; Ctrl-C stops"
                       + (" (and stops the server)." if started else "."))
            sys.stdout.flush()
            prefect_serve(*runnable, limit=limit, print_starting_message=False)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
        if started is not None:
            typer.echo(f"Stopping the Prefect server (pid {started.pid}).", err=True)
            started.stop()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root ``defender-soar`` app."""
    app.command("serve")(serve)


__all__ = ["DeploymentSpec", "StartedServer", "api_answers", "default_prefect_file", "load_deployments",
           "project_root", "register", "runner_deployments", "serve"]
