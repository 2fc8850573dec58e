"""The KQL pipe operators the emulator runs (``summarize`` lives in ``summarize.py``).

Each takes (frame, argument text, operator name) and returns a frame.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable
from typing import Any

from .frames import Column, Frame, auto_name, computed, decode
from .kqlsyntax import (
    MAX_ROWS,
    RECOGNITION_ERROR,
    RESULT_TOO_LARGE,
    KqlError,
    assignment,
    is_ident,
    items,
    name_of,
    split_keyword,
    unresolved,
)
from .predicates import Env, compile_where
from .summarize import op_summarize
from .tables import NULL, Row, enc


def take_count(op: str, args: str) -> int:
    """The row count of ``take``/``limit``/``top``, enforcing the 100,000-row cap."""
    arg = args.strip()
    if not re.fullmatch(r"\d+", arg):
        if is_ident(arg):
            raise unresolved(op, name_of(arg))
        raise KqlError(RECOGNITION_ERROR)
    n = int(arg)
    if n > MAX_ROWS:
        raise KqlError(RESULT_TOO_LARGE)
    return n


def _op_take(frame: Frame, args: str, op: str) -> Frame:
    frame.rows = frame.rows[: take_count(op, args)]
    return frame


def _op_project(frame: Frame, args: str, op: str) -> Frame:
    cols: list[Column] = []
    for item in items(args):
        name, expr = assignment(item)
        if name is None and is_ident(expr):
            name = name_of(expr)
        col = computed(frame, op, name or auto_name(frame, {c.name for c in cols}), expr)
        cols.append(col)
    frame.columns = cols
    return frame


def _matching(frame: Frame, op: str, patterns: list[str]) -> list[Column]:
    chosen: list[Column] = []
    for pattern in patterns:
        pattern = name_of(pattern)
        hits = [c for c in frame.columns if fnmatch.fnmatchcase(c.name, pattern)]
        if not hits and "*" not in pattern:
            raise unresolved(op, pattern)
        chosen.extend(c for c in hits if c not in chosen)
    return chosen


def _op_project_away(frame: Frame, args: str, op: str) -> Frame:
    drop = _matching(frame, op, items(args))
    frame.columns = [c for c in frame.columns if c not in drop]
    return frame


def _op_project_keep(frame: Frame, args: str, op: str) -> Frame:
    keep = _matching(frame, op, items(args))
    frame.columns = [c for c in frame.columns if c in keep]
    return frame


def _op_project_reorder(frame: Frame, args: str, op: str) -> Frame:
    first = _matching(frame, op, [re.sub(r"\s+(asc|desc)\w*$", "", i) for i in items(args)])
    frame.columns = first + [c for c in frame.columns if c not in first]
    return frame


def _op_project_rename(frame: Frame, args: str, op: str) -> Frame:
    for item in items(args):
        new, old = assignment(item)
        if new is None or not is_ident(old):
            raise KqlError(RECOGNITION_ERROR)
        frame.columns[frame.index(op, name_of(old))].name = new
    return frame


def _op_extend(frame: Frame, args: str, op: str) -> Frame:
    for item in items(args):
        name, expr = assignment(item)
        col = computed(frame, op, name or auto_name(frame, set()), expr)
        existing = [i for i, c in enumerate(frame.columns) if c.name == col.name]
        if existing:
            frame.columns[existing[0]] = col
        else:
            frame.columns.append(col)
    return frame


def _sort_key(col: Column, frame: Frame) -> Callable[[Row], Any]:
    get = frame.cells(col)
    if col.type == "Object":
        return lambda r: (get(r) != NULL, get(r))
    return lambda r: (get(r) != NULL, decode(get(r)))


def _sort(frame: Frame, op: str, args: str) -> Frame:
    keys: list[tuple[Column, bool]] = []
    for item in items(args):
        words = item.split()
        desc = not any(w == "asc" for w in words[1:])
        if not is_ident(words[0]):
            continue  # an expression: ignored
        keys.append((frame.columns[frame.index(op, name_of(words[0]))], desc))
    rows = frame.rows
    for col, desc in reversed(keys):  # stable sorts, last key first
        rows = sorted(rows, key=_sort_key(col, frame), reverse=desc)
    frame.rows = rows
    return frame


def _op_order(frame: Frame, args: str, op: str) -> Frame:
    by, rest = split_keyword(args, "by")
    if rest is None or by.strip():
        raise KqlError(RECOGNITION_ERROR)
    return _sort(frame, op.split()[0], rest)


def _op_top(frame: Frame, args: str, op: str) -> Frame:
    count, rest = split_keyword(args, "by")
    if rest is None:
        raise KqlError(RECOGNITION_ERROR)
    n = take_count(op, count)
    frame = _sort(frame, op, rest)
    frame.rows = frame.rows[:n]
    return frame


def _op_count(frame: Frame, args: str, op: str) -> Frame:
    if args.strip():
        raise KqlError(RECOGNITION_ERROR)
    return Frame([Column("Count", "Int64", 0)], [(b"%d" % len(frame.rows),)])


def _op_distinct(frame: Frame, args: str, op: str) -> Frame:
    if args.strip() != "*":
        frame.columns = [frame.columns[frame.index(op, name_of(i))] for i in items(args)]
    frame = frame.materialize()
    seen: dict[Row, None] = dict.fromkeys(frame.rows)
    frame.rows = list(seen)
    return frame


def _op_getschema(frame: Frame, args: str, op: str) -> Frame:
    net = {"DateTime": "System.DateTime", "String": "System.String", "Int64": "System.Int64",
           "Int32": "System.Int32", "Boolean": "System.SByte", "SByte": "System.SByte", "Double": "System.Double",
           "Guid": "System.Guid", "Object": "System.Object"}
    kql = {"DateTime": "datetime", "String": "string", "Int64": "long", "Int32": "int", "Boolean": "bool",
           "SByte": "bool", "Double": "real", "Guid": "guid", "Object": "dynamic"}
    rows = [(enc(c.name), b"%d" % i, enc(net.get(c.type, "System.Object")), enc(kql.get(c.type, "dynamic")))
            for i, c in enumerate(frame.columns)]
    return Frame([Column("ColumnName", "String", 0), Column("ColumnOrdinal", "Int32", 1),
                  Column("DataType", "String", 2), Column("ColumnType", "String", 3)], rows)


def op_where(frame: Frame, args: str, op: str, env: Env | None = None) -> Frame:
    """``where``/``filter``: keep the rows the predicate holds for (see :mod:`emulator.predicates`).

    A predicate outside the emulator's subset keeps every row; unknown names and mismatched kinds fail
    with the service's messages, on any data (the parse-time dry run has no rows).
    """
    if not args.strip():
        raise KqlError(RECOGNITION_ERROR)
    if env is None:
        env = Env(now_ticks())
    test = compile_where(args, frame, op, env)
    if test is not None and frame.rows:
        frame.rows = list(filter(test, frame.rows))
    return frame


def now_ticks() -> int:
    """The current time in 100-ns ticks since the epoch."""
    return time.time_ns() // 100


def op_ignore(frame: Frame, args: str, op: str) -> Frame:
    """Accept a real operator the emulator does not model, leaving the rows as they are."""
    if op in ("as", "invoke", "mv-expand", "join", "lookup", "parse") and not args.strip():
        raise KqlError(RECOGNITION_ERROR)
    return frame


OPERATORS: dict[str, Callable[[Frame, str, str], Frame]] = {
    "take": _op_take, "limit": _op_take, "sample": _op_take, "top": _op_top,
    "project": _op_project, "project-away": _op_project_away, "project-keep": _op_project_keep,
    "project-rename": _op_project_rename, "project-reorder": _op_project_reorder, "extend": _op_extend,
    "order": _op_order, "sort": _op_order, "summarize": op_summarize, "count": _op_count,
    "distinct": _op_distinct, "getschema": _op_getschema, "where": op_where, "filter": op_where,
    **dict.fromkeys(("serialize", "render", "as", "invoke", "mv-expand", "mv-apply", "parse",
                     "parse-where", "parse-kv", "join", "lookup", "union", "evaluate", "make-series", "search",
                     "fork", "facet", "reduce", "partition", "scan", "top-nested", "top-hitters", "consume",
                     "sample-distinct"), op_ignore),
}
# Operators after which the row count is no longer the table's: a later take does not size the table.
AGGREGATING = {"summarize", "count", "distinct", "make-series", "top-nested", "top-hitters", "getschema",
                "reduce", "evaluate", "join", "union", "lookup", "mv-expand", "mv-apply", "fork", "facet"}
SIZING = {"take", "limit", "sample", "top"}
FILTERS = {"where", "filter"}
