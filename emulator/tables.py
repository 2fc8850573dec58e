"""Advanced-hunting table schemas and deterministic row generation.

Each table has its real column set in its real order, typed the way the hunting APIs report types
(``DateTime``, ``String``, ``Int64``, ``Int32``, ``Boolean``, ``SByte``, ``Guid``, ``Object``).
Rows are built from the pools in :mod:`emulator.entities` with a ``random.Random`` seeded by the table
and the time window, so the same query in the same window gets the same rows, and ``take 10`` is a
prefix of ``take 100``.

Rows are tuples of *UTF-8 JSON-encoded cells* in schema order (``b'"cmd.exe"'``, ``b'4242'``,
``b'null'``): a 100,000-row result is ~300 MB of JSON, and building dicts for ``json.dumps`` costs
several times more than formatting pre-encoded cells into a bytes template (:func:`row_template`).
Pool values are encoded once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .entities import ALERT_TITLES, FILES, REMOTES, Account, Device, Image, accounts, devices, images
from .incident import hunting_rows

TICKS_PER_SECOND = 10_000_000  # DateTime values carry 7 fractional digits (100 ns ticks)


@functools.lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))


def format_ticks(ticks: int) -> str:
    """100-ns ticks since the Unix epoch -> ``2024-03-26T09:39:50.7688641Z``."""
    # strftime per value dominated row generation; only the date part needs it.
    sec, frac = divmod(ticks, TICKS_PER_SECOND)
    day, sec = divmod(sec, 86400)
    hour, sec = divmod(sec, 3600)
    minute, sec = divmod(sec, 60)
    return f"{_day_prefix(day)}{hour:02d}:{minute:02d}:{sec:02d}.{frac:07d}Z"


@functools.lru_cache(maxsize=4096)
def _day_prefix_bytes(day: int) -> bytes:
    return b'"' + _day_prefix(day).encode()


@functools.cache
def _times_of_day() -> tuple[bytes, ...]:
    return tuple(b"%02d:%02d:%02d." % (s // 3600, s // 60 % 60, s % 60) for s in range(86400))


def _ts(ticks: int) -> bytes:
    """A DateTime cell, already JSON-quoted (four per row: worth a lookup table for the time of day)."""
    sec, frac = divmod(ticks, TICKS_PER_SECOND)
    day, sec = divmod(sec, 86400)
    return b'%s%s%07dZ"' % (_day_prefix_bytes(day), _times_of_day()[sec], frac)


def _schema(spec: str) -> tuple[tuple[str, str], ...]:
    """``"Name:Type Name2 ..."`` (type defaults to String) -> ((name, type), ...)."""
    out = []
    for item in spec.split():
        name, _, typ = item.partition(":")
        out.append((name, typ or "String"))
    return tuple(out)


_VERSION_INFO = ("VersionInfoCompanyName VersionInfoProductName VersionInfoProductVersion "
                 "VersionInfoInternalFileName VersionInfoOriginalFileName VersionInfoFileDescription")
_IP_VERSION_INFO = " ".join("InitiatingProcess" + c for c in _VERSION_INFO.split())
_IP_ACCOUNT = ("InitiatingProcessAccountDomain InitiatingProcessAccountName InitiatingProcessAccountSid "
               "InitiatingProcessAccountUpn InitiatingProcessAccountObjectId")
_IP_REMOTE = ("InitiatingProcessSessionId:Int64 IsInitiatingProcessRemoteSession:Boolean "
              "InitiatingProcessRemoteSessionDeviceName InitiatingProcessRemoteSessionIP")
_IP_HASHES = ("InitiatingProcessSHA1 InitiatingProcessSHA256 InitiatingProcessMD5 InitiatingProcessFileName "
              f"InitiatingProcessFileSize:Int64 {_IP_VERSION_INFO}")

SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "DeviceProcessEvents": _schema(
        "Timestamp:DateTime DeviceId DeviceName ActionType FileName FolderPath SHA1 SHA256 MD5 FileSize:Int64 "
        + " ".join("Process" + c for c in _VERSION_INFO.split())
        + " ProcessId:Int64 ProcessCommandLine ProcessIntegrityLevel ProcessTokenElevation "
        "ProcessCreationTime:DateTime AccountDomain AccountName AccountSid AccountUpn AccountObjectId "
        f"LogonId:Int64 {_IP_ACCOUNT} InitiatingProcessLogonId:Int64 InitiatingProcessIntegrityLevel "
        f"InitiatingProcessTokenElevation {_IP_HASHES} InitiatingProcessId:Int64 InitiatingProcessCommandLine "
        "InitiatingProcessCreationTime:DateTime InitiatingProcessFolderPath InitiatingProcessParentId:Int64 "
        "InitiatingProcessParentFileName InitiatingProcessParentCreationTime:DateTime InitiatingProcessSignerType "
        f"InitiatingProcessSignatureStatus ReportId:Int64 AppGuardContainerId AdditionalFields:Object {_IP_REMOTE} "
        "ProcessRemoteSessionDeviceName ProcessRemoteSessionIP ProcessSessionId:Int64 "
        "IsProcessRemoteSession:Boolean CreatedProcessSessionId:Int64 InitiatingProcessUniqueId:Int64 "
        "ProcessUniqueId:Int64"),
    "DeviceNetworkEvents": _schema(
        "Timestamp:DateTime DeviceId DeviceName ActionType RemoteIP RemotePort:Int32 RemoteUrl LocalIP "
        f"LocalPort:Int32 Protocol LocalIPType RemoteIPType {_IP_HASHES} InitiatingProcessId:Int64 "
        "InitiatingProcessCommandLine InitiatingProcessCreationTime:DateTime InitiatingProcessFolderPath "
        "InitiatingProcessParentFileName InitiatingProcessParentId:Int64 "
        f"InitiatingProcessParentCreationTime:DateTime {_IP_ACCOUNT} InitiatingProcessIntegrityLevel "
        f"InitiatingProcessTokenElevation ReportId:Int64 AppGuardContainerId AdditionalFields:Object {_IP_REMOTE} "
        "InitiatingProcessUniqueId:Int64"),
    "DeviceFileEvents": _schema(
        "Timestamp:DateTime DeviceId DeviceName ActionType FileName FolderPath SHA1 SHA256 MD5 FileOriginUrl "
        "FileOriginReferrerUrl FileOriginIP PreviousFolderPath PreviousFileName FileSize:Int64 "
        f"{_IP_ACCOUNT} InitiatingProcessMD5 InitiatingProcessSHA1 InitiatingProcessSHA256 "
        "InitiatingProcessFolderPath InitiatingProcessFileName InitiatingProcessFileSize:Int64 "
        f"{_IP_VERSION_INFO} InitiatingProcessId:Int64 InitiatingProcessCommandLine "
        "InitiatingProcessCreationTime:DateTime InitiatingProcessIntegrityLevel InitiatingProcessTokenElevation "
        "InitiatingProcessParentId:Int64 InitiatingProcessParentFileName "
        "InitiatingProcessParentCreationTime:DateTime RequestProtocol RequestSourceIP RequestSourcePort:Int32 "
        "RequestAccountName RequestAccountDomain RequestAccountSid ShareName SensitivityLabel SensitivitySubLabel "
        f"IsAzureInfoProtectionApplied:Boolean ReportId:Int64 AppGuardContainerId AdditionalFields:Object "
        f"{_IP_REMOTE} InitiatingProcessUniqueId:Int64"),
    "DeviceLogonEvents": _schema(
        "Timestamp:DateTime DeviceId DeviceName ActionType LogonType AccountDomain AccountName AccountSid "
        # IsLocalAdmin is reported as SByte, as some clusters do for bool columns (§2d).
        "Protocol FailureReason IsLocalAdmin:SByte LogonId:Int64 RemoteDeviceName RemoteIP RemoteIPType "
        f"RemotePort:Int32 {_IP_ACCOUNT} InitiatingProcessIntegrityLevel InitiatingProcessTokenElevation "
        f"{_IP_HASHES} InitiatingProcessId:Int64 InitiatingProcessCommandLine "
        "InitiatingProcessCreationTime:DateTime InitiatingProcessFolderPath InitiatingProcessParentId:Int64 "
        "InitiatingProcessParentFileName InitiatingProcessParentCreationTime:DateTime ReportId:Int64 "
        f"AppGuardContainerId AdditionalFields:Object {_IP_REMOTE} InitiatingProcessUniqueId:Int64"),
    "AlertInfo": _schema(
        "Timestamp:DateTime AlertId Title Category Severity ServiceSource DetectionSource AttackTechniques"),
    "AlertEvidence": _schema(
        "Timestamp:DateTime AlertId Title Categories AttackTechniques ServiceSource DetectionSource EntityType "
        "EvidenceRole EvidenceDirection FileName FolderPath SHA1 SHA256 FileSize:Int64 ThreatFamily RemoteIP "
        "RemoteUrl AccountName AccountDomain AccountSid AccountObjectId AccountUpn DeviceId DeviceName LocalIP "
        "NetworkMessageId EmailSubject ApplicationId:Int32 Application OAuthApplicationId:Guid "
        "ProcessCommandLine AdditionalFields:Object RegistryKey RegistryValueName RegistryValueData"),
    # Defender for Identity: authentications against the domain controllers (the M365D identity queries).
    "IdentityLogonEvents": _schema(
        "Timestamp:DateTime ActionType Application LogonType Protocol FailureReason AccountName AccountDomain "
        "AccountUpn AccountSid AccountObjectId AccountDisplayName DeviceName DeviceType OSPlatform IPAddress "
        "Port:Int32 DestinationDeviceName DestinationIPAddress DestinationPort:Int32 TargetDeviceName "
        "TargetAccountDisplayName Location ISP ReportId:Int64 AdditionalFields:Object"),
}


Row = tuple[bytes, ...]


def enc(value: Any) -> bytes:
    """One cell as UTF-8 JSON (non-ASCII kept as is, like the services)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


NULL, TRUE, FALSE, EMPTY = b"null", b"true", b"false", b'""'


def _bool(value: bool | None) -> bytes:
    return NULL if value is None else TRUE if value else FALSE


def _int(value: int | None) -> bytes:
    return NULL if value is None else b"%d" % value


@dataclass(frozen=True)
class _Exe:
    """An :class:`Image` with its cells pre-encoded in the column blocks the tables use."""

    image: Image
    proc_block: Row        # FileName FolderPath SHA1 SHA256 MD5 FileSize ProcessVersionInfo*(6)
    ip_block: Row          # InitiatingProcess SHA1 SHA256 MD5 FileName FileSize VersionInfo*(6)
    ip_block_files: Row    # InitiatingProcess MD5 SHA1 SHA256 FolderPath FileName FileSize VersionInfo*(6)
    name: bytes
    folder: bytes
    signer: bytes
    signature: bytes
    cmds: Row
    linux: bool


@dataclass(frozen=True)
class _Who:
    """An :class:`Account` with its cells pre-encoded."""

    account: Account
    block: Row             # Domain Name Sid Upn ObjectId
    integrity: bytes
    elevation: bytes


@dataclass(frozen=True)
class _Host:
    device: Device
    id: bytes
    name: bytes
    ip: bytes
    linux: bool


# Weights: real process telemetry is dominated by SYSTEM and a few chatty OS binaries.
_IMAGE_WEIGHT = {"svchost.exe": 6, "conhost.exe": 5, "cmd.exe": 3, "powershell.exe": 2, "explorer.exe": 2}
_ACCOUNT_WEIGHT = {"system": 8, "local service": 2, "network service": 2}


@functools.cache
def _pools() -> tuple[tuple[_Exe, ...], tuple[_Exe, ...], tuple[_Who, ...], tuple[_Host, ...]]:
    """(Windows exes, Linux exes, accounts, hosts), weighted by repetition, encoded once."""
    win: list[_Exe] = []
    lin: list[_Exe] = []
    for img in images():
        version = tuple(enc(v) for v in (img.CompanyName, img.ProductName, img.ProductVersion,
                                          img.InternalFileName, img.OriginalFileName, img.FileDescription))
        name, folder = enc(img.FileName), enc(img.FolderPath)
        sha1, sha256, md5, size = enc(img.SHA1), enc(img.SHA256), enc(img.MD5), _int(img.FileSize)
        exe = _Exe(img, (name, folder, sha1, sha256, md5, size) + version,
                   (sha1, sha256, md5, name, size) + version, (md5, sha1, sha256, folder, name, size) + version,
                   name, folder, enc(img.SignerType), enc(img.SignatureStatus),
                   tuple(enc(c) for c in img.command_lines), "/" in img.FolderPath)
        (lin if exe.linux else win).extend([exe] * _IMAGE_WEIGHT.get(img.FileName, 1))
    who: list[_Who] = []
    for acct in accounts():
        w = _Who(acct, tuple(enc(v) for v in (acct.AccountDomain, acct.AccountName, acct.AccountSid,
                                              acct.AccountUpn, acct.AccountObjectId)),
                 enc(acct.integrity), enc(acct.elevation))
        who.extend([w] * _ACCOUNT_WEIGHT.get(acct.AccountName, 1))
    hosts = tuple(_Host(d, enc(d.DeviceId), enc(d.DeviceName), enc(d.LocalIP), d.domain.endswith("internal"))
                  for d in devices())
    return tuple(win), tuple(lin), tuple(who), hosts


_ADDITIONAL_FIXED = tuple(enc(v) for v in (
    {"Notiz": "Übergeordneter Prozess gestartet", "标签": ["审计", "T1059"], "Nested": {"Depth": 2}},
    ["T1059.001", "T1027", {"Score": 0.87}],
    # A JSON document encoded as a string, as the MDE API often sends dynamic values.
    '{"Command":"Set-MpPreference","Params":{"ExclusionPath":"C:\\\\Temp\\\\ü"}}',
    'Process launched via WMI "Win32_Process.Create"',
    0, 42, -1, 3.25,
))


def _additional_fields(rng: random.Random) -> bytes:
    """AdditionalFields (dynamic) varies in kind from row to row: object, array, string, number, null."""
    pick = rng.random()
    if pick < 0.35:
        return NULL
    if pick < 0.55:
        return b'{"ProcessStartKey":%d,"TokenElevationType":"Limited"}' % rng.getrandbits(52)
    fixed = _ADDITIONAL_FIXED
    return fixed[min(len(fixed) - 1, int((pick - 0.55) / 0.45 * len(fixed)))]


class _Gen:
    """Per-generation state: the RNG, the window and the encoded pools."""

    def __init__(self, table: str, start: int, end: int) -> None:
        self.rng = random.Random(f"{table}|{start // TICKS_PER_SECOND}|{end // TICKS_PER_SECOND}")
        self.rand = self.rng.random
        self.start, self.span = start, max(1, end - start)
        self.win, self.lin, self.who, self.hosts = _pools()

    # random.choice/randrange are pure Python and were half the generation time; these use
    # random() directly. Still deterministic for a given seed.
    def pick(self, seq: tuple) -> Any:
        """A random element."""
        return seq[int(self.rand() * len(seq))]

    def below(self, n: int) -> int:
        """A random int in [0, n)."""
        return int(self.rand() * n)

    def when(self) -> int:
        """A random instant in the window, in ticks."""
        return self.start + int(self.rand() * self.span)

    def initiating(self, t: int, linux: bool) -> tuple:
        """Cells of the initiating process: (exe, account, id, cmd, created, parent id, parent name,
        parent created, logon id, remote-session tail (4 cells), unique id)."""
        rand, pick = self.rand, self.pick
        exes = self.lin if linux else self.win
        exe: _Exe = pick(exes)
        created = t - TICKS_PER_SECOND - int(rand() * 3 * 86400 * TICKS_PER_SECOND)
        remote = rand() < 0.05
        tail = (b"%d" % int(rand() * 4), NULL if rand() < 0.03 else _bool(remote),
                b'"JUMP-HOST-02"' if remote else NULL, b'"10.0.5.21"' if remote else NULL)
        return (exe, pick(self.who), b"%d" % (4 + 4 * int(rand() * 16383)), pick(exe.cmds), _ts(created),
                b"%d" % (4 + 4 * int(rand() * 16383)), pick(exes).name,
                NULL if rand() < 0.1 else _ts(created - 1 - int(rand() * 10**11)),
                NULL if rand() < 0.05 else b"%d" % (100_000 + int(rand() * 99_900_000)), tail,
                b"%d" % self.rng.getrandbits(48))


def _process_events(g: _Gen, n: int) -> list[Row]:
    rng = g.rng
    rand, pick, below, bits = g.rand, g.pick, g.below, rng.getrandbits
    rows = []
    for _ in range(n):
        t = g.when()
        host: _Host = pick(g.hosts)
        exe: _Exe = pick(g.lin if host.linux else g.win)
        who: _Who = pick(g.who)
        (iexe, iwho, ipid, icmd, icreated, ppid, pname, pcreated, ilogon, itail, iunique) = g.initiating(
            t, host.linux)
        if rand() < 0.8:
            iwho = who
        remote = rand() < 0.04
        rows.append((
            _ts(t), host.id, host.name, b'"ProcessCreated"', *exe.proc_block,
            b"%d" % (4 + 4 * below(16383)), pick(exe.cmds), who.integrity, who.elevation,
            _ts(t - below(20_000)), *who.block,
            NULL if rand() < 0.05 else b"%d" % (100_000 + below(99_900_000)), *iwho.block,
            ilogon, iwho.integrity, iwho.elevation, *iexe.ip_block,
            ipid, icmd, icreated, iexe.folder, ppid, pname, pcreated, iexe.signer, iexe.signature,
            b"%d" % (1 + below(10**7)), EMPTY if rand() < 0.97 else NULL, _additional_fields(rng), *itail,
            b'"WKS-ADMIN-01"' if remote else NULL, b'"10.0.7.14"' if remote else NULL, itail[0],
            _bool(remote), itail[0], iunique, NULL if host.linux else b"%d" % bits(48),
        ))
    return rows


_NETWORK_ACTIONS = tuple(enc(a) for a in ("ConnectionSuccess", "ConnectionSuccess", "ConnectionFailed",
                                          "ConnectionRequest"))
_REMOTES = tuple((enc(ip), enc(url), b"%d" % port, b'"Udp"' if port == 53 else b'"Tcp"',
                  b'"Private"' if ip.startswith("10.") else b'"Public"') for ip, url, port in REMOTES)


def _network_events(g: _Gen, n: int) -> list[Row]:
    rows = []
    for _ in range(n):
        t = g.when()
        host: _Host = g.pick(g.hosts)
        (iexe, iwho, ipid, icmd, icreated, ppid, pname, pcreated, _, itail, iunique) = g.initiating(t, host.linux)
        rip, url, port, proto, rtype = g.pick(_REMOTES)
        action = b'"InboundConnectionAccepted"' if g.rand() < 0.1 else g.pick(_NETWORK_ACTIONS)
        rows.append(
            (_ts(t), host.id, host.name, action, rip, port, url, host.ip, b"%d" % (49152 + g.below(16383)),
             proto, b'"Private"', rtype) + iexe.ip_block
            + (ipid, icmd, icreated, iexe.folder, pname, ppid, pcreated) + iwho.block
            + (iwho.integrity, iwho.elevation, b"%d" % (1 + g.below(10**7)), EMPTY, _additional_fields(g.rng))
            + itail + (iunique,)
        )
    return rows


_FILE_ACTIONS = tuple(enc(a) for a in ("FileCreated", "FileCreated", "FileModified", "FileRenamed", "FileDeleted"))
_FILES = tuple(
    (enc(path), enc(path.replace("/", "\\").rsplit("\\", 1)[-1]), enc(path + ".tmp"),
     enc(path.replace("/", "\\").rsplit("\\", 1)[-1] + ".tmp"), enc(origin), path.startswith("\\\\"),
     origin is not None)
    for path, origin in FILES)
_LABELS = (NULL, NULL, enc("Vertraulich"), b'"General"')
_MAYBE_BOOL = (TRUE, FALSE, FALSE, NULL)
_SHARE_NAME = enc("Abteilung-Prüfung")


def _file_events(g: _Gen, n: int) -> list[Row]:
    rows = []
    for _ in range(n):
        t = g.when()
        host: _Host = g.pick(g.hosts)
        (iexe, iwho, ipid, icmd, icreated, ppid, pname, pcreated, _, itail, iunique) = g.initiating(t, host.linux)
        folder, name, prev_folder, prev_name, origin, share, downloaded = g.pick(_FILES)
        action = g.pick(_FILE_ACTIONS)
        deleted, renamed = action == b'"FileDeleted"', action == b'"FileRenamed"'
        content: _Exe = g.win[len(folder) % len(g.win)]
        acct = iwho.block
        rows.append(
            (_ts(t), host.id, host.name, action, name, folder)
            + ((NULL, NULL, NULL) if deleted else content.proc_block[2:5])
            + (origin, b'"https://mail.contoso.com/"' if downloaded else NULL,
               b'"198.51.100.23"' if downloaded else NULL, prev_folder if renamed else NULL,
               prev_name if renamed else NULL, NULL if deleted else b"%d" % g.below(50_000_000))
            + acct + iexe.ip_block_files
            + (ipid, icmd, icreated, iwho.integrity, iwho.elevation, ppid, pname, pcreated,
               b'"SMB"' if share else b'"Local"', b'"10.0.5.21"' if share else NULL,
               b"%d" % (49152 + g.below(16383)) if share else NULL)
            + ((acct[1], acct[0], acct[2], _SHARE_NAME) if share else (NULL, NULL, NULL, NULL))
            + (g.pick(_LABELS), NULL, g.pick(_MAYBE_BOOL), b"%d" % (1 + g.below(10**7)), EMPTY,
               _additional_fields(g.rng)) + itail + (iunique,)
        )
    return rows


_LOGON_TYPES = tuple(enc(x) for x in ("Interactive", "Network", "RemoteInteractive", "Service", "Batch", "Unlock"))
_REMOTE_LOGONS = frozenset({b'"Network"', b'"RemoteInteractive"'})
_PROTOCOLS = (b'"Kerberos"', b'"NTLM"', b'"Negotiate"', NULL)
_FAILURES = (b'"InvalidUserNameOrPassword"', b'"UserAccountLocked"')
_REMOTE_IPS = (b'"10.0.5.21"', b'"203.0.113.77"', b'"::ffff:10.0.7.14"')


def _logon_events(g: _Gen, n: int) -> list[Row]:
    rows = []
    for _ in range(n):
        t = g.when()
        host: _Host = g.pick(g.hosts)
        (iexe, iwho, ipid, icmd, icreated, ppid, pname, pcreated, _, itail, iunique) = g.initiating(t, host.linux)
        who: _Who = g.pick(g.who)
        failed = g.rand() < 0.15
        logon_type = g.pick(_LOGON_TYPES)
        remote = logon_type in _REMOTE_LOGONS
        rows.append(
            (_ts(t), host.id, host.name, b'"LogonFailed"' if failed else b'"LogonSuccess"', logon_type)
            + who.block[:3]
            + (g.pick(_PROTOCOLS), g.pick(_FAILURES) if failed else NULL, g.pick(_MAYBE_BOOL),
               NULL if failed else b"%d" % (100_000 + g.below(99_900_000)))
            + ((b'"wks-1014.contoso.local"', g.pick(_REMOTE_IPS), b'"Private"', b"%d" % (49152 + g.below(16383)))
               if remote else (NULL, NULL, NULL, NULL))
            + iwho.block + (iwho.integrity, iwho.elevation) + iexe.ip_block
            + (ipid, icmd, icreated, iexe.folder, ppid, pname, pcreated, b"%d" % (1 + g.below(10**7)), EMPTY,
               _additional_fields(g.rng)) + itail + (iunique,)
        )
    return rows


_DETECTIONS = tuple(enc(d) for d in ("EDR", "Antivirus", "Custom detection"))
_SERVICE_SOURCE = enc("Microsoft Defender for Endpoint")


@functools.cache
def _titles() -> tuple[tuple[bytes, bytes, bytes, bytes, bytes], ...]:
    """Per ALERT_TITLES entry, encoded: (title, category, severity, techniques, categories)."""
    return tuple((enc(title), enc(category), enc(severity), enc(techniques), enc(f'["{category}"]'))
                 for title, category, severity, techniques in ALERT_TITLES)


def _alert(g: _Gen, k: int) -> tuple[bytes, bytes, int, bytes]:
    """Alert number ``k`` of the window, encoded: (Timestamp, AlertId, title index, DetectionSource).

    AlertInfo and AlertEvidence agree on it: it depends only on the window's start and ``k``.
    """
    # A hash, not a Random seeded per alert: seeding one cost more than the rest of the row.
    digest = hashlib.blake2b(b"alert|%d|%d" % (g.start, k), digest_size=16).digest()
    t = g.start + int((int.from_bytes(digest[:8], "big") >> 11) / 2**53 * g.span)
    alert_id = b'"da%d_%d"' % (638_400_000_000_000_000 + t // 10**9, int.from_bytes(digest[8:12], "big", signed=True))
    return _ts(t), alert_id, k % len(ALERT_TITLES), _DETECTIONS[digest[12] % len(_DETECTIONS)]


def _alert_info(g: _Gen, n: int) -> list[Row]:
    titles = _titles()
    rows = []
    for k in range(n):
        when, alert_id, index, detection = _alert(g, k)
        title, category, severity, techniques, _ = titles[index]
        rows.append((when, alert_id, title, category, severity, _SERVICE_SOURCE, detection, techniques))
    return rows


_ENTITY_TYPES = tuple(enc(e) for e in ("Machine", "Process", "File", "User", "Ip", "Url"))
_IMPACTED, _RELATED, _DESTINATION = enc("Impacted"), enc("Related"), enc("Destination")
_APPLICATION = (b"11161", enc("Microsoft 365"), enc("4765445b-32c6-49b0-83e6-1d93765276ca"))
_NO_FILE = (NULL,) * 6            # FileName FolderPath SHA1 SHA256 FileSize ThreatFamily
_NO_ACCOUNT = (NULL,) * 5         # AccountName AccountDomain AccountSid AccountObjectId AccountUpn
_NO_APPLICATION = (NULL,) * 3     # ApplicationId Application OAuthApplicationId
_NO_MESSAGE = (NULL, NULL)        # NetworkMessageId EmailSubject
_NO_REGISTRY = (NULL, NULL, NULL)  # RegistryKey RegistryValueName RegistryValueData


@functools.cache
def _evidence_files() -> tuple[Row, ...]:
    """Per Windows exe of the pool (same order): FileName FolderPath SHA1 SHA256 FileSize ThreatFamily."""
    return tuple(exe.proc_block[:4] + (exe.proc_block[5],)
                 + (enc("Mimikatz" if "comsvcs" in exe.image.command_lines[-1] else None),) for exe in _pools()[0])


def _alert_evidence(g: _Gen, n: int) -> list[Row]:
    # Pre-encoded cells in schema order: a dict per row and json.dumps per cell cost five times more.
    rand, rng = g.rand, g.rng
    titles, files, hosts, who, win = _titles(), _evidence_files(), g.hosts, g.who, g.win
    rows = []
    head: tuple[bytes, ...] = ()
    for i in range(n):
        if i % 3 == 0:  # three evidence rows per alert
            when, alert_id, index, detection = _alert(g, i // 3)
            title, _, _, techniques, categories = titles[index]
            head = (when, alert_id, title, categories, techniques, _SERVICE_SOURCE, detection)
        # The same draws, in the same order, as picking a host, an account and an image from the pools.
        host: _Host = hosts[int(rand() * len(hosts))]
        acct = who[int(rand() * len(who))].block
        x = int(rand() * len(win))
        additional = _additional_fields(rng)
        kind = i % 6
        file_cells, account, remote, command = _NO_FILE, _NO_ACCOUNT, (NULL, NULL), NULL
        if kind in (1, 2):  # Process, File
            file_cells = files[x]
            if kind == 1:
                cmds = win[x].cmds
                command = cmds[int(rand() * len(cmds))]
        elif kind == 3:  # User: the pool block is Domain Name Sid Upn ObjectId
            account = (acct[1], acct[0], acct[2], acct[4], acct[3])
        elif kind >= 4:  # Ip, Url
            rip, url = _REMOTES[int(rand() * len(_REMOTES))][:2]
            remote = (rip, url if kind == 5 else NULL)
        rows.append(
            head + (_ENTITY_TYPES[kind], _IMPACTED if kind in (0, 3) else _RELATED,
                    _DESTINATION if kind >= 4 else NULL) + file_cells + remote + account
            + (host.id, host.name, host.ip) + _NO_MESSAGE + (_APPLICATION if i % 11 == 0 else _NO_APPLICATION)
            + (command, additional) + _NO_REGISTRY
        )
    return rows


# IdentityLogonEvents: (Application, Protocol, LogonType, destination name, destination IP, port, target).
_IDENTITY_KINDS = tuple(tuple(enc(v) for v in kind) for kind in (
    ("Active Directory", "Kerberos", "Resource access", "dc01.contoso.local", "10.0.0.10", 88, "fs01.contoso.local"),
    ("Active Directory", "Kerberos", "Credentials validation", "dc01.contoso.local", "10.0.0.10", 88, None),
    ("Active Directory", "Kerberos", "Credentials validation", "dc01.contoso.local", "10.0.0.10", 88, None),
    ("Active Directory", "NTLM", "Credentials validation", "dc01.contoso.local", "10.0.0.10", 445, None),
    ("Active Directory", "NTLM", "Resource access", "fs01.contoso.local", "10.0.0.11", 445, "fs01.contoso.local"),
    ("Active Directory", "LDAP", "LDAP cleartext", "dc01.contoso.local", "10.0.0.10", 389, None),
))
_IDENTITY_FAILURES = tuple(enc(f) for f in ("WrongPassword", "WrongPassword", "AccountLocked", "AccountDisabled"))
_JUMP_HOST = (enc("JUMP-HOST-02"), enc("Server"), enc("Windows Server 2022"), enc("10.0.5.21"))


@functools.cache
def _identity_pools() -> tuple[tuple[Row, ...], tuple[Row, ...]]:
    """(domain accounts, devices) for IdentityLogonEvents, encoded.

    Accounts: Name Domain Upn Sid ObjectId DisplayName; devices: DeviceName DeviceType OSPlatform IPAddress.
    """
    people = []
    for acct in accounts():
        if acct.AccountUpn is None:  # built-in and local accounts never reach the domain controllers
            continue
        display = " ".join(p.capitalize() for p in acct.AccountName.replace("'", "' ").replace("-", " ").split(".")
                           ).replace("' ", "'")
        people.append(tuple(enc(v) for v in (acct.AccountName, acct.AccountDomain, acct.AccountUpn,
                                             acct.AccountSid, acct.AccountObjectId, display)))
    hosts = []
    for host in _pools()[3]:
        kind = host.device.DeviceName[:3]
        device_type, platform = {"srv": ("Server", "Windows Server 2022"), "lnx": ("Server", "Linux")}.get(
            kind, ("Workstation", "Windows 11"))
        hosts.append((host.name, enc(device_type), enc(platform), host.ip))
    return tuple(people), tuple(hosts)


def _identity_logon_events(g: _Gen, n: int) -> list[Row]:
    rand = g.rand
    people, hosts = _identity_pools()
    rows = []
    for _ in range(n):
        t = g.when()
        person = people[int(rand() * len(people))]
        device = _JUMP_HOST if rand() < 0.06 else hosts[int(rand() * len(hosts))]
        application, protocol, logon_type, dest_name, dest_ip, dest_port, target = g.pick(_IDENTITY_KINDS)
        failed = rand() < 0.12
        rows.append(
            (_ts(t), b'"LogonFailed"' if failed else b'"LogonSuccess"', application, logon_type, protocol,
             g.pick(_IDENTITY_FAILURES) if failed else NULL) + person + device
            + (b"%d" % (49152 + g.below(16383)), dest_name, dest_ip, dest_port, target, NULL, NULL, NULL,
               b"%d" % (1 + g.below(10**7)), _additional_fields(g.rng))
        )
    return rows


_GENERATORS: dict[str, Callable[[_Gen, int], list[Row]]] = {
    "DeviceProcessEvents": _process_events,
    "DeviceNetworkEvents": _network_events,
    "DeviceFileEvents": _file_events,
    "DeviceLogonEvents": _logon_events,
    "IdentityLogonEvents": _identity_logon_events,
    "AlertInfo": _alert_info,
    "AlertEvidence": _alert_evidence,
}


def _cell(value: Any, typ: str) -> bytes:
    return _ts(value) if typ == "DateTime" and isinstance(value, int) else enc(value)


@functools.cache
def _seeded(table: str) -> tuple[tuple[int, Row], ...]:
    """The seeded incident's rows of ``table`` (:mod:`emulator.incident`), encoded, in time order."""
    return tuple((when, tuple(_cell(values.get(name), typ) for name, typ in SCHEMAS[table]))
                 for when, values in hunting_rows(table))


def generate(table: str, n: int, start_ticks: int, end_ticks: int) -> list[Row]:
    """``n`` rows of ``table`` (encoded cells, schema order) with ``Timestamp`` in [start, end).

    The seeded incident's rows in the window come first and count within ``n``, so a shorter take is still a
    prefix of a longer one; random rows from the pools fill the rest.
    """
    if n <= 0 or end_ticks <= start_ticks:
        return []
    rows = [row for when, row in _seeded(table) if start_ticks <= when < end_ticks][:n]
    return rows + _GENERATORS[table](_Gen(table, start_ticks, end_ticks), n - len(rows))


def row_template(names: list[str] | tuple[str, ...]) -> bytes:
    """A bytes ``%``-template turning a tuple of encoded cells into one JSON object with these keys."""
    return b"{" + b",".join(enc(name).replace(b"%", b"%%") + b":%s" for name in names) + b"}"
