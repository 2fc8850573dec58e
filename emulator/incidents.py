"""Incidents: Graph ``/security/incidents`` (list, get, ``$expand=alerts``, PATCH, comments) and the legacy M365D
``/api/incidents`` (list with ``$top`` ≤ 100, get, PATCH), over the one incident store (defender-api.md §4.1, §4.2).
"""

from __future__ import annotations

from .alerts import comment_body, update_alert
from .context import Context
from .messages import Response, dumps
from .odata import Field
from .pages import bad_body, caller, entity, json_body, not_found, odata_list, plain_list
from .stores import add_comment
from .triage import (
    ALL_DETERMINATIONS,
    CLASSIFICATIONS,
    INCIDENT_STATUSES,
    TriageError,
    fitting_determination,
    parse_update,
)
from .views import graph_comment, graph_incident_bytes, m365d_incident
from .world import Alert, Incident

_SEVERITIES = ("unknown", "informational", "low", "medium", "high", "unknownFutureValue")

#: ``$filter`` properties of Graph ``/security/incidents`` (security-list-incidents.md).
GRAPH_INCIDENT_FIELDS = {
    "assignedTo": Field.by("string", lambda i: i.assigned_to),
    "classification": Field.by("enum", lambda i: i.classification, CLASSIFICATIONS + ("unknownFutureValue",)),
    "createdDateTime": Field.by("datetime", lambda i: i.created),
    "determination": Field.by("enum", lambda i: i.determination, ALL_DETERMINATIONS + ("unknownFutureValue",)),
    "lastUpdateDateTime": Field.by("datetime", lambda i: i.last_update),
    "severity": Field.by("enum", lambda i: i.severity, _SEVERITIES),
    "status": Field.by("enum", lambda i: i.status, INCIDENT_STATUSES + ("unknownFutureValue", "awaitingAction")),
}

#: ``$filter`` properties of the legacy ``/api/incidents`` (api-list-incidents.md).
M365D_INCIDENT_FIELDS = {
    "lastUpdateTime": Field.by("datetime", lambda i: i.last_update),
    "createdTime": Field.by("datetime", lambda i: i.created),
    "status": Field.by("enum", lambda i: i.status, INCIDENT_STATUSES),
    "assignedTo": Field.by("string", lambda i: i.assigned_to),
}
M365D_MAX_TOP = 100


def _alerts_of(ctx: Context, incident: Incident) -> list[Alert]:
    store = ctx.state.stores.alerts
    return [a for a in (store.get(i) for i in incident.alert_ids) if a is not None]


def _tenant(ctx: Context) -> str:
    return ctx.principal.tenant_id if ctx.principal else ctx.state.tenant_id


# ---------------------------------------------------------------- Graph


def list_graph_incidents(ctx: Context) -> Response:
    """``GET /security/incidents`` with ``$filter``, ``$top``, ``$skip``, ``$count`` and ``$expand=alerts``."""
    store = ctx.state.stores.incidents
    tenant = _tenant(ctx)

    def encode(query):
        if "alerts" in query.expand:
            return lambda incident: graph_incident_bytes(incident, tenant, _alerts_of(ctx, incident))
        return lambda incident: graph_incident_bytes(incident, tenant)

    return odata_list(ctx, store=store, key="graph-incidents", items=store.all(), fields=GRAPH_INCIDENT_FIELDS,
                      fragment="security/incidents", encode=encode, count=True, expandable=("alerts",))


def _graph_single(ctx: Context, incident: Incident) -> Response:
    expand = {p.strip().lower() for p in ctx.req.query.get("$expand", "").split(",") if p.strip()}
    if expand - {"alerts"}:
        return bad_body(ctx, f"Could not find a navigation property named '{', '.join(sorted(expand))}' to $expand.")
    alerts = _alerts_of(ctx, incident) if "alerts" in expand else None
    return entity(ctx, "security/incidents/$entity", graph_incident_bytes(incident, _tenant(ctx), alerts))


def get_graph_incident(ctx: Context) -> Response:
    """``GET /security/incidents/{id}[?$expand=alerts]``."""
    incident = ctx.state.stores.incidents.get(ctx.params["id"])
    if incident is None:
        return not_found(ctx, "Incident", ctx.params["id"])
    return _graph_single(ctx, incident)


def _update_incident(ctx: Context, incident: Incident, changes: dict) -> None:
    """Apply triage changes; resolving an incident resolves its open alerts, as the portal does."""
    def change(i: Incident) -> None:
        if "status" in changes:
            i.status = changes["status"]
        if "classification" in changes:
            i.classification = changes["classification"]
            i.determination = fitting_determination(i.classification, i.determination)
        if "determination" in changes:
            i.determination = changes["determination"]
        if "assignedTo" in changes:
            i.assigned_to = changes["assignedTo"]
        if "tags" in changes:
            i.tags = changes["tags"]
        if "comment" in changes:
            add_comment(i.comments, changes["comment"], caller(ctx))

    if changes.get("status") == "resolved":
        for alert in _alerts_of(ctx, incident):
            if alert.status != "resolved":
                update_alert(ctx, alert, {"status": "resolved"})
    ctx.state.stores.incidents.touch(incident, change)


def _patch(ctx: Context, allowed: tuple[str, ...]) -> Incident | Response:
    incident = ctx.state.stores.incidents.get(ctx.params["id"])
    if incident is None:
        return not_found(ctx, "Incident", ctx.params["id"])
    body = json_body(ctx)
    if body is None:
        return bad_body(ctx, "Unable to read JSON request payload.")
    try:
        changes = parse_update(body, statuses=INCIDENT_STATUSES, current_classification=incident.classification,
                               allowed=allowed)
    except TriageError as error:
        return bad_body(ctx, str(error))
    _update_incident(ctx, incident, changes)
    return incident


def patch_graph_incident(ctx: Context) -> Response:
    """``PATCH /security/incidents/{id}``: assignedTo, classification, determination, status, customTags."""
    incident = _patch(ctx, ("status", "classification", "determination", "assignedTo", "customTags"))
    return incident if isinstance(incident, Response) else _graph_single(ctx, incident)


def post_graph_incident_comment(ctx: Context) -> Response:
    """``POST /security/incidents/{id}/comments``: 200 with every comment of the incident."""
    incident = ctx.state.stores.incidents.get(ctx.params["id"])
    if incident is None:
        return not_found(ctx, "Incident", ctx.params["id"])
    comment = comment_body(ctx)
    if isinstance(comment, Response):
        return comment
    _update_incident(ctx, incident, {"comment": comment})
    return plain_list(ctx, f"security/incidents('{incident.id}')/comments",
                      [graph_comment(c) for c in incident.comments])


# ---------------------------------------------------------------- M365D legacy


def list_m365d_incidents(ctx: Context) -> Response:
    """``GET /api/incidents``: newest first, ``$top`` at most 100, ``$filter`` on the four documented fields."""
    store = ctx.state.stores.incidents
    return odata_list(ctx, store=store, key="m365d-incidents", items=tuple(reversed(store.all())),
                      fields=M365D_INCIDENT_FIELDS, fragment="Incidents", max_top=M365D_MAX_TOP,
                      encode=lambda query: lambda incident: dumps(m365d_incident(incident, _alerts_of(ctx, incident))))


def get_m365d_incident(ctx: Context) -> Response:
    """``GET /api/incidents/{id}``."""
    incident = ctx.state.stores.incidents.get(ctx.params["id"])
    if incident is None:
        return not_found(ctx, "Incident", ctx.params["id"])
    return entity(ctx, "Incidents/$entity", dumps(m365d_incident(incident, _alerts_of(ctx, incident))))


def patch_m365d_incident(ctx: Context) -> Response:
    """``PATCH /api/incidents/{id}``: status, assignedTo, classification, determination, tags, comment."""
    incident = _patch(ctx, ("status", "assignedTo", "classification", "determination", "tags", "comment"))
    if isinstance(incident, Response):
        return incident
    return entity(ctx, "Incidents/$entity", dumps(m365d_incident(incident, _alerts_of(ctx, incident))))
