"""Time-split hunting at the HTTP boundary: a service that honours Timespan exactly, counts rows on a
window's edges in both windows, and refuses results over 100,000 rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from connector import DefenderClient, resolve_settings
from connector.errors import ConfigurationError
from connector.transport import RetryPolicy

ROOT = "https://graph.test.example"
LOGIN = "https://login.microsoftonline.com/contoso.onmicrosoft.com"
START = datetime(2026, 11, 1, tzinfo=UTC)
STEP = timedelta(milliseconds=360)  # 250,000 rows over 25 hours


class Service:
    """Rows ``Id`` 0..n-1 at START + i*STEP; a Timespan ``a/b`` selects a <= Timestamp <= b."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.timespans: list[str] = []

    def __call__(self, request):
        body = json.loads(request.body)
        self.timespans.append(body.get("Timespan"))
        start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in body["Timespan"].split("/"))
        first = max(0, -(-(start - START) // STEP))
        last = min(self.rows - 1, (end - START) // STEP)
        count = max(0, last - first + 1)
        if count > 100_000:
            error = {"error": {"code": "BadRequest", "message": "Query execution has exceeded the allowed result size. "
                               "Optimize your query by limiting the number of results and try again"}}
            return 400, {}, json.dumps(error)
        rows = ",".join(
            '{"Timestamp":"' + (START + i * STEP).strftime("%Y-%m-%dT%H:%M:%S.%f") + '0Z","Id":' + str(i) + "}"
            for i in range(first, first + count)
        )
        return 200, {}, ('{"schema":[{"name":"Timestamp","type":"DateTime"},{"name":"Id","type":"Int64"}],'
                         '"results":[' + rows + "]}")


@pytest.fixture
def service():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{LOGIN}/v2.0/.well-known/openid-configuration", json={
            "token_endpoint": f"{LOGIN}/oauth2/v2.0/token", "authorization_endpoint": f"{LOGIN}/oauth2/v2.0/authorize",
            "issuer": f"{LOGIN}/v2.0"})
        mock.post(f"{LOGIN}/oauth2/v2.0/token", json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})
        fake = Service(250_000)
        mock.add_callback(responses.POST, f"{ROOT}/v1.0/security/runHuntingQuery", callback=fake)
        yield fake


def client(**overrides) -> DefenderClient:
    settings = resolve_settings(**{"tenant_id": "contoso.onmicrosoft.com",
                                   "client_id": "11111111-1111-4111-8111-111111111111", "client_secret": "s",
                                   "api_root": ROOT, "rate_limits": {"hunting_per_minute": 1000,
                                                                     "hunting_per_hour": 10_000}, **overrides})
    return DefenderClient(settings, retry=RetryPolicy(max_attempts=2, backoff_initial=0.01))


def test_a_250000_row_window_comes_back_whole_in_order_without_duplicates(service):
    window = (START, START + timedelta(hours=25))
    with client() as c:
        frame = c.run_hunting_query("DeviceProcessEvents", timespan=window)
    assert len(frame) == 250_000
    assert frame["Id"].tolist() == list(range(250_000))  # every row once, in time order
    assert frame["Timestamp"].is_monotonic_increasing
    assert len(frame.attrs["split_windows"]) >= 1 and len(frame.attrs["windows"]) >= 3
    assert sum(w["rows"] for w in frame.attrs["windows"]) >= 250_000  # edges counted in both windows


def test_split_by_runs_one_query_per_window(service):
    service.rows = 10_000  # one hour of rows
    window = (START, START + timedelta(hours=1))
    with client() as c:
        frame = c.run_hunting_query("T", timespan=window, split_by="15m")
    assert sorted(t.split("/")[0][11:16] for t in service.timespans) == ["00:00", "00:15", "00:30", "00:45"]
    assert frame["Id"].tolist() == list(range(10_000)) and frame.attrs["split_windows"] == []


def test_split_by_is_refused_on_the_legacy_apis_and_bad_lengths():
    with client(hunting_api="mde") as c, pytest.raises(ConfigurationError, match="needs the Graph API"):
        c.run_hunting_query("T", split_by="1h")
    with client() as c, pytest.raises(ConfigurationError, match="split_by"):
        c.run_hunting_query("T", split_by="soon")
