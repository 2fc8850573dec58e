"""Shared plumbing for the ``defender-soar`` commands: one-line errors and exit codes, secrets from stdin.

Every command runs its body inside :func:`cli_errors`: a connector error, an invalid block or a
missing block prints ``<ErrorClass>: <message>`` on stderr, with no traceback, and exits 1.
Usage errors (bad or missing options) are click's and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import typer

EXIT_FAILED = 1
EXIT_USAGE = 2


def error_line(exc: BaseException) -> str:
    """``ErrorClass: message`` for one exception, without input values or tracebacks."""
    import httpx
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        from blocks._messages import validation_message

        return f"ValidationError: {exc.title}: {validation_message(exc)}"
    if isinstance(exc, httpx.TransportError):
        from prefect.settings import PREFECT_API_URL

        where = PREFECT_API_URL.value() or "the temporary local server"
        return (
            f"{type(exc).__name__}: cannot reach the Prefect API at {where} ({exc}). Start one with "
            "'prefect server start', or set PREFECT_API_URL."
        )
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {message}"


@contextmanager
def cli_errors(prefix: str = "") -> Iterator[None]:
    """Turn expected failures into one line on stderr and exit code 1."""
    import httpx
    from pydantic import ValidationError

    from connector.errors import DefenderError

    try:
        yield
    except (DefenderError, ValidationError, ValueError, OSError, httpx.HTTPError) as exc:
        typer.echo(prefix + error_line(exc), err=True)
        raise typer.Exit(EXIT_FAILED) from None


def read_secret_option(value: str | None, option: str, *, stdin_used: list[str]) -> str | None:
    """The value of a secret option; ``-`` reads one line from stdin (keeps it out of shell history)."""
    if value != "-":
        return value
    if stdin_used:
        raise typer.BadParameter(f"only one option can read from stdin ('-'); {stdin_used[0]} already does", param_hint=option)
    stdin_used.append(option)
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise typer.BadParameter("'-' given but stdin was empty", param_hint=option)
    return line


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain, aligned text table (pipes and terminals alike)."""
    cells = [list(headers)] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
