"""Every route the emulator serves. Add new API operations here (see :meth:`Router.add`)."""

from __future__ import annotations

from . import entra, hunting, keyvault
from .identity import HUNTING_ROLES, KEYVAULT_SECRETS_GET
from .routing import Router

_TENANT = r"/(?P<tenant>[^/]+)"


def build_router() -> Router:
    """The default route table."""
    r = Router()
    # Entra ID: no bearer token, Entra error bodies.
    r.add("GET", _TENANT + r"/v2\.0/\.well-known/openid-configuration", "entra", entra.openid_configuration,
          authenticated=False)
    for method in ("POST", "GET"):  # GET gets Entra's "only accepts POST" error
        r.add(method, _TENANT + r"/oauth2/v2\.0/token", "entra", entra.token, authenticated=False)

    # Advanced hunting, one route per API family.
    r.add("POST", r"/(?:v1\.0|beta)/security/runHuntingQuery", "graph", hunting.run,
          roles=(HUNTING_ROLES["graph"],), quota="hunting")
    r.add("POST", r"/api/advancedqueries/run", "mde", hunting.run, roles=(HUNTING_ROLES["mde"],), quota="hunting")
    r.add("POST", r"/api/advancedhunting/run", "xdr", hunting.run, roles=(HUNTING_ROLES["xdr"],), quota="hunting")

    # Key Vault secrets. The SDK asks for "/secrets/{name}/" (empty version) for the current version.
    r.add("GET", r"/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?", "keyvault", keyvault.get_secret,
          roles=(KEYVAULT_SECRETS_GET,))
    return r
