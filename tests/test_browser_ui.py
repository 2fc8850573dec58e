"""The tenant block in a real browser: create, edit, load and test it in Prefect's V1 and V2 UIs.

Headless Chromium (the system's ``chromium`` package, driven by playwright) against one real
``prefect server start`` for the module and the emulator. For each UI and each credential kind (a
plain secret, a new Key Vault block made in the UI, an existing Key Vault block, a certificate pasted
into the form) it fills the create form as a person would, saves, checks the block page (its own
snippet, the Key Vault reference, no secret), loads the block and runs a hunting query, then edits
only the timeout and checks that the credential and the reference survived and still connect.

Screenshots of each create form and block page go to ``$UI_SCREENSHOTS`` (default: pytest's tmp
dir). With ``CAPTURE_UI_PAYLOADS=1`` it also writes what each form sent to tests/data/ui-payloads/
(see its README), which tests/test_blocks_ui_api.py replays against a server without a browser.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from blocks import AzureKeyVaultSecret, DefenderTenant

from .certs import certificate_pem
from .conftest import CANARY
from .prefect_fixtures import _no_default_azure_credential, prefect_server  # noqa: F401
from .ui_driver import PAYLOADS, Captured, chromium_path, open_form, template

CHROMIUM = chromium_path()
try:
    import playwright.sync_api  # noqa: F401

    MISSING = None if CHROMIUM else "no Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)"
except ImportError:
    MISSING = "playwright is not installed (make venv installs the dev extras)"

pytestmark = [pytest.mark.browser, pytest.mark.skipif(MISSING is not None, reason=f"browser test skipped: {MISSING}")]

KINDS = ("secret", "new-kv", "existing-kv", "certificate")
QUERY = "DeviceProcessEvents | take 1"
BLOCK_PAGE = re.compile(r"/blocks/block/[0-9a-f-]{36}$")


@pytest.fixture(scope="module")
def browser(prefect_server):  # noqa: F811
    """One headless Chromium and one browser context for the module (clipboard allowed, for the paste)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so Prefect's dual sync/async
    # methods would hand back coroutines: ``_sync=True`` asks for the sync path.
    DefenderTenant.register_type_and_schema(_sync=True)
    AzureKeyVaultSecret.register_type_and_schema(_sync=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = chromium.new_context(viewport={"width": 1400, "height": 1800}, base_url=prefect_server)
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        context.set_default_timeout(30_000)
        # Loopback only, like every test: the UIs would fetch block logos from a CDN (and V2, analytics).
        context.route(re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|localhost)[:/])"), lambda route: route.abort())
        try:
            yield context
        finally:
            context.close()
            chromium.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    # The page's own errors, shown by pytest when a test fails.
    page.on("console", lambda m: print("CONSOLE", m.type, m.text[:300]) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: print("PAGEERROR", str(e)[:500]))
    yield page
    page.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    directory = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _create_kv_block_in_ui(page, ui: str, emu, name: str, secret_name: str) -> str:
    form = open_form(page, ui, "/blocks/catalog/azure-key-vault-secret/create")
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


def _hunts(tenant: DefenderTenant) -> None:
    AzureKeyVaultSecret.clear_cache()  # a Key Vault reference is read again, through the emulator
    with tenant.get_client() as client:
        assert len(client.run_hunting_query(QUERY)) == 1


def _no_secret_in(page, *secrets: str | None) -> None:
    html, text = page.content(), page.inner_text("body")
    for secret in filter(None, secrets):
        assert secret not in html and secret not in text
    assert "PRIVATE KEY" not in text and "PRIVATE KEY" not in html


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ui", ["v1", "v2"])
def test_create_edit_load_and_hunt_in_the_ui(page, ui, kind, emu, shots):
    AzureKeyVaultSecret.clear_cache()
    name = f"{ui}-{kind}-{uuid.uuid4().hex[:6]}"
    # A tenant and app of its own: its rate limiter (45 hunts a minute by default) is not shared with other tests.
    tenant_id, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), f"{CANARY}-{name}"
    emu.add_tenant(tenant_id)
    values = {"tenant_id": tenant_id, "client_id": client_id, "client_secret": secret, "emulator_url": emu.base_url,
              "ca_bundle": emu.ca_bundle, "block_name": name}
    captured = Captured()
    captured.listen(page)
    pem = kv_name = secret_name = None
    if kind == "certificate":
        # The emulator checks the app's client assertions against this certificate.
        pem = certificate_pem()
        emu.add_app(tenant_id, client_id, certificate=pem)
        values.update(certificate_pem=pem, certificate_pem_one_line=pem.replace("\n", " ").strip())
    else:
        emu.add_app(tenant_id, client_id, client_secret=secret)
    if kind in ("new-kv", "existing-kv"):
        # The vault holds the app's secret; the Key Vault block signs in as the emulator's own app.
        kv_name, secret_name = f"{name}-kv", f"{name}-secret"
        emu.add_secret(secret_name, secret)
        values.update(secret_name=secret_name, kv_block_name=kv_name, kv_sp_tenant_id=emu.tenant_id,
                      kv_sp_client_id=emu.client_id, kv_sp_client_secret=emu.client_secret)
        if kind == "new-kv":
            values["kv_block_id"] = _create_kv_block_in_ui(page, ui, emu, kv_name, secret_name)
        else:
            ref = AzureKeyVaultSecret(
                vault_url=emu.base_url, secret_name=secret_name, sp_tenant_id=emu.tenant_id,
                sp_client_id=emu.client_id, sp_client_secret=emu.client_secret, authority_host=emu.base_url,
                ca_bundle=emu.ca_bundle, allow_custom_endpoints=True,
            )
            values["kv_block_id"] = str(ref.save(kv_name, _sync=True))

    # Create.
    form = open_form(page, ui, "/blocks/catalog/defender-tenant/create")
    form.fill("Block Name" if ui == "v1" else "Name", name)
    form.fill("Tenant ID", tenant_id)
    form.fill("Client ID", client_id)
    form.fill("Authority host override", emu.base_url)
    form.fill("API root override", emu.base_url)
    form.fill("CA bundle", emu.ca_bundle)
    form.switch_on("Allow custom endpoints (proxy, emulator)")
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
    assert create["method"] == "POST" and create["body"]["name"] == name
    values.update(block_schema_id=create["body"]["block_schema_id"], block_type_id=create["body"]["block_type_id"])

    tenant = DefenderTenant.load(name, _sync=True)
    block_id = values["block_id"] = str(tenant._block_document_id)
    assert tenant.credential_kind == ("certificate" if kind == "certificate" else "client_secret")
    if kind == "certificate":
        assert tenant.certificate.get_secret_value() == pem  # line breaks restored from a one-line paste
    if kv_name:
        assert tenant.client_secret_ref._block_document_name == kv_name
    _hunts(tenant)

    # The block page (the UI goes there after saving): its own snippet, the reference, no secret.
    from playwright.sync_api import expect

    page.wait_for_url(BLOCK_PAGE)
    assert page.url.endswith(block_id)
    body = page.locator("body")
    # The page fills in as its requests return: wait for each part rather than for the network.
    expect(body).to_contain_text(f'DefenderTenant.load("{name}")')
    expect(body).to_contain_text("Rate limits")
    if kv_name:
        # V1 links the named Key Vault block; V2 shows the reference's fields (vault and secret name).
        expect(body).to_contain_text(kv_name if ui == "v1" else secret_name)
    page.screenshot(path=str(shots / f"{ui}-{kind}-block-page.png"), full_page=True)
    _no_secret_in(page, secret, emu.client_secret, pem)

    # Edit only the timeout: the credential and the Key Vault reference must survive.
    form = open_form(page, ui, f"/blocks/block/{block_id}/edit")
    expect(form.box("Tenant ID")).to_have_value(tenant_id)  # the saved values are in the form
    _no_secret_in(page, secret, emu.client_secret, pem)
    form.fill("Timeout (seconds)", "30")
    form.save()
    edit = captured.last()
    assert edit["method"] == "PATCH" and edit["path"].endswith(block_id)
    _no_secret_in(page, secret, emu.client_secret, pem)
    edited = DefenderTenant.load(name, _sync=True)
    assert edited.timeout == 30 and edited.credential_kind == tenant.credential_kind
    if kv_name:
        assert edited.client_secret_ref._block_document_name == kv_name
    _hunts(edited)

    if os.environ.get("CAPTURE_UI_PAYLOADS") == "1":
        _write_payloads(ui, kind, captured, values, kv_name)


def _write_payloads(ui: str, kind: str, captured: Captured, values: dict[str, str], kv_name: str | None) -> None:
    PAYLOADS.mkdir(parents=True, exist_ok=True)
    for write in captured.writes:
        names = dict(values)
        if kv_name and write["method"] == "POST" and write["body"].get("name") == kv_name:
            what = "kv-block-create"
            names.update(kv_block_schema_id=write["body"]["block_schema_id"], kv_block_type_id=write["body"]["block_type_id"])
        else:
            what = "create" if write["method"] == "POST" else "edit"
        payload = template(write, names)
        text = json.dumps(payload, indent=2) + "\n"
        # Nothing of this run may stay in the file: every value must have become a placeholder.
        for leftover in ("BEGIN", CANARY, values["emulator_url"], values["block_name"], values["tenant_id"]):
            assert leftover not in text, f"{ui}-{kind}-{what}: {leftover[:12]}... was not replaced"
        (PAYLOADS / f"{ui}-{kind}-{what}.json").write_text(text)
