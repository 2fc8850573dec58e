"""Advanced hunting (KQL) on Graph runHuntingQuery, or the legacy MDE / M365D APIs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pandas as pd
import requests

from . import clouds
from .errors import ConfigurationError, QueryError

log = logging.getLogger(__name__)

MAX_HUNTING_ROWS = 100_000

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
    ) -> pd.DataFrame:
        """Run an advanced hunting (KQL) query and return a DataFrame typed by the response schema.

        ``timespan`` (Graph only) limits the data searched: an ISO 8601 duration or interval
        (``"P7D"``, ``"2024-02-01T00:00:00Z/2024-02-02T00:00:00Z"``), a ``timedelta`` (ending now)
        or a ``(start, end)`` pair of datetimes. Without it the service searches 30 days.
        The service's ``Stats`` (legacy APIs) are in ``frame.attrs["stats"]``.
        """
        if not isinstance(query, str) or not query.strip():
            raise QueryError("The hunting query is empty. Pass KQL such as: DeviceProcessEvents | take 10")
        api = self.settings.hunting_api
        path, permission = clouds.HUNTING[api]
        body = {"Query": query}
        if timespan is not None:
            if api != clouds.GRAPH:
                raise ConfigurationError(
                    f"timespan is only supported by the Graph API, not {api!r}: filter in the query instead "
                    "(| where Timestamp > ago(7d)), or use hunting_api='graph'."
                )
            body["Timespan"] = format_timespan(timespan)
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
        if len(frame) >= MAX_HUNTING_ROWS:
            log.warning(
                "The hunting query returned %d rows, the service's maximum: the result is probably truncated.%s",
                len(frame), _TOO_BIG_HINT,
            )
        frame.attrs["stats"] = stats
        frame.attrs["api"] = api
        return frame


def _parse_hunting(response: requests.Response):
    from .frames import hunting_frame  # pyarrow loads on the first hunt, not on import

    try:
        return hunting_frame(response.content)
    except RecursionError:
        # JSON parsers recurse per nesting level; a value thousands of levels deep cannot be read
        # as objects. Asking again would get the same answer, so this is not a service fault.
        raise QueryError(
            "A value in the hunting results is nested too deeply to read (thousands of levels). Leave that column "
            "out (| project-away Column) or return it as text (| extend Column = tostring(Column)).",
            status=response.status_code,
        ) from None


def _is_size_limit(message: str) -> bool:
    text = message.lower()
    return "result size" in text or "exceeded the allowed" in text or "size limit" in text


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
        return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
    raise ConfigurationError(f"timespan must be an ISO 8601 string, a timedelta or a (start, end) pair, not {value!r}.")


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """An OData / Defender date-time literal: ``2024-02-01T08:00:00.123Z`` (UTC)."""
    text = utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"
