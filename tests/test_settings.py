"""Settings from keyword arguments and connection strings: aliases, clouds, errors, no secret in repr."""

from __future__ import annotations

import pytest

from connector import ConfigurationError, TenantSettings, resolve_settings
from connector.clouds import endpoints
from connector.settings import parse_connection_string

from .conftest import CANARY

TID, CID = "243bb6be-4136-4b64-9055-fb661594199a", "a5b24e23-a96a-4472-b729-9e5310c83e20"


def test_seed_connection_string_parses_with_quotes_stripped():
    conn = f"tenant_id='{TID}'; client_id='{CID}'; client_secret='[PLACEHOLDER]'"
    assert parse_connection_string(conn) == {"tenant_id": TID, "client_id": CID, "client_secret": "[PLACEHOLDER]"}


@pytest.mark.parametrize(
    "conn, secret",
    [
        (f"tenant_id={TID};client_id={CID};client_secret=abc", "abc"),
        (f"  tenant_id = '{TID}' ;\n client_id=\"{CID}\" ; client_secret='a;b=c' ; ", "a;b=c"),
        (f"TenantId='{TID}'; ClientId='{CID}'; ClientSecret=\"x'y\"", "x'y"),
    ],
)
def test_connection_string_variants(conn, secret):
    values = parse_connection_string(conn)
    assert values["tenant_id"] == TID and values["client_id"] == CID and values["client_secret"] == secret


@pytest.mark.parametrize(
    "conn, fragment",
    [
        ("", "empty"),
        (f"tenant_id='{TID}'; client_id", "Malformed"),
        (f"tenant_id='{TID}; client_id='{CID}'", "unexpected text"),
        (f"tenant_id='{TID}", "no closing"),
        (f"tenant_id={TID}; colour=blue", "Unknown key 'colour'"),
        (f"tenant_id={TID}; tenant_id={TID}", "twice"),
    ],
)
def test_malformed_connection_strings_name_the_problem(conn, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        parse_connection_string(conn)


def test_connection_string_error_never_echoes_a_value():
    with pytest.raises(ConfigurationError) as info:
        parse_connection_string(f"tenant_id={TID}; client_secret='{CANARY}")
    assert CANARY not in str(info.value)


@pytest.mark.parametrize("missing", ["tenant_id", "client_id"])
def test_missing_ids_are_named(missing):
    values = {"tenant_id": TID, "client_id": CID, "client_secret": "s", missing: ""}
    with pytest.raises(ConfigurationError, match=f"Missing {missing}"):
        TenantSettings(**values)


def test_exactly_one_credential():
    with pytest.raises(ConfigurationError, match="No credential"):
        TenantSettings(tenant_id=TID, client_id=CID)
    with pytest.raises(ConfigurationError, match="Both client_secret and certificate"):
        TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", certificate="-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    "alias, api", [("M365D", "m365d"), ("mde", "mde"), ("MDATP", "mde"), ("Graph", "graph"), ("xdr", "m365d"), (None, "graph")]
)
def test_api_aliases_case_insensitive(alias, api):
    assert TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", api=alias).api == api


def test_unknown_api_and_cloud_list_valid_ones():
    with pytest.raises(ConfigurationError, match="graph.*mde.*m365d"):
        TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", api="sentinel")
    with pytest.raises(ConfigurationError, match="global, gcc, gcc-high, dod"):
        TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", cloud="mars")
    with pytest.raises(ConfigurationError, match="not available in Azure China"):
        TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", cloud="cn")


@pytest.mark.parametrize(
    "api, cloud, login, scope, root",
    [
        ("graph", "global", "https://login.microsoftonline.com", "https://graph.microsoft.com/.default", "https://graph.microsoft.com"),
        ("mde", "global", "https://login.microsoftonline.com", "https://api.securitycenter.microsoft.com/.default", "https://api.securitycenter.microsoft.com"),
        ("m365d", "global", "https://login.microsoftonline.com", "https://api.security.microsoft.com/.default", "https://api.security.microsoft.com"),
        ("graph", "gcc", "https://login.microsoftonline.com", "https://graph.microsoft.com/.default", "https://graph.microsoft.com"),
        ("mde", "gcc", "https://login.microsoftonline.com", "https://api-gcc.securitycenter.microsoft.us/.default", "https://api-gcc.securitycenter.microsoft.us"),
        ("graph", "gcc-high", "https://login.microsoftonline.us", "https://graph.microsoft.us/.default", "https://graph.microsoft.us"),
        ("m365d", "gcc-high", "https://login.microsoftonline.us", "https://api-gov.security.microsoft.us/.default", "https://api-gov.security.microsoft.us"),
        ("graph", "dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us/.default", "https://dod-graph.microsoft.us"),
        ("mde", "dod", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us/.default", "https://api-gov.securitycenter.microsoft.us"),
    ],
)
def test_cloud_endpoint_table(api, cloud, login, scope, root):
    ep = endpoints(api, cloud)
    assert (ep.authority_host, ep.scope, ep.api_root) == (login, scope, root)


def test_overrides_move_traffic_but_keep_the_token_resource():
    s = TenantSettings(
        tenant_id=TID, client_id=CID, client_secret="s", api="mde", cloud="GCC-High",
        authority_host="https://127.0.0.1:8443/", api_root="https://127.0.0.1:8443",
    )
    assert s.cloud == "gcc-high"
    assert s.endpoints.authority_host == "https://127.0.0.1:8443"
    assert s.endpoints.scope == "https://api-gov.securitycenter.microsoft.us/.default"


def test_http_override_refused():
    with pytest.raises(ConfigurationError, match="https"):
        TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", api_root="http://proxy")


def test_repr_and_errors_never_show_the_secret():
    s = TenantSettings(tenant_id=TID, client_id=CID, client_secret=CANARY)
    assert CANARY not in repr(s) and CANARY not in str(s)
    with pytest.raises(ConfigurationError) as info:
        TenantSettings(tenant_id=TID, client_id=CID, client_secret=CANARY, timeout="soon")
    assert CANARY not in str(info.value)


def test_kwargs_override_connection_string_and_unknown_kwarg_refused():
    s = resolve_settings(f"tenant_id={TID}; client_id={CID}; client_secret=a", api="mde")
    assert s.api == "mde" and s.client_secret == "a"
    with pytest.raises(ConfigurationError, match="Unknown setting 'colour'"):
        resolve_settings(tenant_id=TID, client_id=CID, client_secret="a", colour="red")


def test_kwargs_alone_need_no_config_file(tmp_path):
    # cwd is an empty tmp dir: no msticpyconfig.yaml anywhere, and none is needed.
    s = resolve_settings(tenant_id=TID, client_id=CID, client_secret="a")
    assert s.tenant_id == TID


def test_incomplete_kwargs_without_config_say_where_they_looked():
    with pytest.raises(ConfigurationError, match="msticpyconfig.yaml not found"):
        resolve_settings(tenant_id=TID)
