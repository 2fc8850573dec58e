"""Transport at the HTTP boundary (responses): retries, Retry-After, error mapping, one fresh token."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests
import responses

from connector.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    ServiceError,
    ThrottledError,
)
from connector.transport import RetryPolicy, Transport, retry_after_seconds

ROOT = "https://api.test.example"
URL = f"{ROOT}/api/things"
GRAPH_ERROR = {"error": {"code": "BadRequest", "message": "A recognition error occurred.",
                         "innerError": {"date": "2024-01-01T00:00:00", "request-id": "rid-1", "client-request-id": "c"}}}
MDE_ERROR = {"error": {"code": "ResourceNotFound", "message": "Machine 123 was not found", "target": "43f4cb08"}}


class Tokens:
    """Hands out numbered tokens; counts how often a fresh one was forced."""

    def __init__(self):
        self.issued, self.forced = 0, 0

    def __call__(self, force_refresh=False, rejected=None):
        self.forced += force_refresh
        if force_refresh or not self.issued:
            self.issued += 1
        return f"token-{self.issued}"


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def transport(sleeps):
    return Transport(requests.Session(), ROOT, Tokens(), timeout=5, sleep=sleeps.append,
                     retry=RetryPolicy(max_attempts=4, max_total_seconds=60, backoff_initial=0.5, backoff_max=2))


def call(transport, **kw):
    return transport.request("GET", "/api/things", operation="list things", **kw)


@responses.activate
def test_429_honours_retry_after_seconds(transport, sleeps):
    responses.get(URL, status=429, headers={"Retry-After": "7"}, json={"error": {"code": "TooManyRequests", "message": "slow"}})
    responses.get(URL, json={"value": []})
    assert call(transport).json() == {"value": []}
    assert sleeps == [7.0]


@responses.activate
def test_429_honours_retry_after_http_date(transport, sleeps):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    responses.get(URL, status=429, headers={"Retry-After": when})
    responses.get(URL, json={})
    call(transport)
    assert 17 <= sleeps[0] <= 21


@responses.activate
def test_5xx_burst_is_retried_with_backoff_then_succeeds(transport, sleeps):
    for status in (500, 502, 503):
        responses.get(URL, status=status, body="oops")
    responses.get(URL, json={"ok": True})
    assert call(transport).json() == {"ok": True}
    assert len(sleeps) == 3 and all(0 < s <= 2.5 for s in sleeps)


@responses.activate
def test_503_retry_after_is_honoured(transport, sleeps):
    responses.get(URL, status=503, headers={"Retry-After": "4"})
    responses.get(URL, json={})
    call(transport)
    assert sleeps == [4.0]


@responses.activate
def test_5xx_past_the_budget_is_a_service_error(transport):
    responses.get(URL, status=503, json={"error": {"code": "ServiceUnavailable", "message": "try later"}})
    with pytest.raises(ServiceError, match="HTTP 503.*try later") as info:
        call(transport)
    assert len(responses.calls) == 4 and info.value.status == 503


@responses.activate
def test_429_past_the_budget_is_throttled_with_the_hint(transport):
    responses.get(URL, status=429, headers={"Retry-After": "1"})
    with pytest.raises(ThrottledError) as info:
        call(transport)
    assert info.value.retry_after == 1.0 and len(responses.calls) == 4


@responses.activate
def test_retry_after_longer_than_we_wait_stops_at_once(transport, sleeps):
    responses.get(URL, status=429, headers={"Retry-After": "3600"})
    with pytest.raises(ThrottledError, match="Retry after 3600s"):
        call(transport)
    assert sleeps == [] and len(responses.calls) == 1


@pytest.mark.parametrize(
    "status, body, error, fragment",
    [
        (400, GRAPH_ERROR, BadRequestError, "A recognition error occurred"),
        (403, {"error": {"code": "Forbidden", "message": "Missing role"}}, PermissionDeniedError, "ThreatHunting.Read.All"),
        (404, MDE_ERROR, NotFoundError, "Machine 123 was not found"),
    ],
)
@responses.activate
def test_client_errors_are_never_retried(transport, status, body, error, fragment):
    responses.get(URL, status=status, json=body)
    with pytest.raises(error, match=fragment) as info:
        call(transport, permission="ThreatHunting.Read.All (Microsoft Graph)")
    assert len(responses.calls) == 1 and info.value.status == status


@responses.activate
def test_request_ids_are_carried(transport):
    responses.get(URL, status=400, json=GRAPH_ERROR)
    with pytest.raises(QueryError) as info:
        call(transport, bad_request=QueryError)
    assert info.value.request_id == "rid-1" and info.value.code == "BadRequest"


@responses.activate
def test_401_gets_exactly_one_fresh_token(transport):
    responses.get(URL, status=401, json={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
    responses.get(URL, json={"ok": 1})
    assert call(transport).json() == {"ok": 1}
    assert [c.request.headers["Authorization"] for c in responses.calls] == ["Bearer token-1", "Bearer token-2"]


@responses.activate
def test_401_twice_is_an_authentication_error_not_a_loop(transport):
    responses.get(URL, status=401, json={"error": {"code": "Unauthorized", "message": "bad aud"}})
    with pytest.raises(AuthenticationError, match="fresh token.*bad aud"):
        call(transport)
    assert len(responses.calls) == 2


@responses.activate
def test_html_gateway_page_is_described_not_dumped(transport):
    responses.get(URL, status=502, body="<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
                  content_type="text/html")
    with pytest.raises(ServiceError, match="HTML page instead of JSON"):
        call(transport)


@responses.activate
def test_connection_errors_are_retried_then_reported(transport):
    responses.get(URL, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(ServiceError, match="could not finish talking to https://api.test.example/api/things"):
        call(transport)
    assert len(responses.calls) == 4


@responses.activate
def test_non_idempotent_calls_are_not_retried_on_faults_but_are_on_429(transport, sleeps):
    responses.post(URL, status=500)
    with pytest.raises(ServiceError):
        transport.request("POST", "/api/things", json={}, operation="isolate machine", idempotent=False)
    assert len(responses.calls) == 1
    responses.replace(responses.POST, URL, status=429, headers={"Retry-After": "2"})
    responses.add(responses.POST, URL, json={"id": "a1"})
    assert transport.request("POST", "/api/things", json={}, operation="isolate", idempotent=False).json() == {"id": "a1"}


@responses.activate
def test_parse_failures_are_retried_like_faults(transport):
    responses.get(URL, body="{not json")
    responses.get(URL, json={"fine": True})

    def parse(resp):
        try:
            return resp.json()
        except ValueError:
            raise ServiceError("unreadable") from None

    assert transport.request("GET", "/api/things", operation="x", parse=parse) == {"fine": True}


@responses.activate
def test_every_call_has_a_timeout(transport):
    responses.get(URL, json={})
    call(transport)
    connect, read = responses.calls[0].request.req_kwargs["timeout"]
    assert 4.0 < connect <= 5.0 and 4.0 < read <= 5.0  # the call's deadline, not a per-read allowance


def test_retry_after_parsing():
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
