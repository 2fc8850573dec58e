"""Deadlines, redirects, foreign hosts and write-safe retries, on real sockets and at the HTTP boundary."""

from __future__ import annotations

import socket
import time

import pytest
import requests
import responses

from connector.errors import RedirectRefusedError, ServiceError
from connector.paging import ItemPaged
from connector.transport import RetryPolicy, Transport

from .wire import Wire, answer, wait_for

FAST = RetryPolicy(max_attempts=3, max_total_seconds=30, backoff_initial=0.01, backoff_max=0.02)


def tokens(force_refresh=False, rejected=None):
    return "tok"


def transport(root, timeout=1.0, retry=FAST, sleeps=None):
    return Transport(requests.Session(), root, tokens, timeout=timeout, retry=retry,
                     sleep=(sleeps.append if sleeps is not None else time.sleep))


def test_a_dripped_body_is_cut_off_at_the_deadline():
    """timeout bounds the whole call: a body sent a byte at a time does not hold it for the body's length."""
    def behaviour(wire, handler):
        wire.drip(handler, total=300, every=0.1)  # 30 s to finish

    with Wire(behaviour) as wire:
        with pytest.raises(ServiceError, match="timed out"):
            transport(wire.url, timeout=1.0, retry=RetryPolicy(max_attempts=1)).request(
                "GET", "/api/slow", operation="list slow things")
        # The client hung up long before the body was done (it would take 300 drips).
        assert wait_for(lambda: wire.bytes_sent < 300 and len(wire.hits) == 1)
        assert wire.bytes_sent < 100


def test_each_attempt_gets_only_what_remains_of_the_budget():
    def behaviour(wire, handler):
        wire.stop.wait(30)  # never answers in time

    policy = RetryPolicy(max_attempts=10, max_total_seconds=2.0, backoff_initial=0.01, backoff_max=0.02)
    with Wire(behaviour) as wire:
        started = time.monotonic()
        with pytest.raises(ServiceError):
            transport(wire.url, timeout=60.0, retry=policy).request("GET", "/api/x", operation="read x")
        # With a 60 s timeout per call, only the 2 s budget can have ended it.
        assert time.monotonic() - started < 20


def test_post_after_a_read_timeout_is_not_sent_again_but_get_is():
    def behaviour(wire, handler):
        wire.stop.wait(5)

    with Wire(behaviour) as wire:
        with pytest.raises(ServiceError, match="timed out"):
            transport(wire.url, timeout=0.5).request("POST", "/api/machines/m1/isolate", json={"Comment": "x"},
                                                     operation="isolate device")
        assert [h for h in wire.hits if h[0] == "POST"] == [("POST", "/api/machines/m1/isolate")]
        with pytest.raises(ServiceError, match="timed out"):
            transport(wire.url, timeout=0.5).request("GET", "/api/machines/m1", operation="get device")
        assert len([h for h in wire.hits if h[0] == "GET"]) == FAST.max_attempts


def test_post_after_a_connection_reset_mid_answer_is_not_sent_again():
    def behaviour(wire, handler):
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        handler.connection.close()  # RST after the request arrived

    with Wire(behaviour) as wire:
        with pytest.raises(ServiceError):
            transport(wire.url).request("POST", "/api/indicators", json={}, operation="create indicator")
        assert len(wire.hits) == 1


def test_post_to_a_refused_connection_is_retried_because_nothing_was_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    sleeps = []
    with pytest.raises(ServiceError, match="could not reach") as info:
        transport(f"http://127.0.0.1:{port}", sleeps=sleeps).request(
            "POST", "/api/machines/m1/isolate", json={}, operation="isolate device")
    assert info.value.reached_service is False
    assert len(sleeps) == FAST.max_attempts - 1  # every attempt was made


def test_post_after_429_is_sent_again():
    replies = iter([(429, b'{"error":{"code":"TooManyRequests","message":"slow down"}}', {"Retry-After": "0"}),
                    (201, b'{"id":"a1"}', {})])

    def behaviour(wire, handler):
        status, body, headers = next(replies)
        answer(handler, status, body, headers)

    with Wire(behaviour) as wire:
        response = transport(wire.url).request("POST", "/api/machines/m1/isolate", json={}, operation="isolate")
        assert response.json() == {"id": "a1"} and len(wire.hits) == 2


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@responses.activate
def test_api_redirects_are_refused_not_followed(status):
    responses.post("https://api.test.example/v1.0/security/runHuntingQuery", status=status,
                   headers={"Location": "http://evil.example/collect"})
    responses.add(responses.POST, "http://evil.example/collect", json={"results": []})
    responses.add(responses.GET, "http://evil.example/collect", json={"results": []})
    with pytest.raises(RedirectRefusedError, match="redirect to http://evil.example"):
        transport("https://api.test.example").request("POST", "/v1.0/security/runHuntingQuery",
                                                      json={"Query": "x"}, operation="run hunting query",
                                                      idempotent=True)
    assert [c.request.url for c in responses.calls] == ["https://api.test.example/v1.0/security/runHuntingQuery"]


@responses.activate
def test_a_next_link_to_another_host_is_refused_without_sending_the_token():
    root = "https://graph.test.example"
    responses.get(f"{root}/v1.0/security/alerts_v2", json={
        "value": [{"id": "a1"}], "@odata.nextLink": "https://evil.example/v1.0/security/alerts_v2?$skip=1"})
    responses.get("https://evil.example/v1.0/security/alerts_v2", json={"value": [{"id": "stolen"}]})
    t = transport(root)
    pager = ItemPaged(lambda link, params: t.request("GET", link, params=params, operation="list alerts").json(),
                      "/v1.0/security/alerts_v2", operation="list alerts")
    assert next(pager) == {"id": "a1"}
    with pytest.raises(RedirectRefusedError, match="evil.example"):
        next(pager)
    assert all("evil.example" not in c.request.url for c in responses.calls)


@responses.activate
def test_a_next_link_on_another_port_or_scheme_is_refused_too():
    t = transport("https://graph.test.example")
    for link in ("https://graph.test.example:8443/x", "http://graph.test.example/x"):
        with pytest.raises(RedirectRefusedError):
            t.request("GET", link, operation="next page")
    assert len(responses.calls) == 0


@responses.activate
def test_pager_yields_each_item_once_and_fetches_lazily():
    root = "https://graph.test.example"
    for page in range(3):
        body = {"value": [{"id": f"{page}-{i}"} for i in range(2)]}
        if page < 2:
            body["@odata.nextLink"] = f"{root}/items?$skip={2 * (page + 1)}"
        responses.get(f"{root}/items" + (f"?$skip={2 * page}" if page else ""), json=body,
                      match=[responses.matchers.query_param_matcher({"$skip": str(2 * page)} if page else {})])
    t = transport(root)
    pager = ItemPaged(lambda link, params: t.request("GET", link, params=params, operation="list").json(), "/items")
    assert next(pager)["id"] == "0-0" and len(responses.calls) == 1  # one page fetched, not three
    rest = [item["id"] for item in pager]
    assert rest == ["0-1", "1-0", "1-1", "2-0", "2-1"] and len(responses.calls) == 3


@responses.activate
def test_pager_by_page_to_frame_and_limit():
    root = "https://graph.test.example"
    responses.get(f"{root}/items", json={"value": [{"id": "a", "n": 1, "when": "2024-01-01T00:00:00.1234567Z"},
                                                   {"id": "b", "n": None, "when": None}]})
    t = transport(root)

    def pager(limit=None, kinds=None):
        return ItemPaged(lambda link, params: t.request("GET", link, operation="list").json(), "/items",
                         limit=limit, kinds=kinds)

    assert list(pager().by_page()) == [[{"id": "a", "n": 1, "when": "2024-01-01T00:00:00.1234567Z"},
                                        {"id": "b", "n": None, "when": None}]]
    frame = pager().to_frame()
    assert str(frame["when"].dtype) == "datetime64[ns, UTC]" and str(frame["n"].dtype) == "Int64"
    assert frame["when"][0].nanosecond == 700 and str(frame["id"].dtype).startswith("string")
    assert [i["id"] for i in pager(limit=1)] == ["a"]
    empty = ItemPaged(lambda link, params: {"value": []}, "/none", kinds={"id": "string", "lastSeen": "datetime"})
    frame = empty.to_frame()
    assert list(frame.columns) == ["id", "lastSeen"] and len(frame) == 0
    assert str(frame["lastSeen"].dtype) == "datetime64[ns, UTC]"


def test_a_vanished_ca_bundle_is_a_service_error_naming_the_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a CA")
    t = Transport(requests.Session(), "https://api.test.example", tokens, timeout=1, retry=FAST, ca_bundle=str(ca))
    ca.unlink()
    with pytest.raises(ServiceError, match="ca.pem"):
        t.request("GET", "/api/x", operation="read x")


@responses.activate
def test_a_dynamic_value_nested_5000_deep_is_a_clear_error_not_a_crash():
    from connector import resolve_settings
    from connector.client import DefenderClient
    from connector.errors import QueryError

    deep = '{"a":' * 5000 + "1" + "}" * 5000
    body = '{"schema":[{"name":"X","type":"Dynamic"}],"results":[{"X":' + deep + "}]}"
    responses.post("https://graph.test.example/v1.0/security/runHuntingQuery", body=body,
                   content_type="application/json")
    login = "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    responses.get(f"{login}/v2.0/.well-known/openid-configuration", json={
        "token_endpoint": f"{login}/oauth2/v2.0/token", "authorization_endpoint": f"{login}/oauth2/v2.0/authorize",
        "issuer": f"{login}/v2.0"})
    responses.post(f"{login}/oauth2/v2.0/token", json={"token_type": "Bearer", "expires_in": 3599,
                                                        "access_token": "tok"})
    settings = resolve_settings(tenant_id="contoso.onmicrosoft.com", client_id="11111111-1111-4111-8111-111111111111",
                                client_secret="s", api_root="https://graph.test.example")
    client = DefenderClient(settings, retry=FAST)
    with pytest.raises(QueryError, match="nested more than .* levels deep.*project-away"):
        client.run_hunting_query("T | take 1")
    hunts = [c for c in responses.calls if c.request.url.endswith("runHuntingQuery")]
    assert len(hunts) == 1  # not retried: the same answer would come back
