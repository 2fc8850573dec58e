"""Drive Prefect 3.9.1's block forms (V1 at /, V2 at /v2) in headless Chromium, as a person would.

Used by tests/test_browser_ui.py, and to capture the JSON each form sends
(tests/data/ui-payloads/README.md). Playwright runs the system's Chromium (``/usr/bin/chromium``):
no browser is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
PAYLOADS = Path(__file__).parent / "data" / "ui-payloads"


def chromium_path() -> str | None:
    """The system Chromium, or None (``$CHROMIUM`` wins)."""
    candidates = [os.environ.get("CHROMIUM", "")] + list(CHROMIUM_PATHS) + [shutil.which("chromium") or ""]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@dataclass
class Captured:
    """Block-document writes (POST/PATCH) the page sent, in order."""

    writes: list[dict] = field(default_factory=list)

    def listen(self, page) -> None:
        def on_request(request) -> None:
            path = request.url.split("/api/", 1)[-1]
            if request.method in ("POST", "PATCH") and re.fullmatch(r"block_documents/?([0-9a-f-]{36})?", path):
                self.writes.append({"method": request.method, "path": "/api/" + path, "body": request.post_data_json})

        page.on("request", on_request)

    def last(self) -> dict:
        assert self.writes, "the form sent nothing"
        return self.writes[-1]


class Form:
    """One block form, found by the titles Prefect prints above each input (both UIs)."""

    def __init__(self, page, ui: str) -> None:
        self.page, self.ui = page, ui

    def _label(self, title: str, nth: int = 0):
        pattern = re.compile(rf"^\s*{re.escape(title)}( \(Optional\))?\s*$")
        return self.page.locator("label").filter(has_text=pattern).nth(nth)

    def _after(self, title: str, xpath: str, nth: int = 0):
        return self._label(title, nth).locator(f"xpath=following::{xpath}[1]")

    def box(self, title: str):
        """The text box (input or textarea) under a field's title."""
        return self._after(title, "*[self::textarea or self::input]")

    def fill(self, title: str, value: str) -> None:
        self.box(title).fill(value)

    def paste(self, title: str, value: str) -> None:
        """Type text as a paste does: a one-line box (V2's password input) turns line breaks into spaces."""
        box = self._after(title, "*[self::textarea or self::input]")
        box.click()
        box.fill("")
        self.page.evaluate("text => navigator.clipboard.writeText(text)", value)
        self.page.keyboard.press("Control+V")

    def input_type(self, title: str) -> str:
        return self._after(title, "*[self::textarea or self::input]").evaluate("e => e.type")

    def switch_on(self, title: str) -> None:
        self._after(title, "*[@role='switch' or (self::input and @type='checkbox')]").click()

    def pick_block(self, title: str, block_name: str) -> None:
        """Choose a saved block in a block field's picker (V1: a p-select; V2: a "Select a block" combobox)."""
        option = self.page.locator("[role=option]").filter(has_text=re.compile(rf"^\s*{re.escape(block_name)}\s*$"))
        if self.ui == "v2":
            self._after(title, "button[@aria-label='Select a block']").click()
        else:  # V1's select opens reliably from the keyboard, not always from a click
            self._after(title, "button[contains(@class, 'p-select-button__control')]").press("ArrowDown")
        option.first.click()

    def save(self) -> None:
        """Click Create/Save and wait for the block document write to be answered."""
        button = self.page.get_by_role("button", name=re.compile(r"^(Create|Save)$"))
        with self.page.expect_response(lambda r: "/api/block_documents" in r.url and r.request.method in ("POST", "PATCH")
                                       and not r.url.endswith(("/filter", "/count"))) as response:
            button.last.click()
        assert response.value.ok, f"{response.value.status} {response.value.text()[:500]}"


def open_form(page, ui: str, path: str) -> Form:
    """Load a form page and wait until its fields are drawn (their labels), not for the network to idle."""
    page.goto(ui_path(ui, path))
    page.locator("label").filter(has_text=re.compile(r"^\s*(Block Name|Name|Tenant ID|Vault URL)\s*$")).first.wait_for()
    return Form(page, ui)


def ui_path(ui: str, path: str) -> str:
    """A UI route under V1 (``/``) or V2 (``/v2``)."""
    return ("/v2" if ui == "v2" else "") + path


def template(payload: dict, values: dict[str, str]) -> dict:
    """A captured payload with this run's values (ids, URLs, secrets) replaced by ``{{name}}`` placeholders."""
    text = json.dumps(payload)
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
        if value:
            text = text.replace(json.dumps(value)[1:-1], "{{" + name + "}}")
    return json.loads(text)


def fill_template(payload: dict, values: dict[str, str]) -> dict:
    """The inverse of :func:`template`: placeholders replaced by this run's values."""
    text = json.dumps(payload)
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", json.dumps(value)[1:-1])
    assert "{{" not in text, re.findall(r"\{\{\w+\}\}", text)
    return json.loads(text)
