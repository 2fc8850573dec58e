"""The seeded world behind the entity APIs, built from the same pools as the hunting tables.

Every device, account, executable and IP address that hunting rows carry (:mod:`emulator.entities`) is an
entity here: ``DeviceId``/``DeviceName`` are machines, ``AccountName`` values are users with machines,
``SHA1``/``SHA256`` are files, ``RemoteIP``/``LocalIP`` values have organisation prevalence. Alerts and
their incidents are built over those same things, so an alert's evidence names a machine, a user, a file
and an IP that the entity APIs know.

Identifiers derive from a fixed seed (stable across runs); times are relative to when the world is built.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .entities import ALERT_TITLES, REMOTES, Account, Image, accounts, devices, images
from .incident import INCIDENT, IncidentProcess, SeededIncident
from .tables import TICKS_PER_SECOND, format_ticks

_SEED = 20240917
MINUTE = 60 * TICKS_PER_SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: Severity order, Graph spelling (MDE and M365D capitalise it).
SEVERITIES = ("informational", "low", "medium", "high")
#: IPs the hunting rows carry besides devices' LocalIP and REMOTES (DeviceLogonEvents, DeviceFileEvents).
_OTHER_ROW_IPS = ("10.0.5.21", "10.0.7.14", "::ffff:10.0.7.14")
# Which executable each alert title is about (index into ALERT_TITLES).
_TITLE_IMAGE = ("powershell.exe", "rundll32.exe", "schtasks.exe", "upd.exe", "报告生成器.exe", "net.exe")
_TITLE_REMOTE = (None, None, None, "203.0.113.77", None, "20.190.159.2")
_DETECTION_SOURCES = ("microsoftDefenderForEndpoint", "antivirus", "customDetection")
_DETECTORS = ("7f1c3609-a3ff-40e2-995b-c01770161d68", "e0da400f-affd-43ef-b1d5-afc2eb6f2756",
              "17e10bbc-3a68-474a-8aad-faef14d43952")


def now_ticks() -> int:
    """Now, in 100-ns ticks since the Unix epoch."""
    return time.time_ns() // 100


def ts(ticks: int | None) -> str | None:
    """Ticks -> ``2024-05-01T10:00:00.1234567Z`` (None stays None)."""
    return None if ticks is None else format_ticks(ticks)


def _second_ts(ticks: int) -> str:
    """Ticks -> ``2024-05-01T10:00:00Z`` (how logon users and IP stats print times)."""
    return format_ticks(ticks)[:19] + "Z"


def is_human(account: Account) -> bool:
    """Accounts that MDE lists as users: everything but the built-in NT AUTHORITY ones."""
    return account.AccountDomain != "nt authority"


@dataclass(eq=False)
class Comment:
    """A comment on an alert or incident."""

    comment: str
    created_by: str
    created: int


@dataclass(eq=False)
class Alert:
    """One alert, held once and shown three ways: Graph alerts_v2, MDE /api/alerts, M365D incident alerts.

    Enumerations hold Graph's camelCase spelling; the views translate. Times are ticks.
    """

    id: str
    incident_id: int
    investigation_id: int | None
    title: str
    description: str
    recommended_actions: str
    category: str
    severity: str
    status: str
    classification: str
    determination: str
    assigned_to: str | None
    detection_source: str
    detector_id: str
    threat_family: str | None
    mitre: tuple[str, ...]
    created: int
    first_activity: int
    last_activity: int
    last_update: int
    resolved: int | None
    machine: dict[str, Any]
    account: Account
    image: Image
    command_line: str
    remote_ip: str
    remote_url: str | None
    process_id: int
    parent_process_id: int
    comments: list[Comment] = field(default_factory=list)
    service_source: str = "microsoftDefenderForEndpoint"
    seq: int = 0
    # (process, its parent) per process evidence; empty: one process (image, process_id) under explorer.exe.
    processes: tuple[tuple[IncidentProcess, IncidentProcess], ...] = ()
    # Rendered views by (view, options, tenant): dropped whenever the alert changes.
    cache: dict[tuple, Any] = field(default_factory=dict, repr=False)


@dataclass(eq=False)
class Incident:
    """An incident and its alerts (by id). Enumerations in Graph's spelling; times in ticks."""

    id: int
    name: str
    description: str
    created: int
    last_update: int
    assigned_to: str | None
    classification: str
    determination: str
    status: str
    severity: str
    tags: list[str]
    system_tags: list[str]
    alert_ids: list[str]
    comments: list[Comment] = field(default_factory=list)
    redirect_incident_id: int | None = None
    seq: int = 0
    cache: dict[tuple, Any] = field(default_factory=dict, repr=False)


#: How a machine action may end by itself (``Cancelled`` comes only from a cancel request).
ACTION_OUTCOMES = ("Succeeded", "Failed", "TimeOut")
#: Every status a machine action can have, in lifecycle order.
ACTION_STATUSES = ("Pending", "InProgress") + ACTION_OUTCOMES + ("Cancelled",)
#: What ``errorHResult`` says when an action ends: E_FAIL for a failure, 0 otherwise.
ACTION_HRESULTS = {"Failed": -2147467259}


@dataclass(eq=False)
class MachineAction:
    """One response action on a machine. Times are ticks.

    Its status follows the clock, so nothing runs in the background: ``Pending`` until ``started``,
    ``InProgress`` until ``finished``, then ``outcome`` (Succeeded, Failed or TimeOut), unless it was
    cancelled first (``cancelled`` set).
    """

    id: str
    type: str
    scope: str | None
    requestor: str
    comment: str
    machine: dict[str, Any]
    created: int
    started: int
    finished: int
    outcome: str = "Succeeded"
    sha1: str | None = None
    cancelled: int | None = None
    cancellation_requestor: str | None = None
    cancellation_comment: str | None = None
    package_token: str | None = None
    seq: int = 0

    def status(self, now: int) -> str:
        """The status at ``now`` (ticks)."""
        if self.cancelled is not None:
            return "Cancelled"
        if now < self.started:
            return "Pending"
        if now < self.finished:
            return "InProgress"
        return self.outcome

    def last_update(self, now: int) -> int:
        """When the status last changed, as of ``now``."""
        if self.cancelled is not None:
            return self.cancelled
        if now < self.started:
            return self.created
        return self.started if now < self.finished else self.finished

    def running(self, now: int) -> bool:
        """Pending or InProgress at ``now``."""
        return self.status(now) in ("Pending", "InProgress")


@dataclass(eq=False)
class Indicator:
    """A custom indicator (IoC). ``expiration`` and the other times are ticks; enumerations in MDE's spelling."""

    id: str
    value: str
    type: str
    action: str
    title: str
    description: str
    created: int
    last_update: int
    created_by: str
    source: str
    source_type: str = "AadApp"
    last_updated_by: str | None = None
    application: str | None = None
    severity: str | None = None
    expiration: int | None = None
    recommended_actions: str | None = None
    rbac_group_names: list[str] = field(default_factory=list)
    generate_alert: bool = False
    educate_url: str | None = None
    external_id: str | None = None

    def active(self, now: int) -> bool:
        """Counts against the quota: not expired at ``now``."""
        return self.expiration is None or self.expiration > now


# ---------------------------------------------------------------- machines, users, files, IPs


def _os(kind: str, rng: random.Random) -> tuple[str, str, int | None]:
    if kind == "srv":
        return rng.choice((("WindowsServer2022", "21H2", 20348), ("WindowsServer2019", "1809", 17763)))
    if kind == "lnx":
        return rng.choice((("Linux", "22.04", None), ("Linux", "24.04", None)))
    return rng.choice((("Windows11", "23H2", 22631), ("Windows11", "22H2", 22621), ("Windows10", "22H2", 19045)))


def build_machines(anchor: int) -> list[dict[str, Any]]:
    """The MDE machine entity of every device the hunting tables know, in the documented field order."""
    rng = random.Random(_SEED)
    out = []
    for device in devices():
        kind = device.DeviceName[:3]
        platform, version, build = _os(kind, rng)
        last_seen = anchor - rng.randrange(1, 90) * MINUTE
        aad = kind == "wks"
        health = "Active" if rng.random() < 0.85 else rng.choice(("Inactive", "ImpairedCommunication"))
        out.append({
            "id": device.DeviceId,
            "computerDnsName": device.DeviceName,
            "firstSeen": ts(anchor - rng.randrange(60, 400) * DAY - rng.randrange(0, DAY)),
            "lastSeen": ts(last_seen),
            "osPlatform": platform,
            "version": version,
            "osProcessor": "x64",
            "lastIpAddress": device.LocalIP,
            "lastExternalIpAddress": f"198.51.100.{rng.randrange(2, 250)}",
            "osBuild": build,
            "healthStatus": health,
            "rbacGroupId": {"srv": 42, "lnx": 44}.get(kind, 43),
            "rbacGroupName": {"srv": "Servers", "lnx": "Linux"}.get(kind, "Workstations"),
            "riskScore": "None",  # raised by build_world from the machine's alerts
            "exposureLevel": rng.choice(("Low", "Medium", "Medium", "High")),
            "isAadJoined": aad,
            "aadDeviceId": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if aad else None,
            "machineTags": rng.choice(([], [], ["Finance"], ["VIP", "Finance"], ["Kiosk"])) if kind == "wks"
            else (["Tier0"] if kind == "srv" else []),
            "osArchitecture": "64-bit",
            "deviceValue": "High" if kind == "srv" else "Normal",
            "onboardingStatus": "Onboarded",
            "ipAddresses": [{"ipAddress": device.LocalIP,
                             "macAddress": hashlib.md5(device.DeviceId.encode()).hexdigest()[:12].upper(),
                             "type": "Ethernet", "operationalStatus": "Up"}],
        })
    return out


def build_logons(machines: list[dict[str, Any]], anchor: int) -> dict[str, list[dict[str, Any]]]:
    """Machine id -> its logged-on users (``/api/machines/{id}/logonusers``), covering every human account."""
    rng = random.Random(_SEED + 1)
    humans = [a for a in accounts() if is_human(a) and a.AccountUpn]
    local_admins = [a for a in accounts() if is_human(a) and not a.AccountUpn]
    out: dict[str, list[dict[str, Any]]] = {}
    for j, machine in enumerate(machines):
        chosen = [humans[j % len(humans)], humans[(j * 3 + 1) % len(humans)]]
        chosen += [a for a in local_admins if machine["computerDnsName"].startswith(a.AccountDomain + ".")]
        users = []
        for account in dict.fromkeys(chosen):  # keeps order, drops a repeat
            last = anchor - rng.randrange(1, 72) * HOUR
            users.append({
                "id": f"{account.AccountDomain}\\{account.AccountName}",
                "accountName": account.AccountName,
                "accountDomain": account.AccountDomain,
                "firstSeen": _second_ts(last - rng.randrange(20, 300) * DAY),
                "lastSeen": _second_ts(last),
                "logonTypes": rng.choice(("Interactive", "Interactive", "RemoteInteractive", "Network")),
                "isDomainAdmin": account.AccountName.startswith("adm-"),
                "isOnlyNetworkUser": False,
            })
        out[machine["id"]] = users
    return out


_PUBLISHER_FACTS = {  # signer -> (issuer, signer cert hash)
    "Microsoft Corporation": ("Microsoft Code Signing PCA 2011", "9dc17888b5cfad98b3cb35c1994e96227f061675"),
    "Microsoft Windows": ("Microsoft Windows Production PCA 2011", "ae9c1ae54763822eec42474983d8b635116c8452"),
}


def build_files(anchor: int) -> list[dict[str, Any]]:
    """File info (``/api/files/{hash}``) for every executable in the hunting rows, plus its org statistics."""
    rng = random.Random(_SEED + 2)
    out = []
    for image in images():
        signed = image.SignatureStatus == "Valid"
        signer = ("Microsoft Windows" if image.SignerType == "OsVendor" else image.CompanyName) if signed else None
        issuer, signer_hash = _PUBLISHER_FACTS.get(signer or "", (f"{signer} Code Signing CA", None))
        malicious = image.FileName in ("upd.exe",)
        pua = image.FileName in ("报告生成器.exe",)
        first = anchor - rng.randrange(400, 3000) * DAY
        org_first = anchor - rng.randrange(2, 29) * DAY
        out.append({
            "sha1": image.SHA1,
            "sha256": image.SHA256,
            "globalPrevalence": 1 if malicious else rng.randrange(50_000, 9_000_000) if signed else rng.randrange(2, 400),
            "globalFirstObserved": ts(first),
            "globalLastObserved": ts(anchor - rng.randrange(1, 600) * MINUTE),
            "size": image.FileSize,
            "fileType": None if "/" in image.FolderPath else "APP",
            "isPeFile": "/" not in image.FolderPath,
            "filePublisher": image.CompanyName,
            "fileProductName": image.ProductName,
            "signer": signer,
            "issuer": issuer if signed else None,
            "signerHash": (signer_hash or hashlib.sha1(issuer.encode()).hexdigest()) if signed else None,
            "isValidCertificate": signed,
            "determinationType": "Malware" if malicious else "Pua" if pua else "Clean" if signed else "Unknown",
            "determinationValue": "Trojan:Win32/Emulated.A!dha" if malicious else "PUA:Win32/Emulated" if pua else "",
            # Not part of the entity: what /stats reports.
            "_stats": {
                "organizationPrevalence": rng.randrange(1, 48),
                "orgFirstSeen": _second_ts(org_first),
                "orgLastSeen": _second_ts(anchor - rng.randrange(1, 300) * MINUTE),
                "topFileNames": [image.FileName] + ([image.FileName.upper()] if image.FileName.islower() else []),
            },
        })
    return out


def build_ips(machines: list[dict[str, Any]], anchor: int) -> dict[str, dict[str, Any]]:
    """Every IP the hunting rows carry -> its organisation statistics (``/api/ips/{ip}/stats``)."""
    rng = random.Random(_SEED + 3)
    addresses = [m["lastIpAddress"] for m in machines] + [ip for ip, _, _ in REMOTES] + list(_OTHER_ROW_IPS)
    out = {}
    for address in dict.fromkeys(addresses):
        internal = address.startswith(("10.", "::ffff:10."))
        out[address] = {
            "ipAddress": address,
            "organizationPrevalence": rng.randrange(1, 4) if internal else rng.randrange(3, 48),
            "orgFirstSeen": _second_ts(anchor - rng.randrange(20, 29) * DAY),
            "orgLastSeen": _second_ts(anchor - rng.randrange(1, 600) * MINUTE),
        }
    return out


# ---------------------------------------------------------------- alerts and incidents

_DESCRIPTIONS = {
    "Execution": "A PowerShell command line with suspicious options was run. Attackers use PowerShell to run "
                 "code in memory and to download payloads.",
    "CredentialAccess": "A process accessed credentials in a way typical of credential theft tools.",
    "Persistence": "A scheduled task was created that runs an executable from a user-writable folder.",
    "CommandAndControl": "An unsigned executable connected to an IP address rarely seen in the organization.",
    "SuspiciousActivity": "An unsigned executable with a non-ASCII name showed suspicious behaviour.",
}
_RECOMMENDED = ("Review the device timeline around the alert.\n\tLook for the same artifacts on other devices.\n"
                "\tIsolate the device if the activity is confirmed malicious.")


def _alert_id(rng: random.Random) -> str:
    return f"da{rng.randrange(637_000_000_000_000_000, 639_000_000_000_000_000)}_{rng.randrange(-2**31, 2**31)}"


def make_alert(rng: random.Random, k: int, machine: dict[str, Any], created: int, last_update: int,
               incident_id: int, seq: int, alert_id: str | None = None) -> Alert:
    """Alert number ``k`` (its kind cycles through ALERT_TITLES) on ``machine``."""
    title, category, severity, techniques = ALERT_TITLES[k % len(ALERT_TITLES)]
    image = next(i for i in images() if i.FileName == _TITLE_IMAGE[k % len(_TITLE_IMAGE)])
    humans = [a for a in accounts() if is_human(a)]
    account = humans[(k * 5 + seq) % len(humans)]
    remote_ip = _TITLE_REMOTE[k % len(_TITLE_REMOTE)] or REMOTES[(k + seq) % len(REMOTES)][0]
    remote_url = next((url for ip, url, _ in REMOTES if ip == remote_ip), None)
    mitre = tuple(t.rsplit("(", 1)[1].rstrip(")") for t in _json_list(techniques))
    return Alert(
        id=alert_id or _alert_id(rng), incident_id=incident_id,
        investigation_id=rng.randrange(100_000, 999_999) if rng.random() < 0.6 else None,
        title=title, description=_DESCRIPTIONS.get(category, "Suspicious activity was observed on the device."),
        recommended_actions=_RECOMMENDED, category=category, severity=severity.lower(), status="new",
        classification="unknown", determination="unknown", assigned_to=None,
        detection_source=_DETECTION_SOURCES[k % len(_DETECTION_SOURCES)],
        detector_id=_DETECTORS[k % len(_DETECTORS)],
        threat_family="Mimikatz" if "comsvcs" in image.command_lines[-1] else None, mitre=mitre,
        created=created, first_activity=created - rng.randrange(1, 30) * MINUTE,
        last_activity=created - rng.randrange(0, 60) * TICKS_PER_SECOND, last_update=last_update, resolved=None,
        machine=machine, account=account, image=image,
        command_line=image.command_lines[(k + seq) % len(image.command_lines)],
        remote_ip=remote_ip, remote_url=remote_url, process_id=4 + 4 * rng.randrange(1, 16383),
        parent_process_id=4 + 4 * rng.randrange(1, 16383), seq=seq,
    )


def _json_list(text: str) -> list[str]:
    return list(json.loads(text))


def incident_for(alerts: list[Alert], incident_id: int, rng: random.Random, seq: int) -> Incident:
    """An incident grouping ``alerts`` (all already carrying ``incident_id``)."""
    hosts = {a.machine["id"] for a in alerts}
    first = alerts[0]
    name = (f"{first.title} on one endpoint" if len(hosts) == 1 and len(alerts) == 1 else
            f"Multi-stage incident involving {first.category} on {'multiple endpoints' if len(hosts) > 1 else 'one endpoint'}")
    severity = max((a.severity for a in alerts), key=SEVERITIES.index)
    resolved = all(a.status == "resolved" for a in alerts)
    return Incident(
        id=incident_id, name=name,
        description=f"{len(alerts)} alert(s) on {len(hosts)} device(s), starting with '{first.title}'.",
        created=min(a.created for a in alerts), last_update=max(a.last_update for a in alerts),
        assigned_to=first.assigned_to, classification=first.classification if resolved else "unknown",
        determination=first.determination if resolved else "unknown",
        status="resolved" if resolved else "active", severity=severity,
        tags=rng.choice(([], [], ["Demo"], ["Ransomware", "Demo"])), system_tags=[],
        alert_ids=[a.id for a in alerts], seq=seq)


@dataclass
class SeededEntities:
    """The seeded incident (:mod:`emulator.incident`) as the entity, alert and incident APIs show it."""

    machine: dict[str, Any]
    logons: list[dict[str, Any]]
    alert: Alert
    incident: Incident


def build_seeded_incident(story: SeededIncident, anchor: int, alert_seq: int, incident_seq: int) -> SeededEntities:
    """The seeded incident's device (its only logged-on user is the incident's), its alert and its incident."""
    chain = story.ancestors + story.processes
    main = story.process(story.file_name)
    parent = next(p for p in chain if p.pid == main.parent_pid)
    machine = {
        "id": story.device_id, "computerDnsName": story.device_name, "firstSeen": ts(anchor - 212 * DAY),
        "lastSeen": ts(anchor - 4 * MINUTE), "osPlatform": "Windows11", "version": "23H2", "osProcessor": "x64",
        "lastIpAddress": story.device_ip, "lastExternalIpAddress": "198.51.100.61", "osBuild": 22631,
        "healthStatus": "Active", "rbacGroupId": 43, "rbacGroupName": "Workstations", "riskScore": "High",
        "exposureLevel": "Medium", "isAadJoined": True, "aadDeviceId": "0c4f3b8e-6d2a-4e71-9f35-2a8b7c1d9e04",
        "machineTags": ["Finance"], "osArchitecture": "64-bit", "deviceValue": "Normal",
        "onboardingStatus": "Onboarded",
        "ipAddresses": [{"ipAddress": story.device_ip, "macAddress": "00155D3A7C21", "type": "Ethernet",
                         "operationalStatus": "Up"}],
    }
    logons = [{
        "id": story.user_account, "accountName": story.user, "accountDomain": story.user_domain,
        "firstSeen": _second_ts(anchor - 205 * DAY), "lastSeen": _second_ts(story.logon_time),
        "logonTypes": "Interactive", "isDomainAdmin": False, "isOnlyNetworkUser": False,
    }]
    title, category, _, techniques = next(t for t in ALERT_TITLES if t[0] == story.title)
    alert = Alert(
        id=story.alert_id, incident_id=story.incident_id, investigation_id=424242, title=title,
        description=_DESCRIPTIONS[category] + " It was started from a macro document and dumped LSASS memory.",
        recommended_actions=_RECOMMENDED, category=category, severity=story.severity.lower(), status="new",
        classification="unknown", determination="unknown", assigned_to=None,
        detection_source="microsoftDefenderForEndpoint", detector_id=_DETECTORS[0], threat_family=None,
        mitre=tuple(t.rsplit("(", 1)[1].rstrip(")") for t in _json_list(techniques)) + ("T1003.001",),
        created=story.alert_time, first_activity=story.start, last_activity=story.connections[-1][3],
        last_update=story.alert_time, resolved=None, machine=machine, account=story.account,
        image=next(i for i in images() if i.FileName == story.file_name), command_line=main.command_line,
        remote_ip=story.remote_ip, remote_url=None, process_id=main.pid, parent_process_id=parent.pid,
        seq=alert_seq, processes=tuple((p, next(q for q in chain if q.pid == p.parent_pid)) for p in story.processes),
    )
    incident = incident_for([alert], story.incident_id, random.Random(_SEED + 6), incident_seq)
    incident.tags = ["Demo"]
    return SeededEntities(machine, logons, alert, incident)


# ---------------------------------------------------------------- machine actions and indicators

_ACTION_HISTORY = (  # (machine index, type, scope, days ago, minutes it took, file name)
    (1, "RunAntiVirusScan", "Full", 9, 31, None),
    (2, "CollectInvestigationPackage", None, 6, 4, None),
    (2, "StopAndQuarantineFile", None, 6, 1, "upd.exe"),
    (4, "Isolate", "Full", 5, 2, None),
    (4, "Unisolate", None, 4, 1, None),
    (7, "RunAntiVirusScan", "Quick", 2, 6, None),
)


def build_actions(machines: list[dict[str, Any]], anchor: int) -> list[MachineAction]:
    """A short history of finished response actions (scans, a collection, a quarantine, an isolation and its release)."""
    rng = random.Random(_SEED + 5)
    out = []
    for seq, (index, kind, scope, days, minutes, file_name) in enumerate(_ACTION_HISTORY):
        created = anchor - days * DAY - rng.randrange(0, 8) * HOUR
        sha1 = next(i.SHA1 for i in images() if i.FileName == file_name) if file_name else None
        out.append(MachineAction(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), type=kind, scope=scope,
            requestor="secops@contoso.com", comment=f"{kind} by the SOC (seeded history)",
            machine=machines[index % len(machines)], created=created, started=created + 20 * TICKS_PER_SECOND,
            finished=created + minutes * MINUTE, sha1=sha1, seq=seq))
    return out


def build_indicators(anchor: int) -> list[Indicator]:
    """A few indicators from earlier incidents: the C2 address, the malicious file, a domain, a URL; one expired."""
    upd = next(i for i in images() if i.FileName == "upd.exe")
    made = [
        ("203.0.113.77", "IpAddress", "Block", "C2 address seen in incident 2007", 30, "High"),
        (upd.SHA1, "FileSha1", "BlockAndRemediate", "upd.exe dropper", None, "High"),
        ("files.contoso-cdn.net", "DomainName", "Warn", "Look-alike CDN domain", 90, "Medium"),
        ("http://198.51.100.23/stage2.ps1", "Url", "Block", "Stage 2 download URL", 14, "Medium"),
        ("52.97.146.200", "IpAddress", "Audit", "Scanner seen last month (expired)", -3, "Low"),
    ]
    out = []
    for n, (value, kind, action, title, days, severity) in enumerate(made):
        created = anchor - (40 - n) * DAY
        out.append(Indicator(
            id=str(1001 + n), value=value, type=kind, action=action, title=title,
            description=f"{title}. Added by the SOC.", created=created, last_update=created,
            created_by="secops@contoso.com", source="secops@contoso.com", source_type="User",
            severity=severity, expiration=None if days is None else anchor + days * DAY,
            recommended_actions="Investigate any device that reaches it.", generate_alert=action == "Audit"))
    return out


@dataclass
class World:
    """The seeded entities: machines, logged-on users, files, IPs, alerts, incidents, machine actions and indicators."""

    anchor: int
    machines: list[dict[str, Any]]
    logons: dict[str, list[dict[str, Any]]]
    files: list[dict[str, Any]]
    ips: dict[str, dict[str, Any]]
    alerts: list[Alert]
    incidents: list[Incident]
    actions: list[MachineAction] = field(default_factory=list)
    indicators: list[Indicator] = field(default_factory=list)


def build_world(anchor: int | None = None, incident_count: int = 24) -> World:
    """The whole seeded world, with times relative to ``anchor`` (default: now)."""
    anchor = now_ticks() if anchor is None else anchor
    machines = build_machines(anchor)
    rng = random.Random(_SEED + 4)
    alerts: list[Alert] = []
    incidents: list[Incident] = []
    seq = 0
    for n in range(incident_count):
        incident_id = 2_000 + n * 7
        start = anchor - rng.randrange(2 * HOUR, 29 * DAY)
        group = []
        hosts = rng.sample(machines, rng.choice((1, 1, 2)))
        for i in range(rng.choice((1, 1, 2, 3, 4))):
            created = start + i * rng.randrange(1, 90) * MINUTE
            last_update = min(created + rng.randrange(1, 48 * 60) * MINUTE, anchor - MINUTE)
            alert = make_alert(rng, rng.randrange(len(ALERT_TITLES)), hosts[i % len(hosts)], created,
                               max(last_update, created), incident_id, seq)
            seq += 1
            if rng.random() < 0.3:  # a third of the history is already triaged
                alert.status, alert.classification = "resolved", rng.choice(("truePositive", "falsePositive"))
                alert.determination = "malware" if alert.classification == "truePositive" else "clean"
                alert.resolved, alert.assigned_to = alert.last_update, "secops@contoso.com"
            elif rng.random() < 0.3:
                alert.status, alert.assigned_to = "inProgress", "analyst@contoso.com"
            group.append(alert)
        alerts.extend(group)
        incidents.append(incident_for(group, incident_id, rng, n))
    seeded = build_seeded_incident(INCIDENT, anchor, seq, incident_count)
    machines.append(seeded.machine)
    alerts.append(seeded.alert)
    incidents.append(seeded.incident)
    # A machine's risk score is the highest severity among its open alerts.
    for machine in machines:
        open_severities = [a.severity for a in alerts if a.machine is machine and a.status != "resolved"]
        if open_severities:
            machine["riskScore"] = max(open_severities, key=SEVERITIES.index).capitalize()
    logons = build_logons(machines[:-1], anchor)
    logons[seeded.machine["id"]] = seeded.logons
    return World(anchor, machines, logons, build_files(anchor),
                 build_ips(machines, anchor), alerts, incidents, build_actions(machines, anchor),
                 build_indicators(anchor))
