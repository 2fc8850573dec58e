"""Query results in flight: columns mapped onto rows of pre-encoded JSON cells, and computed columns.

Projection and renaming only change the column mapping; rows are never copied for them, and
:meth:`Frame.to_json_array` formats each row with one bytes template.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from .kqlsyntax import is_ident, name_of, unresolved
from .tables import NULL, Row, enc, format_ticks


@dataclass
class Column:
    """An output column: where its cells come from (a source index) or a constant cell."""

    name: str
    type: str
    src: int | None = None
    const: bytes = NULL


@dataclass
class Frame:
    """Rows of encoded cells plus the mapping from output columns to cells."""

    columns: list[Column]
    rows: list[Row]

    def index(self, op: str, name: str) -> int:
        """Position of column ``name``; raises the service's "Failed to resolve" error for ``op``."""
        for i, col in enumerate(self.columns):
            if col.name == name:
                return i
        raise unresolved(op, name)

    def cells(self, col: Column) -> Callable[[Row], bytes]:
        """A getter for ``col``'s encoded cell in a row."""
        if col.src is None:
            return lambda row: col.const
        return itemgetter(col.src)

    def materialize(self) -> Frame:
        """A frame whose columns map 1:1 onto freshly built rows."""
        getters = [self.cells(c) for c in self.columns]
        rows = [tuple(g(r) for g in getters) for r in self.rows]
        return Frame([Column(c.name, c.type, i) for i, c in enumerate(self.columns)], rows)

    def to_json_array(self) -> bytes:
        """``[{...},{...}]`` with keys in column order, as the hunting APIs send ``Results``."""
        template = b"{" + b",".join(
            enc(c.name).replace(b"%", b"%%") + b":" + (b"%s" if c.src is not None else c.const.replace(b"%", b"%%"))
            for c in self.columns) + b"}"
        srcs = [c.src for c in self.columns if c.src is not None]
        if not self.rows:
            return b"[]"
        if not srcs:
            parts = [template] * len(self.rows)
        elif srcs == list(range(len(self.rows[0]))):
            parts = [template % r for r in self.rows]
        elif len(srcs) == 1:
            only = srcs[0]
            parts = [template % (r[only],) for r in self.rows]
        else:
            get = itemgetter(*srcs)
            parts = [template % get(r) for r in self.rows]
        # Brackets go on the end parts: wrapping the joined bytes would copy ~300 MB once more.
        parts[0] = b"[" + parts[0]
        parts[-1] = parts[-1] + b"]"
        return b",".join(parts)


def decode(cell: bytes) -> Any:
    """A cell's Python value."""
    return json.loads(cell)


# ---------------------------------------------------------------- expressions

_TYPE_BY_FUNCTION = {
    **dict.fromkeys(("tostring", "strcat", "substring", "tolower", "toupper", "trim", "extract", "replace",
                     "replace_string", "format_datetime", "strcat_array", "iff", "iif", "case", "coalesce",
                     "parse_path", "url_decode", "base64_decode_tostring", "tohex", "format_timespan"), "String"),
    **dict.fromkeys(("toint",), "Int32"),
    **dict.fromkeys(("tolong", "strlen", "countof", "array_length", "hash", "datetime_diff", "dcount",
                     "count", "bitset_count_ones"), "Int64"),
    **dict.fromkeys(("todouble", "toreal", "round", "log", "log10", "exp", "sqrt", "pow", "avg", "rand"), "Double"),
    **dict.fromkeys(("todatetime", "now", "ago", "datetime_add", "startofday", "startofweek", "startofmonth",
                     "endofday", "bin", "floor", "make_datetime", "unixtime_seconds_todatetime"), "DateTime"),
    **dict.fromkeys(("tobool", "toboolean", "isempty", "isnotempty", "isnull", "isnotnull", "ipv4_is_private",
                     "ipv4_is_in_range", "has_any_index"), "Boolean"),
    **dict.fromkeys(("parse_json", "todynamic", "pack", "pack_array", "bag_pack", "split", "extract_all",
                     "make_bag", "parse_command_line", "set_union", "array_concat", "bag_keys"), "Object"),
    **dict.fromkeys(("toguid", "new_guid"), "Guid"),
}


def computed(frame: Frame, op: str, name: str, expr: str) -> Column:
    """A column for ``name = expr``: a copied column, a literal constant, or a typed null."""
    expr = expr.strip()
    if is_ident(expr) and expr not in ("true", "false", "now"):
        src = frame.columns[frame.index(op, name_of(expr))]
        return Column(name, src.type, src.src, src.const)
    if re.fullmatch(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", expr):
        try:
            value = json.loads('"' + expr[1:-1].replace('"', '\\"').replace("\\'", "'") + '"')
        except ValueError:
            value = expr[1:-1]
        return Column(name, "String", None, enc(value))
    if re.fullmatch(r"-?\d+", expr):
        return Column(name, "Int64", None, expr.encode())
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", expr):
        return Column(name, "Double", None, enc(float(expr)))
    if expr in ("true", "false"):
        return Column(name, "Boolean", None, expr.encode())
    func = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", expr)
    if func and func.group(1) == "now":
        now_ticks = int(dt.datetime.now(dt.UTC).timestamp() * 10**7)
        return Column(name, "DateTime", None, enc(format_ticks(now_ticks)))
    return Column(name, _TYPE_BY_FUNCTION.get(func.group(1) if func else "", "String"), None, NULL)


def auto_name(frame: Frame, taken: set[str]) -> str:
    """The next free ``ColumnN`` name, as KQL names unnamed expressions."""
    k = 1
    while f"Column{k}" in taken or any(c.name == f"Column{k}" for c in frame.columns):
        k += 1
    return f"Column{k}"
