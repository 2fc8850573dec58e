"""Alerts: MDE ``/api/alerts`` (list, get, PATCH, per machine) and Graph ``/security/alerts_v2`` (list, get,
PATCH, comments), both over the one alert store (defender-api.md §3.1, §4.3).
"""

from __future__ import annotations

from .context import Context
from .messages import Response
from .odata import Field
from .pages import bad_body, caller, entity, json_body, not_found, odata_list, plain_list
from .stores import add_comment
from .triage import (
    ALERT_STATUSES,
    ALL_DETERMINATIONS,
    CLASSIFICATIONS,
    TriageError,
    fitting_determination,
    parse_update,
)
from .views import graph_alert_bytes, graph_comment, mde_alert_bytes, mde_detection_source
from .world import Alert, now_ticks

MAX_TOP = 10_000
_SEVERITIES = ("unknown", "unSpecified", "informational", "low", "medium", "high")

#: ``$filter`` properties of MDE ``/api/alerts`` (get-alerts.md), in MDE's spelling.
MDE_ALERT_FIELDS = {
    "alertCreationTime": Field.by("datetime", lambda a: a.created),
    "lastUpdateTime": Field.by("datetime", lambda a: a.last_update),
    "lastEventTime": Field.by("datetime", lambda a: a.last_activity),
    "incidentId": Field.by("int", lambda a: a.incident_id),
    "investigationId": Field.by("int", lambda a: a.investigation_id),
    "id": Field.by("string", lambda a: a.id),
    "assignedTo": Field.by("string", lambda a: a.assigned_to),
    "detectionSource": Field.by("string", mde_detection_source),
    "status": Field.by("enum", lambda a: a.status, ("Unknown",) + ALERT_STATUSES),
    "severity": Field.by("enum", lambda a: a.severity, _SEVERITIES),
    "category": Field.by("string", lambda a: a.category),
}

#: ``$filter`` properties of Graph ``alerts_v2`` (security-list-alerts_v2.md).
GRAPH_ALERT_FIELDS = {
    "assignedTo": Field.by("string", lambda a: a.assigned_to),
    "classification": Field.by("enum", lambda a: a.classification, CLASSIFICATIONS + ("unknownFutureValue",)),
    "determination": Field.by("enum", lambda a: a.determination, ALL_DETERMINATIONS + ("unknownFutureValue",)),
    "createdDateTime": Field.by("datetime", lambda a: a.created),
    "lastUpdateDateTime": Field.by("datetime", lambda a: a.last_update),
    "severity": Field.by("enum", lambda a: a.severity, _SEVERITIES + ("unknownFutureValue",)),
    "serviceSource": Field.by("enum", lambda a: a.service_source, (
        "unknown", "microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps",
        "microsoftDefenderForOffice365", "microsoft365Defender", "azureAdIdentityProtection",
        "microsoftAppGovernance", "dataLossPrevention", "unknownFutureValue", "microsoftDefenderForCloud")),
    "status": Field.by("enum", lambda a: a.status, ALERT_STATUSES + ("unknown", "unknownFutureValue")),
}


def _tenant(ctx: Context) -> str:
    # Each tenant sees the one seeded world, stamped with its own tenant id.
    return ctx.principal.tenant_id if ctx.principal else ctx.state.tenant_id


def _mde_encoder(ctx: Context):
    tenant = _tenant(ctx)

    def factory(query):
        evidence = "evidence" in query.expand
        return lambda alert: mde_alert_bytes(alert, tenant, evidence)
    return factory


# ---------------------------------------------------------------- MDE /api/alerts


def list_mde_alerts(ctx: Context) -> Response:
    """``GET /api/alerts`` with ``$filter``, ``$top`` (≤ 10,000), ``$skip`` and ``$expand=evidence``."""
    store = ctx.state.stores.alerts
    return odata_list(ctx, store=store, key="mde-alerts", items=store.all(), fields=MDE_ALERT_FIELDS,
                      fragment="Alerts", encode=_mde_encoder(ctx), max_top=MAX_TOP, expandable=("evidence",))


def machine_alerts(ctx: Context) -> Response:
    """``GET /api/machines/{id}/alerts``."""
    machine = ctx.state.stores.machines.get(ctx.params["id"])
    if machine is None:
        return not_found(ctx, "Machine", ctx.params["id"])
    store = ctx.state.stores.alerts
    return odata_list(ctx, store=store, key=("machine", machine["id"]), items=store.of_machine(machine["id"]),
                      fields=MDE_ALERT_FIELDS, fragment="Alerts", encode=_mde_encoder(ctx), max_top=MAX_TOP,
                      expandable=("evidence",))


def _mde_single(ctx: Context, alert: Alert) -> Response:
    evidence = "evidence" in ctx.req.query.get("$expand", "").lower()
    return entity(ctx, "Alerts/$entity", mde_alert_bytes(alert, _tenant(ctx), evidence))


def get_mde_alert(ctx: Context) -> Response:
    """``GET /api/alerts/{id}`` (``$expand=evidence`` too)."""
    alert = ctx.state.stores.alerts.get(ctx.params["id"])
    if alert is None:
        return not_found(ctx, "Alert", ctx.params["id"])
    return _mde_single(ctx, alert)


def update_alert(ctx: Context, alert: Alert, changes: dict) -> None:
    """Apply parsed triage ``changes`` to an alert, then keep its incident's status in step."""
    stores = ctx.state.stores

    def change(a: Alert) -> None:
        if "status" in changes and changes["status"] != a.status:
            a.status = changes["status"]
            a.resolved = now_ticks() if a.status == "resolved" else None
        if "classification" in changes:
            a.classification = changes["classification"]
            a.determination = fitting_determination(a.classification, a.determination)
        if "determination" in changes:
            a.determination = changes["determination"]
        if "assignedTo" in changes:
            a.assigned_to = changes["assignedTo"]
        if "comment" in changes:
            add_comment(a.comments, changes["comment"], caller(ctx))

    stores.alerts.touch(alert, change)
    incident = stores.incidents.get(alert.incident_id)
    if incident is not None:
        alerts = [stores.alerts.get(i) for i in incident.alert_ids]
        all_resolved = all(a is not None and a.status == "resolved" for a in alerts)

        def follow(i) -> None:  # an incident resolves with its last alert, and reopens with any
            if all_resolved:
                i.status = "resolved"
            elif i.status == "resolved":
                i.status = "active"
        stores.incidents.touch(incident, follow)


def patch_mde_alert(ctx: Context) -> Response:
    """``PATCH /api/alerts/{id}``: status, assignedTo, classification, determination and/or comment."""
    alert = ctx.state.stores.alerts.get(ctx.params["id"])
    if alert is None:
        return not_found(ctx, "Alert", ctx.params["id"])
    body = json_body(ctx)
    if body is None:
        return bad_body(ctx, "Request body is incorrect: a JSON object is required.")
    try:
        changes = parse_update(body, statuses=ALERT_STATUSES, current_classification=alert.classification,
                               allowed=("status", "assignedTo", "classification", "determination", "comment"))
    except TriageError as error:
        return bad_body(ctx, str(error))
    update_alert(ctx, alert, changes)
    return _mde_single(ctx, alert)


# ---------------------------------------------------------------- Graph /security/alerts_v2


def list_graph_alerts(ctx: Context) -> Response:
    """``GET /security/alerts_v2`` with ``$filter``, ``$top``, ``$skip`` and ``$count``."""
    store = ctx.state.stores.alerts
    tenant = _tenant(ctx)
    return odata_list(ctx, store=store, key="graph-alerts", items=store.all(), fields=GRAPH_ALERT_FIELDS,
                      fragment="security/alerts_v2", count=True,
                      encode=lambda query: lambda alert: graph_alert_bytes(alert, tenant))


def get_graph_alert(ctx: Context) -> Response:
    """``GET /security/alerts_v2/{id}``."""
    alert = ctx.state.stores.alerts.get(ctx.params["id"])
    if alert is None:
        return not_found(ctx, "Alert", ctx.params["id"])
    return entity(ctx, "security/alerts_v2/$entity", graph_alert_bytes(alert, _tenant(ctx)))


def patch_graph_alert(ctx: Context) -> Response:
    """``PATCH /security/alerts_v2/{id}``: status, classification, determination, assignedTo; 200 with the alert."""
    alert = ctx.state.stores.alerts.get(ctx.params["id"])
    if alert is None:
        return not_found(ctx, "Alert", ctx.params["id"])
    body = json_body(ctx)
    if body is None:
        return bad_body(ctx, "Unable to read JSON request payload.")
    try:
        changes = parse_update(body, statuses=ALERT_STATUSES, current_classification=alert.classification,
                               allowed=("status", "classification", "determination", "assignedTo"))
    except TriageError as error:
        return bad_body(ctx, str(error))
    update_alert(ctx, alert, changes)
    return entity(ctx, "security/alerts_v2/$entity", graph_alert_bytes(alert, _tenant(ctx)))


def comment_body(ctx: Context) -> str | Response:
    """The ``comment`` of a Graph comment POST, or the 400 to answer."""
    body = json_body(ctx)
    comment = body.get("comment") if body else None
    if not isinstance(comment, str) or not comment.strip():
        return bad_body(ctx, "The request body must be an alertComment with a non-empty 'comment'.")
    return comment


def post_graph_alert_comment(ctx: Context) -> Response:
    """``POST /security/alerts_v2/{id}/comments``: 200 with every comment of the alert."""
    alert = ctx.state.stores.alerts.get(ctx.params["id"])
    if alert is None:
        return not_found(ctx, "Alert", ctx.params["id"])
    comment = comment_body(ctx)
    if isinstance(comment, Response):
        return comment
    update_alert(ctx, alert, {"comment": comment})
    return plain_list(ctx, f"security/alerts_v2('{alert.id}')/comments", [graph_comment(c) for c in alert.comments])

