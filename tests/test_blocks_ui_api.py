"""What the Prefect UI forms send, replayed against a real Prefect server: every tenant loads and connects.

tests/data/ui-payloads/ holds the exact JSON that Prefect 3.9.1's V1 and V2 block forms sent from a
real Chromium (tests/test_browser_ui.py with ``CAPTURE_UI_PAYLOADS=1``; see the README there), for
each credential kind: a plain client secret, a Key Vault block made in the UI, an existing Key Vault
block, a certificate pasted into the form. Each test posts the create form's JSON (and, for an edit,
then patches with the edit form's JSON) to one ``prefect server start`` for the module, exactly as
the browser did, then ``DefenderTenant.load(name)`` must sign in to the emulator and run a hunting
query. No browser is needed: these run in every ``make test``.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from blocks import AzureKeyVaultSecret, DefenderTenant
from connector import ConfigurationError

from .certs import certificate_pem
from .conftest import CANARY
from .prefect_fixtures import _no_default_azure_credential, prefect_server  # noqa: F401
from .ui_driver import PAYLOADS, fill_template

pytestmark = pytest.mark.prefect

UIS = ("v1", "v2")
KINDS = ("secret", "new-kv", "existing-kv", "certificate")
QUERY = "DeviceProcessEvents | take 1"


@pytest.fixture(scope="module")
def api(prefect_server):  # noqa: F811
    """An HTTP client for the server's API, with both block types registered (as ``prefect block register`` does)."""
    DefenderTenant.register_type_and_schema()
    AzureKeyVaultSecret.register_type_and_schema()
    with httpx.Client(base_url=f"{prefect_server}/api", timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def _fresh_key_vault_cache():
    AzureKeyVaultSecret.clear_cache()
    yield
    AzureKeyVaultSecret.clear_cache()


def payload(ui: str, kind: str, what: str, values: dict[str, str]) -> dict:
    """A captured form write with this run's values in place of its placeholders."""
    return fill_template(json.loads((PAYLOADS / f"{ui}-{kind}-{what}.json").read_text()), values)


def send(api: httpx.Client, write: dict) -> httpx.Response:
    """Send a captured write as the browser did (same method, path and JSON body).

    A 503 (Prefect's answer when SQLite stays locked, seen on a loaded machine) is retried a few times, as
    Prefect's own client does.
    """
    for attempt in range(5):
        response = api.request(write["method"], write["path"].removeprefix("/api"), json=write["body"])
        if response.status_code != 503:
            break
        time.sleep(0.5 * (attempt + 1))
    assert response.is_success, f"{response.status_code} {response.text[:500]}"
    return response


def create_from_form(api: httpx.Client, emu, ui: str, kind: str) -> dict[str, str]:
    """Set up the emulator and the server as before the form was filled, then send the form's create JSON.

    Returns the placeholder values of this run (``block_name``, ``block_id``, ``kv_block_name``...).
    """
    name = f"api-{ui}-{kind}-{uuid.uuid4().hex[:6]}"
    # A tenant and app of its own: its rate limiter (45 hunts a minute by default) is not shared with other tests.
    tenant_id, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), f"{CANARY}-{name}"
    emu.add_tenant(tenant_id)
    values = {
        "tenant_id": tenant_id, "client_id": client_id, "client_secret": secret, "emulator_url": emu.base_url,
        "ca_bundle": emu.ca_bundle, "block_name": name,
        "block_schema_id": str(DefenderTenant._block_schema_id), "block_type_id": str(DefenderTenant._block_type_id),
    }
    if kind == "certificate":
        pem = certificate_pem()
        emu.add_app(tenant_id, client_id, certificate=pem)  # assertions are checked against this certificate
        values.update(certificate_pem=pem, certificate_pem_one_line=pem.replace("\n", " ").strip())
    else:
        emu.add_app(tenant_id, client_id, client_secret=secret)
    if kind in ("new-kv", "existing-kv"):
        # The vault holds the app's secret; the Key Vault block signs in as the emulator's own app.
        values.update(kv_block_name=f"{name}-kv", secret_name=f"{name}-secret", kv_sp_tenant_id=emu.tenant_id,
                      kv_sp_client_id=emu.client_id, kv_sp_client_secret=emu.client_secret)
        emu.add_secret(values["secret_name"], secret)
        if kind == "new-kv":
            values.update(kv_block_schema_id=str(AzureKeyVaultSecret._block_schema_id),
                          kv_block_type_id=str(AzureKeyVaultSecret._block_type_id))
            values["kv_block_id"] = send(api, payload(ui, kind, "kv-block-create", values)).json()["id"]
        else:
            values["kv_block_id"] = str(AzureKeyVaultSecret(
                vault_url=emu.base_url, secret_name=values["secret_name"], sp_tenant_id=emu.tenant_id,
                sp_client_id=emu.client_id, sp_client_secret=emu.client_secret, authority_host=emu.base_url,
                ca_bundle=emu.ca_bundle, allow_custom_endpoints=True,
            ).save(values["kv_block_name"]))
    values["block_id"] = send(api, payload(ui, kind, "create", values)).json()["id"]
    return values


def loads_and_hunts(values: dict[str, str], kind: str) -> DefenderTenant:
    """Load the tenant by name as a flow does, check its credential, and run a hunting query with it."""
    AzureKeyVaultSecret.clear_cache()
    tenant = DefenderTenant.load(values["block_name"])
    assert str(tenant._block_document_id) == values["block_id"]
    assert tenant.credential_kind == ("certificate" if kind == "certificate" else "client_secret")
    if kind == "certificate":
        assert tenant.certificate.get_secret_value() == values["certificate_pem"]  # rebuilt from a one-line paste
    if "kv_block_name" in values:
        ref = tenant.client_secret_ref
        assert ref is not None and ref._block_document_name == values["kv_block_name"]
        assert str(ref._block_document_id) == values["kv_block_id"]
    with tenant.get_client() as client:
        assert len(client.run_hunting_query(QUERY)) == 1
    return tenant


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ui", UIS)
def test_created_in_the_form_loads_and_connects(api, emu, ui, kind):
    values = create_from_form(api, emu, ui, kind)
    tenant = loads_and_hunts(values, kind)
    assert tenant.timeout == 210


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ui", UIS)
def test_edited_in_the_form_keeps_its_credential_and_reference(api, emu, ui, kind):
    values = create_from_form(api, emu, ui, kind)
    send(api, payload(ui, kind, "edit", values))  # the form changed only the timeout
    tenant = loads_and_hunts(values, kind)
    assert tenant.timeout == 30
    if "kv_block_name" in values:
        # The link is stored on the server, not only restored in memory by load (V2's edit drops it).
        stored = api.get(f"/block_documents/{values['block_id']}").json()
        assert stored["block_document_references"]["client_secret_ref"]["block_document"]["id"] == values["kv_block_id"]
        assert CANARY not in json.dumps(stored)


def test_v2_edit_drops_the_link_and_masks_the_copy(api, emu):
    # Why the tenant restores links: what the V2 edit form's JSON leaves on the server by itself.
    values = create_from_form(api, emu, "v2", "existing-kv")
    send(api, payload("v2", "existing-kv", "edit", values))
    stored = api.get(f"/block_documents/{values['block_id']}", params={"include_secrets": True}).json()
    assert "client_secret_ref" not in stored["block_document_references"]
    assert stored["data"]["client_secret_ref"]["sp_client_secret"] == "********"


def test_a_masked_copy_of_a_changed_key_vault_block_says_how_to_fix_it(api, emu):
    values = create_from_form(api, emu, "v2", "existing-kv")
    edit = payload("v2", "existing-kv", "edit", values)
    # The Key Vault block changed after the edit form was opened: the masked copy matches no saved block.
    ref = AzureKeyVaultSecret.load(values["kv_block_name"])
    ref.cache_ttl_seconds = 60
    ref.save(values["kv_block_name"], overwrite=True)
    send(api, edit)
    tenant = DefenderTenant.load(values["block_name"])
    assert tenant.client_secret_ref._block_document_id is None
    with pytest.raises(ConfigurationError) as info:
        tenant.get_client()
    message = str(info.value)
    assert "client_secret_ref" in message and "Choose the Key Vault block again" in message
    assert CANARY not in message


def test_a_real_embedded_secret_is_never_replaced_by_a_lookalike_block(api, emu):
    # An embedded Key Vault block with a service principal secret of its own is kept as saved, even where a
    # saved block shows the same (masked) values: its secret may differ.
    values = create_from_form(api, emu, "v2", "existing-kv")
    stored = api.get(f"/block_documents/{values['block_id']}", params={"include_secrets": True}).json()
    data = stored["data"]
    data["client_secret_ref"] = dict(data["client_secret_ref"], sp_client_secret=f"{CANARY}-other")
    send(api, {"method": "PATCH", "path": f"/block_documents/{values['block_id']}",
               "body": {"data": data, "merge_existing_data": False}})
    loaded = DefenderTenant.load(values["block_name"])
    assert loaded.client_secret_ref._block_document_id is None
    assert loaded.client_secret_ref.sp_client_secret.get_secret_value() == f"{CANARY}-other"


def test_async_load_restores_the_link_too(api, emu):
    import asyncio

    values = create_from_form(api, emu, "v2", "new-kv")
    send(api, payload("v2", "new-kv", "edit", values))
    tenant = asyncio.run(DefenderTenant.aload(values["block_name"]))
    assert tenant.client_secret_ref._block_document_name == values["kv_block_name"]
    stored = api.get(f"/block_documents/{values['block_id']}").json()
    assert "client_secret_ref" in stored["block_document_references"]
