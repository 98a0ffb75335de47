"""`logline node ...`: the worker nodes a server knows, from a terminal.

    logline node list                       # the nodes serving tenant `default`
    logline node list --state online --tenant acme
    logline node list --all                 # every node (instance administrators)

Every command takes `--server` (`LOGLINE_SERVER`), `--token` (`LOGLINE_TOKEN`) or `--api-key`
(`LOGLINE_API_KEY`), `--tenant` (`LOGLINE_TENANT`), and `--json` to print the server's JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from logline.cli.output import emit_json, note, out, table
from logline.cli.remote import (
    DEFAULT_SERVER,
    ApiKeyOption,
    JsonOption,
    Remote,
    ServerOption,
    TenantOption,
    TokenOption,
)
from logline.engine.nodes import STATES
from logline.errors import InvalidInput
from logline.ledger.timefmt import parse_ts

app = typer.Typer(
    help="Worker nodes: who serves the jobs, and are they alive.", no_args_is_help=True
)


def ago(ts: str, now: datetime | None = None) -> str:
    """`ts` with how long ago it was, for people: `2026-...Z (4s ago)`."""
    try:
        seconds = ((now or datetime.now(UTC)) - parse_ts(ts)).total_seconds()
    except InvalidInput:
        return ts
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{ts} ({int(seconds // size)}{unit} ago)"
    return f"{ts} ({max(0, int(seconds))}s ago)"


def _print_nodes(nodes: list[dict[str, Any]]) -> None:
    if not nodes:
        note("no nodes")
        return
    grid = table("nodes", ["identity", "state", "labels", "running", "last seen"],
                 unbroken=["identity", "last seen"])  # fmt: skip
    for node in nodes:
        labels = ", ".join(f"{key}={value}" for key, value in node["labels"].items())
        running = f"{node['running']}/{node['concurrency']}"
        grid.add_row(node["identity"], node["state"], labels, running, ago(node["last_seen"]))
    out.print(grid)


@app.command("list")
def list_nodes(
    states: Annotated[
        list[str] | None, typer.Option("--state", help=f"One of {', '.join(STATES)} (repeatable).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every node of the instance (instance administrators).")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """The nodes serving the tenant (its own and the instance-wide ones), or all of them."""
    path = "/v1/nodes" if every else f"/v1/tenants/{tenant}/nodes"
    with Remote(server, token=token, api_key=api_key) as remote:
        found = remote.call("GET", path, params={"state": states or []})
    if as_json:
        emit_json(found)
    else:
        _print_nodes(found["nodes"])
