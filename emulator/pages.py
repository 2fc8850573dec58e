"""OData list and entity answers: ``@odata.context``, ``@odata.count``, ``value`` and ``@odata.nextLink``.

A page holds at most ``state.page_size`` items (a ``$top`` caps it further). When more remain, the answer
carries an absolute ``@odata.nextLink`` built from the request's own scheme://host:port (or
``state.next_link_base``) with ``$skip`` moved on, like Microsoft's. Items arrive pre-encoded, so a page
is a join of bytes, not a fresh ``json.dumps`` of every alert.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from .context import Context
from .envelopes import api_error
from .messages import GRAPH_JSON_TYPE, JSON_TYPE, Response, dumps
from .odata import Field, ODataError, Query, compile_filter, next_link, parse_query
from .stores import Store


def odata_error(ctx: Context, error: ODataError, in_filter: bool = False) -> Response:
    """400 for a query option the service refuses: ``BadRequest`` on Graph, ``ODataError`` on MDE / M365D."""
    message = f"Invalid filter clause: {error}" if in_filter else str(error)
    return api_error(ctx.family, 400, message, ctx.req, code="BadRequest" if ctx.family == "graph" else "ODataError")


def content_type(ctx: Context) -> str:
    """The JSON content type of the family."""
    return GRAPH_JSON_TYPE if ctx.family == "graph" else JSON_TYPE


def metadata(ctx: Context, fragment: str) -> str:
    """``@odata.context`` on the host that answered: ``{base}/api/$metadata#...`` or ``{base}/v1.0/$metadata#...``."""
    if ctx.family == "graph":
        version = "beta" if ctx.req.path.lower().startswith("/beta/") else "v1.0"
        return f"{ctx.req.base_url}/{version}/$metadata#{fragment}"
    return f"{ctx.req.base_url}/api/$metadata#{fragment}"


def entity(ctx: Context, fragment: str, encoded: bytes, status: int = 200) -> Response:
    """One entity (already encoded, starting with ``{``) with ``@odata.context`` first."""
    head = b'{"@odata.context":' + dumps(metadata(ctx, fragment))
    return Response(status, [head + (b"," + encoded[1:] if encoded != b"{}" else b"}")],
                    content_type=content_type(ctx))


def plain_list(ctx: Context, fragment: str, items: Iterable[Any]) -> Response:
    """A whole ``{"@odata.context", "value"}`` list, for the small lists that never page (logon users...)."""
    return Response(200, [dumps({"@odata.context": metadata(ctx, fragment), "value": list(items)})],
                    content_type=content_type(ctx))


def odata_list(ctx: Context, *, store: Store, key: Hashable, items: Sequence[Any], fields: Mapping[str, Field],
               fragment: str, encode: Callable[[Query], Callable[[Any], bytes]], max_top: int | None = None,
               expandable: Iterable[str] = (), count: bool = False) -> Response:
    """A filtered, paged list of ``items`` (``key`` names the list for the store's selection cache)."""
    try:
        query = parse_query(ctx.req.query, max_top=max_top, expandable=expandable, count=count)
    except ODataError as error:
        return odata_error(ctx, error)
    try:
        predicate = compile_filter(query.filter, fields) if query.filter else None
    except ODataError as error:
        return odata_error(ctx, error, in_filter=True)
    selected = store.select((key, query.filter), items, predicate)
    state = ctx.state
    size = max(1, int(state.page_size))
    size = min(size, query.top) if query.top else size
    window = selected[query.skip:query.skip + size]
    end = query.skip + len(window)
    link = None
    if end < len(selected):
        link = next_link(state.next_link_base or ctx.req.base_url, ctx.req.path, ctx.req.query, end)
    encode_item = encode(query)
    head = b'{"@odata.context":' + dumps(metadata(ctx, fragment))
    if query.count:
        head += b',"@odata.count":%d' % len(selected)
    parts = [head]
    if ctx.family == "graph" and link:  # Graph puts the link before the value, MDE after it
        parts.append(b',"@odata.nextLink":' + dumps(link))
    parts.append(b',"value":[' + b",".join(encode_item(item) for item in window) + b"]")
    if ctx.family != "graph" and link:
        parts.append(b',"@odata.nextLink":' + dumps(link))
    parts.append(b"}")
    return Response(200, [b"".join(parts)], content_type=content_type(ctx))


def not_found(ctx: Context, what: str, ident: str) -> Response:
    """404 in the family's envelope: ``ResourceNotFound`` "Machine x was not found" / Graph ``NotFound``."""
    if ctx.family == "graph":
        return api_error("graph", 404, f"{what} with id '{ident}' was not found.", ctx.req, code="NotFound")
    return api_error(ctx.family, 404, f"{what} {ident} was not found", ctx.req, code="ResourceNotFound")


def bad_body(ctx: Context, message: str) -> Response:
    """400 for a request body the service refuses."""
    if ctx.family == "graph":
        return api_error("graph", 400, message, ctx.req, code="BadRequest")
    return api_error(ctx.family, 400, message, ctx.req, code="InvalidRequestBody")


def json_body(ctx: Context) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is not one."""
    try:
        body = ctx.req.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def caller(ctx: Context) -> str:
    """Who a write is recorded as (``createdBy``): the calling app."""
    return ctx.principal.client_id if ctx.principal else "unknown"
