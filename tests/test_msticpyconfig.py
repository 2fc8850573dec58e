"""msticpyconfig.yaml: MSTICPy's own files, named instances, secret references and clear errors."""

from __future__ import annotations

import shutil

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
