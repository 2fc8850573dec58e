"""The KQL subset, the synthetic tables, and a full 100,000-row hunting response."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import requests

from emulator import Emulator
from emulator.hunting import parse_timespan
from emulator.kql import KqlError, execute, parse
from emulator.tables import SCHEMAS, generate, row_template

NOW = int(time.time()) * 10**7
START = NOW - 30 * 86400 * 10**7




def run(query: str) -> tuple[list[tuple[str, str]], list[dict]]:
    frame = execute(parse(query), START, NOW)
    return [(c.name, c.type) for c in frame.columns], json.loads(frame.to_json_array())


_CHECKS = {
    "DateTime": lambda v: isinstance(v, str) and len(v) == 28 and v.endswith("Z") and v[19] == ".",
    "Int64": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Int32": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31,
    "Boolean": lambda v: isinstance(v, bool),
    "SByte": lambda v: isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    "Guid": lambda v: isinstance(v, str) and len(v) == 36,
    "Object": lambda v: True,
}


@pytest.mark.parametrize("table", sorted(SCHEMAS))
def test_generated_cells_match_the_schema(table):
    schema = SCHEMAS[table]
    rows = generate(table, 300, START, NOW)
    template = row_template([name for name, _ in schema])
    for row in rows:
        assert len(row) == len(schema)
        values = json.loads(template % row)
        for name, typ in schema:
            value = values[name]
            assert value is None or _CHECKS[typ](value), (table, name, typ, value)
            for suffix, length in (("SHA256", 64), ("SHA1", 40), ("MD5", 32)):
                if value is not None and name.endswith(suffix):
                    assert len(value) == length, (table, name, value)
            if value is not None and name.endswith("FolderPath"):
                assert "\\" in value or "/" in value
        assert START <= _ticks(values["Timestamp"]) <= NOW


def _ticks(value: str) -> int:
    whole = dt.datetime.fromisoformat(value[:19]).replace(tzinfo=dt.UTC)
    return int(whole.timestamp()) * 10**7 + int(value[20:27])


def test_rows_are_deterministic_and_prefixes():
    assert generate("DeviceProcessEvents", 10, START, NOW) == generate("DeviceProcessEvents", 100, START, NOW)[:10]


def test_default_row_count_and_take():
    assert len(run("DeviceNetworkEvents")[1]) == 100
    assert len(run("DeviceNetworkEvents | where RemotePort == 443 | take 7")[1]) == 7
    assert run("DeviceNetworkEvents | take 0")[1] == []


def test_project_rename_extend_and_literals():
    schema, rows = run('let procs = DeviceProcessEvents; procs | take 2 | project Name=FileName, Device=DeviceName, '
                       'Tag="a|b", N=42, L=strlen(FileName) | extend Later=todatetime(Name)')
    assert schema == [("Name", "String"), ("Device", "String"), ("Tag", "String"), ("N", "Int64"),
                      ("L", "Int64"), ("Later", "DateTime")]
    assert rows[0]["Tag"] == "a|b" and rows[0]["N"] == 42 and rows[0]["L"] is None


def test_project_away_keep_reorder():
    schema, _ = run("DeviceLogonEvents | take 1 | project-away Initiating*, AdditionalFields "
                    "| project-rename Who=AccountName | project-reorder Who")
    names = [n for n, _ in schema]
    assert names[0] == "Who" and not any(n.startswith("Initiating") for n in names)
    assert [n for n, _ in run("AlertInfo | take 1 | project-keep Alert*")[0]] == ["AlertId"]


def test_order_top_distinct_count():
    _, rows = run("AlertInfo | take 30 | order by Timestamp asc")
    assert [r["Timestamp"] for r in rows] == sorted(r["Timestamp"] for r in rows)
    _, top = run("AlertInfo | top 5 by Timestamp")
    assert len(top) == 5 and top[0]["Timestamp"] >= top[-1]["Timestamp"]
    _, distinct = run("DeviceNetworkEvents | take 200 | distinct RemotePort")
    assert len(distinct) == len({r["RemotePort"] for r in distinct}) > 1
    assert run("DeviceFileEvents | take 12 | count") == ([("Count", "Int64")], [{"Count": 12}])


def test_summarize():
    schema, rows = run("DeviceProcessEvents | take 500 | summarize n=count(), dcount(DeviceId), avg(FileSize), "
                       "max(Timestamp), make_set(FileName) by AccountName")
    assert schema == [("AccountName", "String"), ("n", "Int64"), ("dcount_DeviceId", "Int64"),
                      ("avg_FileSize", "Double"), ("max_Timestamp", "DateTime"), ("set_FileName", "Object")]
    assert sum(r["n"] for r in rows) == 500
    assert run("DeviceProcessEvents | summarize count()") == ([("count_", "Int64")], [{"count_": 100}])
    _, days = run("DeviceProcessEvents | take 300 | summarize c=count() by bin(Timestamp, 1d)")
    assert all(r["Timestamp"].endswith("T00:00:00.0000000Z") for r in days)
    schema, latest = run("DeviceProcessEvents | take 300 | summarize arg_max(Timestamp, FileName) by DeviceId")
    assert [n for n, _ in schema] == ["DeviceId", "Timestamp", "FileName"]


@pytest.mark.parametrize("query, message", [
    ("Nope", "Failed to resolve table or column expression named 'Nope'"),
    ("deviceprocessevents | take 1", "Failed to resolve table or column expression named 'deviceprocessevents'"),
    ("DeviceProcessEvents | project Bad", "'project' operator: Failed to resolve scalar expression named 'Bad'"),
    ("DeviceProcessEvents | summarize count() by Bad",
     "'summarize' operator: Failed to resolve scalar expression named 'Bad'"),
    ("DeviceProcessEvents | take x", "'take' operator: Failed to resolve scalar expression named 'x'"),
    ("DeviceProcessEvents | where FileName == 'x", "A recognition error occurred."),
    ("DeviceProcessEvents | where (FileName == 'x'", "A recognition error occurred."),
    ("DeviceProcessEvents | take 1)", "A recognition error occurred."),
    ("DeviceProcessEvents || take 1", "A recognition error occurred."),
    ("DeviceProcessEvents | explode", "A recognition error occurred."),
    ("DeviceProcessEvents | take", "A recognition error occurred."),
    ("| take 1", "A recognition error occurred."),
    ("DeviceProcessEvents | limit 100001", "Query execution has exceeded the allowed result size. Optimize "
                                           "your query by limiting the number of results and try again"),
])
def test_errors(query, message):
    with pytest.raises(KqlError) as caught:
        parse(query)
    assert str(caught.value) == message


def test_timespan_forms():
    now = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    day = dt.timedelta(days=1)
    assert parse_timespan("P30D", now) == (now - 30 * day, now)
    assert parse_timespan("PT12H", now) == (now - day / 2, now)
    start, end = dt.datetime(2024, 2, 1, 8, tzinfo=dt.UTC), dt.datetime(2024, 2, 15, 8, tzinfo=dt.UTC)
    assert parse_timespan("2024-02-01T08:00:00Z/2024-02-15T08:00:00Z", now) == (start, end)
    assert parse_timespan("P14D/2024-02-15T08:00:00Z", now) == (start, end)
    assert parse_timespan("2024-02-01T08:00:00Z/P14D", now) == (start, end)
    assert parse_timespan("2024-02-01T08:00:00Z", now) == (start, now)
    for bad in ("", "P", "PT", "30D", "P1D/P2D", "2024-02-15T08:00:00Z/2024-02-01T08:00:00Z", "yesterday"):
        assert parse_timespan(bad, now) is None, bad


def test_100k_rows_then_100001_fails(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with Emulator(port=0) as emu, requests.Session() as http:
        http.verify = emu.ca_bundle
        tok = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
            "client_id": emu.client_id, "client_secret": emu.client_secret,
            "scope": "https://api.security.microsoft.com/.default", "grant_type": "client_credentials"}).json()
        headers = {"Authorization": f"Bearer {tok['access_token']}"}
        url = f"{emu.base_url}/api/advancedhunting/run"
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            r = http.post(url, json={"Query": "DeviceProcessEvents | take 100000"}, headers=headers, stream=True)
            body = r.raw.read()  # one read of Content-Length bytes; r.content would add 10 KB-chunk overhead
            timings.append(time.perf_counter() - started)
            assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == len(body) > 150_000_000
        assert body.count(b'{"Timestamp":') == 100_000
        assert body.startswith(b'{"Stats":') and body.endswith(b"}]}")
        head = json.loads(body[: body.index(b',"Results":')] + b"}")
        assert len(head["Schema"]) == len(SCHEMAS["DeviceProcessEvents"])
        assert head["Stats"]["dataset_statistics"][0]["table_row_count"] == 100_000
        first = json.loads(body[body.index(b'"Results":[') + 11: body.index(b'},{"Timestamp"') + 1])
        assert list(first) == [c["Name"] for c in head["Schema"]]
        assert timings[1] < timings[0]  # the second one comes from the cache
        too_many = http.post(url, json={"Query": "DeviceProcessEvents | take 100001"}, headers=headers)
        assert too_many.status_code == 400
        assert too_many.json()["error"]["message"].startswith("Query execution has exceeded the allowed result size")
        print(f"100k rows, {len(body) / 1e6:.0f} MB: first {timings[0]:.1f}s, cached {timings[1]:.1f}s")
