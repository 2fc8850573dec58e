"""Every fault kind, observed with plain requests."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from emulator import Emulator, Fault

GRAPH = "https://graph.microsoft.com"
MDE = "https://api.securitycenter.microsoft.com"
QUERY = {"Query": "AlertInfo | take 3"}








def token(emu, http, resource):
    r = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": emu.client_id, "client_secret": emu.client_secret, "scope": f"{resource}/.default",
        "grant_type": "client_credentials"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture
def mde(emu, http):
    """POST the MDE hunting route with a valid token."""
    headers = {"Authorization": f"Bearer {token(emu, http, MDE)}"}
    return lambda **kw: http.post(f"{emu.base_url}/api/advancedqueries/run", json=QUERY, headers=headers, **kw)


@pytest.fixture
def graph(emu, http):
    headers = {"Authorization": f"Bearer {token(emu, http, GRAPH)}"}
    return lambda **kw: http.post(f"{emu.base_url}/v1.0/security/runHuntingQuery", json=QUERY, headers=headers, **kw)


def test_status_burst_then_recovery(emu, mde, graph):
    emu.faults.add(Fault("status", status=503, times=2))
    first, second, third = mde(), mde(), mde()
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert set(first.json()["error"]) == {"code", "message", "target"}
    assert first.json()["error"]["code"] == "ServiceUnavailable"
    emu.faults.add(Fault("status", status=500, api="graph"))
    r = graph()
    assert r.status_code == 500 and r.json()["error"]["code"] == "UnknownError"
    assert set(r.json()["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    assert [rec.status for rec in emu.requests if rec.fault] == [503, 503, 500]


def test_429_with_retry_after_seconds_or_http_date(emu, mde):
    emu.faults.add(Fault("status", status=429, retry_after=7))
    emu.faults.add(Fault("status", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    seconds, date = mde(), mde()
    assert seconds.status_code == date.status_code == 429
    assert seconds.headers["Retry-After"] == "7"
    assert date.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert seconds.json()["error"]["code"] == "TooManyRequests"


def test_times_none_and_after(emu, mde):
    forever = emu.faults.add(Fault("status", status=502, times=None, after=1))
    assert [mde().status_code for _ in range(4)] == [200, 502, 502, 502]
    emu.faults.remove(forever)
    assert mde().status_code == 200


def test_path_and_method_filters(emu, http, mde):
    emu.faults.add(Fault("status", status=504, path=r"/api/advancedhunting/", method="POST"))
    assert mde().status_code == 200  # other path
    assert len(emu.faults.pending()) == 1


def test_token_endpoint_only_when_targeted(emu, http):
    emu.faults.add(Fault("status", status=503, times=None))
    assert token(emu, http, GRAPH)  # a default fault never touches Entra
    emu.faults.clear()
    emu.faults.add(Fault("status", status=503, path=r"/oauth2/v2\.0/token"))
    r = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    assert r.json()["error_description"].startswith("AADSTS")


def test_slow_makes_the_client_time_out(emu, mde):
    emu.faults.add(Fault("slow", delay=1.5))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        mde(timeout=0.3)
    assert time.monotonic() - started < 1.4
    assert emu.requests[-1].fault == "slow" and emu.requests[-1].status == 200
    assert mde(timeout=5).status_code == 200  # the server is still answering others


def test_slow_answers_after_the_delay(emu, mde):
    emu.faults.add(Fault("slow", delay=0.4))
    started = time.monotonic()
    assert mde(timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_stop_does_not_wait_for_a_slow_response(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    emu = Emulator(port=0).start()
    emu.faults.add(Fault("slow", delay=60, path="openid"))
    url = f"{emu.base_url}/{emu.tenant_id}/v2.0/.well-known/openid-configuration"
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_get(url, emu.ca_bundle)), daemon=True)
    thread.start()
    while not len(emu.requests):
        time.sleep(0.02)
    started = time.monotonic()
    emu.stop()
    thread.join(timeout=5)
    assert time.monotonic() - started < 3
    assert outcome and outcome[0] == "ConnectionError"


def _get(url, ca):
    try:
        return requests.get(url, verify=ca, timeout=30).status_code
    except requests.ConnectionError:
        return "ConnectionError"


@pytest.mark.parametrize("reset", [False, True])
def test_drop_closes_without_a_response(emu, mde, reset):
    emu.faults.add(Fault("drop", reset=reset))
    with pytest.raises(requests.ConnectionError):
        mde()
    assert emu.requests[-1].status == 0 and emu.requests[-1].fault == "drop"
    assert mde().status_code == 200  # a new connection works


def test_malformed_body(emu, mde):
    emu.faults.add(Fault("malformed"))
    r = mde()
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        r.json()


def test_truncated_body_with_honest_length(emu, mde):
    whole = mde().content
    emu.faults.add(Fault("truncated"))
    r = mde()
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content) == len(whole) // 2
    assert whole.startswith(r.content)
    with pytest.raises(ValueError):
        r.json()


def test_truncated_body_with_full_length_then_close(emu, mde):
    emu.faults.add(Fault("truncated", full_length=True))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        mde()
    assert mde().status_code == 200


def test_html_gateway_page(emu, mde):
    emu.faults.add(Fault("html"))
    r = mde()
    assert r.status_code == 502 and r.headers["Content-Type"].startswith("text/html")
    assert "<html>" in r.text and "502 Bad Gateway" in r.text


def test_expired_token_once(emu, mde, graph):
    emu.faults.add(Fault("expired_token"))
    r = mde()
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    assert "expired" in r.json()["error"]["message"]
    assert mde().status_code == 200
    emu.faults.add(Fault("expired_token"))
    assert graph().json()["error"]["code"] == "InvalidAuthenticationToken"


def test_result_too_large(emu, graph):
    emu.faults.add(Fault("result_too_large"))
    r = graph()
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"
    assert r.json()["error"]["message"].startswith("Query execution has exceeded the allowed result size.")


def test_cpu_quota(emu, mde):
    emu.faults.add(Fault("cpu_quota", retry_after=2))
    r = mde()
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert r.json()["error"]["message"].startswith(
        "You have exceeded processing resources allocated to this tenant. You can run queries again in")


def test_fault_validation():
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("status")
    with pytest.raises(ValueError):
        Fault("drop", times=0)
