"""``defender-soar tenants``: import / list / add / test / remove against the Prefect harness and the emulator."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from typer.testing import CliRunner

from blocks import AzureKeyVaultSecret, DefenderTenant
from blocks.msticpy_import import load_or_none
from flows.cli import app

from .conftest import CANARY
from .prefect_fixtures import BIN, ROOT, _no_default_azure_credential, prefect_api  # noqa: F401

CONFIG = """
KeyVault:
  VaultName: {base}
DataProviders:
  MicrosoftDefender:
    Args:
      TenantId: {tid1}
      ClientId: {cid1}
      ClientSecret: {secret}
  MicrosoftDefender-Tenant2:
    Args:
      TenantId: {tid2}
      ClientId: {cid2}
      ClientSecret:
        KeyVault: tenant2-defender-secret
      ApiType: MDE
  MicrosoftDefender-Tenant3:
    Args:
      TenantId: {tid3}
      ClientId: {cid3}
      ClientSecret:
        EnvironmentVar: TENANT3_SECRET
"""


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def emulator_flags(emu) -> list[str]:
    return ["--authority-host", emu.base_url, "--api-root", emu.base_url, "--ca-bundle", emu.ca_bundle,
            "--allow-custom-endpoints"]


def kv_flags(emu) -> list[str]:
    return ["--kv-sp-tenant-id", emu.tenant_id, "--kv-sp-client-id", emu.client_id, "--kv-sp-client-secret", emu.client_secret]


@pytest.fixture
def three_tenants(emu, tmp_path, monkeypatch):
    """A msticpyconfig.yaml with a plain, a Key Vault and an environment-variable secret, each a tenant on the emulator."""
    ids = {}
    for n in (1, 2, 3):
        tid, cid = str(uuid.uuid4()), str(uuid.uuid4())
        emu.add_tenant(tid)
        emu.add_app(tid, cid, client_secret=CANARY)
        ids[f"tid{n}"], ids[f"cid{n}"] = tid, cid
    emu.add_secret("tenant2-defender-secret", CANARY)
    monkeypatch.setenv("TENANT3_SECRET", CANARY)
    path = tmp_path / "msticpyconfig.yaml"
    path.write_text(CONFIG.format(base=emu.base_url, secret=CANARY, **ids))
    AzureKeyVaultSecret.clear_cache()
    return path, ids


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_import_three_instances_then_test_each(emu, three_tenants, monkeypatch, all_logs):
    path, ids = three_tenants
    args = ["tenants", "import", str(path), *emulator_flags(emu), *kv_flags(emu)]
    outputs = []

    dry = run(*args, "--dry-run")
    outputs.append(dry.output)
    assert dry.exit_code == 0, dry.output
    assert "Dry run: nothing saved" in dry.output and "would create" in dry.output
    assert load_or_none(DefenderTenant, "tenant3") is None

    first = run(*args)
    outputs.append(first.output)
    assert first.exit_code == 0, first.output
    for ref in ("defender-tenant/default", "defender-tenant/tenant2", "defender-tenant/tenant3",
                "azure-key-vault-secret/tenant2-client-secret"):
        assert f"created       {ref}" in first.output
    assert "environment variable TENANT3_SECRET" in first.output and "stored in the block" in first.output
    assert "Key Vault reference azure-key-vault-secret/tenant2-client-secret" in first.output

    tenant2 = DefenderTenant.load("tenant2")
    assert tenant2.api == "mde" and tenant2.client_secret is None
    assert tenant2.client_secret_ref.secret_name == "tenant2-defender-secret"
    assert tenant2.client_secret_ref._block_document_name == "tenant2-client-secret"
    assert DefenderTenant.load("tenant3").client_secret.get_secret_value() == CANARY
    assert DefenderTenant.load("default").tenant_id == ids["tid1"]

    again = run(*args)
    outputs.append(again.output)
    assert again.exit_code == 0 and again.output.count("unchanged") == 4, again.output

    listed = run("tenants", "list")
    outputs.append(listed.output)
    assert listed.exit_code == 0
    rows = {line.split()[0]: line for line in listed.output.splitlines()[2:]}
    assert ids["tid2"] in rows["tenant2"] and "mde" in rows["tenant2"]
    assert "Key Vault" in rows["tenant2"] and "tenant2-defender-secret" in rows["tenant2"]
    assert "client secret (stored in the block)" in rows["tenant3"] and "graph" in rows["default"]
    # Other modules' tenants may share the session's server: look at the three imported here.
    assert all(rows[n].endswith(" ok") and "custom allowed: 127.0.0.1:" in rows[n] for n in ("default", "tenant2", "tenant3"))

    for name, api in (("default", "graph"), ("tenant2", "mde"), ("tenant3", "graph")):
        tested = run("tenants", "test", name)
        outputs.append(tested.output)
        assert tested.exit_code == 0, tested.output
        assert f"API:       {api}" in tested.output and "endpoint:  127.0.0.1:" in tested.output
        assert "token:     ok (" in tested.output and "1 row(s) in" in tested.output and "OK:" in tested.output

    monkeypatch.setenv("TENANT3_SECRET", "rotated")
    refused = run(*args)  # an overwrite is confirmed first; no terminal here: nothing changes
    outputs.append(refused.output)
    assert refused.exit_code == 1 and "defender-tenant/tenant3 exists and would be overwritten" in refused.output
    assert "pass --overwrite" in refused.output
    assert DefenderTenant.load("tenant3").client_secret.get_secret_value() == CANARY
    rotated = run(*args, "--overwrite")
    outputs.append(rotated.output)
    assert "updated       defender-tenant/tenant3" in rotated.output
    assert "unchanged     defender-tenant/default" in rotated.output

    for text in outputs + [all_logs.text]:
        assert CANARY not in text


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_add_test_remove_and_failures(emu, all_logs):
    outputs = []
    emu.add_secret("acme-secret", emu.client_secret)
    base = ["--tenant-id", emu.tenant_id, "--client-id", emu.client_id, *emulator_flags(emu)]

    added = run("tenants", "add", "acme", *base, "--client-secret-ref", f"{emu.base_url}/secrets/acme-secret",
                "--api", "M365D", *kv_flags(emu), "--hunting-per-minute", "1000", "--overwrite")
    outputs.append(added.output)
    assert added.exit_code == 0, added.output
    assert "Saved azure-key-vault-secret/acme-client-secret" in added.output and "Saved defender-tenant/acme" in added.output
    tested = run("tenants", "test", "acme")
    outputs.append(tested.output)
    assert tested.exit_code == 0 and "API:       m365d" in tested.output and "key vault: ok" in tested.output, tested.output
    assert DefenderTenant.load("acme").rate_limits.hunting_per_minute == 1000

    again = run("tenants", "add", "acme", *base, "--client-secret", "x")
    assert again.exit_code == 1 and "already exists; pass --overwrite" in again.output

    wrong = run("tenants", "add", "wrong-secret", *base, "--client-secret", "-", "--overwrite", input=CANARY + "\n")
    assert wrong.exit_code == 0, wrong.output
    assert DefenderTenant.load("wrong-secret").client_secret.get_secret_value() == CANARY
    failed = run("tenants", "test", "wrong-secret")
    outputs.append(failed.output)
    assert failed.exit_code == 1
    assert "FAILED: AuthenticationError:" in failed.output and emu.tenant_id in failed.output

    removed = run("tenants", "remove", "acme", "--yes")
    assert removed.exit_code == 0, removed.output
    assert "Removed defender-tenant/acme" in removed.output and "Removed azure-key-vault-secret/acme-client-secret" in removed.output
    assert load_or_none(AzureKeyVaultSecret, "acme-client-secret") is None
    gone = run("tenants", "test", "acme")
    assert gone.exit_code == 1 and "FAILED: ConfigurationError: No defender-tenant block named 'acme'" in gone.output
    assert run("tenants", "remove", "acme", "--yes").exit_code == 1

    for text in outputs + [all_logs.text]:
        assert CANARY not in text


def _v2_edit(name: str) -> None:
    """What Prefect's V2 edit form does to a tenant: send back the data as shown, a linked block inlined and masked."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    with httpx.Client(base_url=PREFECT_API_URL.value(), timeout=30) as http:
        document = http.get(f"/block_types/slug/defender-tenant/block_documents/name/{name}").json()
        answer = http.patch(f"/block_documents/{document['id']}",
                            json={"data": document["data"], "merge_existing_data": False})
        assert answer.status_code == 204, answer.text


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_list_and_test_after_the_v2_edit_form_dropped_a_key_vault_link(emu, all_logs):
    base = ["--tenant-id", emu.tenant_id, "--client-id", emu.client_id, *emulator_flags(emu), "--overwrite"]
    for name in ("v2edit-same", "v2edit-changed"):
        emu.add_secret(f"{name}-secret", emu.client_secret)
        added = run("tenants", "add", name, *base, "--client-secret-ref", f"{emu.base_url}/secrets/{name}-secret",
                    *kv_flags(emu))
        assert added.exit_code == 0, added.output
        _v2_edit(name)
    # The second tenant's Key Vault block changed after the edit: its masked copy matches no saved block.
    ref = AzureKeyVaultSecret.load("v2edit-changed-client-secret")
    ref.cache_ttl_seconds = 7
    ref.save("v2edit-changed-client-secret", overwrite=True)

    listed = run("tenants", "list")
    rows = {line.split()[0]: line for line in listed.output.splitlines() if line.startswith("v2edit-")}
    assert "block v2edit-same-client-secret" in rows["v2edit-same"] and rows["v2edit-same"].rstrip().endswith("ok")
    assert "BROKEN: client_secret_ref is a Key Vault block copy with a masked secret" in rows["v2edit-changed"]
    assert run("tenants", "test", "v2edit-same").exit_code == 0
    failed = run("tenants", "test", "v2edit-changed")
    assert failed.exit_code == 1 and "Choose the Key Vault block again" in failed.output, failed.output
    assert CANARY not in listed.output + failed.output + all_logs.text


def test_usage_errors_exit_2_with_the_rule():
    bad_name = run("tenants", "add", "Acme_Corp", "--tenant-id", "t", "--client-id", "c", "--client-secret", "x")
    assert bad_name.exit_code == 2
    assert "lowercase letters, digits and dashes" in bad_name.output and "acme-corp" in bad_name.output
    two = run("tenants", "add", "acme", "--tenant-id", "t", "--client-id", "c", "--client-secret", "x",
              "--client-secret-ref", "https://v.vault.azure.net/secrets/s")
    assert two.exit_code == 2 and "exactly one" in two.output
    assert run("tenants", "test", "Bad_Name").exit_code == 2
    assert run("tenants", "frobnicate").exit_code == 2


def test_import_errors_are_one_line(tmp_path, monkeypatch):
    path = tmp_path / "msticpyconfig.yaml"
    ids = {f"{k}{n}": str(uuid.uuid4()) for k in ("tid", "cid") for n in (1, 2, 3)}
    path.write_text(CONFIG.format(base="https://127.0.0.1:9", secret=CANARY, **ids))
    result = run("tenants", "import", str(path), "--dry-run", "--allow-custom-endpoints")  # TENANT3_SECRET is not set: fails before any save
    assert result.exit_code == 1
    assert result.output.strip() == (
        "ConfigurationError: Environment variable TENANT3_SECRET (named in msticpyconfig.yaml) is not set."
    )
    missing = run("tenants", "import", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 1 and missing.output.startswith("ConfigurationError: msticpyconfig.yaml not found")
    assert CANARY not in result.output + missing.output


@pytest.mark.parametrize("args", [["--help"], ["tenants", "--help"], *[["tenants", c, "--help"] for c in ("import", "list", "add", "test", "remove")]])
def test_every_command_has_help(args):
    result = run(*args)
    assert result.exit_code == 0 and "Usage:" in result.output


def test_console_script_runs():
    result = subprocess.run([str(BIN / "defender-soar"), "tenants", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "import" in result.stdout and "remove" in result.stdout


def test_unreachable_prefect_api_is_one_line():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        result = run("tenants", "list")
    assert result.exit_code == 1
    assert result.output.startswith("ConnectError: cannot reach the Prefect API at http://127.0.0.1:9/api")
