"""``DefenderClient``: one tenant's Defender APIs behind a small, notebook-friendly surface."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pandas as pd
import requests

from . import clouds
from .auth import TokenProvider
from .errors import ConfigurationError, QueryError
from .ratelimit import limiter_for
from .settings import TenantSettings
from .transport import RetryPolicy, Transport, make_session, read_body

log = logging.getLogger(__name__)

USER_AGENT = "defender-soar/0.1"
MAX_HUNTING_ROWS = 100_000

_TOO_BIG_HINT = (
    " Narrow the query: add a time filter (| where Timestamp > ago(1d)) or a shorter timespan, "
    "project only the columns you need, filter on a device or account, or summarize."
)


class DefenderClient:
    """A client for one Microsoft Defender tenant.

    Build it with :func:`connector.connect` (kwargs, connection string or msticpyconfig.yaml) or
    from :class:`TenantSettings`. It owns one HTTP session and shares MSAL's token cache and the
    tenant's rate limiter with every other client of the same tenant in the process. Use it as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, settings: TenantSettings, *, retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self._session = make_session(settings.ca_bundle, USER_AGENT)
        self._tokens = TokenProvider(settings, self._session)
        self._transport = Transport(
            self._session, settings.endpoints.api_root, self._tokens.get_token, timeout=settings.timeout, retry=retry
        )
        limits = settings.rate_limits
        tenant_key = (settings.cloud, settings.tenant_id.lower())
        self._hunting_limiter = limiter_for(
            (*tenant_key, "hunting"), [(limits.hunting_per_minute, 60.0), (limits.hunting_per_hour, 3600.0)]
        )
        self._api_limiter = limiter_for((*tenant_key, "api", settings.api), [(limits.api_per_minute, 60.0)])

    @property
    def api(self) -> str:
        """The hunting API in use: ``graph``, ``mde`` or ``m365d``."""
        return self.settings.api

    def __repr__(self) -> str:
        s = self.settings
        return f"DefenderClient(tenant_id={s.tenant_id!r}, client_id={s.client_id!r}, api={s.api!r}, cloud={s.cloud!r})"

    def __enter__(self) -> DefenderClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (tokens stay cached for other clients of the tenant)."""
        self._session.close()

    def get_token(self) -> str:
        """An access token for the configured API (cached; renewed before expiry)."""
        return self._tokens.get_token()

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
        path, permission = clouds.HUNTING[self.api]
        body = {"Query": query}
        if timespan is not None:
            if self.api != clouds.GRAPH:
                raise ConfigurationError(
                    f"timespan is only supported by the Graph API, not {self.api!r}: filter in the query instead "
                    "(| where Timestamp > ago(7d)), or use api='graph'."
                )
            body["Timespan"] = format_timespan(timespan)
        try:
            frame, stats = self._transport.request(
                "POST", path, json=body, operation="run hunting query", permission=permission,
                before_attempt=self._hunting_limiter.acquire, parse=_parse_hunting, stream=True, timeout=timeout,
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
        frame.attrs["api"] = self.api
        return frame


def _parse_hunting(response: requests.Response):
    from .frames import hunting_frame  # pyarrow loads on the first hunt, not on import

    return hunting_frame(read_body(response, "run hunting query"))


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
        start, end = (_utc(v) for v in value)
        if end <= start:
            raise ConfigurationError("timespan end must be after its start.")
        return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
    raise ConfigurationError(f"timespan must be an ISO 8601 string, a timedelta or a (start, end) pair, not {value!r}.")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = ["DefenderClient", "format_timespan"]
