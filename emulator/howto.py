"""What ``python -m emulator`` prints: the coordinates, then ready-to-paste ways to point a client at it.

- ``defender-soar tenants add`` flags (a tenant block),
- a ``msticpyconfig.yaml`` snippet (``DataProviders: MicrosoftDefender``),
- a Python ``connect(...)`` line,
- how to arm faults over HTTP,
- the seeded incident (:mod:`emulator.incident`) and how to triage it.

Each resource gets its own root (``graph_root``, ``mde_root``), so a call routed to the wrong one fails
as it would against Microsoft. ``api_root`` set to ``base_url`` works too (one proxy in front of all).
"""

from __future__ import annotations

import shlex
from typing import Protocol

from .incident import INCIDENT
from .state import DEFAULT_SECRET_NAME


class _Running(Protocol):
    base_url: str
    graph_url: str
    mde_url: str
    ca_bundle: str
    tenant_id: str
    client_id: str
    client_secret: str


def coordinates(emu: _Running, state_dir: str | None = None) -> list[tuple[str, str]]:
    """``(KEY, value)`` lines, the first five as they always were (URL, CA, TENANT, CLIENT_ID, CLIENT_SECRET)."""
    lines = [("URL", emu.base_url), ("CA", emu.ca_bundle), ("TENANT", emu.tenant_id),
             ("CLIENT_ID", emu.client_id), ("CLIENT_SECRET", emu.client_secret), ("GRAPH_URL", emu.graph_url),
             ("MDE_URL", emu.mde_url), ("KEYVAULT_SECRET", DEFAULT_SECRET_NAME),
             ("CONTROL", f"{emu.base_url}/_emulator/state")]
    if state_dir:
        lines.append(("STATE_DIR", state_dir))
    return lines


def tenants_add(emu: _Running, name: str = "emulator") -> str:
    """A ``defender-soar tenants add`` command line for the seeded app."""
    flags = [("--tenant-id", emu.tenant_id), ("--client-id", emu.client_id), ("--client-secret", emu.client_secret),
             ("--authority-host", emu.base_url), ("--graph-root", emu.graph_url), ("--mde-root", emu.mde_url),
             ("--m365d-root", emu.mde_url), ("--ca-bundle", emu.ca_bundle)]
    return " ".join(["defender-soar", "tenants", "add", name]
                    + [f"{flag} {shlex.quote(value)}" for flag, value in flags] + ["--allow-custom-endpoints"])


def msticpyconfig(emu: _Running) -> str:
    """A ``msticpyconfig.yaml`` ``DataProviders`` section for the seeded app."""
    def q(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "\n".join([
        "DataProviders:",
        "  MicrosoftDefender:",
        "    Args:",
        f"      TenantId: {q(emu.tenant_id)}",
        f"      ClientId: {q(emu.client_id)}",
        f"      ClientSecret: {q(emu.client_secret)}",
        f"      AuthorityHost: {q(emu.base_url)}",
        f"      GraphRoot: {q(emu.graph_url)}",
        f"      MdeRoot: {q(emu.mde_url)}",
        f"      M365dRoot: {q(emu.mde_url)}",
        f"      CaBundle: {q(emu.ca_bundle)}",
    ])


def connect_line(emu: _Running) -> str:
    """A Python ``connect(...)`` call for the seeded app."""
    args = {"tenant_id": emu.tenant_id, "client_id": emu.client_id, "client_secret": emu.client_secret,
            "authority_host": emu.base_url, "graph_root": emu.graph_url, "mde_root": emu.mde_url,
            "m365d_root": emu.mde_url, "ca_bundle": emu.ca_bundle}
    return "client = connect(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"


def faults_help(emu: _Running) -> str:
    """How to arm, list and clear faults over HTTP (loopback only, no token)."""
    ca = shlex.quote(emu.ca_bundle)
    return "\n".join([
        f"curl --cacert {ca} {emu.base_url}/_emulator/state",
        f"curl --cacert {ca} -X POST {emu.base_url}/_emulator/faults -H 'Content-Type: application/json' "
        "-d '{\"kind\": \"status\", \"status\": 429, \"retry_after\": 5, \"times\": 3}'",
        f"curl --cacert {ca} -X DELETE {emu.base_url}/_emulator/faults",
    ])


def seeded_incident(name: str = "emulator") -> str:
    """The seeded incident's ids, and the command that triages it with the tenant block ``name``."""
    inc = INCIDENT
    return "\n".join([
        f"alert {inc.alert_id} in incident {inc.incident_id} ({inc.severity}): {inc.title}",
        f"device {inc.device_name} ({inc.device_id}), user {inc.user_account}, "
        f"process tree {' > '.join(inc.process_names)}, {inc.file_name} sha256 {inc.sha256}, "
        f"C2 {inc.remote_ip}:{inc.remote_port}",
        f"defender-soar triage --tenant {name} --alert-id {inc.alert_id}",
    ])


def everything(emu: _Running, state_dir: str | None = None) -> str:
    """The whole text ``python -m emulator`` prints once it is serving."""
    head = "\n".join(f"{key}: {value}" for key, value in coordinates(emu, state_dir))
    return "\n".join([
        head, "",
        "# A tenant block (Prefect):", tenants_add(emu), "",
        "# msticpyconfig.yaml:", msticpyconfig(emu), "",
        "# Python:", "from connector import connect", connect_line(emu), "",
        "# Faults (also --fault KIND:name=value,... at start):", faults_help(emu), "",
        "# The seeded incident:", seeded_incident(), "",
    ])
