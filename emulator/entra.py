"""Entra ID (v2.0) endpoints: OpenID discovery and the client-credentials token endpoint (§1)."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qsl, unquote_plus

from .assertions import check as check_assertion
from .context import Context
from .envelopes import entra_error
from .identity import resource_of_scope
from .messages import Response, json_response

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# MSAL may add these to any request; Entra ignores them for client credentials.
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def _tenant_not_found(ctx: Context, error: str) -> Response:
    tenant = ctx.params["tenant"]
    return entra_error(
        400, error, 90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
        "into the correct cloud. Check with your subscription administrator, this may happen if there are "
        "no active subscriptions for the tenant.",
        ctx.req,
    )


def openid_configuration(ctx: Context) -> Response:
    """``GET /{tenant}/v2.0/.well-known/openid-configuration`` (MSAL fetches it before the token POST)."""
    if ctx.state.directory.tenant(ctx.params["tenant"]) is None:
        return _tenant_not_found(ctx, "invalid_tenant")
    tenant = ctx.params["tenant"]
    root = f"{ctx.req.base_url}/{tenant}"
    return json_response(200, {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{root}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{root}/openid/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver"],
        "tenant_region_scope": "EU",
    })


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """client_id/secret from an RFC 6749 §2.3.1 Basic header (each part form-url-encoded)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = raw.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if sep else None


def _well_formed_jwt(value: str) -> bool:
    parts = value.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return False
    try:
        for part in parts[:2]:
            decoded = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            if not isinstance(decoded, dict):
                return False
    except (ValueError, binascii.Error):
        return False
    return True


def token(ctx: Context) -> Response:
    """``POST /{tenant}/oauth2/v2.0/token``: client credentials with a secret, a client assertion or Basic auth."""
    req = ctx.req
    if req.method != "POST":
        return entra_error(400, "invalid_request", 900561,
                           f"The endpoint only accepts POST, OPTIONS requests. Received a {req.method} request.", req)
    tenant = ctx.state.directory.tenant(ctx.params["tenant"])
    if tenant is None:
        return _tenant_not_found(ctx, "invalid_request")
    form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = _basic_credentials(req.header("authorization"))
    if basic:
        client_id = client_id or basic[0]
        secret = basic[1]

    def missing(param: str) -> Response:
        """Entra's error for a missing form parameter."""
        return entra_error(400, "invalid_request", 900144,
                           f"The request body must contain the following parameter: '{param}'.", req)

    grant_type = form.get("grant_type")
    if not grant_type:
        return missing("grant_type")
    if grant_type != "client_credentials":
        return entra_error(400, "unsupported_grant_type", 70003,
                           f"The app requested an unsupported grant type '{grant_type}'.", req)
    if not client_id:
        return missing("client_id")
    app = ctx.state.directory.app(tenant.tenant_id, client_id)
    if app is None:
        return entra_error(
            400, "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory '{ctx.params['tenant']}'. "
            "This can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent your authentication request to the "
            "wrong tenant.", req)

    assertion = form.get("client_assertion")
    if assertion is not None:
        if form.get("client_assertion_type") != JWT_BEARER or not _well_formed_jwt(assertion):
            return entra_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.", req)
        if not app.certificate:
            return entra_error(401, "invalid_client", 700027,
                               "Client assertion failed signature validation: no certificate is registered "
                               f"for app '{app.client_id}'.", req)
        if app.certificates:
            refusal = check_assertion(assertion, app.client_id, app.certificates)
            if refusal is not None:
                return entra_error(401, "invalid_client", refusal.aadsts, refusal.description, req)
    elif secret is None:
        return entra_error(401, "invalid_client", 7000218,
                           "The request body must contain the following parameter: 'client_assertion' "
                           "or 'client_secret'.", req)
    elif app.client_secret is None or secret != app.client_secret:
        return entra_error(
            401, "invalid_client", 7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
            f"value, not the client secret ID, for a secret added to app '{app.client_id}'.", req)

    raw_scope = form.get("scope", "")
    scopes = [s for s in raw_scope.split() if s.lower() not in _RESERVED_SCOPES]
    resource = resource_of_scope(scopes[0]) if len(scopes) == 1 else None
    if resource is None:
        return entra_error(
            400, "invalid_scope", 70011,
            "The provided value for the input parameter 'scope' is not valid. "
            f"The scope {raw_scope} is not valid.", req)

    lifetime = int(ctx.state.token_lifetime)
    access_token = ctx.state.tokens.issue(app, resource, lifetime, issuer=f"{req.base_url}/{app.tenant_id}/")
    return json_response(
        200,
        {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token},
        headers=[("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")],
    )
