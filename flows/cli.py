"""``defender-soar``: the command line. A thin root; each area is a sub-app in its own module.

    defender-soar tenants import msticpyconfig.yaml
    defender-soar tenants list
    defender-soar tenants test contoso

Add a command group with ``app.add_typer(<module>.app, name="...")``.
"""

from __future__ import annotations

import typer

from . import hunt_cli, respond_cli, serve_cli, tenants_cli

app = typer.Typer(
    name="defender-soar",
    help="Microsoft Defender hunting and response on Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts hold [optional] parts and <placeholders>, not markup
)
app.add_typer(tenants_cli.app, name="tenants")
hunt_cli.register(app)  # hunt, query, triage, queries
respond_cli.register(app)  # contain, release, block-indicators, respond-file
serve_cli.register(app)  # serve: a Prefect server and every deployment of deployments/prefect.yaml


SERVER_HINT = (
    "Hint: no PREFECT_API_URL is set, so each command starts a temporary Prefect server (10-20 s). Start one "
    "server ('prefect server start', UI at http://127.0.0.1:4200) and point the CLI at it: "
    "prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api"
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Microsoft Defender hunting and response on Prefect. Blocks live in the Prefect server at PREFECT_API_URL."""
    if ctx.resilient_parsing or ctx.invoked_subcommand is None or ctx.invoked_subcommand in hunt_cli.LOCAL_COMMANDS:
        return  # `queries` reads the library only: it needs no Prefect server
    if ctx.invoked_subcommand == "serve":
        return  # serve starts (or reuses) a server itself: the temporary-server hint would mislead
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        typer.echo(SERVER_HINT, err=True)  # once per command, on stderr: stdout stays parseable


def main() -> None:
    """Console entry point (``defender-soar``)."""
    app()


if __name__ == "__main__":
    main()
