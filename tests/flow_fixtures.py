"""Fixtures for the flow, task and hunt-CLI tests: tenant blocks on the emulator, and a webhook receiver.

Import the fixtures a module needs (``from .flow_fixtures import saved_tenant_fixture, webhook_fixture  # noqa: F401``,
registered as ``saved_tenant`` and ``webhook``) together
with ``prefect_api`` from :mod:`tests.prefect_fixtures` (one harness for the whole run).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blocks import DefenderTenant, TenantRateLimits

FAST = TenantRateLimits(hunting_per_minute=10_000, hunting_per_hour=100_000, api_per_minute=10_000)


def tenant_block(emu, tenant_id: str, client_id: str, secret: str) -> DefenderTenant:
    """A tenant block for one emulator tenant and app (loopback endpoints allowed, the emulator's CA)."""
    return DefenderTenant(
        tenant_id=tenant_id, client_id=client_id, client_secret=secret, authority_host=emu.base_url,
        api_root=emu.base_url, ca_bundle=emu.ca_bundle, timeout=30, rate_limits=FAST, allow_custom_endpoints=True,
    )


def new_tenant(emu, secret: str) -> tuple[str, str]:
    """Register a new tenant with one app (every role) whose secret is ``secret``; returns (tenant id, client id)."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    emu.add_tenant(tenant_id)
    emu.add_app(tenant_id, client_id, client_secret=secret)
    return tenant_id, client_id


def block_name(prefix: str = "t") -> str:
    """A block name no other test uses (the harness's database lives for the whole run)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(name="saved_tenant")
def saved_tenant_fixture(emu, prefect_api):
    """The name of a saved tenant block for the emulator's default tenant."""
    name = block_name("emu")
    tenant_block(emu, emu.tenant_id, emu.client_id, emu.client_secret).save(name)
    return name


class Receiver:
    """A local HTTP endpoint that records every request (method, path, headers, JSON or text body)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self._done = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    data = json.loads(body)
                except ValueError:
                    data = body.decode("utf-8", "replace")
                with receiver._done:
                    receiver.requests.append({"method": "POST", "path": self.path, "body": data,
                                              "headers": dict(self.headers)})
                    receiver._done.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        """The requests once ``count`` have arrived (or whatever arrived by the timeout)."""
        with self._done:
            self._done.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="webhook")
def webhook_fixture(prefect_api):
    """A running receiver and a saved Prefect custom-webhook notification block that posts to it.

    Yields ``(receiver, "custom-webhook/<name>")``.
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    receiver = Receiver()
    name = block_name("hook")
    CustomWebhookNotificationBlock(
        name="soc", url=receiver.url, json_data={"subject": "{{subject}}", "text": "{{body}}"},
    ).save(name)
    try:
        yield receiver, f"custom-webhook/{name}"
    finally:
        receiver.close()
