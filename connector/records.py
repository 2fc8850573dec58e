"""Typed DataFrames from lists of API records (alerts, incidents, machines, users...).

Hunting responses carry a schema; the entity APIs do not. Columns are typed from what the
caller knows about the entity (``kinds``), else from the values themselves:

- ISO 8601 date-times -> ``datetime64[ns, UTC]`` (a column with a value that is not one stays text);
- whole numbers -> nullable ``Int64``; other numbers -> ``Float64``; booleans -> nullable ``boolean``;
- strings -> ``string``; lists and objects -> Python objects, as sent.

An empty list still gives every known column, with its dtype.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pandas as pd

#: Column kinds: how a known field of an entity is typed.
KINDS = ("string", "datetime", "int", "float", "bool", "object")

_DTYPES = {"string": "string", "int": "Int64", "float": "Float64", "bool": "boolean", "object": object,
           "datetime": "datetime64[ns, UTC]"}
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$")


def records_frame(records: Iterable[Mapping], kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A DataFrame of ``records`` (dicts as sent), typed column by column.

    ``kinds`` maps known field names to a kind in :data:`KINDS`; they come first, in that order,
    then any other field in the order first seen.
    """
    rows = list(records)
    kinds = dict(kinds or {})
    names = list(kinds)
    seen = set(names)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                names.append(key)
    data = {}
    for name in names:
        values = [row.get(name) for row in rows]
        data[name] = _column(values, kinds.get(name) or _infer(values))
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)), columns=names)


def _infer(values: list) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "object"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float"
    if all(isinstance(v, str) for v in present):
        return "datetime" if all(_ISO.match(v) for v in present) else "string"
    return "object"


def _column(values: list, kind: str) -> pd.Series:
    if kind == "datetime":
        if all(v is None or (isinstance(v, str) and _ISO.match(v)) for v in values):
            try:
                parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")
                return parsed.astype(_DTYPES["datetime"])
            except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
                pass
        kind = "string"  # keep values as sent when one is not a date-time pandas can hold
    if kind in ("int", "float", "bool", "string"):
        try:
            return pd.Series(values, dtype=_DTYPES[kind])
        except (TypeError, ValueError, OverflowError):
            pass
    return pd.Series(values, dtype=object)
