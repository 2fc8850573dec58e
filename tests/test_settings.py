"""Settings from keyword arguments and connection strings: aliases, clouds, errors, no secret in repr."""

from __future__ import annotations

import inspect

import pytest

from connector import ConfigurationError, TenantSettings, clouds, connect, resolve_settings
from connector.clouds import endpoints
from connector.settings import KINDS, SECRET_FIELDS, SETTING_FIELDS, canonical_key, parse_connection_string

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
    with pytest.raises(ConfigurationError, match="no credential is given"):
        TenantSettings(tenant_id=TID, client_id=CID)
    with pytest.raises(ConfigurationError, match="client_secret and certificate are set"):
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
    with pytest.raises(ConfigurationError, match="Unknown key 'colour'"):
        resolve_settings(tenant_id=TID, client_id=CID, client_secret="a", colour="red")


def test_kwargs_alone_need_no_config_file(tmp_path):
    # cwd is an empty tmp dir: no msticpyconfig.yaml anywhere, and none is needed.
    s = resolve_settings(tenant_id=TID, client_id=CID, client_secret="a")
    assert s.tenant_id == TID


def test_incomplete_kwargs_without_config_say_where_they_looked():
    with pytest.raises(ConfigurationError, match="msticpyconfig.yaml not found"):
        resolve_settings(tenant_id=TID)


class _Credential:
    """A TokenCredential as azure-core defines it: an object with get_token(*scopes)."""

    def get_token(self, *scopes, **kwargs):  # pragma: no cover - never called here
        raise AssertionError("settings must not fetch tokens")


@pytest.mark.parametrize("key", ["hunting_api", "api", "ApiType", "apiType", "API_TYPE"])
def test_hunting_api_spellings(key):
    s = TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", **{key: "MDATP"})
    assert s.hunting_api == "mde" and s.api == "mde"
    assert resolve_settings(f"tenant_id={TID}; client_id={CID}; client_secret=s; {key}=xdr").hunting_api == "m365d"
    assert resolve_settings(tenant_id=TID, client_id=CID, client_secret="s", **{key: "Graph"}).hunting_api == "graph"


def test_hunting_api_given_twice_is_refused():
    with pytest.raises(ConfigurationError, match="hunting_api is given twice"):
        TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", hunting_api="mde", api="graph")


def test_endpoints_for_each_resource_with_overrides():
    s = TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", cloud="gcc-high",
                       api_root="https://proxy.contoso.com/", mde_root="https://127.0.0.1:9443")
    graph, mde, m365d = (s.endpoints_for(r) for r in clouds.RESOURCES)
    assert (graph.api_root, graph.scope) == ("https://proxy.contoso.com", "https://graph.microsoft.us/.default")
    assert (mde.api_root, mde.scope) == ("https://127.0.0.1:9443", "https://api-gov.securitycenter.microsoft.us/.default")
    assert m365d.api_root == "https://proxy.contoso.com"
    assert {e.authority_host for e in (graph, mde, m365d)} == {"https://login.microsoftonline.us"}
    assert s.endpoints == graph  # hunting_api defaults to graph
    plain = TenantSettings(tenant_id=TID, client_id=CID, client_secret="s")
    assert plain.endpoints_for("mde").api_root == "https://api.securitycenter.microsoft.com"
    with pytest.raises(ConfigurationError, match="graph, mde, m365d"):
        plain.endpoints_for("sentinel")


def test_credential_object_is_a_third_way_and_never_shown():
    cred = _Credential()
    s = TenantSettings(tenant_id=TID, client_id=CID, credential=cred)
    assert s.credential is cred and s.credential_kind == "credential"
    assert "_Credential" not in repr(s)
    assert TenantSettings(tenant_id=TID, client_id=CID, client_secret="x").credential_kind == "client_secret"
    with pytest.raises(ConfigurationError, match="client_secret and credential are set"):
        TenantSettings(tenant_id=TID, client_id=CID, client_secret="x", credential=cred)
    with pytest.raises(ConfigurationError, match="TokenCredential object"):
        TenantSettings(tenant_id=TID, client_id=CID, credential=CANARY)
    with pytest.raises(ConfigurationError, match="credential cannot be given in the connection string"):
        parse_connection_string(f"tenant_id={TID}; client_id={CID}; credential=cli")


def test_connect_with_a_credential_makes_no_network_call():
    # The loopback guard (conftest) fails any lookup: building the client must not sign in.
    with connect(tenant_id=TID, client_id=CID, credential=_Credential()) as client:
        assert client.settings.credential_kind == "credential"


def test_credential_passed_in_replaces_the_connection_strings_secret():
    s = resolve_settings(f"tenant_id={TID}; client_id={CID}; client_secret={CANARY}", credential=_Credential())
    assert s.client_secret is None and s.credential_kind == "credential"


@pytest.mark.parametrize("key", ["UserName", "username", "user_name"])
def test_delegated_username_says_what_to_use_instead(key):
    for build in (
        lambda: TenantSettings(tenant_id=TID, client_id=CID, client_secret="s", **{key: "me@contoso.com"}),
        lambda: resolve_settings(tenant_id=TID, client_id=CID, **{key: "me@contoso.com"}),
        lambda: parse_connection_string(f"tenant_id={TID}; client_id={CID}; {key}=me@contoso.com"),
    ):
        with pytest.raises(ConfigurationError, match="delegated sign-in.*not supported.*AzureCliCredential"):
            build()


def test_one_list_of_fields_drives_every_key():
    names = [f.name for f in SETTING_FIELDS]
    assert names[:2] == ["tenant_id", "client_id"] and len(names) == len(set(names))
    for f in SETTING_FIELDS:
        assert f.kind in KINDS and f.title and f.description
        for key in f.keys:
            assert canonical_key(key) == f.name
        if f.kind == "choice":
            assert f.default in f.choices
    assert set(SECRET_FIELDS) == {"client_secret", "certificate", "private_key", "certificate_passphrase"}
    # Every field that can be text is accepted by the connection string, by its own name.
    text_fields = {f.name for f in SETTING_FIELDS if f.text}
    init = set(inspect.signature(TenantSettings.__init__).parameters) - {"self", "aliases", "name"}
    assert {f.name for f in SETTING_FIELDS} == init and text_fields < init
