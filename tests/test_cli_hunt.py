"""``defender-soar hunt``, ``query``, ``triage`` and ``queries``: against the Prefect harness and the emulator."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.hunt_cli import EXIT_PARTIAL

from .flow_fixtures import saved_tenant_fixture  # noqa: F401
from .prefect_fixtures import BIN, ROOT, _no_default_azure_credential, prefect_api  # noqa: F401

INJECTION = 'x" | take 1000000 //'


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_queries_list_and_show_start_no_prefect_server(tmp_path):
    env = {"PATH": str(BIN), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           # Nothing listens there: a command that talked to Prefect would fail.
           "PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_HOME": str(tmp_path / "prefect-home")}
    listed = subprocess.run([str(BIN / "defender-soar"), "queries", "list", "--search", "logon"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "M365D.user_logons" in listed.stdout and "Device logons of an account." in listed.stdout
    assert "PREFECT_API_URL" not in listed.stderr  # no server hint: none is needed

    shown = subprocess.run([str(BIN / "defender-soar"), "queries", "show", "M365D.list_host_processes",
                            "--param", f"host_name={INJECTION}", "--param", "start=-3d"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "host_name (str, required" in shown.stdout
    assert 'DeviceName has "x\\" | take 1000000 //"' in shown.stdout  # one escaped literal, not a new clause
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()


def test_queries_errors_and_help():
    result = run("queries", "show", "M365D.no_such_query")
    assert result.exit_code == 1 and "ConfigurationError: No query 'M365D.no_such_query'" in result.stderr
    assert run("queries", "list", "--search", "zzz-nothing").exit_code == 1
    for command in ("hunt", "query", "triage", "queries"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout, command
    assert "Exit codes" in run("hunt", "--help").stdout


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_hunt_prints_progress_a_table_and_exits_3_when_a_tenant_fails(emu, saved_tenant, tmp_path):
    out = tmp_path / "rows.parquet"
    result = run("hunt", "--tenant", saved_tenant, "--tenant", "no-such-tenant", "DeviceProcessEvents | take 7",
                 "--timespan", "P1D", "--out", str(out), "--rows", "3")

    assert result.exit_code == EXIT_PARTIAL, result.output
    assert f"{saved_tenant}: 7 rows" in result.stderr
    assert "no-such-tenant: FAILED ConfigurationError: No Defender tenant block named 'no-such-tenant'" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["TenantName", "Timestamp", "DeviceName"] and set(lines[1]) <= {"-", " "}
    assert all(line.startswith(saved_tenant) for line in lines[2:5])
    assert "... 4 more rows" in result.stdout
    assert f"7 rows from 1 of 2 tenant(s) -> {out.resolve()}" in result.stdout
    assert len(pd.read_parquet(out)) == 7


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_hunt_reads_stdin_and_files_and_refuses_unclear_input(emu, saved_tenant, tmp_path):
    ok = run("hunt", "-t", saved_tenant, "-", "--csv", "--out", str(tmp_path / "a.csv"), "--rows", "0",
             input="DeviceProcessEvents | take 2")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == f"2 rows from 1 of 1 tenant(s) -> {(tmp_path / 'a.csv').resolve()}"

    kql = tmp_path / "q.kql"
    kql.write_text("DeviceProcessEvents | take 1")
    assert run("hunt", "-t", saved_tenant, "--file", str(kql), "--out", str(tmp_path / "b.parquet")).exit_code == 0

    assert run("hunt", "-t", saved_tenant).exit_code == 2  # no query
    assert run("hunt", "-t", saved_tenant, "DeviceProcessEvents", "--file", str(kql)).exit_code == 2  # two queries
    assert run("hunt", "DeviceProcessEvents | take 1").exit_code == 2  # no tenant
    failed = run("hunt", "-t", "no-such-tenant", "DeviceProcessEvents | take 1", "--out", str(tmp_path / "c.parquet"))
    assert failed.exit_code == 1 and "Every tenant failed" in failed.stderr


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_query_runs_a_library_query_or_prints_it(emu, saved_tenant, tmp_path):
    device = emu.stores.machines.all()[5]["computerDnsName"]
    printed = run("query", "M365D.list_host_processes", "--param", f"host_name={device}", "--print")
    assert printed.exit_code == 0 and f'| where DeviceName has "{device}"' in printed.stdout

    result = run("query", "M365D.list_host_processes", "-t", saved_tenant, "-p", f"host_name={device}",
                 "-p", "start=-2d", "--out", str(tmp_path / "q.parquet"), "--columns", "DeviceName,FileName")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "q.parquet")
    assert len(frame) > 0 and set(frame["DeviceName"]) == {device}
    assert result.stdout.splitlines()[0].split() == ["DeviceName", "FileName"]

    bad = run("query", "M365D.list_host_processes", "-t", saved_tenant, "-p", "hostname_typo=x")
    assert bad.exit_code == 1 and "no parameter 'hostname_typo'" in bad.stderr
    assert run("query", "M365D.list_host_processes", "-p", "novalue").exit_code == 2


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_triage_prints_the_report_and_fails_clearly_on_an_unknown_alert(emu, saved_tenant, tmp_path):
    story = emu.incident
    before = len(emu.stores.alerts.get(story.alert_id).comments)
    report = tmp_path / "report.md"
    result = run("triage", "--tenant", saved_tenant, "--alert-id", story.alert_id, "--no-comment", "--out", str(report))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Triage: ") and story.device_name in result.stdout
    assert report.read_text(encoding="utf-8").strip() == result.stdout.strip()
    assert f"Report: Prefect artifact 'triage-{story.alert_id.replace('_', '-')}'" in result.stderr
    assert len(emu.stores.alerts.get(story.alert_id).comments) == before  # --no-comment

    missing = run("triage", "--tenant", saved_tenant, "--alert-id", "da000_0")
    assert missing.exit_code == 1 and "NotFoundError" in missing.stderr and missing.stdout == ""
