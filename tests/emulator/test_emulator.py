"""The emulator's public surface over real HTTPS: lifecycle, Entra ID, API auth, the three hunting shapes."""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msal
import pytest
import requests

from emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "emulator" / "data"  # copies of shared/reference/samples
GRAPH = "https://graph.microsoft.com"
MDE = "https://api.securitycenter.microsoft.com"
XDR = "https://api.security.microsoft.com"
HUNT = {"graph": ("/v1.0/security/runHuntingQuery", GRAPH), "mde": ("/api/advancedqueries/run", MDE),
        "xdr": ("/api/advancedhunting/run", XDR)}
ENTRA_KEYS = {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}








def get_token(emu, http, resource=GRAPH, client_id=None, secret=None, tenant=None) -> str:
    r = http.post(f"{emu.base_url}/{tenant or emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": client_id or emu.client_id, "client_secret": secret or emu.client_secret,
        "scope": f"{resource}/.default", "grant_type": "client_credentials"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def hunt(emu, http, api, query, token=None, **extra):
    path, resource = HUNT[api]
    token = token or get_token(emu, http, resource)
    return http.post(emu.base_url + path, json={"Query": query, **extra}, headers={"Authorization": f"Bearer {token}"})


def sample(name):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- lifecycle


def test_start_stop_and_addresses(tmp_path):
    emu = Emulator(port=0, state_dir=tmp_path)
    emu.start()
    try:
        assert emu.base_url.startswith("https://127.0.0.1:") and not emu.base_url.endswith("/")
        assert Path(emu.ca_bundle) == tmp_path / "ca.pem"
        assert b"BEGIN CERTIFICATE" in Path(emu.ca_bundle).read_bytes()
        r = requests.get(f"{emu.base_url}/{emu.tenant_id}/v2.0/.well-known/openid-configuration",
                         verify=emu.ca_bundle, timeout=5)
        assert r.status_code == 200
        # The certificate also names localhost.
        port = emu.base_url.rsplit(":", 1)[1]
        assert requests.get(f"https://localhost:{port}/{emu.tenant_id}/v2.0/.well-known/openid-configuration",
                            verify=emu.ca_bundle, timeout=5).status_code == 200
    finally:
        emu.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.base_url, verify=emu.ca_bundle, timeout=2)
    # A restart in the same state dir reuses the CA, so clients configured once keep working.
    ca_before = Path(tmp_path / "ca.pem").read_bytes()
    with Emulator(state_dir=tmp_path) as again:
        assert Path(again.ca_bundle).read_bytes() == ca_before


def test_keep_alive_and_content_length(emu, http):
    first = http.get(f"{emu.base_url}/{emu.tenant_id}/v2.0/.well-known/openid-configuration")
    second = http.get(f"{emu.base_url}/{emu.tenant_id}/v2.0/.well-known/openid-configuration")
    assert first.headers["Content-Length"] == str(len(first.content))
    assert second.headers.get("Connection", "").lower() != "close"


def test_cli_prints_coordinates_and_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--state-dir", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = {}
        while len(lines) < 5:
            key, _, value = proc.stdout.readline().strip().partition(": ")
            lines[key] = value
        assert lines["URL"].startswith("https://127.0.0.1:")
        assert lines["CA"] == str(tmp_path / "ca.pem")
        r = requests.post(f"{lines['URL']}/{lines['TENANT']}/oauth2/v2.0/token", verify=lines["CA"], timeout=5, data={
            "client_id": lines["CLIENT_ID"], "client_secret": lines["CLIENT_SECRET"],
            "scope": f"{GRAPH}/.default", "grant_type": "client_credentials"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert subprocess.run([sys.executable, "-m", "emulator", "--help"], cwd=ROOT, capture_output=True,
                          timeout=30).returncode == 0


# ---------------------------------------------------------------- Entra ID


def test_msal_gets_a_token(emu, http):
    app = msal.ConfidentialClientApplication(emu.client_id, client_credential=emu.client_secret,
                                             authority=f"{emu.base_url}/{emu.tenant_id}",
                                             instance_discovery=False, http_client=http)
    result = app.acquire_token_for_client([f"{MDE}/.default"])
    assert result.get("token_type") == "Bearer", result
    assert result["expires_in"] == 3599
    header, payload, signature = result["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == MDE and claims["tid"] == emu.tenant_id and claims["appid"] == emu.client_id
    assert "AdvancedQuery.Read.All" in claims["roles"] and claims["exp"] > time.time()
    paths = [r.path for r in emu.requests]
    assert paths == [f"/{emu.tenant_id}/v2.0/.well-known/openid-configuration",
                     f"/{emu.tenant_id}/oauth2/v2.0/token"]


def test_msal_with_a_certificate(emu, http):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soar")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2024, 1, 1))
            .not_valid_after(dt.datetime(2034, 1, 1)).sign(key, hashes.SHA256()))
    emu.add_app(emu.tenant_id, "cert-app", certificate=True)
    app = msal.ConfidentialClientApplication("cert-app", authority=f"{emu.base_url}/{emu.tenant_id}",
                                             instance_discovery=False, http_client=http, client_credential={
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex()})
    assert "access_token" in app.acquire_token_for_client([f"{XDR}/.default"])
    body = dict(x.split("=", 1) for x in emu.requests[-1].body.decode().split("&"))
    assert "client_assertion" in body and "client_secret" not in body


def test_http_basic_client_auth(emu, http):
    r = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", auth=(emu.client_id, emu.client_secret),
                  data={"scope": f"{GRAPH}/.default", "grant_type": "client_credentials"})
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"


@pytest.mark.parametrize("case, status, error, code", [
    ("bad_secret", 401, "invalid_client", 7000215),
    ("unknown_tenant", 400, "invalid_request", 90002),
    ("unknown_client", 400, "unauthorized_client", 700016),
    ("unknown_scope", 400, "invalid_scope", 70011),
    ("two_resources", 400, "invalid_scope", 70011),
    ("not_default", 400, "invalid_scope", 70011),
])
def test_entra_errors(emu, http, case, status, error, code):
    form = {"client_id": emu.client_id, "client_secret": emu.client_secret, "scope": f"{GRAPH}/.default",
            "grant_type": "client_credentials"}
    tenant = emu.tenant_id
    if case == "bad_secret":
        form["client_secret"] = "wrong"
    elif case == "unknown_tenant":
        tenant = "00000000-0000-0000-0000-000000000000"
    elif case == "unknown_client":
        form["client_id"] = "11111111-1111-1111-1111-111111111111"
    elif case == "unknown_scope":
        form["scope"] = "https://foo.microsoft.com/.default"
    elif case == "two_resources":
        form["scope"] = f"{GRAPH}/.default {MDE}/.default"
    else:
        form["scope"] = f"{GRAPH}/ThreatHunting.Read.All"
    r = http.post(f"{emu.base_url}/{tenant}/oauth2/v2.0/token", data=form)
    assert r.status_code == status
    body = r.json()
    assert set(body) == ENTRA_KEYS
    assert set(sample("entra-token-error-invalid_scope-400.json")) <= set(body)
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    for line in ("\r\nTrace ID: ", "\r\nCorrelation ID: ", "\r\nTimestamp: "):
        assert line in body["error_description"]


def test_unknown_tenant_fails_discovery_so_msal_raises(emu, http):
    r = http.get(f"{emu.base_url}/nope.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert r.status_code == 400 and r.json()["error_codes"] == [90002]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(emu.client_id, client_credential=emu.client_secret,
                                           authority=f"{emu.base_url}/nope.onmicrosoft.com",
                                           instance_discovery=False, http_client=http)


def test_openid_configuration_points_back_at_the_emulator(emu, http):
    config = http.get(f"{emu.base_url}/{emu.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token"
    assert config["authorization_endpoint"].startswith(emu.base_url)
    assert config["issuer"] == f"{emu.base_url}/{emu.tenant_id}/v2.0"


def test_token_lifetime_is_configurable(emu, http):
    emu.token_lifetime = 120
    try:
        r = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
            "client_id": emu.client_id, "client_secret": emu.client_secret, "scope": f"{XDR}/.default",
            "grant_type": "client_credentials"})
        assert r.json()["expires_in"] == 120
    finally:
        emu.token_lifetime = 3599


# ---------------------------------------------------------------- API auth


@pytest.mark.parametrize("api", ["graph", "mde", "xdr"])
def test_missing_wrong_audience_and_expired_tokens_get_401(emu, http, api):
    path = HUNT[api][0]
    missing = http.post(emu.base_url + path, json={"Query": "AlertInfo"})
    other = GRAPH if api != "graph" else MDE
    wrong = hunt(emu, http, api, "AlertInfo", token=get_token(emu, http, other))
    garbage = hunt(emu, http, api, "AlertInfo", token="abc.def.ghi")
    for r in (missing, wrong, garbage):
        assert r.status_code == 401
        error = r.json()["error"]
        if api == "graph":
            assert error["code"] == "InvalidAuthenticationToken"
            assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
        else:
            assert error["code"] == "Unauthorized" and set(error) == {"code", "message", "target"}
    token = get_token(emu, http, HUNT[api][1])
    assert hunt(emu, http, api, "AlertInfo | take 1", token=token).status_code == 200
    emu.expire_tokens()
    expired = hunt(emu, http, api, "AlertInfo | take 1", token=token)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert hunt(emu, http, api, "AlertInfo | take 1").status_code == 200  # a fresh token works


@pytest.mark.parametrize("api, role", [("graph", "ThreatHunting.Read.All"), ("mde", "AdvancedQuery.Read.All"),
                                       ("xdr", "AdvancedHunting.Read.All")])
def test_missing_role_gets_403_naming_the_permission(emu, http, api, role):
    app = emu.add_app(emu.tenant_id, f"no-roles-{api}", roles=[])
    token = get_token(emu, http, HUNT[api][1], client_id=app.client_id, secret=app.client_secret)
    r = hunt(emu, http, api, "AlertInfo", token=token)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "Forbidden"
    assert r.json()["error"]["message"] == f"Missing application permission {role}"


def test_other_tenants_and_apps(emu, http):
    emu.add_tenant("fabrikam.onmicrosoft.com")
    app = emu.add_app("fabrikam.onmicrosoft.com", "fab-app", client_secret="fab-secret")
    token = get_token(emu, http, GRAPH, client_id="fab-app", secret="fab-secret", tenant="fabrikam.onmicrosoft.com")
    assert app.client_secret == "fab-secret"
    assert hunt(emu, http, "graph", "AlertInfo | take 1", token=token).status_code == 200


def test_request_log_redacts_authorization(emu, http):
    hunt(emu, http, "mde", "AlertInfo | take 1")
    record = emu.requests[-1]
    assert record.method == "POST" and record.path == "/api/advancedqueries/run" and record.status == 200
    assert record.headers["authorization"] == "Bearer <redacted>"
    assert json.loads(record.body) == {"Query": "AlertInfo | take 1"}


# ---------------------------------------------------------------- hunting shapes


def test_graph_shape_matches_sample(emu, http):
    expected = sample("graph-runHuntingQuery-response.json")
    r = hunt(emu, http, "graph", sample("graph-runHuntingQuery-request.json")["Query"])
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert list(body) == list(expected)
    assert body["@odata.context"].endswith("$metadata#microsoft.graph.security.huntingQueryResults")
    assert body["schema"] == expected["schema"]  # same projected columns and types
    assert [list(row) for row in body["results"]] == [list(row) for row in expected["results"]]


def test_graph_timespan(emu, http):
    expected = sample("graph-runHuntingQuery-timespan-response.json")
    r = hunt(emu, http, "graph", "DeviceProcessEvents | project Timestamp, FileName, InitiatingProcessFileName",
             Timespan="P90D")
    assert r.status_code == 200 and list(r.json()) == list(expected)
    assert len(r.json()["results"]) == 100  # no take: the default row count
    day = hunt(emu, http, "graph", "DeviceProcessEvents | take 50 | project Timestamp", Timespan="P1D").json()
    since = time.time() - 86400 - 120
    for row in day["results"]:
        assert calendar.timegm(time.strptime(row["Timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) >= since
    for good in ("2024-02-01T08:00:00Z/P30D", "P30D/2030-02-15T08:00:00Z", "2025-01-01T00:00:00Z",
                 "2024-02-01T08:00:00Z/2024-02-15T08:00:00Z", "PT12H"):
        assert hunt(emu, http, "graph", "AlertInfo | take 1", Timespan=good).status_code == 200, good
    for bad in ("30 days", "P", "PT", "P30D/P1D", "2024-02-15T08:00:00Z/2024-02-01T08:00:00Z", 30):
        r = hunt(emu, http, "graph", "AlertInfo | take 1", Timespan=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest", bad


def test_mde_shape_matches_sample(emu, http):
    expected = sample("mde-advancedqueries-run-response.json")
    r = hunt(emu, http, "mde", sample("mde-advancedqueries-run-request.json")["Query"])
    body = r.json()
    # The doc example omits Stats; real responses carry it (defender-api.md §2a).
    assert set(body) == set(expected) | {"Stats"}
    assert body["Schema"] == expected["Schema"]
    assert [list(row) for row in body["Results"]] == [list(row) for row in expected["Results"]]
    assert len(body["Results"][0]["DeviceId"]) == 40


def _key_tree(value):
    if isinstance(value, dict):
        return {k: _key_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_key_tree(value[0])] if value else []
    return type(value).__name__


def test_xdr_shape_matches_sample(emu, http):
    expected = sample("m365d-advancedhunting-run-response.json")
    r = hunt(emu, http, "xdr", sample("m365d-advancedhunting-run-request.json")["Query"])
    body = r.json()
    assert list(body) == list(expected)
    assert body["Schema"] == expected["Schema"]
    assert [list(row) for row in body["Results"]] == [list(row) for row in expected["Results"]]
    assert _key_tree(body["Stats"]) == _key_tree(expected["Stats"])
    assert body["Stats"]["dataset_statistics"][0]["table_row_count"] == 2


@pytest.mark.parametrize("api", ["graph", "mde", "xdr"])
def test_hunting_request_errors(emu, http, api):
    path, resource = HUNT[api]
    headers = {"Authorization": f"Bearer {get_token(emu, http, resource)}"}
    missing = http.post(emu.base_url + path, json={"query": "AlertInfo"}, headers=headers)  # case-sensitive key
    not_json = http.post(emu.base_url + path, data=b"{not json", headers=headers)
    assert missing.status_code == 400 and not_json.status_code == 400
    if api == "graph":
        assert missing.json()["error"]["code"] == "BadRequest" and "innerError" in missing.json()["error"]
    else:
        assert missing.json()["error"]["code"] == "MissingRequiredParameter"
        assert not_json.json()["error"]["code"] == "InvalidRequestBody"
        assert set(missing.json()["error"]) == set(sample("mde-error-resourcenotfound-404.json")["error"])


@pytest.mark.parametrize("query, message", [
    ("NoSuchTable | take 1", "Failed to resolve table or column expression named 'NoSuchTable'"),
    ("DeviceProcessEvents | project Timestamp, nope", "'project' operator: Failed to resolve scalar expression named 'nope'"),
    ('DeviceProcessEvents | where FileName == "cmd.exe | take 1', "A recognition error occurred."),
    ("DeviceProcessEvents | where (FileName == 'x' | take 1", "A recognition error occurred."),
    ("DeviceProcessEvents | frobnicate 3", "A recognition error occurred."),
    ("DeviceProcessEvents | take 100001", "Query execution has exceeded the allowed result size. Optimize your "
                                          "query by limiting the number of results and try again"),
])
@pytest.mark.parametrize("api", ["graph", "xdr"])
def test_bad_kql_messages(emu, http, api, query, message):
    r = hunt(emu, http, api, query)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == message


def test_rows_look_like_real_device_process_events(emu, http):
    body = hunt(emu, http, "mde", "DeviceProcessEvents | take 400").json()
    schema = {c["Name"]: c["Type"] for c in body["Schema"]}
    assert len(schema) >= 60
    assert {"DateTime", "String", "Int64", "Boolean", "Object"} <= set(schema.values())
    rows = body["Results"]
    assert len(rows) == 400 and all(list(row) == list(schema) for row in rows)
    assert all(len(row["Timestamp"]) == 28 and row["Timestamp"][19] == "." for row in rows)
    kinds = {type(row["AdditionalFields"]).__name__ for row in rows}
    assert {"dict", "list", "str", "int", "NoneType"} <= kinds
    assert any(isinstance(v, str) and v.startswith("{") for v in (r["AdditionalFields"] for r in rows))
    text = json.dumps(rows, ensure_ascii=False)
    assert "jürgen" in text and "王芳" in text and '\\"' in text
    for column in ("FileSize", "AccountUpn", "InitiatingProcessParentCreationTime", "IsInitiatingProcessRemoteSession"):
        assert any(row[column] is None for row in rows), column
    # Real bodies are UTF-8, not \\u-escaped.
    raw = hunt(emu, http, "mde", "DeviceProcessEvents | take 400").content
    assert "王芳".encode() in raw


def test_other_tables_have_their_types(emu, http):
    types = {}
    for table in ("DeviceNetworkEvents", "DeviceFileEvents", "DeviceLogonEvents", "AlertInfo", "AlertEvidence"):
        body = hunt(emu, http, "xdr", f"{table} | take 5").json()
        assert len(body["Results"]) == 5
        types.update({f"{table}.{c['Name']}": c["Type"] for c in body["Schema"]})
    assert types["DeviceNetworkEvents.RemotePort"] == "Int32"
    assert types["DeviceLogonEvents.IsLocalAdmin"] == "SByte"
    assert types["AlertEvidence.OAuthApplicationId"] == "Guid"
    assert hunt(emu, http, "graph", "DeviceProcessEvents | summarize avg(FileSize)").json()["schema"] == [
        {"name": "avg_FileSize", "type": "Double"}]


def test_hunting_quota(emu, http):
    emu.quotas.per_minute = 3
    try:
        token = get_token(emu, http, MDE)
        statuses = [hunt(emu, http, "mde", "AlertInfo | take 1", token=token).status_code for _ in range(3)]
        limited = hunt(emu, http, "mde", "AlertInfo | take 1", token=token)
        assert statuses == [200, 200, 200] and limited.status_code == 429
        assert limited.json()["error"]["code"] == "TooManyRequests"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert hunt(emu, http, "xdr", "AlertInfo | take 1").status_code == 200  # separate API, separate quota
        emu.reset()
        assert hunt(emu, http, "mde", "AlertInfo | take 1", token=token).status_code == 200
    finally:
        emu.quotas.per_minute = 45
