"""The ``hunt_pack`` flow: a YAML list of named hunting queries, run (on a schedule) over tenants, alerting on hits.

A pack file::

    name: persistence-daily
    description: New persistence on any device, daily.
    timespan: P1D                      # default for every query (Graph); each may set its own
    queries:
      - name: new-services
        query_name: M365DHunting.service_creation     # from the query library, with parameters
        params: {start: -1d}
      - name: encoded-powershell
        query: |                                       # or raw KQL
          DeviceProcessEvents
          | where FileName in~ ("powershell.exe", "pwsh.exe") and ProcessCommandLine has "-EncodedCommand"

Every query runs on every tenant, side by side. When any returns rows, ``alert`` sends one summary
(a Markdown artifact, the notification blocks in ``notify``) naming the queries, tenants and first
rows; with ``output_dir`` each hit is also written to Parquet. Run it on a schedule with
``python -m flows.hunt_pack PACK --tenant contoso --cron "0 * * * *"`` (a served deployment), or a
deployment of ``flows/hunt_pack.py:hunt_pack`` with a schedule.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from connector.errors import ConfigurationError
from connector.library import QueryLibrary

from .hunt import HuntFailedError, _report, _tenant_list, write_results
from .markdown import artifact_key, frame_markdown, markdown_table
from .tasks import alert, run_hunting_query, run_logger

#: Queries x tenants in flight at once (each tenant's own limiter paces its share).
PACK_WORKERS = 16
#: Rows of each hit shown in the alert.
ALERT_ROWS = 5
_QUERY_KEYS = {"name", "query", "query_name", "params", "timespan", "split_by", "description"}


@dataclass(frozen=True)
class PackQuery:
    """One entry of a pack: raw KQL or a library query with parameters."""

    name: str
    query: str | None = None
    query_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timespan: str | None = None
    split_by: str | None = None
    description: str = ""


@dataclass(frozen=True)
class HuntPack:
    """A named list of :class:`PackQuery`."""

    name: str
    queries: tuple[PackQuery, ...]
    description: str = ""


def load_pack(pack: str | Path | dict, *, library: QueryLibrary | None = None) -> HuntPack:
    """Read and check a pack: a YAML file path, YAML text, or the parsed mapping.

    Library queries are checked (the name exists, the parameters bind) before anything runs;
    every problem is a ConfigurationError that names the entry.
    """
    where = "the hunt pack"
    if isinstance(pack, dict):
        doc = pack
    else:
        text = str(pack)
        path = Path(text).expanduser() if "\n" not in text and len(text) < 4096 else None
        if path is not None and path.is_file():
            where = str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(f"Cannot read hunt pack {path}: {exc.strerror or exc}.") from None
        elif path is not None and "\n" not in text and not text.lstrip().startswith(("{", "queries")):
            raise ConfigurationError(f"Hunt pack file {text!r} does not exist.")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ConfigurationError(f"{where} is not valid YAML"
                                     + (f" (line {mark.line + 1})" if mark else "") + ".") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("queries"), list) or not doc["queries"]:
        raise ConfigurationError(f"{where} needs a 'queries' list (each with a name and a query or query_name).")
    default_timespan = doc.get("timespan")
    library = library or QueryLibrary()
    queries: list[PackQuery] = []
    for i, entry in enumerate(doc["queries"], 1):
        label = f"{where}, query #{i}"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{label} must be a mapping with a name and a query or query_name.")
        unknown = set(entry) - _QUERY_KEYS
        if unknown:
            raise ConfigurationError(f"{label} has unknown keys {', '.join(sorted(map(str, unknown)))}; "
                                     f"allowed: {', '.join(sorted(_QUERY_KEYS))}.")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"{label} has no name.")
        label = f"{where}, query {name!r}"
        if any(q.name == name for q in queries):
            raise ConfigurationError(f"{label} appears twice; names must be unique.")
        if ("query" in entry) == ("query_name" in entry):
            raise ConfigurationError(f"{label} needs either 'query' (KQL) or 'query_name' (library), not both.")
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigurationError(f"{label}: params must be a mapping.")
        if "query" in entry:
            if not isinstance(entry["query"], str) or not entry["query"].strip():
                raise ConfigurationError(f"{label}: query is empty.")
            if params:
                raise ConfigurationError(f"{label}: params are for library queries (query_name).")
        else:
            try:
                library.get(str(entry["query_name"])).render(**params)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{label}: {exc.message}") from None
        queries.append(PackQuery(
            name=name.strip(), query=entry.get("query"), query_name=entry.get("query_name"), params=dict(params),
            timespan=entry.get("timespan", default_timespan), split_by=entry.get("split_by"),
            description=str(entry.get("description") or ""),
        ))
    return HuntPack(name=str(doc.get("name") or "hunt-pack"), queries=tuple(queries),
                    description=str(doc.get("description") or ""))


@dataclass
class PackResult:
    """Rows per (query, tenant), the frames that had rows, and failures."""

    pack: str
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    hits: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    files: dict[tuple[str, str], str] = field(default_factory=dict)
    alerted: bool = False

    @property
    def ok(self) -> bool:
        """True when no query failed on any tenant."""
        return not self.failures


@flow(name="hunt-pack", task_runner=ThreadPoolTaskRunner(max_workers=PACK_WORKERS), persist_result=False)
def hunt_pack(
    pack: str,
    tenants: str | list[str],
    notify: list[str] | None = None,
    output_dir: str | None = None,
) -> PackResult:
    """Run every query of a hunt pack (a YAML file path or YAML text) on every tenant; alert when any returns rows.

    ``notify`` names Prefect notification blocks (``'custom-webhook/soc'``). With ``output_dir``
    each query that returned rows is written there as Parquet. A failed query is reported (run
    state "Completed with failures"), never dropped; the run fails when every one failed.
    """
    spec = load_pack(pack)
    names = _tenant_list(tenants)
    logger = run_logger()
    futures = {}
    for entry in spec.queries:
        for tenant in names:
            future = run_hunting_query.with_options(task_run_name=f"{artifact_key(entry.name)}-{tenant}").submit(
                tenant, entry.query, query_name=entry.query_name, params=entry.params or None,
                timespan=entry.timespan, split_by=entry.split_by)
            futures[future] = (entry.name, tenant)
    result = PackResult(pack=spec.name)
    started = time.perf_counter()
    for future in as_completed(list(futures)):
        key = futures[future]
        try:
            frame = future.result()
        except Exception as exc:  # noqa: BLE001 - reported per query and tenant
            result.failures[key] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            logger.error("%s on %s failed: %s", *key, result.failures[key])
            _report("tenant-failed", tenant=key[1], query=key[0], error=result.failures[key])
            continue
        result.rows[key] = len(frame)
        if len(frame):
            result.hits[key] = frame
        _report("tenant-done", tenant=key[1], query=key[0], rows=len(frame),
                seconds=round(time.perf_counter() - started, 3))
    order = [(e.name, t) for e in spec.queries for t in names]
    if output_dir:
        for key in order:
            if key in result.hits:
                path = Path(output_dir) / f"{artifact_key(spec.name, key[0], key[1])}.parquet"
                result.files[key] = str(write_results(result.hits[key], path))
    create_table_artifact(
        key=artifact_key("hunt-pack", spec.name),
        table=[{"query": q, "tenant": t, "rows": result.rows.get((q, t), ""),
                "outcome": result.failures.get((q, t), "ok"), "file": result.files.get((q, t), "")} for q, t in order],
        description=f"Hunt pack **{spec.name}**: {len(spec.queries)} queries x {len(names)} tenant(s); "
                    f"{len(result.hits)} returned rows, {len(result.failures)} failed.",
    )
    if len(result.failures) == len(order):
        raise HuntFailedError("Every query of the pack failed: "
                              + "; ".join(f"{q} on {t}: {e}" for (q, t), e in result.failures.items())[:4000])
    if result.hits:
        summary = [f"Hunt pack **{spec.name}**: {len(result.hits)} of {len(order)} query runs returned rows.", "",
                   markdown_table(["query", "tenant", "rows"], [(q, t, result.rows[(q, t)]) for q, t in order
                                                                  if (q, t) in result.hits])]
        for key in order:
            if key in result.hits:
                frame = result.hits[key]
                summary += ["", f"### {key[0]} on {key[1]}", "",
                            frame_markdown(frame, columns=_preview_columns(frame), max_rows=ALERT_ROWS)]
        if result.failures:
            summary += ["", "Failed: " + "; ".join(f"{q} on {t}: {e}" for (q, t), e in result.failures.items())]
        alert(f"Hunt pack {spec.name}: {len(result.hits)} hit(s)", "\n".join(summary), notify=notify,
              artifact=artifact_key("hunt-pack", spec.name, "alert"))
        result.alerted = True
    else:
        logger.info("Hunt pack %s: no query returned rows.", spec.name)
    if result.failures:
        message = f"{len(result.failures)} of {len(order)} query runs failed: " + "; ".join(
            f"{q} on {t}: {e}" for (q, t), e in result.failures.items())
        return Completed(name="Completed with failures", message=message[:2000], data=result)
    return result


_PREFERRED = ("TenantName", "Timestamp", "DeviceName", "AccountName", "FileName", "ProcessCommandLine", "RemoteIP",
              "RemoteUrl", "ActionType")


def _preview_columns(frame: pd.DataFrame) -> list[str]:
    preferred = [c for c in _PREFERRED if c in frame.columns]
    return preferred if len(preferred) >= 3 else list(frame.columns[:8])


def main(argv: list[str] | None = None) -> int:
    """Serve ``hunt_pack`` on a schedule: ``python -m flows.hunt_pack PACK --tenant T [--cron ... | --interval S]``."""
    parser = argparse.ArgumentParser(prog="python -m flows.hunt_pack", description=main.__doc__)
    parser.add_argument("pack", help="YAML file of named queries")
    parser.add_argument("--tenant", action="append", required=True, help="tenant block name (repeat for more)")
    parser.add_argument("--notify", action="append", help="notification block, '<type-slug>/<name>' (repeatable)")
    parser.add_argument("--output-dir", help="write each hit as Parquet here")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="cron schedule, e.g. '0 * * * *'")
    when.add_argument("--interval", type=float, help="seconds between runs")
    parser.add_argument("--name", help="deployment name (default: the pack's name)")
    args = parser.parse_args(argv)
    try:
        spec = load_pack(args.pack)  # fail now, not at the first scheduled run
    except ConfigurationError as exc:
        print(f"ConfigurationError: {exc}", file=sys.stderr)
        return 1
    pack_path = str(Path(args.pack).expanduser().resolve())
    hunt_pack.serve(
        name=args.name or artifact_key(spec.name), cron=args.cron, interval=args.interval,
        parameters={"pack": pack_path, "tenants": args.tenant, "notify": args.notify, "output_dir": args.output_dir},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
