"""The emulator's hunting ``where``: operator semantics, scanning, time narrowing, joins, and errors.

Semantics are checked against plain Python over the same generated rows: ``T | take N | where P``
filters exactly the rows ``generate(T, N)`` makes, so the expected answer is computed independently
of the KQL engine.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from emulator.kql import SCAN_ROWS, KqlError, execute, parse
from emulator.predicates import parse_datetime
from emulator.tables import SCHEMAS, generate, row_template

NOW = (int(time.time()) // 3600 * 3600) * 10**7
START = NOW - 30 * 86400 * 10**7
HOUR = 3600 * 10**7


def run(query: str) -> list[dict]:
    return json.loads(execute(parse(query), START, NOW, now=NOW).to_json_array())


def columns(query: str) -> list[str]:
    return [c.name for c in execute(parse(query), START, NOW, now=NOW).columns]


def generated(table: str, n: int, start: int = START, end: int = NOW) -> list[dict]:
    template = row_template([name for name, _ in SCHEMAS[table]])
    return [json.loads(template % row) for row in generate(table, n, start, end)]


def ticks(value: str) -> int:
    return parse_datetime(value)


def has(hay: str | None, needle: str) -> bool:
    """Kusto ``has``, written independently: needle bounded by non-alphanumerics (or the ends)."""
    hay, needle = (hay or "").lower(), needle.lower()
    return any(
        (i == 0 or not hay[i - 1].isalnum()) and (i + len(needle) == len(hay) or not hay[i + len(needle)].isalnum())
        for i in (m.start() for m in re.finditer(re.escape(needle), hay))
    )


HOST = "wks-1007.contoso.local"

# (table, KQL predicate, the same predicate in Python over a row dict)
SEMANTICS = [
    ("DeviceProcessEvents", f'DeviceName == "{HOST}"', lambda r: r["DeviceName"] == HOST),
    ("DeviceProcessEvents", f'DeviceName == "{HOST.upper()}"', lambda r: False),  # == is case-sensitive
    ("DeviceProcessEvents", f'DeviceName != "{HOST}"', lambda r: r["DeviceName"] != HOST),
    ("DeviceProcessEvents", f'DeviceName =~ "{HOST.upper()}"', lambda r: r["DeviceName"] == HOST),
    ("DeviceProcessEvents", 'FileName !~ "CMD.exe"', lambda r: r["FileName"].lower() != "cmd.exe"),
    ("DeviceProcessEvents", 'DeviceName has "WKS-1007"', lambda r: has(r["DeviceName"], "wks-1007")),
    ("DeviceProcessEvents", 'DeviceName has "wks-100"', lambda r: has(r["DeviceName"], "wks-100")),
    ("DeviceProcessEvents", 'DeviceName !has "contoso"', lambda r: not has(r["DeviceName"], "contoso")),
    ("DeviceProcessEvents", 'ProcessCommandLine has "create"', lambda r: has(r["ProcessCommandLine"], "create")),
    ("DeviceProcessEvents", 'ProcessCommandLine has_cs "MiniDump"',
     lambda r: "MiniDump" in (r["ProcessCommandLine"] or "") and has(r["ProcessCommandLine"], "minidump")),
    ("DeviceProcessEvents", 'ProcessCommandLine contains "appdata"',
     lambda r: "appdata" in (r["ProcessCommandLine"] or "").lower()),
    ("DeviceProcessEvents", 'ProcessCommandLine !contains "a"', lambda r: "a" not in (r["ProcessCommandLine"] or "").lower()),
    ("DeviceProcessEvents", 'FolderPath startswith @"C:\\WINDOWS\\system32"',
     lambda r: r["FolderPath"].lower().startswith("c:\\windows\\system32")),
    ("DeviceProcessEvents", 'FileName endswith ".EXE"', lambda r: r["FileName"].lower().endswith(".exe")),
    ("DeviceProcessEvents", 'FileName in ("cmd.exe", "whoami.exe")', lambda r: r["FileName"] in ("cmd.exe", "whoami.exe")),
    ("DeviceProcessEvents", 'FileName !in ("cmd.exe", "svchost.exe")',
     lambda r: r["FileName"] not in ("cmd.exe", "svchost.exe")),
    ("DeviceProcessEvents", 'FileName in~ ("CMD.EXE", "Excel.exe")', lambda r: r["FileName"].lower() in ("cmd.exe", "excel.exe")),
    ("DeviceProcessEvents", 'FileName in (dynamic(["cmd.exe", "net.exe"]))', lambda r: r["FileName"] in ("cmd.exe", "net.exe")),
    ("DeviceProcessEvents", 'ProcessCommandLine has_any ("comsvcs", "whoami")',
     lambda r: has(r["ProcessCommandLine"], "comsvcs") or has(r["ProcessCommandLine"], "whoami")),
    ("DeviceProcessEvents", 'ProcessCommandLine has_all ("comsvcs", "MiniDump")',
     lambda r: has(r["ProcessCommandLine"], "comsvcs") and has(r["ProcessCommandLine"], "minidump")),
    ("DeviceNetworkEvents", "RemotePort == 443", lambda r: r["RemotePort"] == 443),
    ("DeviceNetworkEvents", "RemotePort in (445, 389)", lambda r: r["RemotePort"] in (445, 389)),
    ("DeviceNetworkEvents", "RemotePort < 100", lambda r: r["RemotePort"] < 100),
    ("DeviceNetworkEvents", "RemotePort >= 445 and RemotePort <= 8443", lambda r: 445 <= r["RemotePort"] <= 8443),
    ("DeviceNetworkEvents", "RemotePort between (53 .. 389)", lambda r: 53 <= r["RemotePort"] <= 389),
    ("DeviceNetworkEvents", "RemotePort !between (53 .. 389)", lambda r: not 53 <= r["RemotePort"] <= 389),
    ("DeviceNetworkEvents", 'RemoteIPType == "Public" or RemotePort == 389',
     lambda r: r["RemoteIPType"] == "Public" or r["RemotePort"] == 389),
    ("DeviceNetworkEvents", 'RemotePort == 443 and RemoteUrl has "microsoftonline" or RemotePort == 53',
     lambda r: (r["RemotePort"] == 443 and has(r["RemoteUrl"], "microsoftonline")) or r["RemotePort"] == 53),
    ("DeviceNetworkEvents", 'RemotePort == 443 and (RemoteUrl has "microsoftonline" or RemotePort == 53)',
     lambda r: r["RemotePort"] == 443 and has(r["RemoteUrl"], "microsoftonline")),
    ("DeviceNetworkEvents", 'not(RemotePort == 443)', lambda r: r["RemotePort"] != 443),
    ("DeviceNetworkEvents", 'isempty(RemoteUrl)', lambda r: not r["RemoteUrl"]),
    ("DeviceNetworkEvents", 'isnotempty(RemoteUrl) and tolower(RemoteUrl) == "www.google.com"',
     lambda r: r["RemoteUrl"] == "www.google.com"),
    ("DeviceProcessEvents", "FileSize > 1000000", lambda r: r["FileSize"] is not None and r["FileSize"] > 1_000_000),
    ("DeviceProcessEvents", "FileSize != 5", lambda r: r["FileSize"] is not None),  # null compares false
    ("DeviceProcessEvents", "isnull(FileSize)", lambda r: r["FileSize"] is None),
    ("DeviceProcessEvents", "IsProcessRemoteSession == true", lambda r: r["IsProcessRemoteSession"] is True),
    ("DeviceProcessEvents", 'AccountUpn == ""', lambda r: not r["AccountUpn"]),  # a null string is ""
    ("DeviceProcessEvents", "Timestamp > ago(3d)", lambda r: ticks(r["Timestamp"]) > NOW - 72 * HOUR),
    ("DeviceProcessEvents", "Timestamp between (ago(10d) .. ago(9d))",
     lambda r: NOW - 240 * HOUR <= ticks(r["Timestamp"]) <= NOW - 216 * HOUR),
    ("DeviceProcessEvents", "Timestamp between (ago(10d) .. 1d)",
     lambda r: NOW - 240 * HOUR <= ticks(r["Timestamp"]) <= NOW - 216 * HOUR),
    ("DeviceProcessEvents", 'ProcessCommandLine matches regex @"\\d{3} C:"',
     lambda r: re.search(r"\d{3} C:", r["ProcessCommandLine"] or "") is not None),
    ("DeviceLogonEvents", 'IsLocalAdmin == false', lambda r: r["IsLocalAdmin"] is False),
]


@pytest.mark.parametrize("table, predicate, expected", SEMANTICS, ids=[p for _, p, _ in SEMANTICS])
def test_where_matches_python(table, predicate, expected):
    rows = generated(table, 3000)
    want = [r for r in rows if expected(r)]
    got = run(f"{table} | take 3000 | where {predicate}")
    assert got == want
    assert run(f"{table} | take 3000 | filter {predicate}") == want


def test_datetime_literals_and_comparisons():
    rows = generated("DeviceProcessEvents", 2000)
    cut = sorted(r["Timestamp"] for r in rows)[1000]
    got = run(f'DeviceProcessEvents | take 2000 | where Timestamp >= datetime({cut}) | project Timestamp')
    assert sorted(r["Timestamp"] for r in got) == sorted(r["Timestamp"] for r in rows if r["Timestamp"] >= cut)
    assert len(got) == 1000
    quoted = run(f'DeviceProcessEvents | take 2000 | where Timestamp < datetime("{cut}") | count')
    assert quoted == [{"Count": 1000}]
    day = cut[:10]
    same_day = [r for r in rows if r["Timestamp"].startswith(day)]
    assert len(run(f"DeviceProcessEvents | take 2000 | where Timestamp between (datetime({day}) .. 1d)")) == len(same_day)


def test_string_literal_forms():
    rows = generated("DeviceProcessEvents", 2000)
    cmd = r"C:\Windows\System32\cmd.exe"
    expected = [r for r in rows if r["FolderPath"] == cmd]
    assert expected
    for literal in ('@"C:\\Windows\\System32\\cmd.exe"', '"C:\\\\Windows\\\\System32\\\\cmd.exe"',
                    "'C:\\\\Windows\\\\System32\\\\cmd.exe'", 'h@"C:\\Windows\\System32\\cmd.exe"',
                    '"C:\\u005cWindows\\u005cSystem32\\u005ccmd.exe"', '"C:\\\\Windows" @"\\System32\\cmd.exe"'):
        assert run(f"DeviceProcessEvents | take 2000 | where FolderPath == {literal}") == expected, literal
    # A quote inside each form: nothing has it, and the rest of the query is not swallowed.
    for literal in ('"a\\"b"', "'a\\'b'", '@"a""b"', "'a\"b'"):
        assert run(f"DeviceProcessEvents | take 50 | where FileName == {literal} | count") == [{"Count": 0}]


def test_let_scalars_and_lists():
    rows = generated("DeviceProcessEvents", 2000)
    got = run('let names = dynamic(["cmd.exe", "whoami.exe"]); let host = "wks-1007"; '
              "DeviceProcessEvents | take 2000 | where FileName in (names) and DeviceName has host")
    assert got == [r for r in rows if r["FileName"] in ("cmd.exe", "whoami.exe") and has(r["DeviceName"], "wks-1007")]
    since = run("let since = ago(2d); DeviceProcessEvents | take 2000 | where Timestamp > since | project Timestamp")
    assert all(ticks(r["Timestamp"]) > NOW - 48 * HOUR for r in since) and since


def test_where_before_take_fills_the_take_from_matching_rows():
    got = run(f'DeviceProcessEvents | where DeviceName == "{HOST}" | take 40 | project DeviceName, ReportId')
    assert len(got) == 40 and {r["DeviceName"] for r in got} == {HOST}
    # They are the first 40 matches, in generation order, whatever the scan size was.
    matches = [r for r in generated("DeviceProcessEvents", SCAN_ROWS) if r["DeviceName"] == HOST]
    assert [r["ReportId"] for r in got] == [r["ReportId"] for r in matches[:40]]
    smaller = run(f'DeviceProcessEvents | where DeviceName == "{HOST}" | take 7 | project ReportId')
    assert smaller == [{"ReportId": r["ReportId"]} for r in got[:7]]
    # No take: the default 100 rows, all of them the device's.
    default = run('DeviceProcessEvents | where DeviceName has "wks-1007"')
    assert len(default) == 100 and {r["DeviceId"] for r in default} == {generated_id(HOST)}


def generated_id(host: str) -> str:
    from emulator.entities import devices

    return next(d.DeviceId for d in devices() if d.DeviceName == host)


def test_a_filter_that_matches_little_returns_what_the_scan_found():
    assert run('DeviceProcessEvents | where FileName == "no-such.exe" | take 10') == []
    # About 1 row in 480 matches: the scan of SCAN_ROWS rows finds some, and returns those.
    rare = run(f'DeviceProcessEvents | where FileName == "cmd.exe" and DeviceName == "{HOST}" | take 100 '
               "| project ReportId")
    expected = [r for r in generated("DeviceProcessEvents", SCAN_ROWS)
                if r["FileName"] == "cmd.exe" and r["DeviceName"] == HOST]
    assert rare == [{"ReportId": r["ReportId"]} for r in expected] and 0 < len(rare) < 100


def test_leading_time_filters_narrow_the_generated_window():
    got = run("DeviceProcessEvents | where Timestamp > ago(2h) | take 60 | project Timestamp")
    assert len(got) == 60  # every generated row is in the window, not 1 in 360 of them
    assert all(NOW - 2 * HOUR < ticks(r["Timestamp"]) < NOW for r in got)
    start, end = NOW - 50 * HOUR, NOW - 26 * HOUR
    between = run(f"DeviceProcessEvents | where Timestamp between (datetime({_iso(start)}) .. datetime({_iso(end)})) "
                  f'| where DeviceName has "{HOST}" | project Timestamp, DeviceName')
    assert len(between) == 100
    assert all(start <= ticks(r["Timestamp"]) <= end and r["DeviceName"] == HOST for r in between)
    # The same bounds give the same rows; an empty window gives none.
    assert between == run(f"DeviceProcessEvents | where Timestamp between (datetime({_iso(start)}) .. "
                          f'datetime({_iso(end)})) | where DeviceName has "{HOST}" | project Timestamp, DeviceName')
    assert run("DeviceProcessEvents | where Timestamp < ago(40d)") == []


def _iso(t: int) -> str:
    from emulator.tables import format_ticks

    return format_ticks(t)


def test_where_after_summarize_and_project():
    counts = run('DeviceLogonEvents | take 3000 | where ActionType == "LogonFailed" '
                 "| summarize Failures=count() by DeviceName | where Failures >= 8")
    failed = [r for r in generated("DeviceLogonEvents", 3000) if r["ActionType"] == "LogonFailed"]
    per_device: dict[str, int] = {}
    for r in failed:
        per_device[r["DeviceName"]] = per_device.get(r["DeviceName"], 0) + 1
    assert sorted((r["DeviceName"], r["Failures"]) for r in counts) == sorted(
        (d, n) for d, n in per_device.items() if n >= 8)
    renamed = run("DeviceProcessEvents | take 500 | project Host=DeviceName, Image=FileName | where Image =~ 'CMD.EXE'")
    assert renamed and all(r["Image"] == "cmd.exe" for r in renamed)


def test_join_and_lookup():
    on_alerts = ("AlertEvidence | where Timestamp > ago(1d) | where EntityType =~ 'Machine' "
                 f"| where DeviceName has '{HOST}' "
                 "| join kind=inner (AlertInfo | where Timestamp > ago(1d) | project AlertId, Category, Severity) on AlertId")
    names = columns(on_alerts)
    assert names == [n for n, _ in SCHEMAS["AlertEvidence"]] + ["AlertId1", "Category", "Severity"]
    rows = run(on_alerts + " | project-away AlertId1")
    assert rows and all(r["DeviceName"] == HOST and r["EntityType"] == "Machine" for r in rows)
    assert all(r["Severity"] in ("Informational", "Low", "Medium", "High") for r in rows)
    info = {r["AlertId"]: r for r in run("AlertInfo | where Timestamp > ago(1d) | take 10000")}
    assert all(info[r["AlertId"]]["Category"] == r["Category"] for r in rows)
    semi = run("DeviceProcessEvents | take 300 | join kind=leftanti (DeviceNetworkEvents | take 40) on DeviceId "
               "| project DeviceId")
    network = {r["DeviceId"] for r in generated("DeviceNetworkEvents", 40)}
    assert semi == [{"DeviceId": r["DeviceId"]} for r in generated("DeviceProcessEvents", 300)
                    if r["DeviceId"] not in network]
    looked = columns("DeviceProcessEvents | take 5 | lookup (DeviceNetworkEvents | take 50 | summarize n=count() "
                     "by DeviceId) on DeviceId")
    assert looked[-1] == "n" and looked.count("DeviceId") == 1


@pytest.mark.parametrize("query, message", [
    ('DeviceProcessEvents | where DeviceID == "x"', "'where' operator: Failed to resolve scalar expression named 'DeviceID'"),
    ("DeviceProcessEvents | take 5 | where nope > 3", "'where' operator: Failed to resolve scalar expression named 'nope'"),
    ('DeviceNetworkEvents | where RemotePort == "443"', "Cannot compare values of types long and string"),
    ("DeviceProcessEvents | where", "A recognition error occurred."),
    ("AlertInfo | join kind=inner AlertEvidence on Nope", "'join' operator: Failed to resolve scalar expression named 'Nope'"),
])
def test_errors_are_the_services_and_do_not_depend_on_data(query, message):
    with pytest.raises(KqlError) as caught:
        parse(query)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("predicate", [
    "AdditionalFields.Key == 1",       # member access: not modelled
    "* has 'cmd'",                      # search every column: not modelled
    "FileSize * 2 > 10",                # arithmetic on a column: not modelled
    "strcat(FileName, 'x') == 'cmd.exex'",
])
def test_unsupported_predicates_keep_every_row(predicate):
    assert len(run(f"DeviceProcessEvents | take 300 | where {predicate}")) == 300


def test_an_unsupported_and_operand_counts_as_true():
    rows = run("DeviceProcessEvents | take 2000 | where AdditionalFields.Key == 1 and FileName == 'cmd.exe'")
    assert rows == [r for r in generated("DeviceProcessEvents", 2000) if r["FileName"] == "cmd.exe"]


def test_injection_stays_inside_its_literal():
    # The classic: a value that closes the quote and adds a pipe; here it is one string literal.
    query = 'DeviceProcessEvents | where FileName == "x\\" | take 1000000 //" | take 5'
    plan = parse(query)
    assert [op for op, _ in plan.steps] == ["where", "take"] and plan.base_rows == 5
    assert run(query) == []


def test_hunting_route_filters_over_https(emu, http):
    token = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "client_id": emu.client_id, "client_secret": emu.client_secret,
        "scope": "https://graph.microsoft.com/.default", "grant_type": "client_credentials"}).json()["access_token"]
    r = http.post(f"{emu.base_url}/v1.0/security/runHuntingQuery", headers={"Authorization": f"Bearer {token}"},
                  json={"Query": 'DeviceNetworkEvents | where DeviceName has "wks-1007" and RemotePort == 443 '
                                 "| take 25 | project DeviceName, RemotePort"})
    assert r.status_code == 200
    rows = r.json()["results"]
    assert len(rows) == 25 and all(row == {"DeviceName": HOST, "RemotePort": 443} for row in rows)
    bad = http.post(f"{emu.base_url}/v1.0/security/runHuntingQuery", headers={"Authorization": f"Bearer {token}"},
                    json={"Query": 'DeviceNetworkEvents | where DeviceID == "x"'})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "'where' operator: Failed to resolve scalar expression named 'DeviceID'"


def test_verbatim_string_ending_in_a_backslash_inside_a_join():
    query = ('DeviceProcessEvents | take 300 | join kind=leftsemi (DeviceProcessEvents | take 300 '
             '| where FolderPath startswith @"C:\\Windows\\") on ReportId | order by Timestamp asc | project FolderPath')
    rows = generated("DeviceProcessEvents", 300)
    expected = sorted((r for r in rows if r["FolderPath"].lower().startswith("c:\\windows\\")),
                      key=lambda r: r["Timestamp"])
    assert run(query) == [{"FolderPath": r["FolderPath"]} for r in expected] and expected


def test_cache_keys_of_queries_counting_from_now_carry_the_minute():
    relative, fixed = parse("DeviceProcessEvents | where Timestamp > ago(1h)"), parse("DeviceProcessEvents | take 3")
    minute = time.time_ns() // 100 // (60 * 10**7)
    assert relative.cache_key[-1] in (minute, minute + 1) and len(relative.cache_key) == len(fixed.cache_key) + 1
    assert parse("let t = now(); DeviceProcessEvents | take 3").cache_key[-1] in (minute, minute + 1)
