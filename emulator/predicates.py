"""KQL ``where`` predicates: a tokenizer, a parser and a compiler to per-row tests over encoded cells.

Supported, on any column of the frame (and on literals and scalar ``let`` names):

- comparisons ``==  !=  <>  <  <=  >  >=``, ``=~  !~``;
- string operators ``has  contains  startswith  endswith  hasprefix  hassuffix`` with their ``!`` and
  ``_cs`` forms, and ``matches regex``;
- ``in  !in  in~  !in~  has_any  has_all`` over ``(literal, ...)``, ``(dynamic([...]))`` or a ``let`` list;
- ``between (a .. b)`` and ``!between`` (``b`` may be a timespan after a datetime ``a``);
- ``and``, ``or``, ``not(...)``, parentheses;
- literals: strings (``"..."``, ``'...'``, verbatim ``@"..."``, obfuscated ``h"..."``, ```` ``` ```` multi-line),
  numbers, ``true``/``false``, timespans (``1d``, ``12h``, ``30m``, ``time(...)``), ``datetime(...)``,
  ``dynamic([...])``, typed ``long(...)``/``int(...)``/``real(...)``/``bool(...)``/``guid(...)``;
- functions ``ago now todatetime totimespan tostring tolower toupper strlen isempty isnotempty isnull
  isnotnull startofday endofday strcat not``.

Semantics follow Kusto: ``has`` matches whole terms (maximal runs of letters and digits), string operators
are case-insensitive unless ``_cs``, ``==`` is case-sensitive, a null string is the empty string, and a
comparison with a null number or datetime is false.

What the emulator does not model is never an error, and never removes rows: a ``where`` that does not
parse as the subset above keeps every row; inside a predicate that parses, an ``and`` operand the
emulator cannot evaluate (a member access such as ``AdditionalFields.Key``, an unknown function, a
subquery) counts as true, and anything else containing one keeps every row. A name that is neither a
column nor a ``let`` fails with the service's "Failed to resolve scalar expression" error, and comparing
a column with a literal of another kind (``RemotePort == "443"``) fails as the service does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .frames import Column, Frame
from .kqlsyntax import KqlError, unresolved
from .tables import NULL, Row, format_ticks

TICK = 1
SECOND = 10_000_000
DAY = 86_400 * SECOND

_UNITS = {
    **dict.fromkeys(("d", "day", "days"), DAY),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600 * SECOND),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60 * SECOND),
    **dict.fromkeys(("s", "sec", "second", "seconds"), SECOND),
    **dict.fromkeys(("ms", "milli", "millis", "millisec", "millisecond", "milliseconds"), SECOND // 1000),
    **dict.fromkeys(("micro", "micros", "microsec", "microsecond", "microseconds"), 10),
    **dict.fromkeys(("tick", "ticks"), TICK),
}
_NANO_UNITS = ("nano", "nanos", "nanosec", "nanosecond", "nanoseconds")
_TIMESPAN = re.compile(
    r"(\d+(?:\.\d+)?)(" + "|".join(sorted([*_UNITS, *_NANO_UNITS], key=len, reverse=True)) + r")(?![A-Za-z0-9_])")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|\d+\.(?!\.)\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*")
_BRACKETED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")
_SYMBOLS = ("==", "!=", "<>", "<=", ">=", "=~", "!~", "..", "<", ">", "(", ")", ",", "[", "]", "{", "}", ".",
            "+", "-", "*", "/", "%", ":", "=")
_LITERAL_CALLS = {"datetime", "time", "timespan", "long", "int", "int64", "real", "double", "bool", "boolean",
                  "guid", "uuid", "uniqueid"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v", "0": "\0"}
_STRING_OPS = {"has", "has_cs", "hasprefix", "hasprefix_cs", "hassuffix", "hassuffix_cs", "contains", "contains_cs",
               "containscs", "startswith", "startswith_cs", "endswith", "endswith_cs"}
_LIST_OPS = {"in", "in~", "!in", "!in~", "has_any", "has_all"}
_COMPARE_OPS = {"==", "!=", "<>", "<", "<=", ">", ">=", "=~", "!~"}


class Unsupported(Exception):
    """Valid KQL, perhaps, but outside the emulator's subset: the caller keeps the rows."""


# ---------------------------------------------------------------- tokens

@dataclass(frozen=True)
class Tok:
    """A token: ``kind`` is str, num, span, lit (a typed literal call), ident, word (an operator word) or sym."""

    kind: str
    value: Any
    text: str = ""


def _read_string(text: str, i: int) -> tuple[str, int]:
    """The value of the string literal starting at ``text[i]`` (after any ``h``/``@`` prefix), and its end."""
    verbatim = text[i] == "@"
    if verbatim:
        i += 1
    if text.startswith("```", i) or text.startswith("~~~", i):
        fence = text[i:i + 3]
        end = text.find(fence, i + 3)
        if end < 0:
            raise Unsupported("unterminated multi-line string")
        return text[i + 3:end], end + 3
    quote = text[i]
    out: list[str] = []
    j, n = i + 1, len(text)
    while j < n:
        ch = text[j]
        if ch == quote:
            if verbatim and text.startswith(quote, j + 1):  # "" inside @"..." is one quote
                out.append(quote)
                j += 2
                continue
            return "".join(out), j + 1
        if ch == "\\" and not verbatim and j + 1 < n:
            nxt = text[j + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[j + 2:j + 6]):
                out.append(chr(int(text[j + 2:j + 6], 16)))
                j += 6
            elif nxt == "U" and re.fullmatch(r"[0-9a-fA-F]{8}", text[j + 2:j + 10]):
                out.append(chr(int(text[j + 2:j + 10], 16)))
                j += 10
            elif re.fullmatch(r"[0-3][0-7][0-7]", text[j + 1:j + 4]):
                out.append(chr(int(text[j + 1:j + 4], 8)))
                j += 4
            else:
                out.append(_ESCAPES.get(nxt, nxt))
                j += 2
            continue
        out.append(ch)
        j += 1
    raise Unsupported("unterminated string")


def _goo(text: str, i: int) -> tuple[str, int]:
    """``(anything but a closing parenthesis)`` starting at the ``(`` at ``text[i]``."""
    end = text.find(")", i)
    if end < 0:
        raise Unsupported("unterminated literal")
    return text[i + 1:end].strip(), end + 1


def tokenize(text: str) -> list[Tok]:
    """Tokens of a predicate (comments are already gone: ``strip_and_check`` ran first)."""
    toks: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        rest = text[i:i + 4]
        if ch in "\"'" or rest.startswith(("@\"", "@'", "```", "~~~")) or (
                ch in "hH" and (rest[1:2] in ("\"", "'") or rest[1:3] in ("@\"", "@'") or rest[1:4] in ("```", "~~~"))):
            start = i
            if ch in "hH":
                i += 1
            value, i = _read_string(text, i)
            if toks and toks[-1].kind == "str":  # adjacent literals concatenate
                toks[-1] = Tok("str", toks[-1].value + value, toks[-1].text + text[start:i])
            else:
                toks.append(Tok("str", value, text[start:i]))
            continue
        if ch == "[":
            m = _BRACKETED.match(text, i)
            if m:
                toks.append(Tok("ident", m.group(1) if m.group(1) is not None else m.group(2), m.group(0)))
                i = m.end()
                continue
        if ch.isdigit():
            m = _TIMESPAN.match(text, i)
            if m:
                number, unit = float(m.group(1)), m.group(2)
                ticks = number / 100 if unit in _NANO_UNITS else number * _UNITS[unit]
                toks.append(Tok("span", int(round(ticks)), m.group(0)))
                i = m.end()
                continue
            m = _NUMBER.match(text, i)
            assert m is not None
            word = m.group(0)
            if i + len(word) < n and (text[i + len(word)].isalpha() or text[i + len(word)] == "_"):
                raise Unsupported(f"number followed by letters at {i}")
            value: float | int = int(word, 16) if word[:2] in ("0x", "0X") else (
                float(word) if any(c in word for c in ".eE") else int(word))
            toks.append(Tok("num", value, word))
            i = m.end()
            continue
        if ch == "!" and i + 1 < n and text[i + 1].isalpha():
            m = _IDENT.match(text, i + 1)
            assert m is not None
            word, i = "!" + m.group(0), m.end()
            if word == "!in" and text.startswith("~", i):
                word, i = "!in~", i + 1
            toks.append(Tok("word", word, word))
            continue
        m = _IDENT.match(text, i)
        if m:
            word, i = m.group(0), m.end()
            if word == "in" and text.startswith("~", i):
                toks.append(Tok("word", "in~", "in~"))
                i += 1
                continue
            j = i
            while j < n and text[j].isspace():
                j += 1
            if word.lower() in _LITERAL_CALLS and j < n and text[j] == "(":
                goo, i = _goo(text, j)
                toks.append(Tok("lit", (word.lower(), goo), text[m.start():i]))
                continue
            toks.append(Tok("ident", word, word))
            continue
        for sym in _SYMBOLS:
            if text.startswith(sym, i):
                toks.append(Tok("sym", sym, sym))
                i += len(sym)
                break
        else:
            raise Unsupported(f"unexpected character {ch!r}")
    return toks


# ---------------------------------------------------------------- parser -> tree
# Nodes are tuples: ("const", kind, value), ("name", text), ("call", name, args), ("cmp", op, left, right),
# ("list", op, left, items), ("between", negated, left, low, high), ("and", parts), ("or", parts),
# ("neg", node), ("arith", op, left, right), ("opaque", reason): an operand the emulator cannot evaluate.

_WORD_OPS = _STRING_OPS | {"!" + op for op in _STRING_OPS} | _LIST_OPS | {"between", "!between", "matches"}


class _Parser:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, offset: int = 0) -> Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise Unsupported("unexpected end")
        self.i += 1
        return tok

    def accept(self, kind: str, value: Any = None) -> Tok | None:
        tok = self.peek()
        if tok is not None and tok.kind == kind and (value is None or tok.value == value):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, value: Any = None) -> Tok:
        tok = self.accept(kind, value)
        if tok is None:
            raise Unsupported(f"expected {value or kind}")
        return tok

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind in ("ident", "word") and tok.value in words

    def parse(self) -> tuple:
        node = self.expr()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek().text!r}")
        return node

    def expr(self) -> tuple:
        parts = [self.conj()]
        while self.is_word("or"):
            self.i += 1
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conj(self) -> tuple:
        parts = [self.rel()]
        while self.is_word("and"):
            self.i += 1
            parts.append(self.rel())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def rel(self) -> tuple:
        left = self.add()
        tok = self.peek()
        if tok is None:
            return left
        if tok.kind == "sym" and tok.value in _COMPARE_OPS:
            self.i += 1
            return ("cmp", "!=" if tok.value == "<>" else tok.value, left, self.add())
        if tok.kind in ("ident", "word") and tok.value in _WORD_OPS:
            op = tok.value
            self.i += 1
            if op in _LIST_OPS:
                return ("list", op, left, self.items())
            if op in ("between", "!between"):
                self.expect("sym", "(")
                low = self.add()
                self.expect("sym", "..")
                high = self.add()
                self.expect("sym", ")")
                return ("between", op == "!between", left, low, high)
            if op == "matches":
                if not self.is_word("regex"):
                    raise Unsupported("matches without regex")
                self.i += 1
                return ("cmp", "matches regex", left, self.add())
            return ("cmp", op, left, self.add())
        return left

    def items(self) -> list[tuple]:
        self.expect("sym", "(")
        out: list[tuple] = []
        if self.accept("sym", ")"):
            return out
        while True:
            out.append(self.add())
            if self.accept("sym", ")"):
                return out
            self.expect("sym", ",")

    def add(self) -> tuple:
        node = self.unary()
        while (tok := self.peek()) is not None and tok.kind == "sym" and tok.value in ("+", "-"):
            self.i += 1
            node = ("arith", tok.value, node, self.unary())
        if (tok := self.peek()) is not None and tok.kind == "sym" and tok.value in ("*", "/", "%"):
            raise Unsupported("multiplicative operators")
        return node

    def unary(self) -> tuple:
        if self.accept("sym", "-"):
            return ("arith", "-", ("const", "long", 0), self.unary())
        if self.accept("sym", "+"):
            return self.unary()
        return self.primary()

    def primary(self) -> tuple:
        tok = self.next()
        if tok.kind == "str":
            return ("const", "string", tok.value)
        if tok.kind == "num":
            return ("const", "real" if isinstance(tok.value, float) else "long", tok.value)
        if tok.kind == "span":
            return ("const", "timespan", tok.value)
        if tok.kind == "lit":
            return _typed_literal(*tok.value)
        if tok.kind == "sym" and tok.value == "(":
            node = self.expr()
            self.expect("sym", ")")
            return node
        if tok.kind == "ident":
            name = tok.value
            if name in ("true", "false", "TRUE", "FALSE", "True", "False") and tok.text == name:
                return ("const", "bool", name.lower() == "true")
            if name == "null" and tok.text == name:
                return ("const", "null", None)
            if self.accept("sym", "("):
                if name == "dynamic":
                    value = self.dynamic_value()
                    self.expect("sym", ")")
                    return ("const", "dynamic", value)
                args: list[tuple] = []
                if not self.accept("sym", ")"):
                    while True:
                        args.append(self.expr())
                        if self.accept("sym", ")"):
                            break
                        self.expect("sym", ",")
                return self.postfix(("call", name, args))
            return self.postfix(("name", name))
        raise Unsupported(f"unexpected {tok.text!r}")

    def postfix(self, node: tuple) -> tuple:
        """Member access and indexing (``A.b``, ``A["b"]``, ``A[0]``): parsed, but never evaluated."""
        while (tok := self.peek()) is not None and tok.kind == "sym" and tok.value in (".", "["):
            self.i += 1
            if tok.value == ".":
                self.expect("ident")
            else:
                self.add()
                self.expect("sym", "]")
            node = ("opaque", "member access")
        return node

    def dynamic_value(self) -> Any:
        tok = self.next()
        if tok.kind == "sym" and tok.value == "[":
            out: list[Any] = []
            if self.accept("sym", "]"):
                return out
            while True:
                out.append(self.dynamic_value())
                if self.accept("sym", "]"):
                    return out
                self.expect("sym", ",")
        if tok.kind == "sym" and tok.value == "{":
            obj: dict[str, Any] = {}
            if self.accept("sym", "}"):
                return obj
            while True:
                key = self.expect("str").value
                self.expect("sym", ":")
                obj[key] = self.dynamic_value()
                if self.accept("sym", "}"):
                    return obj
                self.expect("sym", ",")
        if tok.kind == "sym" and tok.value == "-":
            number = self.expect("num").value
            return -number
        if tok.kind in ("str", "num"):
            return tok.value
        if tok.kind == "ident" and tok.value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[tok.value]
        if tok.kind == "lit":
            kind, value = _typed_literal(*tok.value)[1:]
            return format_ticks(value) if kind == "datetime" and value is not None else value
        raise Unsupported("dynamic literal")


_DATETIME = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7})\d*)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?")
_CLOCK = re.compile(r"(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?")


def parse_datetime(text: str) -> int | None:
    """``2024-01-02``, ``2024-01-02 03:04``, ``2024-01-02T03:04:05.1234567Z`` (or ``+02:00``) -> ticks."""
    m = _DATETIME.fullmatch(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, sec, frac, zone = m.groups()
    try:
        when = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(sec or 0),
                           tzinfo=dt.UTC)
    except ValueError:
        return None
    ticks = int(when.timestamp()) * SECOND + (int(frac.ljust(7, "0")) if frac else 0)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        ticks -= sign * (int(digits[:2]) * 3600 + int(digits[2:])) * 60 * SECOND
    return ticks


def parse_timespan(text: str) -> int | None:
    """``1d``, ``1.5h``, ``1.02:03:04.5``, ``02:03`` -> ticks."""
    text = text.strip()
    m = _TIMESPAN.fullmatch(text)
    if m:
        number, unit = float(m.group(1)), m.group(2)
        return int(round(number / 100 if unit in _NANO_UNITS else number * _UNITS[unit]))
    m = _CLOCK.fullmatch(text)
    if m:
        neg, days, hours, minutes, secs, frac = m.groups()
        ticks = ((int(days or 0) * 24 + int(hours)) * 3600 + int(minutes) * 60 + int(secs or 0)) * SECOND
        ticks += int(frac.ljust(7, "0")) if frac else 0
        return -ticks if neg else ticks
    return None


def _typed_literal(kind: str, goo: str) -> tuple:
    raw = goo.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1]
    if raw == "null" and kind != "guid":
        return ("const", {"time": "timespan", "int64": "long", "double": "real", "boolean": "bool"}.get(kind, kind),
                None)
    if kind == "datetime":
        ticks = parse_datetime(raw)
        if ticks is None:
            raise Unsupported(f"datetime({goo})")
        return ("const", "datetime", ticks)
    if kind in ("time", "timespan"):
        ticks = parse_timespan(raw)
        if ticks is None:
            raise Unsupported(f"timespan({goo})")
        return ("const", "timespan", ticks)
    try:
        if kind in ("long", "int", "int64"):
            return ("const", "long", int(raw, 0))
        if kind in ("real", "double"):
            return ("const", "real", float(raw))
    except ValueError:
        raise Unsupported(f"{kind}({goo})") from None
    if kind in ("bool", "boolean"):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise Unsupported(f"bool({goo})")
        return ("const", "bool", raw.lower() in ("true", "1"))
    return ("const", "string", raw)  # guid(...)


def parse(text: str) -> tuple:
    """The predicate's tree; raises :class:`Unsupported` for syntax outside the subset."""
    return _Parser(tokenize(text)).parse()


# ---------------------------------------------------------------- compiling to row tests

@dataclass
class Env:
    """What a predicate may refer to besides columns: scalar ``let`` values and the query's ``now``."""

    now_ticks: int
    lets: dict[str, str] = field(default_factory=dict)
    _consts: dict[str, Val] = field(default_factory=dict)

    def let_value(self, name: str) -> Val:
        """The constant a scalar ``let`` binds (parsed once)."""
        if name not in self._consts:
            try:
                value = _compile(parse(self.lets[name]), None, "let", self)
            except RecursionError:
                raise Unsupported("recursive let") from None
            if not value.is_const:
                raise Unsupported(f"let {name} is not a constant")
            self._consts[name] = value
        return self._consts[name]


@dataclass(frozen=True)
class Val:
    """A compiled expression: its kind, and either a constant or a per-row function.

    Runtime representations: string -> str (null is ""), long/real -> int/float or None, bool -> bool or
    None, datetime -> the 28-character ISO text as bytes (sorts like the instant) for rows, ticks for
    constants (see :meth:`as_rows`), timespan -> ticks, dynamic -> the decoded JSON value.
    """

    kind: str
    const: Any = None
    fn: Callable[[Row], Any] | None = None
    cell: Callable[[Row], bytes] | None = None  # the raw cell getter, when this is a plain column

    @property
    def is_const(self) -> bool:
        return self.fn is None


_KIND_OF_TYPE = {"String": "string", "Guid": "string", "Int64": "long", "Int32": "long", "Double": "real",
                 "Boolean": "bool", "SByte": "bool", "DateTime": "datetime", "Object": "dynamic"}
_NUMERIC = {"long", "real"}


def _iso(ticks: int) -> bytes:
    return format_ticks(ticks).encode()


def _datetime_cell(cell: bytes) -> bytes | None:
    if cell == NULL:
        return None
    text = cell[1:-1]
    if len(text) == 28:
        return text
    ticks = parse_datetime(text.decode())
    return None if ticks is None else _iso(ticks)


def _column(frame: Frame, col: Column) -> Val:
    get = frame.cells(col)
    kind = _KIND_OF_TYPE.get(col.type, "dynamic")
    if kind == "datetime":
        return Val(kind, fn=lambda r: _datetime_cell(get(r)), cell=get)
    cache: dict[bytes, Any] = {}

    def decoded(r: Row) -> Any:
        cell = get(r)
        try:
            return cache[cell]
        except KeyError:
            value = json.loads(cell)
            if kind == "string":
                value = "" if value is None else value if isinstance(value, str) else json.dumps(value)
            elif kind == "bool" and value is not None:
                value = bool(value)
            cache[cell] = value
            return value

    return Val(kind, fn=decoded, cell=get)


def _to_text(value: Any, kind: str) -> str:
    """Kusto's ``tostring`` of a runtime value."""
    if value is None:
        return ""
    if kind == "datetime":
        return (value.decode() if isinstance(value, bytes) else format_ticks(value))
    if kind == "bool":
        return "true" if value else "false"
    if kind == "dynamic":
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if kind == "timespan":
        return _format_span(value)
    return str(value)


def _format_span(ticks: int) -> str:
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    days, rest = divmod(ticks, DAY)
    secs, frac = divmod(rest, SECOND)
    clock = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}" + (f".{frac:07d}" if frac else "")
    return f"{sign}{days}.{clock}" if days else f"{sign}{clock}"


def _map(val: Val, kind: str, func: Callable[[Any], Any]) -> Val:
    """Apply ``func`` to a value, folding constants and memoizing per cell for plain columns."""
    if val.is_const:
        return Val(kind, func(val.const))
    if val.cell is not None and val.kind != "datetime":
        get, fn, cache = val.cell, val.fn, {}

        def memo(r: Row) -> Any:
            cell = get(r)
            try:
                return cache[cell]
            except KeyError:
                result = cache[cell] = func(fn(r))
                return result

        return Val(kind, fn=memo)
    fn = val.fn
    return Val(kind, fn=lambda r: func(fn(r)))


def _as_datetime(val: Val) -> Val:
    """A string constant used where a datetime is expected becomes one (as Kusto converts it)."""
    if val.kind == "string" and val.is_const:
        ticks = parse_datetime(val.const)
        if ticks is None:
            raise KqlError(f"Cannot convert '{val.const}' to datetime.")
        return Val("datetime", ticks)
    return val


def _compile(node: tuple, frame: Frame | None, op: str, env: Env) -> Val:
    tag = node[0]
    if tag == "const":
        return Val(node[1], node[2])
    if tag == "name":
        name = node[1]
        if frame is not None:
            for col in frame.columns:
                if col.name == name:
                    return _column(frame, col)
        if name in env.lets:
            return env.let_value(name)
        raise unresolved(op, name)
    if tag == "opaque":
        raise Unsupported(node[1])
    if tag == "arith":
        return _arith(node[1], _compile(node[2], frame, op, env), _compile(node[3], frame, op, env))
    if tag == "call":
        return _call(node[1], [_compile(a, frame, op, env) for a in node[2]], env)
    if tag in ("cmp", "list", "between", "and", "or"):
        return Val("bool", fn=_predicate(node, frame, op, env))
    raise Unsupported(tag)


def _arith(sign: str, left: Val, right: Val) -> Val:
    if not (left.is_const and right.is_const):
        raise Unsupported("arithmetic on columns")
    a, b = left.const, right.const
    if a is None or b is None:
        return Val("null", None)
    if left.kind == "datetime" and right.kind == "timespan":
        return Val("datetime", a + b if sign == "+" else a - b)
    if left.kind == "timespan" and right.kind == "datetime" and sign == "+":
        return Val("datetime", a + b)
    if left.kind == "datetime" and right.kind == "datetime" and sign == "-":
        return Val("timespan", a - b)
    if left.kind in _NUMERIC | {"timespan"} and right.kind == left.kind or (
            left.kind in _NUMERIC and right.kind in _NUMERIC):
        kind = left.kind if left.kind == right.kind else "real"
        return Val(kind, a + b if sign == "+" else a - b)
    raise Unsupported(f"{left.kind} {sign} {right.kind}")


def _call(name: str, args: list[Val], env: Env) -> Val:
    def arity(*counts: int) -> None:
        if len(args) not in counts:
            raise KqlError(f"Function '{name}': expected {' or '.join(map(str, counts))} argument(s).")

    if name == "ago":
        arity(1)
        if not args[0].is_const or args[0].kind != "timespan":
            raise Unsupported("ago of a non-constant")
        return Val("datetime", env.now_ticks - args[0].const)
    if name == "now":
        arity(0, 1)
        offset = args[0].const if args and args[0].is_const and args[0].kind == "timespan" else 0
        if args and not (args[0].is_const and args[0].kind == "timespan"):
            raise Unsupported("now of a non-constant")
        return Val("datetime", env.now_ticks + offset)
    if name in ("startofday", "endofday"):
        arity(1)
        value = _as_datetime(args[0])
        if not value.is_const or value.kind != "datetime" or value.const is None:
            raise Unsupported(f"{name} of a column")
        start = value.const // DAY * DAY
        return Val("datetime", start if name == "startofday" else start + DAY - 1)
    if name == "todatetime":
        arity(1)
        value = args[0]
        if value.kind == "datetime":
            return value
        return _as_datetime(Val("string", _to_text(value.const, value.kind))) if value.is_const else _raise(
            Unsupported("todatetime of a column"))
    if name == "totimespan":
        arity(1)
        value = args[0]
        if value.kind == "timespan":
            return value
        if value.is_const and value.kind == "string":
            return Val("timespan", parse_timespan(value.const))
        raise Unsupported("totimespan")
    if name == "tostring":
        arity(1)
        kind = args[0].kind
        return _map(args[0], "string", lambda v: _to_text(v, kind))
    if name in ("tolower", "toupper"):
        arity(1)
        kind = args[0].kind
        if name == "tolower":
            return _map(args[0], "string", lambda v: _to_text(v, kind).lower())
        return _map(args[0], "string", lambda v: _to_text(v, kind).upper())
    if name == "strlen":
        arity(1)
        kind = args[0].kind
        return _map(args[0], "long", lambda v: len(_to_text(v, kind)))
    if name == "strcat":
        if not all(a.is_const for a in args):
            raise Unsupported("strcat of columns")
        return Val("string", "".join(_to_text(a.const, a.kind) for a in args))
    if name in ("isempty", "isnotempty"):
        arity(1)
        want = name == "isempty"
        return _map(args[0], "bool", lambda v: (v is None or v == "") is want)
    if name in ("isnull", "isnotnull"):
        arity(1)
        want = name == "isnull"
        if args[0].kind == "string":  # strings are never null in Kusto
            return Val("bool", not want)
        return _map(args[0], "bool", lambda v: (v is None) is want)
    if name == "not":
        arity(1)
        return _map(_as_bool(args[0]), "bool", lambda v: v is False)
    if name in ("toint", "tolong"):
        arity(1)
        return _map(args[0], "long", _to_int)
    raise Unsupported(f"function {name}")


def _raise(exc: Exception) -> Any:
    raise exc


def _to_int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _as_bool(val: Val) -> Val:
    if val.kind not in ("bool", "null"):
        raise KqlError("The expression is not a boolean.")
    return val


# ---------------------------------------------------------------- predicates

def _term_char(ch: str) -> bool:
    return ch.isalnum()


def _has(hay: str, needle: str) -> bool:
    """Kusto ``has``: ``needle`` occurs bounded by non-term characters (or the ends) where it has term ends."""
    if not needle:
        return True
    lead, tail = _term_char(needle[0]), _term_char(needle[-1])
    start = 0
    while True:
        i = hay.find(needle, start)
        if i < 0:
            return False
        j = i + len(needle)
        if (not lead or i == 0 or not _term_char(hay[i - 1])) and (not tail or j == len(hay) or not _term_char(hay[j])):
            return True
        start = i + 1


def _string_test(op: str, needle: str) -> Callable[[str], bool]:
    negated = op.startswith("!")
    base = op.lstrip("!")
    cs = base.endswith("_cs") or base == "containscs"
    base = "contains" if base == "containscs" else base.removesuffix("_cs")
    want = needle if cs else needle.lower()
    fold: Callable[[str], str] = (lambda s: s) if cs else str.lower
    if base == "has":
        def test(s: str) -> bool:
            return _has(fold(s), want)
    elif base == "contains":
        def test(s: str) -> bool:
            return want in fold(s)
    elif base == "startswith":
        def test(s: str) -> bool:
            return fold(s).startswith(want)
    elif base == "endswith":
        def test(s: str) -> bool:
            return fold(s).endswith(want)
    elif base == "hasprefix":
        def test(s: str) -> bool:
            return any(t.startswith(want) for t in _terms(fold(s)))
    elif base == "hassuffix":
        def test(s: str) -> bool:
            return any(t.endswith(want) for t in _terms(fold(s)))
    else:
        raise Unsupported(op)
    return (lambda s: not test(s)) if negated else test


_TERMS = re.compile(r"[^\W_]+")


def _terms(text: str) -> list[str]:
    return _TERMS.findall(text)


def _row_test(val: Val, test: Callable[[Any], bool]) -> Callable[[Row], bool]:
    """``test(value)`` per row, memoized per distinct cell for plain (non-datetime) columns."""
    if val.is_const:
        result = test(val.const)
        return (lambda r: True) if result else (lambda r: False)
    if val.cell is not None and val.kind != "datetime":
        get, fn, cache = val.cell, val.fn, {}

        def memo(r: Row) -> bool:
            cell = get(r)
            try:
                return cache[cell]
            except KeyError:
                result = cache[cell] = test(fn(r))
                return result

        return memo
    fn = val.fn
    return lambda r: test(fn(r))


def _type_error(left: Val, right: Val) -> KqlError:
    names = {"string": "string", "long": "long", "real": "real", "bool": "bool", "datetime": "datetime",
             "timespan": "timespan", "dynamic": "dynamic"}
    return KqlError(f"Cannot compare values of types {names.get(left.kind, left.kind)} and "
                    f"{names.get(right.kind, right.kind)}. Try adding explicit casts")


def _comparable(left: Val, right: Val) -> tuple[Val, Val]:
    """Align the kinds of two operands of a comparison; raise the service's error when they cannot be."""
    if left.kind == "datetime":
        right = _as_datetime(right)
    if right.kind == "datetime":
        left = _as_datetime(left)
    kinds = {left.kind, right.kind}
    if "null" in kinds or "dynamic" in kinds or len(kinds) == 1 or kinds <= _NUMERIC:
        return left, right
    if kinds == {"bool", "long"}:
        return left, right
    raise _type_error(left, right)


def _rows_form(val: Val) -> Val:
    """Datetime constants in the form rows carry (ISO bytes), so both sides compare alike."""
    if val.kind == "datetime" and val.is_const and val.const is not None and not isinstance(val.const, bytes):
        return Val("datetime", _iso(val.const))
    return val


_ORDER = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _predicate(node: tuple, frame: Frame | None, op: str, env: Env) -> Callable[[Row], bool]:
    tag = node[0]
    if tag == "and":
        tests = []
        for part in node[1]:
            try:
                tests.append(_predicate(part, frame, op, env))
            except Unsupported:
                continue  # an operand the emulator cannot evaluate removes no rows
        return _all(tests)
    if tag == "or":
        tests = [_predicate(part, frame, op, env) for part in node[1]]
        return lambda r: any(t(r) for t in tests)
    if tag == "cmp":
        return _compare(node[1], _compile(node[2], frame, op, env), _compile(node[3], frame, op, env))
    if tag == "list":
        return _in_list(node[1], _compile(node[2], frame, op, env),
                        [_compile(item, frame, op, env) for item in node[3]])
    if tag == "between":
        left = _compile(node[2], frame, op, env)
        low, high = _compile(node[3], frame, op, env), _compile(node[4], frame, op, env)
        if not (low.is_const and high.is_const):
            raise Unsupported("between with column bounds")
        low = _as_datetime(low) if left.kind == "datetime" else low
        if low.kind == "datetime" and high.kind == "timespan" and low.const is not None and high.const is not None:
            high = Val("datetime", low.const + high.const)
        high = _as_datetime(high) if left.kind == "datetime" else high
        left, low = _comparable(left, low)
        left, high = _comparable(left, high)
        low, high, left = _rows_form(low), _rows_form(high), _rows_form(left)
        lo, hi, negated = low.const, high.const, node[1]
        if lo is None or hi is None:
            return lambda r: False
        return _row_test(left, lambda v: v is not None and (lo <= v <= hi) is not negated)
    value = _as_bool(_compile(node, frame, op, env))
    return _row_test(value, lambda v: v is True)


def _all(tests: list[Callable[[Row], bool]]) -> Callable[[Row], bool]:
    if not tests:
        return lambda r: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda r: a(r) and b(r)
    return lambda r: all(t(r) for t in tests)


def _compare(op: str, left: Val, right: Val) -> Callable[[Row], bool]:
    if op in ("=~", "!~") or op.lstrip("!") in _STRING_OPS or op == "matches regex":
        if not right.is_const:
            raise Unsupported("string operator with a column on the right")
        lkind = left.kind
        needle = _to_text(right.const, right.kind)
        if op == "matches regex":
            try:
                pattern = re.compile(needle)
            except re.error as exc:
                raise KqlError(f"Invalid regular expression '{needle}': {exc}") from None
            return _row_test(left, lambda v: pattern.search(_to_text(v, lkind)) is not None)
        if op in ("=~", "!~"):
            want, equal = needle.lower(), op == "=~"
            return _row_test(left, lambda v: (_to_text(v, lkind).lower() == want) is equal)
        test = _string_test(op, needle)
        return _row_test(left, lambda v: test(_to_text(v, lkind)))
    left, right = _comparable(left, right)
    left, right = _rows_form(left), _rows_form(right)
    if left.is_const and not right.is_const:  # keep the column on the left
        left, right = right, left
        op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    if not right.is_const:
        lf, rf = _fn(left), _fn(right)
        if op in ("==", "!="):
            equal = op == "=="
            return lambda r: (a := lf(r)) is not None and (b := rf(r)) is not None and (a == b) is equal
        order = _ORDER[op]
        return lambda r: (a := lf(r)) is not None and (b := rf(r)) is not None and order(a, b)
    want = right.const
    if want is None:
        return lambda r: False
    if op in ("==", "!="):
        equal = op == "=="
        return _row_test(left, lambda v: v is not None and (v == want) is equal)
    order = _ORDER[op]
    return _row_test(left, lambda v: v is not None and order(v, want))


def _fn(val: Val) -> Callable[[Row], Any]:
    if val.is_const:
        const = val.const
        return lambda r: const
    return val.fn


def _flatten(items: Iterable[Val]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for item in items:
        if not item.is_const:
            raise Unsupported("a column inside an in-list")
        if item.kind == "dynamic" and isinstance(item.const, list):
            for value in item.const:
                kind = ("bool" if isinstance(value, bool) else "long" if isinstance(value, int)
                        else "real" if isinstance(value, float) else "string" if isinstance(value, str) else "dynamic")
                out.append((kind, value))
        else:
            out.append((item.kind, item.const))
    return out


def _in_list(op: str, left: Val, items: list[Val]) -> Callable[[Row], bool]:
    values = _flatten(items)
    lkind = left.kind
    if op in ("has_any", "has_all"):
        needles = [_to_text(v, k) for k, v in values]
        tests = [_string_test("has", n) for n in needles]
        if op == "has_any":
            return _row_test(left, lambda v: any(t(s) for s in (_to_text(v, lkind),) for t in tests))
        return _row_test(left, lambda v: all(t(s) for s in (_to_text(v, lkind),) for t in tests))
    negated = op.startswith("!")
    if op.endswith("~"):
        wanted = {_to_text(v, k).lower() for k, v in values}
        return _row_test(left, lambda v: (_to_text(v, lkind).lower() in wanted) is not negated)
    if lkind == "string":
        wanted_text = {_to_text(v, k) for k, v in values}
        return _row_test(left, lambda v: (v in wanted_text) is not negated)
    if lkind == "datetime":
        wanted_dt = set()
        for kind, value in values:
            ticks = value if kind == "datetime" else parse_datetime(str(value)) if kind == "string" else None
            if ticks is not None:
                wanted_dt.add(_iso(ticks))
        return _row_test(left, lambda v: v is not None and (v in wanted_dt) is not negated)
    wanted_any = {v for _, v in values if v is not None}
    return _row_test(left, lambda v: v is not None and (v in wanted_any) is not negated)


# ---------------------------------------------------------------- entry points

def compile_where(text: str, frame: Frame, op: str, env: Env) -> Callable[[Row], bool] | None:
    """A row test for ``where text`` on ``frame``, or None when the predicate is outside the subset
    (the rows are then kept). Raises :class:`KqlError` for unknown names and mismatched kinds."""
    try:
        tree = parse(text)
    except (Unsupported, RecursionError):
        return None
    try:
        return _predicate(tree, frame, op, env)
    except Unsupported:
        return None


def time_bounds(text: str, column: str, env: Env) -> tuple[int | None, int | None]:
    """Ticks bounds ``(low, high)`` (inclusive) that ``where text`` puts on ``column`` through its
    top-level ``and`` operands of the forms ``column >= X``, ``column < X``, ``column between (X .. Y)``,
    with constant X and Y. None where it puts none."""
    try:
        tree = parse(text)
    except (Unsupported, RecursionError):
        return None, None
    parts = tree[1] if tree[0] == "and" else [tree]
    low: int | None = None
    high: int | None = None

    def const(node: tuple) -> Val | None:
        try:
            value = _compile(node, None, "where", env)
        except (Unsupported, KqlError):
            return None
        if value.kind == "string" and value.const is not None:
            ticks = parse_datetime(value.const)
            return None if ticks is None else Val("datetime", ticks)
        return value if value.kind in ("datetime", "timespan") and value.const is not None else None

    for part in parts:
        if part[0] == "cmp" and part[2] == ("name", column) and part[1] in _ORDER:
            bound = const(part[3])
            if bound is None or bound.kind != "datetime":
                continue
            op, ticks = part[1], bound.const
            if op in (">", ">="):
                ticks = ticks + 1 if op == ">" else ticks
                low = ticks if low is None else max(low, ticks)
            else:
                ticks = ticks - 1 if op == "<" else ticks
                high = ticks if high is None else min(high, ticks)
        elif part[0] == "between" and not part[1] and part[2] == ("name", column):
            lo, hi = const(part[3]), const(part[4])
            if lo is None or hi is None or lo.kind != "datetime":
                continue
            hi_ticks = lo.const + hi.const if hi.kind == "timespan" else hi.const
            low = lo.const if low is None else max(low, lo.const)
            high = hi_ticks if high is None else min(high, hi_ticks)
    return low, high


__all__ = ["Env", "Unsupported", "compile_where", "parse", "parse_datetime", "parse_timespan", "time_bounds",
           "tokenize"]
