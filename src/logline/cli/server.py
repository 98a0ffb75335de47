"""`logline serve`, `logline up` and `logline config check`."""

from __future__ import annotations

from typing import Annotated

import typer

from logline.cli.common import instance, settings
from logline.cli.output import fields, mask_url
from logline.server.ratelimit import RateLimiter
from logline.server.settings import load_settings

HostOption = Annotated[
    str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Port to listen on (default 8470; 0 picks one).")
]

config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)


def serve(ctx: typer.Context, host: HostOption = None, port: PortOption = None) -> None:
    """Run the API server (control plane) on this data directory's database."""
    from logline.server.run import serve as run_serve

    run_serve(settings(ctx).home, host=host, port=port)


def up(ctx: typer.Context, host: HostOption = None, port: PortOption = None) -> None:
    """Everything on one machine: make the data directory and a first login if needed, serve."""
    from logline.server.run import up as run_up

    run_up(settings(ctx).home, host=host, port=port)


@config_app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate logline.toml and LOGLINE_* settings, and reach the database and rate-limit store."""
    with instance(ctx) as opened:
        server = load_settings(opened.config)
        opened.store.logs()
        RateLimiter(server.rate_limit_storage, limits=server.rate_limits).check_storage()
        fields(
            [
                ("instance", opened.config.instance),
                ("database", f"{mask_url(opened.config.database_url)} (reachable)"),
                ("listen", server.bind),
                ("rate limits", f"{mask_url(server.rate_limit_storage)} (reachable)"),
                ("sign-up", "open" if server.allow_signup else "closed"),
                ("tracing", mask_url(server.otlp_endpoint) if server.otlp_endpoint else "off"),
            ]
        )
