"""KQL ``summarize``: aggregations (count, countif, dcount, sum, avg, min, max, make_set, make_list,
take_any, arg_max/arg_min) over groups of ``by`` columns, including ``bin()``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .frames import Column, Frame, auto_name, computed, decode
from .kqlsyntax import RECOGNITION_ERROR, KqlError, assignment, is_ident, items, name_of, split_keyword, split_top
from .tables import NULL, Row, enc, format_ticks

_TIMESPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s|ms|days?|hours?|minutes?|seconds?)")
_UNIT_TICKS = {"d": 864_000_000_000, "h": 36_000_000_000, "m": 600_000_000, "s": 10_000_000, "ms": 10_000}


def _bin_size(text: str) -> tuple[str, float]:
    text = text.strip()
    m = _TIMESPAN.fullmatch(text)
    if m:
        unit = m.group(2)
        unit = {"day": "d", "days": "d", "hour": "h", "hours": "h", "minute": "m", "minutes": "m",
                "second": "s", "seconds": "s"}.get(unit, unit)
        return "timespan", float(m.group(1)) * _UNIT_TICKS[unit]
    try:
        return "number", float(text)
    except ValueError:
        raise KqlError(RECOGNITION_ERROR) from None


def ticks_of(value: str) -> int:
    """``2024-03-26T09:39:50.7688641Z`` -> 100-ns ticks since the epoch (7-digit fractions kept)."""
    whole = dt.datetime.fromisoformat(value[:19]).replace(tzinfo=dt.UTC)
    frac = re.match(r"\.(\d{1,7})", value[19:])
    return int(whole.timestamp()) * 10**7 + (int(frac.group(1).ljust(7, "0")) if frac else 0)


def _binner(col: Column, size_text: str) -> Callable[[bytes], bytes]:
    kind, size = _bin_size(size_text)

    def apply(cell: bytes) -> bytes:
        if cell == NULL or size <= 0:
            return cell
        value = decode(cell)
        if col.type == "DateTime" and kind == "timespan" and isinstance(value, str):
            return enc(format_ticks(int(ticks_of(value) // size * size)))
        if isinstance(value, (int, float)):
            binned = (value // size) * size
            return enc(int(binned) if col.type in ("Int64", "Int32") else binned)
        return cell

    return apply


_AGG_NAMES = {"count": "count_", "countif": "countif_", "dcount": "dcount_{}", "dcountif": "dcountif_{}",
              "sum": "sum_{}", "avg": "avg_{}", "min": "min_{}", "max": "max_{}", "make_set": "set_{}",
              "make_list": "list_{}", "take_any": "any_{}", "any": "any_{}", "arg_max": "", "arg_min": ""}


@dataclass
class _Agg:
    name: str
    func: str
    col: Column | None
    type: str
    extra: list[Column] = field(default_factory=list)  # arg_max/arg_min output columns


def _parse_agg(frame: Frame, item: str, op: str) -> list[_Agg]:
    name, expr = assignment(item)
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)", expr, re.S)
    if not m:
        raise KqlError(RECOGNITION_ERROR)
    func, inner = m.group(1), m.group(2).strip()
    if func not in _AGG_NAMES:
        raise KqlError(f"Unknown function: '{func}'.")
    args = [a.strip() for a in split_top(inner, ",")] if inner else []
    if func in ("count", "countif"):
        return [_Agg(name or _AGG_NAMES[func], func, None, "Int64")]
    if not args or not is_ident(args[0]):
        raise KqlError(RECOGNITION_ERROR)
    col = frame.columns[frame.index(op, name_of(args[0]))]
    if func in ("arg_max", "arg_min"):
        rest = args[1:] or ["*"]
        extra = ([c for c in frame.columns if c is not col] if rest == ["*"]
                 else [frame.columns[frame.index(op, name_of(a))] for a in rest])
        return [_Agg(name or col.name, func, col, col.type, extra)]
    out_type = {"dcount": "Int64", "dcountif": "Int64", "avg": "Double", "make_set": "Object",
                "make_list": "Object"}.get(func, col.type)
    if func == "sum":
        out_type = "Int64" if col.type in ("Int64", "Int32") else "Double"
    return [_Agg(name or _AGG_NAMES[func].format(col.name), func, col, out_type)]


def _aggregate(agg: _Agg, frame: Frame, rows: list[Row]) -> list[bytes]:
    if agg.col is None:
        return [b"%d" % len(rows)]
    get = frame.cells(agg.col)
    cells = [get(r) for r in rows]
    present = [c for c in cells if c != NULL]
    if agg.func in ("dcount", "dcountif"):
        return [b"%d" % len(set(present))]
    if agg.func in ("take_any", "any"):
        return [present[0] if present else NULL]
    if agg.func in ("make_set", "make_list"):
        values = [decode(c) for c in (dict.fromkeys(present) if agg.func == "make_set" else present)]
        return [enc(values)]
    if agg.func in ("arg_max", "arg_min"):
        candidates = [r for r in rows if get(r) != NULL] or rows
        pick = (max if agg.func == "arg_max" else min)(candidates, key=lambda r: decode(get(r)))
        return [get(pick)] + [frame.cells(c)(pick) for c in agg.extra]
    values = [decode(c) for c in present]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if agg.func == "sum":
        return [enc(sum(numbers))]
    if agg.func == "avg":
        return [enc(sum(numbers) / len(numbers)) if numbers else NULL]
    if not values:
        return [NULL]
    try:
        return [enc((min if agg.func == "min" else max)(values))]
    except TypeError:
        return [NULL]


def op_summarize(frame: Frame, args: str, op: str) -> Frame:
    """``summarize aggregations [by groups]``."""
    aggs_text, by_text = split_keyword(args, "by")
    aggs: list[_Agg] = []
    if aggs_text.strip():
        for item in items(aggs_text):
            aggs.extend(_parse_agg(frame, item, op))
    if by_text is not None and not by_text.strip():
        raise KqlError(RECOGNITION_ERROR)
    keys: list[tuple[Column, Callable[[Row], bytes]]] = []
    for item in items(by_text) if by_text is not None else []:
        name, expr = assignment(item)
        m = re.fullmatch(r"bin\s*\(\s*([^,]+?)\s*,\s*(.+?)\s*\)", expr)
        if m:
            src = frame.columns[frame.index(op, name_of(m.group(1)))]
            get, binned = frame.cells(src), _binner(src, m.group(2))
            keys.append((Column(name or src.name, src.type), lambda r, g=get, b=binned: b(g(r))))
        elif is_ident(expr):
            src = frame.columns[frame.index(op, name_of(expr))]
            keys.append((Column(name or src.name, src.type), frame.cells(src)))
        else:
            col = computed(frame, op, name or auto_name(frame, set()), expr)
            keys.append((col, lambda r, c=col.const: c))
    if not aggs and not keys:
        raise KqlError(RECOGNITION_ERROR)
    groups: dict[tuple[bytes, ...], list[Row]] = {}
    for row in frame.rows:
        groups.setdefault(tuple(k(row) for _, k in keys), []).append(row)
    if not keys and not groups:
        groups[()] = []  # summarize with no "by" always yields one row
    columns = [Column(c.name, c.type) for c, _ in keys]
    for agg in aggs:
        columns.append(Column(agg.name, agg.type))
        columns.extend(Column(c.name, c.type) for c in agg.extra)
    rows = [key + tuple(cell for agg in aggs for cell in _aggregate(agg, frame, members))
            for key, members in groups.items()]
    for i, col in enumerate(columns):
        col.src = i
    return Frame(columns, rows)
