"""One resource of a tenant (Graph security, the Defender for Endpoint API, legacy M365D hunting).

Each has its own root URL per cloud, token scope, transport and rate limiter; a client builds one
the first time it calls that resource. The family modules (hunting, alerts, devices, entities)
call :meth:`Resource.get` and :meth:`Resource.pager`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import msgspec

from .paging import ItemPaged
from .ratelimit import Limiter
from .transport import Transport


class Resource:
    """A resource's transport (root, token scope, retries) and its per-minute limiter."""

    def __init__(self, name: str, transport: Transport, limiter: Limiter) -> None:
        self.name = name
        self.transport = transport
        self.limiter = limiter

    def __repr__(self) -> str:
        return f"<Resource {self.name} {self.transport.api_root}>"

    def get(self, path: str, *, operation: str, permission: str, params: dict | None = None) -> dict:
        """GET ``path`` (retried as a read) and return the JSON object as sent."""
        return self.transport.request("GET", path, params=params, operation=operation, permission=permission,
                                      limiter=self.limiter, parse=_json)

    def send(self, method: str, path: str, body: dict, *, operation: str, permission: str) -> dict:
        """POST or PATCH a JSON body (never re-sent once it may have arrived) and return the JSON answer."""
        return self.transport.request(method, path, json=body, operation=operation, permission=permission,
                                      limiter=self.limiter, parse=_json)

    def pager(self, path: str, *, operation: str, permission: str, params: dict | None = None,
              limit: int | None = None, kinds: Mapping[str, str] | None = None) -> ItemPaged:
        """A lazy :class:`ItemPaged` over an OData list; nothing is fetched until it is iterated."""

        def fetch(link: str, page_params: dict | None) -> dict:
            return self.get(link, operation=operation, permission=permission, params=page_params)

        return ItemPaged(fetch, path, params, limit=limit, kinds=kinds, operation=operation)


def segment(value: object) -> str:
    """A path segment from a caller's value: every character that could change the path is escaped."""
    text = str(value).strip()
    if not text:
        from .errors import BadRequestError

        raise BadRequestError("An identifier is empty: pass the id, name, hash or address to look up.")
    return quote(text, safe="")


def odata_string(value: object) -> str:
    """An OData string literal: single quotes doubled, the whole value quoted."""
    return "'" + str(value).replace("'", "''") + "'"


def odata_filter(*clauses: str | None) -> str | None:
    """Join the non-empty clauses with ``and`` (each parenthesised), or None."""
    parts = [c.strip() for c in clauses if c and c.strip()]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)


def _json(response) -> dict:
    from .errors import ServiceError

    try:
        body = msgspec.json.decode(response.content)  # several times faster than json for pages of alerts
    except (msgspec.DecodeError, RecursionError):
        try:  # json.loads reads a few things msgspec refuses (lone UTF-16 surrogates in Windows names)
            body = response.json()
        except (ValueError, RecursionError):
            raise ServiceError("The service answered with a body that is not JSON.",
                               status=response.status_code) from None
    if not isinstance(body, dict):
        raise ServiceError("The service answered with JSON that is not an object.", status=response.status_code)
    return body
