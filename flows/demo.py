"""`make demo`: triage the emulator's seeded incident with the ``triage_alert`` flow, no configuration needed.

1. starts the built-in emulator (Entra ID and the Defender APIs on loopback HTTPS, with a seeded
   tenant and a coherent incident: one device, one user, a process tree, a network connection);
2. saves a ``DefenderTenant`` block, ``demo-emulator``, pointing at it;
3. runs ``triage_alert`` on the incident's alert, on Prefect's temporary local server (or the one at
   ``PREFECT_API_URL``, if set): evidence, a pack of library hunting queries around the device, the
   user and the time, enrichment, a Markdown report artifact, a comment on the alert;
4. prints the report, the comment Defender now holds, and where to see the run and the artifact.
"""

from __future__ import annotations

import logging
import os
import sys
import time

DEMO_TENANT = "demo-emulator"


def seeded_alert(emu) -> tuple[str, str]:
    """(alert id, incident id) of the emulator's seeded incident (:mod:`emulator.incident`)."""
    return emu.incident.alert_id, str(emu.incident.incident_id)


def _quiet_console() -> None:
    """Prefect's own INFO lines would bury the report; they still reach the server's run logs."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for name in ("", "prefect", "uvicorn"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.WARNING)


def where_to_look(artifact: str) -> list[str]:
    """Lines saying where the run and the report can be seen afterwards."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_UI_URL

    api = PREFECT_API_URL.value() or ""
    if api:
        ui = PREFECT_UI_URL.value() or api.removesuffix("/api")
        return [f"In the Prefect UI: {ui}/artifacts/key/{artifact} (the report) and {ui}/runs (the flow run)."]
    home = PREFECT_HOME.value()
    return [
        f"The run and the report artifact are kept in {home}/prefect.db (the temporary server has stopped).",
        "To browse them, start a server on that database and open the artifact:",
        f"    PREFECT_HOME={home} .venv/bin/prefect server start",
        f"    http://127.0.0.1:4200/artifacts/key/{artifact}",
    ]


def main() -> int:
    """Run the demo; returns the process exit code."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)  # the emulator's CA is given to the block explicitly

    from blocks import DefenderTenant
    from emulator import Emulator
    from flows.triage import triage_alert

    _quiet_console()
    with Emulator() as emu:
        print(f"Emulator (Entra ID + Defender APIs) at {emu.base_url}; CA bundle {emu.ca_bundle}")
        alert_id, incident_id = seeded_alert(emu)
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            print("No PREFECT_API_URL: Prefect starts a temporary local server for this run (10-30 s).", flush=True)
        DefenderTenant(
            tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
            authority_host=emu.base_url, api_root=emu.base_url, ca_bundle=emu.ca_bundle,
            allow_custom_endpoints=True,  # loopback hosts: the emulator, not Microsoft
        ).save(DEMO_TENANT, overwrite=True)
        print(f"Saved tenant block {DEMO_TENANT!r}. Triaging alert {alert_id} (incident {incident_id}) ...",
              flush=True)
        started = time.perf_counter()
        result = triage_alert(alert_id, DEMO_TENANT)
        elapsed = time.perf_counter() - started
        with DefenderTenant.load(DEMO_TENANT).get_client() as client:
            comments = client.get_alert(alert_id).get("comments") or []

    print("\n" + "=" * 100 + "\n")
    print(result.report)
    print("=" * 100 + "\n")
    print(f"Triage took {elapsed:.1f} s: {sum(result.rows.values()):,} hunting rows from {len(result.rows)} queries"
          + (f"; failed: {', '.join(result.failures)}" if result.failures else "") + ".")
    if comments:
        print(f"Comment now on the alert in Defender:\n    {comments[-1].get('comment', '').splitlines()[0]}")
    print(f"Report artifact: {result.artifact_key}")
    for line in where_to_look(result.artifact_key):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
