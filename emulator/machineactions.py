"""Machine (response) actions: isolate, release, scan, collect, restrict, quarantine; their list, get, cancel and
investigation package (defender-api.md §3.3).

An action's status follows the clock (:class:`~emulator.world.MachineAction`): ``Pending`` for
``state.action_timing[0]`` seconds, ``InProgress`` for ``[1]`` more, then Succeeded, or Failed / TimeOut when
scripted (``state.next_action_outcome``, ``state.set_device_action_outcome``). A device runs one action of a type
at a time: a second one is refused with 400 "Action is already in progress".
"""

from __future__ import annotations

import io
import re
import secrets
import uuid
import zipfile
from typing import Any

from .context import Context
from .envelopes import api_error
from .messages import Response, dumps
from .odata import Field
from .pages import bad_body, caller, entity, json_body, not_found, odata_list
from .world import ACTION_HRESULTS, ACTION_STATUSES, MachineAction, now_ticks, ts

MAX_TOP = 10_000
#: URL path suffix -> (action type, whether Windows-only). Linux takes isolation, scans and collection only.
ACTION_PATHS = {
    "isolate": ("Isolate", False),
    "unisolate": ("Unisolate", False),
    "runantivirusscan": ("RunAntiVirusScan", False),
    "collectinvestigationpackage": ("CollectInvestigationPackage", False),
    "restrictcodeexecution": ("RestrictCodeExecution", True),
    "unrestrictcodeexecution": ("UnrestrictCodeExecution", True),
    "stopandquarantinefile": ("StopAndQuarantineFile", True),
}
ACTION_TYPES = ("RunAntiVirusScan", "Offboard", "LiveResponse", "CollectInvestigationPackage", "Isolate", "Unisolate",
                "StopAndQuarantineFile", "RestrictCodeExecution", "UnrestrictCodeExecution")
ISOLATION_TYPES = ("Full", "Selective", "UnManagedDevice")
SCAN_TYPES = ("Quick", "Full")
PACKAGE_PATH = "/safedownload/WDATP_Investigation_Package.zip"
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")


def action_fields(now: int) -> dict[str, Field]:
    """``$filter`` properties of ``/api/machineactions`` (get-machineactions-collection.md), status as of ``now``."""
    return {
        "status": Field.by("enum", lambda a: a.status(now), ACTION_STATUSES),
        "machineId": Field.by("string", lambda a: a.machine["id"]),
        "type": Field.by("enum", lambda a: a.type, ACTION_TYPES),
        "requestor": Field.by("string", lambda a: a.requestor),
        "creationDateTimeUtc": Field.by("datetime", lambda a: a.created),
    }


def action_json(action: MachineAction, now: int) -> dict[str, Any]:
    """A MachineAction entity as of ``now``, in the documented field order (machineaction.md), then the rest."""
    status = action.status(now)
    return {
        "id": action.id,
        "type": action.type,
        "scope": action.scope,
        "requestor": action.requestor,
        "requestorComment": action.comment,
        "status": status,
        "machineId": action.machine["id"],
        "computerDnsName": action.machine["computerDnsName"],
        "creationDateTimeUtc": ts(action.created),
        "lastUpdateDateTimeUtc": ts(action.last_update(now)),
        "relatedFileInfo": {"fileIdentifier": action.sha1, "fileIdentifierType": "Sha1"} if action.sha1 else None,
        "cancellationRequestor": action.cancellation_requestor,
        "cancellationComment": action.cancellation_comment,
        "cancellationDateTimeUtc": ts(action.cancelled),
        "title": None,
        "externalID": None,
        "requestSource": "PublicApi",
        "errorHResult": ACTION_HRESULTS.get(status, 0),
        "commands": [],
    }


def _single(ctx: Context, action: MachineAction, status: int = 200, now: int | None = None) -> Response:
    return entity(ctx, "MachineActions/$entity", dumps(action_json(action, now_ticks() if now is None else now)),
                  status)


def _comment(ctx: Context, body: dict[str, Any]) -> str | Response:
    # The keys are case-sensitive: "comment" is not "Comment".
    comment = body.get("Comment")
    if not isinstance(comment, str) or not comment.strip():
        return bad_body(ctx, "Request body is incorrect: 'Comment' (a non-empty string) is required.")
    return comment


def _choice(ctx: Context, body: dict[str, Any], key: str, allowed: tuple[str, ...],
            default: str | None) -> str | Response:
    value = body.get(key, default)
    if value is None:
        return bad_body(ctx, f"Request body is incorrect: '{key}' is required ({' or '.join(allowed)}).")
    found = next((a for a in allowed if isinstance(value, str) and a.lower() == value.lower()), None)
    if found is None:
        return bad_body(ctx, f"Request body is incorrect: invalid {key} '{value}'; use {' or '.join(allowed)}.")
    return found


def submit_action(ctx: Context) -> Response:
    """``POST /api/machines/{id}/{action}``: 201 with the new MachineAction."""
    action_type, windows_only = ACTION_PATHS[ctx.params["action"].lower()]
    state = ctx.state
    machine = state.stores.machines.get(ctx.params["id"])
    # Actions take the device id; a DNS name that GET /api/machines/{name} would accept is not enough here.
    if machine is None or machine["id"].lower() != ctx.params["id"].lower():
        return not_found(ctx, "Machine", ctx.params["id"])
    body = json_body(ctx)
    if body is None:
        return bad_body(ctx, "Request body is incorrect")
    comment = _comment(ctx, body)
    if isinstance(comment, Response):
        return comment
    scope, sha1 = None, None
    if action_type == "Isolate":
        scope = _choice(ctx, body, "IsolationType", ISOLATION_TYPES, "Full")
    elif action_type == "RunAntiVirusScan":
        scope = _choice(ctx, body, "ScanType", SCAN_TYPES, None)
    if isinstance(scope, Response):
        return scope
    if action_type == "StopAndQuarantineFile":
        sha1 = body.get("Sha1")
        if not isinstance(sha1, str) or not _SHA1.fullmatch(sha1):
            return api_error(ctx.family, 400, f"Invalid hash value '{sha1}': 'Sha1' takes a file's SHA1 "
                                              "(40 hexadecimal characters).", ctx.req, code="InvalidHashValue")
        sha1 = sha1.lower()
    linux = not machine["osPlatform"].lower().startswith("windows")
    if linux and (windows_only or scope == "Selective"):
        what = "Selective isolation" if scope == "Selective" else action_type
        return api_error(ctx.family, 400, f"{what} is not supported on {machine['osPlatform']} devices.", ctx.req,
                         code="OsPlatformNotSupported")
    now = now_ticks()
    outcome = state.take_action_outcome(machine["id"])
    started, finished = state.action_times(now, outcome)
    action = MachineAction(id=str(uuid.uuid4()), type=action_type, scope=scope, requestor=caller(ctx),
                           comment=comment, machine=machine, created=now, started=started, finished=finished,
                           outcome=outcome, sha1=sha1)
    running = state.stores.actions.submit(action, now)
    if running is not None:
        return api_error(ctx.family, 400, "Action is already in progress", ctx.req, code="ActiveRequestAlreadyExists")
    return _single(ctx, action, 201, now)


def list_actions(ctx: Context) -> Response:
    """``GET /api/machineactions`` with ``$filter`` (status, machineId, type, requestor, creationDateTimeUtc),
    ``$top`` (≤ 10,000) and ``$skip``; newest first."""
    store = ctx.state.stores.actions
    now = now_ticks()
    return odata_list(ctx, store=store, key="machine-actions", items=store.all(), fields=action_fields(now),
                      fragment="MachineActions", encode=lambda query: lambda a: dumps(action_json(a, now)),
                      max_top=MAX_TOP)


def _action(ctx: Context) -> MachineAction | Response:
    action = ctx.state.stores.actions.get(ctx.params["id"])
    return not_found(ctx, "MachineAction", ctx.params["id"]) if action is None else action


def get_action(ctx: Context) -> Response:
    """``GET /api/machineactions/{id}``."""
    action = _action(ctx)
    return action if isinstance(action, Response) else _single(ctx, action)


def cancel_action(ctx: Context) -> Response:
    """``POST /api/machineactions/{id}/cancel`` with ``{"Comment": ...}``: 200 with the action, now Cancelled."""
    action = _action(ctx)
    if isinstance(action, Response):
        return action
    body = json_body(ctx)
    if body is None:
        return bad_body(ctx, "Request body is incorrect")
    comment = _comment(ctx, body)
    if isinstance(comment, Response):
        return comment
    now = now_ticks()
    status = action.status(now)
    if status not in ("Pending", "InProgress"):
        return api_error(ctx.family, 400, f"Machine action {action.id} is already {status}: only a Pending or "
                                          "InProgress action can be cancelled.", ctx.req, code="BadRequest")

    def cancel(a: MachineAction) -> None:
        a.cancelled, a.cancellation_requestor, a.cancellation_comment = now, caller(ctx), comment
    ctx.state.stores.actions.change(action, cancel)
    return _single(ctx, action, 200, now)


def package_uri(ctx: Context) -> Response:
    """``GET /api/machineactions/{id}/GetPackageUri``: ``{"value": url}`` once a collection has succeeded."""
    action = _action(ctx)
    if isinstance(action, Response):
        return action
    if action.type != "CollectInvestigationPackage":
        return api_error(ctx.family, 400, f"Machine action {action.id} is a {action.type}, not an investigation "
                                          "package collection.", ctx.req, code="InvalidInput")
    status = action.status(now_ticks())
    if status != "Succeeded":
        return not_found(ctx, "Investigation package of machine action",
                         f"{action.id} ({status}: there is a package only once the collection has succeeded)")
    token = secrets.token_urlsafe(24)
    ctx.state.stores.actions.change(action, lambda a: setattr(a, "package_token", token))
    url = f"{ctx.req.base_url}{PACKAGE_PATH}?token={token}"
    return Response(200, [dumps({"@odata.context": f"{ctx.req.base_url}/api/$metadata#Edm.String", "value": url})])


def download_package(ctx: Context) -> Response:
    """``GET /safedownload/WDATP_Investigation_Package.zip?token=...``: the package (a small zip), no bearer token."""
    action = ctx.state.stores.actions.by_package_token(ctx.req.query.get("token", ""))
    if action is None:
        return api_error(ctx.family, 403, "The download link is invalid or has been replaced by a newer one.",
                         ctx.req, code="Forbidden")
    machine = action.machine
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("Summary.txt", f"Investigation package of {machine['computerDnsName']} ({machine['id']})\n"
                                        f"Machine action {action.id}, collected {ts(action.finished)}\n")
        package.writestr("Network connections/Ipconfig.txt", "\n".join(
            f"{a['type']} {a['ipAddress']} {a['macAddress']} {a['operationalStatus']}" for a in machine["ipAddresses"]))
    return Response(200, [buffer.getvalue()], [("Content-Disposition", 'attachment; filename="'
                                                 'WDATP_Investigation_Package.zip"')], "application/zip")
