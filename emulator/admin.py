"""Control endpoints for trying things by hand: ``/_emulator/...`` on the base URL, loopback callers only.

- ``GET /_emulator/state``: addresses, identities (no secret), store sizes, armed faults, settings.
- ``GET /_emulator/faults``, ``POST /_emulator/faults`` (a JSON :class:`~emulator.faults.Fault`),
  ``DELETE /_emulator/faults``.
- ``POST /_emulator/reset``, ``POST /_emulator/expire-tokens``, ``POST /_emulator/alerts`` (``{"count": n}``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from .context import Context
from .envelopes import api_error
from .faults import KINDS, Fault
from .messages import Response, json_response
from .pages import json_body

_FAULT_FIELDS = {f.name for f in dataclasses.fields(Fault)}


def _loopback(ctx: Context) -> Response | None:
    try:
        if ipaddress.ip_address(ctx.req.client or "0.0.0.0").is_loopback:
            return None
    except ValueError:
        pass
    return api_error("admin", 403, "The emulator's control endpoints answer loopback callers only.", ctx.req,
                     code="Forbidden")


def fault_json(fault: Fault, remaining: int | None = None) -> dict[str, Any]:
    """A fault as JSON (``body`` as text)."""
    data = dataclasses.asdict(fault)
    if isinstance(data.get("body"), bytes):
        data["body"] = data["body"].decode("utf-8", "replace")
    data["remaining"] = remaining
    return data


def fault_from_json(data: dict[str, Any]) -> Fault:
    """A :class:`Fault` from JSON fields; raises ``ValueError`` naming what is wrong."""
    unknown = set(data) - _FAULT_FIELDS
    if unknown:
        raise ValueError(f"unknown fault field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FAULT_FIELDS))}")
    if "kind" not in data:
        raise ValueError(f"a fault needs a kind: one of {', '.join(KINDS)}")
    fields = dict(data)
    if isinstance(fields.get("body"), str):
        fields["body"] = fields["body"].encode("utf-8")
    if fields.get("headers") is not None and not isinstance(fields["headers"], dict):
        raise ValueError("headers must be an object of header names to values")
    try:
        return Fault(**fields)
    except TypeError as error:
        raise ValueError(str(error)) from None


def _pending(ctx: Context) -> list[dict[str, Any]]:
    return [fault_json(f, remaining) for f, remaining in ctx.state.faults.pending()]


def state(ctx: Context) -> Response:
    """``GET /_emulator/state``."""
    if (denied := _loopback(ctx)) is not None:
        return denied
    s = ctx.state
    stores = s.stores
    return json_response(200, {
        "base_url": ctx.req.base_url,
        "graph_url": getattr(s, "graph_url", None),
        "mde_url": getattr(s, "mde_url", None),
        "ca_bundle": getattr(s, "ca_bundle", None),
        "tenant_id": s.tenant_id,
        "client_id": s.client_id,
        "token_lifetime": s.token_lifetime,
        "enforce_quotas": s.enforce_quotas,
        "page_size": s.page_size,
        "next_link_base": s.next_link_base,
        "requests": len(s.requests),
        "faults": _pending(ctx),
        "fault_kinds": KINDS,
        "counts": {"machines": len(stores.machines.all()), "files": len(stores.files.all()),
                   "ips": len(stores.ips.all()), "alerts": len(stores.alerts.all()),
                   "incidents": len(stores.incidents.all())},
    })


def list_faults(ctx: Context) -> Response:
    """``GET /_emulator/faults``."""
    if (denied := _loopback(ctx)) is not None:
        return denied
    return json_response(200, {"value": _pending(ctx)})


def add_fault(ctx: Context) -> Response:
    """``POST /_emulator/faults`` with a JSON fault, e.g. ``{"kind": "status", "status": 503, "times": 2}``."""
    if (denied := _loopback(ctx)) is not None:
        return denied
    body = json_body(ctx)
    if body is None:
        return api_error("admin", 400, "The body must be a JSON object describing a fault.", ctx.req)
    try:
        fault = fault_from_json(body)
    except ValueError as error:
        return api_error("admin", 400, str(error), ctx.req)
    ctx.state.faults.add(fault)
    return json_response(201, fault_json(fault, fault.times))


def clear_faults(ctx: Context) -> Response:
    """``DELETE /_emulator/faults``: disarm every fault."""
    if (denied := _loopback(ctx)) is not None:
        return denied
    ctx.state.faults.clear()
    return Response(204, [], content_type=None)


def reset(ctx: Context) -> Response:
    """``POST /_emulator/reset``: faults, request log, quotas and the seeded world back to the start."""
    if (denied := _loopback(ctx)) is not None:
        return denied
    ctx.state.reset()
    return Response(204, [], content_type=None)


def expire_tokens(ctx: Context) -> Response:
    """``POST /_emulator/expire-tokens``: every token issued so far gets 401 from now on."""
    if (denied := _loopback(ctx)) is not None:
        return denied
    ctx.state.expire_tokens()
    return Response(204, [], content_type=None)


def seed_alerts(ctx: Context) -> Response:
    """``POST /_emulator/alerts`` with ``{"count": n}``: n new alerts; answers their ids."""
    if (denied := _loopback(ctx)) is not None:
        return denied
    body = json_body(ctx) or {}
    count = body.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 100_000:
        return api_error("admin", 400, "The body must be {\"count\": n} with 0 <= n <= 100000.", ctx.req)
    return json_response(201, {"ids": ctx.state.seed_alerts(count)})
