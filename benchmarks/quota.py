"""Hunting at the quota edge: many threads, one tenant, the service's per-minute quota.

200 hunts from 16 threads against the emulator enforcing 100 calls a minute (the service counts a
call when it arrives, in a sliding window). The theoretical minimum is the time the quota allows:
(ceil(hunts / quota) - 1) minutes. Two ways, in the same run, each on a tenant of its own:

* baseline: what the connector did before: a limiter slot booked when the call is let go (before
  the token and the TLS handshake), freed one minute after that, 429s retried after Retry-After;
* ours: ``DefenderClient.run_hunting_query`` from every thread (slots held until the answer, then
  freed a minute after it).

    .venv/bin/python benchmarks/quota.py [--hunts 200] [--threads 16] [--per-minute 100]

Prints a table (time, ratio to the minimum, 429s, failures, peak memory) and writes
``benchmarks/results/quota.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector import DefenderClient, resolve_settings  # noqa: E402
from connector.ratelimit import RateLimiter  # noqa: E402
from connector.transport import RetryPolicy, retry_after_seconds  # noqa: E402
from emulator import Emulator  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "quota.json"
QUERY = "DeviceProcessEvents | take 5"


def _new_tenant(emu: Emulator) -> tuple[str, str, str]:
    tenant = str(uuid.uuid4())
    emu.add_tenant(tenant)
    app = emu.add_app(tenant, str(uuid.uuid4()))
    return tenant, app.client_id, app.client_secret


def baseline(emu: Emulator, hunts: int, threads: int, per_minute: int) -> dict:
    tenant, client_id, secret = _new_tenant(emu)
    limiter = RateLimiter([(per_minute, 60.0)])
    local = threading.local()
    failures = []

    def token() -> str:
        if getattr(local, "token", None) is None:
            local.session = requests.Session()
            local.session.trust_env = False  # the emulator's CA, not REQUESTS_CA_BUNDLE; loopback needs no proxy
            local.session.verify = emu.ca_bundle
            answer = local.session.post(f"{emu.base_url}/{tenant}/oauth2/v2.0/token", timeout=30, data={
                "client_id": client_id, "client_secret": secret, "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default"})
            local.token = answer.json()["access_token"]
        return local.token

    def hunt(_):
        for _attempt in range(20):
            limiter.acquire()  # booked now; the service counts the call when it arrives
            access = token()
            answer = local.session.post(f"{emu.base_url}/v1.0/security/runHuntingQuery", json={"Query": QUERY},
                                        headers={"Authorization": f"Bearer {access}"}, timeout=60)
            if answer.status_code != 429:
                return answer.status_code
            time.sleep(retry_after_seconds(answer.headers.get("Retry-After")) or 1.0)
        failures.append("gave up")
        return 429

    return _run(emu, hunts, threads, hunt, failures)


def ours(emu: Emulator, hunts: int, threads: int, per_minute: int) -> dict:
    tenant, client_id, secret = _new_tenant(emu)
    settings = resolve_settings(tenant_id=tenant, client_id=client_id, client_secret=secret,
                                authority_host=emu.base_url, api_root=emu.base_url, ca_bundle=emu.ca_bundle,
                                timeout=60, rate_limits={"hunting_per_minute": per_minute, "hunting_per_hour": 100_000})
    client = DefenderClient(settings, retry=RetryPolicy(max_attempts=10, max_total_seconds=600))
    failures = []

    def hunt(_):
        try:
            client.run_hunting_query(QUERY)
        except Exception as exc:  # noqa: BLE001 - counted as a failure
            failures.append(type(exc).__name__)

    try:
        return _run(emu, hunts, threads, hunt, failures)
    finally:
        client.close()


def _run(emu, hunts, threads, hunt, failures) -> dict:
    emu.requests.clear()
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(hunt, range(hunts)))
    elapsed = time.monotonic() - started
    calls = [r for r in emu.requests if r.path.endswith("runHuntingQuery")]
    throttled = sum(1 for r in calls if r.status == 429)
    return {"seconds": elapsed, "requests": len(calls), "throttled": throttled,
            "throttled_share": throttled / max(1, len(calls)), "failures": len(failures)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hunts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--per-minute", type=int, default=100)
    args = parser.parse_args()
    minimum = (math.ceil(args.hunts / args.per_minute) - 1) * 60.0
    results = {"hunts": args.hunts, "threads": args.threads, "per_minute": args.per_minute,
               "minimum_seconds": minimum}
    with Emulator(enforce_quotas=True) as emu:
        emu.quotas.per_minute = args.per_minute
        emu.quotas.per_hour = 100_000
        for name, run in (("baseline", baseline), ("ours", ours)):
            result = run(emu, args.hunts, args.threads, args.per_minute)
            result["ratio_to_minimum"] = result["seconds"] / minimum if minimum else None
            results[name] = result
            print(f"{name:9} {result['seconds']:7.1f} s  x{result['ratio_to_minimum'] or 0:.3f} of the minimum  "
                  f"{result['requests']} requests, {result['throttled']} answered 429 "
                  f"({100 * result['throttled_share']:.1f} %), {result['failures']} failed", flush=True)
    results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"minimum   {minimum:7.1f} s  (the quota allows {args.per_minute} a minute); "
          f"peak memory {results['peak_memory_mb']:.0f} MB")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
