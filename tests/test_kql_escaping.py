"""Every value the connector renders stays one KQL literal, whatever it holds.

Three independent readers check it: a decoder written here from Kusto's grammar (KqlTokens.g4,
STRINGLITERAL), the emulator's own KQL tokenizer and parser, and the emulator's hunting route over
HTTPS (an injected ``| take 1000000`` would come back as rows or as a 400).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest

from connector import ConfigurationError, connect, kql
from connector.library import QueryLibrary
from emulator.kql import parse as emulator_parse
from emulator.predicates import tokenize

INJECTIONS = [
    'x" | take 1000000 //',
    "x' | take 1000000 //",
    "'",
    '"',
    "\\",
    '\\"',
    'a\\" | take 1000000 //',
    "C:\\x\\\" | take 1000000 //",
    "line1\nline2 | take 1000000",
    "\r\n| take 1000000",
    "tab\there",
    "\u0000",
    "nul\u0000in the middle",
    "\x1b[31mred\x7f\x85",
    "\u2028| take 1000000\u2029",
    '@"verbatim"',
    'h"obfuscated"',
    "```| take 1000000```",
    "~~~ | take 1000000 ~~~",
    "{start}",
    "{{host_name}}",
    "; DeviceProcessEvents | take 1000000",
    "// comment",
    "*/ /*",
    "$left.DeviceId",
    "ünïcödé 王芳 😀",
    "C:\\Users\\Public\\upd.exe",
    "\\\\fs01\\ADMIN$\\",
    "x" * 60_000 + '" | take 1000000 //' + "\\" * 1000 + "'" * 1000,
]

_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v"}
_QUOTED = re.compile(r'h?"((?:\\(?:[\'"\\abfnrtv]|u[0-9a-fA-F]{4})|[^\\"\r\n])*)"', re.S)
_VERBATIM = re.compile(r'h?@"((?:""|[^"\r\n])*)"', re.S)


def decode(literal: str) -> str:
    """A KQL string literal's value, per Kusto's grammar; fails on anything that is not exactly one literal."""
    m = _VERBATIM.fullmatch(literal)
    if m:
        return m.group(1).replace('""', '"')
    m = _QUOTED.fullmatch(literal)
    assert m, f"not one KQL string literal: {literal[:80]!r}"
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)",
                  lambda e: chr(int(e.group(1)[1:], 16)) if len(e.group(1)) == 5 else _ESCAPES[e.group(1)],
                  m.group(1))


@pytest.mark.parametrize("value", INJECTIONS, ids=[repr(v[:24]) for v in INJECTIONS])
def test_string_literal_round_trips(value):
    literal = kql.string(value)
    assert decode(literal) == value
    # No raw control or line-separator character: nothing can end the line, or the literal, early.
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", literal)
    # The emulator's tokenizer (written separately) reads exactly one string token with that value.
    (token,) = tokenize(literal)
    assert (token.kind, token.value) == ("str", value)
    obfuscated = kql.string(value, obfuscate=True)
    assert obfuscated == "h" + literal and decode(obfuscated) == value
    forced = kql.string(value, verbatim=False)
    assert forced.startswith('"') and decode(forced) == value


def test_forms_chosen():
    assert kql.string("cmd.exe") == '"cmd.exe"'
    assert kql.string("C:\\Windows\\System32") == '@"C:\\Windows\\System32"'  # readable paths
    assert kql.string('C:\\a "b"') == '"C:\\\\a \\"b\\""'  # a quote: the escaped form
    assert kql.string("a\nb") == '"a\\nb"'
    assert kql.string("\u0000") == '"\\u0000"'
    assert kql.string("x", verbatim=True) == '@"x"'
    with pytest.raises(ConfigurationError, match="control characters"):
        kql.string("a\nb", verbatim=True)


@pytest.mark.parametrize("bad, message", [
    ("x" * (kql.MAX_STRING_LENGTH + 1), "limit is 100,000"),
    ("lone \ud800 surrogate", "not valid Unicode"),
    (42, "must be a string"),
    (None, "must be a string"),
])
def test_bad_strings_are_refused(bad, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        kql.string(bad, name="host_name")
    assert "host_name" in str(caught.value)
    assert len(str(caught.value)) < 300  # a huge value is not echoed back


def test_other_literals():
    when = datetime(2024, 5, 1, 8, 30, 15, 123456, tzinfo=UTC)
    assert kql.datetime_literal(when) == "datetime(2024-05-01T08:30:15.1234560Z)"
    assert kql.datetime_literal(datetime(2024, 5, 1, 10, 30, 15, tzinfo=timezone(timedelta(hours=2)))) == \
        "datetime(2024-05-01T08:30:15.0000000Z)"
    assert kql.datetime_literal(datetime(2024, 5, 1)) == "datetime(2024-05-01T00:00:00.0000000Z)"  # naive is UTC
    assert kql.datetime_literal(date(2024, 5, 1)) == "datetime(2024-05-01T00:00:00.0000000Z)"
    assert kql.datetime_literal("2024-05-01T08:00:00+02:00") == "datetime(2024-05-01T06:00:00.0000000Z)"
    assert kql.datetime_literal(pd.Timestamp("2024-05-01T08:00:00.1234567Z")) == "datetime(2024-05-01T08:00:00.1234567Z)"
    now = datetime(2024, 5, 10, 13, 45, 30, tzinfo=UTC)
    assert kql.parse_datetime("-3d", now=now) == now - timedelta(days=3)
    assert kql.parse_datetime("-12h", now=now) == now - timedelta(hours=12)
    assert kql.parse_datetime("-3d@d", now=now) == datetime(2024, 5, 7, tzinfo=UTC)
    assert kql.parse_datetime("+1h", now=now) == now + timedelta(hours=1)
    assert kql.parse_datetime("now", now=now) == now
    assert kql.parse_datetime(-2, now=now) == now - timedelta(days=2)  # MSTICPy: a number of days
    assert kql.timespan_literal("7d") == "7d" and kql.timespan_literal(timedelta(minutes=90)) == "90m"
    assert kql.timespan_literal("1500ms") == "1500ms" and kql.timespan_literal(timedelta(microseconds=3)) == "30tick"
    assert kql.long_literal(443) == "443" and kql.long_literal(" 443 ") == "443" and kql.long_literal(-5) == "-5"
    assert kql.real_literal(0.5) == "real(0.5)"
    assert kql.bool_literal("yes") == "true" and kql.bool_literal(False) == "false"
    assert kql.identifier("DeviceProcessEvents") == "DeviceProcessEvents"
    assert kql.list_literal(["a", 'b"c']) == '("a", "b\\"c")'
    assert kql.list_literal([]) == "(dynamic([]))"
    assert kql.list_literal([445, 3389], kql.long_literal) == "(445, 3389)"
    assert kql.literal(["x", 1, True]) == '("x", 1, true)'


@pytest.mark.parametrize("render, bad", [
    (kql.datetime_literal, "2024-05-01) | take 1000000 //"),
    (kql.datetime_literal, "yesterday"),
    (kql.datetime_literal, float("nan")),
    (kql.long_literal, "443 or 1 == 1"),
    (kql.long_literal, True),
    (kql.long_literal, 2**63),
    (kql.long_literal, 1.5),
    (kql.real_literal, float("inf")),
    (kql.real_literal, "1; take 5"),
    (kql.bool_literal, "maybe"),
    (kql.timespan_literal, "7d | take 5"),
    (kql.identifier, "DeviceProcessEvents | take 1000000"),
    (kql.identifier, "['DeviceProcessEvents']"),
    (kql.identifier, "1table"),
    (kql.literal, object()),
])
def test_values_that_are_not_of_their_kind_are_refused(render, bad):
    with pytest.raises(ConfigurationError):
        render(bad)


def test_kql_fragments_are_checked():
    assert kql.check_fragment("  | take 100 ") == "| take 100"
    assert kql.check_fragment("") == ""
    assert kql.check_fragment('| where FileName == "a;b)"') == '| where FileName == "a;b)"'
    for bad, message in (("take 100", "must start with '|'"), ('| where x == "open', "not closed"),
                         ("| take 1)", "did not open"), ("| where (x", "open"), ("| take 1; Alert", "one pipeline")):
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            kql.check_fragment(bad, name="add_query_items")


def test_split_code_knows_every_literal_form():
    text = 'T | where a == "x\\"|y" and b has @"C:\\""z" // {c}\n| where h\'s\' == ```m\n``` and d == {e}'
    kinds = kql.split_code(text)
    assert "".join(t for _, t in kinds) == text
    assert [t for k, t in kinds if k == "string"] == ['"x\\"|y"', '@"C:\\""z"', "h's'", "```m\n```"]
    assert [t for k, t in kinds if k == "comment"] == ["// {c}"]


# ---------------------------------------------------------------- through a whole query


@pytest.mark.parametrize("value", INJECTIONS, ids=[repr(v[:24]) for v in INJECTIONS])
def test_injection_in_a_library_query_parses_as_one_literal(value):
    lib = QueryLibrary()
    text = lib.M365D.list_host_processes.render(host_name=value, start="2024-05-01", end="2024-05-02")
    plan = emulator_parse(text)
    assert plan.table == "DeviceProcessEvents"
    assert [op for op, _ in plan.steps] == ["where", "where"]  # no take, no second statement
    tokens = tokenize(plan.steps[1][1])
    assert [(t.kind, t.value) for t in tokens] == [("ident", "DeviceName"), ("ident", "has"), ("str", value)]
    listed = lib.M365D.process_cmd_line.render(cmd_line=[value, "b"], start="2024-05-01", end="2024-05-02")
    (_, predicate) = emulator_parse(listed).steps[1]
    assert [t.value for t in tokenize(predicate) if t.kind == "str"] == [value, "b"]


def test_injections_run_against_the_emulator_as_literals(emu, emu_kwargs):
    with connect(**emu_kwargs) as client:
        lib = QueryLibrary(client)
        for value in INJECTIONS:
            df = lib.M365D.list_host_processes(host_name=value, start="-1d", add_query_items="| take 5")
            assert len(df) == 0, value[:40]  # a literal no device name has: no rows, no error, no 1,000,000
            sent = json.loads(emu.requests[-1].body)["Query"]
            assert [op for op, _ in emulator_parse(sent).steps] == ["where", "where", "take"]
        hits = lib.M365D.list_host_processes(host_name="wks-1007", add_query_items="| take 5")
        assert len(hits) == 5 and set(hits["DeviceName"]) == {"wks-1007.contoso.local"}
