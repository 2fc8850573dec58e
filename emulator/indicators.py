"""Custom indicators (IoCs): list, create-or-update, delete and batch import (defender-api.md §3.4).

``POST /api/indicators`` creates an indicator or updates the one with the same type and value, and answers 200
with it. A tenant holds at most ``state.indicator_quota`` active (unexpired) indicators, 15,000 by default: one
more is refused with a 400 that names the limit. ``POST /api/indicators/import`` takes up to 500 at a time and
answers one result per indicator.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from .context import Context
from .envelopes import api_error
from .messages import Response, dumps
from .odata import Field, parse_datetime
from .pages import caller, entity, json_body, not_found, odata_list
from .stores import IndicatorQuotaError
from .world import Indicator, now_ticks, ts

TYPES = ("FileSha1", "FileMd5", "CertificateThumbprint", "FileSha256", "IpAddress", "DomainName", "Url")
ACTIONS = ("Alert", "Warn", "Block", "Audit", "BlockAndRemediate", "AlertAndBlock", "Allowed")
SEVERITIES = ("Informational", "Low", "Medium", "High")
MAX_IMPORT = 500
_HASH_LENGTHS = {"FileSha1": 40, "CertificateThumbprint": 40, "FileSha256": 64, "FileMd5": 32}
_HEX = re.compile(r"[0-9a-fA-F]+")
_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}", re.IGNORECASE)
# Internal ranges: an indicator takes external addresses only.
_INTERNAL = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                                     "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"))

#: ``$filter`` properties of ``/api/indicators`` (get-ti-indicators-collection.md).
INDICATOR_FIELDS = {
    "application": Field.by("string", lambda i: i.application),
    "createdByDisplayName": Field.by("string", lambda i: i.source),
    "expirationTime": Field.by("datetime", lambda i: i.expiration),
    "generateAlert": Field.by("bool", lambda i: i.generate_alert),
    "title": Field.by("string", lambda i: i.title),
    "indicatorValue": Field.by("string", lambda i: i.value),
    "indicatorType": Field.by("enum", lambda i: i.type, TYPES),
    "creationTimeDateTimeUtc": Field.by("datetime", lambda i: i.created),
    "createdBy": Field.by("string", lambda i: i.created_by),
    "action": Field.by("enum", lambda i: i.action, ACTIONS),
    "severity": Field.by("enum", lambda i: i.severity, SEVERITIES),
}


class IndicatorError(ValueError):
    """An indicator the service refuses: ``code`` and message of the 400."""

    def __init__(self, message: str, code: str = "InvalidRequestBody") -> None:
        super().__init__(message)
        self.code = code


def _time(ticks: int | None) -> str | None:
    """Whole seconds print as ``2020-12-12T00:00:00Z`` (as sent), the rest with 7 digits."""
    if ticks is None:
        return None
    text = ts(ticks)
    return text[:19] + "Z" if text and text.endswith(".0000000Z") else text


def indicator_json(indicator: Indicator) -> dict[str, Any]:
    """An indicator entity, in the documented field order (ti-indicator.md), then the rest."""
    return {
        "id": indicator.id,
        "indicatorValue": indicator.value,
        "indicatorType": indicator.type,
        "action": indicator.action,
        "application": indicator.application,
        "source": indicator.source,
        "sourceType": indicator.source_type,
        "createdBy": indicator.created_by,
        "severity": indicator.severity,
        "title": indicator.title,
        "description": indicator.description,
        "recommendedActions": indicator.recommended_actions,
        "creationTimeDateTimeUtc": ts(indicator.created),
        "expirationTime": _time(indicator.expiration),
        "lastUpdateTime": ts(indicator.last_update),
        "lastUpdatedBy": indicator.last_updated_by,
        "rbacGroupNames": list(indicator.rbac_group_names),
        "rbacGroupIds": [],
        "generateAlert": indicator.generate_alert,
        "createdBySource": "PublicApi",
        "educateUrl": indicator.educate_url,
        "externalID": indicator.external_id,
    }


def _enum(body: dict[str, Any], key: str, allowed: tuple[str, ...], required: bool = True) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise IndicatorError(f"'{key}' is required: one of {', '.join(allowed)}.")
        return None
    found = next((a for a in allowed if isinstance(value, str) and a.lower() == value.lower()), None)
    if found is None:
        raise IndicatorError(f"Invalid {key} '{value}': use one of {', '.join(allowed)}.")
    return found


def _text(body: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or (required and isinstance(value, str) and not value.strip()):
        if required:
            raise IndicatorError(f"'{key}' is required.")
        return None
    if not isinstance(value, str):
        raise IndicatorError(f"'{key}' must be a string.")
    return value


def _value(indicator_type: str, raw: object) -> str:
    """The indicator value, checked against its type (the service's per-type 400s)."""
    if not isinstance(raw, str) or not raw.strip():
        raise IndicatorError("'indicatorValue' is required.")
    value = raw.strip()
    if indicator_type in _HASH_LENGTHS:
        size = _HASH_LENGTHS[indicator_type]
        if len(value) != size or not _HEX.fullmatch(value):
            raise IndicatorError(f"Invalid hash value '{value}' for {indicator_type}: {size} hexadecimal characters.",
                                 "InvalidHashValue")
        return value.lower()
    if indicator_type == "IpAddress":
        if "/" in value:
            raise IndicatorError(f"Invalid IP address '{value}': CIDR ranges are not supported; give one address.",
                                 "InvalidIpAddress")
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise IndicatorError(f"Invalid IP address '{value}'.", "InvalidIpAddress") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in network for network in _INTERNAL if network.version == address.version):
            raise IndicatorError(f"Invalid IP address '{value}': only external IP addresses can be indicators.",
                                 "InvalidIpAddress")
        return str(address)
    if indicator_type == "DomainName":
        if not _DOMAIN.fullmatch(value):
            raise IndicatorError(f"Invalid domain name '{value}' (a name such as contoso.com, no scheme or path).",
                                 "InvalidDomainName")
        return value.lower()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise IndicatorError(f"Invalid URL '{value}': an http or https URL is required.", "InvalidUrl")
    return value


def parse_indicator(body: object, now: int) -> dict[str, Any]:
    """The Indicator fields of a POST body; raises :class:`IndicatorError` for what the service refuses."""
    if not isinstance(body, dict):
        raise IndicatorError("Request body is incorrect: an indicator is a JSON object.")
    indicator_type = _enum(body, "indicatorType", TYPES)
    assert indicator_type is not None
    action = _enum(body, "action", ACTIONS)
    generate_alert = body.get("generateAlert", False)
    if not isinstance(generate_alert, bool):
        raise IndicatorError("'generateAlert' must be true or false.")
    if action == "Audit" and not generate_alert:
        raise IndicatorError("An Audit indicator requires 'generateAlert': true.")
    expiration = None
    if body.get("expirationTime") is not None:
        text = body["expirationTime"]
        expiration = parse_datetime(text) if isinstance(text, str) else None
        if expiration is None:
            raise IndicatorError(f"Invalid expirationTime '{text}': an ISO 8601 UTC time is required.", "InvalidInput")
        if expiration <= now:
            raise IndicatorError(f"Invalid expirationTime '{text}': it must be in the future.", "InvalidInput")
    groups = body.get("rbacGroupNames")
    if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)):
        raise IndicatorError("'rbacGroupNames' must be a list of device group names.")
    return {
        "value": _value(indicator_type, body.get("indicatorValue")),
        "type": indicator_type,
        "action": action,
        "title": _text(body, "title", required=True),
        "description": _text(body, "description", required=True),
        "application": _text(body, "application"),
        "severity": _enum(body, "severity", SEVERITIES, required=False),
        "expiration": expiration,
        "recommended_actions": _text(body, "recommendedActions"),
        "rbac_group_names": list(groups or []),
        "generate_alert": generate_alert,
        "educate_url": _text(body, "educateUrl"),
        "external_id": _text(body, "externalID"),
    }


def _quota_message(error: IndicatorQuotaError) -> str:
    return (f"Indicator quota exceeded: the tenant already has {error.active:,} active indicators and the limit is "
            f"{error.quota:,}. Delete indicators or let them expire before adding more.")


def _upsert(ctx: Context, body: object) -> Indicator:
    """Create or update one indicator; raises IndicatorError (bad body) or IndicatorQuotaError."""
    now = now_ticks()
    fields = parse_indicator(body, now)
    indicator, _created = ctx.state.stores.indicators.upsert(fields, caller(ctx), now, ctx.state.indicator_quota)
    return indicator


def list_indicators(ctx: Context) -> Response:
    """``GET /api/indicators`` with ``$filter``, ``$top`` and ``$skip``; oldest first."""
    store = ctx.state.stores.indicators
    return odata_list(ctx, store=store, key="indicators", items=store.all(), fields=INDICATOR_FIELDS,
                      fragment="Indicators", encode=lambda query: lambda i: dumps(indicator_json(i)))


def post_indicator(ctx: Context) -> Response:
    """``POST /api/indicators``: 200 with the indicator created, or updated when its type and value exist."""
    body = json_body(ctx)
    if body is None:
        return api_error(ctx.family, 400, "Request body is incorrect", ctx.req, code="InvalidRequestBody")
    try:
        indicator = _upsert(ctx, body)
    except IndicatorError as error:
        return api_error(ctx.family, 400, str(error), ctx.req, code=error.code)
    except IndicatorQuotaError as error:
        return api_error(ctx.family, 400, _quota_message(error), ctx.req, code="BadRequest")
    return entity(ctx, "Indicators/$entity", dumps(indicator_json(indicator)))


def delete_indicator(ctx: Context) -> Response:
    """``DELETE /api/indicators/{id}``: 204, or 404 when there is no such indicator."""
    if not ctx.state.stores.indicators.delete(ctx.params["id"]):
        return not_found(ctx, "Indicator", ctx.params["id"])
    return Response(204, [], content_type=None)


def import_indicators(ctx: Context) -> Response:
    """``POST /api/indicators/import`` with ``{"Indicators": [...]}`` (≤ 500): 200 with one result per indicator."""
    body = json_body(ctx)
    items = body.get("Indicators") if body else None
    if not isinstance(items, list) or not items:
        return api_error(ctx.family, 400, "Request body is incorrect: 'Indicators' (a non-empty list) is required.",
                         ctx.req, code="InvalidRequestBody")
    if len(items) > MAX_IMPORT:
        return api_error(ctx.family, 400, f"The batch holds {len(items)} indicators; the maximum is {MAX_IMPORT}.",
                         ctx.req, code="MaximumBatchSizeExceeded")
    results = []
    for item in items:
        value = item.get("indicatorValue") if isinstance(item, dict) else None
        try:
            indicator = _upsert(ctx, item)
        except IndicatorError as error:
            results.append({"id": None, "indicator": value, "isFailed": True, "failureReason": str(error)})
        except IndicatorQuotaError as error:
            results.append({"id": None, "indicator": value, "isFailed": True, "failureReason": _quota_message(error)})
        else:
            results.append({"id": indicator.id, "indicator": indicator.value, "isFailed": False,
                            "failureReason": None})
    context = (f"{ctx.req.base_url}/api/$metadata#Collection(microsoft.windowsDefenderATP.api."
               "ImportIndicatorResult)")
    return Response(200, [dumps({"@odata.context": context, "value": results})])
