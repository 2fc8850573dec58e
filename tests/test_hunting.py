"""connect() + run_hunting_query through real MSAL and requests against the emulator over HTTPS."""

from __future__ import annotations

import json
import logging
import socket

import pandas as pd
import pytest

from connector import (
    AuthenticationError,
    ConfigurationError,
    DefenderClient,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    ServiceError,
    ThrottledError,
    connect,
    resolve_settings,
)
from connector.transport import RetryPolicy

from .conftest import CANARY

FAST_RETRY = RetryPolicy(max_attempts=3, max_total_seconds=30, backoff_initial=0.05, backoff_max=0.2)
HUNT_PATHS = {"graph": "/v1.0/security/runHuntingQuery", "mde": "/api/advancedqueries/run", "m365d": "/api/advancedhunting/run"}


def client_for(emu_kwargs, retry=FAST_RETRY, **overrides) -> DefenderClient:
    return DefenderClient(resolve_settings(**{**emu_kwargs, **overrides}), retry=retry)


def hunts(emu, api="graph"):
    return [r for r in emu.requests if r.path == HUNT_PATHS[api]]


@pytest.mark.parametrize("api", ["graph", "mde", "m365d", "MDATP", "M365D"])
def test_every_api_returns_a_typed_frame(emu, emu_kwargs, api):
    with client_for(emu_kwargs, api=api) as client:
        df = client.run_hunting_query("DeviceProcessEvents | take 25")
    assert len(df) == 25
    assert str(df["Timestamp"].dtype) == "datetime64[ns, UTC]"
    assert isinstance(df["ProcessId"].dtype, pd.Int64Dtype)
    assert pd.api.types.is_string_dtype(df["FileName"].dtype)
    assert df["AdditionalFields"].dtype == object
    body = json.loads(hunts(emu, client.api)[-1].body)
    assert body == {"Query": "DeviceProcessEvents | take 25"}


def test_frame_matches_the_wire_exactly(emu, emu_kwargs):
    with client_for(emu_kwargs) as client:
        df = client.run_hunting_query("DeviceProcessEvents | take 200")
    # Read the same response again with the standard library, as the reference.
    import requests

    token = client.get_token()
    raw = requests.post(f"{emu.base_url}/v1.0/security/runHuntingQuery", json={"Query": "DeviceProcessEvents | take 200"},
                        headers={"Authorization": f"Bearer {token}"}, verify=emu.ca_bundle).json()
    assert [c["name"] for c in raw["schema"]] == list(df.columns)
    for i, row in enumerate(raw["results"]):
        assert df["AdditionalFields"].iat[i] == row["AdditionalFields"]
        ts = row["Timestamp"]
        if ts is not None:  # 100 ns precision survives
            assert df["Timestamp"].iat[i] == pd.Timestamp(ts)
            assert df["Timestamp"].iat[i].nanosecond % 100 == 0
            assert ts[20:27] == f"{df['Timestamp'].iat[i].microsecond:06d}{df['Timestamp'].iat[i].nanosecond // 100}"
    kinds = {type(v).__name__ for v in df["AdditionalFields"]}
    assert {"dict", "list", "str", "NoneType"} <= kinds


def test_connection_string_as_in_the_seed(emu, emu_kwargs):
    conn = (
        f"tenant_id='{emu.tenant_id}'; client_id='{emu.client_id}'; client_secret='{emu.client_secret}'; "
        f"authority_host='{emu.base_url}'; api_root='{emu.base_url}'; ca_bundle='{emu.ca_bundle}';"
    )
    with connect(conn) as client:
        assert len(client.run_hunting_query("DeviceLogonEvents | take 3")) == 3


def test_named_instance_from_msticpyconfig(emu, tmp_path, monkeypatch):
    (tmp_path / "msticpyconfig.yaml").write_text(
        "DataProviders:\n"
        "  MicrosoftDefender-Tenant2:\n    Args:\n"
        f"      TenantId: {emu.tenant_id}\n      ClientId: {emu.client_id}\n"
        "      ClientSecret:\n        EnvironmentVar: DEFENDER_SECRET\n"
        f"      ApiType: MDE\n      apiRoot: {emu.base_url}\n      AuthorityHost: {emu.base_url}\n      CaBundle: {emu.ca_bundle}\n"
    )
    monkeypatch.setenv("DEFENDER_SECRET", emu.client_secret)
    with connect(instance="Tenant2") as client:
        df = client.run_hunting_query("DeviceNetworkEvents | take 4")
    assert client.api == "mde" and len(df) == 4 and hunts(emu, "mde")


def test_graph_timespan_is_sent(emu, emu_kwargs):
    from datetime import timedelta

    with client_for(emu_kwargs) as client:
        client.run_hunting_query("AlertInfo | take 2", timespan=timedelta(days=7))
        client.run_hunting_query("AlertInfo | take 2", timespan="P90D")
    assert [json.loads(r.body)["Timespan"] for r in hunts(emu)] == ["P7D", "P90D"]


def test_timespan_on_a_legacy_api_explains_the_alternative(emu_kwargs):
    with client_for(emu_kwargs, api="mde") as client, pytest.raises(ConfigurationError, match="only supported by the Graph API"):
        client.run_hunting_query("AlertInfo", timespan="P1D")


@pytest.mark.parametrize("api", ["graph", "mde"])
def test_empty_result_keeps_the_schema(emu, emu_kwargs, api):
    with client_for(emu_kwargs, api=api) as client:
        df = client.run_hunting_query("DeviceProcessEvents | take 0")
    assert df.empty and "Timestamp" in df.columns and str(df["Timestamp"].dtype) == "datetime64[ns, UTC]"
    assert isinstance(df["ProcessId"].dtype, pd.Int64Dtype)


@pytest.mark.parametrize(
    "query, fragment",
    [
        ("DeviceProcessEvents | where (", "A recognition error occurred"),
        ("NoSuchTable | take 1", "Failed to resolve table or column expression named 'NoSuchTable'"),
        ("DeviceProcessEvents | project Nope", "Failed to resolve scalar expression named 'Nope'"),
    ],
)
def test_bad_kql_carries_the_service_message_and_is_not_retried(emu, emu_kwargs, query, fragment):
    with client_for(emu_kwargs) as client, pytest.raises(QueryError, match=fragment) as info:
        client.run_hunting_query(query)
    assert info.value.status == 400 and len(hunts(emu)) == 1


def test_empty_query_is_refused_before_any_call(emu, emu_kwargs):
    with client_for(emu_kwargs) as client, pytest.raises(QueryError, match="empty"):
        client.run_hunting_query("   ")
    assert hunts(emu) == []


def test_result_over_the_limit_says_how_to_narrow(emu, emu_kwargs):
    with client_for(emu_kwargs) as client, pytest.raises(QueryError, match="exceeded the allowed result size.*Narrow the query"):
        client.run_hunting_query("DeviceProcessEvents | take 100001")


def test_a_result_too_large_once_is_recovered_by_splitting_the_window(emu, emu_kwargs):
    from emulator import Fault

    emu.faults.add(Fault(kind="result_too_large"))
    with client_for(emu_kwargs) as client:
        frame = client.run_hunting_query("DeviceProcessEvents")
    assert len(frame) > 0 and len(frame.attrs["split_windows"]) == 1 and len(frame.attrs["windows"]) == 2


def test_a_result_that_splitting_does_not_shrink_says_how_to_narrow(emu, emu_kwargs):
    from emulator import Fault

    emu.faults.add(Fault(kind="result_too_large", times=None))
    with client_for(emu_kwargs) as client, pytest.raises(QueryError, match="still was refused.*Narrow the query"):
        client.run_hunting_query("DeviceProcessEvents")
    from connector.hunting import MAX_SPLIT_DEPTH

    assert len(hunts(emu)) <= 1 + 2 * MAX_SPLIT_DEPTH  # a few halvings, not the tenant's whole quota


# --- faults: each is survived within the retry budget, or reported clearly past it -----------------

@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": "1"},
        {"kind": "cpu_quota"},
        {"kind": "status", "status": 503, "times": 2},
        {"kind": "status", "status": 500},
        {"kind": "html"},
        {"kind": "malformed"},
        {"kind": "truncated"},
        {"kind": "truncated", "full_length": True},
        {"kind": "drop"},
        {"kind": "slow", "delay": 3},
    ],
    ids=lambda f: f["kind"] + str(f.get("status", "")),
)
def test_transient_faults_are_retried_to_success(emu, emu_kwargs, fault):
    from emulator import Fault

    emu.faults.add(Fault(**{"path": HUNT_PATHS["graph"], **fault}))
    with client_for(emu_kwargs, timeout=1.5) as client:
        df = client.run_hunting_query("DeviceProcessEvents | take 5")
    assert len(df) == 5
    assert len(hunts(emu)) == 1 + fault.get("times", 1)


@pytest.mark.parametrize(
    "fault, error, fragment",
    [
        ({"kind": "status", "status": 502}, ServiceError, "HTTP 502"),
        ({"kind": "html"}, ServiceError, "HTML page instead of JSON"),
        ({"kind": "malformed"}, ServiceError, "not valid JSON"),
        ({"kind": "truncated"}, ServiceError, "JSON"),
        ({"kind": "truncated", "full_length": True}, ServiceError, "cut off"),
        ({"kind": "drop"}, ServiceError, "could not (reach|finish talking to)"),
        ({"kind": "status", "status": 429, "retry_after": "0"}, ThrottledError, "throttled"),
    ],
    ids=lambda v: v["kind"] if isinstance(v, dict) else "",
)
def test_persistent_faults_end_in_the_mapped_error(emu, emu_kwargs, fault, error, fragment):
    from emulator import Fault

    emu.faults.add(Fault(**{"path": HUNT_PATHS["graph"], "times": None, **fault}))
    with client_for(emu_kwargs) as client, pytest.raises(error, match=fragment):
        client.run_hunting_query("DeviceProcessEvents | take 5")
    assert len(hunts(emu)) == FAST_RETRY.max_attempts


def test_timeout_past_the_budget_is_a_service_error(emu, emu_kwargs):
    from emulator import Fault

    emu.faults.add(Fault(kind="slow", delay=2, times=None, path=HUNT_PATHS["graph"]))
    retry = RetryPolicy(max_attempts=2, max_total_seconds=30, backoff_initial=0.05, backoff_max=0.1)
    with client_for(emu_kwargs, retry=retry, timeout=0.5) as client, pytest.raises(ServiceError, match="timed out"):
        client.run_hunting_query("DeviceProcessEvents | take 5")


def test_expired_token_gets_one_fresh_token(emu, emu_kwargs):
    with client_for(emu_kwargs) as client:
        client.run_hunting_query("AlertInfo | take 1")
        emu.expire_tokens()
        before = len(emu.requests)
        assert len(client.run_hunting_query("AlertInfo | take 1")) == 1
    token_calls = [r for r in emu.requests[before:] if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1  # exactly one fresh token
    assert [r.status for r in hunts(emu)] == [200, 401, 200]


def test_tokens_are_cached_across_queries_and_clients(emu, emu_kwargs):
    for _ in range(2):
        with client_for(emu_kwargs) as client:
            client.run_hunting_query("AlertInfo | take 1")
            client.run_hunting_query("AlertInfo | take 1")
    assert len([r for r in emu.requests if r.path.endswith("/oauth2/v2.0/token")]) <= 1


# --- authentication and permission errors ---------------------------------------------------------

def test_bad_secret_is_named(emu, emu_kwargs):
    with client_for(emu_kwargs, client_secret="wrong-" + CANARY) as client, \
            pytest.raises(AuthenticationError, match="AADSTS7000215.*Value \\(not its ID\\)") as info:
        client.run_hunting_query("AlertInfo | take 1")
    assert CANARY not in str(info.value)


def test_unknown_tenant_is_named(emu, emu_kwargs):
    # MSAL discovers the authority when the client is built, so connect() itself fails.
    with pytest.raises(AuthenticationError, match="00000000-dead-4bee-8000-000000000000"):
        client_for(emu_kwargs, tenant_id="00000000-dead-4bee-8000-000000000000").run_hunting_query("AlertInfo | take 1")


def test_unknown_app_is_named(emu, emu_kwargs):
    with client_for(emu_kwargs, client_id="99999999-9999-4999-8999-999999999999") as client, \
            pytest.raises(AuthenticationError, match="AADSTS700016.*99999999-9999-4999-8999-999999999999"):
        client.run_hunting_query("AlertInfo | take 1")


def test_missing_role_names_the_permission(emu, emu_kwargs):
    emu.add_app(emu.tenant_id, "12121212-1212-4212-8212-121212121212", client_secret="no-roles-secret", roles=[])
    with client_for(emu_kwargs, client_id="12121212-1212-4212-8212-121212121212", client_secret="no-roles-secret") as client, \
            pytest.raises(PermissionDeniedError, match="ThreatHunting.Read.All"):
        client.run_hunting_query("AlertInfo | take 1")


def test_wrong_api_root_is_not_found(emu, emu_kwargs):
    with client_for(emu_kwargs, api="mde", api_root=f"{emu.base_url}/not-here") as client, \
            pytest.raises(NotFoundError, match="HTTP 404") as info:
        client.run_hunting_query("AlertInfo | take 1")
    assert info.value.status == 404 and len([r for r in emu.requests if "not-here" in r.path]) == 1


def test_client_calls_go_through_the_tenants_limiter(emu, emu_kwargs):
    from connector.ratelimit import limiter_for

    emu.add_tenant("abababab-abab-4bab-8bab-abababababab")
    emu.add_app("abababab-abab-4bab-8bab-abababababab", emu.client_id, client_secret="limited")
    kwargs = {**emu_kwargs, "tenant_id": "abababab-abab-4bab-8bab-abababababab", "client_secret": "limited",
              "rate_limits": {"hunting_per_minute": 2, "hunting_per_hour": 100}}
    limiter = limiter_for(("global", "abababab-abab-4bab-8bab-abababababab", "hunting"), [(2, 60.0), (100, 3600.0)])
    with client_for(kwargs) as client:
        client.run_hunting_query("AlertInfo | take 1")
        assert limiter.would_wait() == 0
        client.run_hunting_query("AlertInfo | take 1")
    assert limiter.would_wait() > 50  # a third query in this minute would queue here, not hit a 429
    other = limiter_for(("global", emu.tenant_id.lower(), "hunting"), [(10_000, 60.0), (100_000, 3600.0)])
    assert other is not limiter and other.would_wait() == 0


def test_unreachable_api_is_a_service_error(emu, emu_kwargs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with client_for(emu_kwargs, api_root=f"https://127.0.0.1:{port}") as client, \
            pytest.raises(ServiceError, match="could not (reach|finish talking to)"):
        client.run_hunting_query("AlertInfo | take 1")


def test_certificate_credential(emu, emu_kwargs, tmp_path):
    pem = _self_signed_pem()
    emu.add_app(emu.tenant_id, "34343434-3434-4434-8434-343434343434", certificate=True)
    settings = {k: v for k, v in emu_kwargs.items() if k != "client_secret"}
    with client_for(settings, client_id="34343434-3434-4434-8434-343434343434", certificate=pem) as client:
        assert len(client.run_hunting_query("AlertEvidence | take 2")) == 2
    token_call = [r for r in emu.requests if r.path.endswith("/oauth2/v2.0/token")][-1]
    assert b"client_assertion=" in token_call.body and b"client_secret" not in token_call.body


def test_keyvault_reference_that_cannot_be_resolved_names_vault_and_secret(emu, tmp_path):
    from azure.identity import ClientSecretCredential

    (tmp_path / "msticpyconfig.yaml").write_text(
        f"KeyVault:\n  VaultName: {emu.base_url}\n"
        "DataProviders:\n  MicrosoftDefender:\n    Args:\n"
        f"      TenantId: {emu.tenant_id}\n      ClientId: {emu.client_id}\n"
        "      ClientSecret:\n        KeyVault:\n"
    )
    credential = ClientSecretCredential(emu.tenant_id, emu.client_id, emu.client_secret, authority=emu.base_url,
                                        disable_instance_discovery=True, connection_verify=emu.ca_bundle)
    with pytest.raises(ConfigurationError, match=r"'DataProviders-MicrosoftDefender-Args-ClientSecret' in vault https://127"):
        resolve_settings(keyvault_credential=credential, ca_bundle=emu.ca_bundle)
    emu.add_secret("DataProviders-MicrosoftDefender-Args-ClientSecret", CANARY)
    settings = resolve_settings(keyvault_credential=credential, ca_bundle=emu.ca_bundle)
    assert settings.client_secret == CANARY and CANARY not in repr(settings)


# --- secrets never leak -------------------------------------------------------------------------

def test_canary_secret_never_leaks(emu, emu_kwargs, all_logs):
    from emulator import Fault

    emu.add_app(emu.tenant_id, "56565656-5656-4565-8565-565656565656", client_secret=CANARY)
    kwargs = {**emu_kwargs, "client_id": "56565656-5656-4565-8565-565656565656", "client_secret": CANARY}
    texts = []
    with client_for(kwargs) as client:
        texts += [repr(client), str(client.settings), repr(client.settings)]
        emu.faults.add(Fault(kind="status", status=503, path=HUNT_PATHS["graph"]))
        client.run_hunting_query("DeviceProcessEvents | take 3")
        for query in ("Bad | | query", "DeviceProcessEvents | take 100001"):
            with pytest.raises(QueryError) as info:
                client.run_hunting_query(query)
            texts += [str(info.value), repr(info.value)]
    with client_for(kwargs, client_secret=CANARY + "-wrong") as client, pytest.raises(AuthenticationError) as info:
        client.run_hunting_query("AlertInfo")
    texts += [str(info.value), repr(info.value)]
    texts += [r.getMessage() for r in all_logs.records] + [all_logs.text]
    assert all_logs.records, "expected some log output to check"
    assert not [t for t in texts if CANARY in t]


def _self_signed_pem() -> str:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "defender-soar-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key_pem.decode()


@pytest.fixture(autouse=True)
def _debug_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="connector")
