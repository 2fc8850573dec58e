"""Fuzzing the connection-string parser, TenantSettings and connect()'s keyword arguments.

A few hundred generated inputs each, from a fixed seed (so a failure reproduces): whatever comes
in, the only exception that may come out is ConfigurationError, and no message or repr may show a
secret value (the canary), whichever field it was put in.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from connector import ConfigurationError, TenantSettings, resolve_settings
from connector.settings import SETTING_FIELDS, parse_connection_string

from .conftest import CANARY

TID, CID = "243bb6be-4136-4b64-9055-fb661594199a", "a5b24e23-a96a-4472-b729-9e5310c83e20"

# Every accepted spelling of every key, plus near misses, MSTICPy-only keys and nonsense.
KEYS = sorted({k for f in SETTING_FIELDS for k in f.keys} | {f.name.upper() for f in SETTING_FIELDS}) + [
    "UserName", "user_name", "colour", "tenantid ", " Client-Id", "verify", "rate_limits", "credential",
    "timeout_s", "hunting api", "", "=", "a;b", "tenant_id'",
]
VALUES = [
    TID, CID, "contoso.onmicrosoft.com", "graph", "MDE", "xdr", "gcc-high", "mars", "https://127.0.0.1:8443",
    "https://", "http://proxy", "https://user:pw@host", "https://host:99999", "https://host/?q=1", "210", "0",
    "-1", "nan", "inf", "-inf", "1e400", "false", "true", "/nonexistent/ca.pem", "x" * 5000, "", " ", "'", '"',
    "a;b", "a=b", "a, client_secret=b", "é😀\u2028", "\x00", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    CANARY, f"{CANARY};tail", f"{CANARY}, client_id={CID}",
]
SEPARATORS = [";", "; ", ",", ", ", " ", "\n", ";;", " ; "]
QUOTES = ["", "'", '"', "'", ""]


def _pair(rng: random.Random) -> str:
    key, value, quote = rng.choice(KEYS), rng.choice(VALUES), rng.choice(QUOTES)
    close = quote if rng.random() > 0.1 else ""  # now and then an unclosed quote
    return f"{key}{rng.choice(['=', ' = ', '=='])}{quote}{value}{close}"


def _connection_string(rng: random.Random) -> str:
    pairs = [f"tenant_id={TID}", f"client_id={CID}", f"client_secret={CANARY}"] if rng.random() < 0.5 else []
    pairs += [_pair(rng) for _ in range(rng.randint(0, 5))]
    rng.shuffle(pairs)
    text = ""
    for pair in pairs:
        text += pair + rng.choice(SEPARATORS)
    return text if rng.random() > 0.05 else text[: rng.randint(0, len(text))]


def _no_canary(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "message", "")):
        assert CANARY not in text, text


SEEDS = range(400)


@pytest.mark.parametrize("seed", SEEDS[::40])
def test_connection_strings_give_settings_or_configuration_errors(seed):
    rng = random.Random(seed)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(40):  # 400 strings in all
        text = _connection_string(rng)
        try:
            settings = resolve_settings(text)
        except ConfigurationError as exc:
            _no_canary(exc)
            outcomes["refused"] += 1
        else:
            assert CANARY not in repr(settings)
            outcomes["ok"] += 1
        try:
            parse_connection_string(text)
        except ConfigurationError as exc:
            _no_canary(exc)
    assert outcomes["refused"]  # the generator does produce bad input


ODD_VALUES = [
    None, 0, 1, -1, 123, 2**70, 0.5, math.nan, math.inf, -math.inf, True, False, b"bytes", b"\xff",
    [], [TID], {}, {"hunting_per_minute": 1}, {"hunting_per_minute": 0}, {"hunting_per_minte": 5},
    {"api_per_minute": "100"}, {1: 2}, object(), Path("/nonexistent/ca.pem"), Path("x" * 5000), "x" * 100_000,
    CANARY, f"{CANARY}\n", f"https://{CANARY}", "https://", "https://:443", "https://[::1", "nan", "inf",
]


def _kwargs(rng: random.Random) -> dict:
    kwargs = {"tenant_id": TID, "client_id": CID, "client_secret": CANARY}
    for _ in range(rng.randint(1, 4)):
        f = rng.choice(SETTING_FIELDS)
        kwargs[f.name] = rng.choice(ODD_VALUES + VALUES)
    if rng.random() < 0.2:
        kwargs[rng.choice(["api", "ApiType", "UserName", "colour", "verify"])] = rng.choice(ODD_VALUES + VALUES)
    if rng.random() < 0.3:
        del kwargs[rng.choice(list(kwargs))]
    return kwargs


@pytest.mark.parametrize("seed", SEEDS[::40])
def test_settings_from_odd_python_values_give_settings_or_configuration_errors(seed):
    rng = random.Random(seed)
    for _ in range(40):  # 400 sets of arguments in all
        kwargs = _kwargs(rng)
        for build in (lambda k=kwargs: TenantSettings(**k), lambda k=kwargs: resolve_settings(**k)):
            try:
                settings = build()
            except ConfigurationError as exc:  # incomplete kwargs: "msticpyconfig.yaml not found" is one too
                _no_canary(exc)
            else:
                assert CANARY not in repr(settings) and CANARY not in str(settings)
                assert math.isfinite(settings.timeout) and settings.timeout > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tenant_id": 123}, "tenant_id must be text"),
        ({"tenant_id": "123"}, "tenant_id is neither a GUID nor a domain"),
        ({"verify": False}, "verification cannot be turned off.*ca_bundle="),
        ({"ca_bundle": False}, "verification cannot be turned off"),
        ({"ca_bundle": "x" * 100_000}, "ca_bundle is 100000 characters long"),
        ({"rate_limits": 100}, "rate_limits must be a mapping"),
        ({"rate_limits": {"hunting_per_minte": 5}}, "Unknown rate_limits key 'hunting_per_minte'. Did you mean hunting_per_minute"),
        ({"timeout": math.nan}, "timeout must be a number of seconds"),
        ({"timeout": math.inf}, "timeout must be a number of seconds"),
        ({"timeout": "inf"}, "timeout must be a number of seconds"),
        ({"api_root": "https://"}, "api_root must be an https:// URL with a host name.*has no host name"),
        ({"graph_root": "https://:8443/x"}, "graph_root must be an https:// URL.*no host name"),
        ({"authority_host": "https://host:99999"}, "authority_host must be an https:// URL"),
        ({"mde_root": "https://u:p@host"}, "user name or password"),
    ],
)
def test_each_documented_bad_input_is_a_configuration_error_naming_the_setting(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        TenantSettings(**{"tenant_id": TID, "client_id": CID, "client_secret": CANARY, **kwargs})


@pytest.mark.parametrize(
    "text, match",
    [
        (f"client_id={CID}; client_secret=x", "connection string has no tenant_id"),
        (f"tenant_id={TID}; client_secret=x", "connection string has no client_id"),
        (f"tenant_id={TID}, client_id={CID}, client_secret=x", "[Ss]eparate pairs with ';', not ','"),
        (f"tenant_id={TID}; client_id={CID}; client_secret=x; timeout=nan", "timeout must be a number"),
        (f"tenant_id={TID}; client_id={CID}; client_secret=x; verify=false", "cannot be turned off"),
        (f"tenant_id={TID}; client_id={CID}; client_secret=x; api_root=https://", "api_root must be an https:// URL"),
    ],
)
def test_each_documented_bad_connection_string_is_a_configuration_error(text, match):
    with pytest.raises(ConfigurationError, match=match):
        resolve_settings(text)


def test_comma_separated_secret_is_never_printed():
    # The secret used to end up inside tenant_id and be printed in the certificate error.
    text = f"tenant_id=abc, client_secret={CANARY}; client_id=def; certificate=/nope.pem"
    with pytest.raises(ConfigurationError, match="tenant_id.*[Ss]eparate pairs with ';', not ','") as info:
        resolve_settings(text)
    _no_canary(info.value)


@pytest.mark.parametrize("tail", ["Tail", "Tail=1", "Tail-of-it=1", "Tail;more=1"])
def test_tail_of_an_unquoted_secret_is_never_echoed_as_a_key(tail):
    text = f"tenant_id={TID}; client_id={CID}; client_secret=S3cret;{tail}"
    with pytest.raises(ConfigurationError) as info:
        parse_connection_string(text)
    message = str(info.value)
    assert "Tail" not in message and "S3cret" not in message
    assert "client_secret" in message  # it says where: after the value of client_secret


def test_values_that_failed_are_never_quoted():
    for key in ("tenant_id", "client_id", "hunting_api", "cloud", "authority_host", "api_root", "ca_bundle", "timeout"):
        kwargs = {"tenant_id": TID, "client_id": CID, "client_secret": "s", key: CANARY}
        with pytest.raises(ConfigurationError) as info:
            TenantSettings(**kwargs)
        _no_canary(info.value)
        assert key in str(info.value)
