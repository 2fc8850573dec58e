"""Hunting response → DataFrame: our path against the naive one, same emulator, same run.

For each size (1,000 / 10,000 / 100,000 rows of ``DeviceProcessEvents``) and each method, a fresh
subprocess makes one Graph ``runHuntingQuery`` request to the local emulator and builds a DataFrame:

* baseline: ``requests.post(...)`` + ``.json()`` + ``pandas.DataFrame(results)`` (untyped);
* ours:     ``connector.connect(...).run_hunting_query(...)``: the real client (MSAL token cache,
  rate limiter, retries, streamed body, typed frame).

Time is from just before the request to the finished DataFrame. Peak memory is the process's
resident high-water mark (VmHWM, i.e. ``ru_maxrss`` without the value Linux inherits from the
parent) at the end minus its resident size just before the request, measured after imports and a
10-row warm-up; Arrow allocates outside Python, so tracemalloc would miss it. The response body
counts on both sides. The emulator is
warmed once per size (it caches built results), each method runs ``--repeats`` times, interleaved;
the table shows the best time and the median peak.

    .venv/bin/python benchmarks/hunting.py [--rows 1000,10000,100000] [--repeats 3]

Prints a table and writes ``benchmarks/results/hunting.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "hunting.json"
METHODS = ("baseline", "ours")


# ------------------------------------------------------------------------------------------
# Child: one request + one DataFrame, measured
# ------------------------------------------------------------------------------------------

def _memory() -> tuple[int, int]:
    """(resident now, resident high-water mark) of this process, in bytes, from /proc/self/status.

    VmHWM is what ``ru_maxrss`` means to report, but Linux hands a child its parent's
    ``ru_maxrss`` across fork/exec, and the parent here holds the emulator and its cached 100k
    result: ``ru_maxrss`` would show the parent's peak whenever it is above the child's.
    """
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


def _child(method: str, rows: int) -> None:
    import pandas as pd
    import requests

    from connector import connect

    cfg = json.loads(sys.stdin.read())  # the secret comes on stdin, never in argv
    token = requests.post(
        f"{cfg['base_url']}/{cfg['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": cfg["client_id"],
            "client_secret": cfg["client_secret"],
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=cfg["ca_bundle"],
        timeout=60,
    ).json()["access_token"]
    url = f"{cfg['base_url']}/v1.0/security/runHuntingQuery"
    headers = {"Authorization": f"Bearer {token}"}

    def post(n: int) -> requests.Response:
        resp = requests.post(
            url, json={"Query": f"DeviceProcessEvents | take {n}"}, headers=headers,
            verify=cfg["ca_bundle"], timeout=600,
        )
        resp.raise_for_status()
        return resp

    def baseline(n: int) -> tuple[pd.DataFrame, float, int]:
        resp = post(n)
        received = time.perf_counter()
        return pd.DataFrame(resp.json()["results"]), received, len(resp.content)

    client = connect(
        tenant_id=cfg["tenant_id"], client_id=cfg["client_id"], client_secret=cfg["client_secret"],
        authority_host=cfg["base_url"], api_root=cfg["base_url"], ca_bundle=cfg["ca_bundle"], timeout=600,
    )

    def ours(n: int) -> tuple[pd.DataFrame, float | None, int | None]:
        return client.run_hunting_query(f"DeviceProcessEvents | take {n}"), None, None

    run = {"baseline": baseline, "ours": ours}[method]
    run(10)  # first-call costs (lazy imports, TLS setup) out of the measurement
    rss_before, _ = _memory()
    start = time.perf_counter()
    frame, received, size = run(rows)
    end = time.perf_counter()
    peak = _memory()[1] - rss_before
    assert len(frame) == rows, (len(frame), rows)
    print(json.dumps({
        "seconds": end - start,
        "request_seconds": None if received is None else received - start,
        "peak_bytes": peak,
        "body_bytes": size,
        "columns": frame.shape[1],
        "dtypes": frame.dtypes.astype(str).value_counts().to_dict(),
    }))


# ------------------------------------------------------------------------------------------
# Parent: emulator, subprocesses, table
# ------------------------------------------------------------------------------------------

def _measure(method: str, rows: int, cfg: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, "--rows", str(rows)],
        input=json.dumps(cfg), capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{method} with {rows} rows failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _warm(cfg: dict, rows: int) -> float:
    import requests

    session = requests.Session()
    session.trust_env = False
    token = session.post(
        f"{cfg['base_url']}/{cfg['tenant_id']}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": cfg["client_id"],
              "client_secret": cfg["client_secret"], "scope": "https://graph.microsoft.com/.default"},
        verify=cfg["ca_bundle"], timeout=60,
    ).json()["access_token"]
    start = time.perf_counter()
    resp = session.post(
        f"{cfg['base_url']}/v1.0/security/runHuntingQuery", json={"Query": f"DeviceProcessEvents | take {rows}"},
        headers={"Authorization": f"Bearer {token}"}, verify=cfg["ca_bundle"], timeout=600,
    )
    resp.raise_for_status()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000,10000,100000", help="comma-separated row counts")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method and size (default 3)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, int(args.rows))
        return

    sys.path.insert(0, str(ROOT))
    from emulator import Emulator

    sizes = [int(x) for x in args.rows.split(",")]
    report: dict = {
        "benchmark": "hunting response to DataFrame",
        "query": "DeviceProcessEvents | take N (Graph runHuntingQuery, local emulator over HTTPS)",
        "baseline": "requests.post + .json() + pandas.DataFrame(results), untyped",
        "ours": "connector.connect(...).run_hunting_query(...): token cache, limiter, retries, streamed body, typed",
        "time": "best of repeats, request start to DataFrame",
        "peak": "median of repeats, VmHWM (ru_maxrss of this process alone) minus RSS just before the request",
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": [],
    }
    with Emulator(enforce_quotas=False) as emu:
        cfg = {"base_url": emu.base_url, "ca_bundle": str(emu.ca_bundle), "tenant_id": emu.tenant_id,
               "client_id": emu.client_id, "client_secret": emu.client_secret}
        for rows in sizes:
            warm = _warm(cfg, rows)
            runs: dict[str, list[dict]] = {m: [] for m in METHODS}
            for _ in range(args.repeats):
                for method in METHODS:
                    runs[method].append(_measure(method, rows, cfg))
            entry = {"rows": rows, "body_mb": runs["baseline"][0]["body_bytes"] / 1e6, "warmup_seconds": warm}
            for method in METHODS:
                entry[method] = {
                    "seconds_best": min(r["seconds"] for r in runs[method]),
                    "seconds_median": statistics.median(r["seconds"] for r in runs[method]),
                    "request_seconds_median": (
                        statistics.median(r["request_seconds"] for r in runs[method])
                        if runs[method][0]["request_seconds"] is not None else None
                    ),
                    "peak_mb_median": statistics.median(r["peak_bytes"] for r in runs[method]) / 1e6,
                    "seconds_all": [round(r["seconds"], 3) for r in runs[method]],
                    "peak_mb_all": [round(r["peak_bytes"] / 1e6, 1) for r in runs[method]],
                    "columns": runs[method][0]["columns"],
                    "dtypes": runs[method][0]["dtypes"],
                }
            entry["speedup"] = entry["baseline"]["seconds_best"] / entry["ours"]["seconds_best"]
            entry["speedup_median"] = entry["baseline"]["seconds_median"] / entry["ours"]["seconds_median"]
            entry["memory_ratio"] = entry["ours"]["peak_mb_median"] / entry["baseline"]["peak_mb_median"]
            report["results"].append(entry)
            print(f"  {rows:>7} rows done ({entry['body_mb']:.0f} MB body)", file=sys.stderr, flush=True)

    header = (f"{'rows':>8} {'body MB':>8} {'baseline s':>11} {'ours s':>8} {'speed-up':>9} "
              f"{'baseline MB':>12} {'ours MB':>8} {'mem ratio':>10}")
    print(header)
    print("-" * len(header))
    for e in report["results"]:
        print(f"{e['rows']:>8} {e['body_mb']:>8.1f} {e['baseline']['seconds_best']:>11.3f} "
              f"{e['ours']['seconds_best']:>8.3f} {e['speedup']:>8.2f}x "
              f"{e['baseline']['peak_mb_median']:>12.0f} {e['ours']['peak_mb_median']:>8.0f} "
              f"{e['memory_ratio']:>10.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
