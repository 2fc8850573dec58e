"""connector.frames.hunting_frame: hunting response bodies to typed DataFrames."""

from __future__ import annotations

import calendar
import json
import logging
import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from connector import frames
from connector.errors import QueryError, ServiceError
from connector.frames import hunting_frame

from .conftest import SAMPLES

_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")


def ns(text: str | None) -> int | None:
    """Nanoseconds since the epoch of an ISO 8601 UTC string, parsed without pandas or Arrow."""
    if text is None:
        return None
    m = _TIME.fullmatch(text)
    assert m, text
    seconds = calendar.timegm(tuple(int(g) for g in m.groups()[:6]) + (0, 0, 0))
    return seconds * 10**9 + int((m.group(7) or "").ljust(9, "0"))


def frame_ns(series: pd.Series) -> list[int | None]:
    assert str(series.dtype) == "datetime64[ns, UTC]"
    return [None if pd.isna(v) else v.value for v in series]


def body_of(columns: list[tuple[str, str]], rows: list[dict], **extra: Any) -> bytes:
    doc = {"schema": [{"name": n, "type": t} for n, t in columns], "results": rows, **extra}
    return json.dumps(doc).encode()


def strictly_equal(a: Any, b: Any) -> bool:
    """== that also insists on the same types all the way down (1 vs 1.0 vs True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


# ------------------------------------------------------------------------------------------
# The published samples
# ------------------------------------------------------------------------------------------

def _hunting_samples() -> list[Path]:
    found = []
    for path in sorted(SAMPLES.glob("*.json")):
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            continue
        if isinstance(doc, dict) and {"schema", "results"} <= {k.lower() for k in doc}:
            found.append(path)
    return found


HUNTING_SAMPLES = _hunting_samples()


def test_all_five_hunting_samples_are_found():
    names = {p.name for p in HUNTING_SAMPLES}
    assert {
        "graph-runHuntingQuery-response.json",
        "graph-runHuntingQuery-response-pascalcase-schema.json",
        "graph-runHuntingQuery-timespan-response.json",
        "mde-advancedqueries-run-response.json",
        "m365d-advancedhunting-run-response.json",
    } <= names


@pytest.mark.parametrize("path", HUNTING_SAMPLES, ids=lambda p: p.name)
def test_sample_parses_with_schema_columns_and_exact_timestamps(path: Path):
    doc = json.loads(path.read_bytes())
    top = {k.lower(): v for k, v in doc.items()}
    schema = [{k.lower(): v for k, v in item.items()} for item in top["schema"]]
    rows = top["results"]

    df, stats = hunting_frame(path.read_bytes())

    assert list(df.columns) == [c["name"] for c in schema]
    assert len(df) == len(rows)
    for column in schema:
        name = column["name"]
        if column["type"] == "DateTime":
            assert str(df[name].dtype) == "datetime64[ns, UTC]"
            assert df[name].dt.tz is not None
            assert frame_ns(df[name]) == [ns(r.get(name)) for r in rows]
        elif column["type"] == "String":
            assert df[name].dtype == frames.STRING_DTYPE
            assert list(df[name]) == [r.get(name) for r in rows]
    if "stats" in top:
        assert stats == top["stats"]
    else:
        assert stats is None


def test_graph_sample_keeps_the_seventh_fractional_digit():
    df, stats = hunting_frame((SAMPLES / "graph-runHuntingQuery-response.json").read_bytes())
    assert stats is None
    first = df["Timestamp"].iloc[0]
    assert first == pd.Timestamp("2024-03-26T09:39:50.7688641Z")
    assert first.value % 1000 == 100  # ...50.768864100: the 100 ns digit survived
    assert df["FileName"].tolist() == ["cmd.exe", "cmd.exe"]


def test_xdr_sample_returns_stats_as_a_dict():
    _, stats = hunting_frame((SAMPLES / "m365d-advancedhunting-run-response.json").read_bytes())
    assert isinstance(stats, dict)
    assert stats["ExecutionTime"] == 4.621215
    assert stats["resource_usage"]["cpu"]["total cpu"] == "00:00:19.0625000"
    assert stats["dataset_statistics"] == [{"table_row_count": 2, "table_size": 102}]


def test_pascalcase_schema_inside_lowercase_envelope():
    df, _ = hunting_frame((SAMPLES / "graph-runHuntingQuery-response-pascalcase-schema.json").read_bytes())
    assert list(df.columns) == ["Timestamp", "FileName", "InitiatingProcessFileName"]
    assert str(df["Timestamp"].dtype) == "datetime64[ns, UTC]"


# ------------------------------------------------------------------------------------------
# Envelopes and types
# ------------------------------------------------------------------------------------------

ALL_TYPES = [
    ("When", "DateTime"),
    ("I32", "Int32"),
    ("I64", "Int64"),
    ("L", "Long"),
    ("SB", "SByte"),
    ("B", "Boolean"),
    ("D", "Double"),
    ("R", "Real"),
    ("Dec", "Decimal"),
    ("S", "String"),
    ("G", "Guid"),
    ("TS", "TimeSpan"),
    ("Dyn", "Dynamic"),
    ("Obj", "Object"),
    ("What", "Hyperloglog"),
]

# pandas 3 spells the string dtype "str"; pandas 2.2 "string" (storage pyarrow_numpy): the same array type.
STR = str(frames.STRING_DTYPE)

EXPECTED_DTYPES = {
    "When": "datetime64[ns, UTC]",
    "I32": "Int32",
    "I64": "Int64",
    "L": "Int64",
    "SB": "boolean",
    "B": "boolean",
    "D": "float64",
    "R": "float64",
    "Dec": "float64",
    "S": STR,
    "G": STR,
    "TS": STR,
    "Dyn": "object",
    "Obj": "object",
    "What": "object",
}

TYPED_ROWS = [
    {"When": "2024-03-26T09:39:50.7688641Z", "I32": -2147483648, "I64": 9223372036854775807,
     "L": -9223372036854775808, "SB": 1, "B": True, "D": 0.1, "R": -0.0, "Dec": 3, "S": "cmd.exe",
     "G": "10cbf918-2d4e-9566-0362-f65cfa67c773", "TS": "00:00:19.0468750", "Dyn": {"a": [1, "x"]},
     "Obj": "[1,2]", "What": [1, 2], "Extra": "ignored"},
    {"When": None, "I32": None, "I64": None, "L": None, "SB": None, "B": None, "D": None, "R": None,
     "Dec": None, "S": None, "G": None, "TS": None, "Dyn": None, "Obj": None, "What": None},
    {},  # every key missing: all null
    {"When": "2024-03-26T09:39:50Z", "I32": 2147483647, "I64": 0, "L": 1, "SB": 0, "B": False,
     "D": 1e-300, "R": 1.7976931348623157e308, "Dec": 5e-324, "S": "", "G": "", "TS": "1.00:00:00",
     "Dyn": 12, "Obj": 1.5, "What": "plain"},
    {"When": "2024-03-26T09:39:50.12Z", "SB": True, "S": "jörg \"q\" \\ \n\t é 😀 \u2028",
     "Dyn": "a string", "Obj": [], "What": {"k": None}},
]


def test_each_schema_type_gets_its_dtype_and_nulls():
    df, stats = hunting_frame(body_of(ALL_TYPES, TYPED_ROWS))
    assert stats is None
    assert list(df.columns) == [n for n, _ in ALL_TYPES]
    assert {c: str(t) for c, t in df.dtypes.items()} == EXPECTED_DTYPES
    assert df["S"].dtype == frames.STRING_DTYPE
    assert frame_ns(df["When"]) == [
        ns("2024-03-26T09:39:50.7688641Z"), None, None, ns("2024-03-26T09:39:50Z"),
        ns("2024-03-26T09:39:50.12Z"),
    ]
    assert df["I32"].tolist() == [-2147483648, pd.NA, pd.NA, 2147483647, pd.NA]
    assert df["I64"].tolist() == [9223372036854775807, pd.NA, pd.NA, 0, pd.NA]
    assert df["L"].tolist() == [-9223372036854775808, pd.NA, pd.NA, 1, pd.NA]
    assert df["SB"].tolist() == [True, pd.NA, pd.NA, False, True]
    assert df["B"].tolist() == [True, pd.NA, pd.NA, False, pd.NA]
    d = df["D"].tolist()
    assert d[0] == 0.1 and math.isnan(d[1]) and math.isnan(d[2]) and d[3] == 1e-300
    assert math.copysign(1, df["R"].iloc[0]) == -1.0 and df["R"].iloc[3] == 1.7976931348623157e308
    assert df["Dec"].iloc[0] == 3.0 and df["Dec"].iloc[3] == 5e-324
    assert df["S"].iloc[0] == "cmd.exe" and pd.isna(df["S"].iloc[1]) and df["S"].iloc[3] == ""
    assert df["S"].iloc[4] == "jörg \"q\" \\ \n\t é 😀 \u2028"
    assert df["TS"].tolist()[0] == "00:00:19.0468750"
    for name in ("Dyn", "Obj", "What"):
        sent = [r.get(name) for r in TYPED_ROWS]
        assert all(strictly_equal(a, b) for a, b in zip(df[name].tolist(), sent, strict=True)), name


def test_dynamic_values_equal_json_loads_row_by_row():
    values = [
        {"ProcessStartKey": 18446744073709551615, "Nested": {"x": [1, 2.5, None, True, "é"]}},
        [1, "two", {"three": 3}, [], {}],
        "{\"json\": \"as a string stays a string\"}",
        42,
        -1.25e-7,
        123456789012345678901234567890,
        True,
        None,
        "",
        {"": "empty key", "dup": 2},
        [[1, 2], [3, 4]],  # equal-length lists must stay one element, not become a 2-D array
    ]
    rows = [{"AdditionalFields": v} for v in values]
    body = body_of([("AdditionalFields", "Dynamic")], rows)
    df, _ = hunting_frame(body)
    expected = [r.get("AdditionalFields") for r in json.loads(body)["results"]]
    got = df["AdditionalFields"].tolist()
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert strictly_equal(a, b), (i, a, b)


def test_dynamic_values_msgspec_refuses_still_match_json_loads():
    # A lone surrogate and an out-of-range float: msgspec refuses both, json.loads accepts them.
    body = (b'{"schema":[{"name":"Dyn","type":"Dynamic"},{"name":"N","type":"Int64"}],'
            b'"results":[{"Dyn":"\\ud800 lone","N":1},{"Dyn":1e400,"N":2},{"Dyn":{"a":1},"N":3}]}')
    df, _ = hunting_frame(body)
    expected = [r["Dyn"] for r in json.loads(body)["results"]]
    assert df["Dyn"].tolist()[0] == expected[0]
    assert df["Dyn"].tolist()[1] == math.inf
    assert df["Dyn"].tolist()[2] == {"a": 1}
    assert df["N"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "envelope",
    [
        lambda s, r: {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#x", "schema": s, "results": r},
        lambda s, r: {"Schema": [{"Name": c["name"], "Type": c["type"]} for c in s], "Results": r},
        lambda s, r: {"Stats": {"ExecutionTime": 1.5}, "Schema": s, "Results": r},
        lambda s, r: {"RESULTS": r, "sChEmA": [{"NAME": c["name"], "tYpE": c["type"]} for c in s]},
    ],
    ids=["graph", "mde", "xdr", "odd-case"],
)
def test_envelopes_and_key_case(envelope):
    schema = [{"name": "Timestamp", "type": "DateTime"}, {"name": "N", "type": "Int64"}]
    rows = [{"Timestamp": "2020-02-05T01:10:26.2648757Z", "N": 5}]
    df, stats = hunting_frame(json.dumps(envelope(schema, rows)).encode())
    assert list(df.columns) == ["Timestamp", "N"]
    assert frame_ns(df["Timestamp"]) == [ns("2020-02-05T01:10:26.2648757Z")]
    assert df["N"].tolist() == [5]
    assert stats == ({"ExecutionTime": 1.5} if "Stats" in envelope(schema, rows) else None)


def test_type_names_are_case_insensitive_and_system_prefixed_ones_work():
    columns = [("A", "datetime"), ("B", "System.Int64"), ("C", "BOOLEAN"), ("D", "string")]
    df, _ = hunting_frame(body_of(columns, [{"A": "2024-01-01T00:00:00Z", "B": 1, "C": True, "D": "x"}]))
    assert [str(t) for t in df.dtypes] == ["datetime64[ns, UTC]", "Int64", "boolean", STR]


def test_empty_results_keep_columns_and_dtypes():
    df, _ = hunting_frame(body_of(ALL_TYPES, []))
    assert len(df) == 0
    assert list(df.columns) == [n for n, _ in ALL_TYPES]
    expected = dict(EXPECTED_DTYPES)
    expected["SB"] = "boolean"
    assert {c: str(t) for c, t in df.dtypes.items()} == expected
    non_empty, _ = hunting_frame(body_of(ALL_TYPES, TYPED_ROWS))
    assert df.dtypes.equals(non_empty.dtypes)


def test_empty_schema_and_results():
    df, _ = hunting_frame(b'{"schema": [], "results": []}')
    assert df.shape == (0, 0)


def test_pretty_printed_and_crlf_bodies(monkeypatch):
    monkeypatch.setattr(frames, "_CHUNK_BYTES", 512)  # many chunks, so rows span chunk edges
    rows = [{"When": f"2024-03-26T09:39:{i % 60:02d}.{i:07d}Z", "I64": i, "Dyn": {"i": [i]}} for i in range(200)]
    columns = [("When", "DateTime"), ("I64", "Int64"), ("Dyn", "Dynamic")]
    doc = {"schema": [{"name": n, "type": t} for n, t in columns], "results": rows}
    for text in (json.dumps(doc, indent=4), json.dumps(doc, indent="\t").replace("\n", "\r\n")):
        df, _ = hunting_frame(text.encode())
        assert df["I64"].tolist() == list(range(200))
        assert frame_ns(df["When"]) == [ns(r["When"]) for r in rows]
        assert df["Dyn"].tolist() == [{"i": [i]} for i in range(200)]


def test_str_and_bytes_like_bodies_are_accepted():
    body = body_of([("S", "String")], [{"S": "é"}])
    for variant in (body, bytearray(body), memoryview(body), body.decode()):
        df, _ = hunting_frame(variant)
        assert df["S"].tolist() == ["é"]


# ------------------------------------------------------------------------------------------
# Values Arrow refuses: the column is read value by value instead
# ------------------------------------------------------------------------------------------

def test_boolean_sent_as_numbers_and_strings():
    rows = [{"B": 1, "N": 1}, {"B": 0, "N": 2}, {"B": None, "N": 3}, {"B": "true", "N": 4}, {"B": True, "N": 5}]
    df, _ = hunting_frame(body_of([("B", "Boolean"), ("N", "Int64")], rows))
    assert str(df["B"].dtype) == "boolean"
    assert df["B"].tolist() == [True, False, pd.NA, True, True]
    assert df["N"].tolist() == [1, 2, 3, 4, 5]


def test_numbers_sent_as_strings():
    rows = [{"I": "12", "D": "NaN", "E": "Infinity"}, {"I": -3, "D": "1.5", "E": 2}, {"I": None, "D": None, "E": None}]
    df, _ = hunting_frame(body_of([("I", "Int64"), ("D", "Double"), ("E", "Real")], rows))
    assert df["I"].tolist() == [12, -3, pd.NA]
    assert math.isnan(df["D"].iloc[0]) and df["D"].iloc[1] == 1.5 and math.isnan(df["D"].iloc[2])
    assert df["E"].iloc[0] == math.inf and df["E"].iloc[1] == 2.0


def test_int32_that_does_not_fit_becomes_int64():
    df, _ = hunting_frame(body_of([("I", "Int32")], [{"I": 1}, {"I": 2**40}, {"I": None}]))
    assert str(df["I"].dtype) == "Int64"
    assert df["I"].tolist() == [1, 2**40, pd.NA]


def test_sbyte_that_is_not_a_bool_becomes_an_integer():
    df, _ = hunting_frame(body_of([("S", "SByte")], [{"S": 5}, {"S": -7}, {"S": None}]))
    assert str(df["S"].dtype) == "Int8"
    assert df["S"].tolist() == [5, -7, pd.NA]


def test_string_column_with_non_string_values_gets_their_json_text():
    rows = [{"S": 5}, {"S": True}, {"S": {"a": 1}}, {"S": "x"}, {"S": None}]
    df, _ = hunting_frame(body_of([("S", "String")], rows))
    assert df["S"].dtype == frames.STRING_DTYPE
    assert df["S"].tolist()[:4] == ["5", "true", '{"a":1}', "x"]
    assert pd.isna(df["S"].iloc[4])


@pytest.mark.parametrize("far", ["1601-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z",
                                 "1677-09-21T00:12:43.145224192Z"])
def test_datetime_outside_the_nanosecond_range_costs_no_other_row_its_precision(far, caplog):
    # AD-derived columns use the FILETIME epoch (1601-01-01) for "never".
    rows = [{"T": far, "N": 1}, {"T": "2024-03-26T09:39:50.7688641Z", "N": 2}, {"T": None, "N": 3},
            {"T": "1678-01-01T00:00:00.0000001Z", "N": 4}]
    with caplog.at_level(logging.WARNING, logger="connector.frames"):
        df, _ = hunting_frame(body_of([("T", "DateTime"), ("N", "Int64")], rows))
    assert str(df["T"].dtype) == "datetime64[ns, UTC]"
    assert frame_ns(df["T"]) == [None, ns("2024-03-26T09:39:50.7688641Z"), None, ns("1678-01-01T00:00:00.0000001Z")]
    assert df.attrs[frames.OUT_OF_RANGE] == [{"column": "T", "row": 0, "value": far}]
    assert df["N"].tolist() == [1, 2, 3, 4]
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "'T'" in caplog.text and far[:19] in caplog.text


def test_in_range_datetimes_leave_no_out_of_range_note():
    df, _ = hunting_frame(body_of([("T", "DateTime")], [{"T": "2262-04-11T23:47:16.854775807Z"}, {"T": None}]))
    assert frames.OUT_OF_RANGE not in df.attrs and frame_ns(df["T"])[0] == pd.Timestamp.max.value


def test_a_datetime_column_with_text_that_is_no_date_is_kept_as_sent():
    rows = [{"T": "1601-01-01T00:00:00Z"}, {"T": "never"}]
    df, _ = hunting_frame(body_of([("T", "DateTime")], rows))
    assert df["T"].dtype == object and df["T"].tolist() == ["1601-01-01T00:00:00Z", "never"]
    assert frames.OUT_OF_RANGE not in df.attrs


def test_string_dtype_is_arrow_backed_with_nan_for_missing_on_every_supported_pandas():
    dtype = frames.STRING_DTYPE
    assert dtype.storage in ("pyarrow", "pyarrow_numpy") and dtype.na_value is np.nan
    if int(pd.__version__.split(".")[0]) >= 3:
        assert dtype == "str"


def test_duplicate_key_in_a_row_takes_the_last_like_json_loads():
    body = b'{"schema":[{"name":"N","type":"Int64"}],"results":[{"N":1,"N":2},{"N":3}]}'
    df, _ = hunting_frame(body)
    assert df["N"].tolist() == [2, 3]


def test_lone_surrogate_in_a_string_column():
    body = b'{"schema":[{"name":"S","type":"String"}],"results":[{"S":"a\\ud800b"},{"S":"ok"}]}'
    df, _ = hunting_frame(body)
    assert df["S"].tolist() == ["a\ud800b", "ok"]  # kept as sent (Arrow strings cannot hold it)


def test_unfit_values_leave_the_column_as_sent_and_log(caplog):
    rows = [{"I": "twelve"}, {"I": 3}]
    with caplog.at_level(logging.WARNING, logger="connector.frames"):
        df, _ = hunting_frame(body_of([("I", "Int64")], rows))
    assert df["I"].dtype == object
    assert df["I"].tolist() == ["twelve", 3]
    assert "'I'" in caplog.text


# ------------------------------------------------------------------------------------------
# Bodies that are not hunting responses
# ------------------------------------------------------------------------------------------

GOOD = body_of([("T", "DateTime"), ("S", "String")], [{"T": "2024-01-01T00:00:00Z", "S": "x"}] * 3)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", ["empty"]),
        (b"   \n", ["empty"]),
        (GOOD[: len(GOOD) // 2], ["not valid JSON", "truncated", f"byte {len(GOOD) // 2}"]),
        (b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", ["HTML", "502 Bad Gateway"]),
        (b'{"schema": [}', ["not valid JSON"]),
        (b"[1, 2, 3]", ["an array", "not an object"]),
        (b'"just a string"', ["a string", "not an object"]),
        (b"42", ["a number"]),
        (b"null", ["null"]),
        (b'{"results": []}', ["no 'schema'"]),
        (b'{"schema": []}', ["no 'results'"]),
        (b'{"Foo": 1}', ["no 'schema' or 'results'", "'Foo'"]),
        (b'{"schema": [], "results": {"a": 1}}', ["'results'", "an object", "not an array"]),
        (b'{"schema": [], "results": null}', ["'results'", "null"]),
        (b'{"schema": {"name": "x"}, "results": []}', ["'schema'", "not a list"]),
        (b'{"schema": [{"type": "String"}], "results": []}', ["Column 0", "no name"]),
        (b'{"schema": [{"name": "a"}, {"name": "a"}], "results": []}', ["'a' twice"]),
        (b'{"schema": [{"name": "a", "type": "String"}], "results": [{"a": "x"}, null]}', ["Row 1", "null", "not an object"]),
        (b'{"schema": [{"name": "a", "type": "Dynamic"}], "results": [{"a": 1}, [2]]}', ["Row 1", "an array"]),
        (b'{"schema": [{"name": "a", "type": "String"}], "results": [{"a": "\xff"}]}', ["UTF-8"]),
        (b'{"error": {"code": "BadRequest", "message": "A recognition error occurred."}}',
         ["error", "BadRequest", "A recognition error occurred."]),
    ],
    ids=lambda v: v[:30].decode("latin-1") if isinstance(v, bytes) else None,
)
def test_unreadable_bodies_raise_service_error_saying_why(body: bytes, words: list[str]):
    with pytest.raises(ServiceError) as info:
        hunting_frame(body)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


def test_error_messages_quote_only_a_short_excerpt():
    big = body_of([("S", "String")], [{"S": "x" * 100}] * 10_000)
    for broken in (big[:-5], b"<html>" + b"A" * 1_000_000, big[:500_000] + b"?" + big[500_000:]):
        with pytest.raises(ServiceError) as info:
            hunting_frame(broken)
        assert len(str(info.value)) < 400, str(info.value)


# ------------------------------------------------------------------------------------------
# A large synthetic body against a slow, obviously-correct reference
# ------------------------------------------------------------------------------------------

SYNTH_COLUMNS = [
    ("Timestamp", "DateTime"),
    ("DeviceId", "String"),
    ("ProcessId", "Int64"),
    ("Session", "Int32"),
    ("Elevated", "Boolean"),
    ("Score", "Double"),
    ("Ratio", "Real"),
    ("CommandLine", "String"),
    ("ReportGuid", "Guid"),
    ("Duration", "TimeSpan"),
    ("AdditionalFields", "Dynamic"),
    ("Remote", "SByte"),
    ("Extra Field-Name", "Object"),
    ("Created", "DateTime"),
    ("Account", "String"),
]

_WORDS = ["cmd.exe", "powershell.exe", "jörg", "Ünïcödé", "日本語", "😀", 'q"uote', "back\\slash",
          "tab\there", "new\nline", "\u2028", "\x01", "", "</script>", "é"]


def _random_value(rng: random.Random, kind: str, name: str) -> Any:
    if rng.random() < 0.08:
        return None
    if kind == "DateTime":
        seconds = rng.randrange(1_600_000_000, 1_750_000_000)
        digits = rng.choice([0, 1, 3, 6, 7, 7, 7])
        base = pd.Timestamp(seconds, unit="s").strftime("%Y-%m-%dT%H:%M:%S")
        return base + ("." + "".join(rng.choice("0123456789") for _ in range(digits)) if digits else "") + "Z"
    if kind == "Int64":
        return rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randrange(-(2**40), 2**40)])
    if kind == "Int32":
        return rng.randrange(-(2**31), 2**31)
    if kind in ("Boolean",):
        return rng.random() < 0.5
    if kind == "SByte":
        return rng.choice([0, 1])
    if kind in ("Double", "Real"):
        return rng.choice([0.1, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, rng.random() * 1e6, 3, -7])
    if kind in ("String", "Guid", "TimeSpan"):
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(0, 6)))
    # Dynamic / Object
    return rng.choice([
        {"Key": rng.randrange(2**62), "Words": [rng.choice(_WORDS)], "Nested": {"f": rng.random(), "b": True}},
        [1, "two", None, 3.5, {"x": []}],
        json.dumps({"as": "text"}),
        rng.randrange(10**20),
        rng.random(),
        rng.choice(_WORDS),
        [],
        {},
    ])


def synthetic_body(rows: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    results = []
    for _ in range(rows):
        row = {}
        for name, kind in SYNTH_COLUMNS:
            if rng.random() < 0.03:
                continue  # key missing
            row[name] = _random_value(rng, kind, name)
        if rng.random() < 0.1:
            row["NotInSchema"] = {"ignored": True}
        results.append(row)
    head = {"Stats": {"ExecutionTime": 0.5}, "Schema": [{"Name": n, "Type": t} for n, t in SYNTH_COLUMNS]}
    # Mix escaped and raw UTF-8 rows, as different serializers would.
    parts = [json.dumps(r, ensure_ascii=bool(i % 2)) for i, r in enumerate(results)]
    return (json.dumps(head)[:-1] + ', "Results": [' + ",".join(parts) + "]}").encode()


def reference_frame(body: bytes) -> pd.DataFrame:
    """json.loads and one column at a time, straight from the type table in the design."""
    doc = json.loads(body)
    top = {k.lower(): v for k, v in doc.items()}
    rows = top["results"]
    out = {}
    for item in top["schema"]:
        item = {k.lower(): v for k, v in item.items()}
        name, kind = item["name"], item["type"]
        values = [r.get(name) for r in rows]
        if kind == "DateTime":
            ints = np.array([np.iinfo(np.int64).min if v is None else ns(v) for v in values], dtype=np.int64)
            out[name] = pd.Series(ints.view("datetime64[ns]")).dt.tz_localize("UTC")
        elif kind == "Int64":
            out[name] = pd.Series(pd.array(values, dtype="Int64"))
        elif kind == "Int32":
            out[name] = pd.Series(pd.array(values, dtype="Int32"))
        elif kind in ("Boolean", "SByte"):
            out[name] = pd.Series(pd.array([None if v is None else bool(v) for v in values], dtype="boolean"))
        elif kind in ("Double", "Real"):
            out[name] = pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
        elif kind in ("String", "Guid", "TimeSpan"):
            out[name] = pd.Series(values, dtype=frames.STRING_DTYPE)
        else:
            column = np.empty(len(values), dtype=object)
            for i, v in enumerate(values):
                column[i] = v
            out[name] = pd.Series(column, dtype=object)
    return pd.DataFrame(out)


@pytest.mark.parametrize("chunk_bytes", [None, 64 * 1024], ids=["default-chunks", "small-chunks-threaded"])
def test_large_synthetic_body_matches_the_slow_reference(monkeypatch, chunk_bytes):
    if chunk_bytes:
        # Many chunks, read by the pool and the caller together: the path 100k-row answers take.
        monkeypatch.setattr(frames, "_CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr(frames, "_MAX_WORKERS", 3)
    body = synthetic_body(5_000)
    df, stats = hunting_frame(body)
    expected = reference_frame(body)

    assert stats == {"ExecutionTime": 0.5}
    assert list(df.columns) == list(expected.columns)
    assert df.dtypes.astype(str).tolist() == expected.dtypes.astype(str).tolist()
    dynamic = ["AdditionalFields", "Extra Field-Name"]
    pd.testing.assert_frame_equal(df.drop(columns=dynamic), expected.drop(columns=dynamic), check_exact=True)
    for name in dynamic:
        for i, (a, b) in enumerate(zip(df[name].tolist(), expected[name].tolist(), strict=True)):
            assert strictly_equal(a, b), (name, i, a, b)
    # The 100 ns digit, independently of pandas' and Arrow's parsers:
    sent = [r.get("Timestamp") for r in json.loads(body)["Results"]]
    assert frame_ns(df["Timestamp"]) == [ns(v) for v in sent]


def _threaded(monkeypatch) -> None:
    monkeypatch.setattr(frames, "_CHUNK_BYTES", 16 * 1024)
    monkeypatch.setattr(frames, "_MAX_WORKERS", 3)


def test_refusal_in_a_late_chunk_on_the_threaded_path(monkeypatch):
    _threaded(monkeypatch)
    rows = [{"B": i % 2 == 0, "N": i, "S": f"row {i}"} for i in range(5_000)]
    rows[4_321]["B"] = 1  # one Boolean sent as a number, far from the first chunk
    df, _ = hunting_frame(body_of([("B", "Boolean"), ("N", "Int64"), ("S", "String")], rows))
    assert str(df["B"].dtype) == "boolean"
    assert df["B"].tolist() == [True if i == 4_321 else i % 2 == 0 for i in range(5_000)]
    assert df["N"].tolist() == list(range(5_000))
    assert df["S"].iloc[4_999] == "row 4999"


def test_bad_row_on_the_threaded_path_raises_and_stops(monkeypatch):
    _threaded(monkeypatch)
    rows: list[Any] = [{"D": {"i": i}, "N": i} for i in range(5_000)]
    rows[3_000] = None
    with pytest.raises(ServiceError, match="Row 3000 .* null"):
        hunting_frame(body_of([("D", "Dynamic"), ("N", "Int64")], rows))
    rows[3_000] = {"D": 1, "N": 1}
    rows[4_000] = [1]
    with pytest.raises(ServiceError, match="Row 4000 .* an array"):
        hunting_frame(body_of([("N", "Int64")], rows))


def test_a_row_larger_than_a_chunk(monkeypatch):
    _threaded(monkeypatch)
    big = "x" * 200_000
    rows = [{"S": "a", "D": [1]}, {"S": big, "D": {"big": big}}, {"S": "c", "D": None}] * 100
    df, _ = hunting_frame(body_of([("S", "String"), ("D", "Dynamic")], rows))
    assert df["S"].tolist() == [r["S"] for r in rows]
    assert df["D"].tolist() == [r["D"] for r in rows]


def test_unusual_column_names():
    names = ["Ärger", "a b", "x.y", "p/q", 'q"uote', "back\\slash", "tilde~0", "emoji😀", "", "class", "1st"]
    columns = [(n, "String") for n in names] + [(f"dyn {n}", "Dynamic") for n in names]
    row = {n: f"v-{n}" for n in names} | {f"dyn {n}": {"k": n} for n in names}
    for ascii_only in (True, False):
        body = json.dumps({"schema": [{"name": n, "type": t} for n, t in columns], "results": [row, {}]},
                          ensure_ascii=ascii_only).encode()
        df, _ = hunting_frame(body)
        assert list(df.columns) == [n for n, _ in columns]
        assert df.iloc[0].tolist() == [row[n] for n, _ in columns]
        assert df.iloc[1, : len(names)].isna().all() and df.iloc[1, len(names):].isna().all()


def test_datetimes_without_zone_date_only_or_empty():
    rows = [{"T": "2024-03-26T09:39:50.7688641"}, {"T": "2024-03-26"}, {"T": ""}, {"T": None},
            {"T": "2024-03-26T10:39:50.7688641+01:00"}]
    df, _ = hunting_frame(body_of([("T", "DateTime"), ("U", "DateTime")], rows))
    assert str(df["T"].dtype) == "datetime64[ns, UTC]"
    assert frame_ns(df["T"]) == [ns("2024-03-26T09:39:50.7688641Z"), ns("2024-03-26T00:00:00Z"), None, None,
                                 ns("2024-03-26T09:39:50.7688641Z")]
    assert str(df["U"].dtype) == "datetime64[ns, UTC]" and df["U"].isna().all()


def test_called_while_another_exception_is_being_handled(monkeypatch):
    _threaded(monkeypatch)
    body = body_of([("D", "Dynamic"), ("N", "Int64")], [{"D": [i], "N": i} for i in range(3_000)])
    try:
        raise KeyError("unrelated")
    except KeyError:
        df, _ = hunting_frame(body)
    assert df["N"].tolist() == list(range(3_000))


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_value_nested_too_deep_is_a_clear_query_error(depth):
    deep = "[" * depth + "]" * depth
    body = b'{"schema":[{"name":"D","type":"Dynamic"}],"results":[{"D":' + deep.encode() + b"}]}"
    with pytest.raises(QueryError, match="nested more than .* levels deep, too deep to read"):
        hunting_frame(body)


def test_a_value_nested_900_deep_is_kept():
    deep = "[" * 900 + "]" * 900
    df, _ = hunting_frame(b'{"schema":[{"name":"D","type":"Dynamic"}],"results":[{"D":' + deep.encode() + b"}]}")
    value, depth = df["D"].iloc[0], 1
    while value:
        value, depth = value[0], depth + 1
    assert depth == 900


def test_a_huge_value_that_fits_no_type_is_logged_briefly(caplog):
    with caplog.at_level(logging.WARNING, logger="connector.frames"):
        df, _ = hunting_frame(body_of([("N", "Int64")], [{"N": ["x" * 100_000]}]))
    assert df["N"].dtype == object and len(caplog.text) < 1_000
