"""A small subset of KQL: enough to shape hunting results, and to fail the way the service fails.

Supported: ``let`` statements (tabular ones become aliases, scalar ones are values a ``where`` may
use), comments, a table as the source, then pipes of ``where``/``filter`` (see
:mod:`emulator.predicates` for the operators and functions), ``take``/``limit``/``sample``, ``top N
by``, ``project`` (with renames and computed columns), ``project-away``/``-keep``/``-rename``/
``-reorder``, ``extend``, ``order by``/``sort by``, ``summarize`` (count, countif, dcount, sum, avg,
min, max, make_set, make_list, take_any, arg_max/arg_min; ``by`` columns and ``bin()``), ``count``,
``distinct`` and ``getschema``. Other real operators (``join``, ``mv-expand``, ``parse`` ...) are
accepted and ignored: the rows are synthetic anyway. Computed values are null unless they are
literals; their types are guessed from the function name.

How many rows the table yields: as many as the first ``take``-like operator before any aggregation
asks for (100 when there is none). When ``where`` filters before that point, the emulator generates
the table until that many rows pass the filters, or until it has generated ``SCAN_ROWS`` (10,000)
rows or the requested count, whichever is more: a filter that matches little returns what it found
in that scan. Bounds that the leading ``where`` steps put on ``Timestamp`` (``>=``, ``<``,
``between``, with ``datetime()``, ``ago()``, ``now()``) narrow the generated window, so every
generated row is inside them. Errors carry the service's messages (defender-api.md §2e).
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
from .operators import (
    AGGREGATING,
    FILTERS,
    JOINS,
    OPERATORS,
    SIZING,
    now_ticks,
    op_ignore,
    op_join,
    op_where,
    parse_join,
    take_count,
)
from .predicates import Env, time_bounds
from .tables import SCHEMAS, TICKS_PER_SECOND, Row, generate

__all__ = ["MAX_ROWS", "RECOGNITION_ERROR", "RESULT_TOO_LARGE", "Frame", "KqlError", "Plan", "execute", "parse"]

SCAN_ROWS = 10_000
JOIN_ROWS = 10_000  # rows the right side of a join yields when it has no take of its own
_TIME_COLUMN = "Timestamp"
_RELATIVE_TIME = re.compile(r"\b(?:ago|now)\s*\(")
_NON_SOURCES = {"union", "search", "find", "datatable", "print", "range", "externaldata", "evaluate", "let"}


@dataclass(frozen=True)
class Plan:
    """A parsed query: the table, how many rows it yields, the pipeline after it, and scalar ``let`` values."""

    table: str
    base_rows: int
    steps: tuple[tuple[str, str], ...]
    lets: tuple[tuple[str, str], ...] = ()
    subplans: tuple[Plan | None, ...] = ()  # per step: the right side of a join or lookup

    @property
    def cache_key(self) -> tuple:
        """Identifies the result: ignored operators do not change it. A query that counts from now
        (``ago()``, ``now()``) is only the same result within the same minute."""
        # Arguments are kept as written: folding whitespace would also fold it inside string literals.
        key = (self.table, self.base_rows, self.lets,
               tuple((op, a.strip()) for op, a in self.steps if OPERATORS[op] is not op_ignore))
        texts = [a for _, a in self.steps] + [v for _, v in self.lets]
        if any(_RELATIVE_TIME.search(t) for t in texts):
            key += (now_ticks() // (60 * TICKS_PER_SECOND),)
        return key

    @property
    def source_end(self) -> int:
        """Index of the first step after which the row count is no longer the table's."""
        for i, (op, _) in enumerate(self.steps):
            if op in SIZING or op in AGGREGATING:
                return i
        return len(self.steps)


def _statements(query: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(last statement, tabular ``let`` aliases, scalar ``let`` values) of a query."""
    text = strip_and_check(query)
    statements = [s.strip() for s in split_top(text, ";") if s.strip()]
    if not statements:
        raise KqlError(RECOGNITION_ERROR)
    aliases: dict[str, str] = {}
    scalars: dict[str, str] = {}
    for stmt in statements[:-1]:
        m = re.fullmatch(r"let\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)", stmt, re.S)
        if not m:
            raise KqlError(RECOGNITION_ERROR)
        first = IDENT.match(m.group(2).strip())
        if first and (first.group(0) in SCHEMAS or first.group(0) in aliases):
            aliases[m.group(1)] = m.group(2).strip()
            scalars.pop(m.group(1), None)
        else:
            scalars[m.group(1)] = m.group(2).strip()
            aliases.pop(m.group(1), None)
    return statements[-1], aliases, scalars


def _segments(body: str, aliases: dict[str, str]) -> tuple[str, list[str]]:
    """(source, pipe segments) of a tabular expression, with ``let`` aliases expanded."""
    segments = [s.strip() for s in split_top(body, "|")]
    for _ in range(10):  # aliases may refer to earlier aliases
        if segments[0] in aliases:
            segments = [s.strip() for s in split_top(aliases[segments[0]], "|")] + segments[1:]
    return segments[0], segments[1:]


def parse(query: str) -> Plan:
    """Parse and validate a query; raises :class:`KqlError` with the service's message."""
    body, aliases, scalars = _statements(query)
    plan = _plan(body, aliases, scalars, DEFAULT_ROWS)
    # Resolve every column now, on no rows, so errors never depend on the data.
    _steps(_table(plan, []), plan, Env(now_ticks(), dict(plan.lets)), None)
    return plan


def _plan(body: str, aliases: dict[str, str], scalars: dict[str, str], default_rows: int) -> Plan:
    source, segments = _segments(body, aliases)
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
    subplans: list[Plan | None] = []
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
        sub = None
        if op in JOINS:
            right = parse_join(args, op).right
            right_body = right[1:-1] if right.startswith("(") else right
            sub = _plan(right_body, aliases, scalars, JOIN_ROWS)
        steps.append((op, args))
        subplans.append(sub)
    return Plan(table, default_rows if base_rows is None else base_rows, tuple(steps), tuple(scalars.items()),
                tuple(subplans))


def _table(plan: Plan, rows: list[Row]) -> Frame:
    return Frame([Column(name, typ, i) for i, (name, typ) in enumerate(SCHEMAS[plan.table])], rows)


def _steps(frame: Frame, plan: Plan, env: Env, window: tuple[int, int] | None,
           start: int = 0, stop: int | None = None) -> Frame:
    """Run ``plan.steps[start:stop]``; ``window`` None is the parse-time dry run (joins see no rows)."""
    for i in range(start, len(plan.steps) if stop is None else stop):
        op, args = plan.steps[i]
        if op in FILTERS:
            frame = op_where(frame, args, op, env)
        elif op in JOINS:
            sub = plan.subplans[i]
            assert sub is not None
            right = (_steps(_table(sub, []), sub, Env(env.now_ticks, dict(sub.lets)), None) if window is None
                     else execute(sub, *window, now=env.now_ticks))
            frame = op_join(frame, args, op, right)
        else:
            frame = OPERATORS[op](frame, args, op)
    return frame


def _window(plan: Plan, env: Env, start: int, end: int) -> tuple[int, int]:
    """The window narrowed to the ``Timestamp`` bounds of the leading ``where`` steps, to whole seconds
    (the generator seeds on seconds, so the same bounds give the same rows)."""
    for op, args in plan.steps:
        if op not in FILTERS:
            break
        low, high = time_bounds(args, _TIME_COLUMN, env)
        if low is not None:
            start = max(start, -(-low // TICKS_PER_SECOND) * TICKS_PER_SECOND)
        if high is not None:
            end = min(end, (high + 1) // TICKS_PER_SECOND * TICKS_PER_SECOND)  # rows are < end
    return (start, end) if start < end else (0, 0)


def execute(plan: Plan, start_ticks: int, end_ticks: int, now: int | None = None) -> Frame:
    """Generate the table's rows for the window and run the pipeline over them.

    ``now`` (ticks) is what ``ago()`` and ``now()`` count from; the current time by default. The right
    side of a ``join`` runs over the same window.
    """
    env = Env(now_ticks() if now is None else now, dict(plan.lets))
    window = (start_ticks, end_ticks)
    start, end = _window(plan, env, start_ticks, end_ticks)
    cut = plan.source_end
    want = plan.base_rows
    if not any(op in FILTERS for op, _ in plan.steps[:cut]):
        return _steps(_table(plan, generate(plan.table, want, start, end)), plan, env, window)
    # Filters before the table is sized: generate until enough rows pass them. Rows of a larger
    # scan extend a smaller one's (same seed), so the first `want` matches never depend on the scan.
    cap = max(SCAN_ROWS, want)
    scan = min(cap, max(want, 1000))
    while True:
        frame = _steps(_table(plan, generate(plan.table, scan, start, end)), plan, env, window, 0, cut)
        found = len(frame.rows)
        if found >= want or scan >= cap:
            break
        # None found in a scan of 1,000 or more means fewer than 1 in 1,000 match: go to the cap at once.
        scan = cap if not found else min(cap, int(scan * want / found * 1.25) + 64)
    frame.rows = frame.rows[:want]
    return _steps(frame, plan, env, window, cut)
