"""The emulator's request log keeps no secret: client secrets, assertions and bearer tokens are redacted."""

from __future__ import annotations

import base64
import json
import logging

from ..conftest import CANARY

GRAPH = "https://graph.microsoft.com/.default"


def _everything_logged(emu, caplog) -> str:
    records = list(emu.requests)
    return "\n".join([repr(records)] + [r.body.decode("utf-8", "replace") for r in records]
                     + [json.dumps(r.headers) + json.dumps(r.query) + r.path for r in records] + [caplog.text])


def test_no_secret_survives_in_the_request_log(emu, http, caplog):
    caplog.set_level(logging.DEBUG, logger="emulator")
    emu.add_app(emu.tenant_id, "canary-app", client_secret=CANARY)
    token_url = f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token"
    form = {"client_id": "canary-app", "client_secret": CANARY, "scope": GRAPH, "grant_type": "client_credentials"}
    token = http.post(token_url, data=form).json()["access_token"]
    http.post(token_url, data={**form, "client_secret": CANARY + "-wrong"})           # a refused secret too
    http.post(token_url, auth=("canary-app", CANARY), data={"scope": GRAPH, "grant_type": "client_credentials"})
    http.get(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", params={"client_secret": CANARY})
    assertion = "eyJhbGciOiJSUzI1NiJ9." + base64.urlsafe_b64encode(b'{"sub":"' + CANARY.encode() + b'"}').decode() + ".c2ln"
    http.post(token_url, data={"client_id": "canary-app", "client_assertion": assertion, "scope": GRAPH,
                               "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                               "grant_type": "client_credentials"})
    headers = {"Authorization": f"Bearer {token}"}
    http.post(f"{emu.graph_url}/v1.0/security/runHuntingQuery", headers=headers, json={"Query": "AlertInfo | take 1"})
    http.post(f"{emu.graph_url}/v1.0/security/alerts_v2/x/comments", headers=headers,
              json={"comment": "pasted by mistake", "clientSecret": CANARY, "accessToken": token})
    assert len(emu.requests) == 7
    logged = _everything_logged(emu, caplog)
    assert CANARY not in logged and token not in logged and assertion not in logged
    # Redacted, not dropped: what the request was stays readable.
    first = emu.requests[0]
    assert b"client_id=canary-app" in first.body and b"client_secret=%3Credacted%3E" in first.body
    assert emu.requests[2].headers["authorization"] == "Basic <redacted>"
    assert emu.requests[3].query["client_secret"] == "<redacted>"
    assert b"client_assertion=%3Credacted%3E" in emu.requests[4].body
    assert emu.requests[5].headers["authorization"] == "Bearer <redacted>"
    assert json.loads(emu.requests[5].body) == {"Query": "AlertInfo | take 1"}
    assert json.loads(emu.requests[6].body)["comment"] == "pasted by mistake"


def test_short_secrets_are_redacted_as_fields_without_blanking_ordinary_words(emu, http):
    emu.add_app(emu.tenant_id, "short-app", client_secret="take")
    http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": "short-app", "client_secret": "take", "scope": GRAPH, "grant_type": "client_credentials"})
    http.post(f"{emu.base_url}/v1.0/security/runHuntingQuery", json={"Query": "AlertInfo | take 1"})
    token_call, hunt = emu.requests[0], emu.requests[1]
    assert b"client_secret=%3Credacted%3E" in token_call.body and b"=take" not in token_call.body
    assert json.loads(hunt.body) == {"Query": "AlertInfo | take 1"}
