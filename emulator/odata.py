"""OData query options as the Defender APIs accept them: ``$filter``, ``$top``, ``$skip``, ``$count``, ``$expand``.

``$filter`` supports ``eq ne gt ge lt le``, ``and``, ``or``, ``not``, parentheses and ``startswith(prop,'x')``,
with quoted string literals (``'it''s'``), unquoted datetimes (``2024-05-01T00:00:00Z``, ``2024-05-01Z``),
numbers, ``true``/``false`` and ``null`` (defender-api.md §3.0). Each collection declares which properties
may be filtered and of what type; anything else is an :class:`ODataError` (400 in the family's envelope).

A filter compiles once into a predicate over the collection's items; the handlers cache its result per
store version, so paging through 10,000 alerts filters them once, not once per page.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

TICKS_PER_SECOND = 10_000_000


class ODataError(ValueError):
    """A query option the service would refuse with 400 (the message says what and why)."""


# ---------------------------------------------------------------- datetimes

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7})\d*)?)?)?(Z|[+-]\d{2}:\d{2})?",
    re.IGNORECASE)


@functools.lru_cache(maxsize=65536)
def parse_datetime(text: str) -> int | None:
    """An ISO 8601 datetime -> 100-ns ticks since the Unix epoch (UTC), or None if it is not one."""
    m = _DATETIME.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        seconds = calendar.timegm((int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                                   int(second or 0), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour or 0) < 24 and int(minute or 0) < 60
            and int(second or 0) < 60):
        return None
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * TICKS_PER_SECOND + int((fraction or "0").ljust(7, "0"))


# ---------------------------------------------------------------- declared properties


@dataclass(frozen=True)
class Field:
    """A filterable property: its type and how to read it from an item.

    ``kind`` is ``string``, ``enum`` (compared case-insensitively; ``values`` lists the members),
    ``datetime`` (the getter returns ticks, or an ISO string), ``int`` or ``bool``.
    """

    kind: str
    get: Callable[[Any], Any]
    values: frozenset[str] = frozenset()

    @staticmethod
    def of(kind: str, key: str, values: Iterable[str] = ()) -> Field:
        """A field read from a dict item by ``key``."""
        return Field(kind, lambda item: item.get(key), frozenset(v.lower() for v in values))

    @staticmethod
    def by(kind: str, get: Callable[[Any], Any], values: Iterable[str] = ()) -> Field:
        """A field read by a function (for items that are objects)."""
        return Field(kind, get, frozenset(v.lower() for v in values))


# ---------------------------------------------------------------- $filter

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:\d{2})?(?![\w.:-]))
    | (?P<number>-?\d+(?:\.\d+)?(?![\w-]))
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][\w./]*)
    | (?P<bad>\S)
    )""", re.VERBOSE)

_OPERATORS = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
_FUNCTIONS = {
    "startswith": lambda a, b: isinstance(a, str) and a.lower().startswith(b.lower()),
    "endswith": lambda a, b: isinstance(a, str) and a.lower().endswith(b.lower()),
    "contains": lambda a, b: isinstance(a, str) and b.lower() in a.lower(),
}
_EDM = {"string": "Edm.String", "enum": "Edm.Enum", "datetime": "Edm.DateTimeOffset", "int": "Edm.Int64",
        "bool": "Edm.Boolean", "null": "null"}

Predicate = Callable[[Any], bool]


@dataclass
class _Token:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Token]:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind is None:  # trailing whitespace
            continue
        if kind == "bad":
            raise ODataError(f"Syntax error at position {m.start(kind)} in '{text}'.")
        out.append(_Token(kind, m.group(kind), m.start(kind)))
    return out


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, Field]) -> None:
        self.text = text
        self.fields = {name.lower(): (name, f) for name, f in fields.items()}
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise ODataError(f"Syntax error: unexpected end of the filter '{self.text}'.")
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() == word:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise ODataError(f"Syntax error: '{text}' expected at position {token.pos} in '{self.text}'.")

    def parse(self) -> Predicate:
        if not self.tokens:
            raise ODataError("The $filter expression is empty.")
        predicate = self.disjunction()
        token = self.peek()
        if token is not None:
            raise ODataError(f"Syntax error at position {token.pos} in '{self.text}'.")
        return predicate

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda item: any(p(item) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda item: all(p(item) for p in parts))

    def unary(self) -> Predicate:
        if self.keyword("not"):
            inner = self.unary()
            return lambda item: not inner(item)
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return inner
        if token is not None and token.kind == "word" and token.text.lower() in _FUNCTIONS:
            return self.function()
        return self.comparison()

    def prop(self) -> tuple[str, Field]:
        token = self.take()
        if token.kind != "word":
            raise ODataError(f"Syntax error: a property name was expected at position {token.pos} in '{self.text}'.")
        found = self.fields.get(token.text.lower())
        if found is None:
            supported = ", ".join(sorted(name for name, _ in self.fields.values()))
            raise ODataError(f"Could not find a property named '{token.text}' that supports $filter. "
                             f"Supported properties: {supported}.")
        return found

    def literal(self) -> tuple[str, Any]:
        token = self.take()
        if token.kind == "string":
            return "string", token.text[1:-1].replace("''", "'")
        if token.kind == "datetime":
            value = parse_datetime(token.text)
            if value is None:
                raise ODataError(f"The value '{token.text}' is not a valid DateTimeOffset.")
            return "datetime", value
        if token.kind == "number":
            return "int", float(token.text) if "." in token.text else int(token.text)
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            return "bool", token.text.lower() == "true"
        if token.kind == "word" and token.text.lower() == "null":
            return "null", None
        raise ODataError(f"Syntax error: a literal was expected at position {token.pos} in '{self.text}'.")

    def comparison(self) -> Predicate:
        name, fld = self.prop()
        op_token = self.take()
        op = _OPERATORS.get(op_token.text.lower()) if op_token.kind == "word" else None
        if op is None:
            raise ODataError(f"Syntax error: an operator (eq, ne, gt, ge, lt, le) was expected at position "
                             f"{op_token.pos} in '{self.text}'.")
        kind, value = self.literal()
        value = self.coerce(name, fld, kind, value, op_token.text.lower())
        getter = _getter(fld)
        return lambda item: op(getter(item), value)

    def coerce(self, name: str, fld: Field, kind: str, value: Any, op: str) -> Any:
        if kind == "null":
            if op not in ("eq", "ne"):
                raise ODataError(f"The operator '{op}' cannot compare '{name}' with null.")
            return None
        compatible = {"string": ("string",), "enum": ("string",), "datetime": ("datetime",), "int": ("int",),
                      "bool": ("bool",)}[fld.kind]
        if kind not in compatible:
            raise ODataError(
                f"A binary operator with incompatible types was detected. Found operand types "
                f"'{_EDM[fld.kind]}' and '{_EDM[kind]}' for operator kind '{op}' on property '{name}'.")
        if fld.kind == "enum":
            if fld.values and value.lower() not in fld.values:
                raise ODataError(f"The string '{value}' is not a valid enumeration type constant for '{name}'.")
            return value.lower()
        return value

    def function(self) -> Predicate:
        func = _FUNCTIONS[self.take().text.lower()]
        self.expect("(")
        name, fld = self.prop()
        if fld.kind not in ("string", "enum"):
            raise ODataError(f"The function takes a string property; '{name}' is {_EDM[fld.kind]}.")
        self.expect(",")
        kind, value = self.literal()
        if kind != "string":
            raise ODataError(f"The function takes a string literal, not {_EDM[kind]}.")
        self.expect(")")
        getter = _getter(fld)
        return lambda item: func(getter(item), value)


def _getter(fld: Field) -> Callable[[Any], Any]:
    """Reads the property in a form comparable with its parsed literal."""
    get = fld.get
    if fld.kind == "datetime":
        def ticks(item: Any) -> int | None:
            value = get(item)
            return parse_datetime(value) if isinstance(value, str) else value
        return ticks
    if fld.kind == "enum":
        def lowered(item: Any) -> str | None:
            value = get(item)
            return value.lower() if isinstance(value, str) else value
        return lowered
    return get


def compile_filter(text: str, fields: Mapping[str, Field]) -> Predicate:
    """A predicate for ``$filter=text`` over items with ``fields``; raises :class:`ODataError`."""
    return _Parser(text, fields).parse()


# ---------------------------------------------------------------- query options


@dataclass(frozen=True)
class Query:
    """The parsed query options of one list request."""

    filter: str | None = None
    top: int | None = None
    skip: int = 0
    count: bool = False
    expand: frozenset[str] = field(default_factory=frozenset)


def _non_negative(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ODataError(f"Invalid value '{text}' for {name}: a whole number is required.") from None
    if value < minimum:
        raise ODataError(f"Invalid value '{text}' for {name}: it must be at least {minimum}.")
    return value


def parse_query(query: Mapping[str, str], *, max_top: int | None = None, expandable: Iterable[str] = (),
                count: bool = False) -> Query:
    """Validate ``$filter/$top/$skip/$count/$expand``; raises :class:`ODataError` for what the service refuses."""
    options = {k.lower(): v for k, v in query.items()}
    top = None
    if "$top" in options:
        top = _non_negative("$top", options["$top"], 1)
        if max_top is not None and top > max_top:
            raise ODataError(f"Invalid value '{top}' for $top: the maximum is {max_top}.")
    skip = _non_negative("$skip", options["$skip"], 0) if "$skip" in options else 0
    want_count = False
    if "$count" in options:
        if not count:
            raise ODataError("The query option $count is not supported on this resource.")
        if options["$count"].lower() not in ("true", "false"):
            raise ODataError(f"Invalid value '{options['$count']}' for $count: true or false.")
        want_count = options["$count"].lower() == "true"
    allowed = {e.lower(): e for e in expandable}
    expand = set()
    for part in filter(None, (p.strip() for p in options.get("$expand", "").split(","))):
        if part.lower() not in allowed:
            supported = ", ".join(sorted(allowed.values())) or "none"
            raise ODataError(f"Could not find a navigation property named '{part}' to $expand. Supported: {supported}.")
        expand.add(allowed[part.lower()])
    text = options.get("$filter")
    return Query(text if text and text.strip() else None, top, skip, want_count, frozenset(expand))


def next_link(base: str, path: str, query: Mapping[str, str], skip: int) -> str:
    """The absolute URL of the next page: the same request with ``$skip`` moved on."""
    params = {k: v for k, v in query.items() if k.lower() != "$skip"}
    params["$skip"] = str(skip)
    # Keep "$", "'", "(", ")", ":" and "," readable, as Microsoft's own links do.
    encoded = urlencode(params, quote_via=quote, safe="$'(),:")
    return f"{base}{quote(path, safe='/()=,:$')}?{encoded}"
