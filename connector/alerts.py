"""Alerts and incidents: Graph security ``alerts_v2`` and ``incidents``; the legacy MDE and M365D lists."""

from __future__ import annotations

from datetime import datetime

from . import verdicts
from .errors import BadRequestError
from .hunting import iso
from .paging import ItemPaged
from .resources import odata_filter, segment

_GRAPH_ALERTS = "SecurityAlert.Read.All (Microsoft Graph)"
_GRAPH_INCIDENTS = "SecurityIncident.Read.All (Microsoft Graph)"
_MDE_ALERTS = "Alert.Read.All (WindowsDefenderATP)"
_M365D_INCIDENTS = "Incident.Read.All (Microsoft Threat Protection)"
_GRAPH_ALERTS_WRITE = "SecurityAlert.ReadWrite.All (Microsoft Graph)"
_GRAPH_INCIDENTS_WRITE = "SecurityIncident.ReadWrite.All (Microsoft Graph)"
_MDE_ALERTS_WRITE = "Alert.ReadWrite.All (WindowsDefenderATP)"
_M365D_INCIDENTS_WRITE = "Incident.ReadWrite.All (Microsoft Threat Protection)"
_COMMENT_TYPE = "microsoft.graph.security.alertComment"

#: Known fields of a Graph alert (``microsoft.graph.security.alert``) and how they are typed in frames.
ALERT_KINDS = {
    "id": "string", "providerAlertId": "string", "incidentId": "string", "status": "string", "severity": "string",
    "classification": "string", "determination": "string", "serviceSource": "string", "detectionSource": "string",
    "detectorId": "string", "tenantId": "string", "title": "string", "description": "string",
    "recommendedActions": "string", "category": "string", "assignedTo": "string", "alertWebUrl": "string",
    "incidentWebUrl": "string", "actorDisplayName": "string", "threatDisplayName": "string",
    "threatFamilyName": "string", "mitreTechniques": "object", "createdDateTime": "datetime",
    "lastUpdateDateTime": "datetime", "resolvedDateTime": "datetime", "firstActivityDateTime": "datetime",
    "lastActivityDateTime": "datetime", "comments": "object", "evidence": "object", "systemTags": "object",
}
#: Known fields of a Graph incident.
INCIDENT_KINDS = {
    "id": "string", "tenantId": "string", "status": "string", "severity": "string", "displayName": "string",
    "description": "string", "classification": "string", "determination": "string", "assignedTo": "string",
    "incidentWebUrl": "string", "redirectIncidentId": "string", "createdDateTime": "datetime",
    "lastUpdateDateTime": "datetime", "customTags": "object", "systemTags": "object", "comments": "object",
    "alerts": "object",
}
#: Known fields of a legacy MDE alert.
MDE_ALERT_KINDS = {
    "id": "string", "incidentId": "int", "investigationId": "int", "assignedTo": "string", "severity": "string",
    "status": "string", "classification": "string", "determination": "string", "investigationState": "string",
    "detectionSource": "string", "detectorId": "string", "category": "string", "threatFamilyName": "string",
    "threatName": "string", "title": "string", "description": "string", "alertCreationTime": "datetime",
    "firstEventTime": "datetime", "lastEventTime": "datetime", "lastUpdateTime": "datetime",
    "resolvedTime": "datetime", "machineId": "string", "computerDnsName": "string", "rbacGroupName": "string",
    "aadTenantId": "string", "mitreTechniques": "object", "relatedUser": "object", "comments": "object",
    "evidence": "object",
}
#: Known fields of a legacy M365D incident.
M365D_INCIDENT_KINDS = {
    "incidentId": "int", "redirectIncidentId": "int", "incidentName": "string", "createdTime": "datetime",
    "lastUpdateTime": "datetime", "assignedTo": "string", "classification": "string", "determination": "string",
    "status": "string", "severity": "string", "tags": "object", "comments": "object", "alerts": "object",
}


def _list_params(updated_field: str, since: datetime | None, filter: str | None, top: int | None,
                 page_size: int | None, most: int) -> dict:
    """OData parameters of a list updated since ``since``: ``$filter`` and a page size no larger than ``most``."""
    size = page_size if page_size is not None else (top if top is not None and top <= most else None)
    params = {"$top": str(min(size, most))} if size else {}
    clause = odata_filter(f"{updated_field} ge {iso(since)}" if since is not None else None, filter)
    if clause:
        params["$filter"] = clause
    return params


class AlertOperations:
    """Alerts and incidents verbs: mixed into :class:`~connector.DefenderClient`."""

    def list_alerts(self, since: datetime | None = None, *, filter: str | None = None, top: int | None = None,
                    page_size: int | None = None) -> ItemPaged:
        """Graph ``alerts_v2`` updated at or after ``since`` (``lastUpdateDateTime ge since``), lazily paged.

        ``filter`` is an extra OData clause (``"severity eq 'high'"``), joined with ``and``; ``top``
        stops after that many alerts; ``page_size`` is the ``$top`` of each page.
        """
        params = _list_params("lastUpdateDateTime", since, filter, top, page_size, 2000)
        return self._resource("graph").pager("/v1.0/security/alerts_v2", operation="list alerts",
                                              permission=_GRAPH_ALERTS, params=params, limit=top, kinds=ALERT_KINDS)

    def get_alert(self, alert_id: str) -> dict:
        """One Graph alert (``alerts_v2/{id}``) with its evidence, as sent."""
        return self._resource("graph").get(f"/v1.0/security/alerts_v2/{segment(alert_id)}", operation="get alert",
                                           permission=_GRAPH_ALERTS)

    def list_incidents(self, since: datetime | None = None, *, filter: str | None = None, top: int | None = None,
                       page_size: int | None = None, expand_alerts: bool = False) -> ItemPaged:
        """Graph ``incidents`` updated at or after ``since``; with ``expand_alerts`` each carries its alerts."""
        params = _list_params("lastUpdateDateTime", since, filter, top, page_size, 50)
        if expand_alerts:
            params["$expand"] = "alerts"
        return self._resource("graph").pager("/v1.0/security/incidents", operation="list incidents",
                                              permission=_GRAPH_INCIDENTS, params=params, limit=top,
                                              kinds=INCIDENT_KINDS)

    def get_incident(self, incident_id: str, *, expand_alerts: bool = True) -> dict:
        """One Graph incident, with its alerts (``$expand=alerts``) unless ``expand_alerts=False``."""
        return self._resource("graph").get(
            f"/v1.0/security/incidents/{segment(incident_id)}", operation="get incident", permission=_GRAPH_INCIDENTS,
            params={"$expand": "alerts"} if expand_alerts else None,
        )

    def list_mde_alerts(self, since: datetime | None = None, *, filter: str | None = None, top: int | None = None,
                        page_size: int | None = None, expand_evidence: bool = False) -> ItemPaged:
        """Legacy Defender for Endpoint ``/api/alerts`` updated at or after ``since`` (``lastUpdateTime``)."""
        params = _list_params("lastUpdateTime", since, filter, top, page_size, 10_000)
        if expand_evidence:
            params["$expand"] = "evidence"
        return self._resource("mde").pager("/api/alerts", operation="list MDE alerts", permission=_MDE_ALERTS,
                                            params=params, limit=top, kinds=MDE_ALERT_KINDS)

    def get_mde_alert(self, alert_id: str) -> dict:
        """One legacy Defender for Endpoint alert (``/api/alerts/{id}``), as sent."""
        return self._resource("mde").get(f"/api/alerts/{segment(alert_id)}", operation="get MDE alert",
                                         permission=_MDE_ALERTS)

    def list_m365d_incidents(self, since: datetime | None = None, *, filter: str | None = None,
                             top: int | None = None, page_size: int | None = None) -> ItemPaged:
        """Legacy Microsoft 365 Defender ``/api/incidents`` (at most 100 a page), updated since ``since``."""
        params = _list_params("lastUpdateTime", since, filter, top, page_size, 100)
        return self._resource("m365d").pager("/api/incidents", operation="list M365D incidents",
                                              permission=_M365D_INCIDENTS, params=params, limit=top,
                                              kinds=M365D_INCIDENT_KINDS)


def _changes(**fields) -> dict:
    body = {k: v for k, v in fields.items() if v is not None}
    if not body:
        raise BadRequestError("Nothing to update: give a status, assignee, classification, determination or tags.")
    return body


def _comment_body(comment: str) -> dict:
    text = str(comment or "").strip()
    if not text:
        raise BadRequestError("The comment is empty.")
    return {"@odata.type": _COMMENT_TYPE, "comment": text}


class WriteBackOperations:
    """Status, assignee, verdict, tags and comments on alerts and incidents: mixed into the client.

    These are PATCH and POST calls: never sent twice after a timeout (see :mod:`connector.transport`).
    """

    def update_alert(self, alert_id: str, *, status: str | None = None, assigned_to: str | None = None,
                     classification: str | None = None, determination: str | None = None) -> dict:
        """Update a Graph alert (``new``/``inProgress``/``resolved``; verdict as a valid pair); returns it."""
        cls, det = verdicts.verdict(classification, determination)
        body = _changes(status=verdicts.status(status, verdicts.ALERT_STATUSES), assignedTo=assigned_to,
                        classification=cls, determination=det)
        return self._resource("graph").send("PATCH", f"/v1.0/security/alerts_v2/{segment(alert_id)}", body,
                                            operation="update alert", permission=_GRAPH_ALERTS_WRITE)

    def add_alert_comment(self, alert_id: str, comment: str) -> list[dict]:
        """Add a comment to a Graph alert; returns all its comments."""
        answer = self._resource("graph").send("POST", f"/v1.0/security/alerts_v2/{segment(alert_id)}/comments",
                                              _comment_body(comment), operation="comment on alert",
                                              permission=_GRAPH_ALERTS_WRITE)
        return answer.get("value", [])

    def update_incident(self, incident_id: str, *, status: str | None = None, assigned_to: str | None = None,
                        classification: str | None = None, determination: str | None = None,
                        custom_tags: list[str] | None = None) -> dict:
        """Update a Graph incident; ``custom_tags`` replaces the tag list. Returns the incident."""
        cls, det = verdicts.verdict(classification, determination)
        body = _changes(status=verdicts.status(status, verdicts.INCIDENT_STATUSES), assignedTo=assigned_to,
                        classification=cls, determination=det,
                        customTags=list(custom_tags) if custom_tags is not None else None)
        return self._resource("graph").send("PATCH", f"/v1.0/security/incidents/{segment(incident_id)}", body,
                                            operation="update incident", permission=_GRAPH_INCIDENTS_WRITE)

    def add_incident_comment(self, incident_id: str, comment: str) -> list[dict]:
        """Add a comment to a Graph incident; returns all its comments."""
        answer = self._resource("graph").send("POST", f"/v1.0/security/incidents/{segment(incident_id)}/comments",
                                              _comment_body(comment), operation="comment on incident",
                                              permission=_GRAPH_INCIDENTS_WRITE)
        return answer.get("value", [])

    def update_mde_alert(self, alert_id: str, *, status: str | None = None, assigned_to: str | None = None,
                         classification: str | None = None, determination: str | None = None,
                         comment: str | None = None) -> dict:
        """Update a legacy Defender for Endpoint alert (``comment`` alone adds a comment). Returns it."""
        cls, det = verdicts.verdict(classification, determination)
        body = _changes(status=verdicts.pascal(verdicts.status(status, verdicts.ALERT_STATUSES)),
                        assignedTo=assigned_to, classification=verdicts.pascal(cls),
                        determination=verdicts.pascal(det), comment=comment)
        return self._resource("mde").send("PATCH", f"/api/alerts/{segment(alert_id)}", body,
                                          operation="update MDE alert", permission=_MDE_ALERTS_WRITE)

    def update_m365d_incident(self, incident_id: str | int, *, status: str | None = None,
                              assigned_to: str | None = None, classification: str | None = None,
                              determination: str | None = None, tags: list[str] | None = None,
                              comment: str | None = None) -> dict:
        """Update a legacy Microsoft 365 Defender incident (``tags`` replaces the list). Returns it."""
        cls, det = verdicts.verdict(classification, determination)
        body = _changes(status=verdicts.pascal(verdicts.status(status, verdicts.INCIDENT_STATUSES)),
                        assignedTo=assigned_to, classification=verdicts.pascal(cls),
                        determination=verdicts.pascal(det), tags=list(tags) if tags is not None else None,
                        comment=comment)
        return self._resource("m365d").send("PATCH", f"/api/incidents/{segment(incident_id)}", body,
                                            operation="update M365D incident", permission=_M365D_INCIDENTS_WRITE)
