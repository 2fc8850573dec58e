"""Paging 10,000 alerts into a DataFrame: the client's pager against a naive ``requests`` loop.

Both read Graph ``alerts_v2`` from the emulator, page by page (``@odata.nextLink``), in the same
run and process, interleaved:

* baseline: ``requests.get`` in a loop following ``@odata.nextLink``, ``pandas.DataFrame(items)``
  (untyped: date-times stay text);
* ours: ``client.list_alerts(since=...).to_frame()`` (token cache, limiter, retries, the host check
  on every next link, typed columns).

    .venv/bin/python benchmarks/paging.py [--alerts 10000] [--page-size 100] [--repeats 3]

Prints a table and writes ``benchmarks/results/paging.json``. Peak memory is tracemalloc's peak
(Python allocations) during each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector import DefenderClient, resolve_settings  # noqa: E402
from emulator import Emulator  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paging.json"


def baseline(emu: Emulator, token: str, since: str) -> pd.DataFrame:
    session = requests.Session()
    session.trust_env = False
    items, url = [], f"{emu.graph_url}/v1.0/security/alerts_v2"
    params = {"$filter": f"lastUpdateDateTime ge {since}"}
    while url:
        body = session.get(url, params=params, headers={"Authorization": f"Bearer {token}"},
                           verify=emu.ca_bundle, timeout=60).json()
        items.extend(body["value"])
        url, params = body.get("@odata.nextLink"), None
    return pd.DataFrame(items)


def ours(client: DefenderClient, since: datetime) -> pd.DataFrame:
    return client.list_alerts(since=since).to_frame()


def measure(run) -> tuple[float, int, int]:
    tracemalloc.start()
    started = time.perf_counter()
    frame = run()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak, len(frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with Emulator(enforce_quotas=False) as emu:
        emu.page_size = args.page_size
        since = datetime.now(UTC) - timedelta(days=3650)
        emu.seed_alerts(args.alerts)
        settings = resolve_settings(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                                    authority_host=emu.base_url, graph_root=emu.graph_url, mde_root=emu.mde_url,
                                    ca_bundle=emu.ca_bundle, timeout=60,
                                    rate_limits={"api_per_minute": 1_000_000})
        with DefenderClient(settings) as client:
            token = client.get_token("graph")
            since_text = since.strftime("%Y-%m-%dT%H:%M:%SZ")
            runs = {"baseline": [], "ours": []}
            rows = {}
            for _ in range(args.repeats):
                for name, run in (("baseline", lambda: baseline(emu, token, since_text)),
                                  ("ours", lambda: ours(client, since))):
                    elapsed, peak, n = measure(run)
                    runs[name].append((elapsed, peak))
                    rows[name] = n
            typed = ours(client, since).dtypes.astype(str).to_dict()
    result = {"alerts": args.alerts, "page_size": args.page_size, "rows": rows, "lastUpdateDateTime_dtype":
              typed.get("lastUpdateDateTime")}
    print(f"{args.alerts:,} alerts, {args.page_size} a page ({rows})")
    print(f"{'method':9} {'best s':>8} {'median s':>9} {'peak MB':>8}")
    for name, values in runs.items():
        times = [t for t, _ in values]
        peaks = [p for _, p in values]
        result[name] = {"best_seconds": min(times), "median_seconds": statistics.median(times),
                        "peak_mb_median": statistics.median(peaks) / 2**20, "runs": values}
        print(f"{name:9} {min(times):8.2f} {statistics.median(times):9.2f} {statistics.median(peaks) / 2**20:8.1f}")
    result["ratio_ours_to_baseline"] = result["ours"]["median_seconds"] / result["baseline"]["median_seconds"]
    print(f"ours / baseline (median time): {result['ratio_ours_to_baseline']:.2f}; "
          f"lastUpdateDateTime is {result['lastUpdateDateTime_dtype']} in ours, text in the baseline")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
