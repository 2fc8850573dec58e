"""Ingesting 10,000 alerts, paged, into Prefect events, against the server's own event write rate.

In one run, on one Prefect server (``prefect server start``, SQLite, a temporary PREFECT_HOME, stopped by
PID at the end) and one emulator holding the alerts:

* **server reference**: 10,000 events of the same shape sent straight to ``POST /api/events`` in batches
  of 200, timed until the server has accepted them and until it has *stored* every one (what
  ingestion waits for before it moves its watermark): the most any ingestion could do on this server;
* **listing only**: the connector's pager over the same alerts, nothing else (the Defender side's share);
* **ingest**: ``flows.ingest.ingest_source`` on a fresh tenant: list page by page, ask the server which
  events exist, emit the page, then confirm every event stored and save the watermark;
* **ingest again**: the same, all 10,000 already emitted (re-listing plus one look-up per page);
* **one list** (the baseline for memory): ``list(client.list_alerts(...))`` and every event built
  before sending, as a naive ingester would hold them.

    .venv/bin/python benchmarks/ingest.py [--alerts 10000] [--page-size 100]

Prints a table and writes ``benchmarks/results/ingest.json``. Peak memory is tracemalloc's peak
(Python allocations) during each step; the emulator is warmed first (it caches each alert's encoded
form), so its serving adds only each page's join.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    log = open(home / "server.log", "wb")  # noqa: SIM115 - the child holds it
    process = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                                "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    log.close()
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return process, api
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)  # health-check poll, bounded by the deadline


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def measured(step):
    tracemalloc.start()
    started = time.perf_counter()
    value = step()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    process, api = start_server(home)
    os.environ.update(PREFECT_API_URL=api, PREFECT_HOME=str(home / "client"), PREFECT_LOGGING_LEVEL="WARNING",
                      PREFECT_SERVER_ANALYTICS_ENABLED="false")
    try:
        from prefect.client.orchestration import get_client

        from blocks import DefenderTenant, TenantRateLimits
        from emulator import Emulator
        from flows.ingest import ALERTS, EMIT_BATCH, PrefectEventStore, VariableWatermarks, build_event, ingest_source

        with Emulator(enforce_quotas=False) as emu, get_client(sync_client=True) as api_client:
            emu.page_size = args.page_size
            emu.stores.alerts.load([])
            emu.seed_alerts(args.alerts)

            def block(name: str):
                tenant = DefenderTenant(
                    tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                    authority_host=emu.base_url, api_root=emu.base_url, ca_bundle=emu.ca_bundle, timeout=60,
                    allow_custom_endpoints=True,
                    rate_limits=TenantRateLimits(hunting_per_minute=10_000, hunting_per_hour=100_000,
                                                 api_per_minute=1_000_000))
                tenant.save(name, overwrite=True)
                return tenant

            since = datetime.now(UTC) - timedelta(days=1)
            store = PrefectEventStore(api_client)
            with block("bench-warm").get_client() as client:
                sample = next(iter(client.list_alerts(since=since)))
                for _ in client.list_alerts(since=since).by_page():  # the emulator caches each alert's JSON
                    pass

            # Server reference: the same events, straight to the API, until stored.
            events = []
            for n in range(args.alerts):
                events.append(build_event(ALERTS, "bench-ref", dict(sample, id=f"ref-{n}-{uuid.uuid4().hex[:6]}"),
                                          "created"))
            ids = [e["id"] for e in events]
            started = time.perf_counter()
            store.emit(events)
            accepted = time.perf_counter() - started
            store.confirm(ids, timeout=900)
            stored = time.perf_counter() - started
            del events, ids

            with block("bench-list").get_client() as client:
                pages, list_seconds, list_peak = measured(
                    lambda: sum(1 for _ in client.list_alerts(since=since).by_page()))

            marks = VariableWatermarks()
            with block("bench-ingest").get_client() as client:
                first, first_seconds, first_peak = measured(
                    lambda: ingest_source(client, store, marks, ALERTS, "bench-ingest", page_size=args.page_size,
                                          confirm_timeout=900))
                again, again_seconds, again_peak = measured(
                    lambda: ingest_source(client, store, marks, ALERTS, "bench-ingest", page_size=args.page_size,
                                          confirm_timeout=900))

            with block("bench-list").get_client() as client:
                def one_list():
                    alerts = list(client.list_alerts(since=since))
                    built = [build_event(ALERTS, "bench-list", a, "created") for a in alerts]
                    return len(alerts), len(built)
                _, list_all_seconds, list_all_peak = measured(one_list)
    finally:
        stop_server(process)
        shutil.rmtree(home, ignore_errors=True)

    n = args.alerts
    rows = [
        ("server: POST /api/events (accepted)", n, accepted, None),
        ("server: POST until every event stored", n, stored, None),
        ("listing only (pager, nothing else)", n, list_seconds, list_peak),
        ("ingest (list, look up, emit, confirm stored)", first.seen, first_seconds, first_peak),
        ("ingest again (all already emitted)", again.seen, again_seconds, again_peak),
        ("baseline: one list of alerts + events", n, list_all_seconds, list_all_peak),
    ]
    print(f"{n:,} alerts, {pages} pages of {args.page_size}; events in batches of {EMIT_BATCH}\n")
    print(f"{'step':46} {'items':>7} {'seconds':>8} {'items/s':>8} {'peak MB':>8}")
    for label, items, seconds, peak in rows:
        mb = f"{peak / 2**20:8.1f}" if peak is not None else f"{'-':>8}"
        print(f"{label:46} {items:>7,} {seconds:8.2f} {items / seconds:8.0f} {mb}")
    ratio = (first.seen / first_seconds) / (n / stored)
    print(f"\ningest runs at {ratio:.0%} of the server's own stored-event rate; its peak is "
          f"{first_peak / list_all_peak:.0%} of holding the alerts as one list.")
    print(f"first run: {first.created:,} created, {first.updated:,} updated; second: {again.emitted} emitted, "
          f"{again.duplicates:,} already there")
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
        "cpus": os.cpu_count(), "alerts": n, "page_size": args.page_size, "pages": pages, "emit_batch": EMIT_BATCH,
        "server_accept_seconds": round(accepted, 3), "server_accept_per_second": round(n / accepted),
        "server_stored_seconds": round(stored, 3), "server_stored_per_second": round(n / stored),
        "list_seconds": round(list_seconds, 3), "list_peak_bytes": list_peak,
        "ingest_seconds": round(first_seconds, 3), "ingest_per_second": round(first.seen / first_seconds),
        "ingest_peak_bytes": first_peak, "ingest_created": first.created,
        "again_seconds": round(again_seconds, 3), "again_per_second": round(again.seen / again_seconds),
        "again_peak_bytes": again_peak, "again_emitted": again.emitted,
        "one_list_seconds": round(list_all_seconds, 3), "one_list_peak_bytes": list_all_peak,
        "ingest_vs_server_stored": round(ratio, 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
