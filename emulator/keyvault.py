"""Azure Key Vault secrets (GET only), served on the emulator's base URL: the vault URL is ``emu.base_url``.

Key Vault authenticates by challenge: a request without a token gets 401 with
``WWW-Authenticate: Bearer authorization="{base}/{tenant}", resource="https://vault.azure.net"``, and the
client then fetches a token for ``https://vault.azure.net/.default`` from that authority.

Note for clients: azure-keyvault-secrets checks that the challenge resource's domain is a parent of the
vault host (``*.vault.azure.net``). A loopback vault can never pass that, so ``SecretClient`` must be
built with ``verify_challenge_resource=False`` when talking to the emulator.
"""

from __future__ import annotations

import secrets as _secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .envelopes import api_error
from .messages import Response, json_response

if TYPE_CHECKING:
    from .routing import Context
    from .service import Emulator

VAULT_RESOURCE = "https://vault.azure.net"
VAULT_NAME = "defender-soar-emulator"


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret."""

    name: str
    value: str
    version: str
    created: int
    enabled: bool = True
    content_type: str | None = None


class SecretStore:
    """Secrets by case-insensitive name; the last added version is the current one. Thread-safe."""

    def __init__(self) -> None:
        self._versions: dict[str, list[SecretVersion]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, value: str, version: str | None = None, content_type: str | None = None) -> str:
        """Store a new version (generated if not given) and make it current; returns the version id."""
        version = version or _secrets.token_hex(16)
        item = SecretVersion(name, value, version, int(time.time()), content_type=content_type)
        with self._lock:
            self._versions.setdefault(name.lower(), []).append(item)
        return version

    def get(self, name: str, version: str | None = None) -> SecretVersion | None:
        """The current version, or the named one; None if unknown."""
        with self._lock:
            versions = self._versions.get(name.lower(), [])
            if not version:
                return versions[-1] if versions else None
            return next((v for v in versions if v.version.lower() == version.lower()), None)


def challenge_header(emu: Emulator, base_url: str) -> str:
    """The bearer challenge a vault sends with every 401."""
    return f'Bearer authorization="{base_url}/{emu.tenant_id}", resource="{VAULT_RESOURCE}"'


def _headers() -> list[tuple[str, str]]:
    return [("x-ms-request-id", str(uuid.uuid4())), ("x-ms-keyvault-region", "westeurope"),
            ("x-ms-keyvault-service-version", "1.9.2102.1")]


def forbidden(ctx: Context) -> Response:
    """403 for a token without secrets/get permission, in Key Vault's envelope."""
    who = ctx.principal
    identity = (f"appid={who.client_id};oid={who.object_id};iss={ctx.req.base_url}/{who.tenant_id}/"
                if who else "unknown")
    body = {"error": {
        "code": "Forbidden",
        "message": f"The user, group or application '{identity}' does not have secrets get permission on key "
                   f"vault '{VAULT_NAME};location=westeurope'. For help resolving this issue, please see "
                   "https://go.microsoft.com/fwlink/?linkid=2125287",
        "innererror": {"code": "AccessDenied"},
    }}
    return json_response(403, body, _headers())


def get_secret(ctx: Context) -> Response:
    """``GET /secrets/{name}[/{version}]?api-version=...``."""
    if not ctx.req.query.get("api-version"):
        return api_error("keyvault", 400, "The 'api-version' query parameter is missing.", ctx.req)
    name, version = ctx.params["name"], ctx.params.get("version") or None
    item = ctx.emu.secrets.get(name, version)
    if item is None:
        label = f"{name}/{version}" if version else name
        return api_error(
            "keyvault", 404,
            f"A secret with (name/id) {label} was not found in this key vault. If you recently deleted this "
            "secret you may be able to recover it using the correct recovery command. For help resolving this "
            "issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
            ctx.req, code="SecretNotFound", headers=_headers())
    body = {
        "value": item.value,
        "id": f"{ctx.req.base_url}/secrets/{item.name}/{item.version}",
        "attributes": {"enabled": item.enabled, "created": item.created, "updated": item.created,
                       "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
        "tags": {},
    }
    if item.content_type:
        body["contentType"] = item.content_type
    return json_response(200, body, _headers())
