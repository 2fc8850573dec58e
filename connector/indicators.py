"""Custom indicators (IoCs) on the Defender for Endpoint API: list, create or update, delete, import.

``POST /api/indicators`` creates an indicator or updates the one with the same value and type, so
sending it again changes nothing: it is retried like a read. A tenant holds at most 15,000 active
indicators; past that the service refuses new ones, and the error says what to do.
"""

from __future__ import annotations

from datetime import datetime

from .errors import BadRequestError
from .hunting import iso
from .paging import ItemPaged
from .resources import segment

TYPES = ("FileSha1", "FileSha256", "FileMd5", "CertificateThumbprint", "IpAddress", "DomainName", "Url")
ACTIONS = ("Alert", "Warn", "Block", "Audit", "BlockAndRemediate", "AlertAndBlock", "Allowed")
SEVERITIES = ("Informational", "Low", "Medium", "High")
QUOTA = 15_000
MAX_IMPORT = 500
_WRITE = "Ti.ReadWrite.All (WindowsDefenderATP)"
_READ = "Ti.ReadWrite.All (WindowsDefenderATP)"

#: Known fields of an indicator and how they are typed in frames.
INDICATOR_KINDS = {
    "id": "string", "indicatorValue": "string", "indicatorType": "string", "action": "string",
    "application": "string", "source": "string", "sourceType": "string", "createdBySource": "string",
    "createdBy": "string", "lastUpdatedBy": "string", "creationTimeDateTimeUtc": "datetime",
    "expirationTime": "datetime", "lastUpdateTime": "datetime", "severity": "string", "title": "string",
    "description": "string", "recommendedActions": "string", "rbacGroupNames": "object", "rbacGroupIds": "object",
    "generateAlert": "bool",
}


def _choice(value: str, known: tuple[str, ...], what: str) -> str:
    for name in known:
        if name.lower() == str(value).strip().lower():
            return name
    raise BadRequestError(f"Unknown indicator {what} {str(value)[:40]!r}. Use one of: {', '.join(known)}.")


def indicator_body(value: str, indicator_type: str, action: str, *, title: str, description: str,
                   severity: str | None = None, expiration: datetime | None = None,
                   recommended_actions: str | None = None, rbac_group_names: list[str] | None = None,
                   generate_alert: bool | None = None, application: str | None = None) -> dict:
    """The body of an indicator, checked (type, action, severity, Audit needs generate_alert)."""
    if not str(value or "").strip():
        raise BadRequestError("The indicator value is empty.")
    if "/" in str(value) and indicator_type.lower() == "ipaddress":
        raise BadRequestError("Indicators take single IP addresses: CIDR ranges are not supported by Defender.")
    body = {
        "indicatorValue": str(value).strip(),
        "indicatorType": _choice(indicator_type, TYPES, "type"),
        "action": _choice(action, ACTIONS, "action"),
        "title": title,
        "description": description,
    }
    if severity is not None:
        body["severity"] = _choice(severity, SEVERITIES, "severity")
    if expiration is not None:
        body["expirationTime"] = iso(expiration)
    if recommended_actions is not None:
        body["recommendedActions"] = recommended_actions
    if rbac_group_names is not None:
        body["rbacGroupNames"] = list(rbac_group_names)
    if application is not None:
        body["application"] = application
    if generate_alert is not None:
        body["generateAlert"] = bool(generate_alert)
    if body["action"] == "Audit" and not body.get("generateAlert"):
        raise BadRequestError("An Audit indicator needs generate_alert=True (Defender's rule).")
    return body


def _quota_hint(exc: BadRequestError) -> BadRequestError:
    text = exc.message.lower()
    if "15000" in text.replace(",", "") or "quota" in text or "limit" in text and "indicator" in text:
        exc.message = (f"{exc.message} The tenant holds at most {QUOTA:,} active indicators: delete expired or "
                       "unneeded ones (list_indicators / delete_indicator), or give new ones an expiration.")
        exc.args = (exc.message,)
    return exc


class IndicatorOperations:
    """Indicator verbs: mixed into :class:`~connector.DefenderClient`."""

    def list_indicators(self, *, filter: str | None = None, top: int | None = None) -> ItemPaged:
        """The tenant's custom indicators, lazily paged."""
        return self._resource("mde").pager("/api/indicators", operation="list indicators", permission=_READ,
                                            params={"$filter": filter} if filter else None, limit=top,
                                            kinds=INDICATOR_KINDS)

    def create_indicator(self, value: str, indicator_type: str, action: str, *, title: str, description: str,
                         **options) -> dict:
        """Create an indicator, or update the one with the same value and type; returns it.

        ``options``: ``severity``, ``expiration`` (datetime), ``recommended_actions``,
        ``rbac_group_names``, ``generate_alert``, ``application``.
        """
        body = indicator_body(value, indicator_type, action, title=title, description=description, **options)
        try:
            return self._resource("mde").transport.request(
                "POST", "/api/indicators", json=body, operation="create indicator", permission=_WRITE,
                idempotent=True,  # an upsert on value + type: sending it twice changes nothing
                limiter=self._resource("mde").limiter, parse=lambda r: r.json())
        except BadRequestError as exc:
            raise _quota_hint(exc) from None

    def delete_indicator(self, indicator_id: str) -> None:
        """Delete an indicator by id."""
        self._resource("mde").transport.request("DELETE", f"/api/indicators/{segment(indicator_id)}",
                                                operation="delete indicator", permission=_WRITE,
                                                limiter=self._resource("mde").limiter)

    def import_indicators(self, indicators: list[dict]) -> list[dict]:
        """Create or update many indicators (bodies from :func:`indicator_body`), 500 a request.

        Returns the service's per-indicator results (``isFailed``, ``failureReason``...).
        """
        results: list[dict] = []
        for start in range(0, len(indicators), MAX_IMPORT):
            batch = indicators[start:start + MAX_IMPORT]
            try:
                answer = self._resource("mde").transport.request(
                    "POST", "/api/indicators/import", json={"Indicators": batch}, operation="import indicators",
                    permission=_WRITE, idempotent=True, limiter=self._resource("mde").limiter,
                    parse=lambda r: r.json())
            except BadRequestError as exc:
                raise _quota_hint(exc) from None
            results.extend(answer.get("value", []))
        return results
