"""The KQL pipe operators the emulator runs (``summarize`` lives in ``summarize.py``).

Each takes (frame, argument text, operator name) and returns a frame.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
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


JOINS = {"join", "lookup"}
_JOIN_KINDS = {"innerunique", "inner", "leftouter", "rightouter", "fullouter", "leftsemi", "leftanti", "anti",
               "leftantisemi", "rightsemi", "rightanti", "rightantisemi"}


@dataclass(frozen=True)
class JoinSpec:
    """``join kind=K (right) on keys``: the kind, the right side as written, and (left, right) key columns."""

    kind: str
    right: str
    keys: tuple[tuple[str, str], ...]


def parse_join(args: str, op: str) -> JoinSpec:
    """The parts of a ``join`` or ``lookup``; raises the recognition error for anything else."""
    before, on = split_keyword(args.strip(), "on")
    if on is None or not on.strip():
        raise KqlError(RECOGNITION_ERROR)
    kind = "innerunique" if op == "join" else "leftouter"
    rest = before.strip()
    while m := re.match(r"(kind|hint\.[A-Za-z_]+|withsource)\s*=\s*([A-Za-z_][A-Za-z0-9_]*)\s*", rest):
        if m.group(1) == "kind":
            kind = m.group(2)
        rest = rest[m.end():]
    right = rest.strip()
    if not right or not (is_ident(right) or (right.startswith("(") and right.endswith(")"))):
        raise KqlError(RECOGNITION_ERROR)
    if kind not in _JOIN_KINDS or (op == "lookup" and kind not in ("leftouter", "inner")):
        raise KqlError(f"'{op}' operator: the join kind '{kind}' is not supported.")
    keys: list[tuple[str, str]] = []
    for item in items(on):
        m = re.fullmatch(r"\$(left|right)\.([A-Za-z_][A-Za-z0-9_]*)\s*==\s*\$(left|right)\.([A-Za-z_][A-Za-z0-9_]*)",
                         item)
        if m and {m.group(1), m.group(3)} == {"left", "right"}:
            keys.append((m.group(2), m.group(4)) if m.group(1) == "left" else (m.group(4), m.group(2)))
        elif is_ident(item):
            keys.append((name_of(item), name_of(item)))
        else:
            raise KqlError(RECOGNITION_ERROR)
    return JoinSpec(kind, right, tuple(keys))


def op_join(frame: Frame, args: str, op: str, right: Frame) -> Frame:
    """``join``/``lookup`` of the frame with ``right`` (the right side, already run) on equal key cells.

    Columns: the left's, then the right's, a right name already taken getting a ``1`` (``2``...) suffix
    as Kusto does; ``lookup`` leaves out the right's key columns; semi and anti joins keep one side.
    """
    spec = parse_join(args, op)
    left, right = frame.materialize(), right.materialize()
    lkeys = [left.index(op, a) for a, _ in spec.keys]
    rkeys = [right.index(op, b) for _, b in spec.keys]
    lkey, rkey = itemgetter_tuple(lkeys), itemgetter_tuple(rkeys)
    index: dict[tuple, list[Row]] = {}
    for row in right.rows:
        index.setdefault(rkey(row), []).append(row)
    kind = spec.kind
    if kind in ("leftsemi", "leftanti", "anti", "leftantisemi"):
        keep = kind == "leftsemi"
        left.rows = [r for r in left.rows if (lkey(r) in index) is keep]
        return left
    if kind in ("rightsemi", "rightanti", "rightantisemi"):
        seen = {lkey(r) for r in left.rows}
        keep = kind == "rightsemi"
        right.rows = [r for r in right.rows if (rkey(r) in seen) is keep]
        return right
    rows_left = left.rows
    if kind == "innerunique":  # one left row per key, the first
        rows_left = list({lkey(r): r for r in reversed(left.rows)}.values())[::-1]
    keep_right = [i for i in range(len(right.columns)) if op != "lookup" or i not in rkeys]
    pick = itemgetter_tuple(keep_right)
    taken = {c.name for c in left.columns}
    columns = list(left.columns)
    for i in keep_right:
        col, name, k = right.columns[i], right.columns[i].name, 1
        while name in taken:
            name, k = f"{right.columns[i].name}{k}", k + 1
        taken.add(name)
        columns.append(Column(name, col.type))
    right_nulls = (NULL,) * len(keep_right)
    rows: list[Row] = []
    for row in rows_left:
        matches = index.get(lkey(row))
        if matches:
            rows.extend(row + pick(m) for m in matches)
        elif kind in ("leftouter", "fullouter"):
            rows.append(row + right_nulls)
    if kind in ("rightouter", "fullouter"):
        seen = {lkey(r) for r in rows_left}
        left_nulls = (NULL,) * len(left.columns)
        rows.extend(left_nulls + pick(r) for r in right.rows if rkey(r) not in seen)
    return Frame([Column(c.name, c.type, i) for i, c in enumerate(columns)], rows)


def itemgetter_tuple(indexes: list[int]) -> Callable[[Row], tuple]:
    """A getter returning a tuple of the cells at ``indexes`` (also for one or none)."""
    if not indexes:
        return lambda r: ()
    if len(indexes) == 1:
        i = indexes[0]
        return lambda r: (r[i],)
    return itemgetter(*indexes)


def _op_join_unbound(frame: Frame, args: str, op: str) -> Frame:
    raise AssertionError("join and lookup run through emulator.kql, which runs their right side")


def op_ignore(frame: Frame, args: str, op: str) -> Frame:
    """Accept a real operator the emulator does not model, leaving the rows as they are."""
    if op in ("as", "invoke", "mv-expand", "parse") and not args.strip():
        raise KqlError(RECOGNITION_ERROR)
    return frame


OPERATORS: dict[str, Callable[[Frame, str, str], Frame]] = {
    "take": _op_take, "limit": _op_take, "sample": _op_take, "top": _op_top,
    "project": _op_project, "project-away": _op_project_away, "project-keep": _op_project_keep,
    "project-rename": _op_project_rename, "project-reorder": _op_project_reorder, "extend": _op_extend,
    "order": _op_order, "sort": _op_order, "summarize": op_summarize, "count": _op_count,
    "distinct": _op_distinct, "getschema": _op_getschema, "where": op_where, "filter": op_where,
    "join": _op_join_unbound, "lookup": _op_join_unbound,
    **dict.fromkeys(("serialize", "render", "as", "invoke", "mv-expand", "mv-apply", "parse",
                     "parse-where", "parse-kv", "union", "evaluate", "make-series", "search",
                     "fork", "facet", "reduce", "partition", "scan", "top-nested", "top-hitters", "consume",
                     "sample-distinct"), op_ignore),
}
# Operators after which the row count is no longer the table's: a later take does not size the table.
AGGREGATING = {"summarize", "count", "distinct", "make-series", "top-nested", "top-hitters", "getschema",
                "reduce", "evaluate", "join", "union", "lookup", "mv-expand", "mv-apply", "fork", "facet"}
SIZING = {"take", "limit", "sample", "top"}
FILTERS = {"where", "filter"}
