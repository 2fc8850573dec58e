"""deployments/prefect.yaml: what it declares, ``prefect deploy --all`` against a real server, a process worker
running a deployment from another directory through the pull step, and ``defender-soar serve`` reusing a server."""

from __future__ import annotations

import inspect
import signal
import subprocess
import time

import pytest
import yaml
from prefect import Flow

from flows.hunt_pack import load_pack
from flows.serve_cli import default_prefect_file, load_deployments, runner_deployments

from .flow_fixtures import tenant_block
from .ingest_fixtures import (  # noqa: F401
    BIN,
    ROOT,
    prefect_env,
    soar_api_fixture,
    soar_server_fixture,
    stop_group,
    unique,
    wait_for,
)
from .prefect_fixtures import _no_default_azure_credential  # noqa: F401

NAMES = {"ingest-alerts", "triage-alert", "adhoc", "hunt-pack"}


def project_yaml() -> dict:
    return yaml.safe_load(default_prefect_file().read_text())


def test_prefect_yaml_declares_the_deployments():
    document = project_yaml()
    every = load_deployments()
    specs = {s.name: s for s in every if s.name in NAMES}
    assert sorted(s.name for s in every if s.name in NAMES) == sorted(NAMES)  # each once (others may be added)
    assert default_prefect_file() == ROOT / "deployments" / "prefect.yaml"
    # The pull step moves each run into the worker's DEFENDER_SOAR_HOME, read at run time.
    assert document["pull"] == [{"prefect.deployments.steps.set_working_directory":
                                 {"directory": "{{ $DEFENDER_SOAR_HOME }}"}}]
    for entry in document["deployments"]:
        assert entry["work_pool"]["name"] == "defender-soar"
        assert entry["work_pool"]["job_variables"]["env"] == {"DEFENDER_SOAR_SHARED_LIMITS": "prefect"}
    for spec in every:
        path, function = spec.entrypoint.split(":")
        assert (ROOT / path).is_file()
        module, _ = spec.module_and_function
        flow = getattr(__import__(module, fromlist=[function]), function)
        assert isinstance(flow, Flow)
        assert set(spec.parameters) <= set(inspect.signature(flow.fn).parameters), spec.name
    assert specs["ingest-alerts"].schedules == [{"interval": 300}]
    assert specs["ingest-alerts"].concurrency_limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert specs["ingest-alerts"].parameters["tenants"] is None  # every saved tenant
    (trigger,) = specs["triage-alert"].triggers
    assert trigger["expect"] == ["defender.alert.created"]
    assert trigger["match"] == {"prefect.resource.id": "defender.alert.*", "defender.severity": ["high", "medium"]}
    assert trigger["parameters"] == {"alert_id": "{{ event.resource['defender.alert.id'] }}",
                                     "tenant": "{{ event.payload.tenant }}"}
    assert not specs["adhoc"].schedules and not specs["adhoc"].triggers
    assert specs["hunt-pack"].schedules == [{"cron": "0 6 * * *", "timezone": "UTC", "active": False}]
    assert len(load_pack(ROOT / specs["hunt-pack"].parameters["pack"]).queries) == 4
    # serve builds the same deployments (module entrypoints: they load wherever the package is installed).
    served = {d.name: d for d in runner_deployments(list(specs.values()))}
    assert len(runner_deployments(every)) == len(every)
    assert served["triage-alert"].entrypoint == "flows.triage.triage_alert"
    assert served["triage-alert"].triggers[0].expect == {"defender.alert.created"}
    assert served["hunt-pack"].schedules[0].active is False


@pytest.mark.prefect
def test_prefect_deploy_all_and_a_worker_running_from_elsewhere(emu, soar_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    env = prefect_env(tmp_path / "cli-home", soar_api.api_url)
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "defender-soar", "--type", "process", "--overwrite"],
                   env=env, check=True, capture_output=True, timeout=120)
    deploy = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
                             "deployments/prefect.yaml"], cwd=ROOT, env=env, capture_output=True, timeout=180)
    assert deploy.returncode == 0, deploy.stdout.decode()[-3000:] + deploy.stderr.decode()[-3000:]
    worker = None
    declared = load_deployments()
    with get_client(sync_client=True) as client:
        everything = [d for d in client.read_deployments() if d.work_pool_name == "defender-soar"]
        deployments = {d.name: d for d in everything if d.name in NAMES}
        try:
            assert set(deployments) == NAMES and len(everything) == len(declared)
            assert deployments["ingest-alerts"].schedules[0].schedule.interval.total_seconds() == 300
            assert deployments["hunt-pack"].schedules[0].active is False
            assert deployments["adhoc"].pull_steps == [{"prefect.deployments.steps.set_working_directory": {
                "directory": "{{ $DEFENDER_SOAR_HOME }}"}}]
            automations = [a for a in client.read_automations() if a.name.startswith("triage-alert")]
            assert len(automations) == 1
            assert automations[0].trigger.expect == {"defender.alert.created"}
            assert automations[0].actions[0].deployment_id == deployments["triage-alert"].id

            # A worker in an unrelated directory; DEFENDER_SOAR_HOME tells the pull step where the project is.
            # It serves its own queue, so the ingest schedule's runs (default queue) stay untouched.
            name = unique("deploy")
            tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).save(name)
            elsewhere = tmp_path / "worker-cwd"
            elsewhere.mkdir()
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "defender-soar", "--work-queue", "pull-test",
                 "--limit", "1"], cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**env, "DEFENDER_SOAR_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"},
                start_new_session=True)
            out = tmp_path / "adhoc.parquet"
            run = run_deployment("hunt/adhoc", work_queue_name="pull-test", timeout=240, parameters={
                "tenants": [name], "query": "DeviceProcessEvents | take 7", "timespan": "P1D", "output": str(out)})
            assert run.state.is_completed(), run.state
            assert out.is_file()  # written by the flow run, which worked in DEFENDER_SOAR_HOME
        finally:
            if worker is not None:
                stop_group(worker)
            for deployment in everything:
                client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")
                client.delete_deployment(deployment.id)


@pytest.mark.prefect
def test_serve_reuses_the_configured_server_and_stops_on_ctrl_c(soar_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    env = prefect_env(tmp_path / "serve-home", soar_api.api_url)
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        serve = subprocess.Popen([str(BIN / "defender-soar"), "serve", "--deployment", "adhoc"], cwd=tmp_path,
                                 env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: serve.poll() is not None or "Serving hunt/adhoc" in log.read_text(), 120, "serve to start")
        text = log.read_text()
        assert f"Using the Prefect server at {soar_api.api_url}" in text, text[-3000:]
        assert f"Prefect UI: {soar_api.url}" in text and "Starting a Prefect server" not in text
        with get_client(sync_client=True) as client:

            def served():
                try:
                    found = client.read_deployment_by_name("hunt/adhoc")
                except ObjectNotFound:
                    return None
                return found if found.entrypoint == "flows.hunt.hunt" else None

            assert wait_for(served, 60, "the served deployment").work_pool_name is None
        started = time.monotonic()
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        serve.wait(timeout=60)
        assert time.monotonic() - started < 60 and serve.returncode == 0, log.read_text()[-3000:]
        with get_client(sync_client=True) as client:  # a server it did not start keeps running
            assert client.api_healthcheck() is None
            client.delete_deployment(client.read_deployment_by_name("hunt/adhoc").id)
    finally:
        stop_group(serve)
