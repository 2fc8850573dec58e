"""Hunting responses to typed pandas DataFrames, fast.

One public function, :func:`hunting_frame`, turns the body of a hunting response (Microsoft Graph
``runHuntingQuery``, MDE ``advancedqueries/run`` or XDR ``advancedhunting/run``) into a DataFrame
typed by the response's schema, and returns the query statistics when the service sent some.

How it stays fast and lean on 100,000-row answers (~220 MB of JSON):

1. msgspec splits the envelope in one pass and hands back every row as a zero-copy
   :class:`msgspec.Raw` view into the body: no Python object is built per value.
2. Typed columns are parsed by Arrow's JSON reader from newline-joined rows, in chunks of a few MB
   on a small thread pool (Arrow releases the GIL). Each chunk is one Arrow block, so rows may
   span lines (pretty-printed bodies) without confusing Arrow's line-based chunker. DateTime
   columns are read as text and cast to ``timestamp[ns, UTC]`` afterwards (much cheaper than the
   reader's own conversion, and exact to the 100 ns the service sends).
3. Meanwhile the calling thread decodes only the Dynamic (and unknown-typed) fields of each row
   with a msgspec Struct that skips every other key, so those values are exactly what
   ``json.loads`` gives.
4. ``to_pandas`` keeps strings Arrow-backed and turns integers and booleans into masked arrays.

Anything Arrow refuses (a Boolean column sent as 0/1, numbers sent as strings, timestamps outside
the nanosecond range, duplicate keys...) moves that column to the tolerant per-value path instead;
a value that fits no reading of its declared type leaves the column as the Python objects sent.

**DateTime values outside pandas' nanosecond range** (before 1677-09-21 or after 2262-04-11, such
as the FILETIME epoch 1601-01-01 that AD-derived columns use for "never"): the column stays
``datetime64[ns, UTC]`` so every other row keeps its 100 ns precision, the out-of-range cell is
``NaT``, and ``frame.attrs["out_of_range"]`` lists each such cell as
``{"column": name, "row": position, "value": the string as sent}``. A warning is logged once per
column. The key is absent when every value was in range.

Works with pandas 2.2 and later as well as 3.x. The string dtype is the same on both:
Arrow-backed strings whose missing value is NaN (pandas 3's default ``str``; pandas 2.2 calls it
``StringDtype("pyarrow_numpy")``).

Column dtypes:

========================================  ================================================
schema ``type``                           dtype
========================================  ================================================
DateTime                                  ``datetime64[ns, UTC]`` (100 ns kept)
Int64 / Long (and small/unsigned ints)    ``Int64`` (pandas masked)
Int32 / Int                               ``Int32`` (``Int64`` if a value does not fit)
UInt64                                    ``UInt64``
SByte                                     ``boolean`` when every value is 0/1/true/false,
                                          else ``Int8`` / ``Int64``
Boolean / Bool                            ``boolean`` (pandas masked)
Double / Real / Decimal / Single / Float  ``float64`` (null is NaN)
String / Guid / TimeSpan                  ``str``: pandas 3's default string dtype,
                                          ``StringDtype("pyarrow", na_value=nan)``
                                          (:data:`STRING_DTYPE`; same storage on pandas 2.2)
Dynamic / Object / anything unknown       ``object``: the values as ``json.loads`` gives them
========================================  ================================================

A value nested deeper than Python can hold (about 1,000 levels) makes the whole response a
:class:`~connector.errors.QueryError` that says so, never a ``RecursionError``: asking again would
bring the same answer, so it is not retried; the query has to leave that value out.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from connector.errors import QueryError, ServiceError

__all__ = ["hunting_frame", "STRING_DTYPE", "OUT_OF_RANGE"]

log = logging.getLogger(__name__)

# Column kinds. Each schema type name maps to one of these.
_DATETIME, _INT64, _INT32, _UINT64, _SBYTE, _BOOL, _FLOAT, _STRING, _OBJECT = (
    "datetime", "int64", "int32", "uint64", "sbyte", "bool", "float", "string", "object",
)

_KINDS: dict[str, str] = {
    "datetime": _DATETIME, "date": _DATETIME, "datetimeoffset": _DATETIME,
    "int64": _INT64, "long": _INT64, "int16": _INT64, "short": _INT64, "uint32": _INT64,
    "uint16": _INT64, "byte": _INT64, "uint8": _INT64,
    "int32": _INT32, "int": _INT32,
    "uint64": _UINT64, "ulong": _UINT64,
    "sbyte": _SBYTE, "int8": _SBYTE,
    "boolean": _BOOL, "bool": _BOOL,
    "double": _FLOAT, "real": _FLOAT, "decimal": _FLOAT, "single": _FLOAT, "float": _FLOAT,
    "string": _STRING, "guid": _STRING, "uniqueidentifier": _STRING, "timespan": _STRING,
    "time": _STRING,
    "object": _OBJECT, "dynamic": _OBJECT,
}

# Kinds Arrow reads directly (everything else goes through msgspec as Python objects). DateTime is
# read as text and cast afterwards: Arrow's cast parses ISO 8601 many times faster than its JSON
# reader's own timestamp conversion.
_TIMESTAMP = pa.timestamp("ns", tz="UTC")
_ARROW_TYPES: dict[str, pa.DataType] = {
    _DATETIME: pa.string(),
    _INT64: pa.int64(),
    _INT32: pa.int32(),
    _UINT64: pa.uint64(),
    _BOOL: pa.bool_(),
    _FLOAT: pa.float64(),
    _STRING: pa.string(),
}


def _string_dtype() -> pd.StringDtype:
    try:
        return pd.StringDtype("pyarrow", na_value=np.nan)  # == "str", pandas 3's default (2.3+)
    except TypeError:  # pandas 2.2: the same array type under its older name
        return pd.StringDtype("pyarrow_numpy")


#: The dtype of String / Guid / TimeSpan columns: Arrow-backed strings, missing values NaN.
STRING_DTYPE = _string_dtype()
#: ``frame.attrs`` key listing DateTime cells outside pandas' nanosecond range (set to NaT).
OUT_OF_RANGE = "out_of_range"

_PANDAS_TYPES: dict[pa.DataType, Any] = {
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): STRING_DTYPE,
}

_INT_RANGES = {
    _INT32: (-(2**31), 2**31 - 1),
    _INT64: (-(2**63), 2**63 - 1),
    _UINT64: (0, 2**64 - 1),
}

# Rows per Arrow chunk are chosen so that a chunk holds about this many bytes of JSON.
_CHUNK_BYTES = 8 << 20
# Threads reading chunks, the caller included (it first decodes the Dynamic columns).
_MAX_WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
_EXCERPT = 80
# Arrow gets this many tries (each refusal moves columns to the per-value path) before giving up.
_MAX_ATTEMPTS = 4


# --------------------------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------------------------

class _Envelope(msgspec.Struct):
    """The three documented spellings, decoded in one pass; rows stay raw bytes."""

    results: list[msgspec.Raw] | None = None
    Results: list[msgspec.Raw] | None = None
    schema: msgspec.Raw = None  # type: ignore[assignment]
    Schema: msgspec.Raw = None  # type: ignore[assignment]
    stats: msgspec.Raw = None  # type: ignore[assignment]
    Stats: msgspec.Raw = None  # type: ignore[assignment]


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ANY = msgspec.json.Decoder()
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _excerpt(data: Any, start: int = 0) -> str:
    """A short, printable piece of a (possibly huge) body, never the whole of it."""
    view = memoryview(data)
    text = bytes(view[start:start + _EXCERPT]).decode("utf-8", "replace")
    return repr(text) + ("..." if len(view) > start + _EXCERPT else "")


def _json_kind(raw: Any) -> str:
    """What a raw JSON value is, from its first byte: "an array", "null"..."""
    first = bytes(memoryview(raw)[:1])
    return {b"[": "an array", b"{": "an object", b'"': "a string", b"n": "null", b"t": "a boolean",
            b"f": "a boolean"}.get(first, "a number")


def _kind_of(value: Any) -> str:
    """What a parsed JSON value is, in the words of :func:`_json_kind`."""
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _not_json(body: bytes, err: msgspec.DecodeError) -> ServiceError:
    text = str(err)
    stripped = body.lstrip()
    if not stripped:
        return ServiceError("The hunting response was empty (no JSON body).")
    if stripped[:1] == b"<":
        return ServiceError(
            "The hunting response was not JSON but HTML or XML (a proxy or gateway page?); "
            f"it starts with {_excerpt(stripped)}"
        )
    if "truncated" in text:
        return ServiceError(
            f"The hunting response was not valid JSON (truncated at byte {len(body)}?); "
            f"it ends with {_excerpt(body, max(0, len(body) - _EXCERPT))}"
        )
    match = re.search(r"\(byte (\d+)\)", text)
    where = ""
    if match:
        pos = int(match.group(1))
        where = f" near {_excerpt(body, max(0, pos - _EXCERPT // 2))}"
    return ServiceError(f"The hunting response was not valid JSON ({text}){where}")


# A \uD800-\uDFFF escape: the one thing msgspec refuses that json.loads (and Python) accepts.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _split(body: bytes) -> tuple[Any, list[msgspec.Raw] | list[dict], Any]:
    """Return (schema, rows, stats) from any of the three envelopes.

    Rows are raw JSON objects, or parsed dicts in the rare case only ``json.loads`` can read the
    body (unpaired UTF-16 surrogates, which Windows file names and command lines can hold).
    """
    try:
        env = _ENVELOPE.decode(body)
    except msgspec.ValidationError:
        env = None  # odd shape or key spelling: the general path finds out or says what is wrong
    except msgspec.DecodeError as err:
        if _SURROGATE_ESCAPE.search(body) is None:
            raise _not_json(body, err) from None
        import json

        try:
            doc = json.loads(body)
        except ValueError:
            raise _not_json(body, err) from None
        if not isinstance(doc, dict):
            raise _not_an_object(_kind_of(doc), body) from None
        return _parts(doc, parsed=True)
    if env is not None:
        rows = env.results if env.results is not None else env.Results
        schema = env.schema if env.schema is not None else env.Schema
        if rows is not None and schema is not None:
            stats = env.stats if env.stats is not None else env.Stats
            return _value(schema, "schema"), rows, (_value(stats, "Stats") if stats is not None else None)
    try:
        top = _TOP.decode(body)
    except msgspec.ValidationError:
        raise _not_an_object(_json_kind(body.lstrip()), body) from None
    return _parts(top, parsed=False)


def _not_an_object(kind: str, body: bytes) -> ServiceError:
    return ServiceError(
        f"The hunting response was {kind} in JSON, not an object with 'schema' and 'results'; "
        f"it starts with {_excerpt(body.lstrip())}"
    )


def _value(raw: msgspec.Raw, what: str) -> Any:
    try:
        return _ANY.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass
    import json

    try:
        return json.loads(bytes(raw))  # 1e400 is inf to json.loads, out of range to msgspec
    except ValueError as err:
        raise ServiceError(f"The hunting response's {what!r} is not valid JSON ({err})") from None


def _parts(top: dict[str, Any], *, parsed: bool) -> tuple[Any, list[Any], Any]:
    """(schema, rows, stats) from the top-level object, its values raw or already ``parsed``."""
    keys = {k.lower(): v for k, v in top.items()}

    def value(key: str) -> Any:
        return keys[key] if parsed else _value(keys[key], key)

    if "error" in keys:
        error = value("error")
        if isinstance(error, dict):
            code, message = error.get("code"), str(error.get("message"))[:500]
            raise ServiceError(f"The hunting response is an error: {code}: {message}", code=str(code))
        raise ServiceError(f"The hunting response is an error: {str(error)[:200]}")
    missing = [k for k in ("schema", "results") if k not in keys]
    if missing:
        found = ", ".join(repr(k) for k in list(top)[:10]) or "none"
        raise ServiceError(
            f"The hunting response has no {' or '.join(repr(m) for m in missing)} "
            f"(top-level keys found: {found})"
        )
    results = keys["results"]
    if parsed:
        rows, kind = (results, None) if isinstance(results, list) else (None, _kind_of(results))
    else:
        try:
            rows, kind = _RAW_LIST.decode(results), None
        except msgspec.ValidationError:
            rows, kind = None, _json_kind(results)
    if rows is None:
        raise ServiceError(f"The hunting response's 'results' is {kind}, not an array of rows")
    stats = value("stats") if "stats" in keys else None
    return value("schema"), rows, stats


def _columns(schema: Any) -> list[tuple[str, str]]:
    """[(name, kind)] in schema order, from items with name/type keys in any letter case."""
    if not isinstance(schema, list):
        raise ServiceError(f"The hunting response's 'schema' is not a list of columns: {str(schema)[:200]}")
    columns: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(schema):
        fields = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else {}
        name, type_name = fields.get("name"), fields.get("type")
        if not isinstance(name, str):
            raise ServiceError(f"Column {i} of the hunting response's 'schema' has no name: {str(item)[:200]}")
        if name in seen:
            raise ServiceError(f"The hunting response's 'schema' names column {name!r} twice")
        seen.add(name)
        normal = str(type_name or "").strip().lower().removeprefix("system.")
        columns.append((name, _KINDS.get(normal, _OBJECT)))
    return columns


# --------------------------------------------------------------------------------------------
# Fast path: Arrow for typed columns, msgspec for the rest
# --------------------------------------------------------------------------------------------

def _check_rows_are_objects(rows: list[msgspec.Raw]) -> None:
    # Arrow would read a `null` row as a row of nulls; say what is wrong instead.
    for i, row in enumerate(rows):
        view = memoryview(row)
        if not view or view[0] != 0x7B:  # "{"
            raise ServiceError(
                f"Row {i} of the hunting results is {_json_kind(view)}, not an object: {_excerpt(view)}"
            )


class _ArrowRefused(Exception):
    """Arrow could not read some typed columns as declared; they go the per-value way instead."""

    def __init__(self, names: list[str], message: str) -> None:
        super().__init__(message)
        self.names = names


def _read_chunk(rows: Sequence[msgspec.Raw], options: pa_json.ParseOptions) -> pa.Table:
    data = b"\n".join(rows)
    # One block per chunk: rows that span several lines cannot then be cut by Arrow's chunker.
    read = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
    table = pa_json.read_json(pa.py_buffer(data), read_options=read, parse_options=options)
    del data
    try:
        # Arrow's JSON reader does not check UTF-8 itself. One call for the whole table: each call
        # gives the GIL back and may wait for it while the caller decodes Dynamic columns.
        table.validate(full=True)
    except pa.ArrowInvalid:
        raise ServiceError("The hunting response is not valid UTF-8 text") from None
    return table


def _culprits(message: str, fields: list[tuple[str, pa.DataType]]) -> list[str]:
    """Which columns an Arrow error is about: the one it names, else all of the type it names."""
    named = [name for name, _ in fields if f"Column(/{name})" in message]
    if not named:
        named = [name for name, typ in fields if f"JSON to {typ}," in message]
    return named or [name for name, _ in fields]


class _ArrowJob:
    """Reads the typed columns chunk by chunk; pool threads and the caller share the chunks."""

    def __init__(self, rows: list[msgspec.Raw], fields: list[tuple[str, pa.DataType]], body_size: int) -> None:
        self.fields = fields
        self.options = pa_json.ParseOptions(
            explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore"
        )
        per_chunk = max(1, int(_CHUNK_BYTES * len(rows) / max(body_size, 1)))
        self.chunks: list[Any] = [rows[i:i + per_chunk] for i in range(0, len(rows), per_chunk)]
        self.tables: list[pa.Table] = [None] * len(self.chunks)  # type: ignore[list-item]
        self.failure: Exception | None = None
        self._next = iter(range(len(self.chunks)))  # next() on it is atomic under the GIL

    def work(self) -> None:
        """Read chunks until none is left or one failed. Called from pool threads and the caller."""
        for i in self._next:
            if self.failure is not None:
                return
            chunk, self.chunks[i] = self.chunks[i], None
            try:
                self.tables[i] = _read_chunk(chunk, self.options)
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as err:
                self.failure = _ArrowRefused(_culprits(str(err), self.fields), str(err))
            except Exception as err:  # handed to the caller by result()
                self.failure = err

    def stop(self) -> None:
        if self.failure is None:
            self.failure = RuntimeError("stopped")

    def result(self) -> pa.Table:
        if self.failure is not None:
            raise self.failure
        tables, self.tables = self.tables, []
        if not tables:
            return pa.schema(self.fields).empty_table()
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _read(
    rows: list[msgspec.Raw] | list[Any], columns: list[tuple[str, str]], body_size: int
) -> tuple[pa.Table | None, dict[str, list[Any]]]:
    """Arrow table of the typed columns, and {name: values} of the rest (in schema order)."""
    if rows and not isinstance(rows[0], msgspec.Raw):  # already parsed by json.loads
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ServiceError(f"Row {i} of the hunting results is {_kind_of(row)}, not an object")
        return None, {name: [row.get(name) for row in rows] for name, _ in columns}
    python_route = {name for name, kind in columns if kind not in _ARROW_TYPES}
    if not python_route:
        _check_rows_are_objects(rows)  # else msgspec checks it while decoding those columns
    helpers = _MAX_WORKERS - 1 if body_size > 2 * _CHUNK_BYTES else 0
    pool = ThreadPoolExecutor(helpers, thread_name_prefix="hunting-frame") if helpers else None
    try:
        for attempt in range(_MAX_ATTEMPTS):
            if attempt == _MAX_ATTEMPTS - 1:
                python_route.update(name for name, _ in columns)
            fields = [(n, _ARROW_TYPES[k]) for n, k in columns if n not in python_route]
            names = [n for n, _ in columns if n in python_route]
            job = _ArrowJob(rows, fields, body_size) if fields else None
            running = [pool.submit(job.work) for _ in range(helpers)] if job and pool else []
            finished = False
            try:
                values = _python_values(rows, names)  # meanwhile the pool parses the typed columns
                if job is not None:
                    job.work()  # then help with what is left
                finished = True
            finally:
                if job is not None and not finished:
                    job.stop()  # a bad row: no point reading the rest
                for future in running:
                    future.result()
            try:
                table = job.result() if job is not None else None
            except _ArrowRefused as refused:
                log.debug("Arrow refused %s (%s); reading them value by value", refused.names, refused)
                python_route.update(refused.names)
                continue
            return table, dict(zip(names, values, strict=True))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    raise AssertionError("unreachable: the last attempt reads every column value by value")


def _python_values(rows: list[msgspec.Raw], names: list[str]) -> list[list[Any]]:
    """The values of the given columns, row by row, exactly as ``json.loads`` would give them."""
    if not names:
        return []
    try:
        if any(_UNRENAMEABLE.search(name) for name in names):
            raise _Unfit("msgspec cannot name such a field")  # read whole rows instead (rare)
        fields = [(f"f{i}", Any, None) for i in range(len(names))]
        # Only these keys become Python objects; msgspec skips every other value of the row.
        struct = msgspec.defstruct("_Row", fields, rename={f"f{i}": n for i, n in enumerate(names)})
        decoder = msgspec.json.Decoder(struct)
        decoded = [decoder.decode(row) for row in rows]
    except (msgspec.DecodeError, UnicodeDecodeError, _Unfit):
        # msgspec refuses a few things json.loads accepts (lone surrogates, 1e400): be exact.
        return _json_values(rows, names)
    return [list(map(attrgetter(f"f{i}"), decoded)) for i in range(len(names))]


_UNRENAMEABLE = re.compile(r'["\\\x00-\x1f]')


def _json_values(rows: list[msgspec.Raw], names: list[str]) -> list[list[Any]]:
    import json

    columns: list[list[Any]] = [[] for _ in names]
    for i, row in enumerate(rows):
        try:
            obj = json.loads(bytes(row))
        except ValueError as err:  # also UnicodeDecodeError
            raise ServiceError(
                f"Row {i} of the hunting results is not valid JSON ({err}): {_excerpt(row)}"
            ) from None
        if not isinstance(obj, dict):
            raise ServiceError(
                f"Row {i} of the hunting results is {_json_kind(row)}, not an object: {_excerpt(row)}"
            )
        for values, name in zip(columns, names, strict=True):
            values.append(obj.get(name))
    return columns


def _cast_datetimes(table: pa.Table, columns: list[tuple[str, str]], by_name: dict[str, list[Any]]) -> pa.Table:
    """DateTime columns, read as text, to UTC nanoseconds; a column Arrow cannot cast (no zone
    offset, empty strings, out of the nanosecond range) goes to ``by_name`` for pandas instead."""
    for name, kind in columns:
        if kind != _DATETIME or name in by_name:
            continue
        index = table.schema.get_field_index(name)
        try:
            if _years_near_ns_limits(table.column(index)):
                raise pa.ArrowInvalid("a year outside 1678-2261")  # the per-value path knows exactly
            table = table.set_column(index, name, table.column(index).cast(_TIMESTAMP))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            by_name[name] = table.column(index).to_pylist()
            table = table.remove_column(index)
    return table


def _years_near_ns_limits(column: pa.ChunkedArray) -> bool:
    """True if a value's year is not within 1678-2261, where nanoseconds surely hold it.

    Older Arrow (15, the oldest supported) wraps such a value around silently in the cast to
    nanoseconds instead of refusing it, so this is checked first, on the text.
    """
    year = pc.utf8_slice_codeunits(column, 0, 4)
    outside = pc.or_(pc.less(year, "1678"), pc.greater(year, "2261"))
    return bool(pc.any(outside).as_py())


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(
        types_mapper=_PANDAS_TYPES.get, split_blocks=True, self_destruct=True, ignore_metadata=True
    )


def hunting_frame(body: bytes) -> tuple[pd.DataFrame, dict | None]:
    """Parse a hunting response body (Graph runHuntingQuery, MDE advancedqueries/run or XDR
    advancedhunting/run) into a DataFrame typed by its schema; return (frame, stats-or-None).

    Columns come in schema order with the dtypes listed in this module's docstring; keys a row
    lacks are nulls, keys the schema lacks are ignored. An empty ``results`` gives an empty frame
    that still has every column and dtype. ``stats`` is the response's ``Stats`` object (XDR and
    sometimes MDE), or None. A body that is not a hunting response raises
    :class:`~connector.errors.ServiceError` saying what was wrong.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, bytes):
        body = bytes(body)
    try:
        return _frame(body)
    except RecursionError:
        # Python objects (and msgspec, which guards the C stack with Python's limit) stop near
        # 1,000 levels; a response nested deeper cannot be read, whatever reader is used. Asking
        # again would bring the same answer, so this is the query's to change (QueryError, not retried).
        raise QueryError(
            f"The hunting response holds a value nested more than {sys.getrecursionlimit():,} levels deep, too deep "
            "to read. Project that column away (| project-away ...) or flatten it in the query."
        ) from None


def _frame(body: bytes) -> tuple[pd.DataFrame, dict | None]:
    schema, rows, stats = _split(body)
    columns = _columns(schema)

    table, by_name = _read(rows, columns, len(body))
    n = len(rows)
    del rows
    if table is not None:
        table = _cast_datetimes(table, columns, by_name)
    typed = _to_pandas(table) if table is not None else None
    del table
    data: dict[str, Any] = {}
    out_of_range: list[dict[str, Any]] = []
    for name, kind in columns:
        if name in by_name:
            data[name] = _convert(name, kind, by_name.pop(name), n, out_of_range)
        else:
            data[name] = typed[name]
    del typed
    frame = pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)
    if out_of_range:
        frame.attrs[OUT_OF_RANGE] = out_of_range
    return frame, stats if isinstance(stats, dict) else None


# --------------------------------------------------------------------------------------------
# Tolerant per-value conversion (Dynamic, SByte, unknown types, and whatever Arrow refused)
# --------------------------------------------------------------------------------------------

def _objects(values: list[Any], n: int) -> pd.Series:
    # fromiter keeps lists as elements (np.array would make a 2-D array of equal-length lists).
    return pd.Series(np.fromiter(values, dtype=object, count=n), dtype=object, copy=False)


class _Unfit(Exception):
    """A value that does not fit the column's declared type."""


def _brief(value: Any) -> str:
    """A value for a log line: its repr, cut short (a value can be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(name: str, kind: str, values: list[Any], n: int, out_of_range: list[dict[str, Any]]) -> Any:
    if kind == _OBJECT:
        return _objects(values, n)
    try:
        if kind == _DATETIME:
            return _to_datetime(values, n, name=name, out_of_range=out_of_range)
        return _CONVERTERS[kind](values, n)
    except (_Unfit, ValueError, TypeError, OverflowError, pa.ArrowException) as err:
        log.warning(
            "Hunting column %r is declared %s but holds values that are not (%s); kept as sent",
            name, kind, err,
        )
        return _objects(values, n)


def _masked_ints(values: list[Any], n: int, kind: str) -> Any:
    data = np.zeros(n, dtype=object)
    mask = np.zeros(n, dtype=bool)
    low, high = _INT_RANGES.get(kind, (-128, 127))
    widest_low, widest_high = _INT_RANGES[_UINT64 if kind == _UINT64 else _INT64]
    fits_declared = True
    for i, v in enumerate(values):
        if v is None:
            mask[i] = True
            continue
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise _Unfit(f"{_brief(v)} is not an integer")
        if isinstance(v, str):
            try:
                v = int(v.strip())
            except ValueError:
                raise _Unfit(f"{_brief(v)} is not an integer") from None
        elif isinstance(v, float):
            if not v.is_integer():
                raise _Unfit(f"{_brief(v)} is not an integer")
            v = int(v)
        if not widest_low <= v <= widest_high:
            raise _Unfit(f"{v} is out of range")
        if not low <= v <= high:
            fits_declared = False
        data[i] = v
    if kind == _UINT64:
        numpy_type = np.uint64
    elif kind == _INT32 and fits_declared:
        numpy_type = np.int32
    elif kind == "int8" and fits_declared:
        numpy_type = np.int8
    else:
        numpy_type = np.int64
    return pd.arrays.IntegerArray(data.astype(numpy_type), mask)


def _to_int64(values: list[Any], n: int) -> Any:
    return _masked_ints(values, n, _INT64)


def _to_int32(values: list[Any], n: int) -> Any:
    return _masked_ints(values, n, _INT32)


def _to_uint64(values: list[Any], n: int) -> Any:
    return _masked_ints(values, n, _UINT64)


_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def _to_bool(values: list[Any], n: int) -> Any:
    data = np.zeros(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    for i, v in enumerate(values):
        if v is None:
            mask[i] = True
        elif v is True or v is False:
            data[i] = v
        elif type(v) is int and v in (0, 1):
            data[i] = v == 1
        elif isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            data[i] = v.strip().lower() in _TRUE
        else:
            raise _Unfit(f"{_brief(v)} is not a boolean")
    return pd.arrays.BooleanArray(data, mask)


def _to_sbyte(values: list[Any], n: int) -> Any:
    # Some clusters report KQL bool as SByte; the values are then 0/1 (or true/false).
    if all(v is None or v is True or v is False or (type(v) is int and v in (0, 1)) for v in values):
        return _to_bool(values, n)
    return _masked_ints(values, n, "int8")


def _to_float(values: list[Any], n: int) -> Any:
    out = np.empty(n, dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = math.nan
        elif isinstance(v, bool) or not isinstance(v, int | float | str):
            raise _Unfit(f"{_brief(v)} is not a number")
        else:
            out[i] = float(v)  # also "NaN", "Infinity", "-Infinity", "1.5"
    return out


def _to_string(values: list[Any], n: int) -> Any:
    texts = [v if v is None or isinstance(v, str) else msgspec.json.encode(v).decode() for v in values]
    return pd.array(texts, dtype=STRING_DTYPE)


_NS_MIN = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC")
_YEAR = re.compile(r"\s*(\d{4})-")


def _to_datetime(values: list[Any], n: int, *, name: str = "", out_of_range: list | None = None) -> Any:
    for v in values:
        if v is not None and not isinstance(v, str):
            raise _Unfit(f"{_brief(v)} is not a date and time")
    parsed = None
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601").as_unit("ns")
        # pandas 2.3 turns a value just outside the range into NaT without a word: count them.
        if int(parsed.isna().sum()) == sum(v is None or not v.strip() for v in values):
            return parsed
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        pass
    # Some value lies outside 1677-2262. Nanoseconds cannot hold it; rather than coarsen the whole
    # column, that cell becomes NaT and is listed (with the text sent) in frame.attrs.
    kept = list(values)
    found = []
    for i, v in enumerate(values):
        if v is not None and _outside_ns(v):
            kept[i] = None
            found.append({"column": name, "row": i, "value": v})
    if not found:
        if parsed is not None:  # the NaTs were "NaT" or "null" sent as text
            return parsed
        raise _Unfit("a value is out of range")
    log.warning(
        "Hunting column %r has %d value(s) outside pandas' nanosecond range (1677-09-21..2262-04-11), "
        "e.g. %r in row %d: set to NaT, listed in frame.attrs[%r]",
        name, len(found), found[0]["value"][:40], found[0]["row"], OUT_OF_RANGE,
    )
    if out_of_range is not None:
        out_of_range.extend(found)
    return pd.to_datetime(kept, utc=True, format="ISO8601").as_unit("ns")


def _outside_ns(text: str) -> bool:
    """True for a valid date and time that nanoseconds cannot hold; _Unfit for no date at all."""
    year = _YEAR.match(text)
    if year and 1678 <= int(year.group(1)) <= 2261:
        return False
    try:
        stamp = pd.Timestamp(text)
    except (pd.errors.OutOfBoundsDatetime, OverflowError):  # pandas 2.2 overflows at the very edge
        return True
    except ValueError:
        raise _Unfit(f"{text[:40]!r} is not a date and time") from None
    if stamp is pd.NaT:
        return False
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return not _NS_MIN <= stamp <= _NS_MAX


_CONVERTERS: dict[str, Callable[[list[Any], int], Any]] = {
    _INT64: _to_int64,
    _INT32: _to_int32,
    _UINT64: _to_uint64,
    _SBYTE: _to_sbyte,
    _BOOL: _to_bool,
    _FLOAT: _to_float,
    _STRING: _to_string,
}
