"""Small renderers shared by the flows and the CLI: cells as short text, frames as Markdown or table artifacts.

No ``tabulate`` needed: Markdown tables are written here, with cells escaped (``|``, newlines) and
cut short, so one long command line cannot make an artifact unreadable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

#: Widest cell in a Markdown table or a CLI table before it is cut with an ellipsis.
MAX_CELL = 120
_KEY = re.compile(r"[^a-z0-9-]+")


def cell_text(value: Any, width: int = MAX_CELL) -> str:
    """One value as short, single-line text: NA -> '', timestamps in ISO UTC, lists/dicts as JSON."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (pd.Timestamp, datetime)):
        text = value.isoformat().replace("+00:00", "Z")
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


_ESCAPING_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")


def md_escape(text: str) -> str:
    """Text safe inside a Markdown table cell: pipes, backticks and angle brackets escaped, and a backslash
    only where Markdown would read it as an escape (``C:\\Users`` stays as it is)."""
    text = _ESCAPING_BACKSLASH.sub(r"\\\\", text)
    return text.replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;").replace(">", "&gt;")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], width: int = MAX_CELL) -> str:
    """A GitHub-flavoured Markdown table; every cell goes through :func:`cell_text` and is escaped."""
    lines = ["| " + " | ".join(md_escape(str(h)) for h in headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(md_escape(cell_text(v, width)) for v in row) + " |")
    return "\n".join(lines)


def frame_markdown(frame: pd.DataFrame, columns: Sequence[str] | None = None, max_rows: int = 20,
                   width: int = MAX_CELL) -> str:
    """The first ``max_rows`` rows of ``frame`` (only ``columns`` present, if given) as a Markdown table."""
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    if not cols:
        return "_(no columns)_"
    head = frame[cols].head(max_rows)
    table = markdown_table(cols, head.itertuples(index=False, name=None), width)
    more = len(frame) - len(head)
    return table + (f"\n\n_…and {more:,} more rows._" if more > 0 else "")


def table_records(frame: pd.DataFrame, max_rows: int = 20, width: int = MAX_CELL) -> list[dict[str, str]]:
    """The first rows as JSON-safe records for a Prefect table artifact (every cell short text)."""
    head = frame.head(max_rows)
    names = [str(c) for c in head.columns]
    return [dict(zip(names, (cell_text(v, width) for v in row), strict=True))
            for row in head.itertuples(index=False, name=None)]


def artifact_key(*parts: Any) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) made from ``parts``."""
    text = "-".join(str(p) for p in parts if p not in (None, ""))
    key = _KEY.sub("-", text.lower()).strip("-")
    return key[:100].rstrip("-") or "defender"


__all__ = ["MAX_CELL", "artifact_key", "cell_text", "frame_markdown", "markdown_table", "md_escape", "table_records"]
