"""The tenant block in a real browser: create, edit, load and test it in Prefect's V1 and V2 UIs.

Headless Chromium (the system's ``chromium`` package, driven by playwright) against a real
``prefect server start`` and the emulator. For each UI and each credential kind (a plain secret, a
new Key Vault reference made in the UI, an existing Key Vault block, a certificate pasted into the
form) it creates the tenant, edits its timeout, loads it and runs a hunting query; the secret never
appears in a page. Screenshots of the create form and the block page go to ``$UI_SCREENSHOTS``
(default: pytest's tmp dir). With ``CAPTURE_UI_PAYLOADS=1`` it also writes what each form sent to
tests/data/ui-payloads/ (see its README), replayed by tests/test_blocks_ui_api.py.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from blocks import AzureKeyVaultSecret, DefenderTenant

from .certs import certificate_pem
from .prefect_fixtures import _no_default_azure_credential, prefect_server  # noqa: F401
from .ui_driver import PAYLOADS, Captured, Form, chromium_path, template, ui_path

CHROMIUM = chromium_path()
try:
    import playwright.sync_api  # noqa: F401

    MISSING = None if CHROMIUM else "no Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)"
except ImportError:
    MISSING = "playwright is not installed (make venv installs the dev extras)"

pytestmark = [pytest.mark.browser, pytest.mark.skipif(MISSING is not None, reason=f"browser test skipped: {MISSING}")]

KINDS = ("secret", "new-kv", "existing-kv", "certificate")
QUERY = "DeviceProcessEvents | take 1"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, prefect_server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1800}, base_url=prefect_server)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    directory = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _fill_connection(form: Form, emu, tenant_id: str, client_id: str) -> None:
    form.fill("Tenant ID", tenant_id)
    form.fill("Client ID", client_id)
    form.fill("Authority host override", emu.base_url)
    form.fill("API root override", emu.base_url)
    form.fill("CA bundle", emu.ca_bundle)
    form.switch_on("Allow custom endpoints (proxy, emulator)")


def _create_kv_block_in_ui(page, ui: str, emu, name: str, secret_name: str, captured: Captured) -> str:
    page.goto(ui_path(ui, "/blocks/catalog/azure-key-vault-secret/create"))
    page.wait_for_load_state("networkidle")
    form = Form(page, ui)
    form.fill("Block Name" if ui == "v1" else "Name", name)
    form.fill("Vault URL", emu.base_url)
    form.fill("Secret name", secret_name)
    form.fill("Service principal tenant ID", emu.tenant_id)
    form.fill("Service principal client ID", emu.client_id)
    form.fill("Service principal client secret", emu.client_secret)
    form.fill("Authority host", emu.base_url)
    form.fill("CA bundle", emu.ca_bundle)
    form.switch_on("Allow custom endpoints (proxy, emulator)")
    form.save()
    return str(AzureKeyVaultSecret.load(name, _sync=True)._block_document_id)


# Playwright's sync API keeps an event loop running in this thread, so Prefect's dual sync/async
# methods would hand back coroutines: ``_sync=True`` asks for the sync path.
@pytest.mark.parametrize("ui", ["v1", "v2"])
@pytest.mark.parametrize("kind", KINDS)
def test_create_edit_load_and_hunt_in_the_ui(page, ui, kind, emu, shots):
    DefenderTenant.register_type_and_schema(_sync=True)
    AzureKeyVaultSecret.register_type_and_schema(_sync=True)
    AzureKeyVaultSecret.clear_cache()
    name = f"{ui}-{kind}-{uuid.uuid4().hex[:6]}"
    tenant_id, client_id, secret = emu.tenant_id, emu.client_id, emu.client_secret
    pem = None
    captured = Captured()
    captured.listen(page)
    values = {"tenant_id": tenant_id, "client_id": client_id, "client_secret": secret, "emulator_url": emu.base_url,
              "ca_bundle": emu.ca_bundle, "block_name": name}
    kv_name = None
    if kind == "certificate":
        client_id = str(uuid.uuid4())
        emu.add_app(tenant_id, client_id, certificate=True)
        pem = certificate_pem()
        values.update(client_id=client_id, certificate_pem=pem, certificate_pem_one_line=pem.replace("\n", " ").strip())
    elif kind in ("new-kv", "existing-kv"):
        kv_name = f"{name}-kv"
        emu.add_secret(f"{name}-secret", secret)
        values["secret_name"] = f"{name}-secret"
        values["kv_block_name"] = kv_name
        if kind == "new-kv":
            values["kv_block_id"] = _create_kv_block_in_ui(page, ui, emu, kv_name, f"{name}-secret", captured)
        else:
            ref = AzureKeyVaultSecret(
                vault_url=emu.base_url, secret_name=f"{name}-secret", sp_tenant_id=emu.tenant_id,
                sp_client_id=emu.client_id, sp_client_secret=secret, authority_host=emu.base_url,
                ca_bundle=emu.ca_bundle, allow_custom_endpoints=True,
            )
            values["kv_block_id"] = str(ref.save(kv_name, _sync=True))

    page.goto(ui_path(ui, "/blocks/catalog/defender-tenant/create"))
    page.wait_for_load_state("networkidle")
    form = Form(page, ui)
    form.fill("Block Name" if ui == "v1" else "Name", name)
    _fill_connection(form, emu, tenant_id, client_id)
    if kind == "secret":
        form.fill("Client secret", secret)
        # V2 masks the input; V1 has no masked input for any field (its own Secret block included).
        assert form.input_type("Client secret") == ("password" if ui == "v2" else "textarea")
    elif kind == "certificate":
        form.paste("Certificate (PEM)", pem)
    else:
        form.pick_block("Client secret in Key Vault", kv_name)
    page.screenshot(path=str(shots / f"{ui}-{kind}-create-form.png"), full_page=True)
    form.save()
    create = captured.last()
    assert create["method"] == "POST"
    values.update(block_schema_id=create["body"]["block_schema_id"], block_type_id=create["body"]["block_type_id"])

    tenant = DefenderTenant.load(name, _sync=True)
    assert tenant.credential_kind == ("certificate" if kind == "certificate" else "client_secret")
    if kind == "certificate":
        assert tenant.certificate.get_secret_value() == pem  # line breaks restored
    with tenant.get_client() as client:
        assert len(client.run_hunting_query(QUERY)) == 1

    # The block page: no secret, a link to the Key Vault block, the snippet with this block's name.
    block_id = str(tenant._block_document_id)
    values["block_id"] = block_id
    page.goto(ui_path(ui, f"/blocks/block/{block_id}"))
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shots / f"{ui}-{kind}-block-page.png"), full_page=True)
    text = page.content()
    assert secret not in text and (pem is None or "PRIVATE KEY" not in page.inner_text("body"))
    assert 'DefenderTenant.load("BLOCK_NAME")' in DefenderTenant.get_code_example()
    if kv_name:
        assert kv_name in page.inner_text("body")

    # Edit: only the timeout. The credential and the reference must survive.
    page.goto(ui_path(ui, f"/blocks/block/{block_id}/edit"))
    page.wait_for_load_state("networkidle")
    form = Form(page, ui)
    form.fill("Timeout (seconds)", "30")
    form.save()
    edit = captured.last()
    assert edit["method"] == "PATCH"
    assert secret not in page.content()
    edited = DefenderTenant.load(name, _sync=True)
    assert edited.timeout == 30 and edited.credential_kind == tenant.credential_kind
    if kv_name:
        ref = edited.client_secret_ref
        assert ref is not None and ref._block_document_name == kv_name
    AzureKeyVaultSecret.clear_cache()
    with edited.get_client() as client:
        assert len(client.run_hunting_query(QUERY)) == 1

    if os.environ.get("CAPTURE_UI_PAYLOADS") == "1":
        PAYLOADS.mkdir(parents=True, exist_ok=True)
        for write in captured.writes:
            is_kv = kv_name is not None and (write["body"].get("name") == kv_name or write["path"].endswith(values.get("kv_block_id", "-")))
            what = "kv-block-create" if is_kv else ("create" if write["method"] == "POST" else "edit")
            out = PAYLOADS / f"{ui}-{kind}-{what}.json"
            out.write_text(json.dumps(template(write, values), indent=2) + "\n")
