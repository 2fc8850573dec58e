"""Azure Key Vault secrets (GET only), served on the emulator's base URL: the vault URL is ``emu.base_url``.

Key Vault authenticates by challenge: a request without a token gets 401 with
``WWW-Authenticate: Bearer authorization="{base}/{tenant}", resource="https://vault.azure.net"``, and the
client then fetches a token for ``https://vault.azure.net/.default`` from that authority.

Note for clients: azure-keyvault-secrets checks that the challenge resource's domain is a parent of the
vault host (``*.vault.azure.net``). A loopback vault can never pass that, so ``SecretClient`` must be
built with ``verify_challenge_resource=False`` when talking to the emulator.
"""

from __future__ import annotations

from .context import Context
from .envelopes import api_error, keyvault_headers
from .messages import Response, json_response


def get_secret(ctx: Context) -> Response:
    """``GET /secrets/{name}[/{version}]?api-version=...``."""
    if not ctx.req.query.get("api-version"):
        return api_error("keyvault", 400, "The 'api-version' query parameter is missing.", ctx.req)
    name, version = ctx.params["name"], ctx.params.get("version") or None
    item = ctx.state.secrets.get(name, version)
    if item is None:
        label = f"{name}/{version}" if version else name
        return api_error(
            "keyvault", 404,
            f"A secret with (name/id) {label} was not found in this key vault. If you recently deleted this "
            "secret you may be able to recover it using the correct recovery command. For help resolving this "
            "issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
            ctx.req, code="SecretNotFound", headers=keyvault_headers())
    body = {
        "value": item.value,
        "id": f"{ctx.req.base_url}/secrets/{item.name}/{item.version}",
        "attributes": {"enabled": item.enabled, "created": item.created, "updated": item.created,
                       "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
        "tags": {},
    }
    if item.content_type:
        body["contentType"] = item.content_type
    return json_response(200, body, keyvault_headers())
