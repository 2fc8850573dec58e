"""The three advanced-hunting routes and their three response shapes (defender-api.md §2a-2c, 2e).

- Graph ``POST /v1.0/security/runHuntingQuery``: ``{"@odata.context", "schema":[{name,type}], "results"}``,
  optional ``Timespan`` (ISO 8601 duration, interval, or start datetime).
- MDE ``POST /api/advancedqueries/run``: ``{"Schema":[{Name,Type}], "Results", "Stats"}``.
- XDR ``POST /api/advancedhunting/run``: ``{"Stats", "Schema", "Results"}``.

Results are cached per (query shape, window) as ready-made JSON bytes; the envelope is added per request
and written as separate parts, so a 300 MB body is never copied.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import zlib
from dataclasses import dataclass

from . import kql
from .context import Context
from .envelopes import api_error
from .messages import GRAPH_JSON_TYPE, Response, dumps

TICKS = 10_000_000
RETENTION = dt.timedelta(days=30)


@dataclass(frozen=True)
class HuntResult:
    """A built result: schema and the ``Results`` JSON array."""

    schema: tuple[tuple[str, str], ...]
    results_json: bytes
    row_count: int


def result_size(result: HuntResult) -> int:
    """Bytes a cached result holds (for the cache's budget)."""
    return len(result.results_json)


# ---------------------------------------------------------------- time windows

_DURATION = re.compile(
    r"P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def _duration(text: str) -> dt.timedelta | None:
    m = _DURATION.fullmatch(text.strip())
    if not m:
        return None
    years, months, weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return dt.timedelta(days=years * 365 + months * 30 + weeks * 7 + days, hours=hours, minutes=minutes,
                        seconds=seconds)


def _datetime(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse_timespan(text: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """A Graph ``Timespan`` -> (start, end), or None if it is not one of the documented ISO 8601 forms."""
    if "/" in text:
        left, _, right = text.partition("/")
        d_left, d_right = _duration(left), _duration(right)
        t_left, t_right = _datetime(left), _datetime(right)
        if t_left and t_right:
            start, end = t_left, t_right
        elif d_left and t_right:
            start, end = t_right - d_left, t_right
        elif t_left and d_right:
            start, end = t_left, t_left + d_right
        else:
            return None
    elif (d := _duration(text)) is not None:
        start, end = now - d, now
    elif (t := _datetime(text)) is not None:
        start, end = t, now
    else:
        return None
    return (start, end) if start < end else None


def _ticks(when: dt.datetime) -> int:
    return int(when.timestamp()) * TICKS


def default_window(now: dt.datetime) -> tuple[int, int]:
    """The last 30 days, anchored to the hour so the same query hits the cache for an hour."""
    anchor = now.replace(minute=0, second=0, microsecond=0)
    return _ticks(anchor - RETENTION + dt.timedelta(hours=1)), _ticks(anchor)


def clamp_window(start: dt.datetime, end: dt.datetime, now: dt.datetime) -> tuple[int, int]:
    """An explicit window, limited to the 30 days of retention and to now, to the minute."""
    start = max(start, now - RETENTION + dt.timedelta(minutes=1))
    end = min(end, now)
    start_ticks = -(-_ticks(start) // (60 * TICKS)) * 60 * TICKS  # ceil to the minute
    end_ticks = _ticks(end) // (60 * TICKS) * 60 * TICKS          # floor to the minute
    return (start_ticks, end_ticks) if start_ticks < end_ticks else (0, 0)


# ---------------------------------------------------------------- building and shaping

def _build(plan: kql.Plan, window: tuple[int, int]) -> HuntResult:
    frame = kql.execute(plan, *window)
    return HuntResult(tuple((c.name, c.type) for c in frame.columns), frame.to_json_array(), len(frame.rows))


def _stats(result: HuntResult, seed: int) -> bytes:
    """A ``Stats`` object shaped like the XDR sample (note the key ``"total cpu"`` with a space)."""
    rng = random.Random(seed)
    cpu = 0.01 + result.row_count / 50_000 + rng.random() / 10
    hits = rng.randrange(1_000, 900_000)
    misses = rng.randrange(0, 5_000)
    return dumps({
        "ExecutionTime": round(0.05 + cpu / 8, 6),
        "resource_usage": {
            "cache": {"memory": {"hits": hits, "misses": misses, "total": hits + misses},
                      "disk": {"hits": misses // 5, "misses": misses // 20, "total": misses // 5 + misses // 20}},
            "cpu": {"user": _timespan(cpu), "kernel": _timespan(cpu / 60), "total cpu": _timespan(cpu * 61 / 60)},
            "memory": {"peak_per_node": 50_000_000 + len(result.results_json)},
        },
        "dataset_statistics": [{"table_row_count": result.row_count, "table_size": len(result.results_json)}],
    })


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{int((seconds - whole) * 10**7):07d}"


def _shape(api: str, result: HuntResult, base_url: str, seed: int) -> Response:
    if api == "graph":
        head = (b'{"@odata.context":' + dumps(f"{base_url}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults")
                + b',"schema":' + dumps([{"name": n, "type": t} for n, t in result.schema]) + b',"results":')
        return Response(200, [head, result.results_json, b"}"], content_type=GRAPH_JSON_TYPE)
    schema = dumps([{"Name": n, "Type": t} for n, t in result.schema])
    if api == "mde":
        return Response(200, [b'{"Schema":' + schema + b',"Results":', result.results_json,
                              b',"Stats":' + _stats(result, seed) + b"}"])
    return Response(200, [b'{"Stats":' + _stats(result, seed) + b',"Schema":' + schema + b',"Results":',
                          result.results_json, b"}"])


def _bad_request(ctx: Context, message: str, mde_code: str = "BadRequest") -> Response:
    return api_error(ctx.family, 400, message, ctx.req, code="BadRequest" if ctx.family == "graph" else mde_code)


def run(ctx: Context) -> Response:
    """Handle a hunting request for the route's family (graph | mde | xdr)."""
    try:
        body = ctx.req.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _bad_request(ctx, "Request body is incorrect", "InvalidRequestBody")
    query = body.get("Query")
    if query is None or (isinstance(query, str) and not query.strip()):
        return _bad_request(ctx, "Query is a required parameter and cannot be empty. Note that body parameters "
                                 "are case-sensitive ('Query').", "MissingRequiredParameter")
    if not isinstance(query, str):
        return _bad_request(ctx, "Request body is incorrect: 'Query' must be a string.", "InvalidRequestBody")

    now = dt.datetime.now(dt.UTC)
    timespan = body.get("Timespan") if ctx.family == "graph" else None
    if timespan is not None:
        span = parse_timespan(timespan, now) if isinstance(timespan, str) else None
        if span is None:
            return _bad_request(ctx, f"Invalid Timespan '{timespan}'. Use an ISO 8601 duration (P30D), an "
                                     "interval (start/end, duration/end, start/duration) or a start datetime.")
        window = clamp_window(*span, now)
    else:
        window = default_window(now)

    try:
        plan = kql.parse(query)
    except kql.KqlError as err:
        return _bad_request(ctx, str(err))
    key = (plan.cache_key, window)
    result = ctx.state.results.get_or_build(key, lambda: _build(plan, window))
    return _shape(ctx.family, result, ctx.req.base_url, zlib.crc32(repr(key).encode()))
