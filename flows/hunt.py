"""The ``hunt`` flow: one query over one or many tenants in parallel, the full result in a file.

    from flows.hunt import hunt
    result = hunt(["contoso", "fabrikam"], "DeviceProcessEvents | where FileName =~ 'rundll32.exe'", timespan="P7D")
    result.frame            # every tenant's rows, with a TenantName column
    result.path             # hunt-results/hunt-<time>.parquet (CSV with output_format="csv")
    result.failures         # {"fabrikam": "AuthenticationError: ..."}: a failed tenant is reported, never dropped

Each tenant is a ``run_hunting_query`` task; the tasks run side by side in threads (the connector
paces each tenant under its own quota). The flow writes the joined frame to Parquet and adds a
table artifact with the first rows, the file's path and each tenant's outcome. When some tenants
fail the run ends ``Completed`` named "Completed with failures" (the others' rows are kept and
written); when every tenant fails it fails.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from connector.errors import ConfigurationError

from .markdown import artifact_key, markdown_table, table_records
from .tasks import run_hunting_query, run_logger

#: Tenants hunted at once. Hunts wait on the service, not the CPU; each tenant has its own quota.
HUNT_WORKERS = 32
#: Where results go when no output path is given (relative to the working directory).
RESULTS_DIR = Path("hunt-results")
FORMATS = ("parquet", "csv")


class HuntFailedError(RuntimeError):
    """Every tenant of a hunt failed; the message names each one and why."""


@dataclass
class HuntResult:
    """What a ``hunt`` run produced: the joined frame, the file written, and each tenant's outcome."""

    frame: pd.DataFrame
    path: str | None
    rows: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no tenant failed."""
        return not self.failures

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (no rows)."""
        return {"path": self.path, "rows": len(self.frame), "tenants": self.rows, "failures": self.failures}


# ---------------------------------------------------------------- progress (for the CLI)

_progress: Callable[[str, dict[str, Any]], None] | None = None
_progress_lock = threading.Lock()


@contextmanager
def progress_to(callback: Callable[[str, dict[str, Any]], None]):
    """Call ``callback(event, info)`` while a hunt in this process runs: ``tenant-done``, ``tenant-failed``, ``written``."""
    global _progress
    with _progress_lock:
        previous, _progress = _progress, callback
    try:
        yield
    finally:
        with _progress_lock:
            _progress = previous


def _report(event: str, **info: Any) -> None:
    callback = _progress
    if callback is not None:
        try:
            callback(event, info)
        except Exception:  # noqa: BLE001 - a broken progress display must not break the hunt
            run_logger().debug("progress callback failed", exc_info=True)


# ---------------------------------------------------------------- files

def file_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as files can hold it: Dynamic cells (dicts, lists, mixed values) become JSON text."""
    out = frame
    for column in frame.columns:
        if frame[column].dtype == object:
            if out is frame:
                out = frame.copy(deep=False)
            out[column] = pd.array(
                [None if v is None or v is pd.NA else json.dumps(v, ensure_ascii=False, default=str)
                 for v in frame[column]], dtype="string")
    return out


def write_results(frame: pd.DataFrame, path: str | Path, output_format: str = "parquet") -> Path:
    """Write ``frame`` to ``path`` as Parquet or CSV (Dynamic columns as JSON text); returns the absolute path."""
    if output_format not in FORMATS:
        raise ConfigurationError(f"output_format must be one of {', '.join(FORMATS)}, not {output_format!r}.")
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    data = file_ready(frame)
    if output_format == "parquet":
        data.to_parquet(target, index=False)
    else:
        data.to_csv(target, index=False)
    return target


def default_output(output_format: str = "parquet") -> Path:
    """``hunt-results/hunt-<UTC time>-<run name>.<ext>`` under the working directory."""
    from prefect.runtime import flow_run

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = artifact_key(flow_run.name) if flow_run.name else ""
    return RESULTS_DIR / f"hunt-{stamp}{'-' + name if name else ''}.{'parquet' if output_format == 'parquet' else 'csv'}"


# ---------------------------------------------------------------- the flow

def _tenant_list(tenants: str | Sequence[str]) -> list[str]:
    names = [tenants] if isinstance(tenants, str) else list(tenants)
    names = list(dict.fromkeys(n.strip() for n in names if isinstance(n, str) and n.strip()))
    if not names:
        raise ConfigurationError("Give at least one tenant block name.")
    return names


def _join(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if len(frames) == 1:
        return frames[0]
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs = {}  # per-tenant attrs (stats, windows) do not describe the joined frame
    return frame


@flow(name="hunt", task_runner=ThreadPoolTaskRunner(max_workers=HUNT_WORKERS), persist_result=False)
def hunt(
    tenants: str | list[str],
    query: str | None = None,
    query_name: str | None = None,
    params: dict[str, Any] | None = None,
    timespan: str | None = None,
    split_by: str | None = None,
    output: str | None = None,
    output_format: str = "parquet",
    preview_rows: int = 20,
) -> HuntResult:
    """Run one hunting query (raw KQL, or ``query_name`` from the library with ``params``) on every tenant.

    Tenants run in parallel. The joined frame (with ``TenantName``) is written to ``output``
    (default ``hunt-results/hunt-<time>.parquet``; ``output_format="csv"`` for CSV); a table
    artifact ``hunt-results`` shows the first ``preview_rows`` rows, the path and each tenant's
    outcome. A tenant that fails is reported in ``HuntResult.failures``, in the artifact and in
    the run's state ("Completed with failures"); if all fail the run fails.
    """
    names = _tenant_list(tenants)
    if output_format not in FORMATS:
        raise ConfigurationError(f"output_format must be one of {', '.join(FORMATS)}, not {output_format!r}.")
    logger = run_logger()
    started = time.perf_counter()
    futures = {
        run_hunting_query.submit(name, query, query_name=query_name, params=params, timespan=timespan,
                                 split_by=split_by): name
        for name in names
    }
    frames: dict[str, pd.DataFrame] = {}
    failures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for future in as_completed(list(futures)):
        name = futures[future]
        seconds[name] = round(time.perf_counter() - started, 3)
        try:
            frames[name] = future.result()
        except Exception as exc:  # noqa: BLE001 - reported per tenant below, never dropped
            failures[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            logger.error("Tenant %s failed: %s", name, failures[name])
            _report("tenant-failed", tenant=name, error=failures[name], seconds=seconds[name])
        else:
            _report("tenant-done", tenant=name, rows=len(frames[name]), seconds=seconds[name])
    if not frames:
        raise HuntFailedError("Every tenant failed: " + "; ".join(f"{n}: {failures[n]}" for n in names))
    ordered = [frames[n] for n in names if n in frames]
    frame = _join(ordered)
    target = write_results(frame, output or default_output(output_format), output_format)
    _report("written", path=str(target), rows=len(frame))
    rows = {n: len(frames[n]) for n in names if n in frames}
    result = HuntResult(frame=frame, path=str(target), rows=rows, failures=failures, seconds=seconds)

    outcome = markdown_table(
        ["tenant", "outcome", "rows"],
        [(n, "ok" if n in frames else failures[n], rows.get(n, "")) for n in names],
    )
    what = f"library query `{query_name}`" if query_name else "KQL query"
    create_table_artifact(
        key="hunt-results",
        table=table_records(frame, preview_rows),
        description=(f"**{len(frame):,} rows** from {len(rows)} of {len(names)} tenant(s), {what}. "
                     f"First {min(preview_rows, len(frame))} rows below; the full result is in "
                     f"`{target}` ({output_format}).\n\n{outcome}"),
    )
    logger.info("%s rows from %d tenant(s) written to %s.", f"{len(frame):,}", len(rows), target)
    if failures:
        message = f"{len(failures)} of {len(names)} tenant(s) failed: " + "; ".join(
            f"{n}: {e}" for n, e in failures.items())
        return Completed(name="Completed with failures", message=message[:2000], data=result)
    return result


__all__ = ["FORMATS", "HUNT_WORKERS", "HuntFailedError", "HuntResult", "default_output", "file_ready", "hunt",
           "progress_to", "write_results"]
