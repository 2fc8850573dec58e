"""A small subset of KQL: enough to shape hunting results, and to fail the way the service fails.

Supported: ``let`` statements (tabular ones become aliases, scalar ones are ignored), comments, a
table as the source, then pipes of ``take``/``limit``/``sample``, ``top N by``, ``project`` (with
renames and computed columns), ``project-away``/``-keep``/``-rename``/``-reorder``, ``extend``,
``order by``/``sort by``, ``summarize`` (count, countif, dcount, sum, avg, min, max, make_set,
make_list, take_any, arg_max/arg_min; ``by`` columns and ``bin()``), ``count``, ``distinct`` and
``getschema``. ``where``/``filter`` and other real operators (``join``, ``mv-expand``, ``parse`` ...)
are accepted and ignored: the rows are synthetic anyway. Computed values are null unless they are
literals; their types are guessed from the function name.

The table yields as many rows as the first ``take``-like operator before any aggregation asks for
(100 when there is none). Errors carry the service's messages (defender-api.md §2e).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .frames import Column, Frame
from .kqlsyntax import (
    DEFAULT_ROWS,
    IDENT,
    MAX_ROWS,
    RECOGNITION_ERROR,
    RESULT_TOO_LARGE,
    KqlError,
    is_ident,
    name_of,
    split_keyword,
    split_top,
    strip_and_check,
)
from .operators import AGGREGATING, OPERATORS, SIZING, op_ignore, take_count
from .tables import SCHEMAS, Row, generate

__all__ = ["MAX_ROWS", "RECOGNITION_ERROR", "RESULT_TOO_LARGE", "Frame", "KqlError", "Plan", "execute", "parse"]

_NON_SOURCES = {"union", "search", "find", "datatable", "print", "range", "externaldata", "evaluate", "let"}


@dataclass(frozen=True)
class Plan:
    """A parsed query: the table, how many rows it yields, and the pipeline after it."""

    table: str
    base_rows: int
    steps: tuple[tuple[str, str], ...]

    @property
    def cache_key(self) -> tuple:
        """Identifies the result: ignored operators do not change it."""
        return (self.table, self.base_rows,
                tuple((op, " ".join(a.split())) for op, a in self.steps if OPERATORS[op] is not op_ignore))


def _segments(query: str) -> tuple[str, list[str]]:
    """(source, pipe segments) of the query's last statement, with tabular ``let`` aliases expanded."""
    text = strip_and_check(query)
    statements = [s.strip() for s in split_top(text, ";") if s.strip()]
    if not statements:
        raise KqlError(RECOGNITION_ERROR)
    aliases: dict[str, str] = {}
    for stmt in statements[:-1]:
        m = re.fullmatch(r"let\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)", stmt, re.S)
        if not m:
            raise KqlError(RECOGNITION_ERROR)
        first = IDENT.match(m.group(2).strip())
        if first and (first.group(0) in SCHEMAS or first.group(0) in aliases):
            aliases[m.group(1)] = m.group(2).strip()
    body = statements[-1]
    segments = [s.strip() for s in split_top(body, "|")]
    for _ in range(10):  # aliases may refer to earlier aliases
        if segments[0] in aliases:
            segments = [s.strip() for s in split_top(aliases[segments[0]], "|")] + segments[1:]
    return segments[0], segments[1:]


def parse(query: str) -> Plan:
    """Parse and validate a query; raises :class:`KqlError` with the service's message."""
    source, segments = _segments(query)
    if not source:
        raise KqlError(RECOGNITION_ERROR)
    word = source.split()[0] if source.split() else ""
    if word in _NON_SOURCES:
        raise KqlError(f"The emulator does not support '{word}' as a query source; start with a table name.")
    if not is_ident(source):
        raise KqlError(RECOGNITION_ERROR)
    table = name_of(source)
    if table not in SCHEMAS:
        raise KqlError(f"Failed to resolve table or column expression named '{table}'")
    steps: list[tuple[str, str]] = []
    base_rows: int | None = None
    aggregated = False
    for segment in segments:
        m = re.match(r"([A-Za-z][A-Za-z0-9-]*)(?:\s+by\b)?", segment)
        if not segment or not m:
            raise KqlError(RECOGNITION_ERROR)
        op = m.group(1)
        if op not in OPERATORS:
            raise KqlError(RECOGNITION_ERROR)
        args = segment[len(op):]
        if op in SIZING:
            n = take_count(op, split_keyword(args, "by")[0] if op == "top" else args)
            if base_rows is None and not aggregated:
                base_rows = n
        if op in AGGREGATING:
            aggregated = True
        steps.append((op, args))
    plan = Plan(table, DEFAULT_ROWS if base_rows is None else base_rows, tuple(steps))
    _run(plan, [])  # resolve every column now, on no rows, so errors never depend on the data
    return plan


def _run(plan: Plan, rows: list[Row]) -> Frame:
    frame = Frame([Column(name, typ, i) for i, (name, typ) in enumerate(SCHEMAS[plan.table])], rows)
    for op, args in plan.steps:
        frame = OPERATORS[op](frame, args, op)
    return frame


def execute(plan: Plan, start_ticks: int, end_ticks: int) -> Frame:
    """Generate the table's rows for the window and run the pipeline over them."""
    return _run(plan, generate(plan.table, plan.base_rows, start_ticks, end_ticks))
