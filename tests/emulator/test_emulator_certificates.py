"""Certificate credentials: the emulator checks a client assertion's signature against the registered certificate."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid

import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

GRAPH = "https://graph.microsoft.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _pair(name: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(dt.datetime(2024, 1, 1))
            .not_valid_after(dt.datetime(2034, 1, 1)).sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def registered():
    return _pair("registered")


@pytest.fixture(scope="module")
def stranger():
    return _pair("stranger")


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(key, cert, client_id, token_url, alg="RS256", **claims) -> str:
    """A client assertion as MSAL builds one, signed with ``key`` and naming ``cert``."""
    now = int(time.time())
    header = {"alg": alg, "typ": "JWT"}
    if alg == "RS256":
        header["x5t"] = _b64(cert.fingerprint(hashes.SHA1()))
    else:
        header["x5t#S256"] = _b64(cert.fingerprint(hashes.SHA256()))
    body = {"aud": token_url, "iss": client_id, "sub": client_id, "jti": str(uuid.uuid4()), "nbf": now,
            "exp": now + 600, **claims}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    pad = padding.PKCS1v15() if alg == "RS256" else padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    return signing_input + "." + _b64(key.sign(signing_input.encode(), pad, hashes.SHA256()))


def post_assertion(emu, http, client_id, value):
    return http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": client_id, "client_assertion_type": JWT_BEARER, "client_assertion": value,
        "scope": GRAPH, "grant_type": "client_credentials"})


def msal_app(emu, http, client_id, credential):
    return msal.ConfidentialClientApplication(client_id, client_credential=credential, http_client=http,
                                              authority=f"{emu.base_url}/{emu.tenant_id}", instance_discovery=False)


def _sent_assertion_algs(http) -> list[str]:
    """Record the ``alg`` of every client assertion this session sends (read on the client side)."""
    algs: list[str] = []

    def hook(response, *args, **kwargs):
        form = dict(p.split("=", 1) for p in (response.request.body or "").split("&") if "=" in p)
        if "client_assertion" in form:
            algs.append(json.loads(base64.urlsafe_b64decode(form["client_assertion"].split(".")[0] + "=="))["alg"])
    http.hooks["response"].append(hook)
    return algs


def test_msal_signs_in_with_the_registered_certificate_rs256_and_ps256(emu, http, registered):
    key, cert = registered
    algs = _sent_assertion_algs(http)
    emu.add_app(emu.tenant_id, "cert-rs256", certificate=_cert_pem(cert) + _pem(key))  # PEM with its key is fine
    by_sha1 = msal_app(emu, http, "cert-rs256", {"private_key": _pem(key),
                                                  "thumbprint": cert.fingerprint(hashes.SHA1()).hex()})
    assert "access_token" in by_sha1.acquire_token_for_client([GRAPH])
    emu.add_app(emu.tenant_id, "cert-ps256", certificate=cert)
    by_sha256 = msal_app(emu, http, "cert-ps256", {"private_key": _pem(key), "public_certificate": _cert_pem(cert)})
    assert "access_token" in by_sha256.acquire_token_for_client([GRAPH])
    assert algs == ["RS256", "PS256"]


def test_another_key_is_refused_with_700027(emu, http, registered, stranger):
    key, cert = registered
    other_key, other_cert = stranger
    emu.add_app(emu.tenant_id, "cert-strict", certificate=_cert_pem(cert))
    result = msal_app(emu, http, "cert-strict", {
        "private_key": _pem(other_key), "thumbprint": other_cert.fingerprint(hashes.SHA1()).hex(),
    }).acquire_token_for_client([GRAPH])
    assert result.get("error") == "invalid_client" and 700027 in result.get("error_codes", [])
    assert "The key was not found" in result["error_description"]
    token_url = f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token"
    # The registered certificate's thumbprint, but signed with another key: a bad signature.
    forged = assertion(other_key, cert, "cert-strict", token_url)
    r = post_assertion(emu, http, "cert-strict", forged)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client" and r.json()["error_codes"] == [700027]
    assert "did not match the expected signature" in r.json()["error_description"]
    assert "access_token" not in r.text


def test_tampered_expired_and_misaddressed_assertions(emu, http, registered):
    key, cert = registered
    emu.add_app(emu.tenant_id, "cert-claims", certificate=_cert_pem(cert))
    token_url = f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token"
    good = assertion(key, cert, "cert-claims", token_url, alg="PS256")
    assert post_assertion(emu, http, "cert-claims", good).status_code == 200
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered = f"{head}.{_b64(json.dumps({**claims, 'exp': claims['exp'] + 86400}).encode())}.{sig}"
    cases = {
        tampered: 700027,
        assertion(key, cert, "cert-claims", token_url, exp=int(time.time()) - 3600): 700024,
        assertion(key, cert, "cert-claims", token_url, iss="someone-else", sub="someone-else"): 700021,
        assertion(key, cert, "cert-claims", "https://example.com/not-a-token-endpoint"): 700023,
    }
    for value, code in cases.items():
        r = post_assertion(emu, http, "cert-claims", value)
        assert r.status_code == 401 and r.json()["error_codes"] == [code], (code, r.text)
    hs256 = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{payload}.{sig}"
    assert post_assertion(emu, http, "cert-claims", hs256).json()["error"] == "invalid_client"


def test_a_certificate_app_without_a_registered_certificate_accepts_any_assertion(emu, http, stranger):
    key, cert = stranger
    emu.add_app(emu.tenant_id, "cert-unchecked", certificate=True)
    token_url = f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token"
    assert post_assertion(emu, http, "cert-unchecked", assertion(key, cert, "cert-unchecked", token_url)).status_code == 200
