"""How the stores' records look on the wire: Graph security (alerts_v2, incidents), MDE (/api/alerts, machines)
and the legacy M365D incidents API, field for field in the documented order (defender-api.md §3, §4).

Alerts are held once (:class:`~emulator.world.Alert`, Graph spellings) and shown three ways; the views
translate the enumerations (Graph ``inProgress`` is MDE ``InProgress``, Graph ``unknown`` is MDE ``null``).
Encoded views are cached on the record until it changes, so a page of 100 alerts is 100 joins.
"""

from __future__ import annotations

from typing import Any

from .entities import Account, Image
from .messages import dumps
from .world import Alert, Comment, Incident, ts

PORTAL = "https://security.microsoft.com"

_MDE_DETECTION = {"microsoftDefenderForEndpoint": "WindowsDefenderAtp", "antivirus": "WindowsDefenderAv",
                  "customDetection": "CustomDetection"}
_PARENT = {"windows": ("explorer.exe", "C:\\Windows"), "linux": ("bash", "/usr/bin")}


def pascal(value: str | None) -> str | None:
    """Graph's camelCase enumeration -> the MDE / M365D PascalCase spelling."""
    return None if value is None else value[:1].upper() + value[1:]


def _folder(image: Image) -> str:
    sep = "/" if "/" in image.FolderPath else "\\"
    return image.FolderPath.rsplit(sep, 1)[0]


def _linux(image: Image) -> bool:
    return "/" in image.FolderPath


def _processes(alert: Alert) -> list[dict[str, Any]]:
    """Each process the alert names: its image (None when unknown), id, command line, creation time and its
    parent's id, file name, folder and creation time. Ticks for times."""
    if not alert.processes:
        parent_name, parent_path = _PARENT["linux" if _linux(alert.image) else "windows"]
        return [{"image": alert.image, "pid": alert.process_id, "command_line": alert.command_line,
                 "created": alert.first_activity, "parent_pid": alert.parent_process_id,
                 "parent_name": parent_name, "parent_path": parent_path,
                 "parent_created": alert.first_activity - 3_000_000_000}]
    return [{"image": p.image, "name": p.name, "path": p.folder_path, "pid": p.pid, "command_line": p.command_line,
             "created": p.created, "parent_pid": parent.pid, "parent_name": parent.name,
             "parent_path": parent.folder_path.rsplit("\\", 1)[0], "parent_created": parent.created}
            for p, parent in alert.processes]


def _process_file(process: dict[str, Any]) -> tuple[str | None, str | None, str, str]:
    """(sha1, sha256, file name, folder) of an evidence process."""
    image = process["image"]
    if image is not None:
        return image.SHA1, image.SHA256, image.FileName, _folder(image)
    return None, None, process["name"], process["path"].rsplit("\\", 1)[0]


def with_context(context_url: str, encoded: bytes) -> bytes:
    """An encoded entity with ``@odata.context`` put first, as single-entity answers carry it."""
    return b'{"@odata.context":' + dumps(context_url) + b"," + encoded[1:]


def _cached(record: Alert | Incident, key: tuple, build: Any) -> bytes:
    # last_update is part of the key: a view rendered while another thread changed the record is filed
    # under the old time, so it is never served after the change.
    key = (*key, record.last_update)
    found = record.cache.get(key)
    if found is None:
        found = record.cache[key] = dumps(build())
    return found


# ---------------------------------------------------------------- MDE


def mde_machine(machine: dict[str, Any]) -> dict[str, Any]:
    """A machine as ``/api/machines`` sends it."""
    return machine


def mde_comment(comment: Comment) -> dict[str, Any]:
    """A comment in MDE / M365D spelling."""
    return {"comment": comment.comment, "createdBy": comment.created_by, "createdTime": ts(comment.created)}


def mde_detection_source(alert: Alert) -> str | None:
    """``detectionSource`` in MDE's spelling (``WindowsDefenderAv`` for Graph's ``antivirus``)."""
    return _MDE_DETECTION.get(alert.detection_source, pascal(alert.detection_source))


def _mde_investigation_state(alert: Alert) -> str:
    if alert.status == "resolved":
        return "Benign" if alert.classification == "falsePositive" else "SuccessfullyRemediated"
    return "Running" if alert.investigation_id else "Queued"


_MDE_EVIDENCE_KEYS = (
    "entityType", "evidenceCreationTime", "sha1", "sha256", "fileName", "filePath", "processId",
    "processCommandLine", "processCreationTime", "parentProcessId", "parentProcessCreationTime",
    "parentProcessFileName", "parentProcessFilePath", "ipAddress", "url", "registryKey", "registryHive",
    "registryValueType", "registryValue", "accountName", "domainName", "userSid", "aadUserId", "userPrincipalName",
    "detectionStatus")


def _mde_evidence_item(**values: Any) -> dict[str, Any]:
    # Every key present, null when not applicable (the documented shape).
    return {key: values.get(key) for key in _MDE_EVIDENCE_KEYS}


def mde_evidence(alert: Alert) -> list[dict[str, Any]]:
    """The MDE evidence list: the user, the process, its file, the IP and the URL."""
    created = ts(alert.created + 10_000_000)
    account, image = alert.account, alert.image
    items = [
        _mde_evidence_item(entityType="User", evidenceCreationTime=created, accountName=account.AccountName,
                           domainName=(account.AccountDomain or "").upper(), userSid=account.AccountSid,
                           aadUserId=account.AccountObjectId, userPrincipalName=account.AccountUpn),
    ]
    for process in _processes(alert):
        sha1, sha256, name, folder = _process_file(process)
        items.append(_mde_evidence_item(
            entityType="Process", evidenceCreationTime=created, sha1=sha1, sha256=sha256, fileName=name,
            filePath=folder, processId=process["pid"], processCommandLine=process["command_line"],
            processCreationTime=ts(process["created"]), parentProcessId=process["parent_pid"],
            parentProcessCreationTime=ts(process["parent_created"]), parentProcessFileName=process["parent_name"],
            parentProcessFilePath=process["parent_path"], detectionStatus="Detected"))
    items += [
        _mde_evidence_item(entityType="File", evidenceCreationTime=created, sha1=image.SHA1, sha256=image.SHA256,
                           fileName=image.FileName, filePath=_folder(image), detectionStatus="Detected"),
        _mde_evidence_item(entityType="Ip", evidenceCreationTime=created, ipAddress=alert.remote_ip),
    ]
    if alert.remote_url:
        items.append(_mde_evidence_item(entityType="Url", evidenceCreationTime=created, url=alert.remote_url))
    return items


def mde_alert(alert: Alert, tenant_id: str, evidence: bool = False) -> dict[str, Any]:
    """An alert as ``/api/alerts`` sends it (``evidence`` is ``[]`` unless ``$expand=evidence``)."""
    machine = alert.machine
    return {
        "id": alert.id,
        "incidentId": alert.incident_id,
        "investigationId": alert.investigation_id,
        "assignedTo": alert.assigned_to,
        "severity": pascal(alert.severity),
        "status": pascal(alert.status),
        "classification": None if alert.classification == "unknown" else pascal(alert.classification),
        "determination": None if alert.determination == "unknown" else pascal(alert.determination),
        "investigationState": _mde_investigation_state(alert),
        "detectionSource": mde_detection_source(alert),
        "detectorId": alert.detector_id,
        "category": alert.category,
        "threatFamilyName": alert.threat_family,
        "title": alert.title,
        "description": alert.description,
        "alertCreationTime": ts(alert.created),
        "firstEventTime": ts(alert.first_activity),
        "lastEventTime": ts(alert.last_activity),
        "lastUpdateTime": ts(alert.last_update),
        "resolvedTime": ts(alert.resolved),
        "machineId": machine["id"],
        "computerDnsName": machine["computerDnsName"],
        "rbacGroupName": machine["rbacGroupName"],
        "aadTenantId": tenant_id,
        "threatName": None,
        "mitreTechniques": list(alert.mitre),
        "relatedUser": {"userName": alert.account.AccountName, "domainName": (alert.account.AccountDomain or "").upper()},
        "comments": [mde_comment(c) for c in alert.comments],
        "evidence": mde_evidence(alert) if evidence else [],
    }


def mde_alert_bytes(alert: Alert, tenant_id: str, evidence: bool = False) -> bytes:
    """:func:`mde_alert`, encoded (cached until the alert changes)."""
    return _cached(alert, ("mde", evidence, tenant_id), lambda: mde_alert(alert, tenant_id, evidence))


# ---------------------------------------------------------------- Graph


def graph_comment(comment: Comment) -> dict[str, Any]:
    """A Graph ``alertComment``."""
    return {"comment": comment.comment, "createdByDisplayName": comment.created_by,
            "createdDateTime": ts(comment.created)}


def _graph_file(image: Image) -> dict[str, Any]:
    return {"sha1": image.SHA1, "sha256": image.SHA256, "fileName": image.FileName, "filePath": _folder(image),
            "fileSize": image.FileSize, "filePublisher": image.CompanyName,
            "signer": image.CompanyName if image.SignatureStatus == "Valid" else None, "issuer": None}


def _graph_process_file(process: dict[str, Any]) -> dict[str, Any]:
    if process["image"] is not None:
        return _graph_file(process["image"])
    _, _, name, folder = _process_file(process)
    return {"sha1": None, "sha256": None, "fileName": name, "filePath": folder, "fileSize": None,
            "filePublisher": None, "signer": None, "issuer": None}


def _graph_account(account: Account) -> dict[str, Any]:
    return {"accountName": account.AccountName, "domainName": (account.AccountDomain or "").upper(),
            "userSid": account.AccountSid, "azureAdUserId": account.AccountObjectId,
            "userPrincipalName": account.AccountUpn, "displayName": account.AccountName}


def _evidence_head(kind: str, created: str | None, verdict: str, roles: list[str] | None = None) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.security.{kind}", "createdDateTime": created, "verdict": verdict,
            "remediationStatus": "none", "remediationStatusDetails": None, "roles": roles or [],
            "detailedRoles": [], "tags": []}


def graph_evidence(alert: Alert) -> list[dict[str, Any]]:
    """The alerts_v2 evidence: device, process, file, user, IP and URL, all from the seeded world."""
    created = ts(alert.created)
    machine, image, account = alert.machine, alert.image, alert.account
    bad = "malicious" if alert.severity == "high" else "suspicious"
    device = {
        **_evidence_head("deviceEvidence", created, "unknown", ["compromised"]),
        "firstSeenDateTime": machine["firstSeen"], "mdeDeviceId": machine["id"],
        "azureAdDeviceId": machine["aadDeviceId"], "deviceDnsName": machine["computerDnsName"],
        "osPlatform": machine["osPlatform"], "osBuild": machine["osBuild"], "version": machine["version"],
        "healthStatus": machine["healthStatus"][:1].lower() + machine["healthStatus"][1:],
        "riskScore": machine["riskScore"].lower(), "rbacGroupId": machine["rbacGroupId"],
        "rbacGroupName": machine["rbacGroupName"], "onboardingStatus": "onboarded", "defenderAvStatus": "updated",
        "ipInterfaces": [machine["lastIpAddress"]],
        "loggedOnUsers": [{"accountName": account.AccountName, "domainName": (account.AccountDomain or "").upper()}],
        "vmMetadata": None,
    }
    device["detailedRoles"], device["tags"] = ["Main device"], list(machine["machineTags"])
    processes = [{
        **_evidence_head("processEvidence", created, bad),
        "processId": p["pid"], "parentProcessId": p["parent_pid"],
        "processCommandLine": p["command_line"], "processCreationDateTime": ts(p["created"]),
        "parentProcessCreationDateTime": ts(p["parent_created"]), "detectionStatus": "detected",
        "mdeDeviceId": machine["id"], "imageFile": _graph_process_file(p),
        "parentProcessImageFile": {"sha1": None, "sha256": None, "fileName": p["parent_name"],
                                   "filePath": p["parent_path"], "fileSize": None, "filePublisher": None,
                                   "signer": None, "issuer": None},
        "userAccount": _graph_account(account),
    } for p in _processes(alert)]
    file = {**_evidence_head("fileEvidence", created, bad), "detectionStatus": "detected",
            "mdeDeviceId": machine["id"], "fileDetails": _graph_file(image)}
    user = {**_evidence_head("userEvidence", created, "suspicious", ["compromised"]),
            "userAccount": _graph_account(account)}
    ip = {**_evidence_head("ipEvidence", created, "suspicious"), "ipAddress": alert.remote_ip,
          "countryLetterCode": None}
    items = [device, *processes, file, user, ip]
    if alert.remote_url:
        items.append({**_evidence_head("urlEvidence", created, "suspicious"), "url": alert.remote_url})
    return items


def graph_alert(alert: Alert, tenant_id: str) -> dict[str, Any]:
    """An alert as ``/security/alerts_v2`` sends it."""
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": alert.id,
        "providerAlertId": alert.id,
        "incidentId": str(alert.incident_id),
        "status": alert.status,
        "severity": alert.severity,
        "classification": alert.classification,
        "determination": alert.determination,
        "serviceSource": alert.service_source,
        "detectionSource": alert.detection_source,
        "detectorId": alert.detector_id,
        "tenantId": tenant_id,
        "title": alert.title,
        "description": alert.description,
        "recommendedActions": alert.recommended_actions,
        "category": alert.category,
        "assignedTo": alert.assigned_to,
        "alertWebUrl": f"{PORTAL}/alerts/{alert.id}?tid={tenant_id}",
        "incidentWebUrl": f"{PORTAL}/incidents/{alert.incident_id}?tid={tenant_id}",
        "actorDisplayName": None,
        "threatDisplayName": None,
        "threatFamilyName": alert.threat_family,
        "mitreTechniques": list(alert.mitre),
        "createdDateTime": ts(alert.created),
        "lastUpdateDateTime": ts(alert.last_update),
        "resolvedDateTime": ts(alert.resolved),
        "firstActivityDateTime": ts(alert.first_activity),
        "lastActivityDateTime": ts(alert.last_activity),
        "comments": [graph_comment(c) for c in alert.comments],
        "evidence": graph_evidence(alert),
        "systemTags": [],
    }


def graph_alert_bytes(alert: Alert, tenant_id: str) -> bytes:
    """:func:`graph_alert`, encoded (cached until the alert changes)."""
    return _cached(alert, ("graph", tenant_id), lambda: graph_alert(alert, tenant_id))


def graph_incident(incident: Incident, tenant_id: str, alerts: list[Alert] | None = None) -> dict[str, Any]:
    """An incident as ``/security/incidents`` sends it; ``alerts`` given means ``$expand=alerts``."""
    body = {
        "@odata.type": "#microsoft.graph.security.incident",
        "id": str(incident.id),
        "incidentWebUrl": f"{PORTAL}/incidents/{incident.id}?tid={tenant_id}",
        "redirectIncidentId": None if incident.redirect_incident_id is None else str(incident.redirect_incident_id),
        "tenantId": tenant_id,
        "displayName": incident.name,
        "createdDateTime": ts(incident.created),
        "lastUpdateDateTime": ts(incident.last_update),
        "assignedTo": incident.assigned_to,
        "classification": incident.classification,
        "determination": incident.determination,
        "status": incident.status,
        "severity": incident.severity,
        "customTags": list(incident.tags),
        "comments": [graph_comment(c) for c in incident.comments],
        "systemTags": list(incident.system_tags),
        "description": incident.description,
    }
    if alerts is not None:
        body["alerts"] = [graph_alert(a, tenant_id) for a in alerts]
    return body


def graph_incident_bytes(incident: Incident, tenant_id: str, alerts: list[Alert] | None = None) -> bytes:
    """:func:`graph_incident`, encoded (cached until the incident changes; never with alerts, which change alone)."""
    if alerts is not None:
        head = _cached(incident, ("graph", tenant_id), lambda: graph_incident(incident, tenant_id))
        return head[:-1] + b',"alerts":[' + b",".join(graph_alert_bytes(a, tenant_id) for a in alerts) + b"]}"
    return _cached(incident, ("graph", tenant_id), lambda: graph_incident(incident, tenant_id))


# ---------------------------------------------------------------- M365D (legacy /api/incidents)


def _m365d_entities(alert: Alert) -> list[dict[str, Any]]:
    account, image, machine = alert.account, alert.image, alert.machine
    entities: list[dict[str, Any]] = [
        {"entityType": "User", "accountName": account.AccountName,
         "domainName": (account.AccountDomain or "").upper(), "userSid": account.AccountSid,
         "aadUserId": account.AccountObjectId, "userPrincipalName": account.AccountUpn},
        *({"entityType": "Process", "sha1": sha1, "sha256": sha256, "fileName": name, "filePath": folder,
           "processId": p["pid"], "processCommandLine": p["command_line"], "processCreationTime": ts(p["created"]),
           "parentProcessId": p["parent_pid"], "parentProcessCreationTime": ts(p["parent_created"]),
           "deviceId": machine["id"]}
          for p in _processes(alert) for sha1, sha256, name, folder in [_process_file(p)]),
        {"entityType": "File", "sha1": image.SHA1, "sha256": image.SHA256, "fileName": image.FileName,
         "filePath": _folder(image), "deviceId": machine["id"]},
        {"entityType": "Ip", "ipAddress": alert.remote_ip},
    ]
    if alert.remote_url:
        entities.append({"entityType": "Url", "url": alert.remote_url})
    return entities


def m365d_alert(alert: Alert) -> dict[str, Any]:
    """An alert as embedded in a legacy M365D incident."""
    machine = alert.machine
    return {
        "alertId": alert.id,
        "incidentId": alert.incident_id,
        "serviceSource": pascal(alert.service_source),
        "creationTime": ts(alert.created),
        "lastUpdatedTime": ts(alert.last_update),
        "resolvedTime": ts(alert.resolved),
        "firstActivity": ts(alert.first_activity),
        "lastActivity": ts(alert.last_activity),
        "title": alert.title,
        "description": alert.description,
        "category": alert.category,
        "status": pascal(alert.status),
        "severity": pascal(alert.severity),
        "investigationId": alert.investigation_id,
        "investigationState": _mde_investigation_state(alert),
        "classification": None if alert.classification == "unknown" else pascal(alert.classification),
        "determination": None if alert.determination == "unknown" else pascal(alert.determination),
        "detectionSource": mde_detection_source(alert),
        "assignedTo": alert.assigned_to,
        "actorName": None,
        "threatFamilyName": alert.threat_family,
        "mitreTechniques": list(alert.mitre),
        "devices": [{
            "deviceId": machine["id"], "aadDeviceId": machine["aadDeviceId"],
            "deviceDnsName": machine["computerDnsName"], "osPlatform": machine["osPlatform"],
            "osBuild": machine["osBuild"], "rbacGroupName": machine["rbacGroupName"],
            "firstSeen": machine["firstSeen"], "healthStatus": machine["healthStatus"],
            "riskScore": machine["riskScore"], "tags": list(machine["machineTags"]),
        }],
        "entities": _m365d_entities(alert),
    }


_M365D_STATUS = {"active": "Active", "resolved": "Resolved", "inProgress": "InProgress", "redirected": "Redirected"}


def m365d_incident(incident: Incident, alerts: list[Alert]) -> dict[str, Any]:
    """An incident as the legacy ``/api/incidents`` sends it (alerts always embedded)."""
    return {
        "incidentId": incident.id,
        "redirectIncidentId": incident.redirect_incident_id,
        "incidentName": incident.name,
        "createdTime": ts(incident.created),
        "lastUpdateTime": ts(incident.last_update),
        "assignedTo": incident.assigned_to,
        "classification": pascal(incident.classification),
        "determination": "NotAvailable" if incident.determination == "unknown" else pascal(incident.determination),
        "status": _M365D_STATUS.get(incident.status, pascal(incident.status)),
        "severity": pascal(incident.severity),
        "tags": list(incident.tags),
        "comments": [mde_comment(c) for c in incident.comments],
        "alerts": [m365d_alert(a) for a in alerts],
    }
