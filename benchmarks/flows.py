"""Flows against the plain connector, in one process: overhead, fan-out, the quota, and frames between tasks.

    .venv/bin/python benchmarks/flows.py                      # everything (~4 minutes on 2 cores)
    .venv/bin/python benchmarks/flows.py --only overhead,frames --repeats 5

Four measurements, each against a baseline in the same run, on the local emulator:

* **overhead**: a 100,000-row hunt through the ``hunt`` flow (block load, task, TenantName column,
  Parquet file, table artifact) against ``connector.connect(...).run_hunting_query(...)``. The
  fixed cost of a flow run is measured with a 10-row hunt (flow minus direct); the target is
  ``flow <= 1.15 x direct + fixed``. Runs alternate; medians are reported.
* **fan-out**: 20 tenants (each its own emulator tenant and app) hunted by one ``hunt`` run,
  against the slowest of the same tenants hunted alone (each a ``hunt`` run too; the median is
  reported as well). The emulator runs in a child process, as the service would be elsewhere, and
  answers every hunt after ``--latency`` seconds, standing in for the service's own query time.
  Target: <= 1.3 x the slowest single tenant.
* **quota**: ``hunt_pack`` with 200 queries on one tenant, the emulator enforcing a scaled-down
  quota (``--per-minute``, default 100 hunts a minute) and the tenant block set to the same.
  The theoretical minimum is ``(ceil(200 / quota) - 1)`` minutes. Targets: 0 failures, <= 1.15 x
  the minimum, <= 1 % of hunting requests answered 429.
* **frames**: a 100,000-row frame passed to a task 5 times in a flow: Prefect's default cache
  policy (inputs hashed) against these tasks' ``NO_CACHE`` + ``persist_result=False``; and
  whether the task receives the same object.

Prefect: the server at ``PREFECT_API_URL`` if set, else a temporary one (its start is not timed),
with a throw-away ``PREFECT_HOME``. Writes ``benchmarks/results/flows.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "flows.json"
_HOME = None
if not os.environ.get("PREFECT_API_URL"):
    _HOME = tempfile.mkdtemp(prefix="bench-prefect-")
    os.environ["PREFECT_HOME"] = _HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
for _name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # the emulator's CA is passed explicitly
    os.environ.pop(_name, None)

import pandas as pd  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import DEFAULT  # noqa: E402

from blocks import DefenderTenant, TenantRateLimits  # noqa: E402
from connector import connect  # noqa: E402
from emulator import Emulator, Fault  # noqa: E402
from flows.hunt import hunt, write_results  # noqa: E402
from flows.hunt_pack import hunt_pack  # noqa: E402
from flows.tasks import TASK_OPTIONS  # noqa: E402

BIG = "DeviceProcessEvents | take 100000"
SMALL = "DeviceProcessEvents | take 10"
FAST = {"hunting_per_minute": 100_000, "hunting_per_hour": 1_000_000, "api_per_minute": 100_000}


def _tenant(emu: Emulator, name: str, *, per_minute: int | None = None, own: bool = True) -> dict:
    """A saved tenant block (and its connect() kwargs) for a new emulator tenant, or the default one."""
    if own:
        tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
        emu.add_tenant(tenant_id)
        secret = emu.add_app(tenant_id, client_id).client_secret
    else:
        tenant_id, client_id, secret = emu.tenant_id, emu.client_id, emu.client_secret
    limits = dict(FAST)
    if per_minute:
        limits.update(hunting_per_minute=per_minute)
    kwargs = dict(tenant_id=tenant_id, client_id=client_id, client_secret=secret, authority_host=emu.base_url,
                  api_root=emu.base_url, ca_bundle=emu.ca_bundle, timeout=300)
    DefenderTenant(**kwargs, rate_limits=TenantRateLimits(**limits), allow_custom_endpoints=True).save(
        name, overwrite=True)
    return {**kwargs, "rate_limits": limits}


def _direct(kwargs: dict, query: str) -> float:
    started = time.perf_counter()
    with connect(**kwargs) as client:
        frame = client.run_hunting_query(query)
    elapsed = time.perf_counter() - started
    del frame
    return elapsed


def _flow(name: str, query: str, out: Path) -> float:
    started = time.perf_counter()
    result = hunt(name, query, output=str(out))
    elapsed = time.perf_counter() - started
    assert result.ok, result.failures
    del result
    return elapsed


def overhead(emu: Emulator, repeats: int, scratch: Path) -> dict:
    """The hunt flow against the bare client, 100,000 rows and 10 rows."""
    kwargs = _tenant(emu, "bench-overhead", own=False)
    out = scratch / "overhead.parquet"
    _direct(kwargs, BIG)  # the emulator builds and caches the 100k result
    _flow("bench-overhead", SMALL, out)  # first flow run: server, block type, imports
    times: dict[str, list[float]] = {"direct_big": [], "flow_big": [], "direct_small": [], "flow_small": []}
    for _ in range(repeats):
        times["direct_small"].append(_direct(kwargs, SMALL))
        times["flow_small"].append(_flow("bench-overhead", SMALL, out))
        times["direct_big"].append(_direct(kwargs, BIG))
        times["flow_big"].append(_flow("bench-overhead", BIG, out))
    with connect(**kwargs) as client:
        frame = client.run_hunting_query(BIG)
    started = time.perf_counter()
    write_results(frame, scratch / "write-only.parquet")
    parquet = time.perf_counter() - started
    med = {k: statistics.median(v) for k, v in times.items()}
    fixed = max(0.0, med["flow_small"] - med["direct_small"])
    budget = 1.15 * med["direct_big"] + fixed
    return {
        "rows": len(frame), "repeats": repeats, "runs": times, "median": med,
        "fixed_cost_seconds": fixed, "parquet_write_seconds": parquet,
        "ratio": med["flow_big"] / med["direct_big"],
        "ratio_without_fixed_cost": (med["flow_big"] - fixed) / med["direct_big"],
        "budget_seconds": budget, "within_target": med["flow_big"] <= budget,
    }


def _serve_tenants(conn, tenants: int, latency: float) -> None:
    """Child process: an emulator with ``tenants`` tenants, every hunt answered after ``latency`` seconds."""
    with Emulator(enforce_quotas=False) as emu:
        creds = []
        for _ in range(tenants):
            tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
            emu.add_tenant(tenant_id)
            creds.append((tenant_id, client_id, emu.add_app(tenant_id, client_id).client_secret))
        emu.faults.add(Fault("slow", path=r"/runHuntingQuery$", delay=latency, times=None))
        conn.send((emu.base_url, emu.ca_bundle, creds))
        conn.recv()  # until told to stop


def fanout(tenants: int, latency: float, rows: int, repeats: int, scratch: Path) -> dict:
    """``tenants`` tenants in one hunt run against the same tenants hunted alone (each a hunt run too).

    The emulator runs in a child process here, as the service would be elsewhere: in this process
    its TLS and JSON work would compete with the flow's for the same two cores.
    """
    import multiprocessing

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=_serve_tenants, args=(child, tenants, latency),
                                                           daemon=True)
    server.start()
    try:
        base, ca_bundle, creds = parent.recv()
        names = []
        for n, (tenant_id, client_id, secret) in enumerate(creds):
            names.append(f"bench-fan-{n:02d}")
            DefenderTenant(tenant_id=tenant_id, client_id=client_id, client_secret=secret, authority_host=base,
                           api_root=base, ca_bundle=ca_bundle, timeout=300, rate_limits=TenantRateLimits(**FAST),
                           allow_custom_endpoints=True).save(names[-1], overwrite=True)
        query = f"DeviceProcessEvents | take {rows}"
        hunt(names[0], query, output=str(scratch / "warm.parquet"))  # warm: result cached, types registered
        single = {}
        for name in names:
            started = time.perf_counter()
            result = hunt(name, query, output=str(scratch / f"{name}.parquet"))
            single[name] = time.perf_counter() - started
            assert result.ok, result.failures
        together = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = hunt(names, query, output=str(scratch / "fan.parquet"))
            together.append(time.perf_counter() - started)
            assert result.ok and len(result.frame) == rows * tenants, result.failures
    finally:
        parent.send("stop")
        server.join(timeout=30)
    slowest, median_single, fan = max(single.values()), statistics.median(single.values()), statistics.median(together)
    return {"tenants": tenants, "rows_per_tenant": rows, "service_latency_seconds": latency,
            "single_seconds": single, "slowest_single_seconds": slowest, "median_single_seconds": median_single,
            "fanout_runs_seconds": together, "fanout_seconds": fan, "ratio": fan / slowest,
            "ratio_to_median_single": fan / median_single, "within_target": fan <= 1.3 * slowest}


def quota(emu: Emulator, hunts: int, per_minute: int, scratch: Path) -> dict:
    """hunt_pack with ``hunts`` queries on one tenant under the quota."""
    _tenant(emu, "bench-quota", per_minute=per_minute)
    pack = {"name": "bench-quota", "queries": [
        {"name": f"q{n:03d}", "query": f"DeviceProcessEvents | take 5 | extend Probe = {n}"} for n in range(hunts)]}
    path = scratch / "pack.yaml"
    path.write_text(json.dumps(pack))  # JSON is YAML
    emu.enforce_quotas = True
    emu.quotas.per_minute, emu.quotas.per_hour = per_minute, 1_000_000
    emu.quotas.reset()
    emu.requests.clear()
    started = time.perf_counter()
    state = hunt_pack(str(path), "bench-quota", return_state=True)
    elapsed = time.perf_counter() - started
    emu.enforce_quotas = False
    result = state.result(raise_on_failure=False)
    failures = len(result.failures) if hasattr(result, "failures") else hunts
    calls = [r for r in emu.requests if r.path.endswith("/runHuntingQuery")]
    throttled = sum(1 for r in calls if r.status == 429)
    minimum = (math.ceil(hunts / per_minute) - 1) * 60.0
    return {"hunts": hunts, "per_minute": per_minute, "seconds": elapsed, "minimum_seconds": minimum,
            "ratio_to_minimum": elapsed / minimum if minimum else None, "requests": len(calls),
            "throttled": throttled, "throttled_share": throttled / max(1, len(calls)), "failures": failures,
            "within_target": failures == 0 and (not minimum or elapsed <= 1.15 * minimum)
            and throttled <= 0.01 * max(1, len(calls))}


@task
def _default(frame: pd.DataFrame) -> int:
    return id(frame)


@task(cache_policy=DEFAULT, persist_result=False)
def _hashed(frame: pd.DataFrame) -> int:
    return id(frame)


@task(**TASK_OPTIONS)
def _ours(frame: pd.DataFrame) -> int:
    return id(frame)


@flow(persist_result=False)
def _pass_frames(frame: pd.DataFrame, calls: int) -> dict:
    out = {}
    for name, t in (("prefect_defaults", _default), ("default_cache_policy_not_persisted", _hashed),
                    ("no_cache", _ours)):
        t(frame)  # warm
        started = time.perf_counter()
        ids = [t(frame) for _ in range(calls)]
        out[name] = {"seconds_per_call": (time.perf_counter() - started) / calls, "same_object": set(ids) == {id(frame)}}
    return out


def frames(emu: Emulator, calls: int) -> dict:
    """A 100,000-row frame into a task: hashed inputs against NO_CACHE."""
    kwargs = _tenant(emu, "bench-frames", own=False)
    with connect(**kwargs) as client:
        frame = client.run_hunting_query(BIG)
    result = _pass_frames(frame, calls)
    result["rows"], result["columns"] = len(frame), len(frame.columns)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="overhead,fanout,quota,frames")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--fanout-rows", type=int, default=2000)
    parser.add_argument("--hunts", type=int, default=200)
    parser.add_argument("--per-minute", type=int, default=100)
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    results: dict = {"prefect_api": os.environ.get("PREFECT_API_URL") or "temporary server", "cpus": os.cpu_count()}
    with Emulator(enforce_quotas=False) as emu, tempfile.TemporaryDirectory(prefix="bench-flows-") as tmp:
        scratch = Path(tmp)
        if "overhead" in wanted:
            r = results["overhead"] = overhead(emu, args.repeats, scratch)
            m = r["median"]
            print(f"overhead  {r['rows']:,} rows: direct {m['direct_big']:.2f} s, hunt flow {m['flow_big']:.2f} s "
                  f"(x{r['ratio']:.2f}); fixed cost {r['fixed_cost_seconds']:.2f} s (10 rows: direct "
                  f"{m['direct_small']:.2f} s, flow {m['flow_small']:.2f} s); without it x"
                  f"{r['ratio_without_fixed_cost']:.2f}; Parquet write alone {r['parquet_write_seconds']:.2f} s; "
                  f"target <= {r['budget_seconds']:.2f} s: {'met' if r['within_target'] else 'MISSED'}", flush=True)
        if "frames" in wanted:
            r = results["frames"] = frames(emu, 5)
            d, h, o = r["prefect_defaults"], r["default_cache_policy_not_persisted"], r["no_cache"]
            print(f"frames    {r['rows']:,} x {r['columns']} frame into a task: Prefect's defaults "
                  f"{1000 * d['seconds_per_call']:.0f} ms/call, default cache policy without persistence "
                  f"{1000 * h['seconds_per_call']:.0f} ms/call, ours (NO_CACHE, not persisted) "
                  f"{1000 * o['seconds_per_call']:.0f} ms/call; same object: {o['same_object']}", flush=True)
        if "fanout" in wanted:
            r = results["fanout"] = fanout(args.tenants, args.latency, args.fanout_rows, args.repeats, scratch)
            print(f"fan-out   {r['tenants']} tenants x {r['rows_per_tenant']:,} rows, {r['service_latency_seconds']} s "
                  f"service time: together {r['fanout_seconds']:.2f} s (median of "
                  f"{', '.join(f'{t:.2f}' for t in r['fanout_runs_seconds'])}), slowest alone "
                  f"{r['slowest_single_seconds']:.2f} s (median alone {r['median_single_seconds']:.2f} s): "
                  f"x{r['ratio']:.2f} of the slowest, x{r['ratio_to_median_single']:.2f} of the median "
                  f"({'met' if r['within_target'] else 'MISSED'} <= 1.3)", flush=True)
        if "quota" in wanted:
            r = results["quota"] = quota(emu, args.hunts, args.per_minute, scratch)
            print(f"quota     {r['hunts']} hunts at {r['per_minute']}/min: {r['seconds']:.1f} s, minimum "
                  f"{r['minimum_seconds']:.0f} s (x{r['ratio_to_minimum'] or 0:.3f}); {r['requests']} requests, "
                  f"{r['throttled']} answered 429 ({100 * r['throttled_share']:.1f} %); {r['failures']} failed: "
                  f"{'met' if r['within_target'] else 'MISSED'}", flush=True)
    results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(f"peak memory {results['peak_memory_mb']:.0f} MB; written {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
