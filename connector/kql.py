"""KQL literals: every value the connector puts into a query goes through here, never into the text raw.

Each function takes a Python value and returns KQL source text that the service parses as exactly
one literal of that value, whatever the value contains:

- :func:`string`: ``"..."`` with ``\\\\`` and ``\\"`` escaped, ``\\n``/``\\r``/``\\t`` for those controls and
  ``\\uXXXX`` for every other control or line-separator character, so a value can neither end the
  literal nor start a new line of query; ``@"..."`` (verbatim, ``"`` doubled) when that reads better
  (Windows paths); ``h"..."`` (obfuscated: kept out of the service's query logs) on request;
- :func:`datetime_literal`: ``datetime(2024-05-01T08:00:00.0000000Z)``, always UTC;
- :func:`timespan_literal`: ``7d``, ``12h``, ``90s``, ``1500ms``, ``10tick``;
- :func:`long_literal`, :func:`real_literal`, :func:`bool_literal`;
- :func:`list_literal`: ``("a", "b")`` (the form ``in``, ``has_any`` and ``has_all`` take), or
  ``(dynamic([]))`` for an empty list, which those operators also accept;
- :func:`identifier`: a table or column name, validated (``[A-Za-z_][A-Za-z0-9_]*``), never quoted.

Bad values raise :class:`~connector.errors.ConfigurationError` with a message a person can act on.
Relative times (``-3d``, ``-12h``, ``-3d@d``, ``now``) are parsed by :func:`parse_datetime`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .errors import ConfigurationError

MAX_STRING_LENGTH = 100_000
"""Longest string value rendered (characters). The services cap a whole query well below megabytes."""

_INT64 = (-(2**63), 2**63 - 1)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIMPLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters a string literal may not hold raw: C0 and C1 controls, DEL, and the Unicode line and
# paragraph separators (some editors and log viewers break lines on them).
_NEEDS_ESCAPE = re.compile("[\\\\\"\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _SIMPLE_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def string(value: str, *, obfuscate: bool = False, verbatim: bool | None = None, name: str = "value") -> str:
    """``value`` as one KQL string literal.

    ``verbatim`` None picks ``@"..."`` for values with backslashes and no quotes or control characters
    (easier to read: ``@"C:\\Windows\\System32"``), else ``"..."``; True or False forces a form (True is refused for
    values with control characters, which only the escaped form can carry). ``obfuscate`` adds the
    ``h`` prefix. ``name`` is the parameter's name, for error messages.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, not {type(value).__name__}.")
    if len(value) > MAX_STRING_LENGTH:
        raise ConfigurationError(
            f"{name} is {len(value):,} characters long; the limit is {MAX_STRING_LENGTH:,}. Narrow the value."
        )
    if _SURROGATE.search(value):
        raise ConfigurationError(f"{name} is not valid Unicode (it holds a lone surrogate code point).")
    has_control = bool(_CONTROL.search(value))
    if verbatim is None:
        verbatim = "\\" in value and '"' not in value and not has_control
    if verbatim and has_control:
        raise ConfigurationError(f"{name} holds control characters, which a verbatim string cannot carry.")
    prefix = "h" if obfuscate else ""
    if verbatim:
        return f'{prefix}@"' + value.replace('"', '""') + '"'
    return f'{prefix}"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'


def long_literal(value: Any, *, name: str = "value") -> str:
    """An integer (or a string of digits) as a KQL ``long`` literal, range-checked."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigurationError(f"{name} must be an integer, not {value!r}.")
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?\d{1,19}", value.strip()):
            raise ConfigurationError(f"{name} must be an integer, not {_short(value)}.")
        value = int(value.strip())
    if not _INT64[0] <= value <= _INT64[1]:
        raise ConfigurationError(f"{name} is out of the 64-bit range: {value}.")
    return str(value)


def real_literal(value: Any, *, name: str = "value") -> str:
    """A finite number as a KQL ``real`` literal (``real(...)`` so it never reads as an integer)."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a number, not {value!r}.")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigurationError(f"{name} must be a number, not {_short(value)}.") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, not {value!r}.")
    return f"real({float(value)!r})"


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def bool_literal(value: Any, *, name: str = "value") -> str:
    """``true`` or ``false`` (from a bool, or from true/false/yes/no/1/0 as text)."""
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        value = value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be true or false, not {value!r}.")
    return "true" if value else "false"


def datetime_literal(value: Any, *, name: str = "value", now: datetime | None = None) -> str:
    """A point in time as ``datetime(YYYY-MM-DDTHH:MM:SS.fffffffZ)`` in UTC (see :func:`parse_datetime`)."""
    when = parse_datetime(value, name=name, now=now)
    fraction = f"{when.microsecond:06d}" + str(getattr(when, "nanosecond", 0) // 100)
    return (f"datetime({when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
            f"{when.second:02d}.{fraction}Z)")


_TICKS = {"d": 864_000_000_000, "h": 36_000_000_000, "m": 600_000_000, "s": 10_000_000, "ms": 10_000, "tick": 1}


def timespan_literal(value: Any, *, name: str = "value") -> str:
    """A duration as a KQL timespan literal in its largest whole unit (``7d``, ``90m``, ``1500ms``)."""
    span = parse_timespan(value, name=name)
    ticks = (span.days * 86_400 + span.seconds) * 10_000_000 + span.microseconds * 10
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    for unit, size in _TICKS.items():
        if ticks % size == 0:
            return f"{sign}{ticks // size}{unit}"
    raise AssertionError("unreachable: every duration is a whole number of ticks")


def identifier(value: Any, *, name: str = "value") -> str:
    """A table or column name, checked to be a plain KQL identifier (it cannot be a literal)."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ConfigurationError(
            f"{name} must be a table or column name (letters, digits and _, not starting with a digit), "
            f"not {_short(value)}."
        )
    return value


def list_literal(values: Iterable[Any], render=string, *, name: str = "value") -> str:
    """``(lit, lit, ...)`` of the items rendered by ``render`` (:func:`string` by default);
    ``(dynamic([]))`` when empty, since ``in ()`` is not valid KQL."""
    items = [render(v, name=f"{name}[{i}]") for i, v in enumerate(values)]
    return "(" + ", ".join(items) + ")" if items else "(dynamic([]))"


def literal(value: Any, *, name: str = "value") -> str:
    """Any supported Python value as a KQL literal, chosen by its type."""
    if isinstance(value, bool):
        return bool_literal(value, name=name)
    if isinstance(value, int):
        return long_literal(value, name=name)
    if isinstance(value, float):
        return real_literal(value, name=name)
    if isinstance(value, (datetime, date)):
        return datetime_literal(value, name=name)
    if isinstance(value, timedelta):
        return timespan_literal(value, name=name)
    if isinstance(value, str):
        return string(value, name=name)
    if isinstance(value, (list, tuple, set, frozenset)):
        return list_literal(sorted(value) if isinstance(value, (set, frozenset)) else value, literal, name=name)
    raise ConfigurationError(f"{name}: cannot render a {type(value).__name__} as a KQL literal.")


# ---------------------------------------------------------------- reading KQL source

_FENCES = ("```", "~~~")


def split_code(text: str, *, name: str = "query") -> list[tuple[str, str]]:
    """KQL source as ``("code" | "string" | "comment", text)`` segments, in order.

    Strings are every literal form (``"..."``, ``'...'``, ``@"..."``, ``h"..."``, multi-line fences);
    a string segment keeps its prefix and quotes. An unterminated string raises ConfigurationError.
    """
    out: list[tuple[str, str]] = []
    code_start = i = 0
    n = len(text)

    def flush(upto: int) -> None:
        if upto > code_start:
            out.append(("code", text[code_start:upto]))

    while i < n:
        ch = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            flush(i)
            out.append(("comment", text[i:end]))
            code_start = i = end
            continue
        start = i
        j = i
        if ch in "hH" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) and i + 1 < n and (
                text[i + 1] in "\"'@" or text.startswith(_FENCES, i + 1)):
            j += 1
        verbatim = j < n and text[j] == "@" and j + 1 < n and text[j + 1] in "\"'"
        if verbatim:
            j += 1
        if text.startswith(_FENCES, j):
            end = text.find(text[j:j + 3], j + 3)
            if end < 0:
                raise ConfigurationError(f"{name}: a multi-line string ({text[j:j + 3]}) is not closed.")
            flush(start)
            out.append(("string", text[start:end + 3]))
            code_start = i = end + 3
            continue
        if j < n and text[j] in "\"'" and (j > start or ch in "\"'"):
            quote, k = text[j], j + 1
            while k < n:
                if text[k] == quote:
                    if verbatim and text.startswith(quote, k + 1):
                        k += 2
                        continue
                    break
                if text[k] in "\r\n":
                    k = n
                    break
                k += 2 if text[k] == "\\" and not verbatim else 1
            if k >= n:
                raise ConfigurationError(f"{name}: a string literal is not closed on its line.")
            flush(start)
            out.append(("string", text[start:k + 1]))
            code_start = i = k + 1
            continue
        i += 1
    flush(n)
    return out


def check_fragment(text: str, *, name: str = "value") -> str:
    """Raw KQL to append to a query (``| take 100``): it must start with ``|``, close every string
    and bracket it opens, and hold one statement. Returns it stripped."""
    if not isinstance(text, str):
        raise ConfigurationError(f"{name} must be KQL text such as '| take 100', not {type(text).__name__}.")
    text = text.strip()
    if not text:
        return ""
    if not text.startswith("|"):
        raise ConfigurationError(f"{name} is appended to the query, so it must start with '|' "
                                 f"(e.g. '| take 100'), not {_short(text)}.")
    depth: list[str] = []
    pairs = {"(": ")", "[": "]", "{": "}"}
    for kind, segment in split_code(text, name=name):
        if kind != "code":
            continue
        for ch in segment:
            if ch in pairs:
                depth.append(pairs[ch])
            elif ch in ")]}":
                if not depth or depth.pop() != ch:
                    raise ConfigurationError(f"{name} closes a bracket it did not open: {_short(text)}.")
            elif ch == ";":
                raise ConfigurationError(f"{name} must be one pipeline, without ';': {_short(text)}.")
    if depth:
        raise ConfigurationError(f"{name} leaves a bracket open: {_short(text)}.")
    return text


# ---------------------------------------------------------------- times

_RELATIVE = re.compile(
    r"(?P<sign>[+-])\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>w|weeks?|d|days?|h|hours?|m|min|minutes?|s|sec|seconds?)"
    r"(?:@(?P<round>[wdhms]))?")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def _unit(word: str) -> str:
    if word.startswith("min") or word == "m":
        return "m"
    return word[0]


def parse_datetime(value: Any, *, name: str = "value", now: datetime | None = None) -> datetime:
    """A UTC datetime from what people type for a query window.

    Accepts a ``datetime`` (naive means UTC), a ``date`` (its midnight UTC), a pandas ``Timestamp``,
    an ISO 8601 string (``2024-05-01``, ``2024-05-01T08:00:00Z``, ``...+02:00``), ``now``, a relative
    offset from now (``-3d``, ``-12h``, ``-30m``, ``-1w``, ``+1h``; ``@d``/``@h``... rounds down to the
    unit, as MSTICPy's ``-3d@d``), a ``timedelta`` (added to now) or a number of days from now
    (MSTICPy's convention: ``-3`` is three days ago).
    """
    current = now or datetime.now(UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, timedelta):
        return current + value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigurationError(f"{name} must be a time, not {value!r}.")
        return current + timedelta(days=value)
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a datetime, an ISO 8601 string or an offset like '-3d', "
                                 f"not {type(value).__name__}.")
    text = value.strip()
    if text.lower() == "now":
        return current
    m = _RELATIVE.fullmatch(text.lower())
    if m:
        seconds = float(m.group("n")) * _UNIT_SECONDS[_unit(m.group("unit"))]
        when = current + timedelta(seconds=seconds if m.group("sign") == "+" else -seconds)
        return _round_down(when, m.group("round")) if m.group("round") else when
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ConfigurationError(
            f"{name} is not a time: {_short(value)}. Use a datetime, an ISO 8601 string "
            "('2024-05-01T08:00:00Z') or an offset from now ('-3d', '-12h', '-3d@d', 'now')."
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _round_down(when: datetime, unit: str) -> datetime:
    if unit == "w":
        day = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday())
    keep = {"d": 3, "h": 4, "m": 5, "s": 6}[unit]
    parts = [when.year, when.month, when.day, when.hour, when.minute, when.second][:keep]
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


_SPAN = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>w|weeks?|d|days?|h|hours?|m|min|minutes?|s|sec|seconds?|ms)")


def parse_timespan(value: Any, *, name: str = "value") -> timedelta:
    """A duration from a ``timedelta`` or text like ``7d``, ``12h``, ``30m``, ``45s``, ``250ms``, ``1w``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        negative = text.startswith("-")
        m = _SPAN.fullmatch(text.lstrip("+-").strip())
        if m:
            number = float(m.group("n"))
            unit = m.group("unit")
            span = timedelta(milliseconds=number) if unit == "ms" else timedelta(
                seconds=number * _UNIT_SECONDS[_unit(unit)])
            return -span if negative else span
    raise ConfigurationError(f"{name} must be a duration such as '7d', '12h', '30m' or a timedelta, "
                             f"not {_short(value)}.")


def _short(value: Any) -> str:
    """A value for an error message: quoted, and cut short (a 100 KB value does not belong in a log)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = [
    "MAX_STRING_LENGTH",
    "bool_literal",
    "check_fragment",
    "datetime_literal",
    "identifier",
    "list_literal",
    "literal",
    "long_literal",
    "parse_datetime",
    "parse_timespan",
    "real_literal",
    "split_code",
    "string",
    "timespan_literal",
]
