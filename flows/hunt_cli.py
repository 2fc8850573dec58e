"""``defender-soar hunt``, ``query``, ``triage`` and ``queries list|show``.

    defender-soar hunt --tenant contoso --tenant fabrikam "DeviceProcessEvents | take 10" --timespan P7D
    defender-soar hunt --tenant contoso --file query.kql --out results.parquet
    defender-soar queries list --search logon
    defender-soar queries show M365D.list_host_processes --param host_name=wks-01
    defender-soar query M365D.list_host_processes --tenant contoso --param host_name=wks-01 --param start=-3d
    defender-soar triage --tenant contoso --alert-id da638...

``hunt``, ``query`` and ``triage`` run the flows of this package (``hunt``, ``triage-alert``) in this
process, against the Prefect server at ``PREFECT_API_URL`` (or a temporary one). ``queries list`` and
``queries show`` read the query library only: they never import Prefect or contact a server.

Progress goes to stderr, tables and reports to stdout. Exit codes: 0 done; 1 failed (nothing
usable: every tenant failed, a bad query, a missing block); 2 usage error; 3 some tenants
failed (the others' rows were written).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_support import EXIT_FAILED, cli_errors, render_table

EXIT_PARTIAL = 3
#: Seconds between "still running" lines on stderr.
TICK_SECONDS = 10.0
#: Widest cell of the preview tables.
CELL_WIDTH = 40
_PREVIEW = ("TenantName", "Timestamp", "DeviceName", "AccountName", "ActionType", "FileName", "ProcessCommandLine",
            "RemoteIP", "RemotePort", "RemoteUrl", "Title", "Severity")

queries_app = typer.Typer(
    name="queries",
    help="Browse the hunting query library (no Prefect server needed).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

TenantOpt = Annotated[list[str] | None, typer.Option("--tenant", "-t", help="Tenant block name; repeat for more tenants.")]
TimespanOpt = Annotated[str | None, typer.Option("--timespan", help="ISO 8601 duration or interval Graph searches, e.g. P7D (default: 30 days).")]
SplitOpt = Annotated[str | None, typer.Option("--split-by", help="Run one query per window of this length (1h, 30m, 1d) and join them.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write the full result here (default: hunt-results/hunt-<time>.parquet).")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Write CSV instead of Parquet.")]
RowsOpt = Annotated[int, typer.Option("--rows", min=0, help="Rows to show in the preview table (0: none).")]
ColumnsOpt = Annotated[str | None, typer.Option("--columns", help="Comma-separated columns for the preview (default: a readable few).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines too.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="Query parameter as key=value; repeat for more.")]


def _say(text: str) -> None:
    typer.echo(text, err=True)


def _params(values: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--param")
        if key.strip() in params:
            raise typer.BadParameter(f"{key.strip()!r} is given twice", param_hint="--param")
        params[key.strip()] = value
    return params


def _quiet_prefect(verbose: bool) -> None:
    """Keep Prefect's console lines (task states, tracebacks of failed tenants) out of the CLI's output;
    they still go to the server's run logs. ``--verbose`` shows them."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    level = logging.INFO if verbose else logging.CRITICAL
    for name in ("", "uvicorn", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(level)


class _Ticker:
    """Prints "still running" on stderr every TICK_SECONDS while a long command runs."""

    def __init__(self, what: str, status=lambda: "") -> None:
        self._what = what
        self._status = status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cli-ticker")
        self.started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            extra = self._status()
            _say(f"... {self._what}: {time.monotonic() - self.started:.0f} s{'; ' + extra if extra else ''}")

    def __enter__(self) -> _Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _preview(frame, rows: int, columns: str | None) -> str:
    from .markdown import cell_text

    if columns:
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise typer.BadParameter(f"no column(s) {', '.join(missing)} in the result", param_hint="--columns")
    else:
        cols = [c for c in _PREVIEW if c in frame.columns]
        if len(cols) < 3:
            cols = list(frame.columns[:8])
    head = frame[cols].head(rows)
    return render_table(cols, [[cell_text(v, CELL_WIDTH) for v in row] for row in head.itertuples(index=False)])


def _read_query(query: str | None, file: Path | None) -> str:
    if (query is None) == (file is None):
        raise typer.BadParameter("give the KQL as an argument, '-' for stdin, or --file (one of them)",
                                 param_hint="QUERY / --file")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc.strerror or exc}", param_hint="--file") from None
    elif query == "-":
        text = sys.stdin.read()
    else:
        text = query
    if not text.strip():
        raise typer.BadParameter("the query is empty", param_hint="QUERY")
    return text


def _run_hunt(tenants: list[str] | None, *, query: str | None = None, query_name: str | None = None,
              params: dict[str, str] | None = None, timespan: str | None, split_by: str | None, out: Path | None,
              csv: bool, rows: int, columns: str | None, verbose: bool) -> None:
    names = list(dict.fromkeys(tenants or []))
    if not names:
        raise typer.BadParameter("give at least one --tenant", param_hint="--tenant")
    with cli_errors():
        from prefect.states import State

        from .hunt import hunt as hunt_flow
        from .hunt import progress_to

        _quiet_prefect(verbose)
        done: list[str] = []

        def progress(event: str, info: dict[str, Any]) -> None:
            if event == "tenant-done":
                done.append(info["tenant"])
                _say(f"{info['tenant']}: {info['rows']:,} rows ({info['seconds']:.1f} s)")
            elif event == "tenant-failed":
                done.append(info["tenant"])
                _say(f"{info['tenant']}: FAILED {info['error']}")
            elif event == "written":
                _say(f"Wrote {info['rows']:,} rows to {info['path']}")

        what = f"query {query_name}" if query_name else "hunt"
        _say(f"Hunting on {len(names)} tenant(s): {', '.join(names)} ...")
        with progress_to(progress), _Ticker(what, lambda: f"{len(done)} of {len(names)} tenant(s) done"):
            state: State = hunt_flow(
                names, query, query_name=query_name, params=params or None, timespan=timespan, split_by=split_by,
                output=str(out) if out else None, output_format="csv" if csv else "parquet", return_state=True,
            )
        if state.is_failed() or state.is_crashed():
            try:
                state.result()
            except Exception as exc:  # noqa: BLE001 - the flow's own error, shown as one line
                from .cli_support import error_line

                _say(error_line(exc))
            raise typer.Exit(EXIT_FAILED)
        result = state.result()
    if rows and len(result.frame):
        typer.echo(_preview(result.frame, rows, columns))
        if len(result.frame) > rows:
            typer.echo(f"... {len(result.frame) - rows:,} more rows in {result.path}")
    typer.echo(f"{len(result.frame):,} rows from {len(result.rows)} of {len(names)} tenant(s) -> {result.path}")
    if result.failures:
        for name, error in result.failures.items():
            _say(f"FAILED {name}: {error}")
        raise typer.Exit(EXIT_PARTIAL)


def hunt(
    query: Annotated[str | None, typer.Argument(help="KQL to run; '-' reads it from stdin.", show_default=False)] = None,
    tenant: TenantOpt = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the KQL from this file.")] = None,
    timespan: TimespanOpt = None,
    split_by: SplitOpt = None,
    out: OutOpt = None,
    csv: CsvOpt = False,
    rows: RowsOpt = 10,
    columns: ColumnsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a KQL hunting query on one or more tenants in parallel; write the rows to Parquet (or CSV).

    Exit codes: 0 done, 1 failed, 2 usage error, 3 some tenants failed (the others' rows are written).
    """
    text = _read_query(query, file)
    _run_hunt(tenant, query=text, timespan=timespan, split_by=split_by, out=out, csv=csv, rows=rows,
              columns=columns, verbose=verbose)


def query(
    name: Annotated[str, typer.Argument(help="Library query, e.g. M365D.list_host_processes (see 'queries list').")],
    tenant: TenantOpt = None,
    param: ParamOpt = None,
    timespan: TimespanOpt = None,
    split_by: SplitOpt = None,
    out: OutOpt = None,
    csv: CsvOpt = False,
    rows: RowsOpt = 10,
    columns: ColumnsOpt = None,
    print_only: Annotated[bool, typer.Option("--print", help="Print the rendered KQL and exit (runs nothing).")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run a query from the library, with --param key=value parameters, on one or more tenants.

    Exit codes: 0 done, 1 failed, 2 usage error, 3 some tenants failed.
    """
    params = _params(param)
    with cli_errors():
        from connector.library import QueryLibrary

        text = QueryLibrary().get(name).render(**params)  # a bad name or parameter fails here, before Prefect
    if print_only:
        typer.echo(text)
        return
    _run_hunt(tenant, query_name=name, params=params, timespan=timespan, split_by=split_by, out=out, csv=csv,
              rows=rows, columns=columns, verbose=verbose)


def triage(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant block name.")],
    alert_id: Annotated[str, typer.Option("--alert-id", "-a", help="The Defender (Graph) alert id.")],
    notify: Annotated[list[str] | None, typer.Option("--notify", help="Notification block as <type-slug>/<name>; repeatable.")] = None,
    no_comment: Annotated[bool, typer.Option("--no-comment", help="Do not add the summary to the alert's comments.")] = False,
    hours_before: Annotated[float, typer.Option("--hours-before", min=0, help="Hunt from this long before the alert's first activity.")] = 2.0,
    hours_after: Annotated[float, typer.Option("--hours-after", min=0, help="... to this long after its last activity.")] = 2.0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the Markdown report to this file.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Triage one alert: its evidence, hunting around its device, user and time, enrichment; print the report.

    The report is also a Prefect artifact (triage-<alert id>), and a summary is added to the alert's
    comments unless --no-comment. Exit codes: 0 done, 1 failed, 2 usage error.
    """
    with cli_errors():
        from .triage import triage_alert

        _quiet_prefect(verbose)
        _say(f"Triaging alert {alert_id} on {tenant} ...")
        with _Ticker("triage"):
            state = triage_alert(alert_id, tenant, notify=notify, comment=not no_comment, hours_before=hours_before,
                                 hours_after=hours_after, return_state=True)
        if not state.is_completed():
            try:
                state.result()
            except Exception as exc:  # noqa: BLE001 - the flow's own error, shown as one line
                from .cli_support import error_line

                _say(error_line(exc))
            raise typer.Exit(EXIT_FAILED)
        result = state.result()
    typer.echo(result.report)
    if out is not None:
        out.write_text(result.report, encoding="utf-8")
        _say(f"Report written to {out}")
    _say(f"Report: Prefect artifact '{result.artifact_key}'"
         + (f"; commented on {', '.join(result.commented)}" if result.commented else "")
         + (f"; notified {', '.join(result.notified)}" if result.notified else ""))
    if result.failures:
        _say("Some triage queries failed: " + "; ".join(f"{k}: {v}" for k, v in result.failures.items()))


@queries_app.command("list")
def queries_list(
    family: Annotated[str | None, typer.Option("--family", help="Only this family (M365D, MDE, M365DHunting...).")] = None,
    search: Annotated[str | None, typer.Option("--search", "-s", help="Only queries whose name, description or KQL mention this.")] = None,
    path: Annotated[list[Path] | None, typer.Option("--path", help="Also load queries from this folder or YAML file.")] = None,
) -> None:
    """List the library's queries: name and description. No Prefect server is contacted."""
    with cli_errors():
        from connector.library import QueryLibrary

        library = QueryLibrary(paths=[str(p) for p in path or []])
        names = library.list(family, search=search)
        rows = [[n, _short(library.get(n).description, 90)] for n in names]
    if not rows:
        _say("No query matches.")
        raise typer.Exit(EXIT_FAILED)
    typer.echo(render_table(["query", "description"], rows))
    _say(f"{len(rows)} queries. 'defender-soar queries show NAME' explains one.")


@queries_app.command("show")
def queries_show(
    name: Annotated[str, typer.Argument(help="Query name, e.g. M365D.list_host_processes.")],
    param: ParamOpt = None,
    path: Annotated[list[Path] | None, typer.Option("--path", help="Also load queries from this folder or YAML file.")] = None,
) -> None:
    """Explain a query (parameters, template); with --param values, also print the KQL it would run."""
    params = _params(param)
    with cli_errors():
        from connector.library import QueryLibrary

        query = QueryLibrary(paths=[str(p) for p in path or []]).get(name)
        typer.echo(query.help())
        if params or not any(p.required for p in query.parameters.values()) and not query.require_any:
            typer.echo("\nKQL with these parameters:" if params else "\nKQL with the defaults:")
            typer.echo(query.render(**params))


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def register(app: typer.Typer) -> None:
    """Add ``hunt``, ``query``, ``triage`` and the ``queries`` group to the root ``defender-soar`` app."""
    app.command("hunt")(hunt)
    app.command("query")(query)
    app.command("triage")(triage)
    app.add_typer(queries_app, name="queries")


#: Sub-commands that never need the Prefect API (the root skips its server hint for them).
LOCAL_COMMANDS = frozenset({"queries"})

__all__ = ["EXIT_PARTIAL", "LOCAL_COMMANDS", "hunt", "queries_app", "query", "register", "triage"]
