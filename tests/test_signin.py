"""Sign-in through real MSAL against the emulator and at the HTTP boundary: deadlines, transient
faults, redirects, unknown tenants, one refresh per expiry, no token in any log, own sessions."""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time

import pytest
import responses

from connector import DefenderClient, connect, resolve_settings
from connector.auth import clear_token_cache, token_cache_size
from connector.errors import (
    AuthenticationError,
    DefenderError,
    RedirectRefusedError,
    ServiceError,
    ThrottledError,
)
from connector.transport import RetryPolicy

from .conftest import CANARY

FAST = RetryPolicy(max_attempts=3, max_total_seconds=30, backoff_initial=0.01, backoff_max=0.05)
TOKEN_PATH = r"/oauth2/v2\.0/token"
QUERY = "DeviceProcessEvents | take 1"


@pytest.fixture(autouse=True)
def _fresh_tokens():
    clear_token_cache()
    yield
    clear_token_cache()


def client_for(emu_kwargs, retry=FAST, **overrides) -> DefenderClient:
    return DefenderClient(resolve_settings(**{**emu_kwargs, **overrides}), retry=retry)


def token_posts(emu):
    return [r for r in emu.requests if r.path.endswith("/oauth2/v2.0/token")]


def test_building_a_client_makes_no_network_call(emu, emu_kwargs):
    with client_for(emu_kwargs):
        pass
    assert list(emu.requests) == []


def test_sign_in_honours_the_timeout(emu, emu_kwargs):
    from emulator import Fault

    emu.faults.add(Fault("slow", path=TOKEN_PATH, delay=60, times=None))
    started = time.monotonic()
    with client_for(emu_kwargs, timeout=1, retry=RetryPolicy(max_attempts=2, max_total_seconds=5)) as client, \
            pytest.raises(ServiceError, match="timed out"):
        client.run_hunting_query(QUERY)
    assert time.monotonic() - started < 30  # not the 60 s the endpoint would have taken


@pytest.mark.parametrize("fault, final", [
    ({"kind": "status", "status": 429, "retry_after": 0}, ThrottledError),
    ({"kind": "malformed"}, ServiceError),
    ({"kind": "truncated"}, ServiceError),
    ({"kind": "status", "status": 503}, ServiceError),
], ids=["429", "not-json", "cut-off", "503"])
def test_transient_sign_in_failures_are_retried_then_reported_as_such(emu, emu_kwargs, fault, final):
    from emulator import Fault

    emu.faults.add(Fault(path=TOKEN_PATH, times=1, **fault))
    with client_for(emu_kwargs) as client:
        assert len(client.run_hunting_query(QUERY)) == 1  # one failure, then a token
    assert len(token_posts(emu)) == 2
    clear_token_cache()
    emu.faults.add(Fault(path=TOKEN_PATH, times=None, **fault))
    with client_for(emu_kwargs) as client, pytest.raises(final) as info:
        client.run_hunting_query(QUERY)
    assert not isinstance(info.value, AuthenticationError)
    assert "not found" not in str(info.value)


def test_unknown_tenant_carries_the_services_code_and_text(emu, emu_kwargs):
    with client_for(emu_kwargs, tenant_id="00000000-0000-4000-8000-000000000001") as client, \
            pytest.raises(AuthenticationError) as info:
        client.run_hunting_query(QUERY)
    assert "AADSTS90002" in str(info.value) and info.value.code
    assert "was not found" in str(info.value)


@responses.activate
def test_a_gateway_error_object_in_a_token_answer_does_not_break_str():
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db49"
    login = "https://login.microsoftonline.com"
    responses.get(f"{login}/{tenant}/v2.0/.well-known/openid-configuration",
                  json={"token_endpoint": f"{login}/{tenant}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{login}/{tenant}/oauth2/v2.0/authorize",
                        "issuer": f"{login}/{tenant}/v2.0"})
    responses.post(f"{login}/{tenant}/oauth2/v2.0/token", status=400,
                   json={"error": {"code": "GatewayRejected", "message": "Request blocked by policy"}})
    client = DefenderClient(resolve_settings(tenant_id=tenant, client_id="66b9818a-26cd-4584-8eb0-7f7a499242aa",
                                             client_secret=CANARY), retry=FAST)
    with pytest.raises(AuthenticationError) as info:
        client.get_token()
    text = str(info.value)
    assert "GatewayRejected" in text and "Request blocked by policy" in text and CANARY not in text
    logging.getLogger("test").error("sign-in failed: %s", info.value)  # must not raise
    assert repr(info.value)


@pytest.mark.parametrize("code", [{"nested": ["x"]}, 12, object()], ids=["dict", "int", "object"])
def test_str_and_repr_of_errors_never_raise(code):
    error = DefenderError("boom", code=code, request_id={"id": 1}, status="500")
    assert str(error).startswith("boom") and repr(error).startswith("DefenderError(")


@responses.activate
def test_a_redirected_token_request_is_refused_and_the_secret_stays_here():
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db49"
    login = "https://login.microsoftonline.com"
    responses.get(f"{login}/{tenant}/v2.0/.well-known/openid-configuration",
                  json={"token_endpoint": f"{login}/{tenant}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{login}/{tenant}/oauth2/v2.0/authorize",
                        "issuer": f"{login}/{tenant}/v2.0"})
    responses.post(f"{login}/{tenant}/oauth2/v2.0/token", status=307,
                   headers={"Location": "https://evil.example/token"})
    responses.post("https://evil.example/token", json={"access_token": "x", "expires_in": 3600})
    client = DefenderClient(resolve_settings(tenant_id=tenant, client_id="66b9818a-26cd-4584-8eb0-7f7a499242aa",
                                             client_secret=CANARY), retry=FAST)
    with pytest.raises(RedirectRefusedError, match="redirect"):
        client.get_token()
    assert all("evil.example" not in c.request.url for c in responses.calls)


def test_many_threads_seeing_401_share_one_refresh(emu, emu_kwargs):
    with client_for(emu_kwargs) as client:
        client.run_hunting_query(QUERY)
        emu.expire_tokens()
        before = len(token_posts(emu))
        barrier = threading.Barrier(16)
        errors = []

        def hunt():
            barrier.wait()
            try:
                client.run_hunting_query(QUERY)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=hunt) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(token_posts(emu)) - before == 1


def test_no_token_reaches_any_log_even_when_the_token_answer_is_cut_off(emu, emu_kwargs, all_logs):
    from emulator import Fault

    emu.faults.add(Fault("truncated", path=TOKEN_PATH, times=1))
    with client_for(emu_kwargs) as client:
        client.run_hunting_query(QUERY)
        token = client.get_token()
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in all_logs.records)
    payload = token.split(".")[1]
    assert payload[:16] not in text and "eyJ" not in text
    assert re.search(r"access_token\"?\s*[:=]\s*\"?(?!<redacted>)[A-Za-z0-9]", text) is None


def test_msal_loggers_redact_tokens_at_every_level(caplog):
    caplog.set_level(logging.DEBUG)
    jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJl"
    for name in ("msal.application", "msal.oauth2cli.oauth2", "msal.token_cache"):
        logging.getLogger(name).error("Token response: %s", json.dumps({"access_token": jwt[:40]}))
        logging.getLogger(name).debug("token %s", jwt)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "eyJ0eXAi" not in text and "<redacted" in text


def test_two_clients_of_a_tenant_sign_in_through_their_own_sessions(emu, emu_kwargs, tmp_path):
    """A second client never borrows the first one's session (CA bundle, timeout, closed or not)."""
    ca_a, ca_b = tmp_path / "a.pem", tmp_path / "b.pem"
    shutil.copy(emu.ca_bundle, ca_a)
    shutil.copy(emu.ca_bundle, ca_b)
    a = client_for(emu_kwargs, ca_bundle=str(ca_a), timeout=3)
    b = client_for(emu_kwargs, ca_bundle=str(ca_b), timeout=7)
    assert len(a.run_hunting_query(QUERY)) == 1
    a.close()
    ca_a.unlink()  # anything still using a's session now fails
    assert b.get_token("mde")  # a new scope: a real token request, through b's own session
    b.close()


def test_tokens_are_shared_between_clients_of_the_same_credential(emu, emu_kwargs):
    with client_for(emu_kwargs) as a, client_for(emu_kwargs) as b:
        assert a.get_token() == b.get_token()
    assert len(token_posts(emu)) == 1


def test_token_caches_are_bounded_across_secret_rotations(emu, emu_kwargs):
    for i in range(300):
        client_for(emu_kwargs, client_secret=f"rotated-{i}").close()
        connect(**{**emu_kwargs, "client_secret": f"rotated-b-{i}"}).close()
    assert token_cache_size() <= 256


def test_credential_errors_do_not_echo_the_secret(emu, emu_kwargs):
    with client_for(emu_kwargs, client_secret=CANARY) as client, pytest.raises(AuthenticationError) as info:
        client.get_token()
    assert CANARY not in str(info.value) and CANARY not in repr(info.value)
    assert "AADSTS7000215" in str(info.value)


def test_an_elliptic_curve_certificate_is_a_configuration_error_before_any_call():
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from connector.errors import ConfigurationError

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soar")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2024, 1, 1)).not_valid_after(dt.datetime(2030, 1, 1))
            .sign(key, hashes.SHA256()))
    pem = (cert.public_bytes(serialization.Encoding.PEM).decode()
           + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode())
    client = connect(tenant_id="contoso.onmicrosoft.com", client_id="11111111-1111-4111-8111-111111111111",
                     certificate=pem)
    with pytest.raises(ConfigurationError, match="elliptic-curve key.*only RSA"):
        client.get_token()
