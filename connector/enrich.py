"""Entity enrichment: device, user, file and IP context columns added to a hunting frame.

    >>> from connector.enrich import enrich_frame
    >>> df = client.run_hunting_query("DeviceProcessEvents | take 10000")
    >>> df = enrich_frame(client, df)            # DeviceRiskScore, UserDeviceCount, FileGlobalPrevalence, ...

Each API is called **once per unique entity**, not once per row: the frame's distinct values are
looked up (a few threads at a time, under the tenant's rate limiter in the client) and the answers
mapped back onto every row. An :class:`EnrichmentCache` remembers answers for one run, so enriching
several frames of the same investigation does not ask again. Plain Python: no Prefect here.

Entities the service does not know (404) leave their context cells empty. Other failures are
recorded in ``frame.attrs["enrichment"]`` and logged (``errors="warn"``, the default), or raised
after every lookup has finished (``errors="raise"``). A sign-in or permission failure stops the
other lookups of that kind: they would all fail the same way.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .errors import AuthenticationError, DefenderError, NotFoundError, PermissionDeniedError

log = logging.getLogger(__name__)

#: Lookups in flight at once per enrichment (the client's rate limiter paces them further).
DEFAULT_WORKERS = 4


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()
"""Pick the entity column from the frame (see :data:`DEFAULT_COLUMNS`)."""

#: Columns looked for, in order, when a kind's column is left to :data:`AUTO`.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "device": ("DeviceId", "DeviceName"),
    "user": ("AccountName", "InitiatingProcessAccountName"),
    "file": ("SHA256", "SHA1", "InitiatingProcessSHA256", "InitiatingProcessSHA1"),
    "ip": ("RemoteIP",),
}

#: Context columns added per kind: (column, field of the API answer, dtype).
CONTEXT_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "device": (
        ("DeviceDnsName", "computerDnsName", "string"),
        ("DeviceOsPlatform", "osPlatform", "string"),
        ("DeviceHealthStatus", "healthStatus", "string"),
        ("DeviceRiskScore", "riskScore", "string"),
        ("DeviceExposureLevel", "exposureLevel", "string"),
        ("DeviceValue", "deviceValue", "string"),
        ("DeviceRbacGroup", "rbacGroupName", "string"),
        ("DeviceTags", "machineTags", "object"),
        ("DeviceLastSeen", "lastSeen", "datetime"),
    ),
    "user": (
        ("UserDeviceCount", "deviceCount", "Int64"),
        ("UserDevices", "devices", "object"),
    ),
    "file": (
        ("FileGlobalPrevalence", "globalPrevalence", "Int64"),
        ("FileSigner", "signer", "string"),
        ("FileIsValidCertificate", "isValidCertificate", "boolean"),
        ("FileDetermination", "determinationType", "string"),
        ("FileThreatName", "determinationValue", "string"),
        ("FileGlobalFirstSeen", "globalFirstObserved", "datetime"),
    ),
    "ip": (
        ("IpOrgPrevalence", "organizationPrevalence", "Int64"),
        ("IpOrgFirstSeen", "orgFirstSeen", "datetime"),
        ("IpOrgLastSeen", "orgLastSeen", "datetime"),
    ),
}

KINDS = tuple(CONTEXT_COLUMNS)

# Built-in accounts that are not users the API knows (and would be looked up on every device).
_BUILTIN_ACCOUNTS = frozenset({"system", "local service", "network service", "localsystem", "root", "-", ""})
_HASH = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
_STOPS = (AuthenticationError, PermissionDeniedError)


@dataclass(frozen=True)
class _Failure:
    error: DefenderError


class EnrichmentCache:
    """Answers of entity lookups for one run, shared by every frame enriched with it. Thread-safe.

    Two threads asking for the same entity at once share one call. Failed lookups are remembered too
    (the connector already retried them). ``calls`` counts the API calls made through it, by kind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], Future] = {}
        self._stopped: dict[str, DefenderError] = {}
        self.calls: dict[str, int] = dict.fromkeys(KINDS, 0)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"EnrichmentCache({len(self._entries)} entities, calls={self.calls})"

    def _lookup(self, kind: str, key: str, fetch: Callable[[], dict | None], pool: ThreadPoolExecutor) -> Future:
        with self._lock:
            future = self._entries.get((kind, key))
            if future is None:
                future = self._entries[(kind, key)] = pool.submit(self._run, kind, fetch)
            return future

    def _run(self, kind: str, fetch: Callable[[], dict | None]) -> dict | None | _Failure:
        stopped = self._stopped.get(kind)
        if stopped is not None:
            return _Failure(stopped)
        with self._lock:
            self.calls[kind] += 1
        try:
            return fetch()
        except NotFoundError:
            return None
        except _STOPS as exc:
            self._stopped.setdefault(kind, exc)
            return _Failure(exc)
        except DefenderError as exc:
            return _Failure(exc)


# ---------------------------------------------------------------- keys and lookups

def _device_key(value: Any) -> str | None:
    text = str(value).strip()
    return text.lower() or None


def _user_key(value: Any) -> str | None:
    text = str(value).strip()
    if "\\" in text:
        text = text.rsplit("\\", 1)[1]  # CONTOSO\amelia -> amelia: the API takes the account name
    if "@" in text:
        text = text.split("@", 1)[0]
    text = text.lower()
    return None if text in _BUILTIN_ACCOUNTS else text


def _file_key(value: Any) -> str | None:
    text = str(value).strip()
    return text.lower() if _HASH.match(text) else None


def _ip_key(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        return None


_KEYS: dict[str, Callable[[Any], str | None]] = {
    "device": _device_key, "user": _user_key, "file": _file_key, "ip": _ip_key,
}


def _fetcher(client: Any, kind: str, key: str) -> Callable[[], dict | None]:
    if kind == "device":
        return lambda: client.get_device(key)
    if kind == "file":
        return lambda: client.get_file(key)
    if kind == "ip":
        return lambda: client.get_ip_stats(key)

    def user() -> dict:
        machines = list(client.list_user_devices(key))
        names = sorted({str(m.get("computerDnsName")) for m in machines if m.get("computerDnsName")})
        return {"deviceCount": len(machines), "devices": names}

    return user


# ---------------------------------------------------------------- the frame

def entity_columns(frame: pd.DataFrame, *, device: Any = AUTO, user: Any = AUTO, file: Any = AUTO,
                   ip: Any = AUTO) -> dict[str, str]:
    """Which column holds each kind of entity: the ones given, or the first of :data:`DEFAULT_COLUMNS`
    present for those left to ``AUTO``; ``None`` (or ``False``) leaves a kind out."""
    chosen: dict[str, str] = {}
    for kind, given in (("device", device), ("user", user), ("file", file), ("ip", ip)):
        if given is None or given is False:
            continue
        if given is AUTO:
            found = next((c for c in DEFAULT_COLUMNS[kind] if c in frame.columns), None)
            if found is not None:
                chosen[kind] = found
            continue
        if given not in frame.columns:
            raise KeyError(f"The frame has no column {given!r} to enrich as {kind}s; its columns: "
                           f"{', '.join(map(str, frame.columns[:30]))}.")
        chosen[kind] = given
    return chosen


def enrich_frame(
    client: Any,
    frame: pd.DataFrame,
    *,
    device: Any = AUTO,
    user: Any = AUTO,
    file: Any = AUTO,
    ip: Any = AUTO,
    cache: EnrichmentCache | None = None,
    max_workers: int = DEFAULT_WORKERS,
    errors: str = "warn",
) -> pd.DataFrame:
    """``frame`` with device, user, file and IP context columns added (see :data:`CONTEXT_COLUMNS`).

    ``device``, ``user``, ``file``, ``ip`` name the column to read each kind from (default: found by
    name, :data:`DEFAULT_COLUMNS`; ``None`` skips the kind). ``client`` is a
    :class:`~connector.DefenderClient` (``get_device``, ``list_user_devices``, ``get_file``,
    ``get_ip_stats``). Each distinct entity is looked up once, at most ``max_workers`` at a time;
    ``cache`` carries answers across calls of one run. ``errors``: ``"warn"`` records failed
    lookups in ``attrs["enrichment"]`` and logs them, ``"raise"`` raises the first after all
    lookups finished. The input frame is not changed; the result keeps its ``attrs``.
    """
    if errors not in ("warn", "raise"):
        raise ValueError("errors must be 'warn' or 'raise'")
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    columns = entity_columns(frame, device=device, user=user, file=file, ip=ip)
    cache = cache if cache is not None else EnrichmentCache()
    calls_before = dict(cache.calls)
    report: dict[str, Any] = {}
    pending: dict[str, dict[Any, tuple[str, Future]]] = {}
    with ThreadPoolExecutor(max_workers, thread_name_prefix="enrich") as pool:
        for kind, column in columns.items():
            to_key = _KEYS[kind]
            wanted: dict[Any, tuple[str, Future]] = {}
            for raw in _distinct(frame[column]):
                key = to_key(raw)
                if key is not None:
                    wanted[raw] = (key, cache._lookup(kind, key, _fetcher(client, kind, key), pool))
            pending[kind] = wanted
    # The pool has finished every lookup (shutdown waits): map the answers onto the rows.
    added: dict[str, pd.Series] = {}
    first_error: DefenderError | None = None
    for kind, wanted in pending.items():
        column = columns[kind]
        answers: dict[Any, dict | None] = {}
        failed: dict[str, str] = {}
        not_found: list[str] = []
        for raw, (key, future) in wanted.items():
            answer = future.result()
            if isinstance(answer, _Failure):
                failed.setdefault(key, f"{type(answer.error).__name__}: {answer.error}")
                first_error = first_error or answer.error
                answer = None
            elif answer is None:
                not_found.append(key)
            answers[raw] = answer
        for name, field, dtype in CONTEXT_COLUMNS[kind]:
            values = {raw: (answer or {}).get(field) for raw, answer in answers.items()}
            added[name] = _typed(frame[column].map(values) if values else pd.Series([None] * len(frame),
                                                                                     index=frame.index), dtype)
        report[kind] = {
            "column": column,
            "entities": len({key for key, _ in wanted.values()}),
            "calls": cache.calls[kind] - calls_before.get(kind, 0),
            "not_found": sorted(set(not_found)),
            "errors": failed,
        }
        if failed:
            log.warning("Enrichment of %d %s(s) from column %s failed: %s", len(failed), kind, column,
                        "; ".join(sorted(set(failed.values())))[:500])
    if errors == "raise" and first_error is not None:
        raise first_error
    out = frame.assign(**added) if added else frame.copy()
    out.attrs = {**frame.attrs, "enrichment": report}
    return out


def _distinct(series: pd.Series) -> Iterable[Any]:
    values = series.dropna()
    if values.empty:
        return []
    try:
        return pd.unique(values)
    except TypeError:  # unhashable cells (a Dynamic column): nothing to look up by
        return []


def _typed(series: pd.Series, dtype: str) -> pd.Series:
    if dtype == "datetime":
        return pd.to_datetime(series, utc=True, errors="coerce")
    if dtype == "object":
        series = series.astype(object)
        return series.where(series.notna(), None)
    if dtype == "Int64":
        return pd.to_numeric(series, errors="coerce").astype("Int64")
    return series.astype(dtype)


__all__ = ["AUTO", "CONTEXT_COLUMNS", "DEFAULT_COLUMNS", "EnrichmentCache", "KINDS", "entity_columns", "enrich_frame"]
