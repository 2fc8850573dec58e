"""Advanced hunting (KQL) on Graph runHuntingQuery, or the legacy MDE / M365D APIs."""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pandas as pd
import requests

from . import clouds
from .errors import ConfigurationError, QueryError

log = logging.getLogger(__name__)

MAX_HUNTING_ROWS = 100_000
#: Graph searches 30 days when no Timespan is given.
DEFAULT_WINDOW = timedelta(days=30)
#: A window is not split below this, nor more than MAX_SPLIT_DEPTH times: a result that halving
#: does not shrink (``| take 200000``) fails after a few tries instead of spending the tenant's quota.
MIN_WINDOW = timedelta(minutes=1)
MAX_SPLIT_DEPTH = 8
#: Sub-queries of one split hunt in flight at once (they queue on the tenant's hunting limiter too).
SPLIT_WORKERS = 4

_TOO_BIG_HINT = (
    " Narrow the query: add a time filter (| where Timestamp > ago(1d)) or a shorter timespan, "
    "project only the columns you need, filter on a device or account, or summarize."
)


class HuntingOperations:
    """``run_hunting_query``: mixed into :class:`~connector.DefenderClient`."""

    def run_hunting_query(
        self,
        query: str,
        *,
        timespan: str | timedelta | tuple[datetime, datetime] | None = None,
        timeout: float | None = None,
        split_by: str | timedelta | None = None,
        auto_split: bool = True,
    ) -> pd.DataFrame:
        """Run an advanced hunting (KQL) query and return a DataFrame typed by the response schema.

        ``timespan`` (Graph only) limits the data searched: an ISO 8601 duration or interval
        (``"P7D"``, ``"2024-02-01T00:00:00Z/2024-02-02T00:00:00Z"``), a ``timedelta`` (ending now)
        or a ``(start, end)`` pair of datetimes. Without it the service searches 30 days.
        The service's ``Stats`` (legacy APIs) are in ``frame.attrs["stats"]``.

        **Time-split hunting** (Graph): ``split_by="1h"`` (or ``"30m"``, ``"1d"``, a ``timedelta``)
        runs one query per window of the timespan, through the tenant's limiter, and joins the
        results in time order, without the duplicates that rows on a window's edge would give.
        With ``auto_split`` (the default) a window whose result is over the service's row or size
        limit is halved until each part fits. ``frame.attrs["windows"]`` lists every window run
        (start, end, rows) and ``frame.attrs["split_windows"]`` those that had to be split.
        """
        if not isinstance(query, str) or not query.strip():
            raise QueryError("The hunting query is empty. Pass KQL such as: DeviceProcessEvents | take 10")
        api = self.settings.hunting_api
        if timespan is not None and api != clouds.GRAPH:
            raise ConfigurationError(
                f"timespan is only supported by the Graph API, not {api!r}: filter in the query instead "
                "(| where Timestamp > ago(7d)), or use hunting_api='graph'."
            )
        if split_by is not None:
            if api != clouds.GRAPH:
                raise ConfigurationError(
                    f"split_by needs the Graph API (it sets each window with Timespan); the {api!r} API has no such "
                    "setting, and rewriting your KQL is not safe. Use hunting_api='graph', or split in the query."
                )
            return self._split_hunt(query, timespan, parse_step(split_by), timeout)
        try:
            return self._hunt_once(query, format_timespan(timespan) if timespan is not None else None, timeout)
        except QueryError as exc:
            if not (auto_split and api == clouds.GRAPH and _is_size_limit(exc.message)):
                raise
            log.info("The result is over the service's limits; splitting the time window.")
            start, end = resolve_window(timespan, datetime.now(UTC))
            return self._split_hunt(query, timespan, (end - start) / 2, timeout, (f"{iso(start)}/{iso(end)}",))

    def _split_hunt(self, query: str, timespan, step: timedelta | None, timeout: float | None,
                    split: tuple[str, ...] = ()) -> pd.DataFrame:
        start, end = resolve_window(timespan, datetime.now(UTC))
        failed = threading.Event()  # one window failing for good stops the others sending more
        windows = [(*w, timeout, split, failed) for w in _windows(start, end, step or (end - start))]
        with ThreadPoolExecutor(min(SPLIT_WORKERS, len(windows))) as pool:
            parts = [p for group in pool.map(lambda w: self._hunt_window(query, *w), windows) for p in group]
        frame = _join(parts)
        frame.attrs["windows"] = [{"start": iso(s), "end": iso(e), "rows": len(f)} for s, e, f, _ in parts]
        frame.attrs["split_windows"] = sorted({w for *_, split in parts for w in split})
        frame.attrs["api"] = clouds.GRAPH
        frame.attrs["stats"] = None
        return frame

    def _hunt_window(self, query: str, start: datetime, end: datetime, timeout: float | None,
                     split: tuple[str, ...], failed: threading.Event,
                     ) -> list[tuple[datetime, datetime, pd.DataFrame, tuple[str, ...]]]:
        """One window's rows, halving the window while the service says its result is too big."""
        if failed.is_set():
            return []  # another window failed: the hunt is lost anyway, its error is what the caller sees
        try:
            frame = self._hunt_once(query, format_timespan((start, end)), timeout, warn=False)
            if len(frame) < MAX_HUNTING_ROWS:
                return [(start, end, frame, split)]
            too_big = f"returned {len(frame):,} rows, the service's maximum"
        except QueryError as exc:
            if not _is_size_limit(exc.message):
                failed.set()
                raise
            too_big = f"was refused: {exc.message.split(_TOO_BIG_HINT)[0]}"
        except BaseException:
            failed.set()
            raise
        if end - start <= 2 * MIN_WINDOW or len(split) >= MAX_SPLIT_DEPTH:
            failed.set()
            raise QueryError(f"Split {len(split)} times, the window {iso(start)}/{iso(end)} still {too_big}."
                             + _TOO_BIG_HINT)
        middle = start + (end - start) / 2
        here = (*split, f"{iso(start)}/{iso(end)}")
        log.info("Window %s/%s is %s; splitting it in two.", iso(start), iso(end), too_big)
        return (self._hunt_window(query, start, middle, timeout, here, failed)
                + self._hunt_window(query, middle, end, timeout, here, failed))

    def _hunt_once(self, query: str, timespan: str | None, timeout: float | None, warn: bool = True) -> pd.DataFrame:
        api = self.settings.hunting_api
        path, permission = clouds.HUNTING[api]
        body = {"Query": query}
        if timespan is not None:
            body["Timespan"] = timespan
        resource = self._resource(api)
        try:
            frame, stats = resource.transport.request(
                "POST", path, json=body, operation="run hunting query", permission=permission,
                idempotent=True,  # a hunt only reads: safe to send again after a timeout
                limiter=self._hunting_limiter(), parse=_parse_hunting, bad_request=QueryError, timeout=timeout,
            )
        except QueryError as exc:
            if _is_size_limit(exc.message):
                exc.message += _TOO_BIG_HINT
                exc.args = (exc.message,)
            raise
        if warn and len(frame) >= MAX_HUNTING_ROWS:
            log.warning(
                "The hunting query returned %d rows, the service's maximum: the result is probably truncated.%s",
                len(frame), _TOO_BIG_HINT,
            )
        frame.attrs["stats"] = stats
        frame.attrs["api"] = api
        return frame


def _parse_hunting(response: requests.Response):
    from .frames import hunting_frame  # pyarrow loads on the first hunt, not on import

    return hunting_frame(response.content)


def _is_size_limit(message: str) -> bool:
    text = message.lower()
    return ("result size" in text or "exceeded the allowed" in text or "size limit" in text
            or "row limit" in text or "too many rows" in text)


def _windows(start: datetime, end: datetime, step: timedelta):
    while start < end:
        yield start, min(start + step, end)
        start += step


def _join(parts: list[tuple[datetime, datetime, pd.DataFrame, tuple[str, ...]]]) -> pd.DataFrame:
    """The windows' frames in time order; a row on the edge of two windows is kept once."""
    frames = [f for _, _, f, _ in parts]
    column = _time_column(frames[0])
    if column is not None:
        for i in range(1, len(parts)):
            edge = pd.Timestamp(parts[i][0])
            current, before = frames[i], frames[i - 1]
            on_edge = current[column] == edge
            if on_edge.any() and (before[column] == edge).any():
                seen = {_signature(row) for row in before[before[column] == edge].itertuples(index=False)}
                keep = [not (edge_row and _signature(row) in seen)
                        for edge_row, row in zip(on_edge.fillna(False), current.itertuples(index=False), strict=True)]
                frames[i] = current[keep]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if column is not None:
        frame = frame.sort_values(column, kind="stable", ignore_index=True)
    return frame


def _time_column(frame: pd.DataFrame) -> str | None:
    for name in ("Timestamp", "TimeGenerated"):
        if name in frame.columns and str(frame[name].dtype).startswith("datetime64"):
            return name
    return next((c for c in frame.columns if str(frame[c].dtype).startswith("datetime64")), None)


def _signature(row) -> str:
    return repr(tuple(row))


_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|hour|hours|d|day|days)\s*$", re.IGNORECASE)
_STEP_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "hr": "hours",
               "hour": "hours", "hours": "hours", "d": "days", "day": "days", "days": "days"}


def parse_step(value: str | timedelta) -> timedelta:
    """A window length: ``"1h"``, ``"30m"``, ``"1d"``, ``"90s"`` or a ``timedelta``."""
    if isinstance(value, timedelta):
        step = value
    else:
        match = _STEP.match(str(value))
        if match is None:
            raise ConfigurationError(f"split_by must be a length such as '1h', '30m' or '1d', not {str(value)[:40]!r}.")
        step = timedelta(**{_STEP_UNITS[match.group(2).lower()]: float(match.group(1))})
    if step < MIN_WINDOW:
        raise ConfigurationError(f"split_by must be at least {MIN_WINDOW.total_seconds():g} second.")
    return step


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)


def resolve_window(timespan, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) in UTC of a timespan as :meth:`run_hunting_query` takes it (None: the last 30 days)."""
    if timespan is None:
        return now - DEFAULT_WINDOW, now
    if isinstance(timespan, timedelta):
        return now - timespan, now
    if isinstance(timespan, tuple):
        format_timespan(timespan)  # validates
        return utc(timespan[0]), utc(timespan[1])
    text = format_timespan(timespan)
    parts = text.split("/")
    if len(parts) == 1:
        duration = _duration(parts[0])
        return (now - duration, now) if duration is not None else (_instant(parts[0]), now)
    if len(parts) == 2:
        first, second = _duration(parts[0]), _duration(parts[1])
        if first is not None:
            end = _instant(parts[1])
            return end - first, end
        start = _instant(parts[0])
        return (start, start + second) if second is not None else (start, _instant(parts[1]))
    raise ConfigurationError(f"timespan {text[:60]!r} is not an ISO 8601 duration or interval.")


def _duration(text: str) -> timedelta | None:
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _instant(text: str) -> datetime:
    try:
        return utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise ConfigurationError(f"{text[:40]!r} in timespan is not an ISO 8601 date-time or duration.") from None


def format_timespan(value: str | timedelta | tuple[datetime, datetime]) -> str:
    """Render a timespan as the ISO 8601 string Graph's runHuntingQuery takes."""
    if isinstance(value, str):
        if not value.strip():
            raise ConfigurationError("timespan is empty; use e.g. 'P7D' or 'start/end' in ISO 8601.")
        return value.strip()
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ConfigurationError(f"timespan must be positive, not {value}.")
        seconds = int(value.total_seconds())
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        time_part = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v)
        return f"P{days}D" + (f"T{time_part}" if time_part else "") if days else f"PT{time_part or '0S'}"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, datetime) for v in value):
        start, end = (utc(v) for v in value)
        if end <= start:
            raise ConfigurationError("timespan end must be after its start.")
        return f"{iso(start)}/{iso(end)}"
    raise ConfigurationError(f"timespan must be an ISO 8601 string, a timedelta or a (start, end) pair, not {value!r}.")


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """An OData / Defender date-time literal: ``2024-02-01T08:00:00.123Z`` (UTC)."""
    text = utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"
