"""Error bodies in the exact envelope of each API family (defender-api.md §1.4, §2e, §3.9, §4.4).

Families: ``graph`` (Microsoft Graph), ``mde`` and ``xdr`` (same envelope), ``keyvault`` and ``entra``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from .messages import Request, Response, json_response

FAMILIES = ("graph", "mde", "xdr", "keyvault", "entra")

_MDE_CODES = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "ResourceNotFound",
    405: "MethodNotAllowed", 408: "RequestTimeout", 409: "Conflict", 413: "RequestEntityTooLarge",
    429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_GRAPH_CODES = {
    **_MDE_CODES, 401: "InvalidAuthenticationToken", 404: "NotFound", 500: "UnknownError",
    503: "ServiceNotAvailable", 504: "UnknownError",
}
_KEYVAULT_CODES = {**_MDE_CODES, 400: "BadParameter", 404: "NotFound", 429: "Throttled"}

DEFAULT_MESSAGES = {
    400: "The request is invalid.",
    401: "Unauthorized",
    403: "Forbidden",
    404: "The requested resource was not found.",
    405: "The requested method is not allowed for this resource.",
    408: "The request timed out.",
    409: "Conflict",
    429: "Too many requests. Retry after the interval in the Retry-After header.",
    500: "An unexpected error occurred during query execution. Please try again in a few minutes.",
    502: "Bad gateway.",
    503: "The service is temporarily unavailable. Please try again later.",
    504: "The gateway timed out.",
}


def default_code(family: str, status: int) -> str:
    """The error ``code`` a family uses for an HTTP status."""
    table = _GRAPH_CODES if family == "graph" else _KEYVAULT_CODES if family == "keyvault" else _MDE_CODES
    return table.get(status, "BadRequest" if status < 500 else "InternalServerError")


def _graph_inner(req: Request | None) -> dict[str, str]:
    client_request_id = (req.header("client-request-id") if req else None) or str(uuid.uuid4())
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
        "client-request-id": client_request_id,
    }


def api_error(family: str, status: int, message: str | None = None, req: Request | None = None,
              code: str | None = None, headers: list[tuple[str, str]] | None = None) -> Response:
    """An error response in the envelope of ``family`` (any family but ``entra``; see :func:`entra_error`)."""
    if family == "entra":
        return entra_error_for_status(status, req, message)
    code = code or default_code(family, status)
    message = message if message is not None else DEFAULT_MESSAGES.get(status, "Error")
    headers = list(headers or [])
    if family == "graph":
        inner = _graph_inner(req)
        body = {"error": {"code": code, "message": message, "innerError": inner}}
        headers += [("request-id", inner["request-id"]), ("client-request-id", inner["client-request-id"])]
    elif family == "keyvault":
        body = {"error": {"code": code, "message": message}}
    else:
        body = {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}
    return json_response(status, body, headers)


def entra_error(status: int, error: str, aadsts: int, description: str, req: Request | None,
                headers: list[tuple[str, str]] | None = None) -> Response:
    """An Entra ID token-endpoint error body (``error``, ``error_description`` with AADSTS code, ...)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id = str(uuid.uuid4())
    # Entra echoes the caller's client-request-id (MSAL sends one) as the correlation id.
    correlation_id = (req.header("client-request-id") if req else None) or str(uuid.uuid4())
    base = req.base_url if req else ""
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{aadsts}: {description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {now}"
        ),
        "error_codes": [aadsts],
        "timestamp": now,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{base}/error?code={aadsts}",
    }
    return json_response(status, body, headers)


def entra_error_for_status(status: int, req: Request | None, message: str | None = None) -> Response:
    """An Entra-shaped error for an arbitrary status (used by injected faults on the token endpoint)."""
    if status >= 500 or status == 429:
        return entra_error(status, "temporarily_unavailable", 90033,
                           message or "A transient error has occurred. Please try again.", req)
    if status == 401:
        return entra_error(status, "invalid_client", 7000215, message or "Invalid client secret provided.", req)
    return entra_error(status, "invalid_request", 900144, message or "The request is invalid.", req)


# ---------------------------------------------------------------- Key Vault specifics

VAULT_RESOURCE = "https://vault.azure.net"
VAULT_NAME = "defender-soar-emulator"


def keyvault_headers() -> list[tuple[str, str]]:
    """The diagnostic headers every Key Vault answer carries."""
    return [("x-ms-request-id", str(uuid.uuid4())), ("x-ms-keyvault-region", "westeurope"),
            ("x-ms-keyvault-service-version", "1.9.2102.1")]


def keyvault_challenge(base_url: str, tenant_id: str) -> str:
    """The bearer challenge a vault sends with every 401: where to sign in, and for which resource."""
    return f'Bearer authorization="{base_url}/{tenant_id}", resource="{VAULT_RESOURCE}"'


def keyvault_forbidden(req: Request, identity: str) -> Response:
    """403 for a token without secrets/get permission, in Key Vault's envelope (``identity`` names the caller)."""
    body = {"error": {
        "code": "Forbidden",
        "message": f"The user, group or application '{identity}' does not have secrets get permission on key "
                   f"vault '{VAULT_NAME};location=westeurope'. For help resolving this issue, please see "
                   "https://go.microsoft.com/fwlink/?linkid=2125287",
        "innererror": {"code": "AccessDenied"},
    }}
    return json_response(403, body, keyvault_headers())
