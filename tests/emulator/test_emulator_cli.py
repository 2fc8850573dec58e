"""``python -m emulator`` for trying things by hand: fixed ports, a state dir that keeps IDs and CA, snippets
that work when pasted, and faults from the command line or over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from emulator import Emulator, Fault
from emulator.admin import state as admin_state
from emulator.context import Context
from emulator.faults import parse_fault_spec
from emulator.howto import connect_line, msticpyconfig, tenants_add
from emulator.messages import Request

ROOT = Path(__file__).resolve().parents[2]
MDE = "https://api.securitycenter.microsoft.com/.default"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _token(base, ca, tenant, client_id, secret, scope=MDE) -> requests.Response:
    return requests.post(f"{base}/{tenant}/oauth2/v2.0/token", verify=ca, timeout=5, data={
        "client_id": client_id, "client_secret": secret, "scope": scope, "grant_type": "client_credentials"})


def test_state_dir_keeps_ids_secret_and_ca_across_restarts(tmp_path):
    with Emulator(state_dir=tmp_path) as first:
        ids = (first.tenant_id, first.client_id, first.client_secret)
        ca = Path(first.ca_bundle).read_bytes()
    assert stat.S_IMODE((tmp_path / "emulator.json").stat().st_mode) == 0o600  # it holds the client secret
    with Emulator(state_dir=tmp_path) as second:
        assert (second.tenant_id, second.client_id, second.client_secret) == ids
        assert Path(second.ca_bundle).read_bytes() == ca
        r = _token(second.base_url, second.ca_bundle, *ids)
        assert r.status_code == 200
    with Emulator(state_dir=tmp_path, client_secret="given-explicitly") as third:  # explicit arguments win
        assert (third.tenant_id, third.client_id) == ids[:2] and third.client_secret == "given-explicitly"
    with Emulator() as elsewhere:
        assert elsewhere.tenant_id != ids[0]


def _start_cli(args, env):
    proc = subprocess.Popen([sys.executable, "-m", "emulator", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    while not any("-X DELETE" in line for line in lines):
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("emulator exited: " + proc.stderr.read())
        lines.append(line.rstrip("\n"))
    return proc, lines


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_cli_fixed_ports_state_dir_faults_and_snippets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    port, graph_port, mde_port = _free_ports(3)
    args = ["--port", str(port), "--graph-port", str(graph_port), "--mde-port", str(mde_port),
            "--state-dir", str(tmp_path), "--fault", "status:status=503,times=1,api=mde", "--seed-alerts", "5"]
    proc, lines = _start_cli(args, env)
    try:
        info = dict(line.split(": ", 1) for line in lines if re.fullmatch(r"[A-Z_]+: .*", line))
        assert info["URL"] == f"https://127.0.0.1:{port}" and info["GRAPH_URL"] == f"https://127.0.0.1:{graph_port}"
        assert info["MDE_URL"] == f"https://127.0.0.1:{mde_port}" and info["STATE_DIR"] == str(tmp_path)
        ca = info["CA"]
        token = _token(info["URL"], ca, info["TENANT"], info["CLIENT_ID"], info["CLIENT_SECRET"]).json()["access_token"]
        machines = f"{info['MDE_URL']}/api/machines"
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(machines, headers=headers, verify=ca, timeout=5).status_code == 503  # --fault
        assert requests.get(machines, headers=headers, verify=ca, timeout=5).status_code == 200
        # Faults over HTTP, no token: arm, see, clear.
        control = f"{info['URL']}/_emulator"
        armed = requests.post(f"{control}/faults", json={"kind": "status", "status": 429, "retry_after": 3,
                                                         "path": "/api/machines"}, verify=ca, timeout=5)
        assert armed.status_code == 201 and armed.json()["remaining"] == 1
        state = requests.get(f"{control}/state", verify=ca, timeout=5).json()
        assert state["faults"][0]["status"] == 429 and state["counts"]["machines"] == 49  # 48 + the seeded incident's
        assert state["counts"]["alerts"] >= 5 + 20 and info["CLIENT_SECRET"] not in str(state)
        limited = requests.get(machines, headers=headers, verify=ca, timeout=5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
        requests.post(f"{control}/faults", json={"kind": "drop", "times": None}, verify=ca, timeout=5)
        assert requests.delete(f"{control}/faults", verify=ca, timeout=5).status_code == 204
        assert requests.get(machines, headers=headers, verify=ca, timeout=5).status_code == 200
        bad = requests.post(f"{control}/faults", json={"kind": "meteor"}, verify=ca, timeout=5)
        assert bad.status_code == 400 and "meteor" in bad.json()["error"]["message"]
    finally:
        _stop(proc)
    # The same state dir: the same identity and CA, so the pasted snippets keep working.
    proc, again = _start_cli(["--port", "0", "--state-dir", str(tmp_path)], env)
    _stop(proc)
    again_info = dict(line.split(": ", 1) for line in again if re.fullmatch(r"[A-Z_]+: .*", line))
    for key in ("TENANT", "CLIENT_ID", "CLIENT_SECRET", "CA"):
        assert again_info[key] == info[key], key


def test_the_printed_snippets_work(emu, tmp_path):
    import typer

    from connector import resolve_settings
    from flows.tenants_cli import app

    namespace: dict = {}
    exec("from connector import connect\n" + connect_line(emu), namespace)  # the line as printed
    client = namespace["client"]
    try:
        assert len(client.run_hunting_query("AlertInfo | take 2")) == 2
    finally:
        getattr(client, "close", lambda: None)()
    assert [r.path for r in emu.requests][-1] == "/v1.0/security/runHuntingQuery"
    hunt = emu.requests[-1]
    assert hunt.status == 200 and hunt.base_url == emu.graph_url  # Graph went to the Graph host

    (tmp_path / "msticpyconfig.yaml").write_text(msticpyconfig(emu), encoding="utf-8")
    settings = resolve_settings(config_path=tmp_path / "msticpyconfig.yaml")
    assert (settings.tenant_id, settings.client_id, settings.authority_host) == (emu.tenant_id, emu.client_id,
                                                                                 emu.base_url)
    assert (settings.graph_root, settings.mde_root, settings.ca_bundle) == (emu.graph_url, emu.mde_url, emu.ca_bundle)

    add = typer.main.get_command(app).commands["add"]
    known = {opt for param in add.params for opt in param.opts}
    used = set(re.findall(r"(--[a-z0-9-]+)", tenants_add(emu)))
    assert used <= known, used - known


def test_fault_specs():
    fault = parse_fault_spec("status:status=429,retry_after=7,times=inf,api=graph")
    assert (fault.kind, fault.status, fault.retry_after, fault.times, fault.api) == ("status", 429, 7, None, "graph")
    assert parse_fault_spec("drop:reset=true,path=/oauth2/").reset is True
    assert parse_fault_spec("slow:delay=0.5").delay == 0.5
    for bad in ("meteor", "status", "status:nope=1", "drop:reset=maybe", "status:status=x"):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


def test_control_endpoints_refuse_callers_that_are_not_loopback(emu):
    request = Request("GET", "/_emulator/state", {}, {}, b"", emu.base_url, client="192.0.2.10")
    assert admin_state(Context(emu, request, {}, "admin")).status == 403
    local = Request("GET", "/_emulator/state", {}, {}, b"", emu.base_url, client="127.0.0.1")
    assert admin_state(Context(emu, local, {}, "admin")).status == 200


def test_control_requests_are_never_faulted(emu, http):
    emu.faults.add(Fault("status", status=500, path=".*", times=None))
    assert http.get(f"{emu.base_url}/_emulator/state").status_code == 200
    assert http.delete(f"{emu.base_url}/_emulator/faults").status_code == 204
    assert emu.faults.pending() == []
