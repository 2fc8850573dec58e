"""msticpyconfig.yaml: MSTICPy's own files, named instances, secret references and clear errors."""

from __future__ import annotations

import shutil
import time

import pytest

from connector import ConfigurationError, resolve_settings
from connector.msticpyconfig import EnvironmentSecret, KeyVaultSecret, read_config

from .conftest import CANARY

CONFIG = """
KeyVault:
  VaultName: soc-vault
  TenantId: 72f988bf-86f1-41af-91ab-2d7cd011db49
DataProviders:
  MicrosoftDefender:
    Args:
      TenantId: 11111111-1111-4111-8111-111111111111
      ClientId: 22222222-2222-4222-8222-222222222222
      ClientSecret: {secret}
  MicrosoftDefender-Tenant2:
    Args:
      tenantid: 33333333-3333-4333-8333-333333333333
      CLIENTID: 44444444-4444-4444-8444-444444444444
      ClientSecret:
        KeyVault:
      Cloud: GCC-High
      ApiType: MDE
  MicrosoftDefender-Tenant3:
    Args:
      TenantId: 55555555-5555-4555-8555-555555555555
      ClientId: 66666666-6666-4666-8666-666666666666
      ClientSecret:
        EnvironmentVar: TENANT3_SECRET
  MicrosoftDefender-Tenant4:
    Args:
      TenantId: 77777777-7777-4777-8777-777777777777
      ClientId: 88888888-8888-4888-8888-888888888888
      ClientSecret:
        KeyVault: other-vault/t4-secret
  AzureCLI:
    Args:
      auth_methods: [cli]
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(CONFIG.format(secret=CANARY))
    return path


@pytest.mark.parametrize(
    "name", ["msticpy-tests-testdata-msticpyconfig.yaml", "msticpy-tests-testdata-msticpyconfig-nokusto.yaml", "msticpy-tests-msticpyconfig-test.yaml"]
)
def test_msticpys_own_test_configs_load(samples, tmp_path, monkeypatch, name):
    shutil.copy(samples / name, tmp_path / "msticpyconfig.yaml")
    monkeypatch.setenv("IPSTACK_AUTH", CANARY)
    settings = resolve_settings()  # found as ./msticpyconfig.yaml
    assert settings.tenant_id == "8360dd21-0294-4240-9128-89611f415c53"
    assert settings.client_id == "66b9818a-26cd-4584-8eb0-7f7a499242aa"
    assert settings.client_secret == CANARY and settings.api == "graph" and settings.cloud == "global"


def test_env_var_secret_unset_names_the_variable(samples, tmp_path):
    shutil.copy(samples / "msticpy-tests-testdata-msticpyconfig.yaml", tmp_path / "msticpyconfig.yaml")
    with pytest.raises(ConfigurationError, match="IPSTACK_AUTH"):
        resolve_settings()


def test_found_through_msticpyconfig_variable(config_file, monkeypatch, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    monkeypatch.setenv("MSTICPYCONFIG", str(config_file))
    assert resolve_settings().tenant_id == "11111111-1111-4111-8111-111111111111"


def test_named_instances_keys_case_insensitive_and_cloud_honoured(config_file):
    config = read_config(config_file)
    t2 = config.instance("tenant2")  # instance names match case-insensitively
    assert t2.settings == {
        "tenant_id": "33333333-3333-4333-8333-333333333333",
        "client_id": "44444444-4444-4444-8444-444444444444",
        "cloud": "GCC-High",
        "hunting_api": "MDE",
    }
    # MSTICPy's default Key Vault secret name is the setting's path with '-' for punctuation.
    assert t2.secrets["client_secret"] == KeyVaultSecret(
        vault_url="https://soc-vault.vault.azure.net", secret_name="DataProviders-MicrosoftDefender-Tenant2-Args-ClientSecret"
    )
    assert config.instance("Tenant3").secrets["client_secret"] == EnvironmentSecret("TENANT3_SECRET")
    assert config.instance("Tenant4").secrets["client_secret"] == KeyVaultSecret(
        vault_url="https://other-vault.vault.azure.net", secret_name="t4-secret"
    )


def test_kwargs_override_the_file(config_file, monkeypatch):
    monkeypatch.setenv("TENANT3_SECRET", "from-env")
    s = resolve_settings(instance="Tenant3", config_path=config_file, api="m365d", cloud="dod")
    assert (s.api, s.cloud, s.client_secret, s.name) == ("m365d", "dod", "from-env", "Tenant3")
    s = resolve_settings(instance="Tenant3", config_path=config_file, client_secret="override")
    assert s.client_secret == "override"


def test_unknown_instance_lists_the_instances_found(config_file):
    with pytest.raises(ConfigurationError, match=r"Unknown instance 'Tenant9'.*default, Tenant2, Tenant3, Tenant4"):
        resolve_settings(instance="Tenant9", config_path=config_file)


def test_missing_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("MSTICPYCONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigurationError, match=r"not found \(looked at: .*nope.yaml, .*msticpyconfig.yaml\)"):
        resolve_settings()


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text("DataProviders:\n  MicrosoftDefender:\n    Args: [unclosed\n  Other: 1\n")
    with pytest.raises(ConfigurationError, match=r"msticpyconfig.yaml is not valid YAML at line \d+, column \d+"):
        resolve_settings()


def test_unknown_arg_is_named_and_secret_never_echoed(tmp_path):
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(CONFIG.format(secret=CANARY).replace("      ClientSecret: " + CANARY, f"      ClientSecret: {CANARY}\n      Colour: red"))
    with pytest.raises(ConfigurationError) as info:
        resolve_settings()
    assert "Colour" in str(info.value) and CANARY not in str(info.value)


def test_keyvault_reference_without_vault_is_a_clear_error(tmp_path):
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(CONFIG.format(secret="x").replace("  VaultName: soc-vault\n", ""))
    with pytest.raises(ConfigurationError, match="no KeyVault.VaultName"):
        read_config(path)


def test_missing_section_lists_instances(tmp_path):
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text("DataProviders:\n  MicrosoftDefender-Only:\n    Args: {TenantId: t, ClientId: c, ClientSecret: s}\n")
    with pytest.raises(ConfigurationError, match="instances found: Only"):
        resolve_settings()


# --- where the file is found (MSTICPy's order) ---

GOOD = "DataProviders:\n  MicrosoftDefender:\n    Args: {{TenantId: {tid}, ClientId: 22222222-2222-4222-8222-222222222222, ClientSecret: s}}\n"
T_HOME, T_CWD, T_ENV = (f"{d}1111111-1111-4111-8111-111111111111" for d in "abc")


def test_home_msticpy_folder_is_searched_last(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".msticpy").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / ".msticpy" / "msticpyconfig.yaml").write_text(GOOD.format(tid=T_HOME))
    assert resolve_settings().tenant_id == T_HOME
    (tmp_path / "msticpyconfig.yaml").write_text(GOOD.format(tid=T_CWD))  # cwd is tmp_path
    assert resolve_settings().tenant_id == T_CWD
    env = tmp_path / "env.yaml"
    env.write_text(GOOD.format(tid=T_ENV))
    monkeypatch.setenv("MSTICPYCONFIG", str(env))
    assert resolve_settings().tenant_id == T_ENV


def test_not_found_lists_the_home_location_too(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
    with pytest.raises(ConfigurationError, match=r"looked at: .*msticpyconfig.yaml, .*nobody/.msticpy/msticpyconfig.yaml"):
        resolve_settings()


# --- an untrusted file cannot exhaust the process ---

def _refused(tmp_path, text: str | bytes, match: str) -> ConfigurationError:
    path = tmp_path / "msticpyconfig.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    started = time.perf_counter()
    with pytest.raises(ConfigurationError, match=match) as info:
        read_config(path)
    assert time.perf_counter() - started < 2.0
    return info.value


def test_alias_bomb_in_args_is_refused_quickly(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    bomb += "DataProviders:\n  MicrosoftDefender:\n    Args:\n      TenantId: *i\n"
    _refused(tmp_path, bomb, r"refused at line \d+: an alias \(\*name\) repeats a whole mapping or list")


def test_alias_to_a_single_value_is_fine(tmp_path):
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(
        "Common: {tenant: &tenant 11111111-1111-4111-8111-111111111111}\n"
        "DataProviders:\n  MicrosoftDefender:\n    Args: {TenantId: *tenant, ClientId: 22222222-2222-4222-8222-222222222222, "
        "ClientSecret: s}\n"
    )
    assert read_config(path).instance().settings["tenant_id"] == "11111111-1111-4111-8111-111111111111"


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_is_a_configuration_error_not_a_recursion_error(tmp_path, style):
    depth = 900
    text = "[" * depth + "]" * depth if style == "flow" else "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"
    _refused(tmp_path, text, "nests deeper than 50 levels")


def test_oversized_file_is_refused_without_reading_it_all(tmp_path):
    _refused(tmp_path, b"# padding\n" * 200_000, r"larger than 1024 KiB")


def test_not_utf8_is_a_configuration_error(tmp_path):
    _refused(tmp_path, b"DataProviders: \xff\xfe\n", "not UTF-8")


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path):
    _refused(tmp_path, "DataProviders:\n  MicrosoftDefender:\n    Args:\n      TenantId: a\n      TenantId: b\n",
             "refused at line 5: a key appears twice")


def test_two_spellings_of_one_setting_are_refused(tmp_path):
    _refused(tmp_path, "DataProviders:\n  MicrosoftDefender:\n    Args:\n      TenantId: a\n      Tenant_Id: b\n",
             "sets tenant_id twice .as TenantId and as Tenant_Id.")


def test_username_is_refused_with_what_to_use_instead(tmp_path):
    _refused(tmp_path, "DataProviders:\n  MicrosoftDefender:\n    Args:\n      UserName: me@contoso.com\n",
             "'UserName' .delegated sign-in.*not supported.*AzureCliCredential")


# --- values are checked by TenantSettings, never echoed when they fail ---

@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "0", "nan", "'inf'"])
def test_timeout_nan_or_inf_in_yaml_is_refused(tmp_path, value):
    (tmp_path / "msticpyconfig.yaml").write_text(GOOD.format(tid=T_CWD).replace("ClientSecret: s", f"ClientSecret: s, Timeout: {value}"))
    with pytest.raises(ConfigurationError, match="timeout .*must be a number of seconds greater than 0"):
        resolve_settings()


def test_verify_false_in_yaml_says_verification_cannot_be_turned_off(tmp_path):
    (tmp_path / "msticpyconfig.yaml").write_text(GOOD.format(tid=T_CWD).replace("ClientSecret: s", "ClientSecret: s, verify: false"))
    with pytest.raises(ConfigurationError, match="cannot be turned off.*ca_bundle="):
        resolve_settings()


def test_inline_pem_certificate_never_printed_by_repr(tmp_path):
    pem = f"-----BEGIN CERTIFICATE-----\\nMIIB{CANARY}\\n-----END CERTIFICATE-----\\n-----BEGIN PRIVATE KEY-----\\n{CANARY}\\n-----END PRIVATE KEY-----\\n"
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(
        "DataProviders:\n  MicrosoftDefender:\n    Args:\n      TenantId: 11111111-1111-4111-8111-111111111111\n"
        f"      ClientId: 22222222-2222-4222-8222-222222222222\n      Certificate: \"{pem}\"\n      PrivateKey: \"{pem}\"\n"
        f"      PrivateKeySecret: {CANARY}\n"
    )
    config = read_config(path)
    instance = config.instance()
    assert CANARY in instance.settings["certificate"]  # kept for the caller...
    for text in (repr(config), str(config), repr(instance), str(instance)):
        assert CANARY not in text and "PRIVATE KEY" not in text  # ...but never shown
    assert "certificate" in repr(instance) and "<redacted>" in repr(instance)


def test_a_file_of_many_tiny_values_is_refused_quickly(tmp_path):
    _refused(tmp_path, "[" + "1," * 400_000 + "1]", "more than 20,000 values")


def test_msticpys_full_test_config_is_well_inside_the_limits(samples):
    from connector.msticpyconfig import MAX_CONFIG_NODES, load_yaml

    data = load_yaml(samples / "msticpy-tests-testdata-msticpyconfig.yaml")

    def count(value) -> int:
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        return 1 + sum(count(v) for v in children) + (len(value) if isinstance(value, dict) else 0)

    assert count(data) < MAX_CONFIG_NODES // 10


def test_every_text_setting_is_read_from_the_file_by_its_msticpy_key(tmp_path):
    from connector import msticpyconfig
    from connector.settings import SETTING_FIELDS

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")  # settings check it is readable
    values = {
        "TenantId": "contoso.onmicrosoft.com", "ClientId": "22222222-2222-4222-8222-222222222222",
        "ClientSecret": "s", "ApiType": "MDATP", "Cloud": "gcc", "AuthorityHost": "https://login.example",
        "apiRoot": "https://proxy.example", "GraphRoot": "https://graph.example", "MdeRoot": "https://mde.example",
        "M365dRoot": "https://xdr.example", "CaBundle": str(ca), "Timeout": 30,
    }
    body = "".join(f"      {k}: {v}\n" for k, v in values.items())
    (tmp_path / "msticpyconfig.yaml").write_text(f"DataProviders:\n  MicrosoftDefender:\n    Args:\n{body}")
    s = resolve_settings()
    assert (s.tenant_id, s.hunting_api, s.cloud, s.authority_host, s.api_root) == (
        "contoso.onmicrosoft.com", "mde", "gcc", "https://login.example", "https://proxy.example")
    assert (s.graph_root, s.mde_root, s.m365d_root, s.ca_bundle, s.timeout) == (
        "https://graph.example", "https://mde.example", "https://xdr.example", str(ca), 30.0)
    for f in SETTING_FIELDS:  # the module's documentation names every key it reads
        if f.text:
            assert f"``{f.msticpy_key}``" in msticpyconfig.__doc__, f.msticpy_key
