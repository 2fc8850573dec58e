"""Route table and the per-route gate: bearer authentication, application roles and quotas.

A route names its API family (which error envelope it speaks), which token audiences it accepts, the
application roles that allow it (any one of them) and, optionally, a quota bucket. Later modules add
their routes with :meth:`Router.add`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .context import Context, Handler
from .envelopes import api_error, keyvault_challenge, keyvault_forbidden
from .messages import Request, Response


@dataclass(frozen=True)
class Route:
    """One API operation. ``audiences`` None means only the route's own family; ``roles`` is any-of."""

    method: str
    pattern: re.Pattern[str]
    family: str
    handler: Handler
    audiences: frozenset[str] | None = None
    roles: tuple[str, ...] = ()
    quota: str | None = None
    authenticated: bool = True


@dataclass
class Router:
    """Ordered list of routes; the first whose method and path match wins."""

    routes: list[Route] = field(default_factory=list)

    def add(self, method: str, pattern: str, family: str, handler: Handler, *,
            audiences: set[str] | frozenset[str] | None = None, roles: tuple[str, ...] = (),
            quota: str | None = None, authenticated: bool = True) -> Route:
        """Register a route. ``pattern`` is a regex matched case-insensitively against the whole path."""
        route = Route(method.upper(), re.compile(pattern, re.IGNORECASE), family, handler,
                      frozenset(audiences) if audiences is not None else None, tuple(roles), quota,
                      authenticated)
        self.routes.append(route)
        return route

    def match(self, method: str, path: str,
              families: frozenset[str] | None = None) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, path-known-for-another-method), among the routes of ``families`` (None: all)."""
        other_method = False
        for route in self.routes:
            if families is not None and route.family not in families:
                continue
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method == method.upper():
                return route, m.groupdict(), False
            other_method = True
        return None, {}, other_method


def family_of_path(path: str) -> str:
    """The API family whose error envelope an (unrouted) path gets."""
    lower = path.lower()
    if lower.startswith("/_emulator"):
        return "admin"
    if lower.startswith(("/v1.0/", "/beta/")):
        return "graph"
    if lower.startswith("/secrets"):
        return "keyvault"
    if lower.startswith("/api/advancedhunting") or lower.startswith("/api/incidents"):
        return "xdr"
    if "/oauth2/" in lower or "/.well-known/" in lower:
        return "entra"
    return "mde"


_UNAUTHORIZED_TEXT = {
    "missing": {
        "graph": "Access token is empty.",
        "mde": "Authorization header is missing or is not a Bearer token.",
        "keyvault": "AKV10000: Request is missing a Bearer or PoP token.",
    },
    "invalid": {
        "graph": "Access token validation failure. Invalid token.",
        "mde": "The access token is invalid.",
        "keyvault": "AKV10000: Token validation failed: the token was not issued by the expected authority.",
    },
    "expired": {
        "graph": "Lifetime validation failed, the token is expired.",
        "mde": "The access token has expired.",
        "keyvault": "AKV10022: Invalid token: the token is expired.",
    },
    "audience": {
        "graph": "Access token validation failure. Invalid audience.",
        "mde": "The access token has an invalid audience for this API.",
        "keyvault": "AKV10022: Invalid audience.",
    },
    "issuer": {
        "graph": "Access token validation failure. Invalid issuer.",
        "mde": "The access token was issued for another tenant.",
        "keyvault": "AKV10032: Invalid issuer. The token was issued by another tenant than the vault's.",
    },
}


def unauthorized(ctx: Context, reason: str) -> Response:
    """401 in the family's shape; ``reason`` is missing | invalid | expired | audience | issuer."""
    texts = _UNAUTHORIZED_TEXT[reason]
    message = texts.get(ctx.family, texts["mde"])
    headers: list[tuple[str, str]] = []
    if ctx.family == "keyvault":
        headers.append(("WWW-Authenticate", keyvault_challenge(ctx.req.base_url, ctx.state.tenant_id)))
    return api_error(ctx.family, 401, message, ctx.req, headers=headers)


def forbidden(ctx: Context, roles: tuple[str, ...]) -> Response:
    """403 naming the missing application permission."""
    if ctx.family == "keyvault":
        who = ctx.principal
        identity = (f"appid={who.client_id};oid={who.object_id};iss={ctx.req.base_url}/{who.tenant_id}/"
                    if who else "unknown")
        return keyvault_forbidden(ctx.req, identity)
    return api_error(ctx.family, 403, f"Missing application permission {' or '.join(roles)}", ctx.req,
                     code="Forbidden")


def bearer_token(req: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    value = req.header("authorization") or ""
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def gate(ctx: Context, route: Route) -> Response | None:
    """Authenticate, authorise and meter a request; a response means "answer this instead"."""
    if not route.authenticated:
        return None
    token = bearer_token(ctx.req)
    if token is None:
        return unauthorized(ctx, "missing")
    info = ctx.state.tokens.lookup(token)
    if info is None:
        return unauthorized(ctx, "invalid")
    if info.expired:
        return unauthorized(ctx, "expired")
    if info.family not in (route.audiences or {route.family}):
        return unauthorized(ctx, "audience")
    if ctx.family == "keyvault" and info.tenant_id.lower() != ctx.state.tenant_id.lower():
        return unauthorized(ctx, "issuer")
    ctx.principal = info
    if route.roles and not info.roles.intersection(route.roles):
        return forbidden(ctx, route.roles)
    if route.quota and ctx.state.enforce_quotas:
        tracker = ctx.state.quotas if route.quota == "hunting" else ctx.state.api_quotas
        retry_after = tracker.hit((info.tenant_id.lower(), route.family, route.quota))
        if retry_after is not None:
            seconds, limit, window = retry_after
            return api_error(
                ctx.family, 429,
                f"API calls quota exceeded! Maximum allowed {limit} per {window}. "
                f"Retry after {seconds} seconds.",
                ctx.req, code="TooManyRequests", headers=[("Retry-After", str(seconds))])
    return None
