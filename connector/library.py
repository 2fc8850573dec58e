"""The query library: named, parameterised hunting queries in YAML, MSTICPy style.

    >>> lib = QueryLibrary(client)                 # or QueryLibrary(run=callable), or QueryLibrary() to browse
    >>> lib.list()                                 # ['M365D.host_alerts', 'M365D.list_alerts', ...]
    >>> print(lib.M365D.list_host_processes.help())
    >>> lib.M365D.list_host_processes(host_name="wks-01", start="-3d", print_query=True)   # the KQL only
    >>> df = lib.M365D.list_host_processes(host_name="wks-01", start="-3d")              # runs it

Queries live in YAML files, in MSTICPy's format (``metadata.data_families``, ``defaults.parameters``,
``sources.<name>.args.query``, ``sources.<name>.parameters``): the built-in ones in ``connector/queries``,
and any folder or file added with ``paths=`` or :meth:`QueryLibrary.add_query_path`. A query's
placeholders are ``{name}``, written bare: the library renders each value as one escaped KQL literal
(:mod:`connector.kql`), never as raw text. Parameter types: ``str``, ``int``, ``float``, ``bool``,
``datetime``, ``timespan``, ``list[str]`` (``list``), ``list[int]``, ``identifier`` (a table or column
name, validated, e.g. ``table``), and ``kql`` (``add_query_items``: raw KQL appended to the query, which
must start with ``|``; it is the one parameter that is code, not a value).

MSTICPy files load as they are: a placeholder quoted in the template (``"{host_name}"``), wrapped in
``datetime({start})`` or, for a list, in ``({names})``, is read as the bare placeholder; ``table`` and
``*_column`` string parameters are identifiers and ``add_query_items`` is ``kql``. A placeholder inside
a longer string literal is refused when the file loads, since no escaping could make it safe.

``start`` and ``end`` default to the last day (``-1d`` .. ``now``) and take datetimes, ISO 8601 strings and
offsets such as ``-3d``, ``-12h`` or ``-3d@d`` (:func:`connector.kql.parse_datetime`).
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from . import kql
from .errors import ConfigurationError

log = logging.getLogger(__name__)

BUILTIN_PATH = Path(__file__).with_name("queries")

RUN_OPTIONS = ("timespan", "timeout", "split_by")
"""Keyword arguments of a query call that go to the runner (the hunting call), not into the KQL."""
_FLAGS = ("print_query", "debug_query")
_RESERVED = frozenset(RUN_OPTIONS + _FLAGS + ("help",))

FAMILY_ALIASES = {"MDATP": "MDE", "MDEHunting": "M365DHunting", "M365DGraph": "M365D"}
"""Other names MSTICPy users know a family by."""

_TYPE_NAMES = {
    "str": "str", "string": "str", "int": "int", "integer": "int", "long": "int", "float": "float",
    "real": "float", "double": "float", "bool": "bool", "boolean": "bool", "datetime": "datetime",
    "timespan": "timespan", "list": "list[str]", "list[str]": "list[str]", "list[int]": "list[int]",
    "identifier": "identifier", "kql": "kql",
}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""The default of a parameter that has none: the caller must give it."""

STANDARD_PARAMETERS: dict[str, dict[str, Any]] = {
    "start": {"type": "datetime", "default": "-1d", "description": "Start of the time window (default: a day ago)."},
    "end": {"type": "datetime", "default": "now", "description": "End of the time window (default: now)."},
    "add_query_items": {"type": "kql", "default": "",
                        "description": "Raw KQL appended to the query, starting with '|' (e.g. '| take 100')."},
    "time_column": {"type": "identifier", "default": "Timestamp", "description": "The time column to filter on."},
}
"""Parameters a query may use without declaring them."""


# ---------------------------------------------------------------- parameters

@dataclass(frozen=True)
class Parameter:
    """A typed query parameter: how to check a value and render it as a KQL literal."""

    name: str
    type: str
    description: str = ""
    default: Any = REQUIRED
    aliases: tuple[str, ...] = ()
    example: Any = None
    choices: tuple[Any, ...] | None = None
    obfuscate: bool = False

    @property
    def required(self) -> bool:
        """Whether a call must give this parameter."""
        return self.default is REQUIRED

    def render(self, value: Any, *, now: datetime | None = None) -> str:
        """``value`` as KQL source: one literal (or a parenthesised list of them), an identifier, or for
        ``kql`` the checked fragment. Raises ConfigurationError for a value of the wrong kind."""
        name, kind = self.name, self.type
        if self.choices is not None and kind != "list[str]" and value not in self.choices:
            raise ConfigurationError(f"{name} must be one of {', '.join(map(repr, self.choices))}, not {value!r}.")
        if kind == "str":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # a PID or a port given as a number still means its text
            return kql.string(value, obfuscate=self.obfuscate, name=name)
        if kind == "int":
            return kql.long_literal(value, name=name)
        if kind == "float":
            return kql.real_literal(value, name=name)
        if kind == "bool":
            return kql.bool_literal(value, name=name)
        if kind == "datetime":
            return kql.datetime_literal(value, name=name, now=now)
        if kind == "timespan":
            return kql.timespan_literal(value, name=name)
        if kind == "identifier":
            return kql.identifier(value, name=name)
        if kind == "kql":
            return kql.check_fragment("" if value is None else value, name=name)
        items = _as_list(value, name)
        if self.choices is not None:
            bad = [v for v in items if v not in self.choices]
            if bad:
                raise ConfigurationError(f"{name} items must be among {', '.join(map(repr, self.choices))}; "
                                         f"not {', '.join(map(repr, bad))}.")
        if kind == "list[int]":
            return kql.list_literal(items, kql.long_literal, name=name)
        return kql.list_literal(
            items, lambda v, name: kql.string(str(v) if isinstance(v, int) and not isinstance(v, bool) else v,
                                              obfuscate=self.obfuscate, name=name), name=name)

    def describe(self) -> str:
        """One line for help text: name, type, default or example, description."""
        if self.required:
            extra = "required" + (f", e.g. {self.example!r}" if self.example is not None else "")
        else:
            extra = f"default {self.default!r}"
        alias = f"; also {', '.join(self.aliases)}" if self.aliases else ""
        return f"{self.name} ({self.type}, {extra}{alias}): {self.description}".rstrip(": ")


def _as_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, str):
        # MSTICPy's convention: a string is a comma-separated list.
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    try:
        import pandas as pd

        if isinstance(value, (pd.Series, pd.Index)):
            return value.tolist()
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    raise ConfigurationError(f"{name} must be a list (or a comma-separated string), not {type(value).__name__}.")


def _parameter(name: str, spec: Any, where: str) -> Parameter:
    if not _IDENT.fullmatch(name):
        raise ConfigurationError(f"{where}: parameter name {name!r} is not an identifier.")
    if name in _RESERVED:
        raise ConfigurationError(f"{where}: {name!r} is reserved for query calls and cannot be a parameter.")
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"{where}: parameter {name!r} must be a mapping with at least 'type'.")
    raw_type = str(spec.get("type", "str")).strip().lower()
    kind = _TYPE_NAMES.get(raw_type)
    if kind is None:
        raise ConfigurationError(f"{where}: parameter {name!r} has unknown type {raw_type!r}; "
                                 f"use one of {', '.join(sorted(set(_TYPE_NAMES.values())))}.")
    if kind == "str" and (name in ("table", "time_column") or name.endswith(("_column", "_table"))):
        kind = "identifier"  # MSTICPy declares these as str and writes them bare
    if name == "add_query_items":
        kind = "kql"
    default = spec["default"] if "default" in spec else ("" if kind == "kql" else REQUIRED)
    if default is None and kind != "kql":
        default = REQUIRED
    choices = spec.get("choices")
    param = Parameter(
        name=name, type=kind, description=str(spec.get("description", "")).strip(), default=default,
        aliases=tuple(spec.get("aliases") or ()), example=spec.get("example"),
        choices=tuple(choices) if choices is not None else None, obfuscate=bool(spec.get("obfuscate", False)),
    )
    for value, label in ((param.default, "default"), (param.example, "example")):
        if value is not REQUIRED and value is not None:
            try:
                param.render(value)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}: the {label} of {name!r} is not valid: {exc.message}") from None
    return param


# ---------------------------------------------------------------- queries

@dataclass(frozen=True)
class LibraryQuery:
    """One named query: its family, description, typed parameters and template."""

    family: str
    name: str
    description: str
    parameters: Mapping[str, Parameter]
    template: str
    source: str = ""
    families: tuple[str, ...] = ()
    require_any: tuple[tuple[str, ...], ...] = ()
    tags: tuple[str, ...] = ()
    _parts: tuple[str | tuple[str], ...] = field(default=(), repr=False)

    @property
    def full_name(self) -> str:
        """``Family.name``."""
        return f"{self.family}.{self.name}"

    def _lookup(self) -> dict[str, str]:
        names = {}
        for param in self.parameters.values():
            names[param.name] = param.name
            for alias in param.aliases:
                names[alias] = param.name
        return names

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The full parameter values for a call: unknown names refused, aliases mapped, defaults added,
        required ones checked."""
        lookup = self._lookup()
        values: dict[str, Any] = {}
        for key, value in params.items():
            target = lookup.get(key)
            if target is None:
                close = difflib.get_close_matches(key, list(lookup), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                allowed = ", ".join(self.parameters) or "none"
                raise ConfigurationError(
                    f"{self.full_name} has no parameter {key!r}.{hint} Allowed: {allowed}."
                )
            if target in values:
                raise ConfigurationError(f"{self.full_name}: {target!r} is given twice (through an alias).")
            values[target] = value
        missing = []
        for param in self.parameters.values():
            if param.name not in values:
                if param.required:
                    missing.append(param)
                else:
                    values[param.name] = param.default
        if missing:
            need = "; ".join(p.describe() for p in missing)
            raise ConfigurationError(f"{self.full_name} needs {', '.join(p.name for p in missing)}: {need}")
        for group in self.require_any:
            if not any(values.get(name) not in (None, "", [], ()) for name in group):
                raise ConfigurationError(f"{self.full_name} needs at least one of {', '.join(group)}.")
        return values

    def render(self, **params: Any) -> str:
        """The KQL for these parameter values (nothing runs)."""
        values = self.bind(params)
        now = datetime.now(UTC)  # one "now" for every relative time in the call
        rendered = {name: self.parameters[name].render(value, now=now) for name, value in values.items()}
        if "start" in rendered and "end" in rendered and self.parameters["start"].type == "datetime" \
                and self.parameters["end"].type == "datetime":
            start = kql.parse_datetime(values["start"], name="start", now=now)
            end = kql.parse_datetime(values["end"], name="end", now=now)
            if start > end:
                raise ConfigurationError(f"{self.full_name}: start ({start:%Y-%m-%d %H:%M:%S}Z) is after end "
                                         f"({end:%Y-%m-%d %H:%M:%S}Z).")
        text = "".join(part if isinstance(part, str) else rendered[part[0]] for part in self._parts)
        # Drop the lines a placeholder left empty (an unused add_query_items), as MSTICPy does.
        return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())

    def help(self) -> str:
        """What the query does, its parameters, and its template."""
        lines = [f"{self.full_name}: {self.description}".rstrip(": ")]
        if len(self.families) > 1:
            lines.append(f"  also as: {', '.join(f'{f}.{self.name}' for f in self.families if f != self.family)}")
        lines.append("Parameters:")
        for param in self.parameters.values():
            lines.append(f"  {param.describe()}")
        if self.require_any:
            lines.append("  (at least one of: " + "; ".join(", ".join(g) for g in self.require_any) + ")")
        lines.append("Query:")
        lines.extend("  " + line for line in self.template.strip().splitlines())
        if self.source:
            lines.append(f"Defined in: {self.source}")
        return "\n".join(lines)

    def examples(self) -> dict[str, Any]:
        """Example values (the YAML ``example`` fields) for the parameters a call must give: the required
        ones, and the first of each ``require_any`` group."""
        out = {p.name: p.example for p in self.parameters.values() if p.required and p.example is not None}
        for group in self.require_any:
            for name in group:
                if self.parameters[name].example is not None:
                    out.setdefault(name, self.parameters[name].example)
                    break
        return out


def _compile_template(template: str, params: dict[str, Parameter], where: str) -> tuple[str | tuple[str], ...]:
    """The template as text parts and ``(name,)`` placeholders, with MSTICPy's quoting undone."""
    segments = kql.split_code(template, name=where)
    parts: list[str | tuple[str]] = []
    used: set[str] = set()

    def add_code(text: str) -> None:
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            parts.append(text[pos:m.start()])
            if m.group(1) is None:
                parts.append(m.group(0)[0])  # {{ or }}
            else:
                name = m.group(1)
                if name not in params:
                    raise ConfigurationError(f"{where}: the query uses {{{name}}}, which is not a declared parameter.")
                parts.append((name,))
                used.add(name)
            pos = m.end()
        parts.append(text[pos:])

    for kind, text in segments:
        if kind == "code":
            add_code(text)
        elif kind == "string":
            m = re.fullmatch(r"""[hH]?@?(["'])\{([A-Za-z_][A-Za-z0-9_]*)\}\1""", text)
            if m:
                if m.group(2) not in params:
                    raise ConfigurationError(
                        f"{where}: the query uses {{{m.group(2)}}}, which is not a declared parameter.")
                parts.append((m.group(2),))  # MSTICPy's "{x}": the value brings its own quotes
                used.add(m.group(2))
            elif re.search(r"\{[A-Za-z_][A-Za-z0-9_]*\}", text):
                raise ConfigurationError(
                    f"{where}: a placeholder inside the string literal {text[:60]} cannot be escaped; "
                    "make the whole value a parameter and write it bare ({name}).")
            else:
                parts.append(text)
        else:
            parts.append(text)
    # MSTICPy wraps values the library renders itself: datetime({start}) and ({list}).
    out: list[str | tuple[str]] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, tuple) and out and isinstance(out[-1], str) and i + 1 < len(parts) \
                and isinstance(parts[i + 1], str):
            before, after = out[-1], parts[i + 1]
            kind = params[part[0]].type
            wrapper = re.search(r"datetime\s*\(\s*$", before) if kind == "datetime" else (
                re.search(r"\(\s*$", before) if kind.startswith("list") else None)
            if wrapper and re.match(r"\s*\)", after):
                out[-1] = before[:wrapper.start()]
                out.append(part)
                parts[i + 1] = after[re.match(r"\s*\)", after).end():]
                i += 1
                continue
        out.append(part)
        i += 1
    return tuple(out)


# ---------------------------------------------------------------- loading YAML

def _load_file(path: Path, origin: str) -> list[LibraryQuery]:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"Cannot read query file {where}: {exc.strerror or exc}.") from None
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigurationError(f"Query file {where} is not valid YAML{at}.") from None
    return _load_document(doc, where, origin)


def _load_document(doc: Any, where: str, origin: str) -> list[LibraryQuery]:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("sources"), Mapping):
        raise ConfigurationError(f"Query file {where} has no 'sources' mapping of queries.")
    meta = doc.get("metadata") or {}
    families = [str(f) for f in (meta.get("data_families") or ["Custom"])]
    for fam in families:
        if not _IDENT.fullmatch(fam):
            raise ConfigurationError(f"{where}: family name {fam!r} is not an identifier.")
    families = list(dict.fromkeys(FAMILY_ALIASES.get(f, f) for f in families))
    defaults = ((doc.get("defaults") or {}).get("parameters")) or {}
    file_tags = tuple(str(t) for t in (meta.get("tags") or ()))
    out: list[LibraryQuery] = []
    for name, source in doc["sources"].items():
        name = str(name)
        label = f"{where}: {families[0]}.{name}"
        if not _IDENT.fullmatch(name):
            raise ConfigurationError(f"{where}: query name {name!r} is not an identifier.")
        if not isinstance(source, Mapping):
            raise ConfigurationError(f"{label} must be a mapping.")
        template = ((source.get("args") or {}).get("query")) if isinstance(source.get("args"), Mapping) else None
        if not isinstance(template, str) or not template.strip():
            raise ConfigurationError(f"{label} has no args.query.")
        specs: dict[str, Any] = {**defaults, **(source.get("parameters") or {})}
        for used in set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template)):
            if used not in specs and used in STANDARD_PARAMETERS:
                specs[used] = STANDARD_PARAMETERS[used]
        params = {pname: _parameter(str(pname), spec, label) for pname, spec in specs.items()}
        require_any = tuple(tuple(group) for group in (source.get("require_any") or ()))
        for group in require_any:
            for pname in group:
                if pname not in params:
                    raise ConfigurationError(f"{label}: require_any names {pname!r}, which is not a parameter.")
        parts = _compile_template(template, params, label)
        used_names = {p[0] for p in parts if isinstance(p, tuple)}
        # Declared but unused file defaults (a file-wide `table`) are dropped, so a call cannot pass a
        # value that silently does nothing.
        own = list(source.get("parameters") or {})
        params = {k: v for k, v in params.items() if k in used_names or k in own}
        # The query's own parameters first, then the shared ones in a fixed order (help reads better).
        rank = {"table": 1, "start": 2, "end": 3, "time_column": 4, "add_query_items": 5}
        params = dict(sorted(params.items(), key=lambda kv: (0, own.index(kv[0])) if kv[0] in own
                             else (rank.get(kv[0], 0.5), 0)))
        out.append(LibraryQuery(
            family=families[0], name=name, description=str(source.get("description", "")).strip(),
            parameters=params, template=template, source=origin or where, families=tuple(families),
            require_any=require_any, tags=file_tags + tuple(str(t) for t in (source.get("tags") or ())),
            _parts=parts,
        ))
    return out


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
    if path.is_file():
        return [path]
    raise ConfigurationError(f"Query path {path} does not exist.")


@functools.cache
def _builtin() -> tuple[LibraryQuery, ...]:
    """The shipped queries, parsed once per process."""
    out: list[LibraryQuery] = []
    for file in _yaml_files(BUILTIN_PATH):
        out.extend(_load_file(file, f"connector/queries/{file.name}"))
    return tuple(out)


# ---------------------------------------------------------------- the library

Runner = Callable[..., Any]


class QueryLibrary:
    """Named hunting queries, runnable through one hunting call.

    ``runner`` is a :class:`~connector.DefenderClient` (its ``run_hunting_query`` is used) or any
    callable ``run(query: str, **options) -> DataFrame``; options (``timespan``, ``timeout``,
    ``split_by``) are passed only when the caller gives them. Without a runner the library lists,
    explains and renders, and running raises ConfigurationError. ``paths`` are folders or YAML files
    of more queries (MSTICPy's custom query paths); ``builtin=False`` leaves out the shipped ones.
    """

    def __init__(self, runner: Any = None, *, paths: Any = (), builtin: bool = True) -> None:
        if runner is not None and not callable(runner) and not callable(getattr(runner, "run_hunting_query", None)):
            raise ConfigurationError("QueryLibrary needs a client with run_hunting_query, or a callable run(query).")
        self._runner = runner
        self._queries: dict[tuple[str, str], LibraryQuery] = {}
        if builtin:
            for query in _builtin():
                self._register(query)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        for path in paths:
            self.add_query_path(path)

    # -- adding queries

    def _register(self, query: LibraryQuery) -> None:
        for family in query.families:
            key = (family, query.name)
            if key in self._queries:
                log.info("Query %s.%s from %s replaces the one from %s", family, query.name, query.source,
                         self._queries[key].source)
            self._queries[key] = query if family == query.family else _in_family(query, family)

    def add_query_path(self, path: str | os.PathLike) -> list[str]:
        """Load every ``*.yaml``/``*.yml`` under a folder (or one file); returns the names added.
        A query with the name of an existing one replaces it."""
        added: list[str] = []
        for file in _yaml_files(Path(path).expanduser()):
            for query in _load_file(file, str(file)):
                self._register(query)
                added.extend(f"{f}.{query.name}" for f in query.families)
        return added

    def import_query_file(self, path: str | os.PathLike) -> list[str]:
        """Load one YAML file of queries (MSTICPy's name for it); returns the names added."""
        return self.add_query_path(path)

    def add_query(self, name: str, query: str, *, family: str = "Custom", description: str = "",
                  parameters: Mapping[str, Mapping[str, Any]] | None = None) -> LibraryQuery:
        """Add one query from Python (MSTICPy's ``add_custom_query``). ``parameters`` maps names to specs
        as in the YAML (``{"host_name": {"type": "str", "description": "..."}}``); ``start``, ``end``,
        ``add_query_items`` and ``time_column`` need no spec."""
        doc = {"metadata": {"data_families": [family]},
               "sources": {name: {"description": description, "args": {"query": query},
                                  "parameters": dict(parameters or {})}}}
        (added,) = _load_document(doc, f"add_query({family}.{name})", "added in Python")
        self._register(added)
        return added

    # -- finding queries

    @property
    def families(self) -> list[str]:
        """Family names, sorted."""
        return sorted({family for family, _ in self._queries})

    def list(self, family: str | None = None, *, search: str | None = None) -> list[str]:
        """``Family.name`` of every query (of one family), sorted; ``search`` keeps those whose name,
        description or template mention it (case-insensitive)."""
        fam = self._family_name(family) if family is not None else None
        term = search.lower() if search else None
        out = []
        for (f, name), query in self._queries.items():
            if fam is not None and f != fam:
                continue
            if term and term not in f"{f}.{name} {query.description} {query.template}".lower():
                continue
            out.append(f"{f}.{name}")
        return sorted(out)

    def get(self, name: str) -> LibraryQuery:
        """A query by ``Family.name`` (family aliases such as ``MDATP`` work) or by a name that only one
        family has."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError("Give a query name such as 'M365D.list_alerts'.")
        family, _, short = name.rpartition(".")
        if family:
            query = self._queries.get((self._family_name(family), short))
            if query is None:
                raise ConfigurationError(f"No query {name!r}.{self._suggest(name)}")
            return query
        found = [q for (f, n), q in self._queries.items() if n == short]
        if not found:
            raise ConfigurationError(f"No query {name!r}.{self._suggest(name)}")
        if len({q.template for q in found}) > 1:
            options = ", ".join(sorted(f"{f}.{n}" for (f, n) in self._queries if n == short))
            raise ConfigurationError(f"{name!r} is in several families; say which: {options}.")
        return found[0]

    def _family_name(self, family: str) -> str:
        aliases = {alias.lower(): name for alias, name in FAMILY_ALIASES.items()}
        family = aliases.get(family.lower(), family)
        if any(f == family for f, _ in self._queries):
            return family
        for f, _ in self._queries:  # a notebook user may type m365d
            if f.lower() == family.lower():
                return f
        raise ConfigurationError(f"No query family {family!r}. Families: {', '.join(self.families)}.")

    def _suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.list(), n=3)
        return f" Did you mean {', '.join(close)}?" if close else " See .list()."

    def __contains__(self, name: object) -> bool:
        try:
            self.get(name)  # type: ignore[arg-type]
        except ConfigurationError:
            return False
        return True

    def __iter__(self) -> Iterator[LibraryQuery]:
        """Every query once, under its own family."""
        seen: set[int] = set()
        for key in sorted(self._queries):
            query = self._queries[key]
            if query.family == key[0] and id(query) not in seen:
                seen.add(id(query))
                yield query

    def __len__(self) -> int:
        return len(self._queries)

    def __getattr__(self, family: str) -> QueryFamily:
        if family.startswith("_"):
            raise AttributeError(family)
        try:
            return QueryFamily(self, self._family_name(family))
        except ConfigurationError as exc:
            raise AttributeError(exc.message) from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.families))

    def __repr__(self) -> str:
        return f"QueryLibrary({len(self.list())} queries in {', '.join(self.families)})"

    # -- using queries

    def help(self, name: str | None = None) -> str:
        """The help of one query, or a summary of every family and query."""
        if name is not None:
            return self.get(name).help()
        lines = []
        for family in self.families:
            lines.append(f"{family}:")
            for full in self.list(family):
                query = self._queries[(family, full.split(".", 1)[1])]
                lines.append(f"  {query.name}: {query.description}".rstrip(": "))
        return "\n".join(lines)

    def render(self, name: str, **params: Any) -> str:
        """The KQL of a query for these parameters, without running it."""
        return self.get(name).render(**params)

    def run(self, name: str, **params: Any) -> Any:
        """Run a query through the runner and return its frame. ``print_query=True`` (or ``debug_query``)
        returns the KQL instead; ``timespan``, ``timeout`` and ``split_by`` go to the runner."""
        return self._call(self.get(name), params)

    def _call(self, query: LibraryQuery, params: dict[str, Any]) -> Any:
        options = {k: params.pop(k) for k in RUN_OPTIONS if k in params}
        show = any(bool(params.pop(flag, False)) for flag in _FLAGS)
        text = query.render(**params)
        if show:
            return text
        if self._runner is None:
            raise ConfigurationError(
                f"This query library has no client to run {query.full_name}; build it with QueryLibrary(client) "
                "or use print_query=True for the KQL.")
        run = getattr(self._runner, "run_hunting_query", self._runner)
        frame = run(text, **options)
        attrs = getattr(frame, "attrs", None)
        if isinstance(attrs, dict):
            attrs["query_name"] = query.full_name
        return frame


def _in_family(query: LibraryQuery, family: str) -> LibraryQuery:
    """The same query registered under another of its families (so ``full_name`` says where it was found)."""
    return LibraryQuery(family=family, name=query.name, description=query.description, parameters=query.parameters,
                        template=query.template, source=query.source, families=query.families,
                        require_any=query.require_any, tags=query.tags, _parts=query._parts)


class QueryFamily:
    """``library.<Family>``: attribute access to the family's queries."""

    def __init__(self, library: QueryLibrary, family: str) -> None:
        self._library = library
        self.name = family

    def list(self) -> list[str]:
        """Query names of this family."""
        return [full.split(".", 1)[1] for full in self._library.list(self.name)]

    def __getattr__(self, name: str) -> BoundQuery:
        if name.startswith("_"):
            raise AttributeError(name)
        query = self._library._queries.get((self.name, name))
        if query is None:
            close = difflib.get_close_matches(name, self.list(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise AttributeError(f"No query {self.name}.{name}.{hint}")
        return BoundQuery(self._library, query)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.list()))

    def __repr__(self) -> str:
        return f"QueryFamily({self.name!r}: {', '.join(self.list())})"


class BoundQuery:
    """A query ready to call: ``q(**params)`` runs it, ``q(..., print_query=True)`` or ``q.render(...)``
    returns the KQL, ``q.help()`` explains it. MSTICPy's positional ``"print"`` and ``"help"``/``"?"``
    work too."""

    def __init__(self, library: QueryLibrary, query: LibraryQuery) -> None:
        self._library = library
        self.query = query
        self.__doc__ = query.help()

    def __call__(self, *flags: str, **params: Any) -> Any:
        for flag in flags:
            if flag in ("help", "?"):
                print(self.query.help())
                return None
            if flag == "print":
                params["print_query"] = True
            else:
                raise ConfigurationError(f"{self.query.full_name} takes keyword parameters; "
                                         f"positional {flag!r} is not 'print', 'help' or '?'.")
        return self._library._call(self.query, dict(params))

    def render(self, **params: Any) -> str:
        """The KQL for these parameters (nothing runs)."""
        return self.query.render(**params)

    def help(self) -> str:
        """What the query does, its parameters and its template."""
        return self.query.help()

    @property
    def parameters(self) -> Mapping[str, Parameter]:
        """The query's parameters, by name."""
        return self.query.parameters

    def __repr__(self) -> str:
        return f"<query {self.query.full_name}({', '.join(self.query.parameters)})>"


__all__ = ["BoundQuery", "FAMILY_ALIASES", "LibraryQuery", "Parameter", "QueryFamily", "QueryLibrary", "REQUIRED",
           "RUN_OPTIONS", "STANDARD_PARAMETERS"]
